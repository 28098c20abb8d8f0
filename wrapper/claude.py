"""The Claude Code backend: the only module that imports ``claude_agent_sdk``.

One run = one ``ClaudeSDKClient`` (one CLI process) in a fresh scratch directory, with
Claude Code's tools off, answering one turn. Text deltas are handed to ``on_text`` as they
arrive; the run returns an ``Outcome`` built from the final ``result`` message.

Rules kept here:
- SDK and OS exceptions are translated into ``wrapper.errors`` at this boundary
  (``_map_errors``); API failures, which the CLI reports as an error result rather than
  an exception, are mapped by their HTTP status in ``_api_error``.
- A run that does not finish (client gone, timeout, shutdown) is stopped with
  ``interrupt()``, shielded and bounded, before the process is closed: measured here,
  this aborts the upstream stream and frees the CLI in about 0.1 s, where plain
  cancellation lets the CLI finish its answer and takes about 4.5 s to close.
- The process, the scratch directory and the CLI's transcript of the run (which holds
  the whole conversation) never outlive the run.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from contextlib import aclosing, contextmanager
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
    Message,
    ResultMessage,
    StreamEvent,
    SystemMessage,
    TextBlock,
)

from wrapper import errors
from wrapper.config import Config
from wrapper.convert import Turn

log = logging.getLogger(__name__)

# interrupt() answered in ~30 ms when measured; past this the CLI is wedged, so close it.
INTERRUPT_TIMEOUT = 2.0
# Anthropic's 429/529 bodies reach us without their Retry-After; these are our hints.
RATE_LIMIT_RETRY_AFTER = 30
UNAVAILABLE_RETRY_AFTER = 10
# AssistantMessage.error kinds, for results that do not carry api_error_status.
ERROR_KIND_STATUS = {
    "rate_limit": 429,
    "server_error": 503,
    "authentication_failed": 401,
    "billing_error": 403,
    "invalid_request": 400,
}

TextSink = Callable[[str], Awaitable[None]]


@attrs.frozen
class Outcome:
    """What a finished run reports: its text, stop reason, usage and cost."""

    text: str
    stop_reason: str | None
    usage: dict[str, Any] | None
    cost_usd: float | None
    session_id: str


class Backend:
    """Runs Claude Code turns under the server's configuration."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.live_processes = 0

    def options(self, turn: Turn, cwd: Path) -> ClaudeAgentOptions:
        return ClaudeAgentOptions(
            tools=[],
            max_turns=self.config.max_turns,
            include_partial_messages=True,
            system_prompt=turn.system_prompt,
            model=turn.model,
            cwd=cwd,
            cli_path=self.config.cli_path,
            env=dict(self.config.claude_env),
            # No user/project settings: the server's behaviour must not depend on them.
            setting_sources=[],
            stderr=_log_stderr,
        )

    async def run(self, turn: Turn, on_text: TextSink | None = None) -> Outcome:
        """Answer one turn; ``on_text``, if given, gets each text delta as it arrives."""
        try:
            self.config.workdir.mkdir(parents=True, exist_ok=True)
            cwd = Path(tempfile.mkdtemp(prefix="run-", dir=self.config.workdir))
        except OSError as exc:
            raise errors.WrapperError(
                f"Cannot create a working directory for Claude Code: {exc.strerror}.",
                code="workdir_unavailable",
            ) from exc
        client = ClaudeSDKClient(self.options(turn, cwd))
        session_ids: set[str] = set()
        finished = False
        self.live_processes += 1
        try:
            with _map_errors(self.config.cli_path):
                await client.connect()
                await client.query(turn.prompt)
                outcome = await _collect(client, on_text, session_ids)
                finished = True
                return outcome
        finally:
            with trio.CancelScope(shield=True):
                if not finished:
                    with trio.move_on_after(INTERRUPT_TIMEOUT):
                        await _interrupt(client)
                await client.disconnect()
                self.live_processes -= 1
                projects = self.config.claude_config_dir() / "projects"
                await trio.to_thread.run_sync(_remove_run_files, cwd, projects, session_ids)


async def _interrupt(client: ClaudeSDKClient) -> None:
    try:
        await client.interrupt()
    except (ClaudeSDKError, OSError, trio.BrokenResourceError) as exc:
        log.debug("interrupt failed: %s", exc)


def _remove_run_files(cwd: Path, projects: Path, session_ids: set[str]) -> None:
    shutil.rmtree(cwd, ignore_errors=True)
    for session_id in session_ids:
        for transcript in projects.glob(f"*/{session_id}.jsonl"):
            transcript.unlink(missing_ok=True)
            shutil.rmtree(transcript.with_suffix(""), ignore_errors=True)
            with contextlib.suppress(OSError):  # not empty: someone else's project
                transcript.parent.rmdir()


