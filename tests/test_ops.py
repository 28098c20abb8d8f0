"""Operations: sd_notify, /metrics and the JSON log format, through the real server."""

from __future__ import annotations

import json
import logging
import socket
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.conftest import sample
from tests.mock_anthropic import MockAnthropic, Reply
from wrapper.logs import JsonFormatter


@pytest.mark.parametrize("abstract", [False, True])
async def test_sd_notify_ready_and_stopping(
    start_server: Any, tmp_path: Path, abstract: bool
) -> None:
    listener = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if abstract:
        address = f"@wrapper-test-{id(listener)}"
        await listener.bind("\0" + address[1:])
    else:
        address = str(tmp_path / "notify")
        await listener.bind(address)
    with listener, trio.fail_after(30):
        server = await start_server(notify_socket=address)
        ready = (await listener.recv(4096)).decode()
        server.stop.set()
        stopping = (await listener.recv(4096)).decode()
    assert ready == f"READY=1\nSTATUS=listening on {server.url}"
    assert stopping == "STOPPING=1"


async def test_metrics(start_server: Any, mock: MockAnthropic) -> None:
    server = await start_server(rate_limits={"health": (60.0, 1.0), "chat": (10.0, 10.0)})
    mock.script(Reply.text("counted", pieces=3, input_tokens=12, output_tokens=4))
    chat = {"messages": [{"role": "user", "content": "hi"}], "stream": True}
    async with server.http() as http:
        with trio.fail_after(30):
            await http.post("/v1/chat/completions", json=chat)
            await http.get("/v1/models/nope")
            await http.get("/health")
            await http.get("/health")  # rate limited
            await http.get("/nowhere")
            # Each request is counted once its response is out: wait for the last one.
            while 'route="unmatched"' not in (response := await http.get("/metrics")).text:  # noqa: ASYNC110
                await trio.sleep(0.01)
    text = response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    requests = 'wrapper_requests_total{route="%s",method="%s",status="%s"}'
    assert sample(text, requests % ("/v1/chat/completions", "POST", 200)) == 1
    assert sample(text, requests % ("/v1/models/{model_id}", "GET", 404)) == 1
    assert sample(text, requests % ("/health", "GET", 200)) == 1
    assert sample(text, requests % ("/health", "GET", 429)) == 1
    assert sample(text, requests % ("unmatched", "GET", 404)) == 1
    assert sample(text, "wrapper_rate_limited_total") == 1
    duration = 'wrapper_request_duration_seconds_%s{route="/v1/chat/completions"}'
    assert sample(text, duration % "count") == 1
    assert sample(text, duration % "sum") > 0.1  # a real CLI run
    assert sample(text, 'wrapper_request_duration_seconds_bucket{route="/health",le="+Inf"}') == 2
    assert sample(text, "wrapper_cli_processes") == 0
    assert sample(text, "wrapper_active_runs") == 0
    assert sample(text, "wrapper_active_streams") == 0
    assert sample(text, "wrapper_active_requests") == 1  # this scrape
    assert sample(text, 'wrapper_tokens_total{direction="prompt"}') == 12
    assert sample(text, 'wrapper_tokens_total{direction="completion"}') == 4
    assert sample(text, "wrapper_cost_usd_total") > 0
    assert sample(text, "wrapper_time_to_first_token_seconds_count") == 1
    assert 0 < sample(text, "wrapper_time_to_first_token_seconds_sum") < 30


async def test_metrics_need_a_key_unless_public(start_server: Any) -> None:
    guarded = await start_server(api_keys=("metrics-key-123",))
    public = await start_server(api_keys=("metrics-key-123",), metrics_public=True)
    async with guarded.http() as a, public.http() as b:
        with trio.fail_after(30):
            refused = await a.get("/metrics")
            allowed = await a.get("/metrics", headers={"x-api-key": "metrics-key-123"})
            open_ = await b.get("/metrics")
    assert (refused.status_code, allowed.status_code, open_.status_code) == (401, 200, 200)


async def test_access_log_as_json(server: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="wrapper.app")
    async with server.http() as http:
        with trio.fail_after(30):
            await http.get("/v1/models", headers={"x-request-id": "trace-42"})
            # The line is written once the response is out, maybe after we have it.
            while not (records := [r for r in caplog.records if r.name == "wrapper.app"]):  # noqa: ASYNC110
                await trio.sleep(0.01)
    (record,) = records
    entry = json.loads(JsonFormatter().format(record))
    assert entry["level"] == "INFO"
    assert entry["time"].endswith("Z")
    assert (entry["method"], entry["path"], entry["status"]) == ("GET", "/v1/models", 200)
    assert (entry["client"], entry["request_id"]) == ("127.0.0.1", "trace-42")
    assert isinstance(entry["duration"], float)
    assert "GET /v1/models 200" in entry["message"]
