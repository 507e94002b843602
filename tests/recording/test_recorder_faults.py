"""Record mode when things go wrong: an unreachable upstream, one that hangs up or drops a stream,
a client that leaves, and secrets that must reach the upstream but never the disk."""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dummy_vllm.recording.recorder import Recorder, UpstreamCall
from dummy_vllm.recording.store import Outcome, Store, migrate
from dummy_vllm.settings import RecordSettings

from ..conftest import LiveServer, free_port
from .recorded import exchange_for

EVENT = b'data: {"choices":[{"index":0,"delta":{"content":"x"}}]}\n\n'
FRAGMENT = b'data: {"choi'
SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
    b"transfer-encoding: chunked\r\nx-upstream: fake\r\n\r\n"
)


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


async def read_request(reader: asyncio.StreamReader) -> tuple[dict[str, str], bytes]:
    """A request's headers (names lower-cased) and body, as a bare HTTP/1.1 server reads them."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    headers = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        if name:
            headers[name.strip().lower()] = value.strip()
    return headers, await reader.readexactly(int(headers.get("content-length", "0")))


class FakeUpstream:
    """A bare HTTP/1.1 upstream on its own thread; the request's ``model`` picks its behaviour:
    ``drop`` (three events and a partial one, then the connection closes), ``slow`` (an event
    every 30 ms until the peer leaves), ``hang-up`` (closes without answering); anything else
    gets a small JSON answer. It keeps every request it received."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        # Set when a ``slow`` stream saw its client (the recorder) go away.
        self.abandoned = threading.Event()
        self._loop = asyncio.new_event_loop()
        started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(started,), daemon=True)
        self._thread.start()
        assert started.wait(10), "the fake upstream did not start listening"
        self.url = f"http://127.0.0.1:{self.port}"

    def _run(self, started: threading.Event) -> None:
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        started.set()
        self._loop.run_forever()
        server.close()

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def request_with(self, marker: str) -> tuple[dict[str, str], bytes]:
        (found,) = [item for item in self.received if marker.encode() in item[1]]
        return found

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            headers, body = await read_request(reader)
            self.received.append((headers, body))
            model = json.loads(body).get("model") if body else None
            if model == "drop":
                writer.write(SSE_HEAD)
                for _ in range(3):
                    writer.write(chunk(EVENT))
                    await writer.drain()
                    await asyncio.sleep(0.01)
                writer.write(chunk(FRAGMENT))
                await writer.drain()
            elif model == "slow":
                await self._slow(reader, writer)
            elif model != "hang-up":
                answer = b'{"ok":true}'
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b"connection: close\r\ncontent-length: %d\r\n\r\n%b" % (len(answer), answer)
                )
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _slow(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(SSE_HEAD)
        peer_left = asyncio.ensure_future(reader.read(1))
        # Bounded: a recorder that never lets go must not keep this thread writing for ever.
        loop = asyncio.get_running_loop()
        give_up = loop.time() + 30
        stayed = False
        try:
            while not peer_left.done():
                if stayed := loop.time() > give_up:
                    return
                writer.write(chunk(EVENT))
                await writer.drain()
                await asyncio.sleep(0.03)
        finally:
            peer_left.cancel()
            if not stayed:  # the peer left, or the connection broke
                self.abandoned.set()


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    upstream = FakeUpstream()
    yield upstream
    upstream.stop()


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("faults") / "rec.db"


@pytest.fixture(scope="module")
def recorder(fake: FakeUpstream, db: Path) -> Iterator[LiveServer]:
    server = LiveServer(
        *("--upstream", fake.url, "--session", "f", "--db", str(db)),
        *("--header", "X-Extra: yes"),
        command="record",
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def dead_recorder(db: Path) -> Iterator[LiveServer]:
    # Module-scoped although one test uses it: a Sanic server stopped right after it started
    # can hang in shutdown for 10 s (a worker interrupted during its own start-up).
    closed_port = free_port()
    server = LiveServer(
        *("--upstream", f"http://127.0.0.1:{closed_port}", "--session", "dead", "--db", str(db)),
        command="record",
    )
    yield server
    server.stop()


def read_raw(response: httpx.Response) -> tuple[bytes, httpx.TransportError | None]:
    """The raw body received, and the error that ended it early, if any."""
    received = b""
    try:
        for data in response.iter_raw():
            received += data
    except httpx.TransportError as exc:
        return received, exc
    return received, None


def chat(model: str, marker: str, **fields: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": marker}], **fields}


def test_unreachable_upstream_gets_502_and_is_recorded(dead_recorder: LiveServer, db: Path) -> None:
    marker = f"dead-{uuid.uuid4()}"
    response = httpx.post(
        f"{dead_recorder.url}/v1/chat/completions", json=chat("m", marker, stream=True), timeout=30
    )
    assert response.status_code == 502
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["message"].startswith("The upstream is unreachable:")
    assert (error["type"], error["param"], error["code"]) == ("BadGateway", None, 502)
    assert set(response.json()) == {"error"}
    exchange = exchange_for(db, marker, "dead")
    record = exchange.record
    assert (record.outcome, record.status, record.events) == (
        Outcome.UPSTREAM_UNREACHABLE,
        None,
        (),
    )


def test_upstream_hanging_up_without_an_answer_is_502(recorder: LiveServer, db: Path) -> None:
    marker = f"hangup-{uuid.uuid4()}"
    response = httpx.post(
        f"{recorder.url}/v1/chat/completions", json=chat("hang-up", marker), timeout=30
    )
    assert response.status_code == 502
    assert response.json()["error"]["type"] == "BadGateway"
    exchange = exchange_for(db, marker, "f")
    assert (exchange.record.outcome, exchange.record.status) == (Outcome.UPSTREAM_DROPPED, None)


def test_stream_dropped_by_the_upstream_is_truncated_for_the_client(
    recorder: LiveServer, db: Path
) -> None:
    marker = f"drop-{uuid.uuid4()}"
    body = chat("drop", marker, stream=True)
    with httpx.stream("POST", f"{recorder.url}/v1/chat/completions", json=body, timeout=30) as r:
        assert r.headers["x-upstream"] == "fake"
        received, error = read_raw(r)
    # Broken off without the chunked terminator, as the upstream left it.
    assert isinstance(error, httpx.RemoteProtocolError)
    assert received == EVENT * 3 + FRAGMENT
    exchange = exchange_for(db, marker, "f")
    record = exchange.record
    assert (record.outcome, record.status, record.streamed) == (
        Outcome.UPSTREAM_DROPPED,
        200,
        True,
    )
    assert [data for _, data in record.events] == [EVENT, EVENT, EVENT, FRAGMENT]
    assert record.complete_ns is None


def test_client_leaving_cancels_the_upstream_and_is_recorded(
    recorder: LiveServer, fake: FakeUpstream, db: Path
) -> None:
    marker = f"leave-{uuid.uuid4()}"
    body = chat("slow", marker, stream=True)
    received = b""
    with httpx.stream("POST", f"{recorder.url}/v1/chat/completions", json=body, timeout=30) as r:
        for data in r.iter_raw():
            received += data
            if received.count(b"\n\n") >= 2:
                break
    assert fake.abandoned.wait(10), "the upstream request was not cancelled"
    record = exchange_for(db, marker, "f").record
    assert record.outcome is Outcome.CLIENT_ABORTED
    assert len(record.events) >= 2
    assert all(data == EVENT for _, data in record.events)


def test_secrets_reach_the_upstream_but_not_the_disk(
    recorder: LiveServer, fake: FakeUpstream, db: Path
) -> None:
    marker = f"secret-{uuid.uuid4()}"
    bearer = f"sk-live-{secrets.token_hex(16)}"
    body_key = f"sk-{secrets.token_hex(16)}"
    response = httpx.post(
        f"{recorder.url}/v1/chat/completions",
        json={**chat("echo", marker), "api_key": body_key},
        headers={"Authorization": f"Bearer {bearer}"},
        timeout=30,
    )
    assert response.json() == {"ok": True}
    headers, body = fake.request_with(marker)
    assert headers["authorization"] == f"Bearer {bearer}"
    assert body_key.encode() in body
    assert headers["x-extra"] == "yes"
    assert headers["accept-encoding"] == "identity"
    exchange = exchange_for(db, marker, "f")
    assert json.loads(exchange.record.request_body)["api_key"] == "[REDACTED]"
    on_disk = b"".join(
        path.read_bytes() for path in db.parent.iterdir() if path.name.startswith(db.name)
    )
    assert marker.encode() in on_disk
    assert bearer.encode() not in on_disk
    assert body_key.encode() not in on_disk
    assert bearer[3:].encode() not in on_disk


async def test_upstream_api_key_replaces_the_clients_and_hop_headers_stay(
    fake: FakeUpstream, tmp_path: Path
) -> None:
    db = tmp_path / "key.db"
    migrate(db)
    async with await Store.open(db) as store:
        await store.ensure_session("s", upstream=fake.url, options={})
    settings = RecordSettings(upstream=fake.url, session="s", upstream_api_key="server-key")
    recorder = await Recorder.open(settings, db)
    marker = f"key-{uuid.uuid4()}"
    call = UpstreamCall(
        "POST",
        "/v1/completions",
        json.dumps({"model": "echo", "prompt": marker}).encode(),
        {"Authorization": "Bearer client-key", "Host": "elsewhere", "Connection": "close"},
    )
    try:
        forwarded = await recorder.forward(call)
    finally:
        await recorder.close()
    headers, _ = fake.request_with(marker)
    assert headers["authorization"] == "Bearer server-key"
    assert headers["host"] == f"127.0.0.1:{fake.port}"
    assert forwarded.error is None
    assert forwarded.record.outcome is Outcome.COMPLETE
    assert forwarded.record.response_body == b'{"ok":true}'
