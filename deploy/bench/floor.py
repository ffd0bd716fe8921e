"""The project's own floor: the least a proxy on this stack can do, to measure the gateway against.

Starlette + hypercorn (uvloop worker) + one pooled aiohttp session, as the gateway. It forwards
POST /v1/chat/completions to UPSTREAM as it came and streams the answer back as it arrives:
no routing, no keys, no ledger, no metrics. OpenCode Go refuses a request without
`x-opencode-session`, so the client's is passed on, or a constant one. It is what
deploy/bench/compare_floor.py uses when ../shared/bench/floor_proxy.py is not beside the
repository, and it must stay no heavier than that one.

    UPSTREAM=http://127.0.0.1:9100/v1 hypercorn -k uvloop -b 127.0.0.1:8090 --backlog 2048 floor:app
"""
import contextlib
import os

import aiohttp
from starlette.applications import Starlette
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

UPSTREAM = os.environ.get("UPSTREAM", "http://127.0.0.1:9100/v1") + "/chat/completions"
session: aiohttp.ClientSession | None = None


@contextlib.asynccontextmanager
async def lifespan(app):
    global session
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
                                    auto_decompress=False)
    yield
    await session.close()


async def chat_completions(request):
    headers = {"Authorization": request.headers.get("authorization", ""),
               "Content-Type": "application/json",
               "x-opencode-session": request.headers.get("x-opencode-session", "floor")}
    answer = await session.post(UPSTREAM, data=await request.body(), headers=headers)
    if answer.content_type != "text/event-stream":
        data = await answer.read()
        answer.release()
        return Response(data, status_code=answer.status, media_type=answer.content_type)

    async def relay():
        try:
            async for chunk in answer.content.iter_any():
                yield chunk
        finally:
            answer.release()

    return StreamingResponse(relay(), status_code=answer.status, media_type="text/event-stream")


app = Starlette(routes=[Route("/v1/chat/completions", chat_completions, methods=["POST"])],
                lifespan=lifespan)
