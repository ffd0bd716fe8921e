"""`GET /`: what this server is and where to go — a small page for a browser, JSON otherwise.

The same endpoint list names the doors in the 404 of an unknown path (app.py), so a client
pointed at the wrong base URL learns the right one from either.
"""
from __future__ import annotations

from html import escape

import msgspec
from starlette.requests import Request

from gateway import __version__
from gateway.replies import Reply

# (method, path, what): the public doors, in the order a newcomer needs them.
ENDPOINTS = (
    ("POST", "/v1/chat/completions", "OpenAI Chat Completions, every model"),
    ("POST", "/v1/messages", "Anthropic Messages, every model"),
    ("POST", "/v1/responses", "OpenAI Responses (Codex CLI), every model"),
    ("POST", "/v1beta/models/{model}:generateContent",
     "Gemini (Gemini CLI, google-genai), every model; :streamGenerateContent streams"),
    ("GET", "/v1/models", "the models, as opencode-go/<id>"),
    ("GET", "/v1/usage", "where every key stands in its dollar windows"),
    ("GET", "/dashboard", "the same as a page"),
    ("GET", "/healthz", "liveness"),
    ("GET", "/metrics", "Prometheus metrics"),
)

_encode = msgspec.json.Encoder().encode


def endpoint_list() -> str:
    """`POST /v1/chat/completions, POST /v1/messages, …` for a message."""
    return ", ".join(f"{method} {path}" for method, path, _ in ENDPOINTS)


def _page() -> bytes:
    rows = "".join(f"<tr><td>{method}</td><td><a href=\"{escape(path)}\">{escape(path)}</a></td>"
                   f"<td>{escape(what)}</td></tr>" if method == "GET" else
                   f"<tr><td>{method}</td><td><code>{escape(path)}</code></td>"
                   f"<td>{escape(what)}</td></tr>"
                   for method, path, what in ENDPOINTS)
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>opencode-go "
            f"gateway {__version__}</title><style>body{{font:15px system-ui,sans-serif;"
            f"max-width:44em;margin:2em auto;padding:0 1em}}td{{padding:.2em 1em .2em 0}}"
            f"</style></head><body><h1>opencode-go gateway</h1><p>Version {__version__}. One "
            f"backend name, <code>opencode-go</code>, for every OpenCode Go model. Point a "
            f"client's base URL here (<code>/v1</code> for OpenAI clients) and name a model as "
            f"<code>opencode-go/&lt;id&gt;</code>. The <a href=\"/dashboard\">dashboard</a> "
            f"shows where every key stands.</p><table>{rows}</table></body></html>").encode()


_HTML = _page()
_JSON = _encode({"name": "opencode-go gateway", "version": __version__, "dashboard": "/dashboard",
                 "endpoints": [{"method": method, "path": path, "what": what}
                               for method, path, what in ENDPOINTS]})


async def landing(request: Request) -> Reply:
    if "text/html" in request.headers.get("accept", ""):
        return Reply(_HTML, media_type=b"text/html; charset=utf-8")
    return Reply(_JSON)
