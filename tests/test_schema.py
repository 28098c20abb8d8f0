"""wrapper.schema: what a chat request may look like, and what our responses look like."""

from __future__ import annotations

from typing import Any

import pytest

from wrapper import completions, schema, strict, unapplied
from wrapper.completions import (
    ChatCompletion,
    ChatCompletionChunk,
    Choice,
    ChunkChoice,
    Delta,
    DeltaFunction,
    DeltaToolCall,
    Model,
    ModelList,
    PromptTokensDetails,
    ResponseMessage,
    Usage,
    to_json,
)
from wrapper.errors import InvalidRequest
from wrapper.schema import (
    ChatRequest,
    FunctionDefinition,
    FunctionName,
    ImagePart,
    Message,
    NamedToolChoice,
    StreamOptions,
    TextPart,
    ToolCall,
    ToolCallFunction,
    ToolDefinition,
    decode_chat_request,
    parse_chat_request,
)
from wrapper.strict import MAX_DEPTH, StrictConverter, decode_json
from wrapper.unapplied import (
    Audio,
    JSONSchemaFormat,
    PredictedText,
    Prediction,
    ResponseFormat,
    VoiceId,
    WebSearchOptions,
)

USER_HI = {"role": "user", "content": "hi"}


def body(**fields: Any) -> dict[str, Any]:
    """A minimal valid request, with ``fields`` laid over it (None values kept)."""
    return {"model": "claude-sonnet-4", "messages": [USER_HI], **fields}


def without(key: str) -> dict[str, Any]:
    out = body()
    del out[key]
    return out


# --- accepted -----------------------------------------------------------------------


def test_minimal_request() -> None:
    assert parse_chat_request(body()) == ChatRequest(
        model="claude-sonnet-4", messages=[Message(role="user", content="hi")]
    )


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (USER_HI, Message(role="user", content="hi")),
        (
            {"role": "user", "content": [{"type": "text", "text": "a"}]},
            Message(role="user", content=[TextPart(text="a")]),
        ),
        (
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look", "cache_control": {"x": 1}},
                    {
                        "type": "image_url",
                        "image_url": {"url": "data:,", "detail": "low"},
                    },
                ],
            },
            Message(
                role="user",
                content=[
                    TextPart(text="look"),
                    ImagePart(image_url={"url": "data:,", "detail": "low"}),
                ],
            ),
        ),
        ({"role": "assistant", "content": None}, Message(role="assistant")),
        ({"role": "assistant"}, Message(role="assistant")),
        (
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "f", "arguments": "{}", "extra": 1},
                    }
                ],
            },
            Message(
                role="assistant",
                tool_calls=[
                    ToolCall(
                        id="call_1",
                        function=ToolCallFunction(name="f", arguments="{}"),
                    )
                ],
            ),
        ),
        (
            {"role": "tool", "content": "42", "tool_call_id": "call_1"},
            Message(role="tool", content="42", tool_call_id="call_1"),
        ),
        (
            {
                "role": "assistant",
                "content": None,
                "function_call": {"name": "f", "arguments": "{}"},
            },
            Message(role="assistant", function_call=ToolCallFunction(name="f", arguments="{}")),
        ),
        (
            {"role": "function", "name": "f", "content": "42"},
            Message(role="function", name="f", content="42"),
        ),
        (
            {"role": "developer", "content": "be brief", "name": "ops"},
            Message(role="developer", content="be brief", name="ops"),
        ),
        (
            {"role": "system", "content": "s", "audio": None, "refusal": None},
            Message(role="system", content="s"),
        ),
        (
            {"role": "user", "content": "", "name": None, "tool_calls": None},
            Message(role="user", content=""),
        ),
    ],
)
def test_message_shapes(message: dict[str, Any], expected: Message) -> None:
    assert parse_chat_request(body(messages=[message])).messages == [expected]


