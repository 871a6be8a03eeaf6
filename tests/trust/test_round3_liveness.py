"""Round 3 (issue 22, B10 and B11): an agent's liveness is a lease row renewed by heartbeat.

It used to be an advisory lock held in a transaction kept open for the agent's life: PostgreSQL's
`idle_in_transaction_session_timeout` ended that session silently (and `jarvis audit dangling
--close` then closed a live agent's running call as abandoned), a transaction pooler with one
server connection had that connection pinned (`jarvis demo` stalled until `query_wait_timeout`),
and any login, even a SELECT-only auditor, could take the lock's key and stop the agent starting.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row
from typer.testing import CliRunner

from jarvis.agent import Agent, AgentAlreadyRunningError
from jarvis.cli.main import app
from jarvis.config import Settings, load_settings
from jarvis.db import open_database
from jarvis.db.audit import PlanningLog, ToolCallLog, verify
from jarvis.db.audit.dangling import sweep_dangling
from jarvis.db.liveness import Lease
from jarvis.db.urls import database_name
from jarvis_testkit import tamper
from jarvis_testkit.pgbouncer import pgbouncer
from jarvis_testkit.processes import jarvis_process, wait_for
from jarvis_testkit.roles import auditor_role

SHORT_TTL = 5.0
"""JARVIS_LEASE_TTL for the crash test: long enough that a loaded machine's heartbeat (every 1.7 s) keeps it."""

DEMO_DEADLINE = 90.0
"""Seconds `jarvis demo` gets through the bouncer (it needs a few); PgBouncer gives up on a stalled client at 120."""


def server_rows(url: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Read on the server directly, as the superuser of the test URL."""
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(query, params).fetchall()


def server_now(url: str) -> datetime:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT clock_timestamp()").fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


def agent_settings(url: str, data_dir: Path, **overrides: Any) -> Settings:
    return load_settings(database_url=url, redis_url=None, data_dir=data_dir, **overrides)


@pytest.fixture
def auditor_login(postgres_admin_url: str, isolated_database_url: str) -> Iterator[str]:
    """A LOGIN member of the database's SELECT-only auditor role, as production creates one; dropped after."""
    login = f"audit_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN IN ROLE {}").format(
                sql.Identifier(login), sql.Identifier(auditor_role(isolated_database_url))
            )
        )
    try:
        yield login
    finally:
        with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(login)))


# --- B10: liveness holds no transaction open


def test_a_running_agents_open_call_survives_dangling_close_under_idle_in_transaction_timeout(
    postgres_admin_url: str, isolated_database_url: str, tmp_path: Path
) -> None:
    """With `idle_in_transaction_session_timeout = 3s`, PostgreSQL ended the session holding the agent's
    instance lock after 3 s; `jarvis audit dangling --close` then took the lock and marked the live
    agent's running call 'abandoned' (its real outcome then failed: 'already has an outcome')."""
    url = isolated_database_url
    with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("ALTER DATABASE {} SET idle_in_transaction_session_timeout = '3s'").format(
                sql.Identifier(database_name(url))
            )
        )
    agent = Agent.start(agent_settings(url, tmp_path), name="busy", migrate=False)
    try:
        cycle = agent.planning.open_cycle(["wire the rent"])
        call = agent.tool_calls.start("transfer_funds", {"amount": 1200}, cycle_id=cycle)  # the tool is running now
        # A session idle in a transaction, to see the setting at work: PostgreSQL ends it after 3 s.
        idle = psycopg.connect(url)
        try:
            row = idle.execute("SELECT pg_backend_pid()").fetchone()
            assert row is not None
            idle_pid = row[0]
            since = server_now(url)
            wait_for(
                lambda: server_now(url) >= since + timedelta(seconds=4)
                and server_rows(url, "SELECT 1 FROM pg_stat_activity WHERE pid = %s", (idle_pid,)) == [],
                what="4 s by the database's clock, and the idle-in-transaction session ended",
            )
        finally:
            idle.close()
        swept = CliRunner().invoke(
            app,
            ["audit", "dangling", "--close", "--older-than", "0"],
            env={"DATABASE_URL": url, "REDIS_URL": "", "JARVIS_DATA_DIR": str(tmp_path), "COLUMNS": "200"},
        )
        assert swept.exit_code == 0, swept.output
        open_calls = [r for r in tamper.rows(url, "tool_calls") if r["parent_id"] == call.id]
        assert open_calls == [], f"the live agent's running call was closed: {open_calls}; {swept.output}"
        assert "skipped 2 start row(s) of running agent(s) busy" in swept.output, swept.output
        agent.tool_calls.record_completion(call, "succeeded", output={"ok": True}, duration_ms=1)
        agent.planning.close_cycle(cycle, "succeeded", {"steps": 1})
    finally:
        agent.shutdown()


