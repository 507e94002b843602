"""Connections that cannot be held open by a client that sends too slowly, nor fill memory by
reading too slowly.

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

import socket
from asyncio import BaseTransport
from time import monotonic

from sanic.exceptions import RequestTimeout
from sanic.http import Http, Stage
from sanic.server.protocols.http_protocol import HttpProtocol


class GuardedHttp(Http):
    __slots__ = ("header_deadline",)

    def init_for_request(self) -> None:
        super().init_for_request()  # type: ignore[no-untyped-call]
        self.header_deadline: float | None = None


SEND_BUFFER_BYTES = 128 * 1024


class GuardedHttpProtocol(HttpProtocol):
    HTTP_CLASS = GuardedHttp

    def connection_made(self, transport: BaseTransport) -> None:
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
