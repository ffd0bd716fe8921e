"""Configuration: built-in default, YAML override, ${VAR} expansion, errors naming file and field."""
import pytest

from gateway.config import DEFAULT_API_URL, ConfigError, expand_env, load_config
from gateway.upstream.instances import build_pools


def write(tmp_path, text):
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    return str(path)


def test_no_file_gives_the_opencode_go_backend_keyed_from_the_environment():
    config = load_config(None)
    pools = build_pools(config, {"OPENCODE_GO_API_KEY": "sk-main"})
    [instance] = pools["opencode-go"].instances
    assert instance.name == "opencode-go"
    assert instance.api_url == DEFAULT_API_URL
    assert instance.api_key == "sk-main"


def test_api_url_can_come_from_the_environment_without_a_file():
    pools = build_pools(load_config(None), {"OPENCODE_GO_API_URL": "http://127.0.0.1:9/v1/"})
    assert pools["opencode-go"].instances[0].api_url == "http://127.0.0.1:9/v1"


def test_yaml_overrides_and_expands_variables(tmp_path):
    path = write(tmp_path, """
backends:
  opencode-go:
    api_key: "${MY_KEY}"
    api_url: "${MY_URL:-http://localhost:9100/v1}"
    extra:
      model_protocol_overrides:
        custom-model: anthropic
server:
  port: 9000
""")
    config = load_config(path, env={"MY_KEY": "sk-from-env"})
    backend = config.backends["opencode-go"]
    assert backend.api_key == "sk-from-env"
    assert backend.api_url == "http://localhost:9100/v1"
    assert backend.extra.model_protocol_overrides == {"custom-model": "anthropic"}
    assert config.server.port == 9000
    assert config.server.host == "127.0.0.1"  # untouched defaults stay


@pytest.mark.parametrize("text, env, expected", [
    ("${A}", {"A": "x"}, "x"),
    ("${A}", {}, ""),
    ("${A:-fallback}", {}, "fallback"),
    ("${A:-fallback}", {"A": ""}, "fallback"),
    ("${A:-fallback}", {"A": "set"}, "set"),
    ("pre-${A}-post", {"A": "mid"}, "pre-mid-post"),
    ("no variables", {}, "no variables"),
])
def test_env_expansion(text, env, expected):
    assert expand_env(text, env) == expected


def test_unset_variable_stops_the_load_naming_the_field_and_the_fix(tmp_path):
    path = write(tmp_path, 'backends:\n  opencode-go:\n    api_key: "${UNSET_KEY}"\n')
    with pytest.raises(ConfigError) as error:
        load_config(path, env={})
    message = str(error.value)
    assert path in message and "`backends.opencode-go.api_key`" in message
    assert "UNSET_KEY is not set" in message and "${UNSET_KEY:-}" in message


def test_bad_type_names_the_file_and_the_field(tmp_path):
    path = write(tmp_path, "server:\n  port: not-a-number\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert path in str(error.value)
    assert "$.server.port" in str(error.value)


def test_unknown_field_is_an_error_not_silently_ignored(tmp_path):
    path = write(tmp_path, "backends:\n  opencode-go:\n    api_ulr: http://typo\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert "api_ulr" in str(error.value)


def test_bad_protocol_override_is_named(tmp_path):
    path = write(tmp_path, "backends:\n  opencode-go:\n    extra:\n      model_protocol_overrides:\n"
                           "        x: grpc\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert "model_protocol_overrides" in str(error.value)


def test_missing_file_and_broken_yaml_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(str(tmp_path / "absent.yaml"))
    with pytest.raises(ConfigError, match="YAML"):
        load_config(write(tmp_path, "backends: [unclosed\n"))


def test_numbered_keys_make_instances_that_inherit_the_backend(tmp_path):
    path = write(tmp_path, "backends:\n  opencode-go:\n    api_url: http://up/v1\n")
    env = {"OPENCODE_GO_API_KEY_1": "k1", "OPENCODE_GO_API_KEY_2": "k2", "OPENCODE_GO_API_KEY": "base"}
    pool = build_pools(load_config(path, env), env)["opencode-go"]
    assert [(i.name, i.number, i.api_key, i.api_url) for i in pool.instances] == [
        ("opencode-go.1", 1, "k1", "http://up/v1"),
        ("opencode-go.2", 2, "k2", "http://up/v1"),
    ]
