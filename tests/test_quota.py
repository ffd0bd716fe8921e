"""The ledger's arithmetic: the three spending windows at their edges (UPSTREAM.md: $12 per
rolling 5 hours, $30 per calendar week from Monday 00:00 UTC, $60 per month from the
subscription's day), prices for answers that came without a cost, where a conversation stays,
what the upstream's own `/usage` figures do, and the settings that bound all of it."""
import asyncio
import datetime as dt
import time
from types import SimpleNamespace

import aiohttp
import aiohttp.web
import pytest

from gateway.app import Gateway
from gateway.config import ConfigError, State, load_config
from gateway.quota.prices import FALLBACK, Prices
from gateway.quota.report import _iso, usage_report
from gateway.quota.upstream_usage import NoUsageEndpoint, poll_forever, read_usage
from gateway.quota.windows import (ROLLING_SECONDS, minute_of, month_end, month_start,
                                   resets_at, rolling_start_minute, week_start)
from gateway.state.memory import MemoryStore
from gateway.state.reasoning import ReasoningMemory
from gateway.state.store import Batch, KeyState, UpstreamUsage, UsageRow, WindowStarts
from gateway.translate.hub import Usage
from gateway.upstream.instances import Instance, mask_key


def utc(*fields) -> float:
    return dt.datetime(*fields, tzinfo=dt.timezone.utc).timestamp()


def gateway(keys=2, config_text=None, tmp_path=None, url="http://up.test/v1"):
    env = {f"OPENCODE_GO_API_KEY_{n}": f"key-{n}" for n in range(1, keys + 1)}
    env["OPENCODE_GO_API_URL"] = url
    path = None
    if config_text is not None:
        path = tmp_path / "gateway.yaml"
        path.write_text(config_text)
    return Gateway(load_config(str(path) if path else None, env), env=env)


# ---------------------------------------------------------------------------------------------
# Windows

SUNDAY_NIGHT = utc(2026, 12, 6, 23, 59, 30)
MONDAY = utc(2026, 12, 7, 0, 0, 0)


def test_the_rolling_window_holds_minute_now_minus_299_but_not_now_minus_300():
    now = utc(2026, 12, 6, 10, 30, 27)
    assert rolling_start_minute(now) == minute_of(now) - 299
    assert resets_at("rolling", now, 1, None) == now + ROLLING_SECONDS
    oldest = now - 4 * 3600
    assert resets_at("rolling", now, 1, oldest) == oldest + 5 * 3600


async def test_spending_300_minutes_ago_has_left_the_rolling_window_and_299_has_not():
    store = MemoryStore(State(backend="memory"))
    now = time.time()
    minute = minute_of(now)
    await store.record(Batch([UsageRow("k", "glm-5.1", minute - 300, cost_usd=1.0),
                              UsageRow("k", "glm-5.1", minute - 299, cost_usd=2.0),
                              UsageRow("k", "glm-5.1", minute, cost_usd=4.0)], {}, {}))
    day = minute // 1440
    snapshot = await store.snapshot({"k": WindowStarts(rolling_start_minute(now), day - 30,
                                                       day - 30)}, None)
    assert snapshot.spent["k"][0] == pytest.approx(6.0)
    assert snapshot.spent["k"][1] == pytest.approx(7.0)  # the week still holds all three


def test_the_week_runs_from_monday_midnight_utc():
    assert week_start(SUNDAY_NIGHT) == dt.datetime(2026, 11, 30, tzinfo=dt.timezone.utc)
    assert resets_at("weekly", SUNDAY_NIGHT, 1, None) == MONDAY  # thirty seconds later
    assert week_start(MONDAY).timestamp() == MONDAY
    assert resets_at("weekly", MONDAY, 1, None) == utc(2026, 12, 14)
    assert resets_at("weekly", MONDAY - 1, 1, None) == MONDAY


