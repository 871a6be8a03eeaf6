"""Jarvis behind a transaction-pooling PgBouncer, with agents sharing it and a hostile neighbour on it.

Every count is taken on the server itself, never through the bouncer. The
hostile neighbour is a superuser client of the same bouncer, database and
user as Jarvis (PgBouncer pools per database and user), so with one server
connection in the pool it is certain to leave its session state on the very
connection Jarvis' next transaction gets.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import exc, text
from typer.testing import CliRunner

from jarvis.cli.main import app
from jarvis.config import load_settings
from jarvis.db import Database, open_database
from jarvis.db.audit import ToolCallLog, seal, verify
from jarvis_testkit.pgbouncer import PgBouncer, pgbouncer
from jarvis_testkit.roles import app_role

runner = CliRunner()

AGENTS = 4
CYCLES = 5
CALLS_PER_CYCLE = 4  # 20 tool calls per agent
AGENT_DEADLINE = 30.0
"""Seconds the agents get (each needs well under one); PgBouncer lets a starved client wait 120 s."""


@dataclass
class Run:
    code: int
    output: str
    crashed: BaseException | None


def jarvis(url: str, *args: str, data_dir: Path, **env: str) -> Run:
    environment = {
        "DATABASE_URL": url,
        "REDIS_URL": "",
        "COLUMNS": "200",
        "JARVIS_DATA_DIR": str(data_dir),
        **env,
    }
    result = runner.invoke(app, list(args), env=environment)
    crashed = result.exception if result.exception and not isinstance(result.exception, SystemExit) else None
    return Run(result.exit_code, result.output, crashed)


def server_rows(url: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Read on the server directly (the URL is the database's own, not the bouncer's)."""
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        return conn.execute(query, params).fetchall()


