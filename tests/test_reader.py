"""wrapper.claude.reader: the SDK's messages of one run -> events, with no CLI.

Table tests, as h11 tests its state machine: each case is the messages Claude Code would
send (raw Anthropic stream events, the whole assistant messages, the result), built from
the SDK's own types, and the exact events the reader makes of them.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from claude_agent_sdk import (
    AssistantMessage,
    Message,
    ResultMessage,
    StreamEvent,
    TextBlock,
    ThinkingBlock,
    ToolUseBlock,
)

from wrapper import errors
from wrapper.claude.reader import Reader
from wrapper.events import (
    Answer,
    Began,
    Call,
    CallArguments,
    CallStarted,
    Event,
    Failed,
    Finished,
    MessageEnd,
    ReasoningDelta,
    Restarted,
    TextDelta,
    Usage,
)

SESSION = "6c2de31a-bd70-401a-9836-43e771964570"
MODEL = "claude-sonnet-4-5"
NAMES = frozenset({"get_weather", "get-time"})
RAW_USAGE: dict[str, object] = {
    "input_tokens": 11,
    "output_tokens": 7,
    "cache_read_input_tokens": 3,
}
COST = 0.0125
PARIS = {"city": "Paris"}


# --- the messages Claude Code sends ------------------------------------------------------


def stream(event: dict[str, Any], parent: str | None = None) -> StreamEvent:
    return StreamEvent(uuid="u-1", session_id=SESSION, event=event, parent_tool_use_id=parent)


def message_start() -> StreamEvent:
    return stream({"type": "message_start", "message": {"role": "assistant", "content": []}})


def text_start(index: int) -> StreamEvent:
    block = {"type": "text", "text": ""}
    return stream({"type": "content_block_start", "index": index, "content_block": block})


def text(index: int, piece: str, parent: str | None = None) -> StreamEvent:
    delta = {"type": "text_delta", "text": piece}
    return stream({"type": "content_block_delta", "index": index, "delta": delta}, parent)


def thinking(index: int, piece: str) -> StreamEvent:
    delta = {"type": "thinking_delta", "thinking": piece}
    return stream({"type": "content_block_delta", "index": index, "delta": delta})


def tool_start(index: int, id_: str, name: str) -> StreamEvent:
    block = {"type": "tool_use", "id": id_, "name": name, "input": {}}
    return stream({"type": "content_block_start", "index": index, "content_block": block})


def arguments(index: int, fragment: str) -> StreamEvent:
    delta = {"type": "input_json_delta", "partial_json": fragment}
    return stream({"type": "content_block_delta", "index": index, "delta": delta})


def message_delta(stop_reason: str = "end_turn") -> StreamEvent:
    return stream({"type": "message_delta", "delta": {"stop_reason": stop_reason}, "usage": {}})


def confirmed(*content: Any, parent: str | None = None, error: Any = None) -> AssistantMessage:
    return AssistantMessage(
        content=list(content), model=MODEL, parent_tool_use_id=parent, error=error
    )


def use(id_: str, name: str = "get_weather", input_: dict[str, Any] | None = None) -> ToolUseBlock:
    return ToolUseBlock(id=id_, name=name, input=PARIS if input_ is None else input_)


def result(
    *,
    is_error: bool = False,
    subtype: str = "success",
    stop_reason: str | None = "end_turn",
    detail: str | None = "Hello.",
    status: int | None = None,
    errors_: list[str] | None = None,
) -> ResultMessage:
    return ResultMessage(
        subtype=subtype,
        duration_ms=1200,
        duration_api_ms=900,
        is_error=is_error,
        num_turns=1,
        session_id=SESSION,
        stop_reason=stop_reason,
        total_cost_usd=COST,
        usage=RAW_USAGE,
        result=detail,
        errors=errors_,
        api_error_status=status,
    )


# What the CLI reports when the gate's interrupt ended the run at the client's calls.
INTERRUPTED = result(is_error=True, subtype="error_during_execution", stop_reason=None, detail=None)


def finished(stop_reason: str | None = "end_turn") -> Finished:
    return Finished(stop_reason, Usage.from_raw(RAW_USAGE), COST, SESSION)


# --- reading them --------------------------------------------------------------------


def read(
    messages: list[Message],
    names: frozenset[str] = NAMES,
    single: bool = False,
    counts: bool = False,
) -> list[Event]:
    """The events of ``messages``; each message's ``MessageEnd`` only with ``counts``."""
    reader = Reader(names, single)
    events = [event for message in messages for event in reader.feed(message)]
    return [e for e in events if counts or not isinstance(e, MessageEnd)]


