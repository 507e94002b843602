"""vLLM's own benchmark client against the matching profile of this server (issue 10).

``vllm bench serve`` times requests with the request functions of
``vllm/benchmarks/lib/endpoint_request_func.py`` (``vllm/benchmarks/endpoint_request_func.py`` in
0.8.x). Each release parses the stream its own way: 0.8.5 reads lines and cannot skip SSE comments,
0.10.2-0.2x strip every read (a lone keep-alive comment then swallows the rest of the stream), 0.11
times chat's role chunk as the first token, 0.33 skips it and fails a stream without a token. So
this runs the real module of each release, unchanged, against ``cli.py serve --vllm-version`` of
that release, and checks what the benchmark would report.

The module is taken from the vLLM wheel on PyPI (``pip download vllm==X --no-deps``): only that
one file is extracted into ``.cache/vllm-bench/<version>/`` and reused on later runs; the wheel
(300-450 MB) is deleted at once. The modules need ``aiohttp`` and ``tqdm`` (0.33 also ``regex``):
``requirements-bench-clients.txt``.

For every release and backend, ``--requests`` prompts of varying length ask for varying output
lengths (1 and 2 always among them), sent as ``vllm bench serve --request-rate inf
--max-concurrency 24`` sends them (all released at once, at most 24 in flight, on one shared
session), after one "initial single prompt test run". The inputs are built the way that release's
``serve.py`` builds ``RequestFuncInput``: 0.11 adds ``temperature: 0.0`` through ``extra_body`` and
is run with ``--ignore-eos``; 0.33 sends no temperature and sets ``ignore_eos`` itself for the
random dataset; request ids carry each release's default prefix. A request passes when

- ``success`` is true;
- ``output_tokens`` (from the stream's usage) equals the requested output length;
- ``len(itl)`` is the number of timed events after the first: output length - 1, plus one for the
  chat role chunk in releases up to 0.2x, which time it as the first token;
- its TTFT is not earlier than ``--ttft-delay`` (minus 1 ms of clock slack);

and a backend passes when all its requests do and the mean TTFT and mean ITL (pooled over all
requests, as ``vllm bench serve`` reports them) are within the tolerances of the expected values.
Optional routes (Responses, embeddings) that answer 404 are reported as "not served".

Run: ``python -m benchmarks.vllm_clients`` (or ``make bench-clients``); writes
``benchmarks/CLIENTS_RESULTS.md`` and exits 1 on any failure.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import hashlib
import http.client
import importlib.util
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp

from benchmarks.procs import ServerProc, free_port, machine_busy

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / ".cache" / "vllm-bench"
RESULTS = Path(__file__).resolve().parent / "CLIENTS_RESULTS.md"
HOST = "127.0.0.1"
MODEL = "bench-model"
MODULE_NAME = "endpoint_request_func.py"
# Earliness allowed on a single TTFT: the client's and the server's clocks are the same, but the
# client starts its timer just before it writes the request.
CLOCK_SLACK_MS = 1.0

WORDS = (
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "a",
    "lazy",
    "dog",
    "while",
    "seven",
    "bright",
    "stars",
    "watch",
    "from",
    "distant",
    "hills",
    "and",
    "rivers",
    "carry",
    "old",
    "songs",
    "toward",
    "the",
    "quiet",
    "sea",
)


@dataclass(frozen=True)
class Backend:
    """One ``ASYNC_REQUEST_FUNCS`` entry and the route ``vllm bench serve`` points it at."""

    name: str
    route: str
    generates: bool = True
    # Events before the first token that the client times as tokens (0.11's chat role chunk).
    untimed_lead_events: int = 0
    # Routes this server may not serve yet: a 404 is reported, not failed.
    optional: bool = False


@dataclass(frozen=True)
class Release:
    """A vLLM release whose benchmark client is run, and how its ``serve.py`` calls it."""

    version: str  # the wheel's version on PyPI
    profile: str  # this server's --vllm-version
    member: str  # the module's path inside the wheel
    backends: tuple[Backend, ...]
    # serve.py's default sampling parameters, sent through extra_body (None: not passed at all).
    extra_body: Mapping[str, Any] | None
    request_id_prefix: str | None  # None: the release has no request ids
    takes_session: bool = True  # 0.8.x request functions open a session per request


COMPLETIONS, CHAT = "/v1/completions", "/v1/chat/completions"
LIB_MODULE = "vllm/benchmarks/lib/endpoint_request_func.py"
# Both releases time embeddings the same way; pooling routes are optional for this server.
EMBEDDINGS = Backend("openai-embeddings", "/v1/embeddings", generates=False, optional=True)

RELEASES: dict[str, Release] = {
    r.version: r
    for r in (
        Release(
            version="0.8.5.post1",
            profile="0.8",
            member="vllm/benchmarks/endpoint_request_func.py",
            backends=(Backend("openai-comp", COMPLETIONS),),
            extra_body=None,
            request_id_prefix=None,
            takes_session=False,
        ),
        Release(
            version="0.11.0",
            profile="0.11",
            member=LIB_MODULE,
            backends=(
                Backend("vllm", COMPLETIONS),
                Backend("openai-chat", CHAT, untimed_lead_events=1),
                EMBEDDINGS,
            ),
            extra_body={"temperature": 0.0},
            request_id_prefix="benchmark-serving",
        ),
        Release(
            version="0.33.0",
            profile="0.33",
            member=LIB_MODULE,
            backends=(
                Backend("vllm", COMPLETIONS),
                Backend("openai-chat", CHAT),
                Backend("openai-responses", "/v1/responses", optional=True),
                EMBEDDINGS,
            ),
            extra_body={},
            request_id_prefix="bench-5eed0a11-",
        ),
    )
}
DEFAULT_VERSIONS = ("0.11.0", "0.33.0")


# --- fetching the module ------------------------------------------------------------------------


@dataclass(frozen=True)
class ModuleSource:
    version: str
    wheel: str
    member: str
    sha256: str  # of the extracted module


def extract_member(wheel: Path, member: str, dest: Path) -> str:
    """Copy one file out of a wheel; returns its sha256. Written atomically, so an interrupted
    run never leaves a truncated module to be reused."""
    with zipfile.ZipFile(wheel) as zf:
        try:
            data = zf.read(member)
        except KeyError:
            raise SystemExit(f"{wheel.name} has no {member}") from None
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    part.write_bytes(data)
    part.replace(dest)
    return hashlib.sha256(data).hexdigest()


def fetch_module(release: Release, cache: Path, say: Callable[[str], None]) -> ModuleSource:
    """The release's request-function module, from the cache or from its wheel on PyPI."""
    folder = cache / release.version
    meta = folder / "source.json"
    if meta.is_file() and (folder / MODULE_NAME).is_file():
        return ModuleSource(**json.loads(meta.read_text()))
    cache.mkdir(parents=True, exist_ok=True)
    say(f"downloading the vllm=={release.version} wheel (no dependencies) to extract {MODULE_NAME}")
    with tempfile.TemporaryDirectory(dir=cache, prefix="wheel-") as tmp:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                f"vllm=={release.version}",
                "--no-deps",
                "--only-binary=:all:",
                # pip would otherwise keep a second copy of the wheel in its HTTP cache.
                "--no-cache-dir",
                "--disable-pip-version-check",
                "--quiet",
                "--dest",
                tmp,
            ],
            check=True,
        )
        wheels = sorted(Path(tmp).glob("vllm-*.whl"))
        if len(wheels) != 1:
            raise SystemExit(f"expected one vllm wheel, pip left {[w.name for w in wheels]}")
        sha = extract_member(wheels[0], release.member, folder / MODULE_NAME)
        source = ModuleSource(release.version, wheels[0].name, release.member, sha)
    meta.write_text(json.dumps(source.__dict__, indent=1) + "\n")
    return source


