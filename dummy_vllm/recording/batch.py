"""``record --requests FILE``: send a file of requests to the upstream and record them.

No server and no client: each request goes through ``Recorder.forward`` as a proxied one would,
so the exchanges stored are the same. The file is JSON Lines, one request per line:

- a chat body (it has ``messages``) goes to ``/v1/chat/completions``;
- a completions body (it has ``prompt``) goes to ``/v1/completions``;
- ``{"path": "/v1/...", "body": {...}}`` names the route itself (any forwarded POST route);
  ``{"body": {...}}`` alone chooses as above.

Blank lines are skipped. The body's ``stream`` decides whether the answer is streamed.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from ..protocol.requests import CHAT_ROUTE, COMPLETIONS_ROUTE
from ..protocol.sse import is_done
from ..settings import RecordSettings
from .recorder import FORWARDED_ROUTES, Recorder, UpstreamCall
from .store import ExchangeRecord, Outcome, percentile

# Templated paths (a response's cancel) name no route a file can send to.
POST_ROUTES = frozenset(
    path for method, path in FORWARDED_ROUTES if method == "POST" and "<" not in path
)
_HEADERS = {"content-type": "application/json", "user-agent": "dummy-vllm-record"}


class RequestsFileError(Exception):
    """The requests file cannot be read or holds something that is not a request."""


@dataclass(frozen=True, slots=True)
class Summary:
    outcomes: Counter[str]
    # Sorted, in milliseconds, over the streamed exchanges; definitions as in the store.
    ttft_ms: list[float]
    itl_ms: list[float]

    @property
    def complete(self) -> int:
        return self.outcomes[Outcome.COMPLETE]


def read_requests(path: Path) -> list[UpstreamCall]:
    """Every request in ``path``; raises ``RequestsFileError`` naming the line at fault."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise RequestsFileError(f"{path}: cannot read: {exc}") from None
    calls = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as exc:
            raise RequestsFileError(f"{path}:{number}: not JSON: {exc}") from None
        calls.append(_call(item, f"{path}:{number}"))
    if not calls:
        raise RequestsFileError(f"{path}: no requests")
    return calls


def _call(item: Any, where: str) -> UpstreamCall:
    if not isinstance(item, dict):
        raise RequestsFileError(f"{where}: expected a JSON object")
    path: Any = None
    body: Any = item
    if "body" in item and item.keys() <= {"path", "body"}:
        path, body = item.get("path"), item["body"]
        if not isinstance(body, dict):
            raise RequestsFileError(f"{where}: 'body' must be a JSON object")
    if path is None:
        if "messages" in body:
            path = CHAT_ROUTE
        elif "prompt" in body:
            path = COMPLETIONS_ROUTE
        else:
            raise RequestsFileError(
                f"{where}: neither 'messages' nor 'prompt'; name the route with "
                '{"path": ..., "body": ...}'
            )
    elif path not in POST_ROUTES:
        raise RequestsFileError(f"{where}: path must be one of {', '.join(sorted(POST_ROUTES))}")
    data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    return UpstreamCall("POST", path, data, _HEADERS)


async def record_requests(
    settings: RecordSettings,
    db_path: Path,
    calls: Sequence[UpstreamCall],
    concurrency: int,
    on_done: Callable[[ExchangeRecord], None],
) -> list[ExchangeRecord]:
    """Forward ``calls``, ``concurrency`` at a time, recording each; in completion order."""
    recorder = await Recorder.open(settings, db_path)
    records: list[ExchangeRecord] = []
    pending = iter(calls)

    async def worker() -> None:
        # One shared iterator: each worker takes the next call when its last one is done.
        for call in pending:
            record = (await recorder.forward(call)).record
            records.append(record)
            on_done(record)

    try:
        await asyncio.gather(recorder.describe_upstream(), *(worker() for _ in range(concurrency)))
    finally:
        await recorder.close()
    return records


def run(
    settings: RecordSettings,
    db_path: Path,
    calls: Sequence[UpstreamCall],
    concurrency: int,
    console: Console,
) -> Summary:
    """``record_requests`` with a progress bar; prints and returns the summary."""
    columns = (
        TextColumn("Recording"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("requests", total=len(calls))
        records = asyncio.run(
            record_requests(settings, db_path, calls, concurrency, lambda _: progress.advance(task))
        )
    summary = summarize(records)
    console.print(_summary_table(summary))
    return summary


def summarize(records: Sequence[ExchangeRecord]) -> Summary:
    outcomes: Counter[str] = Counter(str(record.outcome) for record in records)
    ttft: list[float] = []
    itl: list[float] = []
    for record in records:
        offsets = [offset for offset, data in record.events if not is_done(data)]
        if offsets:
            ttft.append(offsets[0] / 1e6)
            itl.extend((b - a) / 1e6 for a, b in itertools.pairwise(offsets))
    return Summary(outcomes, sorted(ttft), sorted(itl))


def _summary_table(summary: Summary) -> Table:
    table = Table(title="Recorded", show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column(justify="right")
    for outcome in Outcome:
        table.add_row(str(outcome), str(summary.outcomes[outcome]))
    for name, values in (("TTFT ms p50/p99", summary.ttft_ms), ("ITL ms p50/p99", summary.itl_ms)):
        shown = f"{percentile(values, 50):.1f}/{percentile(values, 99):.1f}" if values else "-"
        table.add_row(name, shown)
    return table


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("-" if speed is None else f"{speed:.1f} req/s", style="progress.data.speed")
