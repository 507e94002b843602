"""``/v1/responses`` (OpenAI's Responses API) as vLLM serves it: request validation, the response
object, its output items and the named stream events, per era.

Read in vLLM's ``serving_responses.py`` and ``protocol.py`` (0.10-0.14) and
``entrypoints/openai/responses/`` (0.17+, ``streaming_events.py`` from 0.21). Shapes of the
nested items and events are openai-python's models (field order, nulls) as vLLM serialises them.

Two quirks of 0.11's stream, derived from its source, are not reproduced because they would
break the openai SDK's ``responses.stream()`` and lose the answer: ``content_index`` counting up
with every delta, and a ``response.completed`` whose ``output`` holds only the last delta. The
stream sends what 0.17 fixed them to (index 0, the whole output). The harmless ones are kept:
the openai-revalidated response object (float ``created_at``, openai's extra nulls), uuid4 item
ids, the empty delta of the EOS step and ``"summary":[]`` on the finished message item.

Function calls stream as 0.33 streams them (``function_call_arguments.delta`` events) in every
era that serves tools. A generation error mid-stream is the spec's ``error`` event: vLLM's own
(``_convert_generation_error_to_streaming_response``) validates an error envelope as a stream
event, which fails, so its stream just breaks off.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from ..engine import render_chat_prompt
from ..engine.function_calls import AUTO, NONE, REQUIRED, FunctionTool, tool_to_call
from ..plan import PlanEvent
from .errors import APIError, ValidationFailure, bad_request, literal_error, value_error
from .fields import Check, as_any, as_bool, as_dict, as_float, as_int, as_list, as_str
from .profiles import Profile, ResponsesShape, StreamItemId
from .requests import (
    GenerationParams,
    ServedModel,
    coerce_fields,
    missing_field,
    resolve_model,
    sampling_params,
)
from .responses import _ordered, dumps, random_id
from .sse import named_frame

INVALID_REQUEST = "invalid_request_error"

_FIELDS: dict[str, Check] = {
    "background": as_bool,
    "include": as_list,
    "input": as_any,
    "instructions": as_str,
    "max_output_tokens": as_int,
    "max_tool_calls": as_int,
    "metadata": as_dict,
    "model": as_str,
    "parallel_tool_calls": as_bool,
    "previous_response_id": as_str,
    "prompt": as_any,
    "reasoning": as_dict,
    "service_tier": as_str,
    "store": as_bool,
    "stream": as_bool,
    "temperature": as_float,
    "text": as_dict,
    "tool_choice": as_any,
    "tools": as_list,
    "top_logprobs": as_int,
    "top_p": as_float,
    "truncation": as_str,
    "user": as_str,
    "request_id": as_str,
    "priority": as_int,
    "cache_salt": as_str,
    # 0.33's sampling extras (vllm bench sends ignore_eos), honoured in every era.
    "seed": as_int,
    "ignore_eos": as_bool,
    "safety_identifier": as_str,
    "prompt_cache_key": as_str,
}
_LITERALS = {
    "service_tier": ("auto", "default", "flex", "scale", "priority"),
    "truncation": ("auto", "disabled"),
}
# What the response object repeats from the request, with the request model's defaults.
_ECHOED: dict[str, Any] = {
    "instructions": None,
    "metadata": None,
    "parallel_tool_calls": True,
    "tool_choice": AUTO,
    "tools": [],
    "background": False,
    "max_tool_calls": None,
    "previous_response_id": None,
    "prompt": None,
    "reasoning": None,
    "service_tier": "auto",
    "text": None,
    "truncation": "disabled",
    "user": None,
    "safety_identifier": None,
    "prompt_cache_key": None,
}
_STORE_DISABLED = (
    "This vLLM engine does not support `store=True` and therefore does not support the "
    "background mode. To enable these features, set the environment variable "
    "`VLLM_ENABLE_RESPONSES_API_STORE=1` when launching the vLLM server."
)

# Looks up the conversation (chat messages, answer included) of a stored response.
History = Callable[[str], list[dict[str, Any]] | None]


@dataclass(frozen=True, slots=True)
class ResponsesRequest:
    model: str
    # The conversation as chat messages (instructions, history, input), and its prompt.
    messages: list[dict[str, Any]]
    prompt: tuple[int, ...]
    params: GenerationParams
    # The function tool to call instead of answering in text, if any.
    call: FunctionTool | None
    store: bool
    # The body's request_id: the response id when given.
    request_id: str | None
    temperature: float
    top_p: float
    echo: dict[str, Any]


def not_found(response_id: str, shape: ResponsesShape) -> APIError:
    return APIError(
        HTTPStatus.NOT_FOUND,
        f"Response with id '{response_id}' not found.",
        INVALID_REQUEST,
        shape.not_found_param,
    )


def parse_responses_request(
    body: Mapping[str, Any], served: ServedModel, history: History, store_enabled: bool
) -> ResponsesRequest:
    """Validate as ``ResponsesRequest`` and ``create_responses`` do, in their order."""
    profile = served.profile
    shape = profile.responses
    assert shape is not None, "the route is only served by eras that have it"
    fields = coerce_fields(body, _FIELDS)
    if "input" not in fields:
        raise missing_field("input", body)
    _check_literals(fields)
    if fields.get("background") and not fields.get("store", True):
        raise value_error("background can only be used when `store` is true", body)
    if fields.get("prompt") is not None:
        raise value_error("prompt template is not supported", body)
    model = resolve_model(fields, served)
    store = fields.get("store", True)
    if store and not store_enabled:
        if fields.get("background"):
            raise APIError(
                HTTPStatus.BAD_REQUEST,
                _STORE_DISABLED,
                INVALID_REQUEST,
                "background" if shape.not_found_param else None,
            )
        store = False
    elif fields.get("background"):
        raise APIError(
            HTTPStatus.BAD_REQUEST,
            "dummy-vllm does not run background responses.",
            INVALID_REQUEST,
            "background",
        )
    messages: list[dict[str, Any]] = []
    if fields.get("instructions"):
        messages.append({"role": "system", "content": fields["instructions"]})
    previous = fields.get("previous_response_id")
    if previous is not None:
        earlier = history(previous)
        if earlier is None:
            raise not_found(previous, shape)
        messages.extend(earlier)
    inputs, after_tool_result = _input_messages(fields["input"])
    messages.extend(inputs)
    tools = _function_tools(fields.get("tools") or [])
    if fields.get("tools") and not shape.tools:
        # 0.10-0.11 without a Harmony model; the handler appends the cause, None.
        raise bad_request("Tool use is not supported in Responses API without Harmony None")
    call = _tool_call(fields.get("tool_choice", AUTO), tools, after_tool_result)
    prompt = served.tokenizer.encode(render_chat_prompt(messages))
    limit = served.max_model_len
    if len(prompt) >= limit:
        raise APIError(
            HTTPStatus.BAD_REQUEST,
            f"The engine prompt length {len(prompt)} exceeds the max_model_len {limit}. "
            "Please reduce prompt.",
            INVALID_REQUEST,
            "input" if profile.error_params else None,
        )
    room = limit - len(prompt)
    requested = fields.get("max_output_tokens")
    sampling: dict[str, Any] = {
        name: fields[name]
        for name in ("temperature", "top_p", "seed", "ignore_eos", "stream")
        if name in fields
    }
    params = sampling_params(
        sampling,
        max_tokens=room if requested is None else min(requested, room),
        allow_zero_tokens=False,
        logprobs=None,
        include_usage=False,
        continuous_usage_stats=False,
        served=served,
    )
    return ResponsesRequest(
        model=model,
        messages=messages,
        prompt=tuple(prompt),
        params=params,
        call=call,
        store=store,
        request_id=fields.get("request_id"),
        temperature=fields.get("temperature", 1.0),
        top_p=fields.get("top_p", 1.0),
        echo={name: fields.get(name, default) for name, default in _ECHOED.items()},
    )


def _check_literals(fields: Mapping[str, Any]) -> None:
    for name, allowed in _LITERALS.items():
        value = fields.get(name)
        if value is not None and value not in allowed:
            raise ValidationFailure([literal_error(("body", name), value, allowed)])


def _part_text(part: Any) -> str:
    if not isinstance(part, Mapping):
        return str(part)
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text"):
        return str(part.get("text", ""))
    if kind == "refusal":
        return str(part.get("refusal", ""))
    return f"<{str(kind).removeprefix('input_')}>"


def _input_messages(value: Any) -> tuple[list[dict[str, Any]], bool]:
    """Input items as chat messages, and whether the last is a tool's result."""
    if isinstance(value, str):
        return [{"role": "user", "content": value}], False
    if not isinstance(value, list):
        raise ValidationFailure(
            [
                {
                    "type": "string_type",
                    "loc": ("body", "input", "str"),
                    "msg": "Input should be a valid string",
                    "input": value,
                }
            ]
        )
    messages: list[dict[str, Any]] = []
    last_kind = None
    for index, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise ValidationFailure(
                [
                    {
                        "type": "dict_type",
                        "loc": ("body", "input", "list", index),
                        "msg": "Input should be a valid dictionary",
                        "input": item,
                    }
                ]
            )
        last_kind = item.get("type", "message")
        if last_kind == "function_call":
            text = f"{item.get('name', '')}({item.get('arguments', '')})"
            messages.append({"role": "assistant", "content": text})
        elif last_kind == "function_call_output":
            messages.append({"role": "tool", "content": str(item.get("output", ""))})
        elif "content" in item:
            content = item["content"]
            if isinstance(content, list):
                content = "\n".join(_part_text(part) for part in content)
            messages.append({"role": str(item.get("role", "user")), "content": str(content)})
    return messages, last_kind == "function_call_output"


