"""Built-in rule: choose the backend instance (upstream key) for the request.

A pinned request (`opencode-go.2:…`) gets that instance and never moves; an unpinned one gets the
next healthy instance round robin, and the forwarder may move it on failure.
"""


class SelectInstance:
    def apply(self, ctx):
        if ctx.instance is not None or ctx.backend not in ctx.pools:
            return
        pool = ctx.pools[ctx.backend]
        ctx.instance = pool.pinned(ctx.pin) if ctx.pinned else pool.choose()


RULE = SelectInstance()
