"""Timing sessions built from benchmark results, for users who have results but no recording.

Two sources are read:

- ``vllm bench serve --save-result --save-detailed`` JSON (one result, or several appended
  with ``--append-result``). Per request: ``ttfts`` (s), ``itls`` (s, the gaps between
  streamed chunks), ``input_lens``, ``output_lens``, ``latencies`` (s), ``errors`` (a
  request with an error is skipped), ``generated_texts`` and ``start_times`` when present;
  per file: ``model_id``, ``backend`` (``openai-chat`` means chat completions, anything else
  completions) and ``date``.
- GuideLLM's JSON benchmark report: each ``benchmarks[].requests.successful[]`` entry's
  ``time_to_first_token_ms``, ``inter_token_latency_ms`` (GuideLLM's per-request mean),
  ``prompt_tokens``, ``output_tokens``, ``request_latency`` (s), ``request_start_time``,
  ``output``, ``info.timings.token_iterations`` (streamed chunks) and ``request_args`` (its
  body tells chat from completions and names the model). GuideLLM keeps no per-chunk times:
  chunks are spread evenly between the first and the last, as GuideLLM itself assumes.

Each successful request becomes one streamed exchange with one token event per chunk at the
measured offsets (then the usage event and ``[DONE]`` at the request's end), rendered in the
shapes of the session's vLLM era, carrying the generated text when the file has it. Neither
file holds requests that could be matched again, so the match keys are placeholders no request
produces: replayed with ``--on-miss profile``, every request gets synthetic text on the timing
of the imported request nearest in prompt and output length.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any

from ..engine import Tokenizer
from ..plan import PlanEvent
from ..protocol.profiles import DEFAULT_PROFILE, profile_for
from ..protocol.requests import CHAT_ROUTE, COMPLETIONS_ROUTE
from ..protocol.responses import (
    ChatStream,
    ChoiceOutput,
    CompletionStream,
    ResponseMeta,
    Wire,
    chat_events,
    completion_events,
)
from ..protocol.sse import DONE_EVENT
from .store import ExchangeRecord, Outcome, SessionRecord

VLLM_BENCH = "vllm bench serve"
GUIDELLM = "guidellm"


class BenchImportError(Exception):
    """A file that is not a benchmark result this module reads, or one with bad fields."""


@dataclass(frozen=True, slots=True)
class BenchRequest:
    """One successful benchmark request, in seconds from its start."""

    route: str
    model: str
    # Wall-clock start, unix seconds.
    created: float
    prompt_tokens: int
    output_tokens: int
    # When each streamed chunk arrived.
    chunk_offsets: list[float]
    end: float
    text: str | None


@dataclass(frozen=True, slots=True)
class BenchResult:
    source: str
    requests: list[BenchRequest]
    # Requests the file reports as failed, which are not imported.
    failed: int
    upstream: str | None
    options: Mapping[str, Any]


def read_bench_file(path: Path) -> BenchResult:
    """Parse ``path`` as a vLLM bench result or a GuideLLM report."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BenchImportError(f"{path}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        documents = _json_documents(text)
        result = _parse(documents)
    except BenchImportError as exc:
        raise BenchImportError(f"{path}: {exc}") from None
    if not result.requests:
        raise BenchImportError(f"{path}: no successful streamed request to import")
    return result


def _json_documents(text: str) -> list[Any]:
    try:
        return [json.loads(text)]
    except ValueError:
        pass
    # --append-result writes one JSON document per line.
    try:
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    except ValueError:
        raise BenchImportError("not JSON") from None


def _parse(documents: list[Any]) -> BenchResult:
    first = documents[0]
    if not isinstance(first, dict):
        raise BenchImportError("not a vllm bench result or GuideLLM report")
    if "benchmarks" in first:
        return _guidellm(first)
    # Without --save-detailed a result still has its totals, but no per-request lists.
    if "ttfts" in first or {"completed", "request_throughput"} <= first.keys():
        results = [_vllm_bench(document, n) for n, document in enumerate(documents)]
        return BenchResult(
            VLLM_BENCH,
            [request for result in results for request in result.requests],
            sum(result.failed for result in results),
            None,
            results[0].options,
        )
    raise BenchImportError("not a vllm bench result or GuideLLM report")


# --- vllm bench serve ---------------------------------------------------------------------------


