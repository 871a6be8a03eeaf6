"""Which trail a database is: pinned outside the database, beside the witness logs.

The trail id lives in the database (`trail_info.trail_id`), so a superuser can change it: edit a
sealed row, recompute the chain, give the database a new trail id and delete its checkpoint records,
and the old witness log no longer speaks for it (a new, empty log is looked for instead). The
database's *physical* identity is another matter: the server's `system_identifier` (from pg_control,
fixed when the cluster was made) and the database's oid cannot be changed by SQL. So the signer
keeps an index, `trail-bindings.json` next to the witness logs, binding each database it signed for
to its trail id, written on its first signing. A database whose identity is bound to another trail
id, or whose trail is bound to another database (a `CREATE DATABASE … TEMPLATE` copy, a restore
elsewhere), is not signed for, and verify says which. `jarvis audit rebind` is the way out when the
change was legitimate: it binds this database to its current trail and records the decision.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import exc, text

from jarvis.config import Settings
from jarvis.db.engine import Database
from jarvis.witness import WitnessError, WitnessLog
from jarvis.witness.files import ensure_private_directory, write_new_file

log = logging.getLogger("jarvis.audit")

INDEX_NAME = "trail-bindings.json"
INDEX_MODE = 0o644  # it names databases and trails, no secret; the directory around it is private
REBIND = "jarvis audit rebind"

IDENTITY_SQL = (
    "SELECT (SELECT s.system_identifier FROM pg_catalog.pg_control_system() s)::text, d.oid::bigint, d.datname "
    "FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()"
)


FALLBACK_IDENTITY_SQL = (
    "SELECT d.oid::bigint, d.datname FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()"
)


class TrailBindingError(WitnessError):
    """This database and its trail id do not match what the signer bound them to: not signed, not verified."""


@dataclass(frozen=True)
class DatabaseIdentity:
    """A database as PostgreSQL knows it: its server's system identifier and its oid (its name, for people)."""

    server: str
    oid: int
    name: str

    @property
    def key(self) -> str:
        return f"{self.server}/{self.oid}"

    def __str__(self) -> str:
        return f"database {self.name} (oid {self.oid}) on server {self.server}"


@dataclass(frozen=True)
class Binding:
    """One entry of the index: this database is this trail, since then, signed into that log."""

    key: str
    trail: str
    database: str
    bound_at: str
    log: str
    signed: bool
    """False after `jarvis audit rebind` until the next signing: a new log may then be started."""

    @property
    def where(self) -> str:
        server, _, oid = self.key.partition("/")
        return f"database {self.database} (oid {oid}) on server {server}"


def database_identity(database: Database) -> DatabaseIdentity:
    """The server's system identifier, the database's oid and name (any login may read them).

    A server that withholds pg_control_system() from the login (some managed services do) is named
    "unknown": the oid still tells databases of one server apart, and signing goes on.
    """
    try:
        with database.connect() as conn:
            server, oid, name = conn.execute(text(IDENTITY_SQL)).one()
    except exc.ProgrammingError:  # permission denied for function pg_control_system
        with database.connect() as conn:
            oid, name = conn.execute(text(FALLBACK_IDENTITY_SQL)).one()
        server = "unknown"
    return DatabaseIdentity(str(server), int(oid), str(name))


def index_path(settings: Settings) -> Path:
    """`trail-bindings.json` in the directory of the witness logs (JARVIS_WITNESS_LOG's, or `<data dir>/witness`)."""
    directory = settings.witness_log.parent if settings.witness_log is not None else settings.data_dir / "witness"
    return directory / INDEX_NAME


