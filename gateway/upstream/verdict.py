"""What an upstream answer means, read from its status, headers and the start of its body.

OpenCode Go's statuses do not say what happened (UPSTREAM.md, "Errors that are not what their
status says"): a 401 may be a spent balance or an unknown model, a 200 may carry a usage limit, a
403 may come from Cloudflare before the key was read. This module is the one place that reads
them; the forwarder acts on the `Verdict` alone.

| what arrives                                   | verdict            |
|------------------------------------------------|--------------------|
| 2xx (no error body)                            | OK                 |
| 429 / 200 `GoUsageLimitError`                  | USAGE_LIMIT        |
|   ... naming one model (metadata or message)   | MODEL_CAP          |
| 401 `CreditsError` / "Insufficient balance"    | USAGE_LIMIT (balance) |
| 401 `ModelError` "Model X is not supported"    | UNKNOWN_MODEL      |
| "not supported for format …"                   | WRONG_WIRE         |
| 403 `EntitlementError`                         | NO_ENTITLEMENT     |
| 403 `text/html` (Cloudflare, error 1010)       | EDGE_BLOCKED       |
| 400 "Global regions" / training opt-in         | CONSOLE_SETTING    |
| 400 "reasoning_content … passed back"          | REASONING_REQUIRED |
| other 401                                      | BAD_KEY            |
| other 429 naming the model                     | MODEL_CAP          |
| other 403, 408, 429, 5xx                       | RETRYABLE          |
| anything else                                  | ERROR              |
"""
from __future__ import annotations

import email.utils
import enum
import re
import time
from typing import Mapping, NamedTuple

from gateway.errors import read_upstream_error


class Kind(enum.Enum):
    OK = "ok"
    USAGE_LIMIT = "usage limit"            # the key's window (or balance) is spent: rest it
    MODEL_CAP = "per-model cap"            # the key's limit for this model only
    UNKNOWN_MODEL = "unknown model"        # the service serves no such id; the key is fine
    NO_ENTITLEMENT = "no entitlement"      # the key's workspace has no Go subscription
    EDGE_BLOCKED = "blocked at edge"       # Cloudflare refused the request's signature
    CONSOLE_SETTING = "console setting"    # a workspace setting keeps the model off
    BAD_KEY = "bad key"                    # the gateway's key is refused
    WRONG_WIRE = "wrong wire"              # the model lives on another wire
    REASONING_REQUIRED = "reasoning required"  # a tool-call turn lost its reasoning
    RETRYABLE = "retryable"                # this instance, now: worth another instance
    ERROR = "error"                        # about this request: goes back as it is


class Verdict(NamedTuple):
    kind: Kind
    status: int                 # the upstream's status
    message: str = ""           # what the upstream said (not yet redacted)
    retry_after: float | None = None
    limit_name: str = ""        # "5 hour", "weekly", "monthly", "balance"
    model: str = ""             # the model a cap or an unknown-model answer names
    setting: str = ""           # the console setting (CONSOLE_SETTING)
    ray_id: str = ""            # Cloudflare's ray id (EDGE_BLOCKED)


OK = Verdict(Kind.OK, 200)
USAGE_LIMIT_ERROR = "GoUsageLimitError"
BALANCE = "balance"
_BODY_START = 4096               # how much of a 200 body is looked at for an error
_WRONG_WIRE = re.compile(r"not supported for format", re.IGNORECASE)
_UNSUPPORTED_MODEL = re.compile(r"Model (\S+?)[.,:]? is not supported", re.IGNORECASE)
_REASONING_REQUIRED = re.compile(r"reasoning_content.*passed back", re.IGNORECASE | re.DOTALL)
_BALANCE = re.compile(r"insufficient balance", re.IGNORECASE)
_CONSOLE_SETTINGS = (
    (re.compile(r"global region", re.IGNORECASE), "Global regions"),
    (re.compile(r"(opt[- ]?in|enable|allow|console|setting).{0,80}training|"
                r"training.{0,80}(opt[- ]?in|enable|allow|console|setting)", re.IGNORECASE),
     "model training opt-in"),
)
_RAY_BODY = re.compile(rb"Ray ID:?\s*(?:<[^>]*>\s*)*([0-9a-f]{8,20})", re.IGNORECASE)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _names_model(message: str, model: str) -> bool:
    if not model:
        return False
    at = message.find(model)
    while at >= 0:
        end = at + len(model)
        before = message[at - 1] if at else " "
        after = message[end] if end < len(message) else " "
        if not (before.isalnum() or before in "-_.") and not (after.isalnum() or after in "-_"):
            return True
        at = message.find(model, end)
    return False


def _edge(status: int, headers: Mapping[str, str], body: bytes) -> Verdict:
    ray = headers.get("cf-ray", "").split("-")[0]
    if not ray:
        found = _RAY_BODY.search(body)
        ray = found.group(1).decode() if found else ""
    code = "1010" if b"1010" in body else ""
    return Verdict(Kind.EDGE_BLOCKED, status, f"Cloudflare error {code}".strip(), ray_id=ray)


def judge(status: int, headers: Mapping[str, str], body: bytes, model: str = "") -> Verdict:
    """The verdict on an answer; `body` is its start (a 200's first few KB are enough),
    `model` the id the request asked for."""
    if status < 400:
        start = body[:_BODY_START]
        if USAGE_LIMIT_ERROR.encode() not in start:
            return OK
        said = read_upstream_error(body, status)
        if said.type != USAGE_LIMIT_ERROR:
            return OK  # an answer that merely mentions the word
    else:
        content_type = headers.get("content-type", "")
        if status == 403 and "text/html" in content_type:
            return _edge(status, headers, body)
        said = read_upstream_error(body, status)
    message = said.message
    retry_after = parse_retry_after(headers.get("retry-after"))
    kind_of = said.type or ""
    if kind_of == USAGE_LIMIT_ERROR or (status == 401 and (
            kind_of == "CreditsError" or _BALANCE.search(message))):
        limit = said.limit_name or (BALANCE if kind_of != USAGE_LIMIT_ERROR else "usage")
        capped = said.model or (model if _names_model(message, model) else "")
        return Verdict(Kind.MODEL_CAP if capped else Kind.USAGE_LIMIT, status, message,
                       retry_after, limit, capped)
    if _WRONG_WIRE.search(message) and status in (400, 401, 404):
        return Verdict(Kind.WRONG_WIRE, status, message, retry_after)
    if kind_of == "ModelError" or (status in (400, 401, 404)
                                   and _UNSUPPORTED_MODEL.search(message)):
        found = _UNSUPPORTED_MODEL.search(message)
        return Verdict(Kind.UNKNOWN_MODEL, status, message,
                       model=found.group(1) if found else model)
    if kind_of == "EntitlementError":
        return Verdict(Kind.NO_ENTITLEMENT, status, message, retry_after)
    if status == 400:
        if _REASONING_REQUIRED.search(message):
            return Verdict(Kind.REASONING_REQUIRED, status, message)
        for pattern, setting in _CONSOLE_SETTINGS:
            if pattern.search(message):
                return Verdict(Kind.CONSOLE_SETTING, status, message, setting=setting)
    if status == 401:
        return Verdict(Kind.BAD_KEY, status, message, retry_after)
    if status == 429 and _names_model(message, model):
        return Verdict(Kind.MODEL_CAP, status, message, retry_after, "rate", model)
    if status in (403, 408, 429) or status >= 500:
        return Verdict(Kind.RETRYABLE, status, message, retry_after)
    return Verdict(Kind.ERROR, status, message, retry_after)