def fold(events: list[Event]) -> Answer:
    answer = Answer()
    for event in events:
        answer.add(event)
    return answer


FailedShape = tuple[type[Failed], type[errors.WrapperError], str | None]


def failed(kind: type[errors.WrapperError], code: str | None = None) -> FailedShape:
    return (Failed, kind, code)


def plain(events: list[Event]) -> list[Event | FailedShape]:
    """The events, with each ``Failed`` as its error's class and code (errors are
    exceptions, which compare by identity)."""
    return [
        (Failed, type(e.error), e.error.instance_code) if isinstance(e, Failed) else e
        for e in events
    ]


RESTARTED = failed(errors.UpstreamError, "stream_restarted")

# --- text ------------------------------------------------------------------------------

TEXT_CASES: list[tuple[str, list[Message], list[Event | FailedShape]]] = [
    (
        "streamed-then-confirmed",
        [
            message_start(),
            text_start(0),
            text(0, "Hel"),
            text(0, "lo."),
            confirmed(TextBlock("Hello.")),
            message_delta(),
            result(),
        ],
        [Began(), TextDelta("Hel"), TextDelta("lo."), finished()],
    ),
    (
        # The CLI's retry of a broken stream comes whole, with no stream events.
        "confirmed-never-streamed",
        [confirmed(TextBlock("Hello.")), result()],
        [TextDelta("Hello."), finished()],
    ),
    (
        "the-unstreamed-rest-of-a-confirmed-text",
        [message_start(), text(0, "Hel"), confirmed(TextBlock("Hello.")), result()],
        [Began(), TextDelta("Hel"), TextDelta("lo."), finished()],
    ),
    (
        "confirmed-text-contradicts-the-streamed",
        [message_start(), text(0, "Hello wor"), confirmed(TextBlock("Hi there.")), result()],
        [Began(), TextDelta("Hello wor"), Restarted("Hi there."), finished()],
    ),
    (
        # Restarted carries all the text confirmed so far, not only the last message's.
        "restarted-in-a-later-message",
        [
            message_start(),
            text(0, "One."),
            confirmed(TextBlock("One.")),
            message_delta("tool_use"),
            message_start(),
            text(0, " Twx"),
            confirmed(TextBlock(" Two.")),
            result(),
        ],
        [Began(), TextDelta("One."), TextDelta(" Twx"), Restarted("One. Two."), finished()],
    ),
    (
        "the-text-around-claude-codes-own-tool",
        [
            message_start(),
            text(0, "Let me look."),
            confirmed(TextBlock("Let me look.")),
            tool_start(1, "toolu_Bash", "Bash"),
            arguments(1, '{"command": "ls"}'),
            confirmed(use("toolu_Bash", "Bash", {"command": "ls"})),
            message_delta("tool_use"),
            message_start(),
            text(0, " Done."),
            confirmed(TextBlock(" Done.")),
            message_delta(),
            result(),
        ],
        [Began(), TextDelta("Let me look."), TextDelta(" Done."), finished()],
    ),
    (
        "thinking-is-reasoning-not-text",
        [
            message_start(),
            thinking(0, "The user "),
            thinking(0, "greets."),
            text(1, "Hi."),
            confirmed(ThinkingBlock("The user greets.", "sig"), TextBlock("Hi.")),
            result(),
        ],
        [
            Began(),
            ReasoningDelta("The user "),
            ReasoningDelta("greets."),
            TextDelta("Hi."),
            finished(),
        ],
    ),
    (
        # The CLI's retry of a broken stream comes whole: its thinking too.
        "thinking-never-streamed-comes-whole",
        [
            confirmed(ThinkingBlock("Retrying.", "sig"), TextBlock("Hi.")),
            result(),
        ],
        [ReasoningDelta("Retrying."), TextDelta("Hi."), finished()],
    ),
    (
        # Claude Code confirms each block as it completes: the thinking, then the text.
        "thinking-confirmed-alone-is-not-repeated",
        [
            message_start(),
            thinking(0, "Hm."),
            confirmed(ThinkingBlock("Hm.", "sig")),
            text(1, "Yes."),
            confirmed(TextBlock("Yes.")),
            result(),
        ],
        [Began(), ReasoningDelta("Hm."), TextDelta("Yes."), finished()],
    ),
    (
        "began-once-on-the-first-message-start",
        [
            message_start(),
            message_delta("tool_use"),
            message_start(),
            text(0, "ok"),
            message_start(),
            result(),
        ],
        [Began(), TextDelta("ok"), finished()],
    ),
    (
        "no-began-without-a-stream",
        [result()],
        [finished()],
    ),
    (
        # A synthetic "API Error: ..." message: its text is the CLI's, not Claude's answer.
        "a-synthetic-error-message-says-nothing",
        [confirmed(TextBlock("API Error: 500 ..."), error="server_error"), result()],
        [finished()],
    ),
    (
        "a-subagent-says-nothing",
        [
            message_start(),
            text(0, "Asking a helper."),
            stream({"type": "message_start", "message": {}}, parent="toolu_Task"),
            text(0, "I am the helper.", parent="toolu_Task"),
            confirmed(TextBlock("I am the helper."), parent="toolu_Task"),
            confirmed(TextBlock("Asking a helper.")),
            result(),
        ],
        [Began(), TextDelta("Asking a helper."), finished()],
    ),
]


