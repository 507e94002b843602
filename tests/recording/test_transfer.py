"""sessions export / import: lossless round trips, refusals naming the line, HAR view."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from dummy_vllm.commands.sessions import sessions_app
from dummy_vllm.recording.store import ExchangeRecord, Outcome, SessionRecord, Store, migrate
from dummy_vllm.recording.transfer import FORMAT_VERSION, ExportReader, TransferError

from .test_store import record

# Not UTF-8: such bytes must survive too (written as base64).
BINARY = b"data: \xff\xfe\x00 raw\r\n\n"


def exchanges() -> list[ExchangeRecord]:
    return [
        record(
            events=[(1_000_000, b'data: {"x":"caf\xc3\xa9 \xe2\x80\xa8"}\n\n'), (2_500_000, BINARY)]
        ),
        record(
            streamed=False,
            events=[],
            response_body=b'{"choices":[]}',
            request_body=b"\x80 not json",
            path="/v1/completions",
        ),
        record(
            status=None,
            outcome=Outcome.UPSTREAM_UNREACHABLE,
            events=[],
            first_byte_ns=None,
            complete_ns=None,
            prompt_tokens=None,
            completion_tokens=None,
            response_headers={},
        ),
    ]


def write(db: Path, name: str = "s", records: list[ExchangeRecord] | None = None) -> None:
    migrate(db)

    async def fill() -> None:
        async with await Store.open(db) as store:
            await store.ensure_session(
                name, upstream="http://gpu:8000", options={"k": [1, "v"]}, note="n\u00e9"
            )
            await store.update_session_upstream_info(name, models=["m1", "m2"], version="0.33.1")
            for exchange in exchanges() if records is None else records:
                await store.add_exchange(name, exchange)

    asyncio.run(fill())


def load(db: Path, name: str) -> tuple[SessionRecord, list[ExchangeRecord]]:
    async def read() -> tuple[SessionRecord, list[ExchangeRecord]]:
        async with await Store.open(db) as store:
            session, _, _ = await store.session_record(name)
            return session, [x.record for x in await store.load_exchanges([name])]

    return asyncio.run(read())


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(sessions_app, list(args), env=env)


def assert_refused(result: Result, message: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.stderr == f"Error: {message}\n"


def names(db: Path) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        return [name for (name,) in conn.execute("SELECT name FROM sessions ORDER BY id")]
    finally:
        conn.close()


@pytest.fixture
def exported(tmp_path: Path) -> Path:
    db = tmp_path / "src.db"
    write(db)
    out = tmp_path / "s.jsonl"
    result = run("export", "s", "-o", str(out), "--db", str(db))
    assert result.exit_code == 0, result.output
    assert result.stdout == f"Exported session 's': 3 exchanges to {out}.\n"
    return out


def test_export_then_import_is_lossless(tmp_path: Path, exported: Path) -> None:
    target = tmp_path / "new.db"  # import creates the database
    result = run("import", str(exported), "--session", "copy", "--db", str(target))

    assert result.exit_code == 0, result.output
    assert result.stdout == f"Imported session 'copy': 3 exchanges into {target}.\n"
    original, original_records = load(tmp_path / "src.db", "s")
    copy, copied_records = load(target, "copy")
    assert copied_records == original_records
    assert copied_records[0].events[1] == (2_500_000, BINARY)
    assert copy == SessionRecord(
        "copy",
        original.created,
        original.upstream,
        original.models,
        original.version,
        original.options,
        original.note,
    )


def test_export_format_is_json_lines_with_text_and_base64(exported: Path) -> None:
    lines = exported.read_bytes().splitlines()
    header = json.loads(lines[0])
    assert header["dummy_vllm_session"] == FORMAT_VERSION
    assert (header["name"], header["exchanges"], header["events"]) == ("s", 3, 2)
    assert header["models"] == ["m1", "m2"]
    assert header["vllm_version"] == "0.33.1"
    first = json.loads(lines[1])
    # UTF-8 stays readable; other bytes are base64.
    assert first["events"][0] == [1_000_000, 'data: {"x":"caf\u00e9 \u2028"}\n\n']
    assert first["events"][1] == [2_500_000, {"base64": "ZGF0YTog//4AIHJhdw0KCg=="}]
    assert json.loads(lines[2])["request_body"] == {"base64": "gCBub3QganNvbg=="}
    assert len(lines) == 4


def test_export_to_standard_output(tmp_path: Path, exported: Path) -> None:
    result = run("export", "s", "--db", str(tmp_path / "src.db"))

    assert result.exit_code == 0
    assert result.stdout_bytes == exported.read_bytes()


def test_import_keeps_the_name_in_the_file_and_refuses_an_existing_one(
    tmp_path: Path, exported: Path
) -> None:
    db = tmp_path / "src.db"
    assert_refused(
        run("import", str(exported), "--db", str(db)), "a session named 's' already exists"
    )
    other = tmp_path / "other.db"
    assert run("import", str(exported), "--db", str(other)).exit_code == 0
    assert names(other) == ["s"]


def test_import_append_merges_files_into_one_session(tmp_path: Path, exported: Path) -> None:
    db = tmp_path / "merged.db"
    for _ in range(2):
        result = run("import", str(exported), "--session", "all", "--append", "--db", str(db))
        assert result.exit_code == 0, result.output

    _, merged = load(db, "all")
    _, original = load(tmp_path / "src.db", "s")
    assert merged == original + original


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        # Cut at a line boundary: only the header's count tells.
        (lambda lines: lines[:3], "line 4: the file ends after 2 of 3 exchanges (cut short)"),
        # Cut inside a line.
        (
            lambda lines: [*lines[:2], lines[2][:40]],
            "line 3: not valid JSON (the file is cut short)",
        ),
        (lambda lines: [lines[0]], "line 2: the file ends after 0 of 3 exchanges (cut short)"),
        (lambda lines: [*lines, lines[1]], "line 5: more exchanges than the header's 3"),
        (
            lambda lines: [lines[0], lines[1].replace(b'"outcome":"complete"', b'"outcome":"ok"')],
            "line 2: unknown outcome 'ok'",
        ),
        (
            lambda lines: [lines[0], lines[1].replace(b'"status":200', b'"status":"200"')],
            "line 2: 'status' must be int, got str",
        ),
        (
            lambda lines: [lines[0], lines[1].replace(b'"base64":"', b'"base64":"!')],
            "line 2: event 1: bad base64: Only base64 data is allowed",
        ),
        (
            lambda lines: [lines[0].replace(b'"events":2', b'"events":5'), *lines[1:]],
            "line 4: 2 events, but the header says 5",
        ),
    ],
)
def test_a_bad_file_is_refused_naming_the_line_and_nothing_stays(
    tmp_path: Path, exported: Path, edit: Any, message: str
) -> None:
    bad = tmp_path / "bad.jsonl"
    lines = exported.read_bytes().splitlines(keepends=True)
    bad.write_bytes(b"".join(edit(lines)))
    db = tmp_path / "target.db"
    write(db, "keep", [])

    result = run("import", str(bad), "--db", str(db))

    assert_refused(result, f"{bad}: {message}")
    assert names(db) == ["keep"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "line 1: not a dummy-vllm session export"),
        (b'{"log": {"version": "1.2"}}\n', "line 1: not a dummy-vllm session export"),
        (b"SQLite format 3\x00\xff\xfe", "line 1: not a dummy-vllm session export"),
        (b"[1, 2]\n", "line 1: not a dummy-vllm session export"),
        (
            b'{"dummy_vllm_session": 99, "name": "s"}\n',
            "line 1: export format version 99 is newer than this dummy-vllm reads (1)",
        ),
        (
            b'{"dummy_vllm_session": 1, "name": "s"}\n',
            "line 1: 'created' must be a number, got null",
        ),
    ],
)
def test_a_foreign_file_is_refused_before_the_database_is_touched(
    tmp_path: Path, content: bytes, message: str
) -> None:
    bad = tmp_path / "foreign"
    bad.write_bytes(content)
    db = tmp_path / "never.db"

    assert_refused(run("import", str(bad), "--db", str(db)), f"{bad}: {message}")
    assert not db.exists()


def test_missing_import_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.jsonl"
    assert_refused(
        run("import", str(missing), "--db", str(tmp_path / "x.db")),
        f"{missing}: No such file or directory",
    )


def test_a_failed_export_leaves_no_file(tmp_path: Path) -> None:
    db = tmp_path / "src.db"
    write(db)
    out = tmp_path / "out.jsonl"

    assert_refused(
        run("export", "nope", "-o", str(out), "--db", str(db)), "no session named 'nope'"
    )
    assert list(tmp_path.iterdir()) == [db]


def test_progress_shows_on_a_terminal(tmp_path: Path, exported: Path) -> None:
    result = run(
        "import",
        str(exported),
        "--db",
        str(tmp_path / "p.db"),
        env={"TTY_COMPATIBLE": "1", "COLUMNS": "120"},
    )

    assert result.exit_code == 0, result.output
    assert "Importing s" in result.stderr


def test_reader_streams_records(exported: Path) -> None:
    seen: list[int] = []
    with ExportReader(exported) as reader:
        records = reader.records(seen.append)
        first = next(records)
        assert first.events[1][1] == BINARY
        assert seen == [2]
        assert len(list(records)) == 2
    assert seen == [2, 0, 0]


def test_reader_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_bytes(b"{}\n")
    with pytest.raises(TransferError, match=r"x\.jsonl: line 1: not a dummy-vllm"):
        ExportReader(path)


def test_har_export_is_a_har_1_2_log(tmp_path: Path) -> None:
    db = tmp_path / "src.db"
    write(db)
    out = tmp_path / "s.har"

    result = run("export", "s", "--format", "har", "-o", str(out), "--db", str(db))

    assert result.exit_code == 0, result.output
    log = json.loads(out.read_bytes())["log"]
    assert log["version"] == "1.2"
    assert set(log["creator"]) == {"name", "version"}
    assert "view only" in log["comment"]
    streamed, plain, unreachable = log["entries"]
    # Every field HAR 1.2 requires of an entry, its request and its response.
    for entry in log["entries"]:
        assert {"startedDateTime", "time", "request", "response", "cache", "timings"} <= set(entry)
        assert {
            "method",
            "url",
            "httpVersion",
            "cookies",
            "headers",
            "queryString",
            "headersSize",
            "bodySize",
        } <= set(entry["request"])
        assert {
            "status",
            "statusText",
            "httpVersion",
            "cookies",
            "headers",
            "content",
            "redirectURL",
            "headersSize",
            "bodySize",
        } <= set(entry["response"])
        assert {"send", "wait", "receive"} <= set(entry["timings"])
        assert all(value >= 0 for value in entry["timings"].values())
        assert entry["time"] == pytest.approx(sum(entry["timings"].values()))
    assert streamed["request"]["url"] == "http://gpu:8000/v1/chat/completions"
    assert streamed["startedDateTime"] == "2023-11-14T22:13:20.500000+00:00"
    content = streamed["response"]["content"]
    # The whole stream, base64 because one event is not UTF-8.
    assert content["encoding"] == "base64"
    assert content["mimeType"] == "text/event-stream"
    assert streamed["timings"] == {"send": 0, "wait": 5.0, "receive": 4.0}
    assert plain["response"]["content"]["text"] == '{"choices":[]}'
    assert unreachable["response"]["status"] == 0
    assert unreachable["comment"] == "outcome: upstream_unreachable"


def test_export_help_says_har_is_view_only() -> None:
    result = run("export", "--help", env={"COLUMNS": "200"})
    assert "VIEW ONLY" in result.stdout
    assert "cannot be imported or replayed" in result.stdout
