"""The reference: the best a bare Sanic app can do for the benchmark's requests.

It answers ``POST /v1/chat/completions`` with constant bytes (no tokenizer, no pydantic, no
per-request JSON encoding), so the gap between it and dummy-vllm is the cost of the product's
own code. It is started exactly like the product: ``Sanic.serve`` with the worker manager, so
``--workers 1`` means one worker subprocess.

    python -m benchmarks.reference_server --host 127.0.0.1 --port 8100 --workers 1 \
        --ttft-delay 100 --token-delay 10

Delays are in milliseconds, like the product's flags. They are also read from the environment
(``BENCH_REF_TTFT_MS``, ``BENCH_REF_ITL_MS``) when the flags are absent.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import time
from dataclasses import dataclass
from functools import partial
from types import SimpleNamespace

import ujson
from sanic import Request, Sanic
from sanic.config import Config
from sanic.response import HTTPResponse, empty, raw
from sanic.worker.loader import AppLoader

App = Sanic[Config, SimpleNamespace]
MODEL = "bench-model"
_CREATED = int(time.time())
_ID = "chatcmpl-0123456789abcdef0123456789abcdef"
# Sixteen words, roughly what 16 tokens of synthetic text look like.
_TEXT = "The quick brown fox jumps over the lazy dog while seven wizards quietly box jumping frogs."


def _dumps(obj: object) -> bytes:
    return ujson.dumps(obj, ensure_ascii=False, escape_forward_slashes=False).encode()


def _completion_body(model: str) -> bytes:
    # Field set mirrors vLLM 0.11's ChatCompletionResponse so the body size is realistic.
    return _dumps(
        {
            "id": _ID,
            "object": "chat.completion",
            "created": _CREATED,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": _TEXT,
                        "refusal": None,
                        "annotations": None,
                        "audio": None,
                        "function_call": None,
                        "tool_calls": [],
                        "reasoning_content": None,
                    },
                    "logprobs": None,
                    "finish_reason": "length",
                    "stop_reason": None,
                    "token_ids": None,
                }
            ],
            "service_tier": None,
            "system_fingerprint": None,
            "usage": {
                "prompt_tokens": 45,
                "total_tokens": 61,
                "completion_tokens": 16,
                "prompt_tokens_details": None,
            },
            "prompt_logprobs": None,
            "prompt_token_ids": None,
            "kv_transfer_params": None,
        }
    )


def _event(obj: object) -> bytes:
    return b"data: " + _dumps(obj) + b"\n\n"


def _token_event(model: str) -> bytes:
    return _event(
        {
            "id": _ID,
            "object": "chat.completion.chunk",
            "created": _CREATED,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "delta": {"content": " fox"},
                    "logprobs": None,
                    "finish_reason": None,
                }
            ],
        }
    )


def _usage_event(model: str) -> bytes:
    return _event(
        {
            "id": _ID,
            "object": "chat.completion.chunk",
            "created": _CREATED,
            "model": model,
            "choices": [],
            "usage": {"prompt_tokens": 45, "total_tokens": 145, "completion_tokens": 100},
        }
    )


def _set_log_level(name: str) -> None:
    level = getattr(logging, name.upper())
    for logger in ("sanic.root", "sanic.error", "sanic.server", "sanic.access"):
        logging.getLogger(logger).setLevel(level)


@dataclass(frozen=True, slots=True)
class RefConfig:
    """Plain data, so ``partial(create_app, cfg)`` pickles into the worker process."""

    ttft_ms: float = 0.0
    itl_ms: float = 0.0
    model: str = MODEL
    log_level: str = "warning"

    @classmethod
    def from_env(cls) -> RefConfig:
        return cls(
            ttft_ms=float(os.environ.get("BENCH_REF_TTFT_MS", "0")),
            itl_ms=float(os.environ.get("BENCH_REF_ITL_MS", "0")),
            model=os.environ.get("BENCH_REF_MODEL", MODEL),
        )


def create_app(cfg: RefConfig | None = None) -> App:
    cfg = cfg or RefConfig.from_env()
    app: App = Sanic("bench_reference")
    # After Sanic() (which installs its logging config); runs in each spawned worker too.
    _set_log_level(cfg.log_level)
    app.config.ACCESS_LOG = False
    app.config.MOTD = False

    completion = _completion_body(cfg.model)
    token = _token_event(cfg.model)
    usage = _usage_event(cfg.model)
    done = b"data: [DONE]\n\n"
    ttft = cfg.ttft_ms / 1000.0
    itl = cfg.itl_ms / 1000.0

    async def health(request: Request) -> HTTPResponse:
        # 200, not empty()'s default 204: the harness polls for exactly that.
        return empty(status=200)

    async def chat(request: Request) -> HTTPResponse | None:
        loop = asyncio.get_running_loop()
        arrival = loop.time()
        body = ujson.loads(request.body)
        if not body.get("stream"):
            if ttft or itl:
                # Same latency model as the product: TTFT, then one ITL per further token.
                n = int(body.get("max_tokens") or 16)
                await asyncio.sleep(max(0.0, arrival + ttft + (n - 1) * itl - loop.time()))
            return raw(completion, content_type="application/json")
        n = int(body.get("max_tokens") or 16)
        resp = await request.respond(content_type="text/event-stream; charset=utf-8")
        for i in range(n):
            # Absolute deadlines: a late wake-up shortens the next wait instead of drifting.
            delay = arrival + ttft + i * itl - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await resp.send(token)
        await resp.send(usage)
        await resp.send(done)
        await resp.eof()
        return None

    app.add_route(health, "/health", methods=["GET"])
    app.add_route(chat, "/v1/chat/completions", methods=["POST"])
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--backlog", type=int, default=2048, help="listen backlog (uvicorn's)")
    parser.add_argument("--model", default=None)
    parser.add_argument("--ttft-delay", type=float, default=None, help="milliseconds")
    parser.add_argument("--token-delay", type=float, default=None, help="milliseconds")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)

    env = RefConfig.from_env()
    cfg = RefConfig(
        ttft_ms=env.ttft_ms if args.ttft_delay is None else args.ttft_delay,
        itl_ms=env.itl_ms if args.token_delay is None else args.token_delay,
        model=args.model or env.model,
        log_level=args.log_level,
    )
    _set_log_level(cfg.log_level)

    loader = AppLoader(factory=partial(create_app, cfg))
    app = loader.load()
    app.prepare(
        host=args.host,
        port=args.port,
        workers=args.workers,
        backlog=args.backlog,
        access_log=False,
        motd=False,
    )
    Sanic.serve(primary=app, app_loader=loader)


if __name__ == "__main__":
    main()
