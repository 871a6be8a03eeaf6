"""The sealer renders each row's encoding 2 per table (migration 0007); it must equal `public.jarvis_canonical`,
which verify uses, for every way a value can be null: SQL NULL, a JSON null, and nulls nested in JSON."""

from __future__ import annotations

import uuid

import psycopg
from psycopg.types.json import Jsonb

from jarvis.db import Database
from jarvis.db.audit import seal, verify
from jarvis_testkit import tamper

NESTED = Jsonb({"a": None, "b": [None, {"c": None}], "n": 1.10})


def test_the_sealers_row_hash_equals_jarvis_canonical_for_every_null_pattern(
    isolated_database: Database, isolated_database_url: str
) -> None:
    with tamper.as_app_role(isolated_database_url) as app:
        cycles = []
        for goals in (Jsonb(None), NESTED, Jsonb([])):
            cycle = uuid.uuid4()
            app.execute(
                "INSERT INTO public.planning_cycles (id, agent, status, goals) VALUES (%s, %s, 'started', %s)",
                (cycle, f"nulls-{cycle}", goals),
            )
            cycles.append(cycle)
        for outcomes in (None, Jsonb(None), NESTED):
            app.execute(
                "INSERT INTO public.planning_cycles (id, parent_id, agent, status, outcomes) "
                "VALUES (%s, %s, 'x', 'succeeded', %s)",
                (uuid.uuid4(), cycles.pop(), outcomes),
            )
        open_cycle = uuid.uuid4()
        app.execute(
            "INSERT INTO public.planning_cycles (id, agent, status, goals) VALUES (%s, 'nulls-open', 'started', '[]')",
            (open_cycle,),
        )
        for reasoning in (Jsonb(None), NESTED, Jsonb("")):
            app.execute(
                "INSERT INTO public.decision_log (id, cycle_id, reasoning, decision) VALUES (%s, %s, %s, 'd')",
                (uuid.uuid4(), open_cycle, reasoning),
            )
        starts = ((None, None), (open_cycle, Jsonb(None)), (open_cycle, NESTED))
        outcomes_of_starts = ((None, None, None), (Jsonb(None), "boom", 0), (NESTED, None, 7))
        for (cycle_id, tool_input), (output, error, duration) in zip(starts, outcomes_of_starts, strict=True):
            start = uuid.uuid4()
            app.execute(
                "INSERT INTO public.tool_calls (id, cycle_id, tool_name, status, input) "
                "VALUES (%s, %s, 't', 'started', %s)",
                (start, cycle_id, tool_input),
            )
            app.execute(
                "INSERT INTO public.tool_calls (id, parent_id, tool_name, status, output, error, duration_ms) "
                "VALUES (%s, %s, 't', 'failed', %s, %s, %s)",
                (uuid.uuid4(), start, output, error, duration),
            )
        for columns in (Jsonb(None), NESTED):
            app.execute(
                "INSERT INTO public.schema_changes (table_name, action, columns) VALUES ('t', 'a', %s)", (columns,)
            )

    sealed = seal(isolated_database)

    with psycopg.connect(isolated_database_url) as owner:
        owner.execute("SET TimeZone = 'UTC'")
        mismatched = owner.execute(
            """
            SELECT c.table_name, c.row_id FROM public.audit_chain c
            LEFT JOIN LATERAL (
              SELECT pg_catalog.to_jsonb(x) AS doc FROM ONLY public.planning_cycles x
               WHERE c.table_name = 'planning_cycles' AND x.id = c.row_id
              UNION ALL SELECT pg_catalog.to_jsonb(x) FROM ONLY public.tool_calls x
               WHERE c.table_name = 'tool_calls' AND x.id = c.row_id
              UNION ALL SELECT pg_catalog.to_jsonb(x) FROM ONLY public.decision_log x
               WHERE c.table_name = 'decision_log' AND x.id = c.row_id
              UNION ALL SELECT pg_catalog.to_jsonb(x) FROM ONLY public.schema_changes x
               WHERE c.table_name = 'schema_changes' AND public.jarvis_serial_uuid(x.id) = c.row_id
            ) r ON true
            WHERE r.doc IS NULL
               OR c.row_hash <> pg_catalog.sha256(
                    pg_catalog.convert_to(public.jarvis_canonical(c.table_name, r.doc), 'UTF8'))
            """
        ).fetchall()
    assert sealed.linked >= 16
    assert mismatched == []
    assert verify(isolated_database).ok


def test_rows_sealed_after_a_superuser_added_a_column_still_verify(
    isolated_database: Database, isolated_database_url: str
) -> None:
    """The sealer's per-table rendering knows the migrated columns; with another column it renders as
    `jarvis_canonical` does (every stored column, nulls left out), so verify finds no false difference."""
    with psycopg.connect(isolated_database_url, autocommit=True) as owner:
        owner.execute("ALTER TABLE public.tool_calls ADD COLUMN reviewed_by text")
        owner.execute("ALTER TABLE public.decision_log ALTER COLUMN decision DROP NOT NULL")
    with tamper.as_app_role(isolated_database_url) as app:
        app.execute(
            "INSERT INTO public.tool_calls (id, tool_name, status, input) VALUES (%s, 't', 'started', '{}')",
            (uuid.uuid4(),),
        )
        cycle = uuid.uuid4()
        app.execute(
            "INSERT INTO public.planning_cycles (id, agent, status, goals) VALUES (%s, 'added', 'started', '[]')",
            (cycle,),
        )
    with psycopg.connect(isolated_database_url, autocommit=True) as owner:  # a NULL the models never allow
        owner.execute(
            "INSERT INTO public.decision_log (id, cycle_id, reasoning, decision) VALUES (%s, %s, '{}', NULL)",
            (uuid.uuid4(), cycle),
        )

    assert seal(isolated_database).linked == 3
    report = verify(isolated_database)
    assert not [p for p in report.problems if p.row_id is not None], report.summary()
