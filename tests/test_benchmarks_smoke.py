"""The benchmark load generator's HTTP/SSE parser, fed canned bytes in every split."""

from __future__ import annotations

import json
from typing import Any

import pytest

from benchmarks.loadgen import Conn, LoadRun, LoadSpec


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def abort(self) -> None:
        self.closed = True

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> Any:
        return None


def _event(obj: object) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


def _delta(delta: dict[str, str], finish: str | None = None) -> bytes:
    return _event({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


ROLE = _delta({"role": "assistant", "content": ""})
TOKENS = [_delta({"content": w}) for w in ("Hello", " big")] + [_delta({"content": "!"}, "length")]
USAGE = _event({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 3}})
DONE = b"data: [DONE]\n\n"
STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
    b"Transfer-Encoding: chunked\r\nconnection: keep-alive\r\n\r\n"
)


def _stream(*events: bytes) -> bytes:
    # One event per chunk, plus one chunk carrying two events and one event split in two.
    body = b"".join(_chunk(e) for e in events[:-2])
    merged = events[-2] + events[-1]
    body += _chunk(merged[:7]) + _chunk(merged[7:])
    return STREAM_HEAD + body + b"0\r\n\r\n"


def _run(stream: bool, max_tokens: int) -> tuple[LoadRun, Conn]:
    run = LoadRun(LoadSpec(stream=stream, max_tokens=max_tokens, latency_samples=True))
    run.ws, run.we = 0, 1 << 62  # everything falls in the measurement window
    conn = Conn(run)
    conn.transport = FakeTransport()  # type: ignore[assignment]
    run.active = True
    conn.send()
    run.active = False  # no follow-up request after the canned response
    return run, conn


def _pieces(raw: bytes, split: int | None) -> list[bytes]:
    if split is None:
        return [raw[i : i + 1] for i in range(len(raw))]
    return [raw[:split], raw[split:]]


@pytest.mark.parametrize("split", [None, *range(0, 400, 7)])
def test_stream_counts_token_events_only(split: int | None) -> None:
    raw = _stream(ROLE, *TOKENS, USAGE, DONE)
    run, conn = _run(stream=True, max_tokens=3)
    for piece in _pieces(raw, split):
        conn.data_received(piece)
    assert run.failures == {}
    assert conn.tokens == 3
    assert conn.done
    assert run.window_events == 3
    assert run.window_completed == 1
    assert len(run.ttft) == 1
    assert len(run.itl) == 2
    assert conn.buf == b""


def test_stream_with_wrong_token_count_fails() -> None:
    run, conn = _run(stream=True, max_tokens=4)
    conn.data_received(_stream(*TOKENS, USAGE, DONE))
    assert run.failures == {"token_count": 1}
    assert run.window_completed == 0


def test_stream_without_done_fails() -> None:
    run, conn = _run(stream=True, max_tokens=2)
    conn.data_received(_stream(*TOKENS[:2], USAGE))
    assert run.failures == {"no_done": 1}


@pytest.mark.parametrize("split", [None, 10, 60, 120])
def test_non_streaming_body(split: int | None) -> None:
    body = json.dumps(
        {
            "choices": [{"index": 0, "message": {"content": "Hello big!"}}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
        }
    ).encode()
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body)
    run, conn = _run(stream=False, max_tokens=16)
    for piece in _pieces(raw, split):
        conn.data_received(piece)
    assert run.failures == {}
    assert run.window_completed == 1
    assert list(run.prompt_tokens) == [7]


def test_http_error_status_is_a_failure() -> None:
    run, conn = _run(stream=True, max_tokens=3)
    conn.data_received(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
    assert run.failures == {"http_503": 1}
    assert conn.transport.closed  # type: ignore[union-attr]


def test_request_bytes_are_well_formed() -> None:
    spec = LoadSpec(port=1234, stream=True, max_tokens=100)
    head, body = spec.request_bytes().split(b"\r\n\r\n", 1)
    assert head.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
    assert b"Content-Length: %d" % len(body) in head
    payload = json.loads(body)
    assert payload["max_tokens"] == 100
    assert payload["ignore_eos"] is True
    assert payload["stream_options"] == {"include_usage": True}
    assert len(payload["messages"][0]["content"].split()) >= 25
