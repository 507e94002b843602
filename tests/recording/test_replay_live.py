"""Replay through `cli.py serve --replay` over a real socket: timing, SDK use, bad sessions."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import openai
import pytest

from dummy_vllm.protocol.requests import CHAT_ROUTE, COMPLETIONS_ROUTE
from dummy_vllm.recording.store import Store, StoredExchange, migrate

from ..conftest import REPO, LiveServer
from ..shapes import assert_on_recorded_offsets, timed_stream
from .test_replay import CHAT, record


def write_session(
    path: Path, name: str, exchanges: list[StoredExchange], version: str = "0.11.0"
) -> None:
    migrate(path)

    async def write() -> None:
        async with await Store.open(path) as store:
            await store.ensure_session(name, upstream="http://upstream", options={})
            await store.update_session_upstream_info(name, models=["m"], version=version)
            for exchange in exchanges:
                await store.add_exchange(name, exchange.record)

    asyncio.run(write())


@pytest.fixture
def recorded_db(tmp_path: Path) -> tuple[Path, list[StoredExchange]]:
    exchanges = [
        record(CHAT_ROUTE, {**CHAT, "stream": True, "max_tokens": 12}),
        record(COMPLETIONS_ROUTE, {"model": "m", "prompt": "p", "max_tokens": 5, "n": 2}),
    ]
    db = tmp_path / "rec.db"
    write_session(db, "s", exchanges)
    return db, exchanges


def test_replayed_stream_arrives_on_recorded_offsets(
    start_server: Callable[..., LiveServer], recorded_db: tuple[Path, list[StoredExchange]]
) -> None:
    db, exchanges = recorded_db
    server = start_server("--replay", "s", "--db", str(db), "--model", "m")
    body = {**CHAT, "stream": True, "max_tokens": 12}
    expected = exchanges[0].record.events
    stream = timed_stream(server.url, CHAT_ROUTE, body)
    assert stream.headers["x-dummy-vllm-replay"] == "exact"
    assert_on_recorded_offsets(stream.events, expected)


def test_replay_through_the_openai_sdk(
    start_server: Callable[..., LiveServer], recorded_db: tuple[Path, list[StoredExchange]]
) -> None:
    db, exchanges = recorded_db
    server = start_server("--replay", "s", "--db", str(db), "--instant", "--on-miss", "synthetic")
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)
    completion = client.completions.create(model="m", prompt="p", max_tokens=5, n=2)
    # The SDK parses the replayed body into the very completion that was recorded.
    recorded = json.loads(exchanges[1].record.response_body or b"")
    assert completion.model_dump(exclude_unset=True) == recorded
    chunks = list(client.chat.completions.create(stream=True, **{**CHAT, "max_tokens": 12}))
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.role is None) == 12
    unseen = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "never recorded"}], max_tokens=3
    )
    assert unseen.usage is not None
    assert unseen.usage.completion_tokens == 3
    scrape = httpx.get(f"{server.url}/metrics").text
    assert 'dummy_vllm:replay_requests_total{kind="exact"} 2.0' in scrape
    assert 'dummy_vllm:replay_requests_total{kind="miss_synthetic"} 1.0' in scrape


def run_serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "cli.py", "serve", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def bad_db(tmp_path: Path, kind: str) -> Path:
    db = tmp_path / f"{kind}.db"
    if kind == "corrupt":
        db.write_bytes(b"this is not a database" * 100)
    elif kind == "newer":
        migrate(db)
        with sqlite3.connect(db) as conn:
            conn.execute("PRAGMA user_version = 999")
    else:
        write_session(db, "s", [])
    return db


@pytest.mark.parametrize(
    ("kind", "session", "fragment"),
    [
        ("empty", "s", "has no recorded exchanges"),
        ("empty", "missing", "no session named 'missing'"),
        ("newer", "s", "newer"),
        ("corrupt", "s", "file is not a database"),
    ],
)
def test_bad_sessions_are_refused_at_start(
    tmp_path: Path, kind: str, session: str, fragment: str
) -> None:
    result = run_serve("--replay", session, "--db", str(bad_db(tmp_path, kind)))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    assert fragment in lines[0]
    assert "Traceback" not in result.stderr
