"""Instances of a JSON schema, drawn from a seed: what a JSON-constrained decoder would emit.

``instance(schema, rng, budget)`` walks the schema and builds a value that validates against
it: required properties always, optional ones when the budget allows, types, enums and
consts, numeric bounds and ``multipleOf``, string lengths, ``pattern`` (via ``regex``) and
common formats, array bounds, ``prefixItems`` and ``uniqueItems``, nested objects,
``anyOf``/``oneOf`` (one branch), ``allOf`` (merged) and local ``$ref`` into ``$defs`` or
``definitions`` as pydantic emits them, recursive ones included. ``budget`` is a rough number
of tokens the value may take; strings, arrays and optional properties shrink to fit it.

What cannot be generated (``not``, ``if``/``then``, contradictory bounds, remote ``$ref``)
raises ``SchemaError`` naming it, so the request gets a clear 400 rather than invalid JSON.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

from dummy_vllm.engine.regex import RegexError, matching_string

_WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "river",
    "stone",
    "cloud",
    "north",
    "light",
    "green",
    "quick",
    "silver",
    "paper",
    "garden",
    "signal",
    "orbit",
    "copper",
    "maple",
    "harbor",
    "lantern",
    "meadow",
    "pixel",
    "summit",
    "velvet",
    "willow",
    "amber",
    "cedar",
    "falcon",
    "granite",
    "island",
    "jasper",
    "kernel",
    "lotus",
    "marble",
    "nectar",
    "onyx",
    "prism",
    "quartz",
    "raven",
    "saffron",
    "timber",
    "umber",
    "vector",
    "walnut",
    "yarrow",
    "zephyr",
]
# Deeper than this, recursion takes the smallest way out (no optional properties, fewest items).
_MAX_DEPTH = 6
_UNSUPPORTED = ("not", "if", "then", "else", "dependentSchemas", "unevaluatedProperties")
_FORMATS: dict[str, Any] = {
    "date-time": lambda rng: (
        f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T"
        f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}Z"
    ),
    "date": lambda rng: f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
    "time": lambda rng: f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00Z",
    "email": lambda rng: f"{rng.choice(_WORDS)}@{rng.choice(_WORDS)}.com",
    "uri": lambda rng: f"https://{rng.choice(_WORDS)}.example.com/{rng.choice(_WORDS)}",
    "url": lambda rng: f"https://{rng.choice(_WORDS)}.example.com/{rng.choice(_WORDS)}",
    "hostname": lambda rng: f"{rng.choice(_WORDS)}.example.com",
    "ipv4": lambda rng: ".".join(str(rng.randint(1, 254)) for _ in range(4)),
    "uuid": lambda rng: (
        f"{rng.getrandbits(32):08x}-{rng.getrandbits(16):04x}-"
        f"4{rng.getrandbits(12):03x}-a{rng.getrandbits(12):03x}-{rng.getrandbits(48):012x}"
    ),
}


class SchemaError(ValueError):
    """A schema this generator cannot satisfy; the message names the keyword."""


def dumps(value: Any) -> str:
    """JSON text as vLLM's parsers re-serialise arguments (``json.dumps`` separators), ASCII
    escaped so that every token decodes on its own."""
    return json.dumps(value)


def instance(schema: Any, rng: random.Random, budget: int = 64) -> Any:
    """A value valid against ``schema`` (a JSON schema as a dict, or ``True``)."""
    if schema is True or schema == {}:
        return _any_object(rng, budget)
    if not isinstance(schema, Mapping):
        raise SchemaError(f"a JSON schema must be an object, got {type(schema).__name__}")
    try:
        return _Generator(schema, rng).value(schema, max(budget, 1), 0)
    except SchemaError:
        raise
    except (
        TypeError,
        ValueError,
        LookupError,
        AttributeError,
        OverflowError,
        RecursionError,
    ) as exc:
        # A keyword of the wrong shape somewhere inside (schemas are client input): named, as
        # any other schema that cannot be generated.
        raise SchemaError(f"malformed schema ({type(exc).__name__}: {str(exc)[:200]})") from None


def json_object(rng: random.Random, budget: int = 64) -> dict[str, Any]:
    """Some JSON object (``response_format: json_object``)."""
    return _any_object(rng, budget)


def _any_object(rng: random.Random, budget: int) -> dict[str, Any]:
    keys = rng.sample(_WORDS, k=max(1, min(4, budget // 8)))
    values: list[Any] = [
        _words(rng, rng.randint(1, 4)),
        rng.randint(0, 1000),
        rng.random() < 0.5,
        [rng.choice(_WORDS) for _ in range(rng.randint(1, 3))],
    ]
    return {key: values[i % len(values)] for i, key in enumerate(keys)}


def _words(rng: random.Random, count: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(count))


class _Generator:
    def __init__(self, root: Mapping[str, Any], rng: random.Random) -> None:
        self.root = root
        self.rng = rng

    def resolve(self, ref: str) -> Mapping[str, Any]:
        if not ref.startswith("#"):
            raise SchemaError(f"only local $ref are supported, got {ref!r}")
        node: Any = self.root
        for part in filter(None, ref[1:].split("/")):
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(node, Mapping) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                raise SchemaError(f"$ref {ref!r} does not resolve")
        if node is True:
            return {}
        if not isinstance(node, Mapping):
            raise SchemaError(f"$ref {ref!r} is not a schema")
        return node

    def flatten(self, schema: Mapping[str, Any], depth: int) -> Mapping[str, Any]:
        """Resolve ``$ref`` and merge ``allOf`` into one schema."""
        for _ in range(32):
            if "$ref" not in schema:
                break
            target = self.resolve(str(schema["$ref"]))
            rest = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**target, **rest} if rest else target
        else:
            raise SchemaError("$ref chain too long")
        if "allOf" in schema:
            merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
            for part in schema["allOf"]:
                if part is True:
                    continue
                if not isinstance(part, Mapping):
                    raise SchemaError("allOf must list schemas")
                _merge(merged, self.flatten(part, depth))
            schema = merged
        for keyword in _UNSUPPORTED:
            if keyword in schema:
                raise SchemaError(f"the JSON schema keyword {keyword!r} is not supported")
        return schema

    def value(self, schema: Any, budget: int, depth: int) -> Any:
        if schema is True:
            return self.rng.choice(_WORDS)
        if schema is False:
            raise SchemaError("a false schema has no valid value")
        if not isinstance(schema, Mapping):
            raise SchemaError(f"a schema must be an object, got {schema!r}")
        schema = self.flatten(schema, depth)
        rng = self.rng
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            options = list(schema["enum"])
            if not options:
                raise SchemaError("enum must not be empty")
            return rng.choice(options)
        for key in ("anyOf", "oneOf"):
            if key in schema:
                return self.value(self.branch(schema, key, depth), budget, depth + 1)
        kind = self.type_of(schema, depth)
        if kind == "object":
            return self.object(schema, budget, depth)
        if kind == "array":
            return self.array(schema, budget, depth)
        if kind == "string":
            return self.string(schema, budget)
        if kind == "integer":
            return self.integer(schema)
        if kind == "number":
            return self.number(schema)
        if kind == "boolean":
            return rng.random() < 0.5
        if kind == "null":
            return None
        raise SchemaError(f"unknown JSON schema type {kind!r}")

    def branch(self, schema: Mapping[str, Any], key: str, depth: int) -> Mapping[str, Any]:
        options = schema[key]
        if not isinstance(options, list) or not options:
            raise SchemaError(f"{key} must be a non-empty list")
        rest = {k: v for k, v in schema.items() if k not in ("anyOf", "oneOf")}
        if depth >= _MAX_DEPTH:
            # Deep in a recursive schema: a branch without references ends the recursion.
            plain = [o for o in options if isinstance(o, Mapping) and "$ref" not in o]
            options = plain or options
        chosen = self.rng.choice(options)
        if chosen is True:
            chosen = {}
        if not isinstance(chosen, Mapping):
            raise SchemaError(f"{key} must list schemas")
        if not rest:
            return chosen
        merged = dict(rest)
        _merge(merged, self.flatten(chosen, depth))
        return merged

    def type_of(self, schema: Mapping[str, Any], depth: int) -> str:
        kind = schema.get("type")
        if isinstance(kind, list):
            if not kind:
                raise SchemaError("type must not be an empty list")
            if depth >= _MAX_DEPTH and "null" in kind:
                return "null"
            return str(self.rng.choice(kind))
        if kind is not None:
            return str(kind)
        if "properties" in schema or "required" in schema or "additionalProperties" in schema:
            return "object"
        if "items" in schema or "prefixItems" in schema:
            return "array"
        if any(k in schema for k in ("minimum", "maximum", "multipleOf")):
            return "number"
        return "string"

    def object(self, schema: Mapping[str, Any], budget: int, depth: int) -> dict[str, Any]:
        properties: Mapping[str, Any] = schema.get("properties") or {}
        required = list(dict.fromkeys(schema.get("required") or ()))
        optional = [name for name in properties if name not in required]
        extra = schema.get("additionalProperties", True)
        wanted = max(int(schema.get("minProperties", 0)), 0)
        most = schema.get("maxProperties")
        keep: list[str] = list(required)
        # Optional properties while the budget lasts (each costs a few tokens of key).
        for name in optional:
            room = budget - 6 * len(keep)
            if depth < _MAX_DEPTH and room > 12 and self.rng.random() < 0.6:
                keep.append(name)
        for name in optional:
            if len(keep) >= wanted:
                break
            if name not in keep:
                keep.append(name)
        if most is not None and len(keep) > most:
            if len(required) > most:
                raise SchemaError("maxProperties is below the number of required properties")
            keep = keep[: int(most)]
        share = max((budget - 4 * len(keep)) // max(len(keep), 1), 1)
        # In the schema's order, as a decoder following the schema writes them.
        order = {name: i for i, name in enumerate([*properties, *required])}
        keep.sort(key=order.__getitem__)
        result: dict[str, Any] = {}
        for name in keep:
            result[name] = self.value(properties.get(name, extra), share, depth + 1)
        extra_names = (f"{word}_{i}" for i, word in enumerate(_WORDS))
        while len(result) < wanted:
            if extra is False:
                raise SchemaError("minProperties cannot be met without additionalProperties")
            result[next(extra_names)] = self.value(extra, share, depth + 1)
        return result

    def array(self, schema: Mapping[str, Any], budget: int, depth: int) -> list[Any]:
        prefix = schema.get("prefixItems")
        items = schema.get("items", True)
        if isinstance(items, list):  # draft 4-7 tuples
            prefix, items = items, schema.get("additionalItems", True)
        prefix = list(prefix or ())
        low = max(int(schema.get("minItems", 0)), 0)
        high = schema.get("maxItems")
        if high is not None and int(high) < low:
            raise SchemaError("maxItems is below minItems")
        natural = 1 if depth >= _MAX_DEPTH else self.rng.randint(1, 3)
        count = max(low, min(natural, max(budget // 8, 1)))
        if high is not None:
            count = min(count, int(high))
        if items is False:
            count = min(count, len(prefix))
            if count < low:
                raise SchemaError("minItems cannot be met with items: false")
        share = max(budget // max(count, 1), 1)
        unique = bool(schema.get("uniqueItems"))
        result: list[Any] = []
        seen: set[str] = set()
        for index in range(count):
            item_schema = prefix[index] if index < len(prefix) else items
            for _ in range(20):
                item = self.value(item_schema, share, depth + 1)
                key = json.dumps(item, sort_keys=True)
                if not unique or key not in seen:
                    break
            else:
                if len(result) >= low:
                    break
                raise SchemaError("uniqueItems cannot be met")
            seen.add(key)
            result.append(item)
        return result

    def string(self, schema: Mapping[str, Any], budget: int) -> str:
        rng = self.rng
        low = max(int(schema.get("minLength", 0)), 0)
        high = schema.get("maxLength")
        if high is not None and int(high) < low:
            raise SchemaError("maxLength is below minLength")
        pattern = schema.get("pattern")
        fmt = schema.get("format")
        if isinstance(pattern, str):
            try:
                for _ in range(20):
                    text = _search_form(pattern, rng)
                    if low <= len(text) and (high is None or len(text) <= int(high)):
                        return text
            except RegexError as exc:
                raise SchemaError(str(exc)) from None
            raise SchemaError("pattern cannot be met within minLength/maxLength")
        if isinstance(fmt, str) and fmt in _FORMATS:
            text = str(_FORMATS[fmt](rng))
        else:
            text = _words(rng, rng.randint(1, max(1, min(budget, 6))))
        if len(text) < low:
            text = (text + " " + _words(rng, low)).strip()
        if high is not None and len(text) > int(high):
            text = text[: int(high)]
        if len(text) < low:
            text += "x" * (low - len(text))
        return text

    def integer(self, schema: Mapping[str, Any]) -> int:
        low, high = _bounds(schema)
        low_int = math.ceil(low) if low is not None else None
        high_int = math.floor(high) if high is not None else None
        if low_int is not None and low_int == low and _exclusive(schema, "Minimum"):
            low_int += 1
        if high_int is not None and high_int == high and _exclusive(schema, "Maximum"):
            high_int -= 1
        step = schema.get("multipleOf")
        if step is not None and not (isinstance(step, int | float) and step > 0):
            raise SchemaError("multipleOf must be a positive number")
        first = low_int if low_int is not None else (high_int - 100 if high_int is not None else 0)
        last = high_int if high_int is not None else first + 100
        if step:
            # Integers that are multiples of a fraction are multiples of some integer unit.
            unit = int(step) if float(step).is_integer() else _integer_unit(float(step))
            lo, hi = math.ceil(first / unit), math.floor(last / unit)
            if lo > hi:
                raise SchemaError("no integer meets minimum, maximum and multipleOf")
            return self.rng.randint(lo, hi) * unit
        if first > last:
            raise SchemaError("minimum is above maximum")
        return self.rng.randint(first, last)

    def number(self, schema: Mapping[str, Any]) -> float | int:
        step = schema.get("multipleOf")
        if step is not None:
            if not (isinstance(step, int | float) and step > 0):
                raise SchemaError("multipleOf must be a positive number")
            low, high = _bounds(schema)
            lo = math.ceil(low / step) if low is not None else 0
            hi = math.floor(high / step) if high is not None else lo + 100
            if low is not None and lo * step == low and _exclusive(schema, "Minimum"):
                lo += 1
            if high is not None and hi * step == high and _exclusive(schema, "Maximum"):
                hi -= 1
            if lo > hi:
                raise SchemaError("no number meets minimum, maximum and multipleOf")
            for _ in range(20):
                k = self.rng.randint(lo, hi)
                value = k * step
                # Validators test value / step for an integer: a float product may miss.
                if isinstance(step, int) or (value / step).is_integer():
                    return value
            if lo <= 0 <= hi:
                return 0
            raise SchemaError(f"multipleOf {step} cannot be met exactly in floating point")
        low, high = _bounds(schema)
        first = low if low is not None else (high - 100.0 if high is not None else 0.0)
        last = high if high is not None else first + 100.0
        if first > last:
            raise SchemaError("minimum is above maximum")
        for _ in range(20):
            value = round(self.rng.uniform(first, last), 2)
            if not first <= value <= last:
                value = self.rng.uniform(first, last)
            if _inside(value, schema):
                return value
        middle = (first + last) / 2
        if _inside(middle, schema):
            return middle
        raise SchemaError("no number meets exclusiveMinimum and exclusiveMaximum")


def _search_form(pattern: str, rng: random.Random) -> str:
    # JSON schema patterns are searched, not anchored; generating the pattern itself is enough.
    return matching_string(pattern, rng)


def _bounds(schema: Mapping[str, Any]) -> tuple[float | None, float | None]:
    low = schema.get("minimum")
    high = schema.get("maximum")
    ex_low = schema.get("exclusiveMinimum")
    ex_high = schema.get("exclusiveMaximum")
    # Draft 6+: exclusive bounds are numbers; draft 4: booleans beside minimum/maximum.
    if isinstance(ex_low, int | float) and not isinstance(ex_low, bool):
        low = ex_low if low is None else max(low, ex_low)
    if isinstance(ex_high, int | float) and not isinstance(ex_high, bool):
        high = ex_high if high is None else min(high, ex_high)
    return low, high


def _exclusive(schema: Mapping[str, Any], side: str) -> bool:
    """Whether the bound on ``side`` ("Minimum"/"Maximum") excludes its value."""
    flag = schema.get(f"exclusive{side}")
    if isinstance(flag, bool):
        return flag
    if isinstance(flag, int | float):
        bound = schema.get(side.lower())
        return bound is None or (flag >= bound if side == "Minimum" else flag <= bound)
    return False


def _inside(value: float, schema: Mapping[str, Any]) -> bool:
    low, high = _bounds(schema)
    if low is not None and (value < low or (value == low and _exclusive(schema, "Minimum"))):
        return False
    return not (
        high is not None and (value > high or (value == high and _exclusive(schema, "Maximum")))
    )


def _integer_unit(step: float) -> int:
    for scale in (10, 100, 1000, 10000):
        if abs(step * scale - round(step * scale)) < 1e-9:
            numerator = round(step * scale)
            return numerator // math.gcd(numerator, scale)
    raise SchemaError(f"multipleOf {step} is not supported for integers")


def _merge(target: dict[str, Any], part: Mapping[str, Any]) -> None:
    """allOf: properties and required add up; bounds take the stricter value."""
    for key, value in part.items():
        if key == "properties":
            target["properties"] = {**target.get("properties", {}), **value}
        elif key == "required":
            target["required"] = list(dict.fromkeys([*target.get("required", []), *value]))
        elif key in ("minimum", "minLength", "minItems", "exclusiveMinimum") and key in target:
            target[key] = max(target[key], value)
        elif key in ("maximum", "maxLength", "maxItems", "exclusiveMaximum") and key in target:
            target[key] = min(target[key], value)
        elif key == "type" and "type" in target and target["type"] != value:
            mine = set(_as_list(target["type"])) & set(_as_list(value))
            if not mine:
                raise SchemaError("allOf combines schemas of different types")
            target["type"] = sorted(mine)
        else:
            target[key] = value


def _as_list(value: Any) -> Sequence[Any]:
    return value if isinstance(value, list) else [value]
