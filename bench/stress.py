"""``make stress``: load, faults and fuzz against the server, the real CLI and the mock API,
on loopback only. Prints each scenario's figures and the guarantees they back, and writes
them all as JSON (``bench/results/stress-<date>.json``, or ``--out``).

    python -m bench.stress [--small] [--only NAME ...] [--out PATH]

``SCENARIOS`` names each scenario with its full and its small size (``--small``, and
tests/test_stress.py, which runs every scenario small inside ``make test``).
``GUARANTEES`` is what must hold of each scenario's figures, whatever the size: the same
checks here and in the test. The exit status is 1 when any guarantee is broken.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from bench import stress_http, stress_runs
from wrapper.claude import BUNDLED_CLI

Figures = dict[str, Any]
Scenario = Callable[..., Awaitable[Figures]]

# name -> (scenario, full size, small size)
SCENARIOS: dict[str, tuple[Scenario, dict[str, Any], dict[str, Any]]] = {
    "disconnect_storm": (
        stress_runs.disconnect_storm,
        {"cycles": 200, "at_once": 4},
        {"cycles": 6, "at_once": 2},
    ),
    "sigterm": (stress_runs.sigterm, {"streams": 20, "queued": 5}, {"streams": 4, "queued": 2}),
    "kill_9": (stress_runs.kill_9, {"sessions": 4}, {"sessions": 2}),
    "fuzz": (
        stress_http.fuzz,
        {"bodies": 10_000, "headers": 2_000, "framing": 2_000, "sessions": 1_000},
        {"bodies": 300, "headers": 100, "framing": 100, "sessions": 100},
    ),
    "slow_clients": (
        stress_http.slow_clients,
        {"slowloris": 200, "oversized": 20},
        {"slowloris": 10, "oversized": 4},
    ),
    "idle_connections": (
        stress_http.idle_connections,
        {"limit": 512, "excess": 88},
        {"limit": 20, "excess": 10},
    ),
    "slow_reader": (
        stress_http.slow_reader,
        {"answer_mb": 20, "seconds": 10},
        {"answer_mb": 8, "seconds": 2},
    ),
    # Small: 3 s, not less: on a slow 2-core VM a CLI's start and first API call took over
    # 1 s, so a 1 s timeout answered even a good request with 504.
    "upstream_faults": (stress_runs.upstream_faults, {"run_timeout": 5}, {"run_timeout": 3}),
    "cli_faults": (stress_runs.cli_faults, {"run_timeout": 5}, {"run_timeout": 2}),
    "load": (
        stress_runs.load,
        {"requests": 50, "slots": 4, "queue": 16},
        {"requests": 10, "slots": 2, "queue": 2},
    ),
}

# Seconds a run may overshoot its timeout by: wrapper.claude's stated bound for closing a
# wedged CLI (SIGTERM after CLOSE_TIMEOUT, SIGKILL after KILL_TIMEOUT more).
TIMEOUT_MARGIN = 1.5
# The launcher checks its parent twice a second: an orphan lives at most ~0.5 s, 1 s stated.
ORPHAN_SECONDS = 1.0


# The 5xx a fuzzed request may get: the held run slot's 503, and 501 for a transfer
# coding the server does not implement (RFC 9112 section 6.1; tests/test_framing.py).
FUZZ_5XX = {"503 server_busy", "501 unsupported_transfer_encoding"}


def _no_5xx_but_busy(outcomes: dict[str, int]) -> bool:
    """No 5xx but ``FUZZ_5XX``, and every error an envelope."""
    return all(
        not (k.startswith("5") and k not in FUZZ_5XX) and "NOT AN ENVELOPE" not in k
        for k in outcomes
    )


def _clean(f: Figures) -> bool:
    return (f["leftover_processes"], f["leftover_places"], f["leftover_transcripts"]) == (0, 0, 0)


def _fault_cases(f: Figures) -> list[dict[str, Any]]:
    cases = f["cases"].values()
    return [
        c
        for case in cases
        for c in ([case["whole"], case["streamed"]] if "whole" in case else [case])
    ]


GUARANTEES: dict[str, list[tuple[str, Callable[[Figures], bool]]]] = {
    "disconnect_storm": [
        (
            "every client that left got its upstream stream aborted",
            lambda f: f["upstream_not_aborted"] == 0,
        ),
        (
            "every request got under way (none refused)",
            lambda f: f["refused_or_never_started"] == 0,
        ),
        ("no CLI process, place or transcript left", _clean),
        (
            "server RSS grew by less than 20 MB",
            lambda f: f["server_rss_after_mb"] - f["server_rss_before_mb"] < 20,
        ),
        ("the server answers afterwards", lambda f: f["final_status"] == 200 and f["server_alive"]),
    ],
    "sigterm": [
        (
            "every stream ends with [DONE] or a shutting_down error",
            lambda f: set(f["outcomes"]) <= {"done", "shutting_down", "503 shutting_down"},
        ),
        (
            "every request got an answer",
            lambda f: sum(f["outcomes"].values()) == f["streams"] + f["queued"],
        ),
        ("exit status 0", lambda f: f["exit_code"] == 0),
        ("no CLI process left", lambda f: f["leftover_processes"] == 0),
        ("no upstream stream left running", lambda f: f["upstream_unfinished_not_aborted"] == 0),
    ],
    "kill_9": [
        (
            f"no CLI process {ORPHAN_SECONDS:g} s after kill -9",
            lambda f: f["leftover_processes"] == 0 and f["orphans_gone_after_s"] <= ORPHAN_SECONDS,
        ),
        ("no orphan finished its turn upstream", lambda f: f["upstream_finished_by_orphans"] == 0),
        ("PRAGMA integrity_check: ok", lambda f: f["integrity_check"] == "ok"),
        (
            "every session answers after the restart",
            lambda f: set(f["third_turn_statuses"]) == {200},
        ),
    ],
    "fuzz": [
        (
            f"{part}: every error an envelope, no 5xx but the held slot's 503 (and 501)",
            lambda f, part=part: _no_5xx_but_busy(f[part]),
        )
        for part in ("bodies", "headers", "framing", "session_ids")
    ]
    + [
        (
            "headers, session ids: every request answered",
            lambda f: (
                not any(k.startswith("no answer") for k in {**f["headers"], **f["session_ids"]})
            ),
        ),
        ("framing: no garbled answer", lambda f: "no answer (garbled)" not in f["framing"]),
        ("no fuzzed request started a CLI", lambda f: f["runs_started_by_fuzz"] == 0),
        ("the server answers afterwards", lambda f: f["health_after"] == 200 and f["server_alive"]),
    ],
    "slow_clients": [
        (
            "every slow connection closed by the server within its timeout + 2 s",
            lambda f: (
                f["slow_connection_lifetime"]["max_ms"]
                <= 1000 * (max(f["read_timeout"], f["keep_alive_timeout"]) + 2)
            ),
        ),
        (
            "every answer an envelope, none 5xx",
            lambda f: all(
                "NOT AN ENVELOPE" not in k and not k.startswith("5") for k in f["answers"]
            ),
        ),
        (
            "every oversized body got 413",
            lambda f: f["answers"].get("413 request_too_large", 0) == f["oversized_bodies"],
        ),
        ("a well-behaved client is answered meanwhile", lambda f: f["health_answered"] == 10),
        ("the server stays up", lambda f: f["server_alive"]),
    ],
    "idle_connections": [
        (
            "the excess gets 503 too_many_connections",
            lambda f: (
                f["answers"].get("503 too_many_connections", 0)
                >= f["connections"] - f["max_connections"]
            ),
        ),
        (
            "idle connections closed within keep-alive timeout + 2 s",
            lambda f: f["closed_after"]["max_ms"] <= 1000 * (f["keep_alive_timeout"] + 2),
        ),
        ("the server answers afterwards", lambda f: f["health_after"] == 200),
    ],
    "slow_reader": [
        (
            "server memory bounded: peak RSS under before + half the answer",
            lambda f: f["server_peak_rss_mb"] < f["server_rss_before_mb"] + f["answer_mb"] / 2,
        ),
        (
            "the CLI stops within 2 s of the reader leaving",
            lambda f: f["cli_gone_after_reader_left_s"] <= 2,
        ),
        ("no process left after the reader goes", lambda f: f["leftover_processes"] == 0),
        ("the server stays up", lambda f: f["server_alive"]),
    ],
    "upstream_faults": [
        (
            "every answer an envelope or an error frame",
            lambda f: all(c["envelope"] for c in _fault_cases(f)),
        ),
        (
            f"every answer within the run timeout + {TIMEOUT_MARGIN:g} s",
            lambda f: all(c["seconds"] <= f["timeout_s"] + TIMEOUT_MARGIN for c in _fault_cases(f)),
        ),
        ("the next request succeeds", lambda f: f["cases"]["next request"]["status"] == 200),
        ("no CLI process, place or transcript left", _clean),
    ],
    "cli_faults": [
        (
            "every answer an envelope or an error frame",
            lambda f: all(c["envelope"] for c in _fault_cases(f)),
        ),
        (
            f"every answer within the run timeout + {TIMEOUT_MARGIN:g} s",
            lambda f: all(c["seconds"] <= f["timeout_s"] + TIMEOUT_MARGIN for c in _fault_cases(f)),
        ),
        (
            "no process left behind",
            lambda f: all(c["leftover_processes"] == 0 for c in f["cases"].values()),
        ),
        (
            "the server stays up",
            lambda f: all(c["health_after"] == 200 for c in f["cases"].values()),
        ),
    ],
    "load": [
        (
            "slots + queue answered, the rest refused",
            lambda f: (
                (f["answered"], f["refused_503"])
                == (f["slots"] + f["queue"], f["requests"] - f["slots"] - f["queue"])
            ),
        ),
        (
            "every refusal carries Retry-After",
            lambda f: f["refused_with_retry_after"] == f["refused_503"],
        ),
        ("refusals are fast (under 2 s)", lambda f: (f["refusal_latency"]["max_ms"] or 0) < 2000),
        ("no CLI process, place or transcript left", _clean),
    ],
}


def broken(name: str, figures: Figures) -> list[str]:
    """The guarantees of scenario ``name`` that ``figures`` break."""
    failed = []
    for text, holds in GUARANTEES[name]:
        try:
            ok = holds(figures)
        except (KeyError, TypeError) as exc:
            ok, text = False, f"{text} (figure missing: {exc})"
        if not ok:
            failed.append(text)
    return failed


async def run(name: str, small: bool) -> Figures:
    """One scenario at its full or small size, in a fresh directory."""
    scenario, full, reduced = SCENARIOS[name]
    root = Path(tempfile.mkdtemp(prefix=f"stress-{name}-"))
    start = time.monotonic()
    figures = await scenario(root, **(reduced if small else full))
    return {
        "size": reduced if small else full,
        **figures,
        "took_s": round(time.monotonic() - start, 1),
    }


def machine() -> dict[str, Any]:
    memory = next(
        line
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    cli = subprocess.run(
        [str(BUNDLED_CLI), "--version"], capture_output=True, text=True, check=False
    )
    return {
        "nproc": os.cpu_count(),
        "memory": memory.split(":", 1)[1].strip(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "cli": cli.stdout.strip(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.stress", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--small", action="store_true", help="the small sizes (as make test)")
    parser.add_argument("--only", nargs="+", choices=list(SCENARIOS), help="these scenarios")
    parser.add_argument(
        "--out", type=Path, help="JSON file (default bench/results/stress-<date>.json)"
    )
    args = parser.parse_args()
    date = time.strftime("%Y-%m-%d")
    out = args.out or Path(__file__).parent / "results" / f"stress-{date}.json"
    report: dict[str, Any] = {
        "date": date,
        "small": args.small,
        "machine": machine(),
        "scenarios": {},
    }
    failures = 0
    for name in args.only or SCENARIOS:
        figures = trio.run(run, name, args.small)
        failed = broken(name, figures)
        failures += len(failed)
        report["scenarios"][name] = {"figures": figures, "broken": failed}
        print(f"\n== {name} ({figures['took_s']} s)")
        for key, value in figures.items():
            print(f"  {key}: {json.dumps(value)}")
        for text, _ in GUARANTEES[name]:
            print(f"  [{'BROKEN' if text in failed else 'ok'}] {text}")
        for text in failed:
            if text not in {t for t, _ in GUARANTEES[name]}:
                print(f"  [BROKEN] {text}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {out}; {failures} guarantee(s) broken")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
