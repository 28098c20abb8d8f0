"""wrapper.encode: a run's events -> the exact JSON OpenAI clients read.

Pure, so every case is data: events in, the wire's JSON out. The streamed chunks and the
non-streamed completion of the same events are one answer (checked with the openai
client's own accumulator).
"""

from __future__ import annotations

from typing import Any

import attrs
import openai.types.chat as oa
import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState

from wrapper import errors, events
from wrapper.completions import (
    ChatCompletionChunk,
    CompletionTokensDetails,
    PromptTokensDetails,
    Usage,
    to_json,
)
from wrapper.encode import ChatEncoder, finish, finish_reason, usage
from wrapper.events import (
    Answer,
    Began,
    Call,
    CallArguments,
    CallStarted,
    Event,
    Failed,
    Finished,
    ReasoningDelta,
    Restarted,
    TextDelta,
)

ENCODER = ChatEncoder(id="chatcmpl-abc123", created=1700000000, model="claude-sonnet-4-5")
LEGACY = ChatEncoder(
    id="chatcmpl-abc123", created=1700000000, model="claude-sonnet-4-5", legacy=True
)
SAME = {"id": "chatcmpl-abc123", "created": 1700000000, "model": "claude-sonnet-4-5"}
SESSION = "6c2de31a-bd70-401a-9836-43e771964570"
# 16 fresh input tokens and 4 read from the cache: 20 prompt tokens, 4 of them cached.
COUNTS = events.Usage(input_tokens=16, output_tokens=5, cache_read_input_tokens=4)
USAGE_JSON = {
    "prompt_tokens": 20,
    "completion_tokens": 5,
    "total_tokens": 25,
    "prompt_tokens_details": {"cached_tokens": 4},
}


def ended(stop_reason: str | None = "end_turn", cost_usd: float | None = None) -> Finished:
    return Finished(stop_reason, COUNTS, cost_usd, SESSION)


def chunk_json(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        **SAME,
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        "usage": None,
        "system_fingerprint": None,
    }


def delta_json(encoder: ChatEncoder, event: Event) -> dict[str, Any]:
    chunk = encoder.delta_chunk(event)
    assert chunk is not None
    return to_json(chunk)


# --- finish_reason ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stop_reason", "expected"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        (None, "stop"),
        ("", "stop"),
        ("something_new", "stop"),
    ],
)
def test_finish_reason(stop_reason: str | None, expected: str) -> None:
    assert finish_reason(stop_reason) == expected


@pytest.mark.parametrize(
    ("stop_reason", "called", "legacy", "expected"),
    [
        ("tool_use", True, False, "tool_calls"),
        ("tool_use", True, True, "function_call"),
        (None, True, False, "tool_calls"),
        ("end_turn", False, False, "stop"),
        ("max_tokens", False, True, "length"),
        # A tool_use stop with no call for the client (Claude Code's own tool) is a stop.
        ("tool_use", False, False, "stop"),
        ("tool_use", False, True, "stop"),
    ],
)
def test_finish(stop_reason: str | None, called: bool, legacy: bool, expected: str) -> None:
    assert finish(stop_reason, called, legacy) == expected


# --- usage ----------------------------------------------------------------------------


