"""Exchanges made from synthetic plans, as the recorder would have stored them.

Builds sessions with known bytes and timing without an upstream, for the replay benchmark and
the replay tests; not part of the product.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from dummy_vllm.plan import ResponsePlan
from dummy_vllm.recording.matching import canonical_key, relaxed_key
from dummy_vllm.recording.store import ExchangeRecord, Outcome


def exchange_from_plan(route: str, body: Mapping[str, Any], plan: ResponsePlan) -> ExchangeRecord:
    if plan.stream:
        events = [(round(event.offset * 1e9), event.data) for event in plan.events]
        complete_ns, response_body = events[-1][0], None
    else:
        events, complete_ns, response_body = [], round(plan.body_offset * 1e9), plan.body
    return ExchangeRecord(
        method="POST",
        path=route,
        request_body=json.dumps(body).encode(),
        match_key=canonical_key(route, body),
        relaxed_key=relaxed_key(route, body),
        request_headers={},
        status=200,
        response_headers={"content-type": "application/json"},
        streamed=plan.stream,
        outcome=Outcome.COMPLETE,
        created=time.time(),
        response_body=response_body,
        first_byte_ns=events[0][0] if events else complete_ns,
        complete_ns=complete_ns,
        prompt_tokens=plan.prompt_tokens,
        completion_tokens=plan.completion_tokens,
        events=events,
    )
