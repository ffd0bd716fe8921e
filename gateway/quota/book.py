"""One worker's view of every key's spending, rests and conversations: what the key choice reads.

The request path only reads and adds to this view; it never waits on the state store. One
background task (`sync`, every `state.sync_seconds`) writes what this worker gathered — usage,
key states, new conversation assignments — and reads back what every worker wrote. Until a
worker's own spending is in the store, it is counted here as pending, so a burst within one
second still shows.

A key's use of a window is the ledger's dollars over the window's limit, unless the upstream's
`GET /usage` gave a figure for the window: then that figure wins, and the ledger adds only what
was spent since it was read.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import time
import zlib

from gateway.config import Config, ConfigError, WindowLimits
from gateway.quota.prices import Prices
from gateway.routing.catalogue_store import CatalogueFacts
from gateway.quota.windows import (LIMIT_NAMES, WINDOWS, day_of, minute_of, month_start,
                                   rolling_start_minute, week_start)
from gateway.state.store import (Batch, KeyState, Snapshot, StateStore, UpstreamUsage, UsageRow,
                                 WindowStarts, add_usage)
from gateway.translate.hub import Usage
from gateway.upstream.instances import Instance, InstancePool

_log = logging.getLogger("gateway")
MAX_SESSIONS = 200_000
MAX_PENDING_SESSIONS = 100_000


class Account:
    """One key's spending as this worker knows it."""
    __slots__ = ("key_id", "instances", "limits", "anchor_day", "stored", "pending", "taken",
                 "upstream")

    def __init__(self, key_id: str, limits: WindowLimits, anchor_day: int):
        self.key_id = key_id
        self.instances: list[Instance] = []
        self.limits = (limits.rolling, limits.weekly, limits.monthly)
        self.anchor_day = anchor_day
        self.stored = [0.0, 0.0, 0.0]    # dollars per window, as the store last said
        self.pending = 0.0               # dollars this worker spent that the store has not seen
        self.taken = 0.0                 # of which: on their way to the store now
        self.upstream: dict[str, UpstreamUsage] = {}

    def spent(self, window: int) -> float:
        return self.stored[window] + self.pending

    def used(self, window: int, now: float) -> float:
        """The share of the window's limit spent (1.0 = the limit)."""
        name = WINDOWS[window]
        limit = self.limits[window]
        figure = self.upstream.get(name)
        if figure is not None and figure.resets_at > now:
            since = max(self.spent(window) - figure.spent_at_fetch, 0.0)
            return figure.percent / 100 + since / limit
        return self.spent(window) / limit  # limits are over 0 (config.Dollars)

    def headroom(self, now: float) -> float:
        """What is left of the tightest window (1.0 = nothing spent, 0 or less = exhausted)."""
        return 1.0 - max(self.used(window, now) for window in range(3))

    def starts(self, now: float) -> WindowStarts:
        return WindowStarts(rolling_start_minute(now), day_of(week_start(now)),
                            day_of(month_start(now, self.anchor_day)))


