"""State that outlives a request: one small interface, three backends.

What is kept: the usage ledger (requests, tokens and dollars per key, model and minute, with
per-day totals for the long windows), each key's state (a usage-limit or short rest, the
upstream's own usage percentages), which key each conversation is on, and the reasoning the
gateway remembers for models that need it back.

The request path reads the per-worker view (`quota/book.py`) that one background task keeps in
step: every `state.sync_seconds` it writes what the worker gathered (`record`) and reads back
what every worker wrote (`snapshot`). The other calls are reports (`report`, for /v1/usage) and
the reasoning memory: `remember` in the background, and `recall`, the one a request may wait
for, only when a tool-call turn to a model that needs its reasoning back lost it and this worker
has not seen the call (bounded: `reasoning.RECALL_SECONDS`).

Backends: `memory` (one process: tests, a throwaway gateway), `sqlite` (the default: one machine,
any number of workers, survives restarts), `redis` (many machines).
"""
from __future__ import annotations

import os
from pathlib import Path

import msgspec


# How long each backend keeps the ledger: minutes for the rolling window and the usage view's
# recent charts, days for the week and the month (the longest month, and its anchor day, fit).
MINUTES_KEPT = 2 * 24 * 60
DAYS_KEPT = 40


ANONYMOUS = "anonymous"
# Spending of a named client is summed in the stores under this prefix and its name, next to
# the keys' own ids (key ids are hex fingerprints: they never start with it).
CLIENT_ID_PREFIX = "@"


def client_id(name: str) -> str:
    return CLIENT_ID_PREFIX + name


class UsageRow(msgspec.Struct, array_like=True):
    """Usage of one key with one model in one minute by one client and agent (a bucket), or
    what to add to one."""
    key_id: str
    model: str
    minute: int           # minutes since the epoch, UTC
    requests: int = 0
    input_tokens: int = 0  # every prompt token, cached ones included
    cached_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    client: str = ANONYMOUS  # the named client (server.clients), anonymous, or admin
    agent: str = "other"     # the program that asked (access/agents.py)

    @property
    def bucket(self) -> tuple[str, str, int, str, str]:
        return (self.key_id, self.model, self.minute, self.client, self.agent)


UsageKey = tuple[str, str, int, str, str]


def add_usage(rows: dict[UsageKey, UsageRow], row: UsageRow) -> None:
    """Add `row` to its bucket (key, model, minute, client, agent) in `rows`; a new bucket is a
    copy of it."""
    key = row.bucket
    held = rows.get(key)
    if held is None:
        rows[key] = msgspec.structs.replace(row)
        return
    held.requests += row.requests
    held.input_tokens += row.input_tokens
    held.cached_tokens += row.cached_tokens
    held.output_tokens += row.output_tokens
    held.cost_usd += row.cost_usd


class UpstreamUsage(msgspec.Struct):
    """One window as the upstream's `GET /usage` reported it."""
    percent: float
    resets_at: float      # epoch seconds
    fetched_at: float
    spent_at_fetch: float  # the ledger's dollars in that window when it was read


class KeyState(msgspec.Struct, omit_defaults=True):
    """What every worker must know about a key (its rests, the upstream's usage figures)."""
    limit_until: float = 0.0
    limit_name: str = ""
    resting_until: float = 0.0
    upstream: dict[str, UpstreamUsage] = {}   # window name -> the upstream's figure
    rested_at: float = 0.0    # when the latest of those rests began
    lifted_at: float = 0.0    # when the rests were last lifted: any that began before are void


class StoredClient(msgspec.Struct, omit_defaults=True):
    """A client managed with `opencode-gateway clients` (its key kept only as a hash), or the
    revocation of one from the config (`revoked`)."""
    name: str
    key_hash: str = ""
    budget: dict[str, float] = {}     # window -> dollars
    models: list[str] | None = None
    rpm: int | None = None
    revoked: bool = False
    changed_at: float = 0.0


class Batch(msgspec.Struct):
    """What one worker gathered since its last write."""
    usage: list[UsageRow] = []
    keys: dict[str, KeyState] = {}            # key id -> its state now
    # session -> (key id, when it was assigned or last seen: a conversation's idle time, which
    # tells whether its prompt cache is still warm, is read from this on every worker)
    sessions: dict[str, tuple[str, float]] = {}


class WindowStarts(msgspec.Struct, array_like=True):
    """Where a key's three windows begin: a minute for the rolling one, days for the others."""
    rolling_minute: int
    week_day: int          # days since the epoch, UTC
    month_day: int


class Snapshot(msgspec.Struct):
    """What the store holds now, as a worker's view needs it."""
    spent: dict[str, tuple[float, float, float]]   # key id -> dollars in (rolling, week, month)
    keys: dict[str, KeyState]
    sessions: dict[str, str]                       # sessions assigned since the cursor
    cursor: int | str | None
    seen: dict[str, float] = {}                    # of those: when each was assigned or seen
    clients: dict[str, StoredClient] = {}          # every client the CLI manages
    reloads: int = 0                               # `opencode-gateway reload`s so far


class StoreError(Exception):
    """A store that cannot be used (unwritable path, corrupt database, bad URL)."""


class StateStore:
    """The interface every backend implements (coroutines; none blocks the event loop)."""

    name = "abstract"

    async def open(self) -> None:
        """Connect or create; raises StoreError with a message a user can act on."""

    async def close(self) -> None:
        pass

    async def record(self, batch: Batch) -> None:
        raise NotImplementedError

    async def snapshot(self, starts: dict[str, WindowStarts],
                       cursor: int | str | None) -> Snapshot:
        """Window totals for the keys in `starts` (and the clients, `@name`), every key's state,
        the sessions assigned or seen since `cursor` (all of them within the session TTL when it
        is None) with the time each was written with, the stored clients and the reload count."""
        raise NotImplementedError

    async def put_client(self, client: StoredClient) -> None:
        """Add, change or revoke (`revoked`) a client managed at run time."""
        raise NotImplementedError

    async def request_reload(self) -> int:
        """Ask every worker to re-read its config file at its next sync; the new count."""
        raise NotImplementedError

    async def report(self, since_minute: int) -> list[UsageRow]:
        """Every usage bucket from `since_minute` on (for the usage view)."""
        raise NotImplementedError

    async def remember(self, items: dict[str, str], ttl: float) -> None:
        """Keep reasoning texts under ids for `ttl` seconds (bounded in number)."""
        raise NotImplementedError

    async def recall(self, ids: list[str]) -> dict[str, str]:
        raise NotImplementedError


def default_sqlite_path(env: dict[str, str] | None = None) -> Path:
    """Per user: systemd's `$STATE_DIRECTORY`, else `$XDG_STATE_HOME`, else ~/.local/state."""
    env = os.environ if env is None else env
    if env.get("STATE_DIRECTORY"):
        return Path(env["STATE_DIRECTORY"].split(":")[0]) / "state.sqlite3"
    base = env.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "opencode-gateway" / "state.sqlite3"


def make_store(settings, env: dict[str, str] | None = None) -> StateStore:
    """The store the config's `state:` section asks for (not opened yet)."""
    if settings.backend == "memory":
        from gateway.state.memory import MemoryStore
        return MemoryStore(settings)
    if settings.backend == "redis":
        from gateway.state.redis import RedisStore
        return RedisStore(settings)
    from gateway.state.sqlite import SQLiteStore
    path = Path(os.path.expanduser(settings.path)) if settings.path else default_sqlite_path(env)
    return SQLiteStore(path, settings)
