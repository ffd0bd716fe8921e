"""The gateway's configuration: one typed struct tree, loaded once at start-up.

With no file the built-in default applies: the `opencode-go` backend at OpenCode Go's URL, keyed
by `OPENCODE_GO_API_KEY`. A YAML file overrides any part of it. Strings in the file may use
`${VAR}` and `${VAR:-default}`; they are expanded from the environment before the file is checked
against the structs, so a bad value is reported with its field path and the file's name. A
`${VAR}` whose variable is not set stops the load, naming VAR and the field (`${VAR:-}` says an
empty value is meant).
"""
from __future__ import annotations

import os
import re
from typing import Annotated, Any, Literal

import msgspec
from msgspec import inspect as mi

from gateway.masking import mask_url
from gateway.suggest import did_you_mean

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
    api_key: str = ""  # the OpenCode Go key; empty: from `<NAME>_API_KEY` (or `_API_KEY_1..N`)
    # Every instance's own User-Agent token (else `<NAME>_USER_AGENT`, else the gateway's).
    user_agent: str | None = None
    # Per instance (`opencode-go.2`): settings that differ from the backend's.
    instances: dict[str, InstanceSettings] = {}
    extra: BackendExtra = msgspec.field(default_factory=BackendExtra)  # per-backend extras


class ClientBudget(msgspec.Struct, forbid_unknown_fields=True):
    """Dollars a named client may spend per window (the key's windows: the rolling 5 hours, the
    week from Monday, the month from the 1st, UTC); an absent window has no budget."""
    rolling: Dollars | None = None
    weekly: Dollars | None = None
    monthly: Dollars | None = None


class Client(msgspec.Struct, forbid_unknown_fields=True):
    """A named client of a shared subscription (`server.clients`)."""
    name: str
    key: str
    budget: ClientBudget = msgspec.field(default_factory=ClientBudget)
    # Model id globs (`glm-*`) the client may use; absent: every model.
    models: list[str] | None = None
    # Requests per minute, per worker process; absent: no cap.
    rpm: Positive | None = None


class Server(msgspec.Struct, forbid_unknown_fields=True):
    host: str = "127.0.0.1"  # the address to listen on; 0.0.0.0 for every interface
    port: Port = 8000  # the port to listen on
    workers: Annotated[int, msgspec.Meta(ge=1, le=256)] = 1  # worker processes sharing the port
    # Client keys; empty leaves the gateway open. GATEWAY_API_KEYS (comma-separated) adds to them.
    api_keys: list[str] = []
    # Keys that may see everyone's usage and the dashboard (and use every model, unbudgeted).
    admin_keys: list[str] = []
    # Named clients with their own key, budget, model list and request rate (docs/sharing.md).
    clients: list[Client] = []
    max_body_bytes: Positive = 32 * 1024 * 1024  # larger bodies get 413 before they are read
    max_header_bytes: Bytes = 64 * 1024  # larger header blocks get 431
    # Bounds on what one body holds, so that no request's decoding holds the event loop long
    # (decoding is a C call that no other request can interrupt): JSON objects and arrays in
    # all (counted as the body arrives, before it is decoded), and the counts the frontends
    # walk: messages (or `input` items), tools, content parts of one message.
    max_body_containers: Positive = 50_000
    max_messages: Positive = 10_000  # messages (or Responses `input` items) in one request
    max_tools: Positive = 1_000  # tools in one request
    max_parts: Positive = 10_000  # content parts of one message
    # Longest time a client may take to send a request body (a slow sender holds a connection
    # and a worker task; hypercorn bounds only the headers).
    body_timeout: Seconds = 60.0
    # Longest time a client may leave an answer's bytes unread (its receive window shut)
    # before its connection is closed and the upstream request with it.
    write_timeout: Seconds = 30.0
    # Seconds in-flight requests get to finish after SIGTERM before they are cut.
    graceful_timeout: Pause = 30.0
    # hypercorn's defaults (100, 5 s, 1000) distort a load test and drop idle nginx keep-alives.
    backlog: Positive = 2048
    keep_alive_timeout: Seconds = 75.0  # above nginx's upstream keepalive_timeout (60 s)
    # Model requests one worker serves at once, streamed or not (each holds a client and an
    # upstream connection); one more gets 503 with Retry-After at once. 0: as many as the
    # worker's open-file limit holds (two descriptors each, after a reserve of 1/32 of it;
    # `serve` raises the soft limit to the hard one). More than 1024 streams also need
    # upstream.max_connections raised.
    max_streams: Count = 0
    access_log: bool = True  # one JSON line per request on standard output


