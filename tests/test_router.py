"""Model strings and route judgement, through the real built-in rule chain."""
import pytest

from gateway.app import Gateway
from gateway.config import load_config
from gateway.errors import GatewayError

ENV = {"OPENCODE_GO_API_KEY_1": "k1", "OPENCODE_GO_API_KEY_2": "k2"}


def gateway(tmp_path=None, yaml=None, env=ENV):
    path = None
    if yaml is not None:
        path = tmp_path / "c.yaml"
        path.write_text(yaml)
    return Gateway(load_config(str(path) if path else None, env), env=env)


async def route(gw, model, frontend="openai"):
    return await gw.router.route(model, frontend, {"model": model, "messages": []})


@pytest.mark.parametrize("model", ["opencode-go/glm-5.1", "opencode-go:glm-5.1", "glm-5.1"])
async def test_each_form_reaches_the_bare_id_on_the_openai_flavour(model):
    ctx = await route(gateway(), model)
    assert (ctx.backend, ctx.model_id, ctx.protocol) == ("opencode-go", "glm-5.1", "openai")
    assert not ctx.pinned


@pytest.mark.parametrize("model", ["opencode-go.2:kimi-k2.5", "opencode-go.2/kimi-k2.5"])
async def test_pinned_forms_pick_that_instance(model):
    ctx = await route(gateway(), model)
    assert ctx.instance.name == "opencode-go.2"
    assert ctx.pinned and ctx.model_id == "kimi-k2.5"


async def test_minimax_goes_to_the_anthropic_flavour_with_translation_for_openai_clients():
    ctx = await route(gateway(), "opencode-go/minimax-m2.7")
    assert ctx.protocol == "anthropic"
    assert ctx.translation.name == "OpenAI Chat -> Anthropic"
    same = await route(gateway(), "opencode-go/minimax-m2.7", frontend="anthropic")
    assert same.translation.stream is None  # bytes pass through for Anthropic clients


async def test_unpinned_conversations_spread_over_instances_and_keep_theirs():
    gw = gateway()
    body = {"model": "opencode-go/glm-5", "messages": []}
    names = {(await gw.router.route("opencode-go/glm-5", "openai", body, f"s{n}")).instance.name
             for n in range(20)}
    assert names == {"opencode-go.1", "opencode-go.2"}
    same = {(await gw.router.route("opencode-go/glm-5", "openai", body, "s1")).instance.name
            for _ in range(5)}
    assert len(same) == 1


async def test_new_id_with_backend_named_goes_to_openai_flavour():
    ctx = await route(gateway(), "opencode-go/brand-new-model")
    assert (ctx.model_id, ctx.protocol) == ("brand-new-model", "openai")


async def test_override_moves_and_adds_models(tmp_path):
    gw = gateway(tmp_path, "backends:\n  opencode-go:\n    extra:\n      model_protocol_overrides:\n"
                           "        custom-model: anthropic\n        glm-5: anthropic\n")
    assert (await route(gw, "custom-model")).protocol == "anthropic"  # bare id now routable
    assert (await route(gw, "opencode-go/glm-5")).protocol == "anthropic"
    assert "opencode-go/custom-model" in gw.router.advertised_models()


@pytest.mark.parametrize("model", ["no-such-backend:x", "unknown-bare-id", "nope/glm-5.1"])
async def test_unclaimed_strings_are_404_listing_models(model):
    with pytest.raises(GatewayError) as error:
        await route(gateway(), model)
    assert error.value.status == 404
    assert "opencode-go/glm-5.1" in error.value.message


async def test_pin_to_missing_instance_is_404_naming_the_instances():
    with pytest.raises(GatewayError) as error:
        await route(gateway(), "opencode-go.7:glm-5.1")
    assert error.value.status == 404
    assert "opencode-go.1, opencode-go.2" in error.value.message


async def test_bare_id_served_by_two_backends_needs_the_backend_named(tmp_path):
    gw = gateway(tmp_path, "backends:\n  opencode-go: {}\n  other: {}\n")
    with pytest.raises(GatewayError):
        await route(gw, "glm-5.1")
    assert (await route(gw, "other/glm-5.1")).backend == "other"
