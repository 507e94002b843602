"""``/v1/embeddings`` and ``/pooling``: request validation and answer bodies, per era.

Read in vLLM's ``serving_embedding.py`` / ``serving_pooling.py`` (0.11), ``entrypoints/pooling/``
(0.12+), ``pooling_params.py`` and ``inputs/parse.py``. Inputs are parsed as
``parse_and_batch_prompt`` does: a string or a list of token ids is one prompt, a list of either
is several; token ids are not checked against the vocabulary (LangChain sends tiktoken's).

Vectors arrive as integers in units of 1e-7 (``engine/embedding.py``). The float wire format is
the era's: ``json.dumps`` of ``tensor.tolist()`` (the float32 value printed as a double, up to
0.20) or orjson of the numpy float32 array (its shortest float32 form, 0.21+); base64 is the
little-endian float32 bytes, which the openai SDK decodes (and asks for unless told otherwise).
"""

from __future__ import annotations

import base64
import sys
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..engine import render_chat_prompt
from ..engine.embedding import SCALE
from .context_length import OutputRequest, check_context
from .errors import ValidationFailure, bad_request, literal_error
from .fields import Check, as_any, as_bool, as_int, as_list, as_str
from .requests import ServedModel, coerce_fields, missing_field, resolve_model
from .responses import ResponseMeta, Wire, dumps

FLOAT = "float"
BASE64 = "base64"
_FORMATS = (FLOAT, BASE64)

_FIELDS: dict[str, Check] = {
    "model": as_str,
    "input": as_any,
    "messages": as_list,
    "encoding_format": as_str,
    "dimensions": as_int,
    "user": as_str,
    "truncate_prompt_tokens": as_int,
    "add_special_tokens": as_bool,
    "add_generation_prompt": as_bool,
    "priority": as_int,
    "request_id": as_str,
}


@dataclass(frozen=True, slots=True)
class EmbeddingRequest:
    model: str
    # One prompt per input, each embedded (and counted by /metrics) on its own.
    prompts: tuple[tuple[int, ...], ...]
    encoding_format: str
    dimensions: int | None
    # The body's request_id, which names the answer unless an X-Request-Id header does.
    request_id: str | None


def parse_embedding_request(
    body: Mapping[str, Any], served: ServedModel, *, pooling: bool = False
) -> EmbeddingRequest:
    """Validate as vLLM does: field types, the model, truncation, dimensions, then the prompts
    against the context."""
    fields = coerce_fields(body, _FIELDS)
    if "input" not in fields and "messages" not in fields:
        raise missing_field("input", body)
    encoding = fields.get("encoding_format", FLOAT)
    if encoding not in _FORMATS:
        raise ValidationFailure([literal_error(("body", "encoding_format"), encoding, _FORMATS)])
    truncate = fields.get("truncate_prompt_tokens")
    if truncate is not None and truncate < -1:
        raise ValidationFailure(
            [
                {
                    "type": "greater_than_equal",
                    "loc": ("body", "truncate_prompt_tokens"),
                    "msg": "Input should be greater than or equal to -1",
                    "input": truncate,
                    "ctx": {"ge": -1},
                }
            ]
        )
    shape = served.profile.embeddings
    model = served.name if shape.ignore_unknown_model else resolve_model(fields, served)
    limit = served.max_model_len
    if truncate is not None and truncate > limit:
        raise bad_request(shape.truncate_too_large)
    dimensions = fields.get("dimensions")
    if dimensions is not None:
        _check_dimensions(dimensions, served, pooling)
    if "input" in fields:
        prompts = _input_prompts(fields["input"], served)
    else:
        text = render_chat_prompt(
            _checked_messages(fields["messages"]),
            add_generation_prompt=fields.get("add_generation_prompt", False),
        )
        prompts = [served.tokenizer.encode(text)]
    if truncate is not None:
        keep = limit if truncate == -1 else truncate
        # vLLM truncates from the left: the end of the text is kept.
        prompts = [prompt[-keep:] if keep else [] for prompt in prompts]
    for prompt in prompts:
        check_context(
            served.profile,
            limit,
            OutputRequest(len(prompt), 0, "max_tokens", chat=False, text_prompt=False),
        )
    return EmbeddingRequest(
        model=model,
        prompts=tuple(tuple(prompt) for prompt in prompts),
        encoding_format=encoding,
        dimensions=dimensions,
        request_id=fields.get("request_id"),
    )


