"""Round 2: a superuser puts objects in `pg_catalog`, the schema every Jarvis search_path searches first.

The catalog check looks for foreign functions, operators and casts in `public` only, and for the audit
tables themselves in `public` only. But `pg_catalog` is first on both search paths (verify's
`pg_catalog, pg_temp` and the readers' `pg_catalog, public, pg_temp`), a superuser may create
functions there, and (with `allow_system_table_mods`, settable per session by a superuser since
PostgreSQL 12) tables too. Each test edits or forges a decision, hides it from one side, and checks
that verify does not say OK while `audit show` (the planning timeline) or `audit export` shows
something other than what was sealed.
"""

from __future__ import annotations

import uuid

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from jarvis.db import Database
from jarvis.db.audit import AuditQueries, PlanningLog, VerifyReport, verify
from jarvis.db.audit.export import export_rows
from jarvis_testkit import tamper
from jarvis_testkit.roles import database_roles
from jarvis_testkit.tamper import Trail, without_traceback

ATTACKER = {"amount": 9999999, "to": "attacker"}


def problems(report: VerifyReport) -> list[str]:
    return [str(problem) for problem in report.problems]


def shown_decision(database: Database, trail: Trail) -> tuple[str, object]:
    """(decision, reasoning) of the trail's decision as `jarvis audit show` prints it."""
    entries = [e for e in AuditQueries(database).timeline(trail.cycle) if e.kind == "decision"]
    assert len(entries) == 1, entries
    return str(entries[0].name), entries[0].detail


def test_to_jsonb_overload_for_the_row_type_in_pg_catalog_cannot_hide_an_edit(
    isolated_database: Database, trail: Trail
) -> None:
    """`pg_catalog.to_jsonb(public.decision_log)` is an exact match for verify's `pg_catalog.to_jsonb(x)`.

    It beats the built-in `to_jsonb(anyelement)`, lives outside `public` (so the catalog check never
    lists it), and hands verify the row as it was sealed, while `audit show` reads the columns.
    """
    with tamper.superuser_without_triggers(trail.url) as conn:
        conn.execute("CREATE SCHEMA keep")
        conn.execute(
            "CREATE TABLE keep.sealed AS SELECT d.id, pg_catalog.to_jsonb(d) AS doc FROM ONLY public.decision_log d"
        )
        conn.execute("GRANT USAGE ON SCHEMA keep TO PUBLIC")
        conn.execute("GRANT SELECT ON keep.sealed TO PUBLIC")
        conn.execute(
            "UPDATE public.decision_log SET decision = 'pay the attacker', reasoning = %s WHERE id = %s",
            (Jsonb(ATTACKER), trail.decision),
        )
        conn.execute(
            "CREATE FUNCTION pg_catalog.to_jsonb(public.decision_log) RETURNS jsonb LANGUAGE sql STABLE AS $$ "
            "SELECT coalesce((SELECT s.doc FROM keep.sealed s WHERE s.id OPERATOR(pg_catalog.=) $1.id), "
            "pg_catalog.row_to_json($1)::jsonb) $$"
        )
    assert shown_decision(isolated_database, trail)[1] is None  # a verified read: readers withhold the edit

    report = without_traceback(lambda: verify(isolated_database))

    assert not report.ok, f"audit show prints the attacker's decision, yet verify says {report.summary()}"
    assert any(p.row_id == trail.decision for p in report.problems) or any(
        "to_jsonb" in text for text in problems(report)
    ), problems(report)