def test_demo_through_a_transaction_pooler_with_one_server_connection_exits_0_and_verifies(
    postgres_admin_url: str, isolated_database_url: str, tmp_path: Path
) -> None:
    """The instance lock's transaction pinned the pool's only server connection for the agent's life:
    every other statement of the demo waited for it until PgBouncer's query_wait_timeout."""
    with pgbouncer(postgres_admin_url, pool_mode="transaction", pool_size=1) as bouncer:
        demo = jarvis_process(
            "demo", database_url=bouncer.url_for(isolated_database_url), JARVIS_DATA_DIR=str(tmp_path)
        )
        try:
            out, err = demo.communicate(timeout=DEMO_DEADLINE)
        except subprocess.TimeoutExpired:
            demo.kill()
            out, err = demo.communicate()
            pytest.fail(
                f"jarvis demo did not finish within {DEMO_DEADLINE:g} s through a 1-connection pool: {err[-800:]}"
            )
    assert demo.returncode == 0, f"{out[-800:]}\n{err[-800:]}"
    auditor = open_database(
        load_settings(database_url=isolated_database_url), url=isolated_database_url, role="auditor"
    )
    try:
        report = verify(auditor)
    finally:
        auditor.shutdown()
    assert report.ok and report.head_seq > 0, report.summary()


AGENT_PROCESS = """
import sys
from jarvis.agent import Agent
from jarvis.config import load_settings
url, name, data_dir, ttl = sys.argv[1:5]
agent = Agent.start(load_settings(database_url=url, redis_url=None, data_dir=data_dir, lease_ttl=float(ttl)),
                    name=name, migrate=False)
print("running", flush=True)
sys.stdin.read()  # until the test kills it
"""


def test_a_second_instance_refuses_while_the_first_runs_and_starts_once_a_killed_ones_lease_expired(
    isolated_database_url: str, tmp_path: Path
) -> None:
    url = isolated_database_url
    first = subprocess.Popen(
        [sys.executable, "-c", AGENT_PROCESS, url, "single", str(tmp_path), str(SHORT_TTL)],
        env={"PYTHONPATH": ":".join(sys.path), "PATH": "/usr/bin:/bin"},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert first.stdout is not None
        assert first.stdout.readline().strip() == "running", first.stderr.read() if first.stderr else ""
        settings = agent_settings(url, tmp_path, lease_ttl=SHORT_TTL)
        with pytest.raises(AgentAlreadyRunningError, match="single"):
            Agent.start(settings, name="single", migrate=False)
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=30)
    ((expires_at,),) = server_rows(url, "SELECT expires_at FROM public.agent_leases WHERE agent = 'single'")
    second = Agent(open_database(settings, url=url), name="single")
    try:
        started_at: list[datetime] = []

        def takes_over() -> bool:
            try:
                second.take_instance_lock()
            except AgentAlreadyRunningError:
                return False
            started_at.append(server_now(url))
            return True

        wait_for(takes_over, what="the killed agent's lease to expire and the second instance to start")
        assert started_at[0] >= expires_at  # not before: the dead holder's lease was honoured to its end
    finally:
        second.shutdown()


