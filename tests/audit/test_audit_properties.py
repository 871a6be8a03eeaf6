"""Hypothesis against the real database: random interleavings never change history, any tampering is caught."""

from __future__ import annotations

import string
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from jarvis.config import Settings
from jarvis.db import Database, open_database
from jarvis.db.audit import (
    AuditRuleViolation,
    CycleAlreadyOpenError,
    CycleClosedError,
    PlanningLog,
    ToolCallAlreadyCompletedError,
    ToolCallLog,
    ToolCallStart,
)
from jarvis.db.base import AUDIT_TABLES, COMPLETION_STATUSES, CompletionStatus
from jarvis_testkit import services, tamper
from jarvis_testkit.roles import app_role
from jarvis_testkit.trail import seal_and_verify

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.text(max_size=20).filter(lambda s: "\x00" not in s),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=5).filter(lambda s: "\x00" not in s), inner, max_size=3),
    max_leaves=8,
)


@contextmanager
def cloned(admin_url: str, template_url: str, app_settings: Settings) -> Iterator[tuple[str, Database]]:
    url = services.clone_database(admin_url, template_url, "prop")
    db = open_database(app_settings, url=url)
    try:
        yield url, db
    finally:
        db.shutdown()
        services.drop_database(admin_url, url)


def snapshot(url: str) -> dict[str, dict[uuid.UUID, dict[str, Any]]]:
    return {table: {row["id"]: row for row in tamper.rows(url, table)} for table in AUDIT_TABLES}


class AuditTrailMachine(RuleBasedStateMachine):
    """Random starts, completions, cycles, decisions and refused mutations on a fresh clone of the schema.

    Each run gets its own database (an ExitStack closes it in `teardown`), so runs never share rows.
    """

    def __init__(self, admin_url: str, template_url: str, app_settings: Settings) -> None:
        super().__init__()
        self._resources = ExitStack()
        self.url, self.db = self._resources.enter_context(cloned(admin_url, template_url, app_settings))
        self.tools = ToolCallLog(self.db)
        self.planning = PlanningLog(self.db, agent="prop")
        self.open_starts: list[ToolCallStart] = []
        self.completed: list[ToolCallStart] = []
        self.completion_ids: list[uuid.UUID] = []
        self.cycle: uuid.UUID | None = None
        self.seen: dict[str, dict[uuid.UUID, dict[str, Any]]] = {t: {} for t in AUDIT_TABLES}

    def teardown(self) -> None:
        self._resources.close()

    @rule(name=st.sampled_from(["quote", "transfer", "sleep"]), payload=json_values)
    def start_tool_call(self, name: str, payload: Any) -> None:
        self.open_starts.append(self.tools.start(name, payload, cycle_id=self.cycle))

    @precondition(lambda self: self.open_starts)
    @rule(data=st.data(), status=st.sampled_from(COMPLETION_STATUSES), output=json_values)
    def complete_tool_call(self, data: st.DataObject, status: CompletionStatus, output: Any) -> None:
        start = self.open_starts.pop(data.draw(st.integers(0, len(self.open_starts) - 1)))
        self.completion_ids.append(self.tools.record_completion(start, status, output=output))
        self.completed.append(start)

    @precondition(lambda self: self.completed)
    @rule(data=st.data())
    def double_completion_fails(self, data: st.DataObject) -> None:
        start = data.draw(st.sampled_from(self.completed))
        with pytest.raises(ToolCallAlreadyCompletedError):
            self.tools.record_completion(start, "failed", error="second")

    @precondition(lambda self: self.completion_ids)
    @rule(data=st.data())
    def completion_of_a_completion_fails(self, data: st.DataObject) -> None:
        completion = data.draw(st.sampled_from(self.completion_ids))
        with pytest.raises(AuditRuleViolation, match="must point at a start row"):
            self.tools.record_completion(ToolCallStart(id=completion, tool_name="x", cycle_id=None), "succeeded")

    @precondition(lambda self: self.cycle is None)
    @rule(goals=json_values)
    def open_cycle(self, goals: Any) -> None:
        self.cycle = self.planning.open_cycle(goals)

    @precondition(lambda self: self.cycle is not None)
    @rule(goals=json_values)
    def second_open_cycle_fails(self, goals: Any) -> None:
        with pytest.raises(CycleAlreadyOpenError):
            self.planning.open_cycle(goals)

    @precondition(lambda self: self.cycle is not None)
    @rule(decision=st.text(min_size=1, max_size=30).filter(lambda s: "\x00" not in s), reasoning=json_values)
    def record_decision(self, decision: str, reasoning: Any) -> None:
        assert self.cycle is not None
        self.planning.record_decision(self.cycle, decision, reasoning)

    @precondition(lambda self: self.cycle is not None)
    @rule(status=st.sampled_from(COMPLETION_STATUSES), outcomes=json_values)
    def close_cycle(self, status: CompletionStatus, outcomes: Any) -> None:
        assert self.cycle is not None
        closed, self.cycle = self.cycle, None
        self.planning.close_cycle(closed, status, outcomes)
        with pytest.raises(CycleClosedError):
            self.planning.record_decision(closed, "late", {})

    @rule(
        table=st.sampled_from(AUDIT_TABLES),
        statement=st.sampled_from(["UPDATE {t} SET created_at = now()", "DELETE FROM {t}", "TRUNCATE {t} CASCADE"]),
    )
    def mutation_as_the_application_fails(self, table: str, statement: str) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"SET ROLE {app_role(self.url)}")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement.format(t=table))

    @invariant()
    def no_existing_row_ever_changes(self) -> None:
        current = snapshot(self.url)
        for table, rows in self.seen.items():
            for row_id, row in rows.items():
                assert current[table].get(row_id) == row, f"{table} {row_id} changed"
        self.seen = current

    @invariant()
    def every_completion_has_exactly_one_start(self) -> None:
        for table in ("tool_calls", "planning_cycles"):
            rows = self.seen[table]
            parents = [row["parent_id"] for row in rows.values() if row["parent_id"] is not None]
            assert len(parents) == len(set(parents))
            assert all(rows[parent]["parent_id"] is None for parent in parents)

    @invariant()
    def chain_verifies(self) -> None:
        report = seal_and_verify(self.db)
        assert report.ok, report.summary()


