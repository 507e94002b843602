"""sessions import-bench on real vllm bench and GuideLLM results produced against this server
(tests/fixtures/bench/), and replaying the result with --on-miss profile."""

from __future__ import annotations

import asyncio
import itertools
import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from dummy_vllm.commands.sessions import sessions_app
from dummy_vllm.protocol.sse import event_data
from dummy_vllm.recording.replay import EventKind, classify
from dummy_vllm.recording.store import ExchangeRecord, Store

from ..conftest import LiveServer
from ..shapes import LATE_S, read_timed

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "bench"
VLLM_COMPLETIONS = FIXTURES / "vllm-bench-0.33-completions.json"
VLLM_CHAT = FIXTURES / "vllm-bench-0.33-chat.json"
GUIDELLM = FIXTURES / "guidellm-0.8.1-chat.json"


def import_bench(path: Path, db: Path, *args: str) -> list[ExchangeRecord]:
    result = CliRunner().invoke(
        sessions_app, ["import-bench", str(path), "--session", "b", "--db", str(db), *args]
    )
    assert result.exit_code == 0, result.output

    async def load() -> list[ExchangeRecord]:
        async with await Store.open(db) as store:
            return [x.record for x in await store.load_exchanges(["b"])]

    return asyncio.run(load())


def token_times(record: ExchangeRecord) -> list[float]:
    """Seconds of the events carrying text, as a benchmark client times them."""
    return [ns / 1e9 for ns, raw in record.events if classify(raw)[0] is EventKind.TOKEN]


def streamed_text(record: ExchangeRecord) -> str:
    pieces = []
    for _, raw in record.events:
        if classify(raw)[0] is EventKind.TOKEN:
            choice = json.loads(event_data(raw))["choices"][0]
            pieces.append(choice["delta"]["content"] if "delta" in choice else choice["text"])
    return "".join(pieces)


def test_vllm_bench_result_becomes_one_exchange_per_request(tmp_path: Path) -> None:
    result = json.loads(VLLM_COMPLETIONS.read_text())
    records = import_bench(VLLM_COMPLETIONS, tmp_path / "b.db")

    assert len(records) == result["completed"] == 100
    for i, record in enumerate(records):
        times = token_times(record)
        assert times[0] == pytest.approx(result["ttfts"][i], abs=1e-9)
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert gaps == pytest.approx(result["itls"][i], abs=1e-8)
        assert record.path == "/v1/completions"
        assert record.prompt_tokens == result["input_lens"][i]
        assert record.completion_tokens == result["output_lens"][i]
        assert record.complete_ns == pytest.approx(result["latencies"][i] * 1e9, abs=1)
        assert streamed_text(record) == result["generated_texts"][i]
        assert record.events[-1][1] == b"data: [DONE]\n\n"


def test_vllm_bench_chat_result_and_version(tmp_path: Path) -> None:
    result = json.loads(VLLM_CHAT.read_text())
    db = tmp_path / "b.db"
    records = import_bench(VLLM_CHAT, db, "--vllm-version", "0.33.1")

    assert result["backend"] == "openai-chat"
    assert {record.path for record in records} == {"/v1/chat/completions"}
    first = json.loads(event_data(records[0].events[0][1]))
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert first["model"] == "bench-model"
    listed = CliRunner().invoke(sessions_app, ["list", "--db", str(db)])
    assert "0.33.1" in listed.stdout


def test_guidellm_report_keeps_each_requests_ttft_and_itl(tmp_path: Path) -> None:
    report = json.loads(GUIDELLM.read_text())
    requests = report["benchmarks"][0]["requests"]["successful"]
    records = import_bench(GUIDELLM, tmp_path / "b.db")

    assert len(records) == len(requests) == 40
    ttfts, itls = [], []
    for request, record in zip(requests, records, strict=True):
        times = token_times(record)
        assert len(times) == request["info"]["timings"]["token_iterations"]
        ttfts.append(times[0] * 1000)
        itls.append((times[-1] - times[0]) / (request["output_tokens"] - 1) * 1000)
        assert ttfts[-1] == pytest.approx(request["time_to_first_token_ms"], abs=1e-6)
        assert itls[-1] == pytest.approx(request["inter_token_latency_ms"], abs=1e-5)
        assert record.path == "/v1/chat/completions"
        assert streamed_text(record) == request["output"]
    # GuideLLM's own summary of the same run.
    metrics = report["benchmarks"][0]["metrics"]
    assert statistics.mean(ttfts) == pytest.approx(
        metrics["time_to_first_token_ms"]["successful"]["mean"]
    )
    assert statistics.mean(itls) == pytest.approx(
        metrics["inter_token_latency_ms"]["successful"]["mean"]
    )


