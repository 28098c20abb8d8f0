"""The Claude Code backend: the only module that imports ``claude_agent_sdk``.

One run = one ``ClaudeSDKClient`` (one CLI process) in a place (wrapper.places: its own
cwd, HOME and CLAUDE_CONFIG_DIR), with Claude Code's tools off unless the request enables
them, answering one turn. Text deltas are handed to ``on_text`` as they arrive; the run
returns an ``Outcome`` built from the final ``result`` message.

Client functions (OpenAI function calling; the conversion is in wrapper.tools):
- They are the tools of an in-process SDK MCP server, under their own names
  (``FUNCTION_ENV``), so Claude calls them as real tools. Nothing runs them here: Claude
  Code asks permission for each call, and ``_Gate`` refuses it with ``interrupt``, which
  ends the run with the calls in hand; their deltas go to ``on_call`` as they stream.
- A conversation that holds calls and results is written as a transcript in the place's
  projects directory and resumed (``RESUME_ENV``): the CLI answers its last user message
  with no new prompt, so every result reaches Claude as a ``tool_result`` block.

Claude Code's own tools (the policy is in wrapper.builtin): the run is offered exactly the
effective set (``tools=``), with no allow rule, so each permission request reaches
``_Gate``, which lets a built-in tool run when ``builtin.refusal`` finds nothing it names
outside the place's cwd, and denies it otherwise, without ending the run. Their activity
is never sent to the client: only the assistant's text, before and after, and the
client's own function calls.

Rules kept here:
- The CLI's environment is the allowed base (``Config.claude_environment``), the place's
  HOME and CLAUDE_CONFIG_DIR, and the credentials (wrapper.auth); nothing else.
- SDK and OS exceptions are translated into ``wrapper.errors`` at this boundary
  (``_map_errors``); API failures, which the CLI reports as an error result rather than
  an exception, are mapped by their HTTP status in wrapper.upstream. Their raw text
  (paths, addresses) goes to the log, not to the client.
- A run that does not finish (client gone, timeout, shutdown) is stopped with
  ``interrupt()``, shielded and bounded, before the process is closed: measured here,
  this aborts the upstream stream and frees the CLI in about 0.1 s, where plain
  cancellation lets the CLI finish its answer and takes about 4.5 s to close. A CLI still
  open ``CLOSE_TIMEOUT`` after the run was stopped (wedged) gets SIGTERM, and SIGKILL
  ``KILL_TIMEOUT`` later: closing never takes more than 1.5 s.
- The process and a stateless run's place (with the CLI's transcript of the run, which
  holds the whole conversation) never outlive the run; a place given by the caller
  (wrapper.sessions, wrapper.continuation) belongs to its owner.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import uuid
from collections import defaultdict
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from contextlib import aclosing, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import attrs
import trio
from claude_agent_sdk import (
    AssistantMessage,
    ClaudeAgentOptions,
    ClaudeSDKClient,
    ClaudeSDKError,
    CLIConnectionError,
    CLINotFoundError,
    HookContext,
    HookInput,
    HookJSONOutput,
    HookMatcher,
    McpSdkServerConfig,
    Message,
    PermissionMode,
    PermissionResult,
    PermissionResultAllow,
    PermissionResultDeny,
    ResultMessage,
    SdkMcpTool,
    StreamEvent,
    TextBlock,
    ToolPermissionContext,
    ToolUseBlock,
    create_sdk_mcp_server,
)
from claude_agent_sdk.types import SystemPromptFile

from wrapper import auth, builtin, errors, places, sandbox, transcript, upstream
from wrapper.config import Config
from wrapper.convert import Turn
from wrapper.places import Place
from wrapper.tools import CallDelta, Calling, CallTracker, FunctionCall

log = logging.getLogger(__name__)

# interrupt() answered in ~30 ms when measured; past this the CLI is wedged, so close it.
INTERRUPT_TIMEOUT = 1.0
# A run that ends unfinished leaves its CLI this long to close before SIGTERM, then this
# long again before SIGKILL: one that heeds the interrupt is gone in ~0.1 s, and the SDK
# alone would wait 5 s (and 5 more after SIGTERM) on a wedged one, holding the answer.
CLOSE_TIMEOUT = 1.0
KILL_TIMEOUT = 0.5
# The in-process MCP server that carries the client's functions.
CLIENT_SERVER = "client"
# For runs that offer client functions (CLI 2.1.332 settings, checked by tests/test_tools.py):
FUNCTION_ENV = {
    # SDK MCP tools keep the client's names, not mcp__client__<name>.
    "CLAUDE_AGENT_SDK_MCP_NO_PREFIX": "1",
    # No tool search: every function is offered whole, with no placeholder tool beside it.
    "ENABLE_TOOL_SEARCH": "false",
}
# A resumed transcript that ends with a user message is answered as it stands.
RESUME_ENV = {"CLAUDE_CODE_RESUME_INTERRUPTED_TURN": "1"}
# What Claude Code records as the refusal; the run ends right after it.
CALL_REFUSAL = "This function is run by the API client; the run stops here for its result."

TextSink = Callable[[str], Awaitable[None]]
CallSink = Callable[[CallDelta], Awaitable[None]]


@attrs.frozen
class Outcome:
    """What a finished run reports: its text, stop reason, usage and cost."""

    text: str
    stop_reason: str | None
    usage: dict[str, Any] | None
    cost_usd: float | None
    session_id: str
    calls: tuple[FunctionCall, ...] = ()


class Backend:
    """Runs Claude Code turns under the server's configuration, each in a place
    (wrapper.places), through the launcher (wrapper.sandbox) when one is installed."""

    def __init__(
        self, config: Config, launcher: Path | None = None, sandboxed: bool = False
    ) -> None:
        self.config = config
        self.launcher = launcher
        self.sandboxed = sandboxed
        self.cli = Path(config.cli_path) if config.cli_path else sandbox.BUNDLED_CLI
        self.live_processes = 0

    def environment(self, turn: Turn, place: Place, credentials: dict[str, str]) -> dict[str, str]:
        """The CLI's whole environment: the allowed base, the place, the credentials."""
        env = self.config.claude_environment()
        env.update(credentials)
        env.update(
            HOME=str(place.root),
            CLAUDE_CONFIG_DIR=str(place.config_dir),
            WRAPPER_PLACE=str(place.root),
        )
        if turn.calling.functions:
            env.update(FUNCTION_ENV)
        if turn.messages:  # the transcript written for this run ends with the question
            env.update(RESUME_ENV)
        return env

    def options(
        self, turn: Turn, place: Place, gate: _Gate, env: dict[str, str]
    ) -> ClaudeAgentOptions:
        tools = sorted(gate.builtin)
        functions = bool(turn.calling.functions)
        return ClaudeAgentOptions(
            tools=tools,
            mcp_servers={CLIENT_SERVER: _client_server(turn.calling)} if functions else {},
            can_use_tool=gate if functions or tools else None,
            # Also before every call of a built-in tool, including those the CLI would
            # allow by itself (reads in its cwd): the gate judges what they will touch.
            hooks={"PreToolUse": [HookMatcher(hooks=[gate.pre_tool_use], on_failure="block")]}
            if tools
            else None,
            permission_mode=cast("PermissionMode", self.config.permission_mode) if tools else None,
            resume=place.resume,
            fork_session=place.fork,
            max_turns=self.config.max_turns,
            include_partial_messages=True,
            # From a file of the place: one command-line argument is capped at 128 KiB
            # (Linux's MAX_ARG_STRLEN), a client's system prompt is not.
            system_prompt=SystemPromptFile(type="file", path=str(place.system_prompt))
            if turn.system_prompt is not None
            else None,
            model=turn.model,
            cwd=place.cwd,
            cli_path=self.launcher or self.config.cli_path,
            env=env,
            # No user/project settings: the server's behaviour must not depend on them.
            setting_sources=[],
            stderr=_log_stderr,
        )

    async def run(
        self,
        turn: Turn,
        on_text: TextSink | None = None,
        on_call: CallSink | None = None,
        place: Place | None = None,
    ) -> Outcome:
        """Answer one turn; ``on_text`` and ``on_call``, if given, get deltas as they arrive.
        With a ``place`` (a session's or a chain's), the run works there and leaves its
        files; without, it gets a fresh place that is removed afterwards."""
        tools = builtin.effective(turn.calling.builtin, self.config.tools_allowed)
        if not await trio.to_thread.run_sync(os.access, self.cli, os.X_OK):
            raise errors.UpstreamError(
                "Claude Code CLI not found (see CLAUDE_CLI_PATH).", code="claude_cli_not_found"
            )
        workdir = self.config.workdir
        temporary = place is None
        try:
            if place is None:
                place = await trio.to_thread.run_sync(places.temporary, workdir)
            await trio.to_thread.run_sync(places.make, place, workdir)
        except (OSError, places.UnsafeDirectory) as exc:
            log.error("cannot prepare a place in %s: %s", workdir, exc)
            raise errors.WorkdirUnavailable(
                "Cannot create a working directory for Claude Code."
            ) from exc
        try:
            if turn.messages:
                place = attrs.evolve(place, resume=str(uuid.uuid4()))
                await _write_transcript(turn, place)
            if turn.system_prompt is not None:
                await trio.to_thread.run_sync(place.system_prompt.write_text, turn.system_prompt)
            credentials = await trio.to_thread.run_sync(
                auth.cli_credentials,
                self.config.claude_environment(),
                self.config.claude_config_dir(),
            )
            env = self.environment(turn, place, credentials)
            gate = _Gate(place.cwd, place.root, frozenset(tools))
            run = _Run(turn.calling, gate, on_text, on_call)
            return await self._run(turn, self.options(turn, place, gate, env), run)
        finally:
            if temporary:
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(places.remove, place.root)

    async def _run(self, turn: Turn, options: ClaudeAgentOptions, run: _Run) -> Outcome:
        client = ClaudeSDKClient(options)
        result: Outcome | Exception | None = None
        closed = trio.Event()
        self.live_processes += 1
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_close_or_kill, client, closed)
            try:
                with _map_errors():
                    await client.connect()
                    if not turn.messages:  # a written transcript already ends with the question
                        await client.query(turn.prompt)
                    result = await _collect(client, run)
            except Exception as exc:  # raised outside the nursery: not an exception group
                result = exc
            finally:
                finished = isinstance(result, Outcome)
                if not finished:
                    nursery.cancel_scope.cancel()  # _close_or_kill's clock starts
                with trio.CancelScope(shield=True):
                    if not finished:
                        with trio.move_on_after(INTERRUPT_TIMEOUT):
                            await _interrupt(client)
                    await client.disconnect()
                closed.set()
                nursery.cancel_scope.cancel()
                self.live_processes -= 1
        if not isinstance(result, Outcome):
            assert result is not None  # else a cancellation went through
            raise result
        return result


