"""The Redis state store on a real redis-server: the contract of tests/test_state_store.py (the
same scenarios, run here against Redis), and what only a shared store must do — two workers see
each other's usage, key states and sessions; a stopped or frozen Redis fails a sync within about
a second, and the same store object works again once Redis is back."""
import asyncio
import os
import signal
import time

import pytest

from gateway.config import State
from gateway.state.redis import RedisStore
from gateway.state.store import Batch, KeyState, StoreError, UsageRow, make_store
from tests.fake_upstream_client import free_port
from tests.redis_server import RedisServer, redis_binary, redis_server, redis_url  # noqa: F401
# The contract: collected here too, where `store` is a RedisStore.
from tests.test_state_store import (NOW_MINUTE, starts,  # noqa: F401
                                    test_clients_spend_agents_and_stored_clients,
                                    test_a_window_holds_its_first_minute_and_day_and_nothing_before,
                                    test_key_states_are_shared_whole,
                                    test_old_sessions_are_forgotten,
                                    test_reasoning_is_recalled_until_it_expires,
                                    test_sessions_come_back_with_when_they_were_last_seen,
                                    test_sessions_come_back_once_then_only_new_ones,
                                    test_usage_adds_up_per_window)


def redis_store(url: str, **settings) -> RedisStore:
    return RedisStore(State(backend="redis", url=url, **settings))


@pytest.fixture
async def store(redis_url):
    made = redis_store(redis_url)
    await made.open()
    yield made
    await made.close()


@pytest.fixture
async def two_workers(redis_url):
    workers = [redis_store(redis_url), redis_store(redis_url)]
    for worker in workers:
        await worker.open()
    yield workers
    for worker in workers:
        await worker.close()


async def test_the_config_picks_redis(redis_url):
    assert isinstance(make_store(State(backend="redis", url=redis_url)), RedisStore)


async def test_reasoning_memory_is_bounded(redis_url):
    made = redis_store(redis_url, max_reasoning=3)
    await made.open()
    for n in range(5):
        await made.remember({f"id{n}": str(n)}, ttl=60 + n)
    assert set(await made.recall([f"id{n}" for n in range(5)])) == {"id2", "id3", "id4"}
    await made.close()


async def test_report_gives_every_bucket_per_key_model_and_minute(store):
    await store.record(Batch(usage=[
        UsageRow("k1", "glm-5.1", NOW_MINUTE - 3, 2, 30, 5, 7, 0.25),
        UsageRow("k1", "kimi-k3", NOW_MINUTE - 3, 1, 10, 0, 2, 0.5),
        UsageRow("k2", "glm-5.1", NOW_MINUTE, 1, 1, 0, 1, 0.125),
        UsageRow("k2", "glm-5.1", NOW_MINUTE - 100, 1, 1, 0, 1, 4.0)]))
    rows = await store.report(NOW_MINUTE - 10)
    assert sorted(rows, key=lambda r: (r.minute, r.key_id, r.model)) == [
        UsageRow("k1", "glm-5.1", NOW_MINUTE - 3, 2, 30, 5, 7, 0.25),
        UsageRow("k1", "kimi-k3", NOW_MINUTE - 3, 1, 10, 0, 2, 0.5),
        UsageRow("k2", "glm-5.1", NOW_MINUTE, 1, 1, 0, 1, 0.125)]
    assert [r.minute for r in rows] == sorted(r.minute for r in rows)


async def test_two_workers_see_each_others_usage_key_states_and_sessions(two_workers):
    a, b = two_workers
    now = time.time()
    rest = KeyState(limit_until=now + 14160, limit_name="5 hour")
    a_first = await a.snapshot(starts(), None)
    await a.record(Batch(usage=[UsageRow("k1", "glm-5.1", NOW_MINUTE, 1, 10, 0, 5, 0.5)],
                         keys={"k1": rest}, sessions={"conversation": ("k1", now)}))
    seen = await b.snapshot(starts(), None)
    assert seen.spent["k1"] == pytest.approx((0.5, 0.5, 0.5))
    assert seen.keys == {"k1": rest}
    assert seen.sessions == {"conversation": "k1"}
    await b.record(Batch(usage=[UsageRow("k1", "glm-5.1", NOW_MINUTE, 1, 10, 0, 5, 0.25)],
                         sessions={"another": ("k2", now)}))
    back = await a.snapshot(starts(), a_first.cursor)
    assert back.spent["k1"] == pytest.approx((0.75, 0.75, 0.75))
    assert back.sessions == {"conversation": "k1", "another": "k2"}
    assert (await a.snapshot(starts(), back.cursor)).sessions == {}


