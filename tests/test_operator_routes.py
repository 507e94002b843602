"""The operator routes over a socket (their state lives in the worker): load, server info,
sleep mode, the prefix cache, the profiler and LoRA adapters, per era."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx
import pytest

from .conftest import LiveServer, wait_until

COMPLETION = {"model": "m", "prompt": "hi", "max_tokens": 2}


def test_load_counts_requests_in_flight(start_server: Callable[..., LiveServer]) -> None:
    server = start_server("--model", "m", "--ttft-delay", "600")
    url = server.url
    assert httpx.get(f"{url}/load").json() == {"server_load": 0}
    thread = threading.Thread(
        target=lambda: httpx.post(f"{url}/v1/completions", json=COMPLETION, timeout=30)
    )
    thread.start()
    wait_until(
        lambda: httpx.get(f"{url}/load").json() == {"server_load": 1}, "one request in flight"
    )
    thread.join()
    assert httpx.get(f"{url}/load").json() == {"server_load": 0}


@pytest.mark.parametrize(("version", "json_bodies"), [("0.17", False), ("0.33", True)])
def test_a_sleeping_server_holds_requests_until_it_wakes(
    start_server: Callable[..., LiveServer], version: str, json_bodies: bool
) -> None:
    server = start_server("--model", "m", "--vllm-version", version)
    url = server.url
    slept = httpx.post(f"{url}/sleep")
    assert slept.status_code == 200
    if json_bodies:
        assert slept.json() == {"status": "sleeping", "level": 1}
    else:
        assert slept.content == b""
        assert "content-type" not in slept.headers
    assert httpx.get(f"{url}/is_sleeping").json() == {"is_sleeping": True}
    answered: list[int] = []
    thread = threading.Thread(
        target=lambda: answered.append(
            httpx.post(f"{url}/v1/completions", json=COMPLETION, timeout=30).status_code
        )
    )
    thread.start()
    wait_until(
        lambda: httpx.get(f"{url}/load").json() == {"server_load": 1}, "one request in flight"
    )
    time.sleep(0.2)
    assert answered == []
    # Waking the weights only leaves the KV cache asleep.
    partly = httpx.post(f"{url}/wake_up", params={"tags": "weights"})
    if json_bodies:
        assert partly.json() == {"status": "sleeping", "tags": ["weights"]}
    assert httpx.get(f"{url}/is_sleeping").json() == {"is_sleeping": True}
    woken = httpx.post(f"{url}/wake_up")
    if json_bodies:
        assert woken.json() == {"status": "awake", "tags": None}
    thread.join(timeout=10)
    assert answered == [200]
    assert httpx.get(f"{url}/is_sleeping").json() == {"is_sleeping": False}


def test_dev_routes_per_era(start_server: Callable[..., LiveServer]) -> None:
    old = start_server("--model", "m")
    new = start_server("--model", "m", "--vllm-version", "0.33")
    info = httpx.get(f"{old.url}/server_info").json()
    assert list(info) == ["vllm_config"]
    assert "max_model_len=4096" in info["vllm_config"]
    info = httpx.get(f"{new.url}/server_info", params={"config_format": "json"}).json()
    assert list(info) == ["vllm_config", "vllm_env", "system_env"]
    assert info["vllm_config"]["served_model_name"] == "m"
    assert httpx.get(f"{new.url}/server_info?config_format=yaml").status_code == 400
    reset = httpx.post(f"{old.url}/reset_prefix_cache")
    assert (reset.status_code, reset.content) == (200, b"")
    assert httpx.post(f"{new.url}/reset_prefix_cache").json() == {"success": True}
    for route in ("/start_profile", "/stop_profile"):
        assert httpx.post(f"{old.url}{route}").status_code == 200
    refused = httpx.post(f"{new.url}/sleep", params={"level": "3"})
    assert refused.status_code == 400
    assert refused.json()["error"]["type"] == "Bad Request"
    assert httpx.get(f"{new.url}/is_sleeping").json() == {"is_sleeping": False}
    # Not on the normal API server, even in 0.33 (only vLLM's data-parallel supervisor).
    assert httpx.get(f"{new.url}/ready").status_code == 404


@pytest.mark.parametrize(("version", "inplace"), [("0.11", False), ("0.17", True)])
def test_lora_adapters(
    start_server: Callable[..., LiveServer], version: str, inplace: bool
) -> None:
    server = start_server("--model", "m", "--vllm-version", version)
    url = server.url
    adapter = {"lora_name": "sql", "lora_path": "/adapters/sql"}
    loaded = httpx.post(f"{url}/v1/load_lora_adapter", json=adapter)
    assert loaded.status_code == 200
    assert loaded.text == "Success: LoRA adapter 'sql' added successfully."
    assert "content-type" not in loaded.headers
    cards = httpx.get(f"{url}/v1/models").json()["data"]
    assert [card["id"] for card in cards] == ["m", "sql"]
    assert (cards[1]["root"], cards[1]["parent"], cards[1]["max_model_len"]) == (
        "/adapters/sql",
        "m",
        None,
    )
    answer = httpx.post(f"{url}/v1/completions", json={**COMPLETION, "model": "sql"}).json()
    assert answer["model"] == "sql"
    again = httpx.post(f"{url}/v1/load_lora_adapter", json=adapter)
    assert again.status_code == 400
    error = again.json()["error"]
    assert error["type"] == "InvalidUserInput"
    assert error["message"].startswith("The lora adapter 'sql' has already been loaded.")
    assert ("load_inplace" in error["message"]) is inplace
    in_place = httpx.post(f"{url}/v1/load_lora_adapter", json={**adapter, "load_inplace": True})
    assert in_place.status_code == (200 if inplace else 400)
    empty = httpx.post(f"{url}/v1/load_lora_adapter", json={"lora_name": "", "lora_path": "x"})
    assert empty.json()["error"]["message"] == "Both 'lora_name' and 'lora_path' must be provided."
    assert httpx.post(f"{url}/v1/load_lora_adapter", json={"lora_name": "x"}).status_code == 400
    removed = httpx.post(f"{url}/v1/unload_lora_adapter", json={"lora_name": "sql"})
    assert removed.text == "Success: LoRA adapter 'sql' removed successfully."
    missing = httpx.post(f"{url}/v1/unload_lora_adapter", json={"lora_name": "sql"})
    assert missing.status_code == 404
    assert missing.json()["error"] == {
        "message": "The lora adapter 'sql' cannot be found.",
        "type": "NotFoundError",
        "param": None,
        "code": 404,
    }
    assert httpx.post(f"{url}/v1/completions", json={**COMPLETION, "model": "sql"}).status_code == (
        404
    )
