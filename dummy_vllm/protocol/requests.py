"""Parse and validate request bodies into typed requests, with vLLM 0.11's messages.

The order of checks follows vLLM: body decoding and field types (pydantic, ``Bad Request``),
model validators (``Bad Request``), the model name (404), context length, then sampling
parameters (``BadRequestError``). Unknown fields are accepted and ignored, as vLLM does.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import ujson

from ..engine import Tokenizer, render_chat_prompt
from ..settings import AgentSettings, Limits
from .constraints import NO_TOOLS, OutputConstraint, ToolRequest, parse_constraint, parse_tools
from .context_length import OutputRequest, check_context
from .errors import ValidationFailure, bad_request, model_not_found, value_error
from .profiles import DEFAULT_PROFILE, Profile

# The routes of vLLM's API that this server answers (or, recording, forwards).
CHAT_ROUTE = "/v1/chat/completions"
COMPLETIONS_ROUTE = "/v1/completions"
MODELS_ROUTE = "/v1/models"
VERSION_ROUTE = "/version"
TOKENIZE_ROUTE = "/tokenize"
DETOKENIZE_ROUTE = "/detokenize"
EMBEDDINGS_ROUTE = "/v1/embeddings"
POOLING_ROUTE = "/pooling"
RESPONSES_ROUTE = "/v1/responses"
# Sanic path templates: the id is the last segment.
RESPONSE_ROUTE = "/v1/responses/<response_id>"
RESPONSE_CANCEL_ROUTE = "/v1/responses/<response_id>/cancel"
MESSAGES_ROUTE = "/v1/messages"
COUNT_TOKENS_ROUTE = "/v1/messages/count_tokens"
GENERATION_ROUTES = (CHAT_ROUTE, COMPLETIONS_ROUTE)
COMPLETIONS_DEFAULT_MAX_TOKENS = 16
GREEDY_EPSILON = 1e-5
JSON_MEDIA_TYPE = "application/json"


@dataclass(frozen=True, slots=True)
class ServedModel:
    """What a worker knows about the model it pretends to serve. Built once per worker."""

    name: str
    root: str
    max_model_len: int
    tokenizer: Tokenizer
    limits: Limits
    # The vLLM release answered as, and the version /version reports.
    profile: Profile = DEFAULT_PROFILE
    version: str = DEFAULT_PROFILE.version
    # Tool-call and reasoning flags the server was started with.
    agent: AgentSettings = field(default_factory=AgentSettings)
    embedding_dimensions: int = 1024
    # LoRA adapters loaded at runtime (/v1/load_lora_adapter): name -> path, per worker.
    adapters: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def fingerprint(self) -> str:
        """``system_fingerprint`` as vLLM's default ``--fingerprint-mode full`` prints it for
        one GPU: ``vllm-<version>-<8 hex of the config hash>``, stable for a configuration."""
        config = f"{self.version}|{self.name}|{self.root}|{self.max_model_len}".encode()
        return f"vllm-{self.version}-{hashlib.sha256(config).hexdigest()[:8]}"


@dataclass(frozen=True, slots=True)
class GenerationParams:
    n: int
    max_tokens: int
    min_tokens: int
    ignore_eos: bool
    stop: tuple[str, ...]
    include_stop_str_in_output: bool
    seed: int | None
    # Top log-probabilities per token; None when log-probabilities are off.
    logprobs: int | None
    stream: bool
    include_usage: bool
    continuous_usage_stats: bool
    # No max_tokens was sent: the answer ends where the model would stop (chat).
    natural_length: bool = False
    # Return the prompt's and the output's token ids (0.10.2+).
    return_token_ids: bool = False
    # Log-probabilities of the prompt tokens; None when not asked.
    prompt_logprobs: int | None = None


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    model: str
    prompts: tuple[tuple[int, ...], ...]
    echo: bool
    params: GenerationParams
    constraint: OutputConstraint | None = None


@dataclass(frozen=True, slots=True)
class ChatRequest:
    model: str
    # As the tokenizer packs it (Tokenizer.ids): no per-token copy of a long prompt.
    prompt: Sequence[int]
    params: GenerationParams
    tools: ToolRequest = NO_TOOLS
    constraint: OutputConstraint | None = None
    # The request lets a reasoning model think (chat_template_kwargs.enable_thinking).
    thinking: bool = True
    # Non-streamed answers show the reasoning (include_reasoning).
    include_reasoning: bool = True


# --- body decoding -----------------------------------------------------------------------------


def decode_body(raw: bytes, content_type: str | None) -> dict[str, Any]:
    """Decode a JSON object body, failing the way FastAPI does inside vLLM."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if not raw:
        raise ValidationFailure(
            [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}]
        )
    if media_type != JSON_MEDIA_TYPE:
        raise ValidationFailure(["Unsupported Media Type: Only 'application/json' is allowed"])
    try:
        body = ujson.loads(raw)
    except (ValueError, OverflowError):
        body = _stdlib_json_or_failure(raw)
    if not isinstance(body, dict):
        raise ValidationFailure(
            [
                {
                    "type": "model_attributes_type",
                    "loc": ("body",),
                    "msg": "Input should be a valid dictionary or object to extract fields from",
                    "input": body,
                }
            ]
        )
    return body


