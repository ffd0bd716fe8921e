"""A scripted stand-in for OpenCode Go as it is today, served over real sockets.

The tests point the gateway at it, and the benchmarks use it as the upstream. It is written from
OpenCode Go's observed behaviour (/work/shared/UPSTREAM.md), never from the gateway's code, so
the two cannot share a bug. Two URL layouts, as OpenCode Go has since 2026-09: base URL
`http://HOST:PORT/v1` (the `zen` layout; three wires and two read endpoints, below) or
`http://HOST:PORT/inference/go` (the `inference` layout: `/openai/v1/chat/completions`,
`/openai/v1/responses`, `/anthropic/v1/messages` (Bearer or x-api-key), `/v1/models`,
`/v1/usage`; each answers exactly as its zen twin):

    POST /v1/chat/completions  OpenAI Chat Completions     Authorization: Bearer <key>
    POST /v1/messages          Anthropic Messages          x-api-key + anthropic-version (a
                               Bearer-only request is a 401); it rejects with a 400 what OpenCode
                               Go's Anthropic-compatible endpoint rejects (thinking,
                               anthropic-beta, context_management, output_config, system-role
                               messages, non-alternating roles, empty text, orphan tool_result)
    POST /v1/responses         OpenAI Responses            Authorization: Bearer <key>
    GET  /v1/models            the catalogue               Authorization: Bearer <key>
    GET  /v1/usage             the key's usage windows     Authorization: Bearer <key> only
                                                           (x-api-key is not read: 401)
    POST /google/v1beta/models/<id>:generateContent, :streamGenerateContent?alt=sse
                               Google's wire (the `/inference/go` layout's /google prefix,
                               reported, no Go model on it today)   x-goog-api-key <key>

Order of the checks on every /v1 request: the request is recorded; then the edge's User-Agent
check; then the session rule; then auth; then a failing key (`/_fake/keys`); then, on the three
model calls only, the key's usage limits; then the body (decode, model id, wire, conversation
checks, a per-model cap); then the directive.

The edge (Cloudflare, before OpenCode reads anything). A request with no User-Agent, or one
that starts with an HTTP library's default name (`BLOCKED_AGENTS`: Python-urllib,
python-requests, aiohttp, httpx, node-fetch, undici, axios, curl, Go-http-client, okhttp, Java
...) is a 403 `text/html` page, "Error 1010 ... banned your access based on your browser's
signature", with a `cf-ray` header and the ray id in the page (`EDGE_RAY_ID`). Anything else
passes. (/_fake/ is exempt.)

Session rule. A /v1 request without a non-empty `x-opencode-session` header is a 400:
`{"type":"error","error":{"type":"MissingSessionID","message":"Error from provider (Console Go):
Request is missing x-opencode-session and cannot be routed efficiently"}}`. (/_fake/ is exempt.)

Catalogue and wires. `CATALOGUE` maps today's 38 ids (25 of the autumn, `DECEMBER_IDS` since)
to the wire that serves them ("chat", "messages", "responses"). A catalogue id on another endpoint is a 400 in OpenCode's shape,
`{"type":"error","error":{"type":"invalid_request_error","message":"Error from provider
(Console Go): Model <id> is not supported for format <fmt>"}}`, fmt `oa-compat` (chat),
`anthropic` (messages) or `openai` (responses). Ids outside the catalogue: `minimax-*` and
`qwen*` are served on /messages only, `gpt-*` on /responses only; any other unknown id is
accepted on /chat/completions and /messages (new ids keep working) and refused on /responses.
Prefixed ids (`opencode-go/glm-5.1`) are a 400 that asks for the bare id. Per model, a
`max_tokens` / `max_completion_tokens` / `max_output_tokens` above `OUTPUT_LIMITS` is a 400, and
so is a `reasoning_effort` (chat) or `reasoning.effort` (responses) outside `REASONING_EFFORTS`
(GLM low/high/max, MiMo v2.6 none/low/medium/high, kimi-k3 none/low/high/max). `wire_of(model)`
says what the built-in catalogue decides. GET /v1/models lists the catalogue, sorted:
`{"object":"list","data":[{"id","object":"model","created":1700000000,"owned_by":"opencode"}]}`.

What an answer holds is scripted by a directive in the text of the final user turn (chat: the
user messages after the last assistant message; messages: the same; responses: the user message
items after the last assistant message / function_call / reasoning item):
`[[fake: key=value key ...]]`.

    deltas=N         text answer in N deltas (default 5)
    reasoning        a reasoning part first (chat: reasoning_content; messages: a signed thinking
                     block; responses: a `reasoning` item with one summary_text)
    tools=N          N parallel tool calls (get_weather, get_time, ...); finish tool_calls /
                     tool_use / function_call items (call ids call_fake_<k>, item ids fc_fake_<k>)
    text             with tools=N: a text answer before the tool calls
    length           finish_reason length / stop_reason max_tokens / status "incomplete" with
                     incomplete_details.reason "max_output_tokens" (stream ends response.incomplete)
    error=STATUS     answer that HTTP status in the flavour's error shape
    retry_after=S    with error=: a Retry-After header
    stream_error     200, the first 3 text deltas, then an in-stream error (chat: an error frame;
                     messages: an overloaded_error event; responses: response.failed with
                     error.code "server_error"), then the stream ends
    cut              200, the first 3 text deltas (half the body when not streaming), then the
                     TCP connection is aborted (a failing stream sends no reasoning part, on
                     deepseek-* either)
    slow=SECONDS     sleep between stream events
    ttfb=SECONDS     sleep before the response headers
    leak             every answer and error quotes the caller's key (the word "wörld" in the
                     text and the stream error's message carry it): a key-leaking upstream
    split=N          with leak on a stream: the whole stream in two writes, the first ending N
                     bytes after the quoted key's first byte (a `slow` pause between them)
    keysplit=N       with leak on a stream: each quoted key split across two text deltas, the
                     first ending N characters into the key (a model streaming it token by token)
    error200         200 with an error body (in the endpoint's error shape) instead of an answer
    refuse=WHAT      OpenCode's odd answers: `model` 401 {"type":"ModelError","message":"Model
                     <id> is not supported"}; `edge` the Cloudflare 403 page (as Codex users
                     meet it now and then); `regions` / `training` the 400 a console setting of
                     the workspace causes (`CONSOLE_REGIONS_MESSAGE`, `CONSOLE_TRAINING_MESSAGE`)
    bad_utf8         the word "wörld" arrives as invalid UTF-8 (b"w\xffrld")
    garbage=N        after the first stream event, N bytes with no line end, then the rest
    run=TOOL         one call to the client's own shell tool TOOL (`Bash`, `bash`,
                     `exec_command`) running `echo opencode-go-fake-ran` (SHELL_COMMAND), so a
                     real agent runs it and sends the output back: `shell_arguments(TOOL)`

An unknown key is a 400, so a typo in a test fails loudly. Everything is deterministic: the
answer text is `answer_text(deltas)`, prompt tokens are 10 per message (per input item on
/responses, a string input being one item), completion tokens count the content deltas
(`completion_tokens`). Answers are rendered once per shape and then served as pre-encoded bytes,
so the default path costs little more than aiohttp itself.

DeepSeek's thinking mode. deepseek-* answers always carry reasoning (as if `reasoning` were
given), and a chat request whose messages hold an assistant message with `tool_calls` but no
`reasoning_content` (missing or null; "" is accepted) is a 400: `{"error":{"message":"The
`reasoning_content` in the thinking mode must be passed back to the API.","type":
"invalid_request_error","param":null,"code":"invalid_request_error"}}`.

The Responses wire. Input: a string or a list of items: message items (role user / assistant /
system / developer; content a string or input_text / output_text / input_image / input_file /
refusal parts; `type` may be left out), function_call {call_id, name, arguments},
function_call_output {call_id, output}, reasoning items; item ids are allowed, unknown item types
and fields are ignored. 400s: `previous_response_id` (nothing is stored), an empty input, a
message item with another role or no content, a function_call without call_id or name, a
function_call_output that answers no earlier function_call ("No tool call found for function call
output with call_id X."), a function_call no function_call_output answers ("No tool output found
for function call X."). Answer: a `response` object (id "resp_fake", item ids "rs_fake",
"msg_fake", "fc_fake_<k>"); usage {input_tokens, input_tokens_details.cached_tokens 0,
output_tokens, output_tokens_details.reasoning_tokens, total_tokens}. Stream: `event: <type>` /
`data: {"type", "sequence_number" (0, 1, ...), ...}`: response.created, response.in_progress,
then per output item output_item.added, its events (reasoning_summary_part.added,
reasoning_summary_text.delta x3, .done, reasoning_summary_part.done | content_part.added,
output_text.delta xN, output_text.done, content_part.done | function_call_arguments.delta x3,
.done), output_item.done; then response.completed (response.incomplete with `length`).

Cost. Every answer carries what it was charged, as a decimal string (`cost_string`): chat
streams send one more frame after `data: [DONE]`, `data: {"id":"chatcmpl-fake","object":
"chat.completion.chunk","created","model","choices":[],"cost":"0.000036"}` (whether or not the
client asked for usage); messages streams end, after message_stop, with `event: ping` /
`{"type":"ping","cost":"..."}`; responses streams carry `"cost"` in the final event's `response`
(completed or incomplete); non-streamed answers of all three have a top-level `"cost"`. The
figure is `fake_cost(model, input, cached, cache_creation, output)`: USD per million tokens from
`PRICES` (input / output / cache read; `DEFAULT_PRICE` for any other model), cache creation at
the input price, times `USAGE_MULTIPLIERS` (kimi-k3 x2, minimax-m3 x3). The messages flavour has
CACHE_READ_TOKENS cached and CACHE_CREATION_TOKENS cache-creation tokens besides its input
tokens; the other flavours have none. A key is charged when its answer starts (after `ttfb`; a
client that hung up during ttfb is not charged), `error=` answers are not charged, and a failing
answer (stream_error, cut) is charged for what was generated before the failure: its input and
the text deltas it sent (min(deltas, 3) output tokens), though no cost frame reaches the client.

Usage limits. Per key the fake keeps its charges with their times; when the charges of the
rolling 5 hours reach $12 (`DEFAULT_LIMITS`; calendar week, from Monday 00:00 UTC: $30; calendar
month: $60) the key's model calls get 429 until the window lets them through again:
`retry-after: <seconds>` (honest, at least 1; when several windows are full, the longest wait)
and `{"type":"error","error":{"type":"GoUsageLimitError","message":"5-hour usage limit reached.
Resets in 3hr 56min. Upgrade or wait for the reset."},"metadata":{"workspace":"wrk_fake",
"limitName":"5 hour"}}` (`usage_limit_message`; limitName `5 hour`, `weekly` or `monthly`). The
request that crosses a limit is still answered. Limits block only the three model calls, never
GET /v1/models or /v1/usage. GET /v1/usage answers `{"workspaceID":"wrk_fake","userID":
"usr_fake","usage":{"rolling"|"weekly"|"monthly":{"status":"ok"|"rate-limited","percent":<int>,
"resetsAt":"<ISO 8601 UTC, ms, Z>"}}}`: percent = floor(charges in the window / limit x 100)
(not capped), rate-limited from 100; resetsAt: rolling when the window's oldest charge leaves it
(now + 5 h when it holds none), weekly next Monday 00:00 UTC, monthly the 1st of next month
00:00 UTC. A manual limit (`/_fake/keys`) shows as that window rate-limited (percent at least
100, resetsAt now + its retry_after).

Prompt cache model (off by default; `/_fake/cache` turns it on). Per key and session the fake
keeps the prompt length of the session's last turn on that key and when it was: a turn within
the lifetime of it reads that prefix from the cache (each hit refreshes it, as Anthropic-style
caches do), a turn after it reads nothing. Answers then report the cached tokens (chat:
`prompt_tokens_details.cached_tokens`; messages: `cache_read_input_tokens`, with `input_tokens`
the rest and no cache creation; responses: `input_tokens_details.cached_tokens`; google:
`usageMetadata.cachedContentTokenCount`) and are charged for them at the cache-read price.

Test control (never needs a session header or a key):
    POST /_fake/keys      {"KEY": {"status": 429, "retry_after": "2"}}: every /v1 request with
                          that key (Bearer or x-api-key) fails so, with the message "fake
                          upstream error STATUS"; {"KEY": {"limit": "5 hour" | "weekly" |
                          "monthly", "retry_after": 14160}}: the key's model calls get the usage-
                          limit 429 (retry_after in seconds, default 3600; with "status": 200 the
                          same body comes with a 200, as one client saw); {"KEY": {"refuse":
                          "credits"}}: 401 {"type":"CreditsError","message":"Insufficient
                          balance"}; {"KEY": {"refuse": "entitlement"}}: 403 EntitlementError (no
                          Go subscription); {"KEY": {"cap": "MODEL", "limit": "5 hour",
                          "retry_after": 3600}}: calls of MODEL alone get the usage-limit 429
                          whose message names the model (`model_cap_message`), other models are
                          served; {"KEY": null} restores the key (and lifts its caps)
    POST /_fake/limits    {"KEY": {"rolling": 12, "weekly": 30, "monthly": 60}}: the key's dollar
                          limits (a missing field: its default; each > 0); {"KEY": null}: defaults
    POST /_fake/usage     {"KEY": {"rolling": 90, "weekly": 10, "monthly": 5}}: /v1/usage shows
                          these percents for the key (a missing or null field: the real figure);
                          {"KEY": {"rate_limited": ["weekly"]}}: those windows say
                          "rate-limited" whatever their percent (a per-model cap inside a window);
                          {"KEY": {"status": 404}}: /v1/usage answers that status for the key (an
                          upstream without the endpoint); {"KEY": null} clears; each call replaces
                          the key's overrides
    POST /_fake/models    {"add": {"new-id": "chat" | "messages" | "responses" | "google"},
                          "remove": ["id"], "list_status": 500 | null}: edit the catalogue
                          (added ids are strict about their wire; a removed id is judged as an
                          unknown id) and make GET /v1/models fail with that status (null: answer
                          again); answers {"models": {id: wire}, "list_status"}
    POST /_fake/cache     {"lifetime": SECONDS}: model a prompt cache per key and session
                          (below); {"lifetime": null}: no cache model (the default)
    POST /_fake/spend     {"KEY": dollars}: charge the key now, in every window (a key that was
                          already part used when the test began)
    GET  /_fake/sessions  per session, what the cache model saw: {"SESSION": {"key": the key of
                          its last turn, "turns", "moves" (turns on another key than the one
                          before), "hot_moves" (moves while the key it left still held its
                          prefix), "prompt_tokens", "cached_tokens"}}
    POST /_fake/reset     forget failing keys, limits and usage overrides, charges, recorded
                          requests, finished-stream counts and the cache model; restore the
                          built-in catalogue
    GET  /_fake/charges   {"by_key": {"KEY": dollars}, "by_key_model": {"KEY": {"model":
                          dollars}}, "requests": {"KEY": answers charged}}, since the last reset
    GET  /_fake/requests  the last 200 requests: path, headers (lower-case names), body, key
    GET  /_fake/stats     active_streams; completed_streams (ended by the fake: normally, after
                          stream_error, or cut); aborted_streams (the client hung up first, seen
                          at the next write or during a slow/ttfb pause); abandoned_answers
                          (whole answers whose client hung up during their ttfb pause)

Run: python -m tests.fake_upstream --host 127.0.0.1 --port 9100 [--no-record] [--no-edge]
(`--no-edge`: no User-Agent check, for a benchmark's bare floor proxy that sends aiohttp's own)
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import datetime
import json
import math
import time
from typing import Any, Callable, NamedTuple

import msgspec
from aiohttp import web

# ---------------------------------------------------------------------------------------------
# The scripted answer's content: public so tests can state what they expect.

PROMPT_TOKENS_PER_MESSAGE = 10
CACHE_READ_TOKENS = 6          # Anthropic flavour: cache_read_input_tokens
CACHE_CREATION_TOKENS = 2      # Anthropic flavour: cache_creation_input_tokens
FAILING_STREAM_DELTAS = 3      # text deltas sent before stream_error / cut
REASONING_DELTAS = ("Thinking about ", "the answer: ", "ça va.")
REASONING_TEXT = "".join(REASONING_DELTAS)
THINKING_SIGNATURE = "c2lnbmF0dXJlLWZha2U="
TOOL_ARGUMENT_FRAGMENTS = 3    # argument deltas per tool call
_WORDS = ("héllo", "wörld", "🎉")
_TOOL_NAMES = ("get_weather", "get_time")
CREATED = 1700000000
STREAM_ERROR_MESSAGE = "fake upstream stream error"


def answer_deltas(deltas: int = 5) -> list[str]:
    """The text deltas of an answer: "héllo ", "wörld ", "🎉 ", "héllo ", ... (no trailing space)."""
    words = [_WORDS[i % len(_WORDS)] for i in range(deltas)]
    return [w + " " for w in words[:-1]] + words[-1:]


def answer_text(deltas: int = 5) -> str:
    return "".join(answer_deltas(deltas))


def tool_name(k: int) -> str:
    return _TOOL_NAMES[k % len(_TOOL_NAMES)]


def tool_arguments(k: int) -> dict[str, Any]:
    """The parsed arguments of tool call `k` (0-based)."""
    if tool_name(k) == "get_weather":
        return {"city": "Zürich", "n": k}
    return {"timezone": "Europe/Zürich", "n": k}


def openai_tool_id(k: int) -> str:
    """The call id of tool call `k` on the chat and responses wires."""
    return f"call_fake_{k}"


def anthropic_tool_id(k: int) -> str:
    return f"toolu_fake_{k}"


def responses_call_item_id(k: int) -> str:
    """The item id of the k-th function_call output item on the responses wire."""
    return f"fc_fake_{k}"


def completion_tokens(deltas: int = 5, reasoning: bool = False, tools: int = 0,
                      text: bool = False) -> int:
    """Completion (output) tokens of an answer: one per content delta."""
    count = len(REASONING_DELTAS) if reasoning else 0
    if tools:
        count += tools * TOOL_ARGUMENT_FRAGMENTS + (deltas if text else 0)
    else:
        count += deltas
    return count


def _fragments(s: str, parts: int) -> list[str]:
    step = -(-len(s) // parts)
    return [s[i:i + step] for i in range(0, len(s), step)]


def _tool_argument_json(k: int) -> str:
    return msgspec.json.encode(tool_arguments(k)).decode()


# `run=TOOL`: one call to the client's own shell tool, so a real agent runs a command and sends
# its output back (Claude Code's `Bash`, opencode's `bash`, Codex's `exec_command`).
SHELL_MARKER = "opencode-go-fake-ran"
SHELL_COMMAND = f"echo {SHELL_MARKER}"


def shell_arguments(tool: str) -> dict[str, Any]:
    """The arguments of a `run=TOOL` call, in the form that client's shell tool takes."""
    if tool == "exec_command":
        return {"cmd": SHELL_COMMAND}
    return {"command": SHELL_COMMAND, "description": "Print a marker for the test"}