class _Gate:
    """Lets the run's built-in tools work in ``cwd``; stops the run at the client's calls.

    Claude Code asks permission for a call as soon as its block is complete, while later
    blocks may still be streaming: refusing (with interrupt) at once aborted the stream and
    lost the parallel calls after it. So each answer to a client call waits until its
    message has ended.
    """

    def __init__(self, cwd: Path, home: Path, builtin: frozenset[str] = frozenset()) -> None:
        self.cwd = cwd
        self.home = home  # the CLI's HOME, for the gate to expand ~ as the CLI does
        self.builtin = builtin
        self._whole: defaultdict[str, trio.Event] = defaultdict(trio.Event)

    def release(self, tool_use_ids: list[str]) -> None:
        for tool_use_id in tool_use_ids:
            self._whole[tool_use_id].set()

    async def pre_tool_use(
        self, data: HookInput, tool_use_id: str | None, context: HookContext
    ) -> HookJSONOutput:
        """Refuse a built-in tool's call before the CLI's own checks, which let reads in
        its cwd run without asking; no opinion on anything else (the client's functions)."""
        name, arguments = data.get("tool_name"), data.get("tool_input")
        if name not in self.builtin or not isinstance(arguments, dict):
            return {}
        refusal = builtin.refusal(str(name), arguments, self.cwd, self.home)
        if refusal is None:
            return {}
        log.info("refused %s outside the run's directory or policy", name)
        return {
            "hookSpecificOutput": {
                "hookEventName": "PreToolUse",
                "permissionDecision": "deny",
                "permissionDecisionReason": refusal,
            }
        }

    async def __call__(
        self, name: str, arguments: dict[str, Any], context: ToolPermissionContext
    ) -> PermissionResult:
        if name in self.builtin:
            refusal = builtin.refusal(name, arguments, self.cwd, self.home)
            if refusal is None:
                return PermissionResultAllow()
            log.info("refused %s outside the run's directory or policy", name)
            return PermissionResultDeny(message=refusal)
        if context.tool_use_id is not None:
            await self._whole[context.tool_use_id].wait()
        return PermissionResultDeny(message=CALL_REFUSAL, interrupt=True)


