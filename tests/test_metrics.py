"""`GET /metrics`: the series a Prometheus server scrapes, read back with prometheus-client's own
text parser, after real requests through a gateway process (one worker and several)."""
import json
import threading
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.translate.hub import Usage
from tests.conversations import sessions_preferring
from gateway.metrics import MAX_MODELS, OTHER_MODEL, Metrics

PREFIX = "opencode_gateway_"


def scrape_text(text: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} for every sample in an exposition."""
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as answer:
        assert answer.status == 200
        assert answer.headers["content-type"].startswith("text/plain")
        return scrape_text(answer.read().decode())


def value(samples, name: str, **labels) -> float:
    """One sample's value; 0 when the series does not exist (yet)."""
    return samples.get((PREFIX + name, tuple(sorted(labels.items()))), 0.0)


def post(url: str, body: dict, path: str = "/v1/chat/completions") -> tuple[int, bytes]:
    request = urllib.request.Request(url + path, data=json.dumps(body).encode(),
                                     headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=15) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def chat(model: str, text: str = "hi", stream: bool = False, usage: bool = True) -> dict:
    body = {"model": model, "messages": [{"role": "user", "content": text}]}
    if stream:
        body["stream"] = True
        if usage:
            body["stream_options"] = {"include_usage": True}
    return body


def send_mix(url: str) -> None:
    """Two pass-through answers (one streamed), one translated stream, one unknown model."""
    assert post(url, chat("opencode-go/glm-5.1"))[0] == 200
    assert post(url, chat("opencode-go/glm-5.1", "[[fake: deltas=7]]", stream=True))[0] == 200
    assert post(url, chat("opencode-go/minimax-m2.7", stream=True))[0] == 200
    assert post(url, chat("no-such-backend:x"))[0] == 404


def assert_mix_counted(samples) -> None:
    assert value(samples, "requests_total", frontend="openai", model="glm-5.1", status="200") == 2
    assert value(samples, "requests_total", frontend="openai", model="minimax-m2.7",
                 status="200") == 1
    # Refused before routing: counted, under an empty model (not whatever the client typed).
    assert value(samples, "requests_total", frontend="openai", model="", status="404") == 1
    glm = {"model": "glm-5.1", "instance": "opencode-go"}
    assert value(samples, "request_duration_seconds_count", **glm) == 2
    assert value(samples, "upstream_ttfb_seconds_count", **glm) == 2
    assert value(samples, "upstream_ttfb_seconds_bucket", le="+Inf", **glm) == 2
    # The fake reports 10 prompt tokens per message and one completion token per delta.
    assert value(samples, "input_tokens_total", **glm) == 20
    assert value(samples, "output_tokens_total", **glm) == 5 + 7
    minimax = {"model": "minimax-m2.7", "instance": "opencode-go"}
    assert value(samples, "input_tokens_total", **minimax) > 0
    assert value(samples, "output_tokens_total", **minimax) == 5
    assert value(samples, "streams_in_flight", instance="opencode-go") == 0


def test_metrics_count_requests_latency_and_tokens(gateway):
    send_mix(gateway.url)
    assert_mix_counted(scrape(gateway.url))


def test_every_worker_reports_the_whole_servers_counts(start_gateway):
    gateway = start_gateway(workers=2)
    send_mix(gateway.url)
    # Each scrape is a new connection, answered by whichever worker accepts it: all must agree.
    for _ in range(6):
        assert_mix_counted(scrape(gateway.url))


def test_a_gateway_that_just_started_says_its_store_is_up(start_gateway):
    # The first background sync is a minute away (and no usage poll asks for one sooner): only
    # the start-up sync can have said so. Before it reported, the gauge read its initial 0, a
    # store that looked down with no failure counted (a short Redis stall then left the
    # failure count at 0 while the gauge had read 0).
    gateway = start_gateway(config_text="state: {sync_seconds: 60}\n"
                                        "quota: {usage_poll_seconds: 0}\n")
    samples = scrape(gateway.url)
    assert value(samples, "state_store_up") == 1
    assert value(samples, "state_store_failures_total") == 0


def test_pass_through_stream_without_include_usage_has_no_token_counts(gateway):
    assert post(gateway.url, chat("opencode-go/kimi-k2.5", stream=True, usage=False))[0] == 200
    samples = scrape(gateway.url)
    assert value(samples, "requests_total", frontend="openai", model="kimi-k2.5", status="200") == 1
    assert value(samples, "output_tokens_total", model="kimi-k2.5", instance="opencode-go") == 0


