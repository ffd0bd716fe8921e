"""Prompt-cache economics under key pressure: the gateway's key placement against round robin.

Replays interleaved, growing conversations against the project's fake OpenCode Go
(`tests/fake_upstream.py` with its prompt cache model: a key keeps a session's prefix for
`--lifetime` seconds idle, and charges cached tokens at the cache-read price) in four runs:

    gateway, no limits          every key with room to spare: the cached share the gateway gets
                                when nothing forces a move
    gateway, under pressure     keys that start part spent (`--start`, shares of a small 5-hour
                                limit), run until every key is spent
    round robin, no limits      clients that hold the keys themselves and take the next one for
                                every turn (each conversation its own rotation)
    round robin, under pressure the same keys, the same workload

The workload: `--conversations` conversations of `--turns` turns each, half on the Chat wire
(glm-5.1 through the gateway's OpenAI door) and half on the Messages wire (minimax-m2.7 through
its Anthropic door), turns interleaved in time. Between two turns a conversation thinks for at
0.35-0.6 x the cache lifetime (its prefix is still cached at the next turn, and gone three turns
later), except that every third conversation pauses three times for 1.5-2.5 x the lifetime (its
cache goes cold). Each turn resends the whole
conversation, so prompts grow. The workload's maximum cached share is what a single key with no
limit would cache: every turn's previous prompt, unless the turn follows a pause.

The 5-hour limit of every key is sized from the workload (`--budget`: the dollars left on all
keys together, as a share of what the whole workload costs at its maximum cached share), so the
pressure does not depend on the price table. Weekly and monthly limits are ten times higher.

Round robin loses a turn a spent key refuses (429) and takes the next key for the next turn;
with `--retry` it tries the next keys at once.

Printed per run: turns served before every key is spent, dollars per turn, the cached share of
prompt tokens and its ratio to the workload's maximum over the same turns, and moves (a turn on
another key than the conversation's previous one; hot when the key it left still held its
prefix: the fake's own count). For the gateway runs also its /metrics placement decisions.

Run from the repository root (takes about three minutes with the defaults):
    python deploy/bench/cache_workload.py [--conversations 12] [--turns 30] [--lifetime 3]
        [--start 0,40,80] [--budget 0.8] [--workers 1] [--seed 7] [--json]
"""
from __future__ import annotations

import argparse
import http.client
import json
import random
import re
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.fake_upstream import PROMPT_TOKENS_PER_MESSAGE, fake_cost  # noqa: E402
from tests.fake_upstream_client import FakeUpstream  # noqa: E402
from tests.gateway_process import GatewayProcess  # noqa: E402

KEYS = ("bench-key-a", "bench-key-b", "bench-key-c")
CHAT_MODEL, MESSAGES_MODEL = "glm-5.1", "minimax-m2.7"
ANSWER_TOKENS = 5          # the fake's default answer: 5 text deltas
SHORT_THINK = (0.35, 0.6)  # x lifetime: the cache is still warm at the next turn
PAUSE = (1.5, 2.5)         # x lifetime: the cache has gone cold
PAUSES_PER_PAUSER = 3
NO_LIMIT = 1000.0          # dollars: the gateway's limits for the runs without pressure


# ---- the workload ----

@dataclass(frozen=True)
class Turn:
    at: float           # seconds from the start
    conversation: int
    number: int         # 1-based
    after_pause: bool


def schedule(conversations: int, turns: int, lifetime: float, seed: int) -> list[Turn]:
    """Every turn of every conversation, in time order."""
    rng = random.Random(seed)
    planned = []
    for c in range(conversations):
        pauses = set()
        if c % 3 == 2 and turns > 2:
            pauses = set(rng.sample(range(2, turns + 1), min(PAUSES_PER_PAUSER, turns - 1)))
        at = rng.uniform(0, SHORT_THINK[1] * lifetime)
        for n in range(1, turns + 1):
            if n > 1:
                span = PAUSE if n in pauses else SHORT_THINK
                at += rng.uniform(*span) * lifetime
            planned.append(Turn(at, c, n, n in pauses))
    return sorted(planned, key=lambda turn: turn.at)


def model_of(conversation: int) -> str:
    return CHAT_MODEL if conversation % 2 == 0 else MESSAGES_MODEL


