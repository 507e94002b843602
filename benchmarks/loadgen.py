"""A lean closed-loop HTTP/1.1 load generator for chat completions, streaming or not.

Each of ``concurrency`` keep-alive connections sends the next request as soon as the previous
response is complete. The client is an ``asyncio.Protocol`` on uvloop with a hand-written
response parser (status line, Content-Length or chunked framing, SSE split on ``\\n\\n``): no
client library, no coroutine per request and no per-event JSON decoding, so the generator costs
a small fraction of what the server spends on the same bytes. Every SSE event is timestamped
with ``time.perf_counter_ns()`` in the ``data_received`` call that completed it.

Token events are ``data:`` events whose delta carries non-empty ``content``. The role-only
first chunk some servers send, the ``choices: []`` usage chunk and ``[DONE]`` are not tokens.
A stream must end with ``[DONE]`` and carry exactly ``max_tokens`` token events (the benchmark
sends ``ignore_eos``), otherwise the request counts as failed. The first response on every
connection is also fully JSON-decoded and checked.

``prompt_pieces`` makes every request's prompt distinct and long, as ``vllm bench serve``'s
random dataset does (``DistinctPrompts``). ``burst`` opens every connection at once on a fresh
server, sends one request on each and counts TTFT from the start of the connect, as a client
that opens a connection per request sees it.

Run as a program it prints one JSON document (see ``LoadRun.result``):

    python -m benchmarks.loadgen --port 8000 --stream --concurrency 64 --max-tokens 128
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import math
import os
import random
import re
import resource
import socket
import sys
import time
from array import array
from collections import Counter
from dataclasses import asdict, dataclass
from itertools import accumulate
from typing import Any, cast

import ujson

PROMPT = (
    "Write a short story about a lighthouse keeper who discovers that the fog rolling in "
    "every evening carries voices from ships that sank a century ago, and decides to answer."
)

# Non-empty content in a delta: a token event. `"content":""` (role chunk) does not match.
_CONTENT = re.compile(rb'"content":\s*"(?!")')
_DONE = b"data: [DONE]"
_LAG_PERIOD_S = 0.005
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)")

# Parser states.
_IDLE, _HEAD, _BODY, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_CRLF, _TRAILER = range(7)


@dataclass(frozen=True, slots=True)
class LoadSpec:
    host: str = "127.0.0.1"
    port: int = 8000
    path: str = "/v1/chat/completions"
    model: str = "bench-model"
    stream: bool = True
    concurrency: int = 64
    max_tokens: int = 16
    warmup_s: float = 2.0
    duration_s: float = 10.0
    # Configured server latencies; errors are reported against these.
    ttft_ms: float = 0.0
    itl_ms: float = 0.0
    # Keep per-event TTFT/ITL samples (latency scenarios); throughput runs skip the appends.
    latency_samples: bool = False
    # Connections are opened spread over this many seconds (0 = warmup / 2), which avoids a
    # SYN burst against the listen backlog and de-synchronises the streams' token ticks.
    ramp_s: float = 0.0
    request_timeout_s: float = 0.0  # 0 = expected stream duration + 10 s
    max_requests_per_conn: int = 1_000_000
    cpu: int = -1  # pin this process to that CPU; -1 = leave affinity alone
    # Subword pieces per prompt, each request's prompt distinct (0: the same short PROMPT).
    prompt_pieces: int = 0
    # Cold burst: all connections at once, one request each, TTFT from the connect; the run
    # ends when every request has ended (``duration_s`` bounds it).
    burst: bool = False

    def request_bytes(self, prompt: str = PROMPT) -> bytes:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": self.max_tokens,
            "ignore_eos": True,
            "stream": self.stream,
        }
        if self.stream:
            body["stream_options"] = {"include_usage": True}
        payload = ujson.dumps(body).encode()
        accept = b"text/event-stream" if self.stream else b"application/json"
        head = (
            b"POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
            b"Accept: %s\r\nContent-Length: %d\r\n\r\n"
            % (self.path.encode(), self.host.encode(), self.port, accept, len(payload))
        )
        return head + payload

    def timeout_s(self) -> float:
        if self.request_timeout_s > 0:
            return self.request_timeout_s
        return (self.ttft_ms + self.max_tokens * self.itl_ms) / 1000.0 + 10.0


class DistinctPrompts:
    """Long prompts, each one distinct, made like ``vllm bench serve``'s random dataset: a
    window of consecutive entries of a (here synthetic) subword vocabulary from a random
    offset, so that prompts overlap as theirs do. A request number in front makes every prompt
    distinct. A prompt is one slice of a precomputed string: cheap for the client."""

    VOCAB = 32000
    LETTERS = "abcdefghijklmnopqrstuvwxyz"

    def __init__(self, pieces: int, seed: int = 0) -> None:
        rng = random.Random(seed)
        vocab = [
            (" " if rng.random() < 0.5 else "")
            + "".join(rng.choices(self.LETTERS, k=rng.randint(2, 7)))
            for _ in range(self.VOCAB)
        ]
        wrapped = vocab + vocab[:pieces]
        self._text = "".join(wrapped)
        self._starts = list(accumulate(map(len, wrapped), initial=0))
        self._pieces = pieces
        self._rng = rng
        self._count = 0

    def next(self) -> str:
        offset = self._rng.randrange(self.VOCAB)
        self._count += 1
        window = self._text[self._starts[offset] : self._starts[offset + self._pieces]]
        return f"{self._count}{window}"


class Conn(asyncio.Protocol):
    """One keep-alive connection running its own closed loop from the I/O callbacks."""

    def __init__(self, run: LoadRun, t_connect: int = 0) -> None:
        self.run = run
        # When its first connect attempt started (burst mode counts TTFT from there).
        self.t_connect = t_connect
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.sse = bytearray()
        self.body = bytearray()
        self.state = _IDLE
        self.left = 0
        self.sent = 0
        self.t_send = 0
        self.t_last = 0
        self.deadline = 0
        self.tokens = 0
        self.done = False
        self.keep_alive = True
        # Decode and check the first response of each connection in full.
        self.validate = True

    # -- asyncio callbacks -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport does not subclass asyncio.Transport, hence a cast.
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.run.conns.add(self)
        self.send()

    def connection_lost(self, exc: Exception | None) -> None:
        run = self.run
        run.conns.discard(self)
        if self.state != _IDLE:
            self.state = _IDLE
            run.request_ended()
            if run.active:
                run.fail("disconnect")
        if run.active:
            run.reconnect()

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter_ns()
        run = self.run
        in_window = run.ws <= now < run.we
        buf = self.buf
        buf += data
        pos = 0
        n = len(buf)
        while pos < n:
            st = self.state
            if st == _CHUNK_SIZE:
                i = buf.find(b"\r\n", pos)
                if i < 0:
                    break
                try:
                    size = int(buf[pos:i], 16)
                except ValueError:  # chunk extensions
                    size = int(buf[pos:i].split(b";", 1)[0], 16)
                pos = i + 2
                if not size:
                    self.state = _TRAILER
                    continue
                end = pos + size
                if not self.sse and end + 2 <= n and buf[end - 1] == 10 and buf[end - 2] == 10:
                    # Fast path, the common case: the whole chunk is here and ends on an
                    # event boundary, so parse it in place without copying.
                    self._events(buf, pos, end, now, in_window)
                    pos = end + 2
                else:
                    self.left = size
                    self.state = _CHUNK_DATA
            elif st == _CHUNK_DATA:
                end = min(n, pos + self.left)
                sse = self.sse
                sse += buf[pos:end]
                self.left -= end - pos
                pos = end
                done = self._events(sse, 0, len(sse), now, in_window)
                if done:
                    del sse[:done]
                if not self.left:
                    self.state = _CHUNK_CRLF
            elif st == _CHUNK_CRLF:
                if n - pos < 2:
                    break
                pos += 2
                self.state = _CHUNK_SIZE
            elif st == _BODY:
                end = min(n, pos + self.left)
                if self.validate:
                    self.body += buf[pos:end]
                self.left -= end - pos
                pos = end
                if not self.left:
                    self._complete(now, in_window)
            elif st == _TRAILER:
                i = buf.find(b"\r\n", pos)
                if i < 0:
                    break
                trailer_done = i == pos
                pos = i + 2
                if trailer_done:
                    self._complete(now, in_window)
            elif st == _HEAD:
                i = buf.find(b"\r\n\r\n", pos)
                if i < 0:
                    break
                if not self._head(bytes(buf[pos : i + 2]).lower()):
                    return
                pos = i + 4
                if self.state == _BODY and not self.left:
                    self._complete(now, in_window)
            else:  # bytes while no request is outstanding
                self._abort("protocol")
                return
        del buf[:pos]

    def _events(self, data: bytearray, a: int, end: int, now: int, in_window: bool) -> int:
        """Handle the complete SSE events in ``data[a:end]``; return where the rest starts."""
        run = self.run
        search = _CONTENT.search
        while True:
            j = data.find(b"\n\n", a, end)
            if j < 0:
                return a
            if self.validate and not _valid_event(bytes(data[a:j])):
                run.fail("invalid_event")
            if search(data, a, j) is None:
                if data.startswith(_DONE, a):
                    self.done = True
            else:
                self.tokens += 1
                if self.tokens == 1:
                    if run.latency_samples and run.ws <= self.t_send < run.we:
                        run.ttft.append(now - self.t_send)
                elif in_window and run.latency_samples:
                    run.itl.append(now - self.t_last)
                self.t_last = now
                if in_window:
                    run.window_events += 1
            a = j + 2

    # -- request cycle -----------------------------------------------------------------

    def send(self) -> None:
        run = self.run
        if not run.active or self.transport is None:
            return
        if self.sent >= (1 if run.spec.burst else run.spec.max_requests_per_conn):
            return
        self.sent += 1
        self.state = _HEAD
        self.tokens = 0
        self.done = False
        self.sse.clear()
        self.body.clear()
        self.t_send = t = time.perf_counter_ns()
        if run.spec.burst:
            self.t_send = self.t_connect
        self.deadline = t + run.timeout_ns
        self.transport.write(run.next_request())

    def _head(self, head: bytes) -> bool:
        status = head[9:12]
        if status != b"200":
            self._abort("http_" + status.decode(errors="replace"))
            return False
        self.keep_alive = b"\r\nconnection: close" not in head
        if b"\r\ntransfer-encoding: chunked" in head:
            self.state = _CHUNK_SIZE
        else:
            m = _CONTENT_LENGTH.search(head)
            if m is None:
                self._abort("no_length")
                return False
            self.left = int(m.group(1))
            self.state = _BODY
        return True

    def _complete(self, now: int, in_window: bool) -> None:
        run = self.run
        self.state = _IDLE
        run.request_ended()
        ok = True
        if run.spec.stream:
            if not self.done:
                ok = False
                run.fail("no_done")
            elif self.tokens != run.spec.max_tokens:
                ok = False
                run.fail("token_count")
        elif self.validate:
            prompt_tokens = _valid_completion(bytes(self.body))
            if prompt_tokens is None:
                ok = False
                run.fail("invalid_body")
            else:
                run.prompt_tokens.append(prompt_tokens)
        self.validate = False
        if ok and in_window:
            run.window_completed += 1
        if not self.keep_alive:
            if self.transport is not None:
                self.transport.close()
            return
        self.send()

    def _abort(self, kind: str) -> None:
        if self.state != _IDLE:
            self.run.request_ended()
        self.state = _IDLE
        self.run.fail(kind)
        if self.transport is not None:
            self.transport.abort()


def _valid_event(raw: bytes) -> bool:
    if not raw.startswith(b"data:"):
        return raw.startswith(b":")  # SSE comment
    payload = raw[5:].strip()
    if payload == b"[DONE]":
        return True
    try:
        obj = ujson.loads(payload)
    except ValueError:
        return False
    choices = obj.get("choices") if isinstance(obj, dict) else None
    if not isinstance(choices, list):
        return False
    if not choices:
        return isinstance(obj.get("usage"), dict)
    delta = choices[0].get("delta")
    return isinstance(delta, dict)


def _valid_completion(raw: bytes) -> int | None:
    """The prompt tokens the server counted, or None for a malformed answer."""
    try:
        obj = ujson.loads(raw)
        if not isinstance(obj["choices"][0]["message"]["content"], str):
            return None
        return int(obj["usage"]["prompt_tokens"])
    except (ValueError, KeyError, IndexError, TypeError):
        return None


class LoadRun:
    """State shared by all connections of one run; ``result()`` summarises it."""

    def __init__(self, spec: LoadSpec) -> None:
        self.spec = spec
        self.request = spec.request_bytes()
        self._prompts = DistinctPrompts(spec.prompt_pieces) if spec.prompt_pieces else None
        # Requests that completed or failed; burst mode waits for all of them.
        self.ended = 0
        self.all_ended = asyncio.Event()
        self.timeout_ns = int(spec.timeout_s() * 1e9)
        self.latency_samples = spec.latency_samples
        self.active = False
        self.conns: set[Conn] = set()
        self.failures: Counter[str] = Counter()
        self.ttft = array("q")
        self.itl = array("q")
        self.window_events = 0
        self.window_completed = 0
        # usage.prompt_tokens of the fully checked responses (non-streamed).
        self.prompt_tokens = array("q")
        self.connects = 0
        self.aborted_at_end = 0
        self.lag = array("q")
        self.gc_pauses = array("q")
        self._gc_start = 0
        # Measurement window in perf_counter_ns; set when the run starts.
        self.ws = 0
        self.we = 0
        self.cpu_window: tuple[float, float] = (0.0, 0.0)
        self.window_monotonic: tuple[float, float] = (0.0, 0.0)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def fail(self, kind: str) -> None:
        self.failures[kind] += 1

    def request_ended(self) -> None:
        self.ended += 1
        if self.ended >= self.spec.concurrency:
            self.all_ended.set()

    def next_request(self) -> bytes:
        if self._prompts is None:
            return self.request
        return self.spec.request_bytes(self._prompts.next())

    def reconnect(self) -> None:
        assert self.loop is not None
        task = self.loop.create_task(self._connect(delay=0.0))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self, delay: float) -> None:
        assert self.loop is not None
        if delay:
            await asyncio.sleep(delay)
        started = time.perf_counter_ns()
        # Bounded by time: retries stop when the run ends.
        while self.active:
            self.connects += 1
            try:
                await self.loop.create_connection(
                    lambda: Conn(self, started), self.spec.host, self.spec.port
                )
                return
            except OSError:
                self.fail("connect")
                await asyncio.sleep(0.2)

    async def _watchdog(self) -> None:
        while self.active:
            await asyncio.sleep(0.25)
            now = time.perf_counter_ns()
            for conn in list(self.conns):
                if conn.state != _IDLE and now > conn.deadline:
                    conn._abort("timeout")

    async def _lag_probe(self) -> None:
        # The client's own scheduling delay: if this stays far below the measured ITL/TTFT
        # errors, those errors come from the server, not from a busy client loop.
        while self.active:
            t = time.perf_counter_ns()
            await asyncio.sleep(_LAG_PERIOD_S)
            now = time.perf_counter_ns()
            if self.ws <= now < self.we:
                self.lag.append(now - t - int(_LAG_PERIOD_S * 1e9))

    def _gc_callback(self, phase: str, info: dict[str, int]) -> None:
        now = time.perf_counter_ns()
        if phase == "start":
            self._gc_start = now
        elif self.ws <= now < self.we:
            self.gc_pauses.append(now - self._gc_start)

    async def run(self) -> dict[str, Any]:
        spec = self.spec
        burst = spec.burst
        self.loop = asyncio.get_running_loop()
        self.active = True
        t0 = time.perf_counter_ns()
        # A burst is measured whole, from its first connect until every request has ended.
        self.ws = t0 if burst else t0 + int(spec.warmup_s * 1e9)
        self.we = self.ws + int(spec.duration_s * 1e9)
        # Keep the load on a little past the window so requests sent inside it can still
        # report their TTFT; nothing else is counted after `we`.
        tail_s = spec.ttft_ms / 1000.0 + 0.5 if spec.latency_samples and spec.ttft_ms else 0.0
        end = self.we + int(tail_s * 1e9)

        ramp = 0.0 if burst else spec.ramp_s or spec.warmup_s / 2
        step = ramp / max(1, spec.concurrency)
        watchdog = self.loop.create_task(self._watchdog())
        lag_probe = self.loop.create_task(self._lag_probe())
        gc.callbacks.append(self._gc_callback)
        r0, m0 = _cpu_seconds(), time.monotonic()
        for i in range(spec.concurrency):
            task = self.loop.create_task(self._connect(delay=i * step))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        if burst:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.all_ended.wait(), spec.duration_s)
        else:
            await _sleep_until(self.ws)
            r0, m0 = _cpu_seconds(), time.monotonic()
            await _sleep_until(self.we)
        r1, m1 = _cpu_seconds(), time.monotonic()
        self.cpu_window = (r1 - r0, m1 - m0)
        # CLOCK_MONOTONIC is system-wide: the harness lines its server samples up with this.
        self.window_monotonic = (m0, m1)
        if not burst:
            await _sleep_until(end)

        self.active = False
        for conn in list(self.conns):
            if conn.state != _IDLE:
                if burst:
                    self.fail("unfinished")
                else:
                    self.aborted_at_end += 1
            if conn.transport is not None:
                conn.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        watchdog.cancel()
        lag_probe.cancel()
        gc.callbacks.remove(self._gc_callback)
        await asyncio.sleep(0.05)
        wall_s = (time.perf_counter_ns() - t0) / 1e9
        return self.result(run_wall_s=wall_s, window_s=m1 - m0 if burst else 0.0)

    def result(self, run_wall_s: float = 0.0, window_s: float = 0.0) -> dict[str, Any]:
        spec = self.spec
        window = window_s or spec.duration_s
        cpu, wall = self.cpu_window
        out: dict[str, Any] = {
            "spec": asdict(spec),
            "window_s": window,
            "completed": self.window_completed,
            "requests_per_s": self.window_completed / window,
            "token_events": self.window_events,
            "token_events_per_s": self.window_events / window,
            "failures": sum(self.failures.values()),
            "failures_by_kind": dict(self.failures),
            "aborted_at_end": self.aborted_at_end,
            "connects": self.connects,
            "loadgen_cpu_s": cpu,
            "loadgen_cpu_share": cpu / wall if wall else 0.0,
            "loadgen_wall_s": run_wall_s,
            "window_monotonic": list(self.window_monotonic),
            "loadgen_loop_lag": error_stats(self.lag, 0.0),
            "loadgen_gc_pauses": len(self.gc_pauses),
            "loadgen_gc_max_ms": max(self.gc_pauses, default=0) / 1e6,
        }
        if self.prompt_tokens:
            out["prompt_tokens_mean"] = sum(self.prompt_tokens) / len(self.prompt_tokens)
        if spec.latency_samples:
            out["ttft"] = error_stats(self.ttft, spec.ttft_ms)
            out["itl"] = error_stats(self.itl, spec.itl_ms)
        return out


def _cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


async def _sleep_until(t_ns: int) -> None:
    delay = (t_ns - time.perf_counter_ns()) / 1e9
    if delay > 0:
        await asyncio.sleep(delay)


def _pct(sorted_vals: list[float], q: float) -> float:
    # Nearest-rank percentile.
    if not sorted_vals:
        return math.nan
    k = max(0, math.ceil(q * len(sorted_vals)) - 1)
    return sorted_vals[k]


def error_stats(samples_ns: array[int], target_ms: float) -> dict[str, float]:
    """Observed values and their error against the configured value, in milliseconds."""
    n = len(samples_ns)
    if not n:
        return {"n": 0}
    obs = [s / 1e6 for s in samples_ns]
    err = [o - target_ms for o in obs]
    abs_err = sorted(abs(e) for e in err)
    obs.sort()
    return {
        "n": n,
        "target_ms": target_ms,
        "mean_ms": sum(obs) / n,
        "p50_ms": _pct(obs, 0.50),
        "p99_ms": _pct(obs, 0.99),
        "max_ms": obs[-1],
        "mean_err_ms": sum(err) / n,
        "mean_abs_err_ms": sum(abs_err) / n,
        "p50_abs_err_ms": _pct(abs_err, 0.50),
        "p90_abs_err_ms": _pct(abs_err, 0.90),
        "p99_abs_err_ms": _pct(abs_err, 0.99),
        "max_abs_err_ms": abs_err[-1],
    }


def raise_nofile(want: int) -> int:
    """Raise the soft fd limit towards ``want`` (capped by the hard limit); return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def run_spec(spec: LoadSpec) -> dict[str, Any]:
    import uvloop

    if spec.cpu >= 0:
        os.sched_setaffinity(0, {spec.cpu})
    raise_nofile(spec.concurrency + 256)
    return uvloop.run(LoadRun(spec).run())


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Closed-loop chat-completions load generator.")
    p.add_argument("--spec", help="a LoadSpec as JSON (overrides the other flags)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--model", default="bench-model")
    p.add_argument("--stream", action="store_true")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--ttft-ms", type=float, default=0.0)
    p.add_argument("--itl-ms", type=float, default=0.0)
    p.add_argument("--latency-samples", action="store_true")
    p.add_argument("--cpu", type=int, default=-1)
    p.add_argument("--prompt-pieces", type=int, default=0, help="distinct long prompts")
    p.add_argument("--burst", action="store_true", help="cold burst: one request per connection")
    args = p.parse_args(argv)
    if args.spec:
        spec = LoadSpec(**ujson.loads(args.spec))
    else:
        spec = LoadSpec(
            host=args.host,
            port=args.port,
            model=args.model,
            stream=args.stream,
            concurrency=args.concurrency,
            max_tokens=args.max_tokens,
            warmup_s=args.warmup,
            duration_s=args.duration,
            ttft_ms=args.ttft_ms,
            itl_ms=args.itl_ms,
            latency_samples=args.latency_samples,
            cpu=args.cpu,
            prompt_pieces=args.prompt_pieces,
            burst=args.burst,
        )
    sys.stdout.write(ujson.dumps(run_spec(spec), indent=2) + "\n")


if __name__ == "__main__":
    main()
