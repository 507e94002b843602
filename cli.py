"""dummy-vllm command line: serve, record and manage sessions."""

from __future__ import annotations

import typer

from dummy_vllm.commands.record import record
from dummy_vllm.commands.serve import serve
from dummy_vllm.commands.sessions import sessions_app

app = typer.Typer(
    name="dummy-vllm",
    help="A mock vLLM OpenAI-compatible server: synthetic, record and replay modes.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def main() -> None:
    """A mock vLLM OpenAI-compatible server: synthetic, record and replay modes."""


app.command()(serve)
app.command()(record)
app.add_typer(sessions_app, name="sessions")

if __name__ == "__main__":
    app()
