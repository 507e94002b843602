"""/v1/embeddings and /pooling: vectors, wire formats per era (against the serialisers vLLM uses,
run on the same values), validation as in vLLM's sources, and metrics counted per input."""

from __future__ import annotations

import base64
import json
import math
import re
import struct
from typing import Any

import pytest

from dummy_vllm.emit import Delivery
from dummy_vllm.engine import Tokenizer
from dummy_vllm.engine.embedding import SCALE, Embedder
from dummy_vllm.protocol.embeddings import base64_float32, float_list
from dummy_vllm.protocol.errors import APIError, ValidationFailure
from dummy_vllm.protocol.profiles import V0_11, V0_14, V0_17, V0_23, V0_33, Profile
from dummy_vllm.protocol.requests import EMBEDDINGS_ROUTE, POOLING_ROUTE, ServedModel
from dummy_vllm.settings import LatencySettings, Limits, SyntheticSettings
from dummy_vllm.synthetic import SyntheticModel

from .conftest import CAPTURES
from .test_metrics import make_metrics, scrape, value

TOKENIZER = Tokenizer()


def model(profile: Profile = V0_11, dimensions: int = 64, **latency: float) -> SyntheticModel:
    served = ServedModel(
        "m",
        "m",
        256,
        TOKENIZER,
        Limits(),
        profile=profile,
        version=profile.version,
        embedding_dimensions=dimensions,
    )
    return SyntheticModel(SyntheticSettings(latency=LatencySettings(**latency)), served, seed=0)


def embed(body: dict[str, Any], profile: Profile = V0_11, **kwargs: Any) -> dict[str, Any]:
    plan = model(profile, **kwargs).respond(EMBEDDINGS_ROUTE, {"model": "m", **body}, None)
    return dict(json.loads(plan.body))


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


# --- vectors ------------------------------------------------------------------------------------


def test_vectors_are_unit_norm_deterministic_and_seeded() -> None:
    ids = TOKENIZER.encode("The quick brown fox")
    vector = Embedder(384, seed=0).embed(ids)
    assert len(vector) == 384
    assert math.sqrt(sum(v * v for v in vector)) / SCALE == pytest.approx(1.0, abs=1e-6)
    assert Embedder(384, seed=0).embed(ids) == vector
    assert Embedder(384, seed=1).embed(ids) != vector


def test_edge_inputs_still_give_unit_vectors() -> None:
    # No tokens at all: the shared component alone.
    empty = Embedder(8, seed=0).embed([])
    assert math.sqrt(sum(v * v for v in empty)) / SCALE == pytest.approx(1.0, abs=1e-6)
    (only,) = Embedder(1, seed=0).embed([7, 8])
    assert abs(only) == SCALE
    assert float_list([SCALE, -SCALE, 0, 3], float32_repr=True) == b"[1.0,-1.0,0.0,3e-7]"


def test_similar_texts_are_closer_than_unrelated_ones() -> None:
    body = {
        "input": [
            "The cat sat on the mat.",
            "The cat sat on a mat.",
            "Quarterly revenue grew by four percent in Europe.",
        ]
    }
    a, b, c = (item["embedding"] for item in embed(body, dimensions=512)["data"])
    assert cosine(a, b) > 0.8
    assert cosine(a, c) < 0.5
    assert cosine(a, b) > cosine(a, c) + 0.3


def test_token_ids_embed_like_their_text_and_any_ids_are_accepted() -> None:
    text = "hello there world"
    by_text = embed({"input": text})["data"][0]["embedding"]
    by_ids = embed({"input": TOKENIZER.encode(text)})["data"][0]["embedding"]
    assert by_ids == by_text
    # tiktoken ids far outside this tokenizer's vocabulary (LangChain sends them).
    body = embed({"input": [[100257, 9906, 1917], [15339]]})
    assert [item["index"] for item in body["data"]] == [0, 1]
    assert body["usage"]["prompt_tokens"] == 4


def test_dimensions_truncate_and_renormalise() -> None:
    full = Embedder(64, seed=0).embed([5, 6, 7])
    short = Embedder(64, seed=0).embed([5, 6, 7], 16)
    assert len(short) == 16
    assert math.sqrt(sum(v * v for v in short)) / SCALE == pytest.approx(1.0, abs=1e-6)
    # A Matryoshka prefix: the same direction as the full vector's first components.
    scale = math.sqrt(sum(v * v for v in full[:16]))
    assert [round(v / scale * SCALE) for v in full[:16]] == pytest.approx(short, abs=2)


# --- wire formats -------------------------------------------------------------------------------


