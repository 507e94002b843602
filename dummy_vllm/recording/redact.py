"""What of a proxied exchange may be written to disk.

Request headers go through an allow-list: a client may send any credential under any name, so
only headers known to be harmless are kept. Response headers go through a deny-list instead,
because replay serves them back and unknown upstream headers are part of what it reproduces.

``scrub_secrets`` is for request bodies, where a client's credentials can appear. Responses
get ``scrub_keys``, key-shaped strings only (a prompt echoed back holds what the client sent;
vLLM's logprobs carry a ``"token"`` field that member scrubbing would blank).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

REDACTED = "[REDACTED]"

_ALLOWED_REQUEST_HEADERS = frozenset({"content-type", "accept", "user-agent", "x-request-id"})
# The OpenAI SDKs describe themselves here (SDK version, runtime, retry count): useful when
# comparing clients and free of account data, unlike openai-organization/openai-project.
_ALLOWED_REQUEST_PREFIXES = ("x-stainless-",)
_SENSITIVE_NAME_PARTS = ("auth", "token", "secret", "key", "cookie", "session", "password")

# Hop-by-hop (RFC 9110 7.6.1) or describing the upstream's framing, encoding and clock, which
# the replaying server produces itself.
_DROPPED_RESPONSE_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "content-encoding",
        "date",
        "server",
    }
)

# JSON member names (lower-cased, without "_" and "-") whose string value is a secret: these,
# and any name ending like them ("x_api_key", "client_secret", "db_password").
_SECRET_FIELDS = frozenset({"token", "authorization"})
_SECRET_SUFFIXES = (
    "apikey",
    "accesstoken",
    "refreshtoken",
    "authtoken",
    "sessiontoken",
    "password",
    "passwd",
    "secret",
    "authorization",
)

# A JSON member with a string value. Raw quotes only delimit strings in JSON, so matching from a
# quote cannot start inside a string; the value alternation honours escapes.
_JSON_STRING_MEMBER = re.compile(rb'"([A-Za-z0-9_.-]+)"(\s*:\s*)"(?:[^"\\]|\\.)*"', re.DOTALL)
# Token alphabets exclude quotes and backslashes, so replacing them keeps a JSON string valid.
_KEY_PATTERNS = (
    # OpenAI keys, and the short ones test setups use ("sk-1234").
    (re.compile(rb"\bsk-[A-Za-z0-9_-]{4,}"), REDACTED.encode()),
    (re.compile(rb"\bhf_[A-Za-z0-9]{20,}"), REDACTED.encode()),
    (re.compile(rb"\b[Bb]earer\s+[A-Za-z0-9._~+/-]{16,}=*"), b"Bearer " + REDACTED.encode()),
)


def filter_request_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The request headers worth keeping, names lower-cased."""
    kept: dict[str, str] = {}
    for name, value in headers.items():
        lower = name.lower()
        if lower in _ALLOWED_REQUEST_HEADERS or (
            lower.startswith(_ALLOWED_REQUEST_PREFIXES) and not _is_sensitive(lower)
        ):
            kept[lower] = value
    return kept


def filter_response_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The response headers replay may send back, names lower-cased."""
    # Headers named in Connection are hop-by-hop for this response too.
    connection = next((v for n, v in headers.items() if n.lower() == "connection"), "")
    dropped = _DROPPED_RESPONSE_HEADERS | {
        token.strip().lower() for token in connection.split(",") if token.strip()
    }
    return {
        lower: value
        for name, value in headers.items()
        if (lower := name.lower()) not in dropped and not _is_sensitive(lower)
    }


def scrub_secrets(data: bytes) -> bytes:
    """``data`` with API keys, bearer tokens and secret-named JSON string members redacted.

    Only the secret's own bytes change, so valid JSON stays valid and byte-identical elsewhere.
    JSON nested inside a JSON string (tool-call arguments) is escaped and not parsed; key-shaped
    values in it are still caught by their shape.
    """
    return scrub_keys(_JSON_STRING_MEMBER.sub(_redact_member, data))


def scrub_keys(data: bytes) -> bytes:
    """``data`` with key-shaped strings (``sk-...``, bearer tokens, ``hf_...``) redacted."""
    for pattern, replacement in _KEY_PATTERNS:
        data = pattern.sub(replacement, data)
    return data


def scrub_url(url: str) -> str:
    """``url`` without the password of any ``user:password@`` part."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:{REDACTED}@{host}"))


def _is_sensitive(name: str) -> bool:
    return any(part in name for part in _SENSITIVE_NAME_PARTS)


def _redact_member(match: re.Match[bytes]) -> bytes:
    name = match.group(1).decode().replace("_", "").replace("-", "").lower()
    if name not in _SECRET_FIELDS and not name.endswith(_SECRET_SUFFIXES):
        return match.group(0)
    return b'"' + match.group(1) + b'"' + match.group(2) + b'"' + REDACTED.encode() + b'"'
