"""Field types checked the way pydantic's lax mode checks vLLM's request models.

A check takes a decoded JSON value and returns it coerced (``"3"`` to 3 for an ``int``) or raises
``FieldError`` with pydantic's error types, messages and locations relative to the field, so the
request parser can report them as FastAPI does inside vLLM. Checks compose: ``list_of(as_int)``
is ``list[int]``, ``union(("str", as_str), ...)`` tags each member's errors with its name, as
pydantic's smart unions do.

Every check does work linear in its input and collects at most ``MAX_ERRORS`` errors, so a
body of a million wrong items costs one pass, not a million error records.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

Check = Callable[[Any], Any]
Loc = tuple[str | int, ...]
MAX_ERRORS = 1000
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# Python refuses to convert longer digit strings (sys.get_int_max_str_digits()); so does pydantic.
_MAX_INT_DIGITS = 4300
_INT_STRING = re.compile(r"[+-]?([0-9](?:_?[0-9])*)(?:\.0+)?")
_TRUE = frozenset({"true", "1", "yes", "on", "t", "y"})
_FALSE = frozenset({"false", "0", "no", "off", "f", "n"})
_SAME = object()
# What Rust's str::trim() removes (Unicode White_Space): Python's whitespace but \x1c-\x1f.
_WHITESPACE = "".join(
    c for c in map(chr, range(0x3001)) if c.isspace() and c not in "\x1c\x1d\x1e\x1f"
)


@dataclass(frozen=True, slots=True)
class Error:
    """One pydantic error; ``input`` is the failing value itself unless given."""

    type: str
    msg: str
    loc: Loc = ()
    input: Any = _SAME
    ctx: Mapping[str, Any] | None = None

    def at(self, *prefix: str | int) -> Error:
        return Error(self.type, self.msg, (*prefix, *self.loc), self.input, self.ctx)

    def render(self, loc: Loc, value: Any) -> dict[str, Any]:
        """As pydantic lists it; ``value`` stands for the input when the check did not say."""
        error = {
            "type": self.type,
            "loc": (*loc, *self.loc),
            "msg": self.msg,
            "input": value if self.input is _SAME else self.input,
        }
        if self.ctx is not None:
            error["ctx"] = dict(self.ctx)
        return error


class FieldError(Exception):
    def __init__(self, error_type: str, msg: str, ctx: Mapping[str, Any] | None = None) -> None:
        super().__init__(msg)
        self.errors = [Error(error_type, msg, ctx=ctx)]

    @classmethod
    def of(cls, errors: list[Error]) -> FieldError:
        failure = cls.__new__(cls)
        Exception.__init__(failure, errors[0].msg)
        failure.errors = errors
        return failure


def fail(error_type: str, msg: str, ctx: Mapping[str, Any] | None = None) -> NoReturn:
    raise FieldError(error_type, msg, ctx)


# --- scalars ----------------------------------------------------------------------------------


def as_int(value: Any) -> int:
    if isinstance(value, int):  # bool included: pydantic's lax mode takes True as 1
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            fail("finite_number", "Input should be a finite number")
        if not value.is_integer():
            fail(
                "int_from_float",
                "Input should be a valid integer, got a number with a fractional part",
            )
        # pydantic converts through an i64 and refuses both of its ends.
        if not INT64_MIN < value < 2.0**63:
            _too_big()
        return int(value)
    if isinstance(value, str):
        match = _INT_STRING.fullmatch(value.strip(_WHITESPACE))
        if match is None:
            fail(
                "int_parsing",
                "Input should be a valid integer, unable to parse string as an integer",
            )
        if len(match.group(1)) > _MAX_INT_DIGITS:
            _too_big()
        return int(match.group(0).split(".", 1)[0])
    fail("int_type", "Input should be a valid integer")


def _too_big() -> NoReturn:
    fail("int_parsing_size", "Unable to parse input string as an integer, exceeded maximum size")


def as_float(value: Any) -> float:
    if isinstance(value, float):
        return value
    if isinstance(value, int):
        try:
            return float(value)
        except OverflowError:
            fail("float_type", "Input should be a valid number")
    if isinstance(value, str):
        text = value.strip(_WHITESPACE)
        if "_" in value:
            # pydantic drops underscores anywhere but at the ends or doubled ("1._5" is 1.5),
            # and then trims no whitespace.
            bad = value.startswith("_") or value.endswith("_") or "__" in value
            text = "_" if bad or text != value else value.replace("_", "")
        # float() also reads non-ASCII digits, which pydantic does not.
        if text.isascii() and "_" not in text:
            try:
                return float(text)
            except ValueError:
                pass
        fail("float_parsing", "Input should be a valid number, unable to parse string as a number")
    fail("float_type", "Input should be a valid number")


def as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    # pydantic reads a number as a 64-bit integer first: 0 and 1 are booleans, other integers
    # fail to parse, and what is no such integer (1.5, 2**70) is not a boolean at all.
    if isinstance(value, float) and value.is_integer() and INT64_MIN < value < 2.0**63:
        value = int(value)
    if isinstance(value, int) and INT64_MIN <= value <= INT64_MAX:
        if value in (0, 1):
            return bool(value)
    elif isinstance(value, str):
        lowered = value.lower()
        if lowered in _TRUE or lowered in _FALSE:
            return lowered in _TRUE
    else:
        fail("bool_type", "Input should be a valid boolean")
    fail("bool_parsing", "Input should be a valid boolean, unable to interpret input")


def as_str(value: Any) -> str:
    if isinstance(value, str):
        return value
    fail("string_type", "Input should be a valid string")


def as_dict(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    fail("dict_type", "Input should be a valid dictionary")


def as_list(value: Any) -> list[Any]:
    if isinstance(value, list):
        return value
    fail("list_type", "Input should be a valid list")


# --- combinators ------------------------------------------------------------------------------


def list_of(item: Check, max_length: int | None = None) -> Check:
    """``list[item]``, optionally ``Field(max_length=...)``."""

    def check(value: Any) -> list[Any]:
        items = as_list(value)
        checked: list[Any] = []
        errors: list[Error] = []
        for index, element in enumerate(items):
            try:
                checked.append(item(element))
            except FieldError as exc:
                errors.extend(error.at(index) for error in exc.errors)
                if len(errors) >= MAX_ERRORS:
                    break
        if max_length is not None and len(items) > max_length:
            # pydantic counts after validating the items, and reports the length alone.
            raise FieldError(
                "too_long",
                f"List should have at most {max_length} item{'s' if max_length != 1 else ''} "
                f"after validation, not {len(items)}",
                {"field_type": "List", "max_length": max_length, "actual_length": len(items)},
            )
        if errors:
            raise FieldError.of(errors)
        return checked

    return check


def dict_of(item: Check) -> Check:
    """``dict[str, item]`` (JSON keys are always strings)."""

    def check(value: Any) -> dict[str, Any]:
        checked: dict[str, Any] = {}
        errors: list[Error] = []
        for key, element in as_dict(value).items():
            try:
                checked[key] = item(element)
            except FieldError as exc:
                errors.extend(error.at(key) for error in exc.errors)
                if len(errors) >= MAX_ERRORS:
                    break
        if errors:
            raise FieldError.of(errors)
        return checked

    return check


def union(*members: tuple[str, Check]) -> Check:
    """The first member that accepts the value; else every member's errors, each under its
    name (pydantic's tags: ``str``, ``list[str]``, ``literal['none']``...)."""

    def check(value: Any) -> Any:
        errors: list[Error] = []
        for name, member in members:
            try:
                return member(value)
            except FieldError as exc:
                errors.extend(error.at(name) for error in exc.errors)
        raise FieldError.of(errors)

    return check


def nullable(check: Check) -> Check:
    """``Optional[...]`` inside a structure (top-level nulls are skipped by the parser)."""

    def nullable_check(value: Any) -> Any:
        return None if value is None else check(value)

    return nullable_check


def literal(*allowed: str) -> Check:
    quoted = [f"'{value}'" for value in allowed]
    expected = quoted[-1] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"

    def check(value: Any) -> str:
        if isinstance(value, str) and value in allowed:
            return value
        fail("literal_error", f"Input should be {expected}", {"expected": expected})

    return check


def between(check: Check, low: int | None = None, high: int | None = None) -> Check:
    """``Field(ge=low, le=high)`` on a number."""

    def bounded(value: Any) -> Any:
        number = check(value)
        if low is not None and number < low:
            fail(
                "greater_than_equal",
                f"Input should be greater than or equal to {low}",
                {"ge": low},
            )
        if high is not None and number > high:
            fail("less_than_equal", f"Input should be less than or equal to {high}", {"le": high})
        return number

    return bounded


def model(fields: Mapping[str, Check], class_name: str, required: tuple[str, ...] = ()) -> Check:
    """A nested pydantic model (or TypedDict): its known fields checked, unknown ones kept."""

    def check(value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            fail(
                "model_type",
                f"Input should be a valid dictionary or instance of {class_name}",
                {"class_name": class_name},
            )
        errors = [
            Error("missing", "Field required", (name,), value)
            for name in required
            if name not in value
        ]
        checked = dict(value)
        for name, element in value.items():
            field = fields.get(name)
            if field is None:
                continue
            try:
                checked[name] = field(element)
            except FieldError as exc:
                errors.extend(error.at(name) for error in exc.errors)
        if errors:
            raise FieldError.of(errors)
        return checked

    return check


def as_any(value: Any) -> Any:
    """A field whose type its route checks itself (unions of shapes vLLM parses further)."""
    return value