# ---------------------------------------------------------------------------------------------
# Today's catalogue, prices and limits: public so tests can state what they expect.

CHAT, MESSAGES, RESPONSES, GOOGLE = "chat", "messages", "responses", "google"
WIRES = (CHAT, MESSAGES, RESPONSES, GOOGLE)
WIRE_FORMATS = {CHAT: "oa-compat", MESSAGES: "anthropic", RESPONSES: "openai", GOOGLE: "google"}
CATALOGUE: dict[str, str] = {
    **dict.fromkeys(("deepseek-v4-flash", "deepseek-v4-pro", "glm-5", "glm-5.1", "glm-5.2",
                     "grok-4.5", "hy3", "kimi-k2.5", "kimi-k2.6", "kimi-k2.7-code", "kimi-k3",
                     "mimo-v2-omni", "mimo-v2-pro", "mimo-v2.5", "mimo-v2.5-pro"), CHAT),
    **dict.fromkeys(("minimax-m2.5", "minimax-m2.7", "minimax-m3", "qwen3.5-plus",
                     "qwen3.6-plus", "qwen3.7-max", "qwen3.7-plus", "qwen3.8-flash",
                     "qwen3.8-max"), MESSAGES),
    "gpt-5.6-luna": RESPONSES,
}
# What moved since September (UPSTREAM.md, "The catalogue moved again").
DECEMBER_IDS: dict[str, str] = {
    **dict.fromkeys(("glm-5.3", "glm-5.3-flash", "deepseek-v4.1-flash",
                     "deepseek-v4-flash-vision-exp", "mimo-v2.6-pro", "mimo-v2.6-flash",
                     "longcat-2.0", "hy4-preview"), CHAT),
    **dict.fromkeys(("grok-4.6", "grok-4.7", "gpt-6-luna", "muse-spark-1.2-contributor",
                     "muse-spark-1.3-contributor"), RESPONSES),
}
CATALOGUE.update(DECEMBER_IDS)
# The most output tokens a model gives (models.dev's limit.output); more is a 400.
OUTPUT_LIMITS: dict[str, int] = {
    "glm-5.1": 32_768, "glm-5.2": 131_072, "glm-5.3": 131_072, "kimi-k2.6": 65_536,
    "kimi-k3": 262_144, "deepseek-v4-pro": 384_000, "deepseek-v4.1-flash": 384_000,
    "mimo-v2.6-pro": 131_072, "mimo-v2.6-flash": 131_072, "minimax-m2.7": 131_072,
    "minimax-m3": 131_072, "qwen3.7-plus": 65_536, "grok-4.6": 500_000, "grok-4.7": 500_000,
}
# The reasoning efforts a model takes (UPSTREAM.md: GLM low/high/max, MiMo v2.6 neither max nor
# xhigh, kimi-k3 none/low/high/max); another is a 400. Other models take any.
REASONING_EFFORTS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("glm-5", "glm-5.1", "glm-5.2", "glm-5.3", "glm-5.3-flash"),
                    ("low", "high", "max")),
    **dict.fromkeys(("mimo-v2.6-pro", "mimo-v2.6-flash"), ("none", "low", "medium", "high")),
    "kimi-k3": ("none", "low", "high", "max"),
}
MODELS_OWNER = "opencode"
WORKSPACE_ID = "wrk_fake"
USER_ID = "usr_fake"
SESSION_HEADER = "x-opencode-session"
INFERENCE_PREFIX = "/inference/go"
ERROR_PREFIX = "Error from provider (Console Go): "

# USD per million tokens: input, output, cache read (cache creation is billed as input).
PRICES: dict[str, tuple[float, float, float]] = {
    "glm-5.1": (1.4, 4.4, 0.26), "glm-5.2": (1.4, 4.4, 0.26),
    "kimi-k2.6": (0.95, 4.0, 0.16), "kimi-k2.7-code": (0.95, 4.0, 0.19),
    "kimi-k3": (3.0, 15.0, 0.3),
    "deepseek-v4-flash": (0.14, 0.28, 0.0028), "deepseek-v4-pro": (1.74, 3.48, 0.0145),
    "mimo-v2.5": (0.14, 0.28, 0.0028), "mimo-v2.5-pro": (1.74, 3.48, 0.0145),
    "minimax-m2.7": (0.3, 1.2, 0.06), "minimax-m3": (0.3, 1.2, 0.06),
    "qwen3.6-plus": (0.5, 3.0, 0.05), "qwen3.7-max": (2.5, 7.5, 0.5),
    "qwen3.7-plus": (0.4, 1.6, 0.04),
}
DEFAULT_PRICE = (1.0, 4.0, 0.1)
# UPSTREAM.md "2× or 3× (kimi-k3, minimax-m3)"; models.dev names them "(2x usage)", "(3x usage)".
USAGE_MULTIPLIERS = {"kimi-k3": 2, "minimax-m3": 3}

DEFAULT_LIMITS = {"rolling": 12.0, "weekly": 30.0, "monthly": 60.0}   # dollars per window
LIMIT_NAMES = {"rolling": "5 hour", "weekly": "weekly", "monthly": "monthly"}
ROLLING_WINDOW_SECONDS = 5 * 3600


def fake_cost(model: str, input_tokens: int, cached_tokens: int = 0,
              cache_creation_tokens: int = 0, output_tokens: int = 0) -> float:
    """The dollars an answer costs: `input_tokens` are the uncached input tokens."""
    price_in, price_out, price_cache = PRICES.get(model, DEFAULT_PRICE)
    return USAGE_MULTIPLIERS.get(model, 1) * (
        input_tokens * price_in + cached_tokens * price_cache
        + cache_creation_tokens * price_in + output_tokens * price_out) / 1e6


