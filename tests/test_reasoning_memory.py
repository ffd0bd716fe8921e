"""DeepSeek tool loops survive clients that drop the reasoning: the gateway remembers it and puts
it back, for every frontend, across workers; without a memory the turn still goes through.

The fake upstream refuses, as DeepSeek does, any assistant tool-call turn that comes back without
`reasoning_content`; every second turn below passed that check."""
from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request

import pytest

from gateway.config import State
from gateway.state.memory import MemoryStore
from gateway.state.reasoning import NEUTRAL_REASONING, ReasoningMemory, memory_key
from tests.fake_upstream import REASONING_TEXT, answer_text, openai_tool_id

MODEL = "opencode-go/deepseek-v4-pro"


def post(url: str, body: dict, headers: dict | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={
        "content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def sse_payloads(raw: bytes) -> list[dict]:
    return [json.loads(line[6:]) for line in raw.decode().split("\n")
            if line.startswith("data: ") and line != "data: [DONE]"]


def chat_turns(gateway, stream: bool, session: str):
    """A Chat client that keeps only `content` and `tool_calls` of the assistant's turn."""
    headers = {"x-opencode-session": session}
    first = [{"role": "user", "content": "[[fake: tools=1]] weather in Zürich?"}]
    status, raw = post(gateway.url + "/v1/chat/completions",
                       {"model": MODEL, "messages": first, "stream": stream}, headers)
    assert status == 200, raw
    if stream:
        calls = [call for chunk in sse_payloads(raw) for choice in chunk.get("choices", [])
                 for call in choice["delta"].get("tool_calls", [])]
        call_id = calls[0]["id"]
    else:
        call_id = json.loads(raw)["choices"][0]["message"]["tool_calls"][0]["id"]
    history = first + [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call_id, "type": "function",
             "function": {"name": "get_weather", "arguments": "{\"city\": \"Zürich\"}"}}]},
        {"role": "tool", "tool_call_id": call_id, "content": "sunny"}]
    return post(gateway.url + "/v1/chat/completions",
                {"model": MODEL, "messages": history, "stream": stream}, headers)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_chat_client_that_drops_reasoning_completes_its_tool_loop(gateway, fake, stream):
    status, raw = chat_turns(gateway, stream, "chat-session-1")
    assert status == 200, raw
    second = fake.requests()[1]["body"]
    assert second["messages"][1]["reasoning_content"] == REASONING_TEXT


def test_an_anthropic_client_that_drops_thinking_completes_its_tool_loop(gateway, fake):
    headers = {"anthropic-version": "2023-06-01"}
    first = [{"role": "user", "content": "[[fake: tools=1]] weather?"}]
    status, raw = post(gateway.url + "/v1/messages", {
        "model": MODEL, "max_tokens": 300, "messages": first}, headers)
    assert status == 200, raw
    blocks = json.loads(raw)["content"]
    assert [b["type"] for b in blocks] == ["thinking", "tool_use"]
    tool_use = blocks[1]
    status, raw = post(gateway.url + "/v1/messages", {
        "model": MODEL, "max_tokens": 300, "messages": first + [
            {"role": "assistant", "content": [tool_use]},   # the thinking block is gone
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use["id"],
                                          "content": "sunny"}]}]}, headers)
    assert status == 200, raw
    assert json.loads(raw)["content"][-1]["text"] == answer_text()
    assert fake.requests()[1]["body"]["messages"][1]["reasoning_content"] == REASONING_TEXT


def test_codex_reasoning_items_without_content_do_not_break_the_loop(gateway, fake):
    first = [{"type": "message", "role": "user",
              "content": [{"type": "input_text", "text": "[[fake: tools=1]] weather?"}]}]
    status, raw = post(gateway.url + "/v1/responses", {
        "model": MODEL, "input": first, "store": False, "prompt_cache_key": "codex-1"})
    assert status == 200, raw
    call = next(item for item in json.loads(raw)["output"] if item["type"] == "function_call")
    status, raw = post(gateway.url + "/v1/responses", {
        "model": MODEL, "store": False, "prompt_cache_key": "codex-1", "input": first + [
            {"type": "reasoning", "id": "rs_1", "summary": [], "content": None,
             "encrypted_content": None},
            {"type": "function_call", "call_id": call["call_id"], "name": call["name"],
             "arguments": call["arguments"]},
            {"type": "function_call_output", "call_id": call["call_id"], "output": "sunny"}]})
    assert status == 200, raw
    assert json.loads(raw)["status"] == "completed"
    assert fake.requests()[1]["body"]["messages"][1]["reasoning_content"] == REASONING_TEXT


def test_with_nothing_remembered_the_turn_gets_a_neutral_stand_in(gateway, fake):
    history = [{"role": "user", "content": "weather?"},
               {"role": "assistant", "content": "", "tool_calls": [
                   {"id": "call_from_elsewhere", "type": "function",
                    "function": {"name": "get_weather", "arguments": "{}"}}]},
               {"role": "tool", "tool_call_id": "call_from_elsewhere", "content": "sunny"}]
    status, raw = post(gateway.url + "/v1/chat/completions", {"model": MODEL, "messages": history})
    assert status == 200, raw
    assert fake.last_request()["body"]["messages"][1]["reasoning_content"] == NEUTRAL_REASONING
    assert "sent a neutral stand-in" in gateway.log()