class Upstream(msgspec.Struct, forbid_unknown_fields=True):
    connect_timeout: Seconds = 10.0  # seconds to open a connection to the upstream
    # Longest wait for the answer to start (its response headers); for a non-streamed answer
    # also the longest silence while it is read.
    first_byte_timeout: Seconds = 300.0
    # Longest silence between two chunks of a streamed answer (a stalled stream ends after it).
    idle_timeout: Seconds = 300.0
    # Concurrent upstream connections per worker; more requests wait for a free one. 0 = no cap.
    max_connections: Count = 1024
    # Longest wait for a free one of them (opening it included); past it the request gets 503
    # with Retry-After.
    pool_timeout: Seconds = 30.0
    # How many other instances an unpinned request may move to after a failure before any byte.
    failover_hops: Count = 2
    # Consecutive failures that take an instance out, and for how long.
    cooldown_after_failures: Positive = 3
    cooldown_seconds: Pause = 10.0  # seconds an instance rests after those failures
    # How often the upstream's model list (GET {api_url}/models) is read; 0 = never.
    models_refresh_seconds: Pause = 300.0
    # Bounds on what the gateway holds of an answer: a whole (non-streamed) answer, and one
    # event of a stream it translates (a line without an end would otherwise grow forever).
    max_answer_bytes: Bytes = 64 * 1024 * 1024
    max_event_bytes: Bytes = 8 * 1024 * 1024  # one event of a translated stream


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
    url: str = "redis://127.0.0.1:6379/0"  # the Redis server, for backend: redis
    # How often a worker writes what it gathered and reads what the others wrote (at once when
    # a key starts a rest).
    sync_seconds: Annotated[float, msgspec.Meta(gt=0, le=60)] = 0.5
    # How long a conversation is remembered on its key after its last turn.
    session_ttl_hours: Seconds = 6.0
    # Reasoning remembered for models that need it back on tool-call turns.
    reasoning_ttl_hours: Seconds = 24.0
    max_reasoning: Positive = 100_000  # at most this many reasoning entries are kept


class WindowLimits(msgspec.Struct, forbid_unknown_fields=True):
    """Dollars a key may spend per window (OpenCode Go's subscription limits)."""
    rolling: Dollars = 12.0   # the rolling 5 hours
    weekly: Dollars = 30.0    # the calendar week, UTC, from Monday
    monthly: Dollars = 60.0   # the month from the key's anchor day


class KeyQuota(msgspec.Struct, forbid_unknown_fields=True):
    limits: WindowLimits | None = None  # this key's own limits; null: `quota.limits`
    anchor_day: Annotated[int, msgspec.Meta(ge=1, le=31)] = 1  # the subscription's day


class Price(msgspec.Struct, forbid_unknown_fields=True):
    """USD per million tokens; `multiplier` is the model's usage multiplier."""
    input: Pause  # fresh input tokens
    output: Pause  # output tokens, reasoning included
    cache_read: Pause = 0.0  # input tokens read from the prompt cache
    multiplier: Annotated[float, msgspec.Meta(gt=0)] = 1.0  # the model's usage multiplier


class PromptCache(msgspec.Struct, forbid_unknown_fields=True):
    """How long the upstream keeps a conversation's prompt prefix after its last turn: the key
    choice moves a conversation idle longer than this freely (its cache is cold anyway)."""
    # 5 minutes: what most providers keep (and a conservative guess for the rest).
    lifetime_seconds: Seconds = 300.0
    # Model id prefix -> seconds, over the default; the longest matching prefix wins
    # ({"deepseek-": 3600, "kimi-": 300}).
    families: dict[str, Seconds] = {}


