from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import os
import signal
import sqlite3
import sys
import traceback
from collections.abc import AsyncIterator
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any, TextIO

import pytest

from dummy_vllm.recording.store import (
    MIGRATIONS,
    SCHEMA_VERSION,
    ExchangeRecord,
    Outcome,
    Percentiles,
    SessionNotFound,
    Store,
    StoreError,
    migrate,
    percentile,
)

from ..conftest import wait_until

DONE = b"data: [DONE]\n\n"


def chunk(i: int, size: int = 0) -> bytes:
    return b'data: {"choices":[{"delta":{"content":"t%d"}}]}%s\n\n' % (i, b" " * size)


def record(
    *,
    events: list[tuple[int, bytes]] | None = None,
    outcome: Outcome = Outcome.COMPLETE,
    path: str = "/v1/chat/completions",
    **overrides: Any,
) -> ExchangeRecord:
    fields: dict[str, Any] = {
        "method": "POST",
        "path": path,
        "request_body": b'{"model":"llama","stream":true}',
        "match_key": f"{path} k",
        "relaxed_key": f"{path} r",
        "request_headers": {"content-type": "application/json"},
        "status": 200,
        "response_headers": {"content-type": "text/event-stream"},
        "streamed": True,
        "outcome": outcome,
        "created": 1_700_000_000.5,
        "first_byte_ns": 5_000_000,
        "complete_ns": 9_000_000,
        "prompt_tokens": 7,
        "completion_tokens": 3,
        "events": events if events is not None else [(5_000_000, chunk(0)), (9_000_000, DONE)],
    }
    fields.update(overrides)
    return ExchangeRecord(**fields)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "recordings" / "test.db"
    migrate(path)
    return path


@pytest.fixture
async def store(db: Path) -> AsyncIterator[Store]:
    async with await Store.open(db) as opened:
        await opened.ensure_session("s", upstream="http://gpu:8000", options={"mode": "record"})
        yield opened


def query(path: Path, sql: str, *params: Any) -> list[Any]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


# Migrations


