"""contrib/: each deployment file checked by the tool that will run it, and against the server.

- wrapper.service: ``systemd-analyze verify``; its offline security rating, exactly, and
  each hardening line shown to count (a copy without it rates worse); what bubblewrap
  needs left open; its command line and environment start the real server, which keeps
  its sessions in the state directory apart from HOME, reports READY=1 and, on the
  unit's KillSignal, STOPPING=1 and a clean exit within TimeoutStopSec; its descriptor
  limit holds the server's measured use at full load plus the connections it promises.
- nginx.conf: ``nginx -t`` on the file as shipped; then Debian's nginx runs a copy of it on
  127.0.0.1 (its ports, certificate and upstreams rewritten) in front of real servers: a
  stream must arrive over time, a session header must pin one instance, answers carry
  HSTS over TLS and no nginx version, and a flood gets 429s with an OpenAI error body.
- Dockerfile, its .dockerignore and docker-compose.yml: no Docker engine runs here, so
  hadolint, the build context built into a wheel, the HEALTHCHECK command run against a
  real server, the image's environment loaded as the server's Config, and invariants
  (everything written lands on a volume or tmpfs under a read-only root).

The tools come from Debian (``make contrib-deps``); a missing one fails, never skips.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import uuid
import zipfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio

from tests.conftest import Server, offline_env, required_tool
from tests.mock_anthropic import MockAnthropic, Reply
from wrapper import config as config_module
from wrapper.config import Config
from wrapper.server import CANCEL_MARGIN

ROOT = Path(__file__).parent.parent
CONTRIB = ROOT / "contrib"
DEFAULTS = Config()
# Variables the contrib files set that are not the wrapper's own settings (those are in
# the README's configuration table): Claude Code's, Python's, pip's, the login's.
OTHER_SETTINGS = {
    "HOME",
    "ANTHROPIC_API_KEY",
    "CLAUDE_CODE_OAUTH_TOKEN",
    "CLAUDE_CODE_MAX_RETRIES",
    "CLAUDE_CONFIG_DIR",
    "DISABLE_AUTOUPDATER",
    "PYTHONDONTWRITEBYTECODE",
    "PIP_NO_CACHE_DIR",
    "PIP_DISABLE_PIP_VERSION_CHECK",
}


# --- parsing the files ----------------------------------------------------------------


def unit_settings(text: str) -> list[tuple[str, str, str]]:
    """(section, key, value) for each line of a systemd unit, in order; keys may repeat."""
    section, settings = "", []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        settings.append((section, key, value))
    return settings


def service(key: str) -> list[str]:
    text = (CONTRIB / "wrapper.service").read_text()
    return [v for s, k, v in unit_settings(text) if (s, k) == ("Service", key)]


def unit_environment() -> dict[str, str]:
    pairs = [item.split("=", 1) for line in service("Environment") for item in shlex.split(line)]
    return dict(pairs)


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuations joined and comment lines dropped."""
    instructions, current = [], ""
    for line in (CONTRIB / "Dockerfile").read_text().splitlines():
        if line.lstrip().startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        if current.strip():
            word, _, rest = current.strip().partition(" ")
            instructions.append((word.upper(), rest.strip()))
        current = ""
    return instructions


def docker(instruction: str) -> list[str]:
    return [rest for word, rest in dockerfile() if word == instruction]


def docker_environment() -> dict[str, str]:
    pairs = [item.split("=", 1) for line in docker("ENV") for item in shlex.split(line)]
    assert all(len(pair) == 2 for pair in pairs), "ENV KEY=value form only"
    return dict(pairs)


def healthcheck_command() -> list[str]:
    [line] = docker("HEALTHCHECK")
    command: list[str] = json.loads(line.split(" CMD ", 1)[1])
    return command


def compose() -> dict[str, Any]:
    # Not in setup.cfg's extras: make contrib-deps installs it.
    try:
        import yaml  # type: ignore[import-untyped]
    except ImportError:
        pytest.fail("PyYAML is not installed: `make contrib-deps` installs it", pytrace=False)
    loaded: dict[str, Any] = yaml.safe_load((CONTRIB / "docker-compose.yml").read_text())
    return loaded


