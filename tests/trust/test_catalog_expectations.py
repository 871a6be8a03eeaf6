"""The verifier's expectations are what a fresh migration really installs (so they cannot drift)."""

from __future__ import annotations

import psycopg

from jarvis.db.audit.catalog import (
    EXPECTED_CONFIG,
    EXPECTED_CONFIG_OF,
    EXPECTED_CONSTRAINTS,
    EXPECTED_EXECUTE,
    EXPECTED_FUNCTIONS,
    EXPECTED_INDEXES,
    EXPECTED_TRIGGERS,
    catalog_definitions,
    catalog_problems,
    function_body_hash,
)


def test_a_fresh_migration_installs_exactly_the_expected_catalog(migrated_database_url: str) -> None:
    with psycopg.connect(migrated_database_url) as conn:
        conn.execute("SET search_path = pg_catalog, pg_temp")
        found = catalog_definitions(conn)
        functions = {
            name: (function_body_hash(source), definer)
            for name, source, definer in conn.execute(
                "SELECT p.proname, p.prosrc, p.prosecdef FROM pg_catalog.pg_proc p "
                "JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'"
            )
        }
        roles = conn.execute("SELECT app_role, auditor_role FROM public.trail_info").fetchone()
        assert roles is not None
        labels = {roles[0]: "app", roles[1]: "auditor", "PUBLIC": "PUBLIC"}
        execute = {  # who besides the owner may EXECUTE each function
            name: tuple(sorted(labels[grantee] for grantee in grantees))
            for name, grantees in conn.execute(
                "SELECT p.proname, ARRAY(SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' "
                "ELSE pg_get_userbyid(a.grantee) END "
                "FROM aclexplode(COALESCE(p.proacl, acldefault('f', p.proowner))) a "
                "WHERE a.privilege_type = 'EXECUTE' AND a.grantee <> p.proowner) FROM pg_catalog.pg_proc p "
                "JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'"
            )
        }
        config = {  # every function's settings, compared whole
            name: list(settings or ())
            for name, settings in conn.execute(
                "SELECT p.proname, p.proconfig FROM pg_catalog.pg_proc p "
                "JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'"
            )
        }
        assert catalog_problems(conn) == []
    assert found["triggers"] == EXPECTED_TRIGGERS
    assert found["constraints"] == EXPECTED_CONSTRAINTS
    assert found["indexes"] == EXPECTED_INDEXES
    assert functions == EXPECTED_FUNCTIONS
    assert execute == EXPECTED_EXECUTE
    assert config == {name: EXPECTED_CONFIG_OF.get(name, EXPECTED_CONFIG) for name in EXPECTED_FUNCTIONS}
