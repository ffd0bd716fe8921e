"""Built-in rule: choose the backend instance (upstream key) for the request.

A pinned request (`opencode-go.2:…`) gets that instance and never moves; an unpinned one gets the
next healthy instance round robin, and the forwarder may move it on failure. A key at an
OpenCode Go usage limit takes nothing until its reset, pinned requests included: they get the
429 that says which limit ran out and when it resets.
"""
import time


class SelectInstance:
    def apply(self, ctx):
        if ctx.instance is not None or ctx.backend not in ctx.pools:
            return
        pool = ctx.pools[ctx.backend]
        if ctx.pinned:
            instance = pool.pinned(ctx.pin)
            if instance is not None and instance.limited(time.time()):
                raise pool.all_resting_error([instance])
            ctx.instance = instance
        else:
            ctx.instance = pool.choose()


RULE = SelectInstance()
