"""SQLite storage of recorded sessions: sessions, their exchanges, and each exchange's SSE events.

Several Sanic workers write to one database at once, so every connection uses WAL, a busy
timeout, and explicit ``BEGIN IMMEDIATE`` transactions: a deferred transaction that later needs
the write lock fails at once with "database is locked" instead of waiting. One exchange, with
all its events, is one transaction, so a killed recorder leaves only whole exchanges behind.

Timing statistics are derived from the events, in milliseconds:

- TTFT is the offset of an exchange's first event from the request's arrival.
- ITL is the gap between consecutive events of an exchange as the client sees them. The final
  ``data: [DONE]`` event is excluded: it carries no token. The usage-only chunk (``choices: []``)
  is included, because telling it apart means parsing every event; vLLM sends it right after
  the last token, so it adds one near-zero gap per exchange.

Percentiles interpolate linearly between the closest ranks.
"""

from __future__ import annotations

import asyncio
import json
import math
import sqlite3
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any

import aiosqlite

from ..protocol.sse import DONE_LINE
from .redact import scrub_secrets, scrub_url

BUSY_TIMEOUT_MS = 10_000
# Marks a file as ours, so a stray SQLite database given as --db is refused, not migrated.
APPLICATION_ID = 0x64766C6D  # "dvlm"

# Each entry upgrades the schema by one version; ``PRAGMA user_version`` counts those applied.
# Statements, not scripts: sqlite3's executescript() would commit the enclosing transaction.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """
        CREATE TABLE sessions (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            created REAL NOT NULL,
            upstream TEXT,
            upstream_models TEXT,
            upstream_version TEXT,
            options TEXT NOT NULL,
            note TEXT
        )
        """,
        """
        CREATE TABLE exchanges (
            id INTEGER PRIMARY KEY,
            session_id INTEGER NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            method TEXT NOT NULL,
            path TEXT NOT NULL,
            request_body BLOB NOT NULL,
            match_key TEXT NOT NULL,
            relaxed_key TEXT NOT NULL,
            request_headers TEXT NOT NULL,
            status INTEGER,
            response_headers TEXT NOT NULL,
            streamed INTEGER NOT NULL,
            response_body BLOB,
            first_byte_ns INTEGER,
            complete_ns INTEGER,
            outcome TEXT NOT NULL CHECK (outcome IN (
                'complete', 'upstream_error', 'upstream_dropped', 'client_aborted',
                'upstream_unreachable'
            )),
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            created REAL NOT NULL,
            UNIQUE (session_id, seq)
        )
        """,
        # Clustered on the replay read order: an exchange's events are one contiguous range.
        """
        CREATE TABLE events (
            exchange_id INTEGER NOT NULL REFERENCES exchanges (id) ON DELETE CASCADE,
            idx INTEGER NOT NULL,
            offset_ns INTEGER NOT NULL,
            raw BLOB NOT NULL,
            PRIMARY KEY (exchange_id, idx)
        ) WITHOUT ROWID
        """,
    ),
    # Exchanges that were answered but could not be stored (disk full, database errors),
    # counted once the database takes writes again.
    ("ALTER TABLE sessions ADD COLUMN lost INTEGER NOT NULL DEFAULT 0",),
)
SCHEMA_VERSION = len(MIGRATIONS)
# What a migrated database holds; a file missing one is refused (damaged, or not ours).
TABLES = frozenset({"sessions", "exchanges", "events"})

_CONNECTION_PRAGMAS = (
    f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}",
    # In WAL mode a process crash cannot lose a committed transaction; only power loss can.
    "PRAGMA synchronous = NORMAL",
    "PRAGMA foreign_keys = ON",
)

_EXCHANGE_COLUMNS = """
    x.id, x.seq, x.method, x.path, x.request_body, x.match_key, x.relaxed_key,
    x.request_headers, x.status, x.response_headers, x.streamed, x.response_body,
    x.first_byte_ns, x.complete_ns, x.outcome, x.prompt_tokens, x.completion_tokens, x.created
