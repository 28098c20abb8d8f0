"""Structured output (``response_format``): the rules (wrapper.structured, the Structured
filter of wrapper.output) as tables, then through the real server and the real CLI, with
the openai package's ``parse`` and LangChain's ``with_structured_output`` as clients."""

from __future__ import annotations

import json
from typing import Any

import attrs
import httpx
import openai
import pydantic
import pytest
import trio
from openai import AsyncOpenAI

from tests.conftest import WEATHER, Server, check_envelope, stream_raw
from tests.mock_anthropic import STRUCTURED_OUTPUT, MockAnthropic, Reply, ToolUse
from wrapper import errors, structured
from wrapper.events import Failed, Finished, TextDelta, Usage
from wrapper.output import Output
from wrapper.unapplied import JSONSchemaFormat, ResponseFormat

CITY = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "people": {"type": "integer"}},
    "required": ["city", "people"],
    "additionalProperties": False,
}


END = Finished("end_turn", Usage(1, 2), 0.01, "s1")


def attrs_evolve(finished: Finished, value: Any) -> Finished:
    return attrs.evolve(finished, structured_output=value)


def fmt(schema: Any = None, kind: str = "json_schema") -> ResponseFormat:
    spec = JSONSchemaFormat(name="answer", schema=schema) if kind == "json_schema" else None
    return ResponseFormat(type=kind, json_schema=spec)


@pytest.mark.parametrize(
    ("response_format", "schema"),
    [
        (None, None),
        (ResponseFormat(type="text"), None),
        (fmt(kind="json_object"), {"type": "object"}),
        (fmt(CITY), CITY),
        # Local references are fine.
        (
            fmt(
                {"type": "object", "$defs": {"c": CITY}, "properties": {"c": {"$ref": "#/$defs/c"}}}
            ),
            {"type": "object", "$defs": {"c": CITY}, "properties": {"c": {"$ref": "#/$defs/c"}}},
        ),
    ],
)
def test_the_schema_a_request_asks_for(response_format: Any, schema: Any) -> None:
    assert structured.output_schema(response_format) == schema


@pytest.mark.parametrize(
    ("response_format", "param", "words"),
    [
        (ResponseFormat(type="xml"), "response_format.type", "expected 'text'"),
        (ResponseFormat(type="json_schema"), "response_format.json_schema", "Missing"),
        (fmt(None), "response_format.json_schema.schema", "needs the schema"),
        (fmt({"type": "array"}), "response_format.json_schema.schema", "describe an object"),
        (fmt({"properties": {}}), "response_format.json_schema.schema", "describe an object"),
        (
            fmt({"type": "object", "properties": {"a": {"$ref": "https://x.example/s.json"}}}),
            "response_format.json_schema.schema",
            "refers outside itself",
        ),
        (
            fmt({"type": "object", "properties": {"a": {"type": "strin"}}}),
            "response_format.json_schema.schema",
            "not a valid JSON Schema",
        ),
        (
            fmt({"type": "object", "description": "x" * structured.MAX_SCHEMA_BYTES}),
            "response_format.json_schema.schema",
            "at most 65,536",
        ),
    ],
)
def test_what_claude_code_cannot_answer_is_refused(
    response_format: ResponseFormat, param: str, words: str
) -> None:
    with pytest.raises(errors.InvalidRequest) as caught:
        structured.output_schema(response_format)
    assert caught.value.param == param
    assert words in caught.value.message


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ({"city": "Oslo", "people": 3}, None),
        ({"city": "Oslo"}, "'people' is a required property"),
        ({"city": "Oslo", "people": "3"}, "'3' is not of type 'integer' (at 'people')"),
        ({"city": "Oslo", "people": 3, "x": 1}, "Additional properties are not allowed"),
    ],
)
def test_a_value_is_checked_against_the_schema(value: Any, problem: str | None) -> None:
    found = structured.problem(value, CITY)
    assert found == problem if problem is None else problem in str(found)


@pytest.mark.parametrize(
    ("events", "shown"),
    [
        # The prose around the call is not the answer; the value is, as JSON, at the end.
        (
            [TextDelta("Here:"), attrs_evolve(END, {"city": "Ås", "people": 2})],
            [TextDelta('{"city":"Ås","people":2}'), attrs_evolve(END, {"city": "Ås", "people": 2})],
        ),
        # A run that ended at the client's calls has no structured output, and needs none.
        ([Finished("tool_use", None, None, None)], [Finished("tool_use", None, None, None)]),
    ],
)
def test_the_answer_is_the_structured_output(events: list[Any], shown: list[Any]) -> None:
    output = Output(schema=CITY)
    assert [out for event in events for out in output.feed(event)] == shown


