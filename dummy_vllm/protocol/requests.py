"""Parse and validate request bodies into typed requests, with vLLM 0.11's messages.

The order of checks follows vLLM: body decoding and field types (pydantic, ``Bad Request``),
model validators (``Bad Request``), the model name (404), context length, then sampling
parameters (``BadRequestError``). Unknown fields are accepted and ignored, as vLLM does.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from http import HTTPStatus
from typing import Any

import ujson

from ..engine import Tokenizer, render_chat_prompt
from ..engine.chat_template import TEXT_PARTS
from ..settings import AgentSettings, Limits
from .constraints import (
    NO_TOOLS,
    OutputConstraint,
    ToolRequest,
    check_tool_usage,
    parse_constraint,
    parse_tools,
)
from .context_length import OutputRequest, check_context
from .encoding import bounded_repr
from .errors import APIError, ValidationFailure, bad_request, model_not_found, value_error
from .fields import (
    INT64_MAX,
    INT64_MIN,
    MAX_ERRORS,
    FieldError,
    as_bool,
    as_dict,
    as_float,
    as_int,
    as_list,
    as_str,
    between,
    dict_of,
    list_of,
    literal,
    model,
    nullable,
    union,
)
from .fields import (
    Check as FieldCheck,
)
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

# Deeper bodies are refused: nothing vLLM accepts needs it, and every later walk (error messages,
# match keys) stays far from the interpreter's recursion limit.
MAX_JSON_DEPTH = 128
# What the stdlib refuses and ujson lets through: control characters outside \t \n \r.
_CONTROL_BYTES = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f]")
# FastAPI's answer when decoding fails other than by a JSONDecodeError (nesting past the
# recursion limit, integers of more than 4300 digits, bytes that are not UTF-8).
BODY_PARSE_ERROR = "There was an error parsing the body"


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
        if _CONTROL_BYTES.search(raw):
            raise ValueError("control character")
        body = ujson.loads(raw)
    except (ValueError, OverflowError):
        body = _stdlib_json_or_failure(raw)
    # Nesting is at most the number of brackets: only bodies with many are walked.
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH and _deeper_than(body, MAX_JSON_DEPTH):
        raise _parse_error()
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
    # ujson is strict where the stdlib is lenient (huge ints, a BOM) and the other way round
    # (control characters); the stdlib decides, and its error carries the position and message
    # that FastAPI reports.
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
    except (ValueError, RecursionError):
        raise _parse_error() from None


def _parse_error() -> APIError:
    # FastAPI's HTTPException, rendered by vLLM's handler with the status phrase as its type.
    return APIError(HTTPStatus.BAD_REQUEST, BODY_PARSE_ERROR, HTTPStatus.BAD_REQUEST.phrase)


def _deeper_than(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(node, dict):
            stack.extend((child, depth + 1) for child in node.values())
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node)
    return False


# --- field types (pydantic's lax mode: fields.py), per route and release -----------------------

# The sampling and output fields both routes declare (vLLM 0.11's protocol.py; 0.33 keeps the
# types), then each route's own. Fields typed without Optional refuse an explicit null.
_COMMON_FIELDS: dict[str, FieldCheck] = {
    "model": as_str,
    "frequency_penalty": as_float,
    "logit_bias": dict_of(as_float),
    "max_tokens": as_int,
    "n": as_int,
    "presence_penalty": as_float,
    "seed": between(as_int, INT64_MIN, INT64_MAX),
    "stop": union(("str", as_str), ("list[str]", list_of(as_str))),
    "stream": as_bool,
    "stream_options": model(
        {"include_usage": nullable(as_bool), "continuous_usage_stats": nullable(as_bool)},
        "StreamOptions",
    ),
    "temperature": as_float,
    "top_p": as_float,
    "user": as_str,
    "best_of": as_int,
    "use_beam_search": as_bool,
    "top_k": as_int,
    "min_p": as_float,
    "repetition_penalty": as_float,
    "length_penalty": as_float,
    "stop_token_ids": list_of(as_int),
    "include_stop_str_in_output": as_bool,
    "ignore_eos": as_bool,
    "min_tokens": as_int,
    "skip_special_tokens": as_bool,
    "spaces_between_special_tokens": as_bool,
    "truncate_prompt_tokens": between(as_int, -1),
    "prompt_logprobs": as_int,
    "allowed_token_ids": list_of(as_int),
    "bad_words": list_of(as_str),
    "add_special_tokens": as_bool,
    "priority": as_int,
    "request_id": as_str,
    "return_tokens_as_token_ids": as_bool,
    "return_token_ids": as_bool,
    "cache_salt": as_str,
    "kv_transfer_params": as_dict,
    "vllm_xargs": dict_of(union(("str", as_str), ("int", as_int), ("float", as_float))),
    # Structured outputs; the members' own rules are checked by constraints.py.
    "response_format": as_dict,
    "structured_outputs": as_dict,
    "guided_json": union(("str", as_str), ("dict[any,any]", as_dict)),
    "guided_regex": as_str,
    "guided_choice": list_of(as_str),
    "guided_grammar": as_str,
}
_COMMON_NOT_NULL = frozenset(
    {
        "use_beam_search",
        "length_penalty",
        "include_stop_str_in_output",
        "ignore_eos",
        "min_tokens",
        "spaces_between_special_tokens",
        "bad_words",
        "add_special_tokens",
        "priority",
        "request_id",
    }
)

# A prompt is a string, a list of strings, a list of token ids or a list of such lists.
_PROMPT = union(
    ("list[int]", list_of(as_int)),
    ("list[list[int]]", list_of(list_of(as_int))),
    ("str", as_str),
    ("list[str]", list_of(as_str)),
)


def _as_prompt(value: Any) -> Any:
    # pydantic's smart union takes an exact match first: a list of strings stays strings
    # (lax mode would read ["1", "2"] as token ids).
    if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        return value
    return _PROMPT(value)


_COMPLETION_FIELDS: dict[str, FieldCheck] = {
    **_COMMON_FIELDS,
    "prompt": _as_prompt,
    "echo": as_bool,
    "logprobs": as_int,
    "suffix": as_str,
}
_COMPLETION_NOT_NULL = _COMMON_NOT_NULL | {"n"}

_FUNCTION = model(
    {"name": as_str, "description": nullable(as_str), "parameters": nullable(as_dict)},
    "FunctionDefinition",
    required=("name",),
)
_CHAT_FIELDS: dict[str, FieldCheck] = {
    **_COMMON_FIELDS,
    "messages": as_list,  # each message is checked by _check_messages
    "max_completion_tokens": as_int,
    "logprobs": as_bool,
    "top_logprobs": as_int,
    "tools": list_of(
        model(
            {"type": literal("function"), "function": _FUNCTION},
            "ChatCompletionToolsParam",
            required=("function",),
        )
    ),
    "tool_choice": union(
        ("literal['none']", literal("none")),
        ("literal['auto']", literal("auto")),
        ("literal['required']", literal("required")),
        (
            "ChatCompletionNamedToolChoiceParam",
            model(
                {
                    "function": model(
                        {"name": as_str}, "ChatCompletionNamedFunction", required=("name",)
                    ),
                    "type": literal("function"),
                },
                "ChatCompletionNamedToolChoiceParam",
                required=("function",),
            ),
        ),
    ),
    "reasoning_effort": literal("low", "medium", "high"),
    "include_reasoning": as_bool,
    "parallel_tool_calls": as_bool,
    "echo": as_bool,
    "add_generation_prompt": as_bool,
    "continue_final_message": as_bool,
    "documents": list_of(dict_of(as_str)),
    "chat_template": as_str,
    "chat_template_kwargs": as_dict,
    "mm_processor_kwargs": as_dict,
}
_CHAT_NOT_NULL = _COMMON_NOT_NULL | {
    "include_reasoning",
    "echo",
    "add_generation_prompt",
    "continue_final_message",
}


@cache
def _era_fields(route: str, best_of: bool, max_stop_strings: int | None) -> dict[str, FieldCheck]:
    """``route``'s field checks as a release declares them, built once per era."""
    fields = dict(_CHAT_FIELDS if route == CHAT_ROUTE else _COMPLETION_FIELDS)
    if not best_of:
        # A field a release no longer declares is unknown to it: accepted, ignored, never checked.
        del fields["best_of"]
    if max_stop_strings is not None:
        # 0.33's StopParam: Annotated[list[str], Field(max_length=VLLM_MAX_STOP_STRINGS)].
        fields["stop"] = union(("str", as_str), ("list[str]", list_of(as_str, max_stop_strings)))
    return fields


