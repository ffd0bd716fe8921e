"""Who the gateway says it is upstream: the User-Agent of every call to OpenCode Go.

OpenCode's terms for Go outside OpenCode ask a tool to identify itself, with no overly general
user agent; its edge (Cloudflare) answers a missing or library-default User-Agent
(`Python-urllib/…`) with a 403 HTML page before the key is even read. So every upstream call
carries `opencode-gateway/<version>` at the end, and the client's own product token first when
it sent one (`claude-cli/2.1.3 (external, cli) opencode-gateway/0.1.0`): OpenCode then sees
which tool made the call. A bare HTTP library's default (python-requests, curl, node-fetch, …)
names no tool and is dropped. An instance's `user_agent` setting replaces the gateway's own
token (never the client's part).

The result is computed once per distinct (client UA, own token) pair and kept in a bounded
cache: clients send a handful of distinct strings, so the hot path is one dict lookup.
"""
from __future__ import annotations

import functools
import re

from gateway import __version__

GATEWAY_TOKEN = f"opencode-gateway/{__version__}"
# The longest client User-Agent forwarded (longer ones are cut at a word boundary).
_MAX_CLIENT_UA = 256
# Library defaults that say nothing about the tool: the whole UA is dropped when it starts
# with one (aiohttp's default starts `Python/3.x aiohttp/…`).
_LIBRARY = re.compile(
    r"(python-requests|python-urllib|python-httpx|httpx|aiohttp|python|node-fetch|undici|node|"
    r"axios|curl|libcurl|wget|go-http-client|okhttp|java-http-client|java|apache-httpclient|"
    r"deno|bun|"
    r"reqwest|got|superagent)(/|\s|$)", re.IGNORECASE)
# What may travel in a header value: printable ASCII (a client's control bytes never go on).
_UNSAFE = re.compile(r"[^\x20-\x7e]+")


@functools.lru_cache(maxsize=512)
def upstream_user_agent(client_ua: str | None, own: str = GATEWAY_TOKEN) -> str:
    """The User-Agent sent upstream for a request whose client sent `client_ua`."""
    if not client_ua:
        return own
    ua = _UNSAFE.sub(" ", client_ua).strip()
    if not ua or _LIBRARY.match(ua):
        return own
    if len(ua) > _MAX_CLIENT_UA:
        ua = ua[:_MAX_CLIENT_UA].rsplit(" ", 1)[0]
    if ua.endswith(own):  # a gateway in front of this one already said it
        return ua
    return f"{ua} {own}"


def check_own_token(value: str, where: str) -> str | None:
    """Why a configured `user_agent` cannot be used (None: it can); `where` names the field."""
    if not value.strip():
        return (f"{where} is empty (is the variable it names set?); OpenCode Go refuses calls "
                f"without a user agent: leave the field out to send {GATEWAY_TOKEN!r}, or give "
                "your tool's own name/version")
    if _UNSAFE.search(value):
        return f"{where} may only hold printable ASCII (it is sent as a header)"
    if _LIBRARY.match(value.strip()):
        return (f"{where}: {value!r} is an HTTP library's default user agent, which OpenCode's "
                "edge blocks; give your tool's own name/version")
    return None


# OpenCode's own client headers a client may send: forwarded as they are (bounded, printable).
# `x-opencode-client` is never sent: the gateway does not pass itself off as OpenCode.
FORWARDED_HEADERS = ("x-opencode-project", "x-opencode-request")
_MAX_FORWARDED = 200


def forwarded_headers(headers) -> tuple[tuple[str, str], ...]:
    """The client's OpenCode headers worth passing on, from its request `headers`."""
    found = []
    for name in FORWARDED_HEADERS:
        value = headers.get(name)
        if value and len(value) <= _MAX_FORWARDED and not _UNSAFE.search(value):
            found.append((name, value))
    return tuple(found)