@pytest.mark.parametrize(
    ("messages", "expected"), [c[1:] for c in TEXT_CASES], ids=[c[0] for c in TEXT_CASES]
)
def test_text(messages: list[Message], expected: list[Event | FailedShape]) -> None:
    assert plain(read(messages)) == expected


# --- the client's calls ----------------------------------------------------------------

# Text, a call of the client's, one of Claude Code's own tools, another call of the
# client's: one message, streamed, each block confirmed as it completes.
STREAMED_CALLS: list[Message] = [
    message_start(),
    text_start(0),
    text(0, "Hm."),
    confirmed(TextBlock("Hm.")),
    tool_start(1, "toolu_A", "get_weather"),
    arguments(1, ""),  # the API may send an empty fragment first
    arguments(1, '{"city": '),
    arguments(1, '"Paris"}'),
    confirmed(use("toolu_A")),
    tool_start(2, "toolu_B", "Bash"),
    arguments(2, '{"command": "ls"}'),
    confirmed(use("toolu_B", "Bash", {"command": "ls"})),
    tool_start(3, "toolu_C", "get-time"),
    arguments(3, "{}"),
    confirmed(use("toolu_C", "get-time", {})),
    message_delta("tool_use"),
    INTERRUPTED,
]


CALL_CASES: list[tuple[str, list[Message], bool, list[Event | FailedShape]]] = [
    (
        "streamed-then-confirmed-silently",
        STREAMED_CALLS,
        False,
        [
            Began(),
            TextDelta("Hm."),
            CallStarted(0, "toolu_A", "get_weather"),
            CallArguments(0, '{"city": '),
            CallArguments(0, '"Paris"}'),
            CallStarted(1, "toolu_C", "get-time"),
            CallArguments(1, "{}"),
            finished("tool_use"),
        ],
    ),
    (
        "single-keeps-only-the-first",
        STREAMED_CALLS,
        True,
        [
            Began(),
            TextDelta("Hm."),
            CallStarted(0, "toolu_A", "get_weather"),
            CallArguments(0, '{"city": '),
            CallArguments(0, '"Paris"}'),
            finished("tool_use"),
        ],
    ),
    (
        # The CLI's non-streaming retry: the blocks come whole, each call in one piece.
        "confirmed-never-streamed",
        [confirmed(TextBlock("Hm."), use("toolu_A"), use("toolu_C", "get-time", {})), INTERRUPTED],
        False,
        [
            TextDelta("Hm."),
            CallStarted(0, "toolu_A", "get_weather"),
            CallArguments(0, json.dumps(PARIS)),
            CallStarted(1, "toolu_C", "get-time"),
            CallArguments(1, "{}"),
            finished("tool_use"),
        ],
    ),
    (
        "single-keeps-only-the-first-confirmed",
        [confirmed(use("toolu_A"), use("toolu_C", "get-time", {})), INTERRUPTED],
        True,
        [
            CallStarted(0, "toolu_A", "get_weather"),
            CallArguments(0, json.dumps(PARIS)),
            finished("tool_use"),
        ],
    ),
    (
        "single-ignores-an-unstreamed-call-after-a-streamed-one",
        [
            message_start(),
            tool_start(0, "toolu_A", "get_weather"),
            arguments(0, '{"city": "Paris"}'),
            confirmed(use("toolu_A"), use("toolu_C", "get-time", {})),
            INTERRUPTED,
        ],
        True,
        [
            Began(),
            CallStarted(0, "toolu_A", "get_weather"),
            CallArguments(0, '{"city": "Paris"}'),
            finished("tool_use"),
        ],
    ),
    (
        "the-arguments-may-be-spelled-any-way",
        [
            message_start(),
            tool_start(0, "toolu_A", "get_weather"),
            arguments(0, '{ "city" :"Paris" }'),
            confirmed(use("toolu_A")),
            INTERRUPTED,
        ],
        False,
        [
            Began(),
            CallStarted(0, "toolu_A", "get_weather"),
            CallArguments(0, '{ "city" :"Paris" }'),
            finished("tool_use"),
        ],
    ),
    (
        "claude-codes-own-tools-are-never-reported",
        [
            message_start(),
            tool_start(0, "toolu_B", "Bash"),
            arguments(0, '{"command": "ls"}'),
            confirmed(use("toolu_B", "Bash", {"command": "ls"})),
            confirmed(use("toolu_R", "Read", {"file_path": "a"})),
            message_delta("tool_use"),
            result(stop_reason="end_turn"),
        ],
        False,
        [Began(), finished("end_turn")],
    ),
    (
        "a-subagents-calls-are-not-the-clients",
        [
            stream({"type": "message_start", "message": {}}, parent="toolu_Task"),
            confirmed(use("toolu_S"), parent="toolu_Task"),
            result(),
        ],
        False,
        [finished("end_turn")],
    ),
    (
        # Block indexes count within a message: a new message's block 0 is not the old one.
        "block-indexes-restart-with-each-message",
        [
            message_start(),
            tool_start(0, "toolu_A", "get_weather"),
            message_start(),
            arguments(0, '{"city": "Rome"}'),
        ],
        False,
        [Began(), CallStarted(0, "toolu_A", "get_weather")],
    ),
    (
        "a-streamed-call-never-confirmed",
        [
            message_start(),
            tool_start(0, "toolu_A", "get_weather"),
            arguments(0, '{"city": "Paris"}'),
            confirmed(use("toolu_Z", input_={"city": "Rome"})),  # the retry's, a new id
            INTERRUPTED,
        ],
        False,
        [
            Began(),
            CallStarted(0, "toolu_A", "get_weather"),
            CallArguments(0, '{"city": "Paris"}'),
            CallStarted(1, "toolu_Z", "get_weather"),
            CallArguments(1, '{"city": "Rome"}'),
            RESTARTED,
        ],
    ),
    (
        "a-streamed-call-never-confirmed-in-a-single-run",
        [
            message_start(),
            tool_start(0, "toolu_A", "get_weather"),
            confirmed(use("toolu_Z", input_={"city": "Rome"})),
            INTERRUPTED,
        ],
        True,
        [Began(), CallStarted(0, "toolu_A", "get_weather"), RESTARTED],
    ),
]