def test_anthropic_client_pass_through_counts_tokens(gateway):
    body = {"model": "opencode-go/minimax-m2.7", "max_tokens": 100, "stream": True,
            "messages": [{"role": "user", "content": "[[fake: deltas=4]]"}]}
    assert post(gateway.url, body, "/v1/messages")[0] == 200
    body["stream"] = False
    assert post(gateway.url, body, "/v1/messages")[0] == 200
    samples = scrape(gateway.url)
    minimax = {"model": "minimax-m2.7", "instance": "opencode-go"}
    assert value(samples, "requests_total", frontend="anthropic", model="minimax-m2.7",
                 status="200") == 2
    assert value(samples, "output_tokens_total", **minimax) == 8
    assert value(samples, "input_tokens_total", **minimax) > 0


@pytest.mark.parametrize("workers", [1, 2])
def test_failovers_and_cooldowns_are_counted_per_instance(start_gateway, fake, workers):
    fake.set_key("key-one", 429, retry_after="30")
    gateway = start_gateway(workers=workers, env={"OPENCODE_GO_API_KEY_1": "key-one",
                                                  "OPENCODE_GO_API_KEY_2": "key-two"})
    # New conversations that start on key-one: the first fails over and rests it, the others
    # go straight to key-two (with several workers, each learns it once).
    for session in sessions_preferring("key-one", 6, keys=("key-one", "key-two")):
        body = {**chat("opencode-go/glm-5.1"), "prompt_cache_key": session}
        assert post(gateway.url, body)[0] == 200
    tried_first = sum(1 for seen in fake.requests() if seen["key"] == "key-one")
    samples = scrape(gateway.url)
    assert tried_first >= 1
    assert value(samples, "upstream_failovers_total", instance="opencode-go.1",
                 status="429") == tried_first
    assert value(samples, "instance_cooldowns_total", instance="opencode-go.1") == tried_first
    assert value(samples, "upstream_failovers_total", instance="opencode-go.2", status="429") == 0
    assert value(samples, "requests_total", frontend="openai", model="glm-5.1", status="200") == 6
    # The answering instance is the one the latency is filed under.
    assert value(samples, "upstream_ttfb_seconds_count", model="glm-5.1",
                 instance="opencode-go.2") == 6


@pytest.mark.parametrize("workers", [1, 2])
def test_in_flight_streams_rise_while_a_stream_runs_and_fall_after(start_gateway, workers):
    gateway = start_gateway(workers=workers)
    request = urllib.request.Request(
        gateway.url + "/v1/chat/completions", headers={"content-type": "application/json"},
        data=json.dumps(chat("opencode-go/glm-5.1", "[[fake: slow=0.2 deltas=10]]",
                             stream=True)).encode())
    answer = urllib.request.urlopen(request, timeout=15)
    first = answer.readline()
    assert first.startswith(b"data: ")
    during = value(scrape(gateway.url), "streams_in_flight", instance="opencode-go")
    rest = threading.Thread(target=answer.read)
    rest.start()
    rest.join(15)
    answer.close()
    deadline = time.monotonic() + 10
    while True:  # the relay files the end just after its last byte went out
        after = value(scrape(gateway.url), "streams_in_flight", instance="opencode-go")
        if after == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert (during, after) == (1, 0)


def test_a_client_leaving_mid_stream_is_counted_as_499(gateway, fake):
    request = urllib.request.Request(
        gateway.url + "/v1/chat/completions", headers={"content-type": "application/json"},
        data=json.dumps(chat("opencode-go/glm-5.1", "[[fake: slow=0.2 deltas=20]]",
                             stream=True)).encode())
    answer = urllib.request.urlopen(request, timeout=15)
    answer.readline()
    answer.close()
    deadline = time.monotonic() + 10
    while True:
        samples = scrape(gateway.url)
        left = value(samples, "requests_total", frontend="openai", model="glm-5.1", status="499")
        if left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert left == 1
    assert value(samples, "streams_in_flight", instance="opencode-go") == 0


# ---- the series object itself ----

def test_model_ids_past_the_cap_share_the_other_series():
    metrics = Metrics()
    for number in range(MAX_MODELS + 5):
        metrics.request("openai", f"model-{number}", 200)
        metrics.routed(f"model-{number}", "opencode-go", 0.1, Usage(1, 1))
    samples = scrape_text(metrics.exposition().decode())
    models = {dict(labels)["model"] for name, labels in samples
              if name == PREFIX + "requests_total"}
    assert len(models) == MAX_MODELS + 1 and OTHER_MODEL in models
    assert value(samples, "requests_total", frontend="openai", model=OTHER_MODEL,
                 status="200") == 5
    assert value(samples, "input_tokens_total", model=OTHER_MODEL, instance="opencode-go") == 5


def test_two_gateways_in_one_process_keep_separate_counts():
    first, second = Metrics(), Metrics()
    first.request("openai", "glm-5", 200)
    samples = scrape_text(second.exposition().decode())
    assert value(samples, "requests_total", frontend="openai", model="glm-5", status="200") == 0
