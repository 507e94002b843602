"""Synthetic output: a pre-generated stream of word tokens, and output lengths ended by EOS."""

from __future__ import annotations

import math
import random
from array import array
from itertools import accumulate

from dummy_vllm.engine.tokenizer import Tokenizer
from dummy_vllm.settings import OutputLength

_MASK64 = (1 << 64) - 1
# Shape of the prose: words per sentence, sentences per paragraph, comma odds before a word.
_SENTENCE_WORDS = (4, 18)
_PARAGRAPH_SENTENCES = (2, 6)
_COMMA_RATE = 0.08
_SENTENCE_ENDS = (".", "?", "!")
_SENTENCE_END_WEIGHTS = (0.88, 0.07, 0.05)


def _mix(seed: int) -> int:
    """SplitMix64 finaliser: spreads nearby seeds (0, 1, 2, ...) over the whole range."""
    z = (seed + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


class Corpus:
    """A fixed stream of word tokens that reads like (meaningless) prose.

    Drawn once from ``random.Random(seed)``: sentences of Zipf-weighted words from
    ``tokenizer.word_ids``, capitalised, with commas and end punctuation, in paragraphs separated
    by a blank line (two ``"\\n"`` tokens). It holds at least ``size`` tokens and ends with a
    paragraph break, so wrapping around reads naturally. The stream is in canonical form:
    ``encode(decode(window)) == window`` for every window.
    """

    def __init__(self, tokenizer: Tokenizer, seed: int = 0, size: int = 65536) -> None:
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")

        def token_id(text: str) -> int:
            (single,) = tokenizer.encode(text)
            return single

        # word_ids lists each word as " word", " Word" and "Word"; draw the first form and
        # capitalise at sentence starts. Lower ids are the more frequent words.
        words = [
            i for i in tokenizer.word_ids if (p := tokenizer.piece(i))[0] == " " and p[1:].islower()
        ]
        cap = {i: token_id(tokenizer.piece(i)[1:].capitalize()) for i in words}
        spaced_cap = {i: token_id(" " + tokenizer.piece(cap[i])) for i in words}
        cum_weights = list(accumulate(1.0 / (rank + 3) for rank in range(len(words))))
        comma, newline = token_id(","), token_id("\n")
        ends = [token_id(p) for p in _SENTENCE_ENDS]

        rng = random.Random(seed)
        ids: list[int] = []
        starts: list[int] = []
        while len(ids) < size:
            for sentence in range(rng.randint(*_PARAGRAPH_SENTENCES)):
                drawn = rng.choices(words, cum_weights=cum_weights, k=rng.randint(*_SENTENCE_WORDS))
                starts.append(len(ids))
                ids.append(spaced_cap[drawn[0]] if sentence else cap[drawn[0]])
                previous = drawn[0]
                for word in drawn[1:]:
                    if word == previous:  # "the the" would look broken
                        continue
                    if rng.random() < _COMMA_RATE:
                        ids.append(comma)
                    ids.append(word)
                    previous = word
                ids += rng.choices(ends, weights=_SENTENCE_END_WEIGHTS)
            ids += (newline, newline)

        # An array, so that a window is a copy of bytes rather than of Python ints (a request
        # for n x max_tokens takes hundreds of thousands): two bytes a token when ids fit.
        self._ids = array("H" if max(ids) < 1 << 16 else "L", ids)
        self._starts = tuple(starts)
        # Windows start at a sentence, without the leading space ("The", not " The"), as the
        # first token of a reply would.
        self._heads = tuple(token_id(tokenizer.piece(ids[s]).lstrip(" ")) for s in starts)

    def __len__(self) -> int:
        return len(self._ids)

    def tokens(self, seed: int, length: int) -> array[int]:
        """``length`` ids starting at a sentence chosen by ``seed``; wraps around as needed.

        Deterministic; nearby seeds give unrelated windows. Costs O(length) copied bytes, no
        random draws.
        """
        if length < 0:
            raise ValueError(f"length must be >= 0, got {length}")
        ids = self._ids
        if not length:
            return ids[:0]
        k = _mix(seed) % len(self._starts)
        start = self._starts[k] + 1
        end = start + length - 1
        head = array(ids.typecode, (self._heads[k],))
        if end <= len(ids):
            return head + ids[start:end]
        laps, rest = divmod(end, len(ids))
        return head + ids[start:] + ids * (laps - 1) + ids[:rest]


def sample_output_length(
    rng: random.Random, max_tokens: int, min_tokens: int, eos_rate: float
) -> int:
    """How many tokens to generate before EOS: one inverse-CDF draw, or none.

    After ``min_tokens`` every token is EOS with probability ``eos_rate``, so the extra tokens
    follow a geometric law, ``P(k) = (1 - eos_rate)^k * eos_rate``, mean
    ``(1 - eos_rate) / eos_rate``. The result is in ``[min(min_tokens, max_tokens), max_tokens]``;
    a result below ``max_tokens`` means generation stopped at EOS. ``eos_rate == 0`` gives
    ``max_tokens`` without drawing.
    """
    floor = min(min_tokens, max_tokens)
    if eos_rate <= 0.0 or floor >= max_tokens:
        return max_tokens
    # 1 - random() is in (0, 1]; the quotient may be huge (or inf) for a tiny rate.
    extra = math.log(1.0 - rng.random()) / math.log1p(-eos_rate)
    if extra >= max_tokens - floor:
        return max_tokens
    return floor + int(extra)


def sample_natural_length(
    rng: random.Random, lengths: OutputLength, max_tokens: int, min_tokens: int
) -> int:
    """Where a model that was given no ``max_tokens`` stops: one lognormal draw of mean
    ``lengths.mean`` and standard deviation ``lengths.spread`` (a right-skewed law, as reply
    lengths are), at least 1 and ``min_tokens``, at most ``max_tokens`` (the room left)."""
    mean = lengths.mean
    sigma = math.sqrt(math.log1p((lengths.spread / mean) ** 2))
    drawn = round(rng.lognormvariate(math.log(mean) - sigma * sigma / 2, sigma))
    return min(max(drawn, min_tokens, 1), max_tokens)