def openai_usage(prompt: int, completion: int, cached: int = 0) -> Usage:
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=cached),
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, openai_usage(0, 0)),
        ({}, openai_usage(0, 0)),
        ({"input_tokens": 20, "output_tokens": 5}, openai_usage(20, 5)),
        # Anthropic counts cache reads and cache writes apart from input_tokens; OpenAI's
        # prompt_tokens is all input, with the cache hits repeated in cached_tokens.
        (
            {
                "input_tokens": 3,
                "cache_read_input_tokens": 1000,
                "cache_creation_input_tokens": 200,
                "output_tokens": 7,
            },
            openai_usage(1203, 7, cached=1000),
        ),
        ({"input_tokens": 3, "cache_creation_input_tokens": 200}, openai_usage(203, 0)),
        ({"cache_read_input_tokens": 50, "output_tokens": 1}, openai_usage(50, 1, cached=50)),
        # Garbage is counted as zero, never raised on.
        (
            {
                "input_tokens": "12",
                "output_tokens": 4.5,
                "cache_read_input_tokens": None,
                "cache_creation_input_tokens": [1],
            },
            openai_usage(0, 0),
        ),
        ({"input_tokens": 9, "output_tokens": {"n": 1}}, openai_usage(9, 0)),
        ({"input_tokens": True, "output_tokens": False}, openai_usage(0, 0)),
        # Thinking tokens, when Claude Code counts them (its 0 is not a count).
        (
            {
                "input_tokens": 1,
                "output_tokens": 9,
                "output_tokens_details": {"thinking_tokens": 4},
            },
            attrs.evolve(
                openai_usage(1, 9),
                completion_tokens_details=CompletionTokensDetails(reasoning_tokens=4),
            ),
        ),
        (
            {
                "input_tokens": 1,
                "output_tokens": 9,
                "output_tokens_details": {"thinking_tokens": 0},
            },
            openai_usage(1, 9),
        ),
        (
            {"output_tokens": 2, "output_tokens_details": {"thinking_tokens": "4"}},
            openai_usage(0, 2),
        ),
        # Fields we do not map are ignored.
        (
            {"input_tokens": 1, "output_tokens": 2, "server_tool_use": {"web_search_requests": 1}},
            openai_usage(1, 2),
        ),
    ],
)
def test_usage(raw: dict[str, object] | None, expected: Usage) -> None:
    assert usage(events.Usage.from_raw(raw)) == expected


def test_usage_total_is_prompt_plus_completion() -> None:
    counts = events.Usage(
        input_tokens=11,
        cache_read_input_tokens=13,
        cache_creation_input_tokens=17,
        output_tokens=19,
    )
    got = usage(counts)
    assert got.total_tokens == got.prompt_tokens + got.completion_tokens == 60
    assert got.prompt_tokens == counts.all_input == 41


# --- the exact JSON of each chunk and of the completion --------------------------------


@pytest.mark.parametrize(
    ("chunk", "expected"),
    [
        (ENCODER.role_chunk(), chunk_json({"role": "assistant", "content": ""})),
        (ENCODER.delta_chunk(TextDelta("x")), chunk_json({"content": "x"})),
        (ENCODER.delta_chunk(TextDelta("")), chunk_json({"content": ""})),
        (ENCODER.final_chunk(ended("end_turn"), called=False), chunk_json({}, "stop")),
        (ENCODER.final_chunk(ended("max_tokens"), called=False), chunk_json({}, "length")),
        (
            ENCODER.final_chunk(ended(None, 0.0125), called=False),
            {**chunk_json({}, "stop"), "cost_usd": 0.0125},
        ),
        (
            ENCODER.usage_chunk(ended()),
            {
                **SAME,
                "object": "chat.completion.chunk",
                "choices": [],
                "usage": USAGE_JSON,
                "system_fingerprint": None,
            },
        ),
        (
            ENCODER.usage_chunk(ended(cost_usd=0.5)),
            {
                **SAME,
                "object": "chat.completion.chunk",
                "choices": [],
                "usage": USAGE_JSON,
                "system_fingerprint": None,
                "cost_usd": 0.5,
            },
        ),
    ],
    ids=[
        "role",
        "text",
        "empty-text",
        "final",
        "final-length",
        "final-with-cost",
        "usage",
        "usage-with-cost",
    ],
)
def test_chunk_json(chunk: ChatCompletionChunk | None, expected: dict[str, Any]) -> None:
    assert chunk is not None
    assert to_json(chunk) == expected


@pytest.mark.parametrize(
    "event",
    [
        Began(),
        Restarted("again"),
        ended(),
        Failed(errors.UpstreamError("Claude Code failed.")),
    ],
    ids=["began", "restarted", "finished", "failed"],
)
def test_only_deltas_are_chunks(event: Event) -> None:
    assert ENCODER.delta_chunk(event) is None


def test_thinking_is_a_reasoning_delta_or_nothing() -> None:
    shown = ENCODER.delta_chunk(ReasoningDelta("hm"))
    assert shown is not None and to_json(shown) == chunk_json({"reasoning_content": "hm"})
    hidden = attrs.evolve(ENCODER, reasoning=False)
    assert hidden.delta_chunk(ReasoningDelta("hm")) is None


