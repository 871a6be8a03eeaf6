"""What the verifier expects the audit tables to be, object by object.

A superuser can make readers see something other than what is stored: an
inheritance child (rows that only `SELECT ... FROM t` shows), a row-level
security policy (rows hidden from some sessions), a rewrite rule, a disabled
or extra trigger, or a trigger function with another body. Every such object
is compared here with what the migrations installed. The expected function
bodies are kept as hashes in this file — not in the database, where the same
superuser could change them — and a test compares them with a fresh migration.
"""

from __future__ import annotations

import hashlib
from typing import Any

from jarvis.db.audit.verify_sql import RELIED_ON_TYPES

WATCHED_TABLES = (
    "planning_cycles",
    "tool_calls",
    "decision_log",
    "schema_changes",
    "audit_chain",
    "audit_pending",
    "audit_seal_head",
    "trail_info",
    "audit_flags",
)

# Generated from a fresh migration (tests/trust/test_catalog_expectations.py fails when they drift):
# every trigger, constraint and index of the watched tables, as pg_get_*def prints them with
# search_path = pg_catalog, pg_temp.
EXPECTED_TRIGGERS: dict[str, dict[str, str]] = {
    "audit_flags": {
        "audit_flags_append_only": "CREATE TRIGGER audit_flags_append_only BEFORE DELETE OR UPDATE ON "
        "public.audit_flags FOR EACH ROW EXECUTE FUNCTION public.jarvis_reject_mutation()",
        "audit_flags_no_truncate": "CREATE TRIGGER audit_flags_no_truncate BEFORE TRUNCATE ON "
        "public.audit_flags FOR EACH STATEMENT EXECUTE FUNCTION public.jarvis_reject_mutation()",
    },
    "audit_chain": {
        "audit_chain_append_only": "CREATE TRIGGER audit_chain_append_only BEFORE DELETE OR UPDATE ON "
        "public.audit_chain FOR EACH ROW EXECUTE FUNCTION "
        "public.jarvis_reject_mutation()",
        "audit_chain_no_truncate": "CREATE TRIGGER audit_chain_no_truncate BEFORE TRUNCATE ON "
        "public.audit_chain FOR EACH STATEMENT EXECUTE FUNCTION "
        "public.jarvis_reject_mutation()",
    },
    "decision_log": {
        "decision_log_append_only": "CREATE TRIGGER decision_log_append_only BEFORE DELETE OR UPDATE ON "
        "public.decision_log FOR EACH ROW EXECUTE FUNCTION "
        "public.jarvis_reject_mutation()",
        "decision_log_before_insert": "CREATE TRIGGER decision_log_before_insert BEFORE INSERT ON "
        "public.decision_log FOR EACH ROW EXECUTE FUNCTION "
        "public.jarvis_decision_log_before_insert()",
        "decision_log_no_truncate": "CREATE TRIGGER decision_log_no_truncate BEFORE TRUNCATE ON "
        "public.decision_log FOR EACH STATEMENT EXECUTE FUNCTION "
        "public.jarvis_reject_mutation()",
        "decision_log_queue_for_sealing": "CREATE TRIGGER decision_log_queue_for_sealing AFTER INSERT ON "
        "public.decision_log FOR EACH ROW EXECUTE FUNCTION "
        "public.jarvis_queue_for_sealing()",
    },
    "planning_cycles": {
        "planning_cycles_append_only": "CREATE TRIGGER planning_cycles_append_only BEFORE DELETE OR UPDATE "
        "ON public.planning_cycles FOR EACH ROW EXECUTE FUNCTION "
        "public.jarvis_reject_mutation()",
        "planning_cycles_before_insert": "CREATE TRIGGER planning_cycles_before_insert BEFORE INSERT ON "
        "public.planning_cycles FOR EACH ROW EXECUTE FUNCTION "
        "public.jarvis_planning_cycles_before_insert()",
        "planning_cycles_no_truncate": "CREATE TRIGGER planning_cycles_no_truncate BEFORE TRUNCATE ON "
        "public.planning_cycles FOR EACH STATEMENT EXECUTE FUNCTION "
        "public.jarvis_reject_mutation()",
        "planning_cycles_queue_for_sealing": "CREATE TRIGGER planning_cycles_queue_for_sealing AFTER INSERT ON "
        "public.planning_cycles FOR EACH ROW EXECUTE FUNCTION "
        "public.jarvis_queue_for_sealing()",
    },
    "schema_changes": {
        "schema_changes_append_only": "CREATE TRIGGER schema_changes_append_only BEFORE DELETE OR UPDATE "
        "ON public.schema_changes FOR EACH ROW EXECUTE FUNCTION "
        "public.jarvis_reject_mutation()",
        "schema_changes_no_truncate": "CREATE TRIGGER schema_changes_no_truncate BEFORE TRUNCATE ON "
        "public.schema_changes FOR EACH STATEMENT EXECUTE FUNCTION "
        "public.jarvis_reject_mutation()",
        "schema_changes_queue_for_sealing": "CREATE TRIGGER schema_changes_queue_for_sealing AFTER INSERT ON "
        "public.schema_changes FOR EACH ROW EXECUTE FUNCTION "
        "public.jarvis_queue_for_sealing()",
        "schema_changes_stamp_created_at": "CREATE TRIGGER schema_changes_stamp_created_at BEFORE INSERT ON "
        "public.schema_changes FOR EACH ROW EXECUTE FUNCTION "
        "public.jarvis_stamp_created_at()",
    },
    "tool_calls": {
        "tool_calls_append_only": "CREATE TRIGGER tool_calls_append_only BEFORE DELETE OR UPDATE ON "
        "public.tool_calls FOR EACH ROW EXECUTE FUNCTION "
        "public.jarvis_reject_mutation()",
        "tool_calls_before_insert": "CREATE TRIGGER tool_calls_before_insert BEFORE INSERT ON "
        "public.tool_calls FOR EACH ROW EXECUTE FUNCTION "
        "public.jarvis_tool_calls_before_insert()",
        "tool_calls_no_truncate": "CREATE TRIGGER tool_calls_no_truncate BEFORE TRUNCATE ON "
        "public.tool_calls FOR EACH STATEMENT EXECUTE FUNCTION "
        "public.jarvis_reject_mutation()",
        "tool_calls_queue_for_sealing": "CREATE TRIGGER tool_calls_queue_for_sealing AFTER INSERT ON "
        "public.tool_calls FOR EACH ROW EXECUTE FUNCTION "
        "public.jarvis_queue_for_sealing()",
    },
    "trail_info": {
        "trail_info_append_only": "CREATE TRIGGER trail_info_append_only BEFORE DELETE OR UPDATE ON "
        "public.trail_info FOR EACH ROW EXECUTE FUNCTION "
        "public.jarvis_reject_mutation()",
        "trail_info_no_truncate": "CREATE TRIGGER trail_info_no_truncate BEFORE TRUNCATE ON "
        "public.trail_info FOR EACH STATEMENT EXECUTE FUNCTION "
        "public.jarvis_reject_mutation()",
    },
}
EXPECTED_CONSTRAINTS: dict[str, dict[str, str]] = {
    "audit_flags": {"pk_audit_flags": "PRIMARY KEY (seq)"},
    "audit_chain": {
        "ck_audit_chain_encoding": "CHECK ((encoding = ANY (ARRAY[1, 2])))",
        "ck_audit_chain_seq_positive": "CHECK ((seq >= 1))",
        "ck_audit_chain_table_name": "CHECK ((table_name = ANY (ARRAY['planning_cycles'::text, "
        "'tool_calls'::text, 'decision_log'::text, "
        "'schema_changes'::text])))",
        "pk_audit_chain": "PRIMARY KEY (seq)",
        "uq_audit_chain_table_name_row_id": "UNIQUE (table_name, row_id)",
    },
    "audit_pending": {
        "ck_audit_pending_table_name": "CHECK ((table_name = ANY (ARRAY['planning_cycles'::text, "
        "'tool_calls'::text, 'decision_log'::text, "
        "'schema_changes'::text])))",
        "pk_audit_pending": "PRIMARY KEY (table_name, row_id)",
    },
    "audit_seal_head": {
        "audit_seal_head_one_check": "CHECK (one)",
        "audit_seal_head_pkey": "PRIMARY KEY (one)",
        "audit_seal_head_seq_check": "CHECK ((seq >= 0))",
    },
    "decision_log": {
        "ck_decision_log_created_at_loadable": "CHECK (((created_at >= '2000-01-01 00:00:00+00'::timestamp with "
        "time zone) AND (created_at < '9999-01-01 00:00:00+00'::timestamp "
        "with time zone)))",
        "ck_decision_log_decision_length": "CHECK (((length(decision) >= 1) AND (length(decision) <= 10000)))",
        "fk_decision_log_cycle_id_planning_cycles": "FOREIGN KEY (cycle_id) REFERENCES public.planning_cycles(id)",
        "pk_decision_log": "PRIMARY KEY (id)",
    },
    "planning_cycles": {
        "ck_planning_cycles_agent_length": "CHECK (((length(agent) >= 1) AND (length(agent) <= 200)))",
        "ck_planning_cycles_completion_has_no_goals": "CHECK (((parent_id IS NULL) OR (goals IS NULL)))",
        "ck_planning_cycles_created_at_loadable": "CHECK (((created_at >= '2000-01-01 00:00:00+00'::timestamp with "
        "time zone) AND (created_at < '9999-01-01 00:00:00+00'::timestamp "
        "with time zone)))",
        "ck_planning_cycles_start_has_goals": "CHECK (((parent_id IS NOT NULL) OR ((goals IS NOT NULL) AND "
        "(outcomes IS NULL))))",
        "ck_planning_cycles_start_has_no_parent": "CHECK (((parent_id IS NULL) = (status = 'started'::text)))",
        "ck_planning_cycles_status": "CHECK ((status = ANY (ARRAY['started'::text, 'succeeded'::text, "
        "'failed'::text, 'cancelled'::text, 'abandoned'::text])))",
        "fk_planning_cycles_parent_id_planning_cycles": "FOREIGN KEY (parent_id) REFERENCES public.planning_cycles(id)",
        "pk_planning_cycles": "PRIMARY KEY (id)",
    },
    "schema_changes": {
        "ck_schema_changes_created_at_loadable": "CHECK (((created_at >= '2000-01-01 00:00:00+00'::timestamp with "
        "time zone) AND (created_at < '9999-01-01 00:00:00+00'::timestamp "
        "with time zone)))",
        "pk_schema_changes": "PRIMARY KEY (id)",
    },
    "tool_calls": {
        "ck_tool_calls_completion_has_no_cycle": "CHECK (((parent_id IS NULL) OR (cycle_id IS NULL)))",
        "ck_tool_calls_completion_has_no_input": "CHECK (((parent_id IS NULL) OR (input IS NULL)))",
        "ck_tool_calls_created_at_loadable": "CHECK (((created_at >= '2000-01-01 00:00:00+00'::timestamp with "
        "time zone) AND (created_at < '9999-01-01 00:00:00+00'::timestamp "
        "with time zone)))",
        "ck_tool_calls_start_has_no_outcome": "CHECK (((parent_id IS NOT NULL) OR ((output IS NULL) AND (error IS "
        "NULL) AND (duration_ms IS NULL))))",
        "ck_tool_calls_start_has_no_parent": "CHECK (((parent_id IS NULL) = (status = 'started'::text)))",
        "ck_tool_calls_status": "CHECK ((status = ANY (ARRAY['started'::text, 'succeeded'::text, "
        "'failed'::text, 'cancelled'::text, 'abandoned'::text])))",
        "ck_tool_calls_tool_name_length": "CHECK (((length(tool_name) >= 1) AND (length(tool_name) <= 200)))",
        "fk_tool_calls_cycle_id_planning_cycles": "FOREIGN KEY (cycle_id) REFERENCES public.planning_cycles(id)",
        "fk_tool_calls_parent_id_tool_calls": "FOREIGN KEY (parent_id) REFERENCES public.tool_calls(id)",
        "pk_tool_calls": "PRIMARY KEY (id)",
    },
    "trail_info": {
        "trail_info_one_check": "CHECK (one)",
        "trail_info_pkey": "PRIMARY KEY (one)",
    },
}
EXPECTED_INDEXES: dict[str, dict[str, str]] = {
    "audit_flags": {
        "pk_audit_flags": "CREATE UNIQUE INDEX pk_audit_flags ON public.audit_flags USING btree (seq)",
    },
    "audit_chain": {
        "pk_audit_chain": "CREATE UNIQUE INDEX pk_audit_chain ON public.audit_chain USING "
        "btree (seq) WITH (fillfactor='100')",
        "uq_audit_chain_table_name_row_id": "CREATE UNIQUE INDEX uq_audit_chain_table_name_row_id ON "
        "public.audit_chain USING btree (table_name, row_id)",
    },
    "audit_pending": {
        "ix_audit_pending_queued_by": "CREATE INDEX ix_audit_pending_queued_by ON public.audit_pending "
        "USING btree (queued_by, table_name, row_id)",
        "pk_audit_pending": "CREATE UNIQUE INDEX pk_audit_pending ON public.audit_pending USING "
        "btree (table_name, row_id)",
    },
    "audit_seal_head": {
        "audit_seal_head_pkey": "CREATE UNIQUE INDEX audit_seal_head_pkey ON public.audit_seal_head "
        "USING btree (one)",
    },
    "decision_log": {
        "ix_decision_log_cycle_id": "CREATE INDEX ix_decision_log_cycle_id ON public.decision_log USING "
        "btree (cycle_id)",
        "pk_decision_log": "CREATE UNIQUE INDEX pk_decision_log ON public.decision_log USING " "btree (id)",
    },
    "planning_cycles": {
        "ix_planning_cycles_agent_start_page": "CREATE INDEX ix_planning_cycles_agent_start_page ON "
        "public.planning_cycles USING btree (agent, created_at, id) WHERE "
        "(parent_id IS NULL)",
        "ix_planning_cycles_one_completion": "CREATE UNIQUE INDEX ix_planning_cycles_one_completion ON "
        "public.planning_cycles USING btree (parent_id) WHERE (parent_id IS "
        "NOT NULL)",
        "ix_planning_cycles_start_page": "CREATE INDEX ix_planning_cycles_start_page ON "
        "public.planning_cycles USING btree (created_at, id) WHERE "
        "(parent_id IS NULL)",
        "pk_planning_cycles": "CREATE UNIQUE INDEX pk_planning_cycles ON public.planning_cycles " "USING btree (id)",
    },
    "schema_changes": {
        "pk_schema_changes": "CREATE UNIQUE INDEX pk_schema_changes ON public.schema_changes " "USING btree (id)",
    },
    "tool_calls": {
        "ix_tool_calls_cycle_start_page": "CREATE INDEX ix_tool_calls_cycle_start_page ON public.tool_calls "
        "USING btree (cycle_id, created_at, id) WHERE (parent_id IS NULL)",
        "ix_tool_calls_one_completion": "CREATE UNIQUE INDEX ix_tool_calls_one_completion ON "
        "public.tool_calls USING btree (parent_id) WHERE (parent_id IS NOT "
        "NULL)",
        "ix_tool_calls_start_page": "CREATE INDEX ix_tool_calls_start_page ON public.tool_calls USING "
        "btree (created_at, id) WHERE (parent_id IS NULL)",
        "pk_tool_calls": "CREATE UNIQUE INDEX pk_tool_calls ON public.tool_calls USING btree " "(id)",
    },
    "trail_info": {
        "trail_info_pkey": "CREATE UNIQUE INDEX trail_info_pkey ON public.trail_info USING " "btree (one)",
    },
}
EXPECTED_FUNCTIONS: dict[str, tuple[str, bool]] = {
    "jarvis_append_decision_log": ("66d95b6370df6ee8f76d3b83677132846f5c59f0a3ae995b89f0789133bd3034", True),
    "jarvis_append_planning_cycles": ("79aae53e7541a2846862966ff85c4de411137c8ff6485c4f161782098c660ad3", True),
    "jarvis_append_tool_calls": ("90716140e7f0037f7825b9c451404cdb5b1005821bbf8666e70f098aa4cabb5c", True),
    "jarvis_canonical": ("49c896d66ad4da81d982b9ab211120cd587b4a9a9981a3a9876e80f11d284be7", False),
    "jarvis_decision_log_before_insert": ("52ad142390c35b58d58896d15c8dcc231d2c58d3f452c7839c0533b9425efc05", False),
    "jarvis_planning_cycles_before_insert": ("89d31f6952a06a91f788765c8960de35add65519145e5a372c5596249fb4f83a", True),
    "jarvis_queue_for_sealing": ("5f3c7ba43047fed41cdfbcb4fc4b518e44081ee61f1819d24909ffc6fd472585", True),
    "jarvis_record_checkpoint": ("bab031df46f57db125ccec1729a57b47c4944aacef6b3db49d19c1408dd90f98", True),
    "jarvis_reject_mutation": ("7ddf847cbc8eb6fe5c1799266e079bf6013f10cf15f0e4afbf3190dc77d3b29e", False),
    "jarvis_release_lease": ("553762ed354bfcc186d649f50624bf8d874e19b5ec90f95fca01379a88379df9", True),
    "jarvis_renew_lease": ("a4885eed7ca255365a0942ce8a04ff4f88d19bb37dd941225c24dc1a2eb4712c", True),
    "jarvis_seal": ("39346949911b8ab93111c54850d5f0f07a459c63f5b63cde2a85418303d440d5", True),
    "jarvis_serial_uuid": ("ccda40a165b32fc8a147959ae8b7861e5303467a4ac1a1b6663739ece3d5e2d7", False),
    "jarvis_stamp_created_at": ("b3e09a5f6a3c307a592a733a6ed68de3c4dd5267c22eccdaf2bf200446eb9a60", False),
    "jarvis_take_lease": ("bd9a9b99cc4155195fe070ec6bca1fb37ad4a378a5af522312235ba7a342e331", True),
    "jarvis_tool_calls_before_insert": ("67c7d151971438e0c359cd18ab8652549632e905e3a9b05b24ce2ecd21573657", False),
}

