"""vLLM's Prometheus metrics, summed over Sanic workers and kept off the hot path.

A request only updates plain in-process accumulators (float adds and a bisect per histogram);
every ``FLUSH_SECONDS``, and before a scrape, a worker pushes them into prometheus_client. With
several workers prometheus_client runs in multiprocess mode: the main process points
``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory before the workers spawn
(``shared_metrics_dir``), each worker writes its own mmap files there, and a scrape sums them,
so it sees the other workers' traffic up to ``FLUSH_SECONDS`` late. ``_created`` series are
absent in that mode, as with vLLM's ``--api-server-count`` > 1. A single worker (and the test
client) use a registry of their own.

Values are what clients saw: a stream's times are taken as the emitter writes (see
``Metrics.request_finished``). Each worker is one engine as far as the gauges go: running and
waiting requests and KV usage are sums over workers.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from itertools import pairwise

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from .emit import Delivery
from .plan import ABORTED, ResponsePlan
from .scheduler import Scheduler
from .settings import FaultType, Settings

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
FLUSH_SECONDS = 0.1
ENGINE = "0"
VLLM_LABELS = ("model_name", "engine")
# vLLM 0.11's engine finish reasons; the API's "tool_calls" is the engine's "stop".
FINISH_REASONS = ("stop", "length", ABORTED)
REPLAY_KINDS = ("exact", "relaxed", "miss_error", "miss_synthetic", "miss_profile")
UNMATCHED_ROUTE = "unmatched"

TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
TOKEN_LATENCY_BUCKETS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
    40.0, 80.0,
)  # fmt: skip
REQUEST_LATENCY_BUCKETS = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
    240.0, 480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip
N_BUCKETS = (1, 2, 5, 10, 20)


def token_buckets(max_model_len: int) -> list[int]:
    """vLLM's 1-2-5 series up to the context length: 1, 2, 5, 10, 20, 50, ..."""
    buckets: list[int] = []
    scale = 1
    while True:
        for mantissa in (1, 2, 5):
            if mantissa * scale > max_model_len:
                return buckets
            buckets.append(mantissa * scale)
        scale *= 10


@contextmanager
def shared_metrics_dir(settings: Settings) -> Iterator[None]:
    """Main process, around the server's life: with several workers, prometheus_client's
    multiprocess mode in a fresh directory, removed at the end. Workers inherit the variable
    when they spawn and must not have imported prometheus_client earlier (they have not)."""
    if not settings.metrics or settings.workers < 2:
        # A stale directory from the environment would silently switch workers' mode.
        os.environ.pop(MULTIPROC_ENV, None)
        yield
        return
    with tempfile.TemporaryDirectory(prefix="dummy-vllm-metrics-") as path:
        os.environ[MULTIPROC_ENV] = path
        try:
            yield
        finally:
            del os.environ[MULTIPROC_ENV]


class _Histogram:
    """Observations held in process memory until the next flush into ``targets``."""

    __slots__ = ("_bounds", "_counts", "_sum", "_targets")

    def __init__(self, bounds: Sequence[float], targets: Sequence[Histogram]) -> None:
        self._bounds = [float(bound) for bound in bounds]
        self._counts = [0] * (len(bounds) + 1)
        self._sum = 0.0
        self._targets = targets

    def observe(self, value: float, count: int = 1) -> None:
        # Histogram.observe's bucket: the first bound >= value (+Inf last).
        self._counts[bisect_left(self._bounds, value)] += count
        self._sum += value * count

    def flush(self) -> None:
        counts = self._counts
        if not any(counts):
            return
        for target in self._targets:
            # Whole bucket counts at once: what as many Histogram.observe calls would add.
            for bucket, count in zip(target._buckets, counts, strict=True):
                if count:
                    bucket.inc(count)
            target._sum.inc(self._sum)
        self._counts = [0] * len(counts)
        self._sum = 0.0


class _Counters:
    """Counter increments by label values, held until the next flush."""

    __slots__ = ("_family", "_pending")

    def __init__(self, family: Counter, precreated: Sequence[tuple[str, ...]] = ()) -> None:
        self._family = family
        self._pending: dict[tuple[str, ...], float] = {}
        for labels in precreated:
            family.labels(*labels)

    def add(self, labels: tuple[str, ...]) -> None:
        pending = self._pending
        pending[labels] = pending.get(labels, 0.0) + 1.0

    def flush(self) -> None:
        pending, self._pending = self._pending, {}
        for labels, amount in pending.items():
            self._family.labels(*labels).inc(amount)