def seconds(value: str) -> float:
    """``30s``, ``1m``, ``3600s`` or a bare number of seconds (systemd, nginx, compose)."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|min)?", value.strip())
    assert match, value
    return float(match[1]) * {"ms": 0.001, "s": 1, "m": 60, "min": 60, None: 1}[match[2]]


def env_example() -> dict[str, str]:
    """Every KEY=value of env.example, commented-out ones included."""
    found = re.findall(r"(?m)^#?([A-Z][A-Z0-9_]+)=(.*)$", (CONTRIB / "env.example").read_text())
    return dict(found)


# --- systemd --------------------------------------------------------------------------


def test_unit_verifies(tmp_path: Path) -> None:
    # verify refuses an ExecStart binary that does not exist, and /opt/claude-wrapper does
    # not here: the copy runs this interpreter instead. Nothing else is changed.
    analyze = required_tool("systemd-analyze")
    text = (CONTRIB / "wrapper.service").read_text()
    text, count = re.subn(r"(?m)^ExecStart=\S+/python ", f"ExecStart={sys.executable} ", text)
    assert count == 1, "ExecStart= should run the venv's python"
    unit = tmp_path / "claude-wrapper.service"
    unit.write_text(text)
    result = subprocess.run(
        [analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60
    )
    output = result.stdout + result.stderr
    # A bad line is only a warning naming the unit (exit status 0): that fails too. What the
    # host's own units provoke does not name ours.
    assert result.returncode == 0, output
    assert unit.name not in output, output


# systemd-analyze's rating of the unit, 0 (locked down) to 10, and the checks it fails,
# each on purpose: the CLI is a JIT runtime (W^X), serves and calls over the network,
# bubblewrap (SANDBOX) builds its namespaces with these calls and needs /proc unmasked,
# and the service runs on the host's root with its own user. Any change is a decision:
# make it here and in the README's figure.
EXPOSURE = 2.5
EXPOSED = {
    "MemoryDenyWriteExecute=",
    "PrivateNetwork=",
    "IPAddressDeny=",
    "RestrictAddressFamilies=~AF_(INET|INET6)",
    "RestrictAddressFamilies=~AF_UNIX",
    *(f"RestrictNamespaces=~{ns}" for ns in ("user", "mnt", "pid", "ipc", "uts", "cgroup")),
    "SystemCallFilter=~@privileged",
    "SystemCallFilter=~@mount",
    "ProtectKernelTunables=",
    "ProtectKernelLogs=",
    "RootDirectory=/RootImage=",
    "PrivateUsers=",
    "ProcSubset=",
    "DeviceAllow=",
}
# Lines among the hardening ones that the rating does not weigh: how a refused system
# call fails is not a protection.
UNRATED = {"SystemCallErrorNumber"}
# The one hardening line that loosens: what bubblewrap calls, back from @privileged and
# @mount (see test_unit_lets_bubblewrap_build_its_sandbox).
BWRAP_FILTER = "SystemCallFilter=capset pivot_root mount umount2"


def security(analyze: str, unit: Path) -> set[str]:
    """The names of the checks ``systemd-analyze security`` finds the unit failing."""
    result = subprocess.run(
        [analyze, "security", "--offline=true", "--json=short", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return {check["name"] for check in json.loads(result.stdout) if check["set"] is False}


def test_unit_hardening_score(tmp_path: Path) -> None:
    analyze = required_tool("systemd-analyze")
    unit = tmp_path / "claude-wrapper.service"
    shutil.copy(CONTRIB / "wrapper.service", unit)
    result = subprocess.run(
        [analyze, "security", "--offline=true", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    rating = re.search(r"Overall exposure level for \S+: (\d+\.\d)", result.stdout)
    assert rating, result.stdout + result.stderr
    assert float(rating[1]) == EXPOSURE
    assert security(analyze, unit) == EXPOSED


def hardening_lines(lines: list[str]) -> list[int]:
    """Indices of the unit's hardening lines: User=, and the [Service] lines from the
    "# Hardening." comment on, but for those the rating does not weigh."""
    start = next(i for i, line in enumerate(lines) if line.startswith("# Hardening."))
    end = lines.index("[Install]")
    found = [i for i, line in enumerate(lines) if line.startswith("User=")]
    for i in range(start, end):
        key = lines[i].partition("=")[0]
        if lines[i] and not lines[i].startswith("#") and key not in UNRATED:
            found.append(i)
    return found


def test_unit_each_hardening_line_counts(tmp_path: Path) -> None:
    """A copy of the unit without any one hardening line fails a check that the unit passes
    (the bubblewrap line: passes two it fails), so that no line is there for show. One
    systemd-analyze run of about 5 ms per line."""
    analyze = required_tool("systemd-analyze")
    lines = (CONTRIB / "wrapper.service").read_text().splitlines()
    unit = tmp_path / "claude-wrapper.service"
    indices = hardening_lines(lines)
    assert len(indices) == 24, [lines[i] for i in indices]
    for i in indices:
        unit.write_text("\n".join(lines[:i] + lines[i + 1 :]) + "\n")
        failing = security(analyze, unit)
        if lines[i] == BWRAP_FILTER:
            assert EXPOSED - failing == {
                "SystemCallFilter=~@privileged",
                "SystemCallFilter=~@mount",
            }
            assert failing <= EXPOSED
        else:
            assert failing - EXPOSED, f"without {lines[i]!r} no check fails that passed"


# What bubblewrap does to build the sandbox the server runs each CLI in (--unshare-all
# --share-net --proc /proc --dev /dev ...), traced with strace -f as an unprivileged user:
# the namespaces its clone() and unshare() ask for (a cgroup one because the kernel has
# it), and every system call it makes.
BWRAP_NAMESPACES = {"user", "mnt", "pid", "ipc", "uts", "cgroup"}
BWRAP_CALLS_TRACED = """
    access arch_prctl bind brk capget capset chdir clone close creat eventfd2 execve
    exit_group faccessat2 fchdir fcntl getcwd getdents64 geteuid getgid getpid getrandom
    getuid ioctl mkdir mmap mount mprotect munmap newfstatat openat pivot_root poll prctl
    pread64 prlimit64 read readlink recvfrom rseq rt_sigprocmask sendto set_robust_list
    set_tid_address setsid signalfd4 socket statfs symlink umask umount2 unshare wait4
    write"""


def syscall_groups(analyze: str) -> dict[str, list[str]]:
    """systemd's named sets of system calls (@system-service...), members as listed."""
    listing = subprocess.run(
        [analyze, "syscall-filter", "--no-pager"], capture_output=True, text=True, timeout=60
    ).stdout
    groups: dict[str, list[str]] = {}
    for line in listing.splitlines():
        if line.startswith("@"):
            members = groups.setdefault(line.strip(), [])
        elif line.strip() and not line.strip().startswith("#"):
            members.append(line.strip())
    return groups


