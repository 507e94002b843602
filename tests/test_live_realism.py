"""Metrics summed over workers, the scheduler's queue and 429, and injected faults, as clients
see them over a real socket. Timing tolerances are generous upwards (a busy 2-core box runs
late), strict downwards (the server must never be early)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from dummy_vllm.metrics import worker_snapshots

from .conftest import LiveServer, wait_until
from .shapes import LATE_S, LATE_SHARE, TimedStream, assert_due, read_timed
from .test_metrics import CONTRACT, value

MODEL = "m"
Families = dict[str, Any]


def scrape(server: LiveServer) -> Families:
    response = httpx.get(f"{server.url}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    return {f.name: f for f in text_string_to_metric_families(response.text)}


def wait_for_metrics(server: LiveServer, ready: Callable[[Families], bool], what: str) -> Families:
    """Scrape until ``ready``: other workers' figures arrive within their flush interval."""

    def scraped() -> Families | None:
        families = scrape(server)
        return families if ready(families) else None

    return wait_until(scraped, f"the metrics to show {what}")


def body(max_tokens: int, stream: bool = True, **extra: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "prompt": "Tell me about GPUs.",
        "max_tokens": max_tokens,
        "ignore_eos": True,
        "stream": stream,
        **extra,
    }


def token_arrivals(stream: TimedStream) -> list[float]:
    """Arrivals of the events that carry an ``id``: tokens and usage, not errors."""
    return [at for at, event in stream.json_events() if "id" in event]


def sdk(server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0)


# --- metrics over several workers ---------------------------------------------------------------


def worker_successes(tmp: Path) -> list[float]:
    """Requests each worker of a server started with ``TMPDIR=tmp`` has counted, as its last
    snapshot in the server's metrics directory shows."""
    (directory,) = tmp.glob("dummy-vllm-metrics-*")
    return [
        sum(value for (value,) in snapshot["vllm:request_success"].values())
        for snapshot in worker_snapshots(directory)
    ]


TTFT_S, ITL_S, TOKENS, BATCH = 0.05, 0.01, 6, 16


async def stream_batch(server: LiveServer, count: int) -> list[dict[str, int]]:
    """``count`` concurrent streams, each on a connection of its own; their usage."""
    limits = httpx.Limits(max_keepalive_connections=0, max_connections=None)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        url = f"{server.url}/v1/completions"
        payload = body(TOKENS, stream_options={"include_usage": True})
        streams = await asyncio.gather(*(read_timed(client, url, payload) for _ in range(count)))
    usages = []
    for stream in streams:
        assert len(token_arrivals(stream)) == TOKENS + 1  # the tokens and the usage event
        assert stream.payloads[-1] == b"[DONE]"
        usages.append(json.loads(stream.payloads[-2])["usage"])
    return usages