@pytest.mark.parametrize("shown", [True, False])
def test_thinking_in_a_completion_is_reasoning_content(shown: bool) -> None:
    answer = Answer()
    for event in (ReasoningDelta("Think"), ReasoningDelta("ing."), TextDelta("Answer.")):
        answer.add(event)
    encoder = attrs.evolve(ENCODER, reasoning=shown)
    message = to_json(encoder.completion((answer, ended())))["choices"][0]["message"]
    assert message["content"] == "Answer."
    assert message.get("reasoning_content") == ("Thinking." if shown else None)
    assert ("reasoning_content" in message) is shown


@pytest.mark.parametrize(
    ("cost_usd", "extra"),
    [(None, {}), (0.0031, {"cost_usd": 0.0031}), (0.0, {"cost_usd": 0.0})],
)
def test_completion_json(cost_usd: float | None, extra: dict[str, Any]) -> None:
    completion = ENCODER.completion((Answer(text="Paris."), ended("refusal", cost_usd)))
    assert to_json(completion) == {
        **SAME,
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Paris.", "refusal": None},
                "finish_reason": "content_filter",
                "logprobs": None,
            }
        ],
        "usage": USAGE_JSON,
        "system_fingerprint": None,
        **extra,
    }


def test_every_chunk_of_a_stream_repeats_id_created_and_model() -> None:
    stream = [
        ENCODER.role_chunk(),
        ENCODER.delta_chunk(TextDelta("a")),
        ENCODER.delta_chunk(CallStarted(0, "toolu_A", "f")),
        ENCODER.delta_chunk(CallArguments(0, "{}")),
        ENCODER.final_chunk(ended("tool_use", 0.1), called=True),
        ENCODER.usage_chunk(ended("tool_use", 0.1)),
    ]
    for chunk in stream:
        assert chunk is not None
        wire = to_json(chunk)
        assert {key: wire[key] for key in SAME} == SAME


# --- function calls: their chunks and the completion that holds them --------------------


@pytest.mark.parametrize(
    ("event", "legacy", "expected"),
    [
        (
            CallStarted(0, "toolu_A", "get_weather"),
            False,
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_A",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ]
            },
        ),
        (
            CallArguments(1, '{"a"'),
            False,
            {"tool_calls": [{"index": 1, "function": {"arguments": '{"a"'}}]},
        ),
        (
            CallStarted(0, "toolu_A", "get_weather"),
            True,
            {"function_call": {"name": "get_weather", "arguments": ""}},
        ),
        (CallArguments(0, "}"), True, {"function_call": {"arguments": "}"}}),
    ],
)
def test_call_chunk_json(event: Event, legacy: bool, expected: dict[str, Any]) -> None:
    assert delta_json(LEGACY if legacy else ENCODER, event) == chunk_json(expected)


def test_final_chunk_after_calls() -> None:
    assert to_json(ENCODER.final_chunk(ended("tool_use"), called=True)) == chunk_json(
        {}, "tool_calls"
    )
    legacy = LEGACY.final_chunk(ended("tool_use"), called=True)
    assert to_json(legacy) == chunk_json({}, "function_call")


PARIS_CALL = Call("toolu_A", "get_weather", '{"city": "Paris"}')
ROME_CALL = Call("toolu_B", "get_weather", '{"city": "Rome"}')


@pytest.mark.parametrize(
    ("text", "legacy", "message", "finish_json"),
    [
        (
            "",
            False,
            {
                "role": "assistant",
                "content": None,
                "refusal": None,
                "tool_calls": [
                    {
                        "id": "call_A",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    },
                    {
                        "id": "call_B",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
                    },
                ],
            },
            "tool_calls",
        ),
        (
            "Looking.",
            True,
            {
                "role": "assistant",
                "content": "Looking.",
                "refusal": None,
                "function_call": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            },
            "function_call",
        ),
    ],
)
def test_completion_with_calls_json(
    text: str, legacy: bool, message: dict[str, Any], finish_json: str
) -> None:
    answer = Answer(text=text, calls=[PARIS_CALL, ROME_CALL])
    completion = (LEGACY if legacy else ENCODER).completion((answer, ended("tool_use")))
    [choice] = to_json(completion)["choices"]
    assert choice == {
        "index": 0,
        "message": message,
        "finish_reason": finish_json,
        "logprobs": None,
    }


# --- one rule for both: the stream and the completion of the same events ---------------