def cost_string(dollars: float) -> str:
    """The wire form of a cost: a plain decimal, 10 places at most, no exponent ("0.000036")."""
    return f"{dollars:.10f}".rstrip("0").rstrip(".") or "0"


def wire_of(model: str, catalogue: dict[str, str] = CATALOGUE) -> str | None:
    """The wire that serves `model`; None: an unknown id, taken on chat and messages."""
    wire = catalogue.get(model)
    if wire is not None:
        return wire
    if model.startswith(("minimax-", "qwen")):
        return MESSAGES
    if model.startswith("gpt-"):
        return RESPONSES
    return None


def thinking_model(model: str) -> bool:
    """DeepSeek runs in thinking mode: reasoning in every answer, and it must come back."""
    return model.startswith("deepseek-")


def resets_in(seconds: int) -> str:
    """ "3hr 56min", "2day 5hr", "12min", "40sec": the wait in a usage-limit message."""
    days, rest = divmod(max(0, int(seconds)), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}day {hours}hr"
    if hours:
        return f"{hours}hr {minutes}min"
    return f"{minutes}min" if minutes else f"{secs}sec"


def model_cap_message(limit_name: str, model: str, retry_after: int) -> str:
    return (f"{limit_name.capitalize()} usage limit reached for {model}. Resets in "
            f"{resets_in(retry_after)}. Other models are still available.")


BLOCKED_AGENTS = ("python-urllib", "python-requests", "python/", "aiohttp", "python-httpx",
                  "httpx", "node-fetch", "undici", "axios", "curl", "go-http-client", "okhttp",
                  "java")
EDGE_RAY_ID = "8f2b9c1d4e5a6b7c"
CONSOLE_REGIONS_MESSAGE = ("This Go model requires Global regions. Enable Global regions in "
                           "your workspace settings to use it.")
CONSOLE_TRAINING_MESSAGE = ("This model is only available to workspaces that opt in to model "
                            "training. Change it in your workspace settings.")


def usage_limit_message(limit_name: str, retry_after: int) -> str:
    title = {"5 hour": "5-hour", "weekly": "Weekly", "monthly": "Monthly"}[limit_name]
    return (f"{title} usage limit reached. Resets in {resets_in(retry_after)}. "
            "Upgrade or wait for the reset.")


# ---------------------------------------------------------------------------------------------
# Directive

class Script(NamedTuple):
    """What one request asked the fake to do; hashable, so rendered answers can be cached."""
    deltas: int = 5
    reasoning: bool = False
    tools: int = 0
    text: bool = False
    length: bool = False
    error: int = 0
    retry_after: str | None = None
    stream_error: bool = False
    cut: bool = False
    slow: float = 0.0
    ttfb: float = 0.0
    run: str | None = None
    leak: bool = False
    error200: bool = False
    bad_utf8: bool = False
    garbage: int = 0
    refuse: str | None = None
    split: int = 0
    keysplit: int = 0


DEFAULT_SCRIPT = Script()
_DIRECTIVE = "[[fake:"
_REFUSALS = ("model", "edge", "regions", "training")
_INT_KEYS = {"deltas", "tools", "error", "garbage", "split", "keysplit"}
_FLOAT_KEYS = {"slow", "ttfb"}
_FLAG_KEYS = {"reasoning", "text", "length", "stream_error", "cut", "leak", "error200",
              "bad_utf8"}


class _BadDirective(ValueError):
    """A directive the fake cannot read; answered with a 400 so the test's typo shows."""


def parse_script(text: str) -> Script:
    """The directive in `text`, or the default script when there is none."""
    start = text.find(_DIRECTIVE)
    if start < 0:
        return DEFAULT_SCRIPT
    end = text.find("]]", start)
    if end < 0:
        raise _BadDirective("fake upstream: directive '[[fake: ...' is missing its closing ']]'")
    fields: dict[str, Any] = {}
    for item in text[start + len(_DIRECTIVE):end].split():
        key, eq, value = item.partition("=")
        try:
            if key in _FLAG_KEYS and not eq:
                fields[key] = True
            elif key in _INT_KEYS and eq:
                fields[key] = int(value)
            elif key in _FLOAT_KEYS and eq:
                fields[key] = float(value)
            elif key in ("retry_after", "run") and eq:
                fields[key] = value
            elif key == "refuse" and value in _REFUSALS:
                fields[key] = value
            else:
                raise ValueError
        except ValueError:
            raise _BadDirective(f"fake upstream: bad directive item {item!r}; keys: deltas=N "
                                "reasoning tools=N text length error=STATUS retry_after=S "
                                "stream_error cut slow=SECONDS ttfb=SECONDS run=TOOL leak error200 "
                                "bad_utf8 garbage=N refuse=model|edge|regions|training "
                                "split=N keysplit=N") from None
    if fields.get("deltas", 1) < 1:
        raise _BadDirective("fake upstream: deltas must be at least 1")
    if fields.get("run"):
        fields["tools"] = 1
    return Script(**fields)


# ---------------------------------------------------------------------------------------------
# Request shapes: only the fields the fake looks at; msgspec ignores the rest.

class _Part(msgspec.Struct):
    type: str = ""
    text: str | None = None


class _ToolCallRef(msgspec.Struct):
    id: str = ""


class _ChatMessage(msgspec.Struct):
    role: str
    content: str | list[_Part] | None = None
    tool_calls: list[_ToolCallRef] | None = None
    tool_call_id: str | None = None
    reasoning_content: Any = msgspec.UNSET     # DeepSeek: missing or null is refused


class _StreamOptions(msgspec.Struct):
    include_usage: bool = False


class _ChatRequest(msgspec.Struct):
    model: str
    messages: list[_ChatMessage]
    stream: bool = False
    stream_options: _StreamOptions | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    reasoning_effort: str | None = None


class _Block(msgspec.Struct):
    type: str
    text: str | None = None
    id: str | None = None
    tool_use_id: str | None = None


class _AnthropicMessage(msgspec.Struct):
    role: str
    content: str | list[_Block]


class _MessagesRequest(msgspec.Struct):
    model: str
    messages: list[_AnthropicMessage]
    max_tokens: int | None = None
    stream: bool = False
    system: str | list[_Block] | None = None
    # Presence is what matters for these: OpenCode Go rejects them whatever their value.
    thinking: Any = msgspec.UNSET
    context_management: Any = msgspec.UNSET
    output_config: Any = msgspec.UNSET


class _ResponsesItem(msgspec.Struct):
    type: str = "message"          # an easy input message may leave the type out
    role: str | None = None
    content: str | list[_Part] | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None


class _Reasoning(msgspec.Struct):
    effort: str | None = None


class _ResponsesRequest(msgspec.Struct):
    model: str
    input: str | list[_ResponsesItem] | None = None
    stream: bool = False
    previous_response_id: str | None = None
    max_output_tokens: int | None = None
    reasoning: _Reasoning | None = None


_decode_chat = msgspec.json.Decoder(_ChatRequest).decode
_decode_messages = msgspec.json.Decoder(_MessagesRequest).decode
_decode_responses = msgspec.json.Decoder(_ResponsesRequest).decode
_encode = msgspec.json.encode


# ---------------------------------------------------------------------------------------------
# Error shapes, written independently of the gateway's own (the fake must not share its bugs).

_TYPE_BY_STATUS = {400: "invalid_request_error", 401: "authentication_error",
                   403: "permission_error", 404: "not_found_error", 413: "request_too_large",
                   429: "rate_limit_error", 500: "api_error", 529: "overloaded_error"}


def _error_type(status: int) -> str:
    return _TYPE_BY_STATUS.get(status) or ("api_error" if status >= 500 else "invalid_request_error")


def _openai_error(status: int, message: str, retry_after: str | None = None) -> web.Response:
    body = _encode({"error": {"message": message, "type": _error_type(status), "param": None,
                              "code": None}})
    return _json_response(body, status, retry_after)


def _anthropic_error(status: int, message: str, retry_after: str | None = None) -> web.Response:
    body = _encode({"type": "error", "error": {"type": _error_type(status), "message": message}})
    return _json_response(body, status, retry_after)


def _opencode_error(status: int, error_type: str, message: str) -> web.Response:
    """OpenCode's own errors (session, wrong wire) have this shape on every endpoint."""
    return _json_response(_encode({"type": "error", "error": {"type": error_type,
                                                              "message": message}}), status)


def _json_response(body: bytes, status: int = 200, retry_after: str | None = None) -> web.Response:
    headers = {"Content-Type": "application/json"}
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    return web.Response(body=body, status=status, headers=headers)


_MISSING_SESSION = _encode({"type": "error", "error": {
    "type": "MissingSessionID",
    "message": ERROR_PREFIX + "Request is missing x-opencode-session and cannot be routed "
                              "efficiently"}})
_DEEPSEEK_REASONING = _encode({"error": {
    "message": "The `reasoning_content` in the thinking mode must be passed back to the API.",
    "type": "invalid_request_error", "param": None, "code": "invalid_request_error"}})


def _usage_limit_error(limit_name: str, retry_after: int, status: int = 429,
                       message: str | None = None) -> web.Response:
    body = _encode({"type": "error",
                    "error": {"type": "GoUsageLimitError",
                              "message": message or usage_limit_message(limit_name, retry_after)},
                    "metadata": {"workspace": WORKSPACE_ID, "limitName": limit_name}})
    headers = {"Content-Type": "application/json"}
    if status == 429:  # the 200 variant was seen without one
        headers["retry-after"] = str(retry_after)
    return web.Response(body=body, status=status, headers=headers)


_CREDITS_ERROR = _encode({"type": "CreditsError", "message": "Insufficient balance"})
_ENTITLEMENT_ERROR = _encode({"type": "error", "error": {
    "type": "EntitlementError",
    "message": ERROR_PREFIX + "Your workspace does not have an active Go subscription"}})
EDGE_PAGE = (
    "<!DOCTYPE html>\n<html><head><title>Access denied | opencode.ai used Cloudflare to restrict "
    "access</title></head><body><div id=\"cf-error-details\"><h1><span>Error</span> <span>1010"
    "</span></h1><h2>Access denied</h2><p>The owner of this website (opencode.ai) has banned your "
    "access based on your browser's signature (" + EDGE_RAY_ID + "-FRA).</p><p>Cloudflare Ray ID: "
    "<strong>" + EDGE_RAY_ID + "</strong></p></div></body></html>").encode()


def _edge_block() -> web.Response:
    return web.Response(body=EDGE_PAGE, status=403,
                        headers={"Content-Type": "text/html; charset=UTF-8",
                                 "cf-ray": EDGE_RAY_ID + "-FRA", "Server": "cloudflare"})


def _edge_blocks(request: web.Request) -> bool:
    if not request.app[_STATE].edge:
        return False
    agent = request.headers.get("User-Agent", "").strip().lower()
    return not agent or agent.startswith(BLOCKED_AGENTS)


def _refusal(script: Script, model: str) -> web.Response | None:
    """A `refuse=` directive's answer."""
    if script.refuse == "model":
        return _json_response(_encode({"type": "ModelError",
                                       "message": f"Model {model} is not supported"}), 401)
    if script.refuse == "edge":
        return _edge_block()
    if script.refuse in ("regions", "training"):
        return _opencode_error(400, "invalid_request_error", ERROR_PREFIX + (
            CONSOLE_REGIONS_MESSAGE if script.refuse == "regions" else CONSOLE_TRAINING_MESSAGE))
    return None


def _capped(state: "_FakeState", key: str, model: str) -> web.Response | None:
    cap = state.caps.get(key, {}).get(model)
    if cap is None:
        return None
    limit_name, retry_after = cap
    return _usage_limit_error(limit_name, retry_after,
                              message=model_cap_message(limit_name, model, retry_after))


class _Rejected(Exception):
    """A request the upstream answers with 400; the message names the problem."""


# ---------------------------------------------------------------------------------------------
# Rendering: each function builds the wire bytes of one answer shape; results are cached.

