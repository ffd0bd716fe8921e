"""Where each upstream call goes: OpenCode Go's two URL layouts, found from the configured URL.

- `zen`: `https://opencode.ai/zen/go/v1` (also given without its `/v1`), every wire and read
  endpoint under one prefix: `/chat/completions`, `/messages`, `/responses`, `/models`, `/usage`.
  Any other URL whose path ends in `/v1` (a self-hosted stand-in, a proxy) is read the same way.
- `inference`: `https://opencode.ai/inference/go` (since 2026-09), one prefix per protocol:
  `/openai/v1/chat/completions`, `/openai/v1/responses`, `/anthropic/v1/messages`,
  `/google/v1beta/models/<id>:generateContent`, and `/v1/models`, `/v1/usage`. Its Messages
  endpoint takes `Authorization: Bearer` (the zen one takes only `x-api-key`).

An instance keeps its base (`api_url`, normalised) and its `Layout`; a call's URL is one string
concatenation (`call_url`). A new wire is one entry per layout in `paths`.

Google's wire (Gemini) names the model and the stream in the path, and exists only under the
inference layout: `<root>/google/v1beta/models/<id>:generateContent` (or
`:streamGenerateContent?alt=sse`). On the zen layout its root is the base without `/v1`, with
`/zen/go` moved to `/inference/go`.
"""
from __future__ import annotations

import re
from typing import NamedTuple


class Layout(NamedTuple):
    name: str                  # "zen" or "inference"
    paths: dict[str, str]      # wire or read endpoint -> path under the base URL
    bearer_messages: bool      # the Messages wire takes Authorization: Bearer


ZEN = Layout("zen", {
    "openai": "/chat/completions",
    "anthropic": "/messages",
    "responses": "/responses",
    "models": "/models",
    "usage": "/usage",
}, bearer_messages=False)

INFERENCE = Layout("inference", {
    "openai": "/openai/v1/chat/completions",
    "anthropic": "/anthropic/v1/messages",
    "responses": "/openai/v1/responses",
    "models": "/v1/models",
    "usage": "/v1/usage",
}, bearer_messages=True)

LAYOUTS = {layout.name: layout for layout in (ZEN, INFERENCE)}
ZEN_URL = "https://opencode.ai/zen/go/v1"
INFERENCE_URL = "https://opencode.ai/inference/go"

_INFERENCE_PATH = re.compile(r"/inference/go$")
_ZEN_PATH = re.compile(r"/zen/go$")


class Placed(NamedTuple):
    base: str          # the URL calls are built on (no trailing slash)
    layout: Layout


def place(url: str) -> Placed | None:
    """The layout a base URL belongs to, or None when the URL names neither."""
    base = url.strip().rstrip("/")
    _, sep, rest = base.partition("://")
    if not sep:
        return None
    path = rest.partition("/")[2]
    path = "/" + path if path else ""
    if _INFERENCE_PATH.search(path):
        return Placed(base, INFERENCE)
    if _ZEN_PATH.search(path):
        return Placed(base + "/v1", ZEN)
    if path.endswith("/v1") and not path.endswith(("/inference/go/v1", "/openai/v1",
                                                   "/anthropic/v1")):
        return Placed(base, ZEN)
    return None


def unplaceable(url: str, where: str) -> str:
    """Why `url` (at `where`, naming the instance and field) cannot be used, and the fix."""
    hint = ""
    if "/inference/go/" in url:
        hint = f" (the inference layout's base is {INFERENCE_URL}, without anything after it)"
    return (f"{where}: cannot tell which OpenCode Go URL layout {url!r} uses{hint}; give "
            f"{ZEN_URL} (or …/zen/go, or any URL ending in /v1 that serves /chat/completions, "
            f"/messages, /responses under it) or {INFERENCE_URL}")


def gemini_url(base: str, layout: Layout, model_id: str, stream: bool) -> str:
    root = base
    if layout is ZEN:
        root = base.removesuffix("/v1")
        if root.endswith("/zen/go"):
            root = root.removesuffix("/zen/go") + "/inference/go"
    method = "streamGenerateContent?alt=sse" if stream else "generateContent"
    return f"{root}/google/v1beta/models/{model_id}:{method}"


def call_url(instance, wire: str, model_id: str = "", stream: bool = False) -> str:
    """The URL of `instance`'s call on `wire` (or read endpoint: "models", "usage")."""
    if wire == "gemini":
        return gemini_url(instance.api_url, instance.layout, model_id, stream)
    return instance.api_url + instance.layout.paths[wire]
