"""vLLM releases as data: one ``Profile`` per era of the wire contract.

Everything that differs between the vLLM releases users run is a field here (key orders, which
fields are null and which absent, defaults, validation and clamping rules, error shapes and
messages, id formats, metric names, routes); ``protocol/`` and ``metrics.py`` read the profile and
never test a version number. Adding a release is one entry in ``PROFILES`` plus its captures.

Eras and field lists were read in the released wheels' sources (``vllm/entrypoints/openai/
protocol.py`` and ``serving_*.py`` up to 0.14; ``entrypoints/openai/chat_completion/`` and
``completion/`` from 0.17; ``v1/metrics/loggers.py``); the notes name file and line per fact.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from enum import StrEnum


class ContextRule(StrEnum):
    """How a release checks prompt length plus ``max_tokens`` against the context."""

    # 0.8.5-0.10.0: "you requested P+M tokens (P in the messages, M in the completion)".
    REQUESTED_TOTAL = "requested-total"
    # 0.10.1-0.14 chat (0.10.1 completions too): "'max_tokens' ... is too large".
    TOO_LARGE = "too-large"
    # 0.10.2-0.14 completions: the prompt renderer reports L-M as the context length.
    RENDERER = "renderer"
    # 0.17: "You passed P input tokens and requested M output tokens".
    PASSED = "passed"
    # 0.18-0.23: "you requested M output tokens and your prompt contains P input tokens".
    REQUESTED_OUTPUT = "requested-output"
    # 0.33: max_tokens beyond the room left is clamped to it (finish_reason "length").
    CLAMP = "clamp"


@dataclass(frozen=True, slots=True)
class Profile:
    """The wire contract of one vLLM era. Key tuples are in the order vLLM serialises them."""

    name: str
    # The first release of the era; any later version up to the next era's maps here.
    first_release: str
    # What /version reports unless the user names a full version.
    version: str

    # --- ids -------------------------------------------------------------------------------
    # Hex digits of random ids (chatcmpl-, cmpl-, chatcmpl-tool-, modelperm-).
    id_hex_digits: int

    # --- requests --------------------------------------------------------------------------
    # ``stream_options`` present without ``include_usage``: is the usage event sent?
    include_usage_default: bool
    chat_context_rule: ContextRule
    completion_context_rule: ContextRule
    # Highest temperature accepted (0.33 refuses above 2), None: no bound.
    max_temperature: float | None
    # ``best_of`` is a known field (values > 1 refused); later releases ignore it as unknown.
    best_of_field: bool
    # Longest ``stop`` list the request model accepts (0.33's VLLM_MAX_STOP_STRINGS, default 4;
    # a pydantic too_long error beyond); None: the model sets no bound.
    max_stop_strings: int | None

    # --- errors ----------------------------------------------------------------------------
    # ``{"error": {...}}`` (0.10.1+) or the flat ``{"object": "error", ...}``.
    nested_errors: bool
    # ``type`` of a request-model validation error (pydantic via FastAPI).
    validation_error_type: str
    # ``param`` names the field (unknown model, validation errors raised with a parameter).
    error_params: bool
    # Handler errors raised with a parameter end with " (parameter=X, value=Y)".
    parameter_suffix: bool
    # The unknown-model message lists the served names ("Valid aliases: a, b.").
    model_not_found_lists_aliases: bool
    # Chat's context-length errors pass through ``f"{e} {e.__cause__}"``: a trailing " None".
    chat_context_error_suffix: str
    # Completions refuse max_tokens above the context before looking at the prompt (0.12-0.14).
    completion_max_tokens_precheck: bool
    # Validation errors: ``param`` is the first error's location ("body.messages") and the
    # message prints locations dotted (0.33).
    validation_loc_in_param: bool
    # In-stream errors of chat streams are compact JSON (``model_dump_json``), not json.dumps.
    compact_chat_stream_errors: bool

    # --- non-streamed bodies -----------------------------------------------------------------
    chat_body_keys: tuple[str, ...]
    chat_choice_keys: tuple[str, ...]
    chat_message_keys: tuple[str, ...]
    # An empty ``tool_calls`` is dropped from the message instead of serialised as ``[]``.
    omit_empty_tool_calls: bool
    completion_body_keys: tuple[str, ...]
    completion_choice_keys: tuple[str, ...]
    usage_keys: tuple[str, ...]

    # --- streams ---------------------------------------------------------------------------
    # Null keys every delta carries (a validator marks them set).
    chat_delta_nulls: tuple[str, ...]
    # Null keys after ``finish_reason`` on a content choice, after ``stop_reason`` on a finish one.
    chat_token_choice_nulls: tuple[str, ...]
    chat_finish_choice_nulls: tuple[str, ...]
    # Top-level null keys of the role event and of token events.
    chat_role_nulls: tuple[str, ...]
    chat_token_nulls: tuple[str, ...]
    # Continuous usage of chat chunks carries ``"completion_tokens_details":null``.
    chat_continuous_usage_details: bool
    # Choice keys after ``stop_reason`` (null) of completions chunks.
    completion_chunk_choice_nulls: tuple[str, ...]
    # Completions chunks carry ``"usage":null`` (serialised with exclude_unset=False).
    completion_chunk_usage_null: bool
    completion_token_nulls: tuple[str, ...]
    # 0.11.0 sends the prompt's token ids on the first completions chunk, asked or not.
    completion_first_chunk_prompt_ids: bool
    # ``system_fingerprint`` is filled: on bodies, the usage event, or finish chunks without it.
    fingerprint: bool

    # --- metrics ---------------------------------------------------------------------------
    # Names of the KV-cache usage gauge and the prefix-cache counters (renamed in 0.10).
    kv_cache_usage_metrics: tuple[str, ...]
    prefix_cache_metric_prefixes: tuple[str, ...]
    # The deprecated TPOT histogram, ITL and per-request TPOT are served.
    time_per_output_token_metric: bool
    inter_token_latency_metric: bool
    request_time_per_output_token_metric: bool
    # ``finished_reason`` label values pre-created on vllm:request_success.
    finished_reasons: tuple[str, ...]


_V08_CHAT_MESSAGE = ("role", "reasoning_content", "content", "tool_calls")
_V010_CHAT_MESSAGE = (
    "role",
    "content",
    "refusal",
    "annotations",
    "audio",
    "function_call",
    "tool_calls",
    "reasoning_content",
)
_V014_CHAT_MESSAGE = (*_V010_CHAT_MESSAGE[:-1], "reasoning", "reasoning_content")
_V017_CHAT_MESSAGE = (*_V010_CHAT_MESSAGE[:-1], "reasoning")
_CHAT_CHOICE = ("index", "message", "logprobs", "finish_reason", "stop_reason")
_COMPLETION_CHOICE_V08 = (
    "index",
    "text",
    "logprobs",
    "finish_reason",
    "stop_reason",
    "prompt_logprobs",
)
_COMPLETION_CHOICE_V011 = (
    "index",
    "text",
    "logprobs",
    "finish_reason",
    "stop_reason",
    "token_ids",
    "prompt_logprobs",
    "prompt_token_ids",
)
_HEAD = ("id", "object", "created", "model", "choices")
_CHAT_BODY_V010 = (
    *_HEAD,
    "service_tier",
    "system_fingerprint",
    "usage",
    "prompt_logprobs",
    "kv_transfer_params",
)
_CHAT_BODY_V011 = (*_CHAT_BODY_V010[:-1], "prompt_token_ids", "kv_transfer_params")
_CHAT_BODY_V023 = (*_CHAT_BODY_V011[:-1], "prompt_text", "kv_transfer_params")
_COMPLETION_BODY_V010 = (
    *_HEAD,
    "service_tier",
    "system_fingerprint",
    "usage",
    "kv_transfer_params",
)
_USAGE = ("prompt_tokens", "total_tokens", "completion_tokens", "prompt_tokens_details")
_FINISHED_V08 = ("stop", "length", "abort")

V0_8 = Profile(
    name="0.8",
    first_release="0.8.0",
    version="0.8.5",
    id_hex_digits=32,
    include_usage_default=True,
    chat_context_rule=ContextRule.REQUESTED_TOTAL,
    completion_context_rule=ContextRule.REQUESTED_TOTAL,
    max_temperature=None,
    best_of_field=True,
    max_stop_strings=None,
    nested_errors=False,
    validation_error_type="BadRequestError",
    error_params=False,
    parameter_suffix=False,
    model_not_found_lists_aliases=False,
    chat_context_error_suffix="",
    completion_max_tokens_precheck=False,
    validation_loc_in_param=False,
    compact_chat_stream_errors=False,
    chat_body_keys=(*_HEAD, "usage", "prompt_logprobs"),
    chat_choice_keys=_CHAT_CHOICE,
    chat_message_keys=_V08_CHAT_MESSAGE,
    omit_empty_tool_calls=False,
    completion_body_keys=(*_HEAD, "usage"),
    completion_choice_keys=_COMPLETION_CHOICE_V08,
    usage_keys=_USAGE,
    chat_delta_nulls=(),
    chat_token_choice_nulls=(),
    chat_finish_choice_nulls=(),
    chat_role_nulls=(),
    chat_token_nulls=(),
    chat_continuous_usage_details=False,
    completion_chunk_choice_nulls=(),
    completion_chunk_usage_null=True,
    completion_token_nulls=(),
    completion_first_chunk_prompt_ids=False,
    fingerprint=False,
    kv_cache_usage_metrics=("vllm:gpu_cache_usage_perc",),
    prefix_cache_metric_prefixes=("vllm:gpu_prefix_cache",),
    time_per_output_token_metric=True,
    inter_token_latency_metric=False,
    request_time_per_output_token_metric=False,
    finished_reasons=_FINISHED_V08,
)
# Each era as the changes from the one before (the notes cite the release and file of each).
V0_10_1 = replace(
    V0_8,
    name="0.10.1",
    first_release="0.10.1",
    version="0.10.1.1",
    chat_context_rule=ContextRule.TOO_LARGE,
    completion_context_rule=ContextRule.TOO_LARGE,
    nested_errors=True,
    validation_error_type="Bad Request",
    chat_context_error_suffix=" None",
    chat_body_keys=_CHAT_BODY_V010,
    chat_message_keys=_V010_CHAT_MESSAGE,
    completion_body_keys=_COMPLETION_BODY_V010,
    kv_cache_usage_metrics=("vllm:gpu_cache_usage_perc", "vllm:kv_cache_usage_perc"),
    prefix_cache_metric_prefixes=("vllm:gpu_prefix_cache", "vllm:prefix_cache"),
)
V0_11 = replace(
    V0_10_1,
    name="0.11",
    first_release="0.10.2",
    version="0.11.0",
    completion_context_rule=ContextRule.RENDERER,
    chat_body_keys=_CHAT_BODY_V011,
    chat_choice_keys=(*_CHAT_CHOICE, "token_ids"),
    completion_choice_keys=_COMPLETION_CHOICE_V011,
    chat_token_choice_nulls=("token_ids",),
    chat_finish_choice_nulls=("token_ids",),
    chat_role_nulls=("prompt_token_ids",),
    completion_chunk_choice_nulls=("prompt_token_ids", "token_ids"),
    completion_first_chunk_prompt_ids=True,
    kv_cache_usage_metrics=("vllm:kv_cache_usage_perc",),
    prefix_cache_metric_prefixes=("vllm:prefix_cache",),
    inter_token_latency_metric=True,
    request_time_per_output_token_metric=True,
)
V0_14 = replace(
    V0_11,
    name="0.14",
    first_release="0.12.0",
    version="0.14.0",
    id_hex_digits=16,
    best_of_field=False,
    error_params=True,
    parameter_suffix=True,
    completion_max_tokens_precheck=True,
    chat_message_keys=_V014_CHAT_MESSAGE,
    chat_delta_nulls=("reasoning_content",),
    completion_first_chunk_prompt_ids=False,
    time_per_output_token_metric=False,
    finished_reasons=(*_FINISHED_V08, "error"),
)
V0_17 = replace(
    V0_14,
    name="0.17",
    first_release="0.15.0",
    version="0.17.0",
    chat_context_rule=ContextRule.PASSED,
    completion_context_rule=ContextRule.PASSED,
    chat_context_error_suffix="",
    completion_max_tokens_precheck=False,
    chat_message_keys=_V017_CHAT_MESSAGE,
    chat_delta_nulls=(),
    finished_reasons=(*_FINISHED_V08, "error", "repetition"),
)
V0_20 = replace(
    V0_17,
    name="0.20",
    first_release="0.18.0",
    version="0.20.0",
    include_usage_default=False,
    chat_context_rule=ContextRule.REQUESTED_OUTPUT,
    completion_context_rule=ContextRule.REQUESTED_OUTPUT,
)
V0_23 = replace(
    V0_20,
    name="0.23",
    first_release="0.21.0",
    version="0.23.0",
    chat_body_keys=_CHAT_BODY_V023,
    chat_choice_keys=(*_CHAT_CHOICE, "token_ids", "routed_experts"),
    completion_choice_keys=(*_COMPLETION_CHOICE_V011, "routed_experts"),
    chat_role_nulls=("prompt_token_ids", "prompt_text"),
    completion_chunk_usage_null=False,
    fingerprint=True,
)
V0_33 = replace(
    V0_23,
    name="0.33",
    first_release="0.24.0",
    version="0.33.0",
    chat_context_rule=ContextRule.CLAMP,
    completion_context_rule=ContextRule.CLAMP,
    max_temperature=2.0,
    max_stop_strings=4,
    model_not_found_lists_aliases=True,
    validation_loc_in_param=True,
    compact_chat_stream_errors=True,
    chat_body_keys=(*_CHAT_BODY_V023, "ec_transfer_params", "metrics"),
    chat_choice_keys=(*_CHAT_CHOICE, "token_ids", "routed_experts", "weight_versions"),
    omit_empty_tool_calls=True,
    completion_body_keys=(*_COMPLETION_BODY_V010, "ec_transfer_params", "metrics"),
    completion_choice_keys=(*_COMPLETION_CHOICE_V011, "routed_experts", "weight_versions"),
    usage_keys=(*_USAGE, "completion_tokens_details"),
    chat_finish_choice_nulls=("token_ids", "weight_versions"),
    chat_token_nulls=("kv_transfer_params",),
    chat_continuous_usage_details=True,
    completion_chunk_choice_nulls=("prompt_token_ids", "token_ids", "weight_versions"),
    completion_token_nulls=("kv_transfer_params",),
)

# Oldest first.
PROFILES: tuple[Profile, ...] = (V0_8, V0_10_1, V0_11, V0_14, V0_17, V0_20, V0_23, V0_33)
DEFAULT_PROFILE = V0_11


class UnknownVersion(ValueError):
    """A version string that names no emulated release."""


_RELEASE = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")


def _release(version: str) -> tuple[int, int, int]:
    match = _RELEASE.match(version)
    if match is None:
        raise UnknownVersion(f"not a vLLM version: {version!r} (expected e.g. 0.11 or 0.33.1)")
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch or 0)


def profile_for(version: str) -> tuple[Profile, str]:
    """The era of ``version`` and what /version reports: ``"0.33"`` is the era's own release,
    ``"0.33.1"`` (or a dev build's version) is reported as given."""
    release = _release(version)
    eras = [profile for profile in PROFILES if _release(profile.first_release) <= release]
    if not eras:
        raise UnknownVersion(
            f"vLLM {version} predates the oldest emulated era ({PROFILES[0].first_release})"
        )
    profile = eras[-1]
    if version.count(".") > 1 or not version.replace(".", "").isdigit():
        return profile, version
    # "0.33" names the era's own release; "0.16" the first release of that minor version.
    named_era = release[:2] == _release(profile.name)[:2]
    return profile, profile.version if named_era else f"{version}.0"
