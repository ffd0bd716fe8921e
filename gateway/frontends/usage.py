"""`GET /v1/usage` (where every key stands, as JSON, behind the client keys) and `GET /dashboard`
(the page that shows it: one file served by the gateway itself, no build step, no CDN)."""
from __future__ import annotations

from importlib import resources

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from gateway.errors import GatewayError
from gateway.frontends.common import check_client_key
from gateway.frontends.openai_chat import openai_error
from gateway.quota.report import usage_report

_encode = msgspec.json.Encoder().encode
_PAGE = resources.files("gateway.frontends").joinpath("dashboard.html")


async def usage(request: Request) -> Response:
    gateway = request.app.state.gateway
    try:
        check_client_key(request, gateway.client_keys)
    except GatewayError as exc:
        return openai_error(exc)
    report = await usage_report(gateway.book, gateway.pools, list(gateway.observer.recent_errors))
    return Response(_encode(report), media_type="application/json",
                    headers={"cache-control": "no-store"})


async def dashboard(request: Request) -> Response:
    """The page itself holds no data: it asks /v1/usage (with the key it is given, if any)."""
    return Response(_PAGE.read_bytes(), media_type="text/html; charset=utf-8",
                    headers={"cache-control": "no-store"})