@pytest.mark.parametrize(
    ("messages", "single", "expected"),
    [c[1:] for c in CALL_CASES],
    ids=[c[0] for c in CALL_CASES],
)
def test_calls(messages: list[Message], single: bool, expected: list[Event | FailedShape]) -> None:
    assert plain(read(messages, single=single)) == expected


def test_a_run_without_functions_reports_no_call() -> None:
    events = read([*STREAMED_CALLS[:-1], result()], names=frozenset())
    assert events == [Began(), TextDelta("Hm."), finished("end_turn")]


@pytest.mark.parametrize("fragments", [[], ['{"city": '], ['{"city": "Rome"}'], ["not json"]])
def test_a_confirmed_call_unlike_the_streamed_one_fails(fragments: list[str]) -> None:
    messages: list[Message] = [message_start(), tool_start(0, "toolu_A", "get_weather")]
    messages += [arguments(0, fragment) for fragment in fragments]
    messages += [confirmed(TextBlock("after"), use("toolu_A"), use("toolu_C", "get-time", {}))]
    events = read(messages)
    # The text of the message still goes out; the calls after the bad one do not.
    assert plain(events[-2:]) == [TextDelta("after"), RESTARTED]
    assert not any(isinstance(e, CallStarted) and e.id == "toolu_C" for e in events)
    assert events[-1].error.status == 502  # type: ignore[union-attr]


