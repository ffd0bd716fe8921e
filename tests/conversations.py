"""Conversation ids for tests that need to know which key a new conversation starts on."""
from __future__ import annotations

from gateway.quota.book import KeyBook
from gateway.upstream.instances import Instance


def sessions_preferring(key: str, count: int, keys: tuple[str, ...] = ("k1", "k2")) -> list[str]:
    """New conversations that start on `key` while every key in `keys` is equally good (the
    gateway's instances `opencode-go.1..N` keyed by them in order)."""
    instances = [Instance(f"opencode-go.{n}", "opencode-go", n, "http://x", value)
                 for n, value in enumerate(keys, start=1)]
    found = []
    for n in range(100_000):
        session = f"conversation-{n}"
        if KeyBook.spread(session, instances).api_key == key:
            found.append(session)
            if len(found) == count:
                return found
    raise AssertionError(f"no {count} sessions prefer {key}")
