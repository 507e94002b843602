"""Synthetic mode: what the pretend model generates for a parsed request, and when.

Everything expensive (vocabulary, corpus, JSON of every token) is built once per worker in
``SyntheticModel``; a request only slices the corpus, applies stop strings and draws its
latency samples.
"""

from __future__ import annotations

import codecs
import json
import random
import time
import zlib
from array import array
from collections.abc import Callable, Mapping, MutableSequence, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .engine import (
    Corpus,
    LatencyModel,
    Tokenizer,
    jsonschema,
    sample_natural_length,
    sample_output_length,
)
from .engine.embedding import Embedder
from .engine.function_calls import call_arguments
from .engine.jsonschema import SchemaError
from .engine.regex import matching_string
from .engine.tokenizer import IDS_TYPECODE, THINK_END
from .engine.tools import plan_tool_calls
from .plan import ResponsePlan
from .protocol.anthropic import Reply, message_body, messages_events, parse_messages_request
from .protocol.constraints import ConstraintKind, OutputConstraint, ToolMode, ToolRequest
from .protocol.deltas import CallSpan, Layout, ToolStyle, message_of, stream_deltas, tool_text
from .protocol.embeddings import embedding_body, parse_embedding_request, pooling_body
from .protocol.errors import APIError, bad_request
from .protocol.profiles import Profile
from .protocol.requests import (
    CHAT_ROUTE,
    COMPLETIONS_ROUTE,
    EMBEDDINGS_ROUTE,
    MESSAGES_ROUTE,
    POOLING_ROUTE,
    RESPONSES_ROUTE,
    ChatRequest,
    CompletionRequest,
    GenerationParams,
    ServedModel,
    parse_chat_request,
    parse_completion_request,
)
from .protocol.responses import (
    ChatStream,
    ChoiceOutput,
    CompletionStream,
    RenderedChoice,
    ResponseMeta,
    TokenLogprob,
    Wire,
    chat_body,
    chat_events,
    completion_body,
    completion_events,
    random_id,
    render_chat_choice,
    render_completion_choice,
)
from .protocol.responses_api import (
    Answer,
    ResponsesStream,
    parse_responses_request,
    response_body,
    response_head,
    responses_events,
)
from .response_store import ResponseStore
from .settings import OutputLength, SyntheticSettings

# Handed out when nothing will be drawn (no jitter, no EOS rate): never consumed.
_NO_DRAWS = random.Random(0)
# (rng, prompt tokens, token steps) -> offset of each step, seconds: the latency model's shape.
Timing = Callable[[random.Random, int, int], list[float]]


@dataclass(slots=True)
class Generation:
    """A request's outputs, in response order, and when each token step is due (seconds)."""

    choices: list[ChoiceOutput]
    prompt_tokens: int
    offsets: list[float] = field(default_factory=list)
    # Reasoning tokens of all choices, when a reasoning parser counted them.
    reasoning_tokens: int | None = None

    @property
    def completion_tokens(self) -> int:
        return sum(len(choice.token_ids) for choice in self.choices)

    def plan(self, params: GenerationParams) -> ResponsePlan:
        """A plan without content yet: the accounting every mode reports."""
        return ResponsePlan(
            stream=params.stream,
            body_offset=self.offsets[-1] if self.offsets else 0.0,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            finish_reasons=tuple(choice.finish_reason for choice in self.choices),
            token_offsets=self.offsets,
            n=params.n,
            max_tokens=params.max_tokens,
        )