def rows_per_call(url: str, call_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    """How many tool_calls rows (start + completion) each call has, counted on the server."""
    found = dict(
        server_rows(
            url,
            "SELECT coalesce(parent_id, id), count(*) FROM public.tool_calls "
            "WHERE coalesce(parent_id, id) = ANY(%s) GROUP BY 1",
            (call_ids,),
        )
    )
    return {call_id: int(found.get(call_id, 0)) for call_id in call_ids}


def verify_on_server(url: str) -> list[str]:
    """The problems `verify` finds, read as the database's auditor role on the server directly."""
    database = open_database(load_settings(database_url=url), url=url, role="auditor")
    try:
        report = verify(database)
    finally:
        database.shutdown()
    return [str(problem) for problem in report.problems]


def seal_through(url: str) -> None:
    database = open_database(load_settings(database_url=url), url=url)
    try:
        seal(database, wait=10)
    finally:
        database.shutdown()


@pytest.fixture(scope="module")
def bouncer(postgres_admin_url: str) -> Iterator[PgBouncer]:
    """Transaction pooling over two server connections, shared by every test of the module."""
    with pgbouncer(postgres_admin_url, pool_mode="transaction", pool_size=2) as running:
        yield running


@pytest.fixture
def single_connection_bouncer(postgres_admin_url: str) -> Iterator[PgBouncer]:
    """One server connection, fresh per test: the hostile neighbour's state is certain to reach Jarvis."""
    with pgbouncer(postgres_admin_url, pool_mode="transaction", pool_size=1) as running:
        yield running


# --- the CLI through the bouncer


def test_demo_through_a_transaction_pooler_exits_0_and_its_trail_verifies(
    bouncer: PgBouncer, isolated_database_url: str, tmp_path: Path
) -> None:
    through = bouncer.url_for(isolated_database_url)
    demo = jarvis(through, "demo", data_dir=tmp_path)
    assert demo.crashed is None, repr(demo.crashed)
    assert demo.code == 0, demo.output
    assert any(line.startswith("OK:") for line in demo.output.splitlines()), demo.output
    # The same trail, checked on the server directly (and again through the bouncer, with its checkpoints).
    assert verify_on_server(isolated_database_url) == []
    again = jarvis(through, "audit", "verify", data_dir=tmp_path)
    assert again.crashed is None and again.code == 0, again.output
    assert server_rows(isolated_database_url, "SELECT count(*) FROM public.audit_pending") == [(0,)]


# --- agents sharing the pool

# One agent process, as deployed: Agent.start (which migrates, takes its lease, closes dangling work),
# CYCLES planning cycles of CALLS_PER_CYCLE audited tool calls, a seal per cycle; each call id on its own line.
AGENT_PROCESS = f"""
import sys, time
from jarvis.agent import Agent
from jarvis.config import load_settings
url, name, start_at = sys.argv[1], sys.argv[2], float(sys.argv[3])
time.sleep(max(0.0, start_at - time.time()))
agent = Agent.start(load_settings(database_url=url), name=name)
try:
    for cycle in range({CYCLES}):
        cycle_id = agent.planning.open_cycle([name + " cycle " + str(cycle)])
        for number in range({CALLS_PER_CYCLE}):
            with agent.tool_calls.record("probe", {{"n": number}}, cycle_id=cycle_id) as call:
                print(call.id, flush=True)
                call.succeed({{"agent": name, "n": number}})
        agent.planning.close_cycle(cycle_id, "succeeded", {{"calls": {CALLS_PER_CYCLE}}})
        agent.seal()
finally:
    agent.shutdown()
"""


@dataclass
class AgentRun:
    name: str
    process: subprocess.Popen[str]
    call_ids: list[uuid.UUID] = field(default_factory=list)
    stderr: str = ""


def server_sessions(server_url: str) -> str:
    """What each server connection of the database is doing (for a stalled run's failure message)."""
    rows = server_rows(
        server_url,
        "SELECT pid, state, left(query, 80) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid() ORDER BY pid",
    )
    return "; ".join(f"{pid} {state}: {query}" for pid, state, query in rows) or "none"


def run_agents(url: str, server_url: str) -> list[AgentRun]:
    """AGENTS agent processes started at the same moment; each must finish within AGENT_DEADLINE."""
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "REDIS_URL": ""}
    start_at = str(time.time() + 2.0)
    runs = []
    for number in range(AGENTS):
        name = f"pooled-{number}-{uuid.uuid4().hex[:6]}"
        process = subprocess.Popen(
            [sys.executable, "-c", AGENT_PROCESS, url, name, start_at],
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        runs.append(AgentRun(name, process))
    deadline = time.monotonic() + AGENT_DEADLINE
    stuck: list[str] = []
    holding = ""
    for run in runs:
        try:
            out, run.stderr = run.process.communicate(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            holding = holding or server_sessions(server_url)
            run.process.kill()
            out, run.stderr = run.process.communicate()
            stuck.append(run.name)
        run.call_ids = [uuid.UUID(line) for line in out.split()]
    progress = {run.name: len(run.call_ids) for run in runs}
    assert not stuck, (
        f"agents {stuck} did not finish within {AGENT_DEADLINE:g} s; tool calls recorded: {progress}; "
        f"the server connections meanwhile: {holding}"
    )
    failed = {run.name: run.stderr.strip().splitlines()[-1:] for run in runs if run.process.returncode != 0}
    assert not failed, failed
    return runs


def assert_every_call_has_two_rows(server_url: str, runs: list[AgentRun]) -> None:
    call_ids = [call_id for run in runs for call_id in run.call_ids]
    assert len(call_ids) == AGENTS * CYCLES * CALLS_PER_CYCLE
    counts = rows_per_call(server_url, call_ids)
    wrong = {str(call_id): count for call_id, count in counts.items() if count != 2}
    assert not wrong, f"calls without exactly a start and a completion row: {wrong}"


def test_four_agents_record_every_call_twice_through_one_server_connection(
    postgres_admin_url: str, isolated_database_url: str
) -> None:
    """A running agent holds no server connection between statements (its liveness is a lease row, issue 22
    B10): four agents share one, every call lands as exactly two rows and the trail verifies."""
    with pgbouncer(postgres_admin_url, pool_mode="transaction", pool_size=1) as single:
        runs = run_agents(single.url_for(isolated_database_url), isolated_database_url)
    assert_every_call_has_two_rows(isolated_database_url, runs)
    assert verify_on_server(isolated_database_url) == []


# --- a hostile neighbour on the same pooled server connection


HostileState = Callable[[psycopg.Connection, str], None]


def temp_tables_first_in_the_path(conn: psycopg.Connection, app: str) -> None:
    for table in ("tool_calls", "audit_pending", "audit_chain", "trail_info", "alembic_version"):
        conn.execute(
            sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} (LIKE public.{})").format(
                sql.Identifier(table), sql.Identifier(table)
            )
        )
    conn.execute("SET search_path = pg_temp, public")


