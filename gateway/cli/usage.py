"""`opencode-gateway usage`: where every key and client stands, read from the state store."""
from __future__ import annotations

import json
import sys

from gateway.cli.common import load_gateway, nothing_to_read, on_the_store
from gateway.quota.report import SPEND_BY, usage_report


def add(commands) -> None:
    usage = commands.add_parser("usage", help="where every key and client stands in its usage "
                                              "windows")
    usage.add_argument("--config")
    usage.add_argument("--by", choices=tuple(SPEND_BY),
                       help="also show the spend of the last 5 hours and of today grouped by "
                            "client, agent, model or key")
    usage.add_argument("--json", action="store_true", help="the same as GET /v1/usage")
    usage.set_defaults(run=run)


def run(args) -> int:
    """Where every key stands, read from the state store (no running gateway needed)."""
    gateway = load_gateway(args)
    nothing = nothing_to_read(gateway)
    if nothing:
        print(f"opencode-gateway: {nothing}", file=sys.stderr)
        return 1

    by = [args.by] if args.by else None
    report = on_the_store(gateway, lambda: usage_report(gateway.book, gateway.pools, by=by))
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"state: {report['state']['where']}   (at {report['generated_at']})")
    for key in report["keys"]:
        status = key["status"] + (f" ({key['limit']} limit until {key['until']})"
                                  if key["status"] == "limited" else "")
        print(f"\n{key['instance']}  key {key['key']}  {status}")
        for window in key["windows"].values():
            hours, rest = divmod(window["resets_in_seconds"], 3600)
            print(f"  {window['label']:<8} ${window['spent_usd']:>9.4f} of ${window['limit_usd']:<6g}"
                  f" {window['used_percent']:>6.1f}%   resets in {hours}h{rest // 60:02d}m"
                  f"   ({window['source']})")
    if report["clients"]:
        print("\nclients:")
        for client in report["clients"]:
            cells = []
            for window in client["windows"].values():
                budget = window["budget_usd"]
                cells.append(f"{window['label']} ${window['spent_usd']:.4f}"
                             + (f" of ${budget:g}" + (" OVER" if window["over"] else "")
                                if budget is not None else ""))
            print(f"  {client['client']:<16} " + "   ".join(cells))
    for name, windows in report["spend_by"].items() if args.by else ():
        for window, label in (("rolling", "last 5 hours"), ("today", "today")):
            print(f"\n{label}, by {name}:")
            if not windows[window]:
                print("  (nothing yet)")
            for group in windows[window]:
                print(f"  {group['name']:<20} {group['requests']:>6} requests  "
                      f"{group['input_tokens']:>9} in  {group['output_tokens']:>8} out  "
                      f"${group['cost_usd']:.4f}")
    print("\ntoday, by model:")
    if not report["models_today"]:
        print("  (nothing yet)")
    for model in report["models_today"]:
        print(f"  {model['model']:<20} {model['requests']:>6} requests  "
              f"{model['input_tokens']:>9} in ({model['cached_tokens']} cached)  "
              f"{model['output_tokens']:>8} out  ${model['cost_usd']:.4f}")
    return 0
