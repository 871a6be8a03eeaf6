"""What a database superuser can do to the audit trail behind Jarvis' back.

Every function connects as the owner (a superuser in tests) and sets
`session_replication_role = replica`, which silences the append-only triggers
exactly as an attacker with superuser rights would.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

from jarvis.db import Database
from jarvis.db.audit import PlanningLog, ToolCallLog, seal, verify

T = TypeVar("T")


@contextmanager
def superuser_without_triggers(url: str) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        conn.execute("SET session_replication_role = replica")
        yield conn


def rows(url: str, table: str) -> list[dict[str, Any]]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(f"SELECT * FROM {table} ORDER BY created_at, id").fetchall()


def edit(url: str, table: str, row_id: uuid.UUID, column: str, sql_value: str) -> None:
    with superuser_without_triggers(url) as conn:
        changed = conn.execute(f"UPDATE {table} SET {column} = {sql_value} WHERE id = %s", (row_id,)).rowcount
    assert changed == 1


def delete(url: str, table: str, row_id: uuid.UUID) -> None:
    with superuser_without_triggers(url) as conn:
        assert conn.execute(f"DELETE FROM {table} WHERE id = %s", (row_id,)).rowcount == 1


def forge_tool_call(url: str, *, created_at_sql: str = "now()") -> uuid.UUID:
    """Insert a plausible start row that never went through the triggers (so it is never queued or sealed)."""
    forged = uuid.uuid4()
    with superuser_without_triggers(url) as conn:
        conn.execute(
            "INSERT INTO tool_calls (id, tool_name, status, input, created_at) "
            f"VALUES (%s, 'transfer', 'started', '{{\"to\": \"attacker\"}}', {created_at_sql})",
            (forged,),
        )
    return forged


def swap_contents(url: str, table: str, first: uuid.UUID, second: uuid.UUID, column: str) -> None:
    with superuser_without_triggers(url) as conn:
        conn.execute(
            f"UPDATE {table} t SET {column} = o.{column} FROM {table} o " "WHERE (t.id, o.id) IN ((%s, %s), (%s, %s))",
            (first, second, second, first),
        )


def delete_chain_links(url: str, where_sql: str) -> int:
    with superuser_without_triggers(url) as conn:
        return conn.execute(f"DELETE FROM audit_chain WHERE {where_sql}").rowcount


# --- Attacks of the trust tests (tests/trust): the application role, and a superuser who covers their tracks.


@contextmanager
def as_app_role(url: str, *, autocommit: bool = True) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
    """A raw session of the database's own application role (`SET ROLE`): what a compromised agent holds."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT app_role FROM public.trail_info").fetchone()
        assert row is not None
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(str(row[0]))))
        conn.autocommit = autocommit
        yield conn


def queue_by_hand(url: str, table: str, row_id: uuid.UUID) -> None:
    """Put a row in the sealer's queue as only a superuser can (the app role may not write audit_pending)."""
    with superuser_without_triggers(url) as conn:
        conn.execute("INSERT INTO public.audit_pending (table_name, row_id) VALUES (%s, %s)", (table, row_id))


def recompute_chain(url: str) -> int:
    """Throw the chain away and let the database's own sealer link every row again, edited ones included.

    The result is a consistent chain (plain `verify` accepts it); only a head published or signed
    earlier can contradict it. Returns the number of links.
    """
    with superuser_without_triggers(url) as conn:
        conn.execute("DELETE FROM public.audit_chain")
        conn.execute("DELETE FROM public.audit_pending")
        conn.execute("UPDATE public.audit_seal_head SET seq = 0, chain_hash = decode(repeat('00', 32), 'hex')")
        conn.execute(
            "INSERT INTO public.audit_pending (table_name, row_id, queued_at) "
            "SELECT 'planning_cycles', id, created_at FROM ONLY public.planning_cycles UNION ALL "
            "SELECT 'tool_calls', id, created_at FROM ONLY public.tool_calls UNION ALL "
            "SELECT 'decision_log', id, created_at FROM ONLY public.decision_log UNION ALL "
            "SELECT 'schema_changes', public.jarvis_serial_uuid(id), created_at FROM ONLY public.schema_changes"
        )
        row = conn.execute("SELECT linked FROM public.jarvis_seal(1000000)").fetchone()
    assert row is not None
    return int(row["linked"])