def run_import(path: Path, tmp_path: Path) -> Any:
    return CliRunner().invoke(
        sessions_app,
        ["import-bench", str(path), "--session", "b", "--db", str(tmp_path / "b.db")],
    )


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda doc: "{not json", "not JSON"),
        (lambda doc: json.dumps({"hello": 1}), "not a vllm bench result or GuideLLM report"),
        (
            lambda doc: json.dumps({k: v for k, v in doc.items() if k != "ttfts"}),
            "result: no per-request timings; run vllm bench serve with --save-detailed",
        ),
        (
            lambda doc: json.dumps({**doc, "itls": doc["itls"][:3]}),
            "result: 'itls' must be a list of 100 items, one per request",
        ),
        (
            lambda doc: json.dumps({**doc, "input_lens": ["x"] * 100}),
            "result: request 0: input_lens must be a whole number >= 0",
        ),
    ],
)
def test_bad_benchmark_files_are_one_line_errors(
    tmp_path: Path, edit: Callable[[dict[str, Any]], str], message: str
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(edit(json.loads(VLLM_COMPLETIONS.read_text())))

    result = run_import(bad, tmp_path)

    assert result.exit_code == 2
    assert result.stderr == f"Error: {bad}: {message}\n"
    assert not (tmp_path / "b.db").exists()


def test_failed_requests_are_skipped_and_counted(tmp_path: Path) -> None:
    doc = json.loads(VLLM_COMPLETIONS.read_text())
    doc["errors"][3] = "ClientConnectorError"
    doc["ttfts"][3] = 0.0
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(doc))

    result = run_import(edited, tmp_path)

    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "Imported 99 requests of a vllm bench serve result as session 'b', "
        "1 failed requests skipped.\n"
    )


async def vllm_like_client(url: str, requests: int, concurrency: int) -> tuple[list, list]:
    """Stream completions and time them as vllm bench does: TTFT to the first chunk with
    text, ITL between chunks with text."""
    ttfts: list[float] = []
    itls: list[float] = []
    body = {
        "model": "bench-model",
        "prompt": "replay the production latency for any prompt " * 8,
        "max_tokens": 64,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    left = iter(range(requests))

    async def worker(client: httpx.AsyncClient) -> None:
        for _ in left:
            stream = await read_timed(client, f"{url}/v1/completions", body)
            assert stream.headers["x-dummy-vllm-replay"] == "miss-profile"
            texts = [
                at
                for at, event in stream.json_events()
                if event["choices"] and event["choices"][0]["text"]
            ]
            ttfts.append(texts[0])
            itls.extend(b - a for a, b in itertools.pairwise(texts))

    async with httpx.AsyncClient(timeout=60) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return ttfts, itls


def test_replaying_an_imported_vllm_bench_result_reproduces_its_latency(
    start_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    result = json.loads(VLLM_COMPLETIONS.read_text())
    db = tmp_path / "b.db"
    import_bench(VLLM_COMPLETIONS, db)
    server = start_server("--replay", "b", "--on-miss", "profile", "--db", str(db))
    models = httpx.get(f"{server.url}/v1/models").json()
    assert [model["id"] for model in models["data"]] == [result["model_id"]]

    ttfts, itls = asyncio.run(vllm_like_client(server.url, requests=48, concurrency=8))

    recorded_ttft = statistics.mean(result["ttfts"])
    recorded_itl = statistics.mean(gap for gaps in result["itls"] for gap in gaps)
    # Within 10 % of the recorded means (48 draws from 100 samples), plus what a busy box adds:
    # lateness to a TTFT, and to a mean gap only the difference between a stream's first and
    # last tokens' lateness, spread over its 63 gaps.
    ttft = statistics.mean(ttfts)
    assert 0.9 * recorded_ttft <= ttft <= 1.1 * recorded_ttft + LATE_S, (ttft, recorded_ttft)
    itl = statistics.mean(itls)
    assert abs(itl - recorded_itl) <= 0.1 * recorded_itl + LATE_S / 63, (itl, recorded_itl)
