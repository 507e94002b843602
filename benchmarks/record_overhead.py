"""What recording costs a client: TTFT and inter-token gaps through ``cli.py record`` versus
straight from the same upstream.

``python -m benchmarks.record_overhead [--rounds 5] [--concurrency 64] [--duration 15]`` starts
one synthetic upstream (``cli.py serve``, TTFT 100 ms, ITL 20 ms) and one recorder in front of it
(``cli.py record``, one worker, a scratch database), then drives ``benchmarks.loadgen`` against
each in alternating rounds (direct, recorder, direct, ...), so drift of the machine hits both
alike. Both servers stay up for the whole run: the direct runs see the same upstream, with the
recorder idle. The figures are the medians over rounds; the target is that the recorder adds at
most 1 ms to TTFT and to the inter-token gap at p99.

Two placements, each with fresh servers:

- ``shared``: nothing pinned; upstream, recorder and load generator share the machine's CPUs.
- ``pinned`` (needs 2 CPUs): upstream and load generator on the first CPU in both runs, the
  recorder alone on the second, as on a proxy host of its own. The common path is placed alike
  in both runs, so the difference is the recorder's hop rather than its CPU contention.

Results go to ``benchmarks/RECORD_RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.loadgen import LoadSpec, raise_nofile
from benchmarks.procs import Sampler, ServerProc, free_port
from benchmarks.run import machine_info

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
MODEL = "bench-model"
TTFT_MS = 100.0
ITL_MS = 20.0
TARGET_P99_MS = 1.0
TARGETS = ("direct", "recorder")
# (label, path into a loadgen result) of the figures compared.
FIGURES = (
    ("TTFT p50 (ms)", ("ttft", "p50_ms")),
    ("TTFT p99 (ms)", ("ttft", "p99_ms")),
    ("ITL p50 (ms)", ("itl", "p50_ms")),
    ("ITL p99 (ms)", ("itl", "p99_ms")),
    ("ITL error p99 abs (ms)", ("itl", "p99_abs_err_ms")),
)
TARGET_FIGURES = ("TTFT p99 (ms)", "ITL p99 (ms)")


@dataclass(frozen=True, slots=True)
class Placement:
    name: str
    description: str
    upstream_cpu: int | None = None
    recorder_cpu: int | None = None
    loadgen_cpu: int | None = None


def placements(names: Sequence[str]) -> list[Placement]:
    cpus = sorted(os.sched_getaffinity(0))
    known = {
        "shared": Placement(
            "shared", "nothing pinned: upstream, recorder and load generator share the CPUs"
        ),
        "pinned": Placement(
            "pinned",
            f"upstream and load generator on CPU {cpus[0]}, the recorder alone on CPU {cpus[-1]}",
            upstream_cpu=cpus[0],
            recorder_cpu=cpus[-1],
            loadgen_cpu=cpus[0],
        ),
    }
    if "pinned" in names and len(cpus) < 2:
        raise SystemExit("the pinned placement needs two CPUs")
    return [known[name] for name in names]


def _figure(load: dict[str, Any], path: tuple[str, ...]) -> float:
    node: Any = load
    for key in path:
        node = node[key]
    return float(node)


def run_load(port: int, args: argparse.Namespace, cpu: int | None) -> dict[str, Any]:
    spec = LoadSpec(
        host=HOST,
        port=port,
        model=MODEL,
        stream=True,
        concurrency=args.concurrency,
        max_tokens=args.max_tokens,
        warmup_s=args.warmup,
        duration_s=args.duration,
        ttft_ms=TTFT_MS,
        itl_ms=ITL_MS,
        latency_samples=True,
        cpu=-1 if cpu is None else cpu,
    )
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.loadgen", "--spec", json.dumps(asdict(spec))],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=spec.warmup_s + spec.duration_s + spec.timeout_s() + 60,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"load generator failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    load: dict[str, Any] = json.loads(proc.stdout)
    return load


def measure(placement: Placement, args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    upstream_port, recorder_port = free_port(HOST), free_port(HOST)
    db = scratch / f"record-{placement.name}.db"
    upstream = ServerProc(
        [
            *(sys.executable, "cli.py", "serve", "--host", HOST, "--port", str(upstream_port)),
            *("--model", MODEL, "--ttft-delay", f"{TTFT_MS:g}", "--token-delay", f"{ITL_MS:g}"),
            *("--log-level", "warning"),
        ],
        host=HOST,
        port=upstream_port,
        log_path=scratch / f"upstream-{placement.name}.log",
        cpu=placement.upstream_cpu,
        cwd=ROOT,
    )
    recorder = ServerProc(
        [
            *(sys.executable, "cli.py", "record", "--host", HOST, "--port", str(recorder_port)),
            *("--upstream", f"http://{HOST}:{upstream_port}", "--session", "bench"),
            *("--db", str(db), "--log-level", "warning"),
        ],
        host=HOST,
        port=recorder_port,
        log_path=scratch / f"recorder-{placement.name}.log",
        cpu=placement.recorder_cpu,
        cwd=ROOT,
    )
    runs: dict[str, list[dict[str, Any]]] = {target: [] for target in TARGETS}
    recorder_cpu: list[float] = []
    try:
        upstream.wait_healthy()
        recorder.wait_healthy()
        sampler = Sampler(recorder.pid)
        sampler.start()
        for round_ in range(args.rounds):
            for target, port in zip(TARGETS, (upstream_port, recorder_port), strict=True):
                load = run_load(port, args, placement.loadgen_cpu)
                runs[target].append(load)
                line = ", ".join(f"{label} {_figure(load, path):.2f}" for label, path in FIGURES)
                _say(
                    f"{placement.name} round {round_ + 1} {target}: {line},"
                    f" failures {load['failures']}"
                )
                if target == "recorder":
                    w0, w1 = load["window_monotonic"]
                    recorder_cpu.append(sampler.cpu_between(w0, w1) / (w1 - w0))
        sampler.stop()
    finally:
        recorder.stop()
        upstream.stop()
    with sqlite3.connect(db) as conn:
        outcomes = dict(conn.execute("SELECT outcome, COUNT(*) FROM exchanges GROUP BY 1"))
    return {"runs": runs, "recorder_cpu": recorder_cpu, "outcomes": outcomes}


def render_placement(placement: Placement, result: dict[str, Any]) -> list[str]:
    runs = result["runs"]
    out = [
        f"## Placement `{placement.name}`: {placement.description}",
        "",
        "| figure | direct | recorder | recorder - direct | every run (direct; recorder) |",
        "|---|---:|---:|---:|---|",
    ]
    added: dict[str, float] = {}
    for label, path in FIGURES:
        values = {t: [_figure(load, path) for load in runs[t]] for t in TARGETS}
        direct, recorded = (statistics.median(values[t]) for t in TARGETS)
        added[label] = recorded - direct
        every = "; ".join(", ".join(f"{v:.2f}" for v in values[t]) for t in TARGETS)
        out.append(f"| {label} | {direct:.2f} | {recorded:.2f} | {added[label]:+.2f} | {every} |")
    failures = {t: sum(load["failures"] for load in runs[t]) for t in TARGETS}
    out += [
        "",
        "| target: the recorder adds at most 1 ms at p99 | added | verdict |",
        "|---|---:|---|",
        *(
            f"| {label} | {added[label]:+.2f} ms |"
            f" **{'PASS' if added[label] <= TARGET_P99_MS else 'MISS'}** |"
            for label in TARGET_FIGURES
        ),
        "",
        f"Failed requests: direct {failures['direct']}, recorder {failures['recorder']}."
        f" Recorder CPU: {statistics.median(result['recorder_cpu']):.0%} of one core (median of"
        f" the recorder runs). Exchanges the recorder stored: {result['outcomes']}"
        " (`client_aborted` are the streams the load generator cut at the end of each run).",
        "",
    ]
    return out


def render(
    results: list[tuple[Placement, dict[str, Any]]], args: argparse.Namespace, elapsed_s: float
) -> str:
    m = machine_info()
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        "# Record-mode overhead",
        "",
        f"Generated by `python -m benchmarks.record_overhead --rounds {args.rounds}"
        f" --concurrency {args.concurrency} --max-tokens {args.max_tokens}"
        f" --duration {args.duration:g} --placements {args.placements}` on {now}"
        f" in {elapsed_s:.0f} s.",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['mem_total_gib']} GiB,"
        f" kernel {m['kernel']}, Python {m['python']}, Sanic {m['sanic']},"
        f" uvloop {m['uvloop']}.",
        "",
        f"Upstream: `cli.py serve --ttft-delay {TTFT_MS:g} --token-delay {ITL_MS:g}` (one"
        " worker). **direct**: the load generator talks to it; **recorder**: to `cli.py record"
        " --upstream ...` (one worker) in front of it, which tees and stores every exchange."
        f" {args.concurrency} concurrent streams of {args.max_tokens} tokens, closed loop,"
        f" {args.warmup:g} s warm-up, {args.duration:g} s measured per run, direct and recorder"
        f" runs alternating for {args.rounds} rounds; figures are the client's view"
        " (`benchmarks.loadgen`), medians over the rounds.",
        "",
    ]
    for placement, result in results:
        out += render_placement(placement, result)
    return "\n".join(out)


def _say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.record_overhead")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--duration", type=float, default=15.0)
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--placements", default="shared,pinned", help="comma-separated")
    p.add_argument(
        "--results",
        type=Path,
        default=ROOT / "benchmarks" / "RECORD_RESULTS.md",
        help="where the markdown goes",
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    chosen = placements([name.strip() for name in args.placements.split(",")])
    raise_nofile(65536)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="dummy-vllm-record-bench-") as scratch:
        results = [(p, measure(p, args, Path(scratch))) for p in chosen]
    text = render(results, args, time.monotonic() - started)
    args.results.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
