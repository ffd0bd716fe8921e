"""One worker's view of every key's spending, rests and conversations: what the key choice reads.

The request path only reads and adds to this view; it never waits on the state store. One
background task (`sync`, every `state.sync_seconds`) writes what this worker gathered — usage,
key states, new conversation assignments — and reads back what every worker wrote. Until a
worker's own spending is in the store, it is counted here as pending, so a burst within one
second still shows.

A key's use of a window is the ledger's dollars over the window's limit, unless the upstream's
`GET /usage` gave a figure for the window: then that figure wins, and the ledger adds only what
was spent since it was read.

Each conversation's key and last turn (`seen`) are kept here too: exact for the turns this
worker served, and shared through the store with the other workers and machines within a tenth
of the shortest prompt cache lifetime (`quota.prompt_cache`) plus one sync, so every worker can
tell whether a conversation's prompt cache is still warm. Per key, the conversations seen in
the last `CARRIED_SECONDS` are what the key carries.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import time
import zlib

from gateway.config import Config, ConfigError
from gateway.quota.prices import Prices
from gateway.routing.catalogue_store import CatalogueFacts
from gateway.quota.windows import (LIMIT_NAMES, WINDOWS, day_of, minute_of, month_start,
                                   rolling_start_minute, week_start)
from gateway.state.store import (ANONYMOUS, Batch, KeyState, Snapshot, StateStore, UpstreamUsage,
                                 UsageKey, UsageRow, WindowStarts, add_usage, client_id)
from gateway.translate.hub import Usage
from gateway.upstream.instances import Instance, InstancePool

_log = logging.getLogger("gateway")
MAX_SESSIONS = 200_000
MAX_PENDING_SESSIONS = 100_000
# A conversation idle longer than this no longer counts as one its key carries.
CARRIED_SECONDS = 1800.0


class Account:
    """One key's spending as this worker knows it."""
    __slots__ = ("key_id", "instances", "limits", "anchor_day", "stored", "pending", "taken",
                 "upstream", "lifted_at")

    def __init__(self, key_id: str, limits: tuple[float, float, float], anchor_day: int):
        self.key_id = key_id
        self.instances: list[Instance] = []
        self.limits = limits  # dollars per window; inf where a client has no budget
        self.anchor_day = anchor_day
        self.stored = [0.0, 0.0, 0.0]    # dollars per window, as the store last said
        self.pending = 0.0               # dollars this worker spent that the store has not seen
        self.taken = 0.0                 # of which: on their way to the store now
        self.upstream: dict[str, UpstreamUsage] = {}
        self.lifted_at = 0.0             # when its rests were last lifted (see KeyState)

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

    def left(self, now: float) -> float:
        """Dollars left in the window with the fewest (0 or less = exhausted)."""
        return min(self.limits[window] * (1.0 - self.used(window, now)) for window in range(3))

    def starts(self, now: float) -> WindowStarts:
        return WindowStarts(rolling_start_minute(now), day_of(week_start(now)),
                            day_of(month_start(now, self.anchor_day)))


