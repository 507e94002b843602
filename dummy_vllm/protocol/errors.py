"""vLLM's error envelopes (0.10.1+ nested shape) and the exceptions that carry them.

Two kinds of 400 exist in vLLM and clients can see the difference: request-model validation
(pydantic, surfaced by FastAPI) has ``type: "Bad Request"`` and a stringified error list; handler
checks (sampling parameters, context length) have ``type: "BadRequestError"`` and a plain message.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

import ujson

from .sse import frame

# Bodies that FastAPI/Starlette produce outside vLLM's handlers, byte for byte.
NOT_FOUND_BODY = b'{"detail":"Not Found"}'
METHOD_NOT_ALLOWED_BODY = b'{"detail":"Method Not Allowed"}'
UNAUTHORIZED_BODY = b'{"error":"Unauthorized"}'


class APIError(Exception):
    """An error answered with vLLM's nested envelope ``{"error": {...}}``."""

    def __init__(
        self, status: int, message: str, error_type: str, param: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        self.param = param

    def envelope(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.status,
            }
        }

    def body(self) -> bytes:
        return ujson.dumps(
            self.envelope(), ensure_ascii=False, escape_forward_slashes=False
        ).encode()

    def stream_event(self) -> bytes:
        # vLLM builds in-stream errors with json.dumps defaults: spaces and ASCII escapes.
        return frame(json.dumps(self.envelope()).encode())


def bad_request(message: str, param: str | None = None) -> APIError:
    """A handler-level 400 (sampling parameters, context length)."""
    return APIError(HTTPStatus.BAD_REQUEST, message, "BadRequestError", param)


def model_not_found(model: str) -> APIError:
    return APIError(HTTPStatus.NOT_FOUND, f"The model `{model}` does not exist.", "NotFoundError")


def context_length_exceeded(limit: int, prompt_len: int) -> APIError:
    return bad_request(
        f"This model's maximum context length is {limit} tokens. However, your request has "
        f"{prompt_len} input tokens. Please reduce the length of the input messages."
    )


def internal_error(message: str) -> APIError:
    return APIError(HTTPStatus.INTERNAL_SERVER_ERROR, message, "InternalServerError")


def service_unavailable(message: str) -> APIError:
    # The type vLLM gives engine failures that surface as 503.
    return APIError(HTTPStatus.SERVICE_UNAVAILABLE, message, "ServiceUnavailableError")


def too_many_requests(message: str) -> APIError:
    # vLLM itself never answers 429; its error types follow the openai SDK's class names
    # (BadRequestError, NotFoundError, InternalServerError), whose 429 is RateLimitError.
    return APIError(HTTPStatus.TOO_MANY_REQUESTS, message, "RateLimitError")


def payload_too_large(limit: int) -> APIError:
    return APIError(
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
        f"Request body exceeds the limit of {limit} bytes.",
        "RequestEntityTooLarge",
    )


class ValidationFailure(APIError):
    """Request-model validation, rendered like FastAPI's RequestValidationError in vLLM 0.11."""

    def __init__(self, errors: list[Any]) -> None:
        count = len(errors)
        # str() of a dict is its repr; a plain string error prints bare, as FastAPI does.
        lines = "".join(f"\n  {error}" for error in errors)
        message = f"{count} validation error{'s' if count != 1 else ''}:{lines}"
        super().__init__(HTTPStatus.BAD_REQUEST, message, HTTPStatus.BAD_REQUEST.phrase)
        self.errors = errors


def value_error(message: str, body: Any) -> ValidationFailure:
    """A model_validator's ValueError, as pydantic reports it."""
    return ValidationFailure(
        [
            {
                "type": "value_error",
                "loc": ("body",),
                "msg": f"Value error, {message}",
                "input": body,
                "ctx": {"error": ValueError(message)},
            }
        ]
    )