def test_a_streamed_call_without_arguments_is_the_empty_object() -> None:
    events = read(
        [
            message_start(),
            tool_start(0, "toolu_C", "get-time"),
            arguments(0, ""),
            confirmed(use("toolu_C", "get-time", {})),
            message_delta("tool_use"),
            INTERRUPTED,
        ]
    )
    # The API streams an empty input as "": the whole arguments go out when confirmed.
    assert fold(events).calls == [Call("toolu_C", "get-time", "{}")]
    assert CallArguments(0, "{}") in events


# --- whole: the tool_use ids the gate may answer -----------------------------------------


def test_whole_lists_the_streamed_blocks_once_their_message_ended() -> None:
    reader = Reader(NAMES)
    for message in STREAMED_CALLS[:-2]:  # everything before message_delta
        reader.feed(message)
        # Complete blocks are held while later ones may still stream.
        assert reader.take_whole() == []
    reader.feed(message_delta("tool_use"))
    # Every tool_use of the message, the client's and Claude Code's own, in order.
    assert reader.take_whole() == ["toolu_A", "toolu_B", "toolu_C"]
    assert reader.take_whole() == []  # drained


def test_whole_lists_unstreamed_blocks_as_they_are_confirmed() -> None:
    reader = Reader(NAMES)
    reader.feed(confirmed(TextBlock("Hm."), use("toolu_A"), use("toolu_B", "Bash", {})))
    assert reader.take_whole() == ["toolu_A", "toolu_B"]
    reader.feed(message_start())
    reader.feed(tool_start(0, "toolu_C", "get-time"))
    reader.feed(arguments(0, "{}"))
    reader.feed(confirmed(use("toolu_C", "get-time", {})))
    assert reader.take_whole() == []  # streamed: held until its message ends
    reader.feed(message_delta("tool_use"))
    assert reader.take_whole() == ["toolu_C"]


# --- the end of a run ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_kind", "kind", "http_status", "retry_after"),
    [
        (429, None, errors.UpstreamRateLimited, 429, 30),
        # Our credentials, not the client's: a server fault.
        (401, None, errors.UpstreamAuthError, 500, None),
        (403, None, errors.UpstreamAuthError, 500, None),
        (404, None, errors.ModelNotFound, 404, None),
        (400, None, errors.UpstreamBadRequest, 400, None),
        (500, None, errors.UpstreamUnavailable, 503, 10),
        (529, None, errors.UpstreamUnavailable, 503, 10),
        # Without a status, the kind of the CLI's synthetic error message says.
        (None, "rate_limit", errors.UpstreamRateLimited, 429, 30),
        (None, "server_error", errors.UpstreamUnavailable, 503, 10),
        (None, None, errors.UpstreamError, 502, None),
        # The status wins over the kind.
        (401, "rate_limit", errors.UpstreamAuthError, 500, None),
    ],
)
def test_an_error_result_without_calls_fails_with_the_upstream_error(
    status: int | None,
    error_kind: str | None,
    kind: type[errors.WrapperError],
    http_status: int,
    retry_after: int | None,
) -> None:
    messages: list[Message] = [message_start()]
    if error_kind is not None:
        messages.append(confirmed(TextBlock("API Error"), error=error_kind))
    messages.append(result(is_error=True, status=status, detail="upstream said no"))
    events = read(messages)
    assert plain(events) == [Began(), failed(kind, kind.code)]
    error = events[-1].error  # type: ignore[union-attr]
    assert isinstance(error, kind)
    assert (error.status, error.retry_after) == (http_status, retry_after)


@pytest.mark.parametrize(
    ("detail", "errors_", "subtype", "said"),
    [
        ("rate limited at https://api.example:443/v1", None, "success", "<url>"),
        (None, ["first", "second"], "error_during_execution", "first; second"),
        (None, None, "error_max_turns", "error_max_turns"),
    ],
)
def test_an_error_results_text_reaches_the_client_scrubbed(
    detail: str | None, errors_: list[str] | None, subtype: str, said: str
) -> None:
    reader = Reader(NAMES)
    [event] = reader.feed(result(is_error=True, subtype=subtype, detail=detail, errors_=errors_))
    assert isinstance(event, Failed)
    assert said in event.error.message
    assert "api.example" not in event.error.message


