"""Terminal plots of latency distributions (plotext): the empirical CDF of one or two samples,
so that `sessions show` and `sessions compare` draw the same picture."""

from __future__ import annotations

from collections.abc import Sequence

import plotext
from rich.console import Console
from rich.text import Text

from ..recording.compare import METRICS
from ..recording.store import RouteSamples, percentile

# Quantiles drawn: enough points for a smooth curve, however large the sample.
_LEVELS = [q / 2 for q in range(0, 199)]  # 0 .. 99 in halves
# Told apart without colour, in a pipe or a log.
_MARKERS = ("dot", "x")
_COLORS = ("blue+", "orange+")
HEIGHT = 14


def cdf_plot(
    title: str,
    series: Sequence[tuple[str, Sequence[float]]],
    *,
    width: int,
    color: bool,
) -> str:
    """The CDFs of ``series`` (label, ascending non-empty values) up to the 99th percentile,
    whose tail would squeeze everything else into one column."""
    plotext.clf()
    plotext.plotsize(width, HEIGHT)
    plotext.theme("clear")
    for (label, values), marker, colour in zip(series, _MARKERS, _COLORS, strict=False):
        xs = [percentile(values, q) for q in _LEVELS]
        plotext.plot(xs, [q / 100 for q in _LEVELS], label=label, marker=marker, color=colour)
    plotext.title(f"{title}, CDF to p99")
    plotext.ylim(0, 1)
    drawn = str(plotext.build())
    return drawn if color else str(plotext.uncolorize(drawn))


def route_plots(route: str, sides: Sequence[tuple[str, RouteSamples]], console: Console) -> None:
    """One CDF plot per metric of ``route``, each side's sample on it (empty ones left out)."""
    width = min(console.width, 100)
    for metric in METRICS:
        series = [
            (label, sorted(values))
            for label, samples in sides
            if (values := getattr(samples, metric.key))
        ]
        if not series:
            continue
        title = f"{route} {metric.title} ({metric.unit})"
        console.print(
            Text.from_ansi(cdf_plot(title, series, width=width, color=console.is_terminal))
        )
