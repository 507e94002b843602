"""``/v1/messages`` (Anthropic's Messages API) as vLLM serves it, per era.

vLLM converts the request to a chat completion, runs it, and converts the result or each chat
chunk back (``anthropic/serving_messages.py`` 0.12-0.14, ``anthropic/serving.py`` 0.15+). So
the prompt is the chat template's, the id is ``chatcmpl-...``, and the stream's events follow the
chat chunks: ``message_start`` comes with the first token (the role chunk), a text block opens
lazily, and ``message_delta`` carries the chat usage. Request validation errors stay OpenAI-shaped
(FastAPI's handler); errors of the handler are translated to Anthropic's envelope.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..engine import render_chat_prompt
from ..engine.function_calls import AUTO, NONE, REQUIRED, FunctionTool, tool_to_call
from ..plan import PlanEvent
from .context_length import OutputRequest, check_context
from .errors import APIError, ValidationFailure, bad_request, literal_error
from .fields import (
    Check,
    as_any,
    as_bool,
    as_dict,
    as_float,
    as_int,
    as_list,
    as_str,
    list_of,
    literal,
    model,
    nullable,
)
from .profiles import DEFAULT_PROFILE, AnthropicShape, Profile
from .requests import (
    GenerationParams,
    ServedModel,
    coerce_fields,
    missing_field,
    resolve_model,
    sampling_params,
)
from .responses import ResponseMeta, dumps
from .sse import DONE_EVENT, named_frame

_FIELDS: dict[str, Check] = {
    "model": as_str,
    "messages": as_list,
    "max_tokens": as_int,
    "metadata": as_dict,
    "stop_sequences": list_of(as_str),
    "stream": as_bool,
    "system": as_any,
    "temperature": as_float,
    "tool_choice": model(
        {"type": literal("auto", "any", "tool", "none"), "name": nullable(as_str)},
        "AnthropicToolChoice",
        required=("type",),
    ),
    "tools": list_of(
        model(
            {"name": as_str, "description": nullable(as_str), "input_schema": as_dict},
            "AnthropicTool",
            required=("name", "input_schema"),
        )
    ),
    "top_k": as_int,
    "top_p": as_float,
}
_ROLES = ("user", "assistant")
_BLOCK_TYPES = ("text", "image", "tool_use", "tool_result")
# 0.24+ derives error.type from the status (``translate_error_type``).
_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
}
_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens"}


@dataclass(frozen=True, slots=True)
class MessagesRequest:
    model: str
    prompt: tuple[int, ...]
    params: GenerationParams
    # The tool to call instead of answering in text, if any.
    call: FunctionTool | None


def _value_error(field: str, message: str, value: Any) -> ValidationFailure:
    """A field_validator's ValueError, as pydantic reports it."""
    return ValidationFailure(
        [
            {
                "type": "value_error",
                "loc": ("body", field),
                "msg": f"Value error, {message}",
                "input": value,
                "ctx": {"error": ValueError(message)},
            }
        ]
    )


def _check_messages(messages: Sequence[Any]) -> None:
    errors: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        loc = ("body", "messages", index)
        if not isinstance(message, Mapping):
            errors.append(
                {
                    "type": "model_attributes_type",
                    "loc": loc,
                    "msg": "Input should be a valid dictionary or object to extract fields from",
                    "input": message,
                }
            )
            continue
        for name in ("role", "content"):
            if name not in message:
                errors.append(
                    {
                        "type": "missing",
                        "loc": (*loc, name),
                        "msg": "Field required",
                        "input": message,
                    }
                )
        if "role" in message and message["role"] not in _ROLES:
            errors.append(literal_error((*loc, "role"), message["role"], _ROLES))
        content = message.get("content")
        if isinstance(content, list):
            for position, block in enumerate(content):
                kind = block.get("type") if isinstance(block, Mapping) else None
                if kind not in _BLOCK_TYPES:
                    errors.append(
                        literal_error(
                            (*loc, "content", "list", position, "type"), kind, _BLOCK_TYPES
                        )
                    )
        elif "content" in message and not isinstance(content, str):
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


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            _text(part.get("text", part)) for part in content if isinstance(part, Mapping)
        )
    return "" if content is None else str(content)


def chat_messages(fields: Mapping[str, Any]) -> tuple[list[dict[str, Any]], bool]:
    """The chat conversation vLLM builds (``_convert_anthropic_to_openai_request``), and
    whether the last message carries a tool's result."""
    messages: list[dict[str, Any]] = []
    system = fields.get("system")
    if system:
        messages.append({"role": "system", "content": _text(system)})
    after_tool_result = False
    for message in fields["messages"]:
        content = message["content"]
        after_tool_result = False
        if isinstance(content, str):
            messages.append({"role": message["role"], "content": content})
            continue
        texts: list[str] = []
        for block in content:
            kind = block["type"]
            if kind == "text" and block.get("text"):
                texts.append(str(block["text"]))
            elif kind == "image":
                texts.append("<image>")
            elif kind == "tool_use":
                texts.append(f"{block.get('name', '')}({dumps(block.get('input') or {}).decode()})")
            elif kind == "tool_result":
                after_tool_result = True
                messages.append({"role": "tool", "content": _text(block.get("content"))})
        if texts:
            messages.append({"role": message["role"], "content": "\n".join(texts)})
    return messages, after_tool_result


