"""What every planned answer goes through, whatever produced it: fault injection, the
scheduler's limits and load, timed delivery, and the metrics of what the client saw."""

from __future__ import annotations

import asyncio
import os
import zlib

from sanic import HTTPResponse, Request

from .emit import Delivery, deliver
from .faults import FAULT_HEADER, FaultInjector
from .metrics import Metrics
from .plan import ResponsePlan
from .scheduler import Scheduler, stretched
from .settings import Settings


class Pipeline:
    """One per worker."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.scheduler = Scheduler(settings.scheduler)
        self.metrics = Metrics(
            self.scheduler,
            enabled=settings.metrics,
            model=settings.model,
            max_model_len=settings.max_model_len,
            # Each worker's share of all workers' capacity, so that their sum is the total.
            kv_capacity=settings.scheduler.batch_size * settings.max_model_len * settings.workers,
            replay=settings.replay is not None,
            directory=settings.metrics_dir,
        )
        # Each worker draws its own reproducible fault sequence.
        worker = os.environ.get("SANIC_WORKER_NAME", "")
        self.faults = FaultInjector(settings.faults, zlib.crc32(worker.encode(), settings.seed))

    async def serve(
        self, request: Request, plan: ResponsePlan, arrival: float
    ) -> HTTPResponse | None:
        """Answer ``request`` with ``plan`` once the scheduler admits it; offsets count from
        admission, so time spent waiting shows in the client's TTFT."""
        fault = self.faults.choose(request.headers.get(FAULT_HEADER))
        if fault is not None:
            self.metrics.fault_injected(fault.kind)
            error = fault.error(self.settings.max_model_len)
            if error is not None:
                raise error
        scheduler = self.scheduler
        await scheduler.acquire()
        try:
            admitted = asyncio.get_running_loop().time()
            if self.settings.scheduler.load_factor:
                plan = stretched(plan, scheduler.load_multiplier())
            if fault is not None:
                plan = fault.apply(plan)
            held = plan.prompt_tokens + plan.completion_tokens
            scheduler.kv_tokens += held
            delivery = Delivery()
            try:
                return await deliver(request, plan, admitted, delivery)
            finally:
                scheduler.kv_tokens -= held
                self.metrics.request_finished(plan, delivery, arrival, admitted)
        finally:
            scheduler.release()
