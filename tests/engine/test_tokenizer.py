"""The built-in tokenizer and the chat template's token accounting."""

from __future__ import annotations

import json
import random
import re
import sys
from collections.abc import Callable

import pytest
import ujson

from dummy_vllm.engine import Tokenizer, render_chat_prompt, tokenizer
from dummy_vllm.engine.tokenizer import _PRETOKEN_RE, _SPECIAL_RE, CHAT_ROLES, EOS_TOKEN


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer()


def _alphabet(*ranges: tuple[int, int]) -> Callable[[random.Random], str]:
    chars = [chr(c) for lo, hi in ranges for c in range(lo, hi + 1)]
    return lambda rng: rng.choice(chars)


_CHAR_SOURCES: list[Callable[[random.Random], str]] = [
    _alphabet((0x20, 0x7E)),  # printable ASCII
    _alphabet((0x00, 0x1F), (0x7F, 0x9F)),  # control characters
    lambda rng: rng.choice([" ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u2028", "\u3000"]),
    _alphabet((0x4E00, 0x9FFF)),  # CJK
    _alphabet((0x1F300, 0x1FAFF)),  # emoji
    _alphabet((0xD800, 0xDFFF)),  # lone surrogates
    _alphabet((0x00A0, 0x07FF)),  # Latin-1, Greek, Cyrillic, Hebrew, Arabic
    lambda rng: chr(rng.randrange(0x110000)),  # anything
    lambda rng: rng.choice(["the", " of", " Hello", "don't", "'s", "2024", "...", "\u2014"]),
    lambda rng: rng.choice(["</s>", "<|user|>", "<|assistant|>", "<|", "|>", "</", "<s>"]),
]


def _random_string(rng: random.Random) -> str:
    sources = rng.sample(_CHAR_SOURCES, rng.randint(1, 4))
    return "".join(rng.choice(sources)(rng) for _ in range(rng.randint(0, 60)))


def test_round_trip_on_random_strings(tok: Tokenizer) -> None:
    rng = random.Random(20240601)
    for _ in range(3000):
        text = _random_string(rng)
        ids = tok.encode(text)
        assert tok.decode(ids) == text, repr(text)
        assert all(0 <= i < tok.vocab_size for i in ids)


def test_round_trip_on_long_mixed_text(tok: Tokenizer) -> None:
    rng = random.Random(7)
    text = "".join(_random_string(rng) for _ in range(500))
    assert tok.decode(tok.encode(text)) == text


@pytest.mark.parametrize(
    ("text", "pieces"),
    [
        ("", []),
        ("Hello, world!", ["Hello", ",", " world", "!"]),
        ("You are a helpful assistant.", ["You", " are", " a", " helpful", " assistant", "."]),
        ("don't stop", ["don", "'t", " stop"]),
        ("a  b\n\nc", ["a", " ", " b", "\n", "\n", "c"]),
        ("x.</s>", ["x", ".", "</s>"]),
        (" <|user|>hi", [" ", "<|user|>", "hi"]),
        ("international", ["international"]),
        ("internationalization", ["international", "ization"]),
    ],
)
def test_known_tokenizations(tok: Tokenizer, text: str, pieces: list[str]) -> None:
    ids = tok.encode(text)
    assert [tok.piece(i) for i in ids] == pieces


def test_byte_fallback_counts(tok: Tokenizer) -> None:
    assert tok.encode("\u4f60\u597d") == list("\u4f60\u597d".encode())  # 3 bytes per CJK char
    assert tok.encode("\U0001f600") == [0xF0, 0x9F, 0x98, 0x80]
    assert tok.encode("\ud800") == [0xED, 0xA0, 0x80]  # a lone surrogate, surrogatepass bytes


def test_english_costs_about_one_token_per_word(tok: Tokenizer) -> None:
    text = (
        "Large language models are trained on vast amounts of text from the internet, books "
        "and other sources. They learn statistical patterns of language and can generate "
        "fluent responses to questions. However, they sometimes produce incorrect information, "
        "and researchers are working on better ways to check what they say."
    )
    ratio = len(tok.encode(text)) / len(text.split())
    assert 1.0 <= ratio <= 1.5


def test_construction_is_deterministic(tok: Tokenizer) -> None:
    other = Tokenizer()
    assert other.vocab_size == tok.vocab_size
    assert other.word_ids == tok.word_ids
    assert [other.piece(i) for i in range(other.vocab_size)] == [
        tok.piece(i) for i in range(tok.vocab_size)
    ]
    text = "Deterministic? Ja, immer \u2014 \u00fcberall \U0001f600."
    assert other.encode(text) == tok.encode(text)


