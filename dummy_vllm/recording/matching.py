"""Match keys: which recorded exchange answers a replayed request.

Record computes both keys from the request *before* redaction (so a request carrying a secret
still matches its recording) and the store keeps only their hashes (so the secret never reaches
the database). Replay computes the same keys from the live request and looks them up.

Two requests get the same key when they differ only in:

- top-level key order and JSON whitespace;
- number spelling: ``1`` and ``1.0`` are equal (vLLM's pydantic models coerce both);
- top-level fields that are ``null`` versus absent (every optional vLLM field defaults to None);
- ``max_tokens`` versus ``max_completion_tokens`` (vLLM prefers the latter when both are set);
- the ignored fields (``DEFAULT_IGNORED``), which change how the answer is delivered, not what
  it says;
- a model name that ``model_aliases`` maps onto another.

Tools, ``tool_choice``, ``response_format`` and the structured-output fields count in both
keys: they decide whether the answer is prose, tool calls or constrained JSON.

An explicit default (``"n": 1``) is *not* equal to leaving it out, and ``"prompt": "x"`` is not
equal to ``"prompt": ["x"]``: both would need knowledge of every endpoint's defaults.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

DEFAULT_IGNORED: frozenset[str] = frozenset(
    {
        "stream",
        "stream_options",
        "user",
        "request_id",
        # Scheduling and prefix-cache isolation: they change latency, not tokens.
        "priority",
        "cache_salt",
    }
)

# Fields that carry the request text: the relaxed key matches on these and the model only.
PROMPT_FIELDS: frozenset[str] = frozenset({"prompt", "messages", "input"})
# Fields that decide what kind of answer comes back (tool calls, JSON of a schema, a choice):
# the relaxed key keeps them too, so that a tool request never replays a prose answer.
SHAPE_FIELDS: frozenset[str] = frozenset(
    {
        "tools",
        "tool_choice",
        "response_format",
        "structured_outputs",
        "guided_json",
        "guided_regex",
        "guided_choice",
        "guided_grammar",
    }
)

NO_ALIASES: Mapping[str, str] = MappingProxyType({})

_FIELD_ALIASES: Mapping[str, str] = MappingProxyType({"max_completion_tokens": "max_tokens"})


def canonical_key(
    route: str,
    body: Mapping[str, Any],
    *,
    ignore: frozenset[str] = DEFAULT_IGNORED,
    include: frozenset[str] | None = None,
    model_aliases: Mapping[str, str] = NO_ALIASES,
) -> str:
    """The exact-match key: ``route`` and a hash of every field that changes the answer.

    With ``include``, exactly those fields count and ``ignore`` is not consulted.
    """
    fields = normalise_body(body, model_aliases=model_aliases)
    if include is not None:
        wanted = _alias_names(include)
        fields = {name: value for name, value in fields.items() if name in wanted}
    else:
        unwanted = _alias_names(ignore)
        fields = {name: value for name, value in fields.items() if name not in unwanted}
    return _key(route, fields)


def relaxed_key(
    route: str, body: Mapping[str, Any], *, model_aliases: Mapping[str, str] = NO_ALIASES
) -> str:
    """The fallback key: ``route``, model, prompt/messages/input and the fields that shape
    the answer (tools, tool choice, structured-output constraints)."""
    return canonical_key(
        route, body, include=PROMPT_FIELDS | SHAPE_FIELDS | {"model"}, model_aliases=model_aliases
    )


def diff_fields(
    a: Mapping[str, Any],
    b: Mapping[str, Any],
    *,
    ignore: frozenset[str] = DEFAULT_IGNORED,
    model_aliases: Mapping[str, str] = NO_ALIASES,
) -> list[str]:
    """Paths where two request bodies differ, sorted, e.g. ``["messages[2].content", "seed"]``.

    Bodies are compared after the same normalisation as the keys, so two bodies with equal
    canonical keys have no differences. Lists of different lengths are reported as a whole.
    """
    unwanted = _alias_names(ignore)
    left = normalise_body(a, model_aliases=model_aliases)
    right = normalise_body(b, model_aliases=model_aliases)
    paths: list[str] = []
    for name in sorted((left.keys() | right.keys()) - unwanted):
        if name not in left or name not in right:
            paths.append(name)
        else:
            _diff(left[name], right[name], name, paths)
    return paths


def normalise_body(
    body: Mapping[str, Any], *, model_aliases: Mapping[str, str] = NO_ALIASES
) -> dict[str, Any]:
    """The body as the keys see it: nulls dropped, aliases resolved, numbers normalised."""
    fields = {name: _normalise(value) for name, value in body.items() if value is not None}
    for alias, name in _FIELD_ALIASES.items():
        if alias in fields:
            fields[name] = fields.pop(alias)
    model = fields.get("model")
    if isinstance(model, str):
        fields["model"] = model_aliases.get(model, model)
    return fields


def _alias_names(names: frozenset[str]) -> frozenset[str]:
    return frozenset(_FIELD_ALIASES.get(name, name) for name in names)


def _normalise(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {key: _normalise(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_normalise(item) for item in value]
    return value


def _key(route: str, fields: Mapping[str, Any]) -> str:
    # Hashed because the body may hold secrets that redaction removes only from the stored copy.
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    # surrogatepass: a lone surrogate (a JSON "\ud800") hashes too; other text as plain UTF-8.
    return f"{route} {hashlib.sha256(canonical.encode('utf-8', 'surrogatepass')).hexdigest()}"


def _diff(a: Any, b: Any, path: str, out: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(a.keys() | b.keys()):
            child = f"{path}.{key}"
            if key not in a or key not in b:
                out.append(child)
            else:
                _diff(a[key], b[key], child, out)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for index, (left, right) in enumerate(zip(a, b, strict=True)):
            _diff(left, right, f"{path}[{index}]", out)
    elif a != b or type(a) is not type(b):
        out.append(path)
