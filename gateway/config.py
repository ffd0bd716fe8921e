"""The gateway's configuration: one typed struct tree, loaded once at start-up.

With no file the built-in default applies: the `opencode-go` backend at OpenCode Go's URL, keyed
by `OPENCODE_GO_API_KEY`. A YAML file overrides any part of it. Strings in the file may use
`${VAR}` and `${VAR:-default}`; they are expanded from the environment before the file is checked
against the structs, so a bad value is reported with its field path and the file's name.
"""
from __future__ import annotations

import os
import re
from typing import Annotated, Literal

import msgspec

DEFAULT_API_URL = "https://opencode.ai/zen/go/v1"
DEFAULT_BACKEND = "opencode-go"

Protocol = Literal["openai", "anthropic", "responses", "gemini"]

# Ranges every value is checked against when a file is loaded (msgspec names the field).
Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
Count = Annotated[int, msgspec.Meta(ge=0)]          # 0 allowed (off / none)
Positive = Annotated[int, msgspec.Meta(ge=1)]
Bytes = Annotated[int, msgspec.Meta(ge=1024)]
Seconds = Annotated[float, msgspec.Meta(gt=0)]      # a timeout or a period
Pause = Annotated[float, msgspec.Meta(ge=0)]        # 0 allowed (off / at once)
Dollars = Annotated[float, msgspec.Meta(gt=0)]
Share = Annotated[float, msgspec.Meta(gt=0, le=1)]


class BackendExtra(msgspec.Struct, forbid_unknown_fields=True):
    # model id -> upstream wire; an id named here becomes routable as a bare id too.
    model_protocol_overrides: dict[str, Protocol] = {}


class InstanceSettings(msgspec.Struct, forbid_unknown_fields=True):
    # Replaces the gateway's own `opencode-gateway/<version>` at the end of this instance's
    # upstream User-Agent; never empty (OpenCode Go blocks calls without one).
    user_agent: str | None = None


class Backend(msgspec.Struct, forbid_unknown_fields=True):
    # Empty means: from the environment, `<NAME>_API_URL` / `<NAME>_API_KEY` (see env_prefix).
    # Either layout of OpenCode Go: https://opencode.ai/zen/go[/v1] or .../inference/go.
    api_url: str = ""
    api_key: str = ""
    # Every instance's own User-Agent token (else `<NAME>_USER_AGENT`, else the gateway's).
    user_agent: str | None = None
    # Per instance (`opencode-go.2`): settings that differ from the backend's.
    instances: dict[str, InstanceSettings] = {}
    extra: BackendExtra = msgspec.field(default_factory=BackendExtra)


