"""The /metrics exposition against the wire contract (section 6), and what requests record.

Most of these use one worker on its own; the last ones share a directory with other worker
processes, and tests/test_live_realism.py checks the sums over a live server's workers.
"""

from __future__ import annotations

import multiprocessing
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from sanic import Sanic

from dummy_vllm.emit import Delivery
from dummy_vllm.metrics import N_BUCKETS, Metrics, token_buckets
from dummy_vllm.plan import ResponsePlan
from dummy_vllm.protocol.profiles import DEFAULT_PROFILE, V0_8, V0_11, V0_14, V0_17, V0_33, Profile
from dummy_vllm.scheduler import Scheduler
from dummy_vllm.settings import FaultType, SchedulerSettings

TTFT = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5]
TTFT += [10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0]
TOKEN_LATENCY = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0]
TOKEN_LATENCY += [7.5, 10.0, 20.0, 40.0, 80.0]
REQUEST_LATENCY = [0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0]
REQUEST_LATENCY += [60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0]
TOKENS_2048 = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000]

# name -> (type, bucket bounds for histograms) as the contract lists them.
CONTRACT: dict[str, tuple[str, list[float] | None]] = {
    "vllm:num_requests_running": ("gauge", None),
    "vllm:num_requests_waiting": ("gauge", None),
    "vllm:kv_cache_usage_perc": ("gauge", None),
    "vllm:prefix_cache_queries": ("counter", None),
    "vllm:prefix_cache_hits": ("counter", None),
    "vllm:num_preemptions": ("counter", None),
    "vllm:prompt_tokens": ("counter", None),
    "vllm:generation_tokens": ("counter", None),
    "vllm:request_success": ("counter", None),
    "vllm:request_prompt_tokens": ("histogram", TOKENS_2048),
    "vllm:request_generation_tokens": ("histogram", TOKENS_2048),
    "vllm:request_max_num_generation_tokens": ("histogram", TOKENS_2048),
    "vllm:request_params_max_tokens": ("histogram", TOKENS_2048),
    "vllm:request_params_n": ("histogram", [1, 2, 5, 10, 20]),
    "vllm:time_to_first_token_seconds": ("histogram", TTFT),
    "vllm:time_per_output_token_seconds": ("histogram", TOKEN_LATENCY),
    "vllm:inter_token_latency_seconds": ("histogram", TOKEN_LATENCY),
    "vllm:request_time_per_output_token_seconds": ("histogram", TOKEN_LATENCY),
    "vllm:e2e_request_latency_seconds": ("histogram", REQUEST_LATENCY),
    "vllm:request_queue_time_seconds": ("histogram", REQUEST_LATENCY),
    "vllm:request_inference_time_seconds": ("histogram", REQUEST_LATENCY),
    "vllm:request_prefill_time_seconds": ("histogram", REQUEST_LATENCY),
    "vllm:request_decode_time_seconds": ("histogram", REQUEST_LATENCY),
}


def make_metrics(
    *,
    enabled: bool = True,
    max_model_len: int = 2048,
    kv_capacity: int = 256 * 2048,
    replay: bool = False,
    directory: Path | None = None,
    profile: Profile = DEFAULT_PROFILE,
) -> tuple[Metrics, Scheduler]:
    scheduler = Scheduler(SchedulerSettings())
    metrics = Metrics(
        scheduler,
        enabled=enabled,
        model="m",
        max_model_len=max_model_len,
        kv_capacity=kv_capacity,
        replay=replay,
        directory=directory,
        profile=profile,
    )
    return metrics, scheduler


def scrape(metrics: Metrics) -> dict[str, Any]:
    return {
        family.name: family
        for family in text_string_to_metric_families(metrics.exposition().decode())
    }


def samples(family: Any, suffix: str = "", **labels: str) -> list[Sample]:
    return [
        s
        for s in family.samples
        if s.name == family.name + suffix and all(s.labels.get(k) == v for k, v in labels.items())
    ]


def value(family: Any, suffix: str = "", **labels: str) -> float:
    (sample,) = samples(family, suffix, **labels)
    return float(sample.value)


def test_names_types_labels_and_buckets_follow_the_contract() -> None:
    families = scrape(make_metrics()[0])
    for name, (kind, buckets) in CONTRACT.items():
        family = families[name]
        assert family.type == kind, name
        for sample in family.samples:
            assert sample.labels["model_name"] == "m"
            assert sample.labels["engine"] == "0"
            extra = set(sample.labels) - {"model_name", "engine"}
            if name == "vllm:request_success":
                assert extra == {"finished_reason"}
            elif sample.name.endswith("_bucket"):
                assert extra == {"le"}
            else:
                assert not extra, sample
        if buckets is not None:
            bounds = [s.labels["le"] for s in samples(family, "_bucket")]
            assert bounds == [str(float(b)) for b in buckets] + ["+Inf"], name
    # One worker: the single-process exposition, with vLLM's _created gauge families.
    assert families["vllm:request_success_created"].type == "gauge"
    assert families["vllm:time_to_first_token_seconds_created"].type == "gauge"


