"""The permission gate of one run, and the MCP server that offers the client's functions.

Client functions are the tools of an in-process SDK MCP server, under their own names
(``options.FUNCTION_ENV``), so Claude calls them as real tools. Nothing runs them here:
Claude Code asks permission for each call, and the gate refuses it with ``interrupt``,
which ends the run with the calls in hand.

Claude Code asks permission for a call as soon as its block is complete, while later
blocks may still be streaming: refusing (with interrupt) at once aborted the stream and
lost the parallel calls after it. So each answer to a client call waits until its message
has ended (``release``, fed from wrapper.claude.reader's ``whole``).

Claude Code's own tools (the policy is in wrapper.builtin): the run is offered exactly the
planned set, with no allow rule, so each permission request reaches the gate, which lets a
built-in tool run when ``builtin.refusal`` finds nothing it names outside the run's cwd,
and denies it otherwise, without ending the run. The same check also runs as a
``PreToolUse`` hook, since the CLI lets reads it considers inside its cwd run unasked.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

import trio
from claude_agent_sdk import (
    HookContext,
    HookInput,
    HookJSONOutput,
    McpSdkServerConfig,
    PermissionResult,
    PermissionResultAllow,
    PermissionResultDeny,
    SdkMcpTool,
    ToolPermissionContext,
    create_sdk_mcp_server,
)

from wrapper import builtin
from wrapper.tools import Function

log = logging.getLogger(__name__)

# The in-process MCP server that carries the client's functions.
CLIENT_SERVER = "client"
# What Claude Code records as the refusal; the run ends right after it.
CALL_REFUSAL = "This function is run by the API client; the run stops here for its result."


class Gate:
    """Lets the run's built-in tools work in ``cwd``; stops the run at the client's calls."""

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


def client_server(functions: tuple[Function, ...]) -> McpSdkServerConfig:
    tools = [SdkMcpTool(f.name, f.description, f.parameters, _not_run_here) for f in functions]
    return create_sdk_mcp_server(CLIENT_SERVER, tools=tools)


async def _not_run_here(arguments: dict[str, Any]) -> dict[str, Any]:
    # The gate refuses every call first; were one ever to get here, it still runs nothing.
    return {"content": [{"type": "text", "text": CALL_REFUSAL}], "is_error": True}
