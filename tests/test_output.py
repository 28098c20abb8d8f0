"""Output control as pure event filters (wrapper.output), table-driven; and through the
real server, the real CLI and the mock, with the openai package."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from openai import AsyncOpenAI

from tests.conftest import MODEL
from tests.mock_anthropic import MockAnthropic, Reply
from wrapper import plan
from wrapper.config import Config
from wrapper.convert import parse
from wrapper.events import (
    CallStarted,
    Event,
    Finished,
    MessageEnd,
    Restarted,
    TextDelta,
    Usage,
)
from wrapper.output import STOPPED, Output, StopScanner
from wrapper.plan import Continued, Scratch

END = Finished("end_turn", Usage(), 0.01, "s1")


def scan(stops: tuple[str, ...], *pieces: str | Event) -> tuple[list[Event], bool]:
    scanner = StopScanner(stops)
    out: list[Event] = []
    for piece in pieces:
        out += scanner.feed(TextDelta(piece) if isinstance(piece, str) else piece)
    return out, scanner.ending is STOPPED


def texts(events: list[Event]) -> list[str]:
    return [e.text for e in events if isinstance(e, TextDelta)]


@pytest.mark.parametrize(
    ("stops", "pieces", "shown", "stopped"),
    [
        # Nothing like a stop: every piece goes out as it comes.
        (("END",), ["Hello", " world"], ["Hello", " world"], False),
        # A stop inside one piece: the text before it, nothing after.
        (("END",), ["abcENDdef", "more"], ["abc"], True),
        # A stop split over pieces: only what could still complete it is held back.
        (("END",), ["abcE", "N", "Dxyz"], ["abc"], True),
        (("END",), ["abcE", "Nx", "y"], ["abc", "ENx", "y"], False),
        # The earliest of several stops wins, whichever is listed first.
        (("zz", "b"), ["abzz"], ["a"], True),
        # A stop at the very start: an empty answer.
        (("Hi",), ["Hi there"], [], True),
        # A held prefix that turns out not to be a stop goes out with what follows.
        (("abab",), ["xaba", "c"], ["x", "abac"], False),
        # Overlapping starts: "aba" + "bab" holds "ab" twice, then finds the stop.
        (("abab",), ["aba", "bab"], [], True),
        # A stop that is a whole piece.
        (("\n\n",), ["line", "\n\n", "next"], ["line"], True),
    ],
)
def test_stop_scanner(
    stops: tuple[str, ...], pieces: list[str], shown: list[str], stopped: bool
) -> None:
    out, done = scan(stops, *pieces)
    assert [t for t in texts(out) if t] == shown
    assert done is stopped


def test_what_is_held_goes_out_before_the_end() -> None:
    out, stopped = scan(("END",), "abcEN", END)
    assert out == [TextDelta("abc"), TextDelta("EN"), END]
    assert not stopped


def test_nothing_goes_out_once_stopped() -> None:
    out, _ = scan(("END",), "aEND", "more", CallStarted(0, "toolu_A", "f"), END)
    assert out == [TextDelta("a")]


def test_calls_pass_through_untouched() -> None:
    call = CallStarted(0, "toolu_A", "f")
    out, _ = scan(("END",), "ok", call, END)
    assert out == [TextDelta("ok"), call, END]


def test_a_restart_is_scanned_whole() -> None:
    out, stopped = scan(("END",), "abE", Restarted("xyzENDtail"))
    assert out == [TextDelta("ab"), Restarted("xyz")]
    assert stopped


def test_no_filters_change_nothing() -> None:
    output = Output()
    events = [TextDelta("any"), MessageEnd("max_tokens", Usage(output_tokens=9)), END]
    assert [out for e in events for out in output.feed(e)] == events
    assert output.ending is None


def used(output_tokens: int, input_tokens: int = 11) -> Usage:
    return Usage(input_tokens=input_tokens, output_tokens=output_tokens)


@pytest.mark.parametrize(
    ("limit", "ends", "ending"),
    [
        # The API stopped the message at the limit (Claude Code would go on by itself).
        (5, [MessageEnd("max_tokens", used(5))], Finished("max_tokens", used(5), None, None)),
        # Under the limit: the run goes on to its own end.
        (5, [MessageEnd("end_turn", used(4))], None),
        # Several messages (Claude Code's own tools between them) add up to the limit.
        (
            6,
            [MessageEnd("tool_use", used(3)), MessageEnd("tool_use", used(3, 20))],
            Finished("max_tokens", used(6, 31), None, None),
        ),
        (7, [MessageEnd("tool_use", used(3)), MessageEnd("end_turn", used(3))], None),
    ],
)
def test_token_budget(limit: int, ends: list[MessageEnd], ending: Finished | None) -> None:
    output = Output(max_tokens=limit)
    for end in ends:
        assert output.feed(end) == [end]
    assert output.ending == ending


def test_text_held_for_a_stop_goes_out_when_the_budget_ends_the_answer() -> None:
    output = Output(stops=("END",), max_tokens=2)
    assert output.feed(TextDelta("abcEN")) == [TextDelta("abc")]
    end = MessageEnd("max_tokens", used(2))
    assert output.feed(end) == [TextDelta("EN"), end]
    assert output.ending == Finished("max_tokens", used(2), None, None)
    assert output.feed(TextDelta("late")) == []


@pytest.mark.parametrize(
    ("extra", "stops", "limit"), [(b', "stop": "x"', ("x",), None), (b', "max_tokens": 5', (), 5)]
)
def test_an_answer_the_server_cuts_is_never_continued(
    extra: bytes, stops: tuple[str, ...], limit: int | None
) -> None:
    # Claude's transcript would hold what it wrote past the cut: run afresh each time.
    plain = b'{"messages": [{"role": "user", "content": "hi"}]}'
    request = plain[:-1] + extra + b"}"
    planned = plan.plan(parse(request, MODEL).ask, Config(session_auto_continue=True))
    assert (planned.where, planned.stops, planned.max_tokens) == (Scratch(), stops, limit)
    assert planned.turn.max_output_tokens == limit
    assert isinstance(plan.plan(parse(plain, MODEL).ask, Config()).where, Continued)


# --- through the server -------------------------------------------------------------------

SLOW = Reply.text("one two three four five six seven eight", pieces=8, delay=0.3)
ASK = [{"role": "user", "content": "count"}]


async def test_stop_ends_the_answer_and_the_run(client: AsyncOpenAI, mock: MockAnthropic) -> None:
    mock.script(SLOW)
    with trio.fail_after(30):
        completion = await client.chat.completions.create(
            model=MODEL, messages=ASK, stop=["three", "seven"]
        )
    choice = completion.choices[0]
    assert (choice.message.content, choice.finish_reason) == ("one two ", "stop")
    assert completion.usage is None  # a run cut short: Claude Code reports no usage
    [upstream] = mock.messages
    assert upstream.finished is None and upstream.aborted_at is not None  # stopped at once


async def test_a_streamed_stop_never_shows_its_text(
    client: AsyncOpenAI, mock: MockAnthropic
) -> None:
    # Pieces of 5 characters: the stop "ee fo" starts in "ree f" and ends in "our f".
    mock.script(Reply.text("one two three four five six", pieces=6, delay=0.2))
    with trio.fail_after(30):
        stream = await client.chat.completions.create(
            model=MODEL, messages=ASK, stop="ee fo", stream=True
        )
        chunks = [chunk async for chunk in stream]
    pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert "".join(pieces) == "one two thr"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert mock.messages[0].finished is None  # the upstream stream was cut, not finished


WORDS = Reply(chunks=("one", " two", " three", " four", " five"))


@pytest.mark.parametrize("stream", [False, True])
async def test_max_tokens_cuts_the_answer_at_the_limit(
    client: AsyncOpenAI, mock: MockAnthropic, stream: bool
) -> None:
    # The mock counts a chunk as a token and cuts at max_tokens; the call Claude Code
    # starts after that by itself takes a while to answer, as the API's would.
    mock.script(WORDS, Reply.text("never shown", pieces=3, delay=0.5))
    with trio.fail_after(30):
        if stream:
            chunks = [
                c
                async for c in await client.chat.completions.create(
                    model=MODEL,
                    messages=ASK,
                    max_tokens=3,
                    stream=True,
                    stream_options={"include_usage": True},
                )
            ]
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            finish = [c.choices[0].finish_reason for c in chunks if c.choices][-1]
            usage = chunks[-1].usage
        else:
            completion = await client.chat.completions.create(
                model=MODEL, messages=ASK, max_completion_tokens=3
            )
            text = completion.choices[0].message.content or ""
            finish, usage = completion.choices[0].finish_reason, completion.usage
    assert (text, finish) == ("one two three", "length")
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (11, 3)
    assert mock.messages[0].body["max_tokens"] == 3  # Claude Code's own limit, per call
    # Claude Code goes on past an upstream max_tokens by itself: that call, if it started,
    # was cut at once.
    assert all(m.finished is None for m in mock.messages[1:])
    assert "never" not in text


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"max_tokens": 0}, "max_tokens", None),
        ({"max_completion_tokens": 0}, "max_completion_tokens", None),
        ({"max_tokens": 5, "max_completion_tokens": 6}, "max_tokens", None),
        ({"max_tokens": 5, "session_id": "s1"}, "max_tokens", "unsupported_in_session"),
        ({"stop": ""}, "stop", None),
        ({"stop": ["ok", ""]}, "stop[1]", None),
        ({"stop": "x", "session_id": "s1"}, "stop", "unsupported_in_session"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop", None),
    ],
)
async def test_stop_refusals(
    start_server: Any, mock: MockAnthropic, body: dict[str, Any], param: str, code: str | None
) -> None:
    server = await start_server()
    async with server.http() as http:
        response = await http.post(
            "/v1/chat/completions", json={"model": MODEL, "messages": ASK, **body}
        )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == param
    if code is not None:
        assert error["code"] == code
    assert mock.messages == []