def test_other_models_get_their_history_untouched(gateway, fake):
    history = [{"role": "user", "content": "weather?"},
               {"role": "assistant", "content": None, "tool_calls": [
                   {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
               {"role": "tool", "tool_call_id": "c1", "content": "sunny"}]
    assert post(gateway.url + "/v1/chat/completions",
                {"model": "opencode-go/glm-5.1", "messages": history})[0] == 200
    assert "reasoning_content" not in fake.last_request()["body"]["messages"][1]


def test_the_memory_is_shared_by_the_workers_of_one_gateway(start_gateway, fake):
    gateway = start_gateway(workers=2)
    for n in range(6):  # the kernel spreads the turns over both workers
        status, raw = chat_turns(gateway, stream=n % 2 == 1, session=f"shared-{n}")
        assert status == 200, raw
    restored = [request["body"]["messages"][1].get("reasoning_content")
                for request in fake.requests() if len(request["body"]["messages"]) > 1]
    assert restored == [REASONING_TEXT] * 6
    assert "neutral stand-in" not in gateway.log()


async def test_remembered_reasoning_is_the_sessions_own():
    memory = ReasoningMemory(MemoryStore(State()), ttl_hours=1)
    memory.remember("session-a", ["call_1", "call_2"], "private reasoning of a")
    await memory.drain()
    body = {"messages": [{"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}]}
    other = json.loads(json.dumps(body))
    assert await memory.restore(body, "session-a", "r1") == 0
    assert body["messages"][0]["reasoning_content"] == "private reasoning of a"
    assert await memory.restore(other, "session-b", "r2") == 1  # another conversation: not its
    assert other["messages"][0]["reasoning_content"] == NEUTRAL_REASONING


async def test_a_turn_that_kept_its_reasoning_is_left_alone():
    memory = ReasoningMemory(MemoryStore(State()), ttl_hours=1)
    memory.remember("s", ["call_1"], "remembered")
    await memory.drain()
    body = {"messages": [{"role": "assistant", "reasoning_content": "the client's own",
                          "tool_calls": [{"id": "call_1"}]}]}
    await memory.restore(body, "s", "r")
    assert body["messages"][0]["reasoning_content"] == "the client's own"


def _tool_turn(call_id: str) -> dict:
    return {"messages": [{"role": "assistant", "content": None, "tool_calls": [
        {"id": call_id, "type": "function", "function": {"name": "f", "arguments": "{}"}}]}]}


async def test_a_store_that_does_not_answer_delays_the_turn_only_briefly():
    class HungStore(MemoryStore):
        async def recall(self, ids):
            await asyncio.Event().wait()  # Redis frozen, SQLite locked

    memory = ReasoningMemory(HungStore(State()), ttl_hours=1)
    body = _tool_turn("call_1")
    # Bounded by the memory itself; the outer guard only keeps a regression from hanging CI.
    assert await asyncio.wait_for(memory.restore(body, "s", "r"), 30) == 1
    assert body["messages"][0]["reasoning_content"] == NEUTRAL_REASONING


async def test_a_call_found_nowhere_is_not_looked_up_again_on_later_turns():
    class CountingStore(MemoryStore):
        lookups = 0

        async def recall(self, ids):
            CountingStore.lookups += 1
            return await super().recall(ids)

    memory = ReasoningMemory(CountingStore(State()), ttl_hours=1)
    for turn in range(3):  # the same history grows by a turn each time: same call, same miss
        assert await memory.restore(_tool_turn("call_from_elsewhere"), "s", f"r{turn}") == 1
    assert CountingStore.lookups == 1


class _GatedStore(MemoryStore):
    """A store whose writes wait until the test opens the gate."""

    def __init__(self):
        super().__init__(State())
        self.gate = asyncio.Event()

    async def remember(self, items, ttl):
        await self.gate.wait()
        await super().remember(items, ttl)


async def test_an_answers_end_waits_until_its_reasoning_is_in_the_store():
    store = _GatedStore()
    memory = ReasoningMemory(store, ttl_hours=1)
    waiting = asyncio.create_task(memory.remember_now("s", ["call_1"], "because"))
    await asyncio.wait((waiting,), timeout=0.05)
    assert not waiting.done()  # the answer's last bytes are held
    store.gate.set()
    await waiting
    key = memory_key("s", "call_1")
    assert await store.recall([key]) == {key: "because"}


async def test_a_hung_store_holds_an_answers_end_only_briefly(monkeypatch):
    monkeypatch.setattr("gateway.state.reasoning.WRITE_SECONDS", 0.05)
    store = _GatedStore()
    memory = ReasoningMemory(store, ttl_hours=1)
    await asyncio.wait_for(memory.remember_now("s", ["call_1"], "because"), 2)
    store.gate.set()  # the write went on in the background
    await memory.drain()
    key = memory_key("s", "call_1")
    assert await store.recall([key]) == {key: "because"}
