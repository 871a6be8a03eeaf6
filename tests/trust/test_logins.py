"""Logins as production has them: what each one may do, proven with real roles on the test cluster.

The production recipe: a superuser creates an owner login (CREATEROLE, not
superuser) and a database it owns; the owner runs `jarvis db upgrade`; then
`CREATE ROLE <login> LOGIN IN ROLE <app role>` is the agent's login and
`... IN ROLE <auditor role>` a read-only auditor's. Roles are cluster-wide:
every login here has a unique name and is dropped at the end. No passwords:
the test servers trust their clients (TCP for DATABASE_URL, a Unix socket
for the embedded server).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from typer.testing import CliRunner

from jarvis.cli.main import app
from jarvis.config import load_settings
from jarvis.db.migrate import head_revision, upgrade_to_head
from jarvis.db.urls import database_name, with_database
from jarvis_testkit import services
from jarvis_testkit.roles import as_login, database_roles

runner = CliRunner()
HEAD = head_revision()


@dataclass
class Run:
    code: int
    output: str
    stdout: str
    crashed: BaseException | None
    """An exception that escaped the command: a user would have seen a traceback."""


def jarvis(url: str, *args: str, data_dir: Path, **env: str | None) -> Run:
    """Run a command in-process; an env value of None unsets that variable."""
    environment: dict[str, str | None] = {
        "DATABASE_URL": url,
        "REDIS_URL": "",
        "COLUMNS": "200",
        "JARVIS_DATA_DIR": str(data_dir),
        **env,
    }
    result = runner.invoke(app, list(args), env=environment)
    crashed = result.exception if result.exception and not isinstance(result.exception, SystemExit) else None
    return Run(result.exit_code, result.output, result.stdout, crashed)


Check = dict[str, str]


def doctor(url: str, data_dir: Path, **env: str | None) -> tuple[Run, list[Check]]:
    """`jarvis doctor --json`: the run and its checks (several may share a name)."""
    run = jarvis(url, "doctor", "--json", data_dir=data_dir, **env)
    checks: list[Check] = json.loads(run.stdout) if run.crashed is None and run.stdout.strip() else []
    return run, checks


def named(checks: list[Check], name: str) -> Check:
    """The one check called `name` (doctor reports it once for these logins)."""
    found = [check for check in checks if check["name"] == name]
    assert len(found) == 1, f"expected one {name!r} check: {checks}"
    return found[0]


def ok_line(run: Run) -> bool:
    return any(line.startswith("OK:") for line in run.stdout.splitlines())


def unique(label: str) -> str:
    return f"jarvis_t_{label}_{uuid.uuid4().hex[:8]}"


def admin_execute(admin_url: str, *statements: str | sql.SQL | sql.Composed) -> None:
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        for statement in statements:
            conn.execute(statement)


def drop_roles(admin_url: str, *roles: str) -> None:
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        for role in roles:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def server_version(admin_url: str) -> int:
    with psycopg.connect(admin_url, connect_timeout=5) as conn:
        return int(conn.info.server_version)


def assert_no_traceback(run: Run) -> None:
    assert run.crashed is None, f"the command crashed (a user sees a traceback): {run.crashed!r}\n{run.output}"
    assert "Traceback" not in run.output, run.output


@dataclass
class Logins:
    """Logins made by a test (members of roles, owners of nothing), dropped when it ends."""

    admin_url: str
    names: list[str] = field(default_factory=list)

    def create(self, label: str, *options: str) -> str:
        name = unique(label)
        self.names.append(name)
        admin_execute(self.admin_url, f"CREATE ROLE {name} LOGIN " + " ".join(options))
        return name

    def drop_all(self) -> None:
        drop_roles(self.admin_url, *reversed(self.names))


@pytest.fixture
def logins(postgres_admin_url: str) -> Iterator[Logins]:
    made = Logins(postgres_admin_url)
    try:
        yield made
    finally:
        made.drop_all()


@dataclass
class OwnedDatabase:
    """A database created by a superuser for an owner login that is not a superuser."""

    admin_url: str
    owner: str
    name: str

    @property
    def owner_url(self) -> str:
        return as_login(with_database(self.admin_url, self.name), self.owner)

    @property
    def admin_database_url(self) -> str:
        return with_database(self.admin_url, self.name)

    def url_for(self, login: str) -> str:
        return as_login(self.admin_database_url, login)

    def drop(self) -> None:
        """The database, then the roles its migration made, then the owner (who granted their memberships)."""
        roles: list[str] = []
        try:
            roles = list(database_roles(self.admin_database_url))
        except psycopg.Error:
            pass  # never migrated
        admin_execute(
            self.admin_url, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name))
        )
        drop_roles(self.admin_url, *roles, self.owner)


def owned_database(admin_url: str, *owner_options: str) -> OwnedDatabase:
    owner = unique("owner")
    name = unique("owned")
    admin_execute(admin_url, f"CREATE ROLE {owner} LOGIN " + " ".join(owner_options))
    owned = OwnedDatabase(admin_url, owner, name)
    try:
        admin_execute(
            admin_url, sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(owner))
        )
    except BaseException:
        drop_roles(admin_url, owner)
        raise
    return owned


@dataclass
class Production:
    """The README recipe, done once for the module: owner, migration, an agent login, an auditor login."""

    database: OwnedDatabase
    upgrade: Run
    app_role: str
    auditor_role: str
    agent_login: str
    auditor_login: str
    data_dir: Path

    @property
    def agent_url(self) -> str:
        return self.database.url_for(self.agent_login)

    @property
    def auditor_url(self) -> str:
        return self.database.url_for(self.auditor_login)


@pytest.fixture(scope="module")
def production(postgres_admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Production]:
    data_dir = tmp_path_factory.mktemp("production-data")
    database = owned_database(postgres_admin_url, "CREATEROLE")
    made = Logins(postgres_admin_url)
    try:
        upgrade = jarvis(database.owner_url, "db", "upgrade", data_dir=data_dir)
        if upgrade.code != 0:
            pytest.fail(
                f"`jarvis db upgrade` as the owner failed ({upgrade.code}): {upgrade.crashed!r}\n{upgrade.output}"
            )
        app_role, auditor_role = database_roles(database.admin_database_url)
        agent_login = made.create("agent", "IN ROLE", app_role)
        auditor_login = made.create("auditor", "IN ROLE", auditor_role)
        production = Production(database, upgrade, app_role, auditor_role, agent_login, auditor_login, data_dir)
        demo = jarvis(production.agent_url, "demo", data_dir=data_dir)
        if demo.code != 0:
            pytest.fail(f"`jarvis demo` as the agent login failed ({demo.code}): {demo.crashed!r}\n{demo.output}")
        yield production
    finally:
        made.drop_all()
        database.drop()


# --- A. the production recipe


def test_an_owner_with_createrole_migrates_its_database_without_being_superuser(
    production: Production, postgres_admin_url: str
) -> None:
    assert production.upgrade.crashed is None
    assert f"upgraded empty database -> {HEAD}" in production.upgrade.output
    with psycopg.connect(postgres_admin_url) as conn:
        owner = conn.execute(
            "SELECT rolsuper, rolcreaterole FROM pg_roles WHERE rolname = %s", (production.database.owner,)
        ).fetchone()
        made = conn.execute(
            "SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname IN (%s, %s) ORDER BY rolname",
            (production.app_role, production.auditor_role),
        ).fetchall()
    assert owner == (False, True)
    assert made == sorted([(production.app_role, False), (production.auditor_role, False)])


def test_an_app_member_login_runs_the_demo(production: Production) -> None:
    run = jarvis(production.agent_url, "demo", data_dir=production.data_dir)
    assert_no_traceback(run)
    assert run.code == 0, run.output
    assert ok_line(run), run.output


def test_an_app_member_login_verifies_the_trail(production: Production) -> None:
    run = jarvis(production.agent_url, "audit", "verify", data_dir=production.data_dir)
    assert_no_traceback(run)
    assert run.code == 0 and ok_line(run), run.output


def test_an_app_member_login_shows_the_trail(production: Production) -> None:
    run = jarvis(production.agent_url, "audit", "show", data_dir=production.data_dir)
    assert_no_traceback(run)
    assert run.code == 0 and "demo" in run.output, run.output


@pytest.mark.parametrize("production_mode", [None, "1"], ids=["default", "JARVIS_PRODUCTION=1"])
def test_an_app_member_login_passes_doctor(production: Production, production_mode: str | None) -> None:
    run, checks = doctor(production.agent_url, production.data_dir, JARVIS_PRODUCTION=production_mode)
    assert_no_traceback(run)
    assert run.code == 0, run.output
    login = named(checks, "login role")
    assert login["status"] == "ok" and production.app_role in login["detail"], login
    assert named(checks, "application role")["status"] == "ok"


def test_an_owner_without_createrole_is_told_what_to_grant(postgres_admin_url: str, tmp_path: Path) -> None:
    database = owned_database(postgres_admin_url)  # NOCREATEROLE; its database's roles cannot exist yet
    try:
        run = jarvis(database.owner_url, "db", "upgrade", data_dir=tmp_path)
        assert run.code != 0
        assert_no_traceback(run)
        assert "upgraded" not in run.output and "success" not in run.output.lower()
        assert "CREATEROLE" in run.output or "GRANT" in run.output, run.output
    finally:
        database.drop()


# --- B. the auditor login


@pytest.mark.parametrize(
    "command",
    [("audit", "verify"), ("audit", "show"), ("audit", "export"), ("audit", "tail", "--from-db", "--no-follow")],
    ids=["verify", "show", "export", "tail"],
)
def test_an_auditor_login_reads_the_trail(production: Production, command: tuple[str, ...]) -> None:
    run = jarvis(production.auditor_url, *command, data_dir=production.data_dir)
    assert_no_traceback(run)
    assert run.code == 0, run.output
    assert run.stdout.strip(), "the trail has the demo's rows: the command should print them"


def database_fingerprint(url: str) -> dict[str, Any]:
    """Every table's rows (with the transaction that wrote each: xmin) and every sequence's position."""
    with psycopg.connect(url, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'p') AND n.nspname IN ('public', 'agent_ext') ORDER BY 1, 2"
        ).fetchall()
        fingerprint: dict[str, Any] = {}
        for schema, table in tables:
            fingerprint[f"{schema}.{table}"] = conn.execute(
                sql.SQL(
                    "SELECT count(*), md5(coalesce(string_agg(t.xmin::text || ':' || t::text, ',' "
                    "ORDER BY t::text), '')) FROM {}.{} t"
                ).format(sql.Identifier(schema), sql.Identifier(table))
            ).fetchone()
        for schema, sequence, last in conn.execute(
            "SELECT schemaname, sequencename, last_value FROM pg_sequences "
            "WHERE schemaname IN ('public', 'agent_ext')"
        ):
            fingerprint[f"sequence {schema}.{sequence}"] = last
    return fingerprint


def test_verify_as_an_auditor_writes_nothing(production: Production) -> None:
    witness = production.data_dir / "witness"
    logs_before = {path: path.read_bytes() for path in witness.glob("*")}
    before = database_fingerprint(production.database.admin_database_url)
    assert before["public.tool_calls"][0] > 0
    run = jarvis(production.auditor_url, "audit", "verify", data_dir=production.data_dir)
    assert_no_traceback(run)
    assert run.code == 0, run.output
    assert database_fingerprint(production.database.admin_database_url) == before
    assert {path: path.read_bytes() for path in witness.glob("*")} == logs_before


def test_an_auditor_login_cannot_seal(production: Production) -> None:
    run = jarvis(production.auditor_url, "audit", "verify", "--seal", data_dir=production.data_dir)
    assert_no_traceback(run)
    assert run.code == 2, run.output
    errors = [line for line in run.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "seal" in errors[0], run.output


def test_an_auditor_login_cannot_set_state(production: Production) -> None:
    run = jarvis(production.auditor_url, "state", "set", "auditor.k", "1", data_dir=production.data_dir)
    assert run.code != 0, run.output
    assert_no_traceback(run)
    with psycopg.connect(production.database.admin_database_url) as conn:
        assert conn.execute("SELECT count(*) FROM public.agent_state WHERE key = 'auditor.k'").fetchone() == (0,)


def test_an_auditor_login_cannot_insert_a_tool_call(production: Production) -> None:
    with psycopg.connect(production.auditor_url, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(
                "INSERT INTO public.tool_calls (id, tool_name, status, input) VALUES (%s, 'forged', 'started', '{}')",
                (uuid.uuid4(),),
            )
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(production.app_role)))


# --- C. logins that are not members of the app role


def test_a_select_only_login_fails_doctor_naming_the_grant(
    production: Production, logins: Logins, postgres_admin_url: str
) -> None:
    login = logins.create("reader")
    admin_execute(
        postgres_admin_url,
        sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
            sql.Identifier(production.database.name), sql.Identifier(login)
        ),
    )
    admin_execute(
        production.database.admin_database_url,
        sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(sql.Identifier(login)),
        sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(sql.Identifier(login)),
    )
    try:
        run, checks = doctor(production.database.url_for(login), production.data_dir)
        assert_no_traceback(run)
        assert run.code == 1, run.output
        check = named(checks, "login role")
        assert check["status"] == "fail" and f"GRANT {production.app_role} TO {login}" in check["fix"], check
    finally:
        admin_execute(
            production.database.admin_database_url,
            sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {}").format(sql.Identifier(login)),
            sql.SQL("REVOKE ALL ON SCHEMA public FROM {}").format(sql.Identifier(login)),
        )
        admin_execute(
            postgres_admin_url,
            sql.SQL("REVOKE ALL ON DATABASE {} FROM {}").format(
                sql.Identifier(production.database.name), sql.Identifier(login)
            ),
        )


def test_an_auditor_login_is_told_it_is_read_only_by_doctor(production: Production) -> None:
    """An auditor login is a warning (it reads, it cannot run the agent), not a failure asking for write rights."""
    run, checks = doctor(production.auditor_url, production.data_dir)
    assert_no_traceback(run)
    check = named(checks, "login role")
    assert check["status"] == "warn" and "read-only auditor login" in check["detail"], check
    assert f"GRANT {production.app_role} TO <the agent's login>" in check["fix"], check


def test_a_member_without_the_set_option_fails_doctor(
    production: Production, logins: Logins, postgres_admin_url: str
) -> None:
    """PostgreSQL 16: a membership WITH SET FALSE inherits the app role's rights but cannot SET ROLE to it."""
    if server_version(postgres_admin_url) < 160000:
        pytest.skip("GRANT ... WITH SET FALSE needs PostgreSQL 16")
    login = logins.create("noset")
    admin_execute(
        postgres_admin_url,
        sql.SQL("GRANT {} TO {} WITH SET FALSE").format(sql.Identifier(production.app_role), sql.Identifier(login)),
    )
    with psycopg.connect(production.database.url_for(login), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(production.app_role)))
    run, checks = doctor(production.database.url_for(login), production.data_dir)
    assert_no_traceback(run)
    assert run.code == 1, run.output
    assert named(checks, "login role")["status"] == "fail", checks