@pytest.mark.parametrize("now, start, end", [
    # Anchor day 31 in February: the month's last day stands in for it.
    (utc(2027, 2, 15, 12), (2027, 1, 31), (2027, 2, 28)),
    (utc(2027, 2, 27, 23, 59, 59), (2027, 1, 31), (2027, 2, 28)),
    (utc(2027, 2, 28), (2027, 2, 28), (2027, 3, 31)),
    (utc(2028, 2, 29, 8), (2028, 2, 29), (2028, 3, 31)),  # a leap year
    (utc(2027, 3, 1), (2027, 2, 28), (2027, 3, 31)),
    (utc(2027, 3, 31), (2027, 3, 31), (2027, 4, 30)),
    (utc(2026, 12, 31, 23), (2026, 12, 31), (2027, 1, 31)),  # over the year's end
])
def test_the_month_runs_from_the_anchor_day_or_the_months_last_day(now, start, end):
    assert month_start(now, 31) == dt.datetime(*start, tzinfo=dt.timezone.utc)
    assert month_end(now, 31) == dt.datetime(*end, tzinfo=dt.timezone.utc)
    assert resets_at("monthly", now, 31, None) == utc(*end)


def test_a_month_anchored_mid_month_starts_in_the_previous_year_in_early_january():
    now = utc(2027, 1, 10)
    assert month_start(now, 15) == dt.datetime(2026, 12, 15, tzinfo=dt.timezone.utc)
    assert resets_at("monthly", now, 15, None) == utc(2027, 1, 15)
    assert resets_at("monthly", utc(2027, 1, 15), 15, None) == utc(2027, 2, 15)


def test_a_key_whose_anchor_day_is_outside_1_to_31_is_refused(tmp_path):
    for day in (0, 32):
        with pytest.raises(ConfigError) as caught:
            gateway(config_text=f"quota:\n  keys:\n    opencode-go.1: {{anchor_day: {day}}}\n",
                    tmp_path=tmp_path)
        assert "anchor_day" in str(caught.value)
    assert gateway(config_text="quota:\n  keys:\n    opencode-go.1: {anchor_day: 31}\n",
                   tmp_path=tmp_path).book.accounts


# ---------------------------------------------------------------------------------------------
# Prices, for answers that came without the upstream's cost

def test_cached_tokens_are_priced_at_the_cache_price():
    usage = Usage(input_tokens=1_000_000, output_tokens=100_000, cached_tokens=400_000)
    price = Prices({}).price("glm-5.1")  # the catalogue's price (models.dev)
    assert price.cache_read < price.input and price.multiplier == 1
    # 600k fresh, 400k cached, 100k out, per million tokens.
    assert Prices({}).cost("glm-5.1", usage) == pytest.approx(
        0.6 * price.input + 0.4 * price.cache_read + 0.1 * price.output)


def test_a_models_multiplier_counts_its_spending_more_than_once(tmp_path):
    usage = Usage(input_tokens=1_000_000, output_tokens=0)
    price = Prices({}).price("kimi-k3")
    assert price.multiplier > 1  # models.dev's "(2x usage)"-style models
    assert Prices({}).cost("kimi-k3", usage) == pytest.approx(price.input * price.multiplier)
    gw = gateway(config_text="quota:\n  prices:\n    glm-5.1: {input: 1, output: 2, "
                             "multiplier: 3}\n", tmp_path=tmp_path)
    assert gw.book.prices.cost("glm-5.1", usage) == pytest.approx(1 * 3)


def test_an_unknown_model_is_priced_on_the_expensive_side_and_the_config_adds_prices(tmp_path):
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000, cached_tokens=2_000_000)
    assert Prices({}).cost("new-model", usage) == pytest.approx(
        FALLBACK.output + 2 * FALLBACK.cache_read)  # more cached than read: none fresh
    gw = gateway(config_text="quota:\n  prices:\n    new-model: {input: 2, output: 8, "
                             "cache_read: 0.5, multiplier: 2}\n", tmp_path=tmp_path)
    assert gw.book.prices.cost("new-model", Usage(1_000_000, 1_000_000, 500_000)) == \
        pytest.approx((0.5 * 2 + 0.5 * 0.5 + 8) * 2)


