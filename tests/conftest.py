"""Shared fixtures: an in-process app for handler tests, live servers for socket-level tests."""

from __future__ import annotations

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

import pytest
from sanic import Sanic

from dummy_vllm.app import create_app
from dummy_vllm.settings import Settings

REPO = Path(__file__).resolve().parent.parent
CAPTURES = Path(__file__).resolve().parent / "captures"  # copies of shared/vllm-captures

Sanic.test_mode = True


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


class LiveServer:
    """``python cli.py serve`` (or another server ``command``) in a subprocess, as a user
    starts it."""

    def __init__(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        command: str = "serve",
        log: Path | None = None,
    ) -> None:
        """``log``: a file for the server's stderr, to read after it ran (by default a pipe
        that only a failed start reads)."""
        self._scratch = tempfile.TemporaryDirectory(prefix="dummy-vllm-test-")
        self.log = log
        # Tests never touch the repository's own recordings/.
        env = {"DUMMY_VLLM_DB": f"{self._scratch.name}/test.db", **(env or {})}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "cli.py", command, "--port", str(self.port), *args],
            cwd=REPO,
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE if log is None else log.open("wb"),
            start_new_session=True,
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.stderr()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("server did not become healthy")

    def stderr(self) -> str:
        if self.log is not None:
            return self.log.read_text(errors="replace")
        return self.process.stderr.read().decode()  # type: ignore[union-attr]

    def stop(self) -> None:
        self._scratch.cleanup()
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@pytest.fixture(scope="session")
def live_server() -> Iterator[LiveServer]:
    """One default synthetic server shared by the socket-level tests."""
    server = LiveServer("--model", "test-model", "--max-model-len", "2048")
    yield server
    server.stop()


@pytest.fixture
def start_server() -> Iterator[Callable[..., LiveServer]]:
    started: list[LiveServer] = []

    def start(*args: str, env: dict[str, str] | None = None, command: str = "serve") -> LiveServer:
        server = LiveServer(*args, env=env, command=command)
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
