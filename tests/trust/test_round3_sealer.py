"""The sealer vouches only for what it should, sizes are enforced by the database, and `jarvis_seal` takes no
harmful argument (issue 22: A's last item, B5, B6). Each attack is performed for real, as its actor."""

from __future__ import annotations

import importlib
import json
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg.types.json import Jsonb
from typer.testing import CliRunner

from jarvis.agent.witnessing import seal_and_sign, verify_trail
from jarvis.config import Settings
from jarvis.db import Database
from jarvis.db.audit import PlanningLog, ToolCallLog, seal, verify
from jarvis.db.audit.chain import BACKDATE_SLACK
from jarvis_testkit import tamper
from jarvis_testkit.operator import audit
from jarvis_testkit.tamper import Trail, without_traceback

runner = CliRunner()


def cli(settings: Settings, *args: str) -> tuple[int, str]:
    """`jarvis audit verify ARGS` as the agent's operator."""
    return audit(settings, "verify", *args)


def last_checkpoint(settings: Settings) -> dict[str, object]:
    assert settings.witness_log is not None
    lines = Path(settings.witness_log).read_text().splitlines()
    return dict(json.loads(lines[-1]))


def seal_by_cli_then_every_verify_names(settings: Settings, row: uuid.UUID, why: str) -> None:
    """`verify --seal` links the queued row; then every verify (CLI) exits 1 naming it, and the checkpoint says so."""
    cli(settings, "--seal")
    checkpoint = last_checkpoint(settings)
    assert checkpoint.get("flagged") == 1, checkpoint
    for mode in ((), ("--full",), ("--since-checkpoint",)):
        code, output = cli(settings, *mode)
        assert code == 1, (mode, output)
        assert str(row) in output and why in output, (mode, output)


def test_backdated_decision_queued_by_hand_is_flagged_when_linked(trail: Trail, witnessed: Settings) -> None:
    cli(witnessed, "--seal")  # a checkpoint over the honest trail
    forged = uuid.uuid4()
    with tamper.superuser_without_triggers(trail.url) as conn:
        conn.execute(
            "INSERT INTO public.decision_log (id, cycle_id, reasoning, decision, created_at) "
            "SELECT %s, c.id, %s, 'pay the attacker', c.created_at - interval '1 day' "
            "FROM public.planning_cycles c WHERE c.id = %s",
            (forged, Jsonb({"why": "approved"}), trail.cycle),
        )
    tamper.queue_by_hand(trail.url, "decision_log", forged)

    seal_by_cli_then_every_verify_names(witnessed, forged, "backdated")


def test_completion_whose_start_row_is_missing_is_flagged_when_linked(trail: Trail, witnessed: Settings) -> None:
    cli(witnessed, "--seal")
    forged = uuid.uuid4()
    with tamper.superuser_without_triggers(trail.url) as conn:
        conn.execute(
            "INSERT INTO public.tool_calls (id, parent_id, tool_name, status, output) "
            "VALUES (%s, %s, 'transfer', 'succeeded', %s)",
            (forged, uuid.uuid4(), Jsonb({"tx": "0xforged"})),
        )
    tamper.queue_by_hand(trail.url, "tool_calls", forged)

    seal_by_cli_then_every_verify_names(witnessed, forged, "does not exist")


def test_decision_dated_after_its_cycle_closed_is_flagged_when_linked(trail: Trail, witnessed: Settings) -> None:
    cli(witnessed, "--seal")
    forged = uuid.uuid4()
    with tamper.superuser_without_triggers(trail.url) as conn:
        conn.execute(  # not backdated (dated after the last seal): only its cycle's span gives it away
            "INSERT INTO public.decision_log (id, cycle_id, reasoning, decision, created_at) "
            "VALUES (%s, %s, %s, 'pay the attacker', clock_timestamp() + interval '5 minutes')",
            (forged, trail.cycle, Jsonb({"why": "approved"})),
        )
    tamper.queue_by_hand(trail.url, "decision_log", forged)

    seal_by_cli_then_every_verify_names(witnessed, forged, "after its planning cycle closed")


def test_an_honest_trail_is_never_flagged(isolated_database: Database, trail: Trail, witnessed: Settings) -> None:
    planning = PlanningLog(isolated_database, agent="honest")
    tools = ToolCallLog(isolated_database)
    for round_ in range(3):
        cycle = planning.open_cycle([f"round {round_}"])
        planning.record_decision(cycle, "call", {"why": "needed"})
        with tools.record("lookup", {"q": round_}, cycle_id=cycle) as call:
            call.succeed({"answer": round_})
        planning.close_cycle(cycle, "succeeded", {"round": round_})
        result = seal_and_sign(isolated_database, witnessed)
        assert (result.flagged, result.flagged_total) == (0, 0)
        assert last_checkpoint(witnessed).get("flagged") == 0

    report = verify_trail(isolated_database, witnessed)

    assert report.ok, report.summary()
    with psycopg.connect(trail.url) as conn:
        assert conn.execute("SELECT count(*) FROM public.audit_flags").fetchone() == (0,)


