"""Robustness: generated and mutated requests to every JSON route of live servers in every mode
(synthetic, replay, record) never get a 5xx, every error is vLLM's envelope, and the servers
stay healthy with nothing alarming in their logs.

``make test`` runs a few hundred examples; ``make fuzz`` runs 50,000 (FUZZ_EXAMPLES, shared by
the modes) and prints the answers by status.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings

from benchmarks.synthetic_session import exchange_from_plan
from dummy_vllm.engine import Tokenizer
from dummy_vllm.protocol.requests import GENERATION_ROUTES, ServedModel
from dummy_vllm.recording.store import Store, migrate
from dummy_vllm.settings import AgentSettings, Limits, SyntheticSettings
from dummy_vllm.synthetic import SyntheticModel
from tests.conftest import LiveServer
from tests.fuzz import ROUTES, FuzzRequest, Tally, check_answer, requests

MODES = ("synthetic", "replay", "record")
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "600")) // len(MODES)
TALLIES = {mode: Tally() for mode in MODES}
# A short context keeps valid answers small, so that examples stay fast.
LIMITS = ("--max-model-len", "256", "--max-n", "8")
# Tool calls and reasoning on, so that agent-style bodies reach their generators.
AGENT = AgentSettings(
    enable_auto_tool_choice=True, tool_call_parser="hermes", reasoning_parser="deepseek_r1"
)
AGENT_FLAGS = (
    *("--enable-auto-tool-choice", "--tool-call-parser", "hermes"),
    *("--reasoning-parser", "deepseek_r1"),
)
# What a server log must never show: a handler that failed (the last-resort handler logs
# "unhandled error"), a traceback, Sanic's own error pages.
LOG_ALARMS = ("Traceback", "unhandled error", "Exception", "An error occurred")


def _record_session(db: Path) -> None:
    """The valid bodies of the generation routes, answered synthetically, as a session."""
    served = ServedModel(
        "dummy-vllm/synthetic-1b", "m", 256, Tokenizer(), Limits(max_n=8), agent=AGENT
    )
    model = SyntheticModel(SyntheticSettings(), served, seed=0)

    async def write() -> None:
        migrate(db)
        async with await Store.open(db) as store:
            await store.ensure_session("fuzz", upstream=None, options={})
            for route in GENERATION_ROUTES:
                for body in ROUTES[route]:
                    plan = model.respond(route, body, None)
                    await store.add_exchange("fuzz", exchange_from_plan(route, body, plan))

    asyncio.run(write())


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, LiveServer]]:
    scratch = tmp_path_factory.mktemp("fuzz")
    db = scratch / "replay.db"
    _record_session(db)
    started: dict[str, LiveServer] = {}
    try:
        started["synthetic"] = LiveServer(*LIMITS, *AGENT_FLAGS, log=scratch / "synthetic.log")
        # The replay server answers as the latest era (its misses too): /v1/messages and the
        # 0.33 validation rules get fuzzed, the synthetic server covers 0.11's.
        started["replay"] = LiveServer(
            *("--replay", "fuzz", "--on-miss", "synthetic", "--vllm-version", "0.33"),
            *LIMITS,
            *AGENT_FLAGS,
            env={"DUMMY_VLLM_DB": str(db)},
            log=scratch / "replay.log",
        )
        upstream = started["synthetic"].url
        started["record"] = LiveServer(
            *("--upstream", upstream, "--session", "fuzz"),
            command="record",
            log=scratch / "record.log",
        )
        yield started
    finally:
        for server in started.values():
            server.stop()
    if EXAMPLES * len(MODES) > 1000:
        for mode, tally in TALLIES.items():
            print(f"\n{mode}: {tally.report()}")


@pytest.fixture(scope="module")
def clients(servers: dict[str, LiveServer]) -> Iterator[dict[str, httpx.Client]]:
    opened = {
        mode: httpx.Client(base_url=server.url, timeout=60) for mode, server in servers.items()
    }
    yield opened
    for client in opened.values():
        client.close()


@pytest.mark.parametrize("mode", MODES)
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@given(request=requests())
def test_no_input_gets_a_server_error(
    clients: dict[str, httpx.Client], mode: str, request: FuzzRequest
) -> None:
    headers = {} if request.content_type is None else {"content-type": request.content_type}
    response = clients[mode].post(request.path, content=request.body, headers=headers)
    TALLIES[mode].statuses[response.status_code] += 1
    check_answer(response.status_code, response.headers.get("content-type", ""), response.content)


@pytest.mark.parametrize("mode", MODES)
def test_servers_still_healthy_and_logs_clean(
    clients: dict[str, httpx.Client], servers: dict[str, LiveServer], mode: str
) -> None:
    """Runs after the fuzz test (pytest keeps file order)."""
    started = time.monotonic()
    assert clients[mode].get("/health").status_code == 200
    assert time.monotonic() - started < 1.0
    log = servers[mode].stderr()
    alarms = [line for line in log.splitlines() if any(alarm in line for alarm in LOG_ALARMS)]
    assert not alarms, "\n".join(alarms[:20])
    # The check above means nothing if the server's stderr went elsewhere.
    assert servers[mode].log is not None
    assert servers[mode].log.exists()