"""

_INSERT_EXCHANGE = """
    INSERT INTO exchanges (
        session_id, seq, method, path, request_body, match_key, relaxed_key, request_headers,
        status, response_headers, streamed, response_body, first_byte_ns, complete_ns, outcome,
        prompt_tokens, completion_tokens, created
    ) VALUES (
        :session_id,
        (SELECT COALESCE(MAX(seq), 0) + 1 FROM exchanges WHERE session_id = :session_id),
        :method, :path, :request_body, :match_key, :relaxed_key, :request_headers, :status,
        :response_headers, :streamed, :response_body, :first_byte_ns, :complete_ns, :outcome,
        :prompt_tokens, :completion_tokens, :created
    )
"""

_SESSION_TOTALS = """
    SELECT s.id, s.name, s.created, s.upstream, s.upstream_models, s.upstream_version,
           COUNT(x.id), COALESCE(SUM(x.outcome = 'complete'), 0),
           COALESCE(SUM(x.prompt_tokens), 0), COALESCE(SUM(x.completion_tokens), 0), s.lost
    FROM sessions s LEFT JOIN exchanges x ON x.session_id = s.id
"""


def _event_timings(group: str) -> str:
    """One row per event except [DONE]: ``group`` (an expression on the exchange ``x``), the
    offset, and the gap to the previous event, NULL for an exchange's first."""
    return f"""
        SELECT {group}, e.offset_ns,
               e.offset_ns - LAG(e.offset_ns) OVER (PARTITION BY e.exchange_id ORDER BY e.idx)
        FROM exchanges x JOIN events e ON e.exchange_id = x.id
        WHERE substr(e.raw, 1, :done_len) <> :done
    """


_EVENT_TIMINGS = _event_timings("x.session_id")
_ROUTE_EVENT_TIMINGS = _event_timings("x.method || ' ' || x.path")
_EVENT_CHUNK = 1024


class StoreError(Exception):
    """The database cannot be used: unreadable, not ours, too new, or a refused change."""


