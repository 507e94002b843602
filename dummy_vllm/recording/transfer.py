"""Sessions as files: a lossless JSON Lines export that import reads back, and a HAR view.

The export format, version 1 (``FORMAT_VERSION``), is UTF-8 JSON Lines:

- Line 1, the header: ``{"dummy_vllm_session": 1, "name", "created", "upstream",
  "models", "vllm_version", "options", "note", "exchanges", "events"}`` (the session's own row
  as stored, and how many exchanges and events follow).
- One line per exchange, in the session's order: ``{"method", "path", "created",
  "request_headers", "request_body", "match_key", "relaxed_key", "status",
  "response_headers", "streamed", "response_body", "first_byte_ns", "complete_ns", "outcome",
  "prompt_tokens", "completion_tokens", "events"}`` with ``events`` a list of
  ``[offset_ns, raw]``.

Bytes (bodies and each event's raw SSE bytes, separator included) are written as a JSON string
when they are valid UTF-8, which recorded traffic is, so a file stays readable and diffable;
any other bytes are written as ``{"base64": "..."}``. Either way they decode to exactly the
bytes stored. The match keys are kept as recorded: they were computed from the request before
secrets were scrubbed from it, and cannot be recomputed from the stored body.

Reading checks every line and names the first bad one. The header's counts tell a file cut
at a line boundary from a whole one.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import aclosing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from .store import ExchangeRecord, Outcome, SessionRecord, Store, StoredExchange

FORMAT_VERSION = 1
# The header's key that marks a file as ours; its value is the format version.
MARKER = "dummy_vllm_session"
HAR_PLACEHOLDER_URL = "http://dummy-vllm.invalid"

# Called with the number of events just written or read.
Progress = Callable[[int], None]


class TransferError(Exception):
    """A file that cannot be imported: foreign, malformed, truncated or too new."""


@dataclass(frozen=True, slots=True)
class ExportHeader:
    session: SessionRecord
    exchanges: int
    events: int


def _no_progress(_: int) -> None:
    pass


# --- bytes ------------------------------------------------------------------------------------


def encode_bytes(data: bytes) -> str | dict[str, str]:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(data).decode("ascii")}


def _decode_bytes(value: Any) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, dict) and set(value) == {"base64"} and isinstance(value["base64"], str):
        try:
            return base64.b64decode(value["base64"], validate=True)
        except binascii.Error as exc:
            raise ValueError(f"bad base64: {exc}") from None
    raise ValueError("expected a string or {'base64': ...}")


# --- writing ----------------------------------------------------------------------------------


def _dumps(value: Mapping[str, Any]) -> bytes:
    return (json.dumps(value, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def header_line(header: ExportHeader) -> bytes:
    session = header.session
    return _dumps(
        {
            MARKER: FORMAT_VERSION,
            "name": session.name,
            "created": session.created,
            "upstream": session.upstream,
            "models": None if session.models is None else list(session.models),
            "vllm_version": session.version,
            "options": dict(session.options),
            "note": session.note,
            "exchanges": header.exchanges,
            "events": header.events,
        }
    )


def exchange_line(record: ExchangeRecord) -> bytes:
    return _dumps(
        {
            "method": record.method,
            "path": record.path,
            "created": record.created,
            "request_headers": dict(record.request_headers),
            "request_body": encode_bytes(record.request_body),
            "match_key": record.match_key,
            "relaxed_key": record.relaxed_key,
            "status": record.status,
            "response_headers": dict(record.response_headers),
            "streamed": record.streamed,
            "response_body": None
            if record.response_body is None
            else encode_bytes(record.response_body),
            "first_byte_ns": record.first_byte_ns,
            "complete_ns": record.complete_ns,
            "outcome": str(record.outcome),
            "prompt_tokens": record.prompt_tokens,
            "completion_tokens": record.completion_tokens,
            "events": [[offset, encode_bytes(raw)] for offset, raw in record.events],
        }
    )


@contextmanager
def atomic_output(path: Path | None, stdout: IO[bytes]) -> Iterator[IO[bytes]]:
    """``stdout`` when ``path`` is None; otherwise a file beside ``path`` that replaces it
    only once everything was written, so a failed export leaves no partial file."""
    if path is None:
        yield stdout
        return
    handle, scratch = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            yield out
        os.replace(scratch, path)
    except BaseException:
        Path(scratch).unlink(missing_ok=True)
        raise


async def export_header(store: Store, name: str) -> ExportHeader:
    session, exchanges, events = await store.session_record(name)
    return ExportHeader(session, exchanges, events)


async def export_session(
    store: Store, header: ExportHeader, out: IO[bytes], progress: Progress = _no_progress
) -> None:
    """Write the session of ``header`` as JSON Lines, one exchange in memory at a time."""
    out.write(header_line(header))
    async with aclosing(store.stream_exchanges(header.session.name)) as exchanges:
        async for exchange in exchanges:
            out.write(exchange_line(exchange.record))
            progress(len(exchange.record.events))


# --- reading ----------------------------------------------------------------------------------


class ExportReader:
    """An export file, opened and its header checked; ``records()`` streams the exchanges.

    Every error is a TransferError naming the file and the line.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._file = path.open("rb")
        except OSError as exc:
            raise TransferError(f"{path}: {exc.strerror or exc}") from None
        try:
            self.header = self._read_header()
        except BaseException:
            self._file.close()
            raise

    def __enter__(self) -> ExportReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._file.close()

    def _error(self, line: int, message: str) -> TransferError:
        return TransferError(f"{self.path}: line {line}: {message}")

    def _parse(self, number: int, line: bytes) -> Any:
        try:
            return json.loads(line)
        except UnicodeDecodeError:
            raise self._error(number, "not UTF-8 text") from None
        except ValueError:
            cut = "" if line.endswith(b"\n") else " (the file is cut short)"
            raise self._error(number, f"not valid JSON{cut}") from None

    def _read_header(self) -> ExportHeader:
        first = self._file.readline()
        foreign = self._error(1, "not a dummy-vllm session export")
        if not first.strip():
            raise foreign
        try:
            header = self._parse(1, first)
        except TransferError:
            raise foreign from None
        if not isinstance(header, dict) or MARKER not in header:
            raise foreign
        version = header[MARKER]
        if not _is_int(version) or version < 1:
            raise self._error(1, f"bad format version {version!r}")
        if version > FORMAT_VERSION:
            raise self._error(
                1,
                f"export format version {version} is newer than this dummy-vllm reads "
                f"({FORMAT_VERSION})",
            )
        try:
            fields = _Fields(header)
            models = fields.optional("models", list)
            session = SessionRecord(
                name=fields.get("name", str),
                created=fields.number("created"),
                upstream=fields.optional("upstream", str),
                models=None if models is None else tuple(str(model) for model in models),
                version=fields.optional("vllm_version", str),
                options=fields.get("options", dict),
                note=fields.optional("note", str),
            )
            return ExportHeader(session, fields.count("exchanges"), fields.count("events"))
        except ValueError as exc:
            raise self._error(1, str(exc)) from None

    def records(self, progress: Progress = _no_progress) -> Iterator[ExchangeRecord]:
        """Each exchange in file order; the counts are checked when the file ends."""
        expected = self.header.exchanges
        count = events = 0
        number = 1
        for number, line in enumerate(self._file, start=2):
            if count == expected:
                if not line.strip():
                    continue  # a trailing blank line is harmless
                raise self._error(number, f"more exchanges than the header's {expected}")
            value = self._parse(number, line)
            try:
                record = _exchange(value)
            except ValueError as exc:
                raise self._error(number, str(exc)) from None
            count += 1
            events += len(record.events)
            progress(len(record.events))
            yield record
        if count < expected:
            raise self._error(
                number + 1, f"the file ends after {count} of {expected} exchanges (cut short)"
            )
        if events != self.header.events:
            raise self._error(number, f"{events} events, but the header says {self.header.events}")


