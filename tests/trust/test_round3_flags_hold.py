"""What the sealer flags holds even when its flag does not (issue 22: A's last item, B1, B3; round-3 attacks).

A superuser forges a row the sealer would not vouch for, seals it themselves (the sealer links and flags
it), deletes the flag, and lets the agent sign its next checkpoint (which counts the flags left: none).
Verify recomputes, from the rows themselves, every check of the sealer that rows alone can show, in the
database and offline in a bundle; a bundle carries the flags and is checked against the signed counts;
and a built-in operator made unplannable is named in one line, never a traceback.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from typer.testing import CliRunner

from jarvis.agent.bundle import verify_bundle
from jarvis.agent.witnessing import seal_and_sign, verify_trail
from jarvis.config import Settings
from jarvis.db import Database
from jarvis.db.audit import PlanningLog, ToolCallLog, close_dangling
from jarvis.db.audit.chain import BACKDATE_SLACK
from jarvis_testkit import tamper
from jarvis_testkit.operator import audit, operator_run
from jarvis_testkit.tamper import Trail, without_traceback

runner = CliRunner()
MODES = ((), ("--full",), ("--since-checkpoint",))


cli = audit


def last_checkpoint(settings: Settings) -> dict[str, Any]:
    assert settings.witness_log is not None
    return dict(json.loads(Path(settings.witness_log).read_text().splitlines()[-1]))


def seal_as_superuser_and_delete_the_flag(url: str, table: str, forged: uuid.UUID) -> str:
    """Queue the forged row by hand, link it with the database's own sealer, then delete the flag it wrote."""
    tamper.queue_by_hand(url, table, forged)
    with tamper.superuser_without_triggers(url) as conn:
        sealed = conn.execute("SELECT linked, flagged FROM public.jarvis_seal(1000)").fetchone()
        assert sealed == {"linked": 1, "flagged": 1}, sealed
        flag = conn.execute("DELETE FROM public.audit_flags WHERE row_id = %s RETURNING reason", (forged,)).fetchone()
    assert flag is not None
    return str(flag["reason"])


def agent_signs_then_every_verify_names(settings: Settings, forged: uuid.UUID, why: str) -> None:
    """The agent's next checkpoint counts no flag; every verify (CLI) still exits 1 naming the row and why."""
    assert cli(settings, "verify", "--seal")[0] in (0, 1)
    assert last_checkpoint(settings).get("flagged") == 0  # the attack worked: the signature vouches for no flag
    for mode in MODES:
        code, output = cli(settings, "verify", *mode)
        assert code == 1, (mode, output)
        assert str(forged) in output and why in output, (mode, output)


def cycle_closed_at(url: str, cycle: uuid.UUID) -> Any:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT created_at FROM public.planning_cycles WHERE parent_id = %s", (cycle,)).fetchone()
    assert row is not None
    return row[0]


def wait_for_database_clock(url: str, after: Any, deadline_s: float = 60.0) -> None:
    """Until the database's clock is past `after` (a condition with a deadline, not a fixed sleep)."""
    deadline = time.monotonic() + deadline_s
    with psycopg.connect(url, autocommit=True) as conn:
        while not conn.execute("SELECT clock_timestamp() > %s", (after,)).fetchone()[0]:  # type: ignore[index]
            assert time.monotonic() < deadline, f"the database clock did not pass {after} within {deadline_s} s"
            time.sleep(0.1)


# --- 1. a flag deleted before the next signed checkpoint