# --- D. one database's login on another database


@dataclass
class TwoDatabases:
    a: str
    b: str
    login_a: str


@pytest.fixture(scope="module")
def two_databases(postgres_admin_url: str) -> Iterator[TwoDatabases]:
    made = Logins(postgres_admin_url)
    with (
        services.fresh_database(postgres_admin_url, "logins_a") as a,
        services.fresh_database(postgres_admin_url, "logins_b") as b,
    ):
        for url in (a, b):
            upgrade_to_head(load_settings(database_url=url), url=url)
        try:
            login = made.create("login_a", "IN ROLE", database_roles(a)[0])
            yield TwoDatabases(a, b, login)
        finally:
            made.drop_all()


def test_a_login_for_one_database_cannot_connect_to_another(two_databases: TwoDatabases) -> None:
    with psycopg.connect(as_login(two_databases.a, two_databases.login_a)) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
        psycopg.connect(as_login(two_databases.b, two_databases.login_a), connect_timeout=5)


def test_a_login_for_one_database_has_no_privileges_on_anothers_tables(
    two_databases: TwoDatabases, postgres_admin_url: str
) -> None:
    login = two_databases.login_a
    app_b, auditor_b = database_roles(two_databases.b)
    with psycopg.connect(two_databases.b) as conn:
        tables = [
            f"{schema}.{table}"
            for schema, table in conn.execute(
                "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relkind IN ('r', 'p') AND n.nspname IN ('public', 'agent_ext')"
            )
        ]
        granted = [
            (table, privilege)
            for table in tables
            for privilege in ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE")
            if not (table == "public.trail_info" and privilege == "SELECT")  # readable by PUBLIC on purpose
            and conn.execute("SELECT has_table_privilege(%s, %s, %s)", (login, table, privilege)).fetchone() != (False,)
        ]
        memberships = conn.execute(
            "SELECT pg_has_role(%s, %s, 'MEMBER'), pg_has_role(%s, %s, 'MEMBER')", (login, app_b, login, auditor_b)
        ).fetchone()
        seal = conn.execute(
            "SELECT has_function_privilege(%s, 'public.jarvis_seal(integer)', 'EXECUTE')", (login,)
        ).fetchone()
        connect_temp = conn.execute(
            "SELECT has_database_privilege(%s, current_database(), 'CONNECT'), "
            "has_database_privilege(%s, current_database(), 'TEMPORARY')",
            (login, login),
        ).fetchone()
    assert "public.tool_calls" in tables and granted == []
    assert memberships == (False, False) and seal == (False,) and connect_temp == (False, False)
    # Even with CONNECT granted by mistake, nothing of B's can be read or written.
    name_b = sql.Identifier(database_name(two_databases.b))
    admin_execute(
        postgres_admin_url, sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(name_b, sql.Identifier(login))
    )
    try:
        with psycopg.connect(as_login(two_databases.b, login), autocommit=True) as conn:
            for statement in (
                "SELECT count(*) FROM public.tool_calls",
                "INSERT INTO public.agent_state (key, value) VALUES ('x', '1')",
                sql.SQL("SET ROLE {}").format(sql.Identifier(app_b)),
            ):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(statement)
    finally:
        admin_execute(
            postgres_admin_url, sql.SQL("REVOKE CONNECT ON DATABASE {} FROM {}").format(name_b, sql.Identifier(login))
        )


# --- E. a superuser login


def test_a_superuser_login_fails_doctor_in_production_mode(migrated_database_url: str, tmp_path: Path) -> None:
    run, checks = doctor(migrated_database_url, tmp_path, JARVIS_PRODUCTION="1")
    assert_no_traceback(run)
    assert run.code == 1, run.output
    superuser = [check for check in checks if "superuser" in check["detail"]]
    assert [check["status"] for check in superuser] == ["fail"], checks


def test_a_superuser_login_only_warns_outside_production_mode(migrated_database_url: str, tmp_path: Path) -> None:
    run, checks = doctor(migrated_database_url, tmp_path, JARVIS_PRODUCTION=None)
    assert_no_traceback(run)
    assert run.code == 0, run.output
    superuser = [check for check in checks if "superuser" in check["detail"]]
    assert [check["status"] for check in superuser] == ["warn"], checks