def test_an_error_result_with_calls_is_the_gates_interrupt() -> None:
    events = read(STREAMED_CALLS)
    assert events[-1] == Finished("tool_use", Usage.from_raw(RAW_USAGE), COST, SESSION)


def test_finished_carries_usage_cost_and_session() -> None:
    usage = {
        "input_tokens": 3,
        "output_tokens": 9,
        "cache_creation_input_tokens": 200,
        "cache_read_input_tokens": 1000,
        "server_tool_use": {"web_search_requests": 0},
    }
    message = ResultMessage(
        subtype="success",
        duration_ms=10,
        duration_api_ms=8,
        is_error=False,
        num_turns=1,
        session_id="other-session",
        stop_reason="max_tokens",
        total_cost_usd=0.5,
        usage=usage,
        result="Hi",
    )
    assert Reader(NAMES).feed(message) == [
        Finished(
            stop_reason="max_tokens",
            usage=Usage(
                input_tokens=3,
                output_tokens=9,
                cache_creation_input_tokens=200,
                cache_read_input_tokens=1000,
            ),
            cost_usd=0.5,
            session_id="other-session",
        )
    ]


def test_nothing_after_the_result() -> None:
    reader = Reader(NAMES)
    assert reader.feed(result()) == [finished()]
    assert reader.ended
    assert reader.feed(text(0, "late")) == []
    assert reader.feed(confirmed(TextBlock("late"), use("toolu_A"))) == []
    assert reader.feed(result()) == []
    assert reader.end() == []
    assert reader.ending == finished()


def test_nothing_after_a_failure() -> None:
    reader = Reader(NAMES)
    reader.feed(message_start())
    reader.feed(tool_start(0, "toolu_A", "get_weather"))
    [failure] = reader.feed(confirmed(use("toolu_A")))  # nothing streamed: not the same
    assert isinstance(failure, Failed) and reader.ending is failure
    assert reader.feed(result()) == []
    assert reader.end() == []


def test_the_end_without_a_result_fails() -> None:
    reader = Reader(NAMES)
    assert reader.feed(message_start()) == [Began()]
    assert reader.feed(text(0, "Hel")) == [TextDelta("Hel")]
    [event] = reader.end()
    assert isinstance(event, Failed) and isinstance(event.error, errors.UpstreamError)
    assert "without a result" in event.error.message
    assert reader.end() == []
    assert reader.feed(result()) == []


# --- the fold: what a non-streamed answer and the records take ---------------------------


def test_the_fold_of_streamed_text_and_calls() -> None:
    answer = fold(read(STREAMED_CALLS))
    assert answer.text == "Hm."
    assert answer.calls == [
        Call("toolu_A", "get_weather", '{"city": "Paris"}'),
        Call("toolu_C", "get-time", "{}"),
    ]
    assert answer.finished == finished("tool_use")


def test_the_fold_takes_the_confirmed_text_after_a_restart() -> None:
    messages: list[Message] = [
        message_start(),
        text(0, "Hello wor"),
        confirmed(TextBlock("Hi there."), use("toolu_A")),
        INTERRUPTED,
    ]
    answer = fold(read(messages))
    assert answer.text == "Hi there."
    assert answer.calls == [Call("toolu_A", "get_weather", json.dumps(PARIS))]
    assert answer.finished is not None


def test_the_fold_of_thinking_keeps_it_apart() -> None:
    answer = fold(read([message_start(), thinking(0, "hmm"), text(1, "Yes."), result()]))
    assert (answer.reasoning, answer.text) == ("hmm", "Yes.")


def test_the_fold_of_a_failed_run_has_no_finish() -> None:
    answer = fold(read([message_start(), text(0, "Hel"), result(is_error=True, status=429)]))
    assert answer.text == "Hel"
    assert answer.finished is None
    assert isinstance(answer.ending, Failed)
    assert isinstance(answer.ending.error, errors.UpstreamRateLimited)


def test_each_message_ends_with_its_stop_reason_and_usage() -> None:
    start = stream(
        {"type": "message_start", "message": {"usage": {"input_tokens": 11, "output_tokens": 1}}}
    )
    end = stream(
        {
            "type": "message_delta",
            "delta": {"stop_reason": "max_tokens", "stop_sequence": None},
            "usage": {"output_tokens": 5},
        }
    )
    events = read([start, text(0, "one"), end], counts=True)
    assert events[-1] == MessageEnd("max_tokens", Usage(input_tokens=11, output_tokens=5))