def prompt_tokens(number: int) -> int:
    """Turn n sends n user messages and n - 1 answers."""
    return PROMPT_TOKENS_PER_MESSAGE * (2 * number - 1)


def best_cached(turn: Turn) -> int:
    """What the turn can read from a cache at best: the previous turn's prompt, unless it
    follows a pause."""
    return 0 if turn.number == 1 or turn.after_pause else prompt_tokens(turn.number - 1)


def best_cost(turn: Turn) -> float:
    cached = best_cached(turn)
    return fake_cost(model_of(turn.conversation), prompt_tokens(turn.number) - cached, cached, 0,
                     ANSWER_TOKENS)


def messages(turn: Turn) -> list[dict]:
    said = []
    for k in range(1, turn.number + 1):
        said.append({"role": "user", "content": f"conversation {turn.conversation}, turn {k}"})
        said.append({"role": "assistant", "content": f"answer {k}"})
    return said[:-1]


# ---- the clients ----

class Connection:
    """One kept-alive HTTP/1.1 connection, opened again if the server closed it."""

    def __init__(self, base: str):
        match = re.match(r"http://([^/:]+):(\d+)(/.*)?$", base)
        self.host, self.port = match.group(1), int(match.group(2))
        self.prefix = match.group(3) or ""
        self.connection: http.client.HTTPConnection | None = None

    def post(self, path: str, body: dict, headers: dict[str, str]) -> tuple[int, bytes]:
        data = json.dumps(body).encode()
        for attempt in (1, 2):
            if self.connection is None:
                self.connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
            try:
                # Round robin talks to the fake OpenCode Go directly: like any tool, it says
                # who it is (the fake's edge, as Cloudflare does, refuses a request without).
                self.connection.request("POST", self.prefix + path, data,
                                        {"Content-Type": "application/json",
                                         "User-Agent": "cache-workload-bench/1", **headers})
                answer = self.connection.getresponse()
                return answer.status, answer.read()
            except (ConnectionError, http.client.HTTPException):
                self.connection.close()
                self.connection = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


def turn_request(turn: Turn, model: str, key: str | None) -> tuple[str, dict, dict]:
    """(path, body, headers) of a turn: to the gateway when `key` is None, else to the fake."""
    session = {"x-opencode-session": f"bench-conversation-{turn.conversation}"}
    if model_of(turn.conversation) == CHAT_MODEL:
        auth = {"Authorization": f"Bearer {key}"} if key else {}
        return "/chat/completions", {"model": model, "messages": messages(turn)}, \
            {**auth, **session}
    auth = {"x-api-key": key} if key else {}
    return "/messages", {"model": model, "max_tokens": 64, "messages": messages(turn)}, \
        {**auth, "anthropic-version": "2023-06-01", **session}


class GatewayClient:
    name = "gateway"

    def __init__(self, url: str):
        self.connection = Connection(url + "/v1")
        self.spent = False   # the gateway answers 429 only when every key is at its limit

    def send(self, turn: Turn) -> int:
        path, body, headers = turn_request(
            turn, f"opencode-go/{model_of(turn.conversation)}", None)
        status = self.connection.post(path, body, headers)[0]
        self.spent = self.spent or status == 429
        return status


class RoundRobinClient:
    """Clients holding the keys themselves: each conversation takes the next key for every turn
    (conversations start on different keys). A turn that a spent key refuses with 429 is lost
    (with `retry`: the next key is tried at once, and the next after it)."""
    name = "round robin"

    def __init__(self, upstream_url: str, retry: bool = False):
        self.connection = Connection(upstream_url)
        self.retry = retry
        self.next: dict[int, int] = {}
        self.limited: set[str] = set()

    @property
    def spent(self) -> bool:
        return len(self.limited) == len(KEYS)

    def send(self, turn: Turn) -> int:
        status = 0
        for _ in KEYS if self.retry else KEYS[:1]:
            at = self.next.get(turn.conversation, turn.conversation)
            self.next[turn.conversation] = at + 1
            key = KEYS[at % len(KEYS)]
            path, body, headers = turn_request(turn, model_of(turn.conversation), key)
            status = self.connection.post(path, body, headers)[0]
            if status != 429:
                return status
            self.limited.add(key)
        return status


# ---- one run ----