def _vllm_bench(document: Any, number: int) -> BenchResult:
    where = f"result {number + 1}" if number else "result"
    if not isinstance(document, dict) or "ttfts" not in document:
        raise BenchImportError(
            f"{where}: no per-request timings; run vllm bench serve with --save-detailed"
        )
    fields = _Reader(document, where)
    ttfts = fields.list("ttfts")
    count = len(ttfts)
    itls = fields.list("itls", count)
    input_lens = fields.list("input_lens", count)
    output_lens = fields.list("output_lens", count)
    latencies = fields.list("latencies", count)
    errors = fields.list("errors", count, required=False)
    texts = fields.list("generated_texts", count, required=False)
    starts = fields.list("start_times", count, required=False)
    backend = str(document.get("backend") or document.get("endpoint_type") or "openai")
    route = CHAT_ROUTE if "chat" in backend else COMPLETIONS_ROUTE
    model = str(document.get("model_id") or "unknown")
    began = _vllm_date(document.get("date"))
    first_start = min((s for s in starts if _is_number(s)), default=0.0) if starts else 0.0
    requests = []
    failed = 0
    for i in range(count):
        item = f"{where}: request {i}"
        if (errors and errors[i]) or not (_is_number(ttfts[i]) and ttfts[i] > 0):
            failed += 1
            continue
        gaps = itls[i]
        if not isinstance(gaps, list) or not all(_is_number(g) and g >= 0 for g in gaps):
            raise BenchImportError(f"{item}: 'itls' must be a list of seconds")
        offsets = [float(ttfts[i])]
        for gap in gaps:
            offsets.append(offsets[-1] + gap)
        start = starts[i] if starts and _is_number(starts[i]) else first_start
        requests.append(
            BenchRequest(
                route=route,
                model=model,
                created=began + (start - first_start),
                prompt_tokens=_count(input_lens[i], f"{item}: input_lens"),
                output_tokens=_count(output_lens[i], f"{item}: output_lens") or len(offsets),
                chunk_offsets=offsets,
                end=max(_seconds(latencies[i], f"{item}: latencies"), offsets[-1]),
                text=texts[i] if texts and isinstance(texts[i], str) else None,
            )
        )
    options = {
        key: document[key]
        for key in ("backend", "num_prompts", "request_rate", "max_concurrency", "date")
        if key in document
    }
    return BenchResult(VLLM_BENCH, requests, failed, None, options)


def _vllm_date(value: Any) -> float:
    try:
        return datetime.strptime(str(value), "%Y%m%d-%H%M%S").timestamp()
    except ValueError:
        return 0.0


# --- GuideLLM -----------------------------------------------------------------------------------


def _guidellm(document: dict[str, Any]) -> BenchResult:
    benchmarks = document["benchmarks"]
    if not isinstance(benchmarks, list):
        raise BenchImportError("'benchmarks' must be a list")
    backend = _dig(document, "config", "spec", "backend") or {}
    requests = []
    failed = 0
    for b, benchmark in enumerate(benchmarks):
        groups = _dig(benchmark, "requests")
        if not isinstance(groups, dict) or not isinstance(groups.get("successful"), list):
            raise BenchImportError(f"benchmark {b}: no 'requests.successful' list")
        failed += sum(
            len(group)
            for key in ("errored", "incomplete")
            if isinstance(group := groups.get(key), list)
        )
        for r, request in enumerate(groups["successful"]):
            parsed = _guidellm_request(request, backend, f"benchmark {b}: request {r}")
            if parsed is None:
                failed += 1
            else:
                requests.append(parsed)
    options = {
        key: value
        for key, value in (
            ("guidellm_version", _dig(document, "metadata", "guidellm_version")),
            ("profile", _dig(document, "config", "spec", "profile", "kind")),
        )
        if value is not None
    }
    target = backend.get("target") if isinstance(backend, dict) else None
    return BenchResult(
        GUIDELLM, requests, failed, target if isinstance(target, str) else None, options
    )


def _guidellm_request(request: Any, backend: Mapping[str, Any], where: str) -> BenchRequest | None:
    """One successful request, or None when it streamed no token."""
    if not isinstance(request, dict):
        raise BenchImportError(f"{where}: expected an object")
    fields = _Reader(request, where)
    ttft_ms = fields.number("time_to_first_token_ms", required=False)
    if ttft_ms is None:
        return None
    output_tokens = _count(request.get("output_tokens"), f"{where}: output_tokens")
    itl_ms = fields.number("inter_token_latency_ms", required=False) or 0.0
    chunks = _dig(request, "info", "timings", "token_iterations")
    chunks = chunks if _is_int(chunks) and chunks > 0 else max(output_tokens, 1)
    first = ttft_ms / 1000
    last = first + itl_ms * max(output_tokens - 1, 0) / 1000
    offsets = [first + (last - first) * k / max(chunks - 1, 1) for k in range(chunks)]
    body = _request_body(request.get("request_args"))
    route = (
        COMPLETIONS_ROUTE
        if "prompt" in body
        else CHAT_ROUTE
        if "messages" in body
        else _guidellm_route(backend)
    )
    created = fields.number("request_start_time", required=False)
    return BenchRequest(
        route=route,
        model=str(body.get("model") or backend.get("model") or "unknown"),
        created=created or 0.0,
        prompt_tokens=_count(request.get("prompt_tokens") or 0, f"{where}: prompt_tokens"),
        output_tokens=output_tokens,
        chunk_offsets=offsets,
        end=max(fields.number("request_latency", required=False) or 0.0, offsets[-1]),
        text=request["output"] if isinstance(request.get("output"), str) else None,
    )