def test_split_cache_does_not_change_results(tok: Tokenizer) -> None:
    rng = random.Random(3)
    letters = "bcdfghjklmnpqrstvwxz"
    # More distinct out-of-vocabulary words than the cache holds, so it is cleared on the way.
    words = [" " + "".join(rng.choices(letters, k=rng.randint(3, 9))) for _ in range(20000)]
    first = [tok.encode(w) for w in words]
    assert [tok.encode(w) for w in words] == first
    assert [Tokenizer().encode(w) for w in words[:50]] == first[:50]


_SPACY_SOURCES: list[Callable[[random.Random], str]] = [
    lambda rng: rng.choice([" ", " ", "  ", "   ", "\t", "\n", "\r", "\u00a0", "\u3000", "\x1f"]),
    lambda rng: rng.choice(["the", " of", "Hello", "don't", "'s", "42", "...", "\u2014", "xq"]),
    lambda rng: rng.choice([" t", " the", " to", "t", " tt", " t\t", " t "]),
    lambda rng: rng.choice(["</s>", "<|user|>", "<", "a<b"]),
    _alphabet((0x20, 0x7E)),
]


def _by_pieces(tok: Tokenizer, text: str) -> list[int]:
    """The tokenisation by definition, without memos: special tokens, pre-tokenised pieces,
    each a vocabulary entry or split."""
    ids: list[int] = []
    for i, segment in enumerate(_SPECIAL_RE.split(text)):
        if i % 2:
            ids.append(tok._vocab[segment])
            continue
        for piece in _PRETOKEN_RE.findall(segment):
            ids += [tok._vocab[piece]] if piece in tok._vocab else tok._split(piece)
    return ids


@pytest.mark.parametrize(
    "text",
    ["a\t ", "a\t  b", "x y\t ", "\t ", " \t b", "a\u00a0 ", "a  ", "<|user|>a\t </s>", "a\t tb"],
)
def test_runs_of_blanks_at_word_cuts(tok: Tokenizer, text: str) -> None:
    assert tok.encode(text) == _by_pieces(tok, text)


def test_memos_agree_with_pre_tokenisation(tok: Tokenizer) -> None:
    # Spaces and other blanks in every arrangement: runs of blanks are where a split at
    # spaces would cut through a piece.
    rng = random.Random(99)
    for _ in range(4000):
        text = "".join(rng.choice(_SPACY_SOURCES)(rng) for _ in range(rng.randint(0, 40)))
        assert tok.encode(text) == _by_pieces(tok, text), repr(text)


def test_blanks_are_what_pre_tokenisation_calls_whitespace() -> None:
    horizontal = re.compile(r"[^\S\n]")
    every = {c for c in map(chr, range(sys.maxunicode + 1)) if horizontal.fullmatch(c)}
    assert every == tokenizer._BLANKS


def test_memos_are_bounded_without_changing_results(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokenizer, "_CHUNK_MEMO", (16, 40))
    monkeypatch.setattr(tokenizer, "_WORD_MEMO", (64, 4))
    tok = Tokenizer()
    rng = random.Random(5)
    texts = [
        " ".join("".join(rng.choices("abcdeft\t", k=rng.randint(1, 6))) for _ in range(30))
        for _ in range(200)
    ]
    first = [tok.encode(text) for text in texts]
    assert len(tok._spaced) < 64 + 30
    assert len(tok._chunks) < 16 + 30
    assert [tok.encode(text) for text in texts] == first
    assert first == [_by_pieces(tok, text) for text in texts]


@pytest.mark.parametrize("bad", [-1, -300, 10**9])
def test_unknown_ids_raise_value_error(tok: Tokenizer, bad: int) -> None:
    with pytest.raises(ValueError, match="unknown token id"):
        tok.decode([1, bad])
    for accessor in (tok.piece, tok.piece_json, tok.piece_bytes):
        with pytest.raises(ValueError, match="unknown token id"):
            accessor(bad)
    with pytest.raises(ValueError, match="unknown token id"):
        tok.decode([tok.vocab_size])


def test_decode_joins_byte_tokens_and_replaces_invalid_sequences(tok: Tokenizer) -> None:
    euro = list("\u20ac".encode())
    assert tok.decode([tok.encode("a")[0], *euro, tok.encode(" the")[0]]) == "a\u20ac the"
    assert tok.decode(euro[:2]) == "\ufffd"  # truncated sequence: cannot come from encode
    assert tok.decode([0xFF]) == "\ufffd"


def test_piece_json_matches_ujson_for_every_id(tok: Tokenizer) -> None:
    for i in range(tok.vocab_size):
        piece = tok.piece(i)
        literal = tok.piece_json(i)
        assert (
            literal == ujson.dumps(piece, ensure_ascii=False, escape_forward_slashes=False).encode()
        )
        assert json.loads(literal) == piece