def load_module(path: Path, version: str) -> ModuleType:
    name = "vllm_bench_" + version.replace(".", "_")
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the class is built.
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# --- workload -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    prompt: str
    prompt_len: int  # in words; 0.20+ clients replace it with usage.prompt_tokens
    output_len: int


def workload(n: int, max_output: int, seed: int) -> list[Sample]:
    """``n`` prompts of 4..600 words asking for 1..``max_output`` tokens; 1 and 2 always included
    because they are the edge cases of ITL counting."""
    rng = random.Random(seed)
    lengths = [1, 2] + [rng.randint(3, max_output) for _ in range(max(0, n - 2))]
    rng.shuffle(lengths)
    out = []
    for output_len in lengths[:n]:
        words = rng.choices(WORDS, k=rng.randint(4, 600))
        out.append(Sample(" ".join(words), len(words), output_len))
    return out


# --- running one backend ------------------------------------------------------------------------


@dataclass
class BackendResult:
    release: str
    profile: str
    backend: str
    route: str
    served: bool = True
    requests: int = 0
    failures: list[str] = field(default_factory=list)
    ttft_ms: float | None = None
    itl_ms: float | None = None
    expected_itl_ms: float | None = None
    tpot_ms: float | None = None

    @property
    def ok(self) -> bool:
        return not self.failures


