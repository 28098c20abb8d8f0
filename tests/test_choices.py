"""``n`` answers: n runs at once, their slots taken together, one choice each; through the
real server, the real CLI and the mock, with the openai package as the client."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import trio
from openai import AsyncOpenAI

from tests.conftest import MODEL, check_envelope, stream_raw, wait_for_no_cli
from tests.conversations import GREETING, NAME, QUESTION, ask, history, holds_first_turn
from tests.mock_anthropic import MockAnthropic, Reply
from wrapper.completions import to_json
from wrapper.encode import ChatEncoder
from wrapper.errors import TooManyRuns
from wrapper.events import Answer, Finished, TextDelta, Usage
from wrapper.limits import RunGate

HI = [{"role": "user", "content": "Say something."}]


async def test_n_answers_are_n_choices(client: AsyncOpenAI, mock: MockAnthropic) -> None:
    mock.script(Reply.text("One."), Reply.text("Two."), Reply.text("Three."))
    completion = await client.chat.completions.create(model=MODEL, messages=HI, n=3)  # type: ignore[arg-type]
    assert [c.index for c in completion.choices] == [0, 1, 2]
    # Three runs at once: which took which reply is theirs to race for.
    assert sorted(c.message.content or "" for c in completion.choices) == ["One.", "Three.", "Two."]
    assert {c.finish_reason for c in completion.choices} == {"stop"}
    assert len(mock.messages) == 3
    usage = completion.usage
    assert usage is not None
    # Each mock answer counts 11 tokens in and 7 out: the usage is all three runs'.
    assert (usage.prompt_tokens, usage.completion_tokens) == (33, 21)
    assert completion.model_extra is not None
    costs = completion.model_extra["cost_usd"]
    assert costs > 0


async def test_streamed_choices_carry_their_index(
    http: httpx.AsyncClient, mock: MockAnthropic
) -> None:
    mock.script(Reply.text("Alpha beta.", pieces=3), Reply.text("Gamma delta.", pieces=3))
    frames = await stream_raw(
        http,
        {"model": MODEL, "messages": HI, "n": 2, "stream_options": {"include_usage": True}},
    )
    by_choice: dict[int, list[dict[str, Any]]] = {0: [], 1: []}
    for frame in frames[:-1]:
        (choice,) = frame["choices"]
        by_choice[choice["index"]].append(choice)
    texts = []
    for choices in by_choice.values():
        # Each choice: its role chunk first, its deltas, its own final chunk last.
        assert choices[0]["delta"]["role"] == "assistant"
        assert choices[-1]["finish_reason"] == "stop"
        assert [c["finish_reason"] for c in choices[:-1]] == [None] * (len(choices) - 1)
        texts.append("".join(c["delta"].get("content") or "" for c in choices))
    assert sorted(texts) == ["Alpha beta.", "Gamma delta."]
    usage = frames[-1]
    assert usage["choices"] == []
    assert (usage["usage"]["prompt_tokens"], usage["usage"]["completion_tokens"]) == (22, 14)


async def test_each_choice_can_be_continued(http: httpx.AsyncClient, mock: MockAnthropic) -> None:
    mock.script(Reply.text(GREETING), Reply.text("Hi, Ada!"), Reply.text("Ada."))
    first = await ask(http, {**history(NAME), "n": 2})
    answers = [c["message"]["content"] for c in first.json()["choices"]]
    assert sorted(answers) == sorted([GREETING, "Hi, Ada!"])
    # The client keeps the greeting, whichever choice it was: that run is continued.
    await ask(http, history(NAME, GREETING, QUESTION))
    assert holds_first_turn(mock.messages[-1])


@pytest.mark.parametrize(
    ("extra", "code"),
    [
        ({"n": 5}, None),  # 4 runs at once at most (MAX_CONCURRENT_RUNS, MAX_RUNS_PER_CLIENT)
        ({"n": 2, "session_id": "s-n"}, "unsupported_in_session"),
        ({"n": 0}, None),
        ({"n": 129}, None),
    ],
)
async def test_n_that_cannot_run_is_refused_before_any_run(
    http: httpx.AsyncClient, mock: MockAnthropic, extra: dict[str, Any], code: str | None
) -> None:
    response = await ask(http, {"model": MODEL, "messages": HI, **extra})
    check_envelope(response, 400, code=code, param="n")
    assert mock.messages == []


async def test_a_failed_choice_fails_the_request(
    http: httpx.AsyncClient, mock: MockAnthropic
) -> None:
    mock.script(Reply.text("Fine."), Reply.error(529, "overloaded_error"))
    response = await ask(http, {"model": MODEL, "messages": HI, "n": 2})
    check_envelope(response, 503, code="upstream_unavailable", error_type="server_error")
    assert await wait_for_no_cli() == []


# --- the gate: n slots together -----------------------------------------------------------


async def test_two_n_requests_on_a_full_gate_do_not_deadlock() -> None:
    # 3 slots; two requests for 2 each: taken slot by slot, each could hold 1 and wait
    # forever for the other's. Gathered one request at a time, both finish.
    gate = RunGate(max_concurrent=3, max_queued=10, max_per_client=10)
    release = trio.Event()
    order: list[str] = []

    async def take(name: str, count: int) -> None:
        async with gate.slot(name, count):
            order.append(name)
            await release.wait()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(take, "single", 1)
            while gate.running < 1:
                await trio.lowlevel.checkpoint()
            nursery.start_soon(take, "a", 2)
            nursery.start_soon(take, "b", 2)
            while len(order) < 2 or gate.waiting < 1:
                await trio.lowlevel.checkpoint()
            # The other holds nothing while it waits its turn.
            assert (len(order), gate.running) == (2, 3)
            release.set()
    assert sorted(order) == ["a", "b", "single"]
    assert (gate.running, gate.clients) == (0, {})


async def test_n_counts_against_the_clients_cap() -> None:
    gate = RunGate(max_concurrent=8, max_queued=10, max_per_client=3)
    async with gate.slot("c", 2):
        with pytest.raises(TooManyRuns, match="2 Claude Code runs running or waiting, and 2"):
            async with gate.slot("c", 2):
                pass
        async with gate.slot("c"):
            assert gate.clients["c"] == 3
    assert gate.clients == {}


# --- the encoder: one choice per run, usage summed ---------------------------------------

ENCODER = ChatEncoder(id="chatcmpl-1", created=1, model=MODEL)


@pytest.mark.parametrize(
    ("usages", "costs", "total"),
    [
        ([Usage(10, 5), Usage(3, 2, 0, 4)], [0.5, 0.25], (17, 7, 0.75)),
        # One run's counts unknown (cut at a stop sequence): the sum is unknown too.
        ([Usage(10, 5), None], [0.5, None], None),
    ],
)
def test_choices_are_indexed_and_counted_together(
    usages: list[Usage | None], costs: list[float | None], total: tuple[int, int, float] | None
) -> None:
    results = [
        (Answer(text=f"answer {i}"), Finished("end_turn", usage, cost, None))
        for i, (usage, cost) in enumerate(zip(usages, costs, strict=True))
    ]
    completion = to_json(ENCODER.completion(*results))
    assert [(c["index"], c["message"]["content"]) for c in completion["choices"]] == [
        (0, "answer 0"),
        (1, "answer 1"),
    ]
    chunk = to_json(ENCODER.usage_chunk(*(f for _, f in results)))
    for payload in (completion, chunk):
        if total is None:
            assert payload.get("usage") is None and payload.get("cost_usd") is None
        else:
            counted = payload["usage"]
            assert (counted["prompt_tokens"], counted["completion_tokens"]) == total[:2]
            assert payload["cost_usd"] == total[2]


def test_a_streamed_chunk_names_its_choice() -> None:
    chunk = to_json(ENCODER.delta_chunk(TextDelta("hi"), choice=2))
    assert chunk["choices"] == [
        {"index": 2, "delta": {"content": "hi"}, "finish_reason": None, "logprobs": None}
    ]


async def test_a_client_that_leaves_stops_every_choice(
    http: httpx.AsyncClient, mock: MockAnthropic
) -> None:
    slow = Reply.text("x" * 40, pieces=40, delay=0.1)  # 4 s each: never to their end
    mock.script(slow, slow)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask, http, {"model": MODEL, "messages": HI, "n": 2})
            while len(mock.messages) < 2:  # noqa: ASYNC110 - the mock records; nothing to wait on
                await trio.sleep(0.02)
            nursery.cancel_scope.cancel()
        gone_at = trio.current_time()
        left = await wait_for_no_cli(within=5)
    assert left == []
    for upstream in mock.messages:
        assert upstream.finished is None and upstream.aborted_at is not None
        assert upstream.aborted_at - gone_at < 1.0


async def test_openai_streams_n_choices(client: AsyncOpenAI, mock: MockAnthropic) -> None:
    mock.script(Reply.text("Left.", pieces=2), Reply.text("Right.", pieces=2))
    stream = await client.chat.completions.create(model=MODEL, messages=HI, n=2, stream=True)  # type: ignore[arg-type]
    texts = {0: "", 1: ""}
    finished = set()
    async for chunk in stream:
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
            if choice.finish_reason is not None:
                finished.add(choice.index)
    assert sorted(texts.values()) == ["Left.", "Right."]
    assert finished == {0, 1}