EXPECTED_EXECUTE: dict[str, tuple[str, ...]] = {
    "jarvis_append_decision_log": ("app",),
    "jarvis_append_planning_cycles": ("app",),
    "jarvis_append_tool_calls": ("app",),
    "jarvis_canonical": ("PUBLIC",),
    "jarvis_decision_log_before_insert": (),
    "jarvis_planning_cycles_before_insert": (),
    "jarvis_queue_for_sealing": (),
    "jarvis_record_checkpoint": ("app",),
    "jarvis_reject_mutation": (),
    "jarvis_release_lease": ("app",),
    "jarvis_renew_lease": ("app",),
    "jarvis_seal": ("app",),
    "jarvis_serial_uuid": ("PUBLIC",),
    "jarvis_stamp_created_at": (),
    "jarvis_take_lease": ("app",),
    "jarvis_tool_calls_before_insert": (),
}
"""Who besides the owner may EXECUTE each function ("app"/"auditor": the database's roles in trail_info).

A SECURITY DEFINER function runs with the owner's rights: a grant to another role, or to PUBLIC, lets
that role write audit rows; and the functions must be owned by the tables' owner, or their owner could
change them and grant them to anyone."""

EXPECTED_CONFIG = ["search_path=pg_catalog, pg_temp"]
"""Every function's settings (`proconfig`), compared whole: a setting a superuser adds to a function
(a TimeZone, a planner switch) changes what it computes without touching its body."""
EXPECTED_CONFIG_OF = {
    "jarvis_seal": [*EXPECTED_CONFIG, "TimeZone=UTC", "enable_seqscan=off", "jit=off"],
    # Migration 0011: an append never waits long for a lock after its created_at was stamped.
    **{
        f"jarvis_append_{table}": [*EXPECTED_CONFIG, "lock_timeout=5s"]
        for table in ("tool_calls", "planning_cycles", "decision_log")
    },
}