def test_flag_deleted_by_a_superuser_is_named_by_the_checkpoint(
    isolated_database: Database, trail: Trail, witnessed: Settings
) -> None:
    forged = uuid.uuid4()
    with tamper.superuser_without_triggers(trail.url) as conn:
        conn.execute(
            "INSERT INTO public.decision_log (id, cycle_id, reasoning, decision, created_at) "
            "VALUES (%s, %s, %s, 'pay', now() - interval '1 day')",
            (forged, trail.cycle, Jsonb({"why": "x"})),
        )
    tamper.queue_by_hand(trail.url, "decision_log", forged)
    assert seal_and_sign(isolated_database, witnessed).flagged == 1
    with tamper.superuser_without_triggers(trail.url) as conn:
        conn.execute("DELETE FROM public.audit_flags")

    report = without_traceback(lambda: verify_trail(isolated_database, witnessed))

    assert not report.ok
    assert any("flags were deleted" in p.reason for p in report.problems), [str(p) for p in report.problems]


def test_backdating_slack_of_the_sealer_is_the_verifiers() -> None:
    migration = importlib.import_module("jarvis.db.migrations.versions.0008_sealer_vouches_only_for_what_it_should")
    assert migration.SLACK == f"{int(BACKDATE_SLACK.total_seconds())} seconds"


# --- B6: the app role cannot move the sealer's starting point


@pytest.mark.parametrize("max_rows", [0, -1, None])
def test_app_role_cannot_seal_with_a_batch_size_that_skips_queued_rows(
    isolated_database: Database, trail: Trail, max_rows: int | None
) -> None:
    cycle = PlanningLog(isolated_database, agent="queued").open_cycle(["wait"])
    with tamper.as_app_role(trail.url) as conn:
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="max_rows must be between 1 and"):
            conn.execute("SELECT * FROM public.jarvis_seal(%s)", (max_rows,))

    result = seal(isolated_database)

    assert result.linked == 1  # the queued row is still sealed
    report = verify(isolated_database)
    assert report.ok and report.pending == 0, report.summary()
    with psycopg.connect(trail.url) as conn:
        assert conn.execute("SELECT 1 FROM public.audit_chain WHERE row_id = %s", (cycle,)).fetchone() == (1,)


# --- B5: sizes enforced by the database; an unrenderable row does not stop the sealer

HUGE = "pg_catalog.to_jsonb(pg_catalog.repeat(pg_catalog.chr(1), 180000000))"
"""A few kB on disk, 180 MB in memory, over 1 GB as JSON text (every U+0001 renders as \\u0001)."""


def test_app_role_cannot_append_a_value_over_a_gigabyte_as_json_text(trail: Trail) -> None:
    with tamper.as_app_role(trail.url) as conn:
        with pytest.raises(psycopg.errors.CheckViolation, match=r"tool_calls\.input is over 1 GB as JSON text"):
            conn.execute(
                "SELECT public.jarvis_append_tool_calls(gen_random_uuid(), NULL, NULL, 'transfer', 'started', "
                f"{HUGE})"
            )


def test_app_role_cannot_insert_a_text_over_the_limit_as_json_text(trail: Trail) -> None:
    with tamper.as_app_role(trail.url) as conn:
        with pytest.raises(psycopg.errors.CheckViolation, match=r"schema_changes\.action is over 1 GB"):
            conn.execute(
                "INSERT INTO public.schema_changes (table_name, action, columns) "
                "VALUES ('prices', pg_catalog.repeat(pg_catalog.chr(1), 180000000), '{}')"
            )


def test_an_unrenderable_row_is_linked_flagged_and_sealing_goes_on(
    isolated_database: Database, trail: Trail, witnessed: Settings
) -> None:
    forged = uuid.uuid4()
    with tamper.superuser_without_triggers(trail.url) as conn:
        conn.execute(
            f"INSERT INTO public.tool_calls (id, tool_name, status, input) VALUES (%s, 'transfer', 'started', {HUGE})",
            (forged,),
        )
    tamper.queue_by_hand(trail.url, "tool_calls", forged)
    later = PlanningLog(isolated_database, agent="later").open_cycle(["after it"])

    result = seal_and_sign(isolated_database, witnessed)

    assert result.flagged == 1 and result.linked == 2, result
    assert seal(isolated_database).linked == 0  # nothing left behind: sealing is not stuck
    report = without_traceback(lambda: verify_trail(isolated_database, witnessed))
    assert not report.ok
    named = [p for p in report.problems if p.row_id == forged]
    assert named and "larger than PostgreSQL can render" in named[0].reason, [str(p) for p in report.problems]
    with psycopg.connect(trail.url) as conn:
        assert conn.execute("SELECT 1 FROM public.audit_chain WHERE row_id = %s", (later,)).fetchone() == (1,)
