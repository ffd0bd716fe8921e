"""`opencode-gateway routes MODEL`: the route the rule chain picks, without sending anything."""
from __future__ import annotations

import asyncio
import sys

from gateway.cli.common import load_gateway
from gateway.errors import GatewayError
from gateway.masking import mask_url
from gateway.upstream.forwarder import auth_headers
from gateway.upstream.identity import upstream_user_agent
from gateway.upstream.instances import describe_layout, mask_key
from gateway.upstream.urls import call_url


def add(commands) -> None:
    routes = commands.add_parser("routes", help="print the route a model string takes")
    routes.add_argument("model", metavar="MODEL")
    routes.add_argument("--config")
    routes.add_argument("--rules-dir")
    routes.add_argument("--frontend", choices=("openai", "anthropic", "responses", "gemini"),
                        default="openai",
                        help="the protocol the client speaks (default openai)")
    routes.set_defaults(run=run)


def run(args) -> int:
    gateway = load_gateway(args)
    body = {"model": args.model, "messages": [], "stream": True}

    async def route():
        # The shared state (spending, conversations) as the serving workers see it, so the key
        # choice and its figures are the ones a request would meet now.
        try:
            await gateway.store.open()
            await gateway.book.sync()
        except Exception as exc:  # a store that cannot be read: this process's view only
            print(f"(state store {gateway.store!r} not read: {exc})", file=sys.stderr)
        try:
            return await gateway.router.route(args.model, args.frontend, body)
        finally:
            await gateway.store.close()

    try:
        ctx = asyncio.run(route())
    except GatewayError as exc:
        print(f"no route: {exc.message}", file=sys.stderr)
        return 1
    instance = ctx.instance
    url = call_url(instance, ctx.protocol, ctx.model_id, True)
    sent = auth_headers(instance, ctx.protocol)
    shown = {"x-api-key": "<key>", "Authorization": "Bearer <key>", "x-goog-api-key": "<key>"}
    auth = ", ".join(f"{name}: {shown.get(name, value)}" for name, value in sent.items()
                     if name in ("x-api-key", "Authorization", "anthropic-version",
                                 "x-goog-api-key"))
    print(f"model string : {ctx.requested}")
    print(f"frontend     : {args.frontend}")
    print(f"backend      : {ctx.backend}")
    print(f"instance     : {instance.name} (instance {instance.number}, key {mask_key(instance.api_key)})"
          + (", pinned" if ctx.pinned else ", unpinned: may fail over"))
    print(f"model id     : {ctx.model_id}")
    print(f"wire         : {ctx.protocol} "
          f"({ctx.catalogues[ctx.backend].wire(ctx.model_id).source})")
    print(f"URL layout   : {describe_layout(instance)}")
    print(f"upstream URL : POST {mask_url(url)}")
    print(f"user agent   : {upstream_user_agent(None, instance.user_agent)} (after the "
          "client's own product token, when it sends one)")
    print(f"upstream auth: {auth}")
    print(f"translation  : {ctx.translation.name}")
    for rule, _is_async, _source in gateway.router.chain.rules:
        describe = getattr(rule, "describe", None)  # a rule may tell its policy
        if callable(describe):
            for line in describe(ctx):
                print(line)
    fallbacks = gateway.fallbacks.after(ctx.model_id)
    print(f"fallbacks    : {', '.join(fallbacks) if fallbacks else 'none'}"
          + (" (in order, when no key can serve the model)" if fallbacks else ""))
    return 0
