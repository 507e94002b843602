"""The soak benchmark, for a few seconds: four servers in every mode under mixed traffic, no 5xx,
clean logs, and a report with every mode's memory and /health figures."""

from __future__ import annotations

from pathlib import Path

from benchmarks import soak


def test_a_short_soak_runs_clean(tmp_path: Path) -> None:
    out = tmp_path / "soak.md"
    code = soak.main(["--duration", "8", "--sample", "1", "--concurrency", "4", "--out", str(out)])
    report = out.read_text()
    raw = out.with_suffix(".json").read_text()
    assert code == 0, report
    for mode in ("synthetic", "record", "replay"):
        assert f"| {mode} |" in report
        assert f'"{mode}"' in raw
    assert "invalid 400" in report
    assert "aborted 200" in report
