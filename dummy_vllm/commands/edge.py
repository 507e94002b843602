"""What every command does at its edge: report a refusal as one line, build Settings, open the
store."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import NoReturn, TypeVar

import typer

from ..recording.store import Store, StoreError, migrate
from ..settings import Settings, SettingsError

T = TypeVar("T")


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``Error: message`` on stderr and exit; 2 is for usage, configuration and store
    errors."""
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(code=code)


def settings_or_exit(build: Callable[[], Settings]) -> Settings:
    """Build Settings, or exit with a one-line error instead of a traceback."""
    try:
        return build()
    except SettingsError as exc:
        fail(str(exc))


def run_on_store(
    db: Path,
    action: Callable[[Store], Awaitable[T]],
    *,
    create: bool,
    read_only: bool = False,
    immutable: bool = False,
) -> T:
    """Migrate the database at ``db``, open it and run ``action`` on it; a store failure exits
    with a one-line error. Without ``create`` a missing database is refused: migrating would
    create one, and a typo in --db should not. ``read_only`` neither migrates nor writes (see
    ``Store.open_read_only``, which ``immutable`` is passed to)."""

    async def run() -> T:
        opening = Store.open_read_only(db, immutable=immutable) if read_only else Store.open(db)
        async with await opening as store:
            return await action(store)

    try:
        if not create and not db.is_file():
            raise StoreError(f"{db}: no such database")
        if not read_only:
            migrate(db)
        return asyncio.run(run())
    except StoreError as exc:
        message = str(exc)
    except (sqlite3.Error, OSError) as exc:
        message = f"{db}: {exc}"
    fail(message)


def given_options(ctx: typer.Context, *names: str) -> set[str]:
    """Which of ``names`` the user set (command line or environment), not left at default."""
    given = set()
    for name in names:
        source = ctx.get_parameter_source(name)
        # typer bundles its own click and does not export ParameterSource: compare by name.
        if source is not None and source.name in {"COMMANDLINE", "ENVIRONMENT"}:
            given.add(name)
    return given
