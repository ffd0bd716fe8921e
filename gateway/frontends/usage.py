"""`GET /v1/usage` (where every key stands, as JSON, behind the client keys) and `GET /dashboard`
(the page that shows it: one file served by the gateway itself, no build step, no CDN)."""
from __future__ import annotations

from importlib import resources

import msgspec
from starlette.requests import Request

from gateway.errors import GatewayError
from gateway.frontends.common import check_client_key
from gateway.frontends.openai_chat import openai_error
from gateway.quota.report import usage_report
from gateway.replies import Reply

_encode = msgspec.json.Encoder().encode
_PAGE = resources.files("gateway.frontends").joinpath("dashboard.html")


async def usage(request: Request) -> Reply:
    gateway = request.app.state.gateway
    try:
        check_client_key(request, gateway.client_keys)
    except GatewayError as exc:
        return openai_error(exc)
    observer = gateway.observer
    report = await usage_report(gateway.book, gateway.pools, list(observer.recent_errors),
                                health=observer.health.report())
    return Reply(_encode(report), headers={"cache-control": "no-store"})


async def dashboard(request: Request) -> Reply:
    """The page itself holds no data: it asks /v1/usage (with the key it is given, if any)."""
    return Reply(_PAGE.read_bytes(), headers={"cache-control": "no-store"},
                 media_type=b"text/html; charset=utf-8")
