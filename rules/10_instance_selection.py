"""Built-in rule: choose the upstream key (instance) for the request, by headroom, sticky per
conversation.

OpenCode Go's limits are dollars per key (5 hours, week, month), and its prompt cache lives with
one key's session: so a conversation should stay on one key, and new conversations should go
where there is room.

- A pinned request (`opencode-go.2:…`) gets that instance and never moves. If the key is at a
  usage limit, it gets the 429 that says which limit and when it resets.
- A conversation (`ctx.session`) stays on the key it started on while that key has room (is not
  resting and has not spent a whole window).
- A new conversation goes to the key with the most headroom across its three windows, among
  the keys below `quota.threshold` (95%) of every window; keys within 5 points of the best count
  as equally good, and the session's hash picks among them (the same choice on every worker and
  machine). Keys past the threshold take new conversations only when no key is below it.
- A key at a usage limit rests until its reset and takes nothing; a key at a limit for one model
  alone (a per-model cap) takes nothing for that model and everything else; a key resting after
  errors is still tried when every key rests (the one back first).
- `ctx.fallbacks` lists the other keys, best first: where the forwarder moves the request if
  the chosen key fails before the answer starts.

To choose keys differently, put a module of your own in --rules-dir whose name sorts before
this one (`05_my_keys.py`) and set `ctx.instance` (and `ctx.fallbacks`): this rule leaves a
chosen instance alone.
"""
import time

# Keys whose headroom is this close to the best are equally good for a new conversation.
BAND = 0.05


class ChooseKey:
    def apply(self, ctx):
        if ctx.instance is not None or ctx.backend not in ctx.pools:
            return
        pool = ctx.pools[ctx.backend]
        now = time.time()
        if ctx.pinned:
            instance = pool.pinned(ctx.pin)
            if instance is not None and (instance.limited(now)
                                         or instance.capped(ctx.model_id, now)):
                raise pool.all_resting_error([instance], model=ctx.model_id)
            ctx.instance = instance
            return
        book = ctx.quota
        model = ctx.model_id
        if book is None:  # no quota view (a bare router in a test): round robin
            ctx.instance = pool.choose(model=model)
            return
        if len(pool.instances) == 1:  # one key: nothing to choose, nowhere to move
            ctx.instance = pool.choose(model=model)
            return
        headroom = {i: book.headroom(i, now) for i in pool.instances}
        usable = sorted((i for i in pool.instances
                         if i.available(now) and not i.capped(model, now)),
                        key=lambda i: headroom[i], reverse=True)
        chosen = None
        sticky = book.sticky(ctx.session, now) if ctx.session else None
        if sticky is not None:
            chosen = next((i for i in usable if i.key_id == sticky and headroom[i] > 0), None)
        if chosen is None and usable:
            roomy = [i for i in usable if headroom[i] >= 1 - book.threshold] or usable
            best = headroom[roomy[0]]
            chosen = book.spread(ctx.session, [i for i in roomy if headroom[i] >= best - BAND])
        if chosen is None:
            # Everything rests: one resting after errors is still worth a try; one at a usage
            # limit is not (the router answers 429 with the resets).
            chosen = pool.choose(model=model)
        if chosen is not None:
            book.stick(ctx.session, chosen, now)
        ctx.instance = chosen
        ctx.fallbacks = [i for i in usable if i is not chosen]


RULE = ChooseKey()
