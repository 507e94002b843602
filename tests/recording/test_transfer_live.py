"""Record from a live upstream, export, import elsewhere (or serve the file itself), replay:
the same bytes at the same offsets."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
from typer.testing import CliRunner

from dummy_vllm.commands.sessions import sessions_app
from dummy_vllm.protocol.requests import CHAT_ROUTE, COMPLETIONS_ROUTE
from dummy_vllm.recording.store import ExchangeRecord

from ..conftest import REPO, LiveServer
from ..shapes import assert_on_recorded_offsets, timed_stream
from .test_record_replay_roundtrip import CHAT, COMPLETION, record_chat_and_completion


def assert_replays(server: LiveServer, chat: ExchangeRecord, completion: ExchangeRecord) -> None:
    stream = timed_stream(server.url, CHAT_ROUTE, CHAT)
    with httpx.Client(timeout=30) as client:
        body = client.post(f"{server.url}{COMPLETIONS_ROUTE}", json=COMPLETION)
        models = client.get(f"{server.url}/v1/models").json()
    assert stream.headers["x-dummy-vllm-replay"] == "exact"
    assert_on_recorded_offsets(stream.events, chat.events)
    assert body.content == completion.response_body
    # The recorded model is served, as for a database session.
    assert [model["id"] for model in models["data"]] == ["m"]


def test_export_import_replay_and_replay_file_serve_the_recorded_bytes(
    start_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    source = tmp_path / "source.db"
    chat, completion = record_chat_and_completion(start_server, source)
    exported = tmp_path / "rt.jsonl"
    runner = CliRunner()
    result = runner.invoke(sessions_app, ["export", "rt", "-o", str(exported), "--db", str(source)])
    assert result.exit_code == 0, result.output
    imported = tmp_path / "imported.db"
    result = runner.invoke(sessions_app, ["import", str(exported), "--db", str(imported)])
    assert result.exit_code == 0, result.output

    assert_replays(start_server("--replay", "rt", "--db", str(imported)), chat, completion)

    # No database at all: the default --db must not even be created.
    nowhere = tmp_path / "nowhere" / "never.db"
    served = start_server("--replay-file", str(exported), env={"DUMMY_VLLM_DB": str(nowhere)})
    assert_replays(served, chat, completion)
    assert not nowhere.parent.exists()


def test_a_bad_replay_file_stops_the_server_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"dummy_vllm_session": 1}\n')
    started = subprocess.run(
        [sys.executable, "cli.py", "serve", "--replay-file", str(bad)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode == 2
    assert started.stderr == f"Error: {bad}: line 1: missing 'name'\n"
