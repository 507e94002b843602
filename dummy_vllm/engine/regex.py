"""Strings that match a regular expression, as a regex-constrained decoder would produce.

A small parser of the regex subset structured-output users write (literals, escapes, classes,
groups, alternation, greedy and lazy quantifiers, anchors at the ends) into a tree, and a seeded
walk of that tree. Backreferences, lookarounds and conditionals are refused with ``RegexError``
naming the construct; the request gets a 400 rather than text that does not match.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass

# Unbounded repeats ("*", "+", "{n,}") draw at most this many extra repetitions.
_OPEN_REPEAT = 4
# What "." and negated classes draw from: printable ASCII without newline.
_PRINTABLE = "".join(c for c in string.printable if c not in "\n\r\t\x0b\x0c")
_CLASSES = {
    "d": string.digits,
    "w": string.ascii_letters + string.digits + "_",
    "s": " ",
}


class RegexError(ValueError):
    """A pattern outside the supported subset, or malformed."""


@dataclass(frozen=True, slots=True)
class _Chars:
    """One character drawn from ``chars``."""

    chars: str


@dataclass(frozen=True, slots=True)
class _Seq:
    items: tuple[_Node, ...]


@dataclass(frozen=True, slots=True)
class _Alt:
    options: tuple[_Node, ...]


@dataclass(frozen=True, slots=True)
class _Repeat:
    node: _Node
    low: int
    high: int | None


_Node = _Chars | _Seq | _Alt | _Repeat


class _Parser:
    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.pos = 0

    def fail(self, what: str) -> RegexError:
        return RegexError(f"unsupported regex {self.pattern!r}: {what} at position {self.pos}")

    def peek(self) -> str | None:
        return self.pattern[self.pos] if self.pos < len(self.pattern) else None

    def take(self) -> str:
        char = self.peek()
        if char is None:
            raise self.fail("unexpected end")
        self.pos += 1
        return char

    def alternation(self) -> _Node:
        options = [self.sequence()]
        while self.peek() == "|":
            self.pos += 1
            options.append(self.sequence())
        return options[0] if len(options) == 1 else _Alt(tuple(options))

    def sequence(self) -> _Node:
        items: list[_Node] = []
        while (char := self.peek()) is not None and char not in "|)":
            if char in "^$":
                # Matching is of the whole string anyway (vLLM's regex constraint is anchored).
                if not (self.pos == 0 or self.pos == len(self.pattern) - 1):
                    raise self.fail(f"anchor {char!r} inside the pattern")
                self.pos += 1
                continue
            items.append(self.quantified(self.atom()))
        return items[0] if len(items) == 1 else _Seq(tuple(items))

    def atom(self) -> _Node:
        char = self.take()
        if char == "(":
            if self.peek() == "?":
                self.pos += 1
                kind = self.take()
                if kind == "P" and self.peek() == "<":
                    self.pos = self.pattern.index(">", self.pos) + 1
                elif kind != ":":
                    raise self.fail(f"group construct '(?{kind}'")
            node = self.alternation()
            if self.take() != ")":
                raise self.fail("unbalanced parenthesis")
            return node
        if char == "[":
            return self.char_class()
        if char == ".":
            return _Chars(_PRINTABLE)
        if char == "\\":
            return self.escape(in_class=False)
        if char in "*+?{":
            raise self.fail(f"nothing to repeat with {char!r}")
        if char == ")":
            raise self.fail("unbalanced parenthesis")
        return _Chars(char)

    def escape(self, in_class: bool) -> _Chars:
        char = self.take()
        if char in _CLASSES:
            return _Chars(_CLASSES[char])
        if char in "DWS":
            excluded = _CLASSES[char.lower()]
            return _Chars("".join(c for c in _PRINTABLE if c not in excluded))
        if char.isdigit() and not in_class:
            raise self.fail("backreference")
        if char in "bBAZz" and not in_class:
            raise self.fail(f"assertion '\\{char}'")
        return _Chars({"n": "\n", "t": "\t", "r": "\r"}.get(char, char))

    def char_class(self) -> _Chars:
        negated = self.peek() == "^"
        if negated:
            self.pos += 1
        chars: list[str] = []
        first = True
        while (char := self.take()) != "]" or first:
            first = False
            if char == "\\":
                chars.extend(self.escape(in_class=True).chars)
                continue
            if (
                self.peek() == "-"
                and self.pos + 1 < len(self.pattern)
                and (self.pattern[self.pos + 1] != "]")
            ):
                self.pos += 1
                end = self.take()
                if end == "\\":
                    end = self.escape(in_class=True).chars
                if ord(end) < ord(char):
                    raise self.fail(f"bad range {char}-{end}")
                chars.extend(chr(c) for c in range(ord(char), ord(end) + 1))
                continue
            chars.append(char)
        if negated:
            chars = [c for c in _PRINTABLE if c not in set(chars)]
        if not chars:
            raise self.fail("empty character class")
        return _Chars("".join(dict.fromkeys(chars)))

    def quantified(self, node: _Node) -> _Node:
        char = self.peek()
        if char is None or char not in "*+?{":
            return node
        self.pos += 1
        if char == "*":
            low, high = 0, None
        elif char == "+":
            low, high = 1, None
        elif char == "?":
            low, high = 0, 1
        else:
            end = self.pattern.find("}", self.pos)
            if end == -1:
                raise self.fail("unclosed '{'")
            bounds = self.pattern[self.pos : end].split(",")
            self.pos = end + 1
            try:
                low = int(bounds[0] or 0)
                high = low if len(bounds) == 1 else (int(bounds[1]) if bounds[1] else None)
            except ValueError:
                raise self.fail("bad repeat bounds") from None
        if self.peek() in ("?", "+"):  # lazy or possessive: the same strings match
            self.pos += 1
        following = self.peek()
        if following is not None and following in "*+{":
            raise self.fail("multiple repeat")
        return _Repeat(node, low, high)


def parse(pattern: str) -> _Node:
    """The pattern's tree; ``RegexError`` for what this module cannot generate."""
    parser = _Parser(pattern)
    node = parser.alternation()
    if parser.pos != len(pattern):
        raise parser.fail("unbalanced parenthesis")
    return node


def matching_string(pattern: str, rng: random.Random, max_repeat: int = _OPEN_REPEAT) -> str:
    """A string that ``re.fullmatch(pattern, s)`` accepts, drawn from ``rng``; unbounded
    repeats stop after at most ``max_repeat`` extra rounds."""
    out: list[str] = []
    _walk(parse(pattern), rng, max_repeat, out)
    return "".join(out)


def _walk(node: _Node, rng: random.Random, max_repeat: int, out: list[str]) -> None:
    if isinstance(node, _Chars):
        out.append(rng.choice(node.chars))
    elif isinstance(node, _Seq):
        for item in node.items:
            _walk(item, rng, max_repeat, out)
    elif isinstance(node, _Alt):
        _walk(rng.choice(node.options), rng, max_repeat, out)
    else:
        high = node.low + max_repeat if node.high is None else node.high
        for _ in range(rng.randint(node.low, max(node.low, high))):
            _walk(node.node, rng, max_repeat, out)