async def _collect(
    client: ClaudeSDKClient, on_text: TextSink | None, session_ids: set[str]
) -> Outcome:
    streamed = ""  # what on_text has been given
    confirmed = ""  # the text of the assistant messages Claude Code has confirmed
    error_kind: str | None = None
    # Typed as AsyncIterator, but an async generator: close it when we stop early.
    receive = cast("AsyncGenerator[Message, None]", client.receive_messages())
    async with aclosing(receive) as messages:
        async for message in messages:
            if isinstance(message, SystemMessage) and message.subtype == "init":
                session_ids.add(str(message.data.get("session_id")))
            elif isinstance(message, StreamEvent):
                text = _text_delta(message.event)
                if on_text is not None and text is not None and message.parent_tool_use_id is None:
                    streamed += text
                    await on_text(text)
            elif isinstance(message, AssistantMessage) and message.parent_tool_use_id is None:
                if message.error is not None:  # a synthetic "API Error: ..." message
                    error_kind = message.error
                    continue
                confirmed += "".join(b.text for b in message.content if isinstance(b, TextBlock))
                if on_text is None:  # not streaming: nothing to reconcile
                    continue
                # After a broken stream the CLI retries without streaming: its answer
                # arrives whole. Send what was not streamed; refuse to contradict what was.
                if not confirmed.startswith(streamed):
                    raise errors.UpstreamError(
                        "The upstream stream broke after partial output and Claude Code"
                        " answered again; the partial answer already sent is invalid.",
                        code="stream_restarted",
                    )
                if rest := confirmed[len(streamed) :]:
                    streamed = confirmed
                    await on_text(rest)
            elif isinstance(message, ResultMessage):
                if message.is_error:
                    raise _api_error(message, error_kind)
                return Outcome(
                    text=confirmed,
                    stop_reason=message.stop_reason,
                    usage=message.usage,
                    cost_usd=message.total_cost_usd,
                    session_id=message.session_id,
                )
    raise errors.UpstreamError("Claude Code ended the run without a result.")


def _text_delta(event: dict[str, Any]) -> str | None:
    delta = event.get("delta", {})
    if event.get("type") == "content_block_delta" and delta.get("type") == "text_delta":
        return str(delta["text"])
    return None


def _api_error(result: ResultMessage, error_kind: str | None) -> errors.WrapperError:
    status = result.api_error_status or ERROR_KIND_STATUS.get(error_kind or "")
    detail = (result.result or "; ".join(result.errors or []) or result.subtype)[:300]
    if status == 429:
        return errors.UpstreamRateLimited(
            f"Anthropic rate limit reached: {detail}", retry_after=RATE_LIMIT_RETRY_AFTER
        )
    if status in (401, 403):
        return errors.UpstreamAuthError(
            f"Claude Code is not authenticated (Anthropic answered {status}). Log in with"
            " 'claude' or set ANTHROPIC_API_KEY for the server."
        )
    if status == 404:
        return errors.ModelNotFound(
            f"Anthropic refused the model or resource: {detail}", param="model"
        )
    if status is not None and (status >= 500 or status == 529):
        return errors.UpstreamUnavailable(
            f"Anthropic is unavailable ({status}): {detail}", retry_after=UNAVAILABLE_RETRY_AFTER
        )
    if status is not None and 400 <= status < 500:
        return errors.UpstreamBadRequest(f"Anthropic refused the request ({status}): {detail}")
    return errors.UpstreamError(f"Claude Code run failed: {detail}")


@contextmanager
def _map_errors(cli_path: str | None) -> Iterator[None]:
    try:
        yield
    except CLINotFoundError as exc:
        log.error("Claude Code CLI not found: %s", exc)
        raise errors.UpstreamError(
            f"Claude Code CLI not found{f' at {cli_path}' if cli_path else ''}.",
            code="claude_cli_not_found",
        ) from exc
    except CLIConnectionError as exc:
        raise errors.UpstreamError(f"Could not talk to Claude Code: {exc}") from exc
    except ClaudeSDKError as exc:
        raise errors.UpstreamError(f"Claude Code failed: {str(exc)[:300]}") from exc
    except OSError as exc:
        raise errors.UpstreamError(f"Could not start Claude Code: {exc.strerror}") from exc


def _log_stderr(line: str) -> None:
    log.debug("claude: %s", line.rstrip())