class _Shape(NamedTuple):
    flavour: str         # "openai" (chat), "anthropic" (messages), "responses"
    stream: bool
    model: str
    n_messages: int      # messages, or input items on /responses
    include_usage: bool
    deltas: int
    reasoning: bool
    tools: int
    text: bool
    length: bool
    failing: str         # "", "stream_error" or "cut": the short failing stream
    run: str | None = None  # the client's shell tool, called once (`run=TOOL`)
    cached: int | None = None  # prompt tokens read from the key's cache (None: no cache model)
    keysplit: int = 0    # the quoted key's characters in the first of its two deltas (`keysplit=N`)


class _Rendered(NamedTuple):
    payload: Any         # bytes, or the list of stream events
    charge: float        # dollars charged for this answer


def _shape(flavour: str, stream: bool, model: str, n_messages: int, include_usage: bool,
           s: Script) -> _Shape:
    failing = "stream_error" if s.stream_error else "cut" if s.cut else ""
    return _Shape(flavour, stream, model, n_messages, include_usage, s.deltas,
                  s.reasoning or thinking_model(model), s.tools, s.text, s.length, failing,
                  s.run, keysplit=s.keysplit if s.leak else 0)


def _call_name(sh: _Shape, k: int) -> str:
    return sh.run or tool_name(k)


def _call_arguments(sh: _Shape, k: int) -> dict[str, Any]:
    return shell_arguments(sh.run) if sh.run else tool_arguments(k)


def _call_json(sh: _Shape, k: int) -> str:
    return msgspec.json.encode(_call_arguments(sh, k)).decode()


def _text_deltas(sh: _Shape) -> list[str]:
    if sh.failing:
        deltas = answer_deltas(min(sh.deltas, FAILING_STREAM_DELTAS))
    elif sh.tools and not sh.text:
        return []
    else:
        deltas = answer_deltas(sh.deltas)
    if not sh.keysplit:
        return deltas
    split = []  # the leak word's delta in two: the key's start and its rest (see _misbehave)
    for delta in deltas:
        if delta.startswith(_LEAK_WORD_TEXT):
            split += [_KEY_HEAD, _KEY_TAIL + delta[len(_LEAK_WORD_TEXT):]]
        else:
            split.append(delta)
    return split


def _output_tokens(sh: _Shape) -> int:
    return completion_tokens(sh.deltas, sh.reasoning, sh.tools, sh.text)


def _input_tokens(sh: _Shape) -> int:
    return PROMPT_TOKENS_PER_MESSAGE * sh.n_messages


def _cost(sh: _Shape) -> str:
    """What the shape is charged: a failing answer pays for the text deltas it got out."""
    output = len(_text_deltas(sh)) if sh.failing else _output_tokens(sh)
    if sh.failing and sh.reasoning and not sh.stream:
        output += len(REASONING_DELTAS)   # the short plain body still holds the reasoning
    if sh.cached is not None:   # the prompt cache model: the cached prefix at the cache price
        dollars = fake_cost(sh.model, _input_tokens(sh) - sh.cached, sh.cached, 0, output)
    elif sh.flavour == "anthropic":
        dollars = fake_cost(sh.model, _input_tokens(sh), CACHE_READ_TOKENS,
                            CACHE_CREATION_TOKENS, output)
    else:
        dollars = fake_cost(sh.model, _input_tokens(sh), 0, 0, output)
    return cost_string(dollars)


# --- chat

def _openai_usage(sh: _Shape) -> dict[str, int]:
    prompt = _input_tokens(sh)
    completion = _output_tokens(sh)
    usage: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion,
                             "total_tokens": prompt + completion}
    if sh.cached is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": sh.cached}
    return usage


def _openai_finish(sh: _Shape) -> str:
    if sh.length:
        return "length"
    return "tool_calls" if sh.tools else "stop"


def _openai_body(sh: _Shape, cost: str) -> bytes:
    message: dict[str, Any] = {"role": "assistant", "content": "".join(_text_deltas(sh)) or None}
    if sh.reasoning:
        message["reasoning_content"] = REASONING_TEXT
    if sh.tools:
        message["tool_calls"] = [
            {"id": openai_tool_id(k), "type": "function",
             "function": {"name": _call_name(sh, k), "arguments": _call_json(sh, k)}}
            for k in range(sh.tools)]
    return _encode({"id": "chatcmpl-fake", "object": "chat.completion", "created": CREATED,
                    "model": sh.model,
                    "choices": [{"index": 0, "message": message,
                                 "finish_reason": _openai_finish(sh)}],
                    "usage": _openai_usage(sh), "cost": cost})


_OPENAI_STREAM_ERROR = b"data: " + _encode({"error": {
    "message": STREAM_ERROR_MESSAGE, "type": "server_error", "param": None,
    "code": None}}) + b"\n\n"


def _openai_events(sh: _Shape, cost: str) -> list[bytes]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return b"data: " + _encode({
            "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": CREATED,
            "model": sh.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}) + b"\n\n"

    events = [chunk({"role": "assistant", "content": ""})]
    if sh.reasoning and not sh.failing:
        events += [chunk({"reasoning_content": d}) for d in REASONING_DELTAS]
    events += [chunk({"content": d}) for d in _text_deltas(sh)]
    if sh.failing:
        return events + [_OPENAI_STREAM_ERROR] if sh.failing == "stream_error" else events
    for k in range(sh.tools):
        events.append(chunk({"tool_calls": [{"index": k, "id": openai_tool_id(k), "type": "function",
                                             "function": {"name": _call_name(sh, k),
                                                          "arguments": ""}}]}))
        events += [chunk({"tool_calls": [{"index": k, "function": {"arguments": frag}}]})
                   for frag in _fragments(_call_json(sh, k), TOOL_ARGUMENT_FRAGMENTS)]
    events.append(chunk({}, _openai_finish(sh)))
    if sh.include_usage:
        events.append(b"data: " + _encode({
            "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": CREATED,
            "model": sh.model, "choices": [], "usage": _openai_usage(sh)}) + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    events.append(b"data: " + _encode({
        "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": CREATED,
        "model": sh.model, "choices": [], "cost": cost}) + b"\n\n")
    return events


# --- messages

def _anthropic_stop(sh: _Shape) -> str:
    if sh.length:
        return "max_tokens"
    return "tool_use" if sh.tools else "end_turn"


def _anthropic_input_usage(sh: _Shape) -> dict[str, int]:
    if sh.cached is not None:   # Anthropic's input_tokens leave the cache reads out
        return {"input_tokens": _input_tokens(sh) - sh.cached,
                "cache_creation_input_tokens": 0, "cache_read_input_tokens": sh.cached}
    return {"input_tokens": _input_tokens(sh),
            "cache_creation_input_tokens": CACHE_CREATION_TOKENS,
            "cache_read_input_tokens": CACHE_READ_TOKENS}


def _anthropic_body(sh: _Shape, cost: str) -> bytes:
    content: list[dict[str, Any]] = []
    if sh.reasoning:
        content.append({"type": "thinking", "thinking": REASONING_TEXT,
                        "signature": THINKING_SIGNATURE})
    text = "".join(_text_deltas(sh))
    if text:
        content.append({"type": "text", "text": text})
    content += [{"type": "tool_use", "id": anthropic_tool_id(k), "name": _call_name(sh, k),
                 "input": _call_arguments(sh, k)} for k in range(sh.tools)]
    return _encode({"id": "msg_fake", "type": "message", "role": "assistant", "model": sh.model,
                    "content": content, "stop_reason": _anthropic_stop(sh), "stop_sequence": None,
                    "usage": {**_anthropic_input_usage(sh), "output_tokens": _output_tokens(sh)},
                    "cost": cost})


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + _encode(data) + b"\n\n"


_ANTHROPIC_STREAM_ERROR = _sse("error", {"type": "error", "error": {
    "type": "overloaded_error", "message": STREAM_ERROR_MESSAGE + ": Overloaded"}})


def _anthropic_events(sh: _Shape, cost: str) -> list[bytes]:
    events = [
        _sse("message_start", {"type": "message_start", "message": {
            "id": "msg_fake", "type": "message", "role": "assistant", "model": sh.model,
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {**_anthropic_input_usage(sh), "output_tokens": 1}}}),
        _sse("ping", {"type": "ping"}),
    ]
    index = 0

    def block(start: dict[str, Any], deltas: list[dict[str, Any]]) -> None:
        nonlocal index
        events.append(_sse("content_block_start", {"type": "content_block_start", "index": index,
                                                   "content_block": start}))
        events.extend(_sse("content_block_delta", {"type": "content_block_delta", "index": index,
                                                   "delta": d}) for d in deltas)
        events.append(_sse("content_block_stop", {"type": "content_block_stop", "index": index}))
        index += 1

    if sh.reasoning and not sh.failing:
        block({"type": "thinking", "thinking": "", "signature": ""},
              [{"type": "thinking_delta", "thinking": d} for d in REASONING_DELTAS]
              + [{"type": "signature_delta", "signature": THINKING_SIGNATURE}])
    text = _text_deltas(sh)
    if text:
        block({"type": "text", "text": ""}, [{"type": "text_delta", "text": d} for d in text])
    if sh.failing:
        events.pop()  # the text block never closes: the stream fails inside it
        return events + [_ANTHROPIC_STREAM_ERROR] if sh.failing == "stream_error" else events
    for k in range(sh.tools):
        block({"type": "tool_use", "id": anthropic_tool_id(k), "name": _call_name(sh, k),
               "input": {}},
              [{"type": "input_json_delta", "partial_json": frag}
               for frag in _fragments(_call_json(sh, k), TOOL_ARGUMENT_FRAGMENTS)])
    events.append(_sse("message_delta", {"type": "message_delta",
                                         "delta": {"stop_reason": _anthropic_stop(sh),
                                                   "stop_sequence": None},
                                         "usage": {"output_tokens": _output_tokens(sh)}}))
    events.append(_sse("message_stop", {"type": "message_stop"}))
    events.append(_sse("ping", {"type": "ping", "cost": cost}))
    return events


# --- responses

def _responses_usage(sh: _Shape) -> dict[str, Any]:
    prompt, completion = _input_tokens(sh), _output_tokens(sh)
    return {"input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": sh.cached or 0, "cache_write_tokens": 0},
            "output_tokens": completion,
            "output_tokens_details": {
                "reasoning_tokens": len(REASONING_DELTAS) if sh.reasoning else 0},
            "total_tokens": prompt + completion}


def _responses_object(sh: _Shape, status: str, output: list[dict[str, Any]],
                      usage: dict[str, Any] | None = None, error: dict[str, str] | None = None,
                      cost: str | None = None) -> dict[str, Any]:
    incomplete = {"reason": "max_output_tokens"} if status == "incomplete" else None
    out = {"id": "resp_fake", "object": "response", "created_at": CREATED, "status": status,
           "error": error, "incomplete_details": incomplete, "instructions": None,
           "max_output_tokens": None, "model": sh.model, "output": output,
           "parallel_tool_calls": True, "previous_response_id": None,
           "reasoning": {"effort": None, "summary": None}, "store": False, "temperature": 1.0,
           "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [],
           "top_p": 1.0, "truncation": "disabled", "usage": usage, "metadata": {}}
    if cost is not None:
        out["cost"] = cost
    return out


def _responses_status(sh: _Shape) -> str:
    return "incomplete" if sh.length else "completed"


def _reasoning_item(summary: str | None) -> dict[str, Any]:
    return {"type": "reasoning", "id": "rs_fake",
            "summary": [] if summary is None else [{"type": "summary_text", "text": summary}]}


def _output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _message_item(status: str, content: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "message", "id": "msg_fake", "status": status, "role": "assistant",
            "content": content}


def _call_item(sh: _Shape, k: int, status: str, arguments: str) -> dict[str, Any]:
    return {"type": "function_call", "id": responses_call_item_id(k), "call_id": openai_tool_id(k),
            "name": _call_name(sh, k), "arguments": arguments, "status": status}


def _responses_output(sh: _Shape) -> list[dict[str, Any]]:
    output = []
    if sh.reasoning:
        output.append(_reasoning_item(REASONING_TEXT))
    text = "".join(_text_deltas(sh))
    if text:
        output.append(_message_item(_responses_status(sh), [_output_text(text)]))
    output += [_call_item(sh, k, "completed", _call_json(sh, k)) for k in range(sh.tools)]
    return output


def _responses_body(sh: _Shape, cost: str) -> bytes:
    return _encode(_responses_object(sh, _responses_status(sh), _responses_output(sh),
                                     _responses_usage(sh), cost=cost))


