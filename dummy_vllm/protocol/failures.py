"""How each route's answer shows a generation failure: the events a broken stream ends with and
the body of a failed non-streamed answer, per route and era."""

from __future__ import annotations

from .anthropic import error_body as anthropic_error_body
from .anthropic import stream_error as anthropic_stream_error
from .errors import APIError
from .profiles import Profile
from .requests import CHAT_ROUTE, MESSAGES_ROUTE, RESPONSES_ROUTE
from .responses_api import error_event
from .sse import DONE_EVENT


def stream_ending(route: str, error: APIError, profile: Profile, sent: int) -> tuple[bytes, ...]:
    """The events after the ``sent`` events of a stream that fails with ``error``."""
    if route == RESPONSES_ROUTE:
        # Its sequence numbers count every event: the error takes the next one.
        message, _, _ = error.fields(profile)
        return (error_event(message, sent),)
    if route == MESSAGES_ROUTE:
        return anthropic_stream_error(error, profile)
    return error.stream_event(profile, route == CHAT_ROUTE), DONE_EVENT


def error_answer(route: str, error: APIError, profile: Profile) -> bytes:
    """The body of a non-streamed answer that fails with ``error``."""
    if route == MESSAGES_ROUTE:
        return anthropic_error_body(error, profile)
    return error.body(profile)