# --- B11: only the app role can take a lease; no other login can block one


def test_an_auditor_login_holding_the_old_instance_lock_key_does_not_stop_the_agent(
    isolated_database_url: str, auditor_login: str, tmp_path: Path
) -> None:
    """An advisory lock needs no privilege: a SELECT-only auditor session took
    `hashtext('jarvis.agent:' || name)` and the agent refused to start ("already running")."""
    with psycopg.connect(isolated_database_url, user=auditor_login, autocommit=True) as auditor:
        auditor.execute("SELECT pg_advisory_lock(hashtext('jarvis.agent:' || 'victim'))")
        agent = Agent.start(agent_settings(isolated_database_url, tmp_path), name="victim", migrate=False)
        agent.shutdown()


def test_an_auditor_login_can_neither_take_nor_write_an_agents_lease(
    isolated_database_url: str, auditor_login: str, tmp_path: Path
) -> None:
    with psycopg.connect(isolated_database_url, user=auditor_login, autocommit=True) as auditor:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            auditor.execute("SELECT public.jarvis_take_lease('victim', gen_random_uuid(), 3600)")
        for statement in (
            "INSERT INTO public.agent_leases VALUES ('victim', '\\x00', now(), now() + interval '1 day', 86400)",
            "UPDATE public.agent_leases SET expires_at = 'infinity'",
            "SELECT 1 FROM public.agent_leases FOR KEY SHARE",  # a row lock would make the agent's take wait
            "LOCK TABLE public.agent_leases IN ROW EXCLUSIVE MODE",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege), auditor.transaction():
                auditor.execute(statement)
        agent = Agent.start(agent_settings(isolated_database_url, tmp_path), name="victim", migrate=False)
        agent.shutdown()