def _client_server(calling: Calling) -> McpSdkServerConfig:
    functions = [
        SdkMcpTool(f.name, f.description, f.parameters, _not_run_here) for f in calling.functions
    ]
    return create_sdk_mcp_server(CLIENT_SERVER, tools=functions)


async def _not_run_here(arguments: dict[str, Any]) -> dict[str, Any]:
    # The gate refuses every call first; were one ever to get here, it still runs nothing.
    return {"content": [{"type": "text", "text": CALL_REFUSAL}], "is_error": True}


async def _write_transcript(turn: Turn, place: Place) -> None:
    assert place.resume is not None
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    text = transcript.lines(
        turn.messages, session_id=place.resume, cwd=str(place.cwd), model=turn.model, timestamp=now
    )
    try:
        await trio.to_thread.run_sync(transcript.write, place.transcript(place.resume), text)
    except OSError as exc:
        raise errors.WrapperError(
            f"Cannot write the conversation for Claude Code: {exc.strerror}.",
            code="transcript_unavailable",
        ) from exc


async def _close_or_kill(client: ClaudeSDKClient, closed: trio.Event) -> None:
    """Once cancelled (the run ended unfinished), give the CLI ``CLOSE_TIMEOUT`` to close,
    then SIGTERM, then SIGKILL: a wedged CLI never holds a request past its timeout by more
    than that. Its own task, since the SDK closes it shielded (in ``connect()`` too)."""
    try:
        await trio.sleep_forever()
    finally:
        with trio.CancelScope(shield=True):
            await _stop_unless_closed(client, closed)


