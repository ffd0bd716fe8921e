"""Key placement that keeps prompt caches warm (rules/10_instance_selection.py): conversations
spread by what each key has left per conversation; when a key nears its limit the conversations
whose cache has gone cold move first, a hot one only when its key is spent; every worker and
machine judges a conversation's idle time from the same shared last-seen time."""
import collections
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.config import State
from gateway.state.redis import RedisStore
from gateway.state.sqlite import SQLiteStore
from gateway.state.store import Batch, UsageRow
from gateway.upstream.instances import key_fingerprint
from tests.redis_server import redis_server, redis_url  # noqa: F401
from tests.test_key_choice import gateway, route, spend

REPO = Path(__file__).resolve().parent.parent


def instance(gw, name):
    return next(i for i in gw.pools["opencode-go"].instances if i.name == name)


def decisions(gw) -> dict[str, int]:
    text = gw.observer.metrics.exposition().decode()
    return {kind: int(float(value)) for kind, value in re.findall(
        r'opencode_gateway_key_decisions_total\{decision="(\w+)"\} (\S+)', text)}


def seen_before(gw, session, name, seconds_ago):
    """As if the conversation's last turn had been on `name` `seconds_ago`."""
    gw.book.place(session, instance(gw, name), time.time() - seconds_ago, "placement", None)


async def test_new_conversations_spread_by_what_each_key_has_left_per_conversation():
    gw = gateway(keys=3)
    spend(gw, "opencode-go.2", 0.4 * 12)
    spend(gw, "opencode-go.3", 0.8 * 12)
    chosen = collections.Counter([(await route(gw, f"c{n}")).instance.name for n in range(18)])
    # $12.00, $7.20 and $2.40 left: 5 : 3 : 1, so even the key at 80% takes its share now,
    # while it has room, instead of every conversation starting on the fresh key.
    assert abs(chosen["opencode-go.1"] - 10) <= 1
    assert abs(chosen["opencode-go.2"] - 6) <= 1
    assert abs(chosen["opencode-go.3"] - 2) <= 1
    assert decisions(gw) == {"placement": 18}


async def test_a_new_conversation_goes_where_there_is_most_left_per_conversation():
    gw = gateway()
    for n in range(3):   # the fresh key already carries three conversations
        seen_before(gw, f"old-{n}", "opencode-go.1", 10)
    spend(gw, "opencode-go.2", 0.5 * 12)    # $6 for none beats $12 for four
    assert (await route(gw, "new")).instance.name == "opencode-go.2"


async def test_a_cold_conversation_moves_before_a_hot_one_and_a_hot_one_only_when_it_must():
    gw = gateway()
    seen_before(gw, "cold", "opencode-go.1", 400)   # idle past the 5-minute cache lifetime
    seen_before(gw, "hot", "opencode-go.1", 5)
    spend(gw, "opencode-go.1", 0.97 * 12)           # near its limit
    spend(gw, "opencode-go.2", 0.10 * 12)
    assert (await route(gw, "hot")).instance.name == "opencode-go.1"    # warm: it stays
    assert (await route(gw, "cold")).instance.name == "opencode-go.2"   # cold: it moves, free
    assert (await route(gw, "hot")).instance.name == "opencode-go.1"
    spend(gw, "opencode-go.1", 12.0)                                    # now it is spent
    assert (await route(gw, "hot")).instance.name == "opencode-go.2"
    assert (await route(gw, "hot")).instance.name == "opencode-go.2"    # and stays there
    assert decisions(gw) == {"placement": 2, "cold_move": 1, "hot_move": 1}


async def test_a_cold_conversation_stays_when_no_key_is_better():
    gw = gateway()
    seen_before(gw, "cold", "opencode-go.1", 400)
    spend(gw, "opencode-go.2", 0.5 * 12)
    assert (await route(gw, "cold")).instance.name == "opencode-go.1"
    assert "cold_move" not in decisions(gw)


