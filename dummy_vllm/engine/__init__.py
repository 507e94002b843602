"""The synthetic generation engine: tokenizer, chat template, output text and latency."""

from dummy_vllm.engine.chat_template import render_chat_prompt
from dummy_vllm.engine.latency import LatencyModel
from dummy_vllm.engine.text import Corpus, sample_natural_length, sample_output_length
from dummy_vllm.engine.tokenizer import Tokenizer

__all__ = [
    "Corpus",
    "LatencyModel",
    "Tokenizer",
    "render_chat_prompt",
    "sample_natural_length",
    "sample_output_length",
]
