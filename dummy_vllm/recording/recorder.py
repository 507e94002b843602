"""Record mode: forward each request to the upstream, tee its answer to the client, store both.

``Recorder.forward`` is the one recording path, used by the HTTP handlers (``routes/record.py``)
and by the batch runner (``batch.py``), which has no client; nothing here knows Sanic.
Streamed answers are split on the SSE event boundary as bytes arrive; each complete event goes
to the client in its own write at once and is remembered with its offset from the request's
arrival (``time.perf_counter_ns``). Nothing is parsed on that path: usage is looked up once the
exchange is over.

The exchange is stored before the client's response is finished (before ``data: [DONE]`` is
passed on, before the whole body of a non-streamed answer is sent): a client that saw a
response complete can rely on finding it in the database, even if the recorder is killed right
after. Concurrent exchanges are committed together (``Store.add_exchange``). An exchange that
cannot be stored (disk full, a database error) is not passed on as complete: a non-streamed
answer becomes a 503, a stream is broken off before ``[DONE]``; it is logged, counted in
``/metrics`` and, once the database takes writes again, in the session's ``lost`` count.

Failures and what the client sees:

- no connection to the upstream: a 502 envelope; stored as ``upstream_unreachable``;
- the upstream closes or falls silent (``read_timeout``) before answering: a 502 envelope;
  ``upstream_dropped`` without a status;
- it does so mid-stream: the events received so far (and any partial event), then the client's
  connection is closed without the chunked terminator, so the client sees the same truncated
  stream the upstream produced; ``upstream_dropped``;
- an error status: passed through as it came (status, body, content type); ``upstream_error``;
- a response that cannot be relayed (an SSE event or a body over the size limits, a content
  encoding other than gzip or deflate, a malformed response): a 502 envelope, or a stream cut
  off after its last whole event; ``upstream_dropped``;
- the client disconnects: Sanic cancels the handler; the upstream connection is closed, which
  makes vLLM abort the request, and what arrived so far is stored as ``client_aborted``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sqlite3
import time
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any, Protocol

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from ..protocol.errors import APIError
from ..protocol.requests import (
    CHAT_ROUTE,
    COMPLETIONS_ROUTE,
    COUNT_TOKENS_ROUTE,
    DETOKENIZE_ROUTE,
    EMBEDDINGS_ROUTE,
    JSON_MEDIA_TYPE,
    MESSAGES_ROUTE,
    MODELS_ROUTE,
    POOLING_ROUTE,
    RESPONSE_CANCEL_ROUTE,
    RESPONSE_ROUTE,
    RESPONSES_ROUTE,
    TOKENIZE_ROUTE,
    VERSION_ROUTE,
    decode_body,
)
from ..protocol.sse import DONE_LINE, SSE_MEDIA_TYPE, EventSplitter, EventTooLarge, event_data
from ..settings import RecordSettings
from .matching import canonical_key, relaxed_key
from .redact import (
    filter_request_headers,
    filter_response_headers,
    scrub_keys,
    scrub_secrets,
    scrub_url,
)
from .store import ExchangeRecord, Outcome, Store, StoreError

logger = logging.getLogger("dummy_vllm.recorder")

# Forwarded and recorded (whichever the upstream serves); everything else is answered locally
# (probes) or 404. Paths are Sanic templates: ``<response_id>`` is one path segment.
FORWARDED_ROUTES: tuple[tuple[str, str], ...] = (
    ("POST", CHAT_ROUTE),
    ("POST", COMPLETIONS_ROUTE),
    ("GET", MODELS_ROUTE),
    ("GET", VERSION_ROUTE),
    ("POST", TOKENIZE_ROUTE),
    ("POST", DETOKENIZE_ROUTE),
    ("POST", EMBEDDINGS_ROUTE),
    ("POST", POOLING_ROUTE),
    ("POST", RESPONSES_ROUTE),
    ("GET", RESPONSE_ROUTE),
    ("POST", RESPONSE_CANCEL_ROUTE),
    ("POST", MESSAGES_ROUTE),
    ("POST", COUNT_TOKENS_ROUTE),
)
# Headers about the client's hop, not the request; aiohttp writes its own for the upstream hop.
_HOP_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "accept-encoding",
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "expect",
    }
)
_USAGE_OBJECT = re.compile(rb'"usage":\s*\{')
# Content encodings undone before relaying (the upstream was asked for identity), as zlib
# window bits: gzip, and deflate's zlib stream.
_DECODERS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
_DECODE_STEP = 1 << 20


class _Unrelayable(Exception):
    """The upstream's response cannot be passed on: the reason is the client's 502 message."""


class Client(Protocol):
    """Where a streamed answer is teed to as it arrives."""

    async def start_stream(self, status: int, headers: Mapping[str, str]) -> None: ...

    async def send_event(self, data: bytes) -> None: ...


@dataclass(frozen=True, slots=True)
class UpstreamCall:
    """A request to forward, as the client sent it."""

    method: str
    path: str
    body: bytes
    headers: Mapping[str, str]
    query: str = ""


@dataclass(frozen=True, slots=True)
class Forwarded:
    record: ExchangeRecord
    # Answer the client with this instead of the upstream's response (there was none).
    error: APIError | None = None
    # False when the database refused the exchange: the client must not see it as complete.
    stored: bool = True


@dataclass(slots=True)
class _Exchange:
    """An exchange while it is in progress."""

    call: UpstreamCall
    started_ns: int = field(default_factory=time.perf_counter_ns)
    created: float = field(default_factory=time.time)
    outcome: Outcome | None = None
    status: int | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    streamed: bool = False
    body: bytes | None = None
    first_byte_ns: int | None = None
    complete_ns: int | None = None
    events: list[tuple[int, bytes]] = field(default_factory=list)
    # Committed already (a stream is stored before its [DONE] goes out), or refused.
    stored: bool = False
    store_failed: bool = False

    def offset_ns(self) -> int:
        return time.perf_counter_ns() - self.started_ns

    def record(self) -> ExchangeRecord:
        assert self.outcome is not None
        request = _json_object(self.call.body)
        prompt_tokens, completion_tokens = self._usage()
        return ExchangeRecord(
            method=self.call.method,
            path=self.call.path,
            request_body=scrub_secrets(self.call.body),
            # From the body as sent: keys are hashes, and must match the unredacted request.
            match_key=canonical_key(self.call.path, request),
            relaxed_key=relaxed_key(self.call.path, request),
            request_headers=filter_request_headers(self.call.headers),
            status=self.status,
            response_headers=self.response_headers,
            streamed=self.streamed,
            outcome=self.outcome,
            created=self.created,
            # An answer may echo what the client sent (echo, a prompt repeated): its keys too.
            response_body=None if self.body is None else scrub_keys(self.body),
            first_byte_ns=self.first_byte_ns,
            complete_ns=self.complete_ns,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            events=[(offset, scrub_keys(event)) for offset, event in self.events],
        )

    def _usage(self) -> tuple[int | None, int | None]:
        if self.status is None or self.status >= 400:
            return None, None
        usage: Any = None
        if self.body is not None:
            usage = _usage_of(_json_object(self.body))
        # The usage event, or the last continuous usage: searched from the end, parsed once.
        for _, data in reversed(self.events):
            if _USAGE_OBJECT.search(data):
                usage = _usage_of(_json_object(event_data(data)))
                break
        if not isinstance(usage, dict):
            return None, None
        # OpenAI's names, or the Responses and Anthropic APIs'.
        prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
        completion = usage.get("completion_tokens", usage.get("output_tokens"))
        return (
            prompt if isinstance(prompt, int) else None,
            completion if isinstance(completion, int) else None,
        )


class Recorder:
    """Forwards requests to one upstream and records them into one session."""

    def __init__(self, settings: RecordSettings, http: aiohttp.ClientSession, store: Store) -> None:
        self.settings = settings
        self.store = store
        self._http = http
        # Credentials in the upstream URL become its Authorization header: aiohttp refuses a
        # request that has both, and the client usually sends one.
        upstream = URL(settings.upstream)
        self._authorization = (
            aiohttp.BasicAuth(upstream.user, upstream.password or "").encode()
            if upstream.user is not None
            else None
        )
        self._base = str(upstream.with_user(None)).rstrip("/")
        # Exchanges answered but not stored since start (also in the session's lost count).
        self.lost = 0

    @classmethod
    async def open(cls, settings: RecordSettings, db_path: Path) -> Recorder:
        """Open the store (migrated, holding the session) and the upstream HTTP session."""
        store = await Store.open(db_path)
        http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            timeout=aiohttp.ClientTimeout(
                total=None, connect=settings.connect_timeout, sock_read=settings.read_timeout
            ),
            # The bytes stored must be the bytes on the wire.
            auto_decompress=False,
        )
        return cls(settings, http, store)

    async def close(self) -> None:
        await self._http.close()
        await self.store.close()

    async def forward(self, call: UpstreamCall, client: Client | None = None) -> Forwarded:
        """Forward ``call``, tee a streamed answer to ``client``, store the exchange."""
        exchange = _Exchange(call)
        try:
            error = await self._exchange(exchange, client)
        except asyncio.CancelledError:
            if exchange.outcome is None:
                exchange.outcome = Outcome.CLIENT_ABORTED
            if not exchange.stored and not exchange.store_failed:
                await self._store(exchange)
            raise
        except Exception as exc:
            # Whatever went wrong, the client gets a 502 and the exchange is on record.
            logger.error("recording %s failed: %s", call.path, describe(exc))
            exchange.outcome = exchange.outcome or Outcome.UPSTREAM_DROPPED
            error = _bad_gateway("The upstream exchange failed.")
        if not exchange.stored and not exchange.store_failed:
            await self._store(exchange)
        return Forwarded(exchange.record(), error, exchange.stored)

    async def _store(self, exchange: _Exchange) -> bool:
        """Commit ``exchange``; a refusal is logged, counted and remembered on the exchange."""
        try:
            await self.store.add_exchange(self.settings.session, exchange.record())
        except (StoreError, sqlite3.Error) as exc:
            exchange.store_failed = True
            self.lost += 1
            self.store.count_lost(self.settings.session)
            logger.error(
                "exchange %s %s NOT RECORDED (%d lost so far): %s",
                exchange.call.method,
                exchange.call.path,
                self.lost,
                exc,
            )
            return False
        exchange.stored = True
        return True

    async def describe_upstream(self) -> None:
        """Store the models and version the upstream reports; an upstream that does not say
        leaves them unknown."""
        models = version = None
        try:
            listing = await self._get_json("/v1/models")
            models = [str(item["id"]) for item in listing["data"]]
        except (aiohttp.ClientError, TimeoutError, ValueError, LookupError, TypeError) as exc:
            logger.info("upstream did not list its models: %s", describe(exc))
        try:
            reported = (await self._get_json("/version"))["version"]
            version = reported if isinstance(reported, str) else None
        except (aiohttp.ClientError, TimeoutError, ValueError, LookupError, TypeError) as exc:
            logger.info("upstream did not report its version: %s", describe(exc))
        if models is None and version is None:
            return
        try:
            await self.store.update_session_upstream_info(
                self.settings.session, models=models, version=version
            )
        except (StoreError, sqlite3.Error) as exc:
            logger.warning("cannot store the upstream's description: %s", exc)

    async def _get_json(self, path: str) -> Any:
        call = UpstreamCall("GET", path, b"", {"accept": "application/json"})
        async with self._http.get(self._url(call), headers=self._headers(call)) as response:
            response.raise_for_status()
            return json.loads(await response.read())

    async def _exchange(self, exchange: _Exchange, client: Client | None) -> APIError | None:
        call = exchange.call
        try:
            response = await self._http.request(
                call.method,
                self._url(call),
                data=call.body or None,
                headers=self._headers(call),
            )
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            exchange.outcome = Outcome.UPSTREAM_UNREACHABLE
            logger.warning("upstream unreachable: %s", describe(exc))
            return _bad_gateway(f"The upstream is unreachable: {describe(exc)}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            exchange.outcome = Outcome.UPSTREAM_DROPPED
            logger.warning("upstream gave no response to %s: %s", call.path, describe(exc))
            return _bad_gateway("The upstream closed the connection without a response.")
        exchange.first_byte_ns = exchange.offset_ns()
        exchange.status = response.status
        exchange.response_headers = filter_response_headers(response.headers)
        exchange.streamed = response.status < 400 and response.content_type == SSE_MEDIA_TYPE
        try:
            decoder = _decoder(response.headers.get("Content-Encoding", ""))
            if exchange.streamed:
                if client is not None:
                    await client.start_stream(response.status, exchange.response_headers)
                await self._tee(response, exchange, client, decoder)
            else:
                exchange.body = await self._read(response, decoder)
        except (aiohttp.ClientError, TimeoutError) as exc:
            response.close()
            exchange.outcome = Outcome.UPSTREAM_DROPPED
            logger.warning("upstream dropped %s: %s", call.path, describe(exc))
            return None if exchange.streamed else _bad_gateway("The upstream response broke off.")
        except _Unrelayable as exc:
            response.close()
            exchange.outcome = Outcome.UPSTREAM_DROPPED
            logger.warning("upstream response to %s not relayed: %s", call.path, exc)
            return None if exchange.streamed else _bad_gateway(str(exc))
        except BaseException:
            # Closing, not releasing: the upstream must see its request abandoned.
            response.close()
            raise
        if exchange.store_failed:
            # The stream stopped before [DONE]: the upstream must not wait for a reader.
            response.close()
            return None
        response.release()
        if not exchange.stored:
            exchange.complete_ns = exchange.offset_ns()
            exchange.outcome = Outcome.COMPLETE if response.status < 400 else Outcome.UPSTREAM_ERROR
        return None

    async def _tee(
        self,
        response: aiohttp.ClientResponse,
        exchange: _Exchange,
        client: Client | None,
        decoder: Any,
    ) -> None:
        splitter = EventSplitter(self.settings.max_event_bytes)
        offset = 0
        try:
            async for chunk in response.content.iter_any():
                offset = exchange.offset_ns()
                for data in _decoded(decoder, chunk):
                    try:
                        events = splitter.feed(data)
                    except EventTooLarge as exc:
                        await self._relay(exc.events, offset, exchange, client)
                        raise _Unrelayable(str(exc)) from None
                    if not await self._relay(events, offset, exchange, client):
                        return
        except (aiohttp.ClientError, TimeoutError):
            await _flush_fragment(splitter.rest(), exchange, client)
            raise
        except zlib.error as exc:
            raise _Unrelayable(f"The upstream's response does not decode: {exc}") from None
        # What the decoder still held (gzip's last block) may hold the last events.
        tail = [] if decoder is None else splitter.feed(decoder.flush())
        if not await self._relay(tail, offset, exchange, client):
            return
        await _flush_fragment(splitter.rest(), exchange, client)

    async def _relay(
        self,
        events: list[bytes],
        offset: int,
        exchange: _Exchange,
        client: Client | None,
    ) -> bool:
        """Pass ``events`` on; ``[DONE]`` only once the exchange is committed. False when it
        could not be: the stream ends there for the client, without ``[DONE]``."""
        for event in events:
            exchange.events.append((offset, event))
            if event.startswith(DONE_LINE):
                exchange.complete_ns = offset
                exchange.outcome = Outcome.COMPLETE
                if not await self._store(exchange):
                    return False
            if client is not None:
                await client.send_event(event)
        return True

    async def _read(self, response: aiohttp.ClientResponse, decoder: Any) -> bytes:
        """A non-streamed body, decoded, at most ``max_response_bytes``."""
        limit = self.settings.max_response_bytes
        body = bytearray()
        try:
            async for chunk in response.content.iter_any():
                for data in _decoded(decoder, chunk):
                    body += data
                    if len(body) > limit:
                        raise _Unrelayable(f"The upstream response exceeds {limit} bytes.")
            if decoder is not None:
                body += decoder.flush()
        except zlib.error as exc:
            raise _Unrelayable(f"The upstream's response does not decode: {exc}") from None
        return bytes(body)

    def _url(self, call: UpstreamCall) -> URL:
        path = f"{call.path}?{call.query}" if call.query else call.path
        return URL(self._base + path, encoded=True)

    def _headers(self, call: UpstreamCall) -> CIMultiDict[str]:
        headers = CIMultiDict(
            (name, value)
            for name, value in call.headers.items()
            if name.lower() not in _HOP_HEADERS
        )
        headers["Accept-Encoding"] = "identity"
        if self._authorization is not None:
            headers["Authorization"] = self._authorization
        if self.settings.upstream_api_key:
            headers["Authorization"] = f"Bearer {self.settings.upstream_api_key}"
        for name, value in self.settings.extra_headers:
            headers[name] = value
        return headers


def describe(exc: BaseException) -> str:
    """An exception as a log line or an error message may show it. aiohttp's repr carries the
    request it failed on, headers and URL included: API keys, cookies and passwords; this keeps
    the type and what the failure was, scrubbed of anything key-shaped."""
    if isinstance(exc, aiohttp.ClientResponseError):
        text = f"{exc.status}, {exc.message}"
    elif isinstance(exc, aiohttp.ClientConnectorError):
        text = f"cannot connect to {exc.host}:{exc.port} ({exc.os_error.strerror})"
    else:
        text = scrub_url(str(exc))
    return f"{type(exc).__name__}: {scrub_secrets(text.encode()).decode(errors='replace')}"


def _decoder(encoding: str) -> Any:
    """A zlib decoder for the response's content encoding, None for identity."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return None
    wbits = _DECODERS.get(encoding)
    if wbits is None:
        raise _Unrelayable(
            f"The upstream answered with an unsupported Content-Encoding: {encoding}"
        )
    return zlib.decompressobj(wbits)