async def test_the_cache_lifetime_is_set_per_model_family(tmp_path):
    gw = gateway(config_text="quota:\n  prompt_cache:\n    lifetime_seconds: 60\n"
                             "    families: {deepseek-: 3600, deepseek-v4-flash: 600}\n",
                 tmp_path=tmp_path)
    lifetime = gw.book.cache_lifetime
    assert (lifetime("glm-5.1"), lifetime("deepseek-v4-pro"), lifetime("deepseek-v4-flash")) \
        == (60, 3600, 600)
    seen_before(gw, "c", "opencode-go.1", 120)
    spend(gw, "opencode-go.1", 0.6 * 12)
    # Idle two minutes: warm for DeepSeek (an hour), cold for GLM (a minute).
    assert (await route(gw, "c", "opencode-go/deepseek-v4-pro")).instance.name == "opencode-go.1"
    seen_before(gw, "d", "opencode-go.1", 120)
    assert (await route(gw, "d", "opencode-go/glm-5.1")).instance.name == "opencode-go.2"


async def test_a_failover_away_from_a_key_the_view_thought_had_room_counts_as_a_move():
    gw = gateway()
    seen_before(gw, "c", "opencode-go.1", 5)
    ctx = await route(gw, "c")
    assert ctx.instance.name == "opencode-go.1"
    ctx.instance = ctx.fallbacks[0]   # what the forwarder does when .1 answers 429
    gw.book.finished(ctx, 200, None, 0.001)
    assert decisions(gw) == {"placement": 1, "hot_move": 1}
    assert (await route(gw, "c")).instance.name == "opencode-go.2"


@pytest.fixture(params=["sqlite", "redis"])
async def shared_store(request, tmp_path):
    """Two workers' stores: one SQLite file (workers on one machine) or one Redis (machines)."""
    if request.param == "sqlite":
        made = [SQLiteStore(tmp_path / "state.sqlite3", State()) for _ in range(2)]
    else:
        url = request.getfixturevalue("redis_url")
        made = [RedisStore(State(backend="redis", url=url)) for _ in range(2)]
    for store in made:
        await store.open()
    yield made
    for store in made:
        await store.close()


async def test_idle_time_is_the_same_on_every_worker_and_machine(shared_store):
    a, b = gateway(), gateway()
    a.book.store, b.book.store = shared_store
    for gw in (a, b):
        await gw.book.sync()
    seen_before(a, "c", "opencode-go.1", 400)   # worker A served its last turn 400 s ago
    await a.book.sync()
    await b.book.sync()
    assert b.book.sticky("c", time.time()) == instance(b, "opencode-go.1").key_id
    assert 399 <= b.book.idle("c", time.time()) <= 402
    spend(b, "opencode-go.1", 0.5 * 12)   # (as the ledger says after the sync)
    # So worker B sees that its cache is cold, and moves it where there is more left, for free.
    assert (await route(b, "c")).instance.name == "opencode-go.2"
    assert decisions(b) == {"cold_move": 1}
    await b.book.sync()
    await a.book.sync()
    assert a.book.sticky("c", time.time()) == instance(a, "opencode-go.2").key_id
    assert a.book.idle("c", time.time()) < 5
    # A worker that starts later (or restarts) reads the same last-seen time from the store.
    late = gateway()
    late.book.store = shared_store[0]
    await late.book.sync()
    assert late.book.idle("c", time.time()) < 5
    assert (await route(late, "c")).instance.name == "opencode-go.2"   # warm: it stays


async def test_routes_prints_the_key_choice_policy_and_each_keys_figures(tmp_path):
    env = {"OPENCODE_GO_API_KEY_1": "k-one", "OPENCODE_GO_API_KEY_2": "k-two",
           "XDG_STATE_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    # What the serving workers wrote: $3 spent on the second key this minute.
    store = SQLiteStore(tmp_path / "opencode-gateway" / "state.sqlite3", State())
    await store.open()
    await store.record(Batch(usage=[UsageRow(key_fingerprint("k-two"), "kimi-k3",
                                             int(time.time() // 60), 1, 10, 0, 5, 3.0)]))
    await store.close()
    config = tmp_path / "gateway.yaml"
    config.write_text("quota:\n  prompt_cache:\n    families: {kimi-: 240}\n")
    out = subprocess.run([sys.executable, "-m", "gateway", "routes", "opencode-go/kimi-k3",
                          "--config", str(config)], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "prompt cache 240 s for kimi-k3" in out.stdout
    assert "by dollars left per conversation carried" in out.stdout
    assert re.search(r"opencode-go\.1\s*: \$12\.00 left \(100% of its tightest window\), "
                     r"[01] conversations?", out.stdout)
    assert re.search(r"opencode-go\.2\s*: \$9\.00 left \(75% of", out.stdout)
    assert "k-one" not in out.stdout and "k-two" not in out.stdout
