"""``dummy-vllm sessions``: list, inspect, delete, rename, export, import and compare recorded
sessions."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from ..recording.store import Percentiles, RouteSamples, SessionDetail, Store, percentile
from .compare import compare, short_number
from .edge import run_on_store
from .options import db_option
from .plots import route_plots
from .session_files import export, import_bench, import_session

sessions_app = typer.Typer(help="Inspect and manage recorded sessions.", no_args_is_help=True)
sessions_app.command()(export)
sessions_app.command("import")(import_session)
sessions_app.command("import-bench")(import_bench)
sessions_app.command()(compare)

_EIGHTHS = " ▏▎▍▌▋▊▉█"
_BAR_WIDTH = 40
_BINS = 10


@sessions_app.command("list")
def list_sessions(db: Path = db_option(rich_help_panel=None)) -> None:
    """List sessions with their outcome counts, tokens and latency percentiles."""
    summaries = run_on_store(db, lambda store: store.list_sessions(), create=False)
    if not summaries:
        typer.echo(f"No sessions in {db}.")
        return
    table = Table(title=f"Sessions in {db}", box=box.SIMPLE_HEAD)
    # Never truncated: a cut-off name cannot be passed to `show`.
    table.add_column("Name", no_wrap=True)
    for heading in ("Upstream", "Model", "vLLM"):
        table.add_column(heading, overflow="fold")
    table.add_column("Created")
    for heading in (
        "Exchanges",
        "OK/\nFailed",
        "Tokens\nin/out",
        "TTFT ms\np50/p99",
        "ITL ms\np50/p99",
    ):
        table.add_column(heading, justify="right")
    for summary in summaries:
        table.add_row(
            summary.name,
            summary.upstream or "-",
            ", ".join(summary.models or ()) or "-",
            summary.version or "-",
            _timestamp(summary.created),
            str(summary.exchanges) + (f"\n+{summary.lost} lost" if summary.lost else ""),
            f"{summary.complete}/{summary.failed}",
            f"{summary.prompt_tokens}/{summary.completion_tokens}",
            _percentiles(summary.ttft),
            _percentiles(summary.itl),
        )
    console = Console()
    if not console.is_terminal:
        # Piped output is read by programs and people alike: never truncated or folded.
        unbounded = console.options.update_width(sys.maxsize)
        console.width = max(console.width, console.measure(table, options=unbounded).maximum)
    console.print(table)


@sessions_app.command()
def show(
    name: str,
    plots: Annotated[
        bool, typer.Option("--plots/--no-plots", help="Draw each route's distributions.")
    ] = True,
    db: Path = db_option(rich_help_panel=None),
) -> None:
    """Show a session's details and its latency distributions.

    Histograms of the whole session, then per route the plots `sessions compare` draws."""

    async def load(store: Store) -> tuple[SessionDetail, dict[str, RouteSamples]]:
        return await store.get_session(name), await store.route_samples(name) if plots else {}

    detail, routes = run_on_store(db, load, create=False)
    console = Console(highlight=False)
    console.print(_details_table(detail))
    for title, values in (
        ("TTFT (ms)", detail.ttft_ms),
        ("ITL (ms)", detail.itl_ms),
        ("Request duration (ms)", detail.duration_ms),
    ):
        console.print()
        if not values:
            console.print(f"{title}: no samples")
            continue
        console.print(f"{title}, {len(values)} samples:", style="bold")
        for line in histogram(values):
            console.print(line, markup=False)
    for route, samples in routes.items():
        console.print()
        route_plots(route, [(name, samples)], console)


@sessions_app.command()
def delete(
    name: str,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    db: Path = db_option(rich_help_panel=None),
) -> None:
    """Delete a session and everything recorded in it."""
    summary = run_on_store(db, lambda store: store.get_session(name), create=False).summary
    if not yes:
        typer.confirm(f"Delete session {name!r} and its {summary.exchanges} exchanges?", abort=True)
    run_on_store(db, lambda store: store.delete_session(name), create=False)
    typer.echo(f"Deleted session {name!r}.")


@sessions_app.command()
def rename(old: str, new: str, db: Path = db_option(rich_help_panel=None)) -> None:
    """Rename a session."""
    run_on_store(db, lambda store: store.rename_session(old, new), create=False)
    typer.echo(f"Renamed session {old!r} to {new!r}.")


def histogram(sorted_values: Sequence[float]) -> list[str]:
    """Text histogram of ascending, non-empty values: one line per bin, bars of unicode blocks.

    Bins span the minimum to the 99th percentile, so one outlier does not squeeze every other
    sample into the first bin; values above it are counted on a final line.
    """
    low = sorted_values[0]
    high = percentile(sorted_values, 99)
    step = (high - low) / _BINS
    counts = [0] * _BINS
    overflow = 0
    for value in sorted_values:
        if value > high:
            overflow += 1
        elif step == 0:
            counts[0] += 1
        else:
            counts[min(int((value - low) / step), _BINS - 1)] += 1
    bins = 1 if step == 0 else _BINS
    peak = max(*counts, overflow)
    lines = [
        f"{short_number(low + i * step):>9} - {short_number(low + (i + 1) * step):<9} "
        f"{_bar(counts[i], peak)} {counts[i]}"
        for i in range(bins)
    ]
    if overflow:
        lines.append(f"{'>':>9}   {short_number(high):<9} {_bar(overflow, peak)} {overflow}")
    return lines


def _bar(count: int, peak: int) -> str:
    # Any non-empty bin gets at least a sliver, so rare values stay visible.
    eighths = max(round(count / peak * _BAR_WIDTH * 8), 1 if count else 0)
    full, partial = divmod(eighths, 8)
    return ("█" * full + (_EIGHTHS[partial] if partial else "")).ljust(_BAR_WIDTH)


def _details_table(detail: SessionDetail) -> Table:
    summary = detail.summary
    table = Table(show_header=False, box=None, title=f"Session {summary.name}")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    rows = {
        "Created": _timestamp(summary.created),
        "Upstream": summary.upstream or "-",
        "Models": ", ".join(summary.models or ()) or "-",
        "vLLM version": summary.version or "-",
        "Note": detail.note or "-",
        "Options": json.dumps(detail.options, sort_keys=True),
        "Exchanges": f"{summary.exchanges} ({summary.complete} complete, {summary.failed} failed)",
        # Answered while recording, but the database refused them: not in this session.
        "Lost": f"{summary.lost} (answered but not stored)" if summary.lost else "0",
        "Outcomes": ", ".join(f"{name} {count}" for name, count in detail.outcomes.items()) or "-",
        "Routes": ", ".join(f"{route} {count}" for route, count in detail.routes.items()) or "-",
        "Tokens": f"{summary.prompt_tokens} prompt, {summary.completion_tokens} completion",
        "TTFT p50/p99 ms": _percentiles(summary.ttft),
        "ITL p50/p99 ms": _percentiles(summary.itl),
    }
    for key, value in rows.items():
        table.add_row(key, value)
    return table


def _timestamp(created: float) -> str:
    return datetime.fromtimestamp(created).strftime("%Y-%m-%d %H:%M")


def _percentiles(value: Percentiles | None) -> str:
    return "-" if value is None else f"{short_number(value.p50)}/{short_number(value.p99)}"