def _request_body(args: Any) -> dict[str, Any]:
    """The body GuideLLM sent, from ``request_args`` (a JSON string in its reports)."""
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except ValueError:
            return {}
    body = args.get("body") if isinstance(args, dict) else None
    return body if isinstance(body, dict) else {}


def _guidellm_route(backend: Mapping[str, Any]) -> str:
    request_format = backend.get("request_format") if isinstance(backend, dict) else None
    return COMPLETIONS_ROUTE if request_format == COMPLETIONS_ROUTE else CHAT_ROUTE


# --- building the session -----------------------------------------------------------------------


def bench_session(
    name: str,
    path: Path,
    result: BenchResult,
    *,
    version: str | None,
    note: str | None,
) -> SessionRecord:
    models = tuple(dict.fromkeys(request.model for request in result.requests))
    return SessionRecord(
        name=name,
        created=min(request.created for request in result.requests),
        upstream=result.upstream,
        models=models,
        version=version,
        options={"imported_from": path.name, "source": result.source, **result.options},
        note=note,
    )


def bench_exchanges(result: BenchResult, version: str | None) -> Iterator[ExchangeRecord]:
    profile = DEFAULT_PROFILE if version is None else profile_for(version)[0]
    wire = Wire(profile, None)
    tokenizer = Tokenizer()
    for index, request in enumerate(result.requests):
        yield _exchange(wire, tokenizer, result.source, index, request)


def _exchange(
    wire: Wire, tokenizer: Tokenizer, source: str, index: int, request: BenchRequest
) -> ExchangeRecord:
    chunks = len(request.chunk_offsets)
    choice = ChoiceOutput(
        index=0,
        token_ids=[0] * chunks,
        text_overrides=dict(enumerate(_pieces(request.text, chunks, tokenizer))),
        finish_reason="length",
        stop_reason=None,
    )
    chat = request.route == CHAT_ROUTE
    meta = ResponseMeta(
        id=f"{'chatcmpl' if chat else 'cmpl'}-bench{index}",
        created=int(request.created),
        model=request.model,
    )
    stream: ChatStream | CompletionStream
    if chat:
        stream = ChatStream(wire, tokenizer, meta, request.prompt_tokens, False, False)
        timed: Iterator[PlanEvent] = chat_events(stream, [choice], request.chunk_offsets)
    else:
        stream = CompletionStream(wire, tokenizer, meta, request.prompt_tokens, False, False)
        timed = completion_events(stream, [choice], request.chunk_offsets, {})
    # The chunks, then the usage the benchmark counted and [DONE] when the request ended.
    events = [(_ns(event.offset), event.data) for event in timed if event.data != DONE_EVENT]
    end = _ns(request.end)
    events += [(end, stream.usage(request.output_tokens)), (end, DONE_EVENT)]
    placeholder = f"bench:{source}:{index}"
    body = {"model": request.model, "max_tokens": request.output_tokens, "bench": placeholder}
    return ExchangeRecord(
        method="POST",
        path=request.route,
        request_body=json.dumps(body).encode(),
        match_key=placeholder,
        relaxed_key=placeholder,
        request_headers={},
        status=HTTPStatus.OK,
        response_headers={"content-type": "text/event-stream; charset=utf-8"},
        streamed=True,
        outcome=Outcome.COMPLETE,
        created=request.created,
        first_byte_ns=events[0][0],
        complete_ns=end,
        prompt_tokens=request.prompt_tokens,
        completion_tokens=request.output_tokens,
        events=events,
    )


def _pieces(text: str | None, count: int, tokenizer: Tokenizer) -> list[str]:
    """``text`` cut into ``count`` pieces of about equal length; words when it is too short."""
    if text is not None and len(text) >= count:
        return [text[len(text) * k // count : len(text) * (k + 1) // count] for k in range(count)]
    words = tokenizer.word_ids
    return [tokenizer.piece(words[k % len(words)]) for k in range(count)]


def _ns(seconds: float) -> int:
    return round(seconds * 1e9)


# --- field access -------------------------------------------------------------------------------


class _Reader:
    def __init__(self, value: dict[str, Any], where: str) -> None:
        self.value = value
        self.where = where

    def list(self, key: str, length: int | None = None, *, required: bool = True) -> list[Any]:
        value = self.value.get(key)
        if value is None and not required:
            return []
        if not isinstance(value, list) or (length is not None and len(value) != length):
            size = "" if length is None else f" of {length} items, one per request"
            raise BenchImportError(f"{self.where}: {key!r} must be a list{size}")
        return value

    def number(self, key: str, *, required: bool = True) -> float | None:
        value: Any = self.value.get(key)
        if value is None and not required:
            return None
        if not _is_number(value):
            raise BenchImportError(f"{self.where}: {key!r} must be a number")
        return float(value)


def _dig(value: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _count(value: Any, where: str) -> int:
    if not _is_int(value) or value < 0:
        raise BenchImportError(f"{where} must be a whole number >= 0")
    return int(value)


def _seconds(value: Any, where: str) -> float:
    if not _is_number(value) or value < 0:
        raise BenchImportError(f"{where} must be seconds >= 0")
    return float(value)
