"""Reading a small upstream body (an error, the model list, /usage) with a bound on its size."""
from __future__ import annotations

import aiohttp


async def read_at_most(content: aiohttp.StreamReader, limit: int) -> bytes:
    """The body up to its end or `limit` bytes, whichever comes first. `content.read(n)` alone
    returns only what has arrived so far: a body in two TCP segments would be cut."""
    body = b""
    while len(body) < limit:
        chunk = await content.read(limit - len(body))
        if not chunk:
            break
        body += chunk
    return body
