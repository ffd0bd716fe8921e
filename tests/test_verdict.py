"""The verdict on an upstream answer (gateway/upstream/verdict.py), one test per row of the
table "Errors that are not what their status says" in UPSTREAM.md, plus the plain cases.

Bodies are written as OpenCode Go sends them (UPSTREAM.md), not as the gateway reads them."""
from __future__ import annotations

import json

import pytest

from gateway.upstream.verdict import OK, Kind, judge
from tests.fake_upstream import EDGE_PAGE, EDGE_RAY_ID

JSON = {"content-type": "application/json"}
PREFIX = "Error from provider (Console Go): "


def body(data) -> bytes:
    return json.dumps(data).encode()


def opencode(error_type: str, message: str, **extra) -> bytes:
    return body({"type": "error", "error": {"type": error_type, "message": message}, **extra})


# --- the table -------------------------------------------------------------------------------

def test_401_credits_error_is_a_usage_limit_on_the_balance():
    verdict = judge(401, JSON, body({"type": "CreditsError", "message": "Insufficient balance"}),
                    "glm-5.1")
    assert verdict.kind is Kind.USAGE_LIMIT
    assert verdict.limit_name == "balance"


def test_401_model_error_is_an_unknown_model_naming_the_id():
    verdict = judge(401, JSON, body({"type": "ModelError",
                                     "message": "Model glm-9 is not supported"}), "glm-9")
    assert (verdict.kind, verdict.model) == (Kind.UNKNOWN_MODEL, "glm-9")


def test_403_entitlement_error_is_no_subscription():
    verdict = judge(403, JSON, opencode("EntitlementError", PREFIX + "No Go subscription"))
    assert verdict.kind is Kind.NO_ENTITLEMENT


def test_a_200_with_a_go_usage_limit_body_is_a_usage_limit():
    verdict = judge(200, JSON, opencode(
        "GoUsageLimitError", "Weekly usage limit reached. Resets in 2day 5hr.",
        metadata={"workspace": "wrk_1", "limitName": "weekly"}), "kimi-k3")
    assert (verdict.kind, verdict.limit_name) == (Kind.USAGE_LIMIT, "weekly")


def test_403_html_from_cloudflare_is_blocked_at_the_edge_with_its_ray_id():
    verdict = judge(403, {"content-type": "text/html; charset=UTF-8"}, EDGE_PAGE)
    assert (verdict.kind, verdict.ray_id) == (Kind.EDGE_BLOCKED, EDGE_RAY_ID)
    assert "1010" in verdict.message
    headers = {"content-type": "text/html", "cf-ray": "7a1b2c3d4e5f6a7b-AMS"}
    assert judge(403, headers, b"<html>denied</html>").ray_id == "7a1b2c3d4e5f6a7b"


@pytest.mark.parametrize("message, setting", [
    ("This Go model requires Global regions. Enable them in your workspace settings.",
     "Global regions"),
    ("This model is only available to workspaces that opt in to model training.",
     "model training opt-in"),
])
def test_400_from_a_console_setting_names_the_setting(message, setting):
    verdict = judge(400, JSON, opencode("invalid_request_error", PREFIX + message),
                    "deepseek-v4.1-flash")
    assert (verdict.kind, verdict.setting) == (Kind.CONSOLE_SETTING, setting)


# --- limits and caps -------------------------------------------------------------------------

def test_429_go_usage_limit_is_a_usage_limit_with_its_reset():
    verdict = judge(429, {**JSON, "retry-after": "14160"}, opencode(
        "GoUsageLimitError", "5-hour usage limit reached. Resets in 3hr 56min.",
        metadata={"workspace": "wrk_1", "limitName": "5 hour"}), "glm-5.1")
    assert (verdict.kind, verdict.limit_name, verdict.retry_after) == (
        Kind.USAGE_LIMIT, "5 hour", 14160)


def test_a_limit_whose_message_names_the_model_is_a_cap_on_that_model_only():
    verdict = judge(429, {**JSON, "retry-after": "600"}, opencode(
        "GoUsageLimitError", "5-hour usage limit reached for deepseek-v4-pro. Resets in 10min.",
        metadata={"limitName": "5 hour"}), "deepseek-v4-pro")
    assert (verdict.kind, verdict.model, verdict.limit_name) == (
        Kind.MODEL_CAP, "deepseek-v4-pro", "5 hour")


def test_a_limit_naming_the_model_in_its_metadata_is_a_cap():
    verdict = judge(429, JSON, opencode("GoUsageLimitError", "Usage limit reached.",
                                        metadata={"limitName": "5 hour",
                                                  "model": "deepseek-v4-pro"}), "x")
    assert (verdict.kind, verdict.model) == (Kind.MODEL_CAP, "deepseek-v4-pro")


def test_a_longer_id_in_the_message_is_not_the_requested_model():
    verdict = judge(429, JSON, opencode("GoUsageLimitError",
                                        "5-hour usage limit reached for glm-5.1-air."),
                    "glm-5.1")
    assert verdict.kind is Kind.USAGE_LIMIT


def test_a_plain_429_naming_the_model_is_a_cap_else_retryable():
    said = body({"error": {"message": "Too many requests for kimi-k3, slow down"}})
    assert judge(429, JSON, said, "kimi-k3").kind is Kind.MODEL_CAP
    assert judge(429, JSON, said, "glm-5.1").kind is Kind.RETRYABLE


# --- the rest --------------------------------------------------------------------------------

def test_a_plain_401_is_a_bad_key():
    verdict = judge(401, JSON, body({"error": {"message": "Invalid API key"}}))
    assert verdict.kind is Kind.BAD_KEY


def test_wrong_wire_and_reasoning_required():
    wrong = opencode("invalid_request_error",
                     PREFIX + "Model minimax-m2.7 is not supported for format oa-compat")
    assert judge(400, JSON, wrong, "minimax-m2.7").kind is Kind.WRONG_WIRE
    reasoning = body({"error": {"message": "The `reasoning_content` in the thinking mode must "
                                           "be passed back to the API."}})
    assert judge(400, JSON, reasoning).kind is Kind.REASONING_REQUIRED


@pytest.mark.parametrize("status", [403, 408, 500, 502, 503, 529])
def test_instance_troubles_are_retryable(status):
    assert judge(status, JSON, body({"error": {"message": "down"}})).kind is Kind.RETRYABLE


def test_other_4xx_are_plain_errors_and_answers_are_ok():
    assert judge(400, JSON, body({"error": {"message": "bad temperature"}})).kind is Kind.ERROR
    assert judge(200, JSON, body({"choices": [{"message": {"content": "GoUsageLimitError is "
                                                                      "a type"}}]})) is OK
    assert judge(200, {"content-type": "text/event-stream"}, b"data: {}\n\n") is OK
