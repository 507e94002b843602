"""What metrics cost: S1 and S3 with metrics on and with ``--disable-metrics``.

``python -m benchmarks.metrics_overhead [--rounds 3] [--workers 1]`` runs each scenario for both
variants in alternating rounds (on, off, on, off, ...), so drift of the machine hits both alike,
and reports the median of each figure. Servers and the load generator are pinned as in
``benchmarks.run``, whose ``run_target`` does each run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.loadgen import raise_nofile
from benchmarks.run import SCENARIOS, Options, Scenario, _get, machine_info, run_target

VARIANTS = {
    "metrics on": f"{sys.executable} cli.py serve",
    "metrics off": f"{sys.executable} cli.py serve --disable-metrics",
}
# (label, path into a run's result) per scenario.
FIGURES: dict[str, list[tuple[str, tuple[str, ...]]]] = {
    "S1": [("requests/s", ("load", "requests_per_s"))],
    "S3": [
        ("token events/s", ("load", "token_events_per_s")),
        ("TTFT error mean abs (ms)", ("load", "ttft", "mean_abs_err_ms")),
        ("ITL error mean abs (ms)", ("load", "itl", "mean_abs_err_ms")),
        ("ITL error p99 abs (ms)", ("load", "itl", "p99_abs_err_ms")),
        ("server CPU (share of one core)", ("server_cpu_share",)),
    ],
}


def _options(
    sc: Scenario, cmd: str, args: argparse.Namespace, cpus: list[int], log_dir: Path
) -> Options:
    pinned = not args.no_pin and len(cpus) >= 2
    return Options(
        scenarios=[sc],
        targets=["server"],
        warmup_s=args.warmup,
        duration_s=args.duration,
        workers=args.workers,
        server_cmd=cmd,
        server_cpu=cpus[0] if pinned else None,
        loadgen_cpu=cpus[1] if pinned else None,
        log_dir=log_dir,
        idle_wait_s=args.idle_wait,
    )


# One round: scenario -> variant -> run_target's result (benchmarks.run's shape).
Round = dict[str, dict[str, Any]]


def measure(args: argparse.Namespace) -> list[Round]:
    raise_nofile(65536)
    cpus = sorted(os.sched_getaffinity(0))
    if not args.no_pin and len(cpus) >= 2:
        os.sched_setaffinity(0, {cpus[1]})
    log_dir = Path(tempfile.mkdtemp(prefix="dummy-vllm-bench-"))
    print(f"server logs in {log_dir}", file=sys.stderr)
    rounds: list[Round] = [{} for _ in range(args.rounds)]
    for key in args.scenarios.split(","):
        sc = SCENARIOS[key.strip().upper()]
        for round_ in rounds:
            round_[sc.key] = {
                variant: run_target(sc, "server", _options(sc, cmd, args, cpus, log_dir))
                for variant, cmd in VARIANTS.items()
            }
    return rounds


def _format(label: str, value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.0f}" if "/s" in label else f"{value:.2f}"


def render(rounds: list[Round], args: argparse.Namespace) -> str:
    m = machine_info()
    out = [
        "# Metrics overhead",
        "",
        f"`python -m benchmarks.metrics_overhead --rounds {args.rounds} --workers {args.workers}"
        f" --duration {args.duration:g}`: medians of {args.rounds} alternating runs per variant;"
        " each run restarts the server. **off** is `cli.py serve --disable-metrics`.",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu_model']}), Python {m['python']},"
        f" Sanic {m['sanic']}, uvloop {m['uvloop']}.",
        "",
        "| scenario | figure | metrics on | metrics off | on / off | every run (on; off) |",
        "|---|---|---:|---:|---:|---|",
    ]
    for key in rounds[0]:
        for label, path in FIGURES[key]:
            values = {
                variant: [v for r in rounds if (v := _get(r, key, variant, *path)) is not None]
                for variant in VARIANTS
            }
            on, off = (statistics.median(values[v]) if values[v] else None for v in VARIANTS)
            ratio = f"{on / off:.3f}" if on is not None and off else "n/a"
            every = "; ".join(", ".join(_format(label, v) for v in values[v]) for v in VARIANTS)
            out.append(
                f"| {key} | {label} | {_format(label, on)} | {_format(label, off)} | {ratio}"
                f" | {every} |"
            )
    return "\n".join(out) + "\n"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.metrics_overhead")
    p.add_argument("--scenarios", default="S1,S3")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=8.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--no-pin", action="store_true")
    p.add_argument(
        "--idle-wait",
        type=float,
        default=60.0,
        help="before each run, wait up to this long for the machine to be idle (0: do not)",
    )
    p.add_argument("--results", type=Path, help="write the markdown table here (default: stdout)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    table = render(measure(args), args)
    if args.results:
        args.results.write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
