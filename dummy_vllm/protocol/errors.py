"""vLLM's error envelopes and the exceptions that carry them, as each release renders them.

Two kinds of 400 exist in vLLM and clients can see the difference: request-model validation
(pydantic, surfaced by FastAPI) has ``type: "Bad Request"`` and a stringified error list; handler
checks (sampling parameters, context length) have ``type: "BadRequestError"`` and a plain message.
An error is raised once, the same way whatever release is emulated; what differs between
releases (flat or nested envelope, ``param`` filled or null, the ``(parameter=X, value=Y)``
suffix) is applied when it is rendered, from the ``Profile``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from .encoding import bounded_repr, dumps
from .profiles import DEFAULT_PROFILE, Profile
from .sse import frame

# Bodies that FastAPI/Starlette produce outside vLLM's handlers, byte for byte.
NOT_FOUND_BODY = b'{"detail":"Not Found"}'
METHOD_NOT_ALLOWED_BODY = b'{"detail":"Method Not Allowed"}'
UNAUTHORIZED_BODY = b'{"error":"Unauthorized"}'
# A message lists this many errors at most (pydantic lists them all: a body can hold millions).
MAX_LISTED_ERRORS = 32


class APIError(Exception):
    """An error answered with vLLM's envelope.

    ``param`` is shown whatever the release (this server's own parameters, e.g. its fault
    header); ``parameter`` and ``value`` are what vLLM's ``VLLMValidationError`` carries, shown
    as ``param`` and as a message suffix only by the releases that do (0.14+).
    """

    def __init__(
        self,
        status: int,
        message: str,
        error_type: str,
        param: str | None = None,
        *,
        parameter: str | None = None,
        value: Any = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        self.param = param
        self.parameter = parameter
        self.value = value

    def fields(self, profile: Profile) -> tuple[str, str, str | None]:
        """(message, type, param) as ``profile`` renders them."""
        message, param = self.message, self.param
        if self.parameter is not None and profile.parameter_suffix:
            message = f"{message} (parameter={self.parameter}, value={self.value})"
        if param is None and profile.error_params:
            param = self.parameter
        return message, self.error_type, param

    def envelope(self, profile: Profile = DEFAULT_PROFILE) -> dict[str, Any]:
        message, error_type, param = self.fields(profile)
        if not profile.nested_errors:
            return {
                "object": "error",
                "message": message,
                "type": error_type,
                "param": param,
                "code": self.status,
            }
        return {
            "error": {"message": message, "type": error_type, "param": param, "code": self.status}
        }

    def body(self, profile: Profile = DEFAULT_PROFILE) -> bytes:
        return dumps(self.envelope(profile))

    def stream_event(self, profile: Profile = DEFAULT_PROFILE, chat: bool = False) -> bytes:
        """The event a stream ends with (before ``[DONE]``) when generation fails."""
        envelope = self.envelope(profile)
        if not profile.nested_errors:
            # <= 0.10.0 wraps its flat error in an "error" key inside streams.
            envelope = {"error": envelope}
        if chat and profile.compact_chat_stream_errors:
            return frame(dumps(envelope))
        # vLLM builds in-stream errors with json.dumps defaults: spaces and ASCII escapes.
        return frame(json.dumps(envelope).encode())


def bad_request(
    message: str, param: str | None = None, *, parameter: str | None = None, value: Any = None
) -> APIError:
    """A handler-level 400 (sampling parameters, context length)."""
    return APIError(
        HTTPStatus.BAD_REQUEST,
        message,
        "BadRequestError",
        param,
        parameter=parameter,
        value=value,
    )


def model_not_found(model: str, served: tuple[str, ...], profile: Profile) -> APIError:
    message = f"The model `{model}` does not exist."
    if profile.model_not_found_lists_aliases:
        message += f" Valid aliases: {', '.join(served)}."
    param = "model" if profile.error_params else None
    return APIError(HTTPStatus.NOT_FOUND, message, "NotFoundError", param)


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
    """Request-model validation, rendered like FastAPI's RequestValidationError in vLLM."""

    def __init__(self, errors: list[Any], parameter: str | None = None) -> None:
        super().__init__(
            HTTPStatus.BAD_REQUEST,
            _validation_message(errors, dotted_loc=False),
            HTTPStatus.BAD_REQUEST.phrase,
        )
        self.errors = errors
        # A model validator that raised vLLM's VLLMValidationError names its field (0.14+).
        self.validation_parameter = parameter

    def fields(self, profile: Profile) -> tuple[str, str, str | None]:
        message = _validation_message(self.errors, profile.validation_loc_in_param)
        param = None
        if profile.error_params:
            param = self.validation_parameter
        if param is None and profile.validation_loc_in_param:
            param = _first_loc(self.errors)
        return message, profile.validation_error_type, param


def _validation_message(errors: list[Any], dotted_loc: bool) -> str:
    count = len(errors)
    if dotted_loc:
        # 0.33 cleans each location to a dotted string before printing the list.
        errors = [
            {**error, "loc": _dotted(error["loc"])} if isinstance(error, dict) else error
            for error in errors
        ]
    # str() of a dict is its repr (bounded here: errors echo client input); a plain string error
    # prints bare, as FastAPI does.
    lines = "".join(
        f"\n  {bounded_repr(error) if isinstance(error, dict) else error}"
        for error in errors[:MAX_LISTED_ERRORS]
    )
    if count > MAX_LISTED_ERRORS:
        lines += f"\n  ... and {count - MAX_LISTED_ERRORS} more"
    return f"{count} validation error{'s' if count != 1 else ''}:{lines}"


def _dotted(loc: Any) -> str:
    return ".".join(str(part) for part in loc) if isinstance(loc, tuple | list) else str(loc)


def _first_loc(errors: list[Any]) -> str | None:
    first = errors[0] if errors else None
    return _dotted(first["loc"]) if isinstance(first, dict) and "loc" in first else None


def value_error(message: str, body: Any, parameter: str | None = None) -> ValidationFailure:
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
        ],
        parameter,
    )


def literal_error(loc: tuple[Any, ...], value: Any, allowed: Sequence[str]) -> dict[str, Any]:
    """pydantic's error for a value outside a ``Literal``: "Input should be 'a', 'b' or 'c'"."""
    options = [f"'{option}'" for option in allowed]
    expected = " or ".join([", ".join(options[:-1]), options[-1]] if len(options) > 1 else options)
    return {
        "type": "literal_error",
        "loc": loc,
        "msg": f"Input should be {expected}",
        "input": value,
        "ctx": {"expected": expected},
    }
