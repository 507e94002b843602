"""The synthetic text corpus and EOS-driven output lengths."""

from __future__ import annotations

import random
import statistics

import pytest

from dummy_vllm.engine import Corpus, Tokenizer, sample_output_length


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer()


@pytest.fixture(scope="module")
def corpus(tok: Tokenizer) -> Corpus:
    return Corpus(tok)


def test_windows_are_deterministic(tok: Tokenizer, corpus: Corpus) -> None:
    again = Corpus(tok)
    for seed in (0, 1, 42, 2**70, -5):
        assert list(corpus.tokens(seed, 300)) == list(again.tokens(seed, 300))
        assert list(corpus.tokens(seed, 300)) == list(corpus.tokens(seed, 300))


def test_windows_depend_on_the_seed(corpus: Corpus) -> None:
    windows = {tuple(corpus.tokens(seed, 50)) for seed in range(200)}
    assert len(windows) >= 195  # starts are sentences, so a rare collision is allowed


def test_corpus_depends_on_its_seed(tok: Tokenizer, corpus: Corpus) -> None:
    other = Corpus(tok, seed=1)
    assert [list(other.tokens(s, 40)) for s in range(5)] != [
        list(corpus.tokens(s, 40)) for s in range(5)
    ]


def test_window_lengths(corpus: Corpus) -> None:
    for length in (0, 1, 2, 17, 4096):
        assert len(corpus.tokens(3, length)) == length
    with pytest.raises(ValueError, match="length"):
        corpus.tokens(3, -1)


def test_size(tok: Tokenizer) -> None:
    small = Corpus(tok, size=100)
    assert 100 <= len(small) < 300
    with pytest.raises(ValueError, match="size"):
        Corpus(tok, size=0)


def test_window_wraps_around(tok: Tokenizer) -> None:
    small = Corpus(tok, seed=5, size=200)
    n = len(small)
    window = list(small.tokens(9, 3 * n + 7))
    assert len(window) == 3 * n + 7
    # Periodic after the first token (the head may have lost its leading space).
    assert window[1 : 2 * n + 7] == window[n + 1 : 3 * n + 7]
    assert tok.encode(tok.decode(window)) == window


def test_windows_look_like_prose(tok: Tokenizer, corpus: Corpus) -> None:
    word_ids = set(tok.word_ids)
    for seed in range(50):
        window = list(corpus.tokens(seed, 200))
        assert set(window) <= word_ids
        text = tok.decode(window)
        assert text[0].isupper(), text  # a sentence start, no leading space
        assert text == "".join(tok.piece(i) for i in window)
        assert tok.encode(text) == window  # canonical: re-tokenises to the same ids
    text = tok.decode(corpus.tokens(0, 5000))
    for expected in (". ", ", ", "\n\n"):
        assert expected in text
    for unexpected in ("  ", " .", " ,", ",,", ".,"):
        assert unexpected not in text
    words = text.split()
    assert 0.8 < len(tok.encode(text)) / len(words) < 1.3


# Output lengths


def test_zero_rate_gives_max_tokens_without_drawing() -> None:
    rng = random.Random(1)
    state = rng.getstate()
    assert sample_output_length(rng, 100, 0, 0.0) == 100
    assert sample_output_length(rng, 100, 500, 0.5) == 100  # min_tokens above max_tokens
    assert rng.getstate() == state


def test_one_draw_per_call() -> None:
    rng, twin = random.Random(9), random.Random(9)
    sample_output_length(rng, 1000, 3, 0.1)
    twin.random()
    assert rng.getstate() == twin.getstate()


@pytest.mark.parametrize(("max_tokens", "min_tokens", "rate"), [(20, 0, 0.1), (10, 4, 0.3)])
def test_bounds(max_tokens: int, min_tokens: int, rate: float) -> None:
    rng = random.Random(2)
    lengths = [sample_output_length(rng, max_tokens, min_tokens, rate) for _ in range(5000)]
    assert min(lengths) == min_tokens
    assert max(lengths) == max_tokens


def test_mean_matches_the_geometric_law() -> None:
    rng = random.Random(12345)
    rate = 0.05
    lengths = [sample_output_length(rng, 10**6, 10, rate) for _ in range(20000)]
    expected = 10 + (1 - rate) / rate  # 29
    assert statistics.fmean(lengths) == pytest.approx(expected, rel=0.03)


def test_mean_with_truncation_at_max_tokens() -> None:
    rng = random.Random(54321)
    rate, floor, cap = 0.1, 2, 12
    lengths = [sample_output_length(rng, cap, floor, rate) for _ in range(20000)]
    # E[min(floor + K, cap)] = floor + sum_{k=1..cap-floor} P(K >= k), P(K >= k) = (1-rate)^k
    expected = floor + sum((1 - rate) ** k for k in range(1, cap - floor + 1))
    assert statistics.fmean(lengths) == pytest.approx(expected, rel=0.02)
    assert lengths.count(cap) / len(lengths) == pytest.approx((1 - rate) ** 10, abs=0.015)


def test_tiny_rate_does_not_overflow() -> None:
    rng = random.Random(0)
    assert all(sample_output_length(rng, 64, 0, 1e-320) == 64 for _ in range(100))
