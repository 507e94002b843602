"""The chat template: messages to one prompt string, in the TinyLlama / Zephyr format."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from dummy_vllm.engine.tokenizer import EOS_TOKEN, TOOL_CALL_END, TOOL_CALL_START

# What a non-text content part contributes to the prompt; other types show as "<type>".
_PLACEHOLDERS = {
    "image_url": "<image>",
    "input_audio": "<audio>",
    "audio_url": "<audio>",
    "video_url": "<video>",
}
# Parts whose content is text, and the key that holds it (as vLLM's content-part parsers read).
TEXT_PARTS = {"text": "text", "input_text": "text", "refusal": "refusal", "thinking": "thinking"}


def render_chat_prompt(
    messages: Sequence[Mapping[str, Any]],
    tools: Mapping[str, Mapping[str, Any] | None] | None = None,
    *,
    add_generation_prompt: bool = True,
) -> str:
    """Render already validated messages as::

        <|system|>\\n{content}</s>\\n<|user|>\\n{content}</s>\\n...<|assistant|>\\n

    ``content`` is a string, ``None`` (rendered empty) or a list of parts: strings and text
    parts (and refusals) give their text, other parts a placeholder (``<image>``, ``<audio>``,
    ``<video>``, else ``<{type}>``); the parts are joined with ``"\\n"``.

    Token overhead, with this package's ``Tokenizer``: the role markers (for the roles in
    ``tokenizer.CHAT_ROLES``), ``"</s>"`` and ``"\\n"`` are one token each, and the tokenizer
    never joins them with their neighbours, so for ``n`` messages with rendered contents ``c_i``::

        len(encode(prompt)) == sum(len(encode(c_i))) + 4 * n + 2 * add_generation_prompt

    Any other role's marker costs a few tokens more.

    As Hermes-style templates do, ``tools`` (name -> parameters schema) are listed in a leading
    system message, and an assistant message's ``tool_calls`` follow its content as
    ``<tool_call>{"name": ..., "arguments": ...}</tool_call>`` blocks: both count in the prompt.
    """
    parts = [_tools_block(tools)] if tools else []
    parts += [
        f"<|{m['role']}|>\n{_content_text(m.get('content'))}{_tool_calls_text(m)}{EOS_TOKEN}\n"
        for m in messages
    ]
    if add_generation_prompt:
        parts.append("<|assistant|>\n")
    return "".join(parts)


def _content_text(content: str | Sequence[str | Mapping[str, Any]] | None) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = (_part_text(part) for part in content)
    # A text part without text is skipped, as vLLM skips it.
    return "\n".join(text for text in texts if text is not None)


def _part_text(part: str | Mapping[str, Any]) -> str | None:
    if isinstance(part, str):
        return part
    kind = part.get("type")
    if kind in TEXT_PARTS:
        text = part.get(TEXT_PARTS[kind])
        return None if text is None else str(text)
    if kind is None:
        # A part without a type names its media by its key (vLLM's simple image/audio/video).
        kind = next((key for key in _PLACEHOLDERS if key in part), None)
    return _PLACEHOLDERS.get(str(kind), f"<{kind}>")


def _tools_block(tools: Mapping[str, Mapping[str, Any] | None]) -> str:
    listed = "\n".join(
        json.dumps({"name": name, "parameters": parameters or {}})
        for name, parameters in tools.items()
    )
    return f"<|system|>\nYou may call these tools:\n<tools>\n{listed}\n</tools>{EOS_TOKEN}\n"


def _tool_calls_text(message: Mapping[str, Any]) -> str:
    calls = message.get("tool_calls")
    if not isinstance(calls, list):
        return ""
    blocks = []
    for call in calls:
        function = call.get("function") if isinstance(call, Mapping) else None
        if isinstance(function, Mapping):
            name, arguments = function.get("name"), function.get("arguments")
            if not isinstance(arguments, str) or not arguments:
                arguments = json.dumps(arguments or {})
            blocks.append(
                f"{TOOL_CALL_START}\n"
                f'{{"name": {json.dumps(name)}, "arguments": {arguments}}}'
                f"\n{TOOL_CALL_END}"
            )
    return "\n".join(blocks)
