"""What verify's SQL relies on: PostgreSQL's own functions and operators, the models' columns, the chained tables.

A superuser makes PostgreSQL's own functions or operators lie to verify, which hashes and compares in SQL.

`CREATE OR REPLACE FUNCTION pg_catalog.sha256(bytea)` keeps the built-in's OID (so no new object
appears in pg_catalog) and the planner inlines its SQL body; `UPDATE pg_operator SET oprcode`
makes `=` on bytea run another built-in. Each test edits a sealed row, makes the comparison lie
so that the edit compares equal (without the check, verify would say OK), and checks that verify
does not say OK and names the function or operator.
"""

from __future__ import annotations

import hashlib
from typing import Any

import psycopg

from jarvis.db import Database
from jarvis.db.audit import VerifyReport, verify
from jarvis_testkit import tamper
from jarvis_testkit.tamper import Trail, without_traceback


def problems(report: VerifyReport) -> list[str]:
    return [str(problem) for problem in report.problems]


def edited_content_and_sealed_hash(conn: psycopg.Connection[dict[str, Any]], trail: Trail) -> tuple[bytes, bytes]:
    """The edited decision's canonical bytes as verify renders them (in UTC), and the hash its link holds."""
    conn.execute("SET TimeZone = 'UTC'")
    row = conn.execute(
        "SELECT pg_catalog.convert_to(public.jarvis_canonical('decision_log', pg_catalog.to_jsonb(d)), 'UTF8') AS c, "
        "l.row_hash AS h FROM public.decision_log d JOIN public.audit_chain l ON l.row_id = d.id WHERE d.id = %s",
        (trail.decision,),
    ).fetchone()
    assert row is not None
    return bytes(row["c"]), bytes(row["h"])


def test_sha256_redefined_to_give_the_edited_row_its_sealed_hash_is_named(
    isolated_database: Database, trail: Trail
) -> None:
    """An inlinable SQL body that answers the sealed hash for the edited row and the real one otherwise."""
    with tamper.superuser_without_triggers(trail.url) as conn:
        conn.execute("UPDATE public.decision_log SET decision = 'pay the attacker' WHERE id = %s", (trail.decision,))
        content, sealed = edited_content_and_sealed_hash(conn, trail)
        edited = hashlib.sha256(content).digest()
        conn.execute("CREATE SCHEMA keep")
        conn.execute("GRANT USAGE ON SCHEMA keep TO PUBLIC")
        conn.execute(
            "CREATE FUNCTION keep.honest(bytea) RETURNS bytea LANGUAGE internal IMMUTABLE STRICT AS 'sha256_bytea'"
        )
        conn.execute(
            "CREATE FUNCTION keep.pick(bytea) RETURNS bytea LANGUAGE sql IMMUTABLE AS $$ "
            f"SELECT CASE WHEN $1 = '\\x{edited.hex()}'::bytea THEN '\\x{sealed.hex()}'::bytea ELSE $1 END $$"
        )
        # $1 once in the body, so the planner inlines it even around verify's long argument.
        conn.execute(
            "CREATE OR REPLACE FUNCTION pg_catalog.sha256(bytea) RETURNS bytea LANGUAGE sql IMMUTABLE AS $$ "
            "SELECT keep.pick(keep.honest($1)) $$"
        )
    try:
        report = without_traceback(lambda: verify(isolated_database))

        assert not report.ok, f"sha256 lies, yet verify says {report.summary()}"
        assert any("pg_catalog.sha256(bytea)" in text and "redefined" in text for text in problems(report)), problems(
            report
        )
    finally:  # pg_proc is per database, but leave the clone as PostgreSQL made it
        with psycopg.connect(trail.url, autocommit=True) as conn:
            conn.execute(
                "UPDATE pg_catalog.pg_proc SET prolang = 12, prosrc = 'sha256_bytea', prosqlbody = NULL, "
                "proisstrict = true WHERE oid = 'pg_catalog.sha256(bytea)'::regprocedure"
            )


def test_bytea_equality_repointed_to_another_builtin_is_named(isolated_database: Database, trail: Trail) -> None:
    """`=` on bytea made to run `byteage`: an edit whose new hash sorts below the sealed one compares as equal."""
    with tamper.superuser_without_triggers(trail.url) as conn:
        for attempt in range(1000):  # about one edit in two qualifies
            conn.execute(
                "UPDATE public.decision_log SET decision = %s WHERE id = %s",
                (f"pay the attacker {attempt}", trail.decision),
            )
            content, sealed = edited_content_and_sealed_hash(conn, trail)
            if hashlib.sha256(content).digest() < sealed:
                break
        conn.execute(
            "UPDATE pg_catalog.pg_operator SET oprcode = 'pg_catalog.byteage'::regproc "
            "WHERE oid = 'pg_catalog.=(bytea, bytea)'::regoperator"
        )
    try:
        report = without_traceback(lambda: verify(isolated_database))

        assert not report.ok, f"= lies, yet verify says {report.summary()}"
        assert any("operator = (bytea, bytea)" in text and "byteage" in text for text in problems(report)), problems(
            report
        )
    finally:
        with psycopg.connect(trail.url, autocommit=True) as conn:
            conn.execute(
                "UPDATE pg_catalog.pg_operator SET oprcode = 'pg_catalog.byteaeq'::regproc "
                "WHERE oid = 'pg_catalog.=(bytea, bytea)'::regoperator"
            )