class Metrics:
    """One worker's metrics. ``enabled`` False (``--disable-metrics``) records nothing."""

    def __init__(self, settings: Settings, scheduler: Scheduler) -> None:
        self.enabled = settings.metrics
        self._scheduler = scheduler
        self._multiproc_dir = os.environ.get(MULTIPROC_ENV)
        # KV usage as a share of all workers' capacity, so that summing workers gives the total.
        self._kv_capacity = (
            settings.scheduler.batch_size * settings.max_model_len * settings.workers
        )
        self.registry = registry = CollectorRegistry()
        engine = (settings.model, ENGINE)

        def gauge(name: str, documentation: str) -> Gauge:
            family = Gauge(
                name, documentation, VLLM_LABELS, registry=registry, multiprocess_mode="livesum"
            )
            return family.labels(*engine)

        def counter(name: str, documentation: str) -> Counter:
            return Counter(name, documentation, VLLM_LABELS, registry=registry).labels(*engine)

        def histogram(buckets: Sequence[float], *families: tuple[str, str]) -> _Histogram:
            """One set of observations shown under each of ``families`` (name, help)."""
            targets = [
                Histogram(name, help_, VLLM_LABELS, buckets=buckets, registry=registry).labels(
                    *engine
                )
                for name, help_ in families
            ]
            return _Histogram(buckets, targets)

        # vLLM 0.11's names, help texts, buckets and order (prometheus_client adds _total).
        self._running = gauge(
            "vllm:num_requests_running", "Number of requests in model execution batches."
        )
        self._waiting = gauge(
            "vllm:num_requests_waiting", "Number of requests waiting to be processed."
        )
        self._kv_usage = gauge(
            "vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage."
        )
        # No prefix is ever cached here: queries are the prompt tokens, hits stay 0.
        self._prefix_queries = counter(
            "vllm:prefix_cache_queries",
            "Prefix cache queries, in terms of number of queried tokens.",
        )
        counter("vllm:prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens.")
        counter("vllm:num_preemptions", "Cumulative number of preemption from the engine.")
        self._prompt_tokens_total = counter(
            "vllm:prompt_tokens", "Number of prefill tokens processed."
        )
        self._generation_tokens_total = counter(
            "vllm:generation_tokens", "Number of generation tokens processed."
        )
        success = Counter(
            "vllm:request_success",
            "Count of successfully processed requests.",
            (*VLLM_LABELS, "finished_reason"),
            registry=registry,
        )
        self._success_labels = {reason: (*engine, reason) for reason in FINISH_REASONS}
        self._success = _Counters(success, list(self._success_labels.values()))

        tokens = token_buckets(settings.max_model_len)
        self._prompt_tokens = histogram(
            tokens, ("vllm:request_prompt_tokens", "Number of prefill tokens processed.")
        )
        self._generation_tokens = histogram(
            tokens, ("vllm:request_generation_tokens", "Number of generation tokens processed.")
        )
        self._max_tokens = histogram(
            tokens,
            (
                "vllm:request_max_num_generation_tokens",
                "Histogram of maximum number of requested generation tokens.",
            ),
            ("vllm:request_params_max_tokens", "Histogram of the max_tokens request parameter."),
        )
        self._n = histogram(
            N_BUCKETS, ("vllm:request_params_n", "Histogram of the n request parameter.")
        )
        self._ttft = histogram(
            TTFT_BUCKETS,
            ("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds."),
        )
        self._itl = histogram(
            TOKEN_LATENCY_BUCKETS,
            (
                "vllm:time_per_output_token_seconds",
                "Histogram of time per output token in seconds."
                "DEPRECATED: Use vllm:inter_token_latency_seconds instead.",
            ),
            ("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds."),
        )
        self._request_tpot = histogram(
            TOKEN_LATENCY_BUCKETS,
            (
                "vllm:request_time_per_output_token_seconds",
                "Histogram of time_per_output_token_seconds per request.",
            ),
        )
        self._e2e, self._queue, self._inference, self._prefill, self._decode = (
            histogram(REQUEST_LATENCY_BUCKETS, (f"vllm:{name}", help_))
            for name, help_ in (
                ("e2e_request_latency_seconds", "Histogram of e2e request latency in seconds."),
                (
                    "request_queue_time_seconds",
                    "Histogram of time spent in WAITING phase for request.",
                ),
                (
                    "request_inference_time_seconds",
                    "Histogram of time spent in RUNNING phase for request.",
                ),
                (
                    "request_prefill_time_seconds",
                    "Histogram of time spent in PREFILL phase for request.",
                ),
                (
                    "request_decode_time_seconds",
                    "Histogram of time spent in DECODE phase for request.",
                ),
            )
        )
        self._histograms = (
            self._prompt_tokens,
            self._generation_tokens,
            self._max_tokens,
            self._n,
            self._ttft,
            self._itl,
            self._request_tpot,
            self._e2e,
            self._queue,
            self._inference,
            self._prefill,
            self._decode,
        )

        self._requests = _Counters(
            Counter(
                "dummy_vllm:requests",
                "HTTP requests answered, by route template and status code.",
                ("route", "status"),
                registry=registry,
            )
        )
        self._faults = _Counters(
            Counter(
                "dummy_vllm:faults_injected",
                "Faults injected (--fault-rate or X-Dummy-Fault), by type.",
                ("type",),
                registry=registry,
            ),
            [(kind.value,) for kind in FaultType],
        )
        self._replay = _Counters(
            Counter(
                "dummy_vllm:replay_requests",
                "Replayed requests by outcome: exact or relaxed hits, misses by policy.",
                ("kind",),
                registry=registry,
            ),
            [(kind,) for kind in REPLAY_KINDS] if settings.replay is not None else (),
        )
        self._counters = (self._success, self._requests, self._faults, self._replay)
        self._pending_prompt_tokens = 0
        self._pending_generation_tokens = 0

    # --- recording: called per request, so plain arithmetic only -----------------------------

    def http_response(self, route: str | None, status: int) -> None:
        if self.enabled:
            self._requests.add((route or UNMATCHED_ROUTE, str(status)))

    def fault_injected(self, kind: FaultType) -> None:
        if self.enabled:
            self._faults.add((kind.value,))

    def replay_served(self, kind: str) -> None:
        """Replay outcome: exact, relaxed, miss_error, miss_synthetic or miss_profile."""
        if self.enabled:
            self._replay.add((kind,))

    def request_finished(
        self, plan: ResponsePlan, delivery: Delivery, arrival: float, admitted: float
    ) -> None:
        """A delivered (or abandoned) answer, in vLLM's terms. Times are loop times.

        TTFT is the first write carrying a token minus arrival; ITL the gaps between such
        writes; e2e the last write minus arrival; queue time admission minus arrival; prefill
        the first token minus admission; decode the last token minus the first. A non-streamed
        answer has one observed time, its body's: its first token is placed where the plan had
        it due, and its ITL is observed as the mean gap, once per token step after the first.
        """
        if not self.enabled:
            return
        tokens = delivery.tokens
        end = delivery.end
        writes = delivery.token_writes
        if plan.stream:
            first = writes[0] if writes else None
            last = writes[-1] if writes else end
            itl = self._itl
            for previous, current in pairwise(writes):
                itl.observe(current - previous)
        else:
            steps = len(plan.token_offsets)
            first = min(admitted + plan.token_offsets[0], end) if steps else end
            last = end
            if steps > 1 and delivery.complete:
                self._itl.observe((last - first) / (steps - 1), steps - 1)
        if first is not None:
            self._ttft.observe(first - arrival)
            self._prefill.observe(first - admitted)
            decode = last - first
            self._decode.observe(decode)
            if tokens > 1:
                self._request_tpot.observe(decode / (tokens - 1))
        self._e2e.observe(end - arrival)
        self._queue.observe(admitted - arrival)
        self._inference.observe(last - admitted)
        self._prompt_tokens.observe(plan.prompt_tokens)
        self._generation_tokens.observe(tokens)
        self._n.observe(plan.n)
        if plan.max_tokens:
            self._max_tokens.observe(plan.max_tokens)
        self._pending_prompt_tokens += plan.prompt_tokens
        self._pending_generation_tokens += tokens
        labels = self._success_labels
        reasons = plan.finish_reasons
        for reason in reasons if delivery.complete else (ABORTED,) * len(reasons):
            self._success.add(labels.get(reason, labels["stop"]))

    # --- flushing and exposition --------------------------------------------------------------

    def flush(self) -> None:
        """Push what requests recorded into prometheus_client, and the scheduler's gauges."""
        scheduler = self._scheduler
        self._running.set(scheduler.running)
        self._waiting.set(scheduler.waiting)
        self._kv_usage.set(min(scheduler.kv_tokens / self._kv_capacity, 1.0))
        if self._pending_prompt_tokens:
            self._prompt_tokens_total.inc(self._pending_prompt_tokens)
            self._prefix_queries.inc(self._pending_prompt_tokens)
            self._pending_prompt_tokens = 0
        if self._pending_generation_tokens:
            self._generation_tokens_total.inc(self._pending_generation_tokens)
            self._pending_generation_tokens = 0
        for histogram in self._histograms:
            histogram.flush()
        for counters in self._counters:
            counters.flush()

    async def flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            self.flush()

    def exposition(self) -> bytes:
        """The text a scrape gets: this worker's registry, or every worker's files."""
        self.flush()
        if self._multiproc_dir is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self._multiproc_dir)  # type: ignore[no-untyped-call]
        return generate_latest(registry)

    def close(self) -> None:
        """A stopping worker: flush, and drop its live gauges from the sums."""
        self.flush()
        if self._multiproc_dir is not None:
            mark_process_dead(os.getpid(), self._multiproc_dir)  # type: ignore[no-untyped-call]