class SyntheticModel:
    """The synthetic responder: generated text on the configured latency model."""

    def __init__(
        self,
        settings: SyntheticSettings,
        served: ServedModel,
        seed: int,
        responses: ResponseStore | None = None,
    ) -> None:
        self.settings = settings
        self.served = served
        self.responses = responses or ResponseStore(settings.responses_store)
        self.embedder = Embedder(served.embedding_dimensions, seed)
        # Text and timing when a request sends no seed of its own.
        self.seed = seed
        self.tokenizer = tokenizer = served.tokenizer
        # Output ids are the corpus's unsigned shorts: every id of the built-in vocabulary fits.
        assert tokenizer.vocab_size <= 1 << 16, "output ids must fit two bytes"
        self.wire = Wire(served.profile, served.fingerprint)
        self.corpus = Corpus(tokenizer, seed=seed)
        self.latency = LatencyModel(settings.latency)
        word_ids = tokenizer.word_ids
        (self._think_end,) = tokenizer.encode(THINK_END)
        # Deterministic per-token log-probabilities, computed once.
        self._logprob = {
            tid: -0.05 - (zlib.crc32(tid.to_bytes(4, "little")) % 4000) / 1000.0 for tid in word_ids
        }
        self._word_ids = list(word_ids)

    def respond(
        self,
        route: str,
        body: Mapping[str, Any],
        request_id: str | None,
        timing: Timing | None = None,
    ) -> ResponsePlan:
        """``timing`` replaces the latency model (replay's profile policy)."""
        if route == CHAT_ROUTE:
            return self.chat_plan(parse_chat_request(body, self.served), request_id, timing)
        if route == COMPLETIONS_ROUTE:
            return self.completion_plan(
                parse_completion_request(body, self.served), request_id, timing
            )
        if route in (EMBEDDINGS_ROUTE, POOLING_ROUTE):
            return self.pooling_plan(route, body, request_id)
        if route == RESPONSES_ROUTE:
            return self.responses_plan(body, timing)
        if route == MESSAGES_ROUTE:
            return self.messages_plan(body, request_id, timing)
        raise ValueError(f"not a generation route: {route}")

    def warm_up(self) -> None:
        """Answer each kind of request once before the worker accepts connections, so that a
        burst of first requests finds nothing left to build or specialise."""
        for stream in (False, True):
            for route, prompt in (
                (CHAT_ROUTE, {"messages": [{"role": "user", "content": "Warm up."}]}),
                (COMPLETIONS_ROUTE, {"prompt": "Warm up."}),
            ):
                body: dict[str, Any] = {**prompt, "max_tokens": 1, "stream": stream, "seed": 0}
                if stream:
                    body["stream_options"] = {"include_usage": True}
                try:
                    plan = self.respond(route, body, None)
                except APIError:  # a context too short for it: nothing to warm
                    continue
                for _ in plan.events:
                    pass

    def chat_plan(
        self, chat: ChatRequest, request_id: str | None, timing: Timing | None = None
    ) -> ResponsePlan:
        params = chat.params
        if self._agent_style(chat):
            generation = self.generate_agent(chat, timing)
        else:
            generation = self.generate([chat.prompt], params, timing, chat.constraint)
        meta = self.wire.meta("chatcmpl", chat.model, request_id)
        plan = generation.plan(params)
        reasoning = generation.reasoning_tokens
        if params.stream:
            stream = ChatStream(
                self.wire,
                self.tokenizer,
                meta,
                generation.prompt_tokens,
                params.include_usage,
                params.continuous_usage_stats,
            )
            stream.reasoning_tokens = reasoning
            plan.events = chat_events(stream, generation.choices, generation.offsets)
        else:
            rendered = [
                render_chat_choice(self.tokenizer, c, params.return_token_ids)
                for c in generation.choices
            ]
            extra: dict[str, Any] = {}
            if params.prompt_logprobs is not None:
                extra["prompt_logprobs"] = self.prompt_logprobs(chat.prompt, params.prompt_logprobs)
            if params.return_token_ids:
                extra["prompt_token_ids"] = list(chat.prompt)
            plan.body = chat_body(
                self.wire,
                meta,
                rendered,
                generation.prompt_tokens,
                generation.completion_tokens,
                reasoning,
                extra,
            )
        return plan

    def _agent_style(self, chat: ChatRequest) -> bool:
        """Tool calls may be made, or a reasoning parser splits the answer."""
        return chat.tools.calls_possible or self._reasoning(chat)

    def _reasoning(self, chat: ChatRequest) -> bool:
        return bool(self.settings.agent.reasoning_parser) and chat.thinking

    def completion_plan(
        self, completion: CompletionRequest, request_id: str | None, timing: Timing | None = None
    ) -> ResponsePlan:
        params = completion.params
        generation = self.generate(completion.prompts, params, timing, completion.constraint)
        meta = self.wire.meta("cmpl", completion.model, request_id)
        echo_texts = (
            {
                prompt_index * params.n + sample: self.tokenizer.decode(prompt)
                for prompt_index, prompt in enumerate(completion.prompts)
                for sample in range(params.n)
            }
            if completion.echo
            else {}
        )
        plan = generation.plan(params)
        if params.stream:
            stream = CompletionStream(
                self.wire,
                self.tokenizer,
                meta,
                generation.prompt_tokens,
                params.include_usage,
                params.continuous_usage_stats,
                completion.prompts,
                params.n,
            )
            plan.events = completion_events(
                stream, generation.choices, generation.offsets, echo_texts
            )
        else:
            rendered = [
                self._completion_choice(completion, choice, echo_texts.get(choice.index, ""))
                for choice in generation.choices
            ]
            plan.body = completion_body(
                self.wire, meta, rendered, generation.prompt_tokens, generation.completion_tokens
            )
        return plan

    def _completion_choice(
        self, completion: CompletionRequest, choice: ChoiceOutput, echo_text: str
    ) -> RenderedChoice:
        """A non-streamed completions choice with what the request asked of its prompt: echoed
        log-probabilities (prompt tokens first), ``prompt_logprobs``, token ids."""
        params = completion.params
        prompt = completion.prompts[choice.index // params.n]
        echoed = (
            self._logprobs(prompt, params.logprobs)
            if completion.echo and params.logprobs is not None
            else ()
        )
        # With token ids the prompt's text is not echoed (vLLM clears prompt_text).
        text = "" if params.return_token_ids else echo_text
        rendered = render_completion_choice(self.tokenizer, choice, text, echoed)
        return replace(
            rendered,
            token_ids=list(choice.token_ids) if params.return_token_ids else None,
            prompt_token_ids=list(prompt) if params.return_token_ids else None,
            prompt_logprobs=self.prompt_logprobs(prompt, params.prompt_logprobs)
            if params.prompt_logprobs is not None
            else None,
        )

    def prompt_logprobs(self, prompt: Sequence[int], top: int) -> list[dict[str, Any] | None]:
        """vLLM's ``prompt_logprobs``: null for the first token, then per position the actual
        token (its rank) and the top alternatives, keyed by token id."""
        tokenizer = self.tokenizer
        entries: list[dict[str, Any] | None] = [None]
        for entry in self._logprobs(prompt[1:], top):
            ranked = entry.top or [(entry.token_id, entry.logprob)]
            entries.append(
                {
                    str(tid): {"logprob": lp, "rank": rank, "decoded_token": tokenizer.piece(tid)}
                    for rank, (tid, lp) in enumerate(ranked, start=1)
                }
            )
        return entries

    def pooling_plan(
        self, route: str, body: Mapping[str, Any], request_id: str | None
    ) -> ResponsePlan:
        """Embeddings (one vector per input) or /pooling (one per prompt token up to 0.14),
        due after the pooling latency of all inputs together."""
        served = self.served
        pooling = route == POOLING_ROUTE
        request = parse_embedding_request(body, served, pooling=pooling)
        shape = served.profile.embeddings
        if pooling:
            # /pooling names its answer after the header only, never the body's request_id.
            suffix = request_id or random_id(served.profile.id_hex_digits)
            answer_id = f"{shape.pooling_id_prefix}-{suffix}"
        else:
            suffix = request_id or request.request_id or random_id(served.profile.id_hex_digits)
            answer_id = f"embd-{suffix}"
        meta = ResponseMeta(answer_id, int(time.time()), request.model)
        prompt_tokens = sum(map(len, request.prompts))
        embed = self.embedder.embed
        if pooling:
            outputs = [
                [embed(prompt[max(i - 1, 0) : i + 1]) for i in range(len(prompt))]
                if shape.pooling_per_token
                else [embed(prompt)]
                for prompt in request.prompts
            ]
            body_bytes = pooling_body(
                self.wire, meta, outputs, request.encoding_format, prompt_tokens
            )
        else:
            vectors = [embed(prompt, request.dimensions) for prompt in request.prompts]
            body_bytes = embedding_body(
                self.wire, meta, vectors, request.encoding_format, prompt_tokens
            )
        return ResponsePlan(
            stream=False,
            body=body_bytes,
            body_offset=self.latency.pooling_offset(prompt_tokens),
            prompt_tokens=prompt_tokens,
            finish_reasons=("stop",) * len(request.prompts),
            pooled_prompts=tuple(map(len, request.prompts)),
        )

    def responses_plan(self, body: Mapping[str, Any], timing: Timing | None = None) -> ResponsePlan:
        """A Responses API answer: text, or a call of one of the request's function tools."""
        profile = self.served.profile
        store = self.responses
        request = parse_responses_request(body, self.served, store.history, store.enabled)
        params = request.params
        if request.call is None:
            generation = self.generate([request.prompt], params, timing)
            choice = generation.choices[0]
            pieces = self._pieces(choice)
            offsets = generation.offsets
            answer = Answer(
                text=choice.text(self.tokenizer),
                call=None,
                arguments="",
                output_tokens=len(choice.token_ids),
                truncated=choice.finish_reason == "length",
            )
        else:
            pieces, offsets, truncated = self._call(
                request.call.parameters, request.prompt, params, timing
            )
            answer = Answer("", request.call, "".join(pieces), len(pieces), truncated)
        head = response_head(request, profile)
        plan = ResponsePlan(
            stream=params.stream,
            body_offset=offsets[-1] if offsets else 0.0,
            prompt_tokens=len(request.prompt),
            completion_tokens=answer.output_tokens,
            finish_reasons=("length" if answer.truncated else "stop",),
            token_offsets=offsets,
            max_tokens=params.max_tokens,
        )
        if params.stream:
            stream = ResponsesStream(profile, head, request, answer)
            plan.events = responses_events(stream, pieces, offsets)
        else:
            plan.body = response_body(profile, head, request, answer)
        if request.store:
            said = (
                {"role": "assistant", "content": answer.text}
                if answer.call is None
                else {"role": "assistant", "content": f"{answer.call.name}({answer.arguments})"}
            )
            # GET shows the non-streamed body.
            stored = plan.body or response_body(profile, head, request, answer)
            store.put(head.id, stored, [*request.messages, said])
        return plan

    def messages_plan(
        self, body: Mapping[str, Any], request_id: str | None, timing: Timing | None = None
    ) -> ResponsePlan:
        """An Anthropic Messages answer: the chat completion vLLM runs, converted back."""
        served = self.served
        shape = served.profile.anthropic
        assert shape is not None, "the route is only served by eras that have it"
        request = parse_messages_request(body, served)
        params = request.params
        meta = self.wire.meta("chatcmpl", request.model, request_id)
        call_input: Any = None
        if request.call is None:
            generation = self.generate([request.prompt], params, timing)
            choice = generation.choices[0]
            pieces = self._pieces(choice)
            offsets = generation.offsets
            finish = choice.finish_reason
            stop_string = choice.stop_reason if isinstance(choice.stop_reason, str) else None
        else:
            pieces, offsets, truncated = self._call(
                request.call.parameters, request.prompt, params, timing
            )
            finish, stop_string = ("length" if truncated else "tool_calls"), None
            try:
                call_input = json.loads("".join(pieces))
            except ValueError:
                call_input = {}
        reply = Reply(
            pieces=pieces,
            call=request.call,
            call_id=f"chatcmpl-tool-{random_id(served.profile.id_hex_digits)}",
            finish_reason=finish,
            stop_string=stop_string,
            prompt_tokens=len(request.prompt),
            completion_tokens=len(pieces),
        )
        plan = ResponsePlan(
            stream=params.stream,
            body_offset=offsets[-1] if offsets else 0.0,
            prompt_tokens=reply.prompt_tokens,
            completion_tokens=reply.completion_tokens,
            finish_reasons=("length" if finish == "length" else "stop",),
            token_offsets=offsets,
            max_tokens=params.max_tokens,
        )
        if params.stream:
            plan.events = messages_events(shape, meta, reply, offsets)
        else:
            plan.body = message_body(shape, meta, reply, call_input)
        return plan

    def _pieces(self, choice: ChoiceOutput) -> list[str]:
        return [choice.text_at(self.tokenizer, i) for i in range(len(choice.token_ids))]

    def _call(
        self,
        schema: Any,
        prompt: Sequence[int],
        params: GenerationParams,
        timing: Timing | None,
    ) -> tuple[list[str], list[float], bool]:
        """A function call's arguments, one token per step (cut at max_tokens), when each
        step is due, and whether it was cut."""
        seed = params.seed if params.seed is not None else self._prompt_seed([prompt])
        tokenizer = self.tokenizer
        ids = tokenizer.encode(call_arguments(schema, seed))
        pieces = [tokenizer.piece(token) for token in ids[: params.max_tokens]]
        draws = timing is not None or self.latency.draws
        rng = random.Random(seed) if draws else _NO_DRAWS
        offsets = (timing or self.latency.token_offsets)(rng, len(prompt), len(pieces))
        return pieces, offsets, len(pieces) < len(ids)

    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        params: GenerationParams,
        timing: Timing | None = None,
        constraint: OutputConstraint | None = None,
    ) -> Generation:
        """Outputs for every prompt x n choices, indexed prompt-major as vLLM does."""
        base_seed = params.seed if params.seed is not None else self._prompt_seed(prompts)
        eos_rate = 0.0 if params.ignore_eos else self.settings.eos_rate
        natural = self._natural(params)
        # Seeding a Random costs more than the rest of a short request: only when drawn from.
        draws = eos_rate > 0 or natural is not None or timing is not None or self.latency.draws
        rng = random.Random(base_seed) if draws else _NO_DRAWS
        choices: list[ChoiceOutput] = []
        for prompt_index, prompt in enumerate(prompts):
            for sample in range(params.n):
                index = prompt_index * params.n + sample
                seed = base_seed * 1_000_003 + index
                ids: MutableSequence[int]
                if self.settings.echo_prompt:
                    ids = list(prompt[: params.max_tokens])
                    length = len(ids)
                else:
                    length = self._length(rng, params, natural, eos_rate)
                    if constraint is None:
                        # 2 bytes a token: n x max_tokens may be hundreds of thousands, and
                        # hundreds of such streams may wait on slow clients.
                        ids = self.corpus.tokens(seed, length)
                    else:
                        ids = self._constrained_ids(
                            constraint, random.Random(seed), length, params.max_tokens
                        )
                choices.append(self._finish(index, ids, params))
        return self._timed(Generation(choices, sum(map(len, prompts))), prompts, rng, timing)

    def _timed(
        self,
        generation: Generation,
        prompts: Sequence[Sequence[int]],
        rng: random.Random,
        timing: Timing | None,
    ) -> Generation:
        steps = max((len(choice.token_ids) for choice in generation.choices), default=0)
        offsets_of = timing or self.latency.token_offsets
        generation.offsets = offsets_of(rng, max(map(len, prompts)), steps)
        return generation

    def _natural(self, params: GenerationParams) -> OutputLength | None:
        """The natural-length law, when the request leaves the length to the model."""
        lengths = self.settings.default_length
        if params.natural_length and not params.ignore_eos and lengths.mean > 0:
            return lengths
        return None

    @staticmethod
    def _length(
        rng: random.Random,
        params: GenerationParams,
        natural: OutputLength | None,
        eos_rate: float,
    ) -> int:
        if natural is not None:
            return sample_natural_length(rng, natural, params.max_tokens, params.min_tokens)
        return sample_output_length(rng, params.max_tokens, params.min_tokens, eos_rate)

    def _constrained_ids(
        self, constraint: OutputConstraint, rng: random.Random, budget: int, room: int
    ) -> list[int]:
        """Tokens of an answer that meets ``constraint``, shrunk until it fits ``room`` with
        its EOS; a minimal answer that still does not fit is cut (finish_reason "length"), as
        a constrained decoder stopped by max_tokens is."""
        for _ in range(6):
            ids = self.tokenizer.encode(constrained_text(constraint, rng, budget))
            if len(ids) < room or budget <= 1:
                break
            budget //= 2
        return ids[:room]

    # --- tool calls and reasoning -------------------------------------------------------------

    def generate_agent(self, chat: ChatRequest, timing: Timing | None = None) -> Generation:
        """Answers that may call tools or reason first, one per choice."""
        params = chat.params
        prompts = [chat.prompt]
        base_seed = params.seed if params.seed is not None else self._prompt_seed(prompts)
        eos_rate = 0.0 if params.ignore_eos else self.settings.eos_rate
        natural = self._natural(params)
        rng = random.Random(base_seed)
        choices = []
        reasoning: int | None = None
        for index in range(params.n):
            limit = self._length(rng, params, natural, eos_rate)
            choice = self._agent_choice(chat, index, base_seed * 1_000_003 + index, limit)
            if choice.reasoning_tokens is not None:
                reasoning = (reasoning or 0) + choice.reasoning_tokens
            choices.append(choice)
        generation = Generation(choices, len(chat.prompt), reasoning_tokens=reasoning)
        return self._timed(generation, prompts, rng, timing)

    def _agent_choice(self, chat: ChatRequest, index: int, seed: int, limit: int) -> ChoiceOutput:
        params, tools, agent = chat.params, chat.tools, self.settings.agent
        profile = self.wire.profile
        rng = random.Random(seed)
        reasoning = self._reasoning(chat)
        thought = int(limit * agent.reasoning_ratio) if reasoning else 0
        ids = list(self.corpus.tokens(seed ^ 0x5EED, thought))
        hidden = 0
        if reasoning:
            ids.append(self._think_end)
            hidden = 1
        room = params.max_tokens - len(ids)
        try:
            calls = (
                plan_tool_calls(
                    tools.tools,
                    rng,
                    forced=tools.name,
                    required=tools.mode is ToolMode.REQUIRED,
                    call_rate=agent.tool_call_rate,
                    parallel=tools.parallel,
                    budget=max(room - 16, 8),
                )
                if tools.calls_possible
                else []
            )
        except SchemaError as exc:
            raise bad_request(
                f"This server cannot generate arguments for the tool's parameters: {exc}"
            ) from None
        style: ToolStyle | None = None
        spans: tuple[CallSpan, ...] = ()
        if calls:
            style = _tool_style(tools, profile.forced_tools_parsed)
            call_ids = [f"chatcmpl-tool-{random_id(profile.id_hex_digits)}" for _ in calls]
            text, spans = tool_text(style, calls, call_ids)
            ids += self.tokenizer.encode(text)
        elif chat.constraint is not None:
            ids += self._constrained_ids(chat.constraint, rng, max(limit - len(ids), 1), room)
        else:
            ids += self.corpus.tokens(seed, max(limit - len(ids), 0))
        complete = len(ids) < params.max_tokens
        ids = ids[: params.max_tokens]
        pieces = [self.tokenizer.piece(tid) for tid in ids]
        if complete:
            ids.append(self.tokenizer.eos_token_id)
            pieces.append("")
        finish = "length" if not complete else _finish_reason(tools, style, profile, params.stream)
        logprobs = self._logprobs(ids, params.logprobs) if params.logprobs is not None else None
        if not reasoning and style is None:
            return ChoiceOutput(
                index, ids, {len(ids) - 1: ""} if complete else {}, finish, None, logprobs
            )
        layout = Layout(
            thought,
            hidden,
            style,
            spans,
            reasoning_parsed=reasoning,
            forced=tools.mode in (ToolMode.NAMED, ToolMode.REQUIRED),
        )
        output = ChoiceOutput(
            index,
            ids,
            {len(ids) - 1: ""} if complete else {},
            finish,
            None,
            logprobs,
            reasoning_tokens=min(thought, len(ids)) if reasoning else None,
        )
        if params.stream:
            output.deltas = stream_deltas(pieces, layout, index, profile)
        else:
            message = message_of(pieces, layout, complete)
            if not chat.include_reasoning:
                message = replace(message, reasoning=None)
            output.message = message
        return output

    def _prompt_seed(self, prompts: Sequence[Sequence[int]]) -> int:
        # Without a request seed the answer is a function of the prompt and the server seed, so
        # identical requests get identical answers (like greedy decoding) and different ones differ.
        digest = self.seed
        for prompt in prompts:
            # Chat prompts come packed from the tokenizer; token-id prompts are packed here.
            packed = prompt if isinstance(prompt, array) else array(IDS_TYPECODE, prompt)
            digest = zlib.crc32(packed, digest)
        return digest

    def _finish(
        self, index: int, ids: MutableSequence[int], params: GenerationParams
    ) -> ChoiceOutput:
        tokenizer = self.tokenizer
        if params.max_tokens == 0:
            # echo with max_tokens 0: vLLM generates one token and hides it; it still counts.
            logprobs: list[TokenLogprob] | None = [] if params.logprobs is not None else None
            return ChoiceOutput(index, [tokenizer.eos_token_id], {0: ""}, "length", None, logprobs)
        # Echoed prompts may hold byte-fallback tokens: a character split over several tokens
        # streams on the token that completes it, the others carry "" (as vLLM holds them back).
        texts = incremental_texts(ids, tokenizer) if self.settings.echo_prompt else {}
        finish_reason = "length"
        stop_reason: str | None = None
        if params.stop:
            pieces = [texts.get(i, tokenizer.piece(tid)) for i, tid in enumerate(ids)]
            cut = _find_stop(pieces, params.stop, params.include_stop_str_in_output)
            if cut is not None:
                last, stop_texts, stop_reason = cut
                ids = ids[: last + 1]
                texts = {i: text for i, text in texts.items() if i <= last} | stop_texts
                finish_reason = "stop"
        if finish_reason == "length" and len(ids) < params.max_tokens:
            # Stopped by EOS: the EOS token counts and streams as an empty delta.
            ids.append(tokenizer.eos_token_id)
            texts[len(ids) - 1] = ""
            finish_reason = "stop"
        logprobs = self._logprobs(ids, params.logprobs) if params.logprobs is not None else None
        return ChoiceOutput(
            index=index,
            token_ids=ids,
            text_overrides=texts,
            finish_reason=finish_reason,
            stop_reason=stop_reason,
            logprobs=logprobs,
        )

    def _logprobs(self, ids: Sequence[int], top: int) -> list[TokenLogprob]:
        """The sampled token is always the most likely; ``top`` alternatives start with it."""
        words = self._word_ids
        result = []
        for tid in ids:
            chosen = self._logprob.get(tid, -0.01)
            start = tid % len(words)
            others = (words[(start + step) % len(words)] for step in range(1, top + 1))
            alternatives = [alt for alt in others if alt != tid][: max(top - 1, 0)]
            ranked = [(alt, chosen - 0.5 * (rank + 1)) for rank, alt in enumerate(alternatives)]
            result.append(TokenLogprob(tid, chosen, [(tid, chosen), *ranked] if top else []))
        return result


