"""Generated JSON and strings validate against what they were generated for: hand-written
schemas (pydantic's, OpenAI-style tool parameters), property-based schemas (hypothesis), and
regular expressions, checked with the ``jsonschema`` and ``re`` libraries."""

from __future__ import annotations

import json
import random
import re
from typing import Any, Literal

import jsonschema as validator
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from dummy_vllm.engine.jsonschema import SchemaError, dumps, instance, json_object
from dummy_vllm.engine.regex import RegexError, matching_string
from dummy_vllm.engine.tools import plan_tool_calls


class Address(BaseModel):
    street: str
    postcode: int


class Tree(BaseModel):
    label: str
    children: list[Tree] = []


class Person(BaseModel):
    """What openai's chat.completions.parse and LangChain send, $defs and $ref included."""

    name: str
    age: int
    email: str | None = None
    role: Literal["admin", "user"]
    address: Address
    tags: list[str]
    tree: Tree
    pair: tuple[int, str]
    score: float = 0.5


WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "minLength": 2, "maxLength": 30},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 14},
        "when": {"type": "string", "format": "date-time"},
        "code": {"type": "string", "pattern": "^[A-Z]{3}-\\d{2}$"},
        "ratio": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        "step": {"type": "number", "multipleOf": 0.25, "minimum": -2, "maximum": 2},
        "filters": {
            "type": "array",
            "items": {"type": "object", "properties": {"k": {"type": "string"}}, "required": ["k"]},
            "minItems": 1,
            "maxItems": 3,
            "uniqueItems": True,
        },
        "extra": {"anyOf": [{"type": "null"}, {"type": "integer", "multipleOf": 5}]},
        "both": {
            "allOf": [
                {"type": "object", "properties": {"a": {"const": 1}}, "required": ["a"]},
                {"properties": {"b": {"type": "boolean"}}, "required": ["b"]},
            ]
        },
    },
    "required": ["city", "unit", "days", "when", "code", "ratio", "step", "filters", "extra"],
    "additionalProperties": False,
}
STRICT_PERSON = {**Person.model_json_schema(), "additionalProperties": False}


@pytest.mark.parametrize("schema", [Person.model_json_schema(), WEATHER, STRICT_PERSON])
@pytest.mark.parametrize("budget", [1, 16, 200])
def test_hand_written_schemas(schema: dict[str, Any], budget: int) -> None:
    for seed in range(60):
        value = instance(schema, random.Random(seed), budget)
        validator.validate(value, schema)
        assert instance(schema, random.Random(seed), budget) == value  # deterministic


def test_pydantic_parses_what_is_generated() -> None:
    for seed in range(30):
        Person.model_validate_json(dumps(instance(Person.model_json_schema(), random.Random(seed))))


def test_a_small_budget_gives_a_smaller_instance() -> None:
    schema = {
        "type": "object",
        "properties": {"notes": {"type": "array", "items": {"type": "string"}}},
    }
    small = sum(len(dumps(instance(schema, random.Random(s), 4))) for s in range(40))
    large = sum(len(dumps(instance(schema, random.Random(s), 400))) for s in range(40))
    assert small < large


@pytest.mark.parametrize(
    ("schema", "keyword"),
    [
        ({"not": {"type": "string"}}, "not"),
        ({"$ref": "https://example.com/s.json"}, "local"),
        ({"type": "integer", "minimum": 5, "maximum": 1}, "minimum"),
        ({"type": "string", "pattern": "(a)\\1"}, "backreference"),
        ({"type": "frobnicate"}, "frobnicate"),
    ],
)
def test_unsupported_schemas_say_what(schema: dict[str, Any], keyword: str) -> None:
    with pytest.raises(SchemaError, match=keyword):
        instance(schema, random.Random(0))


def test_json_object_is_a_non_empty_json_object() -> None:
    for seed in range(20):
        obj = json_object(random.Random(seed))
        assert obj, seed
        assert json.loads(json.dumps(obj)) == obj  # string keys, JSON values only


def test_tool_calls_follow_the_choice() -> None:
    tools = {"get_weather": WEATHER, "noop": None}
    rng = random.Random(1)
    named = plan_tool_calls(tools, rng, forced="get_weather")
    assert [call.name for call in named] == ["get_weather"]
    validator.validate(__import__("json").loads(named[0].arguments), WEATHER)
    assert plan_tool_calls(tools, rng, call_rate=0.0) == []
    required = [
        plan_tool_calls(tools, random.Random(s), required=True, call_rate=0.0) for s in range(40)
    ]
    assert all(required)
    assert any(len(calls) == 2 for calls in required)
    single = [
        plan_tool_calls(tools, random.Random(s), required=True, parallel=False) for s in range(40)
    ]
    assert all(len(calls) == 1 for calls in single)
    assert plan_tool_calls(tools, rng, forced="noop")[0].arguments == "{}"


# --- property-based schemas ---------------------------------------------------------------------

_WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8)
_PATTERNS = ["^[a-z]+$", "^\\d{3}-\\d{2}$", "^(red|green|blue)$", "[A-Z][a-z]*", "^x?y+z*$"]


