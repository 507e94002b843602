"""`cli.py record` against a live synthetic upstream: bytes, timing, SDK use, concurrency, kill -9
and the batch mode. Every request carries a unique marker so its exchange can be found."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from dummy_vllm.protocol.profiles import DEFAULT_PROFILE
from dummy_vllm.recording.store import Outcome, SessionDetail, Store, StoredExchange

from ..conftest import REPO, LiveServer, wait_until
from ..shapes import assert_due
from .recorded import exchange_for, load

MODEL = "up-model"
TTFT_MS = 80
ITL_MS = 20
DONE = b"data: [DONE]\n\n"


@pytest.fixture(scope="module")
def upstream() -> Iterator[LiveServer]:
    server = LiveServer(
        "--model", MODEL, "--ttft-delay", str(TTFT_MS), "--token-delay", str(ITL_MS)
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("record") / "rec.db"


@pytest.fixture(scope="module")
def recorder(upstream: LiveServer, db: Path) -> Iterator[LiveServer]:
    # Two workers: every test here also records from two processes into one database.
    server = LiveServer(
        *("--upstream", upstream.url, "--session", "live", "--db", str(db), "--workers", "2"),
        command="record",
    )
    yield server
    server.stop()


def by_prompt(exchanges: list[StoredExchange]) -> dict[str, StoredExchange]:
    return {json.loads(x.record.request_body or b"{}").get("prompt"): x for x in exchanges}


def split_events(data: bytes) -> list[bytes]:
    return [event + b"\n\n" for event in data.split(b"\n\n")[:-1]]


def chat(marker: str, **fields: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": marker}], **fields}


def test_streamed_events_reach_the_client_and_the_store_byte_for_byte(
    recorder: LiveServer, db: Path
) -> None:
    marker = f"bytes-{uuid.uuid4()}"
    body = {"model": MODEL, "prompt": marker, "max_tokens": 8, "stream": True}
    with httpx.stream("POST", f"{recorder.url}/v1/completions", json=body, timeout=30) as r:
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/event-stream; charset=utf-8"
        received = b"".join(r.iter_raw())
    record = exchange_for(db, marker, "live").record
    assert [data for _, data in record.events] == split_events(received)
    assert received.endswith(DONE)
    assert (record.outcome, record.status, record.streamed) == (Outcome.COMPLETE, 200, True)
    assert record.response_body is None
    assert record.request_headers["content-type"] == "application/json"
    # Offsets are the upstream's timing, seen from the recorder's handler (which starts its clock
    # before the upstream starts its own, so they are never early).
    offsets_ms = [ns / 1e6 for ns, data in record.events if data != DONE]
    assert len(offsets_ms) == 8
    for k, offset_ms in enumerate(offsets_ms):
        assert_due(offset_ms / 1000, (TTFT_MS + k * ITL_MS) / 1000, f"recorded offset {k}")
    gaps = [b - a for a, b in itertools.pairwise(offsets_ms)]
    assert abs(statistics.median(gaps) - ITL_MS) <= 10, gaps
    assert record.first_byte_ns is not None
    assert record.complete_ns is not None
    assert record.first_byte_ns < record.events[0][0] <= record.complete_ns


def test_openai_sdk_stream_with_usage(recorder: LiveServer, db: Path) -> None:
    marker = f"sdk-{uuid.uuid4()}"
    client = openai.OpenAI(base_url=f"{recorder.url}/v1", api_key="client-key", max_retries=0)
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": marker}],
            max_tokens=5,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    record = exchange_for(db, marker, "live").record
    stored = [json.loads(data[6:]) for _, data in record.events if data != DONE]
    assert [chunk.id for chunk in chunks] == [event["id"] for event in stored]
    assert [c.choices[0].delta.content for c in chunks if c.choices] == [
        e["choices"][0]["delta"]["content"] for e in stored if e["choices"]
    ]
    usage = chunks[-1].usage
    assert usage is not None
    assert (record.prompt_tokens, record.completion_tokens) == (
        usage.prompt_tokens,
        usage.completion_tokens,
    )
    assert record.request_headers["x-stainless-lang"] == "python"
    assert "authorization" not in record.request_headers


def test_n_greater_than_one_is_teed_verbatim(recorder: LiveServer, db: Path) -> None:
    marker = f"n2-{uuid.uuid4()}"
    body = chat(marker, max_tokens=4, n=2, stream=True)
    with httpx.stream("POST", f"{recorder.url}/v1/chat/completions", json=body, timeout=30) as r:
        received = b"".join(r.iter_raw())
    record = exchange_for(db, marker, "live").record
    assert [data for _, data in record.events] == split_events(received)
    indexes = {json.loads(data[6:])["choices"][0]["index"] for _, data in record.events[:-1]}
    assert indexes == {0, 1}


def test_non_streaming_body_and_timing_are_stored(recorder: LiveServer, db: Path) -> None:
    marker = f"plain-{uuid.uuid4()}"
    response = httpx.post(
        f"{recorder.url}/v1/chat/completions", json=chat(marker, max_tokens=3), timeout=30
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    record = exchange_for(db, marker, "live").record
    assert record.response_body == response.content
    assert (record.outcome, record.streamed, record.events) == (Outcome.COMPLETE, False, ())
    usage = response.json()["usage"]
    assert (record.prompt_tokens, record.completion_tokens) == (
        usage["prompt_tokens"],
        usage["completion_tokens"],
    )
    # The upstream answers when its last token is due: TTFT + 2 gaps.
    assert record.complete_ns is not None
    assert_due(record.complete_ns / 1e9, (TTFT_MS + 2 * ITL_MS) / 1000, "the recorded answer")


def test_get_routes_are_forwarded_and_recorded(recorder: LiveServer, db: Path) -> None:
    before = len(load(db, "live"))
    models = httpx.get(f"{recorder.url}/v1/models", timeout=10)
    version = httpx.get(f"{recorder.url}/version", timeout=10)
    assert [item["id"] for item in models.json()["data"]] == [MODEL]
    assert version.json() == {"version": DEFAULT_PROFILE.version}
    recorded = {x.record.path: x.record for x in load(db, "live")[before:]}
    assert recorded["/v1/models"].response_body == models.content
    assert recorded["/version"].response_body == version.content


def test_upstream_error_is_passed_through_and_recorded(recorder: LiveServer, db: Path) -> None:
    marker = f"unknown-{uuid.uuid4()}"
    body = {"model": "no-such-model", "prompt": marker, "stream": True}
    response = httpx.post(f"{recorder.url}/v1/completions", json=body, timeout=10)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["type"] == "NotFoundError"
    record = exchange_for(db, marker, "live").record
    assert (record.outcome, record.status) == (Outcome.UPSTREAM_ERROR, 404)
    assert record.response_body == response.content
    assert not record.streamed


def test_session_describes_the_upstream(
    upstream: LiveServer, recorder: LiveServer, db: Path
) -> None:
    async def read() -> SessionDetail:
        async with await Store.open(db) as store:
            return await store.get_session("live")

    # Each worker asks the upstream in the background once it serves.
    wait_until(lambda: asyncio.run(read()).summary.version, "the upstream's version to be stored")
    detail = asyncio.run(read())
    assert detail.summary.upstream == upstream.url
    assert detail.summary.models == (MODEL,)
    assert detail.summary.version == DEFAULT_PROFILE.version
    assert detail.options["mode"] == "proxy"
    assert detail.options["workers"] == 2


async def stream_all(url: str, bodies: list[dict[str, Any]]) -> list[bytes]:
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=None)) as client:

        async def one(body: dict[str, Any]) -> bytes:
            async with client.stream("POST", url, json=body) as response:
                assert response.status_code == 200
                return b"".join([chunk async for chunk in response.aiter_raw()])

        return await asyncio.gather(*(one(body) for body in bodies))


def test_many_concurrent_streams_from_two_workers_are_all_stored(
    recorder: LiveServer, db: Path
) -> None:
    run = uuid.uuid4()
    bodies = [
        {"model": MODEL, "prompt": f"many-{run}-{i}.", "max_tokens": 3, "stream": True}
        for i in range(48)
    ]
    received = asyncio.run(stream_all(f"{recorder.url}/v1/completions", bodies))
    stored = {
        prompt: x.record
        for prompt, x in by_prompt(load(db, "live")).items()
        if prompt and str(run) in prompt
    }
    assert len(stored) == len(bodies)
    for body, data in zip(bodies, received, strict=True):
        record = stored[body["prompt"]]
        assert record.outcome is Outcome.COMPLETE
        assert [event for _, event in record.events] == split_events(data)


def test_kill_9_leaves_a_sound_database_with_every_completed_exchange(
    upstream: LiveServer, tmp_path: Path
) -> None:
    db = tmp_path / "killed.db"
    server = LiveServer(
        *("--upstream", upstream.url, "--session", "k", "--db", str(db), "--workers", "2"),
        command="record",
    )
    run = uuid.uuid4()
    # Short streams complete before the kill, long ones (up to ~1 s) are cut by it.
    bodies = [
        {"model": MODEL, "prompt": f"kill-{run}-{i}.", "max_tokens": 2 + 2 * i, "stream": True}
        for i in range(20)
    ]
    completed: dict[str, bytes] = {}

    async def main() -> None:
        enough = asyncio.Event()
        async with httpx.AsyncClient(timeout=30) as client:

            async def one(body: dict[str, Any]) -> None:
                async with client.stream(
                    "POST", f"{server.url}/v1/completions", json=body
                ) as response:
                    data = b"".join([chunk async for chunk in response.aiter_raw()])
                completed[body["prompt"]] = data
                if len(completed) == 4:
                    enough.set()

            tasks = [asyncio.ensure_future(one(body)) for body in bodies]
            try:
                await asyncio.wait_for(enough.wait(), timeout=20)
            except TimeoutError:
                pytest.fail(f"only {len(completed)} of 4 short streams completed in 20 s")
            os.killpg(server.process.pid, signal.SIGKILL)
            await asyncio.gather(*tasks, return_exceptions=True)

    try:
        asyncio.run(main())
    finally:
        server.stop()
    assert 4 <= len(completed) < len(bodies)
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    stored = by_prompt(load(db, "k"))
    for prompt, data in completed.items():
        assert [event for _, event in stored[prompt].record.events] == split_events(data)
        assert stored[prompt].record.outcome is Outcome.COMPLETE


def test_batch_mode_records_a_requests_file(upstream: LiveServer, tmp_path: Path) -> None:
    db = tmp_path / "batch.db"
    lines = [
        chat("batch chat", max_tokens=3, stream=True),
        {"model": MODEL, "prompt": "batch completion", "max_tokens": 3},
        {"path": "/v1/completions", "body": {"model": MODEL, "prompt": "wrapped", "n": 2}},
        {"body": chat("only a body", max_tokens=2)},
        {"path": "/tokenize", "body": {"model": MODEL, "prompt": "count me"}},
        {"model": "no-such-model", "prompt": "fails upstream"},
    ]
    requests = tmp_path / "requests.jsonl"
    requests.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    result = subprocess.run(
        [
            *(sys.executable, "cli.py", "record", "--upstream", upstream.url),
            *("--session", "b", "--db", str(db), "--requests", str(requests)),
            *("--concurrency", "4"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for outcome, count in (("complete", 5), ("upstream_error", 1), ("client_aborted", 0)):
        assert re.search(rf"^\s*{outcome}\s+{count}\s*$", result.stdout, re.M), result.stdout
    assert re.search(r"TTFT ms p50/p99\s+\d+\.\d/\d+\.\d", result.stdout), result.stdout
    routes = sorted(x.record.path for x in load(db, "b"))
    assert routes == sorted(["/v1/chat/completions"] * 2 + ["/v1/completions"] * 3 + ["/tokenize"])
    streamed = [x.record for x in load(db, "b") if x.record.streamed]
    assert len(streamed) == 1
    assert streamed[0].events[-1][1] == DONE


def test_the_rest_of_the_surface_is_forwarded(recorder: LiveServer, db: Path) -> None:
    marker = uuid.uuid4().hex
    embedded = httpx.post(
        f"{recorder.url}/v1/embeddings", json={"model": MODEL, "input": [marker, "b"]}
    )
    assert embedded.status_code == 200
    assert exchange_for(db, marker, "live").record.response_body == embedded.content
    # Routes with an id travel as they came; the upstream's own 404 comes back.
    fetched = httpx.get(f"{recorder.url}/v1/responses/resp_{marker}")
    assert fetched.status_code == 404
    assert fetched.json()["error"]["message"] == f"Response with id 'resp_{marker}' not found."
    cancelled = httpx.post(f"{recorder.url}/v1/responses/resp_{marker}/cancel")
    assert cancelled.status_code == 404
    paths = {x.record.path for x in load(db, "live")}
    assert {f"/v1/responses/resp_{marker}", f"/v1/responses/resp_{marker}/cancel"} <= paths