def test_decision_forged_after_its_cycle_closed_is_named_after_its_flag_was_deleted(
    trail: Trail, witnessed: Settings
) -> None:
    cli(witnessed, "verify", "--seal")
    closed = cycle_closed_at(trail.url, trail.cycle)
    # Dated more than the slack after the close, but not after the next checkpoint's time plus the slack (so no
    # other check gives it away): the checkpoint must be signed at least 1 s after the close, hence the wait.
    wait_for_database_clock(trail.url, closed + timedelta(seconds=5))
    forged = uuid.uuid4()
    with tamper.superuser_without_triggers(trail.url) as conn:
        conn.execute(
            "INSERT INTO public.decision_log (id, cycle_id, reasoning, decision, created_at) "
            "VALUES (%s, %s, %s, 'pay the attacker', %s)",
            (forged, trail.cycle, Jsonb({"why": "approved"}), closed + BACKDATE_SLACK + timedelta(seconds=1)),
        )
    assert "after its planning cycle closed" in seal_as_superuser_and_delete_the_flag(trail.url, "decision_log", forged)

    agent_signs_then_every_verify_names(witnessed, forged, "after its planning cycle closed")


def test_decision_forged_before_its_cycle_began_is_named_after_its_flag_was_deleted(
    trail: Trail, witnessed: Settings
) -> None:
    cli(witnessed, "verify", "--seal")
    forged = uuid.uuid4()
    with tamper.superuser_without_triggers(trail.url) as conn:
        conn.execute(  # a second before the cycle began: within every backdating slack
            "INSERT INTO public.decision_log (id, cycle_id, reasoning, decision, created_at) "
            "SELECT %s, c.id, %s, 'pay the attacker', c.created_at - interval '1 second' "
            "FROM public.planning_cycles c WHERE c.id = %s",
            (forged, Jsonb({"why": "approved"}), trail.cycle),
        )
    seal_as_superuser_and_delete_the_flag(trail.url, "decision_log", forged)

    agent_signs_then_every_verify_names(witnessed, forged, "dated before its planning cycle began")


def test_tool_call_forged_into_a_missing_cycle_is_named_after_its_flag_was_deleted(
    trail: Trail, witnessed: Settings
) -> None:
    cli(witnessed, "verify", "--seal")
    forged = uuid.uuid4()
    with tamper.superuser_without_triggers(trail.url) as conn:
        conn.execute(
            "INSERT INTO public.tool_calls (id, tool_name, status, input, cycle_id, created_at) "
            "VALUES (%s, 'transfer_funds', 'started', %s, %s, clock_timestamp())",
            (forged, Jsonb({"to": "attacker"}), uuid.uuid4()),
        )
    seal_as_superuser_and_delete_the_flag(trail.url, "tool_calls", forged)

    agent_signs_then_every_verify_names(witnessed, forged, "planning cycle")


def test_completion_whose_start_row_is_missing_is_named_after_its_flag_was_deleted(
    trail: Trail, witnessed: Settings
) -> None:
    cli(witnessed, "verify", "--seal")
    forged = uuid.uuid4()
    with tamper.superuser_without_triggers(trail.url) as conn:
        conn.execute(
            "INSERT INTO public.tool_calls (id, parent_id, tool_name, status, output, created_at) "
            "VALUES (%s, %s, 'transfer_funds', 'succeeded', %s, clock_timestamp())",
            (forged, uuid.uuid4(), Jsonb({"tx": "0xforged"})),
        )
    seal_as_superuser_and_delete_the_flag(trail.url, "tool_calls", forged)

    agent_signs_then_every_verify_names(witnessed, forged, "does not exist")