def _function_tools(tools: Sequence[Any]) -> list[FunctionTool]:
    return [
        FunctionTool(str(tool["name"]), tool.get("parameters"))
        for tool in tools
        if isinstance(tool, Mapping) and tool.get("type") == "function" and tool.get("name")
    ]


def _tool_call(
    choice: Any, tools: Sequence[FunctionTool], after_tool_result: bool
) -> FunctionTool | None:
    """0.12+'s tool_choice checks, then the synthetic model's pick."""
    forced = None
    if isinstance(choice, Mapping):
        forced = str(choice.get("name"))
        if forced not in {tool.name for tool in tools}:
            raise bad_request(f"Tool choice '{choice.get('type')}' not found in 'tools' parameter.")
        choice = REQUIRED
    elif choice == REQUIRED and not tools:
        raise bad_request("Tool choice 'required' must be specified with 'tools' parameter.")
    elif choice not in (NONE, AUTO, REQUIRED):
        choice = AUTO
    return tool_to_call(tools, str(choice), after_tool_result, forced)


# --- the response object ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResponseHead:
    """What every view of one response shares."""

    id: str
    created_at: int
    model: str


def response_head(request: ResponsesRequest, profile: Profile) -> ResponseHead:
    response_id = request.request_id or f"resp_{random_id(profile.id_hex_digits)}"
    return ResponseHead(response_id, int(time.time()), request.model)