def test_an_answer_without_a_cost_is_charged_at_the_price_table_and_one_with_it_as_said():
    gw = gateway()
    instance = gw.pools["opencode-go"].instances[0]
    account = gw.book.account(instance)
    gw.book.record(instance, "kimi-k3", Usage(input_tokens=100_000, output_tokens=10_000,
                                              cached_tokens=50_000), None)
    price = Prices({}).price("kimi-k3")
    expected = (50_000 * price.input + 50_000 * price.cache_read + 10_000 * price.output) \
        / 1e6 * price.multiplier
    assert account.pending == pytest.approx(expected)
    gw.book.record(instance, "kimi-k3", Usage(input_tokens=100_000), 0.25)
    assert account.pending == pytest.approx(expected + 0.25)


# ---------------------------------------------------------------------------------------------
# Where a conversation stays

async def route(gw, session, model="opencode-go/glm-5.1"):
    return await gw.router.route(model, "openai", {"model": model, "messages": []}, session)


async def test_a_conversation_moved_by_a_short_rest_stays_on_its_new_key_after_the_old_recovers():
    gw = gateway()
    pool = gw.pools["opencode-go"]
    first = (await route(gw, "the-conversation")).instance
    pool.failed(first, retry_after=20)  # a short rest, well within a minute of the first turn
    moved = (await route(gw, "the-conversation")).instance
    assert moved is not first
    first.resting_until = 0.0  # the old key is back
    assert first.available(time.time())
    for _ in range(3):
        assert (await route(gw, "the-conversation")).instance is moved


async def test_a_conversation_answered_by_a_fallback_key_stays_on_it():
    gw = gateway()
    ctx = await route(gw, "the-conversation")
    first, fallback = ctx.instance, ctx.fallbacks[0]
    # The first key failed before the answer started; the fallback answered, seconds later.
    gw.book.finished(answered(fallback, "the-conversation"), 200, Usage(10, 5), 0.001)
    for _ in range(3):
        assert (await route(gw, "the-conversation")).instance is fallback
    assert first.available(time.time())


# ---------------------------------------------------------------------------------------------
# The upstream's own figures

async def test_a_window_the_upstream_calls_rate_limited_under_100_percent_rests_the_key(fake):
    gw = gateway(keys=1, url=fake.url)
    instance = gw.pools["opencode-go"].instances[0]
    fake.set_usage(instance.api_key, weekly=40, rate_limited=["weekly"])
    async with aiohttp.ClientSession() as session:
        figures = await read_usage(session, instance)
    assert figures["weekly"][0] == 100 and figures["rolling"][0] < 100
    gw.book.upstream_usage(instance, figures, gw.pools["opencode-go"])
    now = time.time()
    assert instance.limited(now) and instance.limit_name == "weekly"
    assert instance.limit_until == pytest.approx(figures["weekly"][1])
    assert gw.book.headroom(instance, now) <= 0


async def test_a_window_at_ease_under_100_percent_leaves_the_key_alone(fake):
    gw = gateway(keys=1, url=fake.url)
    instance = gw.pools["opencode-go"].instances[0]
    fake.set_usage(instance.api_key, weekly=40)
    async with aiohttp.ClientSession() as session:
        figures = await read_usage(session, instance)
    gw.book.upstream_usage(instance, figures, gw.pools["opencode-go"])
    assert not instance.limited(time.time())
    assert gw.book.headroom(instance, time.time()) == pytest.approx(0.6, abs=0.01)


# ---------------------------------------------------------------------------------------------
# Settings that bound what is kept and shown

def test_a_key_is_shown_by_its_last_four_characters_only_past_8():
    assert mask_key("12345678") == "****"
    assert mask_key("123456789") == "****6789"
    assert mask_key("") == "(none)"


