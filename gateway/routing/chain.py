"""Loading rule modules from directories and running them as one chain.

A rule module is a `.py` file that defines `RULE` (one object) or `RULES` (a list); each object
has `apply(ctx)`, plain or `async`. Modules from the built-in directory and the user's run
together in file-name order, so `05_alias.py` runs before the built-in `10_…`. Files starting
with `_` are skipped (helpers a module may share).
"""
from __future__ import annotations

import importlib.util
import inspect
import sys
from pathlib import Path

from gateway.routing.context import RouteContext


class RuleLoadError(Exception):
    """A rule module that cannot be used; start-up stops with its file name and the reason."""


def builtin_rules_dir() -> Path:
    # In a checkout (and an editable install) the rules sit beside the package in rules/; an
    # installed wheel carries them as gateway/builtin_rules.
    beside = Path(__file__).resolve().parent.parent.parent / "rules"
    if beside.is_dir() and any(beside.glob("[0-9]*.py")):
        return beside
    return Path(__file__).resolve().parent.parent / "builtin_rules"


class RuleChain:
    def __init__(self, rules: list[tuple[object, bool, str]]):
        # (rule object, whether apply is async, source file) — async-ness is looked up once here.
        self.rules = rules

    async def run(self, ctx: RouteContext) -> None:
        for rule, is_async, _source in self.rules:
            if is_async:
                await rule.apply(ctx)
            else:
                rule.apply(ctx)

    @property
    def sources(self) -> list[str]:
        return [source for _rule, _async, source in self.rules]


def load_rule_chain(directories: list[Path]) -> RuleChain:
    files = []
    for directory in directories:
        if not directory.is_dir():
            raise RuleLoadError(f"{directory}: rules directory does not exist")
        files.extend(path for path in directory.glob("*.py") if not path.name.startswith("_"))
    files.sort(key=lambda path: path.name)
    rules = []
    for position, path in enumerate(files):
        module = _import(path, position)
        found = getattr(module, "RULES", None)
        if found is None:
            found = getattr(module, "RULE", None)
            if found is None:
                raise RuleLoadError(f"{path}: defines neither RULE nor RULES")
            found = [found]
        for rule in found:
            apply = getattr(rule, "apply", None)
            if not callable(apply):
                raise RuleLoadError(f"{path}: {rule!r} has no apply(ctx) method")
            rules.append((rule, inspect.iscoroutinefunction(apply), str(path)))
    return RuleChain(rules)


def _import(path: Path, position: int):
    name = f"gateway_rule_{position}_{path.stem.replace('-', '_')}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise RuleLoadError(f"{path}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # any failure of a user's module stops start-up, named
        del sys.modules[name]
        raise RuleLoadError(f"{path}: failed to import: {type(exc).__name__}: {exc}") from exc
    return module