@pytest.mark.parametrize(
    ("extra", "field", "expected"),
    [
        ({"temperature": 1}, "temperature", 1.0),
        ({"temperature": 0.2}, "temperature", 0.2),
        ({"top_p": 0}, "top_p", 0.0),
        ({"max_tokens": 100}, "max_tokens", 100),
        ({"max_completion_tokens": 7}, "max_completion_tokens", 7),
        ({"n": 1}, "n", 1),
        ({"n": None}, "n", None),
        ({"stream": True}, "stream", True),
        ({"stream": None}, "stream", None),
        ({"stream_options": None}, "stream_options", None),
        (
            {"stream_options": {"include_usage": True, "include_obfuscation": False}},
            "stream_options",
            StreamOptions(include_usage=True, include_obfuscation=False),
        ),
        ({"stop": "END"}, "stop", "END"),
        ({"stop": ["a", "b"]}, "stop", ["a", "b"]),
        ({"stop": None}, "stop", None),
        ({"user": "u-1"}, "user", "u-1"),
        ({"session_id": "s-1"}, "session_id", "s-1"),
        ({"enable_tools": False}, "enable_tools", False),
        ({"allowed_tools": ["Read", "Bash"]}, "allowed_tools", ["Read", "Bash"]),
        ({"disallowed_tools": []}, "disallowed_tools", []),
        # Unknown fields are ignored, whatever their type.
        ({"x_future": {}, "seeds": "7", "logprob": [1]}, "model", "claude-sonnet-4"),
        ({"seed": 7}, "seed", 7),
        ({"logprobs": False, "top_logprobs": 20}, "top_logprobs", 20),
        ({"store": True}, "store", True),
        ({"metadata": {"k": "v"}, "reasoning_effort": "low"}, "metadata", {"k": "v"}),
        # Enumerations are checked for type only: OpenAI adds values every few months.
        ({"reasoning_effort": "ultra"}, "reasoning_effort", "ultra"),
        ({"presence_penalty": -2, "frequency_penalty": 2}, "presence_penalty", -2.0),
        ({"logit_bias": {"50256": -100, "11": 100}}, "logit_bias", {"50256": -100, "11": 100}),
        ({"temperature": 2, "top_p": 1}, "temperature", 2.0),
        ({"modalities": ["text"]}, "modalities", ["text"]),
        (
            {"audio": {"format": "wav", "voice": "alloy"}},
            "audio",
            Audio(format="wav", voice="alloy"),
        ),
        (
            {"audio": {"format": "mp3", "voice": {"id": "voice_1"}}},
            "audio",
            Audio(format="mp3", voice=VoiceId(id="voice_1")),
        ),
        (
            {"prediction": {"type": "content", "content": [{"type": "text", "text": "x"}]}},
            "prediction",
            Prediction(type="content", content=[PredictedText(type="text", text="x")]),
        ),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "n", "schema": {}},
                }
            },
            "response_format",
            ResponseFormat(type="json_schema", json_schema=JSONSchemaFormat(name="n", schema={})),
        ),
        ({"web_search_options": {}}, "web_search_options", WebSearchOptions()),
        ({"service_tier": "flex", "verbosity": "low"}, "verbosity", "low"),
        ({"safety_identifier": "u" * 128}, "safety_identifier", "u" * 128),
        ({"model": "m" * 256}, "model", "m" * 256),
        ({"stop": ["a", "b", "c", "d"]}, "stop", ["a", "b", "c", "d"]),
        ({"tools": None}, "tools", None),
        ({"tools": []}, "tools", []),
        (
            {
                "tools": [
                    {
                        "type": "function",
                        "function": {
                            "name": "f",
                            "description": "d",
                            "parameters": {"type": "object", "x-extra": [1]},
                            "strict": True,
                        },
                        "cache_control": {"type": "ephemeral"},
                    }
                ]
            },
            "tools",
            [
                ToolDefinition(
                    type="function",
                    function=FunctionDefinition(
                        name="f",
                        description="d",
                        parameters={"type": "object", "x-extra": [1]},
                        strict=True,
                    ),
                )
            ],
        ),
        ({"tool_choice": "required"}, "tool_choice", "required"),
        (
            {"tool_choice": {"type": "function", "function": {"name": "f"}}},
            "tool_choice",
            NamedToolChoice(type="function", function=FunctionName(name="f")),
        ),
        ({"parallel_tool_calls": False}, "parallel_tool_calls", False),
        ({"functions": [{"name": "f"}]}, "functions", [FunctionDefinition(name="f")]),
        ({"function_call": "none"}, "function_call", "none"),
        ({"function_call": {"name": "f"}}, "function_call", FunctionName(name="f")),
    ],
)
def test_optional_fields(extra: dict[str, Any], field: str, expected: object) -> None:
    parsed = parse_chat_request(body(**extra))
    assert getattr(parsed, field) == expected
    assert type(getattr(parsed, field)) is type(expected)


