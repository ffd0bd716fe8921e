"""The forwarder against a mocked upstream (aioresponses): headers, failover, errors, relay."""
import asyncio
import contextlib
import email.utils
import time

import aiohttp
import aiohttp.web
import msgspec
import pytest
from aioresponses import aioresponses

from gateway.app import Gateway
from gateway.config import load_config
from gateway.errors import GatewayError
from gateway.frontends.common import upstream_payload
from gateway.quota.upstream_usage import read_usage
from gateway.upstream.catalogue_refresh import fetch_model_ids
from gateway.upstream.forwarder import create_session, parse_retry_after
from gateway.upstream.instances import Instance
from tests.conversations import sessions_preferring

UP = "http://up.test/v1"
CHAT = UP + "/chat/completions"
MESSAGES = UP + "/messages"
OK = {"id": "x", "object": "chat.completion", "choices": [], "usage": {"prompt_tokens": 1}}


@pytest.fixture
async def gateway():
    env = {"OPENCODE_GO_API_URL": UP, "OPENCODE_GO_API_KEY_1": "key-one", "OPENCODE_GO_API_KEY_2": "key-two"}
    gw = Gateway(load_config(None, env), env=env)
    session = create_session(gw.config.upstream)
    gw.attach(session)
    yield gw
    await session.close()


async def send(gw, model, session=None, **body):
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], **body}
    ctx = await gw.router.route(model, "openai", body, session)
    return ctx, await gw.forwarder.forward(ctx, upstream_payload(ctx))


@contextlib.asynccontextmanager
async def upstream_on_loopback(*routes):
    """A small aiohttp upstream on a free loopback port, for what aioresponses cannot show (an
    answer in pieces, a cookie jar); yields its port."""
    app = aiohttp.web.Application()
    app.router.add_routes(routes)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield site._server.sockets[0].getsockname()[1]
    finally:
        await runner.cleanup()


def sent(mock, url):
    return [call for (method, u), calls in mock.requests.items() if str(u) == url for call in calls]


async def test_upstream_gets_bare_model_and_instance_key_only(gateway):
    with aioresponses() as mock:
        mock.post(CHAT, payload=OK)
        ctx, response = await send(gateway, "opencode-go/glm-5.1")
    assert response.status == 200
    [call] = sent(mock, CHAT)
    assert msgspec.json.decode(call.kwargs["data"])["model"] == "glm-5.1"
    assert call.kwargs["headers"]["Authorization"] == "Bearer " + ctx.instance.api_key


async def test_anthropic_flavour_uses_x_api_key_and_version(gateway):
    answer = {"id": "msg_1", "type": "message", "role": "assistant", "model": "minimax-m2.7",
              "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn",
              "usage": {"input_tokens": 3, "output_tokens": 1}}
    with aioresponses() as mock:
        mock.post(MESSAGES, payload=answer)
        _, response = await send(gateway, "opencode-go.2:minimax-m2.7")
    [call] = sent(mock, MESSAGES)
    headers = call.kwargs["headers"]
    assert headers["x-api-key"] == "key-two" and headers["anthropic-version"] == "2023-06-01"
    assert "Authorization" not in headers
    assert msgspec.json.decode(response.body)["choices"][0]["message"]["content"] == "hi"


async def test_429_on_one_key_fails_over_and_rests_that_key(gateway):
    with aioresponses() as mock:
        mock.post(CHAT, status=429, payload={"error": {"message": "slow down"}},
                  headers={"Retry-After": "30"})
        mock.post(CHAT, payload=OK)
        [session] = sessions_preferring("key-one", 1, keys=("key-one", "key-two"))
        ctx, response = await send(gateway, "opencode-go/glm-5.1", session)
    assert response.status == 200
    keys = [call.kwargs["headers"]["Authorization"] for call in sent(mock, CHAT)]
    assert keys == ["Bearer key-one", "Bearer key-two"]
    assert ctx.instance.name == "opencode-go.2"
    resting = gateway.pools["opencode-go"].instances[0]
    assert resting.resting_until > time.time() + 25


async def test_pinned_request_is_never_moved_and_keeps_retry_after(gateway):
    with aioresponses() as mock:
        mock.post(CHAT, status=429, payload={"error": {"message": "slow down"}},
                  headers={"Retry-After": "7"})
        with pytest.raises(GatewayError) as error:
            await send(gateway, "opencode-go.1:glm-5.1")
    assert len(sent(mock, CHAT)) == 1
    assert (error.value.status, error.value.message) == (429, "upstream opencode-go.1: slow down")
    assert error.value.headers["retry-after"] == "7"


