"""Tool calls the pretend model makes: which tools it calls and with what arguments.

Plain data in and out, so that every route that answers with tool calls (chat completions,
and later the Responses and Messages APIs) shares it: given the offered tools (name ->
``parameters`` schema), the request's choice and a seeded RNG, ``plan_tool_calls`` returns the
calls as (name, arguments JSON text); the arguments validate against the tool's schema.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dummy_vllm.engine.jsonschema import dumps, instance

# A tool without ``parameters`` takes an empty object, as vLLM's required-schema assumes.
EMPTY_PARAMETERS: Mapping[str, Any] = {"type": "object", "properties": {}}
# With parallel calls allowed and several tools, a second call this often.
PARALLEL_CALL_RATE = 0.25


@dataclass(frozen=True, slots=True)
class ToolCall:
    name: str
    # JSON text of the arguments object, ``json.dumps`` separators as vLLM's parsers print it.
    arguments: str


def plan_tool_calls(
    tools: Mapping[str, Mapping[str, Any] | None],
    rng: random.Random,
    *,
    forced: str | None = None,
    required: bool = False,
    call_rate: float = 1.0,
    parallel: bool = True,
    budget: int = 64,
) -> list[ToolCall]:
    """The calls for one answer; empty means the model answers in prose.

    ``forced`` names the tool of a named ``tool_choice`` (exactly one call); ``required``
    makes at least one call; otherwise (``"auto"``) the model calls with probability
    ``call_rate``. ``budget`` is a rough token allowance for all arguments together.
    """
    if not tools:
        return []
    if forced is not None:
        names: Sequence[str] = [forced]
    elif required or rng.random() < call_rate:
        count = 2 if parallel and len(tools) > 1 and rng.random() < PARALLEL_CALL_RATE else 1
        names = rng.sample(list(tools), k=count)
    else:
        return []
    share = max(budget // len(names), 1)
    return [
        ToolCall(name, dumps(instance(tools[name] or EMPTY_PARAMETERS, rng, share)))
        for name in names
    ]