def allowed_calls(filters: list[str], groups: dict[str, list[str]]) -> set[str]:
    """The system calls a unit's SystemCallFilter= lines allow, merged as systemd does:
    the first line is an allow list; later ones add to it, or take away with ``~``."""

    def expand(name: str) -> set[str]:
        if not name.startswith("@"):
            return {name}
        return set().union(*(expand(member) for member in groups[name]))

    assert not filters[0].startswith("~"), "an allow list first"
    allowed: set[str] = set()
    for line in filters:
        names = set().union(*(expand(n) for n in line.removeprefix("~").split()))
        allowed = allowed - names if line.startswith("~") else allowed | names
    return allowed


def test_unit_lets_bubblewrap_build_its_sandbox() -> None:
    """What SANDBOX=bwrap needs is allowed, no more: no network namespace (the CLI needs
    the network; a network namespace would hand it CAP_NET_ADMIN over netfilter)."""
    [namespaces] = service("RestrictNamespaces")
    assert set(namespaces.split()) == BWRAP_NAMESPACES
    allowed = allowed_calls(
        service("SystemCallFilter"), syscall_groups(required_tool("systemd-analyze"))
    )
    traced = set(BWRAP_CALLS_TRACED.split())
    assert allowed >= traced, sorted(traced - allowed)
    # The rest of ~@privileged and ~@resources stays refused.
    assert not {"setuid", "chroot", "sethostname", "setrlimit", "syslog"} & allowed
    # Their read-only mounts over /proc/sys and /proc/kmsg make the kernel refuse the
    # fresh /proc bubblewrap mounts in its pid namespace (EPERM; reproduced with unshare).
    for key in ("ProtectKernelTunables", "ProtectKernelLogs"):
        assert service(key) in ([], ["no"]), key
    assert service("ProcSubset") in ([], ["all"])


def test_unit_fits_the_server() -> None:
    assert service("Type") == ["notify"]
    # Only the server gets SIGTERM: it ends its own Claude Code runs after the grace period.
    assert service("KillMode") == ["mixed"]
    assert service("KillSignal") == ["SIGTERM"]
    [stop] = service("TimeoutStopSec")
    assert seconds(stop) >= DEFAULTS.shutdown_grace + CANCEL_MARGIN + 10
    # The CLI is a JIT runtime: W^X memory would kill it.
    assert service("MemoryDenyWriteExecute") in ([], ["no"])
    # The server's state and Claude Code's home: two directories systemd keeps across
    # restarts, neither inside the other; the first is the server's STATE_DIRECTORY.
    [directories] = service("StateDirectory")
    state, home = (Path("/var/lib", d) for d in directories.split())
    assert state.name == "state"
    assert unit_environment()["HOME"] == str(home)
    assert not home.is_relative_to(state) and not state.is_relative_to(home)
    assert service("ProtectSystem") == ["strict"]
    assert service("EnvironmentFile") == ["-/etc/claude-wrapper/env"]


@attrs.frozen
class UnitServer:
    process: trio.Process
    url: str
    notify: trio.socket.SocketType
    lib: Path  # stands for /var/lib