class TrailBindings:
    """The index file: read whole, changed under an flock, replaced atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def of(cls, settings: Settings) -> TrailBindings:
        return cls(index_path(settings))

    def _read(self) -> dict[str, Any]:
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {"bindings": {}, "history": []}
        except OSError as error:
            raise WitnessError(f"cannot read {self.path}: {error.strerror}; check its mode") from None
        try:
            data = json.loads(raw)
            if not isinstance(data, dict) or not isinstance(data.get("bindings"), dict):
                raise ValueError("no bindings object")
        except (ValueError, RecursionError) as error:
            raise WitnessError(
                f"{self.path} is not a trail-binding index ({error}); restore it from a backup, or move it aside "
                "(the next signing binds each database again, without the protection the old bindings gave)"
            ) from None
        data.setdefault("history", [])
        return data

    def bindings(self) -> list[Binding]:
        found: list[Binding] = []
        for key, entry in self._read()["bindings"].items():
            try:
                found.append(
                    Binding(
                        str(key),
                        str(entry["trail"]),
                        str(entry.get("database", "?")),
                        str(entry.get("bound_at", "?")),
                        str(entry.get("log", "")),
                        bool(entry.get("signed", True)),
                    )
                )
            except (KeyError, TypeError):
                raise WitnessError(
                    f"{self.path}: the entry for {key} has no trail; restore the file from a backup or remove the entry"
                ) from None
        return found

    def of_database(self, identity: DatabaseIdentity) -> Binding | None:
        return next((b for b in self.bindings() if b.key == identity.key), None)

    def of_trail_elsewhere(self, trail: str, identity: DatabaseIdentity) -> Binding | None:
        """The binding of `trail` to another database than `identity`, if any."""
        return next((b for b in self.bindings() if b.trail == trail and b.key != identity.key), None)

    @contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        """The index to change, under an exclusive flock on `<index>.lock`; written back when the block ends."""
        lock = self.path.with_name(self.path.name + ".lock")
        try:
            ensure_private_directory(self.path.parent)
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as error:
            raise WitnessError(f"cannot open {lock}: {error.strerror}; make {self.path.parent} writable") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            data = self._read()
            yield data
            body = json.dumps(data, indent=1, sort_keys=True) + "\n"
            write_new_file(self.path, body.encode("utf-8"), INDEX_MODE, overwrite=True)
        finally:
            os.close(fd)

    def bind(self, identity: DatabaseIdentity, trail: str, log_path: Path, *, signed: bool, why: str) -> None:
        """Bind `identity` to `trail` (dropping any other database's binding of it), noting why in the history."""
        now = datetime.now(UTC).isoformat(timespec="seconds")
        with self._locked() as data:
            bindings: dict[str, Any] = data["bindings"]
            before = bindings.get(identity.key)
            for key in [k for k, v in bindings.items() if isinstance(v, dict) and v.get("trail") == trail]:
                if key != identity.key:
                    data["history"].append({"at": now, "event": "unbound", "database": key, "trail": trail, "why": why})
                    del bindings[key]
            bindings[identity.key] = {
                "trail": trail,
                "database": identity.name,
                "bound_at": before["bound_at"] if before and before.get("trail") == trail else now,
                "log": str(log_path),
                "signed": signed,
            }
            if not before or before.get("trail") != trail or why != "signed":
                data["history"].append(
                    {"at": now, "event": "bound", "database": identity.key, "name": identity.name, "trail": trail}
                    | ({"previous_trail": before["trail"]} if before else {})
                    | {"why": why}
                )

    def forget(self, identity: DatabaseIdentity, why: str) -> None:
        """Drop this database's binding (its trail was destroyed on purpose: `jarvis db downgrade`)."""
        if not self.path.exists():
            return
        now = datetime.now(UTC).isoformat(timespec="seconds")
        with self._locked() as data:
            before = data["bindings"].pop(identity.key, None)
            if before is not None:
                data["history"].append(
                    {"at": now, "event": "unbound", "database": identity.key, "trail": before.get("trail"), "why": why}
                )


def checkpoints_in(path: Path, trail: str) -> int:
    """How many checkpoints of `trail` the log at `path` holds (0 when it is missing or unreadable)."""
    try:
        return sum(1 for c in WitnessLog(path).entries() if c.trail == trail)
    except WitnessError:
        return 0


def changed_trail_message(binding: Binding, trail: str, index: Path) -> str:
    """Why a database whose trail id is not the one it was bound to is not to be trusted, and the way out."""
    held = checkpoints_in(Path(binding.log), binding.trail) if binding.log else 0
    return (
        f"trail_info.trail_id changed from {binding.trail} to {trail}: the log of {binding.trail} ({binding.log}) "
        f"holds {held} checkpoint(s) of this database, bound to it since {binding.bound_at} ({index}). Only a "
        "superuser can change the trail id; with it the old checkpoints stop vouching for the chain. If the change "
        f"was deliberate, run `{REBIND}` to bind this database to its new trail"
    )


def copied_trail_message(binding: Binding, identity: DatabaseIdentity, trail: str, index: Path) -> str:
    """What to do with a database whose trail is bound to another one (a copy, or a restore elsewhere)."""
    return (
        f"this database ({identity}) is a copy of trail {trail}, bound to {binding.where} since {binding.bound_at} "
        f"({index}); it is not signed into that trail's log. Give it its own trail (as a superuser: "
        "`SET session_replication_role = replica; UPDATE public.trail_info SET trail_id = gen_random_uuid();`), "
        f"or, if this database is the trail's new home (restored or moved) and the other is gone, run `{REBIND}`"
    )


def binding_problem(settings: Settings, identity: DatabaseIdentity, trail: str) -> tuple[Binding | None, str | None]:
    """For verify: this database's binding, and why its trail id is not the bound one (None: it is, or unbound).

    A database whose trail is bound to another database is a copy (or a restore elsewhere): its chain
    cannot be judged against that trail's log, which goes on with the other database's seals, so that is
    raised as a setting to fix (exit 2), never reported as tampering.
    """
    bindings = TrailBindings.of(settings)
    mine = bindings.of_database(identity)
    if mine is not None and mine.trail != trail:
        return mine, changed_trail_message(mine, trail, bindings.path)
    if mine is None:
        elsewhere = bindings.of_trail_elsewhere(trail, identity)
        if elsewhere is not None:
            raise TrailBindingError(copied_trail_message(elsewhere, identity, trail, bindings.path))
    return mine, None