@dataclass
class Outcome:
    name: str
    turns: int = 0                 # turns served (200) before every key was spent
    planned: int = 0
    dollars: float = 0.0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    best_cached_tokens: int = 0    # the workload's maximum over the turns served
    moves: int = 0
    hot_moves: int = 0
    failures: int = 0              # answers other than 200 and 429
    decisions: dict = field(default_factory=dict)

    @property
    def dollars_per_turn(self) -> float:
        return self.dollars / self.turns if self.turns else 0.0

    @property
    def cached_share(self) -> float:
        return self.cached_tokens / self.prompt_tokens if self.prompt_tokens else 0.0

    @property
    def of_best(self) -> float:
        return self.cached_tokens / self.best_cached_tokens if self.best_cached_tokens else 0.0


def replay(client, plan: list[Turn]) -> tuple[int, int, list[Turn]]:
    """Send the turns at their times, until every key is spent."""
    served: list[Turn] = []
    failures = 0
    started = time.monotonic()
    for turn in plan:
        wait = started + turn.at - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        status = client.send(turn)
        if client.spent:
            break
        if status == 200:
            served.append(turn)
        elif status != 429:
            failures += 1
    return len(served), failures, served


def limits_for(plan: list[Turn], budget: float, start: list[float]) -> float:
    """The 5-hour limit that leaves `budget` x the workload's best cost on all keys together."""
    left = sum(1 - share for share in start)
    return budget * sum(best_cost(turn) for turn in plan) / left


def prepare_fake(fake: FakeUpstream, lifetime: float, limit: float | None,
                 start: list[float]) -> None:
    fake.reset()
    fake.set_cache(lifetime)
    for key, share in zip(KEYS, start):
        if limit is not None:
            fake.set_limits(key, rolling=limit, weekly=10 * limit, monthly=10 * limit)
            if share > 0:
                fake.spend(key, share * limit)


def gateway_config(limit: float, lifetime: float) -> str:
    from gateway.config import Quota
    text = (f"quota:\n  limits: {{rolling: {limit!r}, weekly: {10 * limit!r}, "
            f"monthly: {10 * limit!r}}}\n  usage_poll_seconds: 600\n")
    if "prompt_cache" in Quota.__struct_fields__:   # the gateway learns the fake's lifetime
        text += f"  prompt_cache:\n    lifetime_seconds: {lifetime!r}\n"
    return text


def metric_values(url: str, name: str) -> dict[str, float]:
    """label text -> value of one Prometheus series at `url`/metrics."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as answer:
        text = answer.read().decode()
    found = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            labels, _, value = line.rpartition(" ")
            found[labels[len(name):]] = float(value)
    return found


def wait_for_usage_figures(url: str, start: list[float], timeout: float = 20.0) -> None:
    """Until the gateway has read every part-spent key's /usage (its first poll at start)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        used = metric_values(url, "opencode_gateway_key_window_used_ratio")
        rolling = [value for labels, value in sorted(used.items()) if 'window="rolling"' in labels]
        if len(rolling) == len(start) and all(
                got >= want - 0.011 for got, want in zip(rolling, start)):
            return
        time.sleep(0.1)
    raise RuntimeError("the gateway did not read the keys' usage figures in time")


def run_once(name: str, fake: FakeUpstream, plan: list[Turn], lifetime: float,
             limit: float | None, start: list[float], workers: int, gateway: bool,
             tmp: Path, retry: bool = False) -> Outcome:
    prepare_fake(fake, lifetime, limit, start)
    outcome = Outcome(name, planned=len(plan))
    process = None
    if gateway:
        env = {f"OPENCODE_GO_API_KEY_{n}": key for n, key in enumerate(KEYS, 1)}
        env["OPENCODE_GO_API_KEY"] = ""
        config = gateway_config(limit if limit is not None else NO_LIMIT, lifetime)
        process = GatewayProcess(fake.url, env=env, config_text=config, workers=workers,
                                 tmp_dir=tmp).start()
        if limit is not None:
            wait_for_usage_figures(process.url, start)
        client = GatewayClient(process.url)
    else:
        client = RoundRobinClient(fake.url, retry)
    try:
        outcome.turns, outcome.failures, served = replay(client, plan)
        if process is not None:
            decisions = metric_values(process.url, "opencode_gateway_key_decisions_total")
            outcome.decisions = {re.sub(r'.*decision="([^"]+)".*', r"\1", labels): int(value)
                                 for labels, value in decisions.items()}
    finally:
        if process is not None:
            process.stop()
    charges = fake.charges()
    spent_before = sum(share * limit for share in start) if limit is not None else 0.0
    outcome.dollars = sum(charges["by_key"].values()) - spent_before
    for seen in fake.conversations().values():
        outcome.prompt_tokens += seen["prompt_tokens"]
        outcome.cached_tokens += seen["cached_tokens"]
        outcome.moves += seen["moves"]
        outcome.hot_moves += seen["hot_moves"]
    outcome.best_cached_tokens = sum(best_cached(turn) for turn in served)
    return outcome