def usage_object(shape: ResponsesShape, input_tokens: int, output_tokens: int) -> dict[str, Any]:
    def details(keys: Sequence[str]) -> dict[str, Any]:
        # Single-turn requests leave the per-turn lists empty (SimpleContext).
        return {key: [] if key.endswith("_per_turn") else 0 for key in keys}

    return {
        "input_tokens": input_tokens,
        "input_tokens_details": details(shape.usage_input_details),
        "output_tokens": output_tokens,
        "output_tokens_details": details(shape.usage_output_details),
        "total_tokens": input_tokens + output_tokens,
    }


def response_object(
    keys: Sequence[str],
    head: ResponseHead,
    request: ResponsesRequest,
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None,
    float_created_at: bool = False,
) -> dict[str, Any]:
    """ResponsesResponse.from_request, in the field order ``keys``."""
    values = {
        **request.echo,
        "id": head.id,
        "created_at": float(head.created_at) if float_created_at else head.created_at,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "model": head.model,
        "object": "response",
        "output": output,
        "temperature": float(request.temperature),
        "top_p": float(request.top_p),
        "max_output_tokens": request.params.max_tokens,
        "status": status,
        "usage": usage,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
    }
    return _ordered(keys, values)


def output_text(text: str, logprobs: list[Any] | None = None) -> dict[str, Any]:
    return {"annotations": [], "text": text, "type": "output_text", "logprobs": logprobs}


def message_item(item_id: str, content: list[dict[str, Any]], status: str) -> dict[str, Any]:
    return {
        "id": item_id,
        "content": content,
        "role": "assistant",
        "status": status,
        "type": "message",
    }


