"""Pure: a planned turn in its place -> the SDK's options and the CLI's environment.

- The CLI's environment is the allowed base (``Config.claude_environment``), the place's
  HOME and CLAUDE_CONFIG_DIR, and the credentials (wrapper.auth); nothing else.
- No user or project settings (``setting_sources=[]``): the server's behaviour must not
  depend on files it does not own.
- The system prompt is read from a file of the place (``--system-prompt-file``): one
  command-line argument is capped at 128 KiB (Linux's MAX_ARG_STRLEN), a client's system
  prompt is not.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import cast

from claude_agent_sdk import ClaudeAgentOptions, HookMatcher, PermissionMode
from claude_agent_sdk.types import SystemPromptFile

from wrapper.claude.gate import CLIENT_SERVER, Gate, client_server
from wrapper.config import Config
from wrapper.places import Place
from wrapper.plan import Turn

log = logging.getLogger(__name__)

# For runs that offer client functions (CLI 2.1.332 settings, checked by tests/test_tools.py):
FUNCTION_ENV = {
    # SDK MCP tools keep the client's names, not mcp__client__<name>.
    "CLAUDE_AGENT_SDK_MCP_NO_PREFIX": "1",
    # No tool search: every function is offered whole, with no placeholder tool beside it.
    "ENABLE_TOOL_SEARCH": "false",
}
# A resumed transcript that ends with a user message is answered as it stands.
RESUME_ENV = {"CLAUDE_CODE_RESUME_INTERRUPTED_TURN": "1"}


def environment(
    turn: Turn, place: Place, base: dict[str, str], credentials: dict[str, str]
) -> dict[str, str]:
    """The CLI's whole environment: the allowed ``base``, the credentials, the place."""
    env = {**base, **credentials}
    env.update(
        HOME=str(place.root),
        CLAUDE_CONFIG_DIR=str(place.config_dir),
        WRAPPER_PLACE=str(place.root),
    )
    if turn.functions:
        env.update(FUNCTION_ENV)
    if turn.messages:  # the transcript written for this run ends with the question
        env.update(RESUME_ENV)
    if turn.max_output_tokens is not None:  # the max_tokens of each of the run's API calls
        env["CLAUDE_CODE_MAX_OUTPUT_TOKENS"] = str(turn.max_output_tokens)
    return env


def options(
    turn: Turn,
    place: Place,
    gate: Gate,
    env: dict[str, str],
    config: Config,
    launcher: Path | None,
) -> ClaudeAgentOptions:
    tools = sorted(turn.tools)
    return ClaudeAgentOptions(
        tools=tools,
        mcp_servers={CLIENT_SERVER: client_server(turn.functions)} if turn.functions else {},
        can_use_tool=gate if turn.functions or tools else None,
        # Also before every call of a built-in tool, including those the CLI would allow
        # by itself (reads in its cwd): the gate judges what they will touch.
        hooks={"PreToolUse": [HookMatcher(hooks=[gate.pre_tool_use], on_failure="block")]}
        if tools
        else None,
        permission_mode=cast("PermissionMode", config.permission_mode) if tools else None,
        resume=place.resume,
        fork_session=place.fork,
        max_turns=config.max_turns,
        include_partial_messages=True,
        system_prompt=SystemPromptFile(type="file", path=str(place.system_prompt))
        if turn.system_prompt is not None
        else None,
        model=turn.model,
        output_format={"type": "json_schema", "schema": turn.output_schema}
        if turn.output_schema is not None
        else None,
        cwd=place.cwd,
        cli_path=launcher or config.cli_path,
        env=env,
        setting_sources=[],
        stderr=_log_stderr,
    )


def _log_stderr(line: str) -> None:
    log.debug("claude: %s", line.rstrip())
