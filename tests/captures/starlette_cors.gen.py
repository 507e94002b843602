"""Run Starlette's CORSMiddleware as vLLM configures it and record what it answers."""

import json
import sys

import starlette
from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

POLICIES = {
    "default-0.11": dict(
        allow_origins=["*"], allow_methods=["*"], allow_headers=["*"], allow_credentials=False
    ),
    "default-0.33": dict(
        allow_origins=[], allow_methods=["*"], allow_headers=["*"], allow_credentials=False
    ),
    "credentials": dict(
        allow_origins=["*"], allow_methods=["*"], allow_headers=["*"], allow_credentials=True
    ),
    "explicit": dict(
        allow_origins=["http://a.example"],
        allow_methods=["GET", "POST"],
        allow_headers=["Authorization"],
        allow_credentials=False,
    ),
}
REQUESTS = [
    ("OPTIONS", {"Origin": "http://a.example", "Access-Control-Request-Method": "POST"}),
    (
        "OPTIONS",
        {
            "Origin": "http://a.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,x-stainless-os",
        },
    ),
    ("OPTIONS", {"Origin": "http://b.example", "Access-Control-Request-Method": "POST"}),
    (
        "OPTIONS",
        {
            "Origin": "http://a.example",
            "Access-Control-Request-Method": "PATCH",
            "Access-Control-Request-Headers": "x-other",
        },
    ),
    (
        "OPTIONS",
        {
            "Origin": "http://a.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Private-Network": "true",
        },
    ),
    ("POST", {"Origin": "http://a.example"}),
    ("POST", {"Origin": "http://a.example", "Cookie": "a=1"}),
    ("POST", {"Origin": "http://b.example"}),
    ("POST", {}),
]


async def endpoint(request):
    return JSONResponse({"ok": True})


out = {"starlette": starlette.__version__, "cases": []}
for name, policy in POLICIES.items():
    app = Starlette(routes=[Route("/v1/x", endpoint, methods=["POST"])])
    app.add_middleware(CORSMiddleware, **policy)
    client = TestClient(app)
    for method, headers in REQUESTS:
        r = client.request(method, "/v1/x", headers=headers)
        out["cases"].append(
            {
                "policy": name,
                "method": method,
                "request": headers,
                "status": r.status_code,
                "headers": [
                    [k, v]
                    for k, v in r.headers.multi_items()
                    if k.startswith("access-control") or k == "vary"
                ],
                "body": r.text if method == "OPTIONS" else None,
            }
        )
json.dump(out, sys.stdout, indent=1)