def test_the_app_role_writes_leases_only_through_the_lease_functions(isolated_database_url: str) -> None:
    """The lease table is mutable state, but no role writes it directly: only the SECURITY DEFINER functions."""
    with tamper.as_app_role(isolated_database_url) as app_role:
        for statement in (
            "INSERT INTO public.agent_leases VALUES ('victim', '\\x00', now(), now() + interval '1 day', 86400)",
            "UPDATE public.agent_leases SET expires_at = 'infinity'",
            "DELETE FROM public.agent_leases",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                app_role.execute(statement)


# --- B10, second pass: the holder id is the holder's secret; a lease lapses only by its holder's silence


def stolen_holders(app_role: psycopg.Connection[Any]) -> list[tuple[str, uuid.UUID]]:
    """Every (agent, holder id) an app-role login can read from the lease table: what the attack needs."""
    try:
        with app_role.transaction():
            rows = app_role.cursor(row_factory=dict_row).execute("SELECT * FROM public.agent_leases").fetchall()
    except psycopg.errors.InsufficientPrivilege:
        return []
    return [(row["agent"], row["holder"]) for row in rows if isinstance(row.get("holder"), uuid.UUID)]


def test_an_app_role_login_cannot_read_a_lease_holder_to_expire_a_live_agents_lease(
    isolated_database_url: str, tmp_path: Path
) -> None:
    """The app role is a member of the auditor role, which could read `holder`: any app-role login renewed a
    live agent's lease with a time to live of 1 ms, and `jarvis audit dangling --close` then closed the
    agent's running payment as abandoned (its real outcome then failed: 'already has an outcome')."""
    url = isolated_database_url
    agent = Agent.start(agent_settings(url, tmp_path, lease_ttl=30.0), name="victim", migrate=False)
    try:
        cycle = agent.planning.open_cycle(["pay the invoice"])
        call = agent.tool_calls.start("transfer_funds", {"usd": 5}, cycle_id=cycle)  # the tool is running now
        with tamper.as_app_role(url) as app_role:
            for name, holder in stolen_holders(app_role):
                app_role.execute("SELECT public.jarvis_renew_lease(%s, %s, 0.001)", (name, holder))
        swept = CliRunner().invoke(
            app,
            ["audit", "dangling", "--close", "--older-than", "0"],
            env={"DATABASE_URL": url, "REDIS_URL": "", "JARVIS_DATA_DIR": str(tmp_path), "COLUMNS": "200"},
        )
        assert swept.exit_code == 0, swept.output
        closed = [r for r in tamper.rows(url, "tool_calls") if r["parent_id"] == call.id]
        assert closed == [], f"the live agent's running call was closed: {closed}; {swept.output}"
        with tamper.as_app_role(url) as app_role:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                app_role.execute("SELECT holder_hash FROM public.agent_leases")
        agent.tool_calls.record_completion(call, "succeeded", output={"tx": "real"}, duration_ms=1)
        agent.planning.close_cycle(cycle, "succeeded", {"steps": 1})
    finally:
        agent.shutdown()


def test_the_auditor_still_reads_who_runs_and_until_when_but_never_the_holder(
    isolated_database_url: str, auditor_login: str, tmp_path: Path
) -> None:
    agent = Agent.start(agent_settings(isolated_database_url, tmp_path), name="listed", migrate=False)
    try:
        with psycopg.connect(isolated_database_url, user=auditor_login, autocommit=True) as auditor:
            rows = auditor.execute("SELECT agent, taken_at, expires_at, ttl FROM public.agent_leases").fetchall()
            assert [row[0] for row in rows] == ["listed"]
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                auditor.execute("SELECT holder_hash FROM public.agent_leases")
    finally:
        agent.shutdown()


def test_a_lease_time_to_live_under_one_second_is_refused(isolated_database_url: str) -> None:
    """A lease made to lapse at once (1 ms) is what turned a stolen holder id into a closed payment."""
    with tamper.as_app_role(isolated_database_url) as app_role:
        for ttl in (0.001, 0.999, float("nan")):
            with pytest.raises(psycopg.errors.InvalidParameterValue), app_role.transaction():
                app_role.execute("SELECT public.jarvis_take_lease('short', gen_random_uuid(), %s)", (ttl,))
        row = app_role.execute("SELECT public.jarvis_take_lease('short', gen_random_uuid(), 1)").fetchone()
        assert row is not None and row[0] is not None


def test_a_sweep_leaves_an_agent_whose_heartbeat_is_late_by_less_than_a_lease_lifetime(
    isolated_database_url: str, tmp_path: Path
) -> None:
    """A lease that expired a moment ago (a heartbeat delayed by a busy pool or a short outage) is no proof of
    death: the sweep took it and closed the agent's running call; the late heartbeat then found its lease gone."""
    url = isolated_database_url
    database = open_database(agent_settings(url, tmp_path), url=url)
    lease = Lease(database, "late", ttl=60.0)
    try:
        assert lease.take()  # and no heartbeat: it is late
        cycle = PlanningLog(database, agent="late").open_cycle(["slow"])
        call = ToolCallLog(database).start("transfer_funds", {"usd": 5}, cycle_id=cycle)
        with tamper.superuser_without_triggers(url) as superuser:  # the clock's reading of it, without waiting
            superuser.execute(
                "UPDATE public.agent_leases SET expires_at = clock_timestamp() - interval '1 second' "
                "WHERE agent = 'late'"
            )
        sweep = sweep_dangling(database)
        assert sweep.closed == [] and sweep.running == ["late"], sweep
        assert {d.id for d in sweep.skipped} == {cycle, call.id}
        assert lease.renew()  # the late heartbeat: the lease is still its own
        ToolCallLog(database).record_completion(call, "succeeded", output={"tx": "real"}, duration_ms=1)
    finally:
        lease.release()
        database.shutdown()
