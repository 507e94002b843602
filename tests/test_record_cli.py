"""`cli.py record` argument handling and the requests file, through typer's runner (no server)."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

import dummy_vllm.server
from cli import app
from dummy_vllm.recording.batch import RequestsFileError, read_requests
from dummy_vllm.recording.store import SessionDetail, Store
from dummy_vllm.settings import RecordSettings, Settings

from .conftest import free_port
from .test_cli import usage_error

runner = CliRunner()
UPSTREAM = "http://127.0.0.1:9"


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[Settings]:
    calls: list[Settings] = []
    monkeypatch.setattr(dummy_vllm.server, "run_server", calls.append)
    return calls


def session_detail(db: Path, name: str) -> SessionDetail:
    async def read() -> SessionDetail:
        async with await Store.open(db) as store:
            return await store.get_session(name)

    return asyncio.run(read())


def test_flags_become_settings_and_the_session_is_created(
    started: list[Settings], tmp_path: Path
) -> None:
    db = tmp_path / "rec.db"
    result = runner.invoke(
        app,
        [
            *("record", "--upstream", UPSTREAM, "--session", "s1", "--db", str(db)),
            *("--upstream-api-key", "sk-upstream-secret-0123456789abcdef"),
            *("-H", "X-One: 1", "--header", "X-Two: two words"),
            *("--connect-timeout", "3", "--read-timeout", "45", "--note", "first run"),
            *("--port", "9100", "--workers", "2", "--log-level", "warning"),
        ],
    )
    assert result.exit_code == 0, result.output
    (settings,) = started
    assert (settings.port, settings.workers, settings.log_level, settings.db_path) == (
        9100,
        2,
        "warning",
        db,
    )
    assert settings.record == RecordSettings(
        upstream=UPSTREAM,
        session="s1",
        upstream_api_key="sk-upstream-secret-0123456789abcdef",
        extra_headers=(("X-One", "1"), ("X-Two", "two words")),
        connect_timeout=3.0,
        read_timeout=45.0,
        note="first run",
    )
    detail = session_detail(db, "s1")
    assert detail.summary.upstream == UPSTREAM
    assert detail.note == "first run"
    assert detail.options["extra_headers"] == ["X-One", "X-Two"]
    assert detail.options["workers"] == 2
    on_disk = b"".join(path.read_bytes() for path in tmp_path.iterdir())
    assert b"X-Two" in on_disk
    assert b"sk-upstream-secret" not in on_disk


def test_environment_variables_are_read(
    started: list[Settings], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DUMMY_VLLM_UPSTREAM", UPSTREAM)
    monkeypatch.setenv("DUMMY_VLLM_SESSION", "from-env")
    monkeypatch.setenv("DUMMY_VLLM_UPSTREAM_API_KEY", "k")
    monkeypatch.setenv("DUMMY_VLLM_DB", str(tmp_path / "env.db"))
    monkeypatch.setenv("DUMMY_VLLM_PORT", "9101")
    result = runner.invoke(app, ["record"])
    assert result.exit_code == 0, result.output
    (settings,) = started
    assert settings.record is not None
    assert (settings.record.session, settings.record.upstream_api_key, settings.port) == (
        "from-env",
        "k",
        9101,
    )
    assert settings.db_path == tmp_path / "env.db"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--upstream", "ftp://x"], "upstream must be an http(s) URL"),
        (["--connect-timeout", "0"], "timeouts must be > 0"),
        (["--workers", "0"], "workers must be >= 1"),
    ],
)
def test_bad_values_are_refused_with_one_line(
    started: list[Settings], tmp_path: Path, args: list[str], fragment: str
) -> None:
    base = ["record", "--upstream", UPSTREAM, "--session", "s", "--db", str(tmp_path / "x.db")]
    result = runner.invoke(app, [*base, *args])
    assert result.exit_code == 2
    assert not started
    assert result.output.strip().splitlines() == [result.output.strip()]
    assert result.output.startswith("Error: ")
    assert fragment in result.output


def test_a_header_without_a_colon_is_a_usage_error(started: list[Settings], tmp_path: Path) -> None:
    args = ["record", "--upstream", UPSTREAM, "--session", "s", "--db", str(tmp_path / "x.db")]
    result = runner.invoke(app, [*args, "-H", "no colon"])
    assert "'-H': expected 'Name: value', got 'no colon'" in usage_error(result)
    assert not started


def test_a_database_that_is_not_ours_is_one_line(started: list[Settings], tmp_path: Path) -> None:
    db = tmp_path / "other.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (x)")
    result = runner.invoke(
        app, ["record", "--upstream", UPSTREAM, "--session", "s", "--db", str(db)]
    )
    assert result.exit_code == 2
    assert not started
    assert result.output.strip().splitlines() == [
        f"Error: {db}: an SQLite database, but not one of dummy-vllm's"
    ]


def test_missing_upstream_is_a_usage_error(started: list[Settings]) -> None:
    result = runner.invoke(app, ["record", "--session", "s"])
    assert result.exit_code == 2
    assert not started
    assert "--upstream" in result.output


def write_lines(path: Path, *lines: object) -> Path:
    path.write_text(
        "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines)
    )
    return path


def test_requests_file_routes(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "r.jsonl",
        {"model": "m", "messages": []},
        "",
        {"model": "m", "prompt": "p"},
        {"path": "/detokenize", "body": {"model": "m", "tokens": [1]}},
        {"body": {"model": "m", "prompt": "p"}},
    )
    calls = read_requests(path)
    assert [call.path for call in calls] == [
        "/v1/chat/completions",
        "/v1/completions",
        "/detokenize",
        "/v1/completions",
    ]
    assert {call.method for call in calls} == {"POST"}
    assert json.loads(calls[2].body) == {"model": "m", "tokens": [1]}


@pytest.mark.parametrize(
    ("lines", "fragment"),
    [
        (["{nope"], "r.jsonl:1: not JSON"),
        ([{"model": "m", "prompt": "p"}, [1, 2]], "r.jsonl:2: expected a JSON object"),
        ([{"model": "m"}], "r.jsonl:1: neither 'messages' nor 'prompt'"),
        ([{"path": "/v1/models", "body": {}}], "r.jsonl:1: path must be one of"),
        ([{"body": "text"}], "r.jsonl:1: 'body' must be a JSON object"),
        (["", "  "], "r.jsonl: no requests"),
    ],
)
def test_bad_requests_files_are_refused(tmp_path: Path, lines: list[object], fragment: str) -> None:
    with pytest.raises(RequestsFileError, match=fragment):
        read_requests(write_lines(tmp_path / "r.jsonl", *lines))


def test_unreadable_requests_file_exits_before_recording(tmp_path: Path) -> None:
    db = tmp_path / "rec.db"
    missing = tmp_path / "missing.jsonl"
    result = runner.invoke(
        app,
        [
            *("record", "--upstream", UPSTREAM, "--session", "s", "--db", str(db)),
            *("--requests", str(missing)),
        ],
    )
    assert result.exit_code == 2
    assert result.output.startswith(f"Error: {missing}: cannot read:")
    assert not db.exists()


def test_batch_with_nothing_recorded_complete_fails(tmp_path: Path) -> None:
    requests = write_lines(
        tmp_path / "r.jsonl", {"model": "m", "prompt": "p"}, {"model": "m", "prompt": "q"}
    )
    db = tmp_path / "rec.db"
    dead = f"http://127.0.0.1:{free_port()}"
    result = runner.invoke(
        app,
        [
            *("record", "--upstream", dead, "--session", "s", "--db", str(db)),
            *("--requests", str(requests), "--concurrency", "2"),
        ],
    )
    assert result.exit_code == 1
    assert re.search(r"upstream_unreachable\s+2\s*$", result.output, re.M), result.output
    assert result.output.strip().endswith("Error: no request was recorded complete")
    detail = session_detail(db, "s")
    assert detail.outcomes == {"upstream_unreachable": 2}
    assert detail.options["mode"] == "requests"
    assert detail.options["concurrency"] == 2
