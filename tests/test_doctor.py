"""`opencode-gateway doctor` and `GET /v1/doctor` against the fake OpenCode Go: whether each
instance can serve, one line per problem with its fix, the exit status."""
from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from gateway.doctor import AT_LIMIT, Problem, Report, problems_of, CatalogueReport

REPO = Path(__file__).resolve().parent.parent
KEYS = {"OPENCODE_GO_API_KEY_1": "sk-doctor-good-1111", "OPENCODE_GO_API_KEY_2":
        "sk-doctor-other-2222"}


def doctor(fake, tmp_path, *options, keys=None):
    env = {"PATH": "/usr/bin:/bin", "XDG_STATE_HOME": str(tmp_path),
           "OPENCODE_GO_API_URL": fake.url, **(keys or KEYS)}
    done = subprocess.run([sys.executable, "-m", "gateway", "doctor", *options], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=120)
    for key in (keys or KEYS).values():
        assert key not in done.stdout + done.stderr
    return done


def as_report(done) -> dict:
    return json.loads(done.stdout)


def test_healthy_keys_can_serve_and_the_exit_status_is_zero(fake, tmp_path):
    done = doctor(fake, tmp_path, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    report = as_report(done)
    assert report["ok"] is True
    first = report["instances"][0]
    assert first["key_state"] == "accepted" and first["can_serve"] is True
    assert set(first["windows"]) == {"rolling", "weekly", "monthly"}
    assert first["layout"] == "zen" and first["key"].endswith("1111")
    catalogue = report["catalogues"][0]
    assert catalogue["live_ids"] == len(fake.models()["models"])
    assert catalogue["live_only"] == []


def test_a_refused_key_is_a_problem_with_its_fix_and_a_failing_exit(fake, tmp_path):
    fake.set_key(KEYS["OPENCODE_GO_API_KEY_2"], status=401)
    done = doctor(fake, tmp_path)
    assert done.returncode == 1
    assert "opencode-go.1: can serve" in done.stdout
    assert "opencode-go.2: CANNOT SERVE" in done.stdout
    line = next(line for line in done.stdout.splitlines()
                if line.startswith("- opencode-go.2:") and "refused" in line)
    assert "Fix: copy the key again" in line


def test_a_key_at_its_limit_says_which_window_and_when_it_resets(fake, tmp_path):
    fake.set_limit(KEYS["OPENCODE_GO_API_KEY_1"], "weekly", retry_after=7200)
    report = as_report(doctor(fake, tmp_path, "--json"))
    first = report["instances"][0]
    assert first["key_state"] == AT_LIMIT and not first["can_serve"]
    assert "weekly" in first["detail"] and "resets in 2h" in first["detail"]
    assert report["ok"] is False
    assert any("usage limit" in problem["problem"] and "another key" in problem["fix"]
               for problem in report["problems"])


def test_ids_the_live_list_has_and_the_catalogue_lacks_are_named(fake, tmp_path):
    fake.models(add={"zeta-9": "chat"}, remove=["glm-5.1"])
    report = as_report(doctor(fake, tmp_path, "--json"))
    catalogue = report["catalogues"][0]
    assert catalogue["live_only"] == ["zeta-9"] and "glm-5.1" in catalogue["not_live"]
    problem = next(p for p in report["problems"] if "zeta-9" in p["problem"])
    assert "models refresh" in problem["fix"]


def test_probe_sends_one_tiny_request_per_wire(fake, tmp_path):
    done = doctor(fake, tmp_path, "--probe", "--json", keys={"OPENCODE_GO_API_KEY": "sk-p-1"})
    assert done.returncode == 0, done.stdout
    probes = as_report(done)["instances"][0]["probes"]
    assert sorted(probe["wire"] for probe in probes) == ["anthropic", "openai", "responses"]
    assert all(probe["status"] == 200 for probe in probes)
    sent = [request for request in fake.requests() if request["key"] == "sk-p-1"]
    assert sorted(request["path"] for request in sent) == [
        "/v1/chat/completions", "/v1/messages", "/v1/responses"]


def test_a_probe_that_fails_names_the_wire_and_model(fake, tmp_path):
    responses_ids = [model for model, wire in fake.models()["models"].items()
                     if wire == "responses"]
    # The upstream serves one Responses id of the catalogue, and now on another wire.
    fake.models(remove=[model for model in responses_ids if model != "grok-4.7"],
                add={"grok-4.7": "chat"})
    report = as_report(doctor(fake, tmp_path, "--probe", "--json",
                              keys={"OPENCODE_GO_API_KEY": "sk-p-2"}))
    probe = next(p for p in report["instances"][0]["probes"] if p["wire"] == "responses")
    assert probe["model"] == "grok-4.7" and probe["status"] == 400
    assert any("Responses wire failed for grok-4.7" in p["problem"] for p in report["problems"])


def test_a_stale_catalogue_is_a_problem():
    report = Report(checked_at="", ok=True, instances=[], problems=[], catalogues=[
        CatalogueReport("opencode-go", "snapshot of 2026-01-01", 120, None, [], [])])
    assert problems_of(report) == [Problem(
        "backend opencode-go", "the model catalogue (snapshot of 2026-01-01) is 120 days old",
        "run `opencode-gateway models refresh` and restart")]


def test_the_dashboard_endpoint_has_the_same_facts(start_gateway, fake):
    gateway = start_gateway(env={"GATEWAY_API_KEYS": "client-1"})
    request = urllib.request.Request(gateway.url + "/v1/doctor",
                                     headers={"Authorization": "Bearer client-1"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        report = json.loads(answer.read())
    assert report["instances"][0]["key_state"] == "accepted"
    assert report["catalogues"][0]["live_ids"] == len(fake.models()["models"])
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(gateway.url + "/v1/doctor", timeout=30)
    assert refused.value.code == 401
