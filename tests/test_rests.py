"""Rests a key no longer needs end at once: when OpenCode Go's /usage shows room again, or when
`opencode-gateway rests clear` lifts them; `opencode-gateway rests` lists them with reason and
end. Against the running gateway and the fake upstream."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from tests.gateway_process import REPO
from tests.http_requests import post_json

CHAT = "/v1/chat/completions"
BODY = {"model": "opencode-go/glm-5.1", "messages": [{"role": "user", "content": "hi"}]}


def rests(gateway, *args: str) -> subprocess.CompletedProcess:
    """`opencode-gateway rests ARGS` on the state the running `gateway` keeps."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENCODE_GO_", "GATEWAY_"))}
    env.update({name: gateway.environment[name]
                for name in ("XDG_STATE_HOME", "OPENCODE_GO_API_KEY", "OPENCODE_GO_API_URL")})
    return subprocess.run([sys.executable, "-m", "gateway", "rests", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=30)


def wait_for(condition, timeout: float = 15.0, what: str = ""):
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found or time.monotonic() > deadline:
            assert found, f"timed out waiting for {what}"
            return found
        time.sleep(0.1)


def limited(gateway, fake) -> None:
    """Put the gateway's key at its 5-hour limit, then restore it upstream: only the gateway's
    rest still stands between the key and its answers."""
    fake.set_limit("test-key", "5 hour", retry_after=14160)
    code, _, body = post_json(gateway.url + CHAT, BODY)
    assert code == 429 and json.loads(body)["error"]["code"] == "usage_limit_reached"
    fake.set_limit("test-key", None)


def test_rests_lists_a_limit_and_clear_lifts_it_for_the_running_gateway(start_gateway, fake):
    gateway = start_gateway(config_text="quota: {usage_poll_seconds: 0}\n")
    assert rests(gateway).stdout.strip() == "no key is resting"
    limited(gateway, fake)
    assert post_json(gateway.url + CHAT, BODY)[0] == 429   # the gateway's rest, not OpenCode Go
    listed = wait_for(lambda: "limit" in (r := rests(gateway)).stdout and r, what="the rest")
    assert listed.returncode == 0
    [line] = listed.stdout.splitlines()
    assert line.startswith("opencode-go: at its OpenCode Go 5 hour limit until ")  # the reason
    assert "(in 3h5" in line                                                       # and its end

    cleared = rests(gateway, "clear", "opencode-go")
    assert cleared.returncode == 0 and "opencode-go: lifted" in cleared.stdout
    wait_for(lambda: post_json(gateway.url + CHAT, BODY)[0] == 200, what="the key back")
    assert rests(gateway).stdout.strip() == "no key is resting"


def test_clear_names_the_instances_when_it_does_not_know_one(gateway):
    result = rests(gateway, "clear", "opencode-go.7")
    assert result.returncode == 2
    assert "no instance is called opencode-go.7" in result.stderr and "opencode-go" in result.stderr


def test_a_limit_rest_ends_when_the_upstream_usage_shows_room(start_gateway, fake):
    gateway = start_gateway(config_text="quota: {usage_poll_seconds: 0.5}\n")
    limited(gateway, fake)
    # /usage now shows every window with room: the next poll ends the rest, hours early.
    wait_for(lambda: post_json(gateway.url + CHAT, BODY)[0] == 200, what="the key back")
    assert any("rest ends now" in line.get("message", "") for line in gateway.json_lines())


async def test_a_key_at_a_limit_is_asked_again_soon_not_at_the_next_round(fake):
    """/usage is read every few minutes; a key at a limit is asked again within `recheck`, so a
    limit OpenCode Go has lifted keeps the key out for seconds, not until the next round."""
    import asyncio

    from gateway.app import Gateway
    from gateway.config import load_config
    from gateway.quota.upstream_usage import poll_forever
    from gateway.upstream.forwarder import create_session

    env = {"OPENCODE_GO_API_URL": fake.url, "OPENCODE_GO_API_KEY": "test-key"}
    gateway = Gateway(load_config(None, env), env=env)
    [pool] = gateway.pools.values()
    [instance] = pool.instances
    session = create_session(gateway.config.upstream)
    poller = asyncio.create_task(poll_forever(session, gateway.pools, gateway.book, every=300,
                                              recheck=0.2))
    try:
        usage_reads = lambda: [r for r in fake.requests(everything=True)   # noqa: E731
                               if r["path"] == "/v1/usage"]
        while not usage_reads():           # the first round, at start
            await asyncio.sleep(0.05)
        pool.limit_reached(instance, 14160, "5 hour")   # hours, as a GoUsageLimitError says
        deadline = time.monotonic() + 5
        while instance.limited(time.time()):
            assert time.monotonic() < deadline, "the limited key was not asked again"
            await asyncio.sleep(0.05)
        assert len(usage_reads()) >= 2
    finally:
        poller.cancel()
        await asyncio.gather(poller, return_exceptions=True)
        await session.close()