@dataclass(frozen=True)
class Workload:
    samples: tuple[Sample, ...]
    max_concurrency: int  # as vllm bench serve --max-concurrency


@dataclass(frozen=True)
class Timing:
    ttft_ms: float
    itl_ms: float
    ttft_tol_ms: float
    itl_tol_ms: float


def make_input(
    mod: ModuleType, release: Release, backend: Backend, base: str, s: Sample, i: int
) -> Any:
    kwargs: dict[str, Any] = {
        "model": MODEL,
        "model_name": None,
        "prompt": s.prompt,
        "api_url": base + backend.route,
        "prompt_len": s.prompt_len,
        "output_len": s.output_len,
        "logprobs": None,
        "multi_modal_content": None,
        # Pooling backends get neither: 0.33 sets ignore_eos only for OpenAI-compatible (generation)
        # backends and drops sampling parameters for pooling ones; 0.11's embeddings ignore both.
        "ignore_eos": backend.generates,
    }
    if release.extra_body is not None:
        kwargs["extra_body"] = dict(release.extra_body) if backend.generates else None
    if release.request_id_prefix is not None:
        kwargs["request_id"] = f"{release.request_id_prefix}{i}"
    return mod.RequestFuncInput(**kwargs)


def session_for_bench(max_concurrency: int) -> aiohttp.ClientSession:
    """The session ``vllm bench serve --max-concurrency N`` (0.10.2+) shares between requests."""
    connector = aiohttp.TCPConnector(
        limit=max_concurrency,
        limit_per_host=max_concurrency,
        ttl_dns_cache=300,
        use_dns_cache=True,
        keepalive_timeout=60,
        force_close=False,
        ssl=False,
    )
    return aiohttp.ClientSession(
        connector=connector, trust_env=True, timeout=aiohttp.ClientTimeout(total=6 * 60 * 60)
    )


def route_served(base: str, route: str) -> bool:
    """A served generation or pooling route answers an empty body with 400, never 404."""
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("POST", route, body=b"{}", headers={"Content-Type": "application/json"})
        return conn.getresponse().status != 404
    finally:
        conn.close()


def expected_itl_count(backend: Backend, output_len: int) -> int:
    return max(0, output_len - 1) + backend.untimed_lead_events


