"""The request checks hub.py holds for every codec: each codec that uses one refuses the same bad
shape with a 400 naming the field in its client's terms."""
import pytest

from gateway.errors import GatewayError
from gateway.translate import anthropic_request, gemini_request, responses_request

USER = {"role": "user", "content": "hi"}


@pytest.mark.parametrize("from_hub", [gemini_request.from_hub, responses_request.from_hub])
@pytest.mark.parametrize("body, param", [
    ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": 5}}]}]},
     "messages[0].content[0].image_url.url"),
    ({"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]},
     "messages[0].content[0].type"),
    ({"messages": [USER, {"role": "tool", "content": "done"}]}, "messages[1].tool_call_id"),
    ({"messages": [USER], "tools": [{"type": "function"}]}, "tools[0]"),
])
def test_a_hub_body_an_upstream_wire_cannot_take_is_a_400_naming_the_field(from_hub, body,
                                                                              param):
    with pytest.raises(GatewayError) as caught:
        from_hub({"model": "m", **body})
    assert caught.value.status == 400 and caught.value.param == param
    assert f"`{param}`" in caught.value.message


@pytest.mark.parametrize("to_hub, tools, param", [
    (anthropic_request.to_hub, [{"name": "", "input_schema": {}}], "tools[0].name"),
    (responses_request.to_hub, [{"type": "function", "name": 7}], "tools[0].name"),
    (responses_request.to_hub, [{"type": "custom"}], "tools[0].name"),
    (gemini_request.to_hub, [{"functionDeclarations": [{"description": "d"}]}],
     "tools[0].functionDeclarations[0].name"),
])
def test_a_client_tool_without_a_name_is_a_400_naming_it(to_hub, tools, param):
    body = {"model": "m", "tools": tools, "messages": [USER], "input": "hi",
            "contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    with pytest.raises(GatewayError) as caught:
        to_hub(body)
    assert caught.value.status == 400 and caught.value.param == param
    assert "non-empty string" in caught.value.message
