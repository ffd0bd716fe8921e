"""The model catalogue: models.dev's api.json format, the shipped snapshot, `models refresh`,
and the one merged view routing, pricing and the request's fitting ask."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.app import Gateway
from gateway.config import Config, Price, load_config
from gateway.quota.prices import FALLBACK, Prices
from gateway.routing import catalogue_store
from gateway.routing.catalogue import Catalogue
from gateway.routing.models_dev import CatalogueFileError, facts, parse
from gateway.translate.hub import Usage
from tests.fake_upstream import DECEMBER_IDS

REPO = Path(__file__).resolve().parent.parent
# The fake's wire names for the gateway's.
WIRE = {"chat": "openai", "messages": "anthropic", "responses": "responses"}
DECEMBER_MESSAGES_IDS = ["minimax-m2.5", "minimax-m2.7", "minimax-m3", "qwen3.6-plus",
                         "qwen3.7-max", "qwen3.7-plus", "qwen3.8-flash", "qwen3.8-max"]


def provider_object(**models) -> dict:
    return {"id": "opencode-go", "npm": "@ai-sdk/openai-compatible", "models": models}


def model(model_id: str, **fields) -> dict:
    return {"id": model_id, "name": model_id, "reasoning": True,
            "cost": {"input": 1, "output": 2, "cache_read": 0.1},
            "limit": {"context": 100_000, "output": 8_000}, **fields}


def write(path: Path, value) -> Path:
    path.write_text(json.dumps(value) if not isinstance(value, str) else value)
    return path


@pytest.fixture
def state(tmp_path):
    """A config whose state directory is a scratch one."""
    config = load_config(None, {})
    config.state.path = str(tmp_path / "state" / "state.sqlite3")
    return config


# ---- the snapshot ----------------------------------------------------------------------------

def test_the_snapshot_knows_every_december_id_on_its_wire():
    known = catalogue_store.load(Config())
    for model_id, wire in DECEMBER_IDS.items():
        assert known.models[model_id].wire == WIRE[wire], model_id
    for model_id in DECEMBER_MESSAGES_IDS:
        assert known.models[model_id].wire == "anthropic", model_id
    assert known.snapshot_day == "2026-12-06"


def test_ids_models_dev_lacked_say_where_their_facts_came_from():
    known = catalogue_store.load(Config()).models
    assert "UPSTREAM.md" in known["grok-4.7"].wire_source
    assert "models.dev" in known["glm-5.2"].wire_source
    assert "UPSTREAM.md" in known["glm-5.2"].effort_source  # GLM's efforts moved since


def test_the_snapshot_is_in_models_dev_format_and_ships_with_the_package():
    raw = (REPO / "gateway/routing/catalogue_snapshot.json").read_bytes()
    assert set(json.loads(raw)) == {"opencode-go"}
    assert parse(raw, "snapshot").models["glm-5.3"].limit.output == 131_072
    assert '"gateway.routing" = ["*.json"]' in (REPO / "pyproject.toml").read_text()


# ---- the format ------------------------------------------------------------------------------

def test_whole_api_json_and_provider_object_both_read(tmp_path):
    obj = provider_object(**{"glm-9": model("glm-9")})
    whole = {"openai": {"id": "openai", "models": {}}, "opencode-go": obj}
    for value in (obj, whole):
        provider = parse(json.dumps(value).encode(), "f.json")
        assert list(provider.models) == ["glm-9"]


@pytest.mark.parametrize("npm, wire", [("@ai-sdk/anthropic", "anthropic"),
                                       ("@ai-sdk/openai", "responses"),
                                       (None, "openai")])
def test_the_sdk_package_is_the_wire(npm, wire):
    fields = {"provider": {"npm": npm}} if npm else {}
    provider = parse(json.dumps(provider_object(m=model("m", **fields))).encode(), "f")
    assert facts(provider, "test")["m"].wire == wire


def test_usage_multiplier_comes_from_the_name():
    provider = parse(json.dumps(provider_object(
        k=model("k", name="Kimi K3 (2x usage)"), m=model("m"))).encode(), "f")
    found = facts(provider, "test")
    assert found["k"].price.multiplier == 2 and found["m"].price.multiplier == 1


@pytest.mark.parametrize("text, named", [
    ("not json", "f.json"),
    (json.dumps({"anthropic": {"models": {}}}), "opencode-go"),
    (json.dumps(provider_object()), "lists no models"),
    (json.dumps(provider_object(bad=model("bad", cost={"input": "cheap"}))), "'bad'"),
    (json.dumps(provider_object(bad=model("bad", limit={"output": -1}))), "'bad'"),
])
def test_a_malformed_file_is_refused_naming_the_file_and_what_is_wrong(text, named):
    with pytest.raises(CatalogueFileError) as refused:
        parse(text.encode(), "f.json")
    assert str(refused.value).startswith("f.json") and named in str(refused.value)


# ---- the merged view -------------------------------------------------------------------------

def test_a_stored_refresh_wins_id_by_id_and_the_snapshot_keeps_the_rest(state):
    refreshed = provider_object(**{"glm-5.3": model("glm-5.3", limit={"output": 64_000}),
                                   "glm-9": model("glm-9")})
    catalogue_store.store(parse(json.dumps(refreshed).encode(), "new"), "new.json",
                          catalogue_store.stored_path(state))
    known = catalogue_store.load(state)
    assert known.refreshed and known.refreshed_from == "new.json"
    assert known.models["glm-5.3"].output_limit == 64_000
    assert known.models["glm-9"].wire == "openai"
    assert known.models["grok-4.7"].wire == "responses"  # only the snapshot knows it


def test_a_broken_stored_file_falls_back_to_the_snapshot(state):
    path = catalogue_store.stored_path(state)
    path.parent.mkdir(parents=True)
    path.write_text("{half")
    known = catalogue_store.load(state)
    assert known.refreshed is None and known.models["glm-5.3"].output_limit == 131_072


def test_an_id_only_the_live_list_has_routes_on_chat_and_shows_as_such():
    catalogue = Catalogue({})
    catalogue.upstream_ids = frozenset({"glm-5.3", "brand-new-7"})
    assert catalogue.listed("brand-new-7") and not catalogue.listed("glm-5.2")
    wire, source = catalogue.wire("brand-new-7")
    assert wire == "openai" and "default" in source
    row = next(row for row in catalogue.rows() if row[0] == "brand-new-7")
    assert row[3] == "upstream list"
    assert next(row for row in catalogue.rows() if row[0] == "glm-5.3")[3] == \
        "catalogue, upstream list"


def test_without_a_live_list_every_catalogue_id_is_listed_deprecated_ones_too():
    catalogue = Catalogue({"my-alias": "openai"})
    assert catalogue.listed("grok-4.7") and catalogue.listed("gpt-5.6-luna")
    assert not catalogue.listed("brand-new-7")
    assert {"grok-4.7", "gpt-5.6-luna", "my-alias"} <= set(catalogue.advertised())
    assert "gpt-5.6-luna" not in catalogue.current  # deprecated: doctor does not probe it


def test_overrides_and_learned_wires_sit_on_top_of_the_catalogue():
    catalogue = Catalogue({"grok-4.7": "openai"})
    assert catalogue.wire("grok-4.7") == ("openai", "override")
    catalogue.learn("grok-4.6", "openai")
    assert catalogue.wire("grok-4.6") == ("openai", "learned")
    assert catalogue.wire("grok-5") == ("responses", "family rule grok*")


# ---- pricing ---------------------------------------------------------------------------------

@pytest.mark.parametrize("model_id", sorted([*DECEMBER_IDS, *DECEMBER_MESSAGES_IDS]))
def test_the_ledger_prices_every_december_id_from_the_catalogue(model_id):
    env = {"OPENCODE_GO_API_KEY": "k"}
    gateway = Gateway(load_config(None, env), env=env)
    price = gateway.known_models.models[model_id].price
    assert price is not None and price != FALLBACK
    instance = gateway.pools["opencode-go"].instances[0]
    account = gateway.book._by_instance[instance.name]
    before = account.pending
    gateway.book.record(instance, model_id, Usage(input_tokens=1_000_000, cached_tokens=500_000,
                                                  output_tokens=1_000_000), None)
    expected = (500_000 * price.input + 500_000 * price.cache_read
                + 1_000_000 * price.output) / 1e6 * price.multiplier
    assert account.pending - before == pytest.approx(expected)


def test_config_prices_sit_on_top_of_the_catalogues():
    prices = Prices({"glm-5.3": Price(9, 9)})
    assert prices.price("glm-5.3") == Price(9, 9)
    assert prices.price("grok-4.7").output == 6.0
    assert prices.price("never-heard-of") == FALLBACK


# ---- the CLI ---------------------------------------------------------------------------------

def cli(*args, home: Path) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "XDG_STATE_HOME": str(home), "OPENCODE_GO_API_KEY": "k"}
    return subprocess.run([sys.executable, "-m", "gateway", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)


def test_models_refresh_stores_a_good_file_and_models_shows_it(tmp_path):
    good = write(tmp_path / "api.json", {"opencode-go": provider_object(
        **{"glm-9": model("glm-9"), "gpt-7-nova": model("gpt-7-nova",
                                                        provider={"npm": "@ai-sdk/openai"})})})
    done = cli("models", "refresh", str(good), home=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "glm-9" in done.stdout  # among the new ids
    assert (tmp_path / "opencode-gateway" / catalogue_store.STORED_NAME).is_file()
    shown = cli("models", "--offline", home=tmp_path)
    assert shown.returncode == 0, shown.stderr
    lines = {line.split()[0]: line for line in shown.stdout.splitlines() if line.startswith("  ")}
    assert "responses" in lines["gpt-7-nova"] and "8000/100000" in lines["gpt-7-nova"]
    assert "1/2/0.1" in lines["glm-9"]
    assert "responses" in lines["grok-4.7"] and "500000/500000" in lines["grok-4.7"]
    assert str(good) in shown.stdout  # where the catalogue came from


def test_models_refresh_refuses_a_malformed_file_and_keeps_the_old_catalogue(tmp_path):
    good = write(tmp_path / "good.json", provider_object(**{"glm-9": model("glm-9")}))
    assert cli("models", "refresh", str(good), home=tmp_path).returncode == 0
    stored = (tmp_path / "opencode-gateway" / catalogue_store.STORED_NAME).read_bytes()
    bad = write(tmp_path / "bad.json", provider_object(
        **{"glm-10": model("glm-10", limit={"output": "lots"})}))
    done = cli("models", "refresh", str(bad), home=tmp_path)
    assert done.returncode == 1
    assert str(bad) in done.stderr and "glm-10" in done.stderr
    assert (tmp_path / "opencode-gateway" / catalogue_store.STORED_NAME).read_bytes() == stored


@pytest.fixture
def served(tmp_path):
    """A local HTTP server over `tmp_path/www`: (directory, base URL)."""
    import functools
    import http.server
    import threading
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_models_refresh_fetches_a_url(tmp_path, served):
    root, base = served
    write(root / "api.json", {"opencode-go": provider_object(**{"glm-9": model("glm-9")})})
    done = cli("models", "refresh", base + "/api.json", home=tmp_path)
    assert done.returncode == 0, done.stderr
    stored = catalogue_store.read_file(tmp_path / "opencode-gateway" / catalogue_store.STORED_NAME)
    assert list(stored.models) == ["glm-9"] and stored.x_gateway.refreshed_from.endswith("api.json")
    missing = cli("models", "refresh", base + "/gone.json", home=tmp_path)
    assert missing.returncode == 1 and "404" in missing.stderr and "gone.json" in missing.stderr
