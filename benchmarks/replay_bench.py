"""Replay fidelity and load time (issue 5).

1. Load time: a session of 100,000 events (1,000 streamed exchanges of 100 tokens) is written to
   a scratch database, then loaded and indexed the way a worker does at start
   (``load_sessions`` + ``ReplayIndex``). Target: under 1 s.
2. Arrival error: a session recorded with constant timing (TTFT 100 ms, ITL 20 ms) of exactly the
   body ``benchmarks.loadgen`` sends is replayed by ``cli.py serve --replay`` to 64 concurrent
   streams; the load generator's TTFT/ITL errors against 100/20 ms are then the per-event arrival
   errors against the recorded offsets. Target: p99 at most 2 ms.

Run: ``python -m benchmarks.replay_bench``; writes ``benchmarks/REPLAY_RESULTS.md``.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.loadgen import LoadSpec
from benchmarks.procs import free_port
from benchmarks.synthetic_session import exchange_from_plan
from dummy_vllm.engine import Tokenizer
from dummy_vllm.protocol.requests import CHAT_ROUTE, ServedModel
from dummy_vllm.recording.replay import ReplayIndex, load_sessions
from dummy_vllm.recording.store import Store, migrate
from dummy_vllm.settings import LatencySettings, Limits, ReplaySettings, SyntheticSettings
from dummy_vllm.synthetic import SyntheticModel

REPO = Path(__file__).resolve().parent.parent
MODEL = "bench-model"
TTFT_MS, ITL_MS, TOKENS, STREAMS = 100.0, 20.0, 100, 64


def upstream() -> SyntheticModel:
    settings = SyntheticSettings(latency=LatencySettings(ttft=TTFT_MS / 1000, itl=ITL_MS / 1000))
    served = ServedModel(MODEL, MODEL, 4096, Tokenizer(), Limits())
    return SyntheticModel(settings, served, seed=0)


def write_session(db: Path, bodies: list[dict[str, Any]]) -> int:
    model = upstream()
    records = [
        exchange_from_plan(CHAT_ROUTE, b, model.respond(CHAT_ROUTE, b, None)) for b in bodies
    ]
    migrate(db)

    async def write() -> None:
        async with await Store.open(db) as store:
            await store.ensure_session("bench", upstream="synthetic", options={})
            await store.update_session_upstream_info("bench", models=[MODEL], version=None)
            for record in records:
                await store.add_exchange("bench", record)

    asyncio.run(write())
    return sum(len(r.events) for r in records)


def measure_load(scratch: Path) -> dict[str, float]:
    db = scratch / "load.db"
    base = json.loads(
        LoadSpec(stream=True, max_tokens=TOKENS).request_bytes().split(b"\r\n\r\n")[1]
    )
    bodies = [{**base, "seed": i} for i in range(1000)]
    events = write_session(db, bodies)
    replay = ReplaySettings(sessions=("bench",))
    start = time.perf_counter()
    exchanges = asyncio.run(load_sessions(replay.sessions, db))
    loaded = time.perf_counter()
    ReplayIndex(exchanges, replay, seed=0)
    indexed = time.perf_counter()
    return {"events": events, "load_s": loaded - start, "total_s": indexed - start}


def measure_arrival(scratch: Path, duration: float) -> dict[str, Any]:
    db = scratch / "arrival.db"
    port = free_port()
    spec = LoadSpec(port=port, stream=True, max_tokens=TOKENS)
    body = json.loads(spec.request_bytes().split(b"\r\n\r\n")[1])
    write_session(db, [body] * 8)
    server = subprocess.Popen(
        [
            sys.executable,
            "cli.py",
            "serve",
            "--replay",
            "bench",
            "--db",
            str(db),
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(3)
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.loadgen",
                "--port",
                str(port),
                "--stream",
                "--concurrency",
                str(STREAMS),
                "--max-tokens",
                str(TOKENS),
                "--ttft-ms",
                str(TTFT_MS),
                "--itl-ms",
                str(ITL_MS),
                "--duration",
                str(duration),
                "--latency-samples",
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        server.terminate()
        server.wait(timeout=15)
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="replay-bench-") as scratch_dir:
        scratch = Path(scratch_dir)
        load = measure_load(scratch)
        arrival = measure_arrival(scratch, duration=10.0)
    ttft, itl = arrival["ttft"], arrival["itl"]
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Replay benchmark",
        "",
        f"Generated by `python -m benchmarks.replay_bench` on {date}; method in the module "
        "docstring. One replay worker, load generator unpinned, same 2-core box.",
        "",
        "| figure | measured | target | verdict |",
        "|---|---:|---:|---|",
        f"| load + index {load['events']:,} events | {load['total_s']:.2f} s "
        f"(SQLite read {load['load_s']:.2f} s) | < 1 s | "
        f"{'PASS' if load['total_s'] < 1 else 'MISS'} |",
        f"| per-event arrival error p99 (ITL) | {itl['p99_abs_err_ms']:.2f} ms | <= 2 ms | "
        f"{'PASS' if itl['p99_abs_err_ms'] <= 2 else 'MISS'} |",
        f"| first-event arrival error p99 (TTFT) | {ttft['p99_abs_err_ms']:.2f} ms | <= 2 ms | "
        f"{'PASS' if ttft['p99_abs_err_ms'] <= 2 else 'MISS'} |",
        f"| arrival error mean abs (ITL / TTFT) | {itl['mean_abs_err_ms']:.2f} / "
        f"{ttft['mean_abs_err_ms']:.2f} ms | | |",
        f"| token events/s, failures | {arrival['token_events_per_s']:,.0f}, "
        f"{arrival['failures']} | | |",
        "",
    ]
    (Path(__file__).parent / "REPLAY_RESULTS.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
