"""Secrets inside URLs, masked wherever a URL is shown: the usage view and `usage --json`
(`state.where`), logs, error messages, the CLI.

A URL can carry a secret in its user info (`redis://:PASSWORD@host`, `redis://user:PASSWORD@host`,
`https://TOKEN@host`) and in its query (`?password=`, `?key=`, `?token=`, `?api_key=` …). The
user name of `user:password@` stays (Redis ACL users are worth seeing); a lone user info may be a
token and is masked whole.
"""
from __future__ import annotations

import re
import urllib.parse

MASK = "***"
_SECRET_PARAMETER = re.compile(
    r"(?i)(^|[&;])((?:password|passwd|pass|pwd|secret|key|api[-_]?key|apikey|token|"
    r"access[-_]?token|auth|authorization|sig|signature|credentials?)=)[^&;#]*")


def mask_url(url: str) -> str:
    """`url` with the secrets in its user info and query replaced by ***."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{host}" if colon else f"{MASK}@{host}"
    query = _SECRET_PARAMETER.sub(lambda m: m.group(1) + m.group(2) + MASK, parts.query)
    if netloc == parts.netloc and query == parts.query:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc, query=query))
