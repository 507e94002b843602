"""The store's durability and refusal paths: group commits, lost exchanges counted, schema
upgrades, and files that are not (or no longer) dummy-vllm databases left untouched and refused
in one line."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dummy_vllm.recording import store as store_module
from dummy_vllm.recording.store import MIGRATIONS, SCHEMA_VERSION, Store, StoreError, migrate

from ..conftest import REPO
from .test_store import query, record


@pytest.fixture
async def store(tmp_path: Path) -> Any:
    path = tmp_path / "d.db"
    migrate(path)
    async with await Store.open(path) as opened:
        await opened.ensure_session("s", upstream=None, options={})
        yield opened


async def test_concurrent_exchanges_share_commits(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches: list[int] = []
    insert = Store._insert_batch

    async def counted(self: Store, batch: Any) -> list[int]:
        batches.append(len(batch))
        return await insert(self, batch)

    monkeypatch.setattr(Store, "_insert_batch", counted)
    ids = await asyncio.gather(*(store.add_exchange("s", record()) for _ in range(32)))
    assert len(set(ids)) == 32
    assert sum(batches) == 32
    # The first exchange commits alone; the 31 that arrived meanwhile wait for one more commit.
    assert len(batches) < 32
    loaded = await store.load_exchanges(["s"])
    assert [x.seq for x in loaded] == list(range(1, 33))


async def test_a_failed_commit_fails_every_exchange_in_it_and_lost_ones_are_counted_later(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def disk_full(*args: Any) -> int:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(store_module, "_write_exchange", disk_full)
    results = await asyncio.gather(
        *(store.add_exchange("s", record()) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(result, sqlite3.OperationalError) for result in results)
    store.count_lost("s")
    store.count_lost("s")
    # The counts wait for a commit that succeeds: this one fails and keeps them.
    with pytest.raises(sqlite3.OperationalError):
        await store.add_exchange("s", record())
    (summary,) = await store.list_sessions()
    assert summary.lost == 0
    monkeypatch.undo()
    await store.add_exchange("s", record())
    (summary,) = await store.list_sessions()
    assert (summary.exchanges, summary.lost) == (1, 2)


async def test_lost_counts_left_at_close_are_written_then(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    migrate(path)
    async with await Store.open(path) as opened:
        await opened.ensure_session("s", upstream=None, options={})
        opened.count_lost("s")
    assert query(path, "SELECT lost FROM sessions") == [(1,)]


def test_a_version_1_database_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    conn = sqlite3.connect(path)
    for statement in MIGRATIONS[0]:
        conn.execute(statement)
    conn.execute(f"PRAGMA application_id = {store_module.APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO sessions (name, created, options) VALUES ('old', 1.0, '{}')")
    conn.commit()
    conn.close()
    assert migrate(path) == SCHEMA_VERSION
    assert query(path, "SELECT name, lost FROM sessions") == [("old", 0)]


def test_a_foreign_database_is_refused_without_being_changed(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (body TEXT)")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match="not one of dummy-vllm's"):
        migrate(path)
    # Byte for byte: not even switched to WAL (which rewrites the header).
    assert path.read_bytes() == before
    assert not Path(f"{path}-wal").exists()


async def test_open_refuses_a_database_missing_a_table(tmp_path: Path) -> None:
    path = tmp_path / "damaged.db"
    migrate(path)
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE events")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="damaged database: no table events"):
        migrate(path)
    with pytest.raises(StoreError, match="damaged database: no table events"):
        await Store.open(path)


@pytest.mark.parametrize("damage", ["drop-table", "garbage", "foreign"])
@pytest.mark.parametrize("command", [["sessions", "list"], ["serve", "--replay", "s"]])
def test_commands_refuse_a_damaged_database_in_one_line(
    tmp_path: Path, damage: str, command: list[str]
) -> None:
    path = tmp_path / f"{damage}.db"
    if damage == "garbage":
        path.write_bytes(b"not a database " * 1000)
    elif damage == "foreign":
        sqlite3.connect(path).execute("CREATE TABLE t (x)").connection.commit()
    else:
        migrate(path)
        conn = sqlite3.connect(path)
        conn.execute("DROP TABLE exchanges")
        conn.commit()
        conn.close()
    result = subprocess.run(
        [sys.executable, "cli.py", *command, "--db", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("Error: ")
    assert "Traceback" not in result.stderr