def function_body_hash(body: str) -> str:
    """A function's source as recorded in the expected catalog: compared, never stored in full."""
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def catalog_definitions(raw: Any) -> dict[str, dict[str, dict[str, str]]]:
    """{"triggers"|"constraints"|"indexes": {table: {name: definition}}} as the database holds them now."""
    raw.execute("SET LOCAL search_path = pg_catalog, pg_temp")  # definitions print relative to it
    found: dict[str, dict[str, dict[str, str]]] = {"triggers": {}, "constraints": {}, "indexes": {}}
    queries = {
        "triggers": "SELECT c.relname, t.tgname, pg_catalog.pg_get_triggerdef(t.oid) FROM pg_catalog.pg_trigger t "
        "JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid WHERE NOT t.tgisinternal AND c.oid = ANY(%s::oid[])",
        "constraints": "SELECT c.relname, k.conname, pg_catalog.pg_get_constraintdef(k.oid) "
        "FROM pg_catalog.pg_constraint k JOIN pg_catalog.pg_class c ON c.oid = k.conrelid WHERE c.oid = ANY(%s::oid[])",
        "indexes": "SELECT c.relname, i.relname, pg_catalog.pg_get_indexdef(i.oid) FROM pg_catalog.pg_index x "
        "JOIN pg_catalog.pg_class c ON c.oid = x.indrelid JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid "
        "WHERE c.oid = ANY(%s::oid[])",
    }
    oids = [
        oid
        for (oid,) in raw.execute(
            "SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname OPERATOR(pg_catalog.=) 'public' AND c.relname OPERATOR(pg_catalog.=) ANY(%s::text[])",
            (list(WATCHED_TABLES),),
        )
    ]
    for kind, query in queries.items():
        for table, name, definition in raw.execute(query, (oids,)):
            found[kind].setdefault(table, {})[name] = definition
    return found