class Server(msgspec.Struct, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: Port = 8000
    workers: Annotated[int, msgspec.Meta(ge=1, le=256)] = 1
    # Client keys; empty leaves the gateway open. GATEWAY_API_KEYS (comma-separated) adds to them.
    api_keys: list[str] = []
    max_body_bytes: Positive = 32 * 1024 * 1024
    max_header_bytes: Bytes = 64 * 1024
    # Longest time a client may take to send a request body (a slow sender holds a connection
    # and a worker task; hypercorn bounds only the headers).
    body_timeout: Seconds = 60.0
    # Seconds in-flight requests get to finish after SIGTERM before they are cut.
    graceful_timeout: Pause = 30.0
    # hypercorn's defaults (100, 5 s, 1000) distort a load test and drop idle nginx keep-alives.
    backlog: Positive = 2048
    keep_alive_timeout: Seconds = 75.0
    access_log: bool = True


class Upstream(msgspec.Struct, forbid_unknown_fields=True):
    connect_timeout: Seconds = 10.0
    # Longest wait for the answer to start (its response headers); for a non-streamed answer
    # also the longest silence while it is read.
    first_byte_timeout: Seconds = 300.0
    # Longest silence between two chunks of a streamed answer (a stalled stream ends after it).
    idle_timeout: Seconds = 300.0
    # Concurrent upstream connections per worker; more requests wait for a free one. 0 = no cap.
    max_connections: Count = 1024
    # How many other instances an unpinned request may move to after a failure before any byte.
    failover_hops: Count = 2
    # Consecutive failures that take an instance out, and for how long.
    cooldown_after_failures: Positive = 3
    cooldown_seconds: Pause = 10.0
    # How often the upstream's model list (GET {api_url}/models) is read; 0 = never.
    models_refresh_seconds: Pause = 300.0
    # Bounds on what the gateway holds of an answer: a whole (non-streamed) answer, and one
    # event of a stream it translates (a line without an end would otherwise grow forever).
    max_answer_bytes: Bytes = 64 * 1024 * 1024
    max_event_bytes: Bytes = 8 * 1024 * 1024


class Translation(msgspec.Struct, forbid_unknown_fields=True):
    # Anthropic requires max_tokens; used when an OpenAI client sent none.
    default_max_tokens: Positive = 8192


class State(msgspec.Struct, forbid_unknown_fields=True):
    # memory: one process, nothing kept; sqlite: one machine, any number of workers; redis:
    # many machines.
    backend: Literal["memory", "sqlite", "redis"] = "sqlite"
    # The SQLite file; empty: $STATE_DIRECTORY (systemd), else $XDG_STATE_HOME or
    # ~/.local/state, under opencode-gateway/state.sqlite3.
    path: str = ""
    url: str = "redis://127.0.0.1:6379/0"
    # How often a worker writes what it gathered and reads what the others wrote (at once when
    # a key starts a rest).
    sync_seconds: Annotated[float, msgspec.Meta(gt=0, le=60)] = 0.5
    # How long a conversation is remembered on its key after its last turn.
    session_ttl_hours: Seconds = 6.0
    # Reasoning remembered for models that need it back on tool-call turns.
    reasoning_ttl_hours: Seconds = 24.0
    max_reasoning: Positive = 100_000


class WindowLimits(msgspec.Struct, forbid_unknown_fields=True):
    """Dollars a key may spend per window (OpenCode Go's subscription limits)."""
    rolling: Dollars = 12.0   # the rolling 5 hours
    weekly: Dollars = 30.0    # the calendar week, UTC, from Monday
    monthly: Dollars = 60.0   # the month from the key's anchor day


class KeyQuota(msgspec.Struct, forbid_unknown_fields=True):
    limits: WindowLimits | None = None
    anchor_day: Annotated[int, msgspec.Meta(ge=1, le=31)] = 1  # the subscription's day


class Price(msgspec.Struct, forbid_unknown_fields=True):
    """USD per million tokens; `multiplier` is the model's usage multiplier."""
    input: Pause
    output: Pause
    cache_read: Pause = 0.0
    multiplier: Annotated[float, msgspec.Meta(gt=0)] = 1.0


class Quota(msgspec.Struct, forbid_unknown_fields=True):
    # A key past this share of any window takes no new conversations.
    threshold: Share = 0.95
    limits: WindowLimits = msgspec.field(default_factory=WindowLimits)
    # Per instance (`opencode-go.2`): its own limits and month anchor.
    keys: dict[str, KeyQuota] = {}
    # How often each key's `GET {api_url}/usage` is read; 0 = never.
    usage_poll_seconds: Pause = 300.0
    # Model id -> price, over the built-in table (used when the upstream reports no cost).
    prices: dict[str, Price] = {}


class Config(msgspec.Struct, forbid_unknown_fields=True):
    backends: dict[str, Backend] = msgspec.field(
        default_factory=lambda: {DEFAULT_BACKEND: Backend()})
    server: Server = msgspec.field(default_factory=Server)
    upstream: Upstream = msgspec.field(default_factory=Upstream)
    translation: Translation = msgspec.field(default_factory=Translation)
    state: State = msgspec.field(default_factory=State)
    quota: Quota = msgspec.field(default_factory=Quota)
    rules_dir: str | None = None


class ConfigError(Exception):
    """A config that cannot be used; the message names the file and the field."""


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(text: str, env: dict[str, str]) -> str:
    """`${VAR}` → its value ('' when unset); `${VAR:-default}` → default when unset or empty."""
    def value(match: re.Match) -> str:
        found = env.get(match.group(1), "")
        if not found and match.group(2) is not None:
            return match.group(2)
        return found
    return _VAR.sub(value, text)


def _expand_tree(node, env):
    if isinstance(node, str):
        return expand_env(node, env)
    if isinstance(node, dict):
        return {key: _expand_tree(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [_expand_tree(item, env) for item in node]
    return node


def env_prefix(backend_name: str) -> str:
    """`opencode-go` -> `OPENCODE_GO`: the prefix of the backend's environment variables."""
    return re.sub(r"[^A-Za-z0-9]", "_", backend_name).upper()


def load_config(path: str | None = None, env: dict[str, str] | None = None) -> Config:
    """The built-in default, overridden by the YAML file at `path` if one is given."""
    env = dict(os.environ) if env is None else env
    if path is None:
        return Config()
    try:
        with open(path, "rb") as handle:
            raw = msgspec.yaml.decode(handle.read())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (OSError, msgspec.DecodeError) as exc:
        raise ConfigError(f"{path}: not readable as YAML: {exc}") from None
    if raw is None:
        return Config()
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping (backends:, server:, ...)")
    try:
        config = msgspec.convert(_expand_tree(raw, env), Config)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    _check(config, path)
    return config


_URL = re.compile(r"https?://[^\s/?#]+(/[^\s]*)?")


def check_api_url(url: str, where: str) -> None:
    """An upstream URL must be http(s)://host[/path]; `where` names the field or variable."""
    if not _URL.fullmatch(url):
        raise ConfigError(f"{where}: {url!r} is not an http(s) URL; OpenCode Go's is "
                          f"{DEFAULT_API_URL}")


def _check(config: Config, path: str) -> None:
    """What the structs' ranges cannot say, checked once at load."""
    if not config.backends:
        raise ConfigError(f"{path}: `backends` is empty; name at least one backend")
    for name, backend in config.backends.items():
        if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
            raise ConfigError(f"{path}: backend name {name!r} may only hold letters, digits, - and _"
                              " (`.`, `:` and `/` separate backend, instance and model)")
        if backend.api_url:
            check_api_url(backend.api_url, f"{path}: `backends.{name}.api_url`")
    for index, key in enumerate(config.server.api_keys):
        if not key.strip():
            # "${GATEWAY_KEY}" with the variable unset: client keys were asked for, and a
            # gateway that asked for them must not start open.
            raise ConfigError(f"{path}: `server.api_keys[{index}]` is empty (is the variable it "
                              "names set?); the gateway will not start open when client keys "
                              "were asked for")
    if config.state.backend == "redis" and not config.state.url.startswith(
            ("redis://", "rediss://", "unix://")):
        shown = re.sub(r"//[^/@]*@", "//***@", config.state.url)  # no password in any message
        raise ConfigError(f"{path}: `state.url` must be a redis://, rediss:// or unix:// URL, "
                          f"got {shown!r}")
