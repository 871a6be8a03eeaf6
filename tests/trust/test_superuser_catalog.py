"""A superuser makes readers see something other than what is sealed; verify must name the object.

Each test performs the attack for real against PostgreSQL as a superuser,
then runs `verify` as Jarvis does (its own role, READ ONLY, FROM ONLY, row
security off) and looks for a problem that names the table and the object.
"""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg.types.json import Jsonb

from jarvis.db import Database
from jarvis.db.audit import AuditQueries, VerifyReport, seal, verify
from jarvis.db.audit.export import export_rows, tool_call_spans
from jarvis_testkit import tamper
from jarvis_testkit.tamper import Trail, without_traceback


def problems(report: VerifyReport) -> list[str]:
    return [str(problem) for problem in report.problems]


def assert_named(report: VerifyReport, *words: str) -> None:
    """Some problem of the report names every one of `words`."""
    assert not report.ok, report.summary()
    assert any(all(word in text for word in words) for text in problems(report)), problems(report)


def superuser(url: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(url, autocommit=True)


# --- (a) (c) inheritance children


def test_row_rewritten_in_place_with_the_original_kept_in_an_inheritance_child_is_reported(
    isolated_database: Database, trail: Trail
) -> None:
    with superuser(trail.url) as conn:
        conn.execute("CREATE TABLE public.decision_log_archive () INHERITS (public.decision_log)")
        conn.execute("INSERT INTO public.decision_log_archive SELECT * FROM ONLY public.decision_log")
    tamper.edit(trail.url, "ONLY public.decision_log", trail.decision, "reasoning", "'{\"amount\": 9999999}'")

    report = without_traceback(lambda: verify(isolated_database))

    assert_named(report, "decision_log", "inheritance children", "decision_log_archive")
    assert any(p.row_id == trail.decision and "content was changed" in p.reason for p in report.problems)
    # Readers read FROM ONLY too: the child's copy is neither shown nor counted twice.
    exported = [row for row in export_rows(isolated_database) if row["table"] == "decision_log"]
    assert [row["id"] for row in exported] == [str(trail.decision)]
    timeline = AuditQueries(isolated_database).timeline(trail.cycle)
    assert sum(1 for entry in timeline if entry.kind == "decision") == 1


def test_forged_row_reusing_a_sealed_id_in_an_inheritance_child_is_reported(
    isolated_database: Database, trail: Trail
) -> None:
    with superuser(trail.url) as conn:
        conn.execute("CREATE TABLE public.tool_calls_2026 () INHERITS (public.tool_calls)")
        conn.execute(
            "INSERT INTO public.tool_calls_2026 SELECT id, parent_id, cycle_id, tool_name, 'failed', input, "
            "%s, 'insufficient funds', duration_ms, created_at FROM ONLY public.tool_calls WHERE id = %s",
            (Jsonb({"tx": None}), trail.completions[0]),
        )

    report = without_traceback(lambda: verify(isolated_database))

    assert_named(report, "tool_calls", "inheritance children", "tool_calls_2026")
    spans = list(tool_call_spans(isolated_database))
    assert len(spans) == len(trail.starts)  # the forged copy is not a second outcome of the call
    assert all("insufficient funds" not in str(span) for span in spans)


# --- (b) row-level security


def test_row_level_security_policy_showing_other_rows_to_read_only_transactions_is_reported(
    isolated_database: Database, trail: Trail
) -> None:
    forged = uuid.uuid4()
    with tamper.superuser_without_triggers(trail.url) as conn:
        conn.execute(
            "INSERT INTO public.decision_log (id, cycle_id, reasoning, decision, created_at) "
            "VALUES (%s, %s, %s, 'pay the attacker', now())",
            (forged, trail.cycle, Jsonb({"amount": 50000})),
        )
        conn.execute("ALTER TABLE public.decision_log ENABLE ROW LEVEL SECURITY")
        # Read-write sessions (the agent) see everything; READ ONLY ones (verify, auditors) never see the forgery.
        conn.execute(
            "CREATE POLICY hide_from_auditors ON public.decision_log USING "
            f"(pg_catalog.current_setting('transaction_read_only') = 'off' OR id <> '{forged}')"
        )

    report = without_traceback(lambda: verify(isolated_database))

    assert_named(report, "decision_log", "hide_from_auditors")


# --- (d) rewrite rules


def test_rewrite_rule_on_an_audit_table_is_reported(isolated_database: Database, trail: Trail) -> None:
    with superuser(trail.url) as conn:
        conn.execute(
            "CREATE RULE drop_transfers AS ON INSERT TO public.tool_calls "
            "WHERE NEW.tool_name = 'transfer' DO INSTEAD NOTHING"
        )

    report = without_traceback(lambda: verify(isolated_database))

    assert_named(report, "tool_calls", "rewrite rule", "drop_transfers")


# --- (e) triggers


@pytest.mark.parametrize(
    "alter",
    [
        "DISABLE TRIGGER decision_log_append_only",
        "ENABLE REPLICA TRIGGER decision_log_append_only",
        "DISABLE TRIGGER ALL",
    ],
)
def test_disabled_trigger_is_reported(isolated_database: Database, trail: Trail, alter: str) -> None:
    with superuser(trail.url) as conn:
        conn.execute(f"ALTER TABLE public.decision_log {alter}")

    report = without_traceback(lambda: verify(isolated_database))

    assert_named(report, "decision_log", "decision_log_append_only", "disabled")


def test_extra_trigger_rewriting_what_the_agent_writes_is_reported(isolated_database: Database, trail: Trail) -> None:
    with superuser(trail.url) as conn:
        conn.execute(
            "CREATE FUNCTION public.redirect_transfers() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            'NEW.input := NEW.input || \'{"to": "attacker"}\'; RETURN NEW; END $$'
        )
        conn.execute(
            "CREATE TRIGGER tool_calls_redirect BEFORE INSERT ON public.tool_calls "
            "FOR EACH ROW EXECUTE FUNCTION public.redirect_transfers()"
        )

    report = without_traceback(lambda: verify(isolated_database))

    assert_named(report, "tool_calls", "extra trigger", "tool_calls_redirect")


@pytest.mark.parametrize(
    "neutered",
    [
        # same name, same function; never fires
        "CREATE TRIGGER decision_log_before_insert BEFORE INSERT ON public.decision_log FOR EACH ROW "
        "WHEN (false) EXECUTE FUNCTION public.jarvis_decision_log_before_insert()",
        # same name, same function; fires on an event that never happens
        "CREATE TRIGGER decision_log_before_insert BEFORE TRUNCATE ON public.decision_log FOR EACH STATEMENT "
        "EXECUTE FUNCTION public.jarvis_decision_log_before_insert()",
        # same name, a function of the same name in another schema that allows everything
        "CREATE TRIGGER decision_log_before_insert BEFORE INSERT ON public.decision_log FOR EACH ROW "
        "EXECUTE FUNCTION shadow.jarvis_decision_log_before_insert()",
    ],
    ids=["when_false", "other_event", "same_name_other_schema"],
)
def test_trigger_neutered_under_its_own_name_is_reported(
    isolated_database: Database, trail: Trail, neutered: str
) -> None:
    with superuser(trail.url) as conn:
        conn.execute("CREATE SCHEMA shadow")
        conn.execute(
            "CREATE FUNCTION shadow.jarvis_decision_log_before_insert() RETURNS trigger LANGUAGE plpgsql "
            "AS $$ BEGIN RETURN NEW; END $$"
        )
        conn.execute("DROP TRIGGER decision_log_before_insert ON public.decision_log")
        conn.execute(neutered)
    # The effect: the agent's role can now slip a decision into a cycle that was closed (and approved) long ago.
    backfilled = uuid.uuid4()
    with tamper.as_app_role(trail.url) as app:
        app.execute(
            "INSERT INTO public.decision_log (id, cycle_id, reasoning, decision) VALUES (%s, %s, %s, 'backfilled')",
            (backfilled, trail.cycle, Jsonb({"amount": 1})),
        )
    seal(isolated_database)

    report = without_traceback(lambda: verify(isolated_database))

    assert not report.ok, report.summary()
    assert any("decision_log_before_insert" in text for text in problems(report)) or backfilled in {
        p.row_id for p in report.problems
    }, problems(report)


def test_dropped_one_completion_index_is_reported(isolated_database: Database, trail: Trail) -> None:
    """Without the unique index a second, contradicting outcome of a sealed tool call is accepted."""
    with superuser(trail.url) as conn:
        conn.execute("DROP INDEX public.ix_tool_calls_one_completion")
    second = uuid.uuid4()
    with tamper.as_app_role(trail.url) as app:
        app.execute(
            "INSERT INTO public.tool_calls (id, parent_id, tool_name, status, output) "
            "VALUES (%s, %s, 'transfer', 'failed', %s)",
            (second, trail.starts[0], Jsonb({"refunded": True})),
        )
    seal(isolated_database)

    report = without_traceback(lambda: verify(isolated_database))

    assert not report.ok, report.summary()
    assert any("ix_tool_calls_one_completion" in text for text in problems(report)) or second in {
        p.row_id for p in report.problems
    }, problems(report)


# --- (f) functions


def test_function_replaced_with_another_body_is_reported(isolated_database: Database, trail: Trail) -> None:
    with superuser(trail.url) as conn:
        # Same name, same search_path, same security: only the body differs (UPDATE and DELETE now go through).
        conn.execute(
            "CREATE OR REPLACE FUNCTION public.jarvis_reject_mutation() RETURNS trigger LANGUAGE plpgsql "
            "SET search_path = pg_catalog, pg_temp AS $$ BEGIN "
            "IF TG_OP = 'DELETE' THEN RETURN OLD; END IF; RETURN NEW; END $$"
        )
    tamper.edit(trail.url, "public.tool_calls", trail.completions[1], "status", "'failed'")

    report = without_traceback(lambda: verify(isolated_database))

    assert_named(report, "function jarvis_reject_mutation", "body")


def test_setting_added_to_the_sealer_is_reported(isolated_database: Database, trail: Trail) -> None:
    """Same body, same search_path: a TimeZone of its own would change the created_at the sealer hashes."""
    with superuser(trail.url) as conn:
        conn.execute("ALTER FUNCTION public.jarvis_seal(integer) SET TimeZone = 'America/New_York'")

    report = without_traceback(lambda: verify(isolated_database))

    assert_named(report, "function jarvis_seal", "settings", "America/New_York")


def test_search_path_of_an_append_function_widened_is_reported(isolated_database: Database, trail: Trail) -> None:
    with superuser(trail.url) as conn:
        conn.execute("ALTER FUNCTION public.jarvis_append_tool_calls SET search_path = public, pg_catalog, pg_temp")

    report = without_traceback(lambda: verify(isolated_database))

    assert_named(report, "function jarvis_append_tool_calls", "settings", "public")


# --- hooks the verifier's own session resolves: an operator in `public`, a cast from jsonb to text


def test_operator_in_public_cannot_blind_the_catalog_check(isolated_database: Database, trail: Trail) -> None:
    """verify's search_path has `public`; an `=(oid, integer)` there wins over pg_catalog's `=(oid, oid)`."""
    with superuser(trail.url) as conn:
        conn.execute(
            "CREATE RULE drop_transfers AS ON INSERT TO public.tool_calls "
            "WHERE NEW.tool_name = 'transfer' DO INSTEAD NOTHING"
        )
        for kind in ("smallint", "integer", "bigint"):
            conn.execute(
                f"CREATE FUNCTION public.blind(oid, {kind}) RETURNS boolean LANGUAGE sql STABLE AS $$ "
                "SELECT CASE WHEN pg_catalog.current_query() LIKE '%pg_rewrite%' THEN false "
                "ELSE $1 OPERATOR(pg_catalog.=) $2::oid END $$"
            )
            conn.execute(f"CREATE OPERATOR public.= (LEFTARG = oid, RIGHTARG = {kind}, FUNCTION = public.blind)")

    report = without_traceback(lambda: verify(isolated_database))

    assert_named(report, "tool_calls", "drop_transfers")


def test_cast_from_jsonb_to_text_cannot_show_verify_the_original_of_an_edited_row(
    isolated_database: Database, trail: Trail
) -> None:
    """verify renders rows with `to_jsonb(x)::text`; a superuser's CREATE CAST (casts have no schema) hooks it."""
    with tamper.superuser_without_triggers(trail.url) as conn:
        conn.execute(
            "CREATE TABLE public.originals AS SELECT id, pg_catalog.to_jsonb(d)::text AS original "
            "FROM ONLY public.decision_log d"
        )
        conn.execute("GRANT SELECT ON public.originals TO PUBLIC")
        conn.execute('UPDATE public.decision_log SET reasoning = \'{"amount": 9999999, "to": "attacker"}\'')
        conn.execute(
            "CREATE FUNCTION public.as_sealed(j jsonb) RETURNS text LANGUAGE sql STABLE AS $$ "
            "SELECT coalesce((SELECT o.original FROM public.originals o WHERE o.id::text = j->>'id'), "
            "pg_catalog.textin(pg_catalog.jsonb_out(j))) $$"
        )
        conn.execute("CREATE CAST (jsonb AS text) WITH FUNCTION public.as_sealed(jsonb)")
    shown = [row for row in export_rows(isolated_database) if row["table"] == "decision_log"]
    # A verified read withholds it (unverifiable: the catalog check, run first, names the cast).
    assert shown[0]["integrity"] in ("tampered", "unverifiable") and "reasoning" not in shown[0]

    report = without_traceback(lambda: verify(isolated_database))

    assert not report.ok, f"readers show the edited decision, yet verify says {report.summary()}"
    assert any(p.row_id == trail.decision for p in report.problems) or any(
        "cast" in text for text in problems(report)
    ), problems(report)