# --- refused ------------------------------------------------------------------------

BAD = [
    # (request body, param, words the message must contain besides the path)
    (without("messages"), "messages", "Missing required parameter"),
    (body(model=5), "model", "expected a string, got an integer"),
    (body(messages={}), "messages", "expected an array, got an object"),
    (body(messages="hi"), "messages", "expected an array, got a string"),
    (body(messages=[]), "messages", "at least one message"),
    (body(messages=["hi"]), "messages[0]", "expected an object, got a string"),
    (body(messages=[{"content": "x"}]), "messages[0].role", "Missing required"),
    (
        body(messages=[USER_HI, {"role": "robot", "content": "x"}]),
        "messages[1].role",
        "'robot' is not one of 'system', 'developer', 'user', 'assistant', 'tool', 'function'",
    ),
    (
        body(messages=[{"role": 1, "content": "x"}]),
        "messages[0].role",
        "got an integer",
    ),
    (
        body(messages=[{"role": "user", "content": 42}]),
        "messages[0].content",
        "expected a string or a list of content parts, got an integer",
    ),
    (
        body(messages=[{"role": "user", "content": {"text": "x"}}]),
        "messages[0].content",
        "got an object",
    ),
    (
        body(messages=[{"role": "user", "content": None}]),
        "messages[0].content",
        "only assistant messages may have null content",
    ),
    (body(messages=[{"role": "user"}]), "messages[0].content", "Missing required"),
    (body(messages=[{"role": "tool"}]), "messages[0].content", "Missing required"),
    (
        body(messages=[{"role": "system", "content": None}]),
        "messages[0].content",
        "not 'system'",
    ),
    (
        body(messages=[{"role": "user", "content": [{"type": "text", "text": "a"}, {}]}]),
        "messages[0].content[1].type",
        "Missing required parameter",
    ),
    (
        body(messages=[{"role": "user", "content": [{"type": "input_audio"}]}]),
        "messages[0].content[0].type",
        "unsupported content part type 'input_audio'",
    ),
    (
        body(messages=[{"role": "user", "content": [{"type": "file", "file": {}}]}]),
        "messages[0].content[0].type",
        "unsupported content part type 'file'",
    ),
    (
        body(messages=[{"role": "user", "content": ["hi"]}]),
        "messages[0].content[0]",
        "expected an object, got a string",
    ),
    (
        body(messages=[{"role": "user", "content": [{"type": "text", "text": 3}]}]),
        "messages[0].content[0].text",
        "expected a string, got an integer",
    ),
    (
        body(messages=[{"role": "user", "content": [{"type": "image_url"}]}]),
        "messages[0].content[0].image_url",
        "Missing required parameter",
    ),
    (
        body(messages=[{"role": "assistant", "tool_calls": [{"id": "c"}]}]),
        "messages[0].tool_calls[0].function",
        "Missing required parameter",
    ),
    (
        body(messages=[{"role": "assistant", "tool_calls": {}}]),
        "messages[0].tool_calls",
        "expected an array, got an object",
    ),
    (body(tools={}), "tools", "expected an array, got an object"),
    (body(tools=[{"function": {"name": "f"}}]), "tools[0].type", "Missing required"),
    (body(tools=[{"type": "function"}]), "tools[0].function", "Missing required"),
    (body(tools=[{"type": "function", "function": {}}]), "tools[0].function.name", "Missing"),
    (
        body(tools=[{"type": "function", "function": {"name": "f", "parameters": "{}"}}]),
        "tools[0].function.parameters",
        "expected an object, got a string",
    ),
    (
        body(tools=[{"type": "function", "function": {"name": "f", "strict": "yes"}}]),
        "tools[0].function.strict",
        "expected a boolean, got a string",
    ),
    (
        body(tool_choice="any"),
        "tool_choice",
        "'any' is not one of 'none', 'auto', 'required' or an object naming a function",
    ),
    (body(tool_choice=True), "tool_choice", "got a boolean"),
    (body(tool_choice={"type": "function"}), "tool_choice.function", "Missing required"),
    (body(tool_choice={"function": {"name": "f"}}), "tool_choice.type", "Missing required"),
    (body(parallel_tool_calls=1), "parallel_tool_calls", "expected a boolean, got an integer"),
    (body(functions=[{"description": "d"}]), "functions[0].name", "Missing required"),
    (body(function_call="required"), "function_call", "'required' is not one of 'none', 'auto'"),
    (body(function_call={}), "function_call.name", "Missing required"),
    (
        body(messages=[{"role": "assistant", "function_call": {"name": "f"}}]),
        "messages[0].function_call.arguments",
        "Missing required",
    ),
    (
        body(messages=[{"role": "function", "name": "f"}]),
        "messages[0].content",
        "Missing required",
    ),
    (
        body(messages=[{"role": "tool", "content": "x", "tool_call_id": 1}]),
        "messages[0].tool_call_id",
        "expected a string, got an integer",
    ),
    (body(stream="true"), "stream", "expected a boolean, got a string"),
    (body(stream=1), "stream", "expected a boolean, got an integer"),
    (body(temperature=True), "temperature", "expected a number, got a boolean"),
    (body(temperature="0.5"), "temperature", "expected a number, got a string"),
    (body(max_tokens=True), "max_tokens", "expected an integer, got a boolean"),
    (body(max_tokens=10.0), "max_tokens", "expected an integer, got a decimal"),
    (body(max_tokens="10"), "max_tokens", "expected an integer, got a string"),
    (body(n=0), "n", "expected an integer from 1 to 128, got 0"),
    (body(n=True), "n", "expected an integer, got a boolean"),
    (body(stop=5), "stop", "expected a string or a list of strings, got an integer"),
    (body(stop=["a", 3]), "stop[1]", "expected a string, got an integer"),
    (body(user=5), "user", "expected a string, got an integer"),
    # Known fields this server does not apply still have OpenAI's types and ranges.
    (body(presence_penalty={}), "presence_penalty", "expected a number, got an object"),
    (body(frequency_penalty=-2.5), "frequency_penalty", "a number from -2 to 2, got -2.5"),
    (body(presence_penalty=3), "presence_penalty", "a number from -2 to 2, got 3"),
    (body(temperature=2.5), "temperature", "expected a number from 0 to 2, got 2.5"),
    (body(temperature=-0.1), "temperature", "from 0 to 2, got -0.1"),
    (body(top_p=1.01), "top_p", "expected a number from 0 to 1, got 1.01"),
    (body(seed={}), "seed", "expected an integer, got an object"),
    (body(seed=1.5), "seed", "expected an integer, got a decimal number"),
    (body(top_logprobs=21), "top_logprobs", "expected an integer from 0 to 20, got 21"),
    (body(logprobs=1), "logprobs", "expected a boolean, got an integer"),
    (body(store="yes"), "store", "expected a boolean, got a string"),
    (body(logit_bias=[]), "logit_bias", "expected an object, got an array"),
    (body(logit_bias={"50256": 101}), "logit_bias.50256", "from -100 to 100, got 101"),
    (body(logit_bias={"11": 0.5}), "logit_bias.11", "expected an integer, got a decimal"),
    (body(metadata=[]), "metadata", "expected an object, got an array"),
    (body(metadata={"k": 1}), "metadata.k", "expected a string, got an integer"),
    (
        body(metadata={f"k{i}": "v" for i in range(17)}),
        "metadata",
        "expected at most 16 pairs, got 17",
    ),
    (body(metadata={"k" * 65: "v"}), "metadata", "keys are at most 64 characters, got 65"),
    (body(metadata={"k": "v" * 513}), "metadata.k", "at most 512 characters, got 513"),
    (body(modalities="text"), "modalities", "expected an array, got a string"),
    (body(modalities=["text", 1]), "modalities[1]", "expected a string, got an integer"),
    (body(reasoning_effort=1), "reasoning_effort", "expected a string, got an integer"),
    (body(service_tier={}), "service_tier", "expected a string, got an object"),
    (body(verbosity=[]), "verbosity", "expected a string, got an array"),
    (body(prompt_cache_key=1), "prompt_cache_key", "expected a string, got an integer"),
    (body(prompt_cache_retention=24), "prompt_cache_retention", "expected a string"),
    (body(prompt_cache_options={"mode": 1}), "prompt_cache_options.mode", "a string"),
    (body(safety_identifier="u" * 129), "safety_identifier", "at most 128 characters"),
    (body(audio="alloy"), "audio", "expected an object, got a string"),
    (body(audio={"voice": "alloy"}), "audio.format", "Missing required parameter"),
    (
        body(audio={"format": "wav", "voice": 3}),
        "audio.voice",
        "expected a string or an object with an 'id', got an integer",
    ),
    (body(audio={"format": "wav", "voice": {}}), "audio.voice.id", "Missing required"),
    (body(response_format="json"), "response_format", "expected an object, got a string"),
    (body(response_format={}), "response_format.type", "Missing required parameter"),
    (
        body(response_format={"type": "json_schema", "json_schema": {"schema": {}}}),
        "response_format.json_schema.name",
        "Missing required parameter",
    ),
    (
        body(response_format={"type": "json_schema", "json_schema": {"name": "n", "schema": []}}),
        "response_format.json_schema.schema",
        "expected an object, got an array",
    ),
    (
        body(prediction={"type": "content", "content": 3}),
        "prediction.content",
        "expected a string or a list of text parts, got an integer",
    ),
    (body(prediction={"content": "x"}), "prediction.type", "Missing required parameter"),
    (
        body(web_search_options={"user_location": {"type": "approximate"}}),
        "web_search_options.user_location.approximate",
        "Missing required parameter",
    ),
    (
        body(web_search_options={"search_context_size": 2}),
        "web_search_options.search_context_size",
        "expected a string, got an integer",
    ),
    (body(moderation={}), "moderation.model", "Missing required parameter"),
    (
        body(moderation={"model": "m", "policy": {"input": {"mode": 1}}}),
        "moderation.policy.input.mode",
        "expected a string, got an integer",
    ),
    (
        body(stream_options={"include_obfuscation": "no"}),
        "stream_options.include_obfuscation",
        "expected a boolean, got a string",
    ),
    (
        body(messages=[{"role": "assistant", "refusal": 1}, USER_HI]),
        "messages[0].refusal",
        "expected a string, got an integer",
    ),
    (
        body(messages=[{"role": "assistant", "audio": "a"}, USER_HI]),
        "messages[0].audio",
        "expected an object, got a string",
    ),
    # Caps: OpenAI's numbers, measured before any item is structured.
    (body(model="m" * 257), "model", "string too long, expected at most 256 characters, got 257"),
    (
        body(messages=[USER_HI] * 2049),
        "messages",
        "array too long, expected at most 2048 items, got 2049",
    ),
    (body(tools=[{}] * 129), "tools", "array too long, expected at most 128 items, got 129"),
    (body(functions=[{}] * 129), "functions", "expected at most 128 items, got 129"),
    (body(allowed_tools=["Read"] * 129), "allowed_tools", "expected at most 128 items"),
    (body(disallowed_tools=["Read"] * 129), "disallowed_tools", "expected at most 128 items"),
    (body(stop=["a"] * 5), "stop", "array too long, expected at most 4 items, got 5"),
    (
        body(messages=[{"role": "user", "content": [{"type": "text", "text": ""}] * 2049}]),
        "messages[0].content",
        "array too long, expected at most 2048 items, got 2049",
    ),
    (body(stream_options=[]), "stream_options", "expected an object, got an array"),
    (
        body(stream_options={"include_usage": "yes"}),
        "stream_options.include_usage",
        "expected a boolean, got a string",
    ),
]