def _stdlib_json_or_failure(raw: bytes) -> Any:
    # ujson is strict where the stdlib is lenient (huge ints, NaN); the stdlib decides, and its
    # error carries the position and message that FastAPI reports.
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValidationFailure(
            [
                {
                    "type": "json_invalid",
                    "loc": ("body", exc.pos),
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": exc.msg},
                }
            ]
        ) from None
    except (UnicodeDecodeError, RecursionError):
        raise ValidationFailure(
            [
                {
                    "type": "json_invalid",
                    "loc": ("body", 0),
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": "Invalid body encoding or nesting"},
                }
            ]
        ) from None


# --- field types (pydantic's lax mode, its error types and messages) ---------------------------

FieldCheck = Callable[[Any], Any]


class _FieldError(Exception):
    def __init__(self, error_type: str, msg: str) -> None:
        self.error_type = error_type
        self.msg = msg


def _as_int(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return int(value)
        raise _FieldError(
            "int_from_float", "Input should be a valid integer, got a number with a fractional part"
        )
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            raise _FieldError(
                "int_parsing",
                "Input should be a valid integer, unable to parse string as an integer",
            ) from None
    raise _FieldError("int_type", "Input should be a valid integer")


def _as_float(value: Any) -> float:
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            raise _FieldError(
                "float_parsing",
                "Input should be a valid number, unable to parse string as a number",
            ) from None
    raise _FieldError("float_type", "Input should be a valid number")


_TRUE = {"true", "1", "yes", "on", "t", "y"}
_FALSE = {"false", "0", "no", "off", "f", "n"}


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
        return value.lower() in _TRUE
    raise _FieldError("bool_parsing", "Input should be a valid boolean, unable to interpret input")


def _as_str(value: Any) -> str:
    if isinstance(value, str):
        return value
    raise _FieldError("string_type", "Input should be a valid string")


def _as_dict(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    raise _FieldError("dict_type", "Input should be a valid dictionary")


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, list):
        return value
    raise _FieldError("list_type", "Input should be a valid list")


def _as_stop(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise _FieldError("string_type", "Input should be a valid string")


def _as_any(value: Any) -> Any:
    return value


_COMMON_FIELDS: dict[str, FieldCheck] = {
    "model": _as_str,
    "n": _as_int,
    "seed": _as_int,
    "stop": _as_stop,
    "stream": _as_bool,
    "stream_options": _as_dict,
    "temperature": _as_float,
    "top_p": _as_float,
    "top_k": _as_int,
    "min_p": _as_float,
    "presence_penalty": _as_float,
    "frequency_penalty": _as_float,
    "repetition_penalty": _as_float,
    "ignore_eos": _as_bool,
    "min_tokens": _as_int,
    "max_tokens": _as_int,
    "include_stop_str_in_output": _as_bool,
    "best_of": _as_int,
    "user": _as_str,
    "logit_bias": _as_dict,
    "stop_token_ids": _as_list,
    "return_token_ids": _as_bool,
    "response_format": _as_dict,
    "structured_outputs": _as_any,
    "guided_json": _as_any,
    "guided_regex": _as_str,
    "guided_choice": _as_list,
    "guided_grammar": _as_str,
}

_COMPLETION_FIELDS: dict[str, FieldCheck] = {
    **_COMMON_FIELDS,
    "prompt": _as_any,
    "echo": _as_bool,
    "logprobs": _as_int,
    "prompt_logprobs": _as_int,
}

_CHAT_FIELDS: dict[str, FieldCheck] = {
    **_COMMON_FIELDS,
    "messages": _as_list,
    "max_completion_tokens": _as_int,
    "logprobs": _as_bool,
    "top_logprobs": _as_int,
    "tools": _as_list,
    "tool_choice": _as_any,
    "parallel_tool_calls": _as_bool,
    "chat_template_kwargs": _as_dict,
    "include_reasoning": _as_bool,
    "echo": _as_bool,
    "prompt_logprobs": _as_int,
}


def _without_best_of(fields: dict[str, FieldCheck]) -> dict[str, FieldCheck]:
    # A field a release no longer declares is unknown to it: accepted, ignored, never checked.
    return {name: check for name, check in fields.items() if name != "best_of"}


# Keyed by Profile.best_of_field.
_COMPLETION_FIELDS_BY_ERA = {True: _COMPLETION_FIELDS, False: _without_best_of(_COMPLETION_FIELDS)}
_CHAT_FIELDS_BY_ERA = {True: _CHAT_FIELDS, False: _without_best_of(_CHAT_FIELDS)}

_STREAM_OPTION_FIELDS: dict[str, FieldCheck] = {
    "include_usage": _as_bool,
    "continuous_usage_stats": _as_bool,
}


def _coerce_fields(
    body: Mapping[str, Any], fields: Mapping[str, FieldCheck], loc: tuple[str, ...] = ("body",)
) -> dict[str, Any]:
    """Coerce the known, non-null fields; collect every error before failing, as pydantic does."""
    values: dict[str, Any] = {}
    errors: list[dict[str, Any]] = []
    # Bodies carry few fields: walk the body, not the schema.
    for name, raw in body.items():
        check = fields.get(name)
        if check is None or raw is None:
            continue
        try:
            values[name] = check(raw)
        except _FieldError as exc:
            errors.append(
                {"type": exc.error_type, "loc": (*loc, name), "msg": exc.msg, "input": raw}
            )
    if errors:
        raise ValidationFailure(errors)
    return values


def _missing(field: str, body: Mapping[str, Any]) -> ValidationFailure:
    return ValidationFailure(
        [{"type": "missing", "loc": ("body", field), "msg": "Field required", "input": body}]
    )


# --- what a request asks for (also read by replay, on bodies it does not parse) -----------------


def requested_max_tokens(route: str, body: Mapping[str, Any]) -> int | None:
    """The output length asked for: completions default to 16; chat's max_completion_tokens
    wins over the deprecated max_tokens, and neither means "fill the context" (None)."""
    if route == CHAT_ROUTE:
        value = body.get("max_completion_tokens", body.get("max_tokens"))
    else:
        value = body.get("max_tokens", COMPLETIONS_DEFAULT_MAX_TOKENS)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def usage_requested(stream_options: Any, profile: Profile) -> bool:
    """Whether a stream ends with the usage event: ``include_usage`` as sent, else the era's
    default whenever ``stream_options`` is present (True up to 0.17, False from 0.18)."""
    if not isinstance(stream_options, dict):
        return False
    return bool(stream_options.get("include_usage", profile.include_usage_default))


# --- shared checks ------------------------------------------------------------------------------


def _check_stream_options(
    body: Mapping[str, Any], fields: dict[str, Any], profile: Profile
) -> tuple[bool, bool]:
    """Return (include_usage, continuous_usage_stats)."""
    options = fields.get("stream_options")
    if options and not fields.get("stream"):
        raise value_error(
            "Stream options can only be defined when `stream=True`.", body, "stream_options"
        )
    if options is None:
        return False, False
    parsed = _coerce_fields(options, _STREAM_OPTION_FIELDS, ("body", "stream_options"))
    include_usage = usage_requested(parsed, profile)
    return include_usage, include_usage and parsed.get("continuous_usage_stats", False)


def resolve_model(fields: Mapping[str, Any], served: ServedModel) -> str:
    """The model a request names (a loaded LoRA adapter answers under its own name); 404 for
    an unknown one."""
    name = fields.get("model")
    if not name or name == served.name:
        return served.name
    if name in served.adapters:
        return str(name)
    raise model_not_found(name, (served.name,), served.profile)


def _sampling_params(
    fields: Mapping[str, Any],
    *,
    max_tokens: int,
    allow_zero_tokens: bool,
    logprobs: int | None,
    include_usage: bool,
    continuous_usage_stats: bool,
    served: ServedModel,
    natural_length: bool = False,
    prompt_logprobs: int | None = None,
) -> GenerationParams:
    """SamplingParams' own checks, verbatim messages (and the parameter 0.14+ names)."""
    limits, profile = served.limits, served.profile
    n = fields.get("n", 1)
    if n < 1:
        raise bad_request(f"n must be at least 1, got {n}.")
    if n > limits.max_n:
        raise bad_request(f"n must be at most {limits.max_n}, got {n}.")
    best_of = fields.get("best_of")
    if best_of is not None and best_of > 1:
        raise bad_request("vLLM V1 does not yet support best_of.")
    temperature = fields.get("temperature", 1.0)
    if temperature < 0.0:
        raise bad_request(
            f"temperature must be non-negative, got {temperature}.",
            parameter="temperature",
            value=temperature,
        )
    if profile.max_temperature is not None and temperature > profile.max_temperature:
        raise bad_request(
            f"temperature must be in [0, {profile.max_temperature:g}], got {temperature}.",
            parameter="temperature",
            value=temperature,
        )
    top_p = fields.get("top_p", 1.0)
    if not 0.0 < top_p <= 1.0:
        raise bad_request(f"top_p must be in (0, 1], got {top_p}.", parameter="top_p", value=top_p)
    top_k = fields.get("top_k", 0)
    if top_k < -1:
        raise bad_request(f"top_k must be 0 (disable), or at least 1, got {top_k}.")
    min_p = fields.get("min_p", 0.0)
    if not 0.0 <= min_p <= 1.0:
        raise bad_request(f"min_p must be in [0, 1], got {min_p}.")
    for penalty in ("presence_penalty", "frequency_penalty"):
        value = fields.get(penalty, 0.0)
        if not -2.0 <= value <= 2.0:
            raise bad_request(f"{penalty} must be in [-2, 2], got {value}.")
    repetition_penalty = fields.get("repetition_penalty", 1.0)
    if repetition_penalty <= 0.0:
        raise bad_request(
            f"repetition_penalty must be greater than zero, got {repetition_penalty}."
        )
    if max_tokens < 1 and not (allow_zero_tokens and max_tokens == 0):
        raise bad_request(
            f"max_tokens must be at least 1, got {max_tokens}.",
            parameter="max_tokens",
            value=max_tokens,
        )
    min_tokens = fields.get("min_tokens", 0)
    if min_tokens < 0:
        raise bad_request(f"min_tokens must be greater than or equal to 0, got {min_tokens}.")
    if min_tokens > max_tokens:
        raise bad_request(
            f"min_tokens must be less than or equal to max_tokens={max_tokens}, got {min_tokens}."
        )
    stop = fields.get("stop", ())
    if any(not item for item in stop):
        raise bad_request("stop cannot contain an empty string.")
    if temperature < GREEDY_EPSILON and n > 1:
        raise bad_request(f"n must be 1 when using greedy sampling, got {n}.")
    if logprobs is not None and logprobs > limits.max_logprobs:
        raise bad_request(
            f"Requested sample logprobs of {logprobs}, which is greater than max allowed: "
            f"{limits.max_logprobs}"
        )
    if prompt_logprobs is not None and prompt_logprobs > limits.max_logprobs:
        raise bad_request(
            f"Requested prompt logprobs of {prompt_logprobs}, which is greater than max "
            f"allowed: {limits.max_logprobs}"
        )
    return GenerationParams(
        n=n,
        max_tokens=max_tokens,
        min_tokens=min_tokens,
        ignore_eos=fields.get("ignore_eos", False),
        stop=stop,
        include_stop_str_in_output=fields.get("include_stop_str_in_output", False),
        seed=fields.get("seed"),
        logprobs=logprobs,
        stream=fields.get("stream", False),
        include_usage=include_usage,
        continuous_usage_stats=continuous_usage_stats,
        natural_length=natural_length,
        return_token_ids=fields.get("return_token_ids", False),
        prompt_logprobs=prompt_logprobs,
    )


def _prompt_logprobs(
    fields: Mapping[str, Any], body: Mapping[str, Any], echoed: int | None
) -> int | None:
    """``prompt_logprobs`` as sent, or (with ``echo``) the sampled log-probabilities' count."""
    value: int | None = fields.get("prompt_logprobs")
    if value is not None:
        if fields.get("stream") and (value > 0 or value == -1):
            raise value_error("`prompt_logprobs` are not available when `stream=True`.", body)
        if value < 0 and value != -1:
            raise value_error("`prompt_logprobs` must be a positive value or -1.", body)
        return value
    return echoed if fields.get("echo") else None


# --- /v1/completions ----------------------------------------------------------------------------


def _prompt_token_lists(
    prompt: Any, body: Mapping[str, Any], served: ServedModel
) -> list[list[int]]:
    tokenizer = served.tokenizer
    if isinstance(prompt, str):
        return [tokenizer.encode(prompt)]
    if isinstance(prompt, list) and prompt:
        if all(isinstance(item, str) for item in prompt):
            return [tokenizer.encode(item) for item in prompt]
        if all(isinstance(item, int) and not isinstance(item, bool) for item in prompt):
            return [_checked_ids(prompt, tokenizer)]
        if all(isinstance(item, list) for item in prompt):
            lists = [item for item in prompt if all(isinstance(t, int) for t in item)]
            if len(lists) == len(prompt):
                return [_checked_ids(item, tokenizer) for item in lists]
    if isinstance(prompt, list) and not prompt:
        raise bad_request("Prompt cannot be empty.")
    raise ValidationFailure(
        [
            {
                "type": "string_type",
                "loc": ("body", "prompt", "str"),
                "msg": "Input should be a valid string",
                "input": prompt,
            }
        ]
    )


def _checked_ids(ids: list[int], tokenizer: Tokenizer) -> list[int]:
    bad = next((token for token in ids if not 0 <= token < tokenizer.vocab_size), None)
    if bad is not None:
        raise bad_request(f"Token id {bad} is out of vocabulary")
    return ids


def parse_completion_request(body: Mapping[str, Any], served: ServedModel) -> CompletionRequest:
    fields = _coerce_fields(body, _COMPLETION_FIELDS_BY_ERA[served.profile.best_of_field])
    if "prompt" not in fields:
        raise _missing("prompt", body)
    logprobs = fields.get("logprobs")
    prompt_logprobs = _prompt_logprobs(fields, body, logprobs)
    if logprobs is not None and logprobs < 0:
        raise value_error("`logprobs` must be a positive value.", body)
    include_usage, continuous = _check_stream_options(body, fields, served.profile)
    constraint = parse_constraint(fields, served.profile, chat=False)
    model = resolve_model(fields, served)
    prompt = fields["prompt"]
    prompts = _prompt_token_lists(prompt, body, served)
    if any(not prompt for prompt in prompts):
        raise bad_request("The decoder prompt cannot be empty")
    requested = requested_max_tokens(COMPLETIONS_ROUTE, fields)
    text_prompt = isinstance(prompt, str) or isinstance(prompt[0], str)
    max_tokens = min(
        check_context(
            served.profile,
            served.max_model_len,
            OutputRequest(len(ids), requested, "max_tokens", chat=False, text_prompt=text_prompt),
        )
        for ids in prompts
    )
    params = _sampling_params(
        fields,
        max_tokens=max_tokens,
        allow_zero_tokens=fields.get("echo", False),
        logprobs=logprobs,
        include_usage=include_usage,
        continuous_usage_stats=continuous,
        served=served,
        prompt_logprobs=prompt_logprobs,
    )
    return CompletionRequest(
        model=model,
        prompts=tuple(tuple(prompt) for prompt in prompts),
        echo=fields.get("echo", False),
        params=params,
        constraint=constraint,
    )


# --- /v1/chat/completions -----------------------------------------------------------------------

_ROLES = frozenset({"system", "user", "assistant", "tool", "developer", "function"})


def _check_messages(messages: Sequence[Any], body: Mapping[str, Any]) -> None:
    errors: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        loc = ("body", "messages", index)
        if not isinstance(message, dict):
            errors.append(
                {
                    "type": "dict_type",
                    "loc": loc,
                    "msg": "Input should be a valid dictionary",
                    "input": message,
                }
            )
            continue
        role = message.get("role")
        if role is None:
            errors.append(
                {
                    "type": "missing",
                    "loc": (*loc, "role"),
                    "msg": "Field required",
                    "input": message,
                }
            )
        elif role not in _ROLES:
            errors.append(
                {
                    "type": "literal_error",
                    "loc": (*loc, "role"),
                    "msg": "Input should be 'system', 'user', 'assistant', 'tool', 'developer' "
                    "or 'function'",
                    "input": role,
                }
            )
        content = message.get("content")
        if content is not None and not isinstance(content, str | list):
            errors.append(
                {
                    "type": "string_type",
                    "loc": (*loc, "content", "str"),
                    "msg": "Input should be a valid string",
                    "input": content,
                }
            )
    if errors:
        raise ValidationFailure(errors)


def parse_chat_request(body: Mapping[str, Any], served: ServedModel) -> ChatRequest:
    fields = _coerce_fields(body, _CHAT_FIELDS_BY_ERA[served.profile.best_of_field])
    if "messages" not in fields:
        raise _missing("messages", body)
    messages = fields["messages"]
    _check_messages(messages, body)
    top_logprobs = fields.get("top_logprobs")
    if top_logprobs is not None:
        if top_logprobs < 0:
            raise value_error("`top_logprobs` must be a positive value.", body)
        if top_logprobs > 0 and not fields.get("logprobs"):
            raise value_error("when using `top_logprobs`, `logprobs` must be set to true.", body)
    prompt_logprobs = _prompt_logprobs(fields, body, top_logprobs or 0)
    include_usage, continuous = _check_stream_options(body, fields, served.profile)
    constraint = parse_constraint(fields, served.profile, chat=True)
    tools = parse_tools(fields, served.profile, served.agent)
    model = resolve_model(fields, served)
    prompt = served.tokenizer.ids(render_chat_prompt(messages, tools.tools))
    requested = requested_max_tokens(CHAT_ROUTE, fields)
    field = "max_completion_tokens" if "max_completion_tokens" in fields else "max_tokens"
    max_tokens = check_context(
        served.profile,
        served.max_model_len,
        OutputRequest(len(prompt), requested, field, chat=True, text_prompt=True),
    )
    params = _sampling_params(
        fields,
        max_tokens=max_tokens,
        allow_zero_tokens=False,
        logprobs=(top_logprobs or 0) if fields.get("logprobs") else None,
        include_usage=include_usage,
        continuous_usage_stats=continuous,
        served=served,
        natural_length=requested is None,
        prompt_logprobs=prompt_logprobs,
    )
    template_kwargs = fields.get("chat_template_kwargs") or {}
    return ChatRequest(
        model=model,
        prompt=prompt,
        params=params,
        tools=tools,
        constraint=constraint,
        thinking=template_kwargs.get("enable_thinking") is not False,
        include_reasoning=fields.get("include_reasoning", True),
    )
