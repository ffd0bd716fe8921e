"""`GET /v1/doctor`: the facts of `opencode-gateway doctor` (without probes) as JSON, behind the
client keys (an admin key once clients are named), for the dashboard. Each check reads every
key's `/usage` and the live model list, so a worker answers from its last report for
`FRESH_SECONDS`, and concurrent requests share one run."""
from __future__ import annotations

import asyncio
import time

import msgspec
from starlette.requests import Request

from gateway.doctor import diagnose
from gateway.errors import GatewayError
from gateway.frontends.common import admin_only, check_client_key, sees_everyone
from gateway.frontends.openai_chat import openai_error
from gateway.replies import Reply

FRESH_SECONDS = 60.0
_encode = msgspec.json.Encoder().encode


class _LastReport:
    def __init__(self):
        self.body = b""
        self.at = 0.0
        self.lock = asyncio.Lock()


async def doctor(request: Request) -> Reply:
    gateway = request.app.state.gateway
    try:
        if not sees_everyone(gateway, check_client_key(request.headers, gateway.clients)):
            raise admin_only()
    except GatewayError as exc:
        return openai_error(exc)
    last = gateway.last_doctor
    if last is None:
        last = gateway.last_doctor = _LastReport()
    async with last.lock:
        if time.monotonic() - last.at > FRESH_SECONDS:
            last.body = _encode(await diagnose(gateway, gateway.session))
            last.at = time.monotonic()
    return Reply(last.body, headers={"cache-control": "no-store"})