def test_series_exist_before_any_traffic() -> None:
    families = scrape(make_metrics()[0])
    success = families["vllm:request_success"]
    for reason in ("stop", "length", "abort"):
        assert value(success, "_total", finished_reason=reason) == 0.0
    assert value(families["vllm:time_to_first_token_seconds"], "_count") == 0.0
    assert value(families["vllm:num_requests_running"]) == 0.0
    faults = families["dummy_vllm:faults_injected"]
    assert {s.labels["type"] for s in samples(faults, "_total")} == {k.value for k in FaultType}
    # Replay outcomes show only when replaying.
    assert not samples(families["dummy_vllm:replay_requests"], "_total")


def test_exposition_text_is_prometheus_0_0_4() -> None:
    text = make_metrics()[0].exposition().decode()
    assert "# TYPE vllm:request_success_total counter\n" in text
    assert "# TYPE vllm:time_to_first_token_seconds histogram\n" in text
    assert (
        'vllm:request_success_total{engine="0",finished_reason="stop",model_name="m"} 0.0' in text
    )
    assert "# EOF" not in text


def stream_delivery(writes: list[float], complete: bool = True) -> Delivery:
    return Delivery(token_writes=writes, tokens=len(writes), end=writes[-1], complete=complete)


def test_a_stream_records_what_the_client_saw() -> None:
    metrics, _ = make_metrics()
    plan = ResponsePlan(
        stream=True, prompt_tokens=7, completion_tokens=4, finish_reasons=("length",), max_tokens=4
    )
    # Arrived at 10.0, admitted at 10.5, tokens written at 10.9, 11.0, 11.1, 11.3.
    metrics.request_finished(plan, stream_delivery([10.9, 11.0, 11.1, 11.3]), 10.0, 10.5)
    families = scrape(metrics)
    assert value(families["vllm:time_to_first_token_seconds"], "_sum") == pytest.approx(0.9)
    itl = families["vllm:inter_token_latency_seconds"]
    assert value(itl, "_count") == 3
    assert value(itl, "_sum") == pytest.approx(0.4)
    assert value(itl, "_bucket", le="0.1") == 2  # two gaps of 0.1 s, one of 0.2 s
    assert value(families["vllm:time_per_output_token_seconds"], "_count") == 3
    assert value(families["vllm:e2e_request_latency_seconds"], "_sum") == pytest.approx(1.3)
    assert value(families["vllm:request_queue_time_seconds"], "_sum") == pytest.approx(0.5)
    assert value(families["vllm:request_prefill_time_seconds"], "_sum") == pytest.approx(0.4)
    assert value(families["vllm:request_decode_time_seconds"], "_sum") == pytest.approx(0.4)
    assert value(families["vllm:request_inference_time_seconds"], "_sum") == pytest.approx(0.8)
    tpot = families["vllm:request_time_per_output_token_seconds"]
    assert value(tpot, "_sum") == pytest.approx(0.4 / 3)
    assert value(families["vllm:prompt_tokens"], "_total") == 7
    assert value(families["vllm:prefix_cache_queries"], "_total") == 7
    assert value(families["vllm:generation_tokens"], "_total") == 4
    assert value(families["vllm:request_generation_tokens"], "_bucket", le="5.0") == 1
    assert value(families["vllm:request_params_max_tokens"], "_sum") == 4
    assert value(families["vllm:request_params_n"], "_sum") == 1
    assert value(families["vllm:request_success"], "_total", finished_reason="length") == 1


def test_a_non_streamed_answer_places_its_tokens_where_the_plan_had_them() -> None:
    metrics, _ = make_metrics()
    plan = ResponsePlan(
        stream=False,
        body_offset=0.4,
        prompt_tokens=3,
        completion_tokens=5,
        finish_reasons=("stop",),
        token_offsets=[0.2, 0.25, 0.3, 0.35, 0.4],
    )
    delivery = Delivery(tokens=5, end=1.41, complete=True)  # the body went out 10 ms late
    metrics.request_finished(plan, delivery, 0.9, 1.0)
    families = scrape(metrics)
    assert value(families["vllm:time_to_first_token_seconds"], "_sum") == pytest.approx(0.3)
    itl = families["vllm:inter_token_latency_seconds"]
    assert value(itl, "_count") == 4
    assert value(itl, "_sum") == pytest.approx(0.21)
    assert value(families["vllm:e2e_request_latency_seconds"], "_sum") == pytest.approx(0.51)
    assert value(families["vllm:request_success"], "_total", finished_reason="stop") == 1