async def test_400_comes_back_at_once_with_the_upstream_message(gateway):
    with aioresponses() as mock:
        mock.post(CHAT, status=400, payload={"error": {"message": "bad temperature"}})
        mock.post(CHAT, payload=OK)
        with pytest.raises(GatewayError) as error:
            await send(gateway, "opencode-go/glm-5.1")
    assert len(sent(mock, CHAT)) == 1
    assert error.value.status == 400
    assert error.value.message.startswith("upstream opencode-go.")  # the instance, never the key
    assert error.value.message.endswith(": bad temperature")


async def test_unreachable_instance_fails_over(gateway):
    with aioresponses() as mock:
        mock.post(CHAT, exception=aiohttp.ClientConnectionError("refused"))
        mock.post(CHAT, payload=OK)
        _, response = await send(gateway, "opencode-go/glm-5.1")
    assert response.status == 200


async def test_all_instances_failing_gives_the_last_error(gateway):
    with aioresponses() as mock:
        for _ in range(3):
            mock.post(CHAT, status=503, body="upstream overloaded")
        with pytest.raises(GatewayError) as error:
            await send(gateway, "opencode-go/glm-5.1")
    assert error.value.status == 503
    assert "upstream overloaded" in error.value.message
    assert len(sent(mock, CHAT)) == 2  # two instances, each tried once


async def test_stream_passes_bytes_through_untouched(gateway):
    stream = b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"h\xc3\xa9"}}]}\n\ndata: [DONE]\n\n'
    with aioresponses() as mock:
        mock.post(CHAT, body=stream, content_type="text/event-stream")
        _, response = await send(gateway, "opencode-go/glm-5.1", stream=True)
        received = b"".join([chunk async for chunk in response.chunks])
    assert received == stream
    assert dict(response.headers)[b"x-accel-buffering"] == b"no"


def test_retry_after_in_seconds_and_as_http_date():
    assert parse_retry_after("12") == 12
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    later = email.utils.formatdate(time.time() + 60, usegmt=True)
    assert 55 < parse_retry_after(later) <= 61


async def test_an_upstream_cookie_never_rides_on_a_later_request():
    """An edge in front of the upstream may set cookies; the gateway's one session serves every
    client, so a cookie kept from one answer would go out with another client's request."""
    cookies_sent = []

    async def answer_with_a_cookie(request):
        cookies_sent.append(request.headers.get("Cookie"))
        return aiohttp.web.json_response(OK, headers={
            "Set-Cookie": "__cf_bm=from-the-first-answer; Path=/; HttpOnly"})

    async with upstream_on_loopback(
            aiohttp.web.post("/v1/chat/completions", answer_with_a_cookie)) as port:
        # A host name: aiohttp's own jar keeps no cookie of a bare IP address.
        env = {"OPENCODE_GO_API_URL": f"http://localhost:{port}/v1", "OPENCODE_GO_API_KEY": "k"}
        gw = Gateway(load_config(None, env), env=env)
        async with create_session(gw.config.upstream) as session:
            gw.attach(session)
            for _ in range(2):
                _, response = await send(gw, "opencode-go/glm-5.1")
                assert response.status == 200
    assert cookies_sent == [None, None]


async def test_a_model_list_and_usage_that_arrive_in_pieces_are_read_whole():
    """Small upstream bodies (the model list, /usage) read to their end, not to the first
    segment: a slow link splits them."""
    async def in_two_pieces(request):
        body = (b'{"object":"list","data":[{"id":"glm-5.1"},{"id":"kimi-k3"}]}'
                if request.path.endswith("/models") else
                b'{"usage":{"rolling":{"status":"ok","percent":42,'
                b'"resetsAt":"2030-01-01T00:00:00Z"}}}')
        answer = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        answer.content_length = len(body)
        await answer.prepare(request)
        await answer.write(body[:20])
        await asyncio.sleep(0.05)
        await answer.write(body[20:])
        return answer

    async with upstream_on_loopback(aiohttp.web.get("/v1/models", in_two_pieces),
                                    aiohttp.web.get("/v1/usage", in_two_pieces)) as port:
        instance = Instance("opencode-go.1", "opencode-go", 1, f"http://127.0.0.1:{port}/v1", "k")
        async with aiohttp.ClientSession() as session:
            assert await fetch_model_ids(session, instance) == {"glm-5.1", "kimi-k3"}
            assert (await read_usage(session, instance))["rolling"][0] == 42
