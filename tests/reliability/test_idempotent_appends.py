"""Ambiguous failures: the connection dies around COMMIT, the append is retried, and no row is lost or doubled."""

from __future__ import annotations

import pytest

from jarvis.config import Settings
from jarvis.db import open_database
from jarvis.db.audit import PlanningLog, ToolCallLog
from jarvis_testkit import tamper
from jarvis_testkit.faults import dropping_proxy
from jarvis_testkit.trail import seal_and_verify


@pytest.mark.parametrize("moment", ["after_commit", "before_send"])
def test_a_dropped_connection_around_commit_neither_loses_nor_duplicates_the_row(
    isolated_database_url: str, settings: Settings, moment: str
) -> None:
    with dropping_proxy(isolated_database_url) as (proxy, url):
        database = open_database(settings, url=url)
        try:
            tools = ToolCallLog(database)
            if moment == "after_commit":
                proxy.drop_after_commit()
            else:
                proxy.drop_before_send()
            with tools.record("payment", {"usd": 100}) as call:
                call.succeed({"tx": "0xabc"})
            assert proxy.drops == 1  # the fault really happened
        finally:
            database.shutdown()
    rows = tamper.rows(isolated_database_url, "tool_calls")
    assert [(r["id"], r["status"]) for r in rows] == [(call.id, "started"), (rows[1]["id"], "succeeded")]
    print(f"RELIABILITY idempotent-append moment={moment} drops={proxy.drops} rows=2 lost=0 duplicates=0")


def test_every_kind_of_audit_row_survives_a_post_commit_drop(isolated_database_url: str, settings: Settings) -> None:
    with dropping_proxy(isolated_database_url) as (proxy, url):
        database = open_database(settings, url=url)
        try:
            planning = PlanningLog(database, agent="dropper")
            tools = ToolCallLog(database)
            proxy.drop_after_commit()
            cycle = planning.open_cycle(["pay"])
            proxy.drop_after_commit()
            planning.record_decision(cycle, "pay now", {"why": "due"})
            proxy.drop_after_commit()
            start = tools.start("payment", {"usd": 5}, cycle_id=cycle)
            proxy.drop_after_commit()
            tools.record_completion(start, "succeeded", output={"ok": True})
            proxy.drop_after_commit()
            planning.close_cycle(cycle, "succeeded", {"paid": True})
            report = seal_and_verify(database)
        finally:
            database.shutdown()
    assert proxy.drops == 5
    counts = {t: len(tamper.rows(isolated_database_url, t)) for t in ("planning_cycles", "decision_log", "tool_calls")}
    assert counts == {"planning_cycles": 2, "decision_log": 1, "tool_calls": 2}
    assert report.ok, report.summary()
    print(f"RELIABILITY idempotent-append all-kinds drops={proxy.drops} rows=5 lost=0 duplicates=0")
