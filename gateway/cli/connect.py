"""`opencode-gateway connect CLIENT [--write]`: the settings that point a client at this gateway.

Prints them (environment variables and the client's own config file); `--write` merges them into
that file, keeping a timestamped backup of the file as it was. What each client reads and where
is in docs/clients.md; tests/test_connect.py runs each real client on the written settings.
"""
from __future__ import annotations

import json
import re
import shutil
import sys
import time
import tomllib
from pathlib import Path

from gateway.cli.common import load_gateway

CLIENTS = ("claude-code", "opencode", "codex", "gemini-cli")
# The model each client starts on unless --model names another.
DEFAULT_MODELS = {"claude-code": "opencode-go/minimax-m2.7", "opencode": "opencode-go/glm-5.1",
                  "codex": "opencode-go/glm-5.1", "gemini-cli": "opencode-go/glm-5.1"}
PROVIDER = "opencode-go-gateway"   # the provider's name in opencode's and Codex's config
KEY_VARIABLE = "OPENCODE_GATEWAY_KEY"


def add(commands) -> None:
    connect = commands.add_parser(
        "connect", help="print (or --write) the settings that point a client at this gateway",
        description="Print the settings that point CLIENT at this gateway; --write merges them "
                    "into the client's config file, keeping a backup.")
    connect.add_argument("client", choices=CLIENTS)
    connect.add_argument("--write", action="store_true",
                         help="write the settings into the client's config file (backup kept)")
    connect.add_argument("--url", help="the gateway's URL (default: from the config, "
                                       "http://127.0.0.1:8000)")
    connect.add_argument("--model", help="the model the client starts on")
    connect.add_argument("--key", help="a client key, for a gateway with server.api_keys")
    connect.add_argument("--config")
    connect.set_defaults(run=run)


def _url(args, gateway) -> str:
    if args.url:
        return args.url.rstrip("/")
    server = gateway.config.server
    host = "127.0.0.1" if server.host in ("0.0.0.0", "::", "") else server.host
    return f"http://{'[' + host + ']' if ':' in host else host}:{server.port}"


def _backup(path: Path) -> Path | None:
    if not path.exists():
        return None
    copy = path.with_name(f"{path.name}.bak-{time.strftime('%Y%m%d-%H%M%S')}")
    shutil.copy2(path, copy)
    return copy


def _merge_json(path: Path, update) -> None:
    """Read the JSON file (empty if absent), let `update` change it, write it back."""
    settings = json.loads(path.read_text() or "{}") if path.exists() else {}
    if not isinstance(settings, dict):
        raise SystemExit(f"opencode-gateway: {path} does not hold a JSON object; fix or move it")
    update(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings, indent=2) + "\n")