def _check_dimensions(dimensions: int, served: ServedModel, pooling: bool) -> None:
    """This model is Matryoshka without a fixed list: any size up to its own is served."""
    if pooling:
        raise bad_request("dimensions is currently not supported")
    size = served.embedding_dimensions
    if served.profile.embeddings.dimensions_range_check:
        if not 1 <= dimensions <= size:
            raise bad_request(
                f"Model {served.name!r} only supports dimensions in range [1, {size}], "
                f"got {dimensions}."
            )
    elif dimensions < 1:
        raise bad_request("Dimensions must be greater than 0")


def _is_ids(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(item, int) and not isinstance(item, bool) for item in value
    )


def _input_prompts(value: Any, served: ServedModel) -> list[list[int]]:
    encode = served.tokenizer.encode
    if isinstance(value, str):
        return [encode(value)]
    if isinstance(value, list):
        if not value or value == [[]]:
            raise bad_request("please provide at least one prompt")
        if all(isinstance(item, str) for item in value):
            return [encode(item) for item in value]
        if _is_ids(value):
            return [list(value)]
        if all(_is_ids(item) for item in value):
            return [list(item) for item in value]
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


def _checked_messages(messages: list[Any]) -> list[dict[str, Any]]:
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message:
            raise ValidationFailure(
                [
                    {
                        "type": "missing",
                        "loc": ("body", "messages", index, "role"),
                        "msg": "Field required",
                        "input": message,
                    }
                ]
            )
    return messages


# --- answers ------------------------------------------------------------------------------------


def float_list(vector: Sequence[int], float32_repr: bool) -> bytes:
    """A JSON array of the vector's float32 values, as the era prints them."""
    if float32_repr:
        return b"[%b]" % ",".join(map(_shortest, vector)).encode()
    return b"[%b]" % ",".join(map(repr, _float32(vector).tolist())).encode()


def base64_float32(vector: Sequence[int]) -> str:
    """The float32 bytes, little-endian, in standard base64 with padding."""
    values = _float32(vector)
    if sys.byteorder != "little":
        values.byteswap()
    return base64.b64encode(values.tobytes()).decode()


def _float32(vector: Sequence[int]) -> array[float]:
    return array("f", [value / SCALE for value in vector])


def _shortest(value: int) -> str:
    """How orjson prints a numpy float32 holding ``value`` x 1e-7 (Ryu's shortest form)."""
    if not value:
        return "0.0"
    sign = "-" if value < 0 else ""
    magnitude = abs(value)
    if magnitude < 10:
        # Below 1e-6 Ryu switches to exponent notation: one digit, so "3e-7".
        return f"{sign}{magnitude}e-7"
    whole, fraction = divmod(magnitude, SCALE)
    return f"{sign}{whole}.{f'{fraction:07d}'.rstrip('0') or '0'}"


def embedding_body(
    wire: Wire,
    meta: ResponseMeta,
    vectors: Sequence[Sequence[int]],
    encoding_format: str,
    prompt_tokens: int,
) -> bytes:
    """EmbeddingResponse: one ``embedding`` per input, in input order."""
    items = [
        _item(index, b'"embedding"', b'"embedding":', _encoded(vector, encoding_format, wire))
        for index, vector in enumerate(vectors)
    ]
    return _list_body(wire, meta, items, prompt_tokens)


def pooling_body(
    wire: Wire,
    meta: ResponseMeta,
    outputs: Sequence[Sequence[Sequence[int]]],
    encoding_format: str,
    prompt_tokens: int,
) -> bytes:
    """PoolingResponse: per input, one vector per prompt token (up to 0.14) or one vector."""
    per_token = wire.profile.embeddings.pooling_per_token
    items = []
    for index, vectors in enumerate(outputs):
        if encoding_format == BASE64:
            flat = [value for vector in vectors for value in vector]
            data = dumps(base64_float32(flat))
        elif per_token:
            data = b"[%b]" % b",".join(_encoded(vector, FLOAT, wire) for vector in vectors)
        else:
            data = _encoded(vectors[0], FLOAT, wire)
        items.append(_item(index, b'"pooling"', b'"data":', data))
    return _list_body(wire, meta, items, prompt_tokens)


def _encoded(vector: Sequence[int], encoding_format: str, wire: Wire) -> bytes:
    if encoding_format == BASE64:
        return dumps(base64_float32(vector))
    return float_list(vector, wire.profile.embeddings.float32_repr)


def _item(index: int, object_name: bytes, key: bytes, data: bytes) -> bytes:
    return b'{"index":%d,"object":%b,%b%b}' % (index, object_name, key, data)


def _list_body(wire: Wire, meta: ResponseMeta, items: list[bytes], prompt_tokens: int) -> bytes:
    head = dumps({"id": meta.id, "object": "list", "created": meta.created, "model": meta.model})
    return b'%b,"data":[%b],"usage":%b}' % (
        head[:-1],
        b",".join(items),
        dumps(wire.usage(prompt_tokens, 0)),
    )