def check_output(backend: Backend, s: Sample, out: Any, timing: Timing) -> str | None:
    """Why a single request fails the benchmark, or None."""
    if not out.success:
        first = (out.error or "no error text").strip().splitlines()
        return f"success=False: {first[-1] if first else ''}"
    if not backend.generates:
        return None if out.prompt_len > 0 else "no usage.prompt_tokens in the answer"
    if out.output_tokens != s.output_len:
        return f"output_tokens={out.output_tokens}, asked {s.output_len}"
    want = expected_itl_count(backend, s.output_len)
    if len(out.itl) != want:
        return f"len(itl)={len(out.itl)}, expected {want} for output_len {s.output_len}"
    if out.ttft * 1000 < timing.ttft_ms - CLOCK_SLACK_MS:
        return f"TTFT {out.ttft * 1000:.1f} ms is earlier than the configured {timing.ttft_ms} ms"
    return None


def summarize(
    result: BackendResult,
    backend: Backend,
    samples: Sequence[Sample],
    outputs: Sequence[Any],
    timing: Timing,
) -> None:
    for i, (s, out) in enumerate(zip(samples, outputs, strict=True)):
        reason = check_output(backend, s, out, timing)
        if reason is not None:
            result.failures.append(f"request {i}: {reason}")
    good = [o for o in outputs if o.success]
    if not backend.generates or not good:
        return
    result.ttft_ms = statistics.fmean(o.ttft for o in good) * 1000
    itls = [x for o in good for x in o.itl]
    decode_steps = sum(
        max(0, s.output_len - 1) for s, o in zip(samples, outputs, strict=True) if o.success
    )
    if itls:
        # Pooled over requests, as vllm bench serve's "Mean ITL".
        result.itl_ms = statistics.fmean(itls) * 1000
        result.expected_itl_ms = timing.itl_ms * decode_steps / len(itls)
    tpots = [
        (o.latency - o.ttft) / (o.output_tokens - 1) * 1000 for o in good if o.output_tokens > 1
    ]
    if tpots:
        result.tpot_ms = statistics.fmean(tpots)
    if result.ttft_ms - timing.ttft_ms > timing.ttft_tol_ms:
        result.failures.append(
            f"mean TTFT {result.ttft_ms:.2f} ms exceeds {timing.ttft_ms} + {timing.ttft_tol_ms} ms"
        )
    if (
        result.itl_ms is not None
        and result.expected_itl_ms is not None
        and abs(result.itl_ms - result.expected_itl_ms) > timing.itl_tol_ms
    ):
        result.failures.append(
            f"mean ITL {result.itl_ms:.2f} ms, expected {result.expected_itl_ms:.2f}"
            f" ± {timing.itl_tol_ms} ms"
        )


async def call(
    func: Callable[..., Awaitable[Any]],
    release: Release,
    inp: Any,
    session: aiohttp.ClientSession,
) -> Any:
    if release.takes_session:
        return await func(request_func_input=inp, session=session, pbar=None)
    return await func(request_func_input=inp, pbar=None)


async def run_backend(
    mod: ModuleType,
    release: Release,
    backend: Backend,
    base: str,
    work: Workload,
    timing: Timing,
) -> BackendResult:
    result = BackendResult(release.version, release.profile, backend.name, backend.route)
    if backend.optional and not route_served(base, backend.route):
        result.served = False
        return result
    func = mod.ASYNC_REQUEST_FUNCS[backend.name]
    samples = work.samples
    inputs = [make_input(mod, release, backend, base, s, i) for i, s in enumerate(samples)]
    limit = asyncio.Semaphore(work.max_concurrency)

    async def limited(inp: Any, session: aiohttp.ClientSession) -> Any:
        # serve.py's limited_request_func: the semaphore, not the connector, holds requests back.
        async with limit:
            return await call(func, release, inp, session)

    async with session_for_bench(work.max_concurrency) as session:
        # serve.py's "initial single prompt test run" (the ready check): the first input alone.
        first = await call(func, release, inputs[0], session)
        if not first.success:
            result.failures.append(f"initial test run failed: {first.error.strip()[-300:]}")
            return result
        outputs = await asyncio.gather(*(limited(x, session) for x in inputs))
    result.requests = len(outputs)
    summarize(result, backend, samples, outputs, timing)
    return result


