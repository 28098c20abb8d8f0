"""wrapper.http's SSE writer, byte for byte, and the app's count of the streams it writes."""

from __future__ import annotations

import pytest
import trio

from tests.conftest import Server, metric
from tests.mock_anthropic import MockAnthropic, Reply
from wrapper.http import SSE_CONTENT_TYPE, Message, SSEWriter


class Sent(list[Message]):
    """What the writer handed to ASGI ``send``, in order."""

    async def __call__(self, message: Message) -> None:
        self.append(message)

    @property
    def body(self) -> bytes:
        return b"".join(m["body"] for m in self if m["type"] == "http.response.body")


async def test_the_response_starts_with_the_first_frame() -> None:
    sent = Sent()
    sse = SSEWriter(sent, {"x-request-id": "r1"})
    assert sent == [] and not sse.started
    await sse.event({"a": 1})
    start = sent[0]
    assert (start["type"], start["status"]) == ("http.response.start", 200)
    assert (b"content-type", SSE_CONTENT_TYPE.encode()) in start["headers"]
    assert (b"x-request-id", b"r1") in start["headers"]
    assert sse.started


@pytest.mark.parametrize(
    ("name", "frame"),
    [
        (None, b'data: {"a":[1,"\\u00e9"]}\n\n'),
        ("message_start", b'event: message_start\ndata: {"a":[1,"\\u00e9"]}\n\n'),
        (
            "response.output_text.delta",
            b'event: response.output_text.delta\ndata: {"a":[1,"\\u00e9"]}\n\n',
        ),
    ],
)
async def test_a_frame_named_or_not(name: str | None, frame: bytes) -> None:
    sent = Sent()
    sse = SSEWriter(sent, {})
    await sse.event({"a": [1, "é"]}, name)
    assert sent.body == frame


async def test_frames_then_done_or_end() -> None:
    done, ended = Sent(), Sent()
    for sent in (done, ended):
        sse = SSEWriter(sent, {})
        await sse.event({"n": 1}, "one")
        await sse.event({"n": 2})
        await (sse.done() if sent is done else sse.end())
    assert done.body == b'event: one\ndata: {"n":1}\n\ndata: {"n":2}\n\ndata: [DONE]\n\n'
    assert ended.body == b'event: one\ndata: {"n":1}\n\ndata: {"n":2}\n\n'
    assert [m.get("more_body") for m in done[1:]] == [True, True, False]


@pytest.mark.parametrize("name", ["two\nlines", "cr\r", " padded", ""])
async def test_a_name_that_would_break_the_framing_is_a_bug(name: str) -> None:
    sse = SSEWriter(Sent(), {})
    with pytest.raises(AssertionError):
        await sse.event({}, name)


async def test_a_stream_in_flight_is_counted(server: Server, mock: MockAnthropic) -> None:
    release = trio.Event()  # the answer ends once the count is read
    mock.script(Reply.text("held", hold=release))
    chat = {"messages": [{"role": "user", "content": "hi"}], "stream": True}
    during = None
    async with server.http() as http:
        with trio.fail_after(30):
            async with http.stream("POST", "/v1/chat/completions", json=chat) as response:
                async for line in response.aiter_lines():
                    if line.startswith("data: {") and not release.is_set():
                        during = await metric(http, "wrapper_active_streams")
                        release.set()
            # Counted off once the response is out, maybe after the client has it all.
            while await metric(http, "wrapper_active_streams"):  # noqa: ASYNC110
                await trio.sleep(0.01)
    assert during == 1
