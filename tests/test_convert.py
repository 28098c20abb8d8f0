"""wrapper.convert: OpenAI messages -> one Claude Code turn; Claude results -> OpenAI shapes.

Pure functions, so every case is data: a request as plain JSON in, exact values out.
"""

from __future__ import annotations

from typing import Any

import pytest

from wrapper.convert import ChunkHead, Turn, finish_reason, to_turn, usage_from
from wrapper.errors import InvalidRequest
from wrapper.schema import PromptTokensDetails, Usage, parse_chat_request, to_json

DEFAULT_MODEL = "claude-sonnet-4-5"


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def assistant(content: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": content}


def system(content: Any) -> dict[str, Any]:
    return {"role": "system", "content": content}


def developer(content: Any) -> dict[str, Any]:
    return {"role": "developer", "content": content}


def turn(*messages: dict[str, Any], model: str | None = "claude-opus-4-5") -> Turn:
    request = parse_chat_request({"model": model, "messages": list(messages)})
    return to_turn(request, DEFAULT_MODEL)


def refusal(*messages: dict[str, Any]) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        turn(*messages)
    return caught.value


# --- to_turn: what Claude is asked ----------------------------------------------------


def test_single_user_message_is_the_whole_prompt() -> None:
    assert turn(user("What is 2 + 2?")) == Turn(
        prompt="What is 2 + 2?", system_prompt=None, model="claude-opus-4-5"
    )


def test_system_and_developer_messages_join_in_order_into_the_system_prompt() -> None:
    result = turn(
        system("You are terse."),
        user("hi"),
        developer("Answer in French."),
        assistant("bonjour"),
        system("Never apologise."),
        user("and now?"),
    )
    assert result.system_prompt == "You are terse.\n\nAnswer in French.\n\nNever apologise."
    for instruction in ("terse", "French", "apologise", "<system>", "<developer>"):
        assert instruction not in result.prompt


def test_history_is_rendered_before_the_last_user_message() -> None:
    result = turn(system("Be brief."), user("Hi"), assistant("Hello!"), user("Capital of France?"))
    assert result.prompt == (
        "<conversation_history>\n"
        "<user>\n"
        "Hi\n"
        "</user>\n"
        "<assistant>\n"
        "Hello!\n"
        "</assistant>\n"
        "</conversation_history>\n"
        "\n"
        "Capital of France?"
    )
    assert result.system_prompt == "Be brief."


def test_history_keeps_the_order_of_the_turns() -> None:
    prompt = turn(
        user("first"), assistant("second"), user("third"), assistant("fourth"), user("fifth")
    ).prompt
    history, _, current = prompt.partition("</conversation_history>")
    assert current == "\n\nfifth"
    positions = [history.index(word) for word in ("first", "second", "third", "fourth")]
    assert positions == sorted(positions)
    assert "fifth" not in history


@pytest.mark.parametrize(
    ("content", "prompt"),
    [
        ("plain", "plain"),
        ([{"type": "text", "text": "one"}], "one"),
        ([{"type": "text", "text": "one"}, {"type": "text", "text": "two"}], "one\ntwo"),
        ([{"type": "text", "text": "a"}, {"type": "text", "text": ""}], "a\n"),
        ([], ""),
    ],
)
def test_content_parts_are_joined_with_newlines(content: Any, prompt: str) -> None:
    assert turn(user(content)).prompt == prompt


def test_list_content_in_system_and_history_is_joined_too() -> None:
    parts = [{"type": "text", "text": "x"}, {"type": "text", "text": "y"}]
    result = turn(system(parts), assistant(parts), user("z"))
    assert result.system_prompt == "x\ny"
    assert "<assistant>\nx\ny\n</assistant>" in result.prompt


def test_assistant_message_with_null_content_renders_as_empty() -> None:
    assert turn(user("a"), assistant(None), user("b")).prompt == (
        "<conversation_history>\n<user>\na\n</user>\n<assistant>\n\n</assistant>\n"
        "</conversation_history>\n\nb"
    )


@pytest.mark.parametrize(
    ("requested", "used"),
    [
        (None, DEFAULT_MODEL),
        ("claude-opus-4-5", "claude-opus-4-5"),
        ("haiku", "haiku"),
        ("some-future-model", "some-future-model"),
    ],
)
def test_model_falls_back_to_the_default(requested: str | None, used: str) -> None:
    assert turn(user("hi"), model=requested).model == used


def test_missing_model_key_uses_the_default() -> None:
    request = parse_chat_request({"messages": [user("hi")]})
    assert to_turn(request, "opus").model == "opus"


# --- to_turn: what is refused, and the field it blames --------------------------------

IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
TEXT = {"type": "text", "text": "look"}
TOOL_CALL = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}


