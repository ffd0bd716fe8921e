"""`opencode-gateway doctor [--probe] [--json]`: whether every upstream instance can serve,
and one line per problem saying how to fix it (gateway/doctor.py). Exit status 1 when an
instance cannot serve."""
from __future__ import annotations

import asyncio

import msgspec

from gateway.cli.common import load_gateway, working
from gateway.doctor import Report, diagnose
from gateway.upstream.forwarder import create_session


def add(commands) -> None:
    doctor = commands.add_parser(
        "doctor", help="check every upstream instance and the model catalogue; say how to fix "
                       "what is wrong")
    doctor.add_argument("--config")
    doctor.add_argument("--rules-dir")
    doctor.add_argument("--probe", action="store_true",
                        help="also send one tiny request per wire (costs a fraction of a cent)")
    doctor.add_argument("--json", action="store_true", help="the report as JSON")
    doctor.set_defaults(run=run)


def render(report: Report) -> str:
    lines = []
    for instance in report.instances:
        verdict = "can serve" if instance.can_serve else "CANNOT SERVE"
        lines.append(f"{instance.name}: {verdict}")
        lines.append(f"  url         {instance.api_url} ({instance.layout} layout)")
        lines.append(f"  user-agent  {instance.user_agent or '(none)'}")
        lines.append(f"  key         {instance.key}: {instance.key_state}"
                     + (f" ({instance.detail})" if instance.detail else ""))
        if instance.windows:
            lines.append("  usage       " + ", ".join(
                f"{name} {window.percent:g}% (resets {window.resets_at})"
                for name, window in instance.windows.items()))
        for cap in instance.caps:
            lines.append(f"  cap         {cap.model}: {cap.limit}, {cap.resets_in} left")
        for probe in instance.probes:
            lines.append(f"  probe       {probe.wire} {probe.model}: "
                         + (f"HTTP {probe.status} {probe.said}" if probe.status else probe.said))
    for catalogue in report.catalogues:
        live = ("not read" if catalogue.live_ids is None
                else f"{catalogue.live_ids} ids live, {len(catalogue.live_only)} not in the "
                     f"catalogue, {len(catalogue.not_live)} catalogue ids not live")
        lines.append(f"catalogue {catalogue.backend}: {catalogue.source}, "
                     f"{catalogue.age_days} days old; {live}")
        if catalogue.not_live:
            lines.append("  not live    " + ", ".join(catalogue.not_live))
    if report.problems:
        lines.append(f"{len(report.problems)} problem(s):")
        lines.extend(f"- {problem.where}: {problem.problem}. Fix: {problem.fix}."
                     for problem in report.problems)
    else:
        lines.append("no problems found")
    return "\n".join(lines)


def run(args) -> int:
    gateway = load_gateway(args)

    async def check() -> Report:
        session = create_session(gateway.config.upstream)
        try:
            return await diagnose(gateway, session, probe=args.probe)
        finally:
            await session.close()

    keys = sum(len(pool.instances) for pool in gateway.pools.values())
    with working(f"asking OpenCode Go about {keys} key(s)"
                 + (", with one tiny request per wire" if args.probe else "")):
        report = asyncio.run(check())
    print(msgspec.json.encode(report).decode() if args.json else render(report))
    return 0 if report.ok else 1