def test_migrate_creates_the_latest_schema_and_parent_directory(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "new.db"

    assert migrate(path) == SCHEMA_VERSION == len(MIGRATIONS)
    assert query(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert query(path, "PRAGMA journal_mode") == [("wal",)]
    tables = {name for (name,) in query(path, "SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"sessions", "exchanges", "events"}


async def test_migrate_again_is_a_no_op(db: Path) -> None:
    async with await Store.open(db) as store:
        await store.ensure_session("kept", upstream=None, options={})
    schema = query(db, "SELECT sql FROM sqlite_master ORDER BY name")

    assert migrate(db) == SCHEMA_VERSION

    assert query(db, "SELECT sql FROM sqlite_master ORDER BY name") == schema
    assert query(db, "SELECT name FROM sessions") == [("kept",)]


def test_migrate_refuses_a_newer_schema(db: Path) -> None:
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()

    with pytest.raises(StoreError) as excinfo:
        migrate(db)

    assert str(excinfo.value) == (
        f"{db}: database schema version {SCHEMA_VERSION + 1} is newer than this dummy-vllm "
        f"supports ({SCHEMA_VERSION})"
    )


def test_migrate_refuses_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(os.urandom(8192))

    with pytest.raises(StoreError) as excinfo:
        migrate(path)

    assert "\n" not in str(excinfo.value)
    assert "not a database" in str(excinfo.value)


def test_migrate_refuses_another_programs_database(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (body TEXT)")
    conn.commit()
    conn.close()

    with pytest.raises(StoreError, match="not one of dummy-vllm's"):
        migrate(path)
    assert query(path, "SELECT name FROM sqlite_master") == [("notes",)]


def test_migrate_reports_an_unusable_path(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")

    with pytest.raises(StoreError, match="cannot open database"):
        migrate(blocker / "db.sqlite")


async def test_open_refuses_missing_and_unmigrated_databases(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot open database"):
        await Store.open(tmp_path / "missing.db")
    assert not (tmp_path / "missing.db").exists()

    sqlite3.connect(tmp_path / "empty.db").close()
    with pytest.raises(StoreError, match="schema version 0"):
        await Store.open(tmp_path / "empty.db")


# Sessions


async def test_ensure_session_is_get_or_create(store: Store) -> None:
    first = await store.ensure_session("s", upstream="http://elsewhere", options={"x": 1})
    other = await store.ensure_session("t", upstream=None, options={}, note="second")

    assert first == await store.ensure_session("s", upstream=None, options={})
    assert other != first
    detail = await store.get_session("s")
    # The session keeps what it was created with.
    assert detail.summary.upstream == "http://gpu:8000"
    assert detail.options == {"mode": "record"}
    assert (await store.get_session("t")).note == "second"


async def test_session_names_must_not_be_empty(store: Store) -> None:
    with pytest.raises(StoreError, match="must not be empty"):
        await store.ensure_session(" ", upstream=None, options={})
    with pytest.raises(StoreError, match="must not be empty"):
        await store.rename_session("s", "")


async def test_upstream_info_is_filled_in_later(store: Store) -> None:
    assert (await store.get_session("s")).summary.models is None

    await store.update_session_upstream_info("s", models=["llama", "lora"], version=None)
    await store.update_session_upstream_info("s", models=None, version="0.11.0")

    summary = (await store.get_session("s")).summary
    assert summary.models == ("llama", "lora")
    assert summary.version == "0.11.0"
    with pytest.raises(SessionNotFound):
        await store.update_session_upstream_info("nope", models=[], version="1")


async def test_rename_moves_the_exchanges(store: Store) -> None:
    await store.add_exchange("s", record())
    await store.ensure_session("taken", upstream=None, options={})

    await store.rename_session("s", "renamed")

    assert [e.session for e in await store.load_exchanges(["renamed"])] == ["renamed"]
    with pytest.raises(SessionNotFound):
        await store.get_session("s")
    with pytest.raises(StoreError, match="'taken' already exists"):
        await store.rename_session("renamed", "taken")
    with pytest.raises(SessionNotFound):
        await store.rename_session("s", "other")


async def test_delete_cascades_to_exchanges_and_events(store: Store, db: Path) -> None:
    await store.ensure_session("other", upstream=None, options={})
    await store.add_exchange("s", record())
    kept = await store.add_exchange("other", record())

    await store.delete_session("s")

    assert [s.name for s in await store.list_sessions()] == ["other"]
    assert query(db, "SELECT id FROM exchanges") == [(kept,)]
    assert query(db, "SELECT DISTINCT exchange_id FROM events") == [(kept,)]
    with pytest.raises(SessionNotFound):
        await store.delete_session("s")


# Exchanges


async def test_exchange_round_trips_byte_exact(store: Store) -> None:
    # Every byte value, a non-UTF-8 event and a CRLF-framed one.
    events = [
        (0, bytes(range(256))),
        (1, b"data: \xff\xfe\n\n"),
        (2_000_000_123, b"data: x\r\n\r\n"),
        (2_000_000_124, DONE),
    ]
    streamed = record(events=events, request_body=b"\x00{}\xff")
    plain = record(
        events=[],
        streamed=False,
        response_body=b'{"id":"cmpl-1"}',
        status=400,
        outcome=Outcome.UPSTREAM_ERROR,
        prompt_tokens=None,
        completion_tokens=None,
        first_byte_ns=None,
    )
    unreachable = record(events=[], status=None, outcome=Outcome.UPSTREAM_UNREACHABLE)

    ids = [await store.add_exchange("s", r) for r in (streamed, plain, unreachable)]
    loaded = await store.load_exchanges(["s"])

    assert [e.id for e in loaded] == ids
    assert [e.seq for e in loaded] == [1, 2, 3]
    assert [e.record for e in loaded] == [streamed, plain, unreachable]
    assert loaded[0].record.events == tuple(events)


async def test_load_orders_by_requested_session_then_seq(store: Store) -> None:
    await store.ensure_session("b", upstream=None, options={})
    for name in ("s", "b", "s", "b"):
        await store.add_exchange(name, record(path=f"/{name}"))

    loaded = await store.load_exchanges(["b", "s", "b"])

    assert [(e.session, e.seq, e.record.path) for e in loaded] == [
        ("b", 1, "/b"),
        ("b", 2, "/b"),
        ("s", 1, "/s"),
        ("s", 2, "/s"),
    ]
    with pytest.raises(SessionNotFound, match="'missing'"):
        await store.load_exchanges(["s", "missing"])


async def test_add_to_unknown_session_fails_and_writes_nothing(store: Store, db: Path) -> None:
    with pytest.raises(SessionNotFound):
        await store.add_exchange("missing", record())

    assert query(db, "SELECT COUNT(*) FROM exchanges") == [(0,)]
    # The failed transaction was rolled back: the connection writes again.
    assert await store.add_exchange("s", record()) > 0


async def test_concurrent_tasks_on_one_store_get_distinct_seqs(store: Store) -> None:
    ids = await asyncio.gather(*(store.add_exchange("s", record()) for _ in range(50)))

    loaded = await store.load_exchanges(["s"])
    assert sorted(e.id for e in loaded) == sorted(ids)
    assert [e.seq for e in loaded] == list(range(1, 51))


async def test_cancelled_caller_still_stores_its_exchange(db: Path) -> None:
    store = await Store.open(db)
    await store.ensure_session("s", upstream=None, options={})
    big = record(events=[(i, chunk(i, 200)) for i in range(5_000)])

    task = asyncio.create_task(store.add_exchange("s", big))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await store.close()

    assert query(db, "SELECT COUNT(*) FROM events") == [(5_000,)]


# Statistics


def test_percentile_interpolates_between_ranks() -> None:
    values = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]

    assert percentile(values, 50) == 5.5
    assert percentile(values, 99) == pytest.approx(9.91)
    assert percentile(values, 100) == 10.0
    assert percentile([4.0], 99) == 4.0


async def test_summary_counts_tokens_and_latencies(store: Store) -> None:
    ms = 1_000_000
    # TTFTs 10 and 30 ms; gaps 2, 4 and 6 ms. [DONE] 100 ms later must not count as a gap.
    await store.add_exchange(
        "s",
        record(events=[(10 * ms, chunk(0)), (12 * ms, chunk(1)), (112 * ms, DONE)]),
    )
    await store.add_exchange(
        "s",
        record(
            events=[(30 * ms, chunk(0)), (34 * ms, chunk(1)), (40 * ms, chunk(2))],
            outcome=Outcome.CLIENT_ABORTED,
            prompt_tokens=5,
            completion_tokens=None,
        ),
    )
    await store.add_exchange(
        "s", record(events=[], streamed=False, outcome=Outcome.UPSTREAM_ERROR, complete_ns=None)
    )
    await store.ensure_session("empty", upstream=None, options={})

    summaries = await store.list_sessions()

    assert [s.name for s in summaries] == ["s", "empty"]
    summary = summaries[0]
    assert (summary.exchanges, summary.complete, summary.failed) == (3, 1, 2)
    assert (summary.prompt_tokens, summary.completion_tokens) == (19, 6)
    assert summary.ttft == Percentiles(p50=20.0, p99=10 + 20 * 0.99)
    assert summary.itl == Percentiles(p50=4.0, p99=4 + 2 * 0.98)
    empty = summaries[1]
    assert (empty.exchanges, empty.ttft, empty.itl) == (0, None, None)
    assert (await store.get_session("s")).summary == summary


async def test_session_detail_has_distributions_and_breakdowns(store: Store) -> None:
    await store.add_exchange("s", record(events=[(3, chunk(0)), (5, chunk(1)), (9, DONE)]))
    await store.add_exchange("s", record(path="/v1/completions", complete_ns=4_000_000))
    await store.add_exchange("s", record(outcome=Outcome.UPSTREAM_DROPPED, complete_ns=None))

    detail = await store.get_session("s")

    assert detail.outcomes == {"complete": 2, "upstream_dropped": 1}
    assert detail.routes == {"POST /v1/chat/completions": 2, "POST /v1/completions": 1}
    assert detail.duration_ms == (4.0, 9.0)
    assert detail.ttft_ms == (3e-6, 5.0, 5.0)
    assert detail.itl_ms == (2e-6,)
    with pytest.raises(SessionNotFound):
        await store.get_session("nope")


# Durability and concurrency


def write_exchanges(path: str, worker: int, count: int, barrier: Barrier) -> None:
    """Child process: many exchanges into one shared session, released together."""

    async def run() -> None:
        async with await Store.open(Path(path)) as store:
            await store.ensure_session("shared", upstream=None, options={})
            barrier.wait(timeout=30)
            for n in range(count):
                events = [(i, b"data: %d/%d/%d\n\n" % (worker, n, i)) for i in range(20)]
                await store.add_exchange("shared", record(events=events))

    try:
        asyncio.run(run())
    except BaseException:
        traceback.print_exc()
        sys.exit(1)


def test_two_processes_write_at_once(db: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    workers = [
        ctx.Process(target=write_exchanges, args=(str(db), worker, 300, barrier))
        for worker in (0, 1)
    ]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=30)
    for process in workers:
        process.kill()  # a no-op unless it hung: it must not outlive the test
        process.join(timeout=10)

    # A "database is locked" in either child makes it exit 1; a hung one was killed (-9).
    assert [process.exitcode for process in workers] == [0, 0]
    assert query(db, "SELECT COUNT(*) FROM sessions") == [(1,)]
    seqs = [seq for (seq,) in query(db, "SELECT seq FROM exchanges ORDER BY seq")]
    assert seqs == list(range(1, 601))
    assert query(db, "SELECT COUNT(*), COUNT(DISTINCT raw) FROM events") == [(12_000, 12_000)]
    per_exchange = query(db, "SELECT COUNT(*) FROM events GROUP BY exchange_id")
    assert per_exchange == [(20,)] * 600


EVENTS_PER_KILLED_EXCHANGE = 200


def write_until_killed(path: str, progress: str) -> None:
    """Child process: write exchanges forever, appending each committed id to ``progress``."""

    async def run(out: TextIO) -> None:
        async with await Store.open(Path(path)) as store:
            await store.ensure_session("killed", upstream=None, options={})
            for n in itertools.count():
                events = [
                    (i, b"data: %d/%d %s\n\n" % (n, i, b"x" * 300))
                    for i in range(EVENTS_PER_KILLED_EXCHANGE)
                ]
                exchange_id = await store.add_exchange("killed", record(events=events))
                out.write(f"{exchange_id} {n}\n")
                out.flush()

    with open(progress, "a") as out:
        asyncio.run(run(out))


def test_sigkill_mid_recording_leaves_every_committed_exchange(db: Path, tmp_path: Path) -> None:
    progress = tmp_path / "progress.txt"
    progress.touch()
    ctx = multiprocessing.get_context("spawn")
    child = ctx.Process(target=write_until_killed, args=(str(db), str(progress)))
    child.start()

    def progressed() -> bool:
        assert child.is_alive(), "writer died"
        return progress.read_text().count("\n") >= 100

    try:
        wait_until(progressed, "the writer to commit 100 exchanges", timeout=60)
    finally:
        child.kill()
        child.join(timeout=10)

    assert child.exitcode == -signal.SIGKILL
    assert query(db, "PRAGMA integrity_check") == [("ok",)]
    assert query(db, "PRAGMA foreign_key_check") == []
    finished = [line.split() for line in progress.read_text().splitlines()]
    for exchange_id, n in finished:
        raws = query(db, "SELECT raw FROM events WHERE exchange_id = ? ORDER BY idx", exchange_id)
        assert len(raws) == EVENTS_PER_KILLED_EXCHANGE, exchange_id
        assert raws[-1][0].startswith(
            b"data: %s/%d " % (n.encode(), EVENTS_PER_KILLED_EXCHANGE - 1)
        )
    # Only whole exchanges exist, including one committed after the last progress line, if any.
    assert query(db, "SELECT DISTINCT COUNT(*) FROM events GROUP BY exchange_id") == [
        (EVENTS_PER_KILLED_EXCHANGE,)
    ]


async def test_load_100k_events(store: Store) -> None:
    for n in range(1_000):
        events = [(i * 20_000_000, chunk(n * 100 + i, 150)) for i in range(100)]
        await store.add_exchange("s", record(events=events))

    # How fast is benchmarks.replay_bench's to measure, on an idle machine; here, only that it
    # all comes back.
    loaded = await store.load_exchanges(["s"])
    assert sum(len(e.record.events) for e in loaded) == 100_000
    assert loaded[-1].record.events[-1] == (99 * 20_000_000, chunk(99_999, 150))
