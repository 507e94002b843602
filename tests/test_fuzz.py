"""Robustness: generated and mutated requests to every JSON route of a live server never get a
5xx, every error is vLLM's envelope, and the server stays healthy with nothing in its log.

``make test`` runs a few hundred examples; ``make fuzz`` runs 50,000 (FUZZ_EXAMPLES) and prints
the answers by status.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings

from tests.conftest import LiveServer
from tests.fuzz import FuzzRequest, Tally, check_answer, requests

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
TALLY = Tally()
# What a server log must never show: a handler that failed (the last-resort handler logs
# "unhandled error"), a traceback, Sanic's own error pages.
LOG_ALARMS = ("Traceback", "unhandled error", "Exception", "An error occurred")


@pytest.fixture(scope="module")
def fuzzed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    log = tmp_path_factory.mktemp("fuzz") / "server.log"
    # A short context keeps valid answers small, so that examples stay fast.
    server = LiveServer("--max-model-len", "256", "--max-n", "8", log=log)
    yield server
    server.stop()
    if EXAMPLES > 1000:
        print("\n" + TALLY.report())


@pytest.fixture(scope="module")
def client(fuzzed_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fuzzed_server.url, timeout=60) as client:
        yield client


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@given(request=requests())
def test_no_input_gets_a_server_error(client: httpx.Client, request: FuzzRequest) -> None:
    headers = {} if request.content_type is None else {"content-type": request.content_type}
    response = client.post(request.path, content=request.body, headers=headers)
    TALLY.statuses[response.status_code] += 1
    check_answer(response.status_code, response.headers.get("content-type", ""), response.content)


def test_server_still_healthy_and_log_clean(
    client: httpx.Client, fuzzed_server: LiveServer
) -> None:
    """Runs after the fuzz test (pytest keeps file order)."""
    started = time.monotonic()
    assert client.get("/health").status_code == 200
    assert time.monotonic() - started < 1.0
    log = fuzzed_server.stderr()
    alarms = [line for line in log.splitlines() if any(alarm in line for alarm in LOG_ALARMS)]
    assert not alarms, "\n".join(alarms[:20])


def test_log_file_is_written(fuzzed_server: LiveServer) -> None:
    # The log check above means nothing if the server's stderr went elsewhere.
    assert isinstance(fuzzed_server.log, Path)
    assert fuzzed_server.log.exists()