def coerce_fields(
    body: Mapping[str, Any],
    fields: Mapping[str, FieldCheck],
    not_null: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """Coerce the known fields; collect every error before failing, as pydantic does. A null
    is the default, except in the fields typed without Optional."""
    values: dict[str, Any] = {}
    errors: list[dict[str, Any]] = []
    # Bodies carry few fields: walk the body, not the schema.
    for name, raw in body.items():
        check = fields.get(name)
        if check is None:
            continue
        if raw is None and name not in not_null:
            continue
        try:
            values[name] = check(raw)
        except FieldError as exc:
            errors.extend(error.render(("body", name), raw) for error in exc.errors)
    if errors:
        raise ValidationFailure(errors)
    return values


def missing_field(field: str, body: Mapping[str, Any]) -> ValidationFailure:
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
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    # Beyond 64 bits a count means nothing, and sums of such values could not even be printed.
    return min(max(value, INT64_MIN), INT64_MAX)


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
    include_usage = usage_requested(options, profile)
    return include_usage, include_usage and bool(options.get("continuous_usage_stats"))


def resolve_model(fields: Mapping[str, Any], served: ServedModel) -> str:
    """The model a request names (a loaded LoRA adapter answers under its own name); 404 for
    an unknown one."""
    name = fields.get("model")
    if not name or name == served.name:
        return served.name
    if name in served.adapters:
        return str(name)
    raise model_not_found(name, (served.name,), served.profile)


def sampling_params(
    fields: Mapping[str, Any],
    *,
    max_tokens: int,
    allow_zero_tokens: bool,
    logprobs: int | None,
    include_usage: bool,
    continuous_usage_stats: bool,
    served: ServedModel,
    prompts: int = 1,
    natural_length: bool = False,
    prompt_logprobs: int | None = None,
) -> GenerationParams:
    """SamplingParams' own checks, verbatim messages (and the parameter 0.14+ names), then this
    server's limits on the work one request may ask for."""
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
    stop = _stop_strings(fields.get("stop"))
    if any(not item for item in stop):
        raise bad_request("stop cannot contain an empty string.")
    if len(stop) > limits.max_stop_strings:
        raise bad_request(
            f"stop must contain at most {limits.max_stop_strings} strings, got {len(stop)}.",
            parameter="stop",
            value=len(stop),
        )
    _check_logit_bias(fields.get("logit_bias"), served.tokenizer)
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
    _check_output_volume(n * prompts, max_tokens, logprobs, limits)
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


def _stop_strings(stop: str | list[str] | None) -> tuple[str, ...]:
    if stop is None:
        return ()
    return (stop,) if isinstance(stop, str) else tuple(stop)


def _check_logit_bias(logit_bias: dict[str, float] | None, tokenizer: Tokenizer) -> None:
    """SamplingParams turns the keys into token ids with int(); the engine checks their range."""
    if not logit_bias:
        return
    invalid = []
    for key in logit_bias:
        try:
            token = int(key)
        except ValueError as exc:
            raise bad_request(str(exc)) from None
        if not 0 <= token < tokenizer.vocab_size:
            invalid.append(token)
    if invalid:
        raise bad_request(
            f"token_id(s) {bounded_repr(invalid)} in logit_bias contain out-of-vocab token ids. "
            f"Vocabulary size: {tokenizer.vocab_size}"
        )


def _check_output_volume(
    choices: int, max_tokens: int, logprobs: int | None, limits: Limits
) -> None:
    """This server's bounds on one request's output (vLLM has none: a GPU bounds it)."""
    tokens = choices * max_tokens
    if tokens > limits.max_request_tokens:
        raise bad_request(
            f"Requested {tokens} output tokens ({choices} choices of up to {max_tokens}), which "
            f"is greater than max allowed: {limits.max_request_tokens}",
            parameter="max_tokens",
            value=max_tokens,
        )
    if logprobs is not None and tokens * (logprobs + 1) > limits.max_logprob_entries:
        raise bad_request(
            f"Requested {tokens * (logprobs + 1)} log-probabilities ({tokens} tokens with "
            f"{logprobs} alternatives each), which is greater than max allowed: "
            f"{limits.max_logprob_entries}",
            parameter="logprobs",
            value=logprobs,
        )


# --- /v1/completions ----------------------------------------------------------------------------


def _prompt_token_lists(prompt: str | list[Any], served: ServedModel) -> list[list[int]]:
    """Token ids of each prompt of a checked ``prompt`` field."""
    tokenizer = served.tokenizer
    if isinstance(prompt, str):
        return [tokenizer.encode(prompt)]
    if not prompt:
        raise bad_request("Prompt cannot be empty.")
    if isinstance(prompt[0], str):
        return [tokenizer.encode(item) for item in prompt]
    if isinstance(prompt[0], int):
        return [_checked_ids(prompt, tokenizer)]
    return [_checked_ids(item, tokenizer) for item in prompt]


def _checked_ids(ids: list[int], tokenizer: Tokenizer) -> list[int]:
    bad = next((token for token in ids if not 0 <= token < tokenizer.vocab_size), None)
    if bad is not None:
        raise bad_request(f"Token id {bad} is out of vocabulary")
    return ids


def parse_completion_request(body: Mapping[str, Any], served: ServedModel) -> CompletionRequest:
    profile = served.profile
    fields = coerce_fields(
        body,
        _era_fields(COMPLETIONS_ROUTE, profile.best_of_field, profile.max_stop_strings),
        _COMPLETION_NOT_NULL,
    )
    if "prompt" not in fields:
        raise missing_field("prompt", body)
    logprobs = fields.get("logprobs")
    prompt_logprobs = _prompt_logprobs(fields, body, logprobs)
    if logprobs is not None and logprobs < 0:
        raise value_error("`logprobs` must be a positive value.", body)
    include_usage, continuous = _check_stream_options(body, fields, served.profile)
    constraint = parse_constraint(fields, served.profile, chat=False)
    model = resolve_model(fields, served)
    prompt = fields["prompt"]
    prompts = _prompt_token_lists(prompt, served)
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
    params = sampling_params(
        fields,
        max_tokens=max_tokens,
        allow_zero_tokens=fields.get("echo", False),
        logprobs=logprobs,
        include_usage=include_usage,
        continuous_usage_stats=continuous,
        served=served,
        prompts=len(prompts),
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

# Roles whose message may carry a null content (OpenAI's assistant and function messages);
# every other role's content is required to be a string or a list of parts when present.
_NULL_CONTENT_ROLES = frozenset({"assistant", "function"})


def _check_messages(messages: Sequence[Any], body: Mapping[str, Any]) -> None:
    """The message types vLLM's union of message TypedDicts refuses (any string role is allowed:
    its CustomChatCompletionMessageParam), then the content parts its parser refuses."""
    errors: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        errors.extend(_message_errors(message, ("body", "messages", index)))
        if len(errors) >= MAX_ERRORS:
            break
    if errors:
        raise ValidationFailure(errors)
    for index, message in enumerate(messages):
        content = message.get("content")
        if isinstance(content, list):
            for position, part in enumerate(content):
                _check_part(part, index, position)
        elif isinstance(content, dict):
            # An iterable passes pydantic; vLLM then reads its keys as parts. Refused here.
            raise bad_request(f"messages[{index}].content must be a string or a list of parts")


def _message_errors(message: Any, loc: tuple[str | int, ...]) -> list[dict[str, Any]]:
    if not isinstance(message, dict):
        return [
            {
                "type": "dict_type",
                "loc": loc,
                "msg": "Input should be a valid dictionary",
                "input": message,
            }
        ]
    errors: list[dict[str, Any]] = []
    role = message.get("role")
    if "role" not in message:
        errors.append(
            {"type": "missing", "loc": (*loc, "role"), "msg": "Field required", "input": message}
        )
    elif not isinstance(role, str):
        errors.append(_string_type((*loc, "role"), role))
    if "name" in message and not isinstance(message["name"], str):
        errors.append(_string_type((*loc, "name"), message["name"]))
    if "content" in message:
        content = message["content"]
        if content is None:
            if not (isinstance(role, str) and role in _NULL_CONTENT_ROLES):
                errors.append(_string_type((*loc, "content", "str"), content))
        elif not isinstance(content, str | list | dict):
            errors.append(_string_type((*loc, "content", "str"), content))
    return errors


def _string_type(loc: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    return {
        "type": "string_type",
        "loc": loc,
        "msg": "Input should be a valid string",
        "input": value,
    }


def _check_part(part: Any, index: int, position: int) -> None:
    """What vLLM's content-part parser refuses (a 400 from its handler, not from pydantic)."""
    if isinstance(part, str):
        return
    if not isinstance(part, dict):
        raise bad_request(
            f"messages[{index}].content[{position}]: a content part must be a string or an "
            f"object, got {_json_type(part)}"
        )
    kind = part.get("type")
    if kind is None:
        if not any(key in part for key in ("image_url", "audio_url", "video_url", "input_audio")):
            raise bad_request("Missing 'type' field in multimodal part.")
    elif not isinstance(kind, str):
        raise bad_request("Invalid 'type' field in multimodal part.")
    elif kind in TEXT_PARTS:
        text = part.get(TEXT_PARTS[kind])
        if text is not None and not isinstance(text, str):
            # vLLM joins the texts of a message: str.join's TypeError, as its handler words it.
            raise bad_request(
                f"sequence item {position}: expected str instance, {_json_type(text)} found None"
            )


def _json_type(value: Any) -> str:
    return type(value).__name__


def parse_chat_request(body: Mapping[str, Any], served: ServedModel) -> ChatRequest:
    check_tool_usage(body)
    profile = served.profile
    fields = coerce_fields(
        body,
        _era_fields(CHAT_ROUTE, profile.best_of_field, profile.max_stop_strings),
        _CHAT_NOT_NULL,
    )
    if "messages" not in fields:
        raise missing_field("messages", body)
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
    params = sampling_params(
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


# --- /tokenize and /detokenize ------------------------------------------------------------------

_TOKENIZE_REQUEST = union(
    (
        "TokenizeCompletionRequest",
        model(
            {
                "model": nullable(as_str),
                "prompt": as_str,
                "add_special_tokens": as_bool,
                "return_token_strs": nullable(as_bool),
            },
            "TokenizeCompletionRequest",
            required=("prompt",),
        ),
    ),
    (
        "TokenizeChatRequest",
        model(
            {
                "model": nullable(as_str),
                "messages": as_list,
                "add_generation_prompt": as_bool,
                "return_token_strs": nullable(as_bool),
                "continue_final_message": as_bool,
                "add_special_tokens": as_bool,
                "chat_template": nullable(as_str),
                "chat_template_kwargs": nullable(as_dict),
                "mm_processor_kwargs": nullable(as_dict),
                "tools": nullable(_CHAT_FIELDS["tools"]),
            },
            "TokenizeChatRequest",
            required=("messages",),
        ),
    ),
)
_DETOKENIZE_REQUEST = model(
    {"model": nullable(as_str), "tokens": list_of(as_int)}, "DetokenizeRequest", ("tokens",)
)


@dataclass(frozen=True, slots=True)
class TokenizeRequest:
    text: str
    with_strings: bool


def parse_tokenize_request(body: Mapping[str, Any], served: ServedModel) -> TokenizeRequest:
    """vLLM's ``TokenizeCompletionRequest | TokenizeChatRequest``: a prompt or messages."""
    fields = _check_body(_TOKENIZE_REQUEST, body)
    resolve_model(fields, served)
    with_strings = bool(fields.get("return_token_strs"))
    # The member that matched: a string prompt is TokenizeCompletionRequest's (the chat member
    # keeps whatever else the body holds, a null prompt included).
    if isinstance(fields.get("prompt"), str):
        return TokenizeRequest(fields["prompt"], with_strings)
    _check_messages(fields["messages"], body)
    text = render_chat_prompt(
        fields["messages"], add_generation_prompt=fields.get("add_generation_prompt", True)
    )
    return TokenizeRequest(text, with_strings)


def parse_detokenize_request(body: Mapping[str, Any], served: ServedModel) -> list[int]:
    fields = _check_body(_DETOKENIZE_REQUEST, body)
    resolve_model(fields, served)
    tokens: list[int] = fields["tokens"]
    return tokens


def _check_body(check: FieldCheck, body: Mapping[str, Any]) -> dict[str, Any]:
    try:
        fields: dict[str, Any] = check(body)
    except FieldError as exc:
        raise ValidationFailure([error.render(("body",), body) for error in exc.errors]) from None
    return fields