def _responses_events(sh: _Shape, cost: str) -> list[bytes]:
    events: list[bytes] = []

    def event(kind: str, **fields: Any) -> None:
        events.append(_sse(kind, {"type": kind, "sequence_number": len(events), **fields}))

    event("response.created", response=_responses_object(sh, "in_progress", []))
    event("response.in_progress", response=_responses_object(sh, "in_progress", []))
    output: list[dict[str, Any]] = []
    if sh.reasoning and not sh.failing:
        at = {"item_id": "rs_fake", "output_index": len(output)}
        event("response.output_item.added", output_index=at["output_index"],
              item=_reasoning_item(None))
        event("response.reasoning_summary_part.added", summary_index=0,
              part={"type": "summary_text", "text": ""}, **at)
        for d in REASONING_DELTAS:
            event("response.reasoning_summary_text.delta", summary_index=0, delta=d, **at)
        event("response.reasoning_summary_text.done", summary_index=0, text=REASONING_TEXT, **at)
        event("response.reasoning_summary_part.done", summary_index=0,
              part={"type": "summary_text", "text": REASONING_TEXT}, **at)
        output.append(_reasoning_item(REASONING_TEXT))
        event("response.output_item.done", output_index=at["output_index"], item=output[-1])
    deltas = _text_deltas(sh)
    if deltas:
        at = {"item_id": "msg_fake", "output_index": len(output)}
        event("response.output_item.added", output_index=at["output_index"],
              item=_message_item("in_progress", []))
        event("response.content_part.added", content_index=0, part=_output_text(""), **at)
        for d in deltas:
            event("response.output_text.delta", content_index=0, delta=d, logprobs=[], **at)
        if sh.failing:
            if sh.failing == "stream_error":
                event("response.failed", response=_responses_object(
                    sh, "failed", [], error={"code": "server_error",
                                             "message": STREAM_ERROR_MESSAGE}))
            return events
        text = "".join(deltas)
        event("response.output_text.done", content_index=0, text=text, logprobs=[], **at)
        event("response.content_part.done", content_index=0, part=_output_text(text), **at)
        output.append(_message_item(_responses_status(sh), [_output_text(text)]))
        event("response.output_item.done", output_index=at["output_index"], item=output[-1])
    for k in range(sh.tools):
        arguments = _call_json(sh, k)
        at = {"item_id": responses_call_item_id(k), "output_index": len(output)}
        event("response.output_item.added", output_index=at["output_index"],
              item=_call_item(sh, k, "in_progress", ""))
        for frag in _fragments(arguments, TOOL_ARGUMENT_FRAGMENTS):
            event("response.function_call_arguments.delta", delta=frag, **at)
        event("response.function_call_arguments.done", arguments=arguments, **at)
        output.append(_call_item(sh, k, "completed", arguments))
        event("response.output_item.done", output_index=at["output_index"], item=output[-1])
    status = _responses_status(sh)
    event("response.incomplete" if sh.length else "response.completed",
          response=_responses_object(sh, status, output, _responses_usage(sh), cost=cost))
    return events


# --- google (the Gemini wire)
#
# A `GenerateContentResponse` per answer, or per stream chunk (`data: {...}\r\n\r\n`, no end
# marker: the last chunk holds finishReason and usageMetadata). Reasoning is `thought: true`
# parts, each call a whole `functionCall` part {id, name, args}. Failures: a stream_error is an
# `{"error": {"code": 500, "message", "status": "INTERNAL"}}` event.

def _google_usage(sh: _Shape) -> dict[str, int]:
    prompt, thoughts = _input_tokens(sh), len(REASONING_DELTAS) if sh.reasoning else 0
    candidates = _output_tokens(sh) - thoughts
    usage = {"promptTokenCount": prompt, "candidatesTokenCount": candidates,
             "totalTokenCount": prompt + candidates + thoughts}
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    if sh.cached:
        usage["cachedContentTokenCount"] = sh.cached
    return usage


def _google_chunk(sh: _Shape, parts: list[dict[str, Any]], finish: bool = False) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    chunk: dict[str, Any] = {"candidates": [candidate]}
    if finish:
        candidate["finishReason"] = "MAX_TOKENS" if sh.length else "STOP"
        chunk["usageMetadata"] = _google_usage(sh)
    chunk["modelVersion"] = sh.model
    chunk["responseId"] = "resp-google-fake"
    return chunk


def _google_calls(sh: _Shape) -> list[dict[str, Any]]:
    return [{"functionCall": {"id": openai_tool_id(k), "name": _call_name(sh, k),
                              "args": _call_arguments(sh, k)}} for k in range(sh.tools)]


def _google_body(sh: _Shape, cost: str) -> bytes:
    parts: list[dict[str, Any]] = []
    if sh.reasoning:
        parts.append({"text": REASONING_TEXT, "thought": True})
    text = "".join(_text_deltas(sh))
    if text:
        parts.append({"text": text})
    return _encode(_google_chunk(sh, parts + _google_calls(sh), finish=True))


_GOOGLE_STREAM_ERROR = b"data: " + _encode({"error": {
    "code": 500, "message": STREAM_ERROR_MESSAGE, "status": "INTERNAL"}}) + b"\r\n\r\n"


def _google_events(sh: _Shape, cost: str) -> list[bytes]:
    def event(chunk: dict[str, Any]) -> bytes:
        return b"data: " + _encode(chunk) + b"\r\n\r\n"

    events = []
    if sh.reasoning and not sh.failing:
        events += [event(_google_chunk(sh, [{"text": d, "thought": True}]))
                   for d in REASONING_DELTAS]
    events += [event(_google_chunk(sh, [{"text": d}])) for d in _text_deltas(sh)]
    if sh.failing:
        return events + [_GOOGLE_STREAM_ERROR] if sh.failing == "stream_error" else events
    events += [event(_google_chunk(sh, [call])) for call in _google_calls(sh)]
    events.append(event(_google_chunk(sh, [{"text": ""}], finish=True)))
    return events


_RENDER: dict[tuple[str, bool], Callable[[_Shape, str], Any]] = {
    ("google", False): _google_body, ("google", True): _google_events,
    ("openai", False): _openai_body, ("openai", True): _openai_events,
    ("anthropic", False): _anthropic_body, ("anthropic", True): _anthropic_events,
    ("responses", False): _responses_body, ("responses", True): _responses_events}
_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
_CACHE_LIMIT = 4096


# ---------------------------------------------------------------------------------------------
# Request checks

def _is_prefixed(model: str) -> bool:
    return "/" in model or ":" in model


def _prefixed_model_message(model: str) -> str:
    return (f"model {model!r} is not supported: OpenCode Go takes the bare model id "
            f"(such as {model.replace(':', '/').rsplit('/', 1)[-1]!r}), without a provider prefix")


def _chat_final_turn_text(req: _ChatRequest) -> str:
    texts = []
    for m in reversed(req.messages):
        if m.role == "assistant":
            break
        if m.role != "user":
            continue
        if isinstance(m.content, str):
            texts.append(m.content)
        elif m.content:
            texts.extend(p.text for p in m.content if p.text)
    return " ".join(texts)


def _check_chat(req: _ChatRequest) -> None:
    if _is_prefixed(req.model):
        raise _Rejected(_prefixed_model_message(req.model))
    if not req.messages:
        raise _Rejected("messages: must contain at least one message")
    unanswered: list[str] = []
    for i, m in enumerate(req.messages):
        if m.role == "tool":
            if m.tool_call_id not in unanswered:
                raise _Rejected(f"messages[{i}]: messages with role 'tool' must be a response to a "
                                f"preceding message with 'tool_calls' (tool_call_id "
                                f"{m.tool_call_id!r} does not match one)")
            unanswered.remove(m.tool_call_id)
            continue
        if unanswered:
            raise _Rejected(f"messages[{i}]: an assistant message with 'tool_calls' must be "
                            f"followed by tool messages responding to each 'tool_call_id'; "
                            f"missing: {', '.join(unanswered)}")
        if m.role == "assistant" and m.tool_calls:
            unanswered = [c.id for c in m.tool_calls]
    # Unanswered tool calls at the very end are left to the model, as OpenAI does.


def _check_model_limits(model: str, bounds: dict[str, int | None], effort: str | None,
                        effort_field: str) -> None:
    """A bound above the model's output limit, or an effort it does not take: a 400."""
    limit = OUTPUT_LIMITS.get(model)
    for name, value in bounds.items():
        if limit is not None and value is not None and value > limit:
            raise _Rejected(f"{name}: must be less than or equal to {limit} for {model}, "
                            f"got {value}")
    accepted = REASONING_EFFORTS.get(model)
    if accepted is not None and effort is not None and effort not in accepted:
        raise _Rejected(f"{effort_field}: Invalid value {effort!r} for {model}; supported "
                        f"values are: {', '.join(accepted)}")


def _reasoning_lost(req: _ChatRequest) -> bool:
    """DeepSeek: an assistant tool-call turn whose reasoning_content is missing or null."""
    return any(m.role == "assistant" and m.tool_calls
               and (m.reasoning_content is msgspec.UNSET or m.reasoning_content is None)
               for m in req.messages)


def _anthropic_final_turn_text(req: _MessagesRequest) -> str:
    texts = []
    for m in reversed(req.messages):
        if m.role == "assistant":
            break
        if isinstance(m.content, str):
            texts.append(m.content)
        else:
            texts.extend(b.text for b in m.content if b.type == "text" and b.text)
    return " ".join(texts)


def _check_messages(req: _MessagesRequest, beta: str | None) -> None:
    if beta is not None:
        raise _Rejected(f"anthropic-beta: beta features are not supported by this endpoint "
                        f"(got {beta!r})")
    if req.thinking is not msgspec.UNSET:
        raise _Rejected("thinking: extended thinking is not supported by this endpoint")
    if req.context_management is not msgspec.UNSET:
        raise _Rejected("context_management: Extra inputs are not permitted")
    if req.output_config is not msgspec.UNSET:
        raise _Rejected("output_config: Extra inputs are not permitted")
    if req.max_tokens is None:
        raise _Rejected("max_tokens: Field required")
    if _is_prefixed(req.model):
        raise _Rejected(_prefixed_model_message(req.model))
    if isinstance(req.system, str) and not req.system:
        raise _Rejected("system: text content blocks must be non-empty")
    if isinstance(req.system, list) and any(b.type == "text" and not b.text for b in req.system):
        raise _Rejected("system: text content blocks must be non-empty")
    if not req.messages:
        raise _Rejected("messages: at least one message is required")
    last = len(req.messages) - 1
    tool_use_ids: set[str] = set()  # of the previous assistant turn
    for i, m in enumerate(req.messages):
        if m.role not in ("user", "assistant"):
            raise _Rejected(f"messages.{i}.role: Input should be 'user' or 'assistant' "
                            f"(got {m.role!r}; system prompts go in the top-level system field)")
        if i and req.messages[i - 1].role == m.role:
            raise _Rejected(f"messages.{i}: roles must alternate between 'user' and 'assistant', "
                            f"but found two consecutive {m.role!r} messages")
        blocks = [_Block("text", m.content)] if isinstance(m.content, str) else m.content
        # An empty final assistant message is a prefill, which Anthropic accepts.
        if not blocks and not (i == last and m.role == "assistant"):
            raise _Rejected(f"messages.{i}: all messages must have non-empty content")
        answered: set[str] = set()
        seen_other = False
        for j, b in enumerate(blocks):
            if b.type == "text" and not b.text and not (i == last and m.role == "assistant"):
                raise _Rejected(f"messages.{i}.content.{j}: text content blocks must be non-empty")
            if b.type == "tool_result":
                if m.role != "user" or b.tool_use_id not in tool_use_ids:
                    raise _Rejected(f"messages.{i}.content.{j}: unexpected `tool_use_id` found in "
                                    f"`tool_result` blocks: {b.tool_use_id}. Each `tool_result` "
                                    f"block must have a corresponding `tool_use` block in the "
                                    f"previous message.")
                if seen_other:
                    raise _Rejected(f"messages.{i}.content.{j}: `tool_result` blocks must come "
                                    f"first in the message content, before any other block")
                answered.add(b.tool_use_id)
            else:
                seen_other = True
        if m.role == "user" and tool_use_ids - answered:
            raise _Rejected(f"messages.{i}: `tool_use` ids were found without `tool_result` blocks "
                            f"immediately after: {', '.join(sorted(tool_use_ids - answered))}. "
                            f"Each `tool_use` block must have a corresponding `tool_result` block "
                            f"in the next message.")
        tool_use_ids = ({b.id for b in blocks if b.type == "tool_use" and b.id}
                        if m.role == "assistant" else set())


