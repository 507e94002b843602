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


class StreamItemId(StrEnum):
    """How a streamed Responses message item is named."""

    # str(uuid.uuid4()), dashes included (up to 0.17).
    UUID4 = "uuid4"
    # random_uuid() without a prefix (0.18-0.23).
    HEX = "hex"
    # "msg_" + random_uuid(), as the non-streamed body names it (0.24+).
    MSG = "msg"


@dataclass(frozen=True, slots=True)
class EmbeddingsShape:
    """``/v1/embeddings`` and ``/pooling`` of one era (``serving_embedding.py``, ``pooling/``)."""

    # Floats as orjson writes numpy float32 (shortest float32 repr, 0.21+), else as
    # ``json.dumps`` writes ``tensor.tolist()`` (the float32 value's double repr).
    float32_repr: bool
    # ``dimensions`` outside [1, hidden size] is refused with the 0.24+ wording; before, only
    # values below 1 are refused and larger ones give the whole vector.
    dimensions_range_check: bool
    # An unknown ``model`` is ignored (0.24+ never checks it), else 404.
    ignore_unknown_model: bool
    # The refusal of truncate_prompt_tokens beyond the context (reworded in 0.21).
    truncate_too_large: str
    # /pooling: its id prefix ("pool" up to 0.14, "pooling" from 0.15), and whether it answers
    # one vector per prompt token (the token_embed task, up to 0.14) or one per prompt.
    pooling_id_prefix: str
    pooling_per_token: bool


@dataclass(frozen=True, slots=True)
class ResponsesShape:
    """``/v1/responses`` of one era (``serving_responses.py``, ``openai/responses/``)."""

    # ResponsesResponse as the non-streamed body and GET show it, in vLLM's field order.
    body_keys: tuple[str, ...]
    # The response object inside response.created / in_progress / completed events: 0.10-0.11
    # re-validate it into openai's Response model (openai's order, its extra nulls, a float
    # created_at); later eras send vLLM's own model, as the body.
    stream_response_keys: tuple[str, ...]
    stream_float_created_at: bool
    usage_input_details: tuple[str, ...]
    usage_output_details: tuple[str, ...]
    stream_item_id: StreamItemId
    # The engine step that ends on EOS still yields an empty ``"delta":""`` event (<= 0.20).
    empty_final_delta: bool
    # output_item.done of a message carries ``"summary":[]`` (<= 0.23).
    item_done_summary: bool
    # finish_reason length: ``"status":"incomplete"`` with incomplete_details (0.12+).
    incomplete_status: bool
    # ...and a ``response.incomplete`` terminal event, the item marked incomplete and the
    # streamed items reused in the final response (0.24+).
    incomplete_event: bool
    # Function tools are served (0.12+); before, non-Harmony models refuse them.
    tools: bool
    function_call_keys: tuple[str, ...]
    # ``param`` of the unknown-response 404 ("response_id", 0.24+).
    not_found_param: str | None


@dataclass(frozen=True, slots=True)
class AnthropicShape:
    """``/v1/messages`` of one era (``anthropic/serving_messages.py``, ``anthropic/serving.py``)."""

    # POST /v1/messages/count_tokens exists (0.15+).
    count_tokens: bool
    # message_start's message as set explicitly (``exclude_unset``), in field order.
    message_start_keys: tuple[str, ...]
    # message_delta's delta also names ``stop_sequence`` (0.24+).
    delta_stop_sequence: bool
    # A bare ``data: [DONE]`` follows message_stop and in-stream errors (<= 0.17).
    trailing_done: bool
    # The chat chunk carrying finish_reason is skipped whole, its token lost (0.12-0.14).
    drops_finish_chunk: bool
    # Non-streamed content: "always" opens with a text block ("" if none, 0.12-0.14),
    # "nonempty" only when there is text (may be []), "never-empty" adds "" to an empty list.
    text_block: str
    # A matched stop string answers stop_reason "stop_sequence" and names it (0.24+).
    stop_sequence_reason: bool
    # error.type is derived from the status (0.24+), else vLLM's OpenAI-style type.
    error_types_by_status: bool


