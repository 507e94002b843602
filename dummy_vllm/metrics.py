"""vLLM's Prometheus metrics, summed over Sanic workers and kept off the hot path.

A request only updates plain in-process accumulators (float adds and a bisect per histogram);
a scrape turns them into metric families through prometheus_client's custom-collector API
(``Metrics.collect``). With several workers, the main process makes a directory for them
(``shared_metrics_dir``); each worker leaves there a snapshot of its cumulative figures every
``FLUSH_SECONDS``, before it answers a scrape and when it stops, and a scrape sums every
worker's snapshot, so it sees the other workers' traffic up to ``FLUSH_SECONDS`` late. A stopped
worker's last snapshot has no gauges: its counts stay in the sums, its requests and KV usage
leave them. ``_created`` series are absent then, as with vLLM's ``--api-server-count`` > 1
(prometheus_client's multiprocess mode there).

Values are what clients saw: a stream's times are taken as the emitter writes (see
``Metrics.request_finished``). Each worker is one engine as far as the gauges go: running and
waiting requests and KV usage are sums over workers.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import threading
import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import accumulate, islice
from operator import sub
from pathlib import Path
from typing import Literal

from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from .emit import Delivery
from .plan import ABORTED, ResponsePlan
from .protocol.profiles import DEFAULT_PROFILE, Profile
from .scheduler import Scheduler
from .settings import FaultType

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
FLUSH_SECONDS = 0.1
ENGINE = "0"
VLLM_LABELS = ("model_name", "engine")
# vLLM 0.11's engine finish reasons; the API's "tool_calls" is the engine's "stop".
# Help texts of the metrics whose presence depends on the era (0.8.5 and 0.11 loggers.py).
_HELP = {
    "vllm:gpu_cache_usage_perc": "GPU KV-cache usage. 1 means 100 percent usage.",
    "vllm:kv_cache_usage_perc": "KV-cache usage. 1 means 100 percent usage.",
    "vllm:gpu_prefix_cache_queries": "GPU prefix cache queries, in terms of number of queried "
    "blocks.",
    "vllm:gpu_prefix_cache_hits": "GPU prefix cache hits, in terms of number of cached blocks.",
    "vllm:prefix_cache_queries": "Prefix cache queries, in terms of number of queried tokens.",
    "vllm:prefix_cache_hits": "Prefix cache hits, in terms of number of cached tokens.",
    "tpot": "Histogram of time per output token in seconds.",
    "tpot_deprecated": "Histogram of time per output token in seconds."
    "DEPRECATED: Use vllm:inter_token_latency_seconds instead.",
    "vllm:inter_token_latency_seconds": "Histogram of inter-token latency in seconds.",
}
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

Labels = tuple[str, ...]
# One series: a counter's or gauge's value, or a histogram's bucket counts (+Inf last, not
# cumulative) followed by its sum. Summing workers adds them element by element.
Figures = list[float]
# Every family's series by family name: what a worker leaves for the others.
Snapshot = dict[str, dict[Labels, Figures]]


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
def shared_metrics_dir(enabled: bool, workers: int) -> Iterator[Path | None]:
    """Main process, around the server's life: with several workers, a fresh directory for
    their snapshots, removed at the end; ``None`` when there is nothing to share."""
    if not enabled or workers < 2:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="dummy-vllm-metrics-") as path:
        yield Path(path)


def worker_snapshots(directory: Path) -> list[Snapshot]:
    """The last snapshot of every worker that wrote one in ``directory``."""
    return [
        {
            name: {tuple(labels): figures for labels, figures in rows}
            for name, rows in json.loads(path.read_bytes()).items()
        }
        for path in sorted(directory.glob("*.json"))
    ]


def _summed(snapshots: Sequence[Snapshot]) -> Snapshot:
    total: Snapshot = {}
    for snapshot in snapshots:
        for name, series in snapshot.items():
            family = total.setdefault(name, {})
            for labels, figures in series.items():
                if labels in family:
                    family[labels] = [a + b for a, b in zip(family[labels], figures, strict=True)]
                else:
                    family[labels] = figures
    return total


@dataclass(frozen=True, slots=True)
class _Family:
    """One metric family as prometheus_client shows it, and where this worker's series are."""

    name: str
    documentation: str
    kind: Literal["counter", "gauge", "histogram"]
    labelnames: tuple[str, ...]
    # This worker's series now.
    read: Callable[[], dict[Labels, Figures]]
    # Unix time each series appeared (counters and histograms), for the ``_created`` samples.
    created: Mapping[Labels, float]
    # A histogram's ``le`` label values, +Inf last.
    bounds: tuple[str, ...] = ()

    def metric(self, series: Mapping[Labels, Figures], with_created: bool) -> Metric:
        metric: Metric
        if self.kind == "gauge":
            metric = GaugeMetricFamily(self.name, self.documentation, labels=self.labelnames)
            for labels, (value,) in series.items():
                metric.add_metric(labels, value)
        elif self.kind == "counter":
            metric = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
            for labels, (value,) in series.items():
                created = self.created[labels] if with_created else None
                metric.add_metric(labels, value, created=created)
        else:
            metric = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
            for labels, figures in series.items():
                cumulative = zip(self.bounds, accumulate(figures[:-1]), strict=True)
                metric.add_metric(labels, list(cumulative), figures[-1])
                if with_created:
                    label_dict = dict(zip(self.labelnames, labels, strict=True))
                    metric.add_sample(f"{self.name}_created", label_dict, self.created[labels])
        return metric