def test_random_interleavings_never_change_history(
    postgres_admin_url: str, migrated_template_url: str, settings: Settings
) -> None:
    # Hypothesis documents the factory as "a class or a function" but annotates it as type[...].
    run_state_machine_as_test(
        lambda: AuditTrailMachine(postgres_admin_url, migrated_template_url, settings),  # type: ignore[arg-type]
        settings=hypothesis_settings(
            max_examples=8,
            stateful_step_count=15,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )


MUTATIONS = ["edit", "delete", "insert", "swap"]


@hypothesis_settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(
    mutation=st.sampled_from(MUTATIONS),
    target=st.integers(0, 1000),
    column=st.sampled_from(["input", "tool_name"]),
    value=st.text(alphabet=string.ascii_letters + string.digits + " -_", min_size=1, max_size=8),
)
def test_any_single_superuser_mutation_makes_verify_fail(
    postgres_admin_url: str,
    migrated_template_url: str,
    settings: Settings,
    mutation: str,
    target: int,
    column: str,
    value: str,
) -> None:
    with cloned(postgres_admin_url, migrated_template_url, settings) as (url, db):
        tools = ToolCallLog(db)
        starts = [tools.start("transfer", {"n": i}) for i in range(4)]
        for start in starts[:3]:
            tools.record_completion(start, "succeeded", output={"n": start.tool_name})
        assert seal_and_verify(db).ok
        rows = tamper.rows(url, "tool_calls")
        victim = rows[target % len(rows)]
        if mutation == "edit":
            if column == "input" and victim["parent_id"] is not None:
                column = "output"  # a completion has no input (a CHECK constraint even superusers meet)
            new_value = f'\'{{"forged": "{value}"}}\'' if column != "tool_name" else f"'{value}~'"
            tamper.edit(url, "tool_calls", victim["id"], column, new_value)
        elif mutation == "delete":
            children = [r["id"] for r in rows if r["parent_id"] == victim["id"]]
            for child in children:
                tamper.delete(url, "tool_calls", child)
            tamper.delete(url, "tool_calls", victim["id"])
        elif mutation == "insert":
            tamper.forge_tool_call(url, created_at_sql=f"'{victim['created_at'].isoformat()}'::timestamptz")
        else:
            other = rows[(target + 1) % len(rows)]
            starts_only = victim["parent_id"] is None and other["parent_id"] is None
            tamper.swap_contents(url, "tool_calls", victim["id"], other["id"], "input" if starts_only else "created_at")
        assert not seal_and_verify(db).ok
