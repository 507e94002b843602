"""``sessions compare A B``: per route, the latency distributions of two sessions side by
side."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from ..recording.compare import MetricComparison, compare_routes
from ..recording.store import RouteSamples, SessionRecord, Store
from .edge import run_on_store
from .options import db_option
from .plots import route_plots


def compare(
    a: Annotated[str, typer.Argument(help="The reference session.")],
    b: Annotated[str, typer.Argument(help="The session compared with it.")],
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the comparison as JSON, for programs.")
    ] = False,
    plots: Annotated[
        bool, typer.Option("--plots/--no-plots", help="Draw the distributions.")
    ] = True,
    db: Path = db_option(rich_help_panel=None),
) -> None:
    """Compare two sessions' latency distributions, route by route.

    TTFT, ITL, end-to-end time and output length (mean, p50, p90, p99) side by side, their
    ratios B/A, and the Kolmogorov-Smirnov distance D between the distributions (0: alike,
    1: disjoint) with its p-value. Only complete exchanges answered below 400 count."""

    async def load(
        store: Store,
    ) -> tuple[list[dict[str, Any]], dict[str, RouteSamples], dict[str, RouteSamples]]:
        sessions = [_session_json(*await store.session_record(name)) for name in (a, b)]
        return sessions, await store.route_samples(a), await store.route_samples(b)

    sessions, samples_a, samples_b = run_on_store(db, load, create=False)
    comparisons = compare_routes(samples_a, samples_b)
    if json_output:
        document = {
            "a": sessions[0],
            "b": sessions[1],
            "routes": [
                {"route": route, "metrics": [metric.to_json() for metric in metrics]}
                for route, metrics in comparisons.items()
            ],
        }
        typer.echo(json.dumps(document, indent=2))
        return
    console = Console(highlight=False)
    for route, metrics in comparisons.items():
        console.print(_route_table(route, a, b, metrics))
        if plots:
            empty = RouteSamples()
            sides = [
                (f"A {a}", samples_a.get(route, empty)),
                (f"B {b}", samples_b.get(route, empty)),
            ]
            route_plots(route, sides, console)
    if not comparisons:
        console.print(f"Neither {a!r} nor {b!r} has a complete exchange to compare.")


def _session_json(session: SessionRecord, exchanges: int, events: int) -> dict[str, Any]:
    return {
        "name": session.name,
        "upstream": session.upstream,
        "models": list(session.models or ()),
        "vllm_version": session.version,
        "exchanges": exchanges,
    }


def _route_table(route: str, a: str, b: str, metrics: list[MetricComparison]) -> Table:
    table = Table(title=f"{route}: A {a} vs B {b}", box=box.SIMPLE_HEAD, title_justify="left")
    table.add_column("Metric")
    table.add_column("")
    for heading in ("A", "B", "B/A", "KS D (p)"):
        table.add_column(heading, justify="right")
    for comparison in metrics:
        metric = comparison.metric
        ks = comparison.ks
        ks_text = "-" if ks is None else f"{ks.statistic:.3f} ({_pvalue(ks.pvalue)})"
        table.add_row(
            f"{metric.title} {metric.unit}",
            "n",
            str(comparison.a.count),
            str(comparison.b.count),
            "",
            ks_text,
        )
        stats_a, stats_b, ratios = comparison.a.stats(), comparison.b.stats(), comparison.ratios()
        for key in stats_a:
            table.add_row(
                "", key, _value(stats_a[key]), _value(stats_b[key]), _ratio(ratios[key]), ""
            )
        table.add_section()
    return table


def short_number(value: float) -> str:
    """Three significant digits or so: 1234, 56.7, 8.90."""
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _value(value: float | None) -> str:
    return "-" if value is None else short_number(value)


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _pvalue(value: float) -> str:
    return "p<0.001" if value < 0.001 else f"p={value:.3f}"