async def test_reasoning_is_kept_for_the_configured_hours(tmp_path):
    class Recording(MemoryStore):
        def __init__(self):
            super().__init__(State(backend="memory"))
            self.ttls = []

        async def remember(self, items, ttl):
            self.ttls.append(ttl)
            await super().remember(items, ttl)

    store = Recording()
    memory = ReasoningMemory(store, ttl_hours=2.5)
    memory.remember("session", ["call_1"], "because")
    await memory.drain()
    assert store.ttls == [2.5 * 3600]
    gw = gateway(config_text="state:\n  reasoning_ttl_hours: 3\n", tmp_path=tmp_path)
    assert gw.config.state.reasoning_ttl_hours == 3
    gw.reasoning._store = store
    gw.reasoning.remember("session", ["call_2"], "because")
    await gw.reasoning.drain()
    assert store.ttls[-1] == 3 * 3600


# ---------------------------------------------------------------------------------------------
# The report behind GET /v1/usage and the dashboard

async def test_the_usage_report_shows_each_keys_windows_status_and_the_days_models():
    gw = gateway(keys=3)
    store = gw.book.store = MemoryStore(State(backend="memory"))
    one, two, three = gw.pools["opencode-go"].instances
    now = time.time()
    minute = minute_of(now)
    today = minute // 1440 * 1440
    older = minute - 400  # out of the rolling window, within the day's hours
    await store.record(Batch([
        UsageRow(one.key_id, "glm-5.1", minute - 20, 1, 10, 0, 1, 0.0),  # free: not the oldest
        UsageRow(one.key_id, "glm-5.1", minute - 11, 1, 1000, 30, 50, 0.5000001),
        UsageRow(one.key_id, "glm-5.1", minute - 10, 1, 500, 100, 20, 0.25),
        UsageRow(one.key_id, "kimi-k3", minute, 1, 500, 0, 20, 1.25),
        UsageRow(one.key_id, "glm-5.1", older, 1, 10, 0, 5, 0.25),
        UsageRow(two.key_id, "qwen3.6-plus", today, 1, 1, 0, 1, 0.125)], {}, {}))
    await gw.book.sync()
    gw.pools["opencode-go"].limit_reached(two, 3600, "weekly")
    three.resting_until = now + 30
    three.failures = 2
    gw.book.account(three).upstream["monthly"] = UpstreamUsage(
        percent=40, resets_at=now + 86400, fetched_at=now, spent_at_fetch=0.0)
    gw.book.account(three).upstream["weekly"] = UpstreamUsage(
        percent=10, resets_at=now + 0.5, fetched_at=now, spent_at_fetch=0.0)
    errors = [{"status": 502, "message": "broke"}]

    report = await usage_report(gw.book, gw.pools, errors, now=now)

    keys = {key["instance"]: key for key in report["keys"]}
    rolling = keys["opencode-go.1"]["windows"]["rolling"]
    assert (rolling["spent_usd"], rolling["limit_usd"]) == (2.0, 12)
    assert (rolling["used_ratio"], rolling["used_percent"]) == (0.1667, 16.7)
    assert (rolling["source"], rolling["label"]) == ("ledger", "5 hours")
    # The rolling window resets when its oldest spend that cost something leaves it.
    assert rolling["resets_at"] == _iso((minute - 11) * 60 + 5 * 3600)
    assert rolling["resets_in_seconds"] == int((minute - 11) * 60 + 5 * 3600 - now)
    weekly = keys["opencode-go.1"]["windows"]["weekly"]
    assert (weekly["spent_usd"], weekly["limit_usd"]) == (2.25, 30)
    assert weekly["resets_at"] == _iso(resets_at("weekly", now, 1, None))
    assert keys["opencode-go.1"]["headroom"] == 0.8333
    assert (keys["opencode-go.1"]["status"], keys["opencode-go.1"]["until"]) == ("ok", None)
    assert keys["opencode-go.1"]["key_id"] == one.key_id
    assert (keys["opencode-go.2"]["status"], keys["opencode-go.2"]["limit"]) == \
        ("limited", "weekly")
    assert keys["opencode-go.2"]["until"] == _iso(two.limit_until)
    third = keys["opencode-go.3"]
    assert (third["status"], third["limit"], third["failures"]) == ("resting", None, 2)
    assert (third["windows"]["monthly"]["source"], third["windows"]["monthly"]["used_percent"]) \
        == ("upstream", 40.0)
    assert third["windows"]["monthly"]["resets_at"] == _iso(now + 86400)
    assert third["windows"]["weekly"]["resets_in_seconds"] == 0
    assert all(key["key"] == mask_key(f"key-{n}") for n, key in enumerate(report["keys"], 1))

    glm_today = [(1, 10, 0, 1, 0.0), (1, 1000, 30, 50, 0.5000001), (1, 500, 100, 20, 0.25)] \
        + ([(1, 10, 0, 5, 0.25)] if older >= today else [])
    assert [model["model"] for model in report["models_today"]] == \
        ["kimi-k3", "glm-5.1", "qwen3.6-plus"]  # the costliest first
    glm = report["models_today"][1]
    requests, input_tokens, cached, output, cost = map(sum, zip(*glm_today))
    assert (glm["requests"], glm["input_tokens"], glm["cached_tokens"], glm["output_tokens"]) \
        == (requests, input_tokens, cached, output)
    assert glm["cost_usd"] == round(cost, 6)
    hours = {(hour["hour"], hour["model"]): hour["cost_usd"] for hour in report["hourly"]}
    assert hours[(_iso(older // 60 * 3600), "glm-5.1")] == 0.25
    assert sum(hours.values()) == pytest.approx(2.375)
    hour_order = [hour["hour"] for hour in report["hourly"]]
    assert hour_order == sorted(hour_order)
    assert report["recent_errors"] == errors and report["threshold"] == 0.95
    assert report["state"] == {"backend": "memory", "where": repr(store), "up": True,
                               "synced_at": _iso(gw.book.synced_at)}
    assert report["generated_at"] == _iso(now)
    assert _iso(0) == "1970-01-01T00:00:00Z"


async def test_the_usage_report_still_shows_the_keys_when_the_store_is_down():
    class DownStore(MemoryStore):
        async def report(self, since_minute):
            raise ConnectionError("down")

    gw = gateway()
    gw.book.store = DownStore(State(backend="memory"))
    instance = gw.pools["opencode-go"].instances[0]
    gw.book.record(instance, "glm-5.1", Usage(1000, 100), 0.6)
    report = await usage_report(gw.book, gw.pools)
    assert report["keys"][0]["windows"]["rolling"]["spent_usd"] == pytest.approx(0.6)
    assert report["models_today"] == [] and report["hourly"] == []
    assert report["recent_errors"] == [] and report["state"]["synced_at"] is None


# ---------------------------------------------------------------------------------------------
# The book: what a worker records, and what it shares through the store

def answered(instance, session="conversation", model="glm-5.1"):
    """The route context of a request `instance` answered, as the observer hands it over."""
    return SimpleNamespace(instance=instance, session=session, model_id=model,
                           client="anonymous", agent="other")


async def test_an_answer_is_recorded_by_model_and_minute_and_its_conversation_stays():
    gw = gateway()
    store = gw.book.store = MemoryStore(State(backend="memory"))
    instance = gw.pools["opencode-go"].instances[1]
    gw.book.finished(answered(instance), 200, Usage(1000, 100, 400), 0.5)
    gw.book.finished(answered(instance), 200, Usage(2000, 50, 0), None)
    gw.book.finished(answered(instance, model="kimi-k3"), 200, None, 0.25)
    gw.book.finished(answered(instance, session="other"), 200, None, None)  # nothing to count
    gw.book.finished(answered(None), 200, Usage(5, 5), 1.0)  # refused before any key
    await gw.book.sync()
    rows = {row.model: row for row in await store.report(0)}
    glm = rows["glm-5.1"]
    priced = Prices({}).cost("glm-5.1", Usage(2000, 50, 0))
    assert (glm.key_id, glm.requests, glm.input_tokens, glm.cached_tokens, glm.output_tokens) \
        == (instance.key_id, 2, 3000, 400, 150)
    assert glm.cost_usd == pytest.approx(0.5 + priced)
    assert glm.minute == minute_of(time.time()) or glm.minute == minute_of(time.time()) - 1
    assert (rows["kimi-k3"].requests, rows["kimi-k3"].cost_usd) == (1, 0.25)
    assert len(rows) == 2
    assert gw.book.sticky("conversation", time.time()) == instance.key_id
    assert gw.book.sticky("other", time.time()) == instance.key_id  # answered: it stays
    assert gw.book.account(instance).spent(0) == pytest.approx(0.75 + priced)


async def test_a_refused_answer_moves_no_conversation_and_one_without_a_session_sticks_nowhere():
    gw = gateway()
    instance = gw.pools["opencode-go"].instances[1]
    gw.book.finished(answered(instance), 429, None, None)
    gw.book.finished(answered(instance), 400, Usage(10, 0), None)
    gw.book.finished(answered(instance, session=""), 200, Usage(10, 1), None)
    assert gw.book.sticky("conversation", time.time()) is None
    assert gw.book.sticky("", time.time()) is None
    assert gw.book.account(instance).pending > 0  # the 400's tokens were still counted


async def test_a_conversation_is_forgotten_after_the_session_ttl(tmp_path):
    gw = gateway(config_text="state:\n  session_ttl_hours: 1\n", tmp_path=tmp_path)
    instance = gw.pools["opencode-go"].instances[0]
    now = time.time()
    gw.book.stick("conversation", instance, now - 3600 + 5)
    assert gw.book.sticky("conversation", now) == instance.key_id
    assert gw.book.sticky("conversation", now + 10) is None


async def test_workers_share_spending_rests_figures_and_conversations_through_the_store():
    store = MemoryStore(State(backend="memory"))
    a, b = gateway(), gateway()
    for gw in (a, b):
        gw.book.store = store
    one_a, two_a = a.pools["opencode-go"].instances
    one_b, two_b = b.pools["opencode-go"].instances
    a.book.record(one_a, "glm-5.1", Usage(100, 10), 1.5)
    a.pools["opencode-go"].failed(two_a, retry_after=30)  # a rest: every worker must know
    a.book.upstream_usage(one_a, {"weekly": (20.0, time.time() + 3600)}, a.pools["opencode-go"])
    a.book.stick("conversation", two_a, time.time())
    await a.book.sync()
    await b.book.sync()
    now = time.time()
    assert b.book.account(one_b).spent(0) == pytest.approx(1.5)
    assert a.book.account(one_a).spent(0) == pytest.approx(1.5)  # once, not stored + pending
    await a.book.sync()
    assert a.book.account(one_a).spent(0) == pytest.approx(1.5)
    assert two_b.resting_until == pytest.approx(two_a.resting_until) and two_b.resting_until > now
    assert b.book.account(one_b).upstream["weekly"].percent == 20.0
    assert b.book.sticky("conversation", now) == two_b.key_id
    assert a.book.synced_at > 0 and b.book.store_up


async def test_a_store_that_fails_is_said_once_and_nothing_is_lost_or_counted_twice(caplog):
    class FlakyStore(MemoryStore):
        def __init__(self):
            super().__init__(State(backend="memory"))
            self.failing = {"record"}

        async def record(self, batch):
            if "record" in self.failing:
                raise ConnectionError("refused")
            await super().record(batch)

        async def snapshot(self, starts, cursor):
            if "snapshot" in self.failing:
                raise ConnectionError("timed out")
            return await super().snapshot(starts, cursor)

        def __repr__(self):
            return "flaky-store"

    store = FlakyStore()
    gw = gateway()
    gw.book.store = store
    instance = gw.pools["opencode-go"].instances[0]
    gw.book.record(instance, "glm-5.1", Usage(100, 10), 1.0)
    gw.book.stick("conversation", instance, time.time())
    gw.pools["opencode-go"].failed(instance, retry_after=30)
    caplog.set_level("WARNING", logger="gateway")
    await gw.book.sync()
    await gw.book.sync()
    down = [r.getMessage() for r in caplog.records if "unreachable" in r.getMessage()]
    assert down == ["state store flaky-store unreachable (ConnectionError: refused); serving "
                    "on this worker's own view until it is back"]
    assert not gw.book.store_up
    assert gw.book.account(instance).spent(0) == pytest.approx(1.0)  # still counted here
    store.failing = {"snapshot"}  # the batch is written, the read back fails
    await gw.book.sync()
    store.failing = set()
    await gw.book.sync()
    assert "state store flaky-store is back; shared state reconciled" in caplog.text
    assert gw.book.store_up
    [row] = await store.report(0)
    assert (row.requests, row.cost_usd) == (1, 1.0)  # written once, after the failures
    assert gw.book.account(instance).spent(0) == pytest.approx(1.0)
    snapshot = await store.snapshot({}, None)
    assert snapshot.sessions == {"conversation": instance.key_id}
    assert snapshot.keys[instance.key_id].resting_until == pytest.approx(instance.resting_until)


class _UsageEndpoint:
    """A stand-in upstream `GET /v1/usage`: answers `status` and `body`, keeps the headers."""

    def __init__(self, status=200, body=None):
        self.status, self.body, self.headers, self.requests = status, body or {}, None, 0

    async def __aenter__(self):
        async def usage(request):
            self.headers = request.headers
            self.requests += 1
            return aiohttp.web.json_response(self.body, status=self.status)

        app = aiohttp.web.Application()
        app.router.add_get("/v1/usage", usage)
        self._runner = aiohttp.web.AppRunner(app)
        await self._runner.setup()
        site = aiohttp.web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.api_url = f"http://127.0.0.1:{port}/v1"
        return Instance("opencode-go.1", "opencode-go", 1, self.api_url, "the-key")

    async def __aexit__(self, *exc):
        await self._runner.cleanup()


async def test_usage_is_read_with_the_bearer_key_uncompressed_and_as_the_upstream_says():
    endpoint = _UsageEndpoint(body={"usage": {
        "rolling": {"status": "ok", "percent": 42, "resetsAt": "2026-12-06T14:32:00.000Z"},
        "weekly": {"status": "rate-limited", "percent": 7, "resetsAt": "2026-12-07T00:00:00Z"},
        "monthly": {"status": "ok", "percent": 130, "resetsAt": "2027-01-01T00:00:00Z"},
        "daily": {"status": "ok", "percent": 5}}})  # no reset: not a figure to use
    async with endpoint as instance, aiohttp.ClientSession() as session:
        figures = await read_usage(session, instance)
    assert figures == {"rolling": (42, utc(2026, 12, 6, 14, 32)),
                       "weekly": (100.0, utc(2026, 12, 7)),
                       "monthly": (130, utc(2027, 1, 1))}
    assert endpoint.headers["Authorization"] == "Bearer the-key"
    assert "x-api-key" not in endpoint.headers
    assert endpoint.headers["Accept-Encoding"] == "identity"
    assert endpoint.headers["x-opencode-session"]


async def test_an_upstream_without_usage_is_told_apart_from_one_that_failed():
    async with _UsageEndpoint(status=404) as instance, aiohttp.ClientSession() as session:
        with pytest.raises(NoUsageEndpoint):
            await read_usage(session, instance)
    async with _UsageEndpoint(status=503) as instance, aiohttp.ClientSession() as session:
        with pytest.raises(RuntimeError, match="HTTP 503"):
            await read_usage(session, instance)


async def _until(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition did not come true"
        await asyncio.sleep(0.01)


async def test_the_usage_poll_reads_every_key_and_stops_asking_an_upstream_without_usage(caplog):
    caplog.set_level("INFO", logger="gateway")
    limited = _UsageEndpoint(body={"usage": {"weekly": {
        "status": "rate-limited", "percent": 20, "resetsAt": "2099-01-01T00:00:00Z"}}})
    missing, failing = _UsageEndpoint(status=404), _UsageEndpoint(status=500)
    async with limited as one, missing as two, failing as three:
        gw = gateway(keys=3)
        pool = gw.pools["opencode-go"]
        for mine, served in zip(pool.instances, (one, two, three)):
            mine.api_url = served.api_url
        pool.instances[1].api_key = ""  # no key: nothing to ask
        pool.instances[2].api_key = "k3"
        gw.pools["other"] = SimpleNamespace(instances=[])
        async with aiohttp.ClientSession() as session:
            poll = asyncio.create_task(poll_forever(session, gw.pools, gw.book, 0.01))
            try:
                await _until(lambda: pool.instances[0].limited(time.time()))
                assert pool.instances[0].limit_name == "weekly"
                await _until(lambda: caplog.text.count("could not read the upstream's /usage")
                             >= 2)
            finally:
                poll.cancel()
        assert missing.headers is None  # the keyless instance was never asked
        pool.instances[1].api_key = "k2"
        async with aiohttp.ClientSession() as session:
            poll = asyncio.create_task(poll_forever(session, gw.pools, gw.book, 0.01))
            try:
                await _until(lambda: "has no /usage" in caplog.text)
                asked = missing.requests
                await _until(lambda: caplog.text.count("could not read") >= 4)
                assert missing.requests == asked  # a 404 is asked once per poller, not again
            finally:
                poll.cancel()
    assert "opencode-go.3: could not read the upstream's /usage (HTTP 500)" in caplog.text
    assert "opencode-go.2: the upstream has no /usage; the ledger alone counts its spending" \
        in caplog.text


def test_the_upstreams_figure_counts_with_what_was_spent_since_it_was_read():
    gw = gateway()
    instance = gw.pools["opencode-go"].instances[0]
    account = gw.book.account(instance)
    account.stored = [1.0, 1.0, 1.0]
    now = time.time()
    account.upstream["rolling"] = UpstreamUsage(percent=50, resets_at=now + 600, fetched_at=now,
                                                spent_at_fetch=1.0)
    gw.book.record(instance, "glm-5.1", None, 1.2)  # spent after the figure was read
    assert account.used(0, now) == pytest.approx(0.5 + 1.2 / 12)
    assert account.used(1, now) == pytest.approx(2.2 / 30)  # no figure: the ledger
    assert account.used(0, now + 601) == pytest.approx(2.2 / 12)  # the figure expired


async def test_a_conversation_is_shared_again_only_after_a_minute_on_the_same_key():
    store = MemoryStore(State(backend="memory"))
    gw = gateway()
    gw.book.store = store
    one, two = gw.pools["opencode-go"].instances
    now = time.time()
    gw.book.stick("conversation", one, now)
    await gw.book.sync()
    cursor = (await store.snapshot({}, None)).cursor
    gw.book.stick("conversation", one, now + 10)  # the same key, recently: nothing new
    await gw.book.sync()
    assert (await store.snapshot({}, cursor)).sessions == {}
    gw.book.stick("conversation", one, now + 61)  # a minute on: alive, said again
    await gw.book.sync()
    assert (await store.snapshot({}, cursor)).sessions == {"conversation": one.key_id}
    cursor = (await store.snapshot({}, None)).cursor
    gw.book.stick("conversation", two, now + 62)  # moved: said at once
    await gw.book.sync()
    assert (await store.snapshot({}, cursor)).sessions == {"conversation": two.key_id}


async def test_a_key_state_of_a_key_this_worker_does_not_have_is_skipped_not_fatal():
    store = MemoryStore(State(backend="memory"))
    gw = gateway()
    gw.book.store = store
    instance = gw.pools["opencode-go"].instances[1]
    resting = KeyState(resting_until=time.time() + 60)
    await store.record(Batch([], {"another-gateways-key": resting, instance.key_id: resting}, {}))
    await gw.book.sync()
    assert instance.resting_until == resting.resting_until
