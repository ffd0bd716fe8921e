"""What every frontend does the same way: client keys, the bounded body, the typed check at the
door, and one request's run from parsed body to upstream answer, with errors rendered in the
frontend's own shape."""
from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from typing import Callable

import msgspec
from starlette.requests import Request

from gateway.access.agents import agent_of
from gateway.access.budget import check_budget
from gateway.access.clients import Directory, Principal
from gateway.errors import GatewayError
from gateway.big_body import BIG, assemble, decode_in_pieces, encode_in_pieces
from gateway.replies import Reply, StreamReply, header_list
from gateway.routing.catalogue import WIRES
from gateway.routing.fallbacks import FALLBACK_HEADER
from gateway.routing.router import missing_key_message, parse_model_string
from gateway.suggest import did_you_mean
from gateway.upstream.forwarder import ReasoningRequired, WrongWire

_decode = msgspec.json.decode
_encode = msgspec.json.Encoder().encode
_log = logging.getLogger("gateway")
# Request ids: a random prefix per worker and a counter — unique, and cheaper than a uuid4.
_ID_PREFIX = os.urandom(4).hex()
_id_counter = itertools.count(1)

# Set in a request's ASGI scope when its body was over big_body.BIG bytes.
BIG_BODY = "opencode_gateway.big_body"