_RESPONSES_ROLES = ("user", "assistant", "system", "developer")
_RESPONSES_PARTS = ("input_text", "output_text", "input_image", "input_file", "refusal")


def _responses_items(req: _ResponsesRequest) -> list[_ResponsesItem]:
    """The request's input as items, checked as OpenAI checks them with store=false."""
    if _is_prefixed(req.model):
        raise _Rejected(_prefixed_model_message(req.model))
    if req.previous_response_id is not None:
        raise _Rejected("previous_response_id: previous_response_id is not supported with "
                        "store=false: no response is stored; send the whole conversation as "
                        "input items")
    if req.input is None:
        raise _Rejected("input: Field required")
    items = ([_ResponsesItem("message", "user", req.input)] if isinstance(req.input, str)
             else req.input)
    if not items:
        raise _Rejected("input: must contain at least one item")
    calls: list[str] = []
    answered: set[str] = set()
    for i, item in enumerate(items):
        if item.type == "message":
            if item.role not in _RESPONSES_ROLES:
                raise _Rejected(f"input[{i}].role: Invalid value {item.role!r}; supported values "
                                f"are: 'user', 'assistant', 'system' and 'developer'")
            if item.content is None:
                raise _Rejected(f"input[{i}].content: Field required")
            if not isinstance(item.content, str):
                for j, part in enumerate(item.content):
                    if part.type not in _RESPONSES_PARTS:
                        raise _Rejected(f"input[{i}].content[{j}].type: Invalid value "
                                        f"{part.type!r}")
        elif item.type == "function_call":
            if not item.call_id or not item.name or item.arguments is None:
                raise _Rejected(f"input[{i}]: a function_call item needs call_id, name and "
                                f"arguments")
            calls.append(item.call_id)
        elif item.type == "function_call_output":
            if item.call_id not in calls:
                raise _Rejected(f"No tool call found for function call output with call_id "
                                f"{item.call_id}.")
            answered.add(item.call_id)
    for call_id in calls:
        if call_id not in answered:
            raise _Rejected(f"No tool output found for function call {call_id}.")
    return items


def _responses_final_turn_text(items: list[_ResponsesItem]) -> str:
    texts = []
    for item in reversed(items):
        if item.type in ("function_call", "reasoning") or (
                item.type == "message" and item.role == "assistant"):
            break
        if item.type != "message" or item.role != "user":
            continue
        if isinstance(item.content, str):
            texts.append(item.content)
        elif item.content:
            texts.extend(p.text for p in item.content if p.text)
    return " ".join(texts)


# ---------------------------------------------------------------------------------------------
# Charges and usage windows

def _utc(ts: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc)


def _iso(ts: float) -> str:
    return _utc(ts).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _next_monday(ts: float) -> float:
    day = _utc(ts).replace(hour=0, minute=0, second=0, microsecond=0)
    return (day + datetime.timedelta(days=7 - day.weekday())).timestamp()