async def _stop_unless_closed(client: ClaudeSDKClient, closed: trio.Event) -> None:
    for seconds, signum in ((CLOSE_TIMEOUT, signal.SIGTERM), (KILL_TIMEOUT, signal.SIGKILL)):
        with trio.move_on_after(seconds):
            await closed.wait()
        # The SDK gives no handle on its process (the launcher, whose CLI goes with it).
        process = getattr(client._transport, "_process", None)
        if closed.is_set() or process is None or process.returncode is not None:
            return
        log.warning("Claude Code did not close within %g s: sending %s", seconds, signum.name)
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signum)


async def _interrupt(client: ClaudeSDKClient) -> None:
    try:
        await client.interrupt()
    except (ClaudeSDKError, OSError, trio.BrokenResourceError) as exc:
        log.debug("interrupt failed: %s", exc)


@attrs.define
class _Run:
    """What the collector of one run works with, and the state it keeps."""

    calling: Calling
    gate: _Gate
    on_text: TextSink | None = None
    on_call: CallSink | None = None
    streamed: str = ""  # what on_text has been given
    confirmed: str = ""  # the text of the assistant messages Claude Code has confirmed
    error_kind: str | None = None
    # tool_use ids of the message being streamed: the gate holds them until it ends.
    open_calls: list[str] = attrs.Factory(list)
    tracker: CallTracker = attrs.Factory(lambda self: CallTracker(self.calling), takes_self=True)

    async def send_calls(self, deltas: list[CallDelta]) -> None:
        if self.on_call is not None:
            for delta in deltas:
                await self.on_call(delta)


