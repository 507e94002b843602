"""The latency model: per-token due times from ``LatencySettings``."""

from __future__ import annotations

import math
import random
import statistics
from itertools import pairwise
from typing import Any

import pytest

from dummy_vllm.engine import LatencyModel
from dummy_vllm.settings import JitterDistribution, LatencySettings

N = 20000


def _model(**kwargs: Any) -> LatencyModel:
    return LatencyModel(LatencySettings(**kwargs))


def _gaps(offsets: list[float]) -> list[float]:
    return [b - a for a, b in pairwise(offsets)]


def test_no_tokens() -> None:
    assert _model(ttft=1.0, itl=1.0).token_offsets(random.Random(0), 10, 0) == []


@pytest.mark.parametrize("distribution", [JitterDistribution.CONSTANT, JitterDistribution.NORMAL])
def test_constant_offsets_are_exact_and_draw_nothing(distribution: JitterDistribution) -> None:
    # CONSTANT ignores the jitter; NORMAL without jitter is constant too.
    jitter = 0.5 if distribution == JitterDistribution.CONSTANT else 0.0
    model = _model(
        ttft=0.25,
        itl=0.125,
        ttft_jitter=jitter,
        itl_jitter=jitter,
        prefill_per_token=0.001,
        distribution=distribution,
    )
    rng = random.Random(4)
    state = rng.getstate()
    offsets = model.token_offsets(rng, 750, 5)
    assert offsets == [1.0, 1.125, 1.25, 1.375, 1.5]
    assert rng.getstate() == state


def test_instant_settings_give_zeros() -> None:
    assert _model().token_offsets(random.Random(0), 100, 4) == [0.0] * 4


def test_prefill_term() -> None:
    model = _model(ttft=0.1, itl=0.02, ttft_jitter=0.03, itl_jitter=0.005, prefill_per_token=2e-4)
    short = model.token_offsets(random.Random(8), 0, 50)
    long = model.token_offsets(random.Random(8), 5000, 50)
    assert [b - a for a, b in zip(short, long, strict=True)] == pytest.approx([1.0] * 50)


def test_reproducible_for_an_rng_state() -> None:
    model = _model(ttft=0.1, itl=0.02, ttft_jitter=0.03, itl_jitter=0.005)
    assert model.token_offsets(random.Random(3), 10, 100) == model.token_offsets(
        random.Random(3), 10, 100
    )
    assert model.token_offsets(random.Random(3), 10, 100) != model.token_offsets(
        random.Random(4), 10, 100
    )


@pytest.mark.parametrize("distribution", [JitterDistribution.NORMAL, JitterDistribution.LOGNORMAL])
def test_offsets_never_decrease(distribution: JitterDistribution) -> None:
    model = _model(itl=0.001, itl_jitter=0.01, ttft_jitter=0.5, distribution=distribution)
    offsets = model.token_offsets(random.Random(5), 0, N)
    assert offsets[0] >= 0.0
    assert all(gap >= 0.0 for gap in _gaps(offsets))


@pytest.mark.parametrize("distribution", [JitterDistribution.NORMAL, JitterDistribution.LOGNORMAL])
def test_itl_sample_mean_and_deviation(distribution: JitterDistribution) -> None:
    model = _model(itl=0.05, itl_jitter=0.015, distribution=distribution)
    gaps = _gaps(model.token_offsets(random.Random(17), 0, N + 1))
    assert statistics.fmean(gaps) == pytest.approx(0.05, rel=0.01)
    assert statistics.stdev(gaps) == pytest.approx(0.015, rel=0.04)


@pytest.mark.parametrize("distribution", [JitterDistribution.NORMAL, JitterDistribution.LOGNORMAL])
def test_ttft_sample_mean_and_deviation(distribution: JitterDistribution) -> None:
    model = _model(ttft=0.4, ttft_jitter=0.1, itl=0.01, distribution=distribution)
    rng = random.Random(23)
    firsts = [model.token_offsets(rng, 0, 1)[0] for _ in range(N)]
    assert statistics.fmean(firsts) == pytest.approx(0.4, rel=0.01)
    assert statistics.stdev(firsts) == pytest.approx(0.1, rel=0.04)


def test_lognormal_is_skewed_and_positive() -> None:
    model = _model(itl=0.05, itl_jitter=0.05, distribution=JitterDistribution.LOGNORMAL)
    gaps = _gaps(model.token_offsets(random.Random(29), 0, N + 1))
    assert min(gaps) > 0.0
    assert statistics.median(gaps) < 0.9 * statistics.fmean(gaps)  # median = mean / sqrt(2)


def test_lognormal_with_zero_mean_is_zero() -> None:
    model = _model(itl=0.0, itl_jitter=0.3, distribution=JitterDistribution.LOGNORMAL)
    rng = random.Random(1)
    state = rng.getstate()
    assert model.token_offsets(rng, 0, 10) == [0.0] * 10
    assert rng.getstate() == state


def test_normal_is_clipped_at_zero() -> None:
    mean, sd = 0.002, 0.01
    model = _model(itl=mean, itl_jitter=sd)
    gaps = _gaps(model.token_offsets(random.Random(31), 0, N + 1))
    assert min(gaps) == 0.0
    assert gaps.count(0.0) / N == pytest.approx(0.4207, abs=0.015)  # P(X < 0) = Phi(-0.2)
    # Mean of max(0, X) for X ~ N(m, s): m * Phi(m / s) + s * phi(m / s); no upper cap.
    z = mean / sd
    phi = math.exp(-z * z / 2) / math.sqrt(2 * math.pi)
    cdf = 0.5 * (1 + math.erf(z / math.sqrt(2)))
    assert statistics.fmean(gaps) == pytest.approx(mean * cdf + sd * phi, rel=0.03)
    assert max(gaps) > mean + 3 * sd
