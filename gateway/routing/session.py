"""The conversation a request belongs to: the `x-opencode-session` every upstream request carries.

OpenCode Go refuses a request without that header, and routes one session to one provider
replica, where the conversation's prompt prefix is already cached: cached input costs 5-100×
less than fresh input, and the subscription's limits are in dollars. So the id must be the same
for every turn of one conversation, and differ between conversations.

The client's own id wins when it sends one, in this order: the headers `x-opencode-session`
(opencode), `session-id` (Codex), `session_id`, `x-session-id`, `x-claude-code-session-id`; then
the body's `prompt_cache_key` (Codex, OpenAI SDKs) and Claude Code's `metadata.user_id`
(`user_<hash>_account_<uuid>_session_<uuid>`, or a JSON string holding `session_id`). An id
made only of letters, digits and `._:-`, at most 128 characters, passes as it is; any other is
replaced by its keyed hash.

Otherwise the id is derived: a keyed BLAKE2b hash of the client key (so two teams' identical
prompts stay apart), the protocol, and the conversation's opening — its system prompt and first
user message, which do not change from turn to turn. The hash key is secret to the gateway
(derived from its upstream keys), so an id in a log cannot be tested against guessed prompts.
"""
from __future__ import annotations

import hashlib
import re

import msgspec

MAX_LENGTH = 128
_HASHED_WHOLE = 64 * 1024  # a string of an opening up to this size is hashed whole
_SAFE = re.compile(r"[A-Za-z0-9._:-]{1,128}")
CLIENT_HEADERS = ("x-opencode-session", "session-id", "session_id", "x-session-id",
                  "x-claude-code-session-id")
_HEADER_RANK = {name.encode(): rank for rank, name in enumerate(CLIENT_HEADERS)}
_CLAUDE_USER_ID = re.compile(r"_session_([0-9A-Za-z-]{8,})$")
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.decode


def session_secret(upstream_keys: list[str]) -> bytes:
    """The hash key: stable across restarts, workers and machines that share the same keys."""
    material = b"\0".join(sorted(key.encode() for key in upstream_keys if key))
    return hashlib.blake2b(b"opencode-gateway session\0" + material, digest_size=32).digest()


class Sessions:
    """Finds or derives the session id of one request (see the module docstring)."""

    def __init__(self, secret: bytes):
        # The keyed hash's state once set up, copied for each id (cheaper than keying anew).
        self._keyed = hashlib.blake2b(digest_size=16, key=secret)

    def _hash(self, parts: list) -> str:
        hasher = self._keyed.copy()
        # msgspec's encoding of the list keeps the parts apart (no two lists encode the same).
        hasher.update(_encode(_ends(parts)))
        return hasher.hexdigest()

    def _safe(self, value: str) -> str:
        if _SAFE.fullmatch(value):
            return value
        return "h-" + self._hash(["client", value])

    def session(self, headers, body: dict, frontend: str, client_key: str | None) -> str:
        """`headers`: Starlette's Headers (read in one pass over its raw pairs) or a mapping."""
        own = _from_headers(headers) or _from_body(body)
        if own:
            return self._safe(own)
        return "gw-" + self._hash(["derived", client_key or "", frontend, _opening(body, frontend)])


def _ends(node, depth: int = 0):
    """`node` with each string over _HASHED_WHOLE characters replaced by its length and its two
    ends: a huge opening (a pasted file) is told apart well enough by them, and encoding and
    hashing all of it would hold the event loop. Below _ENDS_DEPTH levels the node is kept as it
    is: a conversation's text never sits that deep, and a body nested hundreds deep (which the
    door lets through, within its count of containers) must not exhaust the stack here."""
    if isinstance(node, str):
        if len(node) <= _HASHED_WHOLE:
            return node
        half = _HASHED_WHOLE // 2
        return [len(node), node[:half], node[-half:]]
    if depth >= _ENDS_DEPTH:
        return node
    if isinstance(node, list):
        return [_ends(item, depth + 1) for item in node]
    if isinstance(node, dict):
        return {key: _ends(value, depth + 1) for key, value in node.items()}
    return node


_ENDS_DEPTH = 32


def _from_headers(headers) -> str | None:
    raw = getattr(headers, "raw", None)
    if raw is None:  # a plain mapping (a rule, a test, the CLI)
        for name in CLIENT_HEADERS:
            value = (headers or {}).get(name)
            if value and value.strip():
                return value.strip()
        return None
    found, best = None, len(CLIENT_HEADERS)
    for name, value in raw:  # one pass; the earliest name of CLIENT_HEADERS wins
        rank = _HEADER_RANK.get(name)
        if rank is not None and rank < best and value.strip():
            found, best = value, rank
    return found.decode("latin-1").strip() if found is not None else None


def _from_body(body: dict) -> str | None:
    key = body.get("prompt_cache_key")
    if isinstance(key, str) and key.strip():
        return key.strip()
    metadata = body.get("metadata")
    user_id = metadata.get("user_id") if isinstance(metadata, dict) else None
    if not isinstance(user_id, str) or not user_id:
        return None
    if user_id.startswith("{"):
        try:
            parsed = _decode(user_id)
        except msgspec.DecodeError:
            return None
        found = parsed.get("session_id") if isinstance(parsed, dict) else None
        return found if isinstance(found, str) and found else None
    match = _CLAUDE_USER_ID.search(user_id)
    return match.group(1) if match else None


def _first_user(messages: list) -> object:
    for message in messages:
        if isinstance(message, dict) and message.get("role") == "user":
            return message.get("content")
    return None


def _leading_system(messages: list) -> list:
    """The system/developer messages before the first other one (later ones may come and go)."""
    system = []
    for message in messages:
        if not isinstance(message, dict) or message.get("role") not in ("system", "developer"):
            break
        system.append(message.get("content"))
    return system


def _opening(body: dict, frontend: str) -> object:
    """What stays the same on every turn of one conversation: system prompt, first user turn."""
    if frontend == "anthropic":
        messages = body.get("messages")
        return [body.get("system"),
                _first_user(messages) if isinstance(messages, list) else None]
    if frontend == "gemini":
        contents = body.get("contents")
        first = contents[0] if isinstance(contents, list) and contents else None
        return [body.get("systemInstruction"), first]
    if frontend == "responses":
        items = body.get("input")
        if not isinstance(items, list):
            return [body.get("instructions"), items]
        return [body.get("instructions"), _leading_system(items), _first_user(items)]
    messages = body.get("messages")
    if not isinstance(messages, list):
        return None
    return [_leading_system(messages), _first_user(messages)]
