"""Rule modules: ordering by file name across directories, RULE/RULES, async apply, failures."""
import textwrap

import pytest

from gateway.app import Gateway
from gateway.config import load_config
from gateway.errors import GatewayError
from gateway.routing.chain import RuleLoadError, load_rule_chain


def rules_dir(tmp_path, **files):
    directory = tmp_path / "rules"
    directory.mkdir()
    for name, text in files.items():
        (directory / f"{name}.py").write_text(textwrap.dedent(text))
    return directory


def gateway(directory):
    return Gateway(load_config(None, {}), rules_dir=str(directory), env={"OPENCODE_GO_API_KEY": "k"})


async def test_a_user_rule_before_the_builtins_can_alias_a_model(tmp_path):
    directory = rules_dir(tmp_path, **{"05_alias": """
        class Alias:
            def apply(self, ctx):
                if ctx.requested == "fast":
                    ctx.backend, ctx.model_id = "opencode-go", "glm-5.1"
        RULE = Alias()
    """})
    ctx = await gateway(directory).router.route("fast", "openai", {})
    assert (ctx.model_id, ctx.protocol, ctx.instance.name) == ("glm-5.1", "openai", "opencode-go")


async def test_rules_run_in_file_name_order_and_async_rules_are_awaited(tmp_path):
    directory = rules_dir(tmp_path, **{"25_between": """
        import asyncio
        class Record:
            async def apply(self, ctx):
                await asyncio.sleep(0)
                # runs after the protocol rule (20) and before translation (30)
                ctx.body["seen"] = (ctx.protocol, ctx.translation)
        RULES = [Record()]
    """})
    ctx = await gateway(directory).router.route("opencode-go/minimax-m2.7", "openai", {})
    assert ctx.body["seen"] == ("anthropic", None)


async def test_a_rule_can_reject_with_the_gateway_error(tmp_path):
    directory = rules_dir(tmp_path, **{"40_deny": """
        from gateway import GatewayError
        class Deny:
            def apply(self, ctx):
                if ctx.model_id.startswith("kimi"):
                    raise GatewayError(403, "kimi is not allowed here")
        RULE = Deny()
    """})
    gw = gateway(directory)
    with pytest.raises(GatewayError, match="kimi is not allowed"):
        await gw.router.route("opencode-go/kimi-k2.5", "openai", {})


def test_a_module_that_fails_to_import_names_the_file_and_reason(tmp_path):
    directory = rules_dir(tmp_path, **{"50_broken": "import no_such_module_anywhere\n"})
    with pytest.raises(RuleLoadError) as error:
        load_rule_chain([directory])
    assert "50_broken.py" in str(error.value)
    assert "no_such_module_anywhere" in str(error.value)


@pytest.mark.parametrize("text, reason", [
    ("X = 1\n", "neither RULE nor RULES"),
    ("RULE = object()\n", "no apply"),
])
def test_modules_that_break_the_contract_are_refused(tmp_path, text, reason):
    directory = rules_dir(tmp_path, **{"60_bad": text})
    with pytest.raises(RuleLoadError, match=reason):
        load_rule_chain([directory])


def test_missing_rules_directory_is_refused(tmp_path):
    with pytest.raises(RuleLoadError, match="does not exist"):
        load_rule_chain([tmp_path / "absent"])
