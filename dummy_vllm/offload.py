"""Work too long for the event loop: run on one thread per worker, off the loop, or in turn.

Building the answer of a large request (hundreds of thousands of tokens, a prompt of megabytes)
is pure Python and takes seconds. Run inline, it would hold the worker's loop that long, and
every other client of the worker (``/health`` included) would wait. On a thread, the interpreter
hands the loop the GIL back every switch interval (1 ms here): other requests are served
meanwhile. One thread per worker: heavy requests wait for each other, never the loop.

Planning a request of many choices takes about a millisecond: too little for the thread, whose
GIL the loop would wait for at each of its polls, but a burst of them planned back to back holds
the loop for all of them. They are planned on the loop in turn, one per loop iteration.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from .protocol.requests import CHAT_ROUTE, requested_max_tokens

T = TypeVar("T")
# Above these, a request's answer is built off the loop.
HEAVY_BODY_BYTES = 256 * 1024
HEAVY_OUTPUT_TOKENS = 32_768
# Above this many choices (n x prompts), a request is planned in turn: each costs microseconds
# (128 choices of 2,048 tokens: 0.4 ms alone, 1.7 ms among 100 such streams), and 100 such
# streams planned back to back held /health for 125-190 ms (BOMBS_RESULTS.md).
MANY_CHOICES = 16


# While the thread runs, the loop gets the GIL back within this (Python's default is 5 ms).
SWITCH_INTERVAL_SECONDS = 0.001


class Offloader:
    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dummy-vllm-heavy")
        self._turn = asyncio.Lock()
        sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)

    async def run(self, work: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, work, *args)

    async def in_turn(self, work: Callable[..., T], *args: Any) -> T:
        """Run ``work`` on the loop, at most one such work per loop iteration (in arrival
        order): what else the loop has to do, new connections included, runs in between."""
        async with self._turn:
            await asyncio.sleep(0)
            return work(*args)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def heavy(route: str, body: Mapping[str, Any], max_model_len: int) -> bool:
    """Whether the answer to ``body`` may take long to build: a body of many output tokens (n x
    prompts x max_tokens, log-probabilities counted as tokens). A stream's plan is cheap (its
    events are built as they are sent, in slices): it stays on the loop, which a busy thread
    would slow down (each of the loop's waits costs it up to a switch interval to get the GIL
    back). Read from the unchecked body, so any value of any type is only an estimate."""
    if body.get("stream") is True:
        return False
    tokens = _choices(body) * (requested_max_tokens(route, body) or max_model_len)
    if route == CHAT_ROUTE:
        alternatives = _count(body.get("top_logprobs"), 0) if body.get("logprobs") else -1
    else:
        alternatives = _count(body.get("logprobs"), -1)
    return tokens * (alternatives + 2) > HEAVY_OUTPUT_TOKENS


def many_choices(body: Mapping[str, Any]) -> bool:
    """Whether ``body`` asks for more than MANY_CHOICES choices (an estimate, as ``heavy``)."""
    return _choices(body) > MANY_CHOICES


def _choices(body: Mapping[str, Any]) -> int:
    prompt = body.get("prompt")
    prompts = len(prompt) if isinstance(prompt, list) and prompt and not _ids(prompt) else 1
    return _count(body.get("n"), 1) * prompts


def _count(value: Any, default: int) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return min(max(value, 0), 1 << 20)
    return default


def _ids(prompt: list[Any]) -> bool:
    return isinstance(prompt[0], int)