def test_an_honest_trail_with_calls_abandoned_after_their_cycle_closed_verifies(
    isolated_database: Database, witnessed: Settings, tmp_path: Path
) -> None:
    planning = PlanningLog(isolated_database, agent="honest")
    tools = ToolCallLog(isolated_database)
    for round_ in range(3):
        cycle = planning.open_cycle([f"round {round_}"])
        planning.record_decision(cycle, "call", {"why": "needed"})
        for call in range(20):
            with tools.record("lookup", {"q": call}, cycle_id=cycle) as active:
                active.succeed({"answer": call})
        tools.start("slow", {"q": round_}, cycle_id=cycle)  # its process dies: no outcome
        planning.close_cycle(cycle, "succeeded", {"round": round_})
        seal_and_sign(isolated_database, witnessed)
    tools.start("loose", {"q": "outside any cycle"})
    open_cycle = planning.open_cycle(["still running"])
    tools.start("running", {"q": 1}, cycle_id=open_cycle)
    abandoned = close_dangling(isolated_database)  # completions appended after their cycles closed
    assert len(abandoned) == 6
    seal_and_sign(isolated_database, witnessed)

    report = verify_trail(isolated_database, witnessed)

    assert report.ok, report.summary()
    for mode in MODES:
        code, output = cli(witnessed, "verify", *mode)
        assert code == 0, (mode, output)
    path = tmp_path / "honest.bundle"
    assert cli(witnessed, "export", "--format", "bundle", "--output", str(path))[0] == 0
    code, output = cli(witnessed, "verify", "--bundle", str(path))
    assert code == 0, output


# --- 2. bundles carry the flags


def flagged_backdated_decision(trail: Trail, witnessed: Settings) -> uuid.UUID:
    """A decision dated a day before its cycle, queued by hand and sealed by the agent: linked and flagged."""
    cli(witnessed, "verify", "--seal")
    forged = uuid.uuid4()
    with tamper.superuser_without_triggers(trail.url) as conn:
        conn.execute(
            "INSERT INTO public.decision_log (id, cycle_id, reasoning, decision, created_at) "
            "SELECT %s, c.id, %s, 'pay the attacker', c.created_at - interval '1 day' "
            "FROM public.planning_cycles c WHERE c.id = %s",
            (forged, Jsonb({"why": "approved"}), trail.cycle),
        )
    tamper.queue_by_hand(trail.url, "decision_log", forged)
    cli(witnessed, "verify", "--seal")
    assert last_checkpoint(witnessed).get("flagged") == 1
    return forged


def exported(witnessed: Settings, tmp_path: Path) -> Path:
    path = tmp_path / "trail.bundle"
    code, output = cli(witnessed, "export", "--format", "bundle", "--output", str(path))
    assert code == 0, output
    return path


def test_an_honest_bundle_of_a_flagged_trail_names_the_flag(trail: Trail, witnessed: Settings, tmp_path: Path) -> None:
    forged = flagged_backdated_decision(trail, witnessed)
    path = exported(witnessed, tmp_path)

    for extra in ((), ("--witness-log", str(witnessed.witness_log))):
        code, output = cli(witnessed, "verify", "--bundle", str(path), *extra)
        assert code == 1, (extra, output)
        assert str(forged) in output and "without vouching for it" in output, (extra, output)


def test_a_bundle_with_its_flags_removed_is_named_trimmed(trail: Trail, witnessed: Settings, tmp_path: Path) -> None:
    flagged_backdated_decision(trail, witnessed)
    path = exported(witnessed, tmp_path)
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    header = json.loads(lines[0])
    header["flags"] = 0  # the holder drops the flag lines and fixes the header's count
    kept = [json.dumps(header, separators=(",", ":")) + "\n"] + [line for line in lines[1:] if '"flag"' not in line]
    assert len(kept) == len(lines) - 1
    path.write_text("".join(kept), encoding="utf-8")
    assert witnessed.signing_key is not None

    report = without_traceback(lambda: verify_bundle(path, Path(f"{witnessed.signing_key}.pub")))

    assert not report.ok
    assert any("trimmed" in p.reason for p in report.problems), [str(p) for p in report.problems]


