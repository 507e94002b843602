"""CORS: the policy against what Starlette's own CORSMiddleware answered (0.48 for the eras up to
0.23, 1.10 for 0.24+; see captures/starlette_cors.src.txt), then at the HTTP edge."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from sanic import Sanic

from dummy_vllm.protocol.cors import CorsPolicy, is_preflight, preflight, simple_headers
from dummy_vllm.settings import CorsSettings

from .conftest import CAPTURES

POLICIES = {
    "default-0.11": CorsPolicy(("*",), ("*",), ("*",), credentials=False, starlette_1=False),
    "default-0.33": CorsPolicy((), ("*",), ("*",), credentials=False, starlette_1=False),
    "credentials": CorsPolicy(("*",), ("*",), ("*",), credentials=True, starlette_1=False),
    "explicit": CorsPolicy(
        ("http://a.example",), ("GET", "POST"), ("Authorization",), False, starlette_1=False
    ),
}


def cases(version: str) -> list[dict[str, Any]]:
    capture = json.loads((CAPTURES / f"starlette-{version}_cors.json").read_text())
    assert capture["starlette"] == version
    return list(capture["cases"])


def lowercase(headers: dict[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


@pytest.mark.parametrize(("version", "starlette_1"), [("0.48.0", False), ("1.10.0", True)])
def test_answers_what_starlette_answers(version: str, starlette_1: bool) -> None:
    for case in cases(version):
        policy = POLICIES[case["policy"]]
        policy = CorsPolicy(
            policy.origins, policy.methods, policy.headers, policy.credentials, starlette_1
        )
        request = lowercase(case["request"])
        expected = [(name, value) for name, value in case["headers"]]
        if is_preflight(case["method"], request):
            status, headers, body = preflight(policy, request)
            assert (status, body.decode()) == (case["status"], case["body"]), case
        else:
            headers = simple_headers(policy, request)
            assert case["status"] == 200, case
        # Same headers, same order (Starlette's dict order).
        assert list(headers.items()) == expected, case


# --- at the HTTP edge ---------------------------------------------------------------------------

PREFLIGHT = {"Origin": "http://a.example", "Access-Control-Request-Method": "POST"}


def test_preflight_is_answered_for_any_path(make_app: Callable[..., Sanic]) -> None:
    app = make_app()
    for path in ("/v1/chat/completions", "/nowhere"):
        _, response = app.test_client.options(path, headers=PREFLIGHT)
        assert response.status == 200
        assert response.text == "OK"
        assert response.headers["content-type"] == "text/plain; charset=utf-8"
        assert response.headers["access-control-allow-origin"] == "*"
    # Not a preflight (no request method): routed, so a 405 as FastAPI's.
    _, response = app.test_client.options(
        "/v1/chat/completions", headers={"Origin": "http://a.example"}
    )
    assert response.status == 405
    assert response.json == {"detail": "Method Not Allowed"}
    assert response.headers["access-control-allow-origin"] == "*"


def test_simple_answers_carry_the_headers_and_streams_too(make_app: Callable[..., Sanic]) -> None:
    app = make_app()
    body = {"model": "dummy-vllm/synthetic-1b", "prompt": "hi", "max_tokens": 2, "stream": True}
    _, response = app.test_client.post(
        "/v1/completions", json=body, headers={"Origin": "http://a.example"}
    )
    assert response.status == 200
    assert response.headers["access-control-allow-origin"] == "*"
    _, response = app.test_client.get("/health")
    assert "access-control-allow-origin" not in response.headers


def test_the_033_default_refuses_every_origin(make_app: Callable[..., Sanic]) -> None:
    app = make_app(vllm_version="0.33")
    _, response = app.test_client.options("/v1/models", headers=PREFLIGHT)
    assert response.status == 400
    assert response.text == "Disallowed CORS origin"
    _, response = app.test_client.get("/v1/models", headers={"Origin": "http://a.example"})
    assert response.headers["vary"] == "Origin"
    assert "access-control-allow-origin" not in response.headers


def test_flags_replace_the_era_default(make_app: Callable[..., Sanic]) -> None:
    cors = CorsSettings(origins=("http://a.example",), credentials=True)
    app = make_app(vllm_version="0.33", cors=cors)
    _, response = app.test_client.options("/v1/models", headers=PREFLIGHT)
    assert response.status == 200
    assert response.headers["access-control-allow-origin"] == "http://a.example"
    assert response.headers["access-control-allow-credentials"] == "true"


def test_unauthorized_answers_have_no_cors_headers(make_app: Callable[..., Sanic]) -> None:
    app = make_app(api_key="secret")
    _, response = app.test_client.get("/v1/models", headers={"Origin": "http://a.example"})
    assert response.status == 401
    assert "access-control-allow-origin" not in response.headers
    # Preflights skip the key check, as vLLM's middleware skips OPTIONS.
    _, response = app.test_client.options("/v1/models", headers=PREFLIGHT)
    assert response.status == 200