def streamed(encoder: ChatEncoder, run: list[Event]) -> list[dict[str, Any]]:
    """The chunks of a run as the handler sends them: the role first, one per delta, the
    final chunk, the usage chunk."""
    finished = run[-1]
    assert isinstance(finished, Finished)
    called = any(isinstance(event, CallStarted) for event in run)
    chunks = [encoder.role_chunk()]
    chunks += [c for c in map(encoder.delta_chunk, run) if c is not None]
    chunks += [encoder.final_chunk(finished, called), encoder.usage_chunk(finished)]
    return [to_json(chunk) for chunk in chunks]


def completed(encoder: ChatEncoder, run: list[Event]) -> dict[str, Any]:
    answer = Answer()
    for event in run:
        answer.add(event)
    assert answer.finished is not None
    return to_json(encoder.completion((answer, answer.finished)))


RUNS: list[tuple[str, bool, list[Event]]] = [
    ("text", False, [Began(), TextDelta("Hel"), TextDelta("lo."), ended()]),
    ("text-cut-at-max-tokens", False, [TextDelta("Hel"), ended("max_tokens", 0.02)]),
    (
        "reasoning-beside-the-text",
        False,
        [Began(), ReasoningDelta("hmm"), TextDelta("Yes."), ended()],
    ),
    # Claude Code's own tool ended a message: the answer's end is a plain stop.
    ("own-tool-stop-without-calls", False, [TextDelta("Done."), ended("tool_use")]),
    (
        "text-and-parallel-calls",
        False,
        [
            Began(),
            TextDelta("Hm."),
            CallStarted(0, "toolu_A", "get_weather"),
            CallArguments(0, '{"city": '),
            CallArguments(0, '"Paris"}'),
            CallStarted(1, "toolu_C", "get-time"),
            CallArguments(1, "{}"),
            ended("tool_use", 0.01),
        ],
    ),
    (
        "calls-without-text",
        False,
        [CallStarted(0, "toolu_A", "get_weather"), CallArguments(0, '{"city": "Paris"}'), ended()],
    ),
    (
        "legacy-call",
        True,
        [
            TextDelta("Looking."),
            CallStarted(0, "toolu_A", "get_weather"),
            CallArguments(0, '{"city": '),
            CallArguments(0, '"Paris"}'),
            ended("tool_use"),
        ],
    ),
]


@pytest.mark.parametrize(("legacy", "run"), [r[1:] for r in RUNS], ids=[r[0] for r in RUNS])
def test_the_stream_and_the_completion_of_a_run_agree(legacy: bool, run: list[Event]) -> None:
    encoder = LEGACY if legacy else ENCODER
    # The openai client's own accumulator reads the stream back into one completion.
    state: ChatCompletionStreamState[None] = ChatCompletionStreamState()
    for chunk in streamed(encoder, run):
        state.handle_chunk(oa.ChatCompletionChunk.model_validate(chunk))
    # The snapshot, not get_final_completion(), which refuses a "length" ending.
    from_stream = state.current_completion_snapshot
    whole = oa.ChatCompletion.model_validate(completed(encoder, run))
    [got], [want] = from_stream.choices, whole.choices
    assert got.finish_reason == want.finish_reason
    # The stream's role chunk starts the content with "": text or nothing, as one.
    assert (got.message.content or None) == (want.message.content or None)
    calls = [(c.id, c.function.name, c.function.arguments) for c in got.message.tool_calls or []]
    assert calls == [
        (c.id, c.function.name, c.function.arguments)  # type: ignore[union-attr]
        for c in want.message.tool_calls or []
    ]
    assert got.message.function_call == want.message.function_call
    assert from_stream.usage == whole.usage
    # Thinking: the same on both sides, apart from the text.
    thought = "".join(e.text for e in run if isinstance(e, ReasoningDelta))
    chunks = streamed(encoder, run)
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert "".join(d.get("reasoning_content", "") for d in deltas) == thought
    assert (want.message.model_extra or {}).get("reasoning_content") == (thought or None)
    # What each side says, for the cases at hand.
    text = "".join(e.text for e in run if isinstance(e, TextDelta))
    assert (want.message.content or "") == text
    started = [e for e in run if isinstance(e, CallStarted)]
    if legacy:
        assert want.message.tool_calls is None
        assert (want.message.function_call is not None) == bool(started)
    else:
        assert [c[0] for c in calls] == ["call_" + e.id.removeprefix("toolu_") for e in started]