async def _collect(client: ClaudeSDKClient, run: _Run) -> Outcome:
    # Typed as AsyncIterator, but an async generator: close it when we stop early.
    receive = cast("AsyncGenerator[Message, None]", client.receive_messages())
    async with aclosing(receive) as messages:
        async for message in messages:
            if isinstance(message, StreamEvent) and message.parent_tool_use_id is None:
                await _on_event(run, message.event)
            elif isinstance(message, AssistantMessage) and message.parent_tool_use_id is None:
                await _on_assistant(run, message)
            elif isinstance(message, ResultMessage):
                calls = tuple(run.tracker.calls)
                if message.is_error and not calls:  # with calls, the error is our interrupt
                    detail = message.result or "; ".join(message.errors or []) or message.subtype
                    raise upstream.api_error(message.api_error_status, run.error_kind, detail)
                run.tracker.check()
                return Outcome(
                    text=run.confirmed,
                    stop_reason="tool_use" if calls else message.stop_reason,
                    usage=message.usage,
                    cost_usd=message.total_cost_usd,
                    session_id=message.session_id,
                    calls=calls,
                )
    raise errors.UpstreamError("Claude Code ended the run without a result.")


async def _on_event(run: _Run, event: dict[str, Any]) -> None:
    kind = event.get("type")
    if kind == "content_block_start" and event["content_block"].get("type") == "tool_use":
        run.open_calls.append(event["content_block"]["id"])
    elif kind == "message_delta":
        run.gate.release(run.open_calls)
        run.open_calls = []
    text = _text_delta(event)
    if run.on_text is not None and text is not None:
        run.streamed += text
        await run.on_text(text)
    await run.send_calls(run.tracker.feed(event))


async def _on_assistant(run: _Run, message: AssistantMessage) -> None:
    if message.error is not None:  # a synthetic "API Error: ..." message
        run.error_kind = message.error
        return
    run.confirmed += "".join(b.text for b in message.content if isinstance(b, TextBlock))
    if run.on_text is not None:
        # After a broken stream the CLI retries without streaming: its answer arrives
        # whole. Send what was not streamed; refuse to contradict what was.
        if not run.confirmed.startswith(run.streamed):
            raise errors.UpstreamError(
                "The upstream stream broke after partial output and Claude Code"
                " answered again; the partial answer already sent is invalid.",
                code="stream_restarted",
            )
        if rest := run.confirmed[len(run.streamed) :]:
            run.streamed = run.confirmed
            await run.on_text(rest)
    for block in message.content:
        if isinstance(block, ToolUseBlock):
            if block.id not in run.open_calls:  # not streamed: the block came whole
                run.gate.release([block.id])
            await run.send_calls(run.tracker.confirm(block.id, block.name, block.input))


def _text_delta(event: dict[str, Any]) -> str | None:
    delta = event.get("delta", {})
    if event.get("type") == "content_block_delta" and delta.get("type") == "text_delta":
        return str(delta["text"])
    return None


@contextmanager
def _map_errors() -> Iterator[None]:
    """SDK and OS failures as our errors; their text (paths, addresses) goes to the log."""
    try:
        yield
    except CLINotFoundError as exc:
        log.error("Claude Code CLI not found: %s", exc)
        raise errors.UpstreamError(
            "Claude Code CLI not found (see CLAUDE_CLI_PATH).", code="claude_cli_not_found"
        ) from exc
    except CLIConnectionError as exc:
        log.error("could not talk to Claude Code: %s", exc)
        raise errors.UpstreamError("Could not talk to Claude Code.") from exc
    except ClaudeSDKError as exc:
        log.error("Claude Code failed: %s", exc)
        raise errors.UpstreamError(f"Claude Code failed: {upstream.scrub(str(exc))}") from exc
    except OSError as exc:
        log.error("could not start Claude Code: %s", exc)
        raise errors.UpstreamError(f"Could not start Claude Code: {exc.strerror}.") from exc


def _log_stderr(line: str) -> None:
    log.debug("claude: %s", line.rstrip())
