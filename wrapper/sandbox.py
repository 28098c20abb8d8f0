"""The launcher every Claude Code process starts through: it dies with the server, and,
when the sandbox is on, it runs the CLI inside bubblewrap.

Theory of operation. The SDK starts ``cli_path`` with its arguments; the server points
``cli_path`` at a small shell script written at start-up (``install``), which starts the
real CLI in the background, passes on the SDK's signals (so closing a run still works),
and has a watcher check its parent, the server. When the server dies, even by ``kill -9``,
the script's parent changes, and within ``POLL_SECONDS`` the watcher kills the CLI, so
no orphan finishes its turn upstream and spends tokens no client receives. When the
launcher itself is killed (the SDK's last resort), the watcher kills the CLI and ends too,
rather than outlive it. (The kernel's
parent-death signal cannot do this here: Trio forks from a worker thread, and the signal
fires when that thread exits, which idle worker threads do after seconds.)

With the sandbox (``SANDBOX=auto`` finds a working ``bwrap``), the CLI sees the system
read-only, its own place read-write (``$WRAPPER_PLACE``, set per run), a private ``/tmp``
and ``/proc``, the network, and nothing else of the server's: the workdir (every other
place), the state directory (the session table), the server's home (its Claude login)
and the login directory are empty there. So even a wrong tool check, or Bash, cannot
read another client's transcripts or the server's state. The sandbox's processes die with
the launcher (``--die-with-parent``: safe here, since the launcher is single-threaded).

Rules kept here:
- The script is generated from values quoted with ``shlex.quote`` and written 0700 into
  the private state directory; it has no other input than the per-run ``WRAPPER_PLACE``.
- ``auto`` falls back to no sandbox, loudly, when ``bwrap`` is missing or cannot create
  its namespaces (a container without user namespaces); ``bwrap`` refuses to start instead.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
from pathlib import Path

from wrapper.claude import BUNDLED_CLI
from wrapper.config import SANDBOX_MODES

log = logging.getLogger(__name__)

# How often the launcher checks that the server is alive: an orphan lives at most this long.
POLL_SECONDS = 0.5
SCRIPT = """#!/bin/sh
# Written by wrapper.sandbox at start-up: starts Claude Code {how}, and kills it when the
# server that started this script is gone.
server=$PPID
exec 3<&0  # a background job's stdin is /dev/null unless given another descriptor
{command} "$@" 0<&3 3<&- &
child=$!
exec 3<&-
trap 'kill -TERM $child 2>/dev/null' TERM INT HUP
(
    while :; do
        parent=  # stays empty when the launcher itself is gone (killed by the SDK)
        read -r _ _ _ parent _ < /proc/$$/stat
        [ "$parent" = "$server" ] || {{ kill -KILL $child; exit; }}
        sleep {poll}
    done
) < /dev/null > /dev/null 2>&1 &
watcher=$!
wait $child
status=$?
while kill -0 $child 2>/dev/null; do  # a trapped signal ends wait early
    wait $child
    status=$?
done
kill $watcher 2>/dev/null
exit $status
"""


class SandboxUnavailable(Exception):
    """Raised when ``SANDBOX=bwrap`` is asked for and bubblewrap cannot run here."""


def bwrap_works(bwrap: str) -> bool:
    """Whether bubblewrap can create its namespaces on this machine (a real try)."""
    try:
        done = subprocess.run(
            [bwrap, *_BASE, "--ro-bind", "/", "/", "--", "true"],
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


# Namespaces of their own for everything but the network (the CLI talks to the API).
_BASE = ("--unshare-all", "--share-net", "--die-with-parent", "--new-session")


def bwrap_command(bwrap: str, cli: Path, hidden: list[Path]) -> str:
    """The sandboxed command line, as shell text ending before the CLI's arguments."""
    args = [bwrap, *_BASE, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    args += ["--tmpfs", "/tmp"]
    for path in hidden:
        args += ["--tmpfs", str(path)]
    # Put back what must stay visible: the CLI itself (read-only), then the run's place.
    args += ["--ro-bind", str(cli.parent), str(cli.parent)]
    quoted = " ".join(shlex.quote(a) for a in args)
    return f'{quoted} --bind "$WRAPPER_PLACE" "$WRAPPER_PLACE" -- {shlex.quote(str(cli))}'


def install(
    mode: str, cli_path: str | None, directory: Path, hidden: list[Path]
) -> tuple[Path, bool]:
    """Write the launcher into ``directory``; return its path and whether it sandboxes."""
    assert mode in SANDBOX_MODES, mode
    cli = Path(cli_path) if cli_path else BUNDLED_CLI
    resolved = shutil.which(str(cli))
    cli = Path(resolved).resolve() if resolved else cli
    bwrap = shutil.which("bwrap")
    sandboxed = mode != "off" and bwrap is not None and bwrap_works(bwrap)
    if mode == "bwrap" and not sandboxed:
        raise SandboxUnavailable(
            "SANDBOX=bwrap, but bubblewrap is not installed or cannot create namespaces here"
        )
    if mode == "auto" and not sandboxed:
        log.warning(
            "no sandbox for Claude Code (bubblewrap %s): tools are confined by the"
            " server's checks only, and Bash, if allowed, reaches all the server can",
            "is not installed" if bwrap is None else "cannot create namespaces here",
        )
    if sandboxed:
        assert bwrap is not None
        command = bwrap_command(bwrap, cli, sorted(set(hidden)))
    else:
        command = shlex.quote(str(cli))
    script = SCRIPT.format(
        how="in a bubblewrap sandbox" if sandboxed else "directly",
        command=command,
        poll=POLL_SECONDS,
    )
    path = directory / "claude-launcher"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o700)
    with os.fdopen(fd, "w") as out:
        out.write(script)
    os.chmod(path, 0o700)
    return path, sandboxed
