"""The store in one process's memory: for tests and throwaway gateways (`state.backend: memory`).

Nothing survives a restart, and with `serve --workers N` each worker has its own: use `sqlite`
(the default) or `redis` for anything that must be shared or kept.
"""
from __future__ import annotations

import time

from gateway.state.store import (ANONYMOUS, CLIENT_ID_PREFIX, DAYS_KEPT, MINUTES_KEPT, Batch,
                                 KeyState, Snapshot, StateStore, StoredClient, UsageKey, UsageRow,
                                 WindowStarts, add_usage, client_id)

_PRUNE_EVERY = 600.0


class MemoryStore(StateStore):
    name = "memory"

    def __init__(self, settings):
        self._session_ttl = settings.session_ttl_hours * 3600
        self._max_reasoning = settings.max_reasoning
        self._usage: dict[UsageKey, UsageRow] = {}               # the last MINUTES_KEPT
        self._days: dict[tuple[str, int], float] = {}  # (key or @client, day) -> dollars
        self._clients: dict[str, StoredClient] = {}
        self._reloads = 0
        self._keys: dict[str, KeyState] = {}
        self._sessions: dict[str, tuple[str, float, int]] = {}
        self._seq = 0
        self._reasoning: dict[str, tuple[str, float]] = {}
        self._pruned = time.time()

    def __repr__(self) -> str:
        return "memory"

    async def record(self, batch: Batch) -> None:
        for row in batch.usage:
            add_usage(self._usage, row)
            for spender in (row.key_id, client_id(row.client)) if row.client != ANONYMOUS \
                    else (row.key_id,):
                day = (spender, row.minute // 1440)
                self._days[day] = self._days.get(day, 0.0) + row.cost_usd
        self._keys.update(batch.keys)
        if batch.sessions:
            self._seq += 1
            for session, (key_id, assigned) in batch.sessions.items():
                self._sessions[session] = (key_id, assigned, self._seq)
        now = time.time()
        if now - self._pruned > _PRUNE_EVERY:  # a long-lived gateway stays small, and its
            self._pruned = now                 # syncs quick
            self._prune(now)

    def _prune(self, now: float) -> None:
        minute = int(now // 60)
        self._usage = {key: row for key, row in self._usage.items()
                       if row.minute >= minute - MINUTES_KEPT}
        self._days = {key: dollars for key, dollars in self._days.items()
                      if key[1] >= minute // 1440 - DAYS_KEPT}
        oldest = now - self._session_ttl
        self._sessions = {session: held for session, held in self._sessions.items()
                          if held[1] >= oldest}

    async def snapshot(self, starts: dict[str, WindowStarts], cursor) -> Snapshot:
        spent = {}
        for key_id, start in starts.items():
            client = key_id[1:] if key_id.startswith(CLIENT_ID_PREFIX) else None
            spent[key_id] = (
                sum(row.cost_usd for row in self._usage.values()
                    if (row.client == client if client else row.key_id == key_id)
                    and row.minute >= start.rolling_minute),
                sum(dollars for (key, day), dollars in self._days.items()
                    if key == key_id and day >= start.week_day),
                sum(dollars for (key, day), dollars in self._days.items()
                    if key == key_id and day >= start.month_day))
        since = cursor if isinstance(cursor, int) else -1
        oldest = time.time() - self._session_ttl
        fresh = {session: (key_id, assigned)
                 for session, (key_id, assigned, seq) in self._sessions.items()
                 if seq > since and assigned >= oldest}
        return Snapshot(spent, dict(self._keys), {s: held[0] for s, held in fresh.items()},
                        self._seq, {s: held[1] for s, held in fresh.items()},
                        clients=dict(self._clients), reloads=self._reloads)

    async def put_client(self, client: StoredClient) -> None:
        self._clients[client.name] = client

    async def request_reload(self) -> int:
        self._reloads += 1
        return self._reloads

    async def report(self, since_minute: int) -> list[UsageRow]:
        return sorted((row for row in self._usage.values() if row.minute >= since_minute),
                      key=lambda row: row.minute)

    async def remember(self, items: dict[str, str], ttl: float) -> None:
        expires = time.time() + ttl
        for key, text in items.items():
            self._reasoning.pop(key, None)
            self._reasoning[key] = (text, expires)
        while len(self._reasoning) > self._max_reasoning:  # the oldest go first
            del self._reasoning[next(iter(self._reasoning))]

    async def recall(self, ids: list[str]) -> dict[str, str]:
        now = time.time()
        found = {}
        for key in ids:
            held = self._reasoning.get(key)
            if held is not None and held[1] >= now:
                found[key] = held[0]
        return found