@dataclass(frozen=True, slots=True)
class OperatorShape:
    """The dev-mode routes' answers (``entrypoints/serve/*``, 0.11 ``api_server.py``)."""

    # /sleep, /wake_up and /reset_prefix_cache answer JSON (0.24+) instead of an empty 200.
    json_bodies: bool
    # /server_info's keys besides vllm_config.
    server_info_keys: tuple[str, ...]
    # /v1/load_lora_adapter takes ``load_inplace`` and says so when refusing a reload (0.15+).
    lora_load_inplace: bool


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

    # --- tools, structured outputs, reasoning (notes/agent-requests.md) ----------------------
    # Names --tool-call-parser and --reasoning-parser accept (the registries of the era).
    tool_parsers: tuple[str, ...]
    reasoning_parsers: tuple[str, ...]
    # finish_reason of a named tool call and of "required" calls: (non-streamed, streamed).
    named_tool_finish: tuple[str, str]
    required_tool_finish: tuple[str, str]
    # Named and "required" calls are the model's tool syntax read by the tool parser (strict
    # tool calling, 0.27+) instead of guided JSON streamed as it is generated.
    forced_tools_parsed: bool
    # Named / "required" refused without a tool parser (0.17+): the messages ("{name}" is the
    # tool's name); empty: they work without any flag (guided decoding).
    named_tool_needs_parser: str
    required_tool_needs_parser: str
    # The last delta of an auto tool-call stream is {"content":""} (hermes up to 0.2x).
    auto_tool_finish_content: bool
    # Tool-call deltas carry "content":null (0.33's parsers set it explicitly).
    tool_delta_content_null: bool
    # ``tools: []`` is refused (0.23+; earlier it is accepted, and "required" becomes "none").
    empty_tools_refused: bool
    # Delta keys that carry reasoning text, in DeltaMessage order.
    reasoning_delta_keys: tuple[str, ...]
    # usage.completion_tokens_details.reasoning_tokens is filled with a reasoning parser (0.30+).
    reasoning_usage_details: bool
    # guided_json / guided_regex / guided_choice / guided_grammar are fields (up to 0.11; later
    # releases ignore them as unknown fields) and ``structured_outputs`` is one (0.11+).
    guided_fields: bool
    structured_outputs_field: bool
    # /v1/completions honours response_format (0.14+; 0.11 ignores it).
    completion_response_format: bool

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

    # --- the rest of the API surface -------------------------------------------------------------
    embeddings: EmbeddingsShape
    # None: the era has no such route (404).
    responses: ResponsesShape | None
    anthropic: AnthropicShape | None
    operator: OperatorShape
    # CORS: --allowed-origins when not given ("*" until 0.23; none from 0.24), and whether the
    # era's Starlette (>= 1.0) adds Vary to every answer and QUERY to the allowed methods.
    cors_origins: tuple[str, ...]
    cors_starlette_1: bool


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
# Registered parser names, read in each release's tool_parsers/ and reasoning/ registries.


def _names(*groups: str | tuple[str, ...]) -> tuple[str, ...]:
    """Sorted, de-duplicated names from space-separated strings and earlier tuples."""
    return tuple(
        sorted(
            {
                name
                for group in groups
                for name in (group.split() if isinstance(group, str) else group)
            }
        )
    )


_TOOL_PARSERS_V08 = _names(
    "granite granite-20b-fc hermes internlm jamba llama3_json llama4_json mistral",
    "phi4_mini_json pythonic",
)
_TOOL_PARSERS_V010 = _names(
    _TOOL_PARSERS_V08,
    "deepseek_v3 glm45 hunyuan_a13b kimi_k2 llama4_pythonic minimax qwen3_coder step3 xlam",
)
_TOOL_PARSERS_V011 = _names(_TOOL_PARSERS_V010, "deepseek_v31 longcat openai qwen3_xml seed_oss")
_TOOL_PARSERS_V014 = _names(
    _TOOL_PARSERS_V011, "deepseek_v32 ernie45 functiongemma gigachat3 glm47 minimax_m2 olmo3"
)
_TOOL_PARSERS_V017 = _names(_TOOL_PARSERS_V014, "step3p5")
_TOOL_PARSERS_V020 = _names(_TOOL_PARSERS_V017, "deepseek_v4 gemma4 granite4 hy_v3 mimo")
_TOOL_PARSERS_V023 = _names(
    _TOOL_PARSERS_V020, "apertus cohere_command3 cohere_command4 lfm2 minicpm5 poolside_v1"
)
_TOOL_PARSERS_V033 = _names(
    _TOOL_PARSERS_V023,
    "beam deepseek_v41 dots hf hy_v4 inkling k2_horizon kimi_k3 ling3 minimax_m3",
    "muse muse_glimmer musespark1x plamo3 qwen3_json step5",
)
_REASONING_PARSERS_V08 = _names("deepseek_r1 granite")
_REASONING_PARSERS_V010 = _names(_REASONING_PARSERS_V08, "glm45 hunyuan_a13b mistral qwen3 step3")
_REASONING_PARSERS_V011 = _names(_REASONING_PARSERS_V010, "openai_gptoss seed_oss")
_REASONING_PARSERS_V014 = _names(
    _REASONING_PARSERS_V011,
    "deepseek_v3 ernie45 holo2 kimi_k2 minimax_m2 minimax_m2_append_think olmo3",
)
_REASONING_PARSERS_V017 = _names(_REASONING_PARSERS_V014, "step3p5")
_REASONING_PARSERS_V020 = _names(
    _REASONING_PARSERS_V017, "deepseek_v4 gemma4 hy_v3 mimo nemotron_v3"
)
_REASONING_PARSERS_V023 = _names(
    _REASONING_PARSERS_V020, "cohere_command3 cohere_command4 poolside_v1"
)
_REASONING_PARSERS_V033 = _names(
    _REASONING_PARSERS_V023,
    "beam deepseek_v41 glm47 granite_thinking_parser hf hy_v4 inkling k2_horizon",
    "kimi_k3 ling3 minicpmv minimax_m3 muse muse_glimmer musespark1x plamo3 step5",
)
_NEEDS_PARSER = "requires --tool-call-parser to be set"

