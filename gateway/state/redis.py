"""Many machines: every worker of every gateway process shares one Redis (`state.backend: redis`).

Same semantics as the SQLite store. Each worker keeps one connection pool (made in `open`), with
one-second connect and read timeouts: a Redis that is down makes a sync fail within a second or
two, and the worker serves on its own view (`quota/book.py`) until it is back. A sync is two
round trips: `record` one MULTI/EXEC, `snapshot` one pipeline.

Keys (prefix `ocg:`; the URL's database number keeps gateways that must not share apart):

    ocg:u:KEY:MINUTE   hash, one usage bucket: `MODEL|CLIENT|AGENT|requests`, `…|input`,
                       `…|cached`, `…|output` (HINCRBY), `…|cost` (HINCRBYFLOAT); expires 2
                       days after its minute (fields of an older gateway, `MODEL|requests`,
                       read as the anonymous client's)
    ocg:m:KEY:MINUTE   string, the bucket's dollars over every model (INCRBYFLOAT): the rolling
                       5 hours is a sum of 300 of these, made inside Redis by a script that
                       answers three numbers per key (`_SUMS`); expires with the bucket
    ocg:d:KEY:DAY      string, the key's dollars that UTC day; expires 40 days after it ends
                       (`m:` and `d:` also hold each named client's, under `@NAME` for KEY)
    ocg:clients        hash, client name -> the StoredClient `opencode-gateway clients` wrote
    ocg:reloads        string, how many `opencode-gateway reload`s were asked for
    ocg:buckets        sorted set of `KEY:MINUTE`, score the minute: the index of the buckets,
                       trimmed to 2 days on every write; `report` reads the buckets it names
                       inside Redis and answers them as one JSON text (`_REPORT`)
    ocg:keys           hash, key id -> its KeyState as JSON
    ocg:sessions       stream of assignments and sightings {s: session, k: key id, t: when},
                       trimmed (MINID) to the session TTL; its entry ids are the snapshot cursor
    ocg:batch:ID       string, set by each write of usage, for 10 minutes: when a write failed
                       (a timeout), whether Redis ran it after all (see `record`)
    ocg:reasoning      hash, id -> reasoning text; with
    ocg:reasoning:expires  sorted set, id -> when it expires: expired and surplus ids (past
                       max_reasoning, the soonest to expire first) leave both on every write

Why a stream for the sessions: its ids are made by the server from its clock, so "everything
after the cursor" survives a Redis that restarted empty (a counter would start again below every
worker's cursor and hide new assignments until it caught up). Needs Redis 6.2 or later.
"""
from __future__ import annotations

import re
import time
import urllib.parse
import uuid

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from gateway.masking import mask_url
from gateway.state.store import (ANONYMOUS, DAYS_KEPT, MINUTES_KEPT, Batch, KeyState, Snapshot,
                                 StateStore, StoredClient, StoreError, UsageKey, UsageRow,
                                 WindowStarts, add_usage, client_id)

_PREFIX = "ocg:"
_BUCKETS = _PREFIX + "buckets"
_KEYS = _PREFIX + "keys"
_SESSIONS = _PREFIX + "sessions"
_REASONING = _PREFIX + "reasoning"
_REASONING_EXPIRES = _PREFIX + "reasoning:expires"
_CLIENTS = _PREFIX + "clients"
_RELOADS = _PREFIX + "reloads"
_TIMEOUT = 1.0
_PAGE = 10_000       # stream entries per read
_MARKER_SECONDS = 600  # how long a write's marker says it was applied
_COUNTS = (("requests", "requests"), ("input", "input_tokens"), ("cached", "cached_tokens"),
           ("output", "output_tokens"))
_FIELDS = dict(_COUNTS)
_encode = msgspec.json.encode
_decode_state = msgspec.json.Decoder(KeyState).decode
_decode_report = msgspec.json.Decoder(list[str | list[str]]).decode
_decode_client = msgspec.json.Decoder(StoredClient).decode

# Each key's dollars in its three windows, summed here so that three numbers per key cross the
# wire instead of some 340 (the per-minute and per-day totals). ARGV: the prefix, then per key:
# its id, first and last minute, week and month start days, first and last day.
# (The key names are made here, not passed: fine on one Redis, not on a Redis Cluster.)
_SUMS = """
local prefix, sums = ARGV[1], {}
for i = 2, #ARGV, 7 do
    local minutes, days = prefix .. 'm:' .. ARGV[i] .. ':', prefix .. 'd:' .. ARGV[i] .. ':'
    local week_day, month_day = tonumber(ARGV[i + 3]), tonumber(ARGV[i + 4])
    local rolling, week, month = 0, 0, 0
    for minute = tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2]) do
        local dollars = redis.call('GET', minutes .. minute)
        if dollars then rolling = rolling + tonumber(dollars) end
    end
    for day = tonumber(ARGV[i + 5]), tonumber(ARGV[i + 6]) do
        local dollars = redis.call('GET', days .. day)
        if dollars then
            if day >= week_day then week = week + tonumber(dollars) end
            if day >= month_day then month = month + tonumber(dollars) end
        end
    end
    for _, total in ipairs({rolling, week, month}) do
        sums[#sums + 1] = string.format('%.17g', total)
    end
end
return sums
"""

