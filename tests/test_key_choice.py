"""The built-in key choice (rules/10_instance_selection.py): new conversations go where there is
room, a conversation stays on its key, a key at a usage limit takes nothing."""
import asyncio
import time

import pytest

from gateway.app import Gateway
from gateway.config import ConfigError, State, load_config
from gateway.errors import GatewayError
from gateway.state.memory import MemoryStore
from gateway.state.store import UpstreamUsage
from gateway.translate.hub import Usage


def gateway(keys=2, config_text=None, tmp_path=None):
    env = {f"OPENCODE_GO_API_KEY_{n}": f"key-{n}" for n in range(1, keys + 1)}
    env["OPENCODE_GO_API_URL"] = "http://up.test/v1"
    path = None
    if config_text is not None:
        path = tmp_path / "gateway.yaml"
        path.write_text(config_text)
    return Gateway(load_config(str(path) if path else None, env), env=env)


async def route(gw, session, model="opencode-go/glm-5.1"):
    return await gw.router.route(model, "openai", {"model": model, "messages": []}, session)


def spend(gw, name, dollars):
    """As if the ledger had recorded `dollars` spent on instance `name` in every window."""
    instance = next(i for pool in gw.pools.values() for i in pool.instances if i.name == name)
    gw.book.account(instance).stored = [dollars, dollars, dollars]
    return instance


async def test_a_key_at_90_percent_of_its_5_hour_window_takes_only_its_share():
    gw = gateway()
    spend(gw, "opencode-go.1", 0.9 * 12)
    chosen = [(await route(gw, f"conversation-{n}")).instance.name for n in range(20)]
    # $1.20 left against $12: about one conversation in eleven.
    assert chosen.count("opencode-go.1") <= 2


async def test_the_upstreams_own_figure_counts_over_the_ledger():
    gw = gateway()
    instance = next(i for i in gw.pools["opencode-go"].instances if i.name == "opencode-go.2")
    gw.book.account(instance).upstream["rolling"] = UpstreamUsage(
        percent=97, resets_at=time.time() + 3600, fetched_at=time.time(), spent_at_fetch=0.0)
    chosen = {(await route(gw, f"c{n}")).instance.name for n in range(20)}
    assert chosen == {"opencode-go.1"}


async def test_equally_good_keys_share_new_conversations():
    gw = gateway()
    chosen = [(await route(gw, f"conversation-{n}")).instance.name for n in range(40)]
    assert set(chosen) == {"opencode-go.1", "opencode-go.2"}


async def test_every_turn_of_a_conversation_stays_on_its_key():
    gw = gateway()
    first = (await route(gw, "the-conversation")).instance
    # The key it is on gets busier than the other one, but it still has room.
    spend(gw, first.name, 0.5 * 12)
    for _ in range(3):
        assert (await route(gw, "the-conversation")).instance is first


async def test_a_conversation_moves_when_its_key_hits_a_usage_limit():
    gw = gateway()
    first = (await route(gw, "the-conversation")).instance
    gw.pools["opencode-go"].limit_reached(first, 3600, "5 hour")
    moved = (await route(gw, "the-conversation")).instance
    assert moved is not first
    assert (await route(gw, "the-conversation")).instance is moved  # and stays there


async def test_a_key_past_the_threshold_takes_no_new_conversations():
    gw = gateway()
    spend(gw, "opencode-go.1", 0.96 * 12)
    spend(gw, "opencode-go.2", 0.50 * 12)
    assert {(await route(gw, f"c{n}")).instance.name for n in range(10)} == {"opencode-go.2"}


async def test_the_threshold_is_configurable(tmp_path):
    gw = gateway(config_text="quota:\n  threshold: 0.5\n", tmp_path=tmp_path)
    spend(gw, "opencode-go.1", 0.55 * 12)
    spend(gw, "opencode-go.2", 0.30 * 12)
    assert {(await route(gw, f"c{n}")).instance.name for n in range(10)} == {"opencode-go.2"}


async def test_per_key_limits_change_the_headroom(tmp_path):
    gw = gateway(config_text="quota:\n  keys:\n    opencode-go.1:\n      limits: "
                             "{rolling: 120, weekly: 300, monthly: 600}\n", tmp_path=tmp_path)
    spend(gw, "opencode-go.1", 6.0)   # 5% of its larger limit
    spend(gw, "opencode-go.2", 6.0)   # 50% of the default
    assert {(await route(gw, f"c{n}")).instance.name for n in range(10)} == {"opencode-go.1"}


