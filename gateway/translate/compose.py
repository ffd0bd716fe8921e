"""The codecs of every protocol, and a route's translation composed from two of them.

    client request ──to_hub──▶ hub request ──from_hub──▶ upstream request
    client answer ◀──write──── hub answer  ◀───read───── upstream answer
    client stream ◀──writer─── hub calls   ◀───reader─── upstream stream

A route whose client and upstream speak the same protocol does not translate: its request only
passes the upstream wire's own preparation (what OpenCode Go needs, `opencode.py`) and its
answer's bytes pass through untouched. Gemini is the exception: its client names the model and the
stream's framing (SSE or a JSON array) in the URL, so a Gemini client on Google's wire is still
read and written through the hub.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

from gateway.routing.context import RouteContext, Translation
from gateway.translate import (anthropic_answer, anthropic_request, chat_answer, gemini_answer,
                               gemini_request, responses_answer, responses_request)
from gateway.translate.hub import Answer, StreamReader, StreamTranslation, StreamWriter
from gateway.translate.opencode import MESSAGES_TAKE_THINKING, WIRE_PREPARATION

PROTOCOL_NAMES = {"openai": "OpenAI Chat", "anthropic": "Anthropic", "responses": "Responses",
                  "gemini": "Gemini"}
# Protocols whose same-protocol routes relay the upstream's bytes (see the module's docstring).
BYTE_RELAY = frozenset({"openai", "anthropic", "responses"})


class Codec(NamedTuple):
    """One protocol's request codec and answer codec, as seen from the hub."""
    # Requests: a client's body into the hub, and the hub into an upstream's body (None: the
    # hub's own shape, Chat Completions).
    to_hub: Callable[[dict], dict] | None
    from_hub: Callable[[dict, RouteContext], dict] | None
    # Answers: an upstream's whole answer into the hub, and the hub into a client's answer.
    read_answer: Callable[[bytes], Answer]
    write_answer: Callable[[Answer, RouteContext], bytes]
    # Streams: the upstream's reader (given the writer and the bound on one event), and a
    # writer for this route's client.
    reader: Callable[[StreamWriter, int], StreamReader]
    writer: Callable[[RouteContext], StreamWriter]


def _include_usage(ctx: RouteContext) -> bool:
    options = ctx.body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def _echo(ctx: RouteContext) -> responses_answer.ResponseEcho:
    return responses_answer.ResponseEcho(ctx.body)


CODECS: dict[str, Codec] = {
    "openai": Codec(
        to_hub=None, from_hub=None,
        read_answer=chat_answer.read_answer,
        write_answer=lambda answer, ctx: chat_answer.write_answer(answer, ctx.model_id),
        reader=chat_answer.ChatStreamReader,
        writer=lambda ctx: chat_answer.ChatStreamWriter(model=ctx.model_id,
                                                        include_usage=_include_usage(ctx))),
    "anthropic": Codec(
        to_hub=anthropic_request.to_hub,
        from_hub=lambda hub, ctx: anthropic_request.from_hub(
            hub, default_max_tokens=ctx.config.translation.default_max_tokens,
            thinking=MESSAGES_TAKE_THINKING),
        read_answer=anthropic_answer.read_answer,
        write_answer=lambda answer, ctx: anthropic_answer.write_answer(answer, ctx.model_id),
        reader=anthropic_answer.AnthropicStreamReader,
        writer=lambda ctx: anthropic_answer.AnthropicStreamWriter(model=ctx.model_id)),
    "responses": Codec(
        to_hub=responses_request.to_hub,
        from_hub=lambda hub, ctx: responses_request.from_hub(hub),
        read_answer=responses_answer.read_answer,
        write_answer=lambda answer, ctx: responses_answer.write_answer(answer, ctx.model_id,
                                                                       _echo(ctx)),
        reader=responses_answer.ResponsesStreamReader,
        writer=lambda ctx: responses_answer.ResponsesStreamWriter(model=ctx.model_id,
                                                                  echo=_echo(ctx))),
    "gemini": Codec(
        to_hub=gemini_request.to_hub,
        from_hub=lambda hub, ctx: gemini_request.from_hub(hub),
        read_answer=gemini_answer.read_answer,
        write_answer=lambda answer, ctx: gemini_answer.write_answer(
            answer, ctx.model_id, gemini_answer.includes_thoughts(ctx.body)),
        reader=gemini_answer.GeminiStreamReader,
        writer=lambda ctx: gemini_answer.GeminiStreamWriter(
            model=ctx.model_id, sse=ctx.body.get("alt") == "sse",
            thoughts=gemini_answer.includes_thoughts(ctx.body))),
}


def _request(client: Codec, upstream: Codec, prepare) -> Callable[[dict, RouteContext], dict]:
    def request(body: dict, ctx: RouteContext) -> dict:
        hub = client.to_hub(body) if client.to_hub is not None else body
        dropped = hub.pop("dropped_tools", None)
        if dropped:
            ctx.dropped_tools = dropped
        out = upstream.from_hub(hub, ctx) if upstream.from_hub is not None else hub
        return prepare(out, ctx) if prepare is not None else out
    return request


def _response(client: Codec, upstream: Codec) -> Callable[[bytes, RouteContext], Any]:
    def response(raw: bytes, ctx: RouteContext) -> tuple[bytes, Answer]:
        answer = upstream.read_answer(raw)
        return client.write_answer(answer, ctx), answer
    return response


def _stream(client: Codec, upstream: Codec) -> Callable[[RouteContext], StreamTranslation]:
    def stream(ctx: RouteContext) -> StreamTranslation:
        writer = client.writer(ctx)
        return StreamTranslation(upstream.reader(writer, ctx.config.upstream.max_event_bytes),
                                 writer)
    return stream


def translation(frontend: str, wire: str) -> Translation:
    """What a route from a `frontend` client to a `wire` upstream does to requests and answers."""
    prepare = WIRE_PREPARATION.get(wire)
    if frontend == wire and wire in BYTE_RELAY:
        return Translation(f"none ({PROTOCOL_NAMES[wire]} pass-through)", request=prepare)
    client, upstream = CODECS[frontend], CODECS[wire]
    return Translation(f"{PROTOCOL_NAMES[frontend]} -> {PROTOCOL_NAMES[wire]}",
                       _request(client, upstream, prepare), _response(client, upstream),
                       _stream(client, upstream))


TRANSLATIONS = {(frontend, wire): translation(frontend, wire)
                for frontend in CODECS for wire in CODECS}