# --- servers and report -------------------------------------------------------------------------


def server_version(port: int) -> str:
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request("GET", "/version")
        return str(json.loads(conn.getresponse().read())["version"])
    finally:
        conn.close()


def run_release(
    release: Release,
    mod: ModuleType,
    work: Workload,
    timing: Timing,
    logs: Path,
    say: Callable[[str], None],
) -> tuple[str, list[BackendResult]]:
    port = free_port(HOST)
    cmd = [
        sys.executable,
        "cli.py",
        "serve",
        "--vllm-version",
        release.profile,
        "--host",
        HOST,
        "--port",
        str(port),
        "--model",
        MODEL,
        "--ttft-delay",
        str(timing.ttft_ms),
        "--token-delay",
        str(timing.itl_ms),
        "--log-level",
        "warning",
        "--db",
        str(logs / f"{release.version}.db"),
    ]
    server = ServerProc(
        cmd, host=HOST, port=port, log_path=logs / f"{release.version}.log", cwd=REPO
    )
    try:
        server.wait_healthy(timeout_s=60.0)
        reported = server_version(port)
        say(f"vllm {release.version} client -> serve --vllm-version {release.profile} ({reported})")
        results = []
        for backend in release.backends:
            r = asyncio.run(
                run_backend(mod, release, backend, f"http://{HOST}:{port}", work, timing)
            )
            say("  " + one_line(r))
            for reason in r.failures[:5]:
                say(f"    {reason}")
            results.append(r)
        return reported, results
    finally:
        server.stop()


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def one_line(r: BackendResult) -> str:
    if not r.served:
        return f"{r.backend:<18} {r.route}: not served (404), skipped"
    return (
        f"{r.backend:<18} {r.requests} requests, {len(r.failures)} failures, "
        f"TTFT mean {_ms(r.ttft_ms)} ms, ITL mean {_ms(r.itl_ms)} ms "
        f"(expected {_ms(r.expected_itl_ms)}), TPOT mean {_ms(r.tpot_ms)} ms"
    )