def test_metrics_are_summed_over_two_workers(
    start_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    server = start_server(
        *("--workers", "2", "--model", MODEL, "--max-model-len", "2048"),
        *("--ttft-delay", str(TTFT_S * 1000), "--token-delay", str(ITL_S * 1000)),
        env={"TMPDIR": str(tmp_path)},
    )
    usages: list[dict[str, int]] = []
    # Connections are shared out by the kernel: send batches until both workers served some.
    for _ in range(10):
        usages += asyncio.run(stream_batch(server, BATCH))
        sent = len(usages)
        wait_until(
            lambda: sum(worker_successes(tmp_path)) >= sent,  # noqa: B023
            f"the workers' snapshots to count {sent} successes",
        )
        per_worker = worker_successes(tmp_path)
        if len(per_worker) == 2 and min(per_worker) > 0:
            break
    assert len(per_worker) == 2
    assert min(per_worker) > 0, per_worker
    assert sum(per_worker) == sent

    families = wait_for_metrics(
        server,
        lambda f: value(f["vllm:time_to_first_token_seconds"], "_count") == sent,
        f"{sent} first tokens",
    )
    assert value(families["vllm:request_success"], "_total", finished_reason="length") == sent
    assert value(families["vllm:request_success"], "_total", finished_reason="stop") == 0
    assert value(families["vllm:prompt_tokens"], "_total") == sum(
        u["prompt_tokens"] for u in usages
    )
    assert value(families["vllm:generation_tokens"], "_total") == sent * TOKENS
    assert value(families["vllm:request_generation_tokens"], "_count") == sent
    ttft = families["vllm:time_to_first_token_seconds"]
    assert value(ttft, "_bucket", le="0.04") == 0  # no first token early
    assert_due(value(ttft, "_sum") / sent, TTFT_S, "mean TTFT")
    # One gap per write: tokens that fell due together on a busy box share a write and a gap.
    itl = families["vllm:inter_token_latency_seconds"]
    assert 0 < value(itl, "_count") <= sent * (TOKENS - 1)
    # The gaps add up to each stream's first-to-last-token time, whatever the writes were.
    decode = value(families["vllm:request_decode_time_seconds"], "_sum")
    assert value(itl, "_sum") == pytest.approx(decode)
    steps = sent * (TOKENS - 1)
    # Per token step that is the configured ITL, give or take first and last tokens being late
    # by different amounts: both are due at once for the whole batch, so they mostly cancel.
    assert abs(decode / steps - ITL_S) <= ITL_S / 2, decode / steps
    # The last token is never early, so nor is the end.
    e2e = value(families["vllm:e2e_request_latency_seconds"], "_sum") / sent
    assert_due(e2e, TTFT_S + (TOKENS - 1) * ITL_S, "mean e2e")
    requests = families["dummy_vllm:requests"]
    assert value(requests, "_total", route="/v1/completions", status="200") == sent
    assert value(families["vllm:num_requests_running"]) == 0

    # Names, types and labels hold over several workers too; _created series do not exist.
    for name, (kind, _) in CONTRACT.items():
        assert families[name].type == kind, name
    assert not [name for name in families if name.endswith("_created")]
    # Every scrape, whichever worker answers it, sees the same sums.
    for _ in range(4):
        again = scrape(server)
        assert value(again["vllm:request_success"], "_total", finished_reason="length") == sent


# --- the scheduler ------------------------------------------------------------------------------


def test_requests_beyond_max_num_seqs_queue_and_their_wait_shows_in_ttft(
    start_server: Callable[..., LiveServer],
) -> None:
    ttft, itl, tokens = 0.3, 0.02, 5
    server = start_server(
        *("--model", MODEL, "--max-num-seqs", "2"),
        *("--ttft-delay", str(ttft * 1000), "--token-delay", str(itl * 1000)),
    )
    duration = ttft + (tokens - 1) * itl
    seen_waiting: list[float] = []

    async def run() -> list[TimedStream]:
        limits = httpx.Limits(max_keepalive_connections=0, max_connections=None)
        async with httpx.AsyncClient(timeout=30, limits=limits) as client:
            url = f"{server.url}/v1/completions"
            streams = asyncio.gather(*(read_timed(client, url, body(tokens)) for _ in range(4)))
            while not streams.done():
                text = (await client.get(f"{server.url}/metrics")).text
                families = {f.name: f for f in text_string_to_metric_families(text)}
                seen_waiting.append(value(families["vllm:num_requests_waiting"]))
                await asyncio.sleep(0.03)
            return await streams

    results = asyncio.run(run())
    first_tokens = sorted(token_arrivals(stream)[0] for stream in results)
    # Two run at once; the other two wait for a whole stream before their TTFT starts.
    for started in first_tokens[:2]:
        assert_due(started, ttft, f"a running request's first token, of {first_tokens}")
    for queued in first_tokens[2:]:
        assert_due(queued, duration + ttft, f"a queued request's first token, of {first_tokens}")
    assert max(seen_waiting) == 2

    families = scrape(server)
    queue = families["vllm:request_queue_time_seconds"]
    assert value(queue, "_count") == 4
    # The two queued ones waited about a whole stream each, the others not at all. Not a
    # deadline: a queued request that reached the server after the running ones waited less.
    mean_wait = value(queue, "_sum") / 2
    assert duration - LATE_S <= mean_wait <= duration + LATE_S + LATE_SHARE * duration, mean_wait
    assert value(families["vllm:num_requests_waiting"]) == 0


def test_a_full_waiting_queue_answers_429(start_server: Callable[..., LiveServer]) -> None:
    server = start_server(
        *("--model", MODEL, "--max-num-seqs", "1", "--max-waiting", "1"),
        *("--ttft-delay", "300", "--token-delay", "10"),
    )

    async def run() -> tuple[httpx.Response, list[TimedStream]]:
        async with httpx.AsyncClient(timeout=30) as client:
            url = f"{server.url}/v1/completions"

            async def gauge_reaches(name: str) -> None:
                # Off the event loop, which must keep reading the streams meanwhile.
                await asyncio.to_thread(
                    wait_for_metrics, server, lambda f: value(f[name]) == 1, f"1 in {name}"
                )

            # A long stream holds the only slot (~1.3 s), so however busy the box, the queue
            # stays full while the next request is sent.
            running = asyncio.create_task(read_timed(client, url, body(100)))
            await gauge_reaches("vllm:num_requests_running")
            waiting = asyncio.create_task(read_timed(client, url, body(3)))
            await gauge_reaches("vllm:num_requests_waiting")
            rejected = await client.post(url, json=body(3, stream=False))
            return rejected, [await running, await waiting]

    rejected, served = asyncio.run(run())
    assert rejected.status_code == 429
    error = rejected.json()["error"]
    assert error["type"] == "RateLimitError"
    assert error["code"] == 429
    assert all(stream.payloads[-1] == b"[DONE]" for stream in served)
    requests = scrape(server)["dummy_vllm:requests"]
    assert value(requests, "_total", route="/v1/completions", status="429") == 1


# --- faults -------------------------------------------------------------------------------------

ITL_MS = 20


@pytest.fixture(scope="module")
def module_server() -> Iterator[LiveServer]:
    server = LiveServer("--model", MODEL, "--token-delay", str(ITL_MS), "--fault-after-tokens", "3")
    yield server
    server.stop()


def stream_with_fault(server: LiveServer, fault: str, tokens: int = 8) -> TimedStream:
    async def run() -> TimedStream:
        async with httpx.AsyncClient(timeout=30) as client:
            url = f"{server.url}/v1/completions"
            return await read_timed(client, url, body(tokens), {"X-Dummy-Fault": fault})

    return asyncio.run(run())


@pytest.mark.parametrize(
    ("fault", "error", "status"),
    [
        ("429", openai.RateLimitError, 429),
        ("500", openai.InternalServerError, 500),
        ("503", openai.InternalServerError, 503),
        ("400", openai.BadRequestError, 400),
    ],
)
@pytest.mark.parametrize("stream", [True, False])
def test_error_faults_reach_the_sdk_as_their_status(
    module_server: LiveServer,
    fault: str,
    error: type[openai.APIStatusError],
    status: int,
    stream: bool,
) -> None:
    with pytest.raises(error) as caught:
        sdk(module_server).completions.create(
            model=MODEL,
            prompt="hi",
            max_tokens=5,
            stream=stream,
            extra_headers={"X-Dummy-Fault": fault},
        )
    assert caught.value.status_code == status
    assert caught.value.body["code"] == status  # type: ignore[index]


def test_cut_ends_the_stream_after_n_tokens_without_done(module_server: LiveServer) -> None:
    with pytest.raises(httpx.RemoteProtocolError, match="incomplete chunked read"):
        stream_with_fault(module_server, "cut;after=2")
    chunks: list[Any] = []
    with pytest.raises(openai.APIConnectionError):  # noqa: PT012 - count what came first
        for chunk in sdk(module_server).completions.create(
            model=MODEL,
            prompt="hi",
            max_tokens=8,
            stream=True,
            extra_headers={"X-Dummy-Fault": "cut"},
        ):
            chunks.append(chunk)
    assert len(chunks) == 3


def test_cut_of_a_non_streamed_answer_drops_the_connection(module_server: LiveServer) -> None:
    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        httpx.post(
            f"{module_server.url}/v1/completions",
            json=body(4, stream=False),
            headers={"X-Dummy-Fault": "cut"},
        )


def test_error_event_mid_stream(module_server: LiveServer) -> None:
    stream = stream_with_fault(module_server, "error-event;after=2")
    assert len(token_arrivals(stream)) == 2
    assert stream.payloads[-1] == b"[DONE]"
    assert stream.payloads[-2].startswith(b'{"error": {"message": "')
    assert json.loads(stream.payloads[-2])["error"]["code"] == 500
    chunks: list[Any] = []
    with pytest.raises(openai.APIError, match="injected fault"):  # noqa: PT012
        for chunk in sdk(module_server).completions.create(
            model=MODEL,
            prompt="hi",
            max_tokens=8,
            stream=True,
            extra_headers={"X-Dummy-Fault": "error-event"},
        ):
            chunks.append(chunk)
    assert len(chunks) == 3
    # Non-streamed, the error is the answer.
    with pytest.raises(openai.InternalServerError, match="injected fault"):
        sdk(module_server).completions.create(
            model=MODEL, prompt="hi", max_tokens=8, extra_headers={"X-Dummy-Fault": "error-event"}
        )


def test_stall_pauses_the_stream_after_n_tokens(module_server: LiveServer) -> None:
    stream = stream_with_fault(module_server, "stall;ms=600;after=3")
    assert stream.payloads[-1] == b"[DONE]"
    arrivals = token_arrivals(stream)
    assert len(arrivals) == 8
    # Token k is due at k * ITL (no TTFT), and 600 ms later from the fourth on.
    for k, arrival in enumerate(arrivals):
        assert_due(arrival, k * ITL_MS / 1000 + (0.6 if k >= 3 else 0), f"token {k}")


def test_slow_first_byte_holds_the_headers(module_server: LiveServer) -> None:
    stream = stream_with_fault(module_server, "slow-first-byte;ms=500", tokens=3)
    assert_due(stream.headers_at, 0.5, "the headers")
    assert len(token_arrivals(stream)) == 3
    assert stream.payloads[-1] == b"[DONE]"


def test_bad_fault_header_is_a_400(module_server: LiveServer) -> None:
    response = httpx.post(
        f"{module_server.url}/v1/completions", json=body(2), headers={"X-Dummy-Fault": "explode"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "X-Dummy-Fault"


def test_injected_faults_are_counted(module_server: LiveServer) -> None:
    def counts() -> tuple[float, float, float]:
        families = scrape(module_server)
        faults = families["dummy_vllm:faults_injected"]
        aborted = value(families["vllm:request_success"], "_total", finished_reason="abort")
        return value(faults, "_total", type="stall"), value(faults, "_total", type="cut"), aborted

    stall, cut, aborted = counts()
    stream_with_fault(module_server, "stall;ms=10")
    with pytest.raises(httpx.RemoteProtocolError):
        stream_with_fault(module_server, "cut;after=2")
    # The cut stream counts as aborted too, once the server saw the connection go.
    expected = (stall + 1, cut + 1, aborted + 1)
    wait_until(lambda: counts() == expected, f"stall, cut and aborted counts of {expected}")


def test_fault_rate_is_seeded_and_reproducible(start_server: Callable[..., LiveServer]) -> None:
    def statuses() -> list[int]:
        server = start_server(
            "--model", MODEL, "--seed", "5", "--fault-rate", "0.5", "--fault-types", "500"
        )
        with httpx.Client(timeout=10) as client:
            codes = [
                client.post(f"{server.url}/v1/completions", json=body(2, stream=False)).status_code
                for _ in range(20)
            ]
        injected = value(scrape(server)["dummy_vllm:faults_injected"], "_total", type="500")
        assert injected == codes.count(500)
        return codes

    first = statuses()
    assert set(first) == {200, 500}
    assert statuses() == first


def test_a_client_leaving_mid_stream_counts_as_aborted(module_server: LiveServer) -> None:
    before = scrape(module_server)

    async def leave_after_three_tokens() -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            url = f"{module_server.url}/v1/completions"
            async with client.stream("POST", url, json=body(100)) as response:
                seen = 0
                async for line in response.aiter_lines():
                    seen += line.startswith("data: {")
                    if seen == 3:
                        break

    asyncio.run(leave_after_three_tokens())

    def aborted(families: Families) -> float:
        success = families["vllm:request_success"]
        return value(success, "_total", finished_reason="abort")

    after = wait_for_metrics(
        module_server, lambda f: aborted(f) == aborted(before) + 1, "one more aborted request"
    )
    assert aborted(after) == aborted(before) + 1
    e2e = "vllm:e2e_request_latency_seconds"
    # Counted when the client left (3 tokens, ~40 ms), not when 100 tokens would have ended.
    assert 0.03 <= value(after[e2e], "_sum") - value(before[e2e], "_sum") <= 1.0
    assert value(after["vllm:num_requests_running"]) == 0
