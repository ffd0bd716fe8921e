"""`opencode-gateway check-config`: validate a config and say what it makes."""
from __future__ import annotations

import os

from gateway.cli.common import load_gateway
from gateway.routing.router import missing_key_message
from gateway.upstream.identity import upstream_user_agent
from gateway.upstream.instances import describe_layout, mask_key


def add(commands) -> None:
    check = commands.add_parser("check-config", help="validate a config and exit")
    check.add_argument("--config")
    check.add_argument("--rules-dir")
    check.set_defaults(run=run)


def run(args) -> int:
    gateway = load_gateway(args)
    config = gateway.config
    print(f"config: {args.config or '(built-in default)'}: OK")
    for name, pool in gateway.pools.items():
        print(f"backend {name}:")
        for instance in pool.instances:
            print(f"  instance {instance.name}: {describe_layout(instance)}, key "
                  f"{mask_key(instance.api_key)}, user agent "
                  f"{upstream_user_agent(None, instance.user_agent)}")
            if not instance.api_key:
                print(f"  warning: {missing_key_message(name)}")
        overrides = config.backends[name].extra.model_protocol_overrides
        if overrides:
            print(f"  protocol overrides: {', '.join(f'{m}={p}' for m, p in overrides.items())}")
    print(f"rules: {', '.join(os.path.basename(s) for s in gateway.router.chain.sources)}")
    server = gateway.config.server
    print(f"client keys: {len(server.api_keys) or 'none'} anonymous, {len(server.admin_keys)} "
          f"admin, {len(server.clients)} named clients"
          + ("" if gateway.clients.locked else " (the gateway is open)"))
    return 0