async def test_when_every_key_is_limited_the_client_is_told_which_and_when():
    gw = gateway()
    pool = gw.pools["opencode-go"]
    one, two = pool.instances
    pool.limit_reached(one, 3 * 3600, "5 hour")
    pool.limit_reached(two, 2 * 86400, "weekly")
    with pytest.raises(GatewayError) as caught:
        await route(gw, "c")
    error = caught.value
    assert error.status == 429
    assert "opencode-go.1: 5 hour limit, resets in 3h00m" in error.message
    assert "opencode-go.2: weekly limit" in error.message
    assert 3 * 3600 - 5 <= int(error.headers["retry-after"]) <= 3 * 3600


async def test_a_pinned_request_to_a_limited_key_gets_the_429_without_moving():
    gw = gateway()
    pool = gw.pools["opencode-go"]
    pool.limit_reached(pool.instances[1], 600, "monthly")
    with pytest.raises(GatewayError) as caught:
        await route(gw, "c", model="opencode-go.2:glm-5.1")
    assert caught.value.status == 429 and "monthly" in caught.value.message
    assert (await route(gw, "c", model="opencode-go.1:glm-5.1")).instance.name == "opencode-go.1"


async def test_fallbacks_are_the_other_usable_keys_best_first():
    gw = gateway(keys=3)
    spend(gw, "opencode-go.1", 0.2 * 12)
    spend(gw, "opencode-go.2", 0.6 * 12)
    spend(gw, "opencode-go.3", 0.1 * 12)
    ctx = await route(gw, "c")
    assert ctx.instance.name == "opencode-go.3"
    assert [i.name for i in ctx.fallbacks] == ["opencode-go.1", "opencode-go.2"]


async def test_spending_recorded_by_this_worker_counts_at_once():
    gw = gateway()
    ctx = await route(gw, "busy")
    for _ in range(3):
        gw.book.record(ctx.instance, "glm-5.1", Usage(100, 10), cost=3.5)
    assert gw.book.headroom(ctx.instance, time.time()) == pytest.approx(1 - 10.5 / 12)
    other = {(await route(gw, f"new-{n}")).instance.name for n in range(10)}
    assert other == {i.name for i in gw.pools["opencode-go"].instances} - {ctx.instance.name}


async def test_a_usage_limit_another_worker_wrote_over_still_reaches_every_worker():
    """The store keeps one state per key, the last writer's. Worker A learns a key is at its
    limit; worker B, before reading that, writes its own state of the key (its /usage poll).
    A sees that the store lost the limit and says it again, so worker C still learns it."""
    store = MemoryStore(State(backend="memory"))
    a, b, c = gateway(), gateway(), gateway()
    for gw in (a, b, c):
        gw.book.store = store
        await gw.book.sync()
    limited = a.pools["opencode-go"].instances[0]
    a.pools["opencode-go"].limit_reached(limited, 3600, "5 hour")
    await a.book.sync()
    b.book.key_changed(b.pools["opencode-go"].instances[0])
    await b.book.sync()
    for _ in range(2):  # A reads the store without its limit, then writes it again
        await a.book.sync()
    await c.book.sync()
    seen_by_c = c.pools["opencode-go"].instances[0]
    assert seen_by_c.limited(time.time()) and seen_by_c.limit_name == "5 hour"
    assert {(await route(c, f"new-{n}")).instance.name for n in range(10)} == {"opencode-go.2"}


async def test_spending_whose_sync_was_cancelled_by_a_stopping_worker_is_written_by_the_last():
    class StalledStore(MemoryStore):
        def __init__(self):
            super().__init__(State(backend="memory"))
            self.open_gate = asyncio.Event()
            self.entered = asyncio.Event()
            self.recorded = 0

        async def record(self, batch):
            self.entered.set()
            await self.open_gate.wait()
            await super().record(batch)
            self.recorded += 1

    store = StalledStore()
    gw = gateway()
    gw.book.store = store
    instance = gw.pools["opencode-go"].instances[0]
    gw.book.record(instance, "glm-5.1", Usage(100, 10), cost=1.5)
    background = asyncio.create_task(gw.book.sync())
    await asyncio.wait_for(store.entered.wait(), 5)  # the sync is inside the store's write
    background.cancel()  # the worker stops while the store is slow
    with pytest.raises(asyncio.CancelledError):
        await background
    assert store.recorded == 0  # the cancelled write never reached the store
    store.open_gate.set()
    await gw.book.sync()  # the shutdown's last sync
    assert store.recorded == 1
    starts = {instance.key_id: gw.book.account(instance).starts(time.time())}
    assert (await store.snapshot(starts, None)).spent[instance.key_id] == (1.5, 1.5, 1.5)


def test_per_key_settings_for_an_instance_that_does_not_exist_stop_start_up(tmp_path):
    with pytest.raises(ConfigError) as caught:
        gateway(config_text="quota:\n  keys:\n    opencode-go.02: {anchor_day: 3}\n",
                tmp_path=tmp_path)
    assert "opencode-go.02" in str(caught.value) and "opencode-go.2" in str(caught.value)
