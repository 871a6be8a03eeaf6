"""Every write path invalidates, and the namespace is the database's identity, not its URL (issue #12, item 7)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
import pytest
from typer.testing import CliRunner

from jarvis.agent import Agent, CyclePlan, ScriptedPlanner
from jarvis.cache import CachedStateStore, RedisLink, namespace_for
from jarvis.cli.main import app
from jarvis.config import Settings
from jarvis.db import Database, open_database
from jarvis_testkit.roles import app_role

runner = CliRunner()


def read_plan(key: str) -> CyclePlan:
    return CyclePlan.model_validate(
        {"goals": ["read"], "steps": [{"decision": "read", "tool": "get_state", "input": {"key": key}}]}
    )


def jarvis(database_url: str, redis_url: str, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env={"DATABASE_URL": database_url, "REDIS_URL": redis_url})
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


@pytest.fixture
def agent(isolated_database: Database, redis_url: str) -> Iterator[Agent]:
    agent = Agent(
        isolated_database, name="reader", redis_link=RedisLink(redis_url, namespace=namespace_for(isolated_database))
    )
    yield agent
    assert agent.redis is not None
    agent.redis.close()


def test_two_spellings_of_one_database_share_a_namespace_and_two_databases_never(
    isolated_database_url: str, migrated_database_url: str, respell: Callable[[str], str], settings: Settings
) -> None:
    other_spelling = respell(isolated_database_url)
    assert other_spelling != isolated_database_url
    assert namespace_for(other_spelling) == namespace_for(isolated_database_url)
    database = open_database(settings, url=other_spelling)
    try:
        assert namespace_for(database) == namespace_for(isolated_database_url)  # a Database or a URL: the same
    finally:
        database.shutdown()
    assert namespace_for(migrated_database_url) != namespace_for(isolated_database_url)


def test_the_namespace_is_the_system_identifier_and_the_database_oid(isolated_database_url: str) -> None:
    with psycopg.connect(isolated_database_url) as conn:
        row = conn.execute(
            "SELECT system_identifier, (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "FROM pg_control_system()"
        ).fetchone()
    assert row is not None
    expected = "jarvis:" + hashlib.sha256(f"system:{row[0]}:database:{row[1]}".encode()).hexdigest()[:16]
    assert namespace_for(isolated_database_url) == expected


def test_the_app_role_can_derive_the_namespace(isolated_database_url: str) -> None:
    """What the agent's login can call: a role with nothing but the app role's rights."""
    as_app = with_options(isolated_database_url, f"-c role={app_role(isolated_database_url)}")
    assert namespace_for(as_app) == namespace_for(isolated_database_url)


def test_without_pg_control_system_the_namespace_falls_back_and_says_so(
    isolated_database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="jarvis.cache")
    role = app_role(isolated_database_url)
    with psycopg.connect(isolated_database_url, autocommit=True) as conn:  # pg_proc is per database: only this one
        conn.execute("REVOKE EXECUTE ON FUNCTION pg_catalog.pg_control_system() FROM PUBLIC")
    as_app = with_options(isolated_database_url, f"-c role={role}")
    fallback = namespace_for(as_app)
    assert fallback.startswith("jarvis:") and fallback != namespace_for(isolated_database_url)
    assert namespace_for(as_app) == fallback  # stable
    assert any("pg_control_system()" in r.getMessage() for r in caplog.records)


def test_cli_state_set_reaches_a_running_agent_at_once(
    agent: Agent, isolated_database_url: str, redis_url: str, respell: Callable[[str], str]
) -> None:
    """The operator's `jarvis state set` used to write PostgreSQL only; the agent kept reading 100."""
    assert agent.redis is not None
    value_key = agent.redis.key("state", "budget.usd")
    agent.state.set("budget.usd", 100)
    assert agent.run_cycle(["read"], ScriptedPlanner(read_plan("budget.usd"))).steps[0].output["value"] == 100
    assert agent.redis.client.exists(value_key) == 1  # cached by the agent

    code, out = jarvis(respell(isolated_database_url), redis_url, "state", "set", "budget.usd", "0")
    assert code == 0, out
    assert agent.redis.client.exists(value_key) == 0  # invalidated by the CLI, through another URL spelling
    result = agent.run_cycle(["read"], ScriptedPlanner(read_plan("budget.usd")))
    assert result.steps[0].output == {"value": 0, "version": 2}


def test_cli_state_delete_reaches_a_running_agent_at_once(
    agent: Agent, isolated_database_url: str, redis_url: str
) -> None:
    assert agent.redis is not None
    agent.state.set("flag.enabled", True)
    agent.state.get("flag.enabled")
    assert agent.redis.client.exists(agent.redis.key("state", "flag.enabled")) == 1
    code, out = jarvis(isolated_database_url, redis_url, "state", "delete", "flag.enabled")
    assert code == 0, out
    assert agent.redis.client.exists(agent.redis.key("state", "flag.enabled")) == 0
    assert agent.state.get("flag.enabled") is None


def test_a_failed_compare_and_set_still_invalidates(agent: Agent, isolated_database_url: str, redis_url: str) -> None:
    assert agent.redis is not None
    agent.state.set("cas.key", 1)
    agent.state.get("cas.key")
    code, out = jarvis(isolated_database_url, redis_url, "state", "set", "cas.key", "2", "--expect-version", "7")
    assert code == 1 and "expected version 7" in out
    entry = agent.state.get("cas.key")
    assert entry is not None and entry.value == 1


def test_cli_state_set_without_redis_still_writes_and_agents_never_serve_the_old_value(
    agent: Agent, isolated_database_url: str
) -> None:
    """Redis down (or REDIS_URL unset on the operator's machine): the invalidation is lost, PostgreSQL still wins."""
    agent.state.set("offline.key", "old")
    agent.state.get("offline.key")
    dead_redis = "redis://127.0.0.1:9/0"  # discard port: nothing listens
    code, out = jarvis(isolated_database_url, dead_redis, "state", "set", "offline.key", '"new"')
    assert code == 0, out
    assert isinstance(agent.state, CachedStateStore)
    entry = agent.state.get("offline.key")
    assert entry is not None and entry.value == "new" and agent.state.outdated == 1


def test_every_agent_write_path_invalidates(agent: Agent) -> None:
    assert agent.redis is not None and isinstance(agent.state, CachedStateStore)
    generation_key = agent.redis.key("state-gen", "paths.key")
    before = int(agent.redis.client.get(generation_key) or 0)
    plan = CyclePlan.model_validate(
        {
            "goals": ["write"],
            "steps": [
                {"decision": "w", "tool": "set_state", "input": {"key": "paths.key", "value": 1}},
                {"decision": "r", "tool": "get_state", "input": {"key": "paths.key"}},
                {
                    "decision": "w",
                    "tool": "set_state",
                    "input": {"key": "paths.key", "value": 2, "expected_version": 1},
                },
                {"decision": "r", "tool": "get_state", "input": {"key": "paths.key"}},
            ],
        }
    )
    result = agent.run_cycle(plan.goals, ScriptedPlanner(plan))
    assert [s.output for s in result.steps] == [
        {"version": 1},
        {"value": 1, "version": 1},
        {"version": 2},
        {"value": 2, "version": 2},
    ]
    assert int(agent.redis.client.get(generation_key) or 0) == before + 2


def with_options(url: str, options: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(
        parts._replace(query=urlencode({**dict(parse_qsl(parts.query)), "options": options}, quote_via=quote))
    )
