"""Synthetic embeddings: deterministic unit vectors in which inputs that share tokens are close.

A vector is a dense component shared by every input (real embedding models give unrelated texts
a positive baseline similarity too) plus hashed features of the input's tokens: each token and
each pair of neighbouring tokens adds +-1 at a position drawn from its hash. Inputs with many
tokens and token pairs in common get close vectors; unrelated inputs meet only in the shared
component. Features hash token ids, so text and token-id inputs (any ids, e.g. tiktoken's sent
by LangChain) are handled alike, and the same input and seed always give the same vector.

Components are returned as integers in units of ``1e-7``: seven decimals is finer than float32
resolves near 1 and coarse enough that each value's shortest float32 representation is that
decimal itself, so the wire formats derive from one exact value (``protocol/embeddings.py``).
"""

from __future__ import annotations

import math
import random
import zlib
from collections.abc import Sequence

# Components are integers in units of 1 / SCALE.
SCALE = 10_000_000
# Weight of the shared component against the (unit) feature part: unrelated inputs then have a
# cosine similarity near SHARED**2 / (1 + SHARED**2), about 0.2.
SHARED = 0.5


class Embedder:
    """Vectors of up to ``dimensions`` components for token sequences; one per worker."""

    def __init__(self, dimensions: int, seed: int) -> None:
        self.dimensions = dimensions
        self._seed = seed & 0xFFFFFFFF
        rng = random.Random(seed)
        shared = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
        norm = math.hypot(*shared)
        self._shared = [SHARED * value / norm for value in shared]

    def embed(self, token_ids: Sequence[int], dimensions: int | None = None) -> list[int]:
        """The unit vector of ``token_ids`` in units of 1e-7. With ``dimensions``, its first
        components renormalised, as Matryoshka models shorten theirs."""
        size = self.dimensions if dimensions is None else min(dimensions, self.dimensions)
        features: dict[int, float] = {}
        seed, full = self._seed, self.dimensions
        previous: int | None = None
        for token in token_ids:
            _add(features, zlib.crc32(b"%d" % token, seed), full)
            if previous is not None:
                _add(features, zlib.crc32(b"%d %d" % (previous, token), seed), full)
            previous = token
        vector = self._shared[:size]
        # Features may cancel out (no features, or +1 and -1 at one position).
        strength = math.hypot(*features.values())
        if strength:
            scale = 1.0 / strength
            for position, weight in features.items():
                if position < size:
                    vector[position] += weight * scale
        factor = SCALE / (math.hypot(*vector) or 1.0)
        return [round(value * factor) for value in vector]


def _add(features: dict[int, float], digest: int, dimensions: int) -> None:
    # The low bits choose the position, the top bit the sign.
    position = digest % dimensions
    features[position] = features.get(position, 0.0) + (1.0 if digest >> 31 else -1.0)
