"""Shared fixtures: an in-process app for handler tests, live servers for socket-level tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from sanic import Sanic

from dummy_vllm.app import create_app
from dummy_vllm.settings import Settings

REPO = Path(__file__).resolve().parent.parent
CAPTURES = Path(__file__).resolve().parent / "captures"  # copies of shared/vllm-captures

Sanic.test_mode = True

T = TypeVar("T")


@pytest.fixture(autouse=True)
def _clear_sanic_registry() -> Iterator[None]:
    yield
    Sanic._app_registry.clear()


@pytest.fixture
def make_app() -> Callable[..., Sanic]:
    def build(**changes: object) -> Sanic:
        return create_app(Settings().replace(**changes))

    return build


@pytest.fixture
def app(make_app: Callable[..., Sanic]) -> Sanic:
    return make_app()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(ready: Callable[[], T], what: str, timeout: float = 10.0) -> T:
    """Call ``ready`` until it returns something truthy and return that; fail the test naming
    ``what`` it waited for once ``timeout`` seconds pass. ``ready`` may raise to give up early."""
    deadline = time.monotonic() + timeout
    while not (result := ready()):
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {timeout:g} s waiting for {what}")
        time.sleep(0.05)
    return result


Launcher = Callable[[list[str]], list[str]]


class LiveServer:
    """``python cli.py serve`` (or another server ``command``) in a subprocess, as a user
    starts it, or as ``launcher`` wraps that command line (e.g. in a mount namespace). Its
    stderr goes to a file in its scratch directory, quoted when it fails."""

    def __init__(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        command: str = "serve",
        launcher: Launcher | None = None,
        log: Path | None = None,
        pipe_stderr: bool = False,
    ) -> None:
        """``log``: where the server's stderr goes, to read after it ran (by default a file in
        the scratch directory, removed at ``stop``). ``pipe_stderr``: a pipe instead, read by
        ``stderr()`` once the server stopped (for servers whose file writes are made to fail;
        a pipe that nobody reads blocks a server that logs much)."""
        self._scratch = tempfile.TemporaryDirectory(prefix="dummy-vllm-test-")
        # A file, not a pipe: nobody reads a pipe while tests run, and a full one blocks the server.
        self.log = log or Path(self._scratch.name, "server.log")
        # Tests never touch the repository's own recordings/.
        env = {"DUMMY_VLLM_DB": f"{self._scratch.name}/test.db", **(env or {})}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [sys.executable, "cli.py", command, "--port", str(self.port), *args]
        with self.log.open("wb") as log_file:
            self.process = subprocess.Popen(
                launcher(argv) if launcher else argv,
                cwd=REPO,
                env={**os.environ, **env},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE if pipe_stderr else log_file,
                start_new_session=True,
            )
        try:
            wait_until(self._healthy, f"{self.url}/health to answer 200", timeout=30)
        except BaseException as exc:
            tail = self.log_tail()
            self.stop()
            if not isinstance(exc, Exception | pytest.fail.Exception):
                raise  # an interrupt stays one
            pytest.fail(f"server not healthy: {exc}\n{tail}")

    def _healthy(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"server exited with {self.process.returncode}")
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def log_tail(self, lines: int = 30) -> str:
        """The end of the server's stderr, to quote in a failure message."""
        try:
            tail = self.log.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return "(no server log)"
        return "server stderr, last lines:\n" + "\n".join(tail)

    def stderr(self) -> str:
        if self.process.stderr is not None:
            return self.process.stderr.read().decode(errors="replace")
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        # The process first: it may still be writing into the scratch directory.
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        # Workers outlive a leader that crashed or was killed alone; none may keep writing here.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self._scratch.cleanup()


@pytest.fixture(scope="session")
def live_server() -> Iterator[LiveServer]:
    """One default synthetic server shared by the socket-level tests."""
    server = LiveServer("--model", "test-model", "--max-model-len", "2048")
    yield server
    server.stop()


@pytest.fixture
def start_server() -> Iterator[Callable[..., LiveServer]]:
    started: list[LiveServer] = []

    def start(
        *args: str,
        env: dict[str, str] | None = None,
        command: str = "serve",
        launcher: Launcher | None = None,
    ) -> LiveServer:
        server = LiveServer(*args, env=env, command=command, launcher=launcher)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def descendants(pid: int) -> list[int]:
    """Every process started by ``pid``, recursively (Sanic serves from worker processes)."""
    children: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as listing:
                for child in map(int, listing.read().split()):
                    children += [child, *descendants(child)]
        except FileNotFoundError:
            continue
    return children


def unread_streams(port: int, body: bytes, count: int) -> list[socket.socket]:
    """``count`` connections that each POST ``body`` to /v1/completions and never read (a 4 KiB
    receive buffer); the caller closes them."""
    request = (
        b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%b" % (len(body), body)
    )
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port))
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(request)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class LoopIterations:
    """Counts the iterations of the running loop (a callback that schedules itself again runs
    once in each), sleeping ``busy_seconds`` in each as a busy worker would."""

    def __init__(self, busy_seconds: float = 0.0) -> None:
        self.count = 0
        self._busy_seconds = busy_seconds
        self._running = False

    def __enter__(self) -> LoopIterations:
        self._running = True
        asyncio.get_running_loop().call_soon(self._tick)
        return self

    def __exit__(self, *exc: object) -> None:
        self._running = False

    def _tick(self) -> None:
        self.count += 1
        time.sleep(self._busy_seconds)
        if self._running:
            asyncio.get_running_loop().call_soon(self._tick)


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and its descendants."""
    total = 0
    for process in [pid, *descendants(pid)]:
        try:
            with open(f"/proc/{process}/statm") as statm:
                total += int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except FileNotFoundError:
            continue
    return total
