"""Prompt plus output against the context, as each vLLM era checks it and words its errors.

The rules and messages were read in vLLM's own sources: ``serving_engine._validate_input``
(0.8.5-0.14), ``entrypoints/renderer.py`` (0.10.2-0.14 completions), ``renderers/params.py``
(0.17-0.33, ``TokenizeParams``) and ``serve/utils/api_utils.get_max_tokens`` (0.33's clamp).
Typos and quirks are vLLM's own and kept: clients and their tests match on these strings.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import APIError, bad_request
from .profiles import ContextRule, Profile


@dataclass(frozen=True, slots=True)
class OutputRequest:
    """What a request asks of the context."""

    prompt_tokens: int
    # max_tokens as sent (None: not sent), and the field that carried it.
    max_tokens: int | None
    max_tokens_field: str
    chat: bool
    # Text prompts are tokenized with truncation by 0.18+, which then reports "at least".
    text_prompt: bool


def check_context(profile: Profile, limit: int, request: OutputRequest) -> int:
    """The output length to generate, or the APIError the era answers with."""
    rule = profile.chat_context_rule if request.chat else profile.completion_context_rule
    if rule is ContextRule.REQUESTED_TOTAL:
        return _requested_total(profile, limit, request)
    if rule is ContextRule.TOO_LARGE:
        return _too_large(profile, limit, request)
    if rule is ContextRule.RENDERER:
        return _renderer(profile, limit, request)
    return _tokenize_params(rule, limit, request)


def prompt_too_long(profile: Profile, limit: int) -> APIError:
    """What the era says to the shortest chat prompt it refuses (the context's length, or one
    token more)."""
    for prompt in (limit, limit + 1):
        try:
            check_context(profile, limit, OutputRequest(prompt, None, "max_tokens", True, True))
        except APIError as error:
            return error
    raise AssertionError("every era refuses a prompt longer than the context")


def _fill(requested: int | None, limit: int, prompt: int) -> int:
    # Without max_tokens, chat fills the context (completions always carry a default).
    return limit - prompt if requested is None else requested


def _chat_error(profile: Profile, request: OutputRequest, message: str, **suffix: int) -> APIError:
    """Chat's context errors lose their parameter to ``f"{e} {e.__cause__}"`` (<= 0.14)."""
    if request.chat:
        if suffix and profile.parameter_suffix:
            ((parameter, value),) = suffix.items()
            message = f"{message} (parameter={parameter}, value={value})"
        return bad_request(message + profile.chat_context_error_suffix)
    ((parameter, value),) = suffix.items()
    return bad_request(message, parameter=parameter, value=value)


def _requested_total(profile: Profile, limit: int, request: OutputRequest) -> int:
    prompt, requested = request.prompt_tokens, request.max_tokens
    if requested is None and prompt >= limit:
        raise _chat_error(
            profile,
            request,
            f"This model's maximum context length is {limit} tokens. However, you requested "
            f"{prompt} tokens in the messages, Please reduce the length of the messages.",
            input_tokens=prompt,
        )
    max_tokens = _fill(requested, limit, prompt)
    if prompt + max_tokens > limit:
        raise _chat_error(
            profile,
            request,
            f"This model's maximum context length is {limit} tokens. However, you requested "
            f"{prompt + max_tokens} tokens ({prompt} in the messages, {max_tokens} in the "
            "completion). Please reduce the length of the messages or completion.",
            input_tokens=prompt,
        )
    return max_tokens


def _input_too_long(limit: int, prompt: int) -> str:
    return (
        f"This model's maximum context length is {limit} tokens. However, your request has "
        f"{prompt} input tokens. Please reduce the length of the input messages."
    )


def _too_large(profile: Profile, limit: int, request: OutputRequest) -> int:
    prompt, requested = request.prompt_tokens, request.max_tokens
    if prompt >= limit:
        raise _chat_error(profile, request, _input_too_long(limit, prompt), input_tokens=prompt)
    if requested is not None and prompt + requested > limit:
        raise _chat_error(
            profile,
            request,
            f"'max_tokens' or 'max_completion_tokens' is too large: {requested}. This model's "
            f"maximum context length is {limit} tokens and your request has {prompt} input "
            f"tokens ({requested} > {limit} - {prompt}).",
            max_tokens=requested,
        )
    return _fill(requested, limit, prompt)


def _renderer(profile: Profile, limit: int, request: OutputRequest) -> int:
    prompt = request.prompt_tokens
    max_tokens = _fill(request.max_tokens, limit, prompt)
    if profile.completion_max_tokens_precheck and max_tokens > limit:
        raise bad_request(
            f"'max_tokens' ({max_tokens}) cannot be greater than the model's maximum context "
            f"length ({limit}).",
            parameter="max_tokens",
            value=max_tokens,
        )
    # The renderer truncates to, and reports as the context, what max_tokens leaves.
    room = limit - max_tokens
    if prompt > room:
        raise bad_request(_input_too_long(room, prompt), parameter="input_tokens", value=prompt)
    return max_tokens


def _tokenize_params(rule: ContextRule, limit: int, request: OutputRequest) -> int:
    prompt, requested, field = request.prompt_tokens, request.max_tokens, request.max_tokens_field
    output = requested or 0
    if output > limit:
        # 0.17-0.23 print ``{max_total_tokens=}``; 0.17 also lost the space before "cannot".
        target = (
            f"max_model_len={limit}"
            if rule is ContextRule.CLAMP
            else (f"max_model_len=max_total_tokens={limit}")
        )
        space = "" if rule is ContextRule.PASSED else " "
        raise bad_request(
            f"{field}={output}{space}cannot be greater than {target}. Please request fewer "
            "output tokens.",
            parameter=field,
            value=output,
        )
    # 0.33 checks the prompt against the whole context and clamps the output to what is left.
    room = limit if rule is ContextRule.CLAMP else limit - output
    if prompt > room:
        # 0.18+ tokenize text prompts truncated to one token past the room: a floor, "at least".
        truncated = request.text_prompt and rule is not ContextRule.PASSED
        counted = min(prompt, room + 1) if truncated else prompt
        raise bad_request(
            _tokenize_message(rule, limit, output, counted, room),
            parameter="input_tokens",
            value=counted,
        )
    if rule is ContextRule.CLAMP and requested is not None:
        return min(requested, limit - prompt)
    return _fill(requested, limit, prompt)


def _tokenize_message(rule: ContextRule, limit: int, output: int, counted: int, room: int) -> str:
    if rule is ContextRule.PASSED:
        return (
            f"You passed {counted} input tokens and requested {output} output tokens. However, "
            f"the model's context length is only {limit} tokens, resulting in a maximum input "
            f"length of {room} tokens. Please reduce the length of the input prompt."
        )
    at_least = "at least " if counted == room + 1 else ""
    if rule is ContextRule.CLAMP:
        return (
            f"This model's maximum context length is {limit} tokens. However, your prompt "
            f"contains {at_least}{counted} input tokens, which exceeds this limit even without "
            "any output tokens. Please reduce the length of the input prompt."
        )
    return (
        f"This model's maximum context length is {limit} tokens. However, you requested "
        f"{output} output tokens and your prompt contains {at_least}{counted} input tokens, for "
        f"a total of {at_least}{counted + output} tokens. Please reduce the length of the input "
        "prompt or the number of requested output tokens."
    )
