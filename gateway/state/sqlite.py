"""The embedded default: one SQLite database (WAL) shared by every worker on one machine.

Each worker opens the file and runs every statement on a thread of its own, so the event loop
never waits on the disk. Writes come in batches (one transaction per `state.sync_seconds`), so
a `kill -9` loses at most the batch a worker had not written yet; WAL keeps every committed one
across a crash. Changes other workers made are found by a sequence number that every write
advances (`seq`), so reading them back is a lookup, not a scan.

Tables: `usage` (key, model, minute, client, agent → counts, for the rolling window and the
reports; pruned after two days), `usage_day` (key or `@client`, day → dollars, for the week and
the month; pruned after 40 days), `client_minute` (`@client`, minute → dollars, for a client's
rolling window; pruned with `usage`), `clients` (the clients `opencode-gateway clients` manages,
name → JSON), `meta` (the write sequence, the schema, the reload count), `keys` (key → its state as JSON), `sessions` (conversation → key; pruned after the
session TTL), `reasoning` (id → text, until it expires; at most `max_reasoning` rows).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import sqlite3
import time
from pathlib import Path

import msgspec

from gateway.state.store import (ANONYMOUS, CLIENT_ID_PREFIX, DAYS_KEPT, MINUTES_KEPT, Batch,
                                 KeyState, Snapshot, StateStore, StoredClient, StoreError,
                                 UsageRow, WindowStarts, client_id)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('seq', 0), ('schema', 2), ('reloads', 0);
CREATE TABLE IF NOT EXISTS usage (
    key_id TEXT NOT NULL, model TEXT NOT NULL, minute INTEGER NOT NULL,
    client TEXT NOT NULL, agent TEXT NOT NULL,
    requests INTEGER NOT NULL, input_tokens INTEGER NOT NULL, cached_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL, cost_usd REAL NOT NULL,
    PRIMARY KEY (key_id, minute, model, client, agent)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS client_minute (
    client TEXT NOT NULL, minute INTEGER NOT NULL, cost_usd REAL NOT NULL,
    PRIMARY KEY (client, minute)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS clients (name TEXT PRIMARY KEY, record BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS usage_day (
    key_id TEXT NOT NULL, day INTEGER NOT NULL, cost_usd REAL NOT NULL,
    PRIMARY KEY (key_id, day)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS keys (key_id TEXT PRIMARY KEY, state BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    session TEXT PRIMARY KEY, key_id TEXT NOT NULL, assigned REAL NOT NULL, seq INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS sessions_seq ON sessions (seq);
CREATE TABLE IF NOT EXISTS reasoning (id TEXT PRIMARY KEY, text TEXT NOT NULL, expires REAL NOT NULL);
CREATE INDEX IF NOT EXISTS reasoning_expires ON reasoning (expires);
"""

# Schema 1 had no client and agent columns: its rows become the anonymous client's.
_MIGRATE_1 = """
BEGIN IMMEDIATE;
ALTER TABLE usage RENAME TO usage_1;
CREATE TABLE usage (
    key_id TEXT NOT NULL, model TEXT NOT NULL, minute INTEGER NOT NULL,
    client TEXT NOT NULL, agent TEXT NOT NULL,
    requests INTEGER NOT NULL, input_tokens INTEGER NOT NULL, cached_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL, cost_usd REAL NOT NULL,
    PRIMARY KEY (key_id, minute, model, client, agent)) WITHOUT ROWID;
INSERT INTO usage SELECT key_id, model, minute, 'anonymous', 'other', requests, input_tokens,
    cached_tokens, output_tokens, cost_usd FROM usage_1;
DROP TABLE usage_1;
UPDATE meta SET value = 2 WHERE name = 'schema';
COMMIT;
"""
_PRUNE_EVERY = 600.0
_decode_client = msgspec.json.Decoder(StoredClient).decode
_encode = msgspec.json.encode
_decode_state = msgspec.json.Decoder(KeyState).decode