def load_export(path: Path) -> tuple[SessionRecord, list[StoredExchange]]:
    """A whole export file in memory, as replay serves it."""
    with ExportReader(path) as reader:
        name = reader.header.session.name
        exchanges = [
            StoredExchange(id=seq, session=name, seq=seq, record=record)
            for seq, record in enumerate(reader.records(), start=1)
        ]
    return reader.header.session, exchanges


def check_export(path: Path) -> ExportHeader:
    """Read ``path`` through without keeping it; its header if every line is good."""
    with ExportReader(path) as reader:
        for _ in reader.records():
            pass
    return reader.header


async def import_file(
    store: Store,
    reader: ExportReader,
    *,
    name: str | None = None,
    append: bool = False,
    progress: Progress = _no_progress,
) -> int:
    """Import ``reader``'s session (renamed to ``name`` if given) in one transaction."""
    session = reader.header.session
    if name is not None:
        session = SessionRecord(
            name,
            session.created,
            session.upstream,
            session.models,
            session.version,
            session.options,
            session.note,
        )
    return await store.import_session(session, reader.records(progress), append=append)


class _Fields:
    """Typed access to one line's object; a wrong or missing field is a ValueError."""

    def __init__(self, value: Any) -> None:
        if not isinstance(value, dict):
            raise ValueError("expected a JSON object")
        self.value: dict[str, Any] = value

    def get(self, key: str, kind: type) -> Any:
        if key not in self.value:
            raise ValueError(f"missing {key!r}")
        value = self.value[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ValueError(f"{key!r} must be {kind.__name__}, got {_kind(value)}")
        return value

    def optional(self, key: str, kind: type) -> Any:
        return None if self.value.get(key) is None else self.get(key, kind)

    def number(self, key: str) -> float:
        value = self.value.get(key)
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ValueError(f"{key!r} must be a number, got {_kind(value)}")
        return float(value)

    def count(self, key: str) -> int:
        value: int = self.get(key, int)
        if value < 0:
            raise ValueError(f"{key!r} must be >= 0")
        return value

    def optional_count(self, key: str) -> int | None:
        return None if self.value.get(key) is None else self.count(key)

    def headers(self, key: str) -> dict[str, str]:
        value: dict[str, Any] = self.get(key, dict)
        if not all(isinstance(item, str) for item in value.values()):
            raise ValueError(f"{key!r} must map names to strings")
        return value

    def raw(self, key: str) -> bytes:
        try:
            return _decode_bytes(self.value.get(key))
        except ValueError as exc:
            raise ValueError(f"{key!r}: {exc}") from None


def _exchange(value: Any) -> ExchangeRecord:
    fields = _Fields(value)
    outcome = fields.get("outcome", str)
    if outcome not in Outcome.__members__.values():
        raise ValueError(f"unknown outcome {outcome!r}")
    events = []
    for index, event in enumerate(fields.get("events", list)):
        if not (isinstance(event, list) and len(event) == 2 and _is_int(event[0])):
            raise ValueError(f"event {index}: expected [offset_ns, raw]")
        try:
            events.append((event[0], _decode_bytes(event[1])))
        except ValueError as exc:
            raise ValueError(f"event {index}: {exc}") from None
    status = fields.optional("status", int)
    return ExchangeRecord(
        method=fields.get("method", str),
        path=fields.get("path", str),
        request_body=fields.raw("request_body"),
        match_key=fields.get("match_key", str),
        relaxed_key=fields.get("relaxed_key", str),
        request_headers=fields.headers("request_headers"),
        status=status,
        response_headers=fields.headers("response_headers"),
        streamed=fields.get("streamed", bool),
        outcome=Outcome(outcome),
        created=fields.number("created"),
        response_body=None
        if fields.value.get("response_body") is None
        else fields.raw("response_body"),
        first_byte_ns=fields.optional_count("first_byte_ns"),
        complete_ns=fields.optional_count("complete_ns"),
        prompt_tokens=fields.optional_count("prompt_tokens"),
        completion_tokens=fields.optional_count("completion_tokens"),
        events=events,
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


# --- HAR --------------------------------------------------------------------------------------


async def export_har(
    store: Store, header: ExportHeader, out: IO[bytes], progress: Progress = _no_progress
) -> None:
    """Write the session as a HAR 1.2 log, streamed entry by entry. For viewing only: a HAR
    entry has one body and three timings, not the offset of every event."""
    session = header.session
    base = (session.upstream or HAR_PLACEHOLDER_URL).rstrip("/")
    log_head = {
        "version": "1.2",
        "creator": {"name": "dummy-vllm", "version": _package_version()},
        "comment": f"dummy-vllm session {session.name!r}: view only, event offsets are not "
        "kept; use the JSON Lines export to move a session",
    }
    # The log object is written open, its entries streamed into it, then closed.
    head = json.dumps({"log": log_head}, ensure_ascii=False).removesuffix("}}")
    out.write(head.encode("utf-8") + b', "entries": [\n')
    first = True
    async with aclosing(store.stream_exchanges(session.name)) as exchanges:
        async for exchange in exchanges:
            if not first:
                out.write(b",\n")
            first = False
            entry = har_entry(base, exchange.record)
            out.write(json.dumps(entry, ensure_ascii=False).encode("utf-8"))
            progress(len(exchange.record.events))
    out.write(b"\n]}}\n")


def har_entry(base: str, record: ExchangeRecord) -> dict[str, Any]:
    first_byte_ms = (record.first_byte_ns or 0) / 1e6
    complete_ms = max((record.complete_ns or 0) / 1e6, first_byte_ms)
    body = (
        b"".join(raw for _, raw in record.events)
        if record.streamed
        else (record.response_body or b"")
    )
    content: dict[str, Any] = {
        "size": len(body),
        "mimeType": _header(record.response_headers, "content-type")
        or ("text/event-stream" if record.streamed else "application/json"),
    }
    text = encode_bytes(body)
    if isinstance(text, str):
        content["text"] = text
    else:
        content["text"], content["encoding"] = text["base64"], "base64"
    status = record.status or 0
    return {
        "startedDateTime": datetime.fromtimestamp(record.created, UTC).isoformat(),
        "time": complete_ms,
        "request": {
            "method": record.method,
            "url": base + record.path,
            "httpVersion": "HTTP/1.1",
            "cookies": [],
            "headers": _har_headers(record.request_headers),
            "queryString": [],
            "postData": {
                "mimeType": _header(record.request_headers, "content-type") or "application/json",
                "text": record.request_body.decode("utf-8", errors="replace"),
            },
            "headersSize": -1,
            "bodySize": len(record.request_body),
        },
        "response": {
            "status": status,
            "statusText": _status_text(status),
            "httpVersion": "HTTP/1.1",
            "cookies": [],
            "headers": _har_headers(record.response_headers),
            "content": content,
            "redirectURL": "",
            "headersSize": -1,
            "bodySize": len(body),
        },
        "cache": {},
        "timings": {"send": 0, "wait": first_byte_ms, "receive": complete_ms - first_byte_ms},
        "comment": f"outcome: {record.outcome}",
    }


def _har_headers(headers: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"name": name, "value": value} for name, value in headers.items()]


def _header(headers: Mapping[str, str], name: str) -> str | None:
    return next((value for key, value in headers.items() if key.lower() == name), None)


def _status_text(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _package_version() -> str:
    try:
        return version("dummy-vllm")
    except PackageNotFoundError:  # run from a checkout, not installed
        return "unknown"
