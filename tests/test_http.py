"""The HTTP surface through the real server: routes, request ids, bodies, and 4xx envelopes.

Every error a client can see is the OpenAI envelope, exactly
``{"error": {"message", "type", "param", "code"}}``, with the status it stands for; a
bad field is named in ``param`` and, quoted, in the message. No refused request may reach
Claude Code: the tables check that the mock API saw nothing and no CLI process is left.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

import httpx
import openai
import pytest
import trio

from tests.conftest import MODEL, Server, check_envelope, cli_processes
from tests.mock_anthropic import MockAnthropic

USER_HI = {"role": "user", "content": "hi"}
# What every body here is declared as (anything else is a 415: see tests/test_guard.py).
JSON_TYPE = {"content-type": "application/json"}
# What generated request ids look like: "req_" and 12 random bytes in hex.
GENERATED_ID_LENGTH = len("req_") + 24


def check_generated_id(response: httpx.Response) -> None:
    request_id = response.headers["x-request-id"]
    assert request_id.startswith("req_")
    assert len(request_id) == GENERATED_ID_LENGTH
    int(request_id.removeprefix("req_"), 16)


# --- the router ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status", "code", "allow", "message"),
    [
        ("GET", "/", 404, "not_found", None, "Unknown path: GET /."),
        ("GET", "/nope", 404, "not_found", None, "Unknown path: GET /nope."),
        ("POST", "/v1/chat", 404, "not_found", None, "Unknown path: POST /v1/chat."),
        ("GET", "/v1/models/a/b", 404, "not_found", None, "Unknown path: GET /v1/models/a/b."),
        ("GET", "/v1//models", 404, "not_found", None, "Unknown path: GET /v1//models."),
        (
            "GET",
            "/v1/chat/completions",
            405,
            "method_not_allowed",
            "POST",
            "Method GET is not allowed for /v1/chat/completions; use POST.",
        ),
        (
            "DELETE",
            "/v1/chat/completions",
            405,
            "method_not_allowed",
            "POST",
            "Method DELETE is not allowed for /v1/chat/completions; use POST.",
        ),
        (
            "POST",
            "/v1/models",
            405,
            "method_not_allowed",
            "GET, HEAD",
            "Method POST is not allowed for /v1/models; use GET, HEAD.",
        ),
        (
            "POST",
            "/v1/models/claude-sonnet-4-5",
            405,
            "method_not_allowed",
            "GET, HEAD",
            "Method POST is not allowed for /v1/models/claude-sonnet-4-5; use GET, HEAD.",
        ),
        (
            "PUT",
            "/health",
            405,
            "method_not_allowed",
            "GET, HEAD",
            "Method PUT is not allowed for /health; use GET, HEAD.",
        ),
    ],
)
async def test_router_refusals(
    http: httpx.AsyncClient,
    method: str,
    path: str,
    status: int,
    code: str,
    allow: str | None,
    message: str,
) -> None:
    with trio.fail_after(30):
        response = await http.request(method, path)
    assert check_envelope(response, status, code=code) == message
    assert response.headers.get("allow") == allow
    check_generated_id(response)


async def test_empty_model_id_is_not_found(http: httpx.AsyncClient) -> None:
    with trio.fail_after(30):
        response = await http.get("/v1/models/")
    check_envelope(response, 404, code="not_found")


async def test_head_is_served_like_get(http: httpx.AsyncClient) -> None:
    with trio.fail_after(30):
        response = await http.head("/health")
    assert response.status_code == 200
    assert response.content == b""


# --- models and health --------------------------------------------------------------


async def test_model_list(server: Server, http: httpx.AsyncClient) -> None:
    with trio.fail_after(30):
        response = await http.get("/v1/models")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["object", "data"]
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == list(server.config.models)
    for model in body["data"]:
        assert sorted(model) == ["created", "id", "object", "owned_by"]
        assert model["object"] == "model"
        assert type(model["created"]) is int
        assert model["owned_by"] == "anthropic"


async def test_model_list_and_retrieve_through_openai(
    server: Server, client: openai.AsyncOpenAI
) -> None:
    with trio.fail_after(30):
        page = await client.models.list()
        model = await client.models.retrieve(MODEL)
    assert [m.id for m in page.data] == list(server.config.models)
    assert all(m.object == "model" for m in page.data)
    assert (model.id, model.object, model.owned_by) == (MODEL, "model", "anthropic")
    assert model.created == page.data[0].created


async def test_model_retrieve(http: httpx.AsyncClient) -> None:
    with trio.fail_after(30):
        response = await http.get(f"/v1/models/{MODEL}")
    assert response.status_code == 200
    body = response.json()
    assert sorted(body) == ["created", "id", "object", "owned_by"]
    assert (body["id"], body["object"], body["owned_by"]) == (MODEL, "model", "anthropic")
    assert type(body["created"]) is int


async def test_unknown_model_is_not_found(http: httpx.AsyncClient) -> None:
    with trio.fail_after(30):
        response = await http.get("/v1/models/gpt-4o")
    message = check_envelope(response, 404, code="model_not_found", param="model")
    assert message == "The model 'gpt-4o' does not exist."


async def test_unknown_model_through_openai(client: openai.AsyncOpenAI) -> None:
    with trio.fail_after(30), pytest.raises(openai.NotFoundError) as caught:
        await client.models.retrieve("gpt-4o")
    error = caught.value
    assert error.status_code == 404
    assert (error.code, error.param, error.type) == (
        "model_not_found",
        "model",
        "invalid_request_error",
    )
    assert error.body == {
        "message": "The model 'gpt-4o' does not exist.",
        "type": "invalid_request_error",
        "param": "model",
        "code": "model_not_found",
    }


async def test_health(http: httpx.AsyncClient) -> None:
    with trio.fail_after(30):
        response = await http.get("/health")
    assert response.status_code == 200
    assert response.json() == {
        "status": "healthy",
        "service": "claude-code-openai-wrapper",
        "version": version("claude-code-openai-wrapper"),
        "active_runs": 0,
        "live_cli_processes": 0,
    }


# --- request ids --------------------------------------------------------------------

SANE_IDS = ["abc-123", "a", "A.b_c:d-9", "x" * 128]
INSANE_IDS = ["x" * 129, "y" * 300, "<script>alert(1)</script>", "has space", "a/b", "é", ""]
# One request per kind of response: 200s, a 404 and a 405 from the router, a 400 from the
# handler (the 413s are checked in test_body_limit).
RESPONSES: list[tuple[str, str, bytes | None, int]] = [
    ("GET", "/health", None, 200),
    ("GET", "/v1/models", None, 200),
    ("GET", "/nope", None, 404),
    ("GET", "/v1/chat/completions", None, 405),
    ("POST", "/v1/chat/completions", b"{", 400),
]


@pytest.mark.parametrize(("method", "path", "content", "status"), RESPONSES)
@pytest.mark.parametrize("request_id", SANE_IDS)
async def test_sane_request_id_is_echoed(
    http: httpx.AsyncClient,
    request_id: str,
    method: str,
    path: str,
    content: bytes | None,
    status: int,
) -> None:
    with trio.fail_after(30):
        response = await http.request(
            method, path, content=content, headers={"x-request-id": request_id, **JSON_TYPE}
        )
    assert response.status_code == status
    assert response.headers.get_list("x-request-id") == [request_id]


@pytest.mark.parametrize(("method", "path", "content", "status"), RESPONSES)
@pytest.mark.parametrize("request_id", [*INSANE_IDS, None], ids=repr)
async def test_insane_or_missing_request_id_is_replaced(
    http: httpx.AsyncClient,
    request_id: str | None,
    method: str,
    path: str,
    content: bytes | None,
    status: int,
) -> None:
    headers = [(b"content-type", b"application/json")]
    headers += [] if request_id is None else [(b"x-request-id", request_id.encode())]
    with trio.fail_after(30):
        response = await http.request(method, path, content=content, headers=headers)
    assert response.status_code == status
    assert len(response.headers.get_list("x-request-id")) == 1
    check_generated_id(response)


async def test_generated_request_ids_differ(http: httpx.AsyncClient) -> None:
    with trio.fail_after(30):
        first = await http.get("/health")
        second = await http.get("/health")
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


# --- bodies -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [b"", b"{", b"{'messages': []}", b"[1,]", b"\xff\xfe\x00", b"nul", b'{"a": 1} x'],
    ids=repr,
)
async def test_invalid_json(http: httpx.AsyncClient, mock: MockAnthropic, content: bytes) -> None:
    with trio.fail_after(30):
        response = await http.post(
            "/v1/chat/completions",
            content=content,
            headers={"content-type": "application/json", "x-request-id": "bad-json"},
        )
    message = check_envelope(response, 400, code="invalid_json")
    assert message.startswith("The request body is not valid JSON: ")
    assert response.headers["x-request-id"] == "bad-json"
    assert mock.messages == []


HI = b'{"messages": [{"role": "user", "content": "hi"}]'
# Bodies that are JSON to Python's json, not to RFC 8259, and what the 400 says of each.
NOT_STRICT_JSON = [
    (b'{"messages": [{"role": "user", "content": "caf\xe9"}]}', "can't decode byte 0xe9"),
    (HI + b', "temperature": NaN}', "NaN is not valid JSON"),
    (HI + b', "temperature": Infinity}', "Infinity is not valid JSON"),
    (HI + b', "temperature": -Infinity}', "-Infinity is not valid JSON"),
    (
        HI + b', "tools": [{"type": "function", "function": {"name": "f",'
        b' "parameters": {"type": "object", "maximum": 1e999}}}]}',
        "the number 1e999 is out of range",
    ),
    (HI + b', "seed": ' + b"1" * 5_000 + b"}", "Exceeds the limit (4300 digits)"),
]


@pytest.fixture
async def debugging(start_server: Callable[..., Any]) -> Server:
    server: Server = await start_server(debug_mode=True, rate_limit_enabled=False)
    return server


async def chat_and_debug(server: Server, content: bytes) -> tuple[httpx.Response, httpx.Response]:
    """The answers of the chat route and of the debug route to the same body."""
    async with server.http() as http:
        with trio.fail_after(30):
            debug = await http.post("/v1/debug/request", content=content, headers=JSON_TYPE)
            chat = await http.post("/v1/chat/completions", content=content, headers=JSON_TYPE)
    return chat, debug


@pytest.mark.parametrize(("content", "words"), NOT_STRICT_JSON, ids=lambda v: repr(v)[-40:])
async def test_what_is_not_strict_json_is_refused_by_both_routes(
    debugging: Server, mock: MockAnthropic, content: bytes, words: str
) -> None:
    chat, debug = await chat_and_debug(debugging, content)
    message = check_envelope(chat, 400, code="invalid_json")
    assert message.startswith("The request body is not valid JSON: ")
    assert words in message
    # The debug route says what the chat route would answer, with its own 200.
    assert debug.status_code == 200
    assert debug.json() == {"valid": False, "error": chat.json()["error"]}
    assert mock.messages == []


def answered_call(arguments: str) -> bytes:
    """A conversation whose assistant called ``f`` with ``arguments``, and got its result."""
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": arguments}}
    messages = [
        USER_HI,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "done"},
    ]
    tools = [{"type": "function", "function": {"name": "f"}}]
    return json.dumps({"messages": messages, "tools": tools}).encode()


@pytest.mark.parametrize("arguments", ['{"x": NaN}', '{"x": 1e999}', '{"x": ' + "1" * 5_000 + "}"])
async def test_call_arguments_are_strict_json_too(
    debugging: Server, mock: MockAnthropic, arguments: str
) -> None:
    param = "messages[1].tool_calls[0].function.arguments"
    chat, debug = await chat_and_debug(debugging, answered_call(arguments))
    assert debug.status_code == 200
    assert debug.json()["valid"] is False
    assert debug.json()["error"]["param"] == param
    check_envelope(chat, 400, code=None, param=param)
    assert mock.messages == []


LIMIT = 1000


class Chunked:
    """A body httpx sends with ``Transfer-Encoding: chunked``, in ``size``-byte chunks.

    A class, not an async generator: the server may answer 413 before the upload ends,
    and an abandoned async generator is a ResourceWarning under Trio.
    """

    def __init__(self, content: bytes, size: int = 100) -> None:
        self.chunks = [content[i : i + size] for i in range(0, len(content), size)]

    def __aiter__(self) -> Chunked:
        return self

    async def __anext__(self) -> bytes:
        if not self.chunks:
            raise StopAsyncIteration
        return self.chunks.pop(0)


# When the server answers 413 mid-upload, httpx stops sending and drops its wrapper of
# the body iterator unfinished; that is the client's business, not a leak in the server.
abandoned_upload = pytest.mark.filterwarnings(
    "ignore:Async generator 'httpx._content.AsyncIteratorByteStream.__aiter__':ResourceWarning"
)


@abandoned_upload
@pytest.mark.parametrize("transfer", ["content-length", "chunked"])
@pytest.mark.parametrize(
    ("size", "status"),
    [(LIMIT - 1, 400), (LIMIT, 400), (LIMIT + 1, 413), (2 * LIMIT, 413), (100 * LIMIT, 413)],
)
async def test_body_limit(
    start_server: Callable[..., Any],
    mock: MockAnthropic,
    transfer: str,
    size: int,
    status: int,
) -> None:
    # Not JSON, so that a body under the limit stops at the handler's first check.
    content = b"x" * size
    with trio.fail_after(30):
        server: Server = await start_server(max_body_bytes=LIMIT)
        async with server.http() as http:
            response = await http.post(
                "/v1/chat/completions",
                content=content if transfer == "content-length" else Chunked(content),
                headers={"x-request-id": "big-body", **JSON_TYPE},
            )
    if status == 400:
        check_envelope(response, 400, code="invalid_json")
    else:
        message = check_envelope(response, 413, code="request_too_large")
        if transfer == "content-length":
            assert message == f"Request body is {size} bytes; the limit is {LIMIT} bytes."
        else:
            assert message == f"Request body exceeds the limit of {LIMIT} bytes."
    assert response.headers["x-request-id"] == "big-body"
    assert mock.messages == []


@abandoned_upload
async def test_body_limit_leaves_the_server_usable(
    start_server: Callable[..., Any],
) -> None:
    with trio.fail_after(30):
        server: Server = await start_server(max_body_bytes=LIMIT)
        async with server.http() as http:
            refused = await http.post(
                "/v1/chat/completions", content=Chunked(b"x" * 5000), headers=JSON_TYPE
            )
            health = await http.get("/health")
    assert refused.status_code == 413
    assert health.status_code == 200


# --- the request model: every 4xx -----------------------------------------------------


def chat(*messages: Any, **fields: Any) -> dict[str, Any]:
    """A request body: ``messages`` (a lone user "hi" by default), ``fields`` laid over."""
    return {"model": MODEL, "messages": list(messages) or [USER_HI], **fields}


TOOL_CALL = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
IMAGE = {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}

# (id, body, param, code, what the message says after naming the field)
BAD_REQUESTS: list[tuple[str, Any, str | None, str | None, str]] = [
    ("body is a list", [USER_HI], None, None, "must be a JSON object, got an array"),
    ("body is a string", "hi", None, None, "must be a JSON object, got a string"),
    ("body is a number", 42, None, None, "must be a JSON object, got an integer"),
    ("body is null", None, None, None, "must be a JSON object, got null"),
    ("body is true", True, None, None, "must be a JSON object, got a boolean"),
    ("missing messages", {"model": MODEL}, "messages", None, "Missing required parameter"),
    ("null messages", chat(messages=None), "messages", None, "got null"),
    ("messages is a string", chat(messages="hi"), "messages", None, "got a string"),
    ("messages is an object", chat(messages=USER_HI), "messages", None, "got an object"),
    ("empty messages", chat(messages=[]), "messages", None, "got an empty array"),
    ("message is a string", chat("hi"), "messages[0]", None, "expected an object"),
    ("missing role", chat({"content": "hi"}), "messages[0].role", None, "Missing required"),
    (
        "unknown role",
        chat({"role": "wizard", "content": "hi"}),
        "messages[0].role",
        None,
        "'wizard' is not one of",
    ),
    ("role is a number", chat({"role": 1, "content": "hi"}), "messages[0].role", None, "integer"),
    (
        "content is a number",
        chat({"role": "user", "content": 42}),
        "messages[0].content",
        None,
        "expected a string or a list of content parts, got an integer",
    ),
    (
        "content is an object",
        chat({"role": "user", "content": {"type": "text", "text": "hi"}}),
        "messages[0].content",
        None,
        "got an object",
    ),
    (
        "user content null",
        chat({"role": "user", "content": None}),
        "messages[0].content",
        None,
        "only assistant messages may have null content",
    ),
    (
        "user content missing",
        chat({"role": "user"}),
        "messages[0].content",
        None,
        "Missing required parameter",
    ),
    (
        "system content null",
        chat({"role": "system", "content": None}, USER_HI),
        "messages[0].content",
        None,
        "not 'system'",
    ),
    (
        "part without type",
        chat({"role": "user", "content": [{"text": "hi"}]}),
        "messages[0].content[0].type",
        None,
        "Missing required parameter",
    ),
    (
        "unknown part type",
        chat({"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}),
        "messages[0].content[0].type",
        None,
        "unsupported content part type 'input_audio'",
    ),
    (
        "text part without text",
        chat({"role": "user", "content": [{"type": "text"}]}),
        "messages[0].content[0].text",
        None,
        "Missing required parameter",
    ),
    (
        "text part text is a number",
        chat({"role": "user", "content": [{"type": "text", "text": 1}]}),
        "messages[0].content[0].text",
        None,
        "expected a string, got an integer",
    ),
    (
        "image part",
        chat({"role": "user", "content": [{"type": "text", "text": "see"}, IMAGE]}),
        "messages[0].content[1]",
        "unsupported_content",
        "Image content is not supported yet",
    ),
    (
        "last message from the assistant",
        chat(USER_HI, {"role": "assistant", "content": "hello"}),
        "messages[1].role",
        None,
        "must have role 'user', got 'assistant'",
    ),
    (
        "only a system message",
        chat({"role": "system", "content": "be brief"}),
        "messages[0].role",
        None,
        "must have role 'user', got 'system'",
    ),
    (
        "tool message answering no call",
        chat(USER_HI, {"role": "tool", "content": "42", "tool_call_id": "call_1"}, USER_HI),
        "messages[1].role",
        None,
        "must follow an assistant message that calls functions",
    ),
    (
        "assistant tool calls with no result",
        chat(USER_HI, {"role": "assistant", "content": None, "tool_calls": [TOOL_CALL]}, USER_HI),
        "messages[1].tool_calls",
        None,
        "no tool message answers the call(s) 'call_1'",
    ),
    (
        "tool call without function",
        chat(
            USER_HI,
            {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function"}]},
            USER_HI,
        ),
        "messages[1].tool_calls[0].function",
        None,
        "Missing required parameter",
    ),
    ("model is a number", chat(model=4), "model", None, "expected a string, got an integer"),
    (
        "streamed, last message from the assistant",
        chat(USER_HI, {"role": "assistant", "content": "hello"}, stream=True),
        "messages[1].role",
        None,
        "must have role 'user', got 'assistant'",
    ),
    ("stream is a string", chat(stream="true"), "stream", None, "expected a boolean, got a str"),
    ("stream is a number", chat(stream=1), "stream", None, "expected a boolean, got an integer"),
    (
        "include_usage is a string",
        chat(stream=True, stream_options={"include_usage": "yes"}),
        "stream_options.include_usage",
        None,
        "expected a boolean, got a string",
    ),
    (
        "stream_options is a list",
        chat(stream_options=[]),
        "stream_options",
        None,
        "expected an object, got an array",
    ),
    ("temperature is true", chat(temperature=True), "temperature", None, "got a boolean"),
    ("temperature is a string", chat(temperature="0.5"), "temperature", None, "got a string"),
    ("top_p is a string", chat(top_p="1"), "top_p", None, "expected a number, got a string"),
    ("max_tokens is a string", chat(max_tokens="5"), "max_tokens", None, "got a string"),
    ("max_tokens is a float", chat(max_tokens=5.0), "max_tokens", None, "got a decimal number"),
    ("max_tokens is true", chat(max_tokens=True), "max_tokens", None, "got a boolean"),
    (
        "max_completion_tokens is a string",
        chat(max_completion_tokens="5"),
        "max_completion_tokens",
        None,
        "got a string",
    ),
    ("n is 129", chat(n=129), "n", None, "expected an integer from 1 to 128, got 129"),
    ("n is 0", chat(n=0), "n", None, "expected an integer from 1 to 128, got 0"),
    ("n is a string", chat(n="1"), "n", None, "expected an integer, got a string"),
    ("stop is a number", chat(stop=5), "stop", None, "expected a string or a list of strings"),
    ("stop holds a number", chat(stop=["a", 5]), "stop[1]", None, "expected a string"),
    ("user is a number", chat(user=7), "user", None, "expected a string, got an integer"),
    ("session_id is a number", chat(session_id=7), "session_id", None, "got an integer"),
    ("enable_tools is a string", chat(enable_tools="yes"), "enable_tools", None, "got a string"),
]


@pytest.mark.parametrize(
    ("body", "param", "code", "detail"),
    [case[1:] for case in BAD_REQUESTS],
    ids=[case[0] for case in BAD_REQUESTS],
)
async def test_bad_request(
    http: httpx.AsyncClient,
    mock: MockAnthropic,
    body: Any,
    param: str | None,
    code: str | None,
    detail: str,
) -> None:
    with trio.fail_after(30):
        response = await http.post(
            "/v1/chat/completions",
            content=json.dumps(body).encode(),
            headers={"content-type": "application/json", "x-request-id": "bad-request"},
        )
    message = check_envelope(response, 400, code=code, param=param)
    if param is not None:
        assert f"'{param}'" in message
    assert detail in message
    assert response.headers["x-request-id"] == "bad-request"
    assert mock.messages == []
    assert cli_processes() == []


@pytest.mark.parametrize(
    ("messages", "fields", "param", "code"),
    [
        ([{"role": "assistant", "content": "x"}], {}, "messages[0].role", None),
        ([USER_HI], {"n": 0}, "n", None),
        ([{"role": "user", "content": 42}], {}, "messages[0].content", None),
        ([USER_HI], {"extra_body": {"temperature": "hot"}}, "temperature", None),
        (
            [{"role": "user", "content": [IMAGE]}],
            {},
            "messages[0].content[0]",
            "unsupported_content",
        ),
    ],
)
async def test_bad_request_through_openai(
    client: openai.AsyncOpenAI,
    mock: MockAnthropic,
    messages: list[Any],
    fields: dict[str, Any],
    param: str,
    code: str | None,
) -> None:
    with trio.fail_after(30), pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model=MODEL, messages=messages, **fields)
    error = caught.value
    assert error.status_code == 400
    assert (error.type, error.param, error.code) == ("invalid_request_error", param, code)
    assert isinstance(error.body, dict)
    assert sorted(error.body) == ["code", "message", "param", "type"]
    assert f"'{param}'" in error.body["message"]
    assert error.response.headers["x-request-id"].startswith("req_")
    assert mock.messages == []
    assert cli_processes() == []


# --- tolerance of what is merely unknown ----------------------------------------------


async def test_unknown_fields_are_accepted(http: httpx.AsyncClient, mock: MockAnthropic) -> None:
    body = {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "Be brief.", "name": "policy"},
            {
                "role": "user",
                "content": [{"type": "text", "text": "hi", "cache_control": {"type": "x"}}],
                "future_field": 1,
            },
        ],
        "seed": 7,
        "logprobs": False,
        "top_logprobs": None,
        "metadata": {},
        "store": True,
        "stream": False,
        "stream_options": None,
        "user": None,
        "frequency_penalty": 0,
        "presence_penalty": 0.0,
        "reasoning_effort": "low",
        "response_format": {"type": "text"},
        "parallel_tool_calls": True,
        "temperature": 1,
        "n": 1,
        "max_tokens": None,
        "stop": None,
    }
    with trio.fail_after(30):
        response = await http.post(
            "/v1/chat/completions", json=body, headers={"x-request-id": "tolerant-1"}
        )
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"] == "tolerant-1"
    completion = response.json()
    assert completion["object"] == "chat.completion"
    assert completion["choices"][0]["message"]["content"] == "Hello from the mock."
    assert completion["choices"][0]["finish_reason"] == "stop"
    assert len(mock.messages) == 1
    assert mock.messages[0].last_user_text.endswith("hi")
    assert "Be brief." in mock.messages[0].system_text


async def test_unknown_extra_body_through_openai(
    client: openai.AsyncOpenAI, mock: MockAnthropic
) -> None:
    with trio.fail_after(30):
        completion = await client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "hi"}],
            seed=1,
            extra_body={"some_future_field": {"nested": [1, 2]}, "web_search_options": {}},
        )
    assert completion.choices[0].message.content == "Hello from the mock."
    assert len(mock.messages) == 1
    assert mock.messages[0].body["model"] == MODEL