class SQLiteStore(StateStore):
    name = "sqlite"

    def __init__(self, path: Path, settings):
        self.path = path
        self._session_ttl = settings.session_ttl_hours * 3600
        self._max_reasoning = settings.max_reasoning
        self._db: sqlite3.Connection | None = None
        # One thread per worker: sqlite3 connections are not shared between threads, and one
        # writer at a time is what SQLite wants anyway.
        self._thread = concurrent.futures.ThreadPoolExecutor(1, "opencode-gateway-sqlite")
        self._pruned = 0.0

    def __repr__(self) -> str:
        return f"sqlite:{self.path}"

    async def _run(self, function, *args):
        return await asyncio.get_running_loop().run_in_executor(self._thread, function, *args)

    # ---- open / close ----

    def open_sync(self) -> None:
        """Open (creating the file and its directory), or StoreError saying what to do."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the directory of the state database {self.path}: "
                             f"{exc.strerror}; set state.path to a writable place") from None
        try:
            db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None,
                                 check_same_thread=False)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the state database {self.path}: {exc}; set "
                             "state.path to a writable place") from None
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=10000")
            columns = [row[1] for row in db.execute("PRAGMA table_info(usage)")]
            if columns and "client" not in columns:
                db.executescript(_MIGRATE_1)
            db.executescript(_SCHEMA)
            if db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                raise sqlite3.DatabaseError("quick_check failed")
        except sqlite3.DatabaseError as exc:
            db.close()
            if "readonly" in str(exc) or "unable to open" in str(exc):
                raise StoreError(f"the state database {self.path} is not writable: {exc}; set "
                                 "state.path to a writable place") from None
            raise StoreError(f"the state database {self.path} is damaged ({exc}); it was left "
                             "as it is: move it away (the gateway then starts an empty ledger) "
                             "or restore it from a backup") from None
        self._db = db

    async def open(self) -> None:
        await self._run(self.open_sync)

    async def close(self) -> None:
        if self._db is not None:
            await self._run(self._db.close)
            self._db = None
        self._thread.shutdown(wait=False)

    # ---- writes ----

    def _record(self, batch: Batch) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            if batch.usage:
                db.executemany(
                    "INSERT INTO usage VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET "
                    "requests = requests + excluded.requests, "
                    "input_tokens = input_tokens + excluded.input_tokens, "
                    "cached_tokens = cached_tokens + excluded.cached_tokens, "
                    "output_tokens = output_tokens + excluded.output_tokens, "
                    "cost_usd = cost_usd + excluded.cost_usd",
                    [(r.key_id, r.model, r.minute, r.client, r.agent, r.requests, r.input_tokens,
                      r.cached_tokens, r.output_tokens, r.cost_usd) for r in batch.usage])
                db.executemany(
                    "INSERT INTO usage_day VALUES (?, ?, ?) ON CONFLICT DO UPDATE SET "
                    "cost_usd = cost_usd + excluded.cost_usd",
                    [(r.key_id, r.minute // 1440, r.cost_usd) for r in batch.usage]
                    + [(client_id(r.client), r.minute // 1440, r.cost_usd) for r in batch.usage
                       if r.client != ANONYMOUS])
                db.executemany(
                    "INSERT INTO client_minute VALUES (?, ?, ?) ON CONFLICT DO UPDATE SET "
                    "cost_usd = cost_usd + excluded.cost_usd",
                    [(client_id(r.client), r.minute, r.cost_usd) for r in batch.usage
                     if r.client != ANONYMOUS])
            for key_id, state in batch.keys.items():
                db.execute("INSERT OR REPLACE INTO keys VALUES (?, ?)", (key_id, _encode(state)))
            if batch.sessions:
                seq = db.execute("UPDATE meta SET value = value + 1 WHERE name = 'seq' "
                                 "RETURNING value").fetchone()[0]
                db.executemany("INSERT OR REPLACE INTO sessions VALUES (?, ?, ?, ?)",
                               [(session, key_id, assigned, seq)
                                for session, (key_id, assigned) in batch.sessions.items()])
            now = time.time()
            if now - self._pruned > _PRUNE_EVERY:
                self._pruned = now
                self._prune(db, now)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _prune(self, db: sqlite3.Connection, now: float) -> None:
        minute = int(now // 60)
        db.execute("DELETE FROM usage WHERE minute < ?", (minute - MINUTES_KEPT,))
        db.execute("DELETE FROM client_minute WHERE minute < ?", (minute - MINUTES_KEPT,))
        db.execute("DELETE FROM usage_day WHERE day < ?", (minute // 1440 - DAYS_KEPT,))
        db.execute("DELETE FROM sessions WHERE assigned < ?", (now - self._session_ttl,))
        db.execute("DELETE FROM reasoning WHERE expires < ?", (now,))

    async def record(self, batch: Batch) -> None:
        await self._run(self._record, batch)

    # ---- reads ----

    def _snapshot(self, starts: dict[str, WindowStarts], cursor) -> Snapshot:
        db = self._db
        spent = {}
        for key_id, start in starts.items():
            if key_id.startswith(CLIENT_ID_PREFIX):
                rolling = db.execute("SELECT COALESCE(SUM(cost_usd), 0) FROM client_minute "
                                     "WHERE client = ? AND minute >= ?",
                                     (key_id, start.rolling_minute)).fetchone()[0]
            else:
                rolling = db.execute("SELECT COALESCE(SUM(cost_usd), 0) FROM usage WHERE "
                                     "key_id = ? AND minute >= ?",
                                     (key_id, start.rolling_minute)).fetchone()[0]
            week, month = (db.execute("SELECT COALESCE(SUM(cost_usd), 0) FROM usage_day WHERE "
                                      "key_id = ? AND day >= ?", (key_id, day)).fetchone()[0]
                           for day in (start.week_day, start.month_day))
            spent[key_id] = (rolling, week, month)
        keys = {}
        for key_id, state in db.execute("SELECT key_id, state FROM keys"):
            try:
                keys[key_id] = _decode_state(state)
            except msgspec.DecodeError:
                continue  # a row this version cannot read: not worth failing every sync over
        since = cursor if isinstance(cursor, int) else -1
        if since < 0:
            rows = db.execute("SELECT session, key_id, seq, assigned FROM sessions WHERE "
                              "assigned >= ?", (time.time() - self._session_ttl,)).fetchall()
        else:
            rows = db.execute("SELECT session, key_id, seq, assigned FROM sessions WHERE seq > ?",
                              (since,)).fetchall()
        sessions = {session: key_id for session, key_id, _, _ in rows}
        seen = {session: assigned for session, _, _, assigned in rows}
        newest = max((seq for _, _, seq, _ in rows), default=since)
        clients = {}
        for name, record in db.execute("SELECT name, record FROM clients"):
            try:
                clients[name] = _decode_client(record)
            except msgspec.DecodeError:
                continue
        reloads = db.execute("SELECT value FROM meta WHERE name = 'reloads'").fetchone()[0]
        return Snapshot(spent, keys, sessions, max(newest, 0) if since < 0 else newest, seen,
                        clients=clients, reloads=reloads)

    async def snapshot(self, starts: dict[str, WindowStarts], cursor) -> Snapshot:
        return await self._run(self._snapshot, starts, cursor)

    def _report(self, since_minute: int) -> list[UsageRow]:
        return [UsageRow(*row) for row in self._db.execute(
            "SELECT key_id, model, minute, requests, input_tokens, cached_tokens, output_tokens, "
            "cost_usd, client, agent FROM usage WHERE minute >= ? ORDER BY minute",
            (since_minute,))]

    async def report(self, since_minute: int) -> list[UsageRow]:
        return await self._run(self._report, since_minute)

    # ---- clients and reloads ----

    def _put_client(self, client: StoredClient) -> None:
        self._db.execute("INSERT OR REPLACE INTO clients VALUES (?, ?)",
                         (client.name, _encode(client)))

    async def put_client(self, client: StoredClient) -> None:
        await self._run(self._put_client, client)

    def _request_reload(self) -> int:
        return self._db.execute("UPDATE meta SET value = value + 1 WHERE name = 'reloads' "
                                "RETURNING value").fetchone()[0]

    async def request_reload(self) -> int:
        return await self._run(self._request_reload)

    # ---- reasoning memory ----

    def _remember(self, items: dict[str, str], ttl: float) -> None:
        db = self._db
        expires = time.time() + ttl
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("INSERT OR REPLACE INTO reasoning VALUES (?, ?, ?)",
                           [(key, text, expires) for key, text in items.items()])
            count = db.execute("SELECT COUNT(*) FROM reasoning").fetchone()[0]
            if count > self._max_reasoning:
                db.execute("DELETE FROM reasoning WHERE id IN (SELECT id FROM reasoning "
                           "ORDER BY expires LIMIT ?)", (count - self._max_reasoning,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    async def remember(self, items: dict[str, str], ttl: float) -> None:
        await self._run(self._remember, items, ttl)

    def _recall(self, ids: list[str]) -> dict[str, str]:
        marks = ",".join("?" * len(ids))
        return dict(self._db.execute(
            f"SELECT id, text FROM reasoning WHERE id IN ({marks}) AND expires >= ?",
            (*ids, time.time())).fetchall())

    async def recall(self, ids: list[str]) -> dict[str, str]:
        if not ids:
            return {}
        return await self._run(self._recall, ids)
