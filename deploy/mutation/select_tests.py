"""pytest plugin for deploy/mutation/run: leaves out the tests that start gateway processes.

mutmut runs each mutant's tests in a forked copy of one Python process; a gateway started as a
subprocess runs code mutmut cannot attribute to a test, takes seconds to start, and its mutated
copy does not come up. Those tests belong to the ordinary suite, not to this run.
"""


def pytest_collection_modifyitems(config, items):
    kept, left_out = [], []
    for item in items:
        starts_a_gateway = any(
            name == "start_gateway" and defs[-1].func.__module__.startswith("tests.conftest")
            for name, defs in item._fixtureinfo.name2fixturedefs.items())
        (left_out if starts_a_gateway else kept).append(item)
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = kept