def _tools(fields: Mapping[str, Any]) -> list[FunctionTool]:
    return [FunctionTool(tool["name"], tool["input_schema"]) for tool in fields.get("tools") or ()]


def _tool_call(
    choice: Mapping[str, Any] | None, tools: Sequence[FunctionTool], after_tool_result: bool
) -> FunctionTool | None:
    """auto -> "auto", any -> "required", tool -> named, as vLLM maps them for chat."""
    kind = (choice or {}).get("type", AUTO)
    forced = None
    if kind == "tool":
        forced = (choice or {}).get("name")
        if not forced:
            raise _value_error(
                "tool_choice", "tool_choice.name is required when type is 'tool'", choice
            )
        if forced not in {tool.name for tool in tools}:
            raise bad_request(
                "The tool specified in `tool_choice` does not match any of the specified `tools`"
            )
    mode = {"any": REQUIRED, "none": NONE}.get(kind, AUTO)
    return tool_to_call(tools, mode, after_tool_result, forced)


def parse_messages_request(body: Mapping[str, Any], served: ServedModel) -> MessagesRequest:
    fields = coerce_fields(body, _FIELDS)
    for required in ("model", "messages", "max_tokens"):
        if required not in fields:
            raise missing_field(required, body)
    if not fields["model"]:
        raise _value_error("model", "Model is required", fields["model"])
    if fields["max_tokens"] <= 0:
        raise _value_error("max_tokens", "max_tokens must be positive", fields["max_tokens"])
    _check_messages(fields["messages"])
    messages, after_tool_result = chat_messages(fields)
    call = _tool_call(fields.get("tool_choice"), _tools(fields), after_tool_result)
    model = resolve_model(fields, served)
    prompt = served.tokenizer.encode(render_chat_prompt(messages))
    max_tokens = check_context(
        served.profile,
        served.max_model_len,
        OutputRequest(len(prompt), fields["max_tokens"], "max_tokens", chat=True, text_prompt=True),
    )
    stop = fields.get("stop_sequences") or []
    sampling: dict[str, Any] = {
        name: fields[name] for name in ("temperature", "top_p", "top_k", "stream") if name in fields
    }
    sampling["stop"] = tuple(str(item) for item in stop)
    params = sampling_params(
        sampling,
        max_tokens=max_tokens,
        allow_zero_tokens=False,
        logprobs=None,
        include_usage=True,
        continuous_usage_stats=True,
        served=served,
    )
    return MessagesRequest(model=model, prompt=tuple(prompt), params=params, call=call)


def count_tokens(body: Mapping[str, Any], served: ServedModel) -> bytes:
    """POST /v1/messages/count_tokens: the templated prompt's length (0.15+)."""
    fields = coerce_fields(body, _FIELDS)
    for required in ("model", "messages"):
        if required not in fields:
            raise missing_field(required, body)
    _check_messages(fields["messages"])
    messages, _ = chat_messages(fields)
    tokens = len(served.tokenizer.encode(render_chat_prompt(messages)))
    return dumps({"input_tokens": tokens, "context_management": {"original_input_tokens": tokens}})


# --- answers ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reply:
    """What the chat completion produced, as the converter sees it."""

    # Text per token step (the chat chunks' content), or the tool call's arguments per step.
    pieces: Sequence[str]
    call: FunctionTool | None
    call_id: str
    finish_reason: str
    # The stop string that ended the text, if one did.
    stop_string: str | None
    prompt_tokens: int
    completion_tokens: int


def stop_fields(reply: Reply, shape: AnthropicShape) -> tuple[str, str | None]:
    """(stop_reason, stop_sequence) as the era maps chat's finish."""
    if reply.finish_reason == "length":
        return "max_tokens", None
    if reply.call is not None:
        return "tool_use", None
    if reply.stop_string is not None and shape.stop_sequence_reason:
        return "stop_sequence", reply.stop_string
    return _STOP_REASONS.get(reply.finish_reason, "end_turn"), None


def _usage(input_tokens: int, output_tokens: int) -> dict[str, int]:
    return {"input_tokens": input_tokens, "output_tokens": output_tokens}


def _tool_block(reply: Reply, arguments: Any) -> dict[str, Any]:
    assert reply.call is not None
    return {"type": "tool_use", "id": reply.call_id, "name": reply.call.name, "input": arguments}