@pytest.mark.parametrize(
    ("ending", "words"),
    [
        (END, "without the structured output"),
        (attrs_evolve(END, {"city": "Oslo"}), "does not match: 'people' is a required"),
    ],
)
def test_no_valid_structured_output_fails_the_run(ending: Finished, words: str) -> None:
    (failed,) = Output(schema=CITY).feed(ending)
    assert isinstance(failed, Failed)
    assert failed.error.instance_code == "structured_output_failed"
    assert words in failed.error.message


# --- through the server ------------------------------------------------------------------


class City(pydantic.BaseModel):
    city: str
    people: int


def offered_schema(mock: MockAnthropic) -> dict[str, Any]:
    """The input schema of the StructuredOutput tool the CLI offered Claude."""
    (request,) = mock.messages
    (tool,) = [t for t in request.body["tools"] if t["name"] == STRUCTURED_OUTPUT]
    return dict(tool["input_schema"])


async def test_parse_gets_an_instance_of_its_model(
    client: AsyncOpenAI, mock: MockAnthropic
) -> None:
    mock.script(Reply.structured({"city": "Lyon", "people": 4}, text="Sure, here it is:"))
    completion = await client.chat.completions.parse(
        model="sonnet",
        messages=[{"role": "user", "content": "The biggest city near the Alps, and a count."}],
        response_format=City,
    )
    message = completion.choices[0].message
    assert message.parsed == City(city="Lyon", people=4)
    assert json.loads(message.content or "") == {"city": "Lyon", "people": 4}
    assert completion.choices[0].finish_reason == "stop"
    # The schema openai-python sent (strict, from pydantic) is the one Claude was offered.
    schema = offered_schema(mock)
    assert schema["properties"] == City.model_json_schema()["properties"]
    assert schema["additionalProperties"] is False


async def test_a_streamed_structured_answer_is_only_the_json(
    http: httpx.AsyncClient, mock: MockAnthropic
) -> None:
    mock.script(Reply.structured({"city": "Bern", "people": 1}, text="Thinking aloud..."))
    response_format = {"type": "json_schema", "json_schema": {"name": "city", "schema": CITY}}
    frames = await stream_raw(
        http,
        {
            "model": "sonnet",
            "messages": [{"role": "user", "content": "A city."}],
            "response_format": response_format,
        },
    )
    content = "".join(f["choices"][0]["delta"].get("content") or "" for f in frames)
    assert json.loads(content) == {"city": "Bern", "people": 1}
    assert frames[-1]["choices"][0]["finish_reason"] == "stop"


async def test_the_openai_stream_helper_parses_too(
    client: AsyncOpenAI, mock: MockAnthropic
) -> None:
    async with client.chat.completions.stream(
        model="sonnet",
        messages=[{"role": "user", "content": "A city."}],
        response_format=City,
    ) as stream:
        async for _ in stream:
            pass
        completion = await stream.get_final_completion()
    # The mock answered with an instance of the schema it was offered.
    assert completion.choices[0].message.parsed == City(city="mock", people=1)


async def test_json_object_answers_one_object(client: AsyncOpenAI, mock: MockAnthropic) -> None:
    mock.script(Reply.structured({"answer": [1, 2, 3]}, text="JSON follows"))
    completion = await client.chat.completions.create(
        model="sonnet",
        messages=[{"role": "user", "content": "Three numbers as JSON."}],
        response_format={"type": "json_object"},
    )
    assert json.loads(completion.choices[0].message.content or "") == {"answer": [1, 2, 3]}
    assert offered_schema(mock) == {"type": "object"}


async def test_langchain_with_structured_output(server: Server, mock: MockAnthropic) -> None:
    from langchain_openai import ChatOpenAI

    mock.script(Reply.structured({"city": "Turin", "people": 9}))
    model = ChatOpenAI(model="sonnet", base_url=server.base_url, api_key="unused")
    # LangChain's async API needs asyncio: its sync one, in a thread, talks to the server.
    structured_model = model.with_structured_output(City)
    answer = await trio.to_thread.run_sync(structured_model.invoke, "A city in Piedmont.")
    assert answer == City(city="Turin", people=9)
    assert offered_schema(mock)["required"] == ["city", "people"]


