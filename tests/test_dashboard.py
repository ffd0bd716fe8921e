"""The dashboard (`GET /dashboard`) as a browser renders it: Debian's headless Chromium loads the
page from a real gateway, lets its script fetch /v1/usage, and the test reads the DOM it built.

Two ways to drive Chromium, both without a driver package:
- `--dump-dom` with `--virtual-time-budget`: Chromium runs the page's timers on a virtual clock
  that stands still while a fetch is in flight, so the DOM it prints is the one after the
  first /v1/usage answer was rendered (a budget below the 5-second refresh: one fetch).
- the DevTools protocol (`--remote-debugging-port=0`, a websocket from aiohttp) where the test
  must act on the page: type a client key into the form.

Missing Chromium skips these tests locally and fails them in CI (`CI=true`), as the npm
clients do (tests/node_clients.py). Install it with `apt-get install chromium`.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import struct
import subprocess
import tempfile
import time
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import aiohttp
import pytest

from tests.node_clients import in_ci
from tests.test_observer import post

CHROMIUM_FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio",
]
# The page's console goes to stderr with these: an uncaught exception fails the test.
CONSOLE_FLAGS = ["--enable-logging=stderr", "--v=0"]
WINDOWS = ("rolling", "weekly", "monthly")


def chromium() -> str:
    """The Chromium executable, or the test's skip (locally) / failure (in CI)."""
    for candidate in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser"):
        found = candidate and shutil.which(candidate)
        if found:
            return found
    message = "Chromium is not installed: `apt-get install chromium`"
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


def run_chromium(url: str, *, screenshot: Path | None = None, size: tuple[int, int] = (1280, 1000),
                 budget_ms: int = 3000) -> str:
    """Load `url` headless; its DOM after `budget_ms` of virtual time (or write a screenshot).
    The page's script must not throw."""
    with tempfile.TemporaryDirectory(prefix="dashboard-chromium-") as profile:
        args = [chromium(), *CHROMIUM_FLAGS, *CONSOLE_FLAGS, f"--user-data-dir={profile}",
                f"--virtual-time-budget={budget_ms}", f"--window-size={size[0]},{size[1]}"]
        args += [f"--screenshot={screenshot}"] if screenshot else ["--dump-dom"]
        result = subprocess.run(args + [url], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"chromium exited {result.returncode}:\n{result.stderr[-3000:]}"
    thrown = [line for line in result.stderr.splitlines()
              if "CONSOLE" in line and "Uncaught" in line]
    assert not thrown, "the page's script threw:\n" + "\n".join(thrown)
    return result.stdout


# ---- the rendered DOM, as a small tree ----

_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
         "track", "wbr"}


