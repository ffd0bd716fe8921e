"""Where the model catalogue's facts are kept: the snapshot shipped in the package, and the newer
file `opencode-gateway models refresh` stores in the state directory.

At start the gateway reads the snapshot (`catalogue_snapshot.json`, models.dev's
`providers/opencode-go` plus the ids UPSTREAM.md names that models.dev lacked, each marked with
its source) and, over it, the refreshed file if there is one: the newer file wins id by id, and
ids only the snapshot knows keep the snapshot's facts. A refreshed file that no longer reads (a
hand edit, a full disk) is logged and skipped: the gateway starts on the snapshot.
"""
from __future__ import annotations

import datetime
import logging
import os
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import msgspec

from gateway.config import Config
from gateway.routing.models_dev import (PROVIDER_ID, CatalogueFileError, ModelFacts, Provider,
                                        SnapshotNote, facts, parse)
from gateway.state.store import default_sqlite_path

_log = logging.getLogger("gateway")

SNAPSHOT_NAME = "catalogue_snapshot.json"
STORED_NAME = "models.dev-opencode-go.json"
# models.dev's api.json is a few MB; a file many times that is not it.
MAX_FILE_BYTES = 64 * 1024 * 1024


class CatalogueFacts(NamedTuple):
    """The merged facts by model id, and what they were read from (for `models` and doctor)."""
    models: dict[str, ModelFacts]
    snapshot_day: str
    refreshed: str | None          # ISO time of the stored refresh, None: snapshot only
    refreshed_from: str | None
    stored_path: Path


def state_directory(config: Config | None = None, env: dict[str, str] | None = None) -> Path:
    """The directory of the gateway's state: beside `state.path` when set, else the default
    one of the SQLite file ($STATE_DIRECTORY, $XDG_STATE_HOME/opencode-gateway, ~/.local/state)."""
    if config is not None and config.state.path:
        return Path(config.state.path).expanduser().parent
    return default_sqlite_path(env).parent


def stored_path(config: Config | None = None, env: dict[str, str] | None = None) -> Path:
    return state_directory(config, env) / STORED_NAME


def _snapshot() -> Provider:
    data = resources.files("gateway.routing").joinpath(SNAPSHOT_NAME).read_bytes()
    return parse(data, SNAPSHOT_NAME)


def _label(note: SnapshotNote | None, fallback: str) -> str:
    if note is not None and note.refreshed:
        return f"models.dev refresh {note.refreshed[:10]}"
    return fallback


def load(config: Config | None = None, env: dict[str, str] | None = None) -> CatalogueFacts:
    snapshot = _snapshot()
    day = (snapshot.x_gateway.snapshot if snapshot.x_gateway else None) or "undated"
    merged = facts(snapshot, f"snapshot {day}")
    path = stored_path(config, env)
    refreshed = refreshed_from = None
    if path.is_file():
        try:
            stored = read_file(path)
        except CatalogueFileError as exc:
            _log.warning("ignoring the refreshed model catalogue: %s; using the snapshot of %s "
                         "(run `opencode-gateway models refresh` again)", exc, day)
        else:
            note = stored.x_gateway
            refreshed = note.refreshed if note else None
            refreshed_from = note.refreshed_from if note else None
            merged.update(facts(stored, _label(note, str(path))))
    return CatalogueFacts(dict(sorted(merged.items())), day, refreshed, refreshed_from, path)


def read_file(path: Path) -> Provider:
    return parse(read_raw(path), str(path))


def read_raw(path: Path) -> bytes:
    """A catalogue file's bytes, bounded; a named error when it cannot be read."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise CatalogueFileError(f"{path}: cannot be read: {exc.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        raise CatalogueFileError(f"{path}: larger than {MAX_FILE_BYTES} bytes; not an api.json")
    return data


def store(provider: Provider, origin: str, path: Path) -> Path:
    """Write `provider` (already checked) as `{"opencode-go": …}` to `path`, atomically: a
    reader sees the old file or the new one, never half of it."""
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    note = provider.x_gateway or SnapshotNote()
    provider = msgspec.structs.replace(
        provider, x_gateway=msgspec.structs.replace(note, refreshed=now, refreshed_from=origin))
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(msgspec.json.encode({PROVIDER_ID: provider}))
    os.replace(partial, path)
    return path