def test_abandoned_requests_count_as_aborted_with_the_tokens_sent() -> None:
    metrics, _ = make_metrics()
    plan = ResponsePlan(stream=True, completion_tokens=10, finish_reasons=("length", "length"))
    metrics.request_finished(plan, stream_delivery([0.1, 0.2], complete=False), 0.0, 0.0)
    families = scrape(metrics)
    success = families["vllm:request_success"]
    assert value(success, "_total", finished_reason="abort") == 2
    assert value(success, "_total", finished_reason="length") == 0
    assert value(families["vllm:generation_tokens"], "_total") == 2


def test_product_counters_and_gauges() -> None:
    # Two workers' KV capacity, each with max_num_seqs 4 and max_model_len 100.
    metrics, scheduler = make_metrics(max_model_len=100, kv_capacity=2 * 4 * 100, replay=True)
    metrics.http_response("/v1/completions", 200)
    metrics.http_response("/v1/completions", 200)
    metrics.http_response(None, 404)
    metrics.fault_injected(FaultType.CUT)
    metrics.replay_served("exact")
    metrics.replay_served("miss_synthetic")
    scheduler.running, scheduler.kv_tokens = 3, 200
    families = scrape(metrics)
    requests = families["dummy_vllm:requests"]
    assert value(requests, "_total", route="/v1/completions", status="200") == 2
    assert value(requests, "_total", route="unmatched", status="404") == 1
    assert value(families["dummy_vllm:faults_injected"], "_total", type="cut") == 1
    replay = families["dummy_vllm:replay_requests"]
    assert value(replay, "_total", kind="exact") == 1
    assert value(replay, "_total", kind="relaxed") == 0
    assert value(replay, "_total", kind="miss_synthetic") == 1
    assert value(families["vllm:num_requests_running"]) == 3
    # This worker's share of both workers' KV capacity.
    assert value(families["vllm:kv_cache_usage_perc"]) == pytest.approx(0.25)


def test_disabled_metrics_record_nothing() -> None:
    metrics, _ = make_metrics(enabled=False)
    plan = ResponsePlan(stream=True, completion_tokens=1, finish_reasons=("stop",))
    metrics.request_finished(plan, stream_delivery([0.1]), 0.0, 0.0)
    metrics.http_response("/v1/completions", 200)
    families = scrape(metrics)
    assert value(families["vllm:request_success"], "_total", finished_reason="stop") == 0


def test_token_buckets_are_vllms_1_2_5_series() -> None:
    assert token_buckets(4096) == [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000]
    assert token_buckets(100) == [1, 2, 5, 10, 20, 50, 100]


def family_lines(text: str, *names: str) -> list[str]:
    """The lines of these families, their series and _created gauges; creation times blanked."""
    family = "|".join(map(re.escape, names))
    line = re.compile(rf"^(# (HELP|TYPE) )?({family})(_total|_created|_bucket|_count|_sum)?[ {{]")
    return [
        re.sub(r"^(\S+_created\{.*\}) \S+$", r"\1 T", text_line)
        for text_line in text.splitlines()
        if line.match(text_line)
    ]


def test_the_exposition_is_as_prometheus_clients_own_metrics_print_it() -> None:
    """Built from prometheus_client's public collector API, the text is what its Gauge,
    Histogram and Counter print for the same figures: sample names and order, sorted labels,
    float format, _created gauges."""
    metrics, scheduler = make_metrics()
    registry = CollectorRegistry()
    running = Gauge(
        "vllm:num_requests_running",
        "Number of requests in model execution batches.",
        ("model_name", "engine"),
        registry=registry,
    )
    n = Histogram(
        "vllm:request_params_n",
        "Histogram of the n request parameter.",
        ("model_name", "engine"),
        buckets=N_BUCKETS,
        registry=registry,
    )
    ttft = Histogram(
        "vllm:time_to_first_token_seconds",
        "Histogram of time to first token in seconds.",
        ("model_name", "engine"),
        buckets=TTFT,
        registry=registry,
    )
    requests = Counter(
        "dummy_vllm:requests",
        "HTTP requests answered, by route template and status code.",
        ("route", "status"),
        registry=registry,
    )
    running.labels("m", "0").set(2)
    scheduler.running = 2
    for first, choices in ((0.3, 1), (1e-7, 3), (3000.0, 50)):
        plan = ResponsePlan(stream=True, completion_tokens=1, finish_reasons=("stop",), n=choices)
        metrics.request_finished(plan, stream_delivery([first]), 0.0, 0.0)
        ttft.labels("m", "0").observe(first)
        n.labels("m", "0").observe(choices)
    for route, status in (("/v1/completions", 200), (None, 404), ("/v1/completions", 200)):
        metrics.http_response(route, status)
        requests.labels(route or "unmatched", str(status)).inc()
    names = (
        "vllm:num_requests_running",
        "vllm:request_params_n",
        "vllm:time_to_first_token_seconds",
        "dummy_vllm:requests",
    )
    ours = family_lines(metrics.exposition().decode(), *names)
    assert ours == family_lines(generate_latest(registry).decode(), *names)
    # The gauge; both histograms (6 and 23 buckets) and the counter's two series, each with
    # a _created family.
    assert len(ours) == 3 + (10 + 3) + (27 + 3) + (4 + 4)