def catalog_problems(raw: Any) -> list[tuple[str, str]]:
    """(object, what is wrong) for every deviation from what the migrations installed.

    Run it with search_path = pg_catalog, pg_temp (`chain.verifying_snapshot` sets it): the definitions
    are printed relative to it, and no operator outside pg_catalog can answer these queries.
    """
    raw.execute("SET LOCAL search_path = pg_catalog, pg_temp")  # no operator of public's may answer
    problems: list[tuple[str, str]] = []
    tables = {
        name: (oid, kind, rls, force_rls, has_children)
        for name, oid, kind, rls, force_rls, has_children in raw.execute(
            "SELECT c.relname, c.oid, c.relkind, c.relrowsecurity, c.relforcerowsecurity, c.relhassubclass "
            "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relname = ANY(%s::text[])",
            (list(WATCHED_TABLES),),
        )
    }
    for table in WATCHED_TABLES:
        if table not in tables:
            problems.append((table, "table is missing"))
            continue
        oid, kind, rls, force_rls, has_children = tables[table]
        if kind != "r":
            problems.append((table, f"is not a plain table (relkind {kind!r}): readers may see something else"))
        if rls or force_rls:
            problems.append((table, "row-level security is enabled: readers may see different rows"))
        children = [
            name
            for (name,) in raw.execute(
                "SELECT inhrelid::regclass::text FROM pg_catalog.pg_inherits WHERE inhparent = %s::oid", (oid,)
            )
        ]
        if children or has_children:
            problems.append((table, f"has inheritance children ({', '.join(children) or 'dropped'}): rows outside it"))
        for (policy,) in raw.execute("SELECT polname FROM pg_catalog.pg_policy WHERE polrelid = %s::oid", (oid,)):
            problems.append((table, f"has a row-level security policy {policy!r}"))
        for (rule,) in raw.execute("SELECT rulename FROM pg_catalog.pg_rewrite WHERE ev_class = %s::oid", (oid,)):
            problems.append((table, f"has a rewrite rule {rule!r}"))
        for name, enabled in raw.execute(
            "SELECT tgname, tgenabled FROM pg_catalog.pg_trigger WHERE tgrelid = %s::oid", (oid,)
        ):
            if enabled != "O":
                problems.append((table, f"trigger {name} is disabled or changed (tgenabled {enabled!r})"))
    actual = catalog_definitions(raw)
    expected = {"triggers": EXPECTED_TRIGGERS, "constraints": EXPECTED_CONSTRAINTS, "indexes": EXPECTED_INDEXES}
    for kind, singular in (("triggers", "trigger"), ("constraints", "constraint"), ("indexes", "index")):
        for table in WATCHED_TABLES:
            want, have = expected[kind].get(table, {}), actual[kind].get(table, {})
            for name in sorted(set(want) | set(have)):
                if name not in have:
                    problems.append((table, f"{singular} {name} is missing"))
                elif name not in want:
                    problems.append((table, f"has an extra {singular} {name}: {have[name]}"))
                elif have[name] != want[name]:
                    problems.append((table, f"{singular} {name} was changed: {have[name]}"))
    roles = (  # the database's roles, and the tables' owner: the append functions' owner
        raw.execute(
            "SELECT t.app_role, t.auditor_role, pg_catalog.pg_get_userbyid(c.relowner) "
            "FROM ONLY public.trail_info t, pg_catalog.pg_class c WHERE c.oid = %s::oid",
            (tables["trail_info"][0],),
        ).fetchone()
        if "trail_info" in tables
        else None
    )
    app, auditor, tables_owner = roles if roles is not None else (None, None, None)
    labels = {app: "app", auditor: "auditor"}
    functions: dict[str, list[tuple[Any, ...]]] = {}
    for row in raw.execute(
        # Every function, not one per name: an overload is a second way in. EXECUTE grantees besides the owner.
        "SELECT p.proname, p.oid::pg_catalog.regprocedure::text, p.prosrc, p.prosecdef, p.proconfig, "
        "pg_catalog.pg_get_userbyid(p.proowner), ARRAY(SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' "
        "ELSE pg_catalog.pg_get_userbyid(a.grantee) END FROM pg_catalog.aclexplode(COALESCE(p.proacl, "
        "pg_catalog.acldefault('f', p.proowner))) a WHERE a.privilege_type = 'EXECUTE' AND a.grantee <> p.proowner) "
        "FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public' "
        "ORDER BY p.oid"
    ):
        functions.setdefault(row[0], []).append(row[1:])
    for name, (body_hash, definer) in EXPECTED_FUNCTIONS.items():
        if name not in functions:
            problems.append((f"function {name}", "is missing"))
            continue
        if len(functions[name]) > 1:
            signatures = ", ".join(signature for signature, *_ in functions[name])
            problems.append((f"function {name}", f"has an overload, a second function of that name: {signatures}"))
        for signature, source, actual_definer, config, owner, grantees in functions[name]:
            if function_body_hash(source) != body_hash:
                problems.append((f"function {name}", "its body differs from what the migrations installed"))
            if actual_definer != definer:
                problems.append((f"function {name}", f"SECURITY DEFINER is {actual_definer}, expected {definer}"))
            expected_config = EXPECTED_CONFIG_OF.get(name, EXPECTED_CONFIG)
            if list(config or ()) != expected_config:
                problems.append((f"function {name}", f"its settings are {config}, expected {expected_config}"))
            if owner != tables_owner:
                problems.append(
                    (f"function {signature}", f"is owned by {owner}, not by the tables' owner {tables_owner}")
                )
            granted = EXPECTED_EXECUTE.get(name, ())
            extra = sorted(set(grantees) - {role for role, label in labels.items() if label in granted} - {*granted})
            if extra:
                problems.append((f"function {signature}", f"EXECUTE is granted to {', '.join(extra)}"))
    for name in sorted(set(functions) - set(EXPECTED_FUNCTIONS)):
        problems.append((f"function public.{name}", "is not one of Jarvis's: it could stand in for a built-in"))
    for (operator,) in raw.execute(
        "SELECT o.oid::regoperator::text FROM pg_catalog.pg_operator o "
        "JOIN pg_catalog.pg_namespace n ON n.oid = o.oprnamespace WHERE n.nspname = 'public'"
    ):
        problems.append((f"operator public.{operator}", "is not one of Jarvis's: it could stand in for a built-in"))
    for kind, name in raw.execute(
        # PostgreSQL's own objects have oids below 16384; pg_catalog is searched first by every reader.
        "SELECT 'function', p.oid::regprocedure::text FROM pg_catalog.pg_proc p "
        "WHERE p.pronamespace = 'pg_catalog'::regnamespace AND p.oid >= 16384 "
        "UNION ALL SELECT 'operator', o.oid::regoperator::text FROM pg_catalog.pg_operator o "
        "WHERE o.oprnamespace = 'pg_catalog'::regnamespace AND o.oid >= 16384 "
        "UNION ALL SELECT 'relation', c.relname::text FROM pg_catalog.pg_class c "
        "WHERE c.relnamespace = 'pg_catalog'::regnamespace AND c.oid >= 16384 "
        "UNION ALL SELECT 'type', t.typname::text FROM pg_catalog.pg_type t "
        "WHERE t.typnamespace = 'pg_catalog'::regnamespace AND t.oid >= 16384"
    ):
        problems.append(
            (f"{kind} pg_catalog.{name}", "was added to pg_catalog: it could stand in for PostgreSQL's own")
        )
    # Casts between two built-in types verify uses are compared whole by `verify_sql.builtin_problems`. Here: a
    # user's cast touching a type a watched table's column has been given. Any other cast (the app role's own
    # type in agent_ext cast to text, issue 22 B13) converts values verify's queries never hold: not a problem.
    read = {
        int(type_oid)
        for (type_oid,) in raw.execute(
            "SELECT a.atttypid FROM pg_catalog.pg_attribute a WHERE a.attrelid = ANY(%s::oid[]) AND a.attnum > 0",
            ([oid for oid, *_ in tables.values()],),
        )
    } | set(RELIED_ON_TYPES)
    for source, target, source_name, target_name in raw.execute(
        "SELECT c.castsource, c.casttarget, c.castsource::regtype::text, c.casttarget::regtype::text "
        "FROM pg_catalog.pg_cast c WHERE c.oid >= 16384"
    ):
        if {source, target} <= read and not {source, target} <= RELIED_ON_TYPES.keys():
            problems.append(
                (
                    f"cast ({source_name} AS {target_name})",
                    "is user-defined, on a type an audit table's column has: it could change what readers see",
                )
            )
    return problems
