from __future__ import annotations

import json
import time
from pathlib import Path

from dummy_vllm.recording.matching import canonical_key, relaxed_key
from dummy_vllm.recording.redact import (
    filter_request_headers,
    filter_response_headers,
    scrub_keys,
    scrub_secrets,
    scrub_url,
)
from dummy_vllm.recording.store import ExchangeRecord, Outcome, Store, migrate

OPENAI_KEY = "sk-proj-Q3v9XbT2mLk8RzP4wY7nA1sD5fG6hJ0c"
HF_TOKEN = "hf_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"
BEARER = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"


def test_request_headers_keep_only_the_allow_list() -> None:
    headers = {
        "Content-Type": "application/json",
        "Accept": "text/event-stream",
        "User-Agent": "OpenAI/Python 1.50.0",
        "X-Request-Id": "abc",
        "X-Stainless-Lang": "python",
        "X-Stainless-Retry-Count": "0",
        "Authorization": f"Bearer {OPENAI_KEY}",
        "api-key": "k",
        "X-Api-Key": "k",
        "Cookie": "session=1",
        "Proxy-Authorization": "Basic eA==",
        "X-Stainless-Session-Token": "t",
        "OpenAI-Organization": "org-123",
        "X-Custom": "anything",
    }

    assert filter_request_headers(headers) == {
        "content-type": "application/json",
        "accept": "text/event-stream",
        "user-agent": "OpenAI/Python 1.50.0",
        "x-request-id": "abc",
        "x-stainless-lang": "python",
        "x-stainless-retry-count": "0",
    }


def test_response_headers_drop_hop_by_hop_framing_and_cookies() -> None:
    headers = {
        "Content-Type": "text/event-stream; charset=utf-8",
        "X-Request-Id": "abc",
        "X-Upstream-Thing": "kept",
        "Set-Cookie": "session=1",
        "Connection": "keep-alive, X-Hop",
        "X-Hop": "named by Connection",
        "Keep-Alive": "timeout=5",
        "Transfer-Encoding": "chunked",
        "Content-Length": "10",
        "Content-Encoding": "gzip",
        "Date": "Wed, 26 Nov 2025 08:00:00 GMT",
        "Server": "uvicorn",
        "X-Auth-Token": "t",
    }

    assert filter_response_headers(headers) == {
        "content-type": "text/event-stream; charset=utf-8",
        "x-request-id": "abc",
        "x-upstream-thing": "kept",
    }


def test_scrub_leaves_bytes_without_secrets_untouched() -> None:
    body = (
        b'{ "model" : "llama",\n  "messages": [{"role": "user",'
        b' "content": "task-1234567890abcdefghijkl"}],'
        b' "max_tokens": 5, "logit_bias": {"50256": -100}, "tokens": ["a"], "token_count": 3}'
    )

    assert scrub_secrets(body) == body


def test_scrub_redacts_key_shaped_strings_anywhere() -> None:
    text = (
        f"openai {OPENAI_KEY} legacy sk-{'a' * 48} hf {HF_TOKEN} header Bearer {BEARER}"
    ).encode()

    scrubbed = scrub_secrets(text)

    assert scrubbed == (
        b"openai [REDACTED] legacy [REDACTED] hf [REDACTED] header Bearer [REDACTED]"
    )
    assert scrub_secrets(scrubbed) == scrubbed


def test_scrub_redacts_secret_named_members_and_keeps_json_valid() -> None:
    body = {
        "model": "llama",
        "api_key": "plain-password-like",
        "apiKey": "x",
        "extra": {"token": 'with "quotes" and \\ backslash', "password": "p", "tokens": [1]},
        "Authorization": f"Bearer {BEARER}",
        "secret": "s",
        "secret_count": 3,
        "messages": [{"role": "user", "content": f"my key is {OPENAI_KEY}, keep it"}],
        "tool": json.dumps({"hf": HF_TOKEN}),
    }
    raw = json.dumps(body, indent=2).encode()

    scrubbed = scrub_secrets(raw)

    assert json.loads(scrubbed) == {
        "model": "llama",
        "api_key": "[REDACTED]",
        "apiKey": "[REDACTED]",
        "extra": {"token": "[REDACTED]", "password": "[REDACTED]", "tokens": [1]},
        "Authorization": "[REDACTED]",
        "secret": "[REDACTED]",
        "secret_count": 3,
        "messages": [{"role": "user", "content": "my key is [REDACTED], keep it"}],
        "tool": json.dumps({"hf": "[REDACTED]"}),
    }
    # Formatting outside the redacted values survives: still indented.
    assert scrubbed.startswith(b'{\n  "model": "llama",\n  "api_key": "[REDACTED]"')


