"""The state stores (memory, SQLite): the ledger, key states, sessions and the reasoning memory
behave the same behind one interface; SQLite keeps them across restarts and processes, and
refuses a damaged or unwritable database with a message that says what to do."""
import multiprocessing
from pathlib import Path
import os
import time

import pytest

from gateway.config import State
from gateway.state.memory import MemoryStore
from gateway.state.sqlite import SQLiteStore
from gateway.state.store import (Batch, KeyState, StoredClient, StoreError, UpstreamUsage,
                                 UsageRow, WindowStarts, default_sqlite_path, make_store)

NOW_MINUTE = int(time.time() // 60)
DAY = NOW_MINUTE // 1440


@pytest.fixture(params=["memory", "sqlite"])
async def store(request, tmp_path):
    if request.param == "memory":
        made = MemoryStore(State())
    else:
        made = SQLiteStore(tmp_path / "state.sqlite3", State())
    await made.open()
    yield made
    await made.close()


def starts(rolling=NOW_MINUTE - 299, week=DAY - 3, month=DAY - 10):
    return {"k1": WindowStarts(rolling, week, month), "k2": WindowStarts(rolling, week, month)}


async def test_usage_adds_up_per_window(store):
    await store.record(Batch(usage=[
        UsageRow("k1", "glm-5.1", NOW_MINUTE, 1, 100, 20, 10, 0.5),
        UsageRow("k1", "glm-5.1", NOW_MINUTE, 1, 100, 5, 10, 0.25),      # same bucket: adds
        UsageRow("k1", "kimi-k3", NOW_MINUTE - 400, 1, 10, 0, 1, 1.0),    # outside 5 hours
        UsageRow("k1", "kimi-k3", (DAY - 5) * 1440, 1, 10, 0, 1, 2.0),   # before this week
        UsageRow("k2", "glm-5.1", NOW_MINUTE - 1, 2, 1, 0, 1, 0.125)]))
    snapshot = await store.snapshot(starts(), None)
    assert snapshot.spent["k1"] == pytest.approx((0.75, 1.75, 3.75))
    assert snapshot.spent["k2"] == pytest.approx((0.125, 0.125, 0.125))
    rows = {(r.key_id, r.model, r.minute): r for r in await store.report(NOW_MINUTE - 10)}
    merged = rows[("k1", "glm-5.1", NOW_MINUTE)]
    assert (merged.requests, merged.input_tokens, merged.cached_tokens, merged.output_tokens,
            merged.cost_usd) == (2, 200, 25, 20, 0.75)


async def test_a_window_holds_its_first_minute_and_day_and_nothing_before(store):
    """The window starts the book asks with are inclusive: spending in the first minute of
    the rolling window and on the first day of the week or month counts, a minute or a day
    earlier does not."""
    today = DAY * 1440
    await store.record(Batch(usage=[
        UsageRow("k1", "glm-5.1", NOW_MINUTE - 299, 1, 1, 0, 1, 0.5),
        UsageRow("k1", "glm-5.1", NOW_MINUTE - 300, 1, 1, 0, 1, 0.25),
        UsageRow("k1", "glm-5.1", today - 1440, 1, 1, 0, 1, 2.0),       # yesterday
        UsageRow("k1", "glm-5.1", today - 2 * 1440, 1, 1, 0, 1, 4.0)]))  # the day before
    spent = (await store.snapshot({"k1": WindowStarts(NOW_MINUTE - 299, DAY - 1, DAY - 2)},
                                  None)).spent["k1"]
    assert spent == pytest.approx((0.5, 0.75 + 2.0, 0.75 + 2.0 + 4.0))
    assert [row.cost_usd for row in await store.report(NOW_MINUTE - 299)] == [0.5]


async def test_key_states_are_shared_whole(store):
    state = KeyState(limit_until=time.time() + 3600, limit_name="5 hour",
                     upstream={"weekly": UpstreamUsage(42.0, time.time() + 9000, 1.0, 0.3)})
    await store.record(Batch(keys={"k1": state}))
    snapshot = await store.snapshot(starts(), None)
    assert snapshot.keys["k1"] == state


async def test_sessions_come_back_once_then_only_new_ones(store):
    now = time.time()
    await store.record(Batch(sessions={"s1": ("k1", now), "s2": ("k2", now)}))
    first = await store.snapshot(starts(), None)
    assert first.sessions == {"s1": "k1", "s2": "k2"}
    assert (await store.snapshot(starts(), first.cursor)).sessions == {}
    await store.record(Batch(sessions={"s1": ("k2", now)}))
    assert (await store.snapshot(starts(), first.cursor)).sessions == {"s1": "k2"}


async def test_sessions_come_back_with_when_they_were_last_seen(store):
    """A conversation's idle time (is its prompt cache still warm?) is read on other workers
    from the time its last turn was written with, not from when they read it."""
    then = time.time() - 42.5
    await store.record(Batch(sessions={"s1": ("k1", then)}))
    first = await store.snapshot(starts(), None)
    assert first.seen == {"s1": pytest.approx(then)}
    later = then + 30.25
    await store.record(Batch(sessions={"s1": ("k1", later)}))
    again = await store.snapshot(starts(), first.cursor)
    assert (again.sessions, again.seen) == ({"s1": "k1"}, {"s1": pytest.approx(later)})


async def test_old_sessions_are_forgotten(store):
    await store.record(Batch(sessions={"old": ("k1", time.time() - 7 * 3600)}))
    assert (await store.snapshot(starts(), None)).sessions == {}


async def test_reasoning_is_recalled_until_it_expires(store):
    await store.remember({"call_1": "I should list the files.", "call_2": "x"}, ttl=60)
    await store.remember({"gone": "y"}, ttl=-1)
    assert await store.recall(["call_1", "gone", "nope"]) == {"call_1": "I should list the files."}
    assert await store.recall([]) == {}


async def test_reasoning_memory_is_bounded(tmp_path):
    for made in (MemoryStore(State(max_reasoning=3)),
                 SQLiteStore(tmp_path / "bounded.sqlite3", State(max_reasoning=3))):
        await made.open()
        for n in range(5):
            await made.remember({f"id{n}": str(n)}, ttl=60 + n)
        assert set(await made.recall([f"id{n}" for n in range(5)])) == {"id2", "id3", "id4"}
        await made.close()


async def test_sqlite_keeps_everything_across_a_restart(tmp_path):
    path = tmp_path / "state.sqlite3"
    first = SQLiteStore(path, State())
    await first.open()
    await first.record(Batch(usage=[UsageRow("k1", "glm-5.1", NOW_MINUTE, 1, 1, 0, 1, 0.01)],
                             sessions={"s": ("k1", time.time())}))
    await first.close()
    second = SQLiteStore(path, State())
    await second.open()
    snapshot = await second.snapshot(starts(), None)
    await second.close()
    assert snapshot.spent["k1"][0] == pytest.approx(0.01)
    assert snapshot.sessions == {"s": "k1"}


def _write_from_another_process(path: str, count: int) -> None:
    import asyncio

    async def write():
        store = SQLiteStore(Path(path), State())
        await store.open()
        for _ in range(count):
            await store.record(Batch(usage=[UsageRow("k1", "m", int(time.time() // 60), 1, 0, 0,
                                                     0, 0.001)]))
        await store.close()
    asyncio.run(write())


async def test_sqlite_is_shared_by_processes_writing_at_once(tmp_path):
    path = str(tmp_path / "shared.sqlite3")
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_write_from_another_process, args=(path, 50))
               for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    store = SQLiteStore(tmp_path / "shared.sqlite3", State())
    await store.open()
    rows = await store.report(NOW_MINUTE - 5)
    await store.close()
    assert sum(row.requests for row in rows) == 150
    assert sum(row.cost_usd for row in rows) == pytest.approx(0.15)


async def test_a_damaged_database_is_reported_not_replaced(tmp_path):
    path = tmp_path / "state.sqlite3"
    path.write_bytes(b"this is not a database, it is a shopping list" * 100)
    store = SQLiteStore(path, State())
    with pytest.raises(StoreError) as caught:
        await store.open()
    assert "damaged" in str(caught.value) and str(path) in str(caught.value)
    assert path.read_bytes().startswith(b"this is not a database")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
async def test_an_unwritable_place_is_reported(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    store = SQLiteStore(locked / "sub" / "state.sqlite3", State())
    with pytest.raises(StoreError) as caught:
        await store.open()
    assert "state.path" in str(caught.value)


async def test_a_path_under_a_file_is_reported(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    store = SQLiteStore(blocker / "state.sqlite3", State())
    with pytest.raises(StoreError) as caught:
        await store.open()
    assert "state.path" in str(caught.value)


def test_the_config_picks_the_store_and_sqlite_finds_its_file_per_user(monkeypatch, tmp_path):
    memory = make_store(State(backend="memory"))
    assert isinstance(memory, MemoryStore) and repr(memory) == "memory"
    monkeypatch.setenv("HOME", str(tmp_path))
    chosen = make_store(State(backend="sqlite", path="~/ledger.sqlite3"), {})
    assert isinstance(chosen, SQLiteStore) and chosen.path == tmp_path / "ledger.sqlite3"
    assert make_store(State(backend="sqlite"), {"XDG_STATE_HOME": "/x"}).path == \
        Path("/x/opencode-gateway/state.sqlite3")
    # systemd's StateDirectory= (the first of several), then XDG, then ~/.local/state
    assert default_sqlite_path({"STATE_DIRECTORY": "/var/lib/a:/var/lib/b"}) == \
        Path("/var/lib/a/state.sqlite3")
    assert default_sqlite_path({"XDG_STATE_HOME": "/x"}) == \
        Path("/x/opencode-gateway/state.sqlite3")
    assert default_sqlite_path({}) == tmp_path / ".local/state/opencode-gateway/state.sqlite3"
    monkeypatch.setenv("XDG_STATE_HOME", "/from-the-environment")
    assert default_sqlite_path() == Path("/from-the-environment/opencode-gateway/state.sqlite3")


async def test_clients_spend_agents_and_stored_clients(store):
    await store.record(Batch(usage=[
        UsageRow("k1", "glm-5.1", NOW_MINUTE, 1, 10, 0, 1, 0.5, "alice", "opencode"),
        UsageRow("k2", "glm-5.1", NOW_MINUTE, 1, 10, 0, 1, 0.25, "alice", "codex"),
        UsageRow("k1", "glm-5.1", NOW_MINUTE - 400, 1, 10, 0, 1, 1.0, "alice", "codex"),
        UsageRow("k1", "glm-5.1", NOW_MINUTE, 1, 10, 0, 1, 2.0, "bob", "opencode"),
        UsageRow("k1", "glm-5.1", NOW_MINUTE, 1, 10, 0, 1, 4.0)]))
    week = WindowStarts(NOW_MINUTE - 299, DAY - 3, DAY - 10)
    snapshot = await store.snapshot({"k1": week, "@alice": week}, None)
    assert snapshot.spent["@alice"] == pytest.approx((0.75, 1.75, 1.75))
    assert snapshot.spent["k1"] == pytest.approx((6.5, 7.5, 7.5))
    rows = await store.report(NOW_MINUTE - 10)
    who = sorted((r.key_id, r.client, r.agent, r.cost_usd) for r in rows)
    assert who == [("k1", "alice", "opencode", 0.5), ("k1", "anonymous", "other", 4.0),
                   ("k1", "bob", "opencode", 2.0), ("k2", "alice", "codex", 0.25)]
    carol = StoredClient("carol", "ab" * 32, {"weekly": 5.0}, ["glm-*"], 30, changed_at=1.0)
    await store.put_client(carol)
    await store.put_client(StoredClient("dave", revoked=True))
    assert (await store.request_reload(), await store.request_reload()) == (1, 2)
    snapshot = await store.snapshot({}, None)
    assert snapshot.clients == {"carol": carol, "dave": StoredClient("dave", revoked=True)}
    assert snapshot.reloads == 2


async def test_a_ledger_from_before_clients_is_kept_as_the_anonymous_clients(tmp_path):
    import sqlite3
    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path)
    old.executescript("""
        CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
        INSERT INTO meta VALUES ('seq', 0), ('schema', 1);
        CREATE TABLE usage (
            key_id TEXT NOT NULL, model TEXT NOT NULL, minute INTEGER NOT NULL,
            requests INTEGER NOT NULL, input_tokens INTEGER NOT NULL,
            cached_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL,
            cost_usd REAL NOT NULL, PRIMARY KEY (key_id, minute, model)) WITHOUT ROWID;""")
    old.execute("INSERT INTO usage VALUES ('k1', 'glm-5.1', ?, 3, 30, 0, 3, 1.5)", (NOW_MINUTE,))
    old.commit()
    old.close()
    store = SQLiteStore(path, State())
    await store.open()
    try:
        [row] = await store.report(NOW_MINUTE - 1)
        assert (row.key_id, row.requests, row.cost_usd, row.client, row.agent) == \
            ("k1", 3, 1.5, "anonymous", "other")
        snapshot = await store.snapshot(starts(), None)
        assert snapshot.spent["k1"][0] == pytest.approx(1.5)
    finally:
        await store.close()