class Held:
    """One conversation as this worker knows it."""
    __slots__ = ("key_id", "seen", "shared", "idle", "decided")

    def __init__(self, key_id: str, seen: float):
        self.key_id = key_id
        self.seen = seen        # its last turn (routed or answered), on this or any worker
        self.shared = seen      # when this worker last queued it for the store
        self.idle: float | None = None  # its idle time when this worker last routed it
        self.decided = False    # whether that routing placed or moved it (and counted it)


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
                        instance.key_id, (limits.rolling, limits.weekly, limits.monthly),
                        settings.anchor_day if settings else 1)
                account.instances.append(instance)
                self._by_instance[instance.name] = account
        unknown = sorted(set(config.quota.keys) - set(self._by_instance))
        if unknown:
            raise ConfigError(f"quota.keys names {', '.join(unknown)}, which no instance is "
                              f"called; the instances are: {', '.join(self._by_instance)}")
        self._session_ttl = config.state.session_ttl_hours * 3600
        self._sessions: collections.OrderedDict[str, Held] = collections.OrderedDict()
        # key id -> its conversations -> last seen, oldest first (what `carried` counts).
        self._on_key: dict[str, collections.OrderedDict[str, float]] = {
            key_id: collections.OrderedDict() for key_id in self.accounts}
        self.prompt_cache = config.quota.prompt_cache
        # A conversation's last turn is shared at least this often while it is active.
        self._share_every = min([self.prompt_cache.lifetime_seconds,
                                 *self.prompt_cache.families.values()]) / 10
        self.on_decision = None  # set by the app: counts a placement or move (metrics)
        # Named clients' spending (client name -> its account, id `@name`, anchored on the 1st).
        self.clients: dict[str, Account] = {}
        # Set by the app: called with the stored clients and the reload count after each sync.
        self.on_snapshot = None
        self._usage: dict[UsageKey, UsageRow] = {}
        self._keys: dict[str, KeyState] = {}
        self._new_sessions: dict[str, tuple[str, float]] = {}
        self._cursor = None
        self.store_up = True
        self.synced_at = 0.0
        self.urgent = None  # set by the sync task: an asyncio.Event that starts a sync at once

    def account(self, instance: Instance) -> Account:
        return self._by_instance[instance.name]

    def set_clients(self, budgets: dict[str, tuple[float, float, float]]) -> None:
        """The named clients now known (name -> dollars per window, inf for none): their
        accounts, keeping what a client already spent."""
        clients = {}
        for name, limits in budgets.items():
            account = self.clients.get(name) or Account(client_id(name), limits, 1)
            account.limits = limits
            clients[name] = account
        self.clients = clients

    # ---- read by the key choice (rules/10_instance_selection.py) ----

    def headroom(self, instance: Instance, now: float) -> float:
        return self._by_instance[instance.name].headroom(now)

    def sticky(self, session: str, now: float) -> str | None:
        """The key id the conversation is on, if it was seen within the session TTL."""
        held = self._sessions.get(session)
        if held is None or held.seen < now - self._session_ttl:
            return None
        return held.key_id

    def idle(self, session: str, now: float) -> float | None:
        """Seconds since the conversation's last turn on any worker (None: never seen)."""
        held = self._sessions.get(session)
        return None if held is None else max(now - held.seen, 0.0)

    def cache_lifetime(self, model: str) -> float:
        """How long the upstream keeps a prompt prefix of `model` (`quota.prompt_cache`)."""
        found, length = self.prompt_cache.lifetime_seconds, -1
        for prefix, seconds in self.prompt_cache.families.items():
            if len(prefix) > length and model.startswith(prefix):
                found, length = seconds, len(prefix)
        return found

    def left(self, instance: Instance, now: float) -> float:
        """Dollars left on the key in its tightest window."""
        return self._by_instance[instance.name].left(now)

    def carried(self, instance: Instance, now: float) -> int:
        """Conversations on the key seen in the last CARRIED_SECONDS."""
        on = self._on_key.setdefault(instance.key_id, collections.OrderedDict())
        oldest = now - CARRIED_SECONDS
        while on and next(iter(on.values())) < oldest:
            on.popitem(last=False)
        return len(on)

    def place(self, session: str, instance: Instance, now: float, decision: str | None,
              idle: float | None) -> None:
        """The key choice's verdict for a turn: the conversation is on `instance`'s key, and
        `decision` ("placement", "cold_move", "hot_move"; None: it stays) is counted."""
        self.stick(session, instance, now)
        held = self._sessions.get(session) if session else None
        if held is not None:
            held.idle, held.decided = idle, decision is not None
        if decision is not None and self.on_decision is not None:
            self.on_decision(decision)

    def stick(self, session: str, instance: Instance, now: float) -> None:
        """The conversation is on `instance`'s key from now on, seen now (shared with the other
        workers at the next sync when it moved, else at most every `_share_every` seconds)."""
        if not session:
            return
        sessions = self._sessions
        held = sessions.get(session)
        moved = held is None or held.key_id != instance.key_id
        if held is None:
            held = sessions[session] = Held(instance.key_id, now)
        else:
            if moved:
                self._leave(session, held.key_id)
                held.key_id = instance.key_id
            held.seen = max(held.seen, now)
            sessions.move_to_end(session)
        self._carry(session, held)
        while len(sessions) > MAX_SESSIONS:
            gone, evicted = sessions.popitem(last=False)
            self._leave(gone, evicted.key_id)
        pending = self._new_sessions
        if session in pending or (
                (moved or now - held.shared >= self._share_every)
                and len(pending) < MAX_PENDING_SESSIONS):
            pending[session] = (held.key_id, held.seen)
            held.shared = now

    def _carry(self, session: str, held: Held) -> None:
        # Every answer passes here: no dict made only to be thrown away.
        on = self._on_key.get(held.key_id)
        if on is None:
            on = self._on_key[held.key_id] = collections.OrderedDict()
        on[session] = held.seen
        on.move_to_end(session)

    def _leave(self, session: str, key_id: str) -> None:
        on = self._on_key.get(key_id)
        if on is not None:
            on.pop(session, None)

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
            self.record(instance, ctx.model_id, usage, cost, ctx.client, ctx.agent)
        if status < 400 and ctx.session:
            held = self._sessions.get(ctx.session)
            if held is not None and held.key_id != instance.key_id and not held.decided \
                    and not ctx.pinned and self.on_decision is not None:
                # The key chosen to keep it refused before answering (a usage limit the view
                # had not seen yet): the forwarder moved it.
                hot = held.idle is not None and held.idle < self.cache_lifetime(ctx.model_id)
                self.on_decision("hot_move" if hot else "cold_move")
            self.stick(ctx.session, instance, time.time())

    def record(self, instance: Instance, model: str, usage: Usage | None,
               cost: float | None, client: str = ANONYMOUS, agent: str = "other") -> None:
        """An answer's usage, for the ledger (the upstream's cost, else the price table's),
        charged to the key and to the named client that asked."""
        if cost is None:
            cost = self.prices.cost(model, usage) if usage is not None else 0.0
        account = self._by_instance[instance.name]
        account.pending += cost
        spender = self.clients.get(client)
        if spender is not None:
            spender.pending += cost
        key = (account.key_id, model, minute_of(time.time()), client, agent)
        row = self._usage.get(key)
        if row is None:
            row = self._usage[key] = UsageRow(account.key_id, model, key[2], client=client,
                                              agent=agent)
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
        # A key resting at a usage limit whose every window has room again is back at once
        # (the limit was lifted, or the subscription grew), not at the reset it was given.
        if instance.limited(now) and figures and all(percent < 100 for percent, _ in
                                                     figures.values()):
            _log.info("%s: the upstream's /usage shows room in every window; its %s limit "
                      "rest ends now", instance.name, instance.limit_name or "usage")
            self.lift(instance)
            return
        self.key_changed(instance)

    def lift(self, instance: Instance) -> None:
        """End the rests of `instance`'s key now, on every worker (they read the lift)."""
        account = self._by_instance[instance.name]
        account.lifted_at = time.time()
        for same_key in account.instances:
            same_key.lift()
        self.key_changed(instance)

    # ---- the background task ----

    async def sync(self) -> None:
        """Write what this worker gathered, read back what every worker wrote."""
        batch = Batch(list(self._usage.values()), self._keys, self._new_sessions)
        self._usage, self._keys, self._new_sessions = {}, {}, {}
        for account in self._spenders():
            account.taken = account.pending
        now = time.time()
        recorded = False
        try:
            if batch.usage or batch.keys or batch.sessions:
                await self.store.record(batch)
            recorded = True
            snapshot = await self.store.snapshot(
                {account.key_id: account.starts(now) for account in self._spenders()},
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
        if self.on_snapshot is not None:
            self.on_snapshot(snapshot.clients, snapshot.reloads)

    def _spenders(self) -> list[Account]:
        """Every account whose windows the store sums: the keys', then the clients'."""
        return [*self.accounts.values(), *self.clients.values()]

    def _requeue(self, batch: Batch) -> None:
        """A batch the store did not take goes back, merged with what came since."""
        for row in batch.usage:
            add_usage(self._usage, row)
        for key_id, state in batch.keys.items():
            self._keys.setdefault(key_id, state)
        for session, held in batch.sessions.items():
            if len(self._new_sessions) < MAX_PENDING_SESSIONS:
                self._new_sessions.setdefault(session, held)
        for account in self._spenders():
            account.taken = 0.0

    def _apply(self, snapshot: Snapshot) -> None:
        spenders = {account.key_id: account for account in self._spenders()}
        for key_id, spent in snapshot.spent.items():
            account = spenders.get(key_id)
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
            if state.lifted_at > account.lifted_at:
                account.lifted_at = state.lifted_at
                for instance in account.instances:
                    if instance.rested_at <= state.lifted_at:
                        instance.lift()
            if account.lifted_at and state.rested_at <= account.lifted_at:
                continue  # its rests began before a lift: over
            for instance in account.instances:
                instance.rested_at = max(instance.rested_at, state.rested_at)
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
        # A session in the snapshot was assigned or seen by some worker since the last read, at
        # the time written with it (a store that gives none: now). A move this worker made
        # after that time stands.
        sessions = self._sessions
        seen = snapshot.seen
        for session, key_id in snapshot.sessions.items():
            at = seen.get(session, now)
            held = sessions.get(session)
            if held is None:
                held = sessions[session] = Held(key_id, at)
            elif held.key_id == key_id or at >= held.seen:
                if held.key_id != key_id:
                    self._leave(session, held.key_id)
                    held.key_id = key_id
                held.seen = max(held.seen, at)
            else:
                continue
            sessions.move_to_end(session)
            self._carry(session, held)
        while len(sessions) > MAX_SESSIONS:
            gone, evicted = sessions.popitem(last=False)
            self._leave(gone, evicted.key_id)
        self._cursor = snapshot.cursor

    # ---- for the usage view and the metrics ----

    def used_ratios(self, now: float) -> dict[str, dict[str, float]]:
        """instance name -> window -> share of its limit used."""
        return {name: {WINDOWS[w]: account.used(w, now) for w in range(3)}
                for name, account in self._by_instance.items()}


def _state_of(account: Account) -> KeyState:
    """What this worker knows of a key: its rests, and the upstream's figures."""
    state = KeyState(upstream=dict(account.upstream), lifted_at=account.lifted_at)
    for instance in account.instances:
        if instance.limit_until > state.limit_until:
            state.limit_until, state.limit_name = instance.limit_until, instance.limit_name
        state.resting_until = max(state.resting_until, instance.resting_until)
        state.rested_at = max(state.rested_at, instance.rested_at)
    return state


def _lacks(stored: KeyState | None, account: Account, now: float) -> bool:
    """Whether the store's state of a key lacks a rest still running or an upstream figure
    newer than its own, that this worker knows."""
    stored = stored or KeyState()
    if account.lifted_at > stored.lifted_at:
        return True
    for instance in account.instances:
        if instance.limit_until > max(stored.limit_until, now) or \
                instance.resting_until > max(stored.resting_until, now):
            return True
    for window, figure in account.upstream.items():
        held = stored.upstream.get(window)
        if held is None or figure.fetched_at > held.fetched_at:
            return True
    return False
