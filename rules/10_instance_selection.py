"""Built-in rule: choose the upstream key (instance) for the request, by what each key has left
per conversation, keeping every conversation's prompt cache warm.

OpenCode Go's limits are dollars per key (5 hours, week, month), and its prompt cache lives with
one key's session for a few minutes after a turn (`quota.prompt_cache`): a turn on the key that
answered the conversation's last turn within that time reads most of its prompt at a tenth of
the price or less; a turn on another key pays it all again.

- A pinned request (`opencode-go.2:…`) gets that instance and never moves. If the key is at a
  usage limit, it gets the 429 that says which limit and when it resets.
- A conversation (`ctx.session`) whose cache is hot (its last turn, on any worker, was less than
  the model family's cache lifetime ago) stays on its key while the key has any room left: a
  hot conversation moves only when it must (its key is spent, at a usage limit or resting).
- A new conversation, and one whose cache is cold (moving it costs nothing), is placed: it goes
  to the key with the most dollars left per conversation it carries (the conversations seen on
  it in the last half hour, this one counted with them), among the keys below `quota.threshold`
  (95%) of every window. Keys within 5% of the best count as equally good, and the session's hash
  picks among them (the same choice on every worker and machine). A cold conversation whose key
  is within 5% of the best stays. So conversations spread by what the keys can still pay for,
  and a key that nears its limit sheds its conversations as they pause, before it runs dry.
- A key at a usage limit rests until its reset and takes nothing; a key at a limit for one model
  alone (a per-model cap) takes nothing for that model and everything else; a key resting after
  errors is still tried when every key rests (the one back first).
- `ctx.fallbacks` lists the other keys, best first: where the forwarder moves the request if
  the chosen key fails before the answer starts.

Every placement and move is counted in /metrics (`opencode_gateway_key_decisions`: placement,
cold_move, hot_move); `opencode-gateway routes` prints this policy and each key's figures.

To choose keys differently, put a module of your own in --rules-dir whose name sorts before
this one (`05_my_keys.py`) and set `ctx.instance` (and `ctx.fallbacks`): this rule leaves a
chosen instance alone.
"""
import time

# Keys whose dollars left per conversation are within this share of the best are equally good.
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
        session = ctx.session
        sticky = book.sticky(session, now) if session else None
        idle = book.idle(session, now) if sticky is not None else None
        hot = idle is not None and idle < book.cache_lifetime(ctx.model_id)
        current = next((i for i in usable if i.key_id == sticky), None)
        decision = None
        if current is not None and hot and headroom[current] > 0:
            chosen = current  # its cache is warm there: it stays while the key has room
        elif usable:
            chosen = self._place(book, session, usable, headroom, current, now)
            if chosen is not current:
                decision = "placement" if sticky is None else "hot_move" if hot else "cold_move"
        else:
            # Everything rests: one resting after errors is still worth a try; one at a usage
            # limit is not (the router answers 429 with the resets).
            chosen = pool.choose(model=model)
        if chosen is not None:
            book.place(session, chosen, now, decision, idle)
        ctx.instance = chosen
        ctx.fallbacks = [i for i in usable if i is not chosen]

    @staticmethod
    def _place(book, session, usable, headroom, current, now):
        """The key for a new, cold or displaced conversation: the most dollars left per
        conversation carried, among the keys below the threshold (if any is)."""
        open_keys = [i for i in usable if headroom[i] > 0] or usable
        roomy = [i for i in open_keys if headroom[i] >= 1 - book.threshold] or open_keys
        share = {}
        for instance in roomy:
            carried = book.carried(instance, now)
            # The conversation counts on the key it is on already, and would add one elsewhere.
            carried = max(carried, 1) if instance is current else carried + 1
            share[instance] = book.left(instance, now) / carried
        best = max(share.values())
        if current in share and share[current] >= best - abs(best) * BAND:
            return current
        return book.spread(session, [i for i in roomy if share[i] >= best - abs(best) * BAND])

    @staticmethod
    def describe(ctx):
        """The policy and each key's figures, for `opencode-gateway routes`."""
        book = ctx.quota
        pool = ctx.pools.get(ctx.backend)
        if book is None or pool is None or len(pool.instances) == 1:
            return []
        now = time.time()
        cache = book.cache_lifetime(ctx.model_id)
        lines = [f"key choice   : new conversations by dollars left per conversation carried, "
                 f"on keys below {book.threshold:.0%} of every window",
                 f"               prompt cache {cache:g} s for {ctx.model_id}: a conversation "
                 f"idle that long moves freely, a warmer one stays until its key is spent"]
        for instance in pool.instances:
            state = "" if instance.available(now) else ", resting"
            carried = book.carried(instance, now)
            lines.append(f"  {instance.name:<12}: ${book.left(instance, now):.2f} left "
                         f"({book.headroom(instance, now):.0%} of its tightest window), "
                         f"{carried} conversation{'' if carried == 1 else 's'}{state}")
        return lines


RULE = ChooseKey()