async def test_workers_writing_at_once_lose_nothing(two_workers):
    async def write(worker, count):
        for _ in range(count):
            await worker.record(Batch(usage=[UsageRow("k1", "m", NOW_MINUTE, 1, 3, 0, 1, 0.001)]))
    await asyncio.gather(*(write(worker, 50) for worker in two_workers for _ in range(3)))
    [row] = await two_workers[0].report(NOW_MINUTE)
    assert (row.requests, row.input_tokens) == (300, 900)
    assert row.cost_usd == pytest.approx(0.3)
    assert (await two_workers[1].snapshot(starts(), None)).spent["k1"] == pytest.approx(
        (0.3, 0.3, 0.3))


async def test_sessions_after_a_redis_that_restarted_empty_are_not_missed(redis_server,
                                                                          redis_url):
    store = redis_store(redis_url)
    await store.open()
    await store.record(Batch(sessions={"before": ("k1", time.time())}))
    cursor = (await store.snapshot(starts(), None)).cursor
    redis_server.stop()
    redis_server.start()
    await store.record(Batch(sessions={"after": ("k2", time.time())}))
    assert (await store.snapshot(starts(), cursor)).sessions == {"after": "k2"}
    await store.close()


async def _fails_within(seconds: float, call) -> Exception:
    started = time.monotonic()
    with pytest.raises(Exception) as caught:
        await call()
    assert time.monotonic() - started < seconds
    return caught.value


async def test_a_stopped_redis_fails_fast_and_the_same_store_works_once_it_is_back(
        redis_server, redis_url):
    store = redis_store(redis_url)
    await store.open()
    await store.record(Batch(usage=[UsageRow("k1", "m", NOW_MINUTE, 1, 0, 0, 0, 0.5)]))
    redis_server.stop()
    batch = Batch(usage=[UsageRow("k1", "m", NOW_MINUTE, 1, 0, 0, 0, 0.25)])
    await _fails_within(2.0, lambda: store.record(batch))
    await _fails_within(2.0, lambda: store.snapshot(starts(), None))
    redis_server.start()  # empty: nothing was saved
    await store.record(batch)  # the batch the book re-queued
    assert (await store.snapshot(starts(), None)).spent["k1"] == pytest.approx((0.25,) * 3)
    await store.close()


async def test_a_frozen_redis_fails_a_sync_within_the_read_timeout(redis_server, redis_url):
    store = redis_store(redis_url)
    await store.open()
    await store.snapshot(starts(), None)  # a pooled connection, as a running worker has
    os.kill(redis_server.process.pid, signal.SIGSTOP)  # accepts, never answers
    try:
        await _fails_within(2.5, lambda: store.record(Batch(keys={"k1": KeyState()})))
        await _fails_within(2.5, lambda: store.snapshot(starts(), None))
    finally:
        os.kill(redis_server.process.pid, signal.SIGCONT)
    await store.record(Batch(keys={"k1": KeyState(resting_until=1.0)}))
    assert (await store.snapshot(starts(), None)).keys == {"k1": KeyState(resting_until=1.0)}
    await store.close()


async def test_a_write_a_stalled_redis_ran_late_is_not_counted_twice(redis_server, redis_url):
    store = redis_store(redis_url)
    await store.open()
    await store.snapshot(starts(), None)
    os.kill(redis_server.process.pid, signal.SIGSTOP)
    try:
        with pytest.raises(Exception):  # times out; Redis runs it when it wakes
            await store.record(Batch(usage=[UsageRow("k1", "m", NOW_MINUTE, 1, 10, 0, 1, 0.5)]))
        with pytest.raises(Exception):  # the book's next try, the first batch merged in
            await store.record(Batch(usage=[UsageRow("k1", "m", NOW_MINUTE, 2, 20, 0, 2, 1.5)]))
    finally:
        os.kill(redis_server.process.pid, signal.SIGCONT)
    await store.record(Batch(usage=[UsageRow("k1", "m", NOW_MINUTE, 3, 30, 0, 3, 1.75),
                                    UsageRow("k2", "m", NOW_MINUTE, 1, 10, 0, 1, 0.125)]))
    assert [(r.key_id, r.requests, r.input_tokens, r.cost_usd)
            for r in sorted(await store.report(NOW_MINUTE), key=lambda r: r.key_id)] == [
        ("k1", 3, 30, pytest.approx(1.75)), ("k2", 1, 10, pytest.approx(0.125))]
    assert (await store.snapshot(starts(), None)).spent["k1"] == pytest.approx((1.75,) * 3)
    await store.record(Batch(usage=[UsageRow("k1", "m", NOW_MINUTE, 1, 10, 0, 1, 0.25)]))
    assert (await store.snapshot(starts(), None)).spent["k1"] == pytest.approx((2.0,) * 3)
    await store.close()


