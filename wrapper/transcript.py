"""Claude Code transcripts (``projects/<project key>/<session_id>.jsonl``): a conversation
as the lines of one (pure), and the blocking file work on them (run in a worker thread).

The backend writes these lines where the CLI keeps its transcripts and resumes the
session: that is how a stateless client's conversation, with its function calls and
results, reaches Claude as real ``tool_use`` / ``tool_result`` blocks. After each run it
removes every transcript the run had, whoever wrote it: they hold the whole conversation.

Rules kept here (measured with CLI 2.1.332; a new CLI version must be checked again):
- One line per message, chained by ``parentUuid``; these fields are all the CLI needs
  to load a line. Assistant lines carry a whole API message (id, model, stop_reason).
- The conversation ends with a user message (a question, or results); resumed with
  ``CLAUDE_CODE_RESUME_INTERRUPTED_TURN``, the CLI answers it as it stands. (Sending the
  results as a new prompt instead does not work: on resume the CLI closes calls left
  open with a synthetic "interrupted" result and drops the real one.)
- Uuids derive from the session id, so the same input gives the same lines.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import uuid
from pathlib import Path
from typing import Any


def lines(
    messages: tuple[dict[str, Any], ...], *, session_id: str, cwd: str, model: str, timestamp: str
) -> str:
    """The transcript text; ``timestamp`` is ISO 8601 UTC, as the CLI writes it."""
    assert messages and messages[-1]["role"] == "user", "the CLI answers a final user message"
    namespace = uuid.UUID(session_id)
    out = []
    parent: str | None = None
    for index, message in enumerate(messages):
        this = str(uuid.uuid5(namespace, str(index)))
        out.append(
            {
                "parentUuid": parent,
                "isSidechain": False,
                "type": message["role"],
                "message": _message(message, index, model),
                "uuid": this,
                "timestamp": timestamp,
                "sessionId": session_id,
                "cwd": cwd,
                "userType": "external",
            }
        )
        parent = this
    return "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in out)


def _message(message: dict[str, Any], index: int, model: str) -> dict[str, Any]:
    if message["role"] == "user":
        return {"role": "user", "content": message["content"]}
    calls = any(block["type"] == "tool_use" for block in message["content"])
    return {
        "id": f"msg_transcript_{index}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": message["content"],
        "stop_reason": "tool_use" if calls else "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 0, "output_tokens": 0},
    }


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def remove(projects: Path, session_ids: set[str]) -> None:
    """Remove the sessions' transcripts, their side directories, and emptied projects."""
    for session_id in session_ids:
        for path in projects.glob(f"*/{session_id}.jsonl"):
            path.unlink(missing_ok=True)
            shutil.rmtree(path.with_suffix(""), ignore_errors=True)
            with contextlib.suppress(OSError):  # not empty: someone else's project
                path.parent.rmdir()
