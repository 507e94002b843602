"""Two sessions' latency distributions side by side: "did the new vLLM release or GPU change
the latency my clients see?"

Per route and metric (TTFT, ITL, end-to-end time, output length; see
``Store.route_samples``): count, mean and percentiles of each session, their ratios B/A, and
the two-sample Kolmogorov-Smirnov distance D (the largest gap between the two empirical
CDFs: 0 for the same distribution, 1 for disjoint ones) with its asymptotic p-value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .store import RouteSamples, percentile

PERCENTILES = (50, 90, 99)


@dataclass(frozen=True, slots=True)
class Metric:
    key: str
    title: str
    unit: str


METRICS = (
    Metric("ttft_ms", "TTFT", "ms"),
    Metric("itl_ms", "ITL", "ms"),
    Metric("e2e_ms", "E2E", "ms"),
    Metric("output_tokens", "Output length", "tokens"),
)


@dataclass(frozen=True, slots=True)
class Distribution:
    """Summary of a sample; the statistics are None when it is empty."""

    values: tuple[float, ...]  # ascending

    @classmethod
    def of(cls, samples: Sequence[float]) -> Distribution:
        return cls(tuple(sorted(samples)))

    @property
    def count(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return math.fsum(self.values) / len(self.values) if self.values else None

    def percentile(self, q: float) -> float | None:
        return percentile(self.values, q) if self.values else None

    def stats(self) -> dict[str, float | None]:
        """mean, then p50, p90, p99."""
        return {"mean": self.mean} | {f"p{q}": self.percentile(q) for q in PERCENTILES}


@dataclass(frozen=True, slots=True)
class KolmogorovSmirnov:
    statistic: float
    pvalue: float


@dataclass(frozen=True, slots=True)
class MetricComparison:
    metric: Metric
    a: Distribution
    b: Distribution
    # None unless both samples are non-empty.
    ks: KolmogorovSmirnov | None

    def ratios(self) -> dict[str, float | None]:
        """B / A of each statistic; None where A is zero or either side is empty."""
        a, b = self.a.stats(), self.b.stats()
        return {key: _ratio(b[key], a[key]) for key in a}

    def to_json(self) -> dict[str, Any]:
        return {
            "metric": self.metric.key,
            "unit": self.metric.unit,
            "a": {"count": self.a.count, **self.a.stats()},
            "b": {"count": self.b.count, **self.b.stats()},
            "ratio": self.ratios(),
            "ks": None
            if self.ks is None
            else {"statistic": self.ks.statistic, "pvalue": self.ks.pvalue},
        }


def compare_routes(
    a: Mapping[str, RouteSamples], b: Mapping[str, RouteSamples]
) -> dict[str, list[MetricComparison]]:
    """Every route of either session (A's first), each metric compared."""
    empty = RouteSamples()
    comparisons = {}
    for route in dict.fromkeys([*a, *b]):
        side_a, side_b = a.get(route, empty), b.get(route, empty)
        comparisons[route] = [
            compare_samples(metric, getattr(side_a, metric.key), getattr(side_b, metric.key))
            for metric in METRICS
        ]
    return comparisons


def compare_samples(metric: Metric, a: Sequence[float], b: Sequence[float]) -> MetricComparison:
    da, db = Distribution.of(a), Distribution.of(b)
    ks = ks_2samp(da.values, db.values) if da.values and db.values else None
    return MetricComparison(metric, da, db, ks)


def ks_2samp(a: Sequence[float], b: Sequence[float]) -> KolmogorovSmirnov:
    """Two-sample Kolmogorov-Smirnov test of ascending, non-empty ``a`` and ``b``.

    D is computed exactly, ties included; the p-value is the asymptotic Kolmogorov
    distribution with Stephens' small-sample correction (Numerical Recipes' ``kstwo``).
    """
    n, m = len(a), len(b)
    i = j = 0
    distance = 0.0
    while i < n and j < m:
        x = min(a[i], b[j])
        while i < n and a[i] <= x:
            i += 1
        while j < m and b[j] <= x:
            j += 1
        distance = max(distance, abs(i / n - j / m))
    root = math.sqrt(n * m / (n + m))
    return KolmogorovSmirnov(distance, kolmogorov_q((root + 0.12 + 0.11 / root) * distance))


def kolmogorov_q(x: float) -> float:
    """P(K > x) for the Kolmogorov distribution K, the limit of sqrt(n) D."""
    if x <= 0:
        return 1.0
    if x < 1.18:
        # The series in exp(-pi^2 (2j-1)^2 / 8x^2) converges fast for small x.
        y = math.exp(-(math.pi**2) / (8 * x * x))
        total = sum(y ** ((2 * j - 1) ** 2) for j in range(1, 6))
        return max(0.0, min(1.0, 1 - math.sqrt(2 * math.pi) / x * total))
    y = math.exp(-2 * x * x)
    alternating = math.fsum((-1) ** (j - 1) * y ** (j * j) for j in range(1, 6))
    return max(0.0, min(1.0, 2 * alternating))


def _ratio(b: float | None, a: float | None) -> float | None:
    return None if a is None or b is None or a == 0 else b / a
