"""The backend's contract, driven directly (no HTTP): a planned turn and a place in, the
run's events out, ending with ``Finished`` or ``Failed``; a consumer that leaves at any
event stops the run (the interrupt path), and nothing outlives the context. The real CLI
against the mock API."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.conftest import cli_processes
from tests.mock_anthropic import MockAnthropic, Reply
from wrapper import errors, places
from wrapper.claude.backend import Backend
from wrapper.config import Config
from wrapper.events import Answer, Began, Event, Failed, Finished, MessageEnd, TextDelta, Usage
from wrapper.plan import Turn

TURN = Turn(prompt="hi", system_prompt=None, model="claude-sonnet-4-5")


@pytest.fixture
def backend(make_config: Callable[..., Config]) -> Backend:
    config = make_config()
    places.check_private(config.workdir)
    return Backend(config)


async def read_all(backend: Backend, turn: Turn = TURN) -> list[Event]:
    place = places.temporary(backend.config.workdir)
    places.make(place, backend.config.workdir)
    with trio.fail_after(30):
        async with backend.run(turn, place) as events:
            return [event async for event in events]


async def test_a_run_is_its_events(backend: Backend, mock: MockAnthropic) -> None:
    mock.script(Reply.text("Hello there", pieces=3, output_tokens=9))
    events = await read_all(backend)
    assert isinstance(events[0], Began)
    *deltas, end, finished = events[1:]
    assert all(isinstance(e, TextDelta) for e in deltas) and len(deltas) == 3
    assert end == MessageEnd("end_turn", Usage(input_tokens=11, output_tokens=9))
    answer = Answer()
    for event in events:
        answer.add(event)
    assert answer.text == "Hello there"
    assert isinstance(finished, Finished) and answer.finished is finished
    assert (finished.stop_reason, finished.usage.output_tokens) == ("end_turn", 9)
    assert finished.session_id  # the Claude session that holds the answer
    assert backend.live_processes == 0
    assert cli_processes() == []  # closed when the context exited


async def test_leaving_at_an_event_stops_the_run(backend: Backend, mock: MockAnthropic) -> None:
    mock.script(Reply.text("one two three four five six", pieces=6, delay=0.5))
    place = places.temporary(backend.config.workdir)
    places.make(place, backend.config.workdir)
    seen: list[Any] = []
    with trio.fail_after(30):
        async with backend.run(TURN, place) as events:
            async for event in events:
                seen.append(event)
                if isinstance(event, TextDelta):
                    break  # the consumer decides the run is over
    assert [type(e) for e in seen] == [Began, TextDelta]
    assert cli_processes() == []  # interrupted and closed before the context exits
    [upstream] = mock.messages
    assert upstream.finished is None and upstream.aborted_at is not None


async def test_an_upstream_error_is_the_last_event(backend: Backend, mock: MockAnthropic) -> None:
    mock.script(Reply.error(429, "rate_limit_error"))
    events = await read_all(backend)
    *_, last = events
    assert isinstance(last, Failed) and isinstance(last.error, errors.UpstreamRateLimited)
    assert not any(isinstance(e, Finished) for e in events)
    assert cli_processes() == []


async def test_a_missing_cli_fails_before_any_process(
    make_config: Callable[..., Config], tmp_path: Path
) -> None:
    config = make_config(cli_path=str(tmp_path / "no-such-claude"))
    places.check_private(config.workdir)
    events = await read_all(Backend(config))
    [failed] = events
    assert isinstance(failed, Failed) and failed.error.instance_code == "claude_cli_not_found"


async def test_an_error_in_the_consumer_is_not_an_exception_group(
    backend: Backend, mock: MockAnthropic
) -> None:
    mock.script(Reply.text("slow answer", pieces=4, delay=0.5))
    place = places.temporary(backend.config.workdir)
    places.make(place, backend.config.workdir)
    with trio.fail_after(30), pytest.raises(errors.InvalidRequest):
        async with backend.run(TURN, place) as events:
            async for _ in events:
                raise errors.InvalidRequest("the consumer's own refusal")
    assert cli_processes() == []