@st.composite
def _integer(draw: st.DrawFn) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "integer"}
    low = draw(st.none() | st.integers(-1000, 1000))
    if low is not None:
        schema["minimum"] = low
    if draw(st.booleans()):
        schema["maximum"] = (low if low is not None else 0) + draw(st.integers(20, 500))
    if draw(st.booleans()):
        schema["multipleOf"] = draw(st.integers(1, 7))
    if draw(st.booleans()) and "maximum" in schema:
        schema["exclusiveMaximum"] = schema.pop("maximum")
    return schema


@st.composite
def _number(draw: st.DrawFn) -> dict[str, Any]:
    low = draw(st.floats(-1e6, 1e6, allow_nan=False))
    schema: dict[str, Any] = {"type": "number", "minimum": low}
    if draw(st.booleans()):
        schema["maximum"] = low + draw(st.floats(0.5, 1e3))
    if draw(st.booleans()):
        schema["exclusiveMinimum"] = schema.pop("minimum")
    return schema


@st.composite
def _string(draw: st.DrawFn) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    kind = draw(st.sampled_from(["plain", "length", "pattern", "format", "enum"]))
    if kind == "length":
        low = draw(st.integers(0, 20))
        schema.update(minLength=low, maxLength=low + draw(st.integers(0, 20)))
    elif kind == "pattern":
        schema["pattern"] = draw(st.sampled_from(_PATTERNS))
    elif kind == "format":
        schema["format"] = draw(st.sampled_from(["date-time", "date", "email", "uuid", "uri"]))
    elif kind == "enum":
        schema["enum"] = draw(st.lists(st.text(max_size=10), min_size=1, max_size=4, unique=True))
    return schema


_LEAVES = (
    _integer()
    | _number()
    | _string()
    | st.just({"type": "boolean"})
    | st.just({"type": "null"})
    | st.builds(lambda v: {"const": v}, st.integers() | st.text(max_size=5) | st.booleans())
    | st.builds(lambda vs: {"enum": vs}, st.lists(st.integers(), min_size=1, max_size=4))
)


def _containers(children: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    @st.composite
    def obj(draw: st.DrawFn) -> dict[str, Any]:
        properties = draw(st.dictionaries(_WORD, children, max_size=5))
        required = [name for name in properties if draw(st.booleans())]
        schema: dict[str, Any] = {"type": "object", "properties": properties, "required": required}
        if draw(st.booleans()):
            schema["additionalProperties"] = False
        return schema

    @st.composite
    def arr(draw: st.DrawFn) -> dict[str, Any]:
        low = draw(st.integers(0, 3))
        schema: dict[str, Any] = {"type": "array", "items": draw(children), "minItems": low}
        if draw(st.booleans()):
            schema["maxItems"] = low + draw(st.integers(0, 4))
        return schema

    # Branches of distinct types: a oneOf that any instance meets exactly once.
    one_of = st.builds(
        lambda a, b: {"oneOf": [{**a, "type": "string"}, {"type": "integer", **b}]},
        st.just({}),
        st.just({"minimum": 0}),
    )
    nullable = st.builds(lambda c: {"anyOf": [c, {"type": "null"}]}, children)
    return obj() | arr() | one_of | nullable


SCHEMAS = st.recursive(_LEAVES, _containers, max_leaves=12)


@given(schema=SCHEMAS, seed=st.integers(0, 2**32), budget=st.integers(1, 300))
@settings(max_examples=300, deadline=None)
def test_generated_schemas(schema: dict[str, Any], seed: int, budget: int) -> None:
    value = instance(schema, random.Random(seed), budget)
    validator.validate(value, schema)


@given(schema=SCHEMAS, seed=st.integers(0, 2**32))
@settings(max_examples=100, deadline=None)
def test_generated_schemas_behind_refs(schema: dict[str, Any], seed: int) -> None:
    # As pydantic nests models: the root refers to a definition, which refers to another.
    wrapped = {
        "$defs": {
            "Inner": schema,
            "Outer": {
                "type": "object",
                "properties": {"x": {"$ref": "#/$defs/Inner"}},
                "required": ["x"],
            },
        },
        "$ref": "#/$defs/Outer",
    }
    validator.validate(instance(wrapped, random.Random(seed)), wrapped)


# --- regular expressions ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern",
    [
        r"\d{3}-\d{4}",
        r"(cat|dog)s?",
        r"[A-Z][a-z]+ [^0-9]{2,5}",
        r"^\w+@\w+\.com$",
        r"(?:ab)*c+?",
        r"(?P<year>\d{4})-(0[1-9]|1[0-2])",
        r"[\d.]+|none",
        r"\S\s\D\W",
    ],
)
def test_regex_strings_match(pattern: str) -> None:
    for seed in range(100):
        text = matching_string(pattern, random.Random(seed))
        assert re.fullmatch(pattern, text), (pattern, text)


@pytest.mark.parametrize(
    ("pattern", "what"),
    [
        (r"(a)\1", "backreference"),
        (r"a(?=b)", "(?="),
        (r"\bword", "assertion"),
        (r"(ab", "unexpected end"),
    ],
)
def test_unsupported_regex_says_what(pattern: str, what: str) -> None:
    with pytest.raises(RegexError, match=re.escape(what)):
        matching_string(pattern, random.Random(0))