def test_builtin_to_jsonb_rewritten_in_pg_proc_cannot_hide_an_edit(isolated_database: Database, trail: Trail) -> None:
    """No new object at all: the superuser turns the built-in `to_jsonb(anyelement)` into an SQL function.

    Defended (by PostgreSQL, not Jarvis): a plain UPDATE of pg_proc is accepted, but built-in
    functions are dispatched by OID through fmgr's own table, so the rewrite never runs.
    """
    with tamper.superuser_without_triggers(trail.url) as conn:
        conn.execute("CREATE SCHEMA keep")
        conn.execute(
            "CREATE TABLE keep.sealed AS SELECT d.id, pg_catalog.to_jsonb(d) AS doc FROM ONLY public.decision_log d"
        )
        conn.execute("GRANT USAGE ON SCHEMA keep TO PUBLIC")
        conn.execute("GRANT SELECT ON keep.sealed TO PUBLIC")
        conn.execute(
            "UPDATE public.decision_log SET decision = 'pay the attacker', reasoning = %s WHERE id = %s",
            (Jsonb(ATTACKER), trail.decision),
        )
        # The honest rendering stays reachable under another name; to_jsonb(anyelement) becomes a lookup.
        conn.execute(
            "CREATE FUNCTION keep.honest(anyelement) RETURNS jsonb LANGUAGE internal STABLE STRICT AS 'to_jsonb'"
        )
        conn.execute(
            "CREATE FUNCTION keep.lying(anyelement) RETURNS jsonb LANGUAGE sql STABLE AS $$ "
            "SELECT coalesce((SELECT s.doc FROM keep.sealed s WHERE s.id::text OPERATOR(pg_catalog.=) "
            "(keep.honest($1) OPERATOR(pg_catalog.->>) 'id')), keep.honest($1)) $$"
        )
        conn.execute(
            "UPDATE pg_catalog.pg_proc SET prolang = l.prolang, prosrc = l.prosrc FROM pg_catalog.pg_proc l "
            "WHERE l.oid = 'keep.lying(anyelement)'::regprocedure "
            "AND pg_proc.oid = 'pg_catalog.to_jsonb(anyelement)'::regprocedure"
        )
    try:
        assert shown_decision(isolated_database, trail)[1] is None  # a verified read: readers withhold the edit

        report = without_traceback(lambda: verify(isolated_database))

        assert not report.ok, f"audit show prints the attacker's decision, yet verify says {report.summary()}"
        assert any(p.row_id == trail.decision for p in report.problems) or any(
            "to_jsonb" in text for text in problems(report)
        ), problems(report)
    finally:  # pg_proc is per database, but leave nothing odd behind for the template's other clones
        with psycopg.connect(trail.url, autocommit=True) as conn:
            conn.execute(
                "UPDATE pg_catalog.pg_proc SET prolang = 12, prosrc = 'to_jsonb' "
                "WHERE oid = 'pg_catalog.to_jsonb(anyelement)'::regprocedure"
            )


def test_table_of_the_same_name_in_pg_catalog_cannot_show_readers_another_trail(
    isolated_database: Database, trail: Trail
) -> None:
    """Readers name the audit tables without a schema; `pg_catalog` comes first on their search_path."""
    app, auditor = database_roles(trail.url)
    with psycopg.connect(trail.url, autocommit=True) as conn:
        conn.execute("SET allow_system_table_mods = on")
        conn.execute("CREATE TABLE pg_catalog.decision_log AS SELECT * FROM ONLY public.decision_log")
        conn.execute(
            "UPDATE pg_catalog.decision_log SET decision = 'pay the attacker', reasoning = %s", (Jsonb(ATTACKER),)
        )
        for role in (app, auditor):
            conn.execute(sql.SQL("GRANT SELECT ON pg_catalog.decision_log TO {}").format(sql.Identifier(role)))
    # Readers name `public.` explicitly: they still show what was sealed...
    assert shown_decision(isolated_database, trail)[0] != "pay the attacker"
    exported = [row for row in export_rows(isolated_database) if row["table"] == "decision_log"]
    assert exported[0].get("decision") != "pay the attacker"  # `audit export` too (unverifiable: withheld)

    report = without_traceback(lambda: verify(isolated_database))

    # ...and verify names the table slipped into pg_catalog, where every unqualified name is looked up first.
    assert not report.ok, f"a decision_log in pg_catalog, yet verify says {report.summary()}"
    assert any("decision_log" in text and "pg_catalog" in text for text in problems(report)), problems(report)


def test_forged_row_reused_id_in_pg_catalog_table_has_no_effect_on_writers(
    isolated_database: Database, trail: Trail
) -> None:
    """The writers name `public.` explicitly: appends keep going to the real table (documents the split)."""
    with psycopg.connect(trail.url, autocommit=True) as conn:
        conn.execute("SET allow_system_table_mods = on")
        conn.execute("CREATE TABLE pg_catalog.decision_log AS SELECT * FROM ONLY public.decision_log WHERE false")
    decision = PlanningLog(isolated_database, agent="writer").record_decision(
        PlanningLog(isolated_database, agent="writer").open_cycle(["g"]), "d", {"x": 1}
    )
    with psycopg.connect(trail.url) as conn:
        found = conn.execute("SELECT count(*) FROM ONLY public.decision_log WHERE id = %s", (decision,)).fetchone()
    assert found == (1,)
    assert isinstance(decision, uuid.UUID)