def _decoded(decoder: Any, chunk: bytes) -> Iterator[bytes]:
    """``chunk`` decoded in steps of at most 1 MiB, so that a compressed bomb is refused by
    the size limits before it is inflated whole."""
    if decoder is None:
        yield chunk
        return
    data = decoder.decompress(chunk, _DECODE_STEP)
    while True:
        yield data
        if not decoder.unconsumed_tail:
            return
        data = decoder.decompress(decoder.unconsumed_tail, _DECODE_STEP)


async def _flush_fragment(pending: bytes, exchange: _Exchange, client: Client | None) -> None:
    # Bytes after the last separator when the upstream stopped: passed on and kept as they are.
    if pending:
        exchange.events.append((exchange.offset_ns(), pending))
        if client is not None:
            await client.send_event(pending)


def _bad_gateway(message: str) -> APIError:
    return APIError(HTTPStatus.BAD_GATEWAY, message, "BadGateway")


def _usage_of(payload: dict[str, Any]) -> Any:
    """A body's or event's usage; Responses API events carry it in their response object."""
    response = payload.get("response")
    if "usage" not in payload and isinstance(response, dict):
        return response.get("usage")
    return payload.get("usage")


def _json_object(data: bytes) -> dict[str, Any]:
    # Decoded within the server's bounds (depth, number size): what a client or an upstream sent
    # may be anything, and what is not a JSON object is simply not looked into.
    try:
        return decode_body(data, JSON_MEDIA_TYPE)
    except APIError:
        return {}
