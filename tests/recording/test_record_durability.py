"""Record mode's promises to its clients: an exchange a client saw end is in the database, even
if the recorder is killed at that moment; one the database refused is never passed off as
complete, and is counted where an operator looks."""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dummy_vllm.recording.store import Outcome

from ..conftest import REPO, LiveServer, descendants
from .recorded import load
from .test_recorder_faults import (
    SSE_HEAD,
    FakeUpstream,
    chat,
    chunk,
    read_raw,
    read_request,
)

EVENTS = 5
GAP = 0.02
# The upstream holds its chunked terminator back this long after [DONE]: a recorder that
# stored exchanges only at the end of the body would lose every one killed in this window.
TAIL = 1.0
STREAMS = 32


def event(marker: str, index: int) -> bytes:
    return (
        b'data: {"id":"%b","object":"chat.completion.chunk","created":1,"model":"m",'
        b'"choices":[{"index":0,"delta":{"content":"t%d"}}]}\n\n' % (marker.encode(), index)
    )


class SlowTailUpstream(FakeUpstream):
    def stop(self) -> None:
        # Streams still in their tail when the tests end are cancelled, not left to the GC.
        async def cancel_handlers() -> None:
            handlers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for handler in handlers:
                handler.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(cancel_handlers(), self._loop).result(10)
        super().stop()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _, body = await read_request(reader)
        marker = body.split(b'"content":"')[1].split(b'"')[0].decode() if body else ""
        try:
            if b'"stream":true' in body:
                writer.write(SSE_HEAD)
                for index in range(EVENTS):
                    writer.write(chunk(event(marker, index)))
                    await writer.drain()
                    await asyncio.sleep(GAP)
                writer.write(chunk(b"data: [DONE]\n\n"))
                await writer.drain()
                await asyncio.sleep(TAIL)
                writer.write(b"0\r\n\r\n")
            else:
                answer = b'{"marker":"%b"}' % marker.encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b"content-length: %d\r\n\r\n%b" % (len(answer), answer)
                )
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


@pytest.fixture(scope="module")
def upstream() -> Iterator[SlowTailUpstream]:
    server = SlowTailUpstream()
    yield server
    server.stop()


async def _stream(url: str, marker: str, finished: list[str], all_done: asyncio.Event) -> None:
    body = chat("m", marker, stream=True)
    async with (
        httpx.AsyncClient(timeout=30) as client,
        client.stream("POST", f"{url}/v1/chat/completions", json=body) as response,
    ):
        received = b""
        try:
            async for data in response.aiter_raw():
                received += data
                if received.endswith(b"data: [DONE]\n\n"):
                    # The client's log: this exchange ended, as far as it knows.
                    finished.append(marker)
                    if len(finished) == STREAMS:
                        all_done.set()
        except httpx.TransportError:
            pass


def test_kill_9_after_done_loses_no_exchange_a_client_saw_end(
    upstream: SlowTailUpstream, tmp_path: Path
) -> None:
    db = tmp_path / "durable.db"
    server = LiveServer(
        *("--upstream", upstream.url, "--session", "d", "--db", str(db), "--workers", "2"),
        command="record",
    )
    finished: list[str] = []
    markers = [f"k{i}-{uuid.uuid4().hex[:8]}" for i in range(STREAMS)]

    async def run() -> None:
        all_done = asyncio.Event()
        tasks = [asyncio.create_task(_stream(server.url, m, finished, all_done)) for m in markers]
        await asyncio.wait_for(all_done.wait(), 20)
        # Every client has its [DONE]; the upstream's bodies have not ended yet.
        os.killpg(server.process.pid, signal.SIGKILL)
        await asyncio.gather(*tasks)

    try:
        asyncio.run(run())
    finally:
        server.stop()
    assert len(finished) == STREAMS
    stored = {
        x.record.request_body.split(b'"content":"')[1].split(b'"')[0].decode(): x.record
        for x in load(db, "d")
    }
    missing = [marker for marker in finished if marker not in stored]
    assert not missing, f"{len(missing)} of {len(finished)} finished exchanges not stored"
    for marker in finished:
        record = stored[marker]
        assert record.outcome is Outcome.COMPLETE
        assert [data for _, data in record.events][-1] == b"data: [DONE]\n\n"
        assert len(record.events) == EVENTS + 1


def _limit_file_size(pid: int, size: int) -> None:
    # The soft limit only: the hard one could not be raised again without privileges.
    _, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (size, hard))


def test_a_refused_write_is_never_passed_off_as_recorded(
    upstream: SlowTailUpstream, tmp_path: Path
) -> None:
    """The disk fills up (a file size limit on the worker): answers become 503s and streams
    break off before [DONE]; the log says so, /metrics counts them, and once the database takes
    writes again the session's lost count does too."""
    db = tmp_path / "full.db"
    # stderr stays a pipe: the size limit applies to regular files only.
    server = LiveServer(
        *("--upstream", upstream.url, "--session", "s", "--db", str(db)),
        command="record",
        pipe_stderr=True,
    )
    stopped = False
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            assert client.post("/v1/chat/completions", json=chat("m", "before")).status_code == 200
            # The main process and Sanic's own helpers write no files: all of them are limited.
            processes = descendants(server.process.pid)
            for process in processes:
                _limit_file_size(process, 1)
            refused = client.post("/v1/chat/completions", json=chat("m", "refused"))
            assert refused.status_code == 503
            assert "could not be recorded" in refused.json()["error"]["message"]
            body = chat("m", "refused-stream", stream=True)
            with client.stream("POST", "/v1/chat/completions", json=body) as response:
                received, error = read_raw(response)
            assert isinstance(error, httpx.RemoteProtocolError)
            assert b"data: [DONE]" not in received
            assert received.count(b"\n\n") == EVENTS
            metrics = client.get("/metrics").text
            assert 'dummy_vllm:recorded_exchanges_total{result="lost"} 2.0' in metrics
            for process in processes:
                _limit_file_size(process, resource.RLIM_INFINITY)
            assert client.post("/v1/chat/completions", json=chat("m", "after")).status_code == 200
        server.stop()
        stopped = True
        log = server.stderr()
    finally:
        if not stopped:
            server.stop()
    assert log.count("NOT RECORDED") == 2
    stored = [x.record.request_body for x in load(db, "s")]
    assert len(stored) == 2
    assert all(b"refused" not in body for body in stored)
    shown = subprocess.run(
        [sys.executable, "cli.py", "sessions", "show", "s", "--db", str(db)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "2 (answered but not stored)" in shown
