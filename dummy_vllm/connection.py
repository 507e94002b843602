"""Connections: all of those waiting accepted at once, and none held open by a client that
sends too slowly, nor filling memory by reading too slowly.

uvloop (libuv 1.52) accepts one connection per loop iteration, and an iteration of a busy
worker takes milliseconds: a burst of 200 connections waited in the listen queue for over a
second, a /health probe behind them (BOMBS_RESULTS.md). ``Acceptor`` takes the waiting
connections (up to 64) each time the listening socket is readable, as asyncio's own loop does.

Sanic's request timeout is an idle timeout (each byte received restarts it), so a client that
trickles its headers a byte at a time keeps a connection forever (slowloris), and a body
shorter than its Content-Length was only bounded by the response timeout (a day here, for long
streams). This protocol adds a deadline for the whole header, counted from its first byte, and
applies the request timeout to the gaps while the body is read.

Writes are held back once Sanic's transport buffer (64 KiB) is full, but the kernel's send
buffer before it grows by itself up to ``tcp_wmem``'s maximum (4 MiB here): a client that never
reads let its stream be generated megabytes ahead, and two hundred such streams kept the worker
busy producing events nobody would read. The send buffer is fixed at 128 KiB instead, plenty for
token streams and for bodies on a local network.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from asyncio import BaseTransport
from collections.abc import Callable
from functools import partial
from time import monotonic

from sanic.exceptions import RequestTimeout
from sanic.http import Http, Stage
from sanic.server.protocols.http_protocol import HttpProtocol

logger = logging.getLogger("dummy_vllm")

# Connections taken per wake-up at most, so that one wake-up holds the loop for a few ms at most
# (each costs tens of microseconds to hand over); the rest wait for the next iteration. 64 clears
# a burst of 200 in two iterations a worker. How a burst of 1,000 splits between two workers
# varies from run to run as much without the acceptor (from 49/51 to 80/20 over 12 runs) as with
# it (from 49/51 to 63/37 over 8; caps of 32 and 256 alike): both workers wake for each
# connection and the first to call accept takes it.
ACCEPTS_PER_WAKEUP = 64
# After a failed accept that will fail again at once (out of file descriptors), wait this long
# before trying again; uvloop's accept, still listening, sheds the load meanwhile.
ACCEPT_PAUSE_SECONDS = 0.1


class GuardedHttp(Http):
    __slots__ = ("header_deadline",)

    def init_for_request(self) -> None:
        super().init_for_request()  # type: ignore[no-untyped-call]
        self.header_deadline: float | None = None


SEND_BUFFER_BYTES = 128 * 1024


class GuardedHttpProtocol(HttpProtocol):
    HTTP_CLASS = GuardedHttp

    def connection_made(self, transport: BaseTransport) -> None:
        # The first connection of a worker starts its acceptor: the protocol is what knows how
        # Sanic makes one.
        if not self.app.ctx.acceptor.started:
            self.app.ctx.acceptor.start(self)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
        super().connection_made(transport)  # type: ignore[no-untyped-call]

    def check_timeouts(self) -> None:
        http = self._http
        if self._task and isinstance(http, GuardedHttp) and self._expired(http):
            http.exception = RequestTimeout("Request Timeout")
            # The rest of the body will not come: after the 408, close at once instead of
            # waiting for it (the connection is not kept alive after a timeout).
            http.request_body = None
            self._task.cancel()
            return
        super().check_timeouts()  # type: ignore[no-untyped-call]

    def _expired(self, http: GuardedHttp) -> bool:
        now = monotonic()
        if http.stage is Stage.REQUEST:
            # First seen reading a header: its deadline runs from now (checks come every
            # request_timeout / 2 at most, so the header gets between 1 and 1.5 timeouts).
            if http.header_deadline is None:
                http.header_deadline = now + self.request_timeout
            return now > http.header_deadline
        # The body is read while the handler runs: its gaps get the request timeout, not the
        # response timeout.
        return bool(
            http.stage is Stage.HANDLER
            and http.request_body
            and now - self._time > self.request_timeout
        )


class Acceptor:
    """One per worker: from its first connection on, accepts every connection waiting on the
    worker's listening socket when it is readable (next to uvloop's server, which accepts one
    each loop iteration)."""

    def __init__(self) -> None:
        self.started = False
        self._accepting: AcceptingSocket | None = None

    def start(self, protocol: HttpProtocol) -> None:
        """Accept for the server ``protocol`` belongs to, when a worker of Sanic's manager (the
        socket it listens on is known); otherwise (a server Sanic bound itself) never."""
        self.started = True
        info = protocol.app.state.server_info
        settings = info[0].settings if info else {}
        sock = settings.get("sock")
        # Connections handed over here get no TLS: a server with TLS keeps uvloop's accept.
        if not isinstance(sock, socket.socket) or settings.get("ssl") is not None:
            return
        factory = partial(
            type(protocol),
            loop=protocol.loop,
            app=protocol.app,
            signal=protocol.signal,
            connections=protocol.connections,
            state=protocol.state,
            unix=protocol._unix,
        )
        self._accepting = AcceptingSocket(protocol.loop, sock, factory)

    def close(self) -> None:
        """Stop accepting (before the server closes: a graceful stop takes no new connection)."""
        if self._accepting is not None:
            self._accepting.close()
            self._accepting = None


class AcceptingSocket:
    """Accepts the connections waiting on a listening socket (through its own duplicate, which
    ``close`` closes), each served by a protocol made by ``factory``."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        factory: Callable[[], asyncio.Protocol],
    ) -> None:
        self._loop, self._factory = loop, factory
        self._listener = socket.socket(fileno=os.dup(sock.fileno()))
        self._listener.setblocking(False)
        self._closed = False
        # Set while accepting fails (out of file descriptors): said once, not every pause.
        self._failing = False
        # Connections being handed to their transports (the loop keeps only weak references).
        self._handing: set[asyncio.Task[None]] = set()
        loop.add_reader(self._listener, self._accept)

    def close(self) -> None:
        self._closed = True
        self._loop.remove_reader(self._listener)
        self._listener.close()

    def _accept(self) -> None:
        for _ in range(ACCEPTS_PER_WAKEUP):
            try:
                connection, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return  # none left (or the other worker took it)
            except ConnectionAbortedError:
                continue
            except OSError as error:
                if not self._failing:
                    logger.warning(
                        "accepting connections fails, retried every %s s: %s",
                        ACCEPT_PAUSE_SECONDS,
                        error,
                    )
                self._failing = True
                self._loop.remove_reader(self._listener)
                self._loop.call_later(ACCEPT_PAUSE_SECONDS, self._resume)
                return
            self._failing = False
            task = self._loop.create_task(self._hand_over(connection))
            self._handing.add(task)
            task.add_done_callback(self._handing.discard)

    def _resume(self) -> None:
        if not self._closed:
            self._loop.add_reader(self._listener, self._accept)

    async def _hand_over(self, connection: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(self._factory, connection)
        except OSError:  # the client left already
            connection.close()