@pytest.mark.parametrize(("request_body", "param", "words"), BAD)
def test_bad_request(request_body: dict[str, Any], param: str, words: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_chat_request(request_body)
    assert caught.value.param == param
    assert f"'{param}'" in caught.value.message
    assert words in caught.value.message
    assert caught.value.status == 400
    assert caught.value.type == "invalid_request_error"


@pytest.mark.parametrize(
    ("request_body", "message"),
    [
        (
            body(model=5),
            "Invalid type for 'model': expected a string, got an integer.",
        ),
        (without("messages"), "Missing required parameter: 'messages'."),
        (
            body(messages=[{"role": "user", "content": 42}]),
            (
                "Invalid type for 'messages[0].content': "
                "expected a string or a list of content parts, got an integer."
            ),
        ),
        (
            body(messages=[USER_HI, {"role": "robot", "content": "x"}]),
            (
                "Invalid value for 'messages[1].role': 'robot' is not one of "
                "'system', 'developer', 'user', 'assistant', 'tool', 'function'."
            ),
        ),
        (body(n=129), "Invalid value for 'n': expected an integer from 1 to 128, got 129."),
    ],
)
def test_bad_request_message(request_body: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_chat_request(request_body)
    assert caught.value.message == message


def test_first_error_wins() -> None:
    bad = body(
        messages=[USER_HI, {"role": "robot", "content": "x"}],
        stream="no",
    )
    with pytest.raises(InvalidRequest) as caught:
        parse_chat_request(bad)
    assert caught.value.param == "messages[1].role"


@pytest.mark.parametrize(
    ("request_body", "got"),
    [([USER_HI], "an array"), ("{}", "a string"), (None, "null"), (3, "an integer")],
)
def test_body_not_an_object(request_body: object, got: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_chat_request(request_body)
    assert caught.value.param is None
    assert caught.value.message == f"The request body must be a JSON object, got {got}."


# --- responses ----------------------------------------------------------------------

USAGE = Usage(prompt_tokens=10, completion_tokens=5, total_tokens=15)
USAGE_JSON = {
    "prompt_tokens": 10,
    "completion_tokens": 5,
    "total_tokens": 15,
    "prompt_tokens_details": None,
}


def chunk(choices: list[ChunkChoice], usage: Usage | None = None) -> dict[str, Any]:
    return to_json(
        ChatCompletionChunk(
            id="chatcmpl-1", created=1700000000, model="m", choices=choices, usage=usage
        )
    )


def chunk_json(choices: list[dict[str, Any]], usage: object = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "m",
        "choices": choices,
        "usage": usage,
        "system_fingerprint": None,
    }


@pytest.mark.parametrize(
    ("delta", "finish_reason", "delta_json"),
    [
        (
            Delta(role="assistant", content=""),
            None,
            {"role": "assistant", "content": ""},
        ),
        (Delta(content="Hel"), None, {"content": "Hel"}),
        (Delta(), "stop", {}),
        (Delta(), "length", {}),
    ],
)
def test_chunk_deltas(delta: Delta, finish_reason: str | None, delta_json: dict[str, Any]) -> None:
    choice = ChunkChoice(index=0, delta=delta, finish_reason=finish_reason)
    assert chunk([choice]) == chunk_json(
        [
            {
                "index": 0,
                "delta": delta_json,
                "finish_reason": finish_reason,
                "logprobs": None,
            }
        ]
    )


@pytest.mark.parametrize(
    ("delta", "delta_json"),
    [
        (
            Delta(
                tool_calls=[
                    DeltaToolCall(
                        index=0,
                        id="call_1",
                        type="function",
                        function=DeltaFunction(name="f", arguments=""),
                    )
                ]
            ),
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "f", "arguments": ""},
                    }
                ]
            },
        ),
        (
            Delta(tool_calls=[DeltaToolCall(index=1, function=DeltaFunction(arguments='{"a'))]),
            {"tool_calls": [{"index": 1, "function": {"arguments": '{"a'}}]},
        ),
        (
            Delta(function_call=DeltaFunction(name="f", arguments="")),
            {"function_call": {"name": "f", "arguments": ""}},
        ),
    ],
)
def test_call_deltas_leave_out_what_they_do_not_carry(
    delta: Delta, delta_json: dict[str, Any]
) -> None:
    choice = ChunkChoice(index=0, delta=delta, finish_reason=None)
    assert chunk([choice])["choices"][0]["delta"] == delta_json