def incremental_texts(ids: Sequence[int], tokenizer: Tokenizer) -> dict[int, str]:
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    texts: dict[int, str] = {}
    for position, tid in enumerate(ids):
        text = decoder.decode(bytes(tokenizer.piece_bytes(tid)))
        if text != tokenizer.piece(tid):
            texts[position] = text
    return texts


def _find_stop(
    pieces: Sequence[str], stops: Sequence[str], include: bool
) -> tuple[int, dict[int, str], str] | None:
    """Where a stop string first appears, as vLLM's detokenizer cuts it: the token that
    completes the stop string is the last one counted, and the text ends before the stop
    string (or after it, with include_stop_str_in_output). Returns (last token index, text
    overrides, stop string)."""
    text = "".join(pieces)
    best: tuple[int, str] | None = None
    for stop in stops:
        position = text.find(stop)
        if position != -1 and (best is None or position < best[0]):
            best = (position, stop)
    if best is None:
        return None
    position, stop = best
    text_end = position + len(stop) if include else position
    completed_at = position + len(stop)
    overrides: dict[int, str] = {}
    offset = 0
    last = len(pieces) - 1
    for token_index, piece in enumerate(pieces):
        start, offset = offset, offset + len(piece)
        if offset > text_end:
            overrides[token_index] = piece[: max(text_end - start, 0)]
        if offset >= completed_at:
            last = token_index
            break
    return last, overrides, stop