def run(conversations: int = 12, turns: int = 30, lifetime: float = 3.0,
        start: tuple[float, ...] = (0.0, 0.4, 0.8), budget: float = 0.8, workers: int = 1,
        seed: int = 7, only: tuple[str, ...] = (), retry: bool = False) -> list[Outcome]:
    plan = schedule(conversations, turns, lifetime, seed)
    limit = limits_for(plan, budget, list(start))
    runs = [("gateway, no limits", True, None), ("gateway, under pressure", True, limit),
            ("round robin, no limits", False, None),
            ("round robin, under pressure", False, limit)]
    outcomes = []
    fake = FakeUpstream.start(record=False)
    try:
        with tempfile.TemporaryDirectory(prefix="cache-workload-") as tmp:
            for name, gateway, limit_of_run in runs:
                if only and name not in only:
                    continue
                outcomes.append(run_once(name, fake, plan, lifetime, limit_of_run,
                                         list(start) if limit_of_run else [0.0] * len(KEYS),
                                         workers, gateway, Path(tmp), retry))
    finally:
        fake.stop()
    return outcomes


def report(outcomes: list[Outcome]) -> str:
    lines = [f"{'':28} {'turns':>9} {'$/turn':>10} {'cached':>7} {'of max':>7} "
             f"{'moves':>6} {'hot':>4}  gateway decisions"]
    for o in outcomes:
        decided = ", ".join(f"{k} {v}" for k, v in sorted(o.decisions.items())) or "-"
        lines.append(f"{o.name:28} {o.turns:>4}/{o.planned:<4} {o.dollars_per_turn:>10.7f} "
                     f"{o.cached_share:>7.1%} {o.of_best:>7.3f} {o.moves:>6} {o.hot_moves:>4}  "
                     f"{decided}" + (f"  ({o.failures} failed)" if o.failures else ""))
    by_name = {o.name: o for o in outcomes}
    free, pressed = by_name.get("gateway, no limits"), by_name.get("gateway, under pressure")
    robin = by_name.get("round robin, under pressure")
    if free and pressed and free.cached_share:
        kept = pressed.cached_share / free.cached_share
        lines.append(f"under pressure the gateway keeps {kept:.3f} of its no-limit cached share")
    if pressed and robin and robin.turns:
        lines.append(f"the gateway serves {pressed.turns / robin.turns:.2f} x the turns of round "
                     f"robin before every key is spent")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--conversations", type=int, default=12)
    parser.add_argument("--turns", type=int, default=30)
    parser.add_argument("--lifetime", type=float, default=3.0,
                        help="seconds a key's prompt cache lives idle (the fake's and the "
                             "gateway's setting)")
    parser.add_argument("--start", default="0,40,80",
                        help="percent of the 5-hour limit each of the 3 keys has spent at start")
    parser.add_argument("--budget", type=float, default=0.8,
                        help="dollars left on all keys, as a share of the workload's best cost")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--retry", action="store_true",
                        help="round robin tries the next key at once when one answers 429")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    start = tuple(float(part) / 100 for part in args.start.split(","))
    if len(start) != len(KEYS):
        parser.error(f"--start takes {len(KEYS)} percentages")
    outcomes = run(args.conversations, args.turns, args.lifetime, start, args.budget,
                   args.workers, args.seed, retry=args.retry)
    if args.json:
        print(json.dumps([{**asdict(o), "dollars_per_turn": o.dollars_per_turn,
                           "cached_share": o.cached_share, "of_best": o.of_best}
                          for o in outcomes], indent=1))
    else:
        print(report(outcomes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