def asking(response_format: dict[str, Any], **extra: Any) -> dict[str, Any]:
    messages = [{"role": "user", "content": "A city."}]
    return {"model": "sonnet", "messages": messages, "response_format": response_format, **extra}


CITY_FORMAT = {"type": "json_schema", "json_schema": {"name": "city", "schema": CITY}}


async def test_a_run_that_never_fits_the_schema_is_a_502(
    http: httpx.AsyncClient, mock: MockAnthropic
) -> None:
    # Claude Code asks again after each call that does not match, and gives up after 5.
    mock.script(
        *[
            Reply.tool_calls(ToolUse(STRUCTURED_OUTPUT, {"town": i}, id=f"toolu_{i}"))
            for i in range(5)
        ]
    )
    response = await http.post("/v1/chat/completions", json=asking(CITY_FORMAT))
    message = check_envelope(
        response, 502, code="structured_output_failed", error_type="server_error"
    )
    assert "must have required property 'city'" in message
    assert len(mock.messages) == 5


async def test_prose_instead_of_the_call_is_a_502(
    http: httpx.AsyncClient, mock: MockAnthropic
) -> None:
    # Claude Code asks once more for the call, then takes the prose as the answer.
    mock.script(Reply.text("A city: Oslo."), Reply.text("Oslo, really."))
    response = await http.post("/v1/chat/completions", json=asking({"type": "json_object"}))
    message = check_envelope(
        response, 502, code="structured_output_failed", error_type="server_error"
    )
    assert "without the structured output" in message
    assert len(mock.messages) == 2


async def test_structured_output_beside_functions(client: AsyncOpenAI, mock: MockAnthropic) -> None:
    # Either may end the run: a call of the client's function, or the structured answer.
    mock.script(
        Reply.tool_calls(ToolUse("get_weather", {"city": "Oslo"})),
        Reply.structured({"city": "Oslo", "people": 700000}),
    )
    messages: list[Any] = [{"role": "user", "content": "Weather in Oslo, then a city."}]
    response_format: Any = {"type": "json_schema", "json_schema": {"name": "c", "schema": CITY}}
    first = await client.chat.completions.create(
        model="sonnet", messages=messages, tools=[WEATHER], response_format=response_format
    )
    (call,) = first.choices[0].message.tool_calls or []
    assert first.choices[0].finish_reason == "tool_calls"
    messages += [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "cold"},
    ]
    second = await client.chat.completions.create(
        model="sonnet", messages=messages, tools=[WEATHER], response_format=response_format
    )
    assert json.loads(second.choices[0].message.content or "") == {"city": "Oslo", "people": 700000}


ARRAY_FORMAT = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "array"}}}


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        (asking(ARRAY_FORMAT), "response_format.json_schema.schema", None),
        (asking({"type": "json_object"}, stop="}"), "stop", None),
        (
            asking({"type": "json_object"}, session_id="s-structured"),
            "response_format",
            "unsupported_in_session",
        ),
    ],
)
async def test_refused_before_any_run(
    http: httpx.AsyncClient, mock: MockAnthropic, body: dict[str, Any], param: str, code: str | None
) -> None:
    response = await http.post("/v1/chat/completions", json=body)
    check_envelope(response, 400, code=code, param=param)
    assert mock.messages == []


async def test_a_structured_answer_cut_at_max_tokens_is_length(
    client: AsyncOpenAI, mock: MockAnthropic
) -> None:
    # The token limit comes before the call: no JSON at all, and parse() says why.
    mock.script(Reply.structured({"city": "Oslo", "people": 1}, text="Let me think it over."))
    completion = await client.chat.completions.create(
        model="sonnet",
        messages=[{"role": "user", "content": "A city."}],
        response_format={"type": "json_object"},
        max_completion_tokens=1,
    )
    choice = completion.choices[0]
    assert (choice.finish_reason, choice.message.content) == ("length", "")
    with pytest.raises(openai.LengthFinishReasonError):
        await client.chat.completions.parse(
            model="sonnet",
            messages=[{"role": "user", "content": "A city."}],
            response_format=City,
            max_completion_tokens=1,
        )