def render(
    results: Sequence[BackendResult],
    sources: Sequence[ModuleSource],
    reported: Mapping[str, str],
    timing: Timing,
    busy: float,
    args: argparse.Namespace,
) -> str:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    failed = sum(1 for r in results if not r.ok)
    lines = [
        "# vLLM's benchmark client against each profile",
        "",
        f"Run {now} by `python -m benchmarks.vllm_clients --versions {','.join(args.versions)}`"
        " (`make bench-clients`) on "
        f"{platform.python_implementation()} {platform.python_version()}, aiohttp "
        f"{aiohttp.__version__}, {os.cpu_count()} CPUs {busy:.0%} busy beforehand. "
        f"Server: `cli.py serve --vllm-version P --ttft-delay "
        f"{timing.ttft_ms:g} --token-delay {timing.itl_ms:g}`; {args.requests} requests per "
        f"backend, at most {args.max_concurrency} at a time, output lengths "
        f"1..{args.max_output} (seed {args.seed}), "
        "after one initial test request.",
        "",
        f"**{'PASS' if not failed else f'FAIL ({failed} backends)'}**: tolerances mean TTFT "
        f"≤ +{timing.ttft_tol_ms:g} ms, mean ITL ± {timing.itl_tol_ms:g} ms of expected, "
        f"no TTFT earlier than configured - {CLOCK_SLACK_MS:g} ms.",
        "",
        "| vLLM client | profile (/version) | backend | route | requests | failures "
        "| TTFT mean ms | ITL mean ms | expected ITL ms | TPOT mean ms |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        served = r.served
        lines.append(
            f"| {r.release} | {r.profile} ({reported.get(r.release, '?')}) | `{r.backend}` | "
            f"`{r.route}` | {r.requests if served else 'not served'} | "
            f"{len(r.failures) if served else '-'} | {_ms(r.ttft_ms)} | {_ms(r.itl_ms)} | "
            f"{_ms(r.expected_itl_ms)} | {_ms(r.tpot_ms)} |"
        )
    lines += [
        "",
        "Expected ITL is the configured token delay spread over the events the client times: "
        "0.11's chat function times the role chunk as the first token, so the first token "
        "follows it within the same millisecond and pulls the pooled mean below the delay.",
        "",
        "Modules (unchanged, from the wheels on PyPI):",
        "",
    ]
    lines += [f"- `{s.wheel}`: `{s.member}`, sha256 `{s.sha256[:16]}…`" for s in sources]
    failures = [(r, f) for r in results for f in r.failures]
    if failures:
        lines += ["", "## Failures", ""]
        lines += [f"- {r.release} `{r.backend}`: {f}" for r, f in failures[:50]]
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Run vLLM's own benchmark request functions against each profile."
    )
    p.add_argument(
        "--versions",
        default=",".join(DEFAULT_VERSIONS),
        help=f"vLLM client releases, comma-separated, from {', '.join(RELEASES)}",
    )
    p.add_argument("--requests", type=int, default=64, help="requests per backend")
    p.add_argument(
        "--max-concurrency", type=int, default=24, help="requests in flight at most, as vllm's"
    )
    p.add_argument("--max-output", type=int, default=160, help="longest output length asked")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ttft-delay", type=float, default=200.0, help="server TTFT, ms")
    p.add_argument("--token-delay", type=float, default=10.0, help="server ITL, ms")
    # A Python client opening dozens of connections at once is itself late to send and to read:
    # 24 at a time arrived +14 ms late at load 10 on 2 cores, all 48 at once +40..+116 ms.
    p.add_argument(
        "--ttft-tolerance", type=float, default=50.0, help="allowed mean TTFT lateness, ms"
    )
    p.add_argument("--itl-tolerance", type=float, default=2.0, help="allowed mean ITL error, ms")
    p.add_argument("--cache", type=Path, default=CACHE, help="where extracted modules are kept")
    p.add_argument(
        "--results", default=str(RESULTS), help="markdown report path ('' prints it instead)"
    )
    args = p.parse_args(argv)
    args.versions = [v.strip() for v in args.versions.split(",") if v.strip()]
    unknown = [v for v in args.versions if v not in RELEASES]
    if unknown:
        p.error(f"unknown release {', '.join(unknown)}; known: {', '.join(RELEASES)}")
    if args.requests < 2 or args.max_concurrency < 1:
        p.error("--requests must be at least 2 and --max-concurrency at least 1")
    return args


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    timing = Timing(args.ttft_delay, args.token_delay, args.ttft_tolerance, args.itl_tolerance)
    work = Workload(
        tuple(workload(args.requests, args.max_output, args.seed)), args.max_concurrency
    )
    releases = [RELEASES[v] for v in args.versions]
    sources = [fetch_module(r, args.cache, _say) for r in releases]
    results: list[BackendResult] = []
    reported: dict[str, str] = {}
    busy = machine_busy(1.0)
    logs = Path(tempfile.mkdtemp(prefix="vllm-clients-"))
    _say(f"machine {busy:.0%} busy; server logs in {logs}")
    for release in releases:
        mod = load_module(args.cache / release.version / MODULE_NAME, release.version)
        reported[release.version], rs = run_release(release, mod, work, timing, logs, _say)
        results += rs
    report = render(results, sources, reported, timing, busy, args)
    if args.results:
        Path(args.results).write_text(report)
        _say(f"wrote {args.results}")
    else:
        print(report)
    if all(r.ok for r in results):
        shutil.rmtree(logs, ignore_errors=True)
        return 0
    _say(f"FAILED; server logs kept in {logs}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
