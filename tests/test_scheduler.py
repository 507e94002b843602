"""The scheduler's slots, FIFO queue, 429 limit and load stretch, without a server."""

from __future__ import annotations

import asyncio

import pytest

from dummy_vllm.plan import PlanEvent, ResponsePlan
from dummy_vllm.protocol.errors import APIError
from dummy_vllm.scheduler import Scheduler, stretched
from dummy_vllm.settings import SchedulerSettings, SettingsError


async def settle() -> None:
    """Let every ready task run until it blocks again."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_without_a_limit_nothing_waits() -> None:
    scheduler = Scheduler(SchedulerSettings())
    for _ in range(1000):
        await scheduler.acquire()
    assert (scheduler.running, scheduler.waiting) == (1000, 0)


async def test_requests_beyond_the_batch_wait_in_arrival_order() -> None:
    scheduler = Scheduler(SchedulerSettings(max_num_seqs=2))
    admitted: list[int] = []

    async def request(number: int) -> None:
        await scheduler.acquire()
        admitted.append(number)

    tasks = [asyncio.create_task(request(number)) for number in range(5)]
    await settle()
    assert admitted == [0, 1]
    assert (scheduler.running, scheduler.waiting) == (2, 3)
    scheduler.release()
    await settle()
    assert admitted == [0, 1, 2]
    # A newcomer does not jump the queue while others wait.
    tasks.append(asyncio.create_task(request(5)))
    scheduler.release()
    scheduler.release()
    await settle()
    assert admitted == [0, 1, 2, 3, 4]
    assert (scheduler.running, scheduler.waiting) == (2, 1)
    await asyncio.gather(*tasks[:5])
    tasks[5].cancel()


async def test_a_full_queue_answers_429() -> None:
    scheduler = Scheduler(SchedulerSettings(max_num_seqs=1, max_waiting=1))
    await scheduler.acquire()
    waiter = asyncio.create_task(scheduler.acquire())
    await settle()
    with pytest.raises(APIError) as caught:
        await scheduler.acquire()
    assert caught.value.status == 429
    assert caught.value.error_type == "RateLimitError"
    scheduler.release()
    await waiter
    assert (scheduler.running, scheduler.waiting) == (1, 0)


async def test_a_client_leaving_the_queue_frees_its_place() -> None:
    scheduler = Scheduler(SchedulerSettings(max_num_seqs=1))
    await scheduler.acquire()
    leaving = asyncio.create_task(scheduler.acquire())
    staying = asyncio.create_task(scheduler.acquire())
    await settle()
    leaving.cancel()
    await settle()
    assert scheduler.waiting == 1
    scheduler.release()
    await staying
    assert (scheduler.running, scheduler.waiting) == (1, 0)


async def test_a_slot_handed_over_as_the_client_leaves_passes_on() -> None:
    scheduler = Scheduler(SchedulerSettings(max_num_seqs=1))
    await scheduler.acquire()
    leaving = asyncio.create_task(scheduler.acquire())
    staying = asyncio.create_task(scheduler.acquire())
    await settle()
    scheduler.release()  # the slot goes to ``leaving``...
    leaving.cancel()  # ...which is cancelled before it runs again
    await settle()
    assert staying.done()
    assert (scheduler.running, scheduler.waiting) == (1, 0)


def test_load_multiplier_grows_with_running_requests() -> None:
    scheduler = Scheduler(SchedulerSettings(max_num_seqs=4, load_factor=2.0))
    scheduler.running = 2
    assert scheduler.load_multiplier() == pytest.approx(2.0)
    unlimited = Scheduler(SchedulerSettings(load_factor=1.0))
    unlimited.running = 128
    assert unlimited.load_multiplier() == pytest.approx(1.5)  # against vLLM's 256


def test_stretch_scales_ttft_and_itl_alike() -> None:
    events = [PlanEvent(0.1, b"a", 1), PlanEvent(0.12, b"b", 1), PlanEvent(0.12, b"c", 0)]
    stream = stretched(ResponsePlan(stream=True, events=events), 1.5)
    assert [event.offset for event in stream.events] == pytest.approx([0.15, 0.18, 0.18])
    body = stretched(ResponsePlan(stream=False, body_offset=0.12, token_offsets=[0.1, 0.12]), 2.0)
    assert body.body_offset == pytest.approx(0.24)
    assert list(body.token_offsets) == pytest.approx([0.2, 0.24])


@pytest.mark.parametrize(
    "changes", [{"max_num_seqs": 0}, {"max_waiting": -1}, {"load_factor": -0.5}]
)
def test_bad_limits_are_refused(changes: dict[str, float]) -> None:
    with pytest.raises(SettingsError):
        SchedulerSettings(**changes)  # type: ignore[arg-type]
