"""`server.clients` and `server.admin_keys` in the config: what loads, and every refusal naming
the client and the field."""
import pytest

from gateway.access.agents import agent_of
from gateway.access.clients import Directory, key_hash
from gateway.config import ConfigError, load_config
from gateway.state.store import StoredClient

GOOD = """
server:
  api_keys: ["anon-key-123"]
  admin_keys: ["${ADMIN_KEY}"]
  clients:
    - name: alice
      key: "${ALICE_KEY}"
      budget: {rolling: 2.00, weekly: 10, monthly: 30}
      models: ["glm-*", "kimi-*"]
      rpm: 60
    - name: bob
      key: "bob-key-456"
"""
ENV = {"ADMIN_KEY": "admin-key-789", "ALICE_KEY": "alice-key-012"}


def write(tmp_path, text):
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    return str(path)


def test_clients_load_with_budgets_models_and_rates(tmp_path):
    config = load_config(write(tmp_path, GOOD), env=ENV)
    alice, bob = config.server.clients
    assert (alice.name, alice.key, alice.rpm) == ("alice", "alice-key-012", 60)
    assert (alice.budget.rolling, alice.budget.weekly, alice.budget.monthly) == (2.0, 10, 30)
    assert alice.models == ["glm-*", "kimi-*"]
    assert bob.models is None and bob.budget.rolling is None
    assert config.server.admin_keys == ["admin-key-789"]


@pytest.mark.parametrize("change, named", [
    # an unset variable: named, with the client
    (lambda t: t, ["ALICE_KEY", "alice"]),
    (lambda t: t.replace("rpm: 60", "rpm: 60\n      budgett: {rolling: 1}"), ["alice", "budgett"]),
    (lambda t: t.replace("rolling: 2.00", "rolling: 0"), ["alice", "budget.rolling"]),
    (lambda t: t.replace("weekly: 10", "weekly: -3"), ["alice", "budget.weekly"]),
    (lambda t: t.replace("monthly: 30", "monthly: lots"), ["alice", "budget.monthly"]),
    (lambda t: t.replace("name: bob", "name: alice"), ["alice", "name"]),
    (lambda t: t.replace("bob-key-456", "${ALICE_KEY}"), ["bob", "key", "alice"]),
    (lambda t: t.replace("anon-key-123", "bob-key-456"), ["bob", "api_keys"]),
    (lambda t: t.replace("name: bob", "name: anonymous"), ["anonymous"]),
    (lambda t: t.replace("name: bob", "name: admin"), ["admin"]),
])
def test_a_bad_client_refuses_the_start_naming_client_and_field(tmp_path, change, named):
    env = dict(ENV)
    if named[0] == "ALICE_KEY":
        del env["ALICE_KEY"]
    with pytest.raises(ConfigError) as refused:
        load_config(write(tmp_path, change(GOOD)), env=env)
    message = str(refused.value)
    for word in named:
        assert word in message, message


def test_keys_are_looked_up_as_hashes_and_name_who_asks(tmp_path):
    config = load_config(write(tmp_path, GOOD), env=ENV)
    directory = Directory(config)
    assert directory.who("alice-key-012").name == "alice"
    assert directory.who("admin-key-789").kind == "admin"
    assert directory.who("anon-key-123").kind == "anonymous"
    assert directory.who("alice-key-01") is None
    assert directory.who(None) is None
    assert directory.admin_required
    alice = directory.who("alice-key-012")
    assert alice.may_use("glm-5.1") and alice.may_use("opencode-go/kimi-k2.5")
    assert not alice.may_use("deepseek-v4-pro")
    # A client added at run time, then revoked; a config client revoked from the store.
    directory.update_stored({"carol": StoredClient("carol", key_hash("carol-key-345"),
                                                   {"weekly": 5.0})})
    assert directory.who("carol-key-345").budget == (float("inf"), 5.0, float("inf"))
    directory.update_stored({"carol": StoredClient("carol", revoked=True),
                             "bob": StoredClient("bob", revoked=True)})
    assert directory.who("carol-key-345") is None
    assert directory.who("bob-key-456") is None
    assert directory.who("alice-key-012").name == "alice"


def test_an_open_gateway_lets_anyone_in_and_shows_usage_to_all():
    directory = Directory(load_config(None))
    assert directory.who(None).kind == "anonymous"
    assert not directory.admin_required


@pytest.mark.parametrize("user_agent, agent", [
    ("claude-cli/2.1.3 (external, cli)", "claude-code"),
    ("opencode/1.0.150 ai-sdk/provider-utils/3.0.10", "opencode"),
    ("codex_cli_rs/0.63.0 (Ubuntu 24.4.0; x86_64) xterm", "codex"),
    ("codex_exec/0.63.0", "codex"),
    ("GeminiCLI-tui/0.61.0/glm-5.1 (linux; x64; terminal)", "gemini-cli"),
    ("OpenAI/Python 1.109.1", "openai-python"),
    ("AsyncOpenAI/Python 1.109.1", "openai-python"),
    ("Anthropic/Python 0.69.0", "anthropic-python"),
    ("curl/8.5.0", "other"),
    (None, "other"),
])
def test_the_agent_is_read_from_the_user_agent(user_agent, agent):
    assert agent_of(user_agent) == agent


# --- routing.fallbacks -------------------------------------------------------------------------

def fallbacks_config(tmp_path, text):
    from gateway.routing.fallbacks import Fallbacks
    from gateway.routing.router import build_catalogues
    config = load_config(write(tmp_path, "routing:\n  fallbacks:\n" + text))
    return Fallbacks(config, build_catalogues(config))


def test_fallbacks_are_followed_in_order_then_their_own(tmp_path):
    fallbacks = fallbacks_config(tmp_path, "    deepseek-v4-pro: [deepseek-v4-flash, glm-5.1]\n"
                                           "    deepseek-v4-flash: [kimi-k2.5, glm-5.1]\n")
    assert fallbacks.after("deepseek-v4-pro") == ["deepseek-v4-flash", "kimi-k2.5", "glm-5.1"]
    assert fallbacks.after("glm-5.1") == []


@pytest.mark.parametrize("text, named", [
    ("    deepseek-v4-pro: [glm-9000]\n", ["glm-9000", "routing.fallbacks.deepseek-v4-pro"]),
    ("    nope-1: [glm-5.1]\n", ["nope-1"]),
    ("    glm-5.1: [glm-5.1]\n", ["glm-5.1", "itself"]),
    ("    glm-5.1: [kimi-k2.5]\n    kimi-k2.5: [deepseek-v4-pro]\n"
     "    deepseek-v4-pro: [glm-5.1]\n", ["cycle", "glm-5.1 -> kimi-k2.5 -> deepseek-v4-pro"]),
])
def test_unknown_ids_and_cycles_refuse_the_start(tmp_path, text, named):
    with pytest.raises(ConfigError) as refused:
        fallbacks_config(tmp_path, text)
    for word in named:
        assert word in str(refused.value)
