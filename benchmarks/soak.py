"""Soak: minutes of mixed valid, invalid and aborted traffic against every mode at once, watching
memory, statuses, /health and the servers' logs.

    python -m benchmarks.soak --duration 600          # or: make soak

Four servers run side by side: a synthetic one (also the upstream), a recorder in front of it,
a second synthetic one, and a replay of what the recorder stored before the traffic began
(misses answered synthetically). Concurrent clients send each of them valid completions and
chats (streamed or not), bodies that must be refused, and streams they abandon after the first
event. Every ``--sample`` seconds the resident memory of each server's process tree is taken,
and every 250 ms a process of its own times each server's /health. The report (``--out``,
markdown, and the raw JSON beside it) gives memory from the end of the warm-up to the end (the
target: flat within 10 %), statuses by mode, /health percentiles and the error lines of each
log. The exit code is 1 when any answer was a 5xx or any log shows an alarming line.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import multiprocessing
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from .procs import ServerProc, free_port, process_tree, tree_usage

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
MODEL = "soak-model"
PROMPTS = [f"Soak prompt number {i}: tell me about item {i}." for i in range(40)]
# What a log must not show while traffic is merely bad: a failed handler, a lost recording.
LOG_ALARMS = ("Traceback", "unhandled error", "NOT RECORDED", "Exception in", "ERROR")
# Memory may grow this much from the end of the warm-up to the end.
RSS_TOLERANCE = 0.10


def invalid_bodies() -> list[tuple[bytes, str]]:
    """Bodies (and content types) every mode must refuse with a 4xx."""
    deep = b'{"messages":' + b"[" * 3000 + b"]" * 3000 + b"}"
    return [
        (b'{"messages": "hi"}', "application/json"),
        (b'{"messages": [{"role": "user", "content": "\\ud800"}], "n": "x"}', "application/json"),
        (b'{"prompt": "x", "max_tokens": ' + b"9" * 5000 + b"}", "application/json"),
        (b'{"prompt": "x", "stop": {"a": 1}, "logit_bias": []}', "application/json"),
        (b'{"prompt": ', "application/json"),
        (b"\xff\xfe\x00garbage", "application/json"),
        (deep, "application/json"),
        (b'{"prompt": "x"}', "text/plain"),
        (b'{"model": "\\ud800", "prompt": "x"}', "application/json"),
        (b'{"prompt": "x", "n": 128, "max_tokens": 100000}', "application/json"),
    ]


@dataclass
class Target:
    name: str
    server: ServerProc
    statuses: Counter[str] = field(default_factory=Counter)
    rss: list[tuple[float, int]] = field(default_factory=list)
    health_ms: list[float] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server.port}"


def _start(name: str, args: list[str], logs: Path) -> ServerProc:
    port = free_port()
    command = [sys.executable, "cli.py", *args, "--host", HOST, "--port", str(port)]
    server = ServerProc(command, host=HOST, port=port, log_path=logs / f"{name}.log", cwd=REPO)
    server.wait_healthy()
    return server


def _body(rng: random.Random, stream: bool) -> tuple[str, dict[str, Any]]:
    prompt = rng.choice(PROMPTS)
    fields: dict[str, Any] = {"model": MODEL, "max_tokens": rng.randint(4, 48), "stream": stream}
    if rng.random() < 0.5:
        return "/v1/completions", {"prompt": prompt, **fields}
    return "/v1/chat/completions", {"messages": [{"role": "user", "content": prompt}], **fields}


async def _one(client: httpx.AsyncClient, target: Target, rng: random.Random) -> None:
    kind = rng.choices(["valid", "stream", "invalid", "aborted"], [4, 3, 2, 1])[0]
    try:
        if kind == "invalid":
            raw, content_type = rng.choice(invalid_bodies())
            path = rng.choice(["/v1/completions", "/v1/chat/completions"])
            response = await client.post(
                f"{target.url}{path}", content=raw, headers={"content-type": content_type}
            )
            target.statuses[f"invalid {response.status_code}"] += 1
            return
        path, body = _body(rng, kind != "valid")
        if kind == "valid":
            response = await client.post(f"{target.url}{path}", json=body)
            target.statuses[f"valid {response.status_code}"] += 1
            return
        async with client.stream("POST", f"{target.url}{path}", json=body) as response:
            async for data in response.aiter_raw():
                if kind == "aborted" and data:
                    target.statuses[f"aborted {response.status_code}"] += 1
                    return
            target.statuses[f"stream {response.status_code}"] += 1
    except httpx.HTTPError as exc:
        target.statuses[f"{kind} {type(exc).__name__}"] += 1


async def _traffic(targets: list[Target], duration: float, concurrency: int, seed: int) -> None:
    deadline = time.monotonic() + duration
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=concurrency * 2)

    async def client_loop(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:
            while time.monotonic() < deadline:
                await _one(client, rng.choice(targets), rng)

    await asyncio.gather(*(client_loop(i) for i in range(concurrency)))


def _sample(targets: list[Target], started: float, stop: threading.Event, every: float) -> None:
    while not stop.wait(every):
        for target in targets:
            rss, _ = tree_usage(process_tree(target.server.pid))
            target.rss.append((time.monotonic() - started, rss))


def _probe(ports: list[int], every: float, stop: Any, out: Any) -> None:
    """/health latencies, in a process of its own: the load generator's GIL must not be
    measured as the servers' latency."""
    latencies: dict[int, list[float]] = {port: [] for port in ports}
    while not stop.wait(every):
        for port in ports:
            connection = http.client.HTTPConnection(HOST, port, timeout=5)
            begun = time.perf_counter()
            try:
                connection.request("GET", "/health")
                ok = connection.getresponse().status == 200
            except OSError:
                ok = False
            finally:
                connection.close()
            latencies[port].append((time.perf_counter() - begun) * 1000 if ok else float("inf"))
    out.put(latencies)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] if ordered else 0.0


