"""Accepting connections on uvloop: a burst is taken at once, not one per loop iteration."""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import socket

import pytest
import uvloop

from dummy_vllm.connection import ACCEPT_PAUSE_SECONDS, AcceptingSocket
from tests.conftest import LoopIterations

BURST = 100
# Each iteration of the busy loop below takes this long, as a worker filling streams.
BUSY_SECONDS = 0.002


def iterations_to_accept(accept_all: bool) -> int:
    """Loop iterations a busy uvloop takes to accept a burst of BURST connections."""

    async def main() -> int:
        loop = asyncio.get_running_loop()
        iterations = LoopIterations(BUSY_SECONDS)
        made: list[int] = []
        all_made = asyncio.Event()

        class Counting(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                made.append(iterations.count)
                if len(made) == BURST:
                    all_made.set()

        listener = socket.create_server(("127.0.0.1", 0), backlog=4 * BURST)
        server = await loop.create_server(Counting, sock=listener)
        accepting = AcceptingSocket(loop, listener, Counting) if accept_all else None
        clients: list[socket.socket] = []
        try:
            with iterations:
                # The kernel completes each handshake: the connections wait in the listen queue.
                clients = [socket.create_connection(listener.getsockname()) for _ in range(BURST)]
                first = iterations.count
                await asyncio.wait_for(all_made.wait(), 30)
            return made[-1] - first
        finally:
            for client in clients:
                client.close()
            if accepting is not None:
                accepting.close()
            server.close()

    return uvloop.run(main())


def test_a_busy_loop_accepts_a_burst_of_connections_at_once() -> None:
    # uvloop alone takes one connection per iteration.
    assert iterations_to_accept(accept_all=False) >= BURST // 2
    assert iterations_to_accept(accept_all=True) <= 5


def test_accepting_pauses_while_out_of_file_descriptors_and_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> bool:
        loop = asyncio.get_running_loop()
        accepted = asyncio.Event()

        class Accepted(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                accepted.set()

        listener = socket.create_server(("127.0.0.1", 0))
        accepting = AcceptingSocket(loop, listener, Accepted)
        client = socket.create_connection(listener.getsockname())
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        # No descriptor left for the accepted connection: fill the free numbers below the
        # highest one in use, and allow none above it.
        highest = max(int(fd) for fd in os.listdir("/proc/self/fd"))
        fillers = []
        while (fd := os.open(os.devnull, os.O_RDONLY)) <= highest:
            fillers.append(fd)
        os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 1, hard))
        try:
            await asyncio.sleep(ACCEPT_PAUSE_SECONDS * 3.5)
            accepted_while_out = accepted.is_set()
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
            for fd in fillers:
                os.close(fd)
        try:
            # Accepting resumes once descriptors are free again.
            await asyncio.wait_for(accepted.wait(), 10)
            return accepted_while_out
        finally:
            client.close()
            accepting.close()
            listener.close()

    with caplog.at_level(logging.WARNING, logger="dummy_vllm"):
        accepted_while_out = uvloop.run(main())
    assert not accepted_while_out
    warnings = [r for r in caplog.records if "accepting connections fails" in r.getMessage()]
    assert len(warnings) == 1