def header_map(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """A request's headers by their lower-case names (the first of a repeated one, as
    Starlette's `request.headers` reads them): built once per model request, where a handful
    of lookups, most of them for headers the client did not send, would each scan the list."""
    headers: dict[str, str] = {}
    for name, value in raw:
        key = name.decode("latin-1")
        if key not in headers:
            headers[key] = value.decode("latin-1")
    return headers


def presented_key(headers) -> str | None:
    """The client's key from `Authorization: Bearer …`, `x-api-key` or `x-goog-api-key` (every
    frontend; the Gemini frontend moves a `?key=` into the last). `headers`: a mapping of
    lower-case names (`header_map`, or Starlette's `request.headers`)."""
    authorization = headers.get("authorization")
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return headers.get("x-api-key") or headers.get("x-goog-api-key") or None


def check_client_key(headers, directory: Directory) -> Principal:
    """Who the request's key names (access/clients.py: compared as hashes); 401 for none."""
    presented = presented_key(headers)
    principal = directory.who(presented)
    if principal is None:
        if presented is None:
            raise GatewayError(401, "this gateway requires a client key: send it as "
                                    "`Authorization: Bearer <key>`, `x-api-key: <key>` or "
                                    "`x-goog-api-key: <key>`")
        raise GatewayError(401, "the client key is not valid for this gateway")
    return principal


def sees_everyone(gateway, principal: Principal) -> bool:
    """Whether the key may see every key's and client's figures (usage, doctor, dashboard): an
    admin key, or any key while no client or admin key is configured."""
    return principal.kind == "admin" or (principal.kind == "anonymous"
                                         and not gateway.clients.admin_required)


def admin_only() -> GatewayError:
    return GatewayError(403, "this needs an admin key (server.admin_keys); a named client's key "
                             "shows its own usage at GET /v1/usage")


def admit(gateway, principal: Principal, model: str) -> None:
    """A named client's model list, request rate and budget, checked before anything goes
    upstream (from this worker's view: no store round trip)."""
    if not principal.is_client:
        return
    bare = parse_model_string(model, gateway.config.backends)[2]
    if not principal.may_use(bare):
        raise GatewayError(403, f"model {model!r} is not one client {principal.name!r} may use; "
                                f"its models: {', '.join(principal.models)}",
                           param="model", code="model_not_allowed")
    now = time.time()
    if principal.rpm is not None:
        gateway.rate.admit(principal.name, principal.rpm, now)
    check_budget(principal.name, gateway.book.clients.get(principal.name), now)


async def read_json_object(request: Request, headers, limit: int, timeout: float,
                           max_containers: int = 50_000) -> dict:
    """The request body as a dict, refused with 413 as soon as it passes `limit` bytes or holds
    more than `max_containers` JSON objects and arrays, and with 408 when it has not all
    arrived within `timeout` seconds.

    Decoding is one C call the event loop cannot interrupt, and its time grows with the objects
    a body holds (half a million small ones: over a second). Counting `{` and `[` in each chunk
    as it arrives costs little and spreads over the reads; braces inside strings count too, so
    the bound is a little stricter than it says, never looser. `headers`: the request's, by
    lower-case name (`header_map`, or Starlette's `request.headers`)."""
    declared = headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise GatewayError(400, "the Content-Length header is not a number")
        if int(declared) > limit:
            raise GatewayError(413, f"request body of {declared} bytes is over this gateway's "
                                    f"limit of {limit} bytes (server.max_body_bytes)")
    chunks = []
    size = 0
    containers = 0
    # A deadline for the whole body: one timer that cancels this task (cheaper than
    # asyncio.timeout on a path every request takes).
    task = asyncio.current_task()
    late = []
    deadline = asyncio.get_running_loop().call_later(
        timeout, lambda: (late.append(True), task.cancel()))
    # The ASGI messages themselves: Starlette's `request.stream()` is an async generator, one
    # frame more on every read of every request.
    receive = request.receive
    try:
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # http.disconnect
                raise GatewayError(400, "the client closed the connection before the body was "
                                        "complete")
            chunk = message.get("body", b"")
            more = message.get("more_body", False)
            size += len(chunk)
            if size > limit:
                raise GatewayError(413, f"request body is over this gateway's limit of {limit} "
                                        "bytes (server.max_body_bytes)")
            containers += chunk.count(b"{") + chunk.count(b"[")
            if containers > max_containers:
                raise GatewayError(413, f"request body holds more than {max_containers} JSON "
                                        "objects and arrays, this gateway's limit "
                                        "(server.max_body_containers)",
                                   headers={"connection": "close"})
            chunks.append(chunk)
    except asyncio.CancelledError:
        if not late or task.uncancel():
            raise
        # The rest of the body is never read: the connection closes after this answer.
        raise GatewayError(408, f"the request body did not arrive within {timeout:g} seconds "
                                "(server.body_timeout)", headers={"connection": "close"}) from None
    finally:
        deadline.cancel()
    big = size > BIG
    raw = await assemble(chunks) if big else b"".join(chunks)
    if not raw:
        raise GatewayError(400, "the request body is empty; send a JSON object")
    try:
        # A big body in pieces, the loop running between them (big_body.py)
        body = await decode_in_pieces(raw) if big else _decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        # The gateway's own look at the bytes, not the decoder's wording (which changes between
        # msgspec versions and may not name the byte): UTF-8 first, then JSON.
        bad = first_bad_utf8(raw)
        if bad is not None:
            offset, byte = bad
            raise GatewayError(400, f"the request body is not valid UTF-8: byte 0x{byte:02x} at "
                                    f"offset {offset}; send the JSON encoded as UTF-8") from None
        raise GatewayError(400, f"the request body is not valid JSON: {exc}") from None
    except RecursionError:  # msgspec's guard against a stack overflow on deep nesting
        raise GatewayError(400, "the request body is nested too deeply to be a chat "
                                "request") from None
    if not isinstance(body, dict):
        raise GatewayError(400, f"the request body must be a JSON object, got {_json_type(body)}")
    if big:
        # The upstream's encoding is done in pieces too (_forward_on_its_wire): it is told so.
        request.scope[BIG_BODY] = True
        await asyncio.sleep(0)
    return body


def check_counts(body: dict, server) -> None:
    """400 naming the bound when the body holds more messages (`input` items, `contents`),
    tools, or content parts in one message than `server` (the config's server section)
    allows."""
    tools = body.get("tools")
    if isinstance(tools, list) and len(tools) > server.max_tools:
        raise GatewayError(400, f"`tools` holds {len(tools)} tools, over this gateway's limit "
                                f"of {server.max_tools} (server.max_tools)", param="tools")
    for field, part_field in (("messages", "content"), ("input", "content"),
                              ("contents", "parts")):  # Chat and Messages, Responses, Gemini
        items = body.get(field)
        if not isinstance(items, list):
            continue
        if len(items) > server.max_messages:
            raise GatewayError(400, f"`{field}` holds {len(items)} items, over this gateway's "
                                    f"limit of {server.max_messages} (server.max_messages)",
                               param=field)
        for index, item in enumerate(items):
            parts = item.get(part_field) if isinstance(item, dict) else None
            if isinstance(parts, list) and len(parts) > server.max_parts:
                where = f"{field}[{index}].{part_field}"
                raise GatewayError(400, f"`{where}` holds {len(parts)} parts, over this "
                                        f"gateway's limit of {server.max_parts} "
                                        "(server.max_parts)", param=where)
async def encode_json(value, request: Request):
    """`value` as JSON: in one call, or for a request whose body was big in pieces, the loop
    running between them (big_body.py)."""
    return await encode_in_pieces(value) if BIG_BODY in request.scope else _encode(value)


async def estimate_tokens(value, request: Request) -> int:
    """A token count estimate for a request's content: about four bytes of JSON per token."""
    return max(1, len(await encode_json(value, request)) // 4)


def first_bad_utf8(raw: bytes) -> tuple[int, int] | None:
    """(offset, byte) of the first byte that breaks UTF-8 in `raw`, or None when it is UTF-8."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start, raw[exc.start]
    return None


def _json_type(value) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if value is None:
        return "null"
    return {str: "a string", list: "an array", dict: "an object"}.get(type(value), type(value).__name__)


def check_at_door(body: dict, shape: type, example_model: str):
    """The body as the frontend's typed request `shape`; a 400 naming the first field whose JSON
    type is wrong (`max_tokens: "lots"` -> "`max_tokens`: Expected `int | null`, got `str`").

    Only the fields the protocol defines are checked; unknown fields pass on to a same-protocol
    upstream (after the wire's own preparation, translate/opencode.py). `msgspec.convert` on the
    decoded dict is a walk of the known fields, a few microseconds even for a large agent
    request.
    """
    try:
        checked = msgspec.convert(body, shape)
    except msgspec.ValidationError as exc:
        # "<what> - at `$.messages[0].content`"; a top-level problem has no " - at" part.
        message, at, where = str(exc).rpartition(" - at `$")
        if not at:
            message, where = str(exc), ""
        field = where.rstrip("`").lstrip(".")
        if message.startswith("Object missing required field"):
            missing = message.rpartition("`")[0].rpartition("`")[2]
            field = f"{field}.{missing}" if field else missing
            raise GatewayError(400, f"`{field}` is required", param=field) from None
        if not field:
            raise GatewayError(400, f"the request body is not a valid request: {message}") from None
        raise GatewayError(400, f"`{field}`: {message}", param=field) from None
    if not checked.model:
        raise GatewayError(400, f"`model` is empty; send a model string such as "
                                f"\"{example_model}\"", param="model")
    return checked


def upstream_body(ctx) -> dict:
    """The body the upstream receives: the bare model id, translated for its wire."""
    body = ctx.body
    body["model"] = ctx.model_id
    if ctx.translation.request is not None:
        body = ctx.translation.request(body, ctx)
    return body


def upstream_payload(ctx) -> bytes:
    return _encode(upstream_body(ctx))


def _needs_reasoning(ctx) -> bool:
    """Whether the route's model needs its reasoning back on tool-call turns (DeepSeek)."""
    return ctx.protocol == "openai" and ctx.catalogues[ctx.backend].needs_reasoning_back(ctx.model_id)


_WATCH_AFTER = 0.2  # seconds


async def _forward_while_client_waits(request: Request, forwarder, ctx,
                                      payload: bytes) -> Reply | StreamReply:
    """The forwarder's answer, unless the client hangs up first: then the upstream request is
    cancelled, not left generating (a whole answer can take minutes) for nobody."""
    task = asyncio.current_task()
    client_left = False

    async def watch() -> None:
        nonlocal client_left
        while (await request.receive())["type"] != "http.disconnect":
            pass
        client_left = True
        task.cancel()

    # Most answers start within milliseconds: watching only from _WATCH_AFTER on spares them a
    # task each (a measurable share of a pass-through request) and still frees a long wait.
    # Once the answer is back the watcher stops, so a streamed answer's own disconnect
    # listener (StreamReply's) is the only reader of the connection from then on.
    loop = asyncio.get_running_loop()
    watcher = None

    def start_watching() -> None:
        nonlocal watcher
        watcher = loop.create_task(watch())

    timer = loop.call_later(_WATCH_AFTER, start_watching)
    try:
        return await forwarder.forward(ctx, payload)
    except asyncio.CancelledError:
        if client_left and task.uncancel() == 0:
            raise GatewayError(499, "the client closed the connection before the answer "
                                    "came") from None
        raise
    finally:
        timer.cancel()
        if watcher is not None:
            watcher.cancel()


async def _forward_on_its_wire(request: Request, gateway, ctx) -> Reply | StreamReply:
    """Forward; when the upstream says the model is not served on this wire ("not supported for
    format …"), try the model's other wires, and remember the one that answers."""
    tried = [ctx.protocol]
    while True:
        body = upstream_body(ctx)
        if _needs_reasoning(ctx):  # it gets back what the client dropped (state/reasoning.py)
            await gateway.reasoning.restore(body, ctx.session, ctx.request_id)
        payload = await encode_json(body, request)
        try:
            response = await _forward_while_client_waits(request, gateway.forwarder, ctx,
                                                         payload)
        except ReasoningRequired as refused:
            catalogue = gateway.router.catalogues[ctx.backend]
            if catalogue.needs_reasoning_back(ctx.model_id):
                raise GatewayError(400, f"{ctx.model_id} refused the conversation because an "
                                        "assistant tool-call turn lacks the reasoning it wrote, "
                                        "although the gateway put back what it had; send the "
                                        f"turn's `reasoning_content` (upstream: "
                                        f"{refused.message})", param="messages") from None
            _log.warning("%s: the upstream wants the reasoning of earlier tool-call turns back "
                         "for %s; the gateway keeps and restores it from now on",
                         ctx.request_id, ctx.model_id)
            catalogue.learn_needs_reasoning(ctx.model_id)
            continue
        except WrongWire as refused:
            following = next((wire for wire in WIRES if wire not in tried), None)
            if following is None:
                raise GatewayError(refused.status, refused.message, headers=refused.headers,
                                   param="model") from None
            _log.warning("%s: the upstream refused %s on the %s wire (%s); trying the %s wire",
                         ctx.request_id, ctx.model_id, ctx.protocol, refused.message, following)
            tried.append(following)
            ctx.protocol, ctx.translation = following, None
            await gateway.router.chain.run(ctx)  # the translation for the other wire
            continue
        if len(tried) > 1:
            gateway.router.catalogues[ctx.backend].learn(ctx.model_id, ctx.protocol)
            _log.warning("%s: %s is served on the %s wire; routing it there from now on "
                         "(set extra.model_protocol_overrides to make it permanent)",
                         ctx.request_id, ctx.model_id, ctx.protocol)
        return response


async def serve(request: Request, frontend: str, validate: Callable[[dict], str],
                render_error: Callable[[GatewayError, str], Reply],
                admitted: bool = True) -> Reply | StreamReply:
    """One request on a frontend: key, body, route, upstream; every refusal in its shape.
    A request not `admitted` (the worker has `server.max_streams` in flight) is refused with
    503 once its body is read."""
    gateway = request.app.state.gateway
    started = time.monotonic()
    headers = header_map(request.scope["headers"])
    request_id = headers.get("x-request-id") or f"{_ID_PREFIX}-{next(_id_counter):x}"
    ctx = None
    model = None
    client = None
    try:
        principal = check_client_key(headers, gateway.clients)
        client = principal.name
        server = gateway.config.server
        body = await read_json_object(request, headers, server.max_body_bytes,
                                      server.body_timeout, server.max_body_containers)
        if not admitted:
            gateway.observer.stream_refused()
            raise gateway.streams.refusal()
        check_counts(body, server)
        model = validate(body)
        admit(gateway, principal, model)
        plan = gateway.fallbacks.plan(model, body, principal.may_use)
        attempt = model
        while True:
            ctx = None
            try:
                ctx = await gateway.router.route(attempt, frontend, body, headers=headers,
                                                 client_key=presented_key(headers))
                ctx.request_id = request_id
                ctx.started = started
                ctx.client = client
                ctx.agent = agent_of(headers.get("user-agent"))
                if not ctx.instance.api_key:  # said at start too (OpenCode Go: "Missing API key")
                    raise GatewayError(503, missing_key_message(ctx.backend),
                                       code="no_upstream_key")
                response = await _forward_on_its_wire(request, gateway, ctx)
                break
            except GatewayError as exc:
                following = plan.next(exc, ctx.model_id if ctx else attempt) if plan else None
                if following is None:
                    if plan is not None and plan.tried:
                        exc.message += f" (fallbacks tried: {'; '.join(plan.tried)})"
                    raise
                # Nothing reached the client yet: the next model in the list answers instead.
                _log.warning("%s: %s could not answer (%s); falling back to %s", request_id,
                             attempt, plan.tried[-1], following[0])
                if ctx is not None:
                    gateway.observer.finished(ctx, exc.status, None, error=exc.message)
                attempt, body = following
    except GatewayError as exc:
        error = exc
    except Exception:  # a bug must still answer in the client's shape, and be logged
        _log.exception("unexpected error on %s request %s", frontend, request_id)
        error = GatewayError(500, f"internal gateway error (request id {request_id}); "
                                  "see the gateway's log")
    else:
        if ctx.adjusted:  # what was fitted to the model (translate/model_limits.py)
            response.headers.extend(header_list(ctx.adjusted))
        if plan is not None and plan.tried:  # the answer's `model` names the one that answered
            response.headers.extend(header_list({FALLBACK_HEADER: plan.header(ctx.model_id)}))
        return response  # the forwarder gave it its x-request-id
    # An upstream may have quoted a key in a message that became this error.
    error.message = gateway.redactor.text(error.message)
    if ctx is not None and 400 <= error.status < 500 and error.status != 429:
        error.message += _misspelt_model(gateway, ctx)
    if ctx is not None:
        gateway.observer.finished(ctx, error.status, None, error=error.message)
    else:
        gateway.observer.rejected(request_id, frontend, started, error.status, model, error.message,
                                  client)
    return render_error(error, request_id)


def _misspelt_model(gateway, ctx) -> str:
    """` Did you mean opencode-go/glm-5.1?` when the upstream refused a model named with its
    backend (`opencode-go/glm-5.l`) that no list knows and a listed id is one typo away."""
    catalogue = gateway.router.catalogues.get(ctx.backend)
    if catalogue is None or catalogue.listed(ctx.model_id):
        return ""
    return did_you_mean(ctx.model_id, catalogue.advertised(), f"{ctx.backend}/{{}}".format)


class Frontend:
    """One protocol's endpoint, as a plain ASGI app: Starlette routes to it, and it answers with
    the gateway's own replies (no Response or request-wrapper objects on the hot path)."""

    def __init__(self, name: str, validate: Callable[[dict], str],
                 render_error: Callable[[GatewayError, str], Reply]):
        self.name = name
        self.validate = validate
        self.render_error = render_error

    async def __call__(self, scope, receive, send) -> None:
        await answer(scope, receive, send, Request(scope, receive), self.name, self.validate,
                     self.render_error)


async def answer(scope, receive, send, request: Request, frontend: str,
                 validate: Callable[[dict], str], render_error: Callable[[GatewayError, str], Reply],
                 adjust: Callable[[Reply | StreamReply], None] | None = None) -> None:
    """`serve` the request and send its answer (after `adjust` of it), holding one of the
    worker's places for requests in flight until the answer's last byte (admission.py)."""
    streams = request.app.state.gateway.streams
    admitted = streams.open < streams.cap
    if admitted:
        streams.open += 1
    try:
        reply = await serve(request, frontend, validate, render_error, admitted)
        if adjust is not None:
            adjust(reply)
        await reply(scope, receive, send)
    finally:
        if admitted:
            streams.open -= 1
