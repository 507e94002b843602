"""sessions compare: statistics, and two sessions recorded from upstreams of different TTFT."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from dummy_vllm.commands.sessions import sessions_app
from dummy_vllm.recording.compare import (
    METRICS,
    compare_samples,
    kolmogorov_q,
    ks_2samp,
)

from ..conftest import LiveServer
from .test_record_replay_roundtrip import record_session
from .test_transfer import write


@pytest.mark.parametrize(
    ("a", "b", "distance"),
    [
        ([1, 2, 3, 4], [3, 4, 5, 6], 0.5),
        # Ties: both steps at 1 and 2 are taken together.
        ([1, 1, 2], [1, 2, 2], 1 / 3),
        ([1, 2], [3, 4, 5], 1.0),
        ([5, 5, 5], [5, 5], 0.0),
    ],
)
def test_ks_distance_is_the_largest_cdf_gap(
    a: list[float], b: list[float], distance: float
) -> None:
    assert ks_2samp(a, b).statistic == pytest.approx(distance)
    assert ks_2samp(b, a).statistic == pytest.approx(distance)


@pytest.mark.parametrize(
    ("x", "q"),
    # Textbook critical values of the Kolmogorov distribution.
    [(1.2239, 0.10), (1.3581, 0.05), (1.6276, 0.01), (0.0, 1.0), (0.3, 1.0)],
)
def test_kolmogorov_tail(x: float, q: float) -> None:
    assert kolmogorov_q(x) == pytest.approx(q, abs=5e-4)


def test_ks_p_value_separates_alike_and_shifted_samples() -> None:
    base = [float(i % 97) for i in range(400)]
    assert ks_2samp(sorted(base), sorted(base)).pvalue == 1.0
    assert ks_2samp(sorted(base), sorted(v + 30 for v in base)).pvalue < 1e-6


def test_ratios_and_missing_sides() -> None:
    ttft = METRICS[0]
    compared = compare_samples(ttft, [100.0, 200.0], [300.0, 500.0])
    assert compared.ratios()["mean"] == pytest.approx(400 / 150)
    assert compared.ratios()["p50"] == pytest.approx(400 / 150)
    one_sided = compare_samples(ttft, [1.0], [])
    assert one_sided.ks is None
    assert one_sided.ratios() == {"mean": None, "p50": None, "p90": None, "p99": None}
    assert one_sided.to_json()["b"] == {
        "count": 0,
        "mean": None,
        "p50": None,
        "p90": None,
        "p99": None,
    }


def metric(document: dict[str, Any], route: str, name: str) -> dict[str, Any]:
    (entry,) = [r for r in document["routes"] if r["route"] == route]
    (found,) = [m for m in entry["metrics"] if m["metric"] == name]
    return dict(found)


def test_compare_reports_the_ttft_difference_of_two_recorded_upstreams(
    start_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    requests = tmp_path / "requests.jsonl"
    body = {
        "model": "m",
        "max_tokens": 8,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    requests.write_text(
        "".join(
            json.dumps({**body, "messages": [{"role": "user", "content": f"q{i}"}]}) + "\n"
            for i in range(12)
        )
    )
    db = tmp_path / "cmp.db"
    for session, ttft in (("fast", "60"), ("slow", "180")):
        upstream = start_server("--model", "m", "--ttft-delay", ttft, "--token-delay", "10")
        record_session(upstream, db, session, requests)
        upstream.stop()

    result = CliRunner().invoke(
        sessions_app, ["compare", "fast", "slow", "--json", "--db", str(db)]
    )

    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert (document["a"]["name"], document["b"]["name"]) == ("fast", "slow")
    route = "POST /v1/chat/completions"
    ttft = metric(document, route, "ttft_ms")
    assert ttft["a"]["count"] == ttft["b"]["count"] == 12
    # Recorded TTFTs carry a few ms of the proxy's own; the ratio stays near 180/60.
    assert 60 <= ttft["a"]["p50"] < 90
    assert 180 <= ttft["b"]["p50"] < 210
    assert 2.2 < ttft["ratio"]["p50"] <= 3.0
    assert ttft["ks"]["statistic"] == 1.0
    assert ttft["ks"]["pvalue"] < 0.001
    itl = metric(document, route, "itl_ms")
    assert 0.7 < itl["ratio"]["mean"] < 1.4
    length = metric(document, route, "output_tokens")
    assert length["ratio"]["p50"] == 1.0
    assert length["ks"]["statistic"] == 0.0

    text = CliRunner().invoke(
        sessions_app, ["compare", "fast", "slow", "--db", str(db)], env={"COLUMNS": "100"}
    )
    assert text.exit_code == 0, text.output
    assert f"{route}: A fast vs B slow" in text.stdout
    assert "1.000 (p<0.001)" in text.stdout
    assert f"{route} TTFT (ms), CDF to p99" in text.stdout
    assert "A fast" in text.stdout
    assert "B slow" in text.stdout
    bare = CliRunner().invoke(
        sessions_app, ["compare", "fast", "slow", "--no-plots", "--db", str(db)]
    )
    assert "CDF" not in bare.stdout

    show = CliRunner().invoke(sessions_app, ["show", "slow", "--db", str(db)])
    assert show.exit_code == 0, show.output
    assert f"{route} ITL (ms), CDF to p99" in show.stdout


def test_compare_of_an_unknown_session_is_a_one_line_error(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    write(db)
    result = CliRunner().invoke(sessions_app, ["compare", "s", "nope", "--db", str(db)])
    assert result.exit_code == 2
    assert result.stderr == "Error: no session named 'nope'\n"
