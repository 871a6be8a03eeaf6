"""Verified reads (issue 22, A): every audit row a surface displays is re-hashed against its chain link as it is read.

The attacker is a database superuser who edits a sealed row with the triggers off. Every display
surface — `jarvis audit show` (text and --json), `jarvis audit export` (jsonl and otel), the web
UI's cycle page and its "show all" link, and `mcp serve`'s show_cycle tool — must show that row as
TAMPERED and never show the forged value. Untouched sealed rows read as verified; rows still queued
for the sealer as unsealed.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from jarvis.agent import Agent
from jarvis.cli.main import app
from jarvis.config import Settings
from jarvis.db import Database, open_database
from jarvis.db.audit import AuditQueries, PlanningLog, ToolCallLog, seal
from jarvis.db.audit.export import export_rows, tool_call_spans
from jarvis.ui import create_app
from jarvis_testkit import tamper

FORGED = "0xFORGED-BY-A-SUPERUSER"
runner = CliRunner()


@dataclass(frozen=True)
class Sealed:
    url: str
    cycle: uuid.UUID
    decision: uuid.UUID
    starts: tuple[uuid.UUID, ...]
    completions: tuple[uuid.UUID, ...]


@pytest.fixture
def sealed(isolated_database: Database, isolated_database_url: str) -> Sealed:
    """One closed cycle (a decision, two tool calls), written through Jarvis as the app role and sealed."""
    planning, tools = PlanningLog(isolated_database, agent="victim"), ToolCallLog(isolated_database)
    cycle = planning.open_cycle(["pay rent"])
    decision = planning.record_decision(cycle, "pay", {"amount": 3000.5, "to": "landlord"})
    starts, completions = [], []
    for i in range(2):
        start = tools.start("transfer", {"to": f"landlord-{i}", "usd": 1500.25}, cycle_id=cycle)
        starts.append(start.id)
        completions.append(tools.record_completion(start, "succeeded", output={"tx": f"0x{i:04x}"}))
    planning.close_cycle(cycle, "succeeded", {"paid": True})
    seal(isolated_database, wait=30)
    return Sealed(isolated_database_url, cycle, decision, tuple(starts), tuple(completions))


@pytest.fixture
def auditor(isolated_database_url: str, settings: Settings) -> Iterator[Database]:
    db = open_database(settings, url=isolated_database_url, role="auditor")
    yield db
    db.shutdown()


def forge_output(trail: Sealed) -> uuid.UUID:
    """The superuser's edit: the first call's sealed outcome now says it paid FORGED."""
    tamper.edit(trail.url, "tool_calls", trail.completions[0], "output", f'\'{{"tx": "{FORGED}"}}\'')
    return trail.completions[0]


def forge_reasoning(trail: Sealed) -> uuid.UUID:
    tamper.edit(trail.url, "decision_log", trail.decision, "reasoning", f'\'{{"to": "{FORGED}"}}\'')
    return trail.decision


def jarvis(url: str, *args: str) -> tuple[int, str]:
    result = runner.invoke(
        app,
        list(args),
        env={"DATABASE_URL": url, "REDIS_URL": "", "COLUMNS": "250"},
    )
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout


def by_id(entries: list[Any]) -> dict[uuid.UUID, Any]:
    return {entry.id: entry for entry in entries}


def test_untouched_sealed_rows_read_as_verified(sealed: Sealed, auditor: Database) -> None:
    queries = AuditQueries(auditor)
    timeline = queries.timeline(sealed.cycle)
    assert len(timeline) == 7 and {entry.integrity for entry in timeline} == {"verified"}
    summary = queries.cycle(sealed.cycle)
    assert summary is not None and summary.integrity == "verified" and summary.goals == ["pay rent"]
    assert {call.integrity for call in queries.tool_calls(cycle_id=sealed.cycle)} == {"verified"}
    assert {row["integrity"] for row in export_rows(auditor)} == {"verified"}


def test_rows_waiting_for_the_sealer_read_as_unsealed(sealed: Sealed, isolated_database: Database) -> None:
    cycle = PlanningLog(isolated_database, agent="victim").open_cycle(["later"])
    waiting = ToolCallLog(isolated_database).start("transfer", {"to": "later"}, cycle_id=cycle)
    queries = AuditQueries(isolated_database)
    entries = by_id(queries.timeline(cycle))
    assert entries[waiting.id].integrity == "unsealed" and entries[waiting.id].detail == {"to": "later"}
    assert entries[cycle].integrity == "unsealed"
    assert {entry.integrity for entry in queries.timeline(sealed.cycle)} == {"verified"}


def test_audit_show_marks_an_edited_tool_output_tampered_and_withholds_it(sealed: Sealed) -> None:
    forge_output(sealed)
    code, out = jarvis(sealed.url, "audit", "show", "--cycle", str(sealed.cycle))
    assert code == 0, out
    assert "TAMPERED" in out and "withheld" in out
    assert FORGED not in out
    assert "0x0001" in out  # the untouched call is still shown


def test_audit_show_json_marks_an_edited_decision_tampered_without_its_reasoning(sealed: Sealed) -> None:
    changed = forge_reasoning(sealed)
    code, out = jarvis(sealed.url, "audit", "show", "--cycle", str(sealed.cycle), "--json")
    assert code == 0, out
    shown = json.loads(out)
    entries = {entry["id"]: entry for entry in shown["timeline"]}
    assert entries[str(changed)]["integrity"] == "tampered" and entries[str(changed)]["detail"] is None
    assert FORGED not in out
    assert {entry["integrity"] for key, entry in entries.items() if key != str(changed)} == {"verified"}
    assert shown["cycle"]["integrity"] == "verified"


def test_audit_show_lists_a_cycle_with_an_edited_completion_as_tampered(sealed: Sealed) -> None:
    tamper.edit(sealed.url, "planning_cycles", _completion_of(sealed), "outcomes", f'\'{{"paid": "{FORGED}"}}\'')
    code, out = jarvis(sealed.url, "audit", "show", "--json")
    assert code == 0, out
    (cycle,) = json.loads(out)
    assert cycle["integrity"] == "tampered" and cycle["status"] == "tampered" and cycle["outcomes"] is None
    assert FORGED not in out


def test_audit_export_marks_an_edited_row_tampered_and_withholds_it(sealed: Sealed, auditor: Database) -> None:
    changed = forge_output(sealed)
    rows = {row["id"]: row for row in export_rows(auditor)}
    assert rows[str(changed)] == {
        "table": "tool_calls",
        "id": str(changed),
        "created_at": rows[str(changed)]["created_at"],
        "integrity": "tampered",
    }
    assert FORGED not in json.dumps(list(rows.values()))
    spans = {span["span_id"]: span for span in tool_call_spans(auditor, include_content=True)}
    forged_span = spans[str(sealed.starts[0])]
    assert forged_span["attributes"]["jarvis.audit.integrity"] == "tampered"
    assert forged_span["status"]["code"] == "ERROR" and "gen_ai.tool.call.result" not in forged_span["attributes"]
    assert FORGED not in json.dumps(spans)
    code, out = jarvis(sealed.url, "audit", "export")
    assert code == 0 and FORGED not in out and '"integrity": "tampered"' in out


def test_the_ui_cycle_page_shows_an_edited_row_as_tampered_and_withholds_it(
    sealed: Sealed, auditor: Database, settings: Settings
) -> None:
    changed = forge_output(sealed)
    with TestClient(create_app(auditor, settings), base_url="http://127.0.0.1") as client:
        page = client.get(f"/cycles/{sealed.cycle}")
        full = client.get(f"/cycles/{sealed.cycle}/rows/{changed}")
    assert page.status_code == 200
    row = page.text.split(f'id="row-{changed}"', 1)[1].split("</tr>", 1)[0]
    assert 'class="badge integrity-tampered">TAMPERED' in row and "withheld" in row
    assert FORGED not in page.text
    assert full.status_code == 409 and full.text.startswith("TAMPERED") and FORGED not in full.text


def test_mcp_show_cycle_marks_an_edited_row_tampered_and_withholds_it(
    sealed: Sealed, isolated_database: Database
) -> None:
    from jarvis.mcp.serve import register_audit_tools

    changed = forge_reasoning(sealed)
    agent = Agent(isolated_database, name="mcp-reader")
    register_audit_tools(agent)
    step = agent.run_tool("show_cycle", {"cycle": str(sealed.cycle)}, cycle_id=None)
    assert step.ok, step.error
    entries = {entry["id"]: entry for entry in step.output["timeline"]}
    assert entries[str(changed)]["integrity"] == "tampered" and entries[str(changed)]["detail"] is None
    assert FORGED not in json.dumps(step.output)


def test_a_row_inserted_with_the_triggers_off_reads_as_tampered(sealed: Sealed, auditor: Database) -> None:
    forged = uuid.uuid4()
    with tamper.superuser_without_triggers(sealed.url) as conn:
        conn.execute(
            "INSERT INTO decision_log (id, cycle_id, decision, reasoning, created_at) "
            "VALUES (%s, %s, 'pay the attacker', %s, now())",
            (forged, sealed.cycle, json.dumps({"to": FORGED})),
        )
    entries = by_id(AuditQueries(auditor).timeline(sealed.cycle))
    assert entries[forged].integrity == "tampered" and entries[forged].detail is None
    assert entries[forged].name is None and entries[forged].kind == "decision"


def test_a_row_edited_together_with_its_link_hash_reads_as_tampered(sealed: Sealed, auditor: Database) -> None:
    """Editing the row and rewriting its link's row_hash to match still breaks the link's chain hash."""
    changed = forge_output(sealed)
    with tamper.superuser_without_triggers(sealed.url) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        fixed = conn.execute(
            "UPDATE public.audit_chain l SET row_hash = sha256(convert_to("
            "public.jarvis_canonical('tool_calls', to_jsonb(x)), 'UTF8')) "
            "FROM public.tool_calls x WHERE l.table_name = 'tool_calls' AND l.row_id = x.id AND x.id = %s",
            (changed,),
        ).rowcount
    assert fixed == 1
    entries = by_id(AuditQueries(auditor).timeline(sealed.cycle))
    assert entries[changed].integrity == "tampered" and entries[changed].detail is None


def _completion_of(trail: Sealed) -> uuid.UUID:
    rows = tamper.rows(trail.url, "planning_cycles")
    return uuid.UUID(str(next(row["id"] for row in rows if row["parent_id"] == trail.cycle)))


def test_a_row_the_sealer_flagged_reads_as_flagged_not_verified(sealed: Sealed, auditor: Database) -> None:
    """A row linked but flagged by the sealer (backdated, its cycle missing) is not vouched for: never "verified"."""
    with tamper.superuser_without_triggers(sealed.url) as conn:
        conn.execute(
            "INSERT INTO public.audit_flags (seq, table_name, row_id, reason) "
            "SELECT l.seq, l.table_name, l.row_id, 'backdated' FROM public.audit_chain l WHERE l.row_id = %s",
            (sealed.decision,),
        )
    entries = by_id(AuditQueries(auditor).timeline(sealed.cycle))
    assert entries[sealed.decision].integrity == "flagged"
    assert {entries[row].integrity for row in (*sealed.starts, *sealed.completions)} == {"verified"}
    exported = {row["id"]: row["integrity"] for row in export_rows(auditor)}
    assert exported[str(sealed.decision)] == "flagged"


def test_the_ui_cycle_list_shows_a_cycle_with_an_edited_start_as_tampered(
    sealed: Sealed, auditor: Database, settings: Settings
) -> None:
    tamper.edit(sealed.url, "planning_cycles", sealed.cycle, "goals", f"'[\"{FORGED}\"]'")
    with TestClient(create_app(auditor, settings), base_url="http://127.0.0.1") as client:
        listed = client.get("/")
        page = client.get(f"/cycles/{sealed.cycle}")
    assert listed.status_code == 200 and page.status_code == 200
    row = listed.text.split(f'href="/cycles/{sealed.cycle}"', 1)[1].split("</tr>", 1)[0]
    assert "TAMPERED" in row
    assert FORGED not in listed.text and FORGED not in page.text
    assert 'class="badge integrity-tampered"' in page.text


# --- Round 3, attacker's report on verified reads: a redefined built-in, and a sealed row queued again by hand.


def redefine_sha256_to_hide(url: str, forged: str, original: str) -> None:
    """The superuser's recipe: `pg_catalog.sha256(bytea)` replaced in place (same OID) by an inlinable SQL body
    (`$1` once, not STRICT, so the planner inlines it instead of calling the compiled code) that hashes the
    forged bytes as the original ones."""
    with tamper.superuser_without_triggers(url) as conn:
        conn.execute("CREATE SCHEMA evil")
        conn.execute(
            "CREATE FUNCTION evil.real_sha256(bytea) RETURNS bytea LANGUAGE internal IMMUTABLE STRICT AS 'sha256_bytea'"
        )
        conn.execute("GRANT USAGE ON SCHEMA evil TO PUBLIC")
        conn.execute(
            "CREATE FUNCTION evil.fake(b bytea) RETURNS bytea LANGUAGE plpgsql STABLE AS $$ BEGIN "
            f"IF pg_catalog.position(b, pg_catalog.convert_to('{forged}', 'UTF8')) > 0 THEN "
            "RETURN evil.real_sha256(pg_catalog.convert_to(pg_catalog.replace(pg_catalog.convert_from(b, 'UTF8'), "
            f"'{forged}', '{original}'), 'UTF8')); END IF; RETURN evil.real_sha256(b); END $$"
        )
        conn.execute(
            "CREATE OR REPLACE FUNCTION pg_catalog.sha256(bytea) RETURNS bytea LANGUAGE sql STABLE "
            "CALLED ON NULL INPUT AS $$ SELECT evil.fake($1) $$"
        )


def test_audit_show_reads_every_row_unverifiable_when_sha256_was_redefined_to_hide_an_edit(sealed: Sealed) -> None:
    """Before: the forged output read "verified" (the per-row check trusted the redefined sha256)."""
    forge_output(sealed)
    redefine_sha256_to_hide(sealed.url, FORGED, "0x0000")
    code, out = jarvis(sealed.url, "audit", "show", "--cycle", str(sealed.cycle), "--json")
    assert code == 0, out
    assert FORGED not in out
    shown = json.loads(out)
    assert {entry["integrity"] for entry in shown["timeline"]} == {"unverifiable"}
    assert {entry["detail"] for entry in shown["timeline"]} == {None}
    assert shown["cycle"]["integrity"] == "unverifiable" and shown["cycle"]["goals"] is None
    why = shown["cycle"]["why"]
    assert "sha256" in why and "\n" not in why
    code, text_out = jarvis(sealed.url, "audit", "show", "--cycle", str(sealed.cycle))
    assert code == 0 and FORGED not in text_out and "UNVERIFIABLE: function pg_catalog.sha256(bytea)" in text_out


def test_audit_export_withholds_every_row_when_sha256_was_redefined_to_hide_an_edit(
    sealed: Sealed, auditor: Database
) -> None:
    forge_output(sealed)
    redefine_sha256_to_hide(sealed.url, FORGED, "0x0000")
    rows = list(export_rows(auditor))
    assert len(rows) >= 7 and {row["integrity"] for row in rows} == {"unverifiable"}
    assert all("sha256" in row["why"] and "output" not in row for row in rows)
    spans = list(tool_call_spans(auditor, include_content=True))
    assert {span["attributes"]["jarvis.audit.integrity"] for span in spans} == {"unverifiable"}
    assert all(span["status"]["code"] == "ERROR" and "sha256" in span["status"]["message"] for span in spans)
    assert FORGED not in json.dumps(rows) + json.dumps(spans)
    code, out = jarvis(sealed.url, "audit", "export")
    assert code == 0 and FORGED not in out and '"integrity": "unverifiable"' in out


@pytest.fixture
def aged(sealed: Sealed) -> Sealed:
    """The `sealed` trail as if written five minutes ago and swept by a seal since (setup, not the attack).

    Its rows are dated back and the chain rebuilt by the database's own sealer (from an empty sweep time,
    so nothing is flagged); that seal's sweep time is now, well after the rows.
    """
    with tamper.superuser_without_triggers(sealed.url) as conn:
        for table in ("planning_cycles", "decision_log", "tool_calls"):
            conn.execute(f"UPDATE public.{table} SET created_at = created_at - interval '5 minutes'")
        conn.execute("DELETE FROM public.audit_flags")
        conn.execute("UPDATE public.audit_seal_head SET swept_at = NULL")
    tamper.recompute_chain(sealed.url)
    return sealed


def test_a_sealed_row_edited_and_queued_again_by_hand_reads_tampered_not_unsealed(
    aged: Sealed, auditor: Database
) -> None:
    """Before: it read "unsealed" with the forged value, as if it were new and merely waiting for the sealer."""
    queries = AuditQueries(auditor)
    assert by_id(queries.timeline(aged.cycle))[aged.completions[1]].integrity == "verified"
    changed = aged.completions[1]
    tamper.edit(aged.url, "tool_calls", changed, "output", f'\'{{"tx": "{FORGED}"}}\'')
    assert tamper.delete_chain_links(aged.url, f"row_id = '{changed}'") == 1
    tamper.queue_by_hand(aged.url, "tool_calls", changed)
    entry = by_id(queries.timeline(aged.cycle))[changed]
    assert entry.integrity == "tampered" and entry.detail is None
    (call,) = (call for call in queries.tool_calls(cycle_id=aged.cycle) if call.id == aged.starts[1])
    assert call.integrity == "tampered" and call.output is None
    exported = {row["id"]: row for row in export_rows(auditor)}
    assert exported[str(changed)]["integrity"] == "tampered"
    assert FORGED not in json.dumps(list(exported.values()))