@asynccontextmanager
async def unit_server(mock: MockAnthropic, tmp_path: Path) -> AsyncIterator[UnitServer]:
    """The unit's ExecStart, Environment= and env.example's settings, as systemd would run
    them: /var/lib moved into tmp_path (HOME, and the StateDirectory= paths systemd would
    create and pass as STATE_DIRECTORY); started once READY=1 came."""
    [exec_start] = service("ExecStart")
    port = free_port()
    command = [sys.executable, *shlex.split(exec_start)[1:], "--port", str(port)]
    lib = tmp_path / "lib"
    [directories] = service("StateDirectory")
    states = [lib / d for d in directories.split()]
    for state in states:
        state.mkdir(parents=True, mode=0o700)
    home = lib / unit_environment()["HOME"].removeprefix("/var/lib/")
    environ = {
        **os.environ,
        **{k: v for k, v in env_example().items() if v},
        **unit_environment(),
        **offline_env(mock.url, home),
        "STATE_DIRECTORY": ":".join(map(str, states)),
    }
    environ.pop("WRAPPER_STATE_DIR", None)
    notify_name = f"claude-wrapper-test-{uuid.uuid4().hex}"
    environ["NOTIFY_SOCKET"] = f"@{notify_name}"
    with trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        await notify.bind(f"\0{notify_name}")
        process = await trio.lowlevel.open_process(command, env=environ, stderr=subprocess.DEVNULL)
        try:
            with trio.fail_after(20):
                assert "READY=1" in (await notify.recv(4096)).decode().split("\n")
            yield UnitServer(process, f"http://127.0.0.1:{port}", notify, lib)
        finally:
            if process.returncode is None:
                process.kill()
            await process.wait()


async def test_unit_command_runs_the_server(mock: MockAnthropic, tmp_path: Path) -> None:
    """READY=1 once serving; a session's table in the state directory, Claude Code's files
    in HOME, apart; then KillSignal -> STOPPING=1 and exit status 0 (no restart) within
    TimeoutStopSec."""
    [kill_signal] = service("KillSignal")
    [stop_timeout] = service("TimeoutStopSec")
    async with unit_server(mock, tmp_path) as unit:
        # Closed before the signal: the server waits for a connection kept alive.
        async with httpx.AsyncClient(timeout=30) as http:
            body = {"session_id": "s1", "messages": [{"role": "user", "content": "hi"}]}
            response = await http.post(f"{unit.url}/v1/chat/completions", json=body)
        assert response.json()["choices"][0]["message"]["content"] == "Hello from the mock."
        unit.process.send_signal(signal.Signals[kill_signal])
        with trio.fail_after(seconds(stop_timeout)):
            while "STOPPING=1" not in (await unit.notify.recv(4096)).decode().split("\n"):
                pass
            assert await unit.process.wait() == 0
    [directories] = service("StateDirectory")
    state, home = (unit.lib / d for d in directories.split())
    # The session table, the launcher every CLI starts through (wrapper.sandbox) and the
    # places (wrapper.places), the session's with its transcript; nothing in HOME.
    names = sorted(p.name for p in state.iterdir())
    assert names == ["claude-launcher", "sessions.sqlite3", "work"]
    assert list(state.glob("work/sessions/*/claude/projects/*/*.jsonl")), "no transcript"
    assert not list(home.rglob("*.jsonl"))
    assert not list(home.rglob("*.sqlite3"))


# The unit's comment promises room for about 8000 client connections next to the runs.
CONNECTIONS = 8000


async def test_unit_file_limit_fits_runs_and_connections(
    mock: MockAnthropic, tmp_path: Path
) -> None:
    """LimitNOFILE= holds what the server has open with env.example's MAX_CONCURRENT_RUNS
    runs at work (measured in /proc), and the connections promised on top."""
    runs = int(env_example()["MAX_CONCURRENT_RUNS"])
    mock.default = Reply.text("slow", delay=30)
    async with unit_server(mock, tmp_path) as unit, trio.open_nursery() as nursery:
        body = {"messages": [{"role": "user", "content": "hi"}], "stream": True}
        async with httpx.AsyncClient(timeout=60) as http:

            async def run() -> None:
                async with http.stream("POST", f"{unit.url}/v1/chat/completions", json=body):
                    await trio.sleep_forever()

            for _ in range(runs):
                nursery.start_soon(run)
            with trio.fail_after(30):
                while len(mock.messages) < runs:
                    await mock.request_arrived.wait()
            busy = len(os.listdir(f"/proc/{unit.process.pid}/fd"))
            nursery.cancel_scope.cancel()
    [limit] = service("LimitNOFILE")
    assert busy + CONNECTIONS <= int(limit), busy


# --- nginx ----------------------------------------------------------------------------


@attrs.frozen
class Cert:
    cert: Path
    key: Path


