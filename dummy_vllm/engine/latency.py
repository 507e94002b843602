"""When each generated token is due: time to first token, prefill cost, inter-token latency."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from itertools import accumulate, repeat

from dummy_vllm.settings import JitterDistribution, LatencySettings

_Sampler = Callable[[random.Random], float]


def _sampler(mean: float, sd: float, distribution: JitterDistribution) -> _Sampler | None:
    """A draw with the given mean and standard deviation, clipped at zero.

    ``None`` when the value is always ``mean``, so that callers skip the draw entirely.
    """
    if distribution == JitterDistribution.CONSTANT or sd == 0.0:
        return None
    if distribution == JitterDistribution.NORMAL:

        def normal(rng: random.Random) -> float:
            value = rng.gauss(mean, sd)
            return value if value > 0.0 else 0.0

        return normal
    if mean == 0.0:  # a log-normal variable with mean 0 is always 0
        return None
    # Parameters of the underlying normal that give the log-normal this mean and deviation.
    ratio = sd / mean
    sigma2 = math.log1p(ratio * ratio)
    mu = math.log(mean) - sigma2 / 2.0
    sigma = math.sqrt(sigma2)

    def lognormal(rng: random.Random) -> float:
        return rng.lognormvariate(mu, sigma)

    return lognormal


class LatencyModel:
    """Turns ``LatencySettings`` into per-token due times; the samplers are built once."""

    def __init__(self, settings: LatencySettings) -> None:
        self._ttft = settings.ttft
        self._itl = settings.itl
        self._prefill_per_token = settings.prefill_per_token
        self._pooling = settings.pooling
        self._pooling_per_token = settings.pooling_per_token
        self._ttft_sampler = _sampler(settings.ttft, settings.ttft_jitter, settings.distribution)
        self._itl_sampler = _sampler(settings.itl, settings.itl_jitter, settings.distribution)

    @property
    def draws(self) -> bool:
        """Whether ``token_offsets`` consumes random numbers (jitter is on)."""
        return self._ttft_sampler is not None or self._itl_sampler is not None

    def token_offsets(self, rng: random.Random, prompt_tokens: int, count: int) -> list[float]:
        """Seconds after the request's arrival at which each of ``count`` tokens is due.

        ``offsets[0]`` is a TTFT sample plus ``prefill_per_token * prompt_tokens``; each later
        offset adds an ITL sample, so the list never decreases. Samples are drawn from ``rng`` in
        order (TTFT, then the ITLs), none when there is no jitter: the same ``rng`` state gives
        the same offsets.
        """
        if count <= 0:
            return []
        ttft = self._ttft if self._ttft_sampler is None else self._ttft_sampler(rng)
        first = ttft + self._prefill_per_token * prompt_tokens
        steps = (
            repeat(self._itl, count - 1)
            if self._itl_sampler is None
            else map(self._itl_sampler, repeat(rng, count - 1))
        )
        return list(accumulate(steps, initial=first))

    def pooling_offset(self, prompt_tokens: int) -> float:
        """Seconds after arrival at which an embeddings or pooling answer is due: a fixed cost
        plus a cost per prompt token of all its inputs."""
        return self._pooling + self._pooling_per_token * prompt_tokens
