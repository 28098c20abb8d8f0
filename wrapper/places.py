"""Places: the private directories Claude Code runs in. Blocking file code, no Trio (the
backend and the session code call it from worker threads).

A place is one directory, private to the server's user, that holds all a run touches:
- ``work/``: the run's cwd, the only directory its file tools may reach (wrapper.builtin);
- ``claude/``: the CLI's own state for this place (``CLAUDE_CONFIG_DIR``: its settings
  and the transcripts it resumes, and the run's system prompt), so no run's CLI ever sees
  another's conversations;
- the place itself is the CLI's ``HOME``, so ``~`` names the place, not the server's home.
A stateless run gets a fresh place that is removed after it; a session or a continuation
chain keeps its place until it is deleted or expires.

Rules kept here:
- Directories are created 0700 one level at a time, never through a symlink: a component
  that exists already must be a real directory owned by this user (``make``). Files the
  CLI writes inherit the server's umask (0077 under ``python -m wrapper``).
- The workdir and the state directory are checked at start-up (``check_private``): created
  if missing, else each must be a directory owned by this user and not a symlink; each is
  made private (0700).
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path

import attrs

from wrapper.claude import project_key

PRIVATE = 0o700


class UnsafeDirectory(Exception):
    """Raised when a directory the server must own is a symlink, not a directory, or
    belongs to another user."""


@attrs.frozen
class Place:
    """Where one run works; ``resume``: the Claude session it continues, if any."""

    root: Path
    resume: str | None = None
    fork: bool = False  # resume into a new Claude session, leaving ``resume`` as it was

    @property
    def cwd(self) -> Path:
        return self.root / "work"

    @property
    def config_dir(self) -> Path:
        return self.root / "claude"

    @property
    def project(self) -> Path:
        """Where the CLI keeps the transcripts of runs in this place."""
        return self.config_dir / "projects" / project_key(self.cwd)

    @property
    def system_prompt(self) -> Path:
        """The run's system prompt, read by the CLI (``--system-prompt-file``)."""
        return self.config_dir / "system-prompt.md"

    def transcript(self, claude_session_id: str) -> Path:
        return self.project / f"{claude_session_id}.jsonl"


def _own_directory(path: Path) -> None:
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise UnsafeDirectory(f"{path} is not a plain directory (a symlink or a file)")
    if info.st_uid != os.geteuid():
        raise UnsafeDirectory(f"{path} belongs to another user (uid {info.st_uid})")


def _mkdir(path: Path) -> None:
    try:
        os.mkdir(path, PRIVATE)
    except FileExistsError:
        _own_directory(path)


def make(place: Place, workdir: Path) -> None:
    """Create the place's directories below ``workdir``, following nothing planted."""
    relative = place.root.relative_to(workdir)
    path = workdir
    for part in relative.parts:
        path = path / part
        _mkdir(path)
    _mkdir(place.cwd)
    _mkdir(place.config_dir)


def temporary(workdir: Path) -> Place:
    """A fresh place for one stateless run (mkdtemp: a new name, created 0700)."""
    return Place(Path(tempfile.mkdtemp(prefix="run-", dir=workdir)))


def remove(root: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)


def check_private(path: Path) -> None:
    """Create a directory of the server's, or check an existing one is ours; make it
    private."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _mkdir(path)
        os.chmod(path, PRIVATE)  # just checked: a directory of ours, not a symlink
    except OSError as exc:
        raise UnsafeDirectory(f"cannot use {path}: {exc.strerror}") from exc