def function_call_item(
    shape: ResponsesShape, item_id: str, call_id: str, name: str, arguments: str, status: str
) -> dict[str, Any]:
    values = {
        "arguments": arguments,
        "call_id": call_id,
        "name": name,
        "type": "function_call",
        "id": item_id,
        "status": status,
    }
    return _ordered(shape.function_call_keys, values)


@dataclass(frozen=True, slots=True)
class Answer:
    """What the model produced for one response: text, or one function call."""

    text: str
    call: FunctionTool | None
    arguments: str
    output_tokens: int
    # Stopped by max_output_tokens.
    truncated: bool


def status_of(answer: Answer, shape: ResponsesShape) -> str:
    return "incomplete" if answer.truncated and shape.incomplete_status else "completed"


def output_items(answer: Answer, shape: ResponsesShape, id_digits: int) -> list[dict[str, Any]]:
    """The output of the non-streamed body (fresh item ids, as ``_make_response_output_items``)."""
    status = "incomplete" if answer.truncated and shape.incomplete_event else "completed"
    suffix = random_id(id_digits)
    if answer.call is not None:
        return [
            function_call_item(
                shape,
                f"fc_{suffix}",
                f"chatcmpl-tool-{suffix}",
                answer.call.name,
                answer.arguments,
                status,
            )
        ]
    if not answer.text:
        return []
    return [message_item(f"msg_{suffix}", [output_text(answer.text)], status)]


def response_body(
    profile: Profile, head: ResponseHead, request: ResponsesRequest, answer: Answer
) -> bytes:
    shape = profile.responses
    assert shape is not None
    return dumps(
        response_object(
            shape.body_keys,
            head,
            request,
            status_of(answer, shape),
            output_items(answer, shape, profile.id_hex_digits),
            usage_object(shape, len(request.prompt), answer.output_tokens),
        )
    )


# --- the stream ---------------------------------------------------------------------------------


class ResponsesStream:
    """The named events of one streamed response; ``sequence_number`` counts every event."""

    def __init__(
        self, profile: Profile, head: ResponseHead, request: ResponsesRequest, answer: Answer
    ) -> None:
        shape = profile.responses
        assert shape is not None
        self.profile = profile
        self.shape = shape
        self.head = head
        self.request = request
        self.answer = answer
        self.sequence = 0

    def event(
        self, name: str, payload: dict[str, Any], after_type: Mapping[str, Any] | None = None
    ) -> bytes:
        """``payload`` then ``sequence_number`` and ``type`` (openai's field order), then the
        fields a vLLM subclass declares after them."""
        payload["sequence_number"] = self.sequence
        payload["type"] = name
        payload.update(after_type or {})
        self.sequence += 1
        return named_frame(name, dumps(payload))

    def lifecycle(self, name: str, status: str, output: list[dict[str, Any]]) -> bytes:
        shape = self.shape
        usage = None
        if status != "in_progress":
            usage = usage_object(shape, len(self.request.prompt), self.answer.output_tokens)
        response = response_object(
            shape.stream_response_keys,
            self.head,
            self.request,
            status,
            output,
            usage,
            shape.stream_float_created_at,
        )
        return self.event(name, {"response": response})

    def item_id(self) -> str:
        kind = self.shape.stream_item_id
        if kind is StreamItemId.UUID4:
            return str(uuid.uuid4())
        suffix = random_id(self.profile.id_hex_digits)
        return suffix if kind is StreamItemId.HEX else f"msg_{suffix}"


def responses_events(
    stream: ResponsesStream, pieces: Sequence[str], offsets: Sequence[float]
) -> Iterator[PlanEvent]:
    """created and in_progress at once; then the answer's item, one delta per token step (the
    text's pieces, or the function call's arguments), its done events and the terminal event
    when the last token is due."""
    yield PlanEvent(0.0, stream.lifecycle("response.created", "in_progress", []), 0)
    yield PlanEvent(0.0, stream.lifecycle("response.in_progress", "in_progress", []), 0)
    if stream.answer.call is not None:
        items, held = yield from _call_events(stream, pieces, offsets)
    else:
        items, held = yield from _text_events(stream, pieces, offsets)
    shape = stream.shape
    answer = stream.answer
    incomplete = answer.truncated and shape.incomplete_event
    status = "incomplete" if incomplete else status_of(answer, shape)
    if not shape.incomplete_event:
        # Before 0.24 the final response is rebuilt, its items named afresh.
        items = output_items(answer, shape, stream.profile.id_hex_digits)
    name = "response.incomplete" if incomplete else "response.completed"
    end = offsets[-1] if offsets else 0.0
    yield PlanEvent(end, stream.lifecycle(name, status, items), held)