# --- the rest of the API surface (notes: api-surface.md; files named per field above) ------------
_RESPONSES_HEAD = ("id", "created_at")
_RESPONSES_MIDDLE = (
    "parallel_tool_calls",
    "temperature",
    "tool_choice",
    "tools",
    "top_p",
    "background",
    "max_output_tokens",
    "max_tool_calls",
    "previous_response_id",
    "prompt",
)
_RESPONSES_TAIL = (
    "reasoning",
    "service_tier",
    "status",
    "text",
    "top_logprobs",
    "truncation",
    "usage",
    "user",
)
_RESPONSES_OBJECT = ("instructions", "metadata", "model", "object", "output")
_RESPONSE_MESSAGES = ("input_messages", "output_messages")
_RESPONSES_BODY_V0101 = (
    *_RESPONSES_HEAD,
    *_RESPONSES_OBJECT,
    *_RESPONSES_MIDDLE,
    *_RESPONSES_TAIL,
)
_RESPONSES_BODY_V011 = (
    *_RESPONSES_HEAD,
    "incomplete_details",
    *_RESPONSES_OBJECT,
    *_RESPONSE_MESSAGES,
    *_RESPONSES_MIDDLE,
    *_RESPONSES_TAIL,
)
_RESPONSES_BODY_V014 = (
    *_RESPONSES_HEAD,
    "incomplete_details",
    *_RESPONSES_OBJECT,
    *_RESPONSES_MIDDLE,
    *_RESPONSES_TAIL,
    *_RESPONSE_MESSAGES,
)
_PENALTIES = ("presence_penalty", "frequency_penalty", "kv_transfer_params")
_RESPONSES_BODY_V020 = (*_RESPONSES_BODY_V014[:-2], *_PENALTIES, *_RESPONSE_MESSAGES)
_RESPONSES_BODY_V033 = (
    *_RESPONSES_HEAD,
    "incomplete_details",
    *_RESPONSES_OBJECT,
    *_RESPONSES_MIDDLE,
    "prompt_cache_options",
    "prompt_cache_key",
    "prompt_cache_retention",
    "reasoning",
    "safety_identifier",
    *_RESPONSES_TAIL[1:],
    *_PENALTIES,
    "ec_transfer_params",
    *_RESPONSE_MESSAGES,
)
# openai 1.109's Response model, which 0.10-0.11 streams re-validate their response into; the
# vLLM-only fields trail as extras.
_OPENAI_RESPONSE_V1 = (
    *_RESPONSES_HEAD,
    "error",
    "incomplete_details",
    *_RESPONSES_OBJECT,
    *_RESPONSES_MIDDLE[:6],
    "conversation",
    *_RESPONSES_MIDDLE[6:],
    "prompt_cache_key",
    "reasoning",
    "safety_identifier",
    *_RESPONSES_TAIL[1:],
)
_PER_TURN_INPUT = ("input_tokens_per_turn", "cached_tokens_per_turn")
_PER_TURN_OUTPUT = ("output_tokens_per_turn", "tool_output_tokens_per_turn")
_FUNCTION_CALL = ("arguments", "call_id", "name", "type", "id", "status")
RESPONSES_V0101 = ResponsesShape(
    body_keys=_RESPONSES_BODY_V0101,
    stream_response_keys=_OPENAI_RESPONSE_V1,
    stream_float_created_at=True,
    usage_input_details=("cached_tokens",),
    usage_output_details=("reasoning_tokens",),
    stream_item_id=StreamItemId.UUID4,
    empty_final_delta=True,
    item_done_summary=True,
    incomplete_status=False,
    incomplete_event=False,
    tools=False,
    function_call_keys=_FUNCTION_CALL,
    not_found_param=None,
)
_RESPONSES_V011 = replace(
    RESPONSES_V0101,
    body_keys=_RESPONSES_BODY_V011,
    stream_response_keys=(*_OPENAI_RESPONSE_V1, *_RESPONSE_MESSAGES),
    usage_output_details=("reasoning_tokens", "tool_output_tokens"),
)
_RESPONSES_V014 = replace(
    _RESPONSES_V011,
    body_keys=_RESPONSES_BODY_V014,
    stream_response_keys=_RESPONSES_BODY_V014,
    stream_float_created_at=False,
    usage_input_details=("cached_tokens", *_PER_TURN_INPUT),
    usage_output_details=("reasoning_tokens", "tool_output_tokens", *_PER_TURN_OUTPUT),
    incomplete_status=True,
    tools=True,
)
_RESPONSES_V020 = replace(
    _RESPONSES_V014,
    body_keys=_RESPONSES_BODY_V020,
    stream_response_keys=_RESPONSES_BODY_V020,
    stream_item_id=StreamItemId.HEX,
)
_RESPONSES_V023 = replace(_RESPONSES_V020, empty_final_delta=False)
_RESPONSES_V033 = replace(
    _RESPONSES_V023,
    body_keys=_RESPONSES_BODY_V033,
    stream_response_keys=_RESPONSES_BODY_V033,
    usage_input_details=("cached_tokens", "cache_write_tokens", *_PER_TURN_INPUT),
    stream_item_id=StreamItemId.MSG,
    item_done_summary=False,
    incomplete_event=True,
    function_call_keys=(*_FUNCTION_CALL[:-1], "namespace", "status"),
    not_found_param="response_id",
)
_ANTHROPIC_V014 = AnthropicShape(
    count_tokens=False,
    message_start_keys=("id", "content", "model", "usage"),
    delta_stop_sequence=False,
    trailing_done=True,
    drops_finish_chunk=True,
    text_block="always",
    stop_sequence_reason=False,
    error_types_by_status=False,
)
_ANTHROPIC_V017 = replace(
    _ANTHROPIC_V014,
    count_tokens=True,
    message_start_keys=("id", "content", "model", "stop_reason", "stop_sequence", "usage"),
    drops_finish_chunk=False,
    text_block="nonempty",
)
_ANTHROPIC_V020 = replace(_ANTHROPIC_V017, trailing_done=False)
_ANTHROPIC_V033 = replace(
    _ANTHROPIC_V020,
    message_start_keys=(
        "id",
        "type",
        "role",
        "content",
        "model",
        "stop_reason",
        "stop_sequence",
        "usage",
    ),
    delta_stop_sequence=True,
    text_block="never-empty",
    stop_sequence_reason=True,
    error_types_by_status=True,
)
_EMBEDDINGS_V08 = EmbeddingsShape(
    float32_repr=False,
    dimensions_range_check=False,
    ignore_unknown_model=False,
    truncate_too_large="truncate_prompt_tokens value is greater than max_model_len. Please, "
    "select a smaller truncation size.",
    pooling_id_prefix="pool",
    pooling_per_token=True,
)
_EMBEDDINGS_V017 = replace(_EMBEDDINGS_V08, pooling_id_prefix="pooling", pooling_per_token=False)
_OPERATOR_V08 = OperatorShape(json_bodies=False, server_info_keys=(), lora_load_inplace=False)
_OPERATOR_V017 = replace(
    _OPERATOR_V08, server_info_keys=("vllm_env", "system_env"), lora_load_inplace=True
)

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
    tool_parsers=_TOOL_PARSERS_V08,
    reasoning_parsers=_REASONING_PARSERS_V08,
    named_tool_finish=("stop", "stop"),
    required_tool_finish=("stop", "stop"),
    forced_tools_parsed=False,
    named_tool_needs_parser="",
    required_tool_needs_parser="",
    auto_tool_finish_content=True,
    tool_delta_content_null=False,
    empty_tools_refused=False,
    reasoning_delta_keys=("reasoning_content",),
    reasoning_usage_details=False,
    guided_fields=True,
    structured_outputs_field=False,
    completion_response_format=False,
    kv_cache_usage_metrics=("vllm:gpu_cache_usage_perc",),
    prefix_cache_metric_prefixes=("vllm:gpu_prefix_cache",),
    time_per_output_token_metric=True,
    inter_token_latency_metric=False,
    request_time_per_output_token_metric=False,
    finished_reasons=_FINISHED_V08,
    embeddings=_EMBEDDINGS_V08,
    responses=None,
    anthropic=None,
    operator=_OPERATOR_V08,
    cors_origins=("*",),
    cors_starlette_1=False,
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
    tool_parsers=_TOOL_PARSERS_V010,
    reasoning_parsers=_REASONING_PARSERS_V010,
    kv_cache_usage_metrics=("vllm:gpu_cache_usage_perc", "vllm:kv_cache_usage_perc"),
    prefix_cache_metric_prefixes=("vllm:gpu_prefix_cache", "vllm:prefix_cache"),
    responses=RESPONSES_V0101,
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
    tool_parsers=_TOOL_PARSERS_V011,
    reasoning_parsers=_REASONING_PARSERS_V011,
    # Before vLLM PR #25054: streams say "tool_calls" whenever a tool delta was sent.
    named_tool_finish=("stop", "tool_calls"),
    required_tool_finish=("stop", "tool_calls"),
    structured_outputs_field=True,
    kv_cache_usage_metrics=("vllm:kv_cache_usage_perc",),
    prefix_cache_metric_prefixes=("vllm:prefix_cache",),
    inter_token_latency_metric=True,
    request_time_per_output_token_metric=True,
    responses=_RESPONSES_V011,
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
    tool_parsers=_TOOL_PARSERS_V014,
    reasoning_parsers=_REASONING_PARSERS_V014,
    named_tool_finish=("stop", "stop"),
    required_tool_finish=("tool_calls", "tool_calls"),
    reasoning_delta_keys=("reasoning", "reasoning_content"),
    guided_fields=False,
    completion_response_format=True,
    time_per_output_token_metric=False,
    finished_reasons=(*_FINISHED_V08, "error"),
    responses=_RESPONSES_V014,
    anthropic=_ANTHROPIC_V014,
    operator=replace(_OPERATOR_V08, server_info_keys=("vllm_env",)),
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
    tool_parsers=_TOOL_PARSERS_V017,
    reasoning_parsers=_REASONING_PARSERS_V017,
    named_tool_needs_parser=(
        "tool_choice=\"function=ChatCompletionNamedFunction(name='{name}') type='function'\" "
        + _NEEDS_PARSER
    ),
    required_tool_needs_parser='tool_choice="required" ' + _NEEDS_PARSER,
    reasoning_delta_keys=("reasoning",),
    finished_reasons=(*_FINISHED_V08, "error", "repetition"),
    embeddings=_EMBEDDINGS_V017,
    anthropic=_ANTHROPIC_V017,
    operator=_OPERATOR_V017,
)
V0_20 = replace(
    V0_17,
    name="0.20",
    first_release="0.18.0",
    version="0.20.0",
    include_usage_default=False,
    chat_context_rule=ContextRule.REQUESTED_OUTPUT,
    completion_context_rule=ContextRule.REQUESTED_OUTPUT,
    tool_parsers=_TOOL_PARSERS_V020,
    reasoning_parsers=_REASONING_PARSERS_V020,
    responses=_RESPONSES_V020,
    anthropic=_ANTHROPIC_V020,
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
    tool_parsers=_TOOL_PARSERS_V023,
    reasoning_parsers=_REASONING_PARSERS_V023,
    empty_tools_refused=True,
    responses=_RESPONSES_V023,
    embeddings=replace(
        _EMBEDDINGS_V017,
        float32_repr=True,
        truncate_too_large="truncate_prompt_tokens value is greater than max_model_len. Please "
        "request a smaller truncation size.",
    ),
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
    tool_parsers=_TOOL_PARSERS_V033,
    reasoning_parsers=_REASONING_PARSERS_V033,
    forced_tools_parsed=True,
    named_tool_needs_parser='tool_choice=function "{name}" ' + _NEEDS_PARSER,
    auto_tool_finish_content=False,
    tool_delta_content_null=True,
    reasoning_usage_details=True,
    embeddings=replace(V0_23.embeddings, dimensions_range_check=True, ignore_unknown_model=True),
    responses=_RESPONSES_V033,
    anthropic=_ANTHROPIC_V033,
    operator=replace(_OPERATOR_V017, json_bodies=True),
    cors_origins=(),
    cors_starlette_1=True,
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