# Every usage bucket from a minute on, as one JSON text: [bucket, [field, value, ...], ...].
# A day of busy buckets is thousands of hashes: one text decodes far faster than a reply each.
_REPORT = """
local found = {}
for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], '+inf')) do
    local fields = redis.call('HGETALL', ARGV[2] .. member)
    if #fields > 0 then
        found[#found + 1] = member
        found[#found + 1] = fields
    end
end
if #found == 0 then return false end
return cjson.encode(found)
"""

# Store the texts, then drop the expired ids and those past the bound (soonest to expire
# first), and let both keys go when the last text does.
_REMEMBER = """
local texts, expiries = KEYS[1], KEYS[2]
local now, most, expires = ARGV[1], tonumber(ARGV[2]), ARGV[3]
for i = 4, #ARGV, 2 do
    redis.call('HSET', texts, ARGV[i], ARGV[i + 1])
    redis.call('ZADD', expiries, expires, ARGV[i])
end
local function drop(ids, step)
    for i = 1, #ids, 1000 * step do
        local chunk = {}
        for j = i, math.min(i + 1000 * step - 1, #ids), step do chunk[#chunk + 1] = ids[j] end
        redis.call('HDEL', texts, unpack(chunk))
        redis.call('ZREM', expiries, unpack(chunk))
    end
end
drop(redis.call('ZRANGEBYSCORE', expiries, '-inf', '(' .. now), 1)
local over = redis.call('ZCARD', expiries) - most
if over > 0 then drop(redis.call('ZPOPMIN', expiries, over), 2) end
local newest = redis.call('ZRANGE', expiries, -1, -1, 'WITHSCORES')[2]
if newest then
    local at = math.ceil(tonumber(newest))
    redis.call('EXPIREAT', texts, at)
    redis.call('EXPIREAT', expiries, at)
end
return 0
"""


def _bucket(key_id: str, minute: int) -> str:
    return f"{_PREFIX}u:{key_id}:{minute}"


def _minute_total(key_id: str, minute: int) -> str:
    return f"{_PREFIX}m:{key_id}:{minute}"


def _day_total(key_id: str, day: int) -> str:
    return f"{_PREFIX}d:{key_id}:{day}"


def _less(usage: list[UsageRow], owed: dict[UsageKey, UsageRow]) -> list[UsageRow]:
    """`usage` without what is `owed` (already in Redis), bucket by bucket."""
    if not owed:
        return usage
    left = []
    for row in usage:
        paid = owed.get(row.bucket)
        if paid is None:
            left.append(row)
            continue
        rest = UsageRow(row.key_id, row.model, row.minute,
                        max(row.requests - paid.requests, 0),
                        max(row.input_tokens - paid.input_tokens, 0),
                        max(row.cached_tokens - paid.cached_tokens, 0),
                        max(row.output_tokens - paid.output_tokens, 0),
                        max(row.cost_usd - paid.cost_usd, 0.0), row.client, row.agent)
        if rest.requests or rest.cost_usd > 1e-12:
            left.append(rest)
    return left


