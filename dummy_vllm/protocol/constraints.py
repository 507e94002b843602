"""Tools and structured outputs in a request: parsed, validated with vLLM's messages.

``tools``/``tool_choice``/``parallel_tool_calls`` become a ``ToolRequest``; ``response_format``,
``structured_outputs`` (0.11+) and the ``guided_*`` fields (up to 0.11; later releases ignore
them as unknown fields) become one ``OutputConstraint``. Which fields exist, and which server
flags named or "required" tool choices need, come from the ``Profile``. Exact texts are from
``notes/agent-requests.md`` §1.4 and §4.2 (vLLM's ``check_tool_usage``,
``check_structured_outputs_count``, ``StructuredOutputsParams.__post_init__``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ..engine.regex import RegexError, parse
from ..settings import AgentSettings
from .encoding import MAX_ECHO_CHARS, bounded_repr
from .errors import ValidationFailure, bad_request, value_error
from .profiles import Profile

_CORRECT_USAGE = 'Correct usage: `{"type": "function", "function": {"name": "my_function"}}`'
AUTO_NEEDS_FLAGS = (
    '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set'
)
_GUIDED = ("guided_json", "guided_regex", "guided_choice", "guided_grammar")
# StructuredOutputsParams' fields (0.11), as its __post_init__ error prints them.
_PARAMS_FIELDS = {
    "json": None,
    "regex": None,
    "choice": None,
    "grammar": None,
    "json_object": None,
    "disable_fallback": False,
    "disable_any_whitespace": False,
    "disable_additional_properties": False,
    "whitespace_pattern": None,
    "structural_tag": None,
    "_backend": None,
    "_backend_was_auto": False,
}


class ToolMode(StrEnum):
    NONE = "none"
    AUTO = "auto"
    REQUIRED = "required"
    NAMED = "named"


@dataclass(frozen=True, slots=True)
class ToolRequest:
    """What the request allows: the tools by name (their ``parameters`` schema or None)."""

    tools: Mapping[str, Mapping[str, Any] | None] = field(default_factory=dict)
    mode: ToolMode = ToolMode.NONE
    # The tool of a named tool_choice.
    name: str | None = None
    parallel: bool = True

    @property
    def calls_possible(self) -> bool:
        return bool(self.tools) and self.mode is not ToolMode.NONE


NO_TOOLS = ToolRequest()


class ConstraintKind(StrEnum):
    JSON = "json"
    JSON_OBJECT = "json_object"
    REGEX = "regex"
    CHOICE = "choice"


@dataclass(frozen=True, slots=True)
class OutputConstraint:
    kind: ConstraintKind
    schema: Any = None
    pattern: str = ""
    choices: tuple[str, ...] = ()


# --- tools --------------------------------------------------------------------------------------


def check_tool_usage(body: Mapping[str, Any]) -> None:
    """vLLM's ``check_tool_usage``: a model validator that runs on the raw body before any
    field is typed, so its errors come before pydantic's."""
    choice = body.get("tool_choice")
    if choice is None or choice == "none":
        return  # tools without a choice are an implicit "auto"
    tools = body.get("tools")
    if tools is None:
        raise value_error("When using `tool_choice`, `tools` must be set.", body, "tool_choice")
    if choice not in ("auto", "required") and not isinstance(choice, dict):
        raise value_error(
            f"Invalid value for `tool_choice`: {_shown(choice)}! Only named tools, "
            '"none", "auto" or "required" are supported.',
            body,
            "tool_choice",
        )
    if isinstance(choice, dict):
        _check_named_choice(choice, tools, body)


def _check_named_choice(choice: dict[str, Any], tools: Any, body: Any) -> None:
    function = choice.get("function")
    if not isinstance(function, dict):
        raise value_error(
            f"Invalid value for `function`: `{_shown(function)}` in `tool_choice`! "
            f"{_CORRECT_USAGE}",
            body,
            "tool_choice.function",
        )
    if "name" not in function:
        raise value_error(
            f"Expected field `name` in `function` in `tool_choice`! {_CORRECT_USAGE}",
            body,
            "tool_choice.function.name",
        )
    name = function["name"]
    if not isinstance(name, str) or not name:
        raise value_error(
            f"Invalid `name` in `function`: `{_shown(name)}` in `tool_choice`! {_CORRECT_USAGE}",
            body,
            "tool_choice.function.name",
        )
    names = _raw_tool_names(tools)
    # Malformed tools (where vLLM's own loop would fail) are left to the field checks.
    if names is not None and name not in names:
        raise value_error(
            "The tool specified in `tool_choice` does not match any of the specified `tools`",
            body,
            "tool_choice",
        )


def _shown(value: Any) -> str:
    """``str(value)`` as vLLM's f-strings print it, bounded."""
    return value[:MAX_ECHO_CHARS] if isinstance(value, str) else bounded_repr(value)


def _raw_tool_names(tools: Any) -> set[Any] | None:
    if not isinstance(tools, list):
        return None
    names = set()
    for tool in tools:
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            return None
        names.add(function["name"])
    return names