async def test_usage_merged_into_a_stalled_batch_still_arrives(redis_server, redis_url):
    """The book gives a batch the store did not take back merged with what came since (the same
    row objects, added to): when the stalled write turns out to have been applied, only what it
    carried is left out of the next one, and the spending after it still arrives."""
    store = redis_store(redis_url)
    await store.open()
    await store.snapshot(starts(), None)
    row = UsageRow("k1", "m", NOW_MINUTE, 5, 50, 0, 5, 1.0)
    os.kill(redis_server.process.pid, signal.SIGSTOP)
    try:
        with pytest.raises(Exception):  # times out; Redis runs it when it wakes
            await store.record(Batch(usage=[row]))
    finally:
        os.kill(redis_server.process.pid, signal.SIGCONT)
    row.requests += 1  # one more request in the same minute, merged by the book
    row.cost_usd += 0.25
    await store.record(Batch(usage=[row]))
    assert (await store.snapshot(starts(), None)).spent["k1"] == pytest.approx((1.25,) * 3)
    assert [r.requests for r in await store.report(NOW_MINUTE)] == [6]
    await store.close()


async def test_an_unreachable_redis_at_open_is_an_oserror_and_the_store_works_later():
    server = RedisServer(redis_binary())
    store = redis_store(server.url)
    with pytest.raises(OSError) as caught:
        await store.open()
    assert isinstance(caught.value, ConnectionError) and str(server.port) in str(caught.value)
    server.start()
    try:
        await store.record(Batch(keys={"k1": KeyState(limit_name="weekly")}))
        assert (await store.snapshot(starts(), None)).keys["k1"].limit_name == "weekly"
        await store.close()
    finally:
        server.close()


@pytest.mark.parametrize("url", ["127.0.0.1:6379", "http://127.0.0.1:6379/0",
                                 "redis://127.0.0.1:port/0", "redis://127.0.0.1:6379/db"])
async def test_a_malformed_url_is_a_store_error(url):
    with pytest.raises(StoreError) as caught:
        await redis_store(url).open()
    assert "state.url" in str(caught.value)


def test_the_password_never_shows():
    for url in ("redis://:s3cret@10.0.0.5:6379/0", "redis://app:s3cret@10.0.0.5:6379/0",
                "rediss://default:s3cret@cache.example:6380/2"):
        shown = repr(redis_store(url))
        assert "s3cret" not in shown and "***" in shown, shown
        assert shown.startswith(url.partition(":")[0] + "://") and url.endswith(
            shown.rpartition("@")[2]), shown
    assert repr(redis_store("redis://127.0.0.1:%d/0" % free_port())).startswith("redis://127")


async def test_usage_buckets_expire_after_about_two_days_and_day_totals_after_forty(store):
    """Redis keeps the minute buckets as long as a week's sums need them from the store (the
    day totals take over), never forever: a key's spending cannot fill Redis."""
    minute = int(time.time() // 60)
    await store.record(Batch([UsageRow("k", "glm-5.1", minute, cost_usd=1.0)], {}, {}))
    client = store._redis
    two_days = 2 * 86400
    for name in (f"ocg:u:k:{minute}", f"ocg:m:k:{minute}"):
        assert two_days - 120 <= await client.ttl(name) <= two_days
    day = minute // 1440
    day_ttl = await client.ttl(f"ocg:d:k:{day}")
    assert 40 * 86400 < day_ttl <= 41 * 86400


async def test_buckets_written_before_clients_read_as_the_anonymous_clients(store):
    """A gateway of the version before clients wrote `MODEL|field`; this one reads them."""
    await store._client.hset(f"ocg:u:k1:{NOW_MINUTE}",
                             mapping={"glm-5.1|requests": 2, "glm-5.1|cost": "0.5"})
    await store._client.zadd("ocg:buckets", {f"k1:{NOW_MINUTE}": NOW_MINUTE})
    [row] = await store.report(NOW_MINUTE - 1)
    assert (row.model, row.requests, row.cost_usd, row.client, row.agent) == \
        ("glm-5.1", 2, 0.5, "anonymous", "other")
