"""Accepting connections on uvloop: a burst is taken at once, not one per loop iteration."""

from __future__ import annotations

import asyncio
import socket

import uvloop

from dummy_vllm.connection import AcceptingSocket
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
