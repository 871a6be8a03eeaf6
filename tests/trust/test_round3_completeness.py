"""Verify must not depend on counting for completeness, and must not trust an aggregate a superuser re-pointed.

The attack (issue 22, B1): a superuser re-points `count(*)` — one `pg_aggregate` row — to a
plpgsql function in a schema of their own that adds 2 when `tool_calls` is counted, then deletes
a sealed tool call's two rows (start and completion) with the triggers off. Counting then says
nothing is missing; every checkpoint still matches. Verify must name the deleted rows (every
link's row is looked for, not counted) and the re-pointed aggregate.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from typer.testing import CliRunner

from jarvis.agent.witnessing import seal_and_sign
from jarvis.config import Settings
from jarvis.db import Database
from jarvis.db.audit import PlanningLog, ToolCallLog, verify
from jarvis_testkit import tamper
from jarvis_testkit.operator import audit

runner = CliRunner()

COUNT_STAR = "pg_catalog.count()"


def verify_cli(settings: Settings, *args: str) -> tuple[int, str]:
    return audit(settings, "verify", *args)


@pytest.fixture
def deleted_under_a_lying_count(
    isolated_database: Database, isolated_database_url: str, witnessed: Settings
) -> Iterator[list[str]]:
    """A sealed and signed trail; one tool call's two rows deleted, `count(*)` re-pointed to hide it.

    Yields the ids of the deleted rows; restores `count(*)` afterwards.
    """
    planning = PlanningLog(isolated_database, agent="victim")
    tools = ToolCallLog(isolated_database)
    cycle = planning.open_cycle(["pay rent"])
    victims: list[str] = []
    for i in range(3):
        start = tools.start("transfer", {"to": f"landlord-{i}", "usd": 100 + i}, cycle_id=cycle)
        completion = tools.record_completion(start, "succeeded", output={"tx": f"0x{i:04x}"})
        if i == 1:
            victims = [str(start.id), str(completion)]
    planning.close_cycle(cycle, "succeeded", {"paid": True})
    seal_and_sign(isolated_database, witnessed, wait=30)
    honest = verify_cli(witnessed)
    assert honest[0] == 0, honest[1]

    with tamper.superuser_without_triggers(isolated_database_url) as conn:
        conn.execute("CREATE SCHEMA quiet")
        conn.execute("GRANT USAGE ON SCHEMA quiet TO PUBLIC")
        conn.execute(
            "CREATE FUNCTION quiet.inc(bigint) RETURNS bigint LANGUAGE plpgsql STRICT AS $$ BEGIN "
            "IF $1 = 0 AND pg_catalog.current_query() LIKE '%count(*) FROM ONLY public.tool_calls x' "
            "THEN RETURN 3; END IF; RETURN $1 + 1; END $$"
        )
        conn.execute("GRANT EXECUTE ON FUNCTION quiet.inc(bigint) TO PUBLIC")
        conn.execute(
            "UPDATE pg_catalog.pg_aggregate SET aggtransfn = 'quiet.inc'::regproc "
            f"WHERE aggfnoid = '{COUNT_STAR}'::regprocedure"
        )
        conn.execute("DELETE FROM public.tool_calls WHERE id = ANY(%s::uuid[])", (victims,))
    try:
        yield victims
    finally:
        with psycopg.connect(isolated_database_url, autocommit=True) as conn:
            conn.execute(
                "UPDATE pg_catalog.pg_aggregate SET aggtransfn = 'pg_catalog.int8inc'::regproc "
                f"WHERE aggfnoid = '{COUNT_STAR}'::regprocedure"
            )


@pytest.mark.parametrize("mode", [(), ("--full",)], ids=["default", "full"])
def test_rows_deleted_under_a_repointed_count_are_named(
    deleted_under_a_lying_count: list[str], witnessed: Settings, mode: tuple[str, ...]
) -> None:
    code, output = verify_cli(witnessed, *mode)

    assert code == 1, output
    for row_id in deleted_under_a_lying_count:
        assert f"{row_id}" in output and "row was deleted" in output, output
    assert "Traceback" not in output, output


@pytest.mark.parametrize("mode", [(), ("--full",)], ids=["default", "full"])
def test_a_repointed_count_aggregate_is_named(
    deleted_under_a_lying_count: list[str], witnessed: Settings, mode: tuple[str, ...]
) -> None:
    code, output = verify_cli(witnessed, *mode)

    assert code == 1, output
    assert "aggregate pg_catalog.count()" in output and "pg_aggregate was edited" in output, output


def test_a_builtin_cast_repointed_in_pg_cast_is_named(isolated_database: Database, isolated_database_url: str) -> None:
    """`name -> text` (the catalog check casts names with it) made to run a superuser's function: named, by pg_cast."""
    PlanningLog(isolated_database, agent="victim").open_cycle(["pay rent"])
    with tamper.superuser_without_triggers(isolated_database_url) as conn:
        conn.execute("CREATE SCHEMA quiet")
        conn.execute("GRANT USAGE ON SCHEMA quiet TO PUBLIC")
        conn.execute(
            "CREATE FUNCTION quiet.name_text(name) RETURNS text LANGUAGE plpgsql STRICT IMMUTABLE AS $$ BEGIN "
            "RETURN CASE WHEN $1 = 'quiet' THEN 'public' ELSE pg_catalog.textin(pg_catalog.nameout($1)) END; END $$"
        )
        conn.execute(
            "UPDATE pg_catalog.pg_cast SET castfunc = 'quiet.name_text'::regproc "
            "WHERE castsource = 'name'::regtype AND casttarget = 'text'::regtype"
        )
    try:
        report = tamper.without_traceback(lambda: verify(isolated_database))

        assert not report.ok, report.summary()
        assert any(
            str(p).startswith("cast (name AS text)") and "name_text" in str(p) for p in report.problems
        ), report.problems
    finally:
        with psycopg.connect(isolated_database_url, autocommit=True) as conn:
            conn.execute(
                "UPDATE pg_catalog.pg_cast SET castfunc = 'pg_catalog.text(name)'::regprocedure "
                "WHERE castsource = 'name'::regtype AND casttarget = 'text'::regtype"
            )
