"""The Claude Code backend: the only package that imports ``claude_agent_sdk``.

One run = one ``ClaudeSDKClient`` (one CLI process) answering one planned turn
(wrapper.plan) in a place (wrapper.places: its own cwd, HOME and CLAUDE_CONFIG_DIR, made
and owned by wrapper.placement). Its contract: a turn and a place in, a stream of events
(wrapper.events) out, ending with ``Finished`` or ``Failed``::

    async with backend.run(turn, place) as events:
        async for event in events:
            ...  # leave at any event: that stops the run (interrupt, then close)

The channel has no buffer, so Claude Code is read no faster than the consumer takes its
events. One module per job:
- ``options``: pure, the SDK's options and the CLI's environment for a turn;
- ``reader``: pure, the SDK's messages -> events (with both stream-restart checks);
- ``gate``: the permission gate (built-in tools confined, client calls stop the run) and
  the MCP server that offers the client's functions;
- ``process``: the Trio adapter (connect, query, interrupt, close or kill, SDK errors);
- ``backend``: ``Backend``, a run's files and environment, and the channel of its events.
Here, with no other import, the two facts of the SDK the rest of the server needs: where
the bundled CLI is, and where a CLI keeps the transcripts of a cwd.

Client functions: a conversation that holds calls and results is written as a transcript
in the place's projects directory and resumed (``options.RESUME_ENV``): the CLI answers
its last user message with no new prompt, so every result reaches Claude as a
``tool_result`` block. Claude Code's own tools are never reported to the client: only the
assistant's text, before and after, and the client's own function calls.
"""

from __future__ import annotations

from pathlib import Path

import claude_agent_sdk

# The CLI the pinned SDK bundles (used unless CLAUDE_CLI_PATH names another).
BUNDLED_CLI = Path(claude_agent_sdk.__file__).parent / "_bundled" / "claude"


def project_key(cwd: Path) -> str:
    """The name of the directory under ``<CLAUDE_CONFIG_DIR>/projects`` where the CLI keeps
    the transcripts of runs in ``cwd``."""
    return claude_agent_sdk.project_key_for_directory(cwd)