def _log_alarms(server: ServerProc) -> list[str]:
    text = server.log_path.read_text(errors="replace")
    return [line for line in text.splitlines() if any(alarm in line for alarm in LOG_ALARMS)]


def _seed_recordings(recorder: str) -> None:
    """Record every prompt once (streamed and not) so that replay has sessions to serve."""
    requests = [
        (path, {"model": MODEL, "max_tokens": 16, "stream": stream, **body})
        for prompt in PROMPTS
        for stream in (False, True)
        for path, body in (
            ("/v1/completions", {"prompt": prompt}),
            ("/v1/chat/completions", {"messages": [{"role": "user", "content": prompt}]}),
        )
    ]

    async def send_all() -> None:
        gate = asyncio.Semaphore(16)
        async with httpx.AsyncClient(timeout=60) as client:

            async def send(path: str, body: dict[str, Any]) -> None:
                async with gate:
                    (await client.post(f"{recorder}{path}", json=body)).raise_for_status()

            await asyncio.gather(*(send(path, body) for path, body in requests))

    asyncio.run(send_all())


def run(duration: float, concurrency: int, every: float, seed: int) -> dict[str, Any]:
    logs = Path(tempfile.mkdtemp(prefix="dummy-vllm-soak-"))
    db = logs / "soak.db"
    common = ["--model", MODEL, "--db", str(db), "--log-level", "warning"]
    latency = ["--ttft-delay", "20", "--token-delay", "3"]
    servers: list[ServerProc] = []
    try:
        upstream = _start("upstream", ["serve", *common, *latency], logs)
        servers.append(upstream)
        recorder_args = ["record", "--upstream", f"http://{HOST}:{upstream.port}"]
        recorder_args += ["--session", "soak", "--db", str(db), "--log-level", "warning"]
        recorder = _start("recorder", recorder_args, logs)
        servers.append(recorder)
        _seed_recordings(f"http://{HOST}:{recorder.port}")
        synthetic = _start("synthetic", ["serve", *common, *latency], logs)
        servers.append(synthetic)
        replay_args = ["serve", "--replay", "soak", "--on-miss", "synthetic", *common]
        replay = _start("replay", replay_args, logs)
        servers.append(replay)
        targets = [
            Target("synthetic", synthetic),
            Target("record", recorder),
            Target("replay", replay),
        ]
        started = time.monotonic()
        stop = threading.Event()
        sampler = threading.Thread(target=_sample, args=(targets, started, stop, every))
        sampler.start()
        probe_stop = multiprocessing.Event()
        probed: multiprocessing.Queue[Any] = multiprocessing.Queue()
        ports = [target.server.port for target in targets]
        prober = multiprocessing.Process(target=_probe, args=(ports, 0.25, probe_stop, probed))
        prober.start()
        try:
            asyncio.run(_traffic(targets, duration, concurrency, seed))
        finally:
            stop.set()
            probe_stop.set()
            sampler.join()
            latencies = probed.get(timeout=30)
            prober.join()
        for target in targets:
            target.health_ms = latencies[target.server.port]
    finally:
        for server in reversed(servers):
            server.stop()
    return _results(targets, [*servers], duration, logs)


