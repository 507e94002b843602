"""CORS as vLLM answers it: Starlette's ``CORSMiddleware`` with vLLM's ``--allowed-origins``,
``--allowed-methods``, ``--allowed-headers`` and ``--allow-credentials`` (max age 600, nothing
exposed, no origin regex).

The logic follows ``starlette/middleware/cors.py`` of 0.48 (the eras up to 0.23) and of 1.x
(0.24+, which needs starlette >= 1.0.1): 1.x also allows the QUERY method, adds the Vary header
to every preflight and to every answer that does not echo the origin, and echoes the origin of
simple requests when credentials are allowed instead of only for requests with a cookie. Header
names are lowercase, as Starlette writes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

PREFLIGHT_CONTENT_TYPE = "text/plain; charset=utf-8"
_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")
_SAFELISTED = frozenset({"Accept", "Accept-Language", "Content-Language", "Content-Type"})
_PREFLIGHT_VARY_1X = (
    "Origin, Access-Control-Request-Method, Access-Control-Request-Headers, "
    "Access-Control-Request-Private-Network"
)
Headers = dict[str, str]


@dataclass(frozen=True, slots=True)
class CorsPolicy:
    origins: tuple[str, ...]
    methods: tuple[str, ...]
    headers: tuple[str, ...]
    credentials: bool
    # Starlette >= 1.0's behaviour.
    starlette_1: bool

    @property
    def all_origins(self) -> bool:
        return "*" in self.origins

    @property
    def allowed_methods(self) -> tuple[str, ...]:
        if "*" in self.methods:
            return (*_METHODS, "QUERY") if self.starlette_1 else _METHODS
        return self.methods

    def allows_origin(self, origin: str) -> bool:
        return self.all_origins or origin in self.origins


def is_preflight(method: str, headers: Mapping[str, str]) -> bool:
    return (
        method == "OPTIONS" and "origin" in headers and "access-control-request-method" in headers
    )


def preflight(policy: CorsPolicy, request: Mapping[str, str]) -> tuple[int, Headers, bytes]:
    """Status, headers and body of the answer to a preflight request (lowercase keys)."""
    explicit_origin = not policy.all_origins or policy.credentials
    headers: Headers = {}
    if policy.starlette_1:
        headers["vary"] = _PREFLIGHT_VARY_1X
    elif explicit_origin:
        headers["vary"] = "Origin"
    if not explicit_origin:
        headers["access-control-allow-origin"] = "*"
    headers["access-control-allow-methods"] = ", ".join(policy.allowed_methods)
    headers["access-control-max-age"] = "600"
    allow_headers = sorted(_SAFELISTED | set(policy.headers))
    all_headers = "*" in policy.headers
    if not all_headers:
        headers["access-control-allow-headers"] = ", ".join(allow_headers)
    if policy.credentials:
        headers["access-control-allow-credentials"] = "true"
    failures = []
    origin = request["origin"]
    if policy.allows_origin(origin):
        if explicit_origin:
            headers["access-control-allow-origin"] = origin
    else:
        failures.append("origin")
    if request["access-control-request-method"] not in policy.allowed_methods:
        failures.append("method")
    requested = request.get("access-control-request-headers")
    if all_headers and requested is not None:
        headers["access-control-allow-headers"] = requested
    elif requested is not None:
        allowed = {header.lower() for header in allow_headers}
        if any(header.strip() not in allowed for header in requested.lower().split(",")):
            failures.append("headers")
    if policy.starlette_1 and "access-control-request-private-network" in request:
        failures.append("private-network")
    if failures:
        return 400, headers, f"Disallowed CORS {', '.join(failures)}".encode()
    return 200, headers, b"OK"


def simple_headers(policy: CorsPolicy, request: Mapping[str, str]) -> Headers:
    """Headers added to the answer of any other request."""
    origin = request.get("origin")
    headers: Headers = {}
    if origin is not None:
        if policy.all_origins:
            headers["access-control-allow-origin"] = "*"
        if policy.credentials:
            headers["access-control-allow-credentials"] = "true"
    if policy.starlette_1:
        echo = origin is not None and (
            policy.credentials if policy.all_origins else policy.allows_origin(origin)
        )
        if echo:
            headers["access-control-allow-origin"] = str(origin)
        headers["vary"] = "Origin"
        return headers
    if origin is not None:
        echo = "cookie" in request if policy.all_origins else policy.allows_origin(origin)
        if echo:
            headers["access-control-allow-origin"] = origin
            headers["vary"] = "Origin"
    return headers
