"""Stored Responses API answers, for ``GET /v1/responses/{id}`` and ``previous_response_id``.

vLLM keeps them (without bound) when started with ``VLLM_ENABLE_RESPONSES_API_STORE=1``; this
store keeps the newest ``capacity`` per worker, so a follow-up must reach the worker that
answered the first request.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

DEFAULT_CAPACITY = 1000


@dataclass(frozen=True, slots=True)
class StoredResponse:
    # The response object as GET shows it.
    body: bytes
    # The conversation as chat messages, the answer included.
    messages: list[dict[str, Any]]


class ResponseStore:
    def __init__(self, enabled: bool, capacity: int = DEFAULT_CAPACITY) -> None:
        # Off (vLLM's default): nothing is kept and every id is unknown.
        self.enabled = enabled
        self._capacity = capacity
        self._items: OrderedDict[str, StoredResponse] = OrderedDict()

    def put(self, response_id: str, body: bytes, messages: list[dict[str, Any]]) -> None:
        items = self._items
        items[response_id] = StoredResponse(body, messages)
        items.move_to_end(response_id)
        while len(items) > self._capacity:
            items.popitem(last=False)

    def get(self, response_id: str) -> StoredResponse | None:
        return self._items.get(response_id)

    def history(self, response_id: str) -> list[dict[str, Any]] | None:
        stored = self._items.get(response_id)
        return None if stored is None else stored.messages