def _results(
    targets: list[Target], servers: list[ServerProc], duration: float, logs: Path
) -> dict[str, Any]:
    warm = duration * 0.2
    modes = {}
    for target in targets:
        after_warmup = [rss for t, rss in target.rss if t >= warm] or [0]
        baseline, last = after_warmup[0], after_warmup[-1]
        modes[target.name] = {
            "statuses": dict(sorted(target.statuses.items())),
            "rss_mb": [round(rss / 2**20, 1) for _, rss in target.rss],
            "rss_after_warmup_mb": round(baseline / 2**20, 1),
            "rss_end_mb": round(last / 2**20, 1),
            "rss_max_mb": round(max(after_warmup) / 2**20, 1),
            "rss_growth": round(last / baseline - 1, 4) if baseline else None,
            "health_ms": {
                "p50": round(_percentile(target.health_ms, 50), 2),
                "p99": round(_percentile(target.health_ms, 99), 2),
                "max": round(max(target.health_ms, default=0.0), 2),
            },
            "server_errors": sum(
                count for key, count in target.statuses.items() if key.split()[-1].startswith("5")
            ),
        }
    alarms = {server.log_path.stem: _log_alarms(server) for server in servers}
    return {
        "duration_s": duration,
        "modes": modes,
        "log_alarms": {name: lines[:20] for name, lines in alarms.items()},
        "log_alarm_counts": {name: len(lines) for name, lines in alarms.items()},
        "logs": str(logs),
    }


def report(results: dict[str, Any]) -> str:
    lines = [
        f"# Soak: {results['duration_s']:.0f} s of mixed traffic",
        "",
        "| mode | RSS after warm-up MB | end MB | max MB | growth | /health p50/p99/max ms | 5xx |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, mode in results["modes"].items():
        health = mode["health_ms"]
        growth = mode["rss_growth"]
        flag = "" if growth is not None and growth <= RSS_TOLERANCE else " (over 10 %)"
        lines.append(
            f"| {name} | {mode['rss_after_warmup_mb']} | {mode['rss_end_mb']} | "
            f"{mode['rss_max_mb']} | {growth:+.1%}{flag} | "
            f"{health['p50']}/{health['p99']}/{health['max']} | {mode['server_errors']} |"
        )
    lines += ["", "Statuses by mode (kind and status, or the client's error):", ""]
    for name, mode in results["modes"].items():
        shown = ", ".join(f"{key}: {count}" for key, count in mode["statuses"].items())
        lines.append(f"- {name}: {shown}")
    lines += ["", "Alarming log lines by server:", ""]
    for name, count in results["log_alarm_counts"].items():
        lines.append(f"- {name}: {count}")
        lines += [f"  - `{line[:160]}`" for line in results["log_alarms"][name][:5]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of traffic")
    parser.add_argument("--concurrency", type=int, default=8, help="clients at once")
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="markdown report (raw JSON beside it)")
    args = parser.parse_args(argv)
    results = run(args.duration, args.concurrency, args.sample, args.seed)
    text = report(results)
    if args.out is not None:
        args.out.write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    print(text)
    failed = any(mode["server_errors"] for mode in results["modes"].values()) or any(
        results["log_alarm_counts"].values()
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
