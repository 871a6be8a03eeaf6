"""The `jarvis` command: every command's happy path and its main error, with trustworthy exit codes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from jarvis.cli.main import app
from jarvis.config import Settings
from jarvis.config.settings import env_var_name
from jarvis.db.migrate import head_revision
from jarvis_testkit import services, tamper
from jarvis_testkit.services import free_port

runner = CliRunner()
HEAD = head_revision()

PLAN = """\
cycles:
  - goals: ["test the cli"]
    steps:
      - decision: "remember something"
        reasoning: {why: "test"}
        tool: remember
        input: {subject: "cli", body: {ok: true}}
      - decision: "fail on purpose"
        tool: fail
        input: {reason: "planned failure"}
"""


def jarvis(*args: str, url: str | None = None, **env: str) -> tuple[int, str]:
    environment = {"DATABASE_URL": url or "", "REDIS_URL": "", "COLUMNS": "200", **env}
    result = runner.invoke(app, list(args), env=environment)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def jarvis_json(*args: str, url: str | None = None, **env: str) -> tuple[int, Any]:
    """Run a --json command: stdout must be JSON alone (logs go to stderr)."""
    environment = {"DATABASE_URL": url or "", "REDIS_URL": "", "COLUMNS": "200", **env}
    result = runner.invoke(app, [*args, "--json"], env=environment)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, json.loads(result.stdout)


@pytest.fixture
def url(isolated_database_url: str) -> str:
    return isolated_database_url


@pytest.fixture
def fresh_url(postgres_admin_url: str) -> Iterator[str]:
    with services.fresh_database(postgres_admin_url, "cli_empty") as empty:
        yield empty


def test_config_prints_masked_settings(url: str) -> None:
    # It used to splice the password in with url.replace("postgres:@", ...): a URL without that spelling
    # (DATABASE_URL=postgresql://postgres@host/...) had no password at all, so nothing could leak.
    with_password = make_url(url).set(password="hunter2").render_as_string(hide_password=False)
    assert "hunter2" in with_password
    code, data = jarvis_json("config", url=with_password)
    assert code == 0
    rows = {row["variable"]: row for row in data}
    assert set(rows) == {env_var_name(field) for field in Settings.model_fields}  # every setting, by its name
    assert "hunter2" not in json.dumps(data)
    assert ":***@" in rows["DATABASE_URL"]["value"] and rows["DATABASE_URL"]["source"] == "environment"


def test_config_error_exits_2_without_traceback() -> None:
    code, out = jarvis("config", JARVIS_POOL_SIZE="many")
    assert code == 2 and "JARVIS_POOL_SIZE" in out and "Traceback" not in out


def test_db_upgrade_on_empty_then_up_to_date(fresh_url: str) -> None:
    code, out = jarvis("db", "upgrade", url=fresh_url)
    assert code == 0 and f"upgraded empty database -> {HEAD}" in out
    code, out = jarvis("db", "upgrade", url=fresh_url)
    assert code == 0 and f"already at {HEAD}" in out
    code, data = jarvis_json("db", "current", url=fresh_url)
    assert data["up_to_date"] is True


def test_db_history_and_downgrade(fresh_url: str) -> None:
    code, data = jarvis_json("db", "history")
    assert code == 0 and data[0]["revision"] == HEAD and data[-1]["down_revision"] is None
    assert jarvis("db", "upgrade", url=fresh_url)[0] == 0
    code, out = jarvis("db", "downgrade", "base", url=fresh_url)
    assert code == 0 and "base" in out
    code, out = jarvis("db", "current", url=fresh_url)
    assert f"none (head is {HEAD})" in out


def test_state_set_get_list_delete(url: str) -> None:
    assert jarvis("state", "set", "cli.key", '{"usd": 12.5}', url=url)[0] == 0
    code, data = jarvis_json("state", "get", "cli.key", url=url)
    assert code == 0 and data["value"] == {"usd": 12.5} and data["version"] == 1
    code, data = jarvis_json("state", "list", "cli.", url=url)
    assert [e["key"] for e in data] == ["cli.key"]
    assert jarvis("state", "delete", "cli.key", url=url)[0] == 0
    assert jarvis("state", "get", "cli.key", url=url)[0] == 4


def test_state_conflict_exits_1(url: str) -> None:
    jarvis("state", "set", "cas", "1", url=url)
    jarvis("state", "set", "cas", "2", url=url)
    code, out = jarvis("state", "set", "cas", "3", "--expect-version", "1", url=url)
    assert code == 1 and "expected version 1 but found version 2" in out


def test_state_invalid_json_exits_2(url: str) -> None:
    code, out = jarvis("state", "set", "k", "{not json", url=url)
    assert code == 2 and "not valid JSON" in out


def test_memory_add_search_stale(url: str) -> None:
    assert jarvis("memory", "add", "asset:eth", '{"chain": "ethereum"}', url=url)[0] == 0
    code, data = jarvis_json("memory", "search", '{"chain": "ethereum"}', url=url)
    assert code == 0 and [f["subject"] for f in data] == ["asset:eth"]
    assert jarvis("memory", "stale", "--subject", "asset:eth", url=url)[0] == 0
    code, data = jarvis_json("memory", "search", '{"chain": "ethereum"}', url=url)
    assert data == []


def test_memory_body_must_be_an_object(url: str) -> None:
    assert jarvis("memory", "add", "x", "[1, 2]", url=url)[0] == 2


def test_run_plan_records_everything_and_verifies(url: str, tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN)
    code, out = jarvis("run", str(plan), "--agent", "cli", url=url)
    assert code == 0, out
    assert "planned failure" in out and "OK:" in out
    code, data = jarvis_json("audit", "show", "--cycle", "last", url=url)
    kinds = [entry["kind"] for entry in data["timeline"]]
    assert kinds == [
        "cycle.opened",
        "decision",
        "tool.started",
        "tool.succeeded",
        "decision",
        "tool.started",
        "tool.failed",
        "cycle.closed",
    ]


def test_bad_plan_file_names_line_and_field(url: str, tmp_path: Path) -> None:
    plan = tmp_path / "bad.yaml"
    plan.write_text(PLAN.replace('input: {reason: "planned failure"}', "input: {reason: 42}"))
    code, out = jarvis("run", str(plan), url=url)
    assert code == 2 and "bad.yaml:10" in out and "cycles.0.steps.1.input.reason" in out


def test_unknown_tool_names_line(url: str, tmp_path: Path) -> None:
    plan = tmp_path / "unknown.yaml"
    plan.write_text(PLAN.replace("tool: fail", "tool: launch_rockets"))
    code, out = jarvis("run", str(plan), url=url)
    assert code == 2 and "unknown.yaml:9" in out and "unknown tool 'launch_rockets'" in out


def test_invalid_yaml_names_line(url: str, tmp_path: Path) -> None:
    plan = tmp_path / "broken.yaml"
    plan.write_text("cycles:\n  - goals: [unclosed\n")
    code, out = jarvis("run", str(plan), url=url)
    assert code == 2 and "broken.yaml:" in out and "not valid YAML" in out


def test_missing_plan_file_exits_2(url: str) -> None:
    code, out = jarvis("run", "/nonexistent/plan.yaml", url=url)
    assert code == 2 and "cannot read plan file" in out


def test_audit_verify_ok_then_each_kind_of_tampering_exits_1(url: str, tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN)
    assert jarvis("run", str(plan), url=url)[0] == 0
    code, report = jarvis_json("audit", "verify", "--full", url=url)
    assert code == 0 and report["ok"] and report["rows_checked"] == 8
    head = report["head_hash"]

    start = [r for r in tamper.rows(url, "tool_calls") if r["tool_name"] == "remember"][0]["id"]
    tamper.edit(url, "tool_calls", start, "input", '\'{"subject": "forged"}\'')
    code, out = jarvis("audit", "verify", "--full", url=url)
    assert code == 1 and f"tool_calls row {start}" in out and "changed" in out
    tamper.edit(url, "tool_calls", start, "input", '\'{"subject": "cli", "body": {"ok": true}}\'')
    assert jarvis("audit", "verify", "--full", url=url)[0] == 0  # restoring the exact content restores the proof

    forged = tamper.forge_tool_call(url)
    code, out = jarvis("audit", "verify", "--full", url=url)
    assert code == 1 and str(forged) in out and "not in the chain" in out
    tamper.delete(url, "tool_calls", forged)

    decision = tamper.rows(url, "decision_log")[0]["id"]
    tamper.delete(url, "decision_log", decision)
    code, out = jarvis("audit", "verify", "--full", "--expect", head, url=url)
    assert code == 1 and str(decision) in out and "deleted" in out


def test_audit_verify_rejects_a_malformed_expected_head(url: str) -> None:
    assert jarvis("audit", "verify", "--expect", "not-hex", url=url)[0] == 2


def test_audit_dangling_lists_and_closes(url: str) -> None:
    from jarvis.config import load_settings
    from jarvis.db import open_database
    from jarvis.db.audit import ToolCallLog

    db = open_database(load_settings(database_url=url), url=url)
    start = ToolCallLog(db).start("stuck", {})
    db.shutdown()
    code, data = jarvis_json("audit", "dangling", "--older-than", "0", url=url)
    assert code == 0 and str(start.id) in [str(d["id"]) for d in data]
    code, out = jarvis("audit", "dangling", "--older-than", "0", "--close", url=url)
    assert code == 0 and "1 closed as abandoned" in out
    assert jarvis("audit", "verify", url=url)[0] == 0


def test_audit_export_jsonl(url: str, tmp_path: Path) -> None:
    """The OpenTelemetry formats (otel, otlp) are tested in tests/otel/test_otel_export.py."""
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN)
    jarvis("run", str(plan), url=url)
    result = runner.invoke(app, ["audit", "export", "--format", "jsonl"], env={"DATABASE_URL": url})
    code, lines = result.exit_code, [json.loads(line) for line in result.stdout.splitlines()]
    assert code == 0 and {line["table"] for line in lines} == {"planning_cycles", "decision_log", "tool_calls"}
    assert jarvis("audit", "export", "--format", "xml", url=url)[0] == 2


def test_audit_tail_prints_recent_rows_once(url: str, tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN)
    jarvis("run", str(plan), url=url)
    result = runner.invoke(app, ["audit", "tail", "--from-db", "--no-follow", "--json"], env={"DATABASE_URL": url})
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.exit_code == 0 and len(events) == 8 and len({e["id"] for e in events}) == 8


def test_doctor_passes_on_a_migrated_database(url: str) -> None:
    code, data = jarvis_json("doctor", url=url)
    checks = {c["name"]: c["status"] for c in data}
    assert code == 0, data
    assert checks["audit tables"] == "ok" and checks["application role"] == "ok"


def test_doctor_reports_disabled_triggers(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ALTER TABLE tool_calls DISABLE TRIGGER tool_calls_append_only")
    code, out = jarvis("doctor", url=url)
    assert code == 1 and "tool_calls_append_only is disabled" in out


def test_unreachable_database_exits_3_with_a_clear_message() -> None:
    dead = f"postgresql://jarvis:s3cret@127.0.0.1:{free_port()}/jarvis"
    code, out = jarvis("state", "get", "x", url=dead, JARVIS_CONNECT_TIMEOUT="1")
    assert code == 3 and "Cannot reach PostgreSQL" in out and "s3cret" not in out and "Traceback" not in out
    code, out = jarvis("doctor", url=dead, JARVIS_CONNECT_TIMEOUT="1")
    assert code == 1 and "s3cret" not in out


def test_demo_runs_end_to_end_and_appends_on_rerun(url: str) -> None:
    code, out = jarvis("demo", url=url)
    assert code == 0, out
    assert "OK: 37 audit rows verified" in out and "exchange API unreachable" in out
    code, out = jarvis("demo", url=url)
    assert code == 0 and "OK: 73 audit rows verified" in out