@pytest.mark.parametrize(
    ("message", "message_json"),
    [
        (
            ResponseMessage(
                content=None,
                tool_calls=[ToolCall(id="c", function=ToolCallFunction(name="f", arguments="{}"))],
            ),
            {
                "role": "assistant",
                "content": None,
                "refusal": None,
                "tool_calls": [
                    {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
        ),
        (
            ResponseMessage(content="x", function_call=ToolCallFunction(name="f", arguments="{}")),
            {
                "role": "assistant",
                "content": "x",
                "refusal": None,
                "function_call": {"name": "f", "arguments": "{}"},
            },
        ),
    ],
)
def test_response_message_with_calls(
    message: ResponseMessage, message_json: dict[str, Any]
) -> None:
    choice = Choice(index=0, message=message, finish_reason="tool_calls")
    completion = ChatCompletion(id="c", created=0, model="m", choices=[choice], usage=None)
    assert to_json(completion)["choices"][0]["message"] == message_json


def test_usage_chunk() -> None:
    assert chunk([], usage=USAGE) == chunk_json([], usage=USAGE_JSON)


def completion(**fields: Any) -> dict[str, Any]:
    message = ResponseMessage(content="Hello")
    choice = Choice(index=0, message=message, finish_reason="stop")
    return to_json(
        ChatCompletion(id="chatcmpl-2", created=1700000001, model="m", choices=[choice], **fields)
    )


COMPLETION_JSON = {
    "id": "chatcmpl-2",
    "object": "chat.completion",
    "created": 1700000001,
    "model": "m",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello", "refusal": None},
            "finish_reason": "stop",
            "logprobs": None,
        }
    ],
    "system_fingerprint": None,
}


@pytest.mark.parametrize(
    ("fields", "extra_json"),
    [
        ({"usage": None}, {"usage": None}),
        ({"usage": USAGE}, {"usage": USAGE_JSON}),
        (
            {
                "usage": Usage(
                    prompt_tokens=10,
                    completion_tokens=5,
                    total_tokens=15,
                    prompt_tokens_details=PromptTokensDetails(cached_tokens=8),
                ),
                "cost_usd": 0.0123,
            },
            {
                "usage": {**USAGE_JSON, "prompt_tokens_details": {"cached_tokens": 8}},
                "cost_usd": 0.0123,
            },
        ),
    ],
)
def test_completion(fields: dict[str, Any], extra_json: dict[str, Any]) -> None:
    assert completion(**fields) == {**COMPLETION_JSON, **extra_json}


def test_completion_key_order_matches_openai() -> None:
    assert list(completion(usage=None)) == [
        "id",
        "object",
        "created",
        "model",
        "choices",
        "usage",
        "system_fingerprint",
    ]


def test_model_list() -> None:
    models = ModelList(data=[Model(id="claude-sonnet-4", created=0, owned_by="anthropic")])
    assert to_json(models) == {
        "object": "list",
        "data": [
            {
                "id": "claude-sonnet-4",
                "object": "model",
                "created": 0,
                "owned_by": "anthropic",
            }
        ],
    }


@pytest.mark.parametrize("request_body", [without("model"), body(model=None)])
def test_model_is_optional(request_body: dict[str, Any]) -> None:
    # Missing or null model: the handler substitutes the server's default model.
    assert parse_chat_request(request_body).model is None


@pytest.mark.parametrize(
    ("request_body", "code"),
    [
        (body(tools=[{}] * 129), "array_above_max_length"),
        (body(messages=[USER_HI] * 2049), "array_above_max_length"),
        (body(model="m" * 257), "string_above_max_length"),
        (body(temperature=3), None),
    ],
)
def test_caps_carry_openai_codes(request_body: dict[str, Any], code: str | None) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_chat_request(request_body)
    assert caught.value.instance_code == code


def test_caps_are_inclusive() -> None:
    tool = {"type": "function", "function": {"name": "f"}}
    parsed = parse_chat_request(
        body(messages=[USER_HI] * 2048, tools=[tool] * 128, functions=None, stop=["x"] * 4)
    )
    assert len(parsed.messages) == 2048
    assert parsed.tools is not None and len(parsed.tools) == 128


def nested(depth: int) -> dict[str, Any]:
    """A JSON Schema whose arrays and objects nest ``depth`` levels."""
    schema: dict[str, Any] = {"type": "object"}
    for _ in range(depth - 1):
        schema = {"a": schema}
    return schema


def test_free_form_values_nest_at_most_max_depth() -> None:
    tool = {"type": "function", "function": {"name": "f", "parameters": nested(MAX_DEPTH)}}
    assert parse_chat_request(body(tools=[tool])).tools is not None
    tool["function"]["parameters"] = nested(MAX_DEPTH + 1)
    with pytest.raises(InvalidRequest) as caught:
        parse_chat_request(body(tools=[tool]))
    assert caught.value.param == "tools[0].function.parameters"
    assert f"nested deeper than {MAX_DEPTH} levels" in caught.value.message


# --- the raw body --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b"{", "not valid JSON"),
        (b'{"messages": NaN}', "NaN is not valid JSON"),
        (b"\xff", "not valid JSON"),
        # CPython's decoder raises RecursionError past ~1,000 levels.
        (b"[" * 100_000, "nests arrays and objects too deeply"),
        (b"[" * 1_000 + b"]" * 1_000, "nests arrays and objects too deeply"),
        (b'{"x": ' + b'{"a": ' * 5_000 + b"1" + b"}" * 5_001, "too deeply"),
        # Python makes these inf, which JSON cannot write back; wherever they sit.
        (b'{"x": 1e999}', "the number 1e999 is out of range"),
        (b'{"x": [-1.5E+400]}', "the number -1.5E+400 is out of range"),
        (b'{"x": ' + b"9" * 400 + b".0}", "the number 99999999999999999999... is out of range"),
        (b'{"x": ' + b"9" * 5_000 + b"}", "Exceeds the limit (4300 digits)"),
    ],
)
def test_undecodable_bodies_are_invalid_json(raw: bytes, words: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        decode_chat_request(raw)
    assert caught.value.instance_code == "invalid_json"
    assert words in caught.value.message
    assert caught.value.status == 400


def test_numbers_a_double_holds_are_decoded() -> None:
    raw = b'{"x": [1e308, -1e308, 1e-999, 5e-324, 0.1], "y": ' + b"9" * 4_300 + b"}"
    assert decode_json(raw) == {"x": [1e308, -1e308, 0.0, 5e-324, 0.1], "y": int("9" * 4_300)}


def test_deep_unknown_fields_within_the_decoder_are_ignored() -> None:
    raw = b'{"messages": [{"role": "user", "content": "hi"}], "x": ' + b"[" * 500 + b"]" * 500
    assert decode_chat_request(raw + b"}").messages == [Message(role="user", content="hi")]


# --- the converters ------------------------------------------------------------------


def test_each_schema_module_has_a_converter_of_its_own() -> None:
    # None shared, so none is changed by another module's import, in whatever order.
    mine = [schema.converter, unapplied.converter, completions.converter]
    assert len({id(c) for c in mine}) == len(mine)
    assert not hasattr(strict, "converter")


@pytest.mark.parametrize(
    ("value", "kind"), [("1", int), (1, str), (1, bool), ("ab", list[str]), ({"a": 1}, list[str])]
)
def test_a_new_strict_converter_is_strict_by_itself(value: object, kind: Any) -> None:
    # The JSON rules come with the class, not with some module's import.
    with pytest.raises(strict.Refused):
        StrictConverter().structure(value, kind)