class Node:
    def __init__(self, tag: str, attrs: dict[str, str], parent: Node | None = None):
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[Node | str] = []

    @property
    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text for c in self.children)

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def find_all(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> list[Node]:
        """Descendants by tag, class and attributes (`data_model="x"` is `data-model`; a value
        of True only asks that the attribute be there)."""
        wanted = {name.replace("_", "-"): value for name, value in attrs.items()}
        found = []
        for child in self.children:
            if isinstance(child, str):
                continue
            if ((tag is None or child.tag == tag) and (cls is None or cls in child.classes)
                    and all(name in child.attrs and (value is True or child.attrs[name] == value)
                            for name, value in wanted.items())):
                found.append(child)
            found += child.find_all(tag, cls, **attrs)
        return found

    def find(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> Node:
        found = self.find_all(tag, cls, **attrs)
        assert found, f"no <{tag or '*'}> with class {cls!r} and {attrs} in the rendered page"
        return found[0]


class _TreeBuilder(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = self.current = Node("#document", {})

    def handle_starttag(self, tag, attrs):
        node = Node(tag, {name: value or "" for name, value in attrs}, self.current)
        self.current.children.append(node)
        if tag not in _VOID:
            self.current = node

    def handle_startendtag(self, tag, attrs):
        self.current.children.append(Node(tag, {name: value or "" for name, value in attrs},
                                          self.current))

    def handle_endtag(self, tag):
        node = self.current
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.current = node.parent

    def handle_data(self, data):
        self.current.children.append(data)


def parse(html: str) -> Node:
    builder = _TreeBuilder()
    builder.feed(html)
    builder.close()
    return builder.root


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


def get_usage(gateway, key: str | None = None) -> dict:
    headers = {"authorization": "Bearer " + key} if key else {}
    request = urllib.request.Request(gateway.url + "/v1/usage", headers=headers)
    with urllib.request.urlopen(request, timeout=5) as answer:
        return json.loads(answer.read())


def wait_for_usage(gateway, done, key: str | None = None, timeout: float = 6.0) -> dict:
    """/v1/usage once `done(report)`: the state store syncs every second, the report reads it."""
    deadline = time.monotonic() + timeout
    while True:
        report = get_usage(gateway, key)
        if done(report) or time.monotonic() > deadline:
            return report
        time.sleep(0.1)


def chat(gateway, model: str, text: str = "hi", stream: bool = False,
         key: str | None = None) -> int:
    headers = {"authorization": "Bearer " + key} if key else None
    status, _, _ = post(gateway.url, {"model": model, "stream": stream,
                                      "messages": [{"role": "user", "content": text}]},
                        headers=headers)
    return status


def requests_today(report: dict) -> dict[str, int]:
    return {row["model"]: row["requests"] for row in report["models_today"]}


# ---- the tests ----

def test_the_dashboard_shows_keys_models_and_errors(start_gateway, tmp_path):
    chromium()
    gateway = start_gateway(env={"OPENCODE_GO_API_KEY_1": "key-one",
                                 "OPENCODE_GO_API_KEY_2": "key-two"})
    sent = {"glm-5.1": 3, "minimax-m2.7": 2}
    for index in range(sent["glm-5.1"]):
        assert chat(gateway, "opencode-go/glm-5.1", stream=index == 0) == 200
    for index in range(sent["minimax-m2.7"]):
        assert chat(gateway, "opencode-go/minimax-m2.7", stream=index == 0) == 200
    assert chat(gateway, "opencode-go/glm-5.1", "[[fake: error=500]]") == 500
    report = wait_for_usage(gateway, lambda r: requests_today(r) == sent)
    assert requests_today(report) == sent, report

    page = parse(run_chromium(gateway.url + "/dashboard"))

    assert "hidden" in page.find(id="error-banner").attrs
    assert "hidden" in page.find(id="auth-form").attrs
    assert "hidden" not in page.find(id="report").attrs
    assert page.find(id="last-updated").text.startswith("updated ")
    store = page.find(id="state-store")
    assert (store.attrs["data-up"], store.attrs["data-backend"]) == ("true", "sqlite")

    cards = {card.attrs["data-instance"]: card for card in page.find_all(cls="key-card")}
    assert sorted(cards) == ["opencode-go.1", "opencode-go.2"]
    used = {(key["instance"], window): figures["used_percent"]
            for key in report["keys"] for window, figures in key["windows"].items()}
    for name, card in cards.items():
        assert card.attrs["data-status"] == "ok"
        assert card.find(cls="status").text == "ok"
        assert card.find(cls="masked-key").text == "****"   # short keys are masked whole
        bars = card.find_all(cls="window")
        assert [bar.attrs["data-window"] for bar in bars] == list(WINDOWS)
        for bar in bars:
            assert bar.find(cls="percent").text == f"{used[name, bar.attrs['data-window']]:.1f}%"
            assert bar.attrs["data-level"] == "ok"
            assert bar.find(cls="bar-fill").attrs["style"].startswith("width:")
            assert bar.find(cls="threshold-mark").attrs["data-threshold"] == "95"
            assert bar.find(cls="source").text in ("upstream", "ledger")
            assert re.fullmatch(r"\$[\d.,<]+ of \$\d+\.\d\d",
                                bar.find(data_field="spent").text)
            countdown = bar.find(cls="countdown").text
            assert re.fullmatch(r"(\d+d )?(\d+h )?(\d+m )?\d+s", countdown), countdown
    labels = [bar.find(cls="window-label").text
              for bar in cards["opencode-go.1"].find_all(cls="window")]
    assert labels == ["5 hours", "week", "month"]

    table = page.find(id="models-today")
    rows = {row.attrs["data-model"]: row
            for row in table.find("tbody").find_all("tr", data_model=True)}
    assert sorted(rows) == sorted(sent)
    for model, count in sent.items():
        assert rows[model].find(data_field="requests").text == str(count)
        assert rows[model].find(data_field="cost_usd").text.startswith(("$", "<$"))
    total = table.find(id="models-total")
    assert total.find(data_field="requests").text == str(sum(sent.values()))

    chart = page.find("svg", id="cost-chart")
    segments = chart.find_all("rect", data_model=True)
    assert {rect.attrs["data-model"] for rect in segments} == set(sent)
    assert all(float(rect.attrs["height"]) >= 1 for rect in segments)
    legend = page.find(id="cost-legend").find_all("li")
    assert {item.attrs["data-model"] for item in legend} == set(sent)

    errors = page.find(id="recent-errors")
    assert int(errors.attrs["data-count"]) >= 1
    [row] = [row for row in errors.find_all("tr", cls="error-row")
             if row.attrs["data-status"] == "500"]
    assert row.attrs["data-model"] == "glm-5.1"
    assert "fake upstream" in row.find("td", cls="message").text

    doctor = page.find(id="doctor")  # GET /v1/doctor's problems, each with its fix
    problems = doctor.find_all("li", cls="problem")
    assert int(doctor.attrs["data-problems"]) == len(problems)  # "" until it was rendered
    assert all("Fix: " in problem.text for problem in problems)

    health = page.find(id="instance-health")
    assert sorted(row.attrs["data-instance"] for row in health.find_all("tr", data_instance=True)) \
        == ["opencode-go.1", "opencode-go.2"]

    shot = tmp_path / "dashboard.png"
    run_chromium(gateway.url + "/dashboard", screenshot=shot)
    assert png_size(shot) == (1280, 1000)
    assert shot.stat().st_size > 30_000   # a blank or unstyled page is a few kilobytes


def test_a_locked_gateway_asks_for_a_client_key(start_gateway):
    chromium()
    gateway = start_gateway(env={"GATEWAY_API_KEYS": "ck-test"})

    page = parse(run_chromium(gateway.url + "/dashboard"))

    form = page.find("form", id="auth-form")
    assert "hidden" not in form.attrs
    assert form.find("input", id="auth-key").attrs["type"] == "password"
    assert "hidden" in page.find(id="error-banner").attrs   # a 401 is a question, not a failure
    assert "hidden" in page.find(id="report").attrs          # nothing to show yet
    assert page.find_all(cls="key-card") == []
    assert page.find(id="last-updated").text == "needs a client key"


# ---- the DevTools protocol, for a page the test acts on ----

class DevTools:
    """One headless Chromium page driven over the DevTools protocol."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse):
        self._ws = ws
        self._ids = 0

    async def call(self, method: str, **params) -> dict:
        self._ids += 1
        await self._ws.send_json({"id": self._ids, "method": method, "params": params})
        async for message in self._ws:
            reply = json.loads(message.data)
            if reply.get("id") == self._ids:
                assert "error" not in reply, reply
                return reply["result"]
        raise AssertionError("Chromium closed the DevTools connection")

    async def evaluate(self, expression: str):
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                                 awaitPromise=True)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 10.0):
        """The value of `expression` once it is truthy."""
        deadline = time.monotonic() + timeout
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            assert time.monotonic() < deadline, f"still falsy after {timeout} s: {expression}"
            await asyncio.sleep(0.1)


async def _drive(url: str, steps) -> None:
    with tempfile.TemporaryDirectory(prefix="dashboard-devtools-") as profile:
        process = subprocess.Popen([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                                    "--remote-debugging-port=0", "--window-size=1280,1000",
                                    "about:blank"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            deadline = time.monotonic() + 20
            while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
                assert process.poll() is None, f"chromium exited {process.returncode}"
                assert time.monotonic() < deadline, "chromium did not open its DevTools port"
                await asyncio.sleep(0.05)
            port = int(port_file.read_text().split()[0])
            async with aiohttp.ClientSession() as http:
                async with http.get(f"http://127.0.0.1:{port}/json/list") as answer:
                    [target] = [t for t in await answer.json() if t["type"] == "page"]
                async with http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                    page = DevTools(ws)
                    await page.call("Page.navigate", url=url)
                    await steps(page)
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_a_client_key_typed_into_the_form_is_kept_and_used(start_gateway):
    chromium()
    gateway = start_gateway(env={"GATEWAY_API_KEYS": "ck-test"})
    assert chat(gateway, "opencode-go/glm-5.1", key="ck-test") == 200
    wait_for_usage(gateway, lambda r: requests_today(r) == {"glm-5.1": 1}, key="ck-test")

    async def steps(page: DevTools) -> None:
        await page.wait_for("document.getElementById('auth-form')?.hidden === false")
        await page.evaluate("""(() => {
            document.getElementById('auth-key').value = 'ck-wrong';
            document.getElementById('auth-form').requestSubmit(); })()""")
        message = await page.wait_for("document.getElementById('auth-message').textContent")
        assert message.startswith("The key in this browser was refused")

        await page.evaluate("""(() => {
            document.getElementById('auth-key').value = 'ck-test';
            document.getElementById('auth-form').requestSubmit(); })()""")
        assert await page.wait_for("document.querySelectorAll('.key-card').length") == 1
        assert await page.evaluate("document.getElementById('auth-form').hidden")
        assert await page.evaluate(
            "localStorage.getItem('opencode-gateway.client-key')") == "ck-test"
        assert await page.evaluate(
            "document.querySelector('#models-today tr[data-model=\"glm-5.1\"] "
            "[data-field=requests]').textContent") == "1"

        # the countdowns tick between fetches
        before = await page.evaluate("document.querySelector('.countdown').textContent")
        await page.wait_for("document.querySelector('.countdown').textContent !== "
                            + json.dumps(before), timeout=5)

        # a reload finds the key in localStorage: no form
        await page.evaluate("window.beforeReload = true")
        await page.call("Page.reload")
        await page.wait_for("!window.beforeReload && document.querySelectorAll('.key-card').length")
        assert await page.evaluate("document.getElementById('auth-form').hidden")
        assert not await page.evaluate("document.getElementById('auth-forget').hidden")

        # the next refresh (every 5 s) finds the gateway gone: a banner over the last figures
        gateway.stop()
        banner = await page.wait_for("!document.getElementById('error-banner').hidden && "
                                     "document.getElementById('error-banner').textContent",
                                     timeout=8)
        assert banner.startswith("Could not read /v1/usage:")
        assert await page.evaluate(
            "document.getElementById('last-updated').dataset.stale") == "true"
        assert await page.evaluate("document.querySelectorAll('.key-card').length") == 1

    asyncio.run(_drive(gateway.url + "/dashboard", steps))


def test_the_dashboard_shows_traffic_health_per_instance_and_model(gateway):
    chromium()
    for _ in range(3):
        assert chat(gateway, "opencode-go/glm-5.1") == 200
    assert chat(gateway, "opencode-go/glm-5.1", "[[fake: error=400]]") == 400   # the client's
    assert chat(gateway, "opencode-go/glm-5.1", "[[fake: error=500]]") == 500   # the upstream's
    assert chat(gateway, "opencode-go/minimax-m2.7") == 200
    assert chat(gateway, "no-such-model") == 404                                # before routing

    rows = {(row["instance"], row["model"]): row for row in get_usage(gateway)["health"]}
    glm = rows["opencode-go", "glm-5.1"]
    assert (glm["requests"], glm["client_errors"], glm["upstream_errors"]) == (5, 1, 1)
    assert glm["per_minute"] == 1.0                        # 5 requests over the 5-minute window
    assert 0 < glm["ttfb_p50_ms"] <= glm["ttfb_p95_ms"]
    assert rows["opencode-go", "minimax-m2.7"]["requests"] == 1
    assert rows[None, None]["client_errors"] == 1

    page = parse(run_chromium(gateway.url + "/dashboard"))
    table = page.find(id="traffic-health")
    shown = table.find("tr", data_instance="opencode-go", data_model="glm-5.1")
    assert shown.find(data_field="client_errors").text == "1"
    assert shown.find(data_field="upstream_errors").text == "1"
    assert shown.find(data_field="ttfb_p95_ms").text.endswith(" ms")
    assert "refused before routing" in table.text


def test_the_dashboard_shows_clients_and_agents_to_an_admin_only(start_gateway):
    chromium()
    gateway = start_gateway(config_text="""
server:
  admin_keys: [admin-key-0001]
  clients:
    - {name: alice, key: alice-key-0001, budget: {weekly: 0.0000001}}
    - {name: bob, key: bob-key-00001}
""")
    assert chat(gateway, "opencode-go/glm-5.1", key="alice-key-0001") == 200
    assert chat(gateway, "opencode-go/glm-5.1", key="bob-key-00001") == 200
    wait_for_usage(gateway, lambda r: sum(requests_today(r).values()) == 2, key="admin-key-0001")

    async def steps(page: DevTools) -> None:
        # a client's key is refused for everyone's usage: the form asks again
        await page.wait_for("document.getElementById('auth-form')?.hidden === false")
        await page.evaluate("""(() => {
            document.getElementById('auth-key').value = 'bob-key-00001';
            document.getElementById('auth-form').requestSubmit(); })()""")
        # bob's own key shows bob only
        await page.wait_for("document.querySelectorAll('#clients tr[data-client]').length")
        assert await page.evaluate(
            "[...document.querySelectorAll('#clients tr[data-client]')]"
            ".map(row => row.dataset.client)") == ["bob"]
        await page.evaluate("""(() => {
            localStorage.setItem('opencode-gateway.client-key', 'admin-key-0001');
            location.reload(); })()""")
        await page.wait_for("document.querySelectorAll('#clients tr[data-client]').length == 2")
        over = await page.evaluate(
            "document.querySelector('#clients tr[data-client=alice] td[data-window=week]')"
            ".dataset.over")
        assert over == "true"
        names = await page.evaluate(
            "[...document.querySelectorAll('#spend-by tr[data-by]')]"
            ".map(row => row.dataset.by + ':' + row.dataset.name)")
        assert sorted(names) == ["agent:other", "client:alice", "client:bob"]

    asyncio.run(_drive(gateway.url + "/dashboard", steps))
