"""Who is asking: the key a request carries names an anonymous user (`server.api_keys`), a named
client (`server.clients`, or one `opencode-gateway clients` added), or an admin
(`server.admin_keys`).

Keys are never compared as strings: every key is kept as a salted SHA-256 hash, and a request's
key is hashed and looked up, so the time a lookup takes says nothing about how much of a key
matched (and the stored clients need never be readable). The directory is rebuilt when the
config is re-read and after each sync that brought a change to the stored clients; a request
only hashes and reads a dict.
"""
from __future__ import annotations

import fnmatch
import hashlib
import math
import re

from gateway.config import Client, ClientBudget, Config
from gateway.state.store import ANONYMOUS, StoredClient

ADMIN = "admin"
NO_BUDGET = (math.inf, math.inf, math.inf)


def key_hash(key: str) -> str:
    return hashlib.sha256(b"opencode-gateway client key\0" + key.encode()).hexdigest()


def budget_of(budget: ClientBudget | dict[str, float]) -> tuple[float, float, float]:
    """Dollars per window (rolling, weekly, monthly); inf where there is no budget."""
    if isinstance(budget, dict):
        return tuple(budget.get(window) or math.inf for window in ("rolling", "weekly", "monthly"))
    return tuple(value if value is not None else math.inf
                 for value in (budget.rolling, budget.weekly, budget.monthly))


class Principal:
    """Who a request comes from, and what they may do."""
    __slots__ = ("name", "kind", "budget", "models", "_allowed", "rpm")

    def __init__(self, name: str, kind: str, budget=NO_BUDGET, models: list[str] | None = None,
                 rpm: int | None = None):
        self.name = name        # the client's name; "anonymous" or "admin" otherwise
        self.kind = kind        # "anonymous", "client" or "admin"
        self.budget = budget
        self.models = tuple(models) if models else None
        self._allowed = re.compile("|".join(fnmatch.translate(glob) for glob in models)) \
            if models else None
        self.rpm = rpm

    @property
    def is_client(self) -> bool:
        return self.kind == "client"

    def may_use(self, model_id: str) -> bool:
        """Whether the model id (bare, or `backend/id`) is one of the client's globs."""
        if self._allowed is None:
            return True
        return bool(self._allowed.fullmatch(model_id)
                    or self._allowed.fullmatch(model_id.rpartition("/")[2]))


OPEN = Principal(ANONYMOUS, "anonymous")
_ADMIN = Principal(ADMIN, "admin")


class Directory:
    """Key hash -> principal, from the config and the stored clients."""

    def __init__(self, config: Config, extra_keys: list[str] = ()):
        self.stored_clients: dict[str, StoredClient] = {}
        self.configure(config, extra_keys)

    def configure(self, config: Config, extra_keys: list[str] = ()) -> None:
        """The config's keys (again, after a reload); the stored clients stay."""
        self._config = config
        self._extra = list(extra_keys)
        self._rebuild()

    def update_stored(self, clients: dict[str, StoredClient]) -> bool:
        """The clients the state store holds now; whether anything changed."""
        if clients == self.stored_clients:
            return False
        self.stored_clients = dict(clients)
        self._rebuild()
        return True

    def _rebuild(self) -> None:
        server = self._config.server
        by_hash: dict[str, Principal] = {}
        for key in [*server.api_keys, *self._extra]:
            by_hash[key_hash(key)] = OPEN
        for key in server.admin_keys:
            by_hash[key_hash(key)] = _ADMIN
        clients: dict[str, Principal] = {}
        for client in server.clients:
            stored = self.stored_clients.get(client.name)
            if stored is not None and stored.revoked:
                continue
            clients[client.name] = principal = _from_config(client)
            by_hash[key_hash(client.key)] = principal
        for stored in self.stored_clients.values():
            if stored.revoked or not stored.key_hash or stored.name in clients:
                continue  # a config client's name: the config's entry wins
            clients[stored.name] = Principal(stored.name, "client", budget_of(stored.budget),
                                             stored.models, stored.rpm)
            by_hash.setdefault(stored.key_hash, clients[stored.name])
        self._by_hash = by_hash
        self.clients = clients
        # Usage and the dashboard need an admin key once anyone is named.
        self.admin_required = bool(server.admin_keys or clients)

    @property
    def locked(self) -> bool:
        """Whether a request needs a key at all."""
        return bool(self._by_hash)

    def who(self, presented: str | None) -> Principal | None:
        """The principal of a key (OPEN on an open gateway); None for a key nobody has."""
        if not self._by_hash:
            return OPEN
        if presented is None:
            return None
        return self._by_hash.get(key_hash(presented))


def _from_config(client: Client) -> Principal:
    return Principal(client.name, "client", budget_of(client.budget), client.models, client.rpm)