def test_a_column_added_to_a_sealed_table_is_hashed_as_the_sealer_would(
    isolated_database: Database, trail: Trail
) -> None:
    """Rendered from the table's actual columns (the sealer's jarvis_canonical), not the models' list."""
    with tamper.superuser_without_triggers(trail.url) as conn:
        conn.execute("ALTER TABLE public.decision_log ADD COLUMN approved_by text")
        conn.execute("UPDATE public.decision_log SET approved_by = 'the attacker' WHERE id = %s", (trail.decision,))

    report = without_traceback(lambda: verify(isolated_database))

    assert not report.ok
    assert [p.row_id for p in report.problems if p.row_id is not None] == [trail.decision], problems(report)
    assert "row content was changed after it was sealed" in str(
        next(p for p in report.problems if p.row_id == trail.decision)
    )


def test_a_link_naming_a_table_that_is_not_chained_is_named(isolated_database: Database, trail: Trail) -> None:
    """The rows are checked table by table; a link to a table outside them must not go unread."""
    with tamper.superuser_without_triggers(trail.url) as conn:
        conn.execute("ALTER TABLE public.audit_chain DROP CONSTRAINT ck_audit_chain_table_name")
        conn.execute("UPDATE public.audit_chain SET table_name = 'secrets' WHERE row_id = %s", (trail.decision,))

    report = without_traceback(lambda: verify(isolated_database))

    assert not report.ok
    assert any(
        p.table == "secrets" and p.row_id == trail.decision and "deleted" in p.reason for p in report.problems
    ), problems(report)


def test_json_output_function_repointed_is_named(isolated_database: Database, trail: Trail) -> None:
    """`UPDATE pg_type SET typoutput`: verify prints every text value through json's output function.

    `textout` prints json's text unchanged, so nothing else is wrong; a function of the attacker's
    (native code, /tmp/attack/lie.c) prints an edited value as the original, which this check names.
    """
    with psycopg.connect(trail.url, autocommit=True) as conn:
        conn.execute(
            "UPDATE pg_catalog.pg_type SET typoutput = 'pg_catalog.textout'::regproc WHERE oid = 'json'::regtype"
        )
    try:
        report = without_traceback(lambda: verify(isolated_database))

        assert not report.ok, f"json's output function was re-pointed, yet verify says {report.summary()}"
        assert any("type json" in text and "output function is textout" in text for text in problems(report)), problems(
            report
        )
    finally:
        with psycopg.connect(trail.url, autocommit=True) as conn:
            conn.execute(
                "UPDATE pg_catalog.pg_type SET typoutput = 'pg_catalog.json_out'::regproc WHERE oid = 'json'::regtype"
            )


def test_a_c_function_created_by_a_superuser_is_named(isolated_database: Database, trail: Trail) -> None:
    """Native code needs no compiler: any symbol of an installed library can be declared as a function."""
    with psycopg.connect(trail.url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA native")
        conn.execute(
            "CREATE FUNCTION native.handler() RETURNS language_handler LANGUAGE C "
            "AS '$libdir/plpgsql', 'plpgsql_call_handler'"
        )
    try:
        report = without_traceback(lambda: verify(isolated_database))

        assert not report.ok, f"a C function was created, yet verify says {report.summary()}"
        assert any("function handler" in text and "native code" in text for text in problems(report)), problems(report)
    finally:
        with psycopg.connect(trail.url, autocommit=True) as conn:
            conn.execute("DROP SCHEMA native CASCADE")


def test_a_preload_library_set_for_the_database_is_named(isolated_database: Database, trail: Trail) -> None:
    """`ALTER DATABASE ... SET session_preload_libraries` loads a library into every new session."""
    with psycopg.connect(trail.url, autocommit=True) as conn:
        name = conn.execute("SELECT current_database()").fetchone()
        assert name is not None
        conn.execute(f"ALTER DATABASE \"{name[0]}\" SET session_preload_libraries = 'plpgsql'")
    try:
        report = without_traceback(lambda: verify(isolated_database))

        assert not report.ok, f"a preload library is set, yet verify says {report.summary()}"
        assert any(
            "setting session_preload_libraries" in text and "plpgsql" in text for text in problems(report)
        ), problems(report)
    finally:
        with psycopg.connect(trail.url, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name[0]}" RESET session_preload_libraries')


def test_a_c_function_moved_outside_the_library_directory_is_named(isolated_database: Database, trail: Trail) -> None:
    """PostgreSQL's own C functions (created by initdb, OIDs below 16384) re-pointed at another file."""
    with psycopg.connect(trail.url, autocommit=True) as conn:
        conn.execute(
            "UPDATE pg_catalog.pg_proc SET probin = '/tmp/keep/dict_snowball' "
            "WHERE oid = 'pg_catalog.dsnowball_init(internal)'::regprocedure"
        )
    try:
        report = without_traceback(lambda: verify(isolated_database))

        assert not report.ok, f"a C function runs code from /tmp, yet verify says {report.summary()}"
        assert any(
            "function dsnowball_init" in text and "/tmp/keep/dict_snowball" in text for text in problems(report)
        ), problems(report)
    finally:
        with psycopg.connect(trail.url, autocommit=True) as conn:
            conn.execute(
                "UPDATE pg_catalog.pg_proc SET probin = '$libdir/dict_snowball' "
                "WHERE oid = 'pg_catalog.dsnowball_init(internal)'::regprocedure"
            )
