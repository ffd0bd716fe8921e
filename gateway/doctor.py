"""Whether each upstream instance can serve, and if not why and how to fix it: what
`opencode-gateway doctor` prints and `GET /v1/doctor` answers (for the dashboard).

Per instance: its URL and layout, the User-Agent its calls carry, its key's state read from
OpenCode Go's own `GET /usage` (accepted, refused, not entitled, blocked at the edge, at a limit
— which window, when it resets), the per-model caps the gateway has met, and, with `probe`, one
tiny request per wire (a model of that wire the live list has, `max_tokens` 1). Per backend: the
catalogue's age and how it differs from the upstream's live `GET /models`. Every problem is one
line that says how to fix it; `ok` is false when any instance cannot serve.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import time

import aiohttp
import msgspec

from gateway.errors import DECODE_ERRORS, read_upstream_error
from gateway.masking import mask_url
from gateway.quota.upstream_usage import usage_figures
from gateway.routing.catalogue import Catalogue
from gateway.upstream.catalogue_refresh import CatalogueError, fetch_model_ids
from gateway.upstream.forwarder import SESSION_HEADER, auth_headers
from gateway.upstream.identity import upstream_user_agent
from gateway.upstream.instances import Instance, describe_wait, mask_key
from gateway.upstream.reading import read_at_most
from gateway.upstream.urls import call_url
from gateway.upstream.verdict import Kind, judge

_SESSION = "opencode-gateway-doctor"
_TIMEOUT = aiohttp.ClientTimeout(total=20)
# A catalogue older than this is worth a refresh: OpenCode Go adds ids every few weeks.
STALE_DAYS = 45
WIRE_NAMES = {"openai": "Chat", "anthropic": "Messages", "responses": "Responses"}
WINDOW_NAMES = {"rolling": "5-hour", "weekly": "weekly", "monthly": "monthly"}
# Key states; the first four mean the instance cannot serve.
REFUSED, NOT_ENTITLED, BLOCKED, UNREACHABLE = ("refused", "not entitled", "blocked at the edge",
                                               "unreachable")
AT_LIMIT, ACCEPTED, UNKNOWN = "at a limit", "accepted", "unknown"
CANNOT_SERVE = (REFUSED, NOT_ENTITLED, BLOCKED, UNREACHABLE, AT_LIMIT)


class Window(msgspec.Struct):
    percent: float
    resets_at: str


class Cap(msgspec.Struct):
    model: str
    limit: str
    resets_in: str


class Probe(msgspec.Struct):
    wire: str
    model: str
    status: int | None
    said: str


class InstanceReport(msgspec.Struct):
    name: str
    api_url: str
    layout: str
    user_agent: str | None
    key: str
    key_state: str
    detail: str
    windows: dict[str, Window]
    caps: list[Cap]
    probes: list[Probe]
    can_serve: bool


class CatalogueReport(msgspec.Struct):
    backend: str
    source: str
    age_days: int
    live_ids: int | None
    live_only: list[str]          # the upstream lists them, the catalogue lacks them
    not_live: list[str]           # current catalogue ids the upstream no longer lists


class Problem(msgspec.Struct):
    where: str
    problem: str
    fix: str


class Report(msgspec.Struct):
    checked_at: str
    ok: bool
    instances: list[InstanceReport]
    catalogues: list[CatalogueReport]
    problems: list[Problem]


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).isoformat(timespec="seconds")


def url_of(instance: Instance, endpoint: str) -> str:
    """The URL of a wire ("openai", …) or read endpoint ("usage") for `instance`."""
    return call_url(instance, endpoint)


def identity(instance: Instance) -> tuple[str, str | None]:
    """(URL layout, User-Agent of a call whose client sent none)."""
    return instance.layout.name, upstream_user_agent(None, instance.user_agent)


async def _get(session: aiohttp.ClientSession, url: str,
               headers: dict[str, str]) -> tuple[int, str, bytes]:
    async with session.get(url, headers=headers, timeout=_TIMEOUT) as answer:
        return (answer.status, answer.headers.get("content-type", ""),
                await read_at_most(answer.content, 256 * 1024))


def _key_state(status: int, content_type: str, body: bytes) -> tuple[str, str]:
    """(key state, what the upstream said) from a `/usage` answer that was not a 200, read by
    the same verdicts the forwarder acts on (upstream/verdict.py)."""
    verdict = judge(status, {"content-type": content_type}, body)
    kind = verdict.kind
    if kind is Kind.EDGE_BLOCKED:
        return BLOCKED, "HTTP 403 with an HTML page (Cloudflare)"
    if kind in (Kind.USAGE_LIMIT, Kind.MODEL_CAP):
        return AT_LIMIT, verdict.message
    if kind is Kind.NO_ENTITLEMENT:
        return NOT_ENTITLED, verdict.message
    if status in (401, 403):
        return REFUSED, verdict.message
    if status == 404:
        return UNKNOWN, "the upstream has no /usage"
    return UNKNOWN, f"HTTP {status}: {verdict.message}"


async def check_instance(session: aiohttp.ClientSession, instance: Instance,
                         now: float) -> InstanceReport:
    layout, user_agent = identity(instance)
    report = InstanceReport(
        name=instance.name, api_url=instance.api_url, layout=layout, user_agent=user_agent,
        key=mask_key(instance.api_key) if instance.api_key else "(none)", key_state=UNKNOWN,
        detail="", windows={}, caps=[], probes=[], can_serve=True)
    for model, (until, limit) in sorted(getattr(instance, "model_caps", {}).items()):
        if until > now:
            report.caps.append(Cap(model, limit, describe_wait(until - now)))
    if not instance.api_key:
        report.key_state, report.detail = REFUSED, "no key configured"
    else:
        headers = {"Authorization": "Bearer " + instance.api_key, SESSION_HEADER: _SESSION,
                   "Accept-Encoding": "identity"}
        if user_agent:
            headers["User-Agent"] = user_agent
        try:
            status, content_type, body = await _get(session, url_of(instance, "usage"), headers)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            report.key_state, report.detail = UNREACHABLE, f"{type(exc).__name__}: {exc}"
        else:
            if status == 200:
                _read_windows(report, body, now)
            else:
                report.key_state, report.detail = _key_state(status, content_type, body)
    report.can_serve = report.key_state not in CANNOT_SERVE
    return report


def _read_windows(report: InstanceReport, body: bytes, now: float) -> None:
    try:
        figures = usage_figures(body)
    except DECODE_ERRORS:
        report.key_state, report.detail = ACCEPTED, "/usage answered in an unknown shape"
        return
    report.key_state = ACCEPTED
    for window, (percent, resets_at) in figures.items():
        report.windows[window] = Window(percent, _iso(resets_at))
        if percent >= 100 and resets_at > now:
            report.key_state = AT_LIMIT
            report.detail = (f"{WINDOW_NAMES.get(window, window)} window, resets in "
                             f"{describe_wait(resets_at - now)}")


async def probe_wire(session: aiohttp.ClientSession, instance: Instance, wire: str,
                     model: str) -> Probe:
    """One tiny request (`max_tokens` 1) for `model` on `wire`."""
    bodies = {
        "openai": {"model": model, "max_tokens": 1,
                   "messages": [{"role": "user", "content": "ping"}]},
        "anthropic": {"model": model, "max_tokens": 1,
                      "messages": [{"role": "user", "content": "ping"}]},
        "responses": {"model": model, "max_output_tokens": 16, "input": "ping", "store": False},
    }
    headers = {**auth_headers(instance, wire), SESSION_HEADER: _SESSION,
               "Content-Type": "application/json", "Accept-Encoding": "identity"}
    user_agent = identity(instance)[1]
    if user_agent:
        headers["User-Agent"] = user_agent
    try:
        async with session.post(url_of(instance, wire), headers=headers,
                                data=msgspec.json.encode(bodies[wire]),
                                timeout=_TIMEOUT) as answer:
            body = await read_at_most(answer.content, 64 * 1024)
            status = answer.status
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return Probe(wire, model, None, f"{type(exc).__name__}: {exc}")
    said = "ok" if status < 400 else read_upstream_error(body, status).message[:300]
    return Probe(wire, model, status, said)


def probe_models(catalogue: Catalogue) -> dict[str, str]:
    """Per wire, the cheapest current catalogue model the live list has (or the catalogue's
    cheapest when there is no live list)."""
    chosen: dict[str, tuple[float, str]] = {}
    for model_id in sorted(catalogue.current):
        if catalogue.upstream_ids is not None and model_id not in catalogue.upstream_ids:
            continue
        facts = catalogue.facts(model_id)
        wire = catalogue.wire(model_id).wire
        price = facts.price.output if facts is not None and facts.price else float("inf")
        if wire not in chosen or price < chosen[wire][0]:
            chosen[wire] = (price, model_id)
    return {wire: model for wire, (_price, model) in sorted(chosen.items())}


def catalogue_report(backend: str, catalogue: Catalogue, now: float) -> CatalogueReport:
    known = catalogue.known
    day = (known.refreshed or known.snapshot_day)[:10]
    try:
        age = int((now - dt.datetime.fromisoformat(day).replace(
            tzinfo=dt.timezone.utc).timestamp()) // 86400)
    except ValueError:
        age = -1
    source = (f"models.dev refresh of {known.refreshed}" if known.refreshed
              else f"snapshot of {known.snapshot_day}")
    live = catalogue.upstream_ids
    return CatalogueReport(
        backend=backend, source=source, age_days=age,
        live_ids=len(live) if live is not None else None,
        live_only=sorted(live - set(catalogue.models)) if live is not None else [],
        not_live=sorted(catalogue.current - live) if live is not None else [])


def problems_of(report: Report) -> list[Problem]:
    found = []
    for instance in report.instances:
        where = instance.name
        if not instance.user_agent:
            found.append(Problem(where, "its calls carry no User-Agent, which OpenCode's edge "
                                        "blocks (403, Cloudflare error 1010)",
                                 "upgrade the gateway to one that identifies itself, or put a "
                                 "proxy in front that sets your tool's name/version"))
        state, detail = instance.key_state, instance.detail
        if state == REFUSED:
            found.append(Problem(where, f"the key {instance.key} is refused ({detail})",
                                 f"copy the key again from OpenCode's console (Go → API keys) "
                                 f"into the variable for {where}; a pasted `Bearer ` prefix is "
                                 "forgiven"))
        elif state == NOT_ENTITLED:
            found.append(Problem(where, f"the key's workspace has no Go subscription ({detail})",
                                 "subscribe to Go in that workspace, or use a key of the "
                                 "workspace that has it"))
        elif state == BLOCKED:
            found.append(Problem(where, f"OpenCode's edge blocked the call ({detail})",
                                 "the edge judges the request's signature, not the key: make "
                                 "the gateway send a User-Agent naming your tool; another key "
                                 "will not help"))
        elif state == UNREACHABLE:
            found.append(Problem(where, f"{mask_url(instance.api_url)} cannot be reached "
                                        f"({detail})",
                                 "check the instance's api_url, DNS and the network or proxy "
                                 "between the gateway and opencode.ai"))
        elif state == AT_LIMIT:
            found.append(Problem(where, f"the key is at a usage limit ({detail})",
                                 "wait for the reset, add another key (OPENCODE_GO_API_KEY_2, "
                                 "…), or turn on \"use balance\" in OpenCode's console"))
        for cap in instance.caps:
            found.append(Problem(where, f"{cap.model} is capped ({cap.limit}) for "
                                        f"{cap.resets_in}",
                                 "other models still work on this key; another key serves "
                                 f"{cap.model} meanwhile"))
        for probe in instance.probes:
            if probe.status is None or probe.status >= 400:
                found.append(Problem(
                    where, f"the {WIRE_NAMES[probe.wire]} wire failed for {probe.model} "
                           f"(HTTP {probe.status}: {probe.said})",
                    "if only this wire fails, set extra.model_protocol_overrides for the "
                    "model; if the message names a console setting, change it in OpenCode's "
                    "console"))
    for catalogue in report.catalogues:
        where = f"backend {catalogue.backend}"
        if catalogue.age_days > STALE_DAYS:
            found.append(Problem(where, f"the model catalogue ({catalogue.source}) is "
                                        f"{catalogue.age_days} days old",
                                 "run `opencode-gateway models refresh` and restart"))
        if catalogue.live_only:
            found.append(Problem(where, f"the upstream lists {len(catalogue.live_only)} id(s) the "
                                        f"catalogue lacks ({', '.join(catalogue.live_only)}): "
                                        "they route on the Chat wire unless learned, with no "
                                        "limits or prices",
                                 "run `opencode-gateway models refresh`, or set "
                                 "extra.model_protocol_overrides for them"))
    return found


async def diagnose(gateway, session: aiohttp.ClientSession, probe: bool = False) -> Report:
    """Fresh checks of every instance (concurrently) and every backend's catalogue."""
    now = time.time()
    instances = [instance for pool in gateway.pools.values() for instance in pool.instances]
    reports = list(await asyncio.gather(*(check_instance(session, instance, now)
                                          for instance in instances)))
    catalogues = []
    for backend, catalogue in gateway.catalogues.items():
        serving = next((instance for instance, report in zip(instances, reports)
                        if instance.backend == backend and report.can_serve), None)
        if serving is not None:
            try:
                catalogue.upstream_ids = await fetch_model_ids(session, serving)
                catalogue.upstream_fetched_at = time.time()
            except CatalogueError:
                pass  # the catalogue report says the live list is unknown
        catalogues.append(catalogue_report(backend, catalogue, now))
        if probe:
            models = probe_models(catalogue)
            for instance, report in zip(instances, reports):
                if instance.backend == backend and report.can_serve:
                    report.probes = list(await asyncio.gather(*(
                        probe_wire(session, instance, wire, model)
                        for wire, model in models.items())))
                    if report.probes and all(p.status is None or p.status >= 400
                                             for p in report.probes):
                        report.can_serve = False
    for report in reports:  # an upstream may quote a key in what it says
        report.detail = gateway.redactor.text(report.detail)
        for found in report.probes:
            found.said = gateway.redactor.text(found.said)
    report = Report(checked_at=_iso(now), ok=all(r.can_serve for r in reports),
                    instances=reports, catalogues=catalogues, problems=[])
    report.problems = problems_of(report)
    return report
