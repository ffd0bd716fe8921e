"""Instance pool: round robin, resting after 429 / repeated failures, pinning, masked keys."""
import time

from gateway.config import Upstream
from gateway.upstream.instances import Instance, InstancePool, mask_key


def pool(count=3, **settings):
    instances = [Instance(f"b.{n}", "b", n, "http://up", f"key-{n}") for n in range(1, count + 1)]
    return InstancePool("b", instances, Upstream(**settings))


def test_round_robin_spreads_requests():
    p = pool()
    assert [p.choose().number for _ in range(6)] == [1, 2, 3, 1, 2, 3]


def test_retry_after_rests_an_instance_until_it_passes():
    p = pool()
    first = p.choose()
    p.failed(first, retry_after=60)
    assert first not in [p.choose() for _ in range(6)]
    first.resting_until = time.monotonic() - 1  # as if the minute had passed
    assert first in [p.choose() for _ in range(3)]


def test_repeated_failures_open_a_cooldown_and_success_resets_the_count():
    p = pool(cooldown_after_failures=2, cooldown_seconds=30)
    one = p.instances[0]
    p.failed(one)
    assert one.resting_until == 0.0
    p.succeeded(one)
    p.failed(one)
    assert one.resting_until == 0.0  # the success in between reset the run
    p.failed(one)
    assert one.resting_until > time.monotonic() + 20


def test_when_all_rest_the_soonest_back_is_still_tried():
    p = pool(2)
    p.failed(p.instances[0], retry_after=100)
    p.failed(p.instances[1], retry_after=5)
    assert p.choose() is p.instances[1]


def test_avoid_skips_instances_already_tried():
    p = pool(2)
    assert p.choose(avoid=(p.instances[0],)) is p.instances[1]
    assert p.choose(avoid=tuple(p.instances)) is None


def test_pinned_by_number():
    p = pool(2)
    assert p.pinned(2) is p.instances[1]
    assert p.pinned(3) is None


def test_keys_are_masked_in_reprs_and_output():
    instance = Instance("b.1", "b", 1, "http://up", "sk-secret-value-1234")
    assert "secret" not in repr(instance)
    assert mask_key("sk-secret-value-1234") == "****1234"
    assert mask_key("short") == "****"
    assert mask_key("") == "(none)"
