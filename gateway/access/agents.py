"""Which program sent a request, from its User-Agent: the `agent` of every ledger row.

The set is fixed and small (it is a label of the usage view and of nothing unbounded): the
agents people share a subscription with, the two SDKs, and `other`.
"""
from __future__ import annotations

AGENTS = ("claude-code", "opencode", "codex", "gemini-cli", "openai-python", "anthropic-python",
          "other")

# (prefix of the lower-cased User-Agent, agent); the first that matches wins.
_PREFIXES = (
    ("claude-cli/", "claude-code"),
    ("claude-code/", "claude-code"),
    ("opencode/", "opencode"),
    ("codex_cli_rs/", "codex"),
    ("codex_exec/", "codex"),
    ("codex/", "codex"),
    ("geminicli", "gemini-cli"),
    ("openai/python", "openai-python"),
    ("asyncopenai/python", "openai-python"),
    ("anthropic/python", "anthropic-python"),
    ("asyncanthropic/python", "anthropic-python"),
)


def agent_of(user_agent: str | None) -> str:
    if not user_agent:
        return "other"
    lowered = user_agent[:64].lower()
    for prefix, agent in _PREFIXES:
        if lowered.startswith(prefix):
            return agent
    return "other"