def message_body(
    shape: AnthropicShape, meta: ResponseMeta, reply: Reply, call_input: Any = None
) -> bytes:
    """The non-streamed message (``exclude_none``: no null fields)."""
    text = "" if reply.call is not None else "".join(reply.pieces)
    content: list[dict[str, Any]] = []
    if text or shape.text_block == "always":
        content.append({"type": "text", "text": text})
    if reply.call is not None:
        content.append(_tool_block(reply, call_input if call_input is not None else {}))
    if not content and shape.text_block == "never-empty":
        content.append({"type": "text", "text": ""})
    stop_reason, stop_sequence = stop_fields(reply, shape)
    body: dict[str, Any] = {
        "id": meta.id,
        "type": "message",
        "role": "assistant",
        "content": content,
        "model": meta.model,
        "stop_reason": stop_reason,
    }
    if stop_sequence is not None:
        body["stop_sequence"] = stop_sequence
    body["usage"] = _usage(reply.prompt_tokens, reply.completion_tokens)
    return dumps(body)


def _frame(name: str, payload: dict[str, Any]) -> bytes:
    return named_frame(name, dumps(payload))


def messages_events(
    shape: AnthropicShape, meta: ResponseMeta, reply: Reply, offsets: Sequence[float]
) -> Iterator[PlanEvent]:
    """The converter's events for the chat chunks of ``reply``: one step per token, the usage
    chunk and [DONE] at the last token's time."""
    start: dict[str, Any] = {
        "id": meta.id,
        "type": "message",
        "role": "assistant",
        "content": [],
        "model": meta.model,
        "stop_reason": None,
        "stop_sequence": None,
        "usage": _usage(reply.prompt_tokens, 0),
    }
    first = offsets[0] if offsets else 0.0
    message = {key: start[key] for key in shape.message_start_keys}
    yield PlanEvent(
        first, _frame("message_start", {"type": "message_start", "message": message}), 0
    )
    opened = False
    # Tokens whose chunk produced no event: counted with the next event.
    held = 0
    last = len(reply.pieces) - 1
    for step, (piece, due) in enumerate(zip(reply.pieces, offsets, strict=True)):
        held += 1
        if reply.call is None and step == last and shape.drops_finish_chunk:
            continue
        if not opened and (piece or (shape.drops_finish_chunk and reply.call is None)):
            block = (
                {"type": "tool_use", "id": reply.call_id, "name": reply.call.name, "input": {}}
                if reply.call is not None
                else {"type": "text", "text": ""}
            )
            payload: dict[str, Any] = {
                "type": "content_block_start",
                "content_block": block,
                "index": 0,
            }
            yield PlanEvent(due, _frame("content_block_start", payload), 0)
            opened = True
        if not piece:
            continue
        delta = (
            {"type": "input_json_delta", "partial_json": piece}
            if reply.call is not None
            else {"type": "text_delta", "text": piece}
        )
        payload = {"type": "content_block_delta", "delta": delta, "index": 0}
        yield PlanEvent(due, _frame("content_block_delta", payload), held)
        held = 0
    end = offsets[-1] if offsets else 0.0
    if opened:
        yield PlanEvent(
            end, _frame("content_block_stop", {"type": "content_block_stop", "index": 0}), 0
        )
    stop_reason, stop_sequence = stop_fields(reply, shape)
    stop: dict[str, Any] = {"stop_reason": stop_reason}
    if shape.delta_stop_sequence:
        stop["stop_sequence"] = stop_sequence
    usage = _usage(reply.prompt_tokens, reply.completion_tokens)
    final = {"type": "message_delta", "delta": stop, "usage": usage}
    yield PlanEvent(end, _frame("message_delta", final), held)
    yield PlanEvent(end, _frame("message_stop", {"type": "message_stop"}), 0)
    if shape.trailing_done:
        yield PlanEvent(end, DONE_EVENT, 0)


# --- errors -------------------------------------------------------------------------------------


def error_type(error: APIError, profile: Profile) -> str:
    shape = profile.anthropic
    _, kind, _ = error.fields(profile)
    if shape is None or not shape.error_types_by_status:
        return kind
    if error.status in _TYPE_BY_STATUS:
        return _TYPE_BY_STATUS[error.status]
    return "api_error" if error.status >= 500 else "invalid_request_error"


def error_body(error: APIError, profile: Profile) -> bytes:
    """A handler error in Anthropic's envelope, keeping its status."""
    message, _, _ = error.fields(profile)
    return dumps(
        {"type": "error", "error": {"type": error_type(error, profile), "message": message}}
    )


def stream_error(error: APIError, profile: Profile) -> tuple[bytes, ...]:
    """What a stream ends with when generation fails: an ``error`` event (internal_error, or
    the status's type from 0.24), then [DONE] where the era sends one."""
    shape = profile.anthropic
    assert shape is not None
    kind = error_type(error, profile) if shape.error_types_by_status else "internal_error"
    message, _, _ = error.fields(profile)
    event = _frame("error", {"type": "error", "error": {"type": kind, "message": message}})
    return (event, DONE_EVENT) if shape.trailing_done else (event,)


class AnthropicError(APIError):
    """A handler error of /v1/messages, rendered in Anthropic's envelope."""

    def __init__(self, error: APIError) -> None:
        super().__init__(
            error.status,
            error.message,
            error.error_type,
            error.param,
            parameter=error.parameter,
            value=error.value,
        )

    def body(self, profile: Profile = DEFAULT_PROFILE) -> bytes:
        return error_body(self, profile)
