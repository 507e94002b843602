"""Benchmark dummy-vllm against a bare-Sanic reference: ``python -m benchmarks.run``.

For every scenario, each server is started fresh with that scenario's latency flags, pinned to
one CPU, and driven by the load generator (``benchmarks.loadgen``) in its own process pinned to
another. The results go to ``benchmarks/RESULTS.md`` and ``benchmarks/raw/raw-<date>.json``.
See ``benchmarks/README.md`` for the method and how to read the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.loadgen import LoadSpec, raise_nofile
from benchmarks.procs import Sampler, ServerError, ServerProc, free_port, machine_busy

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
HOST = "127.0.0.1"
MODEL = "bench-model"
TARGETS = ("server", "reference")

# S4's offered load is fixed (2,000 streams x one event per ITL), so both servers should land
# on the same events/s; differences inside this relative band are noise, not a miss.
S4_EVENTS_TOLERANCE = 0.01
# Same for "ITL error p99 no worse than the reference's": allow this much absolute slack.
S4_P99_TOLERANCE_MS = 0.5
# Above this the load generator may be limiting the figures.
LOADGEN_CPU_WARN = 0.85
# CPU used by programs other than the servers, the load generator and this harness.
FOREIGN_CPU_WARN = 0.05
# Before each run, wait for the machine to be at most this busy (share of all CPUs).
IDLE_BUSY_MAX = 0.10
# Both servers listen with this backlog unless --backlog says otherwise (uvicorn's default,
# which vLLM keeps).
BACKLOG = 2048
# Longest a cold burst may take before its unfinished requests count as failed.
BURST_LIMIT_S = 60.0
# S5: what the slowest first token may take.
S5_TTFT_MAX_MS = 200.0
# S5: the p99 TTFT error may exceed the reference's by this much.
S5_P99_SLACK_MS = 5.0
# S4: "TTFT error mean no worse than the reference's", with the same slack as ITL p99.
S4_TTFT_TOLERANCE_MS = 0.5


@dataclass(frozen=True, slots=True)
class Scenario:
    key: str
    title: str
    stream: bool
    concurrency: int
    max_tokens: int
    ttft_ms: float = 0.0
    itl_ms: float = 0.0
    latency_samples: bool = False
    min_warmup_s: float = 0.0
    ramp_s: float = 0.0  # 0 = half the warm-up
    # Sanic workers for both servers; None = --workers. Runs with several workers are not
    # pinned: the workers need both cores.
    workers: int | None = None
    # Distinct long prompts (see loadgen.DistinctPrompts); 0 = the short fixed prompt.
    prompt_pieces: int = 0
    # Cold burst: every connection at once on the fresh server, one request each.
    burst: bool = False


# Subword pieces that make a prompt of about 1,000 tokens for dummy-vllm's tokenizer.
LONG_PROMPT_PIECES = 430

_S4 = Scenario(
    "S4",
    "streaming, 2,000 concurrent, max_tokens 100, TTFT 50 ms, ITL 50 ms, 1 worker",
    True,
    2000,
    100,
    ttft_ms=50,
    itl_ms=50,
    latency_samples=True,
    # Open the connections over one stream's length (50 ms + 100 x 50 ms), so stream starts
    # stay spread evenly afterwards; otherwise 2,000 requests restart in one burst every 5 s
    # and the error figures measure that burst.
    ramp_s=5.0,
    min_warmup_s=6.0,
    workers=1,
)

SCENARIOS: dict[str, Scenario] = {
    s.key: s
    for s in (
        Scenario("S1", "non-streaming, 64 concurrent, max_tokens 16", False, 64, 16),
        Scenario(
            "S1-long",
            "non-streaming, 64 concurrent, distinct ~1,000-token prompts, max_tokens 128",
            False,
            64,
            128,
            prompt_pieces=LONG_PROMPT_PIECES,
        ),
        Scenario("S2", "streaming, 64 concurrent, max_tokens 128, no delay", True, 64, 128),
        Scenario(
            "S3",
            "streaming, 256 concurrent, max_tokens 100, TTFT 100 ms, ITL 10 ms",
            True,
            256,
            100,
            ttft_ms=100,
            itl_ms=10,
            latency_samples=True,
        ),
        _S4,
        dataclasses.replace(
            _S4,
            key="S4-2w",
            title=_S4.title.replace("1 worker", "2 workers"),
            workers=2,
        ),
        Scenario(
            "S5",
            "cold burst: fresh server, 512 connections at once, one request each, "
            "max_tokens 64, TTFT 100 ms, ITL 10 ms, 2 workers",
            True,
            512,
            64,
            ttft_ms=100,
            itl_ms=10,
            latency_samples=True,
            workers=2,
            burst=True,
        ),
    )
}


def _ms(value: float) -> str:
    # The CLI's delay flags are milliseconds; keep "100" rather than "100.0".
    return str(int(value)) if float(value).is_integer() else str(value)


def server_command(
    template: str | None, sc: Scenario, port: int, workers: int, backlog: int = BACKLOG
) -> list[str]:
    """The product's command line for one scenario.

    ``template`` (``--server-cmd``) either holds ``{port}``-style placeholders (``{python}``,
    ``{host}``, ``{port}``, ``{workers}``, ``{backlog}``, ``{model}``, ``{ttft_ms}``,
    ``{itl_ms}``) and is used as is, or is a base command that gets the standard flags appended.
    """
    if template and "{port}" in template:
        return shlex.split(
            template.format(
                python=sys.executable,
                host=HOST,
                port=port,
                workers=workers,
                backlog=backlog,
                model=MODEL,
                ttft_ms=_ms(sc.ttft_ms),
                itl_ms=_ms(sc.itl_ms),
            )
        )
    base = shlex.split(template) if template else [sys.executable, "cli.py", "serve"]
    cmd = [
        *base,
        *("--host", HOST, "--port", str(port), "--workers", str(workers)),
        *("--backlog", str(backlog), "--model", MODEL, "--log-level", "warning"),
    ]
    if sc.ttft_ms:
        cmd += ["--ttft-delay", _ms(sc.ttft_ms)]
    if sc.itl_ms:
        cmd += ["--token-delay", _ms(sc.itl_ms)]
    return cmd


def reference_command(
    sc: Scenario, port: int, workers: int, backlog: int = BACKLOG
) -> tuple[list[str], dict[str, str]]:
    cmd = [
        sys.executable,
        *("-m", "benchmarks.reference_server", "--host", HOST, "--port", str(port)),
        *("--workers", str(workers), "--backlog", str(backlog), "--log-level", "warning"),
    ]
    env = {
        "BENCH_REF_TTFT_MS": _ms(sc.ttft_ms),
        "BENCH_REF_ITL_MS": _ms(sc.itl_ms),
        "BENCH_REF_MODEL": MODEL,
    }
    return cmd, env


@dataclass(frozen=True, slots=True)
class Options:
    scenarios: list[Scenario]
    targets: list[str]
    warmup_s: float
    duration_s: float
    workers: int
    server_cmd: str | None
    server_cpu: int | None
    loadgen_cpu: int | None
    log_dir: Path
    idle_wait_s: float = 0.0  # default keeps other callers (metrics_overhead.py) working
    backlog: int = BACKLOG


def wait_for_idle(limit_s: float) -> float:
    """Wait (at most ``limit_s``) until other programs leave the machine nearly idle, so they
    do not skew the measurement; return the last busy share seen."""
    deadline = time.monotonic() + limit_s
    busy = machine_busy(0.5)
    if busy > IDLE_BUSY_MAX:
        _say(f"machine {busy:.0%} busy with other programs; waiting up to {limit_s:.0f} s")
    while busy > IDLE_BUSY_MAX and time.monotonic() < deadline:
        busy = machine_busy(1.0)
    return busy


def placement(sc: Scenario, opts: Options) -> tuple[int, int | None, int | None]:
    """(workers, server CPU, load-generator CPU) of a scenario's runs."""
    workers = sc.workers or opts.workers
    if workers > 1:
        return workers, None, None
    return workers, opts.server_cpu, opts.loadgen_cpu


