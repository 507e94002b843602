"""Option value syntax, parsed where it is typed: each parser turns one command-line or
environment string into the typed value Settings takes, and refuses bad input as a usage error
(exit 2) naming the option.

The result types are NewTypes so that typer sees one opaque value per string (a bare tuple
annotation would make it ask for several arguments), while the values stay plain tuples.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import NewType

import typer

from ..settings import FaultType

Pair = NewType("Pair", tuple[str, str])
FaultTypes = NewType("FaultTypes", tuple[FaultType, ...])
Strings = NewType("Strings", tuple[str, ...])


def pair_parser(separator: str, form: str) -> Callable[[str], Pair]:
    """A parser of ``NAME<separator>VALUE`` into a stripped pair; ``form`` shows the syntax in
    its error."""

    def parse(text: str) -> Pair:
        name, found, value = text.partition(separator)
        if not found or not name.strip():
            raise typer.BadParameter(f"expected {form}, got {text!r}")
        return Pair((name.strip(), value.strip()))

    return parse


model_alias = pair_parser("=", "REQUESTED=RECORDED")
header = pair_parser(":", "'Name: value'")


def fault_types(text: str) -> FaultTypes:
    """``"429,cut,stall"`` -> those fault types, in order and without repeats."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    known = [kind.value for kind in FaultType]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise typer.BadParameter(
            f"unknown fault type(s) {', '.join(unknown)}; known: {', '.join(known)}"
        )
    return FaultTypes(tuple(dict.fromkeys(FaultType(name) for name in names)))


def json_strings(text: str) -> Strings:
    """A JSON list of strings, as vLLM's CORS flags take it: ``'["http://a.example"]'``."""
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise typer.BadParameter(f"expected a JSON list of strings, got {text!r}")
    return Strings(tuple(value))