def constrained_text(constraint: OutputConstraint, rng: random.Random, budget: int) -> str:
    """Text that meets ``constraint``, about ``budget`` tokens where the constraint allows."""
    kind = constraint.kind
    if kind is ConstraintKind.CHOICE:
        return rng.choice(constraint.choices)
    if kind is ConstraintKind.REGEX:
        return matching_string(constraint.pattern, rng)
    if kind is ConstraintKind.JSON_OBJECT:
        return jsonschema.dumps(jsonschema.json_object(rng, budget))
    try:
        return jsonschema.dumps(jsonschema.instance(constraint.schema, rng, budget))
    except SchemaError as exc:
        raise bad_request(f"This server cannot generate JSON for the schema: {exc}") from None


def _tool_style(tools: ToolRequest, parsed: bool) -> ToolStyle:
    """Named and "required" calls are guided JSON until strict tool calling (0.27+) sends them
    through the tool parser as "auto" ones are."""
    if parsed or tools.mode is ToolMode.AUTO:
        return ToolStyle.PARSED
    return ToolStyle.NAMED_JSON if tools.mode is ToolMode.NAMED else ToolStyle.REQUIRED_JSON


def _finish_reason(
    tools: ToolRequest, style: ToolStyle | None, profile: Profile, stream: bool
) -> str:
    if style is None:
        return "stop"
    if tools.mode is ToolMode.NAMED:
        return profile.named_tool_finish[stream]
    if tools.mode is ToolMode.REQUIRED:
        return profile.required_tool_finish[stream]
    return "tool_calls"
