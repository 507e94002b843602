"""Record from a live synthetic upstream with the real recorder, then replay the session."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx

from dummy_vllm.protocol.requests import CHAT_ROUTE, COMPLETIONS_ROUTE
from dummy_vllm.recording.store import ExchangeRecord, Store, StoredExchange

from ..conftest import REPO, LiveServer
from ..shapes import assert_on_recorded_offsets, timed_stream

CHAT = {
    "model": "m",
    "messages": [{"role": "user", "content": "round trip"}],
    "max_tokens": 10,
    "n": 2,
    "stream": True,
}
COMPLETION = {"model": "m", "prompt": "round trip", "max_tokens": 6}


def stored(db: Path) -> list[StoredExchange]:
    async def load() -> list[StoredExchange]:
        async with await Store.open(db) as store:
            return await store.load_exchanges(["rt"])

    return asyncio.run(load())


def record_session(upstream: LiveServer, db: Path, session: str, requests: Path) -> None:
    """``cli.py record --requests``: every line of ``requests`` sent and recorded."""
    recorded = subprocess.run(
        [
            *(sys.executable, "cli.py", "record", "--upstream", upstream.url),
            *("--session", session, "--db", str(db), "--requests", str(requests)),
            *("--concurrency", "4"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert recorded.returncode == 0, recorded.stderr


def record_chat_and_completion(
    start_server: Callable[..., LiveServer], db: Path
) -> tuple[ExchangeRecord, ExchangeRecord]:
    """Session "rt" of ``CHAT`` and ``COMPLETION`` recorded from a live synthetic upstream."""
    upstream = start_server("--model", "m", "--ttft-delay", "60", "--token-delay", "15")
    requests = db.parent / "requests.jsonl"
    requests.write_text(json.dumps(CHAT) + "\n" + json.dumps(COMPLETION) + "\n")
    record_session(upstream, db, "rt", requests)
    upstream.stop()
    exchanges = {x.record.path: x.record for x in stored(db)}
    return exchanges["/v1/chat/completions"], exchanges["/v1/completions"]


def test_recorded_session_replays_byte_identical_on_recorded_offsets(
    start_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    db = tmp_path / "rt.db"
    chat, completion = record_chat_and_completion(start_server, db)
    assert chat.streamed
    assert len(chat.events) == 2 + 20 + 1

    replay = start_server("--replay", "rt", "--db", str(db))
    events = timed_stream(replay.url, CHAT_ROUTE, CHAT).events
    body = httpx.post(f"{replay.url}{COMPLETIONS_ROUTE}", json=COMPLETION, timeout=30)
    assert_on_recorded_offsets(events, chat.events)
    assert body.content == completion.response_body
    assert body.headers["x-dummy-vllm-replay"] == "exact"


RESPONSES = {"model": "m", "input": "round trip", "max_output_tokens": 6, "stream": True}
EMBEDDINGS = {"model": "m", "input": ["round trip", "another input"]}
MESSAGES = {
    "model": "m",
    "max_tokens": 5,
    "messages": [{"role": "user", "content": "round trip"}],
    "stream": True,
}


def test_named_event_streams_and_embeddings_replay_byte_identical(
    start_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    upstream = start_server(
        "--model", "m", "--vllm-version", "0.17", "--ttft-delay", "60", "--token-delay", "15"
    )
    db = tmp_path / "rt.db"
    requests = tmp_path / "requests.jsonl"
    lines = [
        {"path": "/v1/responses", "body": RESPONSES},
        {"path": "/v1/embeddings", "body": EMBEDDINGS},
        {"path": "/v1/messages", "body": MESSAGES},
    ]
    requests.write_text("".join(json.dumps(line) + "\n" for line in lines))
    record_session(upstream, db, "rt", requests)
    exchanges = {x.record.path: x.record for x in stored(db)}
    responses, embeddings = exchanges["/v1/responses"], exchanges["/v1/embeddings"]
    messages = exchanges["/v1/messages"]
    assert responses.streamed
    assert responses.events[0][1].startswith(b"event: response.created\ndata: ")
    # Usage read from the named events and the embeddings body.
    assert responses.completion_tokens == 6
    assert messages.completion_tokens == 5
    assert embeddings.prompt_tokens == 4
    assert embeddings.completion_tokens == 0

    replay = start_server("--replay", "rt", "--db", str(db))
    streamed = timed_stream(replay.url, "/v1/responses", RESPONSES)
    message_events = timed_stream(replay.url, "/v1/messages", MESSAGES).events
    body = httpx.post(f"{replay.url}/v1/embeddings", json=EMBEDDINGS, timeout=30)
    # Replayed only as recorded: a non-streamed request of a streamed recording misses.
    missed = httpx.post(
        f"{replay.url}/v1/responses", json={**RESPONSES, "stream": False}, timeout=30
    )
    assert streamed.headers["x-dummy-vllm-replay"] == "exact"
    assert_on_recorded_offsets(streamed.events, responses.events)
    assert [raw for _, raw in message_events] == [raw for _, raw in messages.events]
    assert body.content == embeddings.response_body
    assert body.headers["x-dummy-vllm-replay"] == "exact"
    assert missed.status_code == 404
    assert "was recorded streamed" in missed.json()["error"]["message"]