class Quota(msgspec.Struct, forbid_unknown_fields=True):
    # A key past this share of any window takes no new conversations.
    threshold: Share = 0.95
    limits: WindowLimits = msgspec.field(default_factory=WindowLimits)  # every key's, by default
    # Per instance (`opencode-go.2`): its own limits and month anchor.
    keys: dict[str, KeyQuota] = {}
    # How often each key's `GET {api_url}/usage` is read; 0 = never.
    usage_poll_seconds: Pause = 300.0
    # Model id -> price, over the built-in table (used when the upstream reports no cost).
    prices: dict[str, Price] = {}
    # The upstream's prompt cache lifetime, per model family (see rules/10_instance_selection.py).
    prompt_cache: PromptCache = msgspec.field(default_factory=PromptCache)


class Routing(msgspec.Struct, forbid_unknown_fields=True):
    # model id -> the ids to try, in order, when no key can take it (docs/sharing.md).
    fallbacks: dict[str, list[str]] = {}


class Config(msgspec.Struct, forbid_unknown_fields=True):
    # Backend name -> its upstream; the name is the prefix clients use (`opencode-go/glm-5.1`).
    backends: dict[str, Backend] = msgspec.field(
        default_factory=lambda: {DEFAULT_BACKEND: Backend()})
    server: Server = msgspec.field(default_factory=Server)  # the listening side
    upstream: Upstream = msgspec.field(default_factory=Upstream)  # connections to OpenCode Go
    translation: Translation = msgspec.field(default_factory=Translation)  # between protocols
    state: State = msgspec.field(default_factory=State)  # what outlives a request, shared
    quota: Quota = msgspec.field(default_factory=Quota)  # dollar windows per key
    routing: Routing = msgspec.field(default_factory=Routing)  # model fallbacks
    # A directory of extra rule modules, added to the built-in ones.
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


def _expand_tree(node, env, unset: list[tuple[str, str]], field: str = ""):
    """The tree with every string expanded; (field, VAR) of each `${VAR}` (no default) whose
    variable is not set goes to `unset`."""
    if isinstance(node, str):
        for match in _VAR.finditer(node):
            if match.group(2) is None and match.group(1) not in env:
                unset.append((field, match.group(1)))
        return expand_env(node, env)
    if isinstance(node, dict):
        return {key: _expand_tree(value, env, unset, f"{field}.{key}" if field else str(key))
                for key, value in node.items()}
    if isinstance(node, list):
        return [_expand_tree(item, env, unset, f"{field}[{index}]")
                for index, item in enumerate(node)]
    return node


def _expanded(tree: Any, env: dict[str, str], where: str, fix: str) -> Any:
    """`tree` expanded; a `${VAR}` whose variable is not set stops the load (`fix` says what else
    to do, `{variable}` in it naming VAR)."""
    unset: list[tuple[str, str]] = []
    expanded = _expand_tree(tree, env, unset)
    if unset:
        field, variable = unset[0]
        raise ConfigError(f"{where}: `{field}` uses ${{{variable}}}, and {variable} is not set; "
                          f"set it, or {fix.format(variable=variable)}")
    return expanded


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
    _check_clients(raw, env, path)
    expanded = _expanded(raw, env, path, "write ${{{variable}:-}} where an empty value is meant")
    try:
        config = msgspec.convert(expanded, Config)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{path}: {_misspelling(expanded, mi.type_info(Config), '') or exc}") \
            from None
    _check(config, path)
    return config


CLIENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
ANONYMOUS = "anonymous"
RESERVED_NAMES = (ANONYMOUS, "admin")  # what the ledger calls the other keys' requests


def check_client(client: Client, where: str) -> None:
    """What a client's struct cannot say; shared with `opencode-gateway clients`."""
    if not CLIENT_NAME.fullmatch(client.name) or client.name in RESERVED_NAMES:
        raise ConfigError(f"{where}: client name {client.name!r} must be 1-64 letters, digits, "
                          f"`_.@-`, and neither {' nor '.join(map(repr, RESERVED_NAMES))}")
    if len(client.key.strip()) < 8:
        raise ConfigError(f"{where}: client {client.name!r}: `key` must be at least 8 characters")
    for glob in client.models or ():
        if not glob.strip():
            raise ConfigError(f"{where}: client {client.name!r}: `models` holds an empty glob")


