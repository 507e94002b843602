"""Run vLLM's own ``vllm bench serve`` code against a server, without installing vLLM.

``vllm bench serve`` lives in ``vllm/benchmarks/serve.py`` and needs the whole vllm package
(torch, CUDA wheels) only for its imports. This runner loads the real ``serve.py`` and
``benchmarks/lib/`` of an unpacked vLLM source tree and puts small stand-ins where they import
the rest of vllm:

- ``vllm.benchmarks.datasets``: the ``random`` dataset only, prompts of random words (vLLM
  decodes random token ids with a tokenizer; there is no tokenizer here). ``serve.py`` then
  re-aligns them through the server's ``/tokenize`` and ``/detokenize`` as it always does.
- ``vllm.tokenizers``: none; run with ``--skip-tokenizer-init`` so output lengths come from the
  server's usage, as vLLM does without a tokenizer.
- ``vllm.logger``, ``vllm.utils.*``: the logger, argparse, a no-op GC freeze, host:port joining.

Everything that sends requests, times them and writes ``--save-result --save-detailed`` JSON is
vLLM's code. Used to make ``tests/fixtures/bench/`` (see its README). Needs numpy, tqdm, regex
and aiohttp (a scratch venv, not the project's):

    python benchmarks/vllm_bench_run.py --vllm-src /tmp/vsrc/0.33.0 -- \\
        --base-url http://127.0.0.1:8000 --model m --dataset-name random --input-len 128 \\
        --output-len 64 --num-prompts 200 --max-concurrency 8 --skip-tokenizer-init \\
        --save-result --save-detailed --result-dir out --result-filename run.json
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import random
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WORDS = [
    *("the", "of", "and", "to", "in", "is", "was", "for", "on", "that", "with", "as", "by"),
    *("river", "stone", "light", "harbor", "signal", "winter", "market", "garden", "letter"),
    *("quiet", "morning", "distant", "careful", "bright", "station", "paper", "number"),
]


@dataclass
class SampleRequest:
    """The fields ``serve.py`` reads from vLLM's SampleRequest."""

    prompt: Any
    prompt_len: int
    expected_output_len: int = 0
    multi_modal_data: Any = None
    lora_request: Any = None
    request_id: str | None = None
    timestamp: float | None = None
    chat_messages: list[dict[str, Any]] | None = None
    request_overrides: dict[str, Any] | None = None


def add_dataset_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trust-remote-code", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-prompts", type=int, default=1000)
    parser.add_argument("--dataset-name", default="random", choices=["random"])
    parser.add_argument("--dataset-path", default=None)
    parser.add_argument("--random-input-len", type=int, default=1024)
    parser.add_argument("--random-output-len", type=int, default=128)


def get_samples(args: argparse.Namespace, tokenizer: Any) -> list[SampleRequest]:
    rng = random.Random(args.seed)
    return [
        SampleRequest(
            prompt=" ".join(rng.choice(WORDS) for _ in range(args.random_input_len)),
            prompt_len=args.random_input_len,
            expected_output_len=args.random_output_len,
            request_id=f"{args.request_id_prefix}{i}",
        )
        for i in range(args.num_prompts)
    ]


def _module(name: str, **attributes: Any) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attributes)
    sys.modules[name] = module
    return module


def _load(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_serve(vllm_src: Path) -> types.ModuleType:
    benchmarks = vllm_src / "vllm" / "benchmarks"
    for package in ("vllm", "vllm.benchmarks", "vllm.benchmarks.lib", "vllm.utils"):
        _module(package, __path__=[])
    _module("vllm.logger", init_logger=logging.getLogger)
    _module(
        "vllm.benchmarks.datasets",
        SampleRequest=SampleRequest,
        add_dataset_parser=add_dataset_parser,
        get_samples=get_samples,
    )
    _module("vllm.tokenizers", TokenizerLike=Any, get_tokenizer=None)
    _module("vllm.utils.argparse_utils", FlexibleArgumentParser=argparse.ArgumentParser)
    _module("vllm.utils.gc_utils", freeze_gc_heap=lambda: None)
    _module("vllm.utils.network_utils", join_host_port=lambda host, port: f"{host}:{port}")
    for name in ("endpoint_request_func", "ready_checker", "utils"):
        _load(f"vllm.benchmarks.lib.{name}", benchmarks / "lib" / f"{name}.py")
    return _load("vllm.benchmarks.serve", benchmarks / "serve.py")


def main() -> None:
    own = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    own.add_argument("--vllm-src", type=Path, required=True, help="unpacked vLLM source tree")
    own.add_argument("bench_args", nargs=argparse.REMAINDER)
    options = own.parse_args()
    serve = load_serve(options.vllm_src)
    parser = argparse.ArgumentParser(prog="vllm bench serve")
    serve.add_cli_args(parser)
    bench_args = [arg for arg in options.bench_args if arg != "--"]
    serve.main(parser.parse_args(bench_args))


if __name__ == "__main__":
    main()
