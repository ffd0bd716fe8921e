"""`opencode-gateway usage`: where every key stands, read from the state store."""
from __future__ import annotations

import json
import sys

from gateway.cli.common import load_gateway, nothing_to_read, on_the_store
from gateway.quota.report import usage_report


def add(commands) -> None:
    usage = commands.add_parser("usage", help="where every key stands in its usage windows")
    usage.add_argument("--config")
    usage.add_argument("--json", action="store_true", help="the same as GET /v1/usage")
    usage.set_defaults(run=run)


def run(args) -> int:
    """Where every key stands, read from the state store (no running gateway needed)."""
    gateway = load_gateway(args)
    nothing = nothing_to_read(gateway)
    if nothing:
        print(f"opencode-gateway: {nothing}", file=sys.stderr)
        return 1

    report = on_the_store(gateway, lambda: usage_report(gateway.book, gateway.pools))
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
    print("\ntoday, by model:")
    if not report["models_today"]:
        print("  (nothing yet)")
    for model in report["models_today"]:
        print(f"  {model['model']:<20} {model['requests']:>6} requests  "
              f"{model['input_tokens']:>9} in ({model['cached_tokens']} cached)  "
              f"{model['output_tokens']:>8} out  ${model['cost_usd']:.4f}")
    return 0