@pytest.fixture(scope="session")
def cert(tmp_path_factory: pytest.TempPathFactory) -> Cert:
    """A self-signed certificate for 127.0.0.1, from Debian's openssl."""
    directory = tmp_path_factory.mktemp("tls")
    cert = Cert(directory / "cert.pem", directory / "key.pem")
    request = (
        "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2"
        " -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1"
    )
    subprocess.run(
        [required_tool("openssl"), *request.split(), "-keyout", cert.key, "-out", cert.cert],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert


def rewrite(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"contrib/nginx.conf no longer has {old!r}: update this test"
    return text.replace(old, new)


def site_config(cert: Cert) -> str:
    """contrib/nginx.conf with the test certificate in place of Let's Encrypt's."""
    text = (CONTRIB / "nginx.conf").read_text()
    live = "/etc/letsencrypt/live/claude.example.com"
    text = rewrite(text, f"{live}/fullchain.pem", str(cert.cert))
    return rewrite(text, f"{live}/privkey.pem", str(cert.key))


def main_config(directory: Path, site: str) -> Path:
    """An nginx.conf that keeps pid, logs and temp files in ``directory``, includes
    ``site`` in http {}, and runs in the foreground as the current user."""
    (directory / "site.conf").write_text(site)
    # As root, workers would drop to nobody, who cannot enter pytest's 0700 directories.
    user = "user root;" if os.geteuid() == 0 else ""
    temp = "\n".join(
        f"    {kind}_temp_path {directory / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    main = directory / "nginx.conf"
    main.write_text(
        f"""{user}
daemon off;
worker_processes 1;
pid {directory / "nginx.pid"};
error_log {directory / "error.log"} info;
events {{ worker_connections 256; }}
http {{
    access_log {directory / "access.log"};
{temp}
    include {directory / "site.conf"};
}}
"""
    )
    return main


def nginx_command(main: Path, *args: str) -> list[str]:
    directory = main.parent
    return [
        required_tool("nginx"),
        "-p",
        str(directory),
        "-e",
        str(directory / "error.log"),
        "-c",
        str(main),
        *args,
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@attrs.frozen
class Nginx:
    https: str
    http: str
    tls: ssl.SSLContext


FLOOD_GUARD = "    limit_req zone=claude_wrapper_clients burst=50 nodelay;\n"


@asynccontextmanager
async def nginx_in_front(
    servers: list[Server], cert: Cert, directory: Path, *extra: str, flood_guard: bool = False
) -> AsyncIterator[Nginx]:
    """Debian's nginx on 127.0.0.1 with contrib/nginx.conf, its upstream being ``servers``
    (the flood guard off unless asked: the tests are one busy client); stopped (master
    and workers) on the way out, whatever happened."""
    https_port, http_port = free_port(), free_port()
    site = site_config(cert)
    site = rewrite(site, FLOOD_GUARD, FLOOD_GUARD if flood_guard else "")
    site = rewrite(site, "listen 443 ssl;", f"listen 127.0.0.1:{https_port} ssl;")
    site = rewrite(site, "    listen [::]:443 ssl;\n", "")
    site = rewrite(site, "listen 80;", f"listen 127.0.0.1:{http_port};")
    site = rewrite(site, "    listen [::]:80;\n", "")
    upstreams = "".join(f"    server {s.url.removeprefix('http://')};\n" for s in servers)
    site = rewrite(site, "    server 127.0.0.1:8001;\n    server 127.0.0.1:8002;\n", upstreams)
    proxy_pass = "        proxy_pass http://claude_wrapper;\n"
    for directive in extra:
        site = rewrite(site, proxy_pass, f"{proxy_pass}        {directive}\n")
    main = main_config(directory, site)
    process = await trio.lowlevel.open_process(
        nginx_command(main), stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        with trio.fail_after(10):
            while True:
                assert process.poll() is None, (directory / "error.log").read_text()
                try:
                    probe = await trio.open_tcp_stream("127.0.0.1", https_port)
                except OSError:
                    await trio.sleep(0.02)
                else:
                    await probe.aclose()
                    break
        tls = ssl.create_default_context(cafile=str(cert.cert))
        yield Nginx(f"https://127.0.0.1:{https_port}", f"http://127.0.0.1:{http_port}", tls)
    finally:
        with trio.move_on_after(10):
            if process.returncode is None:
                process.terminate()
            await process.wait()
        if process.returncode is None:
            os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
        # The workers die with the master (checked: no process is left in its group).
        with pytest.raises(ProcessLookupError):
            os.killpg(process.pid, 0)


def test_nginx_config_is_valid(cert: Cert, tmp_path: Path) -> None:
    # The file as shipped (listen 80 and 443, IPv6 too: nginx -t binds nothing); only the
    # certificate paths point at a real certificate.
    main = main_config(tmp_path, site_config(cert))
    result = subprocess.run(nginx_command(main, "-t"), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr
    assert "[warn]" not in result.stderr


def nginx_directive(name: str) -> list[str]:
    text = (CONTRIB / "nginx.conf").read_text()
    return re.findall(rf"(?m)^\s*{name}\s+([^;]+);", text)


def test_nginx_matches_the_server_limits() -> None:
    [body] = nginx_directive("client_max_body_size")
    assert body == f"{DEFAULTS.max_body_bytes // 2**20}m"
    # A non-streamed answer is silent until done: nginx must wait longer than MAX_TIMEOUT.
    [read] = nginx_directive("proxy_read_timeout")
    assert seconds(read) > DEFAULTS.timeout
    # An idle upstream connection must be dropped by nginx before the server drops it.
    [idle] = nginx_directive("keepalive_timeout")
    assert seconds(idle) < DEFAULTS.keep_alive_timeout
    assert nginx_directive("proxy_buffering") == ["off"]


async def test_stream_through_nginx_arrives_over_time(
    start_server: Callable[..., Any], mock: MockAnthropic, cert: Cert, tmp_path: Path
) -> None:
    # The wrapper sends X-Accel-Buffering: no, which alone turns nginx's buffering off; the
    # test has nginx ignore it, so that the config's own directives are what is checked.
    mock.default = Reply.text("one two three four five six", pieces=6, delay=0.2)
    server = await start_server(trusted_proxies=("127.0.0.1",))
    ignore = "proxy_ignore_headers X-Accel-Buffering;"
    async with nginx_in_front([server], cert, tmp_path, ignore) as nginx:
        arrivals: list[tuple[float, str]] = []
        body = {"messages": [{"role": "user", "content": "count"}], "stream": True}
        with trio.fail_after(30):
            async with (
                httpx.AsyncClient(base_url=nginx.https, verify=nginx.tls, timeout=30) as http,
                http.stream("POST", "/v1/chat/completions", json=body) as response,
            ):
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                async for line in response.aiter_lines():
                    if line.startswith("data: {"):
                        delta = json.loads(line[6:])["choices"][0]["delta"]
                        if delta.get("content"):
                            arrivals.append((trio.current_time(), delta["content"]))
    assert "".join(text for _, text in arrivals) == "one two three four five six"
    assert len(arrivals) == 6
    # Five 0.2 s gaps upstream: about 1 s from the first piece to the last when streamed,
    # nothing between them when held back and sent at the end.
    assert arrivals[-1][0] - arrivals[0][0] >= 0.5


async def test_nginx_redirects_limits_and_hides_metrics(
    start_server: Callable[..., Any], cert: Cert, tmp_path: Path
) -> None:
    server = await start_server()
    async with (
        nginx_in_front([server], cert, tmp_path) as nginx,
        httpx.AsyncClient(verify=nginx.tls, timeout=30) as http,
    ):
        with trio.fail_after(30):
            plain = await http.get(f"{nginx.http}/health")
            health = await http.get(f"{nginx.https}/health")
            metrics = await http.get(f"{nginx.https}/metrics")
            big = await http.post(
                f"{nginx.https}/v1/chat/completions", content=b"x" * (DEFAULTS.max_body_bytes + 1)
            )
    assert plain.status_code == 301
    assert plain.headers["location"] == "https://127.0.0.1/health"
    assert health.json()["status"] == "healthy"
    # Scraped from each instance, never through the balancer.
    assert metrics.status_code == 404
    # Refused by nginx before it reaches the server.
    assert big.status_code == 413
    assert "nginx" in big.text


async def test_nginx_headers(start_server: Callable[..., Any], cert: Cert, tmp_path: Path) -> None:
    """HSTS on every answer over TLS (the server's, nginx's own errors), none over plain
    http; no nginx version anywhere."""
    server = await start_server()
    async with (
        nginx_in_front([server], cert, tmp_path) as nginx,
        httpx.AsyncClient(verify=nginx.tls, timeout=30) as http,
    ):
        with trio.fail_after(30):
            tls = [
                await http.get(f"{nginx.https}/health"),
                await http.get(f"{nginx.https}/metrics"),
                await http.post(f"{nginx.https}/v1/chat/completions", content=b"x" * 11 * 2**20),
            ]
            plain = await http.get(f"{nginx.http}/health")
    assert [r.status_code for r in tls] == [200, 404, 413]
    for response in tls:
        max_age = re.fullmatch(r"max-age=(\d+)", response.headers["strict-transport-security"])
        assert max_age and int(max_age[1]) >= 365 * 24 * 3600, response.headers
    assert "strict-transport-security" not in plain.headers
    for response in [*tls, plain]:
        assert response.headers["server"] == "nginx"
        assert not re.search(r"nginx/\d", response.text)


async def test_nginx_flood_guard(
    start_server: Callable[..., Any], cert: Cert, tmp_path: Path
) -> None:
    """A burst from one address passes; past it, 429 with an OpenAI error, from nginx (the
    server's own limits are off)."""
    server = await start_server(rate_limit_enabled=False)
    [guard] = nginx_directive("limit_req")
    burst = int(re.search(r"burst=(\d+)", guard)[1])  # type: ignore[index]
    async with (
        nginx_in_front([server], cert, tmp_path, flood_guard=True) as nginx,
        httpx.AsyncClient(base_url=nginx.https, verify=nginx.tls, timeout=30) as http,
    ):
        with trio.fail_after(30):
            # At 10 a second the refill outpaces this only if 100 requests took over 5 s.
            responses = [await http.get("/v1/models") for _ in range(2 * burst)]
    statuses = [r.status_code for r in responses]
    assert statuses[:burst] == [200] * burst
    refused = [r for r in responses if r.status_code == 429]
    assert refused, statuses
    assert set(statuses) == {200, 429}
    for response in refused:
        assert response.headers["content-type"] == "application/json"
        error = response.json()["error"]
        assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limit_exceeded")
        assert "strict-transport-security" in response.headers


async def test_nginx_passes_host_and_the_wrapper_must_know_the_name(
    start_server: Callable[..., Any], cert: Cert, tmp_path: Path
) -> None:
    # nginx sends its server_name on (Host $host): a wrapper not told the name refuses it.
    [name] = nginx_directive("server_name")[:1]
    results = []
    for told in ((), (name,)):
        server = await start_server(allowed_hosts=told)
        directory = tmp_path / f"told-{len(told)}"
        directory.mkdir()
        async with (
            nginx_in_front([server], cert, directory) as nginx,
            httpx.AsyncClient(base_url=nginx.https, verify=nginx.tls, timeout=30) as http,
        ):
            with trio.fail_after(30):
                results.append(await http.get("/v1/models", headers={"host": name}))
    untold, told_response = results
    assert untold.status_code == 421
    assert untold.json()["error"]["code"] == "host_not_allowed"
    assert told_response.status_code == 200


async def test_session_header_pins_an_instance(
    start_server: Callable[..., Any], cert: Cert, tmp_path: Path
) -> None:
    # Two instances that tell themselves apart by the one model each offers.
    servers = [await start_server(models=(name,), rate_limit_enabled=False) for name in ("a", "b")]

    async def instance(http: httpx.AsyncClient, session: str | None) -> str:
        headers = {"X-Session-Id": session} if session else {}
        response = await http.get("/v1/models", headers=headers)
        name: str = response.json()["data"][0]["id"]
        return name

    async with (
        nginx_in_front(servers, cert, tmp_path) as nginx,
        httpx.AsyncClient(base_url=nginx.https, verify=nginx.tls, timeout=30) as http,
    ):
        with trio.fail_after(30):
            pinned = {}
            for n in range(20):
                seen = {await instance(http, f"session-{n}") for _ in range(4)}
                assert len(seen) == 1, f"session-{n} reached {seen}"
                pinned[n] = seen.pop()
            unpinned = [await instance(http, None) for _ in range(20)]
    # Sessions spread over both instances (all 20 on one: about 2 in a million), and
    # requests without a session go round-robin (nginx's rule for an empty hash key).
    assert set(pinned.values()) == {"a", "b"}
    assert set(unpinned) == {"a", "b"}


# --- Docker ---------------------------------------------------------------------------


def test_dockerfile_lints_clean() -> None:
    result = subprocess.run(
        [required_tool("hadolint"), "--no-color", str(CONTRIB / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Every finding fails, info level included.
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_dockerfile_invariants() -> None:
    instructions = dockerfile()
    words = [word for word, _ in instructions]
    [base] = docker("FROM")
    image, _, tag = base.partition(":")
    assert image == "python"
    assert re.fullmatch(r"3\.1[1-9]-slim(-\w+)?", tag), tag
    # The last USER before CMD is not root.
    users = [rest for word, rest in instructions[: words.index("CMD")] if word == "USER"]
    assert users, "no USER: the server would run as root"
    assert users[-1].split(":")[0] not in ("0", "root")
    [cmd] = docker("CMD")
    assert json.loads(cmd)[:3] == ["python", "-m", "wrapper"]
    environment = docker_environment()
    assert environment["HOST"] == "0.0.0.0"
    assert docker("EXPOSE") == [environment["PORT"]]
    assert "/health" in " ".join(healthcheck_command())
    # Each volume, and each directory the settings name, exists in the image and is the
    # server user's alone, so that a new volume is not created root-owned.
    [volumes] = docker("VOLUME")
    runs = " ".join(docker("RUN"))
    [created] = re.findall(r"install -d -o claude -g claude -m 0700 ([^&]+)", runs)
    settings = ("HOME", "CLAUDE_CONFIG_DIR", "WRAPPER_STATE_DIR", "CLAUDE_CWD")
    named = [environment[k] for k in settings]
    for directory in [*json.loads(volumes), *named]:
        assert directory in created.split(), f"{directory} is not created in the image"
    # No secret is baked in.
    for name in [*environment, *(a.split("=")[0] for a in docker("ARG"))]:
        assert not re.search("KEY|TOKEN|SECRET|PASSWORD", name), name


def test_docker_build_context_builds_the_package(tmp_path: Path) -> None:
    """What the Dockerfile copies, and its .dockerignore lets through, is enough for
    ``pip install``: built here into a wheel (the build step without the network)."""
    lines = (CONTRIB / "Dockerfile.dockerignore").read_text().splitlines()
    allowed = [line for line in lines if line and not line.startswith("#")]
    assert allowed[0] == "*", "an allow list: everything excluded, then !exceptions"
    context = tmp_path / "context"
    for line in docker("COPY"):
        *sources, destination = [word for word in line.split() if not word.startswith("--")]
        for source in sources:
            assert f"!{source}" in allowed or f"!{source}/" in allowed, source
            target = context / destination.lstrip("/")
            if (ROOT / source).is_dir():
                shutil.copytree(ROOT / source, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy(ROOT / source, target)
    [install] = [line for line in docker("RUN") if "pip install" in line]
    package = re.search(r"pip install (\S+)", install)
    assert package is not None
    # Without build isolation, so offline: the venv has the backend (make contrib-deps).
    built = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps"),
            *("--no-build-isolation", "--wheel-dir", str(tmp_path / "wheels")),
            str(context / package[1].lstrip("/")),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert built.returncode == 0, f"(make contrib-deps installs the backend)\n{built.stderr}"
    [wheel] = (tmp_path / "wheels").glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert "wrapper/__main__.py" in names
    assert "wrapper/handlers/chat.py" in names
    # The RUN line's `claude` link points at the CLI the SDK bundles.
    [finder] = re.findall(r"\$\(python -c '([^']+)'\)", install)
    found = subprocess.run([sys.executable, "-c", finder], capture_output=True, text=True)
    assert os.access(found.stdout.strip(), os.X_OK), found


def test_docker_environment_configures_the_server() -> None:
    environment = docker_environment()
    config = config_module.load(["--env-file", "/dev/null"], environment)
    assert (config.host, config.port) == ("0.0.0.0", 8000)
    # Everything written is on a volume: Claude Code's home (its state inside), and the
    # server's on the other, apart: the session table and the working directories.
    home, state = (Path(v) for v in json.loads(docker("VOLUME")[0]))
    assert Path(environment["HOME"]) == home
    assert Path(environment["CLAUDE_CONFIG_DIR"]).is_relative_to(home)
    assert config.state_dir.is_relative_to(state) and config.workdir.is_relative_to(state)
    assert not config.state_dir.is_relative_to(config.workdir)
    assert not config.workdir.is_relative_to(config.state_dir)
    # No bubblewrap in an unprivileged container: the container is the sandbox.
    assert environment["SANDBOX"] == "off"


async def test_healthcheck_command(server: Server) -> None:
    # The image's python is this one; the rest of the command runs as written.
    command = [sys.executable, *healthcheck_command()[1:]]
    port = server.url.rsplit(":", 1)[1]
    with trio.fail_after(30):
        up = await trio.run_process(command, env={**os.environ, "PORT": port}, check=False)
        down = await trio.run_process(
            command,
            env={**os.environ, "PORT": str(free_port())},
            check=False,
            capture_stderr=True,
        )
    assert up.returncode == 0
    assert down.returncode != 0


def test_compose_file() -> None:
    [wrapper] = compose()["services"].values()
    built = (CONTRIB / wrapper["build"]["context"] / wrapper["build"]["dockerfile"]).resolve()
    assert built == (CONTRIB / "Dockerfile").resolve()
    # Published on the host's loopback only: nginx in front faces the world.
    for mapping in wrapper["ports"]:
        assert mapping.startswith("127.0.0.1:"), mapping
    # Each of the image's volumes is a named one (the session table lives there), and
    # nothing else is writable: a read-only root, and /tmp in memory.
    [volumes] = docker("VOLUME")
    named = dict(v.split(":")[::-1] for v in wrapper["volumes"])
    assert set(named) == set(json.loads(volumes))
    assert set(named.values()) <= set(compose()["volumes"])
    assert wrapper["read_only"] is True
    assert [t.split(":")[0] for t in wrapper["tmpfs"]] == ["/tmp"]
    assert wrapper["env_file"] == ".env"
    assert wrapper["restart"] in ("always", "unless-stopped", "on-failure")
    assert "healthcheck" not in wrapper, "the image's HEALTHCHECK applies"
    assert seconds(wrapper["stop_grace_period"]) >= DEFAULTS.shutdown_grace + CANCEL_MARGIN + 10
    # TRUSTED_PROXIES names the gateway of the network the compose file fixes.
    [network] = compose()["networks"]["default"]["ipam"]["config"]
    gateway = ipaddress.ip_address(wrapper["environment"]["TRUSTED_PROXIES"])
    assert gateway == next(ipaddress.ip_network(network["subnet"]).hosts())


def test_contrib_settings_are_known() -> None:
    """Every variable the contrib files set is a wrapper setting (in the README's table)
    or one of OTHER_SETTINGS: a misspelt name would be silently ignored."""
    readme = set(re.findall(r"`([A-Z][A-Z0-9_]{2,})`", (ROOT / "README.md").read_text()))
    [wrapper] = compose()["services"].values()
    files = {
        "wrapper.service": unit_environment(),
        "Dockerfile": docker_environment(),
        "docker-compose.yml": wrapper["environment"],
        "env.example": env_example(),
    }
    for name, settings in files.items():
        unknown = set(settings) - readme - OTHER_SETTINGS
        assert not unknown, f"{name}: {sorted(unknown)}"
    # And the example's values are ones the server takes.
    values = {k: v for k, v in env_example().items() if v}
    config = config_module.load(["--env-file", "/dev/null"], values)
    assert config.max_concurrent_runs == int(values["MAX_CONCURRENT_RUNS"])
