"""Synthetic function calls for the Responses and Anthropic routes.

Deliberately minimal and self-contained so that it can give way to a fuller tool-call generator:
which tool a request gets called (``tool_to_call``) and arguments that fit the tool's JSON schema
(``call_arguments``). The policy makes agent loops end: a model told it may use tools calls the
first one, unless the conversation's last turn already carries a tool's result, when it answers
in text.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

NONE = "none"
AUTO = "auto"
REQUIRED = "required"
_WORDS = ("Paris", "blue", "seven", "north", "example", "today", "report", "small")


@dataclass(frozen=True, slots=True)
class FunctionTool:
    """A tool the model may call: its name and the JSON schema of its arguments."""

    name: str
    parameters: Any


def tool_to_call(
    tools: Sequence[FunctionTool], choice: str, after_tool_result: bool, forced: str | None = None
) -> FunctionTool | None:
    """The tool to call: the one named ``forced`` (which the caller checked is among ``tools``),
    the first for ``required``, the first for ``auto`` unless the last turn is a tool's result,
    none for ``none`` or without tools."""
    if forced is not None:
        return next(tool for tool in tools if tool.name == forced)
    if not tools or choice == NONE or (choice == AUTO and after_tool_result):
        return None
    return tools[0]


def call_arguments(schema: Any, seed: int) -> str:
    """A JSON object that fits ``schema`` (its required properties, else all of them), as
    vLLM's tool parsers print it (``json.dumps`` defaults)."""
    return json.dumps(_value(schema, random.Random(seed), depth=0, top=True))


def _value(schema: Any, rng: random.Random, depth: int, top: bool = False) -> Any:
    if not isinstance(schema, Mapping):
        return {} if top else rng.choice(_WORDS)
    if "enum" in schema and isinstance(schema["enum"], list) and schema["enum"]:
        return schema["enum"][0]
    kind = schema.get("type", "object" if top or "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "object":
        properties = schema.get("properties")
        if not isinstance(properties, Mapping) or depth > 4:
            return {}
        required = schema.get("required")
        names = [n for n in properties if not isinstance(required, list) or n in required]
        return {name: _value(properties[name], rng, depth + 1) for name in names}
    if kind == "array":
        return [_value(schema.get("items"), rng, depth + 1)] if depth <= 4 else []
    if kind == "integer":
        return rng.randint(1, 10)
    if kind == "number":
        return rng.randint(1, 100) / 4
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return rng.choice(_WORDS)
