from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from dummy_vllm.commands.sessions import histogram, sessions_app
from dummy_vllm.recording.store import (
    SCHEMA_VERSION,
    ExchangeRecord,
    Outcome,
    Store,
    migrate,
)

MS = 1_000_000


def exchange(
    ttft_ms: int, gaps_ms: list[int], outcome: Outcome = Outcome.COMPLETE
) -> ExchangeRecord:
    offsets = [ttft_ms * MS]
    for gap in gaps_ms:
        offsets.append(offsets[-1] + gap * MS)
    return ExchangeRecord(
        method="POST",
        path="/v1/chat/completions",
        request_body=b"{}",
        match_key="k",
        relaxed_key="r",
        request_headers={},
        status=200,
        response_headers={},
        streamed=True,
        outcome=outcome,
        created=1_700_000_000.0,
        complete_ns=offsets[-1],
        prompt_tokens=10,
        completion_tokens=len(offsets),
        events=[(offset, b"data: {}\n\n") for offset in offsets],
    )


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "cli.db"
    migrate(path)

    async def fill() -> None:
        async with await Store.open(path) as store:
            await store.ensure_session(
                "bench-a", upstream="http://gpu:8000", options={"model": "llama"}, note="baseline"
            )
            await store.update_session_upstream_info(
                "bench-a", models=["meta-llama/Llama-3.1-8B"], version="0.11.0"
            )
            for n in range(20):
                await store.add_exchange("bench-a", exchange(100 + n, [5, 5, 6, 250]))
            await store.add_exchange("bench-a", exchange(900, [], Outcome.CLIENT_ABORTED))
            await store.ensure_session("bench-b", upstream=None, options={})

    asyncio.run(fill())
    return path


