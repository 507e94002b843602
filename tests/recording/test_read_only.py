"""Replay opens the database read-only: nothing written, foreign files refused untouched, and
a read-only volume served with --db-immutable."""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from dummy_vllm.recording.replay import load_sessions
from dummy_vllm.recording.store import SCHEMA_VERSION, Store, StoreError

from ..conftest import REPO, LiveServer
from .test_replay import CHAT, record
from .test_replay_live import write_session


def session_db(tmp_path: Path) -> Path:
    db = tmp_path / "vol" / "rec.db"
    write_session(db, "s", [record("/v1/chat/completions", {**CHAT, "stream": True})])
    return db


def test_read_only_store_reads_and_never_writes(tmp_path: Path) -> None:
    db = session_db(tmp_path)
    before = db.read_bytes()

    async def use() -> list[str]:
        async with await Store.open_read_only(db) as store:
            with pytest.raises(sqlite3.OperationalError, match="readonly"):
                await store.delete_session("s")
            return [summary.name for summary in await store.list_sessions()]

    assert asyncio.run(use()) == ["s"]
    assert db.read_bytes() == before


def test_a_foreign_database_is_refused_untouched(tmp_path: Path) -> None:
    foreign = tmp_path / "other.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    before = foreign.read_bytes()

    with pytest.raises(StoreError, match="an SQLite database, but not one of dummy-vllm's"):
        asyncio.run(Store.open_read_only(foreign))
    assert foreign.read_bytes() == before


def test_missing_and_other_schema_databases_are_refused(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    with pytest.raises(StoreError, match="no such database"):
        asyncio.run(Store.open_read_only(missing))
    assert not missing.exists()
    db = session_db(tmp_path)
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer than this dummy-vllm supports"):
        asyncio.run(Store.open_read_only(db))


def _unshare_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, check=False)
    return probe.returncode == 0


needs_mount_namespace = pytest.mark.skipif(
    not _unshare_works(), reason="needs `unshare -m` to mount a read-only volume"
)


def read_only_volume(source: Path, target: Path, command: str) -> list[str]:
    """``command`` in a private mount namespace where ``target`` is ``source`` read-only."""
    script = f"mount --bind -o ro {source} {target} && exec {command}"
    return ["unshare", "-m", "sh", "-c", script]


@needs_mount_namespace
def test_a_read_only_volume_needs_immutable(tmp_path: Path) -> None:
    db = session_db(tmp_path)
    mount = tmp_path / "mnt"
    mount.mkdir()
    load = (
        f"{sys.executable} -c 'import asyncio, sys; from pathlib import Path; "
        "from dummy_vllm.recording.replay import load_sessions; "
        f'print(len(asyncio.run(load_sessions(["s"], Path("{mount}/rec.db"), '
        'immutable=sys.argv[1] == "1"))))\' '
    )
    for immutable, expected in (("1", "1\n"), ("0", "")):
        ran = subprocess.run(
            read_only_volume(db.parent, mount, load + immutable),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert ran.stdout == expected, ran.stderr
    assert "a read-only volume needs serve --db-immutable" in ran.stderr
    assert sorted(os.listdir(db.parent)) == ["rec.db"]


@needs_mount_namespace
def test_serve_replays_from_a_read_only_volume(
    start_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    db = session_db(tmp_path)
    mount = tmp_path / "mnt"
    mount.mkdir()
    server = start_server(
        *("--replay", "s", "--db", f"{mount}/rec.db", "--db-immutable", "--instant"),
        launcher=lambda argv: read_only_volume(db.parent, mount, shlex.join(argv)),
    )
    with urllib.request.urlopen(f"{server.url}/v1/models", timeout=10) as response:
        assert b'"id":"m"' in response.read()
    server.stop()  # first: nothing may be written on the way out either
    assert sorted(os.listdir(db.parent)) == ["rec.db"]


def test_load_sessions_without_names_opens_nothing(tmp_path: Path) -> None:
    assert asyncio.run(load_sessions([], tmp_path / "absent.db")) == []
    assert not (tmp_path / "absent.db").exists()
