"""Record mode against an upstream that misbehaves: garbage, events of megabytes, bodies that
are no SSE, invalid UTF-8, compressed answers, credentials in its URL; and secrets kept out of
the log whatever the failure."""

from __future__ import annotations

import asyncio
import gzip
import json
import secrets
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dummy_vllm.recording.store import Outcome

from ..conftest import LiveServer
from .recorded import exchange_for
from .test_recorder_faults import (
    SSE_HEAD,
    FakeUpstream,
    chat,
    chunk,
    read_raw,
    read_request,
)

MAX_EVENT = 64 * 1024
MAX_RESPONSE = 256 * 1024
GOOD = (
    b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
    b'"choices":[{"index":0,"delta":{"content":"ok"}}]}\n\n'
)
DONE = b"data: [DONE]\n\n"


def _json_head(length: int, extra: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n"
        b"content-length: %d\r\n%b\r\n" % (length, extra)
    )


class MisbehavingUpstream(FakeUpstream):
    """``FakeUpstream`` with more behaviours, chosen by the request's model."""

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        headers, body = await read_request(reader)
        self.received.append((headers, body))
        request = json.loads(body) if body else {}
        try:
            if request.get("model") == "echo-stream":
                content = json.dumps(request["messages"][0]["content"]).encode()
                echoed = b'data: {"choices":[{"index":0,"delta":{"content":%b}}]}\n\n' % content
                writer.write(SSE_HEAD + chunk(echoed) + chunk(DONE) + b"0\r\n\r\n")
                await writer.drain()
                return
            await self._answer(request.get("model"), writer)
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _answer(self, model: str | None, writer: asyncio.StreamWriter) -> None:
        if model == "garbage":
            writer.write(b"\x00\xffNOT HTTP AT ALL\r\n\r\n" * 10)
        elif model == "bad-header":
            writer.write(b"HTTP/1.1 200 OK\r\nbroken header line without colon\r\n\r\n{}")
        elif model == "huge-event":
            writer.write(SSE_HEAD + chunk(GOOD))
            big = b"data: " + b"x" * (4 * MAX_EVENT)
            for start in range(0, len(big), 16384):
                writer.write(chunk(big[start : start + 16384]))
                await writer.drain()
            writer.write(chunk(b"\n\n" + DONE) + b"0\r\n\r\n")
        elif model == "no-sse":
            writer.write(SSE_HEAD)
            for _ in range(40):
                writer.write(chunk(b"not an event " * 1000))
                await writer.drain()
            writer.write(b"0\r\n\r\n")
        elif model == "huge-body":
            writer.write(_json_head(4 * MAX_RESPONSE) + b" " * (4 * MAX_RESPONSE))
        elif model == "bad-utf8":
            event = b'data: {"choices":[{"index":0,"delta":{"content":"\xff\xfe"}}]}\n\n'
            writer.write(SSE_HEAD + chunk(GOOD) + chunk(event) + chunk(DONE) + b"0\r\n\r\n")
        elif model == "gzip":
            answer = gzip.compress(b'{"gzipped":true}')
            writer.write(_json_head(len(answer), b"content-encoding: gzip\r\n") + answer)
        elif model == "gzip-stream":
            packer = zlib.compressobj(wbits=16 + zlib.MAX_WBITS)
            packed = packer.compress(GOOD * 3 + DONE) + packer.flush()
            head = SSE_HEAD.replace(b"\r\n\r\n", b"\r\ncontent-encoding: gzip\r\n\r\n")
            writer.write(head + chunk(packed[:40]) + chunk(packed[40:]) + b"0\r\n\r\n")
        elif model == "brotli":
            writer.write(_json_head(4, b"content-encoding: br\r\n") + b"\x0b\x01\x80\x03")
        else:
            answer = b'{"ok":true}'
            writer.write(_json_head(len(answer)) + answer)
        await writer.drain()


@pytest.fixture(scope="module")
def upstream() -> Iterator[MisbehavingUpstream]:
    server = MisbehavingUpstream()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("robust") / "rec.db"


UPSTREAM_KEY = f"sk-upstream-{secrets.token_hex(12)}"