def search_path_pg_temp_first(conn: psycopg.Connection, app: str) -> None:
    conn.execute("SET search_path = pg_temp, public")


def role_set_for_the_session(conn: psycopg.Connection, app: str) -> None:
    conn.execute("SET ROLE pg_read_all_data")


def session_authorization_of_an_app_member(conn: psycopg.Connection, app: str) -> None:
    """A login that may itself SET ROLE app: the most a neighbour can leave that still lets Jarvis work."""
    login = f"{app}_member"[:63]
    conn.execute(sql.SQL("SET SESSION AUTHORIZATION {}").format(sql.Identifier(login)))


def prepared_statements_under_psycopgs_names(conn: psycopg.Connection, app: str) -> None:
    for number in range(4):
        conn.execute(f"DEALLOCATE ALL; PREPARE _pg3_{number} AS SELECT {number}")


def replication_role_replica(conn: psycopg.Connection, app: str) -> None:
    """Superuser-only: ordinary triggers stop firing in this session (the stamping and sealing queue ones)."""
    conn.execute("SET session_replication_role = replica")


HOSTILE_STATES: dict[str, HostileState] = {
    "temp tables and search_path = pg_temp, public": temp_tables_first_in_the_path,
    "search_path = pg_temp, public": search_path_pg_temp_first,
    "SET ROLE": role_set_for_the_session,
    "SET SESSION AUTHORIZATION": session_authorization_of_an_app_member,
    "PREPARE _pg3_N": prepared_statements_under_psycopgs_names,
    "session_replication_role = replica": replication_role_replica,
}


@pytest.fixture
def app_member(postgres_admin_url: str, isolated_database_url: str) -> Iterator[str]:
    """A NOLOGIN member of the database's app role, for SET SESSION AUTHORIZATION."""
    app = app_role(isolated_database_url)
    member = f"{app}_member"[:63]
    with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} IN ROLE {}").format(sql.Identifier(member), sql.Identifier(app)))
    try:
        yield member
    finally:
        with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(member)))


@dataclass
class Interleaved:
    call_ids: list[uuid.UUID]
    refused: list[str]
    neighbour_backend: int = 0
    jarvis_backends: set[int] = field(default_factory=set)


def interleave(jarvis_url: str, hostile_url: str, app: str, hostile: HostileState, rounds: int = 10) -> Interleaved:
    """Jarvis records tool calls; before each start row and before each completion the neighbour acts again."""
    database = open_database(load_settings(database_url=jarvis_url), url=jarvis_url)
    log = ToolCallLog(database)
    outcome = Interleaved([], [])
    try:
        with psycopg.connect(hostile_url, autocommit=True, prepare_threshold=None, connect_timeout=5) as neighbour:
            row = neighbour.execute("SELECT pg_backend_pid()").fetchone()
            outcome.neighbour_backend = int(row[0]) if row else 0
            for number in range(rounds):
                hostile(neighbour, app)
                try:
                    with log.record("hostile_probe", {"n": number}) as call:
                        outcome.call_ids.append(call.id)  # the tool body runs: its rows must all exist
                        hostile(neighbour, app)
                        call.succeed({"n": number})
                except Exception as error:
                    outcome.refused.append(f"{type(error).__name__}: {error}")
                with database.begin() as conn:
                    outcome.jarvis_backends.add(int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one()))
        seal(database, wait=10)
    finally:
        database.shutdown()
    return outcome


