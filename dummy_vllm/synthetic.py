"""Synthetic mode: what the pretend model generates for a parsed request, and when.

Everything expensive (vocabulary, corpus, JSON of every token) is built once per worker in
``SyntheticModel``; a request only slices the corpus, applies stop strings and draws its
latency samples.
"""

from __future__ import annotations

import codecs
import random
import zlib
from array import array
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

from .engine import Corpus, LatencyModel, Tokenizer, sample_output_length
from .plan import ResponsePlan
from .protocol.requests import (
    CHAT_ROUTE,
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
    TokenLogprob,
    Wire,
    chat_body,
    chat_events,
    completion_body,
    completion_events,
    render_chat_choice,
    render_completion_choice,
)
from .settings import SyntheticSettings

# Output token ids as unsigned shorts: every id of the built-in vocabulary fits.
_ID_TYPECODE = "H"
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

    def __init__(self, settings: SyntheticSettings, served: ServedModel, seed: int) -> None:
        self.settings = settings
        self.served = served
        # Text and timing when a request sends no seed of its own.
        self.seed = seed
        self.tokenizer = tokenizer = served.tokenizer
        assert tokenizer.vocab_size <= 1 << 16, "token ids must fit the id arrays"
        self.wire = Wire(served.profile, served.fingerprint)
        self.corpus = Corpus(tokenizer, seed=seed)
        self.latency = LatencyModel(settings.latency)
        word_ids = tokenizer.word_ids
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
        return self.completion_plan(parse_completion_request(body, self.served), request_id, timing)

    def chat_plan(
        self, chat: ChatRequest, request_id: str | None, timing: Timing | None = None
    ) -> ResponsePlan:
        params = chat.params
        generation = self.generate([chat.prompt], params, timing)
        meta = self.wire.meta("chatcmpl", chat.model, request_id)
        plan = generation.plan(params)
        if params.stream:
            stream = ChatStream(
                self.wire,
                self.tokenizer,
                meta,
                generation.prompt_tokens,
                params.include_usage,
                params.continuous_usage_stats,
            )
            plan.events = chat_events(stream, generation.choices, generation.offsets)
        else:
            rendered = (render_chat_choice(self.tokenizer, c) for c in generation.choices)
            plan.body = chat_body(
                self.wire, meta, rendered, generation.prompt_tokens, generation.completion_tokens
            )
        return plan

    def completion_plan(
        self, completion: CompletionRequest, request_id: str | None, timing: Timing | None = None
    ) -> ResponsePlan:
        params = completion.params
        generation = self.generate(completion.prompts, params, timing)
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
            rendered = (
                render_completion_choice(self.tokenizer, c, echo_texts.get(c.index, ""))
                for c in generation.choices
            )
            plan.body = completion_body(
                self.wire, meta, rendered, generation.prompt_tokens, generation.completion_tokens
            )
        return plan

    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        params: GenerationParams,
        timing: Timing | None = None,
    ) -> Generation:
        """Outputs for every prompt x n choices, indexed prompt-major as vLLM does."""
        base_seed = params.seed if params.seed is not None else self._prompt_seed(prompts)
        eos_rate = 0.0 if params.ignore_eos else self.settings.eos_rate
        # Seeding a Random costs more than the rest of a short request: only when drawn from.
        draws = eos_rate > 0 or timing is not None or self.latency.draws
        rng = random.Random(base_seed) if draws else _NO_DRAWS
        choices: list[ChoiceOutput] = []
        for prompt_index, prompt in enumerate(prompts):
            for sample in range(params.n):
                index = prompt_index * params.n + sample
                # 2 bytes a token (ids are below the vocabulary's 11k): n x max_tokens can be
                # hundreds of thousands.
                if self.settings.echo_prompt:
                    ids = array(_ID_TYPECODE, prompt[: params.max_tokens])
                    length = len(ids)
                else:
                    length = sample_output_length(
                        rng, params.max_tokens, params.min_tokens, eos_rate
                    )
                    window = self.corpus.tokens(base_seed * 1_000_003 + index, length)
                    ids = array(_ID_TYPECODE, window)
                choices.append(self._finish(index, ids, params))
        prompt_tokens = sum(len(prompt) for prompt in prompts)
        steps = max((len(choice.token_ids) for choice in choices), default=0)
        generation = Generation(choices=choices, prompt_tokens=prompt_tokens)
        offsets_of = timing or self.latency.token_offsets
        generation.offsets = offsets_of(rng, max(map(len, prompts)), steps)
        return generation

    def _prompt_seed(self, prompts: Sequence[Sequence[int]]) -> int:
        # Without a request seed the answer is a function of the prompt and the server seed, so
        # identical requests get identical answers (like greedy decoding) and different ones differ.
        digest = self.seed
        for prompt in prompts:
            digest = zlib.crc32(array("q", prompt).tobytes(), digest)
        return digest

    def _finish(self, index: int, ids: array[int], params: GenerationParams) -> ChoiceOutput:
        tokenizer = self.tokenizer
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
        logprobs = None if params.logprobs is None else TokenLogprobs(self, ids, params.logprobs)
        return ChoiceOutput(
            index=index,
            token_ids=ids,
            text_overrides=texts,
            finish_reason=finish_reason,
            stop_reason=stop_reason,
            logprobs=logprobs,
        )

    def logprob(self, token_id: int, top: int) -> TokenLogprob:
        """The sampled token is always the most likely; ``top`` alternatives start with it."""
        words = self._word_ids
        chosen = self._logprob.get(token_id, -0.01)
        start = token_id % len(words)
        others = (words[(start + step) % len(words)] for step in range(1, top + 1))
        alternatives = [alt for alt in others if alt != token_id][: max(top - 1, 0)]
        ranked = [(alt, chosen - 0.5 * (rank + 1)) for rank, alt in enumerate(alternatives)]
        return TokenLogprob(token_id, chosen, [(token_id, chosen), *ranked] if top else [])


class TokenLogprobs(Sequence[TokenLogprob]):
    """A choice's log-probabilities, computed when read: a long answer streams them one token
    at a time, and a body writes them one after the other, so they never all exist at once."""

    __slots__ = ("_ids", "_model", "_top")

    def __init__(self, model: SyntheticModel, ids: Sequence[int], top: int) -> None:
        self._model = model
        self._ids = ids
        self._top = top

    def __len__(self) -> int:
        return len(self._ids)

    @overload
    def __getitem__(self, position: int) -> TokenLogprob: ...

    @overload
    def __getitem__(self, position: slice) -> Sequence[TokenLogprob]: ...

    def __getitem__(self, position: int | slice) -> TokenLogprob | Sequence[TokenLogprob]:
        if isinstance(position, slice):
            return [self._model.logprob(tid, self._top) for tid in self._ids[position]]
        return self._model.logprob(self._ids[position], self._top)


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