def truncate_tail(url: str, links: int) -> None:
    """Delete the newest `links` links and their rows, and move the seal head back: a shorter, consistent trail."""
    with superuser_without_triggers(url) as conn:
        tail = conn.execute(
            "SELECT table_name, row_id FROM public.audit_chain ORDER BY seq DESC LIMIT %s", (links,)
        ).fetchall()
        for link in tail:
            if link["table_name"] == "schema_changes":
                conn.execute(
                    "DELETE FROM public.schema_changes WHERE public.jarvis_serial_uuid(id) = %s", (link["row_id"],)
                )
            else:
                conn.execute(
                    sql.SQL("DELETE FROM public.{} WHERE id = %s").format(sql.Identifier(link["table_name"])),
                    (link["row_id"],),
                )
            conn.execute(
                "DELETE FROM public.audit_chain WHERE table_name = %s AND row_id = %s",
                (link["table_name"], link["row_id"]),
            )
        conn.execute(
            "UPDATE public.audit_seal_head h SET seq = coalesce(t.seq, 0), "
            "chain_hash = coalesce(t.chain_hash, decode(repeat('00', 32), 'hex')) "
            "FROM (SELECT max(seq) AS seq, (SELECT chain_hash FROM public.audit_chain ORDER BY seq DESC LIMIT 1) "
            "AS chain_hash FROM public.audit_chain) t"
        )


def without_traceback(check: Callable[[], T]) -> T:
    """Run a verifier: a traceback where a report naming the row or object was due is itself a finding."""
    try:
        return check()
    except Exception as error:
        pytest.fail(f"raised {type(error).__name__}: {error} instead of naming what is wrong", pytrace=False)


def within(seconds: float, work: Callable[[], T]) -> T:
    """Run `work` with a deadline (in a daemon thread, so a call that never returns cannot hang the run)."""
    done = threading.Event()
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(("value", work()))
        except BaseException as error:
            outcome.append(("error", error))
        finally:
            done.set()

    threading.Thread(target=run, daemon=True).start()
    if not done.wait(seconds):
        pytest.fail(f"did not return within {seconds:g} s", pytrace=False)
    kind, value = outcome[0]
    if kind == "error":
        raise value
    return value  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Trail:
    """A sealed trail to attack: one closed cycle with a decision and two tool calls (7 rows)."""

    url: str
    cycle: uuid.UUID
    decision: uuid.UUID
    starts: tuple[uuid.UUID, ...]
    completions: tuple[uuid.UUID, ...]
    head: str
    """`SEQ:HASH` of the head right after sealing."""


def build_trail(database: Database, url: str, agent: str = "victim") -> Trail:
    """Write the trail through Jarvis (the app role), seal it and check that it verifies."""
    planning = PlanningLog(database, agent=agent)
    tools = ToolCallLog(database)
    cycle = planning.open_cycle(["pay rent"])
    decision = planning.record_decision(cycle, "pay", {"amount": 3000.5, "to": "landlord"})
    starts, completions = [], []
    for i in range(2):
        start = tools.start("transfer", {"to": f"landlord-{i}", "usd": 1500.25}, cycle_id=cycle)
        starts.append(start.id)
        completions.append(tools.record_completion(start, "succeeded", output={"tx": f"0x{i:04x}"}))
    planning.close_cycle(cycle, "succeeded", {"paid": True})
    seal(database, wait=30)
    report = verify(database)
    assert report.ok, report.summary()
    return Trail(url, cycle, decision, tuple(starts), tuple(completions), f"{report.head_seq}:{report.head_hex}")


def rewind_seal_head(url: str) -> None:
    """Set audit_seal_head to the chain's last link, as a careful superuser who cut the tail would."""
    with superuser_without_triggers(url) as conn:
        conn.execute(
            "UPDATE public.audit_seal_head SET (seq, chain_hash) = (SELECT coalesce(max(seq), 0), coalesce("
            "(SELECT chain_hash FROM public.audit_chain ORDER BY seq DESC LIMIT 1), decode(repeat('00', 32), 'hex')) "
            "FROM public.audit_chain)"
        )
