"""The resource bombs of issue 15, each against a fresh synthetic server (defaults, 2 workers):
what each answered, the server's peak memory and the slowest /health while it ran.

    python -m benchmarks.bombs [--out benchmarks/BOMBS_RESULTS.md]

Targets: every bomb refused or served with the server under 500 MB, /health under 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import multiprocessing
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx

from .procs import ServerProc, free_port, process_tree, tree_usage
from .soak import HOST, REPO

RSS_TARGET_MB = 500
HEALTH_TARGET_MS = 50


def _probe(port: int, stop: Any, out: Any) -> None:
    latencies = []
    while not stop.wait(0.02):
        connection = http.client.HTTPConnection(HOST, port, timeout=10)
        begun = time.perf_counter()
        try:
            connection.request("GET", "/health")
            connection.getresponse().read()
            latencies.append((time.perf_counter() - begun) * 1000)
        except OSError:
            latencies.append(float("inf"))
        finally:
            connection.close()
    out.put(latencies)


async def _large_logprobs(url: str) -> Counter[str]:
    """The largest non-streamed answer with log-probabilities the limits allow, and one over."""
    bodies = [
        {"prompt": "hi", "n": 128, "max_tokens": 4000, "logprobs": 20},
        {"prompt": "hi", "n": 64, "max_tokens": 4000, "logprobs": 0},
        {"prompt": "hi", "n": 16, "max_tokens": 4000, "logprobs": 3},
    ]
    async with httpx.AsyncClient(timeout=300) as client:
        answers = await asyncio.gather(
            *(client.post(f"{url}/v1/completions", json=b) for b in bodies)
        )
    return Counter(f"{a.status_code} ({len(a.content) / 2**20:.1f} MB)" for a in answers)


async def _unread_streams(url: str) -> Counter[str]:
    """200 streams of n=128 (the most tokens the limits allow) whose clients never read."""
    host, port = url.removeprefix("http://").split(":")
    body = json.dumps({"prompt": "hi", "n": 128, "max_tokens": 2048, "stream": True}).encode()
    request = (
        b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%b" % (len(body), body)
    )
    sockets = []
    for _ in range(200):
        sock = socket.create_connection((host, int(port)))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(request)
        sockets.append(sock)
    await asyncio.sleep(20)
    heads: Counter[str] = Counter()
    for sock in sockets:
        sock.settimeout(1)
        try:
            heads[sock.recv(12).decode(errors="replace")] += 1
        except OSError:
            heads["no answer"] += 1
        sock.close()
    return heads


async def _stop_strings(url: str) -> Counter[str]:
    """400,000 stop strings (5 MB), and 64 (the limit) on a long answer, a few at once."""
    huge = {"prompt": "hi", "max_tokens": 16, "stop": [f"s{i:06d}" for i in range(400_000)]}
    many = {"prompt": "hi", "n": 32, "max_tokens": 4000, "stop": [f"n{i}" for i in range(64)]}
    async with httpx.AsyncClient(timeout=300) as client:
        answers = await asyncio.gather(
            *(client.post(f"{url}/v1/completions", json=b) for b in (huge, huge, many, many))
        )
    return Counter(str(a.status_code) for a in answers)


async def _slowloris(url: str) -> Counter[str]:
    """1,000 connections trickling their headers a byte a second, for 30 s."""
    host, port = url.removeprefix("http://").split(":")
    connections = [await asyncio.open_connection(host, int(port)) for _ in range(1000)]
    for _, writer in connections:
        writer.write(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n")
    for _ in range(30):
        await asyncio.sleep(1)
        for _, writer in connections:
            if not writer.is_closing():
                writer.write(b"X")
    outcomes: Counter[str] = Counter()
    for reader, writer in connections:
        try:
            # The server's 408 and its end of the connection, if it closed it.
            answer = await asyncio.wait_for(reader.read(), 0.05)
            outcomes[f"closed by the server ({answer[:12].decode(errors='replace')})"] += 1
        except TimeoutError:
            outcomes["still open after 30 s"] += 1
        except ConnectionError:
            outcomes["closed by the server (reset)"] += 1
        writer.close()
    return outcomes


BOMBS: dict[str, Callable[[str], Coroutine[Any, Any, Counter[str]]]] = {
    "n=128 with logprobs, non-streamed": _large_logprobs,
    "200 unread streams of n=128": _unread_streams,
    "400,000 stop strings": _stop_strings,
    "1,000 slowloris connections": _slowloris,
}


def run_bomb(name: str, logs: Path) -> dict[str, Any]:
    port = free_port()
    command = [sys.executable, "cli.py", "serve", "--host", HOST, "--port", str(port)]
    command += ["--workers", "2", "--max-model-len", "4096", "--db", str(logs / "b.db")]
    server = ServerProc(command, host=HOST, port=port, log_path=logs / f"{port}.log", cwd=REPO)
    server.wait_healthy()
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.1):
            peak[0] = max(peak[0], tree_usage(process_tree(server.pid))[0])

    sampler = threading.Thread(target=sample)
    sampler.start()
    probe_stop = multiprocessing.Event()
    probed: multiprocessing.Queue[Any] = multiprocessing.Queue()
    prober = multiprocessing.Process(target=_probe, args=(port, probe_stop, probed))
    prober.start()
    try:
        answers = asyncio.run(BOMBS[name](f"http://{HOST}:{port}"))
    finally:
        probe_stop.set()
        stop.set()
        sampler.join()
        latencies = sorted(probed.get(timeout=60))
        prober.join()
        server.stop()
    return {
        "bomb": name,
        "answers": dict(answers),
        "peak_rss_mb": round(peak[0] / 2**20, 1),
        "health_ms_p50": round(latencies[len(latencies) // 2], 2),
        "health_ms_p99": round(latencies[int(len(latencies) * 0.99)], 2),
        "health_ms_max": round(latencies[-1], 2),
        "health_probes": len(latencies),
    }


def report(results: list[dict[str, Any]]) -> str:
    lines = [
        "# Resource bombs (issue 15), synthetic server, 2 workers",
        "",
        f"Targets: peak RSS under {RSS_TARGET_MB} MB, /health under {HEALTH_TARGET_MS} ms.",
        "",
        "| bomb | answers | peak RSS MB | /health p50/p99/max ms |",
        "|---|---|---|---|",
    ]
    for r in results:
        answers = ", ".join(f"{k}: {v}" for k, v in r["answers"].items())
        lines.append(
            f"| {r['bomb']} | {answers} | {r['peak_rss_mb']} | "
            f"{r['health_ms_p50']}/{r['health_ms_p99']}/{r['health_ms_max']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--only", help="one bomb, by the start of its name")
    args = parser.parse_args(argv)
    logs = Path(tempfile.mkdtemp(prefix="dummy-vllm-bombs-"))
    names = [name for name in BOMBS if args.only is None or name.startswith(args.only)]
    results = [run_bomb(name, logs) for name in names]
    text = report(results)
    if args.out is not None:
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