def parse_tools(fields: Mapping[str, Any], profile: Profile, server: AgentSettings) -> ToolRequest:
    """The tools of a body whose fields are checked (``check_tool_usage`` first), and the
    handler's flag checks, in vLLM's order."""
    tools = fields.get("tools")
    choice = fields.get("tool_choice")
    if tools is not None:
        tools = {tool["function"]["name"]: tool["function"].get("parameters") for tool in tools}
        if not tools and profile.empty_tools_refused:
            raise value_error(
                "`tools` must not be an empty array. Either provide at least one tool or omit "
                "the field entirely.",
                fields,
                "tools",
            )
    if choice is None and tools:
        choice = "auto"
    if choice is None or choice == "none":
        return ToolRequest(tools or {}, ToolMode.NONE)
    assert tools is not None  # check_tool_usage refused a choice without tools
    if choice == "required" and not tools:
        # OpenAI's behaviour, which vLLM aligns with: nothing to call, so "none".
        return ToolRequest({}, ToolMode.NONE)
    name = choice["function"]["name"] if isinstance(choice, dict) else None
    parallel = fields.get("parallel_tool_calls")
    request = ToolRequest(
        tools,
        ToolMode.NAMED if name is not None else ToolMode(choice),
        name,
        parallel is not False,
    )
    _check_server_flags(request, profile, server)
    return request


def _check_server_flags(request: ToolRequest, profile: Profile, server: AgentSettings) -> None:
    parser = server.tool_call_parser if server.enable_auto_tool_choice else None
    if request.mode is ToolMode.AUTO and parser is None:
        raise bad_request(AUTO_NEEDS_FLAGS)
    if parser is not None:
        return
    if request.mode is ToolMode.NAMED and profile.named_tool_needs_parser:
        raise bad_request(profile.named_tool_needs_parser.format(name=request.name))
    if request.mode is ToolMode.REQUIRED and profile.required_tool_needs_parser:
        raise bad_request(profile.required_tool_needs_parser)


# --- structured outputs -------------------------------------------------------------------------


def parse_constraint(
    body: Mapping[str, Any], profile: Profile, *, chat: bool
) -> OutputConstraint | None:
    """The one constraint the answer must meet, or None."""
    params: dict[str, Any] = {}
    structured = body.get("structured_outputs") if profile.structured_outputs_field else None
    if structured is not None:
        params = _structured_outputs(structured, body)
    elif profile.guided_fields:
        guided = {key[len("guided_") :]: body.get(key) for key in _GUIDED}
        guided = {key: value for key, value in guided.items() if value is not None}
        if len(guided) > 1:
            # Raised by StructuredOutputsParams in to_sampling_params: a handler error.
            shown = {**_PARAMS_FIELDS, **guided}
            raise bad_request(
                "You can only use one kind of structured outputs constraint but multiple are "
                f"specified: {shown}"
            )
        params = guided
    response_format = body.get("response_format")
    if response_format is not None and (chat or profile.completion_response_format):
        params.update(_response_format(response_format, body))
    return _constraint(params)


def _structured_outputs(structured: Any, body: Any) -> dict[str, Any]:
    if not isinstance(structured, dict):
        raise ValidationFailure(
            [
                {
                    "type": "dict_type",
                    "loc": ("body", "structured_outputs"),
                    "msg": "Input should be a valid dictionary",
                    "input": structured,
                }
            ]
        )
    if sum(structured.get(key) is not None for key in ("json", "regex", "choice")) > 1:
        raise value_error(
            "You can only use one kind of constraints for structured outputs "
            "('json', 'regex' or 'choice').",
            body,
            "structured_outputs",
        )
    params = {
        key: structured[key]
        for key in ("json", "regex", "choice", "grammar", "json_object", "structural_tag")
        if structured.get(key) is not None
    }
    if len(params) > 1:
        raise value_error(
            "You can only use one kind of structured outputs constraint but multiple are "
            f"specified: { ({**_PARAMS_FIELDS, **structured}) }",
            body,
            "structured_outputs",
        )
    return params


def _response_format(response_format: Any, body: Any) -> dict[str, Any]:
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "text":
        return {}
    if kind == "json_object":
        return {"json_object": True}
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        if not isinstance(spec, dict):
            raise bad_request("'json_schema' field must be provided.", "response_format")
        if not isinstance(spec.get("name"), str):
            raise ValidationFailure(
                [
                    {
                        "type": "missing",
                        "loc": ("body", "response_format", "json_schema", "name"),
                        "msg": "Field required",
                        "input": spec,
                    }
                ]
            )
        return {"json": spec.get("schema", {})}
    if kind == "structural_tag":
        return {"structural_tag": response_format}
    raise ValidationFailure(
        [
            {
                "type": "literal_error",
                "loc": ("body", "response_format", "type"),
                "msg": "Input should be 'text', 'json_object', 'json_schema' or 'structural_tag'",
                "input": kind,
            }
        ]
    )


def _constraint(params: Mapping[str, Any]) -> OutputConstraint | None:
    # The structured-output backend's order: json, then json_object, regex, choice, grammar.
    if params.get("json") is not None:
        schema = params["json"]
        if isinstance(schema, str):
            try:
                schema = json.loads(schema)
            except ValueError:
                raise bad_request("Invalid JSON grammar specification.") from None
        return OutputConstraint(ConstraintKind.JSON, schema=schema)
    if params.get("json_object"):
        return OutputConstraint(ConstraintKind.JSON_OBJECT)
    if params.get("regex") is not None:
        pattern = params["regex"]
        try:
            parse(str(pattern))
        except RegexError as exc:
            raise bad_request(f"This server cannot generate text for the regex: {exc}") from None
        return OutputConstraint(ConstraintKind.REGEX, pattern=str(pattern))
    if params.get("choice") is not None:
        choices = params["choice"]
        if not isinstance(choices, list) or not choices:
            raise bad_request(f"Choice '{choices}' cannot be an empty list")
        return OutputConstraint(ConstraintKind.CHOICE, choices=tuple(map(str, choices)))
    for unsupported in ("grammar", "structural_tag"):
        if params.get(unsupported) is not None:
            raise bad_request(
                f"This server cannot generate text for a `{unsupported}` constraint; it "
                "supports json schemas, json_object, regex and choice."
            )
    return None