def run_target(sc: Scenario, target: str, opts: Options) -> dict[str, Any]:
    busy_before = wait_for_idle(opts.idle_wait_s) if opts.idle_wait_s > 0 else None
    port = free_port(HOST)
    workers, server_core, loadgen_core = placement(sc, opts)
    if target == "server":
        cmd = server_command(opts.server_cmd, sc, port, workers, opts.backlog)
        env: dict[str, str] = {}
    else:
        cmd, env = reference_command(sc, port, workers, opts.backlog)
    log_path = opts.log_dir / f"{sc.key}-{target}.log"
    spec = LoadSpec(
        host=HOST,
        port=port,
        model=MODEL,
        stream=sc.stream,
        concurrency=sc.concurrency,
        max_tokens=sc.max_tokens,
        # A burst has no warm-up and ends when its requests have; the duration only bounds it.
        warmup_s=0.0 if sc.burst else max(opts.warmup_s, sc.min_warmup_s),
        duration_s=BURST_LIMIT_S if sc.burst else opts.duration_s,
        ttft_ms=sc.ttft_ms,
        itl_ms=sc.itl_ms,
        latency_samples=sc.latency_samples,
        ramp_s=sc.ramp_s,
        cpu=-1 if loadgen_core is None else loadgen_core,
        prompt_pieces=sc.prompt_pieces,
        burst=sc.burst,
    )
    _say(f"{sc.key} {target}: $ {shlex.join(cmd)}")
    server = ServerProc(
        cmd, host=HOST, port=port, log_path=log_path, env=env, cpu=server_core, cwd=ROOT
    )
    sampler = Sampler(server.pid)
    try:
        startup_s = server.wait_healthy(timeout_s=60.0)
        sampler.start()
        time.sleep(0.3)  # an idle RSS sample before the load starts
        budget = spec.warmup_s + spec.duration_s + spec.timeout_s() + 60.0
        own0, wall0 = _own_cpu_s(), time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.loadgen", "--spec", json.dumps(asdict(spec))],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=budget,
            check=False,
        )
        sampler.stop()
        harness_share = (_own_cpu_s() - own0) / (time.monotonic() - wall0)
        if proc.returncode != 0:
            raise RuntimeError(f"load generator failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        load = json.loads(proc.stdout)
    finally:
        sampler.stop()
        server.stop()
    w0, w1 = load["window_monotonic"]
    server_cpu = sampler.cpu_between(w0, w1) / (w1 - w0) if w1 > w0 else 0.0
    result: dict[str, Any] = {}
    for name, core in (
        ("server_core_busy", server_core),
        ("loadgen_core_busy", loadgen_core),
    ):
        shares = None if core is None else sampler.core_between(core, w0, w1)
        result[name] = None if shares is None else shares[0]
    result |= {
        "workers": workers,
        "pinned": server_core is not None,
        "machine_busy_cores": sampler.machine_between(w0, w1),
        "cmd": cmd,
        "startup_s": startup_s,
        "idle_rss_bytes": sampler.samples[0].rss if sampler.samples else 0,
        "peak_rss_bytes": sampler.peak_rss,
        "rss_samples": len(sampler.samples),
        "server_cpu_share": server_cpu,
        "harness_cpu_share": harness_share,
        "machine_busy_before": busy_before,
        "load": load,
    }
    result["foreign_cpu_share"] = foreign_share(result)
    result["cpu_us_per_unit"] = cpu_per_unit(sc, result)
    _say(f"{sc.key} {target}: {_one_line(sc, result)}")
    return result


def foreign_share(r: dict[str, Any]) -> float | None:
    """Core time that our own processes (servers, client, harness) do not account for: other
    programs on the machine, which make the figures unreliable. Pinned runs compare each
    core with what ran on it; unpinned ones the whole machine with all of our processes."""
    if "load" not in r:
        return None
    client_own = float(r["load"]["loadgen_cpu_share"]) + float(r.get("harness_cpu_share", 0.0))
    server_own = float(r["server_cpu_share"])
    machine = r.get("machine_busy_cores")
    if not r.get("pinned", True) and machine is not None:
        return max(0.0, float(machine) - server_own - client_own)
    server_core, client_core = r.get("server_core_busy"), r.get("loadgen_core_busy")
    if server_core is None or client_core is None:
        return None
    return max(0.0, float(server_core) - server_own) + max(0.0, float(client_core) - client_own)


def cpu_per_unit(sc: Scenario, r: dict[str, Any]) -> float | None:
    """Server CPU (all its processes) per request, or per token event for streams, in µs."""
    load = r["load"]
    rate = load["token_events_per_s"] if sc.stream else load["requests_per_s"]
    return 1e6 * float(r["server_cpu_share"]) / rate if rate else None


def _one_line(sc: Scenario, r: dict[str, Any]) -> str:
    load = r["load"]
    parts = [
        f"{load['requests_per_s']:,.0f} req/s",
        f"{load['token_events_per_s']:,.0f} events/s",
        f"failures {load['failures']}",
    ]
    if sc.latency_samples:
        parts.append(f"ITL |err| p99 {load['itl'].get('p99_abs_err_ms', float('nan')):.2f} ms")
        if sc.ttft_ms:
            parts.append(f"TTFT |err| mean {load['ttft'].get('mean_abs_err_ms', 0):.2f} ms")
    parts += [
        f"server CPU {r['server_cpu_share']:.0%} (core {_pct(r['server_core_busy'])})",
        f"loadgen CPU {load['loadgen_cpu_share']:.0%} (core {_pct(r['loadgen_core_busy'])})",
        f"peak RSS {r['peak_rss_bytes'] / 2**20:.0f} MiB",
    ]
    return ", ".join(parts)


def _own_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- machine description -------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    cpu_model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
                break
    versions = {}
    for pkg in ("sanic", "uvloop", "ujson"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = "not installed"
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model,
        "mem_total_gib": round(mem_kib / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        **versions,
    }


# -- verdicts ------------------------------------------------------------------------------


def _get(runs: dict[str, Any], key: str, target: str, *path: str) -> Any:
    node: Any = runs.get(key, {}).get(target)
    for p in path:
        if not isinstance(node, dict) or p not in node:
            return None
        node = node[p]
    return node


def verdicts(runs: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per target of the issue: what is required, what was measured, PASS/MISS."""
    rows: list[dict[str, Any]] = []

    def row(key: str, target: str, ok: bool | None, server: str, ref: str) -> None:
        verdict = "n/a" if ok is None else ("PASS" if ok else "MISS")
        rows.append(
            {"scenario": key, "target": target, "server": server, "ref": ref, "verdict": verdict}
        )

    def ratio_row(key: str, what: str, path: tuple[str, ...], need: float) -> None:
        s = _get(runs, key, "server", *path)
        r = _get(runs, key, "reference", *path)
        ok = None if s is None or r is None or not r else s / r >= need
        ratio = f" ({s / r:.2f}x)" if s is not None and r else ""
        row(key, f"{what} >= {need} x reference", ok, f"{_num(s)}{ratio}", _num(r))

    ratio_row("S1", "requests/s", ("load", "requests_per_s"), 0.6)
    ratio_row("S1-long", "requests/s", ("load", "requests_per_s"), 0.6)
    ratio_row("S2", "token events/s", ("load", "token_events_per_s"), 0.7)

    for name, path, limit in (
        ("ITL error mean abs <= 1 ms", ("load", "itl", "mean_abs_err_ms"), 1.0),
        ("ITL error p99 abs <= 4 ms", ("load", "itl", "p99_abs_err_ms"), 4.0),
        ("TTFT error mean abs <= 5 ms", ("load", "ttft", "mean_abs_err_ms"), 5.0),
        ("TTFT error p99 abs <= 10 ms", ("load", "ttft", "p99_abs_err_ms"), 10.0),
    ):
        s = _get(runs, "S3", "server", *path)
        r = _get(runs, "S3", "reference", *path)
        row("S3", name, None if s is None else s <= limit, _ms_str(s), _ms_str(r))

    def no_failures(key: str) -> None:
        f = _get(runs, key, "server", "load", "failures")
        fr = _get(runs, key, "reference", "load", "failures")
        row(key, "no failed request", None if f is None else f == 0, _num(f), _num(fr))

    def no_worse(key: str, what: str, path: tuple[str, ...], slack_ms: float) -> None:
        s = _get(runs, key, "server", *path)
        r = _get(runs, key, "reference", *path)
        ok = None if s is None or r is None else s <= r + slack_ms
        row(key, f"{what} <= reference's (+{slack_ms:g} ms)", ok, _ms_str(s), _ms_str(r))

    for key in ("S4", "S4-2w"):
        no_failures(key)
        s = _get(runs, key, "server", "load", "token_events_per_s")
        r = _get(runs, key, "reference", "load", "token_events_per_s")
        ok = None if s is None or r is None else s >= r * (1 - S4_EVENTS_TOLERANCE)
        ratio = f" ({s / r:.3f}x)" if s is not None and r else ""
        row(
            key,
            f"token events/s >= reference's (within {S4_EVENTS_TOLERANCE:.0%})",
            ok,
            f"{_num(s)}{ratio}",
            _num(r),
        )
        no_worse(key, "ITL error p99", ("load", "itl", "p99_abs_err_ms"), S4_P99_TOLERANCE_MS)
        no_worse(
            key, "TTFT error mean abs", ("load", "ttft", "mean_abs_err_ms"), S4_TTFT_TOLERANCE_MS
        )

    no_failures("S5")
    no_worse("S5", "TTFT error p99 abs", ("load", "ttft", "p99_abs_err_ms"), S5_P99_SLACK_MS)
    s = _get(runs, "S5", "server", "load", "ttft", "max_ms")
    r = _get(runs, "S5", "reference", "load", "ttft", "max_ms")
    ok = None if s is None else s <= S5_TTFT_MAX_MS
    row("S5", f"slowest TTFT <= {S5_TTFT_MAX_MS:g} ms", ok, _ms_str(s), _ms_str(r))
    return rows


# -- report ---------------------------------------------------------------------------------


def _num(v: float | None, digits: int = 0) -> str:
    if v is None:
        return "n/a"
    return f"{v:,.{digits}f}"


def _ms_str(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f} ms"


def _us_str(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.1f} µs"


def _mib(v: float | None) -> str:
    return "n/a" if v is None else f"{v / 2**20:.1f} MiB"


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.0%}"


def _ratio(s: float | None, r: float | None) -> str:
    return "n/a" if s is None or r is None or not r else f"{s / r:.2f}"


def _figures(sc: Scenario) -> list[tuple[str, tuple[str, ...], Any]]:
    """(label, path into a run's result, formatter) for a scenario's table."""
    f: list[tuple[str, tuple[str, ...], Any]] = []
    if sc.stream:
        f.append(("token events/s", ("load", "token_events_per_s"), _num))
        f.append(("streams completed/s", ("load", "requests_per_s"), lambda v: _num(v, 1)))
    else:
        f.append(("requests/s", ("load", "requests_per_s"), _num))
    f.append(("failed requests (whole run)", ("load", "failures"), _num))
    if sc.prompt_pieces:
        f.append(("prompt tokens (server's usage)", ("load", "prompt_tokens_mean"), _num))
    if sc.latency_samples:
        if sc.ttft_ms:
            f += [
                ("TTFT observed mean", ("load", "ttft", "mean_ms"), _ms_str),
                ("TTFT error mean (signed)", ("load", "ttft", "mean_err_ms"), _ms_str),
                ("TTFT error mean abs", ("load", "ttft", "mean_abs_err_ms"), _ms_str),
                ("TTFT error p99 abs", ("load", "ttft", "p99_abs_err_ms"), _ms_str),
            ]
        if sc.burst:
            f += [
                ("TTFT observed p50", ("load", "ttft", "p50_ms"), _ms_str),
                ("TTFT observed p99", ("load", "ttft", "p99_ms"), _ms_str),
                ("TTFT observed max", ("load", "ttft", "max_ms"), _ms_str),
            ]
        f += [
            ("ITL observed mean", ("load", "itl", "mean_ms"), _ms_str),
            ("ITL error mean (signed)", ("load", "itl", "mean_err_ms"), _ms_str),
            ("ITL error mean abs", ("load", "itl", "mean_abs_err_ms"), _ms_str),
            ("ITL error p50 abs", ("load", "itl", "p50_abs_err_ms"), _ms_str),
            ("ITL error p99 abs", ("load", "itl", "p99_abs_err_ms"), _ms_str),
            ("ITL error max abs", ("load", "itl", "max_abs_err_ms"), _ms_str),
        ]
    per = "token event" if sc.stream else "request"
    f += [
        (f"server CPU per {per}", ("cpu_us_per_unit",), _us_str),
        ("server processes CPU (user+sys, of one core)", ("server_cpu_share",), _pct),
        ("server core busy (whole CPU)", ("server_core_busy",), _pct),
        ("load-generator process CPU (user+sys, of one core)", ("load", "loadgen_cpu_share"), _pct),
        ("load-generator core busy (whole CPU)", ("loadgen_core_busy",), _pct),
        ("load-generator loop lag p99", ("load", "loadgen_loop_lag", "p99_ms"), _ms_str),
        ("load-generator loop lag max", ("load", "loadgen_loop_lag", "max_abs_err_ms"), _ms_str),
        ("other programs' CPU (should be ~0)", ("foreign_cpu_share",), _pct),
        ("idle RSS, server process tree", ("idle_rss_bytes",), _mib),
        ("peak RSS, server process tree", ("peak_rss_bytes",), _mib),
        ("start-up to healthy", ("startup_s",), lambda v: "n/a" if v is None else f"{v:.1f} s"),
    ]
    return f


def render_markdown(doc: dict[str, Any]) -> str:
    meta = doc["meta"]
    m = meta["machine"]
    runs = doc["runs"]
    out: list[str] = [
        "# Benchmark results",
        "",
        f"Generated by `python -m benchmarks.run` on {meta['date']}"
        f" in {meta['elapsed_s']:.0f} s. Raw data: `{meta['raw_path']}`."
        " Method and how to read this: [README.md](README.md).",
        "",
        "**server** = dummy-vllm (`" + meta["server_cmd"] + "`); **reference** = bare Sanic"
        " answering the same requests with constant bytes (`benchmarks/reference_server.py`);"
        " **ratio** = server / reference.",
        "",
        "## Machine",
        "",
        "| nproc | CPU | memory | kernel | Python | Sanic | uvloop |",
        "|---|---|---|---|---|---|---|",
        f"| {m['nproc']} | {m['cpu_model']} | {m['mem_total_gib']} GiB | {m['kernel']}"
        f" | {m['python']} | {m['sanic']} | {m['uvloop']} |",
        "",
        f"Placement: {meta['placement']}. Both servers run with the Sanic manager and the"
        " workers each section names (default"
        f" `--workers {meta['workers']}`), listen with backlog {meta.get('backlog', BACKLOG)},"
        " and are restarted for every scenario; runs with several workers are not pinned (the"
        f" workers need both cores). Warm-up {meta['warmup_s']:g} s (S4: at least"
        f" {SCENARIOS['S4'].min_warmup_s:g} s), then {meta['duration_s']:g} s measured; S5 has"
        " no warm-up and lasts until its 512 requests have ended.",
        "",
        "## Targets",
        "",
        "| scenario | target | server | reference | verdict |",
        "|---|---|---|---|---|",
    ]
    for v in doc["verdicts"]:
        out.append(
            f"| {v['scenario']} | {v['target']} | {v['server']} | {v['ref']} | **{v['verdict']}** |"
        )
    out.append("")
    for key, sc in SCENARIOS.items():
        if key not in runs:
            continue
        out += [
            f"## {key}: {sc.title}",
            "",
            "| figure | server | reference | ratio |",
            "|---|---:|---:|---:|",
        ]
        for label, path, fmt in _figures(sc):
            s = _get(runs, key, "server", *path)
            r = _get(runs, key, "reference", *path)
            ratio = "" if path == ("foreign_cpu_share",) else _ratio(s, r)
            out.append(f"| {label} | {fmt(s)} | {fmt(r)} | {ratio} |")
        for target in TARGETS:
            err = _get(runs, key, target, "error")
            if err:
                out.append(f"\n{target} did not run: `{err.splitlines()[0]}`")
            kinds = _get(runs, key, target, "load", "failures_by_kind")
            if kinds:
                out.append(f"\n{target} failures by kind: `{json.dumps(kinds)}`")
        out.append("")
    notes = doc.get("notes") or []
    if notes:
        out += ["## Automatic notes", ""]
        out += [f"- {n}" for n in notes]
        out.append("")
    return "\n".join(out)


def auto_notes(runs: dict[str, Any]) -> list[str]:
    notes: list[str] = []
    for key, per_target in runs.items():
        for target, r in per_target.items():
            load = r.get("load")
            if not load:
                continue
            share = load["loadgen_cpu_share"]
            if share > LOADGEN_CPU_WARN:
                notes.append(
                    f"{key} {target}: load-generator CPU share {share:.0%} > "
                    f"{LOADGEN_CPU_WARN:.0%}; its figures may be limited by the client."
                )
            other = r.get("foreign_cpu_share") or 0.0
            if other > FOREIGN_CPU_WARN:
                notes.append(
                    f"{key} {target}: other programs used {other:.0%} of a CPU during the "
                    "measurement; its figures are disturbed, rerun on an idle machine."
                )
            busy = r.get("server_core_busy") or r.get("server_cpu_share") or 0.0
            if busy > 0.95:
                notes.append(f"{key} {target}: server core saturated ({busy:.0%} busy).")
    return notes


# -- main -------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="Benchmark dummy-vllm against a bare-Sanic reference server.",
    )
    p.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help="comma-separated, e.g. S1,S3,S1-long"
    )
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds per run")
    p.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per run")
    p.add_argument("--only", choices=TARGETS, help="run only the server or the reference")
    p.add_argument(
        "--server-cmd",
        help="command for the server under test; gets --host/--port/... appended unless it "
        "has {port}-style placeholders ({python} {host} {port} {workers} {model} {ttft_ms} "
        "{itl_ms}). Default: python cli.py serve",
    )
    p.add_argument("--workers", type=int, default=1, help="for scenarios that do not set their own")
    p.add_argument("--backlog", type=int, default=BACKLOG, help="listen backlog of both servers")
    p.add_argument("--no-pin", action="store_true", help="do not pin servers / load generator")
    p.add_argument(
        "--idle-wait",
        type=float,
        default=60.0,
        help="before each run, wait up to this many seconds for other programs to leave the "
        "machine idle (0: do not wait)",
    )
    p.add_argument(
        "--results",
        type=Path,
        help="markdown report path (default benchmarks/RESULTS.md, written only by a full run)",
    )
    p.add_argument(
        "--render",
        type=Path,
        metavar="RAW_JSON",
        help="measure nothing: rebuild the report from a raw file (to --results, else stdout)",
    )
    return p.parse_args(argv)


def rerender(raw_path: Path, results: Path | None) -> int:
    """Rebuild the derived parts of a raw file and its report, without measuring again."""
    doc = json.loads(raw_path.read_text())
    for key, per_target in doc["runs"].items():
        for r in per_target.values():
            if "load" in r:
                r["foreign_cpu_share"] = foreign_share(r)
                if key in SCENARIOS:
                    r["cpu_us_per_unit"] = cpu_per_unit(SCENARIOS[key], r)
    doc["verdicts"] = verdicts(doc["runs"])
    doc["notes"] = auto_notes(doc["runs"])
    raw_path.write_text(json.dumps(doc, indent=2) + "\n")
    markdown = render_markdown(doc)
    if results is None:
        print(markdown)
    else:
        results.write_text(markdown)
        _say(f"wrote {results} from {raw_path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render:
        return rerender(args.render, args.results)
    by_name = {key.upper(): key for key in SCENARIOS}
    keys = [by_name.get(k.strip().upper(), k.strip()) for k in args.scenarios.split(",") if k]
    unknown = [k for k in keys if k not in SCENARIOS]
    if unknown:
        print(f"unknown scenario(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    targets = [args.only] if args.only else list(TARGETS)
    if "server" in targets and not args.server_cmd and not (ROOT / "cli.py").exists():
        _say("cli.py not found: benchmarking the reference only (use --server-cmd otherwise)")
        targets.remove("server")
    if not targets:
        return 2

    # 2,000 client connections here and as many accepted sockets in the (inheriting) servers.
    raise_nofile(65536)
    cpus = sorted(os.sched_getaffinity(0))
    if args.no_pin or len(cpus) < 2:
        server_cpu = loadgen_cpu = None
        placement = "not pinned (OS scheduler)"
    else:
        # Servers get a core of their own; the client and this harness (sampling /proc at
        # 10 Hz, otherwise idle) share the other, so neither side steals the other's cycles.
        server_cpu, loadgen_cpu = cpus[0], cpus[1]
        os.sched_setaffinity(0, {loadgen_cpu})
        placement = (
            f"server process trees pinned to CPU {server_cpu}; load generator and harness "
            f"pinned to CPU {loadgen_cpu}"
        )

    log_dir = Path(tempfile.mkdtemp(prefix="dummy-vllm-bench-"))
    opts = Options(
        scenarios=[SCENARIOS[k] for k in keys],
        targets=targets,
        warmup_s=args.warmup,
        duration_s=args.duration,
        workers=args.workers,
        server_cmd=args.server_cmd,
        server_cpu=server_cpu,
        loadgen_cpu=loadgen_cpu,
        log_dir=log_dir,
        idle_wait_s=args.idle_wait,
        backlog=args.backlog,
    )
    _say(f"server logs in {log_dir}")
    started = time.monotonic()
    now = datetime.now(UTC)
    runs: dict[str, dict[str, Any]] = {}
    for sc in opts.scenarios:
        runs[sc.key] = {}
        for target in opts.targets:
            try:
                runs[sc.key][target] = run_target(sc, target, opts)
            except (ServerError, RuntimeError, subprocess.TimeoutExpired, ValueError) as exc:
                _say(f"{sc.key} {target}: FAILED: {exc}")
                runs[sc.key][target] = {"error": str(exc)}

    if any("error" in r for per_target in runs.values() for r in per_target.values()):
        _say(f"server logs kept in {log_dir}")
    else:
        shutil.rmtree(log_dir, ignore_errors=True)

    raw_dir = BENCH / "raw"
    raw_dir.mkdir(exist_ok=True)
    raw_path = raw_dir / f"raw-{now.strftime('%Y%m%d-%H%M%S')}.json"
    doc: dict[str, Any] = {
        "meta": {
            "date": now.strftime("%Y-%m-%d %H:%M UTC"),
            "elapsed_s": time.monotonic() - started,
            "machine": machine_info(),
            "placement": placement,
            "workers": opts.workers,
            "backlog": opts.backlog,
            "warmup_s": opts.warmup_s,
            "duration_s": opts.duration_s,
            "server_cmd": shlex.join(
                server_command(opts.server_cmd, SCENARIOS["S1"], 0, opts.workers)
            )
            .replace(sys.executable, "python")
            .replace("--port 0", "--port P"),
            "raw_path": str(raw_path.relative_to(ROOT)),
            "scenarios": {k: asdict(SCENARIOS[k]) for k in keys},
        },
        "runs": runs,
        "verdicts": verdicts(runs),
        "notes": auto_notes(runs),
    }
    tmp = raw_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(raw_path)
    markdown = render_markdown(doc)
    full = len(keys) == len(SCENARIOS) and len(opts.targets) == len(TARGETS)
    results = args.results or (BENCH / "RESULTS.md" if full else None)
    if results is not None:
        results.write_text(markdown)
        _say(f"wrote {results} and {raw_path}")
    else:
        print(markdown)
        _say(f"partial run: RESULTS.md left alone (use --results PATH); raw data in {raw_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