def _claude_code(url, key, model, models, home):
    env = {"ANTHROPIC_BASE_URL": url, "ANTHROPIC_AUTH_TOKEN": key, "ANTHROPIC_MODEL": model,
           # Claude Code's background model; left unset it asks for a Claude Haiku id.
           "ANTHROPIC_DEFAULT_HAIKU_MODEL": model, "ANTHROPIC_SMALL_FAST_MODEL": model,
           "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}
    path = home / ".claude" / "settings.json"
    text = json.dumps({"env": env}, indent=2)
    return env, [(path, lambda s: s.setdefault("env", {}).update(env), text)]


def _opencode(url, key, model, models, home):
    provider = {"npm": "@ai-sdk/openai-compatible", "name": "opencode-go gateway",
                "options": {"baseURL": url + "/v1", "apiKey": key},
                "models": {name: {"name": name} for name in models}}

    def update(settings):
        settings.setdefault("$schema", "https://opencode.ai/config.json")
        settings.setdefault("provider", {})[PROVIDER] = provider
        settings["model"] = f"{PROVIDER}/{model}"

    path = home / ".config" / "opencode" / "opencode.json"
    text = json.dumps({"provider": {PROVIDER: provider}, "model": f"{PROVIDER}/{model}"}, indent=2)
    return {}, [(path, update, text)]


def _codex_table(url, key) -> str:
    lines = [f"[model_providers.{PROVIDER}]", 'name = "opencode-go gateway"',
             f'base_url = "{url}/v1"', 'wire_api = "responses"']
    if key != "anything":   # an open gateway needs no key, and Codex then sends none
        lines.append(f'env_key = "{KEY_VARIABLE}"')
    return "\n".join(lines) + "\n"


def _codex(url, key, model, models, home):
    table = _codex_table(url, key)
    top = f'model = "{model}"\nmodel_provider = "{PROVIDER}"\n'
    path = home / ".codex" / "config.toml"

    def write(path: Path) -> None:
        # Our own table is replaced whole; the top-level model and provider lines are replaced
        # where they stand (before the first table); everything else is left as it was.
        text = "\n" + (path.read_text() if path.exists() else "")
        text = re.sub(rf"(?ms)^\[model_providers\.{re.escape(PROVIDER)}\]\n.*?(?=^\[|\Z)", "", text)
        head, table_start, rest = text.partition("\n[")
        head = re.sub(r"(?m)^(model|model_provider)\s*=.*$\n?", "", head).strip("\n")
        body = (head + "\n" if head else "") + top
        if table_start:
            body += "\n[" + rest.rstrip("\n") + "\n"
        body += "\n" + table
        tomllib.loads(body)  # never leave Codex a file it cannot read
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)

    env = {KEY_VARIABLE: key} if key != "anything" else {}
    return env, [(path, write, top + "\n" + table)]


def _gemini_cli(url, key, model, models, home):
    env = {"GEMINI_API_KEY": key, "GOOGLE_GEMINI_BASE_URL": url}

    def write_env(path: Path) -> None:
        kept = [line for line in (path.read_text().splitlines() if path.exists() else [])
                if line.split("=", 1)[0].strip() not in env]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(kept + [f"{name}={value}" for name, value in env.items()]) + "\n")

    def update(settings):
        # Without an explicit API-key auth, Gemini CLI 0.44+ refuses a custom base URL.
        auth = settings.setdefault("security", {}).setdefault("auth", {})
        auth["selectedType"] = "gemini-api-key"
        settings.setdefault("model", {})["name"] = model

    gemini = home / ".gemini"
    return env, [(gemini / ".env", write_env, "\n".join(f"{n}={v}" for n, v in env.items())),
                 (gemini / "settings.json", update,
                  json.dumps({"security": {"auth": {"selectedType": "gemini-api-key"}},
                              "model": {"name": model}}, indent=2))]


_SETTINGS = {"claude-code": _claude_code, "opencode": _opencode, "codex": _codex,
             "gemini-cli": _gemini_cli}


def run(args) -> int:
    gateway = load_gateway(args)
    key = args.key or ("anything" if not gateway.clients.locked else None)
    if key is None:
        print("opencode-gateway: this gateway has client keys (server.api_keys, admin_keys, "
              "clients or GATEWAY_API_KEYS): pass one with --key", file=sys.stderr)
        return 2
    model = args.model or DEFAULT_MODELS[args.client]
    models = gateway.router.advertised_models()
    env, files = _SETTINGS[args.client](_url(args, gateway), key, model, models, Path.home())
    if env:
        print("# in the shell, or in the file below")
        print("\n".join(f"export {name}={value}" for name, value in env.items()))
    for path, change, text in files:
        print(f"\n# {path}")
        print(text)
        if args.write:
            backup = _backup(path)
            if path.suffix == ".json":
                _merge_json(path, change)
            else:
                change(path)
            print("# written" + (f"; the earlier file is kept as {backup}" if backup else ""))
    if not args.write:
        print(f"\n# `opencode-gateway connect {args.client} --write` writes these settings.")
    return 0
