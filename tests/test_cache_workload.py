"""deploy/bench/cache_workload.py, run small: the gateway against round robin on the fake's prompt
cache model with keys that start part spent. (Full-size figures: docs/key-placement.md.)"""
import importlib.util
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "deploy" / "bench" / "cache_workload.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("cache_workload", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module   # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_the_workload_runs_small_and_the_gateway_keeps_the_cache_under_pressure():
    bench = load_bench()
    outcomes = bench.run(conversations=4, turns=6, lifetime=1.5, seed=3,
                         only=("gateway, under pressure", "round robin, under pressure"))
    gateway, robin = outcomes
    assert robin.cached_tokens == 0 and robin.moves > 0      # every turn on another key
    assert gateway.turns > robin.turns
    assert gateway.dollars_per_turn < robin.dollars_per_turn
    assert gateway.of_best >= 0.9
    assert gateway.decisions.get("placement") == 4
    printed = bench.report(outcomes)
    assert "gateway, under pressure" in printed and "round robin, under pressure" in printed
    assert "x the turns of round robin" in printed
