"""Redraw docs/img/dashboard.png, the docs' picture of the dashboard.

    . .venv/bin/activate && python deploy/dashboard/screenshot.py [OUT.png]

Runs the fake upstream and a real gateway with two keys, gives the first key a day of history
(written into the gateway's SQLite ledger before it starts: the chart's earlier hours), sends
live traffic through the gateway until the second key reaches the fake's 5-hour limit, adds a
few failing requests, and photographs /dashboard with headless Chromium at 1280 px.
Small dollar limits ($4 / $12 / $30 and $2.50 / $8 / $20) let the fake's token prices fill them.
"""
from __future__ import annotations

import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from gateway.config import State  # noqa: E402
from gateway.state.sqlite import SQLiteStore  # noqa: E402
from gateway.state.store import Batch, UsageRow  # noqa: E402
from gateway.upstream.instances import key_fingerprint  # noqa: E402
from tests.fake_upstream import fake_cost  # noqa: E402
from tests.fake_upstream_client import FakeUpstream  # noqa: E402
from tests.gateway_process import GatewayProcess  # noqa: E402
from tests.test_dashboard import (png_size, requests_today, run_chromium,  # noqa: E402
                                  wait_for_usage)
from tests.test_observer import post  # noqa: E402

KEY_ONE, KEY_TWO = "sk-go-demo-one-4f2a", "sk-go-demo-two-9c7e"
CONFIG = """\
quota:
  limits: {{rolling: 4, weekly: 12, monthly: 30}}
  keys:
    opencode-go.2: {{limits: {{rolling: 2.5, weekly: 8, monthly: 20}}}}
state:
  path: {path}
"""
# model -> (share of the requests, prompt tokens, share of them cached, output tokens)
HISTORY = {"glm-5.1": (0.42, 28_000, 0.8, 900), "kimi-k2.6": (0.2, 22_000, 0.7, 1_200),
           "minimax-m2.7": (0.18, 18_000, 0.75, 700),
           "deepseek-v4-pro": (0.12, 30_000, 0.85, 1_500),
           "qwen3.6-plus": (0.08, 12_000, 0.6, 600)}


def seed_history(path: Path, key: str, now: float) -> None:
    """A working day of requests on `key` over the last 24 hours (none in the current hour)."""
    rng = random.Random(7)
    rows = []
    this_hour = int(now // 3600) * 3600
    for hours_ago in range(23, 0, -1):
        start = this_hour - hours_ago * 3600
        local_hour = time.localtime(start).tm_hour
        busy = 1.0 if 9 <= local_hour < 19 else 0.25 if 7 <= local_hour < 23 else 0.05
        if hours_ago <= 4:
            busy *= 3.5   # the afternoon push that fills the 5-hour window
        for model, (share, prompt, cached_share, output) in HISTORY.items():
            requests = int(rng.uniform(8, 16) * busy * share * 4)
            if not requests:
                continue
            cached = int(prompt * cached_share)
            cost = fake_cost(model, prompt - cached, cached, 0, output) * requests
            rows.append(UsageRow(key_fingerprint(key), model, (start + rng.randrange(3600)) // 60,
                                 requests, prompt * requests, cached * requests,
                                 output * requests, cost))

    async def write() -> None:
        store = SQLiteStore(path, State())
        await store.open()
        await store.record(Batch(usage=rows))
        await store.close()

    asyncio.run(write())


def conversation(turns: int, last: str = "go on") -> list[dict]:
    """`turns` (made odd) alternating messages ending with a user turn; the fake counts 10
    prompt tokens per message, so a long conversation is an expensive one."""
    turns |= 1
    return [{"role": "user" if n % 2 == 0 else "assistant",
             "content": last if n == turns - 1 else f"turn {n}"} for n in range(turns)]


def chat(gateway, model: str, turns: int = 1, last: str = "go on", stream: bool = False) -> int:
    return post(gateway.url, {"model": model, "stream": stream,
                              "messages": conversation(turns, last)})[0]


def main(out: Path) -> None:
    work = Path(tempfile.mkdtemp(prefix="dashboard-shot-"))
    fake = FakeUpstream.start()
    gateway = None
    try:
        fake.set_usage(KEY_ONE, status=404)    # key one's upstream has no /usage: the ledger's view
        fake.set_limits(KEY_ONE, rolling=4, weekly=12, monthly=30)
        fake.set_limits(KEY_TWO, rolling=2.5, weekly=8, monthly=20)
        state = work / "state.sqlite3"
        seed_history(state, KEY_ONE, time.time())
        gateway = GatewayProcess(fake.url, tmp_dir=work,
                                 config_text=CONFIG.format(path=state),
                                 env={"OPENCODE_GO_API_KEY_1": KEY_ONE,
                                      "OPENCODE_GO_API_KEY_2": KEY_TWO}).start()
        # key two: long kimi-k3 conversations until the fake's 5-hour limit answers 429
        for _ in range(30):
            if chat(gateway, "opencode-go.2/kimi-k3", turns=2_501) == 429:
                break
        else:
            raise SystemExit("key two never reached its limit")
        # the rest of the hour's traffic (key two rests, so it all goes to key one)
        for model, count, turns in (("glm-5.1", 6, 1_201), ("minimax-m2.7", 4, 801),
                                    ("kimi-k2.6", 3, 1_001), ("deepseek-v4-pro", 2, 601),
                                    ("qwen3.6-plus", 2, 401)):
            for n in range(count):
                assert chat(gateway, "opencode-go/" + model, turns, stream=n % 2 == 1) == 200
        chat(gateway, "opencode-go/glm-5.1", last="[[fake: error=500]]")
        chat(gateway, "opencode-go/deepseek-v4-pro", last="[[fake: stream_error]]", stream=True)
        chat(gateway, "no-such-backend:glm-5.1")   # refused by the gateway itself
        wait_for_usage(gateway, lambda r: requests_today(r).get("qwen3.6-plus", 0) >= 2)
        time.sleep(1.5)
        run_chromium(gateway.url + "/dashboard", screenshot=out, size=(1280, 1600))
        print(f"{out}: {png_size(out)[0]}x{png_size(out)[1]}, {out.stat().st_size} bytes")
    finally:
        if gateway is not None:
            gateway.stop()
        fake.stop()


if __name__ == "__main__":
    default = Path(__file__).resolve().parents[2] / "docs" / "img" / "dashboard.png"
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else default)