def test_floats_print_as_the_eras_serialisers_print_them() -> None:
    capture = json.loads((CAPTURES / "embedding-floats_orjson-3.13_json.json").read_text())
    units = capture["units_of_1e-7"]
    # 0.21+: orjson of the numpy float32 array; up to 0.20: json.dumps of tensor.tolist().
    assert float_list(units, float32_repr=True).decode() == capture["orjson_float32"]
    assert float_list(units, float32_repr=False).decode() == capture["json_dumps_tolist"]


def test_base64_is_little_endian_float32_as_the_openai_sdk_decodes_it() -> None:
    units = [1234568, -5000000, 3333333, 0]
    raw = base64.b64decode(base64_float32(units))
    assert list(struct.unpack("<4f", raw)) == pytest.approx([v / SCALE for v in units], abs=1e-7)


USAGE_V011 = ["prompt_tokens", "total_tokens", "completion_tokens", "prompt_tokens_details"]


@pytest.mark.parametrize(
    ("profile", "usage_keys"),
    [(V0_11, USAGE_V011), (V0_33, [*USAGE_V011, "completion_tokens_details"])],
)
def test_body_shape_per_era(profile: Profile, usage_keys: list[str]) -> None:
    body = embed({"input": ["a b c", "d"]}, profile)
    assert list(body) == ["id", "object", "created", "model", "data", "usage"]
    assert re.fullmatch(rf"embd-[0-9a-f]{{{profile.id_hex_digits}}}", body["id"])
    assert body["object"] == "list"
    assert [list(item) for item in body["data"]] == [["index", "object", "embedding"]] * 2
    assert body["data"][0]["object"] == "embedding"
    assert list(body["usage"]) == usage_keys
    assert body["usage"]["completion_tokens"] == 0
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] == 4
    plan = model(profile).respond(EMBEDDINGS_ROUTE, {"input": "a b c"}, None)
    listed = re.search(rb'"embedding":\[([^]]*)\]', plan.body)
    assert listed is not None
    longest = max(map(len, listed.group(1).split(b",")))
    # 0.11 prints each float32 as a double (17 significant digits), 0.33 its shortest form.
    assert longest > 12 if profile is V0_11 else longest <= len("-0.1234567")


def test_ids_follow_the_request_id_header_then_the_body() -> None:
    served = model()
    body = {"input": "x", "request_id": "from-body"}
    assert json.loads(served.respond(EMBEDDINGS_ROUTE, body, "hdr").body)["id"] == "embd-hdr"
    assert json.loads(served.respond(EMBEDDINGS_ROUTE, body, None).body)["id"] == "embd-from-body"


@pytest.mark.parametrize(
    ("profile", "prefix", "per_token"), [(V0_14, "pool", True), (V0_17, "pooling", False)]
)
def test_pooling_per_era(profile: Profile, prefix: str, per_token: bool) -> None:
    plan = model(profile).respond(POOLING_ROUTE, {"input": "a b c", "request_id": "x"}, None)
    body = json.loads(plan.body)
    # The body's request_id never names a /pooling answer.
    assert body["id"].startswith(f"{prefix}-")
    assert body["id"] != f"{prefix}-x"
    data = body["data"][0]
    assert list(data) == ["index", "object", "data"]
    assert data["object"] == "pooling"
    if per_token:
        assert len(data["data"]) == 3
        assert len(data["data"][0]) == 64
    else:
        assert len(data["data"]) == 64


def test_pooling_answers_after_its_latency_model() -> None:
    served = model(pooling=0.05, pooling_per_token=0.01)
    plan = served.respond(EMBEDDINGS_ROUTE, {"input": ["a b", "c d e"]}, None)
    assert plan.body_offset == pytest.approx(0.05 + 5 * 0.01)
    assert plan.pooled_prompts == (2, 3)
    assert plan.finish_reasons == ("stop", "stop")


# --- validation ---------------------------------------------------------------------------------


def error(body: dict[str, Any], profile: Profile = V0_11, route: str = EMBEDDINGS_ROUTE) -> Any:
    with pytest.raises(APIError) as caught:
        model(profile).respond(route, {"model": "m", **body}, None)
    return caught.value, json.loads(caught.value.body(profile))["error"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"input": []}, "please provide at least one prompt"),
        ({"input": [[]]}, "please provide at least one prompt"),
        # 0.11 pooling_params.py: values below 1 refused, larger ones give the whole vector.
        ({"input": "x", "dimensions": 0}, "Dimensions must be greater than 0"),
        (
            {"input": "x", "truncate_prompt_tokens": 300},
            "truncate_prompt_tokens value is greater than max_model_len. Please, select a "
            "smaller truncation size.",
        ),
        (
            {"input": " ".join(["word"] * 300)},
            "This model's maximum context length is 256 tokens. However, your request has 300 "
            "input tokens. Please reduce the length of the input messages.",
        ),
    ],
)
def test_handler_errors_v011(body: dict[str, Any], message: str) -> None:
    exc, envelope = error(body)
    assert exc.status == 400
    assert envelope["type"] == "BadRequestError"
    assert envelope["message"] == message