def test_scrub_works_inside_sse_events() -> None:
    event = b'data: {"api_key":"abc","content":"x"}\n\n'

    assert scrub_secrets(event) == b'data: {"api_key":"[REDACTED]","content":"x"}\n\n'


def test_scrub_url_removes_only_the_password() -> None:
    assert scrub_url("http://alice:hunter2@gpu:8000/v1") == "http://alice:[REDACTED]@gpu:8000/v1"
    assert scrub_url("http://gpu:8000") == "http://gpu:8000"
    assert scrub_url("http://alice@gpu:8000") == "http://alice@gpu:8000"


async def test_secrets_never_reach_the_database_files(tmp_path: Path) -> None:
    """The whole recording path: keys from the raw request, redaction, storage, then a grep."""
    password = "correct-horse-battery-staple"
    url_password = "pw-in-url-9d8c7b"
    request = {
        "model": "llama",
        "api_key": password,
        "messages": [{"role": "user", "content": f"use {OPENAI_KEY} and {HF_TOKEN}"}],
        "stream": True,
    }
    raw_body = json.dumps(request).encode()
    headers = {"Authorization": f"Bearer {BEARER}", "Content-Type": "application/json"}
    secrets = [password, url_password, OPENAI_KEY, HF_TOKEN, BEARER]
    path = tmp_path / "db.sqlite"
    migrate(path)

    async with await Store.open(path) as store:
        await store.ensure_session(
            "s",
            upstream=f"http://user:{url_password}@gpu:8000",
            options={"api_key": password, "model": "llama"},
        )
        await store.add_exchange(
            "s",
            ExchangeRecord(
                method="POST",
                path="/v1/chat/completions",
                request_body=scrub_secrets(raw_body),
                match_key=canonical_key("/v1/chat/completions", request),
                relaxed_key=relaxed_key("/v1/chat/completions", request),
                request_headers=filter_request_headers(headers),
                status=200,
                response_headers=filter_response_headers({"content-type": "text/event-stream"}),
                streamed=True,
                outcome=Outcome.COMPLETE,
                created=time.time(),
                events=[(1_000, b'data: {"choices":[]}\n\n'), (2_000, b"data: [DONE]\n\n")],
            ),
        )
        files = [path, path.with_name(path.name + "-wal")]
        written = b"".join(file.read_bytes() for file in files if file.exists())
        # The grep must be looking at the data: the redacted request is there.
        assert b"[REDACTED]" in written
        assert b"use [REDACTED] and [REDACTED]" in written
        for secret in secrets:
            assert secret.encode() not in written, secret

    # After close the WAL is checkpointed into the main file.
    checkpointed = path.read_bytes()
    assert b"use [REDACTED] and [REDACTED]" in checkpointed
    for secret in secrets:
        assert secret.encode() not in checkpointed, secret


def test_short_keys_and_secret_named_members_of_any_prefix_are_scrubbed() -> None:
    body = b'{"x_api_key": "k1", "client_secret": "k2", "db_password": "k3", "t": "sk-1234"}'
    assert scrub_secrets(body) == (
        b'{"x_api_key": "[REDACTED]", "client_secret": "[REDACTED]", '
        b'"db_password": "[REDACTED]", "t": "[REDACTED]"}'
    )
    # Words that merely contain "sk-" stay.
    assert scrub_secrets(b"risk-free task-1234567") == b"risk-free task-1234567"


def test_answers_lose_their_keys_but_keep_logprob_tokens() -> None:
    event = b'data: {"content":"key sk-abcd1234","logprobs":{"token":"sk"}}\n\n'
    assert scrub_keys(event) == b'data: {"content":"key [REDACTED]","logprobs":{"token":"sk"}}\n\n'