def _check_clients(raw: dict, env: dict[str, str], path: str) -> None:
    """Each `server.clients` entry alone, before the whole file, so that every problem names
    the client: an unset `${VAR}` (named), an unknown field, a budget that is no positive
    number, a duplicate name or key."""
    server = raw.get("server")
    entries = server.get("clients") if isinstance(server, dict) else None
    if not isinstance(entries, list):
        return  # absent, or a wrong type the whole-file check names
    names: dict[str, int] = {}
    keys: dict[str, str] = {}
    for index, entry in enumerate(entries):
        where = f"{path}: `server.clients[{index}]`"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where} must be a mapping with name, key, budget, models, rpm")
        name = entry.get("name") if isinstance(entry.get("name"), str) else f"#{index}"
        expanded = _expanded(entry, env, f"{where}: client {name!r}", "remove the client")
        try:
            client = msgspec.convert(expanded, Client)
        except msgspec.ValidationError as exc:
            message, _, at = str(exc).partition(" - at `$")
            field = at.rstrip("`").lstrip(".")
            raise ConfigError(f"{where}: client {name!r}"
                              + (f": `{field}`" if field else "") + f": {message}") from None
        check_client(client, where)
        if client.name in names:
            raise ConfigError(f"{where}: client name {client.name!r} is also "
                              f"`server.clients[{names[client.name]}]`; names must differ")
        names[client.name] = index
        if client.key in keys:
            raise ConfigError(f"{where}: client {client.name!r}: `key` is also client "
                              f"{keys[client.key]!r}'s; every client needs its own key")
        keys[client.key] = client.name



def _misspelling(node, schema, where: str) -> str | None:
    """A field name or a value that is one typo from a known one, said with the fix; None when
    the file's mistake is another kind (msgspec's own message names it then)."""
    if isinstance(schema, mi.UnionType):
        kinds = [t for t in schema.types if not isinstance(t, mi.NoneType)]
        schema = kinds[0] if len(kinds) == 1 else schema
    if isinstance(schema, mi.StructType) and isinstance(node, dict):
        fields = {field.encode_name: field for field in schema.fields}
        for key, value in node.items():
            field = fields.get(key)
            inside = f"`{where}`" if where else "the top level"
            if field is None:
                hint = did_you_mean(str(key), fields, "`{}`".format)
                if hint:
                    return f"unknown field `{key}` in {inside}.{hint}"
                continue
            found = _misspelling(value, field.type, f"{where}.{key}" if where else key)
            if found:
                return found
    elif isinstance(schema, mi.DictType) and isinstance(node, dict):
        for key, value in node.items():
            found = _misspelling(value, schema.value_type, f"{where}.{key}")
            if found:
                return found
    elif isinstance(schema, mi.LiteralType) and isinstance(node, str) \
            and node not in schema.values:
        hint = did_you_mean(node, schema.values, "`{}`".format)
        if hint:
            return (f"`{where}`: `{node}` is not one of " + ", ".join(map(str, schema.values))
                    + "." + hint)
    return None


_URL = re.compile(r"https?://[^\s/?#]+(/[^\s]*)?")


def check_api_url(url: str, where: str) -> None:
    """An upstream URL must be http(s)://host[/path]; `where` names the field or variable."""
    if not _URL.fullmatch(url):
        raise ConfigError(f"{where}: {mask_url(url)!r} is not an http(s) URL; OpenCode Go's is "
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
    for index, key in enumerate(config.server.admin_keys):
        if not key.strip():
            raise ConfigError(f"{path}: `server.admin_keys[{index}]` is empty (is the variable "
                              "it names set?)")
    everyone = [("`server.api_keys`", key) for key in config.server.api_keys] + \
        [("`server.admin_keys`", key) for key in config.server.admin_keys] + \
        [(f"client {client.name!r}", client.key) for client in config.server.clients]
    seen: dict[str, str] = {}
    for owner, key in everyone:
        if key in seen and seen[key] != owner:
            raise ConfigError(f"{path}: {owner} has the same key as {seen[key]}; each key "
                              "must say who is asking")
        seen.setdefault(key, owner)
    if config.state.backend == "redis" and not config.state.url.startswith(
            ("redis://", "rediss://", "unix://")):
        raise ConfigError(f"{path}: `state.url` must be a redis://, rediss:// or unix:// URL, "
                          f"got {mask_url(config.state.url)!r}")