def test_a_bundle_recomputes_what_a_deleted_flag_no_longer_says(
    trail: Trail, witnessed: Settings, tmp_path: Path
) -> None:
    cli(witnessed, "verify", "--seal")
    forged = uuid.uuid4()
    with tamper.superuser_without_triggers(trail.url) as conn:
        conn.execute(
            "INSERT INTO public.tool_calls (id, parent_id, tool_name, status, output, created_at) "
            "VALUES (%s, %s, 'transfer_funds', 'succeeded', %s, clock_timestamp())",
            (forged, uuid.uuid4(), Jsonb({"tx": "0xforged"})),
        )
    seal_as_superuser_and_delete_the_flag(trail.url, "tool_calls", forged)
    cli(witnessed, "verify", "--seal")
    assert last_checkpoint(witnessed).get("flagged") == 0
    path = exported(witnessed, tmp_path)

    for extra in ((), ("--witness-log", str(witnessed.witness_log))):
        code, output = cli(witnessed, "verify", "--bundle", str(path), *extra)
        assert code == 1, (extra, output)
        assert str(forged) in output and "does not exist" in output, (extra, output)


# --- 3. an operator made unplannable, an operator family edited


def verify_exit_and_output(settings: Settings) -> tuple[int, str, BaseException | None]:
    result = operator_run(settings, "audit", "verify")
    return result.exit_code, result.output, result.exception


def test_uuid_equality_made_neither_hash_nor_merge_joinable_is_named_in_one_line(
    trail: Trail, witnessed: Settings
) -> None:
    cli(witnessed, "verify", "--seal")
    with tamper.superuser_without_triggers(trail.url) as conn:
        conn.execute(
            "UPDATE pg_catalog.pg_operator SET oprcanhash = false, oprcanmerge = false "
            "WHERE oid = 'pg_catalog.=(uuid,uuid)'::regoperator"
        )
        conn.execute("DELETE FROM public.tool_calls WHERE id = %s", (trail.completions[0],))

    code, output, error = verify_exit_and_output(witnessed)

    assert code == 1 and isinstance(error, SystemExit), (code, output, error)
    assert "Traceback" not in output, output
    assert "operator = (uuid, uuid)" in output and "merge- and hash-joinable" in output, output
    assert "FeatureNotSupported" in output, output  # the FULL JOIN cannot be planned: said in one line


def test_uuid_hash_support_function_removed_is_named(trail: Trail, witnessed: Settings) -> None:
    cli(witnessed, "verify", "--seal")
    with tamper.superuser_without_triggers(trail.url) as conn:
        removed = conn.execute(
            "DELETE FROM pg_catalog.pg_amproc WHERE amprocfamily = 2969 AND amprocnum = 1 RETURNING amproc::oid"
        ).fetchall()
    assert removed == [{"amproc": 2963}]

    code, output, error = verify_exit_and_output(witnessed)

    assert code == 1 and isinstance(error, SystemExit), (code, output, error)
    assert "Traceback" not in output, output
    assert "pg_amproc entry 2969:2950>2950:1:2963 is missing" in output, output


# --- verified reads recompute the same rules: a deleted flag does not make a forged row read as verified


def test_a_forged_decision_whose_flag_was_deleted_reads_flagged_not_verified(
    isolated_database: Database, trail: Trail, witnessed: Settings
) -> None:
    from jarvis.db.audit import AuditQueries
    from jarvis.db.audit.export import export_rows

    cli(witnessed, "verify", "--seal")
    forged = uuid.uuid4()
    with tamper.superuser_without_triggers(trail.url) as conn:
        conn.execute(  # a second before the cycle began: within every backdating slack
            "INSERT INTO public.decision_log (id, cycle_id, reasoning, decision, created_at) "
            "SELECT %s, c.id, %s, 'pay the attacker', c.created_at - interval '1 second' "
            "FROM public.planning_cycles c WHERE c.id = %s",
            (forged, Jsonb({"why": "approved"}), trail.cycle),
        )
    seal_as_superuser_and_delete_the_flag(trail.url, "decision_log", forged)

    entries = {entry.id: entry for entry in AuditQueries(isolated_database).timeline(trail.cycle)}
    exported = {row["id"]: row.get("integrity") for row in export_rows(isolated_database)}

    assert entries[forged].integrity == "flagged"
    assert exported[str(forged)] == "flagged"
    assert entries[trail.decision].integrity == "verified"