class _Histogram:
    """Bucket counts and sum of the observations so far."""

    __slots__ = ("_bounds", "_counts", "_sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self._bounds = [float(bound) for bound in bounds]
        self._counts = [0] * (len(bounds) + 1)
        self._sum = 0.0

    def observe(self, value: float, count: int = 1) -> None:
        # prometheus_client's bucket: the first bound >= value (+Inf last).
        self._counts[bisect_left(self._bounds, value)] += count
        self._sum += value * count

    def figures(self) -> Figures:
        return [*self._counts, self._sum]


class _Counters:
    """Counter values by label values."""

    __slots__ = ("created", "values")

    def __init__(self, precreated: Sequence[Labels], now: float) -> None:
        self.values = dict.fromkeys(precreated, 0.0)
        self.created = dict.fromkeys(precreated, now)

    def add(self, labels: Labels) -> None:
        values = self.values
        if labels in values:
            values[labels] += 1.0
        else:
            values[labels] = 1.0
            self.created[labels] = time.time()

    def series(self) -> dict[Labels, Figures]:
        return {labels: [value] for labels, value in self.values.items()}


class Metrics:
    """One worker's metrics. ``enabled`` False (``--disable-metrics``) records nothing.

    ``kv_capacity`` is in tokens; ``replay`` shows the replay outcomes from the start;
    ``directory`` is where workers leave their snapshots (``shared_metrics_dir``), ``None`` for
    a single worker.
    """

    def __init__(
        self,
        scheduler: Scheduler,
        *,
        enabled: bool,
        model: str,
        max_model_len: int,
        kv_capacity: int,
        replay: bool,
        directory: Path | None,
        profile: Profile = DEFAULT_PROFILE,
        record: bool = False,
    ) -> None:
        self.enabled = enabled
        # This worker's file among the other workers'.
        self._snapshot = directory / f"{os.getpid()}.json" if directory is not None else None
        self._written = ""
        self._prompt_tokens_total = 0
        self._generation_tokens_total = 0
        now = time.time()
        engine: Labels = (model, ENGINE)
        engine_created = {engine: now}
        families: list[_Family] = []

        def gauge(name: str, documentation: str, value: Callable[[], float]) -> None:
            families.append(
                _Family(name, documentation, "gauge", VLLM_LABELS, lambda: {engine: [value()]}, {})
            )

        def counter(name: str, documentation: str, value: Callable[[], float]) -> None:
            families.append(
                _Family(
                    name,
                    documentation,
                    "counter",
                    VLLM_LABELS,
                    lambda: {engine: [value()]},
                    engine_created,
                )
            )

        def counters(
            name: str,
            documentation: str,
            labelnames: tuple[str, ...],
            precreated: Sequence[Labels] = (),
        ) -> _Counters:
            values = _Counters(precreated, now)
            families.append(
                _Family(name, documentation, "counter", labelnames, values.series, values.created)
            )
            return values

        def histogram(buckets: Sequence[float], *shown_as: tuple[str, str]) -> _Histogram:
            """One set of observations shown under each of ``shown_as`` (name, help)."""
            observations = _Histogram(buckets)
            # prometheus_client's own Histogram's ``le`` values.
            le = (floatToGoString(bound) for bound in buckets)  # type: ignore[no-untyped-call]
            bounds = (*le, "+Inf")
            for name, documentation in shown_as:
                families.append(
                    _Family(
                        name,
                        documentation,
                        "histogram",
                        VLLM_LABELS,
                        lambda: {engine: observations.figures()},
                        engine_created,
                        bounds,
                    )
                )
            return observations

        # vLLM's names, help texts, buckets and order, as ``profile``'s era has them
        # (prometheus_client adds _total).
        gauge(
            "vllm:num_requests_running",
            "Number of requests in model execution batches.",
            lambda: scheduler.running,
        )
        gauge(
            "vllm:num_requests_waiting",
            "Number of requests waiting to be processed.",
            lambda: scheduler.waiting,
        )
        for name in profile.kv_cache_usage_metrics:
            gauge(name, _HELP[name], lambda: min(scheduler.kv_tokens / kv_capacity, 1.0))
        # No prefix is ever cached here: queries are the prompt tokens, hits stay 0.
        for prefix in profile.prefix_cache_metric_prefixes:
            counter(
                f"{prefix}_queries", _HELP[f"{prefix}_queries"], lambda: self._prompt_tokens_total
            )
            counter(f"{prefix}_hits", _HELP[f"{prefix}_hits"], lambda: 0.0)
        counter(
            "vllm:num_preemptions",
            "Cumulative number of preemption from the engine.",
            lambda: 0.0,
        )
        counter(
            "vllm:prompt_tokens",
            "Number of prefill tokens processed.",
            lambda: self._prompt_tokens_total,
        )
        counter(
            "vllm:generation_tokens",
            "Number of generation tokens processed.",
            lambda: self._generation_tokens_total,
        )
        self._success_labels = {reason: (*engine, reason) for reason in profile.finished_reasons}
        self._success = counters(
            "vllm:request_success",
            "Count of successfully processed requests.",
            (*VLLM_LABELS, "finished_reason"),
            list(self._success_labels.values()),
        )

        tokens = token_buckets(max_model_len)
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
        itl_families: list[tuple[str, str]] = []
        if profile.time_per_output_token_metric:
            # Until the ITL histogram existed, TPOT's help did not call itself deprecated.
            deprecated = profile.inter_token_latency_metric
            tpot_help = _HELP["tpot_deprecated" if deprecated else "tpot"]
            itl_families.append(("vllm:time_per_output_token_seconds", tpot_help))
        if profile.inter_token_latency_metric:
            name = "vllm:inter_token_latency_seconds"
            itl_families.append((name, _HELP[name]))
        self._itl = histogram(TOKEN_LATENCY_BUCKETS, *itl_families)
        request_tpot = (
            "vllm:request_time_per_output_token_seconds",
            "Histogram of time_per_output_token_seconds per request.",
        )
        self._request_tpot = histogram(
            TOKEN_LATENCY_BUCKETS,
            *([request_tpot] if profile.request_time_per_output_token_metric else []),
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

        self._requests = counters(
            "dummy_vllm:requests",
            "HTTP requests answered, by route template and status code.",
            ("route", "status"),
        )
        self._faults = counters(
            "dummy_vllm:faults_injected",
            "Faults injected (--fault-rate or X-Dummy-Fault), by type.",
            ("type",),
            [(kind.value,) for kind in FaultType],
        )
        self._replay = counters(
            "dummy_vllm:replay_requests",
            "Replayed requests by outcome: exact or relaxed hits, misses by policy.",
            ("kind",),
            [(kind,) for kind in REPLAY_KINDS] if replay else (),
        )
        self._recordings = counters(
            "dummy_vllm:recorded_exchanges",
            "Record mode's exchanges by what became of them: stored, or lost (answered, but the "
            "database refused them).",
            ("result",),
            [("stored",), ("lost",)] if record else (),
        )
        self._families = families
        self._replay_lock = threading.Lock()

    # --- recording: called per request, so plain arithmetic only -----------------------------

    def http_response(self, route: str | None, status: int) -> None:
        if self.enabled:
            self._requests.add((route or UNMATCHED_ROUTE, str(status)))

    def fault_injected(self, kind: FaultType) -> None:
        if self.enabled:
            self._faults.add((kind.value,))

    def replay_served(self, kind: str) -> None:
        """Replay outcome: exact, relaxed, miss_error, miss_synthetic or miss_profile. Called
        by the responder, which may run on the worker's offload thread: locked."""
        if self.enabled:
            with self._replay_lock:
                self._replay.add((kind,))

    def exchange_recorded(self, stored: bool) -> None:
        if self.enabled:
            self._recordings.add(("stored" if stored else "lost",))

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
        # A pooling answer counts once per input, as vLLM's engine requests.
        copies = len(plan.pooled_prompts) or 1
        if plan.stream:
            first = writes[0] if writes else None
            last = writes[-1] if writes else end
            # Streams on one clock write at the same few gaps: each distinct gap observed once.
            itl = self._itl
            for gap, count in Counter(map(sub, islice(writes, 1, None), writes)).items():
                itl.observe(gap, count)
        else:
            steps = len(plan.token_offsets)
            first = min(admitted + plan.token_offsets[0], end) if steps else end
            last = end
            if steps > 1 and delivery.complete:
                self._itl.observe((last - first) / (steps - 1), steps - 1)
        if first is not None:
            self._ttft.observe(first - arrival, copies)
            self._prefill.observe(first - admitted, copies)
            decode = last - first
            self._decode.observe(decode, copies)
            if tokens > 1:
                self._request_tpot.observe(decode / (tokens - 1))
        self._e2e.observe(end - arrival, copies)
        self._queue.observe(admitted - arrival, copies)
        self._inference.observe(last - admitted, copies)
        for prompt_tokens in plan.pooled_prompts or (plan.prompt_tokens,):
            self._prompt_tokens.observe(prompt_tokens)
        self._generation_tokens.observe(tokens, copies)
        self._n.observe(plan.n, copies)
        if plan.max_tokens:
            self._max_tokens.observe(plan.max_tokens)
        self._prompt_tokens_total += plan.prompt_tokens
        self._generation_tokens_total += tokens
        labels = self._success_labels
        reasons = plan.finish_reasons
        for reason in reasons if delivery.complete else (ABORTED,) * len(reasons):
            self._success.add(labels.get(reason, labels["stop"]))

    # --- exposition and snapshots -------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        """prometheus_client's collector interface: this worker's families, or with several
        workers the sums of their snapshots."""
        if self._snapshot is None:
            for family in self._families:
                yield family.metric(family.read(), with_created=True)
            return
        self._write_snapshot(live=True)
        total = _summed(worker_snapshots(self._snapshot.parent))
        for family in self._families:
            series = total.get(family.name)
            # As prometheus_client's multiprocess mode, which stores series, not families.
            if series:
                yield family.metric(series, with_created=False)

    def exposition(self) -> bytes:
        """The text a scrape gets."""
        return generate_latest(self)

    def _write_snapshot(self, live: bool) -> None:
        if self._snapshot is None:
            return
        text = json.dumps(
            {
                family.name: list(family.read().items())
                for family in self._families
                if live or family.kind != "gauge"
            }
        )
        if text == self._written:
            return
        # Readers see the previous snapshot or this one, never a part.
        partial = self._snapshot.with_suffix(".tmp")
        partial.write_text(text)
        os.replace(partial, self._snapshot)
        self._written = text

    async def flush_periodically(self) -> None:
        if self._snapshot is None:
            return
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            self._write_snapshot(live=True)

    def close(self) -> None:
        """A stopping worker: its last snapshot, without the gauges it no longer adds to."""
        self._write_snapshot(live=False)