@pytest.mark.parametrize(
    ("messages", "param", "code"),
    [
        # The last message is the one Claude answers: it must be the user's.
        ([user("hi"), assistant("hello")], "messages[1].role", None),
        ([system("be nice")], "messages[0].role", None),
        ([developer("be nice")], "messages[0].role", None),
        ([user("a"), assistant("b"), user("c"), system("d")], "messages[3].role", None),
        # Images: the index of the message and of the part.
        ([user([IMAGE])], "messages[0].content[0]", "unsupported_content"),
        ([user([TEXT, IMAGE])], "messages[0].content[1]", "unsupported_content"),
        (
            [user("a"), assistant("b"), user([TEXT, TEXT, IMAGE])],
            "messages[2].content[2]",
            "unsupported_content",
        ),
        ([system([IMAGE]), user("hi")], "messages[0].content[0]", "unsupported_content"),
        # Tool results and assistant tool calls.
        (
            [user("a"), {"role": "tool", "content": "42", "tool_call_id": "call_1"}, user("b")],
            "messages[1].role",
            "unsupported_role",
        ),
        (
            [
                user("a"),
                {"role": "assistant", "content": None, "tool_calls": [TOOL_CALL]},
                user("b"),
            ],
            "messages[1].tool_calls",
            "unsupported_content",
        ),
    ],
)
def test_refused_messages_name_the_field(
    messages: list[dict[str, Any]], param: str, code: str | None
) -> None:
    error = refusal(*messages)
    assert (error.status, error.param, error.instance_code) == (400, param, code)
    message_path = param.split(".")[0]
    assert f"'{message_path}" in error.message
    assert error.envelope()["error"]["type"] == "invalid_request_error"


def test_tool_message_error_names_its_param() -> None:
    error = refusal(user("a"), {"role": "tool", "content": "42", "tool_call_id": "c"}, user("b"))
    assert "'messages[1].role'" in error.message


def test_last_message_error_names_the_role_it_got() -> None:
    error = refusal(user("hi"), assistant("hello"))
    assert error.message == (
        "The last message must have role 'user', got 'assistant': 'messages[1].role'."
    )


def test_empty_tool_calls_list_is_not_a_tool_call() -> None:
    result = turn(user("a"), {"role": "assistant", "content": "b", "tool_calls": []}, user("c"))
    assert "<assistant>\nb\n</assistant>" in result.prompt


# --- finish_reason ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
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
def test_finish_reason(stop_reason: str | None, finish: str) -> None:
    assert finish_reason(stop_reason) == finish


# --- usage_from -------------------------------------------------------------------------