class SessionNotFound(StoreError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no session named {name!r}")
        self.name = name


class Outcome(StrEnum):
    COMPLETE = "complete"
    # The upstream answered with an error status.
    UPSTREAM_ERROR = "upstream_error"
    # The upstream closed the connection before the response was complete.
    UPSTREAM_DROPPED = "upstream_dropped"
    CLIENT_ABORTED = "client_aborted"
    UPSTREAM_UNREACHABLE = "upstream_unreachable"


@dataclass(frozen=True, slots=True)
class ExchangeRecord:
    """One proxied request and its response, as the recorder hands it over.

    ``request_body`` and the header maps must already be redacted; ``match_key`` and
    ``relaxed_key`` are computed from the unredacted request (see ``matching``). Offsets are
    nanoseconds from the request's arrival; ``events`` are ``(offset_ns, raw)`` with ``raw``
    the SSE event exactly as received, separator included.
    """

    method: str
    path: str
    request_body: bytes
    match_key: str
    relaxed_key: str
    request_headers: Mapping[str, str]
    # None when no response arrived (``upstream_unreachable``).
    status: int | None
    response_headers: Mapping[str, str]
    streamed: bool
    outcome: Outcome
    # Wall-clock time of the request's arrival, unix seconds.
    created: float
    response_body: bytes | None = None
    first_byte_ns: int | None = None
    complete_ns: int | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    events: Sequence[tuple[int, bytes]] = ()

    def __post_init__(self) -> None:
        # A recorder builds events in a list; freezing it keeps the record immutable.
        object.__setattr__(self, "events", tuple(self.events))


@dataclass(frozen=True, slots=True)
class StoredExchange:
    id: int
    session: str
    # Position in its session, in the order exchanges were committed.
    seq: int
    record: ExchangeRecord


@dataclass(frozen=True, slots=True)
class Percentiles:
    p50: float
    p99: float


@dataclass(frozen=True, slots=True)
class SessionSummary:
    name: str
    created: float
    upstream: str | None
    # None until the upstream has answered /v1/models and /version.
    models: tuple[str, ...] | None
    version: str | None
    exchanges: int
    complete: int
    prompt_tokens: int
    completion_tokens: int
    # In milliseconds; None when the session has no streamed events.
    ttft: Percentiles | None
    itl: Percentiles | None
    # Exchanges answered while recording but not stored (the database refused the write).
    lost: int = 0

    @property
    def failed(self) -> int:
        """Exchanges with any outcome but ``complete``."""
        return self.exchanges - self.complete


@dataclass(frozen=True, slots=True)
class SessionDetail:
    summary: SessionSummary
    options: Mapping[str, Any]
    note: str | None
    outcomes: Mapping[str, int]
    # "METHOD /path" -> exchange count.
    routes: Mapping[str, int]
    # Every sample, sorted, in milliseconds; duration is request arrival to completion.
    ttft_ms: tuple[float, ...]
    itl_ms: tuple[float, ...]
    duration_ms: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A session's own row, without its exchanges: what an export carries and an import
    restores as it was."""

    name: str
    created: float
    upstream: str | None
    models: tuple[str, ...] | None
    version: str | None
    options: Mapping[str, Any]
    note: str | None


@dataclass(frozen=True, slots=True)
class RouteSamples:
    """Every timing sample of one route's complete, successful exchanges, in milliseconds
    (output lengths in tokens), unsorted."""

    ttft_ms: list[float] = field(default_factory=list)
    itl_ms: list[float] = field(default_factory=list)
    e2e_ms: list[float] = field(default_factory=list)
    output_tokens: list[float] = field(default_factory=list)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of non-empty, ascending ``sorted_values``."""
    position = (len(sorted_values) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def migrate(path: Path) -> int:
    """Create or upgrade the database at ``path``; return its schema version.

    Meant for the main process before workers start; safe to run concurrently with itself.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(f"{path}: cannot open database: {exc}") from exc
    try:
        # Refused before anything is written: a foreign file is left exactly as it was (setting
        # WAL mode would already change its header).
        if _schema_version(conn, path) == SCHEMA_VERSION:
            _check_tables(conn, path)
            conn.execute("PRAGMA journal_mode = WAL")
            return SCHEMA_VERSION
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Read again under the write lock: another process may have migrated meanwhile.
            for statements in MIGRATIONS[_schema_version(conn, path) :]:
                for statement in statements:
                    conn.execute(statement)
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: {exc}") from exc
    finally:
        conn.close()
    return SCHEMA_VERSION


def _check_tables(conn: Any, path: Path) -> None:
    names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    missing = TABLES - names
    if missing:
        raise StoreError(f"{path}: damaged database: no table {', '.join(sorted(missing))}")


def _schema_version(conn: sqlite3.Connection, path: Path) -> int:
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    application_id: int = conn.execute("PRAGMA application_id").fetchone()[0]
    if application_id != APPLICATION_ID and (
        version or conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone()
    ):
        raise StoreError(f"{path}: an SQLite database, but not one of dummy-vllm's")
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path}: database schema version {version} is newer than this dummy-vllm "
            f"supports ({SCHEMA_VERSION})"
        )
    return version


class Store:
    """A connection to a migrated database. Open one per worker process.

    Calls may come from concurrent tasks: they are serialised on the connection, because a
    transaction must not interleave with another task's statements.
    """

    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self._conn = conn
        self._lock = asyncio.Lock()
        # Exchanges waiting for the next group commit, and the task writing them.
        self._queue: list[tuple[str, ExchangeRecord, asyncio.Future[int]]] = []
        self._flusher: asyncio.Task[None] | None = None
        # Exchanges answered but not stored, by session, not yet counted in the database.
        self._lost: dict[str, int] = {}
        self.path = path

    @classmethod
    async def open(cls, path: Path) -> Store:
        try:
            conn = await aiosqlite.connect(_existing_file_uri(path), uri=True, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"{path}: cannot open database: {exc}") from exc
        try:
            for pragma in _CONNECTION_PRAGMAS:
                await conn.execute(pragma)
            rows = list(await conn.execute_fetchall("PRAGMA user_version"))
            version = rows[0][0]
            if version != SCHEMA_VERSION:
                raise StoreError(
                    f"{path}: database schema version {version}, this dummy-vllm needs "
                    f"{SCHEMA_VERSION}: migrate() it first"
                )
            rows = list(await conn.execute_fetchall("PRAGMA application_id"))
            if rows[0][0] != APPLICATION_ID:
                raise StoreError(f"{path}: an SQLite database, but not one of dummy-vllm's")
            tables = await conn.execute_fetchall(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
            )
            missing = TABLES - {row[0] for row in tables}
            if missing:
                raise StoreError(f"{path}: damaged database: no table {', '.join(sorted(missing))}")
        except sqlite3.Error as exc:
            await conn.close()
            raise StoreError(f"{path}: {exc}") from exc
        except BaseException:
            await conn.close()
            raise
        return cls(conn, path)

    @classmethod
    async def open_read_only(cls, path: Path, *, immutable: bool = False) -> Store:
        """Open for reading only (SQLite ``mode=ro``), as replay does: nothing is migrated or
        written, so the file may sit on a read-only volume shared by many replicas.

        ``immutable`` promises SQLite that nobody changes the file while it is open
        (``immutable=1``): no locking and no WAL, which a read-only directory without the
        database's ``-shm`` file needs. Changes still in a ``-wal`` file are then not seen.
        """
        uri = _checked_read_only_uri(path, immutable)
        try:
            conn = await aiosqlite.connect(uri, uri=True, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"{path}: cannot open database: {exc}") from exc
        try:
            await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        except BaseException:
            await conn.close()
            raise
        return cls(conn, path)

    async def close(self) -> None:
        """Finish the exchanges still being written, count the lost ones if the database
        takes it now, then close the connection."""
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        if self._lost:
            with suppress(sqlite3.Error):
                async with self._transaction() as conn:
                    counted = await self._count_lost(conn)
                self._forget_lost(counted)
        await self._conn.close()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def ensure_session(
        self,
        name: str,
        *,
        upstream: str | None,
        options: Mapping[str, Any],
        note: str | None = None,
    ) -> int:
        """The id of session ``name``, created if missing.

        An existing session keeps the upstream, options and note it was created with: recording
        into it again appends exchanges. Secret-named options and URL passwords are redacted;
        values that are not JSON are stored as their ``str()``.
        """
        _check_name(name)
        options_json = json.dumps(options, default=str, separators=(",", ":"), ensure_ascii=False)
        async with self._transaction() as conn:
            await conn.execute(
                "INSERT INTO sessions (name, created, upstream, options, note)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING",
                (
                    name,
                    time.time(),
                    None if upstream is None else scrub_url(upstream),
                    scrub_secrets(options_json.encode()).decode(),
                    note,
                ),
            )
            return await self._session_id(conn, name)

    async def update_session_upstream_info(
        self, name: str, *, models: list[str] | None, version: str | None
    ) -> None:
        """Store what the upstream reported; a None argument leaves that field unchanged."""
        models_json = None if models is None else json.dumps(models, ensure_ascii=False)
        async with (
            self._transaction() as conn,
            conn.execute(
                "UPDATE sessions SET upstream_models = COALESCE(?, upstream_models),"
                " upstream_version = COALESCE(?, upstream_version) WHERE name = ?",
                (models_json, version, name),
            ) as cursor,
        ):
            if cursor.rowcount == 0:
                raise SessionNotFound(name)

    async def add_exchange(self, session: str, record: ExchangeRecord) -> int:
        """Append ``record`` to ``session``; return the exchange id once it is committed.

        Exchanges that arrive while a commit is under way are written together in the next
        transaction (group commit): streams that end together wait for one commit each, not for
        one another's. The write is shielded from cancellation: when a client disconnects, Sanic
        cancels the handler, but the exchange it was recording (``client_aborted``) must still be
        stored; ``close()`` waits for it. A failed commit raises in every exchange it held.
        """
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._queue.append((session, record, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush())
        return await asyncio.shield(future)

    def count_lost(self, session: str) -> None:
        """An exchange of ``session`` was answered but could not be stored: counted in the
        session's ``lost`` with the next commit that succeeds."""
        self._lost[session] = self._lost.get(session, 0) + 1

    async def _flush(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                ids = await self._insert_batch(batch)
            except Exception as exc:
                for _, _, future in batch:
                    future.set_exception(exc)
                    # Seen by whoever awaits it; not reported again if the waiter left.
                    future.exception()
                continue
            for (_, _, future), exchange_id in zip(batch, ids, strict=True):
                future.set_result(exchange_id)

    async def list_sessions(self) -> list[SessionSummary]:
        """Every session, oldest first."""
        async with self._transaction("BEGIN") as conn:
            totals = await conn.execute_fetchall(
                _SESSION_TOTALS + " GROUP BY s.id ORDER BY s.created, s.id"
            )
            timings = await conn.execute_fetchall(
                _EVENT_TIMINGS, {"done": DONE_LINE, "done_len": len(DONE_LINE)}
            )
        ttfts: dict[int, list[float]] = {}
        itls: dict[int, list[float]] = {}
        for session_id, offset_ns, gap_ns in timings:
            if gap_ns is None:
                ttfts.setdefault(session_id, []).append(offset_ns / 1e6)
            else:
                itls.setdefault(session_id, []).append(gap_ns / 1e6)
        return [
            _summary(row, sorted(ttfts.get(row[0], ())), sorted(itls.get(row[0], ())))
            for row in totals
        ]

    async def get_session(self, name: str) -> SessionDetail:
        async with self._transaction("BEGIN") as conn:
            rows = list(
                await conn.execute_fetchall(
                    _SESSION_TOTALS + " WHERE s.name = ? GROUP BY s.id", (name,)
                )
            )
            if not rows:
                raise SessionNotFound(name)
            session_id = rows[0][0]
            details = list(
                await conn.execute_fetchall(
                    "SELECT options, note FROM sessions WHERE id = ?", (session_id,)
                )
            )
            outcomes = await conn.execute_fetchall(
                "SELECT outcome, COUNT(*) FROM exchanges WHERE session_id = ?"
                " GROUP BY outcome ORDER BY COUNT(*) DESC, outcome",
                (session_id,),
            )
            routes = await conn.execute_fetchall(
                "SELECT method || ' ' || path, COUNT(*) FROM exchanges WHERE session_id = ?"
                " GROUP BY 1 ORDER BY COUNT(*) DESC, 1",
                (session_id,),
            )
            durations = await conn.execute_fetchall(
                "SELECT complete_ns FROM exchanges"
                " WHERE session_id = ? AND complete_ns IS NOT NULL ORDER BY complete_ns",
                (session_id,),
            )
            timings = await conn.execute_fetchall(
                _EVENT_TIMINGS + " AND x.session_id = :session_id",
                {"done": DONE_LINE, "done_len": len(DONE_LINE), "session_id": session_id},
            )
        ttft = sorted(offset / 1e6 for _, offset, gap in timings if gap is None)
        itl = sorted(gap / 1e6 for _, _, gap in timings if gap is not None)
        options_json, note = details[0]
        return SessionDetail(
            summary=_summary(rows[0], ttft, itl),
            options=json.loads(options_json),
            note=note,
            outcomes={outcome: count for outcome, count in outcomes},
            routes={route: count for route, count in routes},
            ttft_ms=tuple(ttft),
            itl_ms=tuple(itl),
            duration_ms=tuple(ns / 1e6 for (ns,) in durations),
        )

    async def delete_session(self, name: str) -> None:
        """Delete the session with its exchanges and events."""
        async with (
            self._transaction() as conn,
            conn.execute("DELETE FROM sessions WHERE name = ?", (name,)) as cursor,
        ):
            if cursor.rowcount == 0:
                raise SessionNotFound(name)

    async def rename_session(self, old: str, new: str) -> None:
        _check_name(new)
        async with self._transaction() as conn:
            try:
                async with conn.execute(
                    "UPDATE sessions SET name = ? WHERE name = ?", (new, old)
                ) as cursor:
                    renamed = cursor.rowcount
            except sqlite3.IntegrityError as exc:
                raise StoreError(f"a session named {new!r} already exists") from exc
            if renamed == 0:
                raise SessionNotFound(old)

    async def load_exchanges(self, names: Sequence[str]) -> list[StoredExchange]:
        """Every exchange of the named sessions with its events: by session in the given
        order, then by ``seq``."""
        exchanges: list[StoredExchange] = []
        async with self._transaction("BEGIN") as conn:
            for name in dict.fromkeys(names):
                session_id = await self._session_id(conn, name)
                rows = await conn.execute_fetchall(
                    f"SELECT {_EXCHANGE_COLUMNS} FROM exchanges x"
                    " WHERE x.session_id = ? ORDER BY x.seq",
                    (session_id,),
                )
                event_rows = await conn.execute_fetchall(
                    "SELECT e.exchange_id, e.offset_ns, e.raw"
                    " FROM exchanges x JOIN events e ON e.exchange_id = x.id"
                    " WHERE x.session_id = ? ORDER BY x.seq, e.idx",
                    (session_id,),
                )
                events: dict[int, list[tuple[int, bytes]]] = {}
                for exchange_id, offset_ns, raw in event_rows:
                    events.setdefault(exchange_id, []).append((offset_ns, raw))
                exchanges.extend(_stored_exchange(name, row, events) for row in rows)
        return exchanges

    async def session_record(self, name: str) -> tuple[SessionRecord, int, int]:
        """The session's own row, with its numbers of exchanges and of events."""
        async with self._transaction("BEGIN") as conn:
            rows = list(
                await conn.execute_fetchall(
                    "SELECT s.name, s.created, s.upstream, s.upstream_models,"
                    " s.upstream_version, s.options, s.note,"
                    " (SELECT COUNT(*) FROM exchanges x WHERE x.session_id = s.id),"
                    " (SELECT COUNT(*) FROM exchanges x JOIN events e ON e.exchange_id = x.id"
                    "  WHERE x.session_id = s.id)"
                    " FROM sessions s WHERE s.name = ?",
                    (name,),
                )
            )
        if not rows:
            raise SessionNotFound(name)
        name, created, upstream, models, version, options, note, exchanges, events = rows[0]
        record = SessionRecord(
            name=name,
            created=created,
            upstream=upstream,
            models=None if models is None else tuple(json.loads(models)),
            version=version,
            options=json.loads(options),
            note=note,
        )
        return record, exchanges, events

    async def stream_exchanges(self, name: str) -> AsyncGenerator[StoredExchange, None]:
        """The session's exchanges with their events, one at a time in ``seq`` order.

        Rows are read through cursors in one read transaction, so memory holds one exchange
        however long the session is. The connection is taken until the iteration ends: close
        an unfinished one (``contextlib.aclosing``).
        """
        async with self._transaction("BEGIN") as conn:
            session_id = await self._session_id(conn, name)
            async with (
                conn.execute(
                    f"SELECT {_EXCHANGE_COLUMNS} FROM exchanges x"
                    " WHERE x.session_id = ? ORDER BY x.seq",
                    (session_id,),
                ) as exchange_rows,
                # The same order as the exchanges: both walk the (session_id, seq) index.
                conn.execute(
                    "SELECT e.exchange_id, e.offset_ns, e.raw"
                    " FROM exchanges x JOIN events e ON e.exchange_id = x.id"
                    " WHERE x.session_id = ? ORDER BY x.seq, e.idx",
                    (session_id,),
                ) as event_rows,
            ):
                # Events are small and many: fetch them in larger chunks than exchanges.
                event_rows.iter_chunk_size = _EVENT_CHUNK
                events = aiter(event_rows)
                ahead = await anext(events, None)
                async for row in exchange_rows:
                    own: list[tuple[int, bytes]] = []
                    while ahead is not None and ahead[0] == row[0]:
                        own.append((ahead[1], ahead[2]))
                        ahead = await anext(events, None)
                    yield _stored_exchange(name, row, {row[0]: own})

    async def import_session(
        self, session: SessionRecord, exchanges: Iterable[ExchangeRecord], *, append: bool = False
    ) -> int:
        """Store ``session`` and its ``exchanges`` in one transaction; return how many
        exchanges were written.

        ``exchanges`` is consumed lazily, so a file can stream through; whatever it raises
        rolls everything back. A new session keeps the creation time, upstream, options and
        note it is given, as they were. An existing name is refused unless ``append``: then
        the exchanges follow that session's own, and it keeps its own details.
        """
        _check_name(session.name)
        count = 0
        async with self._transaction() as conn:
            existing = list(
                await conn.execute_fetchall(
                    "SELECT id FROM sessions WHERE name = ?", (session.name,)
                )
            )
            if existing and not append:
                raise StoreError(f"a session named {session.name!r} already exists")
            if existing:
                session_id: int = existing[0][0]
            else:
                row = await conn.execute_insert(
                    "INSERT INTO sessions (name, created, upstream, upstream_models,"
                    " upstream_version, options, note) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        session.name,
                        session.created,
                        session.upstream,
                        None if session.models is None else json.dumps(list(session.models)),
                        session.version,
                        json.dumps(session.options, separators=(",", ":"), ensure_ascii=False),
                        session.note,
                    ),
                )
                assert row is not None  # execute_insert always selects last_insert_rowid()
                session_id = row[0]
            for record in exchanges:
                await _write_exchange(conn, session_id, record)
                count += 1
        return count

    async def route_samples(self, name: str) -> dict[str, RouteSamples]:
        """Per "METHOD /path", the timing samples of the session's complete exchanges that
        were answered below status 400 (errors and aborted requests would blur the latency
        clients saw). Output lengths are the usage's ``completion_tokens``, where reported."""
        samples: dict[str, RouteSamples] = {}
        where = "x.session_id = :session_id AND x.outcome = 'complete' AND x.status < 400"
        async with self._transaction("BEGIN") as conn:
            session_id = await self._session_id(conn, name)
            exchanges = await conn.execute_fetchall(
                "SELECT x.method || ' ' || x.path, x.complete_ns, x.completion_tokens"
                f" FROM exchanges x WHERE {where} ORDER BY x.seq",
                {"session_id": session_id},
            )
            timings = await conn.execute_fetchall(
                _ROUTE_EVENT_TIMINGS + f" AND {where}",
                {"done": DONE_LINE, "done_len": len(DONE_LINE), "session_id": session_id},
            )
        for route, complete_ns, completion_tokens in exchanges:
            route_samples = samples.setdefault(route, RouteSamples())
            if complete_ns is not None:
                route_samples.e2e_ms.append(complete_ns / 1e6)
            if completion_tokens is not None:
                route_samples.output_tokens.append(completion_tokens)
        for route, offset_ns, gap_ns in timings:
            route_samples = samples.setdefault(route, RouteSamples())
            if gap_ns is None:
                route_samples.ttft_ms.append(offset_ns / 1e6)
            else:
                route_samples.itl_ms.append(gap_ns / 1e6)
        return samples

    async def _insert_batch(
        self, batch: Sequence[tuple[str, ExchangeRecord, asyncio.Future[int]]]
    ) -> list[int]:
        ids = []
        async with self._transaction() as conn:
            sessions: dict[str, int] = {}
            for session, record, _ in batch:
                if session not in sessions:
                    sessions[session] = await self._session_id(conn, session)
                ids.append(await _write_exchange(conn, sessions[session], record))
            counted = await self._count_lost(conn)
        self._forget_lost(counted)
        return ids

    async def _count_lost(self, conn: aiosqlite.Connection) -> dict[str, int]:
        """Add the lost exchanges counted so far to their sessions, in the caller's
        transaction; return them, for ``_forget_lost`` once it committed."""
        counted = dict(self._lost)
        for session, count in counted.items():
            await conn.execute(
                "UPDATE sessions SET lost = lost + ? WHERE name = ?", (count, session)
            )
        return counted

    def _forget_lost(self, counted: Mapping[str, int]) -> None:
        for session, count in counted.items():
            left = self._lost.pop(session, 0) - count
            if left:
                self._lost[session] = left

    @staticmethod
    async def _session_id(conn: aiosqlite.Connection, name: str) -> int:
        rows = list(await conn.execute_fetchall("SELECT id FROM sessions WHERE name = ?", (name,)))
        if not rows:
            raise SessionNotFound(name)
        session_id: int = rows[0][0]
        return session_id

    @asynccontextmanager
    async def _transaction(
        self, begin: str = "BEGIN IMMEDIATE"
    ) -> AsyncIterator[aiosqlite.Connection]:
        """A transaction; ``BEGIN`` for a consistent read, ``BEGIN IMMEDIATE`` for a write."""
        async with self._lock:
            await self._conn.execute(begin)
            try:
                yield self._conn
                await self._conn.execute("COMMIT")
            except BaseException:
                # Fails only when the COMMIT itself went through before a cancellation.
                with suppress(sqlite3.OperationalError):
                    await self._conn.execute("ROLLBACK")
                raise


async def _write_exchange(
    conn: aiosqlite.Connection, session_id: int, record: ExchangeRecord
) -> int:
    """Insert ``record`` as the session's next exchange, inside the caller's transaction."""
    row = await conn.execute_insert(
        _INSERT_EXCHANGE,
        {
            "session_id": session_id,
            "method": record.method,
            "path": record.path,
            "request_body": record.request_body,
            "match_key": record.match_key,
            "relaxed_key": record.relaxed_key,
            "request_headers": _json(record.request_headers),
            "status": record.status,
            "response_headers": _json(record.response_headers),
            "streamed": record.streamed,
            "response_body": record.response_body,
            "first_byte_ns": record.first_byte_ns,
            "complete_ns": record.complete_ns,
            "outcome": str(record.outcome),
            "prompt_tokens": record.prompt_tokens,
            "completion_tokens": record.completion_tokens,
            "created": record.created,
        },
    )
    assert row is not None  # execute_insert always selects last_insert_rowid()
    exchange_id: int = row[0]
    await conn.executemany(
        "INSERT INTO events (exchange_id, idx, offset_ns, raw) VALUES (?, ?, ?, ?)",
        [
            (exchange_id, index, offset_ns, raw)
            for index, (offset_ns, raw) in enumerate(record.events)
        ],
    )
    return exchange_id


def _checked_read_only_uri(path: Path, immutable: bool) -> str:
    """The read-only URI of ``path``, once a plain connection has found it to be a database of
    ours at the current schema: a foreign file is refused before anything else opens it."""
    if not path.is_file():
        raise StoreError(f"{path}: no such database")
    uri = f"{path.absolute().as_uri()}?mode=ro" + ("&immutable=1" if immutable else "")
    try:
        check = sqlite3.connect(uri, uri=True)
        try:
            version = _schema_version(check, path)
        finally:
            check.close()
    except sqlite3.Error as exc:
        # Without the -shm file beside it, a WAL database opens read-only only as immutable.
        hint = "" if immutable else " (a read-only volume needs serve --db-immutable)"
        raise StoreError(f"{path}: cannot open database: {exc}{hint}") from exc
    if version != SCHEMA_VERSION:
        raise StoreError(
            f"{path}: database schema version {version}, this dummy-vllm reads "
            f"{SCHEMA_VERSION}; a writable command (sessions list) upgrades it"
        )
    return uri


def _existing_file_uri(path: Path) -> str:
    # mode=rw: a missing file is an error, not a new empty database.
    return f"{path.absolute().as_uri()}?mode=rw"


def _check_name(name: str) -> None:
    if not name.strip():
        raise StoreError("a session name must not be empty")


def _json(value: Mapping[str, str]) -> str:
    return json.dumps(dict(value), separators=(",", ":"), ensure_ascii=False)


def _summary(row: Any, ttft: list[float], itl: list[float]) -> SessionSummary:
    _, name, created, upstream, models_json, version, count, complete, prompt, completion, lost = (
        row
    )
    return SessionSummary(
        name=name,
        created=created,
        upstream=upstream,
        models=None if models_json is None else tuple(json.loads(models_json)),
        version=version,
        exchanges=count,
        complete=complete,
        prompt_tokens=prompt,
        completion_tokens=completion,
        ttft=_percentiles(ttft),
        itl=_percentiles(itl),
        lost=lost,
    )


def _percentiles(sorted_values: Sequence[float]) -> Percentiles | None:
    if not sorted_values:
        return None
    return Percentiles(percentile(sorted_values, 50), percentile(sorted_values, 99))


def _stored_exchange(
    session: str, row: Any, events: Mapping[int, list[tuple[int, bytes]]]
) -> StoredExchange:
    (
        exchange_id,
        seq,
        method,
        path,
        request_body,
        match_key,
        relaxed_key,
        request_headers,
        status,
        response_headers,
        streamed,
        response_body,
        first_byte_ns,
        complete_ns,
        outcome,
        prompt_tokens,
        completion_tokens,
        created,
    ) = row
    record = ExchangeRecord(
        method=method,
        path=path,
        request_body=request_body,
        match_key=match_key,
        relaxed_key=relaxed_key,
        request_headers=json.loads(request_headers),
        status=status,
        response_headers=json.loads(response_headers),
        streamed=bool(streamed),
        outcome=Outcome(outcome),
        created=created,
        response_body=response_body,
        first_byte_ns=first_byte_ns,
        complete_ns=complete_ns,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        events=events.get(exchange_id, ()),
    )
    return StoredExchange(id=exchange_id, session=session, seq=seq, record=record)
