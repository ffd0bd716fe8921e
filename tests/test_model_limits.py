"""A request fitted to its model: output bounds clamped to the model's output limit (and the
answer says so), reasoning efforts mapped to one the model takes. End to end against the fake,
which refuses a bound over the limit and an effort the model does not take, as OpenCode Go does."""
from __future__ import annotations

import openai
import pytest

from gateway.translate.model_limits import CLAMPED_HEADER, EFFORT_HEADER, fit_effort
from tests.fake_upstream import OUTPUT_LIMITS, answer_text
from tests.http_requests import post_json as post

USER = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize("asked, accepted, sent", [
    ("high", ("low", "high", "max"), "high"),           # accepted: kept as is
    ("none", ("low", "high", "max"), "low"),            # GLM takes no none
    ("medium", ("low", "high", "max"), "high"),         # equally near: the higher
    ("xhigh", ("none", "low", "medium", "high"), "high"),  # MiMo v2.6: no xhigh, no max
    ("max", ("none", "low", "medium", "high"), "high"),
    ("medium", ("none", "low", "high", "max"), "high"),   # kimi-k3
    ("minimal", ("none", "low", "high", "max"), "low"),
    ("high", None, "high"),                              # the catalogue cannot tell
    ("turbo", ("low", "high"), "turbo"),                 # off the scale: the upstream judges
    ("high", (), None),                                  # takes none: none sent
])
def test_fit_effort(asked, accepted, sent):
    assert fit_effort(asked, accepted) == sent


# ---- clamping, end to end ----------------------------------------------------------------------

def test_a_chat_bound_over_the_limit_is_clamped_and_the_answer_says_so(gateway, fake):
    status, headers, body = post(gateway.url + "/v1/chat/completions", {
        "model": "opencode-go/glm-5.3", "max_tokens": 1_000_000,
        "max_completion_tokens": 500_000, "messages": USER})
    assert status == 200, body
    sent = fake.last_request()["body"]
    assert sent["max_tokens"] == sent["max_completion_tokens"] == OUTPUT_LIMITS["glm-5.3"]
    assert "131072" in headers[CLAMPED_HEADER] and "1000000" in headers[CLAMPED_HEADER]


def test_a_bound_within_the_limit_passes_unchanged(gateway, fake):
    status, headers, _ = post(gateway.url + "/v1/chat/completions", {
        "model": "opencode-go/glm-5.3", "max_tokens": 131_072, "messages": USER})
    assert status == 200
    assert fake.last_request()["body"]["max_tokens"] == 131_072
    assert CLAMPED_HEADER not in headers


def test_a_responses_client_bound_is_clamped_on_the_responses_wire(gateway, fake):
    with openai.OpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0) as client:
        raw = client.responses.with_raw_response.create(
            model="opencode-go/grok-4.7", input="hi", max_output_tokens=2_000_000)
    assert raw.headers[CLAMPED_HEADER].startswith("max_output_tokens=500000")
    assert raw.parse().output_text == answer_text()
    request = fake.last_request()
    assert request["path"] == "/v1/responses"
    assert request["body"]["max_output_tokens"] == 500_000


def anthropic_post(gateway, body: dict):
    # Raw: the SDK itself refuses a large max_tokens without streaming.
    return post(gateway.url + "/v1/messages", body, {"anthropic-version": "2023-06-01"})


def test_an_anthropic_client_bound_is_clamped_on_the_messages_wire(gateway, fake):
    status, headers, body = anthropic_post(gateway, {
        "model": "opencode-go/minimax-m3", "max_tokens": 1_000_000, "messages": USER})
    assert status == 200, body
    assert CLAMPED_HEADER in headers
    assert fake.last_request()["body"]["max_tokens"] == OUTPUT_LIMITS["minimax-m3"]


def test_a_streamed_answer_says_it_was_clamped_too(gateway, fake):
    with openai.OpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0) as client:
        with client.chat.completions.with_streaming_response.create(
                model="opencode-go/kimi-k3", max_tokens=10_000_000, stream=True,
                messages=USER) as raw:
            assert "262144" in raw.headers[CLAMPED_HEADER]
            text = "".join(chunk.choices[0].delta.content or ""
                           for chunk in raw.parse() if chunk.choices)
    assert text == answer_text()


# ---- reasoning effort, end to end --------------------------------------------------------------

@pytest.mark.parametrize("model, asked, sent", [
    ("mimo-v2.6-pro", "xhigh", "high"), ("mimo-v2.6-flash", "max", "high"),
    ("glm-5.3", "none", "low"), ("kimi-k3", "medium", "high"), ("glm-5.3", "max", "max")])
def test_a_chat_effort_becomes_one_the_model_takes(gateway, fake, model, asked, sent):
    status, headers, body = post(gateway.url + "/v1/chat/completions", {
        "model": f"opencode-go/{model}", "reasoning_effort": asked, "messages": USER})
    assert status == 200, body
    assert fake.last_request()["body"]["reasoning_effort"] == sent
    assert (EFFORT_HEADER in headers) == (asked != sent)


def test_an_effort_for_a_model_the_catalogue_cannot_tell_passes_through(gateway, fake):
    assert post(gateway.url + "/v1/chat/completions", {
        "model": "opencode-go/brand-new-9", "reasoning_effort": "xhigh",
        "messages": USER})[0] == 200
    assert fake.last_request()["body"]["reasoning_effort"] == "xhigh"


def test_a_responses_effort_reaches_a_chat_model_as_one_it_takes(gateway, fake):
    with openai.OpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0) as client:
        answer = client.responses.create(model="opencode-go/glm-5.3", input="hi",
                                         reasoning={"effort": "minimal"})
    assert answer.output_text == answer_text()
    assert fake.last_request()["body"]["reasoning_effort"] == "low"


def test_a_chat_effort_reaches_a_responses_model_fitted(gateway, fake):
    fake.models(add={"glm-5.3": "responses"})  # a model moved: its limits and efforts stay
    status, _, body = post(gateway.url + "/v1/chat/completions", {
        "model": "opencode-go/glm-5.3", "reasoning_effort": "none", "messages": USER})
    assert status == 200, body
    request = fake.last_request()
    assert request["path"] == "/v1/responses" and request["body"]["reasoning"]["effort"] == "low"


def test_an_anthropic_thinking_budget_becomes_an_effort_the_model_takes(gateway, fake):
    status, headers, body = anthropic_post(gateway, {
        "model": "opencode-go/mimo-v2.6-pro", "max_tokens": 100_000, "messages": USER,
        "thinking": {"type": "enabled", "budget_tokens": 80_000}})
    assert status == 200, body
    assert "high (asked max" in headers[EFFORT_HEADER]
    sent = fake.last_request()["body"]
    assert sent["reasoning_effort"] == "high" and "thinking" not in sent
