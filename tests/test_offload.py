"""Where work too long for the loop runs: the offload thread, or on the loop in turn."""

from __future__ import annotations

import asyncio
from itertools import pairwise

from dummy_vllm.offload import MANY_CHOICES, Offloader, heavy, many_choices
from tests.conftest import LoopIterations


async def test_work_in_turn_runs_one_per_loop_iteration_in_arrival_order() -> None:
    ran: list[tuple[str, int]] = []
    offloader = Offloader()
    try:
        with LoopIterations() as iterations:
            await asyncio.gather(
                *(
                    offloader.in_turn(lambda name: ran.append((name, iterations.count)), name)
                    for name in "abcde"
                )
            )
    finally:
        offloader.close()
    assert [name for name, _ in ran] == list("abcde")
    counts = [count for _, count in ran]
    assert all(later > earlier for earlier, later in pairwise(counts))


def test_many_choices_counts_n_times_prompts() -> None:
    assert not many_choices({"n": MANY_CHOICES})
    assert many_choices({"n": MANY_CHOICES + 1})
    assert many_choices({"prompt": ["a"] * (MANY_CHOICES // 2 + 1), "n": 2})
    # Token ids are one prompt; values of the wrong type count as the default.
    assert not many_choices({"prompt": list(range(100)), "n": 2})
    assert not many_choices({"n": "many", "prompt": {"a": 1}})


def test_streams_are_never_heavy_and_long_bodies_are() -> None:
    many = {"prompt": "hi", "n": 128, "max_tokens": 2048}
    assert heavy("/v1/completions", many, 4096)
    assert not heavy("/v1/completions", {**many, "stream": True}, 4096)
    assert not heavy("/v1/completions", {"prompt": "hi", "max_tokens": 16}, 4096)
