"""Plain HTTP POSTs from tests to a gateway or the fake (urllib: any thread, no event loop)."""
from __future__ import annotations

import json
import urllib.error
import urllib.request


def body_for(frontend: str, model: str, text: str, stream: bool = False) -> dict:
    """A minimal request body for `frontend` ("openai", "anthropic" or "responses")."""
    if frontend == "responses":
        return {"model": model, "input": text, "stream": stream}
    body = {"model": model, "messages": [{"role": "user", "content": text}], "stream": stream}
    if frontend == "anthropic":
        body["max_tokens"] = 200
    return body


def post_bytes(url: str, data: bytes, headers: dict | None = None,
               timeout: float = 30) -> tuple[int, dict, bytes]:
    """(status, headers with lower-case names, body), error statuses included."""
    request = urllib.request.Request(url, data=data, headers={
        "content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, {k.lower(): v for k, v in answer.headers.items()}, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()


def post_json(url: str, body: dict, headers: dict | None = None,
              timeout: float = 30) -> tuple[int, dict, bytes]:
    return post_bytes(url, json.dumps(body).encode(), headers, timeout)
