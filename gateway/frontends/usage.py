"""`GET /v1/usage` (where every key and client stands, as JSON) and `GET /dashboard` (the page
that shows it: one file served by the gateway itself, no build step, no CDN).

Who sees what: a named client's key sees only its own usage; everyone's needs an admin key
(`server.admin_keys`) once any client or admin key is configured, and any valid key before.
"""
from __future__ import annotations

from importlib import resources

import msgspec
from starlette.requests import Request

from gateway.errors import GatewayError
from gateway.frontends.common import admin_only, check_client_key, sees_everyone
from gateway.frontends.openai_chat import openai_error
from gateway.quota.report import SPEND_BY, usage_report
from gateway.replies import Reply

_encode = msgspec.json.Encoder().encode
_PAGE = resources.files("gateway.frontends").joinpath("dashboard.html")


def spend_dimensions(by: str | None) -> list[str] | None:
    """`?by=client,agent` -> the groupings asked for (None: all); 400 for an unknown one."""
    if not by:
        return None
    names = [name.strip() for name in by.split(",") if name.strip()]
    unknown = [name for name in names if name not in SPEND_BY]
    if unknown:
        raise GatewayError(400, f"`by` {', '.join(unknown)} is not one of: "
                                f"{', '.join(SPEND_BY)}", param="by")
    return names


async def usage(request: Request) -> Reply:
    gateway = request.app.state.gateway
    try:
        principal = check_client_key(request.headers, gateway.clients)
        by = spend_dimensions(request.query_params.get("by"))
        if principal.is_client:
            only = principal.name
        elif sees_everyone(gateway, principal):
            only = None
        else:
            raise admin_only()
    except GatewayError as exc:
        return openai_error(exc)
    observer = gateway.observer
    report = await usage_report(gateway.book, gateway.pools, list(observer.recent_errors),
                                health=observer.health.report(), by=by, only_client=only)
    return Reply(_encode(report), headers={"cache-control": "no-store"})


async def dashboard(request: Request) -> Reply:
    """The page itself holds no data: it asks /v1/usage (with the key it is given, if any), which
    answers only a key allowed to see it."""
    return Reply(_PAGE.read_bytes(), headers={"cache-control": "no-store"},
                 media_type=b"text/html; charset=utf-8")