def _next_month(ts: float) -> float:
    day = _utc(ts).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return day.replace(year=day.year + day.month // 12, month=day.month % 12 + 1).timestamp()


_WINDOW_SUMS = {"rolling": "rolling", "weekly": "week", "monthly": "month"}


class _Ledger:
    """One key's charges: totals, and what the three usage windows hold.

    The rolling window keeps one bucket per second (so a load test's millions of answers stay a
    few thousand buckets); the calendar windows keep a sum and when it ends.
    """
    __slots__ = ("buckets", "rolling", "week", "week_end", "month", "month_end", "total",
                 "by_model", "count")

    def __init__(self) -> None:
        self.buckets: collections.deque[list] = collections.deque()   # [second, dollars]
        self.rolling = self.week = self.month = self.total = 0.0
        self.week_end = self.month_end = 0.0
        self.by_model: dict[str, float] = {}
        self.count = 0

    def roll(self, now: float) -> None:
        buckets = self.buckets
        if buckets and buckets[0][0] <= now - ROLLING_WINDOW_SECONDS:
            while buckets and buckets[0][0] <= now - ROLLING_WINDOW_SECONDS:
                buckets.popleft()
            self.rolling = sum(amount for _, amount in buckets)
        if now >= self.week_end:
            self.week, self.week_end = 0.0, _next_monday(now)
        if now >= self.month_end:
            self.month, self.month_end = 0.0, _next_month(now)

    def charge(self, now: float, model: str, dollars: float) -> None:
        self.roll(now)
        second = int(now)
        if self.buckets and self.buckets[-1][0] == second:
            self.buckets[-1][1] += dollars
        else:
            self.buckets.append([second, dollars])
        self.rolling += dollars
        self.week += dollars
        self.month += dollars
        self.total += dollars
        self.by_model[model] = self.by_model.get(model, 0.0) + dollars
        self.count += 1

    def rolling_frees_at(self, now: float, limit: float) -> float:
        """When enough of the rolling window's charges have left it to be under `limit`."""
        left = self.rolling
        for second, amount in self.buckets:
            left -= amount
            if left < limit - 1e-12:
                return second + ROLLING_WINDOW_SECONDS
        return now + ROLLING_WINDOW_SECONDS

    def spent(self, window: str) -> float:
        return getattr(self, _WINDOW_SUMS[window])

    def resets_at(self, window: str, now: float) -> float:
        if window == "weekly":
            return self.week_end
        if window == "monthly":
            return self.month_end
        return (self.buckets[0][0] + ROLLING_WINDOW_SECONDS if self.buckets
                else now + ROLLING_WINDOW_SECONDS)


def _reached(spent: float, limit: float) -> bool:
    return spent > 0 and spent >= limit - 1e-12


# ---------------------------------------------------------------------------------------------
# The server

class _Failing(NamedTuple):
    status: int
    retry_after: str | None
    limit: str | None         # a manual usage limit: "5 hour", "weekly" or "monthly"
    refuse: str | None = None  # "credits" or "entitlement"


class _Conversation:
    """What the prompt cache model saw of one session: the key of its last turn, its moves
    (hot: the key it left still held its prefix), its prompt and cached tokens."""
    __slots__ = ("key", "turns", "moves", "hot_moves", "prompt_tokens", "cached_tokens")

    def __init__(self) -> None:
        self.key: str | None = None
        self.turns = self.moves = self.hot_moves = self.prompt_tokens = self.cached_tokens = 0


class _FakeState:
    __slots__ = ("records", "keys", "active", "completed", "aborted", "abandoned", "rendered",
                 "catalogue", "list_status", "models_body", "ledgers", "limits", "usage",
                 "cache_lifetime", "prefixes", "conversations", "caps", "edge", "pauses")

    def __init__(self, record: bool, edge: bool = True):
        self.edge = edge    # the edge's User-Agent check is on
        self.records: collections.deque | None = collections.deque(maxlen=200) if record else None
        self.keys: dict[str, _Failing] = {}
        self.active = 0
        self.completed = 0
        self.aborted = 0
        self.abandoned = 0
        self.rendered: dict[_Shape, _Rendered] = {}
        self.catalogue = dict(CATALOGUE)
        self.list_status: int | None = None
        self.models_body: bytes | None = None
        self.ledgers: dict[str, _Ledger] = {}
        self.limits: dict[str, dict[str, float]] = {}
        self.usage: dict[str, dict[str, Any]] = {}
        self.caps: dict[str, dict[str, tuple[str, int]]] = {}  # key -> model -> (limit, secs)
        # The prompt cache model (off until `/_fake/cache` sets a lifetime): (key, session) ->
        # [prompt tokens of its last turn, when]; session -> what it did.
        self.cache_lifetime: float | None = None
        self.prefixes: dict[tuple[str, str], list] = {}
        self.conversations: dict[str, _Conversation] = {}
        self.pauses = _Pauses()

    def cached_turn(self, key: str, session: str, sh: _Shape) -> _Shape:
        """`sh` with the prompt tokens this key's cache holds for the session: the prompt of
        its last turn there, if that was at most `cache_lifetime` ago (each hit refreshes it)."""
        if self.cache_lifetime is None:
            return sh
        now = time.time()
        prompt = _input_tokens(sh)
        held = self.prefixes.get((key, session))
        alive = held is not None and now - held[1] <= self.cache_lifetime
        cached = min(held[0], prompt) if alive else 0
        self.prefixes[(key, session)] = [prompt, now]
        conversation = self.conversations.get(session)
        if conversation is None:
            conversation = self.conversations[session] = _Conversation()
        if conversation.key is not None and conversation.key != key:
            conversation.moves += 1
            left = self.prefixes.get((conversation.key, session))
            if left is not None and now - left[1] <= self.cache_lifetime:
                conversation.hot_moves += 1
        conversation.key = key
        conversation.turns += 1
        conversation.prompt_tokens += prompt
        conversation.cached_tokens += cached
        return sh._replace(cached=cached)

    def reset(self) -> None:
        self.keys.clear()
        self.caps.clear()
        if self.records is not None:
            self.records.clear()
        self.completed = self.aborted = self.abandoned = 0
        self.catalogue = dict(CATALOGUE)
        self.list_status = None
        self.models_body = None
        self.ledgers.clear()
        self.limits.clear()
        self.usage.clear()
        self.cache_lifetime = None
        self.prefixes.clear()
        self.conversations.clear()

    def charge(self, key: str, model: str, dollars: float) -> None:
        ledger = self.ledgers.get(key)
        if ledger is None:
            ledger = self.ledgers[key] = _Ledger()
        ledger.charge(time.time(), model, dollars)

    def limit_reached(self, key: str) -> tuple[str, int] | None:
        """(limitName, retry_after) when a usage window of `key` is full."""
        ledger = self.ledgers.get(key)
        if ledger is None:
            return None
        now = time.time()
        ledger.roll(now)
        limits = self.limits.get(key, DEFAULT_LIMITS)
        frees_at = 0.0
        name = None
        for window in ("rolling", "weekly", "monthly"):
            if _reached(ledger.spent(window), limits[window]):
                at = (ledger.rolling_frees_at(now, limits[window]) if window == "rolling"
                      else ledger.resets_at(window, now))
                if at > frees_at:
                    frees_at, name = at, LIMIT_NAMES[window]
        if name is None:
            return None
        return name, max(1, math.ceil(frees_at - now))


_STATE = web.AppKey("fake_state", _FakeState)


def _render(state: _FakeState, sh: _Shape) -> _Rendered:
    out = state.rendered.get(sh)
    if out is None:
        if len(state.rendered) >= _CACHE_LIMIT:
            state.rendered.clear()
        cost = _cost(sh)
        out = state.rendered[sh] = _Rendered(_RENDER[sh.flavour, sh.stream](sh, cost), float(cost))
    return out


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def _abort(request: web.Request) -> None:
    """Drop the TCP connection without a clean end of the body, as a crashed upstream does."""
    if request.transport is not None:
        request.transport.abort()


class _Pauses:
    """The paused answers (`slow`, `ttfb`), and one watcher that looks at all their connections
    every 50 ms: a timer per paused answer every 50 ms would take the fake's whole CPU at a few
    thousand open streams (and stop it accepting connections)."""
    __slots__ = ("waiting", "watcher")

    def __init__(self):
        self.waiting: dict[asyncio.Future, web.Request] = {}
        self.watcher: asyncio.Task | None = None

    async def pause(self, request: web.Request, seconds: float) -> bool:
        if _client_gone(request):
            return False
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        self.waiting[done] = request
        if self.watcher is None or self.watcher.done():
            self.watcher = loop.create_task(self._watch())
        timer = loop.call_later(seconds, _settle, done, True)
        try:
            return await done
        finally:
            timer.cancel()
            self.waiting.pop(done, None)

    async def _watch(self) -> None:
        while self.waiting:
            await asyncio.sleep(0.05)
            for done, request in list(self.waiting.items()):
                if _client_gone(request):
                    _settle(done, False)


def _settle(future: asyncio.Future, value: bool) -> None:
    if not future.done():
        future.set_result(value)


async def _pause(request: web.Request, seconds: float) -> bool:
    """Sleep, watching the connection; False as soon as the client has gone away."""
    return await request.app[_STATE].pauses.pause(request, seconds)


def _error_text(script: Script, key: str) -> str:
    """The message of an `error=STATUS` answer (quoting the key with `leak`)."""
    return f"fake upstream error {script.error}" + (f" for key {key}" if script.leak else "")


_LEAK_WORD_TEXT = "wörld"
_LEAK_WORD = _LEAK_WORD_TEXT.encode()
# Where the key's two pieces go with `keysplit=N` (words the answer text has nowhere else).
_KEY_HEAD = "kéyhead"
_KEY_TAIL = "kéytail"
_STREAM_ERROR_WORDS = b"fake upstream stream error"


def _misbehave(data: bytes, script: Script, key: str) -> bytes:
    """An answer's bytes as a misbehaving upstream sends them (leak, bad_utf8)."""
    if script.leak:
        if script.keysplit:
            data = data.replace(_KEY_HEAD.encode(), key[:script.keysplit].encode()).replace(
                _KEY_TAIL.encode(), key[script.keysplit:].encode())
        data = data.replace(_LEAK_WORD, key.encode()).replace(
            _STREAM_ERROR_WORDS, _STREAM_ERROR_WORDS + b" for key " + key.encode())
    if script.bad_utf8:
        data = data.replace(_LEAK_WORD, b"w\xffrld")
    return data


async def _answer(request: web.Request, state: _FakeState, sh: _Shape, script: Script,
                  key: str) -> web.StreamResponse:
    if script.error200:
        message = "fake upstream error body" + (f" for key {key}" if script.leak else "")
        if sh.flavour == "anthropic":
            error = {"type": "error", "error": {"type": "api_error", "message": message}}
        else:
            error = {"error": {"message": message, "type": "server_error"}}
        return _json_response(_encode(error), 200)
    sh = state.cached_turn(key, request.headers.get(SESSION_HEADER, ""), sh)
    rendered = _render(state, sh)
    odd = script.leak or script.bad_utf8
    if not sh.stream:
        if script.ttfb and not await _pause(request, script.ttfb):
            state.abandoned += 1
            return web.Response(status=499)  # nobody is listening any more
        state.charge(key, sh.model, rendered.charge)
        body = _misbehave(rendered.payload, script, key) if odd else rendered.payload
        if not script.cut:
            return web.Response(body=body, content_type="application/json")
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.content_length = len(body)
        await resp.prepare(request)
        await resp.write(body[:len(body) // 2])
        _abort(request)
        return resp
    state.active += 1
    finished = False
    try:
        if script.ttfb and not await _pause(request, script.ttfb):
            return web.Response(status=499)
        state.charge(key, sh.model, rendered.charge)
        resp = web.StreamResponse(headers=_SSE_HEADERS)
        await resp.prepare(request)
        if script.leak and script.split:
            await _write_split(request, resp, _misbehave(b"".join(rendered.payload), script, key),
                               key.encode(), script)
            finished = True
            return resp
        for n, event in enumerate(rendered.payload):
            if script.slow and n and not await _pause(request, script.slow):
                return resp
            await resp.write(_misbehave(event, script, key) if odd else event)
            if script.garbage and n == 0:
                await resp.write(b"x" * script.garbage)
        if script.cut:
            _abort(request)
        else:
            await resp.write_eof()
        finished = True
        return resp
    except ConnectionError:  # the client went away mid-write
        return resp
    finally:
        state.active -= 1
        if finished:
            state.completed += 1
        else:
            state.aborted += 1


async def _write_split(request: web.Request, resp: web.StreamResponse, data: bytes, key: bytes,
                       script: Script) -> None:
    """A leaking stream in two writes cut `split` bytes into (or past) the quoted key."""
    at = data.find(key)
    at = len(data) if at < 0 else min(at + script.split, len(data))
    await resp.write(data[:at])
    if script.slow and not await _pause(request, script.slow):
        return
    await resp.write(data[at:])
    await resp.write_eof()


def _record(state: _FakeState, request: web.Request, body: bytes, key: str | None) -> None:
    if state.records is not None:
        state.records.append((request.path, request.raw_headers, body, key))


def _no_session(request: web.Request) -> web.Response | None:
    if request.headers.get(SESSION_HEADER, "").strip():
        return None
    return _json_response(_MISSING_SESSION, 400)


def _bearer(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    return (auth[7:].strip() or None) if auth[:7].lower() == "bearer " else None


_BEARER_REQUIRED = ("missing or malformed Authorization header: expected "
                    "'Authorization: Bearer <api key>'")


def _key_refusal(state: _FakeState, key: str, error: Callable[..., web.Response],
                 model_call: bool) -> web.Response | None:
    """A failing key's error, or (model calls only) the usage-limit 429."""
    failing = state.keys.get(key)
    if failing is not None:
        if failing.refuse == "credits":
            return _json_response(_CREDITS_ERROR, 401)
        if failing.refuse == "entitlement":
            return _json_response(_ENTITLEMENT_ERROR, 403)
        if failing.limit is None:
            return error(failing.status, f"fake upstream error {failing.status}",
                         failing.retry_after)
        if model_call:
            return _usage_limit_error(failing.limit, int(float(failing.retry_after or 3600)),
                                      failing.status)
    if model_call and state.ledgers:
        reached = state.limit_reached(key)
        if reached is not None:
            return _usage_limit_error(*reached)
    return None


def _wrong_wire(state: _FakeState, model: str, wire: str) -> web.Response | None:
    if _is_prefixed(model):
        return None   # the flavour's own check names the prefix
    served = state.catalogue.get(model) or wire_of(model, {})
    if served == wire or (served is None and wire != RESPONSES):
        return None
    return _opencode_error(400, "invalid_request_error",
                           f"{ERROR_PREFIX}Model {model} is not supported for format "
                           f"{WIRE_FORMATS[wire]}")


_BAD_BODY = (msgspec.DecodeError, msgspec.ValidationError, _Rejected, _BadDirective)


def _admit(state: _FakeState, request: web.Request, body: bytes, key: str | None,
           error: Callable[..., web.Response], missing_key: str) -> web.Response | None:
    """What every model endpoint checks first, in OpenCode Go's order (the request is recorded
    whatever the outcome): the session header, a key, the key's own state. None: go on."""
    _record(state, request, body, key)
    if _edge_blocks(request):
        return _edge_block()
    refused = _no_session(request)
    if refused is not None:
        return refused
    if not key:
        return error(401, missing_key)
    return _key_refusal(state, key, error, True)


def _served(state: "_FakeState", key: str, model: str, script: Script) -> web.Response | None:
    """What a decoded model call may still meet before its answer: a cap on its model, a
    scripted refusal."""
    return _capped(state, key, model) or _refusal(script, model)


async def _chat_completions(request: web.Request) -> web.StreamResponse:
    state = request.app[_STATE]
    body = await request.read()
    key = _bearer(request)
    refused = _admit(state, request, body, key, _openai_error, _BEARER_REQUIRED)
    if refused is not None:
        return refused
    try:
        req = _decode_chat(body)
        refused = _wrong_wire(state, req.model, CHAT)
        if refused is not None:
            return refused
        _check_chat(req)
        _check_model_limits(req.model, {"max_tokens": req.max_tokens, "max_completion_tokens":
                                        req.max_completion_tokens},
                            req.reasoning_effort, "reasoning_effort")
        if thinking_model(req.model) and _reasoning_lost(req):
            return _json_response(_DEEPSEEK_REASONING, 400)
        script = parse_script(_chat_final_turn_text(req))
    except _BAD_BODY as exc:
        return _openai_error(400, str(exc))
    refused = _served(state, key, req.model, script)
    if refused is not None:
        return refused
    if script.error:
        return _openai_error(script.error, _error_text(script, key), script.retry_after)
    include_usage = bool(req.stream_options and req.stream_options.include_usage)
    sh = _shape("openai", req.stream, req.model, len(req.messages), include_usage, script)
    return await _answer(request, state, sh, script, key)


async def _messages(request: web.Request) -> web.StreamResponse:
    state = request.app[_STATE]
    body = await request.read()
    headers = request.headers
    key = headers.get("x-api-key") or None
    if key is None and request.path.startswith(INFERENCE_PREFIX):
        key = _bearer(request)  # the inference layout's Messages takes Bearer too
    refused = _admit(state, request, body, key, _anthropic_error,
                     "x-api-key header is required (this endpoint does not take "
                     "Authorization: Bearer)")
    if refused is not None:
        return refused
    if not headers.get("anthropic-version"):
        return _anthropic_error(400, "anthropic-version: header is required")
    try:
        req = _decode_messages(body)
        refused = _wrong_wire(state, req.model, MESSAGES)
        if refused is not None:
            return refused
        _check_messages(req, headers.get("anthropic-beta"))
        _check_model_limits(req.model, {"max_tokens": req.max_tokens}, None, "")
        script = parse_script(_anthropic_final_turn_text(req))
    except _BAD_BODY as exc:
        return _anthropic_error(400, str(exc))
    refused = _served(state, key, req.model, script)
    if refused is not None:
        return refused
    if script.error:
        return _anthropic_error(script.error, _error_text(script, key),
                                script.retry_after)
    sh = _shape("anthropic", req.stream, req.model, len(req.messages), False, script)
    return await _answer(request, state, sh, script, key)


async def _responses(request: web.Request) -> web.StreamResponse:
    state = request.app[_STATE]
    body = await request.read()
    key = _bearer(request)
    refused = _admit(state, request, body, key, _openai_error, _BEARER_REQUIRED)
    if refused is not None:
        return refused
    try:
        req = _decode_responses(body)
        refused = _wrong_wire(state, req.model, RESPONSES)
        if refused is not None:
            return refused
        items = _responses_items(req)
        _check_model_limits(req.model, {"max_output_tokens": req.max_output_tokens},
                            req.reasoning.effort if req.reasoning else None, "reasoning.effort")
        script = parse_script(_responses_final_turn_text(items))
    except _BAD_BODY as exc:
        return _openai_error(400, str(exc))
    refused = _served(state, key, req.model, script)
    if refused is not None:
        return refused
    if script.error:
        return _openai_error(script.error, _error_text(script, key), script.retry_after)
    sh = _shape("responses", req.stream, req.model, len(items), False, script)
    return await _answer(request, state, sh, script, key)


# Google rejects a body field it does not define ("Invalid JSON payload received. Unknown name").
_GOOGLE_FIELDS = frozenset({"contents", "systemInstruction", "tools", "toolConfig",
                            "generationConfig", "safetySettings", "cachedContent", "labels"})


class _GooglePart(msgspec.Struct):
    text: str | None = None
    thought: bool = False


class _GoogleContent(msgspec.Struct):
    parts: list[_GooglePart]
    role: str = "user"


class _GoogleRequest(msgspec.Struct):
    contents: list[_GoogleContent]


_decode_google = msgspec.json.Decoder(_GoogleRequest).decode


def _google_error(status: int, message: str, retry_after: str | None = None) -> web.Response:
    names = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
             404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 503: "UNAVAILABLE"}
    body = _encode({"error": {"code": status, "message": message,
                              "status": names.get(status, "INTERNAL")}})
    return _json_response(body, status, retry_after)


def _google_final_turn_text(req: _GoogleRequest) -> str:
    texts = []
    for content in reversed(req.contents):
        if content.role == "model":
            break
        texts.extend(part.text for part in content.parts if part.text and not part.thought)
    return " ".join(texts)


async def _google(request: web.Request) -> web.StreamResponse:
    state = request.app[_STATE]
    body = await request.read()
    key = request.headers.get("x-goog-api-key") or _bearer(request)
    refused = _admit(state, request, body, key, _google_error,
                     "API key not valid. Please pass a valid API key (x-goog-api-key).")
    if refused is not None:
        return refused
    model, _, method = request.match_info["rest"].rpartition(":")
    stream = method == "streamGenerateContent"
    if method not in ("generateContent", "streamGenerateContent"):
        return _google_error(404, f"method {method!r} not found")
    if stream and request.query.get("alt") != "sse":
        return _google_error(400, "this fake serves streams as alt=sse only")
    try:
        raw = json.loads(body)
        unknown = sorted(set(raw) - _GOOGLE_FIELDS) if isinstance(raw, dict) else []
        if unknown:
            raise _Rejected(f'Invalid JSON payload received. Unknown name "{unknown[0]}": '
                            "Cannot find field.")
        req = _decode_google(body)
        refused = _wrong_wire(state, model, GOOGLE)
        if refused is not None:
            return refused
        if _is_prefixed(model):
            raise _Rejected(_prefixed_model_message(model))
        if not req.contents:
            raise _Rejected("contents is not specified")
        script = parse_script(_google_final_turn_text(req))
    except (ValueError, *_BAD_BODY) as exc:
        return _google_error(400, str(exc))
    if script.error:
        return _google_error(script.error, _error_text(script, key), script.retry_after)
    sh = _shape("google", stream, model, len(req.contents), False, script)
    return await _answer(request, state, sh, script, key)


async def _models(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    key = _bearer(request)
    _record(state, request, b"", key)
    if _edge_blocks(request):
        return _edge_block()
    refused = _no_session(request)
    if refused is not None:
        return refused
    if not key:
        return _openai_error(401, _BEARER_REQUIRED)
    refused = _key_refusal(state, key, _openai_error, False)
    if refused is not None:
        return refused
    if state.list_status is not None:
        return _opencode_error(state.list_status, _error_type(state.list_status),
                               f"{ERROR_PREFIX}fake models list error {state.list_status}")
    if state.models_body is None:
        state.models_body = _encode({"object": "list", "data": [
            {"id": model, "object": "model", "created": CREATED, "owned_by": MODELS_OWNER}
            for model in sorted(state.catalogue)]})
    return _json_response(state.models_body)


async def _usage(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    key = _bearer(request)
    _record(state, request, b"", key if key else request.headers.get("x-api-key"))
    if _edge_blocks(request):
        return _edge_block()
    refused = _no_session(request)
    if refused is not None:
        return refused
    if not key:
        return _openai_error(401, _BEARER_REQUIRED + " (x-api-key is not read by this endpoint)")
    refused = _key_refusal(state, key, _openai_error, False)
    if refused is not None:
        return refused
    overrides = state.usage.get(key, {})
    if overrides.get("status"):
        status = overrides["status"]
        return _opencode_error(status, _error_type(status), f"fake usage error {status}")
    now = time.time()
    ledger = state.ledgers.get(key) or _Ledger()
    ledger.roll(now)
    limits = state.limits.get(key, DEFAULT_LIMITS)
    failing = state.keys.get(key)
    usage = {}
    for window in ("rolling", "weekly", "monthly"):
        spent = ledger.spent(window)
        percent = int(math.floor(spent / limits[window] * 100 + 1e-9))
        resets_at = ledger.resets_at(window, now)
        if failing is not None and failing.limit == LIMIT_NAMES[window]:
            percent = max(percent, 100)
            resets_at = now + int(float(failing.retry_after or 3600))
        if overrides.get(window) is not None:
            percent = int(overrides[window])
        limited = percent >= 100 or window in overrides.get("rate_limited", ())
        usage[window] = {"status": "rate-limited" if limited else "ok",
                         "percent": percent, "resetsAt": _iso(resets_at)}
    return web.json_response({"workspaceID": WORKSPACE_ID, "userID": USER_ID, "usage": usage})


# --- test control: /_fake/...

def _control_error(message: str) -> web.Response:
    return web.json_response({"error": message}, status=400)


async def _set_keys(request: web.Request) -> web.Response:
    """{"KEY": {"status": 429, "retry_after": "2"}, "LIMITED": {"limit": "weekly",
    "retry_after": 3600}, "OTHER": null}: null clears a key."""
    state = request.app[_STATE]
    for key, how in (await request.json()).items():
        if how is None:
            state.keys.pop(key, None)
            state.caps.pop(key, None)
            continue
        retry_after = how.get("retry_after")
        retry_after = None if retry_after is None else str(retry_after)
        limit = how.get("limit")
        if how.get("cap"):
            if limit not in LIMIT_NAMES.values():
                return _control_error(f"a cap needs a limit: one of {sorted(LIMIT_NAMES.values())}")
            state.caps.setdefault(key, {})[how["cap"]] = (limit, int(float(retry_after or 3600)))
        elif how.get("refuse") is not None:
            if how["refuse"] not in ("credits", "entitlement"):
                return _control_error("refuse must be credits or entitlement")
            state.keys[key] = _Failing(401, None, None, how["refuse"])
        elif limit is not None:
            if limit not in LIMIT_NAMES.values():
                return _control_error(f"limit must be one of {sorted(LIMIT_NAMES.values())}")
            state.keys[key] = _Failing(int(how.get("status") or 429), retry_after or "3600",
                                       limit)
        elif how.get("status") is not None:
            state.keys[key] = _Failing(int(how["status"]), retry_after, None)
        else:
            return _control_error(f"{key}: give a status or a limit (or null to restore it)")
    return web.json_response({"keys": sorted(state.keys)})


async def _set_limits(request: web.Request) -> web.Response:
    """{"KEY": {"rolling": 12, "weekly": 30, "monthly": 60}}: a missing field keeps its default."""
    state = request.app[_STATE]
    for key, how in (await request.json()).items():
        if how is None:
            state.limits.pop(key, None)
            continue
        limits = dict(DEFAULT_LIMITS)
        for window, dollars in how.items():
            if window not in DEFAULT_LIMITS:
                return _control_error(f"unknown window {window!r}: rolling, weekly, monthly")
            if dollars is None:
                continue
            if not isinstance(dollars, (int, float)) or dollars <= 0:
                return _control_error(f"{window}: the limit must be a number of dollars > 0")
            limits[window] = float(dollars)
        state.limits[key] = limits
    return web.json_response({"limits": state.limits})


async def _set_usage(request: web.Request) -> web.Response:
    """{"KEY": {"rolling": 90, "weekly": 10, "monthly": 5, "status": 404}}; null clears."""
    state = request.app[_STATE]
    for key, how in (await request.json()).items():
        if how is None:
            state.usage.pop(key, None)
            continue
        unknown = set(how) - {"rolling", "weekly", "monthly", "status", "rate_limited"}
        if unknown:
            return _control_error(f"unknown fields {sorted(unknown)}: rolling, weekly, monthly, "
                                  f"status, rate_limited")
        state.usage[key] = {k: v for k, v in how.items() if v is not None}
    return web.json_response({"usage": state.usage})


async def _set_models(request: web.Request) -> web.Response:
    """{"add": {"id": "chat"|"messages"|"responses"}, "remove": ["id"], "list_status": 500}."""
    state = request.app[_STATE]
    how = await request.json()
    add = how.get("add") or {}
    bad = {model: wire for model, wire in add.items() if wire not in WIRES}
    if bad:
        return _control_error(f"unknown wires {bad}: chat, messages, responses, google")
    for model in how.get("remove") or ():
        state.catalogue.pop(model, None)
    state.catalogue.update(add)
    if "list_status" in how:
        state.list_status = None if how["list_status"] is None else int(how["list_status"])
    state.models_body = None
    return web.json_response({"models": dict(sorted(state.catalogue.items())),
                              "list_status": state.list_status})


async def _charges(request: web.Request) -> web.Response:
    ledgers = request.app[_STATE].ledgers
    return web.json_response({
        "by_key": {key: round(ledger.total, 10) for key, ledger in ledgers.items()},
        "by_key_model": {key: {model: round(dollars, 10)
                               for model, dollars in ledger.by_model.items()}
                         for key, ledger in ledgers.items()},
        "requests": {key: ledger.count for key, ledger in ledgers.items()}})


async def _set_cache(request: web.Request) -> web.Response:
    """{"lifetime": SECONDS}: model a prompt cache per key and session; null: no cache model."""
    state = request.app[_STATE]
    lifetime = (await request.json()).get("lifetime")
    if lifetime is not None and (not isinstance(lifetime, (int, float)) or lifetime <= 0):
        return _control_error("lifetime: seconds > 0, or null for no cache model")
    state.cache_lifetime = None if lifetime is None else float(lifetime)
    state.prefixes.clear()
    return web.json_response({"lifetime": state.cache_lifetime})


async def _spend(request: web.Request) -> web.Response:
    """{"KEY": dollars}: charge the key now, as if it had been used before the test."""
    state = request.app[_STATE]
    for key, dollars in (await request.json()).items():
        if not isinstance(dollars, (int, float)) or dollars <= 0:
            return _control_error(f"{key}: dollars must be a number > 0")
        state.charge(key, "(spent before)", float(dollars))
    return web.json_response({"by_key": {key: round(ledger.total, 10)
                                         for key, ledger in state.ledgers.items()}})


async def _conversations(request: web.Request) -> web.Response:
    return web.json_response({session: {name: getattr(c, name) for name in c.__slots__}
                              for session, c in request.app[_STATE].conversations.items()})


async def _reset(request: web.Request) -> web.Response:
    """Clears keys, limits, usage overrides, charges, recorded requests and the finished-stream
    counters (active is live); restores the built-in catalogue."""
    request.app[_STATE].reset()
    return web.json_response({"reset": True})


def _recorded_body(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


async def _requests(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    out = []
    for path, raw_headers, body, key in state.records or ():
        headers: dict[str, str] = {}
        for name, value in raw_headers:
            name_s, value_s = name.decode("latin-1").lower(), value.decode("latin-1")
            headers[name_s] = f"{headers[name_s]}, {value_s}" if name_s in headers else value_s
        out.append({"path": path, "headers": headers, "body": _recorded_body(body), "key": key})
    return web.json_response(out)


async def _stats(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    return web.json_response({"active_streams": state.active,
                              "completed_streams": state.completed,
                              "aborted_streams": state.aborted,
                              "abandoned_answers": state.abandoned})


def make_app(record: bool = True, edge: bool = True) -> web.Application:
    """The fake upstream; `record=False` skips request recording (benchmarks), `edge=False`
    the User-Agent check (a benchmark's floor proxy sends a library's)."""
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[_STATE] = _FakeState(record, edge)
    app.router.add_post("/v1/chat/completions", _chat_completions)
    app.router.add_post("/v1/messages", _messages)
    app.router.add_post("/v1/responses", _responses)
    app.router.add_get("/v1/models", _models)
    app.router.add_get("/v1/usage", _usage)
    app.router.add_post(INFERENCE_PREFIX + "/openai/v1/chat/completions", _chat_completions)
    app.router.add_post(INFERENCE_PREFIX + "/anthropic/v1/messages", _messages)
    app.router.add_post(INFERENCE_PREFIX + "/openai/v1/responses", _responses)
    app.router.add_get(INFERENCE_PREFIX + "/v1/models", _models)
    app.router.add_get(INFERENCE_PREFIX + "/v1/usage", _usage)
    app.router.add_post("/google/v1beta/models/{rest:.+}", _google)
    app.router.add_post(INFERENCE_PREFIX + "/google/v1beta/models/{rest:.+}", _google)
    app.router.add_post("/_fake/keys", _set_keys)
    app.router.add_post("/_fake/limits", _set_limits)
    app.router.add_post("/_fake/usage", _set_usage)
    app.router.add_post("/_fake/models", _set_models)
    app.router.add_post("/_fake/reset", _reset)
    app.router.add_post("/_fake/cache", _set_cache)
    app.router.add_post("/_fake/spend", _spend)
    app.router.add_get("/_fake/sessions", _conversations)
    app.router.add_get("/_fake/charges", _charges)
    app.router.add_get("/_fake/requests", _requests)
    app.router.add_get("/_fake/stats", _stats)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fake_upstream",
                                     description="Scripted fake OpenCode Go upstream.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--no-edge", action="store_true",
                        help="no User-Agent check at the edge (for a bare floor proxy)")
    parser.add_argument("--no-record", action="store_true",
                        help="do not record requests (for benchmarks)")
    args = parser.parse_args(argv)
    try:
        import uvloop
        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    print(f"fake upstream on http://{args.host}:{args.port}/v1", flush=True)
    # A large backlog so a load test's connection burst is not refused; a short shutdown so
    # a test session that stops the fake mid-stream does not wait for its slow streams.
    web.run_app(make_app(record=not args.no_record, edge=not args.no_edge), host=args.host, port=args.port,
                access_log=None, print=None, backlog=2048, shutdown_timeout=1.0, loop=loop)


if __name__ == "__main__":
    main()