class KeyBook:
    def __init__(self, config: Config, pools: dict[str, InstancePool], store: StateStore,
                 known: CatalogueFacts | None = None):
        self.config = config
        self.store = store
        self.prices = Prices(config.quota.prices, known)
        self.threshold = config.quota.threshold
        self.accounts: dict[str, Account] = {}
        self._by_instance: dict[str, Account] = {}
        for pool in pools.values():
            for instance in pool.instances:
                settings = config.quota.keys.get(instance.name)
                account = self.accounts.get(instance.key_id)
                if account is None:
                    limits = settings.limits if settings and settings.limits else config.quota.limits
                    account = self.accounts[instance.key_id] = Account(
                        instance.key_id, limits, settings.anchor_day if settings else 1)
                account.instances.append(instance)
                self._by_instance[instance.name] = account
        unknown = sorted(set(config.quota.keys) - set(self._by_instance))
        if unknown:
            raise ConfigError(f"quota.keys names {', '.join(unknown)}, which no instance is "
                              f"called; the instances are: {', '.join(self._by_instance)}")
        self._session_ttl = config.state.session_ttl_hours * 3600
        self._sessions: collections.OrderedDict[str, tuple[str, float]] = collections.OrderedDict()
        self._usage: dict[tuple[str, str, int], UsageRow] = {}
        self._keys: dict[str, KeyState] = {}
        self._new_sessions: dict[str, tuple[str, float]] = {}
        self._cursor = None
        self.store_up = True
        self.synced_at = 0.0
        self.urgent = None  # set by the sync task: an asyncio.Event that starts a sync at once

    def account(self, instance: Instance) -> Account:
        return self._by_instance[instance.name]

    # ---- read by the key choice (rules/10_instance_selection.py) ----

    def headroom(self, instance: Instance, now: float) -> float:
        return self._by_instance[instance.name].headroom(now)

    def sticky(self, session: str, now: float) -> str | None:
        """The key id the conversation is on, if it was seen within the session TTL."""
        held = self._sessions.get(session)
        if held is None or held[1] < now - self._session_ttl:
            return None
        return held[0]

    def stick(self, session: str, instance: Instance, now: float) -> None:
        """The conversation is on `instance`'s key from now on (shared with the other workers)."""
        if not session:
            return
        held = self._sessions.get(session)
        if held is not None and held[0] == instance.key_id and held[1] > now - 60:
            return  # already there, recently: nothing to share
        self._sessions[session] = (instance.key_id, now)
        self._sessions.move_to_end(session)
        if len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
        if len(self._new_sessions) < MAX_PENDING_SESSIONS:
            self._new_sessions[session] = (instance.key_id, now)

    @staticmethod
    def spread(session: str, instances: list[Instance]) -> Instance:
        """The one of `instances` a conversation goes to when they are equally good: the same
        on every worker and machine for the same session (rendezvous hashing), so workers that
        have not heard of each other's choice yet still agree."""
        key = session.encode()
        return max(instances, key=lambda i: zlib.crc32(key + i.key_id.encode()))

    # ---- written by the request path ----

    def finished(self, ctx, status: int, usage: Usage | None, cost: float | None) -> None:
        """A routed request ended (the observer's hook): its spending goes to the ledger, and a
        conversation that was answered stays on the key that answered it."""
        instance = ctx.instance
        if instance is None:
            return
        if usage is not None or cost is not None:
            self.record(instance, ctx.model_id, usage, cost)
        if status < 400 and ctx.session:
            self.stick(ctx.session, instance, time.time())

    def record(self, instance: Instance, model: str, usage: Usage | None,
               cost: float | None) -> None:
        """An answer's usage, for the ledger (the upstream's cost, else the price table's)."""
        if cost is None:
            cost = self.prices.cost(model, usage) if usage is not None else 0.0
        account = self._by_instance[instance.name]
        account.pending += cost
        key = (account.key_id, model, minute_of(time.time()))
        row = self._usage.get(key)
        if row is None:
            row = self._usage[key] = UsageRow(account.key_id, model, key[2])
        row.requests += 1
        row.cost_usd += cost
        if usage is not None:
            row.input_tokens += usage.input_tokens
            row.cached_tokens += usage.cached_tokens
            row.output_tokens += usage.output_tokens

    def key_changed(self, instance: Instance) -> None:
        """An instance started a rest: every worker must know."""
        account = self._by_instance[instance.name]
        self._keys[account.key_id] = _state_of(account)
        if self.urgent is not None:  # other workers must stop using it now, not in a second
            self.urgent.set()

    def upstream_usage(self, instance: Instance, figures: dict[str, tuple[float, float]],
                       pool: InstancePool) -> None:
        """The upstream's own percentages for a key (window -> (percent, resets at))."""
        account = self._by_instance[instance.name]
        now = time.time()
        for window, (percent, resets_at) in figures.items():
            if window in WINDOWS:
                index = WINDOWS.index(window)
                account.upstream[window] = UpstreamUsage(percent, resets_at, now,
                                                         account.spent(index))
                if percent >= 100 and resets_at > now:
                    pool.limit_reached(instance, resets_at - now, LIMIT_NAMES[window])
        self.key_changed(instance)

    # ---- the background task ----

    async def sync(self) -> None:
        """Write what this worker gathered, read back what every worker wrote."""
        batch = Batch(list(self._usage.values()), self._keys, self._new_sessions)
        self._usage, self._keys, self._new_sessions = {}, {}, {}
        for account in self.accounts.values():
            account.taken = account.pending
        now = time.time()
        recorded = False
        try:
            if batch.usage or batch.keys or batch.sessions:
                await self.store.record(batch)
            recorded = True
            snapshot = await self.store.snapshot(
                {key_id: account.starts(now) for key_id, account in self.accounts.items()},
                self._cursor)
        except asyncio.CancelledError:  # the worker is stopping: its last sync writes this
            if not recorded:
                self._requeue(batch)
            raise
        except Exception as exc:  # the store is down or slow: keep serving on this view
            if not recorded:
                self._requeue(batch)
            if self.store_up:
                _log.warning("state store %r unreachable (%s: %s); serving on this worker's "
                             "own view until it is back", self.store, type(exc).__name__, exc)
            self.store_up = False
            return
        if not self.store_up:
            _log.warning("state store %r is back; shared state reconciled", self.store)
        self.store_up = True
        self.synced_at = now
        self._apply(snapshot)

    def _requeue(self, batch: Batch) -> None:
        """A batch the store did not take goes back, merged with what came since."""
        for row in batch.usage:
            add_usage(self._usage, row)
        for key_id, state in batch.keys.items():
            self._keys.setdefault(key_id, state)
        for session, held in batch.sessions.items():
            if len(self._new_sessions) < MAX_PENDING_SESSIONS:
                self._new_sessions.setdefault(session, held)
        for account in self.accounts.values():
            account.taken = 0.0

    def _apply(self, snapshot: Snapshot) -> None:
        for key_id, spent in snapshot.spent.items():
            account = self.accounts.get(key_id)
            if account is not None:
                account.stored = list(spent)
                account.pending -= account.taken
                account.taken = 0.0
        for key_id, state in snapshot.keys.items():
            account = self.accounts.get(key_id)
            if account is None:
                continue
            for window, figure in state.upstream.items():
                mine = account.upstream.get(window)
                if mine is None or figure.fetched_at > mine.fetched_at:
                    account.upstream[window] = figure
            for instance in account.instances:
                if state.limit_until > instance.limit_until:
                    instance.limit_until = state.limit_until
                    instance.limit_name = state.limit_name
                if state.resting_until > instance.resting_until:
                    instance.resting_until = state.resting_until
        # The store keeps one state per key, the last writer's: a worker that had not yet read
        # this one's news may have written over it. Whatever the store lacks is said again at
        # the next write (rests and figures only grow newer, so the workers agree in a sync).
        now = time.time()
        for key_id, account in self.accounts.items():
            if key_id not in self._keys and _lacks(snapshot.keys.get(key_id), account, now):
                self._keys[key_id] = _state_of(account)
        # A session in the snapshot was assigned or used by some worker since the last read:
        # it is alive now, whichever worker served it.
        sessions = self._sessions
        for session, key_id in snapshot.sessions.items():
            sessions[session] = (key_id, now)
            sessions.move_to_end(session)
        while len(sessions) > MAX_SESSIONS:
            sessions.popitem(last=False)
        self._cursor = snapshot.cursor

    # ---- for the usage view and the metrics ----

    def used_ratios(self, now: float) -> dict[str, dict[str, float]]:
        """instance name -> window -> share of its limit used."""
        return {name: {WINDOWS[w]: account.used(w, now) for w in range(3)}
                for name, account in self._by_instance.items()}


def _state_of(account: Account) -> KeyState:
    """What this worker knows of a key: its rests, and the upstream's figures."""
    state = KeyState(upstream=dict(account.upstream))
    for instance in account.instances:
        if instance.limit_until > state.limit_until:
            state.limit_until, state.limit_name = instance.limit_until, instance.limit_name
        state.resting_until = max(state.resting_until, instance.resting_until)
    return state


def _lacks(stored: KeyState | None, account: Account, now: float) -> bool:
    """Whether the store's state of a key lacks a rest still running or an upstream figure
    newer than its own, that this worker knows."""
    stored = stored or KeyState()
    for instance in account.instances:
        if instance.limit_until > max(stored.limit_until, now) or \
                instance.resting_until > max(stored.resting_until, now):
            return True
    for window, figure in account.upstream.items():
        held = stored.upstream.get(window)
        if held is None or figure.fetched_at > held.fetched_at:
            return True
    return False