def test_piece_bytes(tok: Tokenizer) -> None:
    for i in range(256):
        assert tok.piece_bytes(i) == [i]
    for i in range(256, tok.vocab_size):
        assert bytes(tok.piece_bytes(i)).decode() == tok.piece(i)
    # A fresh list each time: callers may keep or change it.
    tok.piece_bytes(300).append(0)
    assert bytes(tok.piece_bytes(300)).decode() == tok.piece(300)


def test_byte_pieces(tok: Tokenizer) -> None:
    assert [tok.piece(i) for i in range(128)] == [chr(i) for i in range(128)]
    assert {tok.piece(i) for i in range(128, 256)} == {"\ufffd"}


def test_special_tokens(tok: Tokenizer) -> None:
    assert tok.piece(tok.eos_token_id) == EOS_TOKEN == "</s>"
    assert tok.encode("</s>") == [tok.eos_token_id]
    markers = [f"<|{role}|>" for role in CHAT_ROLES]
    ids = [tok.encode(m) for m in markers]
    assert all(len(i) == 1 for i in ids)
    assert len({i[0] for i in ids} | {tok.eos_token_id}) == len(markers) + 1
    # Never glued to their neighbours.
    assert tok.encode("!!</s>!!") == [*tok.encode("!!"), tok.eos_token_id, *tok.encode("!!")]


def test_word_ids_are_clean_canonical_tokens(tok: Tokenizer) -> None:
    word_ids = tok.word_ids
    assert list(word_ids) == sorted(set(word_ids))
    assert len(word_ids) > 1000
    specials = {tok.encode(f"<|{role}|>")[0] for role in CHAT_ROLES} | {tok.eos_token_id}
    assert not specials & set(word_ids)
    for i in word_ids:
        piece = tok.piece(i)
        assert piece
        assert "\ufffd" not in piece
        assert tok.decode([i]) == piece
        assert tok.encode(piece) == [i]
    pieces = {tok.piece(i) for i in word_ids}
    assert {" the", " The", "The", ".", ",", "\n"} <= pieces


def test_long_out_of_vocabulary_piece(tok: Tokenizer) -> None:
    assert tok.encode("q" * 20_001) == [tok.encode("qq")[0]] * 10_000 + [ord("q")]


# The chat template


def _count(tok: Tokenizer, text: str) -> int:
    return len(tok.encode(text))


_CONTENTS = [
    "Hello, world!",
    "",
    " leading space",
    "\n\nleading newlines",
    "trailing newline\n",
    "ends with punctuation...",
    "contains </s> and <|user|> markers",
    "\u4f60\u597d\U0001f600 mixed, with\ttabs  and  spaces ",
    "x" * 300,
]


def test_chat_template_format() -> None:
    messages: list[dict[str, str | None]] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": None},
    ]
    assert render_chat_prompt(messages) == (
        "<|system|>\nBe brief.</s>\n<|user|>\nHi</s>\n<|assistant|>\n</s>\n<|assistant|>\n"
    )
    assert render_chat_prompt(messages[:2], add_generation_prompt=False) == (
        "<|system|>\nBe brief.</s>\n<|user|>\nHi</s>\n"
    )


def test_chat_template_content_parts() -> None:
    parts = [
        {"type": "text", "text": "Look:"},
        {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
        {"type": "input_audio", "input_audio": {"data": "", "format": "wav"}},
        {"type": "video_url", "video_url": {"url": "https://x/y.mp4"}},
        {"type": "file", "file": {}},
        {"type": "text", "text": "What is it?"},
    ]
    prompt = render_chat_prompt([{"role": "user", "content": parts}], add_generation_prompt=False)
    assert prompt == "<|user|>\nLook:\n<image>\n<audio>\n<video>\n<file>\nWhat is it?</s>\n"


@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_chat_template_overhead_is_a_fixed_formula(
    tok: Tokenizer, add_generation_prompt: bool
) -> None:
    rng = random.Random(11)
    for _ in range(300):
        n = rng.randint(1, 5)
        messages = [
            {
                "role": rng.choice(CHAT_ROLES),
                "content": rng.choice([*_CONTENTS, _random_string(rng)]),
            }
            for _ in range(n)
        ]
        prompt = render_chat_prompt(messages, add_generation_prompt=add_generation_prompt)
        contents = sum(_count(tok, str(m["content"])) for m in messages)
        assert _count(tok, prompt) == contents + 4 * n + 2 * add_generation_prompt


def test_two_message_chat_count(tok: Tokenizer) -> None:
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Hello, world!"},
    ]
    assert _count(tok, render_chat_prompt(messages)) == 6 + 4 + 4 * 2 + 2 == 20
