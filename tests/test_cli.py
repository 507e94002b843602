"""`cli.py serve` argument handling through typer's runner (no server is started)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

import dummy_vllm.server
from cli import app
from dummy_vllm.protocol.requests import CHAT_ROUTE
from dummy_vllm.settings import DEFAULT_MODEL, FaultType, JitterDistribution, Settings

from .recording.test_replay import CHAT, record
from .recording.test_replay_live import write_session

runner = CliRunner()


def usage_error(result: Result) -> str:
    """The text of a usage error, without the box typer draws around it."""
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    return " ".join(re.sub("[│╭╮╰╯─]", " ", result.output).split())


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[Settings]:
    monkeypatch.setenv("DUMMY_VLLM_DB", str(tmp_path / "cli.db"))
    calls: list[Settings] = []
    monkeypatch.setattr(dummy_vllm.server, "run_server", calls.append)
    return calls


def test_flags_become_settings(started: list[Settings]) -> None:
    result = runner.invoke(
        app,
        [
            "serve",
            "--port",
            "9001",
            "--model",
            "m",
            "--ttft-delay",
            "120",
            "--token-delay",
            "15",
            "--token-delay-jitter",
            "3",
            "--jitter-distribution",
            "lognormal",
            "--workers",
            "2",
            "--max-model-len",
            "1024",
            "--seed",
            "5",
            "--api-key",
            "k",
        ],
    )
    assert result.exit_code == 0, result.output
    (settings,) = started
    assert (settings.port, settings.model, settings.workers) == (9001, "m", 2)
    assert settings.synthetic.latency.ttft == pytest.approx(0.120)
    assert settings.synthetic.latency.itl == pytest.approx(0.015)
    assert settings.synthetic.latency.itl_jitter == pytest.approx(0.003)
    assert settings.synthetic.latency.distribution is JitterDistribution.LOGNORMAL
    assert (settings.max_model_len, settings.seed, settings.api_key) == (1024, 5, "k")


def test_environment_variables_are_read(
    started: list[Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DUMMY_VLLM_PORT", "9002")
    monkeypatch.setenv("DUMMY_VLLM_MODEL", "env-model")
    monkeypatch.setenv("DUMMY_VLLM_TTFT_DELAY", "250")
    monkeypatch.setenv("DUMMY_VLLM_TOKEN_DELAY", "20")
    monkeypatch.setenv("DUMMY_VLLM_TOKEN_DELAY_JITTER", "4")
    monkeypatch.setenv("DUMMY_VLLM_HOST", "0.0.0.0")
    monkeypatch.setenv("DUMMY_VLLM_LOG_LEVEL", "warning")
    result = runner.invoke(app, ["serve"])
    assert result.exit_code == 0, result.output
    (settings,) = started
    assert (settings.port, settings.model, settings.host, settings.log_level) == (
        9002,
        "env-model",
        "0.0.0.0",
        "warning",
    )
    assert settings.synthetic.latency.ttft == pytest.approx(0.25)
    assert settings.synthetic.latency.itl_jitter == pytest.approx(0.004)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--port", "0"], "port must be in 1..65535"),
        (["--workers", "0"], "workers must be >= 1"),
        (["--ttft-delay", "-5"], "ttft must be a finite number >= 0"),
        (["--token-delay", "nan"], "itl must be a finite number >= 0"),
        (["--max-model-len", "1"], "max_model_len must be >= 2"),
        (["--eos-rate", "1.5"], "eos_rate must be in [0, 1)"),
        (["--max-n", "0"], "max_n must be >= 1"),
        (["--enable-auto-tool-choice"], "--enable-auto-tool-choice requires --tool-call-parser"),
        (
            ["--enable-auto-tool-choice", "--tool-call-parser", "nope"],
            "invalid tool call parser: nope (chose from { deepseek_v3,",
        ),
        (["--reasoning-parser", "qwen9"], "invalid reasoning parser: qwen9"),
        (["--tool-call-rate", "1.5"], "tool_call_rate must be in [0, 1]"),
        (["--default-output-tokens", "-1"], "default output mean must be a finite number >= 0"),
    ],
)
def test_bad_values_are_refused_with_one_line(
    started: list[Settings], args: list[str], fragment: str
) -> None:
    result = runner.invoke(app, ["serve", *args])
    assert result.exit_code == 2
    assert not started
    assert result.output.strip().splitlines() == [f"Error: {result.output.strip()[7:]}"]
    assert fragment in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "args", [["--port", "abc"], ["--log-level", "loud"], ["--jitter-distribution", "uniform"]]
)
def test_unparseable_values_are_usage_errors(started: list[Settings], args: list[str]) -> None:
    result = runner.invoke(app, ["serve", *args])
    assert result.exit_code == 2
    assert not started
    assert "Traceback" not in result.output


def test_help_is_grouped() -> None:
    result = runner.invoke(app, ["serve", "--help"])
    assert result.exit_code == 0
    for panel in ("Server", "Model", "Latency (milliseconds)", "Limits"):
        assert panel in result.output


def test_replay_refuses_a_missing_database_without_creating_it(
    started: list[Settings], tmp_path: Path
) -> None:
    db = tmp_path / "missing.db"
    result = runner.invoke(app, ["serve", "--replay", "s", "--db", str(db)])
    assert result.exit_code == 2
    assert not started
    assert result.output == f"Error: {db}: no such database\n"
    assert not db.exists()


@pytest.fixture
def session_db(tmp_path: Path) -> Path:
    """A database with session 's', recorded from an upstream serving model 'm'."""
    db = tmp_path / "replay.db"
    write_session(db, "s", [record(CHAT_ROUTE, CHAT)])
    return db


def test_model_aliases_are_pairs(started: list[Settings], session_db: Path) -> None:
    args = ["serve", "--replay", "s", "--db", str(session_db)]
    result = runner.invoke(app, [*args, "--model-alias", "a=m", "--model-alias", " b = c "])
    assert result.exit_code == 0, result.output
    from_env = runner.invoke(app, args, env={"DUMMY_VLLM_MODEL_ALIAS": "a=m b=c"})
    assert from_env.exit_code == 0, from_env.output
    for settings in started:
        assert settings.replay is not None
        assert settings.replay.model_aliases == (("a", "m"), ("b", "c"))


def test_fault_types_are_a_comma_separated_list(
    started: list[Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert runner.invoke(app, ["serve"]).exit_code == 0
    assert runner.invoke(app, ["serve", "--fault-types", "429, cut,stall,cut"]).exit_code == 0
    monkeypatch.setenv("DUMMY_VLLM_FAULT_TYPES", "500,error-event")
    assert runner.invoke(app, ["serve"]).exit_code == 0
    assert [settings.faults.types for settings in started] == [
        tuple(FaultType),
        (FaultType.RATE_LIMITED, FaultType.CUT, FaultType.STALL),
        (FaultType.INTERNAL_ERROR, FaultType.ERROR_EVENT),
    ]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (
            ["--replay", "s", "--model-alias", "a:m"],
            "Invalid value for '--model-alias' (env var: 'DUMMY_VLLM_MODEL_ALIAS'): "
            "expected REQUESTED=RECORDED, got 'a:m'",
        ),
        (
            ["--fault-types", "429,bogus"],
            "Invalid value for '--fault-types' (env var: 'DUMMY_VLLM_FAULT_TYPES'): "
            "unknown fault type(s) bogus; known: 429, 500",
        ),
    ],
)
def test_bad_option_syntax_is_a_usage_error(
    started: list[Settings], session_db: Path, args: list[str], fragment: str
) -> None:
    result = runner.invoke(app, ["serve", "--db", str(session_db), *args])
    assert fragment in usage_error(result)
    assert not started


@pytest.mark.parametrize(
    ("args", "env", "served"),
    [
        ([], {}, "m"),
        # The default model's name, given: it must win although it equals the default.
        (["--model", DEFAULT_MODEL], {}, DEFAULT_MODEL),
        ([], {"DUMMY_VLLM_MODEL": DEFAULT_MODEL}, DEFAULT_MODEL),
        (["--served-model-name", "other"], {}, "other"),
    ],
)
def test_replay_serves_the_recorded_model_unless_one_is_given(
    started: list[Settings],
    session_db: Path,
    args: list[str],
    env: dict[str, str],
    served: str,
) -> None:
    result = runner.invoke(app, ["serve", "--replay", "s", "--db", str(session_db), *args], env=env)
    assert result.exit_code == 0, result.output
    (settings,) = started
    assert settings.model == served


@pytest.mark.parametrize(
    ("args", "env", "era", "reported"),
    [
        ([], {}, "0.11", "0.11.0"),
        (["--vllm-version", "0.33"], {}, "0.33", "0.33.0"),
        ([], {"DUMMY_VLLM_VLLM_VERSION": "0.20.1"}, "0.20", "0.20.1"),
    ],
)
def test_vllm_version_chooses_the_profile(
    started: list[Settings], args: list[str], env: dict[str, str], era: str, reported: str
) -> None:
    result = runner.invoke(app, ["serve", *args], env=env)
    assert result.exit_code == 0, result.output
    (settings,) = started
    assert (settings.profile.name, settings.reported_version) == (era, reported)


def test_an_unknown_vllm_version_is_refused(started: list[Settings]) -> None:
    result = runner.invoke(app, ["serve", "--vllm-version", "0.7"])
    assert result.exit_code == 2
    assert "predates the oldest emulated era" in result.output
    assert not started


@pytest.mark.parametrize(
    ("recorded", "args", "answered"),
    [
        ("0.23.0", [], "0.23.0"),
        ("0.23.0", ["--vllm-version", "0.11"], "0.11"),
        ("0.11.0", ["--vllm-version", "0.11"], "0.11"),
        # A version no era covers is noted and the default kept.
        ("nightly", [], "0.11"),
    ],
)
def test_replay_answers_as_the_recorded_version_unless_one_is_given(
    started: list[Settings], tmp_path: Path, recorded: str, args: list[str], answered: str
) -> None:
    db = tmp_path / "versioned.db"
    write_session(db, "s", [record(CHAT_ROUTE, CHAT)], version=recorded)
    result = runner.invoke(app, ["serve", "--replay", "s", "--db", str(db), *args])
    assert result.exit_code == 0, result.output
    (settings,) = started
    assert settings.vllm_version == answered