def _check_url(url: str) -> None:
    """What redis-py would accept silently but is surely a typo: a database that is no number."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme in ("redis", "rediss"):
        parts.port  # noqa: B018 (raises ValueError for a port that is no number)
        database = parts.path.strip("/")
        if database and not database.isdigit():
            raise ValueError(f"the database {database!r} is not a number")


class RedisStore(StateStore):
    name = "redis"

    def __init__(self, settings):
        self.url = settings.url
        self._session_ttl = settings.session_ttl_hours * 3600
        self._max_reasoning = settings.max_reasoning
        self._redis: aioredis.Redis | None = None
        self._remember = None
        # A write that failed may still have been applied (a Redis that stalled past the read
        # timeout runs it when it wakes), and the book sends its usage again with the next
        # batch: `_unsure` is that write (its marker, its usage), `_owed` the usage known to be
        # in Redis that the book will send again.
        self._unsure: tuple[str, list[UsageRow]] | None = None
        self._owed: dict[UsageKey, UsageRow] = {}

    def __repr__(self) -> str:
        return mask_url(self.url)

    # ---- open / close ----

    async def open(self) -> None:
        """Make this worker's pool and check that Redis answers. A bad URL is a StoreError; an
        unreachable Redis is a ConnectionError (an OSError), and the pool stays: every call
        after it works as soon as Redis is back."""
        if self._redis is None:
            try:
                _check_url(self.url)
                pool = aioredis.ConnectionPool.from_url(
                    self.url, decode_responses=True, socket_connect_timeout=_TIMEOUT,
                    socket_timeout=_TIMEOUT, client_name="opencode-gateway",
                    # Once, at once, on a fresh connection: a pooled one dies with a restarted
                    # Redis. Never after a timeout, which may have hidden an applied write.
                    retry=Retry(NoBackoff(), 1, (RedisConnectionError,)))
            except ValueError as exc:
                raise StoreError(f"state.url {mask_url(self.url)!r} is not a Redis URL "
                                 f"({exc}); write it as redis://[:PASSWORD@]HOST:6379/0") from None
            self._redis = aioredis.Redis.from_pool(pool)
            self._remember = self._redis.register_script(_REMEMBER)
        try:
            info = await self._redis.info("server")
        except RedisError as exc:
            raise ConnectionError(f"cannot reach Redis at {self!r}: {exc}") from exc
        version = tuple(int(part) for part in re.findall(r"\d+", info.get("redis_version", "")))
        if version[:2] < (6, 2):
            raise StoreError(f"Redis at {self!r} is version {info.get('redis_version')}; the "
                             "state store needs 6.2 or later")

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    @property
    def _client(self) -> aioredis.Redis:
        if self._redis is None:
            raise ConnectionError(f"the Redis state store {self!r} is not open")
        return self._redis

    # ---- writes ----

    async def record(self, batch: Batch) -> None:
        """One MULTI/EXEC. The book gives a batch that failed back with the next one (its usage
        merged in), so usage that a failed write put in Redis after all is left out then."""
        client = self._client
        if self._unsure is not None:
            marker, usage = self._unsure
            if await client.exists(marker):
                for row in usage:
                    add_usage(self._owed, row)
            self._unsure = None
        usage = _less(batch.usage, self._owed)
        marker = f"{_PREFIX}batch:{uuid.uuid4().hex}"
        try:
            await self._write(client, batch, usage, marker)
        except BaseException:
            if usage:
                # Copies: the book merges later usage into the rows it gets back, and only what
                # this write carried may be counted as owed if the write turns out applied.
                self._unsure = (marker, [msgspec.structs.replace(row) for row in usage])
            raise
        self._owed = {}

    async def _write(self, client: aioredis.Redis, batch: Batch, usage: list[UsageRow],
                     marker: str) -> None:
        now = time.time()
        now_minute = int(now // 60)
        pipe = client.pipeline(transaction=True)
        if usage:
            pipe.set(marker, 1, ex=_MARKER_SECONDS)
        minutes: dict[tuple[str, int], float] = {}
        days: dict[tuple[str, int], float] = {}
        for row in usage:
            bucket = _bucket(row.key_id, row.minute)
            who = f"{row.model}|{row.client}|{row.agent}"
            for field, attribute in _COUNTS:
                count = getattr(row, attribute)
                if count:
                    pipe.hincrby(bucket, f"{who}|{field}", count)
            pipe.hincrbyfloat(bucket, f"{who}|cost", row.cost_usd)
            pipe.expireat(bucket, (row.minute + MINUTES_KEPT) * 60)
            pipe.zadd(_BUCKETS, {f"{row.key_id}:{row.minute}": row.minute})
            spenders = (row.key_id, client_id(row.client)) if row.client != ANONYMOUS \
                else (row.key_id,)
            for spender in spenders:
                minute = (spender, row.minute)
                minutes[minute] = minutes.get(minute, 0.0) + row.cost_usd
                day = (spender, row.minute // 1440)
                days[day] = days.get(day, 0.0) + row.cost_usd
        for (key_id, minute), dollars in minutes.items():
            pipe.incrbyfloat(_minute_total(key_id, minute), dollars)
            pipe.expireat(_minute_total(key_id, minute), (minute + MINUTES_KEPT) * 60)
        for (key_id, day), dollars in days.items():
            pipe.incrbyfloat(_day_total(key_id, day), dollars)
            pipe.expireat(_day_total(key_id, day), (day + 1 + DAYS_KEPT) * 86400)
        if usage:
            pipe.zremrangebyscore(_BUCKETS, "-inf", f"({now_minute - MINUTES_KEPT}")
        if batch.keys:
            pipe.hset(_KEYS, mapping={key_id: _encode(state)
                                      for key_id, state in batch.keys.items()})
        oldest = now - self._session_ttl
        fresh = [(session, key_id, assigned)
                 for session, (key_id, assigned) in batch.sessions.items() if assigned >= oldest]
        for session, key_id, assigned in fresh:
            pipe.xadd(_SESSIONS, {"s": session, "k": key_id, "t": repr(assigned)})
        if fresh:
            pipe.xtrim(_SESSIONS, minid=int(oldest * 1000), approximate=True)
        if len(pipe):
            await pipe.execute()

    # ---- reads ----

    async def snapshot(self, starts: dict[str, WindowStarts], cursor) -> Snapshot:
        now = time.time()
        now_minute = int(now // 60)
        today = now_minute // 1440
        sums = [_PREFIX]
        for key_id, start in starts.items():
            # A few minutes and a day past now: another machine's clock may run ahead.
            sums += (key_id, max(start.rolling_minute, now_minute - MINUTES_KEPT),
                     now_minute + 5, start.week_day, start.month_day,
                     max(min(start.week_day, start.month_day), today - DAYS_KEPT), today + 1)
        pipe = self._client.pipeline(transaction=False)
        pipe.eval(_SUMS, 0, *sums)
        pipe.hgetall(_KEYS)
        since = cursor if isinstance(cursor, str) else None
        pipe.xrange(_SESSIONS, f"({since}" if since else "-", "+", count=_PAGE)
        pipe.hgetall(_CLIENTS)
        pipe.get(_RELOADS)
        answers = await pipe.execute()
        figures = iter(float(value) for value in answers[0])
        spent = {key_id: (next(figures), next(figures), next(figures)) for key_id in starts}
        keys = {}
        for key_id, state in answers[1].items():
            try:
                keys[key_id] = _decode_state(state)
            except msgspec.DecodeError:
                continue  # written by something else: not ours to break every sync over
        page = entries = answers[2]
        while len(page) == _PAGE:  # a worker far behind (or new): the rest, page by page
            page = await self._client.xrange(_SESSIONS, f"({page[-1][0]}", "+", count=_PAGE)
            entries = entries + page
        oldest = now - self._session_ttl
        sessions, seen = {}, {}
        for _, fields in entries:
            try:
                at = float(fields["t"])
                if at >= oldest:
                    sessions[fields["s"]] = fields["k"]
                    seen[fields["s"]] = at
            except (KeyError, ValueError):
                continue
        new_cursor = entries[-1][0] if entries else (since or "0-0")
        clients = {}
        for name, record in answers[3].items():
            try:
                clients[name] = _decode_client(record)
            except msgspec.DecodeError:
                continue
        return Snapshot(spent, keys, sessions, new_cursor, seen, clients=clients,
                        reloads=int(answers[4] or 0))

    async def put_client(self, client: StoredClient) -> None:
        await self._client.hset(_CLIENTS, client.name, _encode(client))

    async def request_reload(self) -> int:
        return await self._client.incr(_RELOADS)

    async def report(self, since_minute: int) -> list[UsageRow]:
        found = await self._client.eval(_REPORT, 1, _BUCKETS, since_minute, _PREFIX + "u:")
        held = _decode_report(found) if found else []
        rows = []
        for member, fields in zip(held[::2], held[1::2]):
            key_id, _, minute = member.rpartition(":")
            by_who: dict[tuple[str, str, str], UsageRow] = {}
            for field, value in zip(fields[::2], fields[1::2]):
                parts = field.rsplit("|", 3)
                if len(parts) == 4:
                    model, client, agent, name = parts
                else:  # written before clients and agents
                    (model, name), client, agent = field.rsplit("|", 1), ANONYMOUS, "other"
                who = (model, client, agent)
                row = by_who.get(who)
                if row is None:
                    row = by_who[who] = UsageRow(key_id, model, int(minute), client=client,
                                                 agent=agent)
                if name == "cost":
                    row.cost_usd = float(value)
                elif name in _FIELDS:
                    setattr(row, _FIELDS[name], int(value))
            rows.extend(by_who.values())
        return rows

    # ---- reasoning memory ----

    async def remember(self, items: dict[str, str], ttl: float) -> None:
        if not items:
            return
        now = time.time()
        args = [repr(now), self._max_reasoning, repr(now + ttl)]
        for key, text in items.items():
            args += (key, text)
        await self._remember(keys=[_REASONING, _REASONING_EXPIRES], args=args,
                             client=self._client)

    async def recall(self, ids: list[str]) -> dict[str, str]:
        if not ids:
            return {}
        pipe = self._client.pipeline(transaction=False)
        pipe.hmget(_REASONING, ids)
        pipe.zmscore(_REASONING_EXPIRES, ids)
        texts, expiries = await pipe.execute()
        now = time.time()
        return {key: text for key, text, expires in zip(ids, texts, expiries)
                if text is not None and expires is not None and expires >= now}
