"""Reasoning the gateway keeps for models that need it back, and puts back when a client drops it.

DeepSeek (and any model the catalogue marks with `needs_reasoning_back`) refuses a conversation
whose assistant tool-call turn comes back without its `reasoning_content`. Clients lose it in
their own ways: Claude Code files thinking under a message id, hand-built Chat histories keep only
`content` and `tool_calls`, Codex sends `reasoning` items without text. So the gateway remembers
the reasoning of every answer of such a model that ends in tool calls, under the session and each
call's id, in the state store (any worker or machine that serves the next turn finds it), for
`state.reasoning_ttl_hours`; and before a request leaves for such a model, every assistant
tool-call turn without reasoning gets it back.

When nothing is remembered (the memory store after a restart, ids from another gateway, a
history written by hand), the turn gets `NEUTRAL_REASONING`: the upstream accepts a turn with
some reasoning, and the conversation goes on instead of failing with DeepSeek's cryptic 400. The
log says so.

The cost on the request path: a scan of the messages for requests to such a model, and a store
lookup only when a tool-call turn lacks its reasoning and this worker has not seen the call (its
recent memories and misses first), given at most `RECALL_SECONDS`: a store that is down or busy
delays no request by more. The answer's last bytes wait (at most `WRITE_SECONDS`) until its
reasoning is in the store: a client that sends the next turn the moment the answer ends may reach
another worker, which must find it there.
"""
from __future__ import annotations

import asyncio
import collections
import logging

from gateway.state.store import StateStore

_log = logging.getLogger("gateway")
NEUTRAL_REASONING = "(The reasoning behind this step is not available; continue from its result.)"
_LOCAL = 4096
RECALL_SECONDS = 0.5
# How long an answer's end waits for its reasoning to reach the store (see `remember_now`).
WRITE_SECONDS = 0.5


def memory_key(session: str, call_id: str) -> str:
    return f"{session}\0{call_id}"


class ReasoningMemory:
    def __init__(self, store: StateStore, ttl_hours: float):
        self._store = store
        self._ttl = ttl_hours * 3600
        self._recent: collections.OrderedDict[str, str] = collections.OrderedDict()
        self._writes: set[asyncio.Task] = set()

    def remember(self, session: str, call_ids: list[str], reasoning: str) -> asyncio.Task | None:
        """Keep `reasoning` for the answer's tool calls; written in the background."""
        if not reasoning or not call_ids:
            return None
        items = {memory_key(session, call_id): reasoning for call_id in call_ids if call_id}
        self._keep(items)
        task = asyncio.get_running_loop().create_task(self._write(items))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)
        return task

    async def remember_now(self, session: str, call_ids: list[str], reasoning: str) -> None:
        """`remember`, returning once the store has it (or after `WRITE_SECONDS`, the write
        going on in the background): what the answer's end waits for."""
        task = self.remember(session, call_ids, reasoning)
        if task is not None:
            await asyncio.wait((task,), timeout=WRITE_SECONDS)

    def _keep(self, items: dict[str, str]) -> None:
        """This worker's recent memories ("" for a call known to have none)."""
        recent = self._recent
        for key, text in items.items():
            recent[key] = text
            recent.move_to_end(key)
        while len(recent) > _LOCAL:
            recent.popitem(last=False)

    async def _write(self, items: dict[str, str]) -> None:
        try:
            await self._store.remember(items, self._ttl)
        except Exception as exc:  # the store is down: this worker still has them
            _log.warning("could not store reasoning for %d tool call(s) (%s: %s); only this "
                         "worker remembers it", len(items), type(exc).__name__, exc)

    async def restore(self, body: dict, session: str, request_id: str) -> int:
        """Put reasoning back on the chat `body`'s assistant tool-call turns that lack it.
        Returns how many turns got the neutral stand-in."""
        lacking = [message for message in body.get("messages") or ()
                   if isinstance(message, dict) and message.get("role") == "assistant"
                   and message.get("tool_calls") and not message.get("reasoning_content")]
        if not lacking:
            return 0
        wanted = {}
        for message in lacking:
            for call in message["tool_calls"]:
                if isinstance(call, dict) and isinstance(call.get("id"), str):
                    wanted[memory_key(session, call["id"])] = None
        found = {key: self._recent[key] for key in wanted if key in self._recent}
        missing = [key for key in wanted if key not in found]
        if missing:
            try:
                found.update(await asyncio.wait_for(self._store.recall(missing), RECALL_SECONDS))
            except Exception as exc:
                _log.warning("%s: could not read remembered reasoning (%s: %s)", request_id,
                             type(exc).__name__, exc or f"over {RECALL_SECONDS:g}s")
            else:
                # Known misses: the next turns of this conversation carry the same calls, and
                # the store will not learn them later (they were answered elsewhere, or expired).
                self._keep({key: found.get(key, "") for key in missing})
        neutral = 0
        for message in lacking:
            texts = []
            for call in message["tool_calls"]:
                text = found.get(memory_key(session, call.get("id", ""))) \
                    if isinstance(call, dict) else None
                if text and text not in texts:
                    texts.append(text)
            if texts:
                message["reasoning_content"] = "\n\n".join(texts)
            else:
                message["reasoning_content"] = NEUTRAL_REASONING
                neutral += 1
        if neutral:
            _log.warning("%s: %d assistant tool-call turn(s) came without reasoning and none was "
                         "remembered for them; sent a neutral stand-in so the upstream takes "
                         "the conversation", request_id, neutral)
        return neutral

    async def drain(self) -> None:
        """Wait for the writes still under way (the worker is stopping)."""
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
