"""Reading back what a recorder stored, for the tests that drive one."""

from __future__ import annotations

import asyncio
from pathlib import Path

from dummy_vllm.recording.store import Store, StoredExchange

from ..conftest import wait_until


def load(db: Path, session: str) -> list[StoredExchange]:
    async def read() -> list[StoredExchange]:
        async with await Store.open(db) as store:
            return await store.load_exchanges([session])

    return asyncio.run(read())


def exchange_for(db: Path, marker: str, session: str) -> StoredExchange:
    """The one exchange whose request carries ``marker``, waiting for it: the recorder writes
    after its client got the answer, so a fast client can look before the write."""

    def found() -> list[StoredExchange]:
        return [x for x in load(db, session) if marker.encode() in x.record.request_body]

    (exchange,) = wait_until(found, f"the exchange carrying {marker!r} in session {session!r}")
    return exchange
