"""Record and replay storage: the SQLite store, redaction, and request matching."""

from .matching import DEFAULT_IGNORED, canonical_key, diff_fields, relaxed_key
from .redact import filter_request_headers, filter_response_headers, scrub_secrets
from .store import (
    SCHEMA_VERSION,
    ExchangeRecord,
    Outcome,
    Percentiles,
    SessionDetail,
    SessionNotFound,
    SessionSummary,
    Store,
    StoredExchange,
    StoreError,
    migrate,
)

__all__ = [
    "DEFAULT_IGNORED",
    "SCHEMA_VERSION",
    "ExchangeRecord",
    "Outcome",
    "Percentiles",
    "SessionDetail",
    "SessionNotFound",
    "SessionSummary",
    "Store",
    "StoreError",
    "StoredExchange",
    "canonical_key",
    "diff_fields",
    "filter_request_headers",
    "filter_response_headers",
    "migrate",
    "relaxed_key",
    "scrub_secrets",
]
