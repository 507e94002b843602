"""Clients that send too slowly or never read: connections are bounded in time, and a stream
whose client does not read is held back instead of buffered."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import httpx

from tests.conftest import LiveServer, rss_bytes, unread_streams

TIMEOUT = 1.0


def _closed_within(sock: socket.socket, seconds: float) -> tuple[bool, bytes]:
    """Whether the server closed ``sock`` within ``seconds``, and what it sent before."""
    sock.settimeout(0.2)
    received = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return True, received
        if not chunk:
            return True, received
        received += chunk
    return False, received


def test_a_trickled_header_is_cut_at_its_deadline(
    start_server: Callable[..., LiveServer],
) -> None:
    server = start_server("--request-timeout", str(TIMEOUT))
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        closed = False
        # One byte every 0.2 s: each restarts Sanic's idle timer, never the header deadline.
        while time.monotonic() - started < 10 * TIMEOUT and not closed:
            try:
                sock.sendall(b"X")
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            closed, _ = _closed_within(sock, 0.2)
        elapsed = time.monotonic() - started
    assert closed
    # Between one and one and a half timeouts, plus a busy machine's slack.
    assert TIMEOUT * 0.9 < elapsed < 4 * TIMEOUT


def test_a_body_shorter_than_its_length_gets_408(start_server: Callable[..., LiveServer]) -> None:
    server = start_server("--request-timeout", str(TIMEOUT))
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(
            b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"prompt":'
        )
        started = time.monotonic()
        closed, received = _closed_within(sock, 10 * TIMEOUT)
        elapsed = time.monotonic() - started
    assert closed
    assert received.startswith(b"HTTP/1.1 408")
    assert elapsed < 4 * TIMEOUT
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/health").status_code == 200


def test_a_stream_whose_client_never_reads_is_held_back(
    start_server: Callable[..., LiveServer],
) -> None:
    """The server writes until the socket buffers are full, then waits: it neither buffers the
    rest of the answer nor stops answering others."""
    server = start_server("--max-model-len", "4096")
    body = b'{"prompt":"hi","max_tokens":4000,"n":64,"stream":true}'
    sockets = unread_streams(server.port, body, 20)
    try:
        time.sleep(3)
        rss = rss_bytes(server.process.pid)
        with httpx.Client(base_url=server.url, timeout=5) as client:
            started = time.monotonic()
            assert client.get("/health").status_code == 200
            assert time.monotonic() - started < 0.5
    finally:
        for sock in sockets:
            sock.close()
    # 20 answers of 256k events (about 70 MB each) are not held in memory.
    assert rss < 300 * 1024 * 1024, rss