def stopped_or_running_worker(directory: Path, running: int, stop: bool) -> None:
    """Another worker of the same server: one request answered and ``running`` in flight."""
    metrics, scheduler = make_metrics(directory=directory)
    plan = ResponsePlan(stream=True, completion_tokens=1, finish_reasons=("stop",))
    metrics.request_finished(plan, stream_delivery([0.1]), 0.0, 0.0)
    scheduler.running = running
    metrics.exposition()  # as any scrape, leaves this worker's snapshot for the others
    if stop:
        metrics.close()


def test_workers_are_summed_and_a_stopped_workers_gauges_drop_out(tmp_path: Path) -> None:
    spawn = multiprocessing.get_context("spawn")
    for running, stop in ((2, False), (4, True)):
        worker = spawn.Process(target=stopped_or_running_worker, args=(tmp_path, running, stop))
        worker.start()
        worker.join(timeout=30)
        assert worker.exitcode == 0
    metrics, scheduler = make_metrics(directory=tmp_path)
    scheduler.running = 1
    families = scrape(metrics)
    # This worker's 1 and the running worker's 2; the stopped worker's 4 are gone.
    assert value(families["vllm:num_requests_running"]) == 3
    # Counts stay, the stopped worker's included.
    assert value(families["vllm:request_success"], "_total", finished_reason="stop") == 2
    assert value(families["vllm:time_to_first_token_seconds"], "_count") == 2
    assert value(families["dummy_vllm:faults_injected"], "_total", type="cut") == 0
    # As vLLM with several API servers.
    assert not [name for name in families if name.endswith("_created")]


def test_metrics_route_in_process(make_app: Callable[..., Sanic]) -> None:
    app = make_app(model="m")
    for path in ("/metrics", "/metrics/"):
        _, response = app.test_client.get(path)
        assert response.status == 200
        assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        assert "vllm:num_requests_running" in response.text
    _, response = make_app(metrics=False).test_client.get("/metrics")
    assert response.status == 404


@pytest.mark.parametrize(
    ("profile", "present", "absent"),
    [
        # 0.8.5 v1/metrics/loggers.py: the gpu_ names, TPOT, no ITL.
        (
            V0_8,
            {"vllm:gpu_cache_usage_perc", "vllm:gpu_prefix_cache_queries_total",
             "vllm:time_per_output_token_seconds_count"},
            {"vllm:kv_cache_usage_perc", "vllm:inter_token_latency_seconds_count",
             "vllm:request_time_per_output_token_seconds_count"},
        ),
        # 0.11: new names, TPOT kept as deprecated beside ITL.
        (
            V0_11,
            {"vllm:kv_cache_usage_perc", "vllm:prefix_cache_queries_total",
             "vllm:time_per_output_token_seconds_count", "vllm:inter_token_latency_seconds_count"},
            {"vllm:gpu_cache_usage_perc", "vllm:gpu_prefix_cache_queries_total"},
        ),
        # 0.17+: TPOT gone.
        (
            V0_33,
            {"vllm:kv_cache_usage_perc", "vllm:inter_token_latency_seconds_count",
             "vllm:request_time_per_output_token_seconds_count"},
            {"vllm:time_per_output_token_seconds_count", "vllm:gpu_cache_usage_perc"},
        ),
    ],
)  # fmt: skip
def test_metric_names_follow_the_era(profile: Profile, present: set[str], absent: set[str]) -> None:
    metrics, _ = make_metrics(profile=profile)
    names = {line.split("{")[0] for line in metrics.exposition().decode().splitlines()}
    assert present <= names
    assert not absent & names


@pytest.mark.parametrize(
    ("profile", "reasons"),
    [
        (V0_11, ["abort", "length", "stop"]),
        (V0_14, ["abort", "error", "length", "stop"]),
        (V0_17, ["abort", "error", "length", "repetition", "stop"]),
    ],
)
def test_finished_reasons_precreated_by_era(profile: Profile, reasons: list[str]) -> None:
    metrics, _ = make_metrics(profile=profile)
    shown = re.findall(
        r'vllm:request_success_total\{[^}]*finished_reason="(\w+)"', metrics.exposition().decode()
    )
    assert sorted(shown) == reasons