def usage(prompt: int, completion: int, cached: int = 0) -> Usage:
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=cached),
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, usage(0, 0)),
        ({}, usage(0, 0)),
        ({"input_tokens": 20, "output_tokens": 5}, usage(20, 5)),
        # Anthropic counts cache reads and cache writes apart from input_tokens; OpenAI's
        # prompt_tokens is all input, with the cache hits repeated in cached_tokens.
        (
            {
                "input_tokens": 3,
                "cache_read_input_tokens": 1000,
                "cache_creation_input_tokens": 200,
                "output_tokens": 7,
            },
            usage(1203, 7, cached=1000),
        ),
        ({"input_tokens": 3, "cache_creation_input_tokens": 200}, usage(203, 0)),
        ({"cache_read_input_tokens": 50, "output_tokens": 1}, usage(50, 1, cached=50)),
        # Garbage is counted as zero, never raised on.
        (
            {
                "input_tokens": "12",
                "output_tokens": 4.5,
                "cache_read_input_tokens": None,
                "cache_creation_input_tokens": [1],
            },
            usage(0, 0),
        ),
        ({"input_tokens": 9, "output_tokens": {"n": 1}}, usage(9, 0)),
        # Fields we do not map are ignored.
        (
            {"input_tokens": 1, "output_tokens": 2, "server_tool_use": {"web_search_requests": 1}},
            usage(1, 2),
        ),
    ],
)
def test_usage_from(raw: dict[str, object] | None, expected: Usage) -> None:
    assert usage_from(raw) == expected


def test_usage_total_is_prompt_plus_completion() -> None:
    got = usage_from(
        {
            "input_tokens": 11,
            "cache_read_input_tokens": 13,
            "cache_creation_input_tokens": 17,
            "output_tokens": 19,
        }
    )
    assert got.total_tokens == got.prompt_tokens + got.completion_tokens == 60


def test_usage_from_ignores_booleans() -> None:
    assert usage_from({"input_tokens": True, "output_tokens": False}) == usage(0, 0)


# --- ChunkHead: the exact JSON OpenAI clients read --------------------------------------

HEAD = ChunkHead(id="chatcmpl-abc123", created=1700000000, model="claude-sonnet-4-5")
SAME = {"id": "chatcmpl-abc123", "created": 1700000000, "model": "claude-sonnet-4-5"}
USAGE = usage(20, 5, cached=4)
USAGE_JSON = {
    "prompt_tokens": 20,
    "completion_tokens": 5,
    "total_tokens": 25,
    "prompt_tokens_details": {"cached_tokens": 4},
}


def chunk_json(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        **SAME,
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        "usage": None,
        "system_fingerprint": None,
    }


@pytest.mark.parametrize(
    ("chunk", "expected"),
    [
        (HEAD.role_chunk(), chunk_json({"role": "assistant", "content": ""})),
        (HEAD.text_chunk("x"), chunk_json({"content": "x"})),
        (HEAD.text_chunk(""), chunk_json({"content": ""})),
        (HEAD.final_chunk("end_turn", None), chunk_json({}, "stop")),
        (HEAD.final_chunk("max_tokens", None), chunk_json({}, "length")),
        (HEAD.final_chunk(None, 0.0125), {**chunk_json({}, "stop"), "cost_usd": 0.0125}),
        (
            HEAD.usage_chunk(USAGE, None),
            {
                **SAME,
                "object": "chat.completion.chunk",
                "choices": [],
                "usage": USAGE_JSON,
                "system_fingerprint": None,
            },
        ),
        (
            HEAD.usage_chunk(USAGE, 0.5),
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
def test_chunk_json(chunk: Any, expected: dict[str, Any]) -> None:
    assert to_json(chunk) == expected


@pytest.mark.parametrize(
    ("cost_usd", "extra"),
    [(None, {}), (0.0031, {"cost_usd": 0.0031}), (0.0, {"cost_usd": 0.0})],
)
def test_completion_json(cost_usd: float | None, extra: dict[str, Any]) -> None:
    completion = HEAD.completion("Paris.", "refusal", USAGE, cost_usd)
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
        HEAD.role_chunk(),
        HEAD.text_chunk("a"),
        HEAD.text_chunk("b"),
        HEAD.final_chunk("end_turn", 0.1),
        HEAD.usage_chunk(USAGE, 0.1),
    ]
    for chunk in stream:
        wire = to_json(chunk)
        assert {key: wire[key] for key in SAME} == SAME
