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
    return next(row["id"] for row in rows if row["parent_id"] == trail.cycle)


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
