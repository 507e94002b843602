"""The operator routes' answers: load, server info, sleep and wake-up, the prefix cache, LoRA
adapters (vLLM 0.11 ``api_server.py``, ``entrypoints/serve/*`` and ``openai/models/serving.py``
from 0.12). The dev-mode routes answer an empty 200 up to 0.23 and JSON from 0.24."""

from __future__ import annotations

import platform
import sys
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from .errors import APIError, ValidationFailure, literal_error
from .fields import as_bool, as_str
from .profiles import Profile
from .requests import ServedModel, coerce_fields, missing_field
from .responses import dumps

SLEEP_MODES = ("abort", "wait", "keep")
INVALID_USER_INPUT = "InvalidUserInput"


def load_body(in_flight: int) -> bytes:
    return dumps({"server_load": in_flight})


def server_info_body(profile: Profile, served: ServedModel, config_format: str) -> bytes:
    """A stand-in for ``str(VllmConfig)`` (or its JSON form), then the era's env sections."""
    config: dict[str, Any] = {
        "model": served.root,
        "served_model_name": served.name,
        "max_model_len": served.max_model_len,
        "tokenizer": served.root,
        "dtype": "torch.bfloat16",
        "seed": 0,
    }
    info: dict[str, Any] = {
        "vllm_config": config
        if config_format == "json"
        else ", ".join(f"{key}={value!r}" for key, value in config.items())
    }
    sections = {
        "vllm_env": {"VLLM_SERVER_DEV_MODE": True},
        "system_env": {
            "os": platform.platform(),
            "python_version": sys.version.split()[0],
            "is_cuda_available": False,
            "vllm_version": served.version,
        },
    }
    for key in profile.operator.server_info_keys:
        info[key] = sections[key]
    return dumps(info)


def _query_error(name: str, error_type: str, msg: str, value: Any, **ctx: Any) -> APIError:
    error: dict[str, Any] = {"type": error_type, "loc": ("query", name), "msg": msg, "input": value}
    if ctx:
        error["ctx"] = ctx
    return ValidationFailure([error])


def sleep_level(args: Mapping[str, Sequence[str]], profile: Profile) -> int:
    """``?level=`` (default 1); 0.24+ also validate ``mode`` and bound the level to 0..2."""
    text = (args.get("level") or ["1"])[0]
    try:
        level = int(text.strip())
    except ValueError:
        raise _query_error(
            "level",
            "int_parsing",
            "Input should be a valid integer, unable to parse string as an integer",
            text,
        ) from None
    if profile.operator.json_bodies:
        if level < 0:
            raise _query_error(
                "level",
                "greater_than_equal",
                "Input should be greater than or equal to 0",
                text,
                ge=0,
            )
        if level > 2:
            raise _query_error(
                "level", "less_than_equal", "Input should be less than or equal to 2", text, le=2
            )
        mode = (args.get("mode") or ["abort"])[0]
        if mode not in SLEEP_MODES:
            raise ValidationFailure([literal_error(("query", "mode"), mode, SLEEP_MODES)])
    return level


def sleep_body(profile: Profile, level: int) -> bytes | None:
    """None: an empty 200."""
    return dumps({"status": "sleeping", "level": level}) if profile.operator.json_bodies else None


def wake_up_body(profile: Profile, tags: list[str] | None, awake: bool) -> bytes | None:
    if not profile.operator.json_bodies:
        return None
    return dumps({"status": "awake" if awake else "sleeping", "tags": tags})


def reset_prefix_cache_body(profile: Profile) -> bytes | None:
    return dumps({"success": True}) if profile.operator.json_bodies else None


# --- LoRA adapters ------------------------------------------------------------------------------


def _lora_error(status: int, message: str, error_type: str = INVALID_USER_INPUT) -> APIError:
    return APIError(status, message, error_type)


def lora_to_load(
    body: Mapping[str, Any], adapters: Mapping[str, str], profile: Profile
) -> tuple[str, str]:
    """(name, path) of an adapter to load; the path is taken as given, never read."""
    fields = coerce_fields(
        body, {"lora_name": as_str, "lora_path": as_str, "load_inplace": as_bool}
    )
    for name in ("lora_name", "lora_path"):
        if name not in fields:
            raise missing_field(name, body)
    name, path = fields["lora_name"], fields["lora_path"]
    if not name or not path:
        raise _lora_error(
            HTTPStatus.BAD_REQUEST, "Both 'lora_name' and 'lora_path' must be provided."
        )
    inplace = profile.operator.lora_load_inplace
    if name in adapters and not (inplace and fields.get("load_inplace")):
        message = f"The lora adapter '{name}' has already been loaded."
        if inplace:
            message += " If you want to load the adapter in place, set 'load_inplace' to True."
        raise _lora_error(HTTPStatus.BAD_REQUEST, message)
    return name, path


def lora_to_unload(body: Mapping[str, Any], adapters: Mapping[str, str]) -> str:
    fields = coerce_fields(body, {"lora_name": as_str})
    if "lora_name" not in fields:
        raise missing_field("lora_name", body)
    name = fields["lora_name"]
    if not name:
        raise _lora_error(
            HTTPStatus.BAD_REQUEST, "'lora_name' needs to be provided to unload a LoRA adapter."
        )
    if name not in adapters:
        raise _lora_error(
            HTTPStatus.NOT_FOUND, f"The lora adapter '{name}' cannot be found.", "NotFoundError"
        )
    return str(name)


def lora_loaded(name: str) -> bytes:
    return f"Success: LoRA adapter '{name}' added successfully.".encode()


def lora_unloaded(name: str) -> bytes:
    return f"Success: LoRA adapter '{name}' removed successfully.".encode()
