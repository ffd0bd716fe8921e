"""A named client's budget arithmetic on the worker's view (quota/book.py, access/budget.py):
window edges, the request that crosses the budget, the sum across workers through the store."""
import asyncio
import datetime as dt

import pytest

from gateway.access.budget import check_budget
from gateway.config import State, load_config
from gateway.errors import GatewayError
from gateway.quota.book import Account, KeyBook
from gateway.quota.windows import minute_of, rolling_start_minute, week_start
from gateway.state.memory import MemoryStore
from gateway.state.store import Batch, UsageRow, WindowStarts, client_id
from gateway.upstream.instances import build_pools

INF = float("inf")
# Wednesday 9 December 2026, noon UTC: the week began on Monday the 7th, the month on the 1st.
NOW = dt.datetime(2026, 12, 9, 12, 0, tzinfo=dt.timezone.utc).timestamp()


def account(rolling=INF, weekly=INF, monthly=INF, spent=(0.0, 0.0, 0.0)) -> Account:
    held = Account(client_id("alice"), (rolling, weekly, monthly), 1)
    held.stored = list(spent)
    return held


def test_under_the_budget_is_allowed_at_it_is_refused():
    check_budget("alice", account(rolling=2.0, spent=(1.999999, 0, 0)), NOW)
    with pytest.raises(GatewayError) as refused:
        check_budget("alice", account(rolling=2.0, spent=(2.0, 0, 0)), NOW)
    assert refused.value.status == 429
    assert "rolling" in refused.value.message and "$2" in refused.value.message
    # The rolling window frees up as its spending ages out: by 5 hours from now at the latest.
    assert int(refused.value.headers["retry-after"]) == 5 * 3600


def test_the_week_frees_up_on_monday_and_the_month_on_the_first():
    with pytest.raises(GatewayError) as weekly:
        check_budget("alice", account(weekly=10, spent=(0, 10.5, 10.5)), NOW)
    assert int(weekly.value.headers["retry-after"]) == 4 * 86400 + 12 * 3600  # Monday 14th
    assert "2026-12-14 00:00 UTC" in weekly.value.message
    with pytest.raises(GatewayError) as monthly:
        check_budget("alice", account(monthly=30, spent=(0, 0, 30)), NOW)
    assert "2027-01-01 00:00 UTC" in monthly.value.message


def test_a_client_without_a_budget_is_never_refused():
    check_budget("bob", account(spent=(1e6, 1e6, 1e6)), NOW)
    check_budget("bob", None, NOW)


def test_the_request_that_crosses_is_counted_and_the_next_refused(tmp_path):
    path = tmp_path / "gateway.yaml"
    path.write_text("server:\n  clients:\n    - {name: alice, key: alice-key-01, budget: "
                    "{rolling: 1.0}}\nstate: {backend: memory}\n")
    config = load_config(str(path))
    pools = build_pools(config, {"OPENCODE_GO_API_KEY": "k"})
    book = KeyBook(config, pools, MemoryStore(config.state))
    book.set_clients({"alice": (1.0, INF, INF)})
    [instance] = pools["opencode-go"].instances
    alice = book.clients["alice"]
    book.record(instance, "glm-5.1", None, 0.75, "alice", "opencode")
    check_budget("alice", alice)           # 0.75 of 1.00: the next request may start
    book.record(instance, "glm-5.1", None, 0.75, "alice", "opencode")  # it crossed: 1.50
    with pytest.raises(GatewayError):
        check_budget("alice", alice)
    asyncio.run(book.sync())               # what the store holds now is the same
    assert alice.spent(0) == pytest.approx(1.5) and alice.pending == pytest.approx(0)
    with pytest.raises(GatewayError):
        check_budget("alice", alice)
    # The key's own ledger counts both too; another client's spend is not alice's.
    assert book.accounts[instance.key_id].spent(0) == pytest.approx(1.5)
    book.record(instance, "glm-5.1", None, 5.0, "anonymous", "other")
    assert alice.spent(0) == pytest.approx(1.5)


def test_the_store_sums_a_clients_windows_to_their_edges():
    store = MemoryStore(State())
    now = NOW
    rolling_from = rolling_start_minute(now)
    monday = int(week_start(now).timestamp() // 60)

    def spend(minute, dollars, client="alice"):
        return UsageRow("key1", "glm-5.1", minute, 1, 0, 0, 0, dollars, client, "opencode")

    asyncio.run(store.record(Batch(usage=[
        spend(rolling_from - 1, 1.0),   # just left the rolling window
        spend(rolling_from, 2.0),       # its first minute
        spend(minute_of(now), 4.0),     # now
        spend(monday - 1, 8.0),         # Sunday 23:59: last week, this month
        spend(minute_of(now), 16.0, client="bob")])))
    starts = WindowStarts(rolling_from, monday // 1440, (monday - 6 * 1440) // 1440)
    snapshot = asyncio.run(store.snapshot({client_id("alice"): starts}, None))
    assert snapshot.spent[client_id("alice")] == (6.0, 7.0, 15.0)