def run(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(sessions_app, list(args), input=input, env=env)


def assert_one_line_error(result: Result, message: str) -> None:
    assert result.exit_code == 2
    assert result.stderr == f"Error: {message}\n"
    assert "Traceback" not in result.output


def session_names(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [name for (name,) in conn.execute("SELECT name FROM sessions ORDER BY name")]
    finally:
        conn.close()


def test_list_shows_every_session_with_its_numbers(db: Path) -> None:
    result = run("list", "--db", str(db))

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    row_a = next(line for line in lines if "bench-a" in line)
    assert row_a.split() == [
        "bench-a",
        "http://gpu:8000",
        "meta-llama/Llama-3.1-8B",
        "0.11.0",
        *row_a.split()[4:6],  # created, local time
        "21",
        "20/1",
        "210/101",
        # 21 TTFTs 100..119 and 900 ms; 80 gaps: 40 of 5, 20 of 6, 20 of 250 ms.
        "110/744",
        "5.50/250",
    ]
    row_b = next(line for line in lines if "bench-b" in line)
    assert row_b.split()[-5:] == ["0", "0/0", "0/0", "-", "-"]


def test_list_reads_the_database_path_from_the_environment(db: Path) -> None:
    result = run("list", env={"DUMMY_VLLM_DB": str(db)})

    assert result.exit_code == 0, result.output
    assert "bench-a" in result.stdout


def test_list_of_an_empty_database(tmp_path: Path) -> None:
    migrate(tmp_path / "empty.db")

    result = run("list", "--db", str(tmp_path / "empty.db"))

    assert result.exit_code == 0
    assert result.stdout == f"No sessions in {tmp_path / 'empty.db'}.\n"


def test_show_prints_details_and_histograms(db: Path) -> None:
    result = run("show", "bench-a", "--db", str(db))

    assert result.exit_code == 0, result.output
    out = result.stdout
    for expected in (
        "http://gpu:8000",
        "meta-llama/Llama-3.1-8B",
        "0.11.0",
        "baseline",
        '{"model": "llama"}',
        "21 (20 complete, 1 failed)",
        "complete 20, client_aborted 1",
        "POST /v1/chat/completions 21",
        "210 prompt, 101 completion",
        "TTFT (ms), 21 samples:",
        "ITL (ms), 80 samples:",
        "Request duration (ms), 21 samples:",
    ):
        assert expected in out, expected
    assert "█" in out


def test_show_unknown_session_is_a_one_line_error(db: Path) -> None:
    assert_one_line_error(run("show", "nope", "--db", str(db)), "no session named 'nope'")


def test_delete_asks_first(db: Path) -> None:
    declined = run("delete", "bench-a", "--db", str(db), input="n\n")

    assert declined.exit_code == 1
    assert "Delete session 'bench-a' and its 21 exchanges?" in declined.output
    assert session_names(db) == ["bench-a", "bench-b"]

    accepted = run("delete", "bench-a", "--db", str(db), input="y\n")

    assert accepted.exit_code == 0, accepted.output
    assert session_names(db) == ["bench-b"]


def test_delete_with_yes_does_not_ask(db: Path) -> None:
    result = run("delete", "bench-b", "--yes", "--db", str(db))

    assert result.exit_code == 0, result.output
    assert result.stdout == "Deleted session 'bench-b'.\n"
    assert session_names(db) == ["bench-a"]
    assert_one_line_error(
        run("delete", "bench-b", "--yes", "--db", str(db)), "no session named 'bench-b'"
    )


def test_rename(db: Path) -> None:
    result = run("rename", "bench-b", "bench-c", "--db", str(db))

    assert result.exit_code == 0, result.output
    assert session_names(db) == ["bench-a", "bench-c"]
    assert_one_line_error(
        run("rename", "bench-a", "bench-c", "--db", str(db)),
        "a session named 'bench-c' already exists",
    )


def test_missing_database_is_an_error_and_not_created(tmp_path: Path) -> None:
    path = tmp_path / "missing.db"

    assert_one_line_error(run("list", "--db", str(path)), f"{path}: no such database")
    assert not path.exists()


def test_corrupt_database_is_a_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(b"not a database at all, just some text " * 200)

    assert_one_line_error(run("show", "x", "--db", str(path)), f"{path}: file is not a database")


def test_newer_schema_is_a_one_line_error(db: Path) -> None:
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 7}")
    conn.close()

    assert_one_line_error(
        run("list", "--db", str(db)),
        f"{db}: database schema version {SCHEMA_VERSION + 7} is newer than this "
        f"dummy-vllm supports ({SCHEMA_VERSION})",
    )


def test_histogram_bins_up_to_p99_and_counts_the_rest() -> None:
    values = sorted([1.0] * 50 + [2.0] * 25 + [10.0] * 24 + [1000.0])

    lines = histogram(values)

    counts = [int(line.rsplit(" ", 1)[1]) for line in lines]
    # Ten bins from 1 to p99 (~19.9): 1 and 2 share the first; 1000 is above p99.
    assert counts == [75, 0, 0, 0, 24, 0, 0, 0, 0, 0, 1]
    assert lines[-1].split()[:2] == [">", "19.9"]
    assert "█" * 40 in lines[0]
    # 24/75 of 40 cells is 12.8: twelve full blocks and a 6/8 block.
    assert "█" * 12 + "▊ " in lines[4]
    # A single sample still shows.
    assert "▌" in lines[-1]
    assert all(set(line) & set("█▏▎▍▌▋▊▉") == set() for line in lines[1:4])


def test_histogram_of_identical_values_is_one_full_bin() -> None:
    lines = histogram([3.0, 3.0, 3.0])

    assert len(lines) == 1
    assert lines[0].split()[-1] == "3"
    assert "█" * 40 in lines[0]


def test_histogram_keeps_a_rare_bin_visible() -> None:
    lines = histogram(sorted([1.0] * 1000 + [2.0]))

    assert [line.split()[-1] for line in lines] == ["1000", "1"]
    assert "▏" in lines[-1]