@pytest.fixture(scope="module")
def recorder(
    upstream: MisbehavingUpstream, db: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    log = tmp_path_factory.mktemp("robust-log") / "recorder.log"
    server = LiveServer(
        *("--upstream", upstream.url, "--session", "r", "--db", str(db)),
        *("--max-event-bytes", str(MAX_EVENT), "--max-response-bytes", str(MAX_RESPONSE)),
        *("--upstream-api-key", UPSTREAM_KEY, "--header", "Cookie: session=hunter2"),
        command="record",
        log=log,
    )
    yield server
    server.stop()


def post(recorder: LiveServer, body: dict[str, object], **headers: str) -> httpx.Response:
    return httpx.post(f"{recorder.url}/v1/chat/completions", json=body, timeout=30, headers=headers)


@pytest.mark.parametrize("model", ["garbage", "bad-header"])
def test_garbage_is_a_502_recorded_and_no_secret_reaches_the_log(
    recorder: LiveServer, db: Path, model: str
) -> None:
    marker = f"{model}-{uuid.uuid4()}"
    client_key = f"sk-client-{secrets.token_hex(12)}"
    response = post(
        recorder, chat(model, marker), authorization=f"Bearer {client_key}", x_api_key=client_key
    )
    assert response.status_code == 502
    assert response.json()["error"]["type"] == "BadGateway"
    exchange = exchange_for(db, marker, "r")
    assert exchange.record.outcome is Outcome.UPSTREAM_DROPPED
    log = recorder.stderr()
    assert "upstream" in log
    for secret in (client_key, UPSTREAM_KEY, "hunter2"):
        assert secret not in log


def test_an_event_over_the_limit_cuts_the_stream_after_the_last_whole_event(
    recorder: LiveServer, db: Path
) -> None:
    marker = f"huge-{uuid.uuid4()}"
    body = chat("huge-event", marker, stream=True)
    with httpx.stream("POST", f"{recorder.url}/v1/chat/completions", json=body, timeout=30) as r:
        received, error = read_raw(r)
    assert isinstance(error, httpx.RemoteProtocolError)
    assert received == GOOD
    exchange = exchange_for(db, marker, "r")
    assert exchange.record.outcome is Outcome.UPSTREAM_DROPPED
    assert [data for _, data in exchange.record.events] == [GOOD]


def test_a_stream_that_is_no_sse_is_cut_at_the_event_limit(recorder: LiveServer, db: Path) -> None:
    marker = f"nosse-{uuid.uuid4()}"
    body = chat("no-sse", marker, stream=True)
    with httpx.stream("POST", f"{recorder.url}/v1/chat/completions", json=body, timeout=30) as r:
        received, error = read_raw(r)
    assert error is not None
    assert received == b""
    exchange = exchange_for(db, marker, "r")
    assert exchange.record.outcome is Outcome.UPSTREAM_DROPPED


def test_a_body_over_the_limit_is_a_502(recorder: LiveServer, db: Path) -> None:
    marker = f"hugebody-{uuid.uuid4()}"
    response = post(recorder, chat("huge-body", marker))
    assert response.status_code == 502
    assert f"exceeds {MAX_RESPONSE} bytes" in response.json()["error"]["message"]
    exchange = exchange_for(db, marker, "r")
    assert exchange.record.outcome is Outcome.UPSTREAM_DROPPED


def test_invalid_utf8_passes_through_and_is_stored(recorder: LiveServer, db: Path) -> None:
    marker = f"utf8-{uuid.uuid4()}"
    body = chat("bad-utf8", marker, stream=True)
    with httpx.stream("POST", f"{recorder.url}/v1/chat/completions", json=body, timeout=30) as r:
        received, error = read_raw(r)
    assert error is None
    assert b"\xff\xfe" in received
    assert received.endswith(DONE)
    exchange = exchange_for(db, marker, "r")
    assert exchange.record.outcome is Outcome.COMPLETE
    assert any(b"\xff\xfe" in data for _, data in exchange.record.events)


def test_a_gzip_body_is_decoded_for_the_client_and_the_store(
    recorder: LiveServer, db: Path
) -> None:
    marker = f"gzip-{uuid.uuid4()}"
    response = post(recorder, chat("gzip", marker))
    assert response.status_code == 200
    assert "content-encoding" not in response.headers
    assert response.json() == {"gzipped": True}
    exchange = exchange_for(db, marker, "r")
    assert exchange.record.outcome is Outcome.COMPLETE
    assert exchange.record.response_body == b'{"gzipped":true}'


def test_a_gzip_stream_is_decoded_event_by_event(recorder: LiveServer, db: Path) -> None:
    marker = f"gzips-{uuid.uuid4()}"
    body = chat("gzip-stream", marker, stream=True)
    with httpx.stream("POST", f"{recorder.url}/v1/chat/completions", json=body, timeout=30) as r:
        received, error = read_raw(r)
    assert error is None
    assert received == GOOD * 3 + DONE
    exchange = exchange_for(db, marker, "r")
    assert [data for _, data in exchange.record.events] == [GOOD, GOOD, GOOD, DONE]


def test_an_unknown_content_encoding_is_a_502(recorder: LiveServer, db: Path) -> None:
    marker = f"br-{uuid.uuid4()}"
    response = post(recorder, chat("brotli", marker))
    assert response.status_code == 502
    assert "Content-Encoding: br" in response.json()["error"]["message"]
    exchange = exchange_for(db, marker, "r")
    assert exchange.record.outcome is Outcome.UPSTREAM_DROPPED


def test_credentials_in_the_upstream_url_with_a_client_authorization(
    upstream: MisbehavingUpstream, tmp_path: Path
) -> None:
    db = tmp_path / "creds.db"
    url = upstream.url.replace("http://", "http://user:pa55word@")
    server = LiveServer(*("--upstream", url, "--session", "c", "--db", str(db)), command="record")
    try:
        marker = f"creds-{uuid.uuid4()}"
        response = post(server, chat("echo", marker), authorization="Bearer client")
    finally:
        server.stop()
    assert response.status_code == 200
    assert response.json() == {"ok": True}
    headers, _ = upstream.request_with(marker)
    # The URL's credentials, as Basic auth, win over the client's.
    assert headers["authorization"] == "Basic dXNlcjpwYTU1d29yZA=="
    exchange = exchange_for(db, marker, "c")
    assert exchange.record.outcome is Outcome.COMPLETE


def test_keys_echoed_in_an_answer_are_scrubbed_from_what_is_stored(
    recorder: LiveServer, db: Path
) -> None:
    marker = f"echo-{uuid.uuid4()}"
    key = "sk-test1234"
    body = {
        "model": "echo-stream",
        "messages": [{"role": "user", "content": f"{marker} my key is {key}"}],
        "stream": True,
        "x_api_key": "plain-secret-value",
    }
    with httpx.stream("POST", f"{recorder.url}/v1/chat/completions", json=body, timeout=30) as r:
        received, _ = read_raw(r)
    # The client gets the answer as the upstream sent it.
    assert key.encode() in received
    exchange = exchange_for(db, marker, "r")
    stored = exchange.record.request_body + b"".join(data for _, data in exchange.record.events)
    assert key.encode() not in stored
    assert b"plain-secret-value" not in stored
    assert b"[REDACTED]" in b"".join(data for _, data in exchange.record.events)
