"""JSON out, and Python ``repr`` of client input, that cannot fail whatever a client sent.

Python strings may hold lone surrogates (JSON's ``"\\ud800"`` decodes to one), which UTF-8 cannot
encode; echoed input may be megabytes long or nested hundreds deep. Everything that writes a
client's values back goes through here.
"""

from __future__ import annotations

from typing import Any

import ujson

# How much of a client's input an error message repeats, and how deep it shows nesting.
MAX_ECHO_CHARS = 2048
MAX_ECHO_DEPTH = 16
_ELLIPSIS = "..."


def dumps(value: Any) -> bytes:
    """Compact JSON with raw UTF-8, as vLLM's pydantic serialisation produces.

    A lone surrogate is written as its ``\\uXXXX`` escape (valid JSON, decoding to the same
    string); only surrogates fail to encode, so the error handler costs nothing otherwise."""
    text: str = ujson.dumps(value, ensure_ascii=False, escape_forward_slashes=False)
    return text.encode("utf-8", "backslashreplace")


def bounded_repr(value: Any, limit: int = MAX_ECHO_CHARS) -> str:
    """``repr(value)`` when it is short; otherwise its first ``limit`` characters and ``...``,
    nesting past ``MAX_ECHO_DEPTH`` shown as ``[...]``/``{...}``. Never builds more than
    about ``limit`` characters, however large or deep ``value`` is."""
    writer = _Writer(limit)
    writer.value(value, 0)
    text = "".join(writer.parts)
    return text if len(text) <= limit else text[:limit] + _ELLIPSIS


class _Writer:
    __slots__ = ("left", "parts")

    def __init__(self, limit: int) -> None:
        self.parts: list[str] = []
        self.left = limit

    def text(self, text: str) -> None:
        self.parts.append(text)
        self.left -= len(text)

    def value(self, value: Any, depth: int) -> None:
        if self.left <= 0:
            return
        if isinstance(value, dict):
            self.items(value.items(), "{", "}", depth, pairs=True)
        elif isinstance(value, list):
            self.items(value, "[", "]", depth)
        elif isinstance(value, tuple):
            self.items(value, "(", ",)" if len(value) == 1 else ")", depth)
        else:
            # Only strings can be long; cutting them first keeps repr's work bounded.
            self.text(repr(value[: self.left] if isinstance(value, str) else value))

    def items(
        self, items: Any, opening: str, closing: str, depth: int, pairs: bool = False
    ) -> None:
        if depth >= MAX_ECHO_DEPTH:
            self.text(opening + _ELLIPSIS + closing[-1])
            return
        self.text(opening)
        for index, item in enumerate(items):
            if self.left <= 0:
                return
            if index:
                self.text(", ")
            if pairs:
                self.value(item[0], depth + 1)
                self.text(": ")
                self.value(item[1], depth + 1)
            else:
                self.value(item, depth + 1)
        self.text(closing)