def test_handler_errors_v033() -> None:
    _, envelope = error({"input": "x", "dimensions": 65}, V0_33)
    assert envelope["message"] == "Model 'm' only supports dimensions in range [1, 64], got 65."
    _, envelope = error({"input": "x", "truncate_prompt_tokens": 300}, V0_33)
    assert envelope["message"].endswith("Please request a smaller truncation size.")
    assert V0_23.embeddings.truncate_too_large == V0_33.embeddings.truncate_too_large
    _, envelope = error({"input": "word " * 300}, V0_33)
    assert envelope["param"] == "input_tokens"
    assert "exceeds this limit even without any output tokens" in envelope["message"]


def test_dimensions_beyond_the_model_give_the_whole_vector_up_to_0_23() -> None:
    body = embed({"input": "x", "dimensions": 1000})
    assert len(body["data"][0]["embedding"]) == 64
    assert len(embed({"input": "x", "dimensions": 8})["data"][0]["embedding"]) == 8
    _, envelope = error({"input": "x", "dimensions": 8}, route=POOLING_ROUTE)
    assert envelope["message"] == "dimensions is currently not supported"


def test_truncation_keeps_the_end_and_minus_one_means_the_context() -> None:
    ids = list(range(300, 600))
    body = embed({"input": ids, "truncate_prompt_tokens": -1})
    assert body["usage"]["prompt_tokens"] == 256
    kept = embed({"input": ids, "truncate_prompt_tokens": 10})
    assert kept["data"][0]["embedding"] == embed({"input": ids[-10:]})["data"][0]["embedding"]


def test_model_is_checked_until_0_24_ignored_after() -> None:
    exc, envelope = error({"input": "x", "model": "other"})
    assert exc.status == 404
    assert envelope["type"] == "NotFoundError"
    assert embed({"input": "x", "model": "other"}, V0_33)["model"] == "m"


@pytest.mark.parametrize(
    ("body", "error_type"),
    [
        ({}, "missing"),
        ({"input": "x", "encoding_format": "bytes"}, "literal_error"),
        ({"input": 5}, "string_type"),
        ({"input": "x", "truncate_prompt_tokens": -2}, "greater_than_equal"),
        ({"input": "x", "dimensions": "many"}, "int_parsing"),
    ],
)
def test_validation_errors_are_pydantics(body: dict[str, Any], error_type: str) -> None:
    with pytest.raises(ValidationFailure) as caught:
        model().respond(EMBEDDINGS_ROUTE, body, None)
    assert caught.value.errors[0]["type"] == error_type
    assert json.loads(caught.value.body(V0_11))["error"]["type"] == "Bad Request"


def test_chat_form_embeds_the_templated_messages() -> None:
    body = embed({"messages": [{"role": "user", "content": "hi there"}]})
    # "<|user|>\nhi there</s>\n" without a generation prompt: 4 template tokens around 2.
    assert body["usage"]["prompt_tokens"] == 6


# --- metrics: every input is a request -----------------------------------------------------


def test_metrics_count_each_input_as_a_request() -> None:
    metrics, _ = make_metrics()
    plan = model().respond(EMBEDDINGS_ROUTE, {"input": ["a b", "c", "d e f"]}, None)
    metrics.request_finished(plan, Delivery(end=1.2, complete=True), 1.0, 1.0)
    families = scrape(metrics)
    assert value(families["vllm:request_success"], "_total", finished_reason="stop") == 3
    assert value(families["vllm:prompt_tokens"], "_total") == 6
    assert value(families["vllm:generation_tokens"], "_total") == 0
    prompts = families["vllm:request_prompt_tokens"]
    assert value(prompts, "_count") == 3
    assert value(prompts, "_sum") == 6
    for name in ("time_to_first_token_seconds", "e2e_request_latency_seconds"):
        family = families[f"vllm:{name}"]
        assert value(family, "_count") == 3
        assert value(family, "_sum") == pytest.approx(3 * 0.2)
    assert value(families["vllm:request_params_n"], "_count") == 3
    # max_tokens is no pooling parameter: vLLM observes none.
    assert value(families["vllm:request_params_max_tokens"], "_count") == 0
