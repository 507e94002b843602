"""What vLLM's reasoning and tool parsers make of each generated token, per era.

An agent-style answer is laid out as tokens: reasoning (before the ``</think>`` marker), then
either prose or tool-call text in the syntax the answering path uses. ``stream_deltas`` gives
the delta each token streams as (``None``: the parser holds it back, no event), and
``message_of`` the non-streamed message, as vLLM's serving layer builds them
(``notes/agent-requests.md`` §2 and §5):

* named ``tool_choice`` up to 0.23: the arguments are guided JSON, every token streams as an
  argument fragment (the first with id, type and name; ``index`` is the choice's);
* ``"required"`` up to 0.23: a JSON array ``[{"name": ..., "parameters": ...}]``; only the
  ``parameters`` text streams, later fragments with ``"name": null``;
* ``"auto"`` (and, from 0.24, named and required too): Hermes ``<tool_call>`` blocks; the name
  streams alone once complete, then the argument text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from ..engine.tokenizer import TOOL_CALL_END, TOOL_CALL_START
from ..engine.tools import ToolCall
from .profiles import Profile


class ToolStyle(StrEnum):
    NAMED_JSON = "named-json"
    REQUIRED_JSON = "required-json"
    PARSED = "parsed"


@dataclass(frozen=True, slots=True)
class ToolDelta:
    index: int
    id: str | None = None
    name: str | None = None
    arguments: str | None = None
    # "required" fragments carry an explicit "name": null.
    null_name: bool = False


@dataclass(frozen=True, slots=True)
class Delta:
    """One delta; ``None`` fields are absent keys (the wire adds the era's nulls)."""

    content: str | None = None
    reasoning: str | None = None
    tools: tuple[ToolDelta, ...] = ()


EMPTY_DELTA = Delta()


@dataclass(frozen=True, slots=True)
class CallSpan:
    """A tool call inside the answer text, by character offsets."""

    id: str
    name: str
    arguments: str
    name_end: int
    args_start: int
    args_end: int


@dataclass(frozen=True, slots=True)
class AgentMessage:
    """A non-streamed message's parts (content ``None`` is JSON null)."""

    content: str | None
    reasoning: str | None
    # (id, name, arguments) of each call.
    tool_calls: tuple[tuple[str, str, str], ...]


@dataclass(frozen=True, slots=True)
class Layout:
    """How one choice's tokens divide: ``reasoning`` tokens, ``hidden`` marker tokens, then
    the answer (prose, or tool calls in ``style``)."""

    reasoning: int
    hidden: int
    style: ToolStyle | None = None
    calls: tuple[CallSpan, ...] = ()
    # Reasoning is split out (a reasoning parser runs and the request allows it).
    reasoning_parsed: bool = False
    # The calls answer a named or "required" tool_choice (their content is "", not null).
    forced: bool = False


def tool_text(
    style: ToolStyle, calls: Sequence[ToolCall], ids: Sequence[str]
) -> tuple[str, tuple[CallSpan, ...]]:
    """The answer text that carries ``calls`` in ``style``, and where each call sits in it."""
    text = ""
    spans: list[CallSpan] = []
    for number, (call, call_id) in enumerate(zip(calls, ids, strict=True)):
        if style is ToolStyle.NAMED_JSON:
            head, tail = "", ""
        elif style is ToolStyle.REQUIRED_JSON:
            head = ("[" if number == 0 else ", ") + f'{{"name": "{call.name}", "parameters": '
            tail = "}" + ("]" if number == len(calls) - 1 else "")
        else:
            head = ("\n" if number else "") + (
                f'{TOOL_CALL_START}\n{{"name": "{call.name}", "arguments": '
            )
            tail = f"}}\n{TOOL_CALL_END}"
        name_end = len(text) + head.index('", ') + 1 if call.name and head else len(text)
        start = len(text) + len(head)
        text += head + call.arguments + tail
        spans.append(
            CallSpan(
                call_id, call.name, call.arguments, name_end, start, start + len(call.arguments)
            )
        )
    return text, tuple(spans)


def stream_deltas(
    pieces: Sequence[str], layout: Layout, choice_index: int, profile: Profile
) -> list[Delta | None]:
    """The delta of each token; the last token always yields one (it carries the finish)."""
    deltas: list[Delta | None] = []
    answer_start = layout.reasoning + layout.hidden
    for position, piece in enumerate(pieces[:answer_start]):
        if position < layout.reasoning:
            deltas.append(
                Delta(reasoning=piece) if layout.reasoning_parsed else Delta(content=piece)
            )
        else:
            deltas.append(None if layout.reasoning_parsed else Delta(content=piece))
    answer = pieces[answer_start:]
    if layout.style is None:
        deltas += [Delta(content=piece) for piece in answer]
    else:
        deltas += _tool_deltas(answer, layout, choice_index, profile)
    if deltas and deltas[-1] is None:
        deltas[-1] = EMPTY_DELTA
    return deltas


def _tool_deltas(
    pieces: Sequence[str], layout: Layout, choice_index: int, profile: Profile
) -> list[Delta | None]:
    style = layout.style
    deltas: list[Delta | None] = []
    started: set[int] = set()
    offset = 0
    for position, piece in enumerate(pieces):
        start, offset = offset, offset + len(piece)
        parts: list[ToolDelta] = []
        for number, call in enumerate(layout.calls):
            fragment = piece[max(call.args_start - start, 0) : max(call.args_end - start, 0)]
            covered = start < call.args_end and offset > call.args_start
            if style is ToolStyle.NAMED_JSON:
                # Every token is argument text, the EOS token an empty fragment.
                first = number not in started
                started.add(number)
                parts.append(
                    ToolDelta(
                        choice_index,
                        call.id if first else None,
                        call.name if first else None,
                        piece,
                    )
                )
                break
            if style is ToolStyle.PARSED and start < call.name_end <= offset:
                started.add(number)
                parts.append(ToolDelta(number, call.id, call.name))
            if not covered:
                continue
            if style is ToolStyle.REQUIRED_JSON and number not in started:
                started.add(number)
                parts.append(ToolDelta(number, call.id, call.name, fragment))
            else:
                parts.append(
                    ToolDelta(
                        number, arguments=fragment, null_name=style is ToolStyle.REQUIRED_JSON
                    )
                )
        last = position == len(pieces) - 1
        if parts:
            deltas.append(Delta(tools=tuple(parts)))
        elif last and style is ToolStyle.PARSED and profile.auto_tool_finish_content:
            deltas.append(Delta(content=""))
        else:
            deltas.append(None)
    return deltas


def message_of(pieces: Sequence[str], layout: Layout, complete: bool) -> AgentMessage:
    """The non-streamed message. ``complete``: the answer ended (not cut by max_tokens)."""
    answer_start = layout.reasoning + layout.hidden
    reasoning = "".join(pieces[: layout.reasoning]) if layout.reasoning_parsed else None
    if not layout.reasoning_parsed:
        answer_start = 0
    answer = "".join(pieces[answer_start:])
    if layout.style is None:
        # A reasoning parser leaves an empty answer as null.
        content = answer or (None if layout.reasoning_parsed else "")
        return AgentMessage(content, reasoning, ())
    calls = tuple(
        (call.id, call.name, answer[call.args_start : call.args_end])
        for call in layout.calls
        # The guided-JSON named path returns whatever was generated; parsers need whole calls.
        if layout.style is ToolStyle.NAMED_JSON or (call.args_end <= len(answer) and complete)
    )
    # Hermes returns the text before the first call, here none: null; forced calls say "".
    content = "" if layout.forced else None
    return AgentMessage(content, reasoning, calls)
