"""``sessions export``, ``import`` and ``import-bench``: sessions to and from files."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..protocol.profiles import UnknownVersion, profile_for
from ..recording.bench_import import (
    BenchImportError,
    bench_exchanges,
    bench_session,
    read_bench_file,
)
from ..recording.store import Store
from ..recording.transfer import (
    ExportReader,
    TransferError,
    atomic_output,
    export_har,
    export_header,
    export_session,
    import_file,
)
from ..recording.transfer import (
    Progress as OnProgress,
)
from .edge import fail, run_on_store
from .options import db_option


class ExportFormat(StrEnum):
    JSONL = "jsonl"
    HAR = "har"


@contextmanager
def progress_bar(description: str, total: int) -> Iterator[OnProgress]:
    """A progress bar of events on stderr, shown only to a person at a terminal."""
    console = Console(stderr=True)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("events"),
        TimeRemainingColumn(),
    )
    with Progress(
        *columns, console=console, transient=True, disable=not console.is_terminal
    ) as progress:
        task = progress.add_task(description, total=total)
        yield lambda events: progress.advance(task, events)


def export(
    name: str,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="File to write (replaced only when complete); default: standard output.",
        ),
    ] = None,
    format: Annotated[
        ExportFormat,
        typer.Option(
            "--format",
            help="jsonl: lossless JSON Lines that `sessions import` and `serve --replay-file` "
            "read back. har: a HAR 1.2 log for browser devtools and HAR viewers, VIEW ONLY: "
            "HAR cannot hold each event's offset, so it cannot be imported or replayed.",
        ),
    ] = ExportFormat.JSONL,
    db: Path = db_option(rich_help_panel=None),
) -> None:
    """Write a session to a file (JSON Lines to import or replay, or HAR to view).

    The JSON Lines export holds every exchange with its request, match keys, status, headers,
    outcome and each event's bytes and offset: import and replay give back the same bytes at
    the same offsets."""
    writer = export_session if format is ExportFormat.JSONL else export_har

    async def run(store: Store) -> int:
        header = await export_header(store, name)
        try:
            with (
                atomic_output(output, sys.stdout.buffer) as out,
                progress_bar(f"Exporting {name}", header.events) as progress,
            ):
                await writer(store, header, out, progress)
        except OSError as exc:
            raise TransferError(f"{output}: {exc.strerror or exc}") from None
        return header.exchanges

    try:
        exchanges = run_on_store(db, run, create=False)
    except TransferError as exc:
        fail(str(exc))
    if output is not None:
        typer.echo(f"Exported session {name!r}: {exchanges} exchanges to {output}.")


def import_session(
    file: Path,
    session: Annotated[
        str | None,
        typer.Option("--session", help="Name to import as; default: the name in the file."),
    ] = None,
    append: Annotated[
        bool,
        typer.Option(
            "--append",
            help="Add the exchanges to the session of that name if it exists, after its own "
            "(e.g. one session from the files of several recorders).",
        ),
    ] = False,
    db: Path = db_option(rich_help_panel=None),
) -> None:
    """Read a session file written by `sessions export` into the database.

    All in one transaction: a truncated or foreign file is refused with the number of its
    first bad line, and nothing of it stays behind."""
    try:
        # A foreign or unreadable file is refused before the database is opened.
        with ExportReader(file) as reader:
            name = session or reader.header.session.name

            async def run(store: Store) -> int:
                with progress_bar(f"Importing {name}", reader.header.events) as progress:
                    return await import_file(
                        store, reader, name=name, append=append, progress=progress
                    )

            count = run_on_store(db, run, create=True)
    except TransferError as exc:
        fail(str(exc))
    typer.echo(f"Imported session {name!r}: {count} exchanges into {db}.")


def import_bench(
    file: Path,
    session: Annotated[str, typer.Option("--session", help="Name of the new session.")],
    vllm_version: Annotated[
        str | None,
        typer.Option(
            "--vllm-version",
            help="The vLLM release the benchmark ran against: recorded with the session, so "
            "replay answers as it (default: none recorded).",
        ),
    ] = None,
    note: Annotated[str | None, typer.Option("--note", help="Free text kept with it.")] = None,
    db: Path = db_option(rich_help_panel=None),
) -> None:
    """Build a timing session from a vllm bench or GuideLLM result file.

    Reads `vllm bench serve --save-result --save-detailed` JSON or a GuideLLM JSON report:
    one streamed exchange per successful request, its chunks at the measured times. Replay it
    with `serve --replay NAME --on-miss profile`: every request gets synthetic text on the
    timing of the imported request nearest in prompt and output length."""
    if vllm_version is not None:
        try:
            profile_for(vllm_version)
        except UnknownVersion as exc:
            fail(str(exc))
    try:
        result = read_bench_file(file)
    except BenchImportError as exc:
        fail(str(exc))
    record = bench_session(session, file, result, version=vllm_version, note=note)

    async def run(store: Store) -> int:
        return await store.import_session(record, bench_exchanges(result, vllm_version))

    count = run_on_store(db, run, create=True)
    skipped = f", {result.failed} failed requests skipped" if result.failed else ""
    typer.echo(
        f"Imported {count} requests of a {result.source} result as session {session!r}{skipped}."
    )