Items = list[dict[str, Any]]
# Yields the item's events; returns the finished items and the tokens no event carried yet.
ItemEvents = Generator[PlanEvent, None, tuple[Items, int]]


def _text_events(
    stream: ResponsesStream, pieces: Sequence[str], offsets: Sequence[float]
) -> ItemEvents:
    shape = stream.shape
    item_id = ""
    text = ""
    # Tokens whose step sent no event (an empty piece): counted with the next event.
    held = 0
    for piece, due in zip(pieces, offsets, strict=True):
        held += 1
        if not piece and not shape.empty_final_delta:
            continue
        if not item_id:
            item_id = stream.item_id()
            added = message_item(item_id, [], "in_progress")
            yield PlanEvent(
                due,
                stream.event("response.output_item.added", {"item": added, "output_index": 0}),
                0,
            )
            part = {"annotations": [], "text": "", "type": "output_text", "logprobs": []}
            yield PlanEvent(
                due,
                stream.event(
                    "response.content_part.added",
                    {"content_index": 0, "item_id": item_id, "output_index": 0, "part": part},
                ),
                0,
            )
        text += piece
        delta = {
            "content_index": 0,
            "delta": piece,
            "item_id": item_id,
            "logprobs": [],
            "output_index": 0,
        }
        yield PlanEvent(due, stream.event("response.output_text.delta", delta), held)
        held = 0
    if not item_id:
        return [], held
    end = offsets[-1]
    done = {"content_index": 0, "item_id": item_id, "logprobs": [], "output_index": 0, "text": text}
    yield PlanEvent(end, stream.event("response.output_text.done", done), 0)
    part = output_text(text)
    yield PlanEvent(
        end,
        stream.event(
            "response.content_part.done",
            {"content_index": 0, "item_id": item_id, "output_index": 0, "part": part},
        ),
        0,
    )
    status = "incomplete" if stream.answer.truncated and shape.incomplete_event else "completed"
    item = message_item(item_id, [part] if text else [], status)
    if shape.item_done_summary:
        item["summary"] = []
    yield PlanEvent(
        end, stream.event("response.output_item.done", {"item": item, "output_index": 0}), held
    )
    return [item], 0


def _call_events(
    stream: ResponsesStream, pieces: Sequence[str], offsets: Sequence[float]
) -> ItemEvents:
    shape = stream.shape
    call = stream.answer.call
    assert call is not None
    suffix = random_id(stream.profile.id_hex_digits)
    item_id, call_id = f"fc_{suffix}", f"chatcmpl-tool-{suffix}"
    added = function_call_item(shape, item_id, call_id, call.name, "", "in_progress")
    arguments = ""
    for index, (piece, due) in enumerate(zip(pieces, offsets, strict=True)):
        if index == 0:
            yield PlanEvent(
                due,
                stream.event("response.output_item.added", {"item": added, "output_index": 0}),
                0,
            )
        arguments += piece
        delta = {"delta": piece, "item_id": item_id, "output_index": 0}
        yield PlanEvent(due, stream.event("response.function_call_arguments.delta", delta), 1)
    end = offsets[-1] if offsets else 0.0
    done = {"arguments": arguments, "item_id": item_id, "output_index": 0}
    payload = stream.event("response.function_call_arguments.done", done, {"name": call.name})
    yield PlanEvent(end, payload, 0)
    status = "incomplete" if stream.answer.truncated and shape.incomplete_event else "completed"
    item = function_call_item(shape, item_id, call_id, call.name, arguments, status)
    yield PlanEvent(
        end, stream.event("response.output_item.done", {"item": item, "output_index": 0}), 0
    )
    return [item], 0


def error_event(message: str, sequence: int) -> bytes:
    """The Responses spec's in-stream error (see the module notes)."""
    payload = {
        "code": "internal_error",
        "message": message,
        "param": None,
        "sequence_number": sequence,
        "type": "error",
    }
    return named_frame("error", dumps(payload))