@pytest.mark.parametrize("state", list(HOSTILE_STATES), ids=list(HOSTILE_STATES))
def test_session_state_left_by_a_pooled_neighbour_loses_no_audit_row(
    state: str, single_connection_bouncer: PgBouncer, isolated_database_url: str, app_member: str
) -> None:
    app = app_role(isolated_database_url)
    through = single_connection_bouncer.url_for(isolated_database_url)
    outcome = interleave(through, through, app, HOSTILE_STATES[state])
    # One server connection: every Jarvis transaction ran where the neighbour had just left its state.
    assert outcome.jarvis_backends == {outcome.neighbour_backend}
    assert outcome.refused == [], f"Jarvis' appends were refused after the neighbour's {state}: {outcome.refused}"
    counts = rows_per_call(isolated_database_url, outcome.call_ids)
    assert len(counts) == 10 and set(counts.values()) == {2}, counts
    # Nothing went to the neighbour's temp tables; everything is linked into the chain.
    assert server_rows(isolated_database_url, "SELECT count(*) FROM public.audit_pending") == [(0,)]
    assert verify_on_server(isolated_database_url) == []


def test_jarvis_writes_through_the_pooler_as_the_app_role(
    single_connection_bouncer: PgBouncer, isolated_database_url: str
) -> None:
    """A superuser URL through the bouncer, after a neighbour left SET ROLE behind: still the app role."""
    through = single_connection_bouncer.url_for(isolated_database_url)
    app = app_role(isolated_database_url)
    with psycopg.connect(through, autocommit=True, prepare_threshold=None) as neighbour:
        neighbour.execute("SET ROLE pg_write_all_data")
        database: Database = open_database(load_settings(database_url=through), url=through)
        try:
            ToolCallLog(database).start("probe", {"n": 1})
            with database.begin() as conn:
                assert conn.execute(text("SELECT current_user")).scalar() == app
            with pytest.raises(exc.ProgrammingError) as refused:
                with database.begin() as conn:
                    conn.execute(text("UPDATE tool_calls SET status = 'x'"))
            # Refused by privileges (the app role has no UPDATE), not by the trigger a superuser would reach.
            assert isinstance(refused.value.orig, psycopg.errors.InsufficientPrivilege), refused.value
            with pytest.raises(exc.ProgrammingError):
                with database.begin() as conn:
                    conn.execute(text("DELETE FROM public.audit_chain"))
        finally:
            database.shutdown()
        # The neighbour's own session state is still its own: Jarvis' role ended with each transaction.
        assert neighbour.execute("SELECT current_user").fetchone() == ("pg_write_all_data",)
    assert server_rows(isolated_database_url, "SELECT count(*) FROM public.tool_calls WHERE status = 'x'") == [(0,)]


def test_nothing_is_prepared_through_the_pooler(
    single_connection_bouncer: PgBouncer, isolated_database_url: str
) -> None:
    """Behind PgBouncer a named prepared statement would outlive Jarvis' transaction on a shared connection."""
    through = single_connection_bouncer.url_for(isolated_database_url)
    database = open_database(load_settings(database_url=through), url=through)
    try:
        log = ToolCallLog(database)
        for n in range(8):  # well past psycopg's automatic threshold (5)
            with log.record("probe", {"n": n}) as call:
                call.succeed({"n": n})
    finally:
        database.shutdown()
    with psycopg.connect(through, autocommit=True, prepare_threshold=None) as neighbour:  # the one server connection
        assert neighbour.execute("SELECT count(*) FROM pg_catalog.pg_prepared_statements").fetchone() == (0,)
