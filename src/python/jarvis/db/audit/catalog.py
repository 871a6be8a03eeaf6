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

WATCHED_TABLES = (
    "planning_cycles",
    "tool_calls",
    "decision_log",
    "schema_changes",
    "audit_chain",
    "audit_pending",
    "audit_seal_head",
    "trail_info",
)

# table -> {trigger name: function name}, the migrations' user-level triggers
EXPECTED_TRIGGERS: dict[str, dict[str, str]] = {
    "planning_cycles": {
        "planning_cycles_append_only": "jarvis_reject_mutation",
        "planning_cycles_no_truncate": "jarvis_reject_mutation",
        "planning_cycles_parent_is_start": "jarvis_planning_cycles_check_parent",
        "planning_cycles_one_open": "jarvis_planning_cycles_check_one_open",
        "planning_cycles_queue_for_sealing": "jarvis_queue_for_sealing",
        "planning_cycles_stamp_created_at": "jarvis_stamp_created_at",
    },
    "tool_calls": {
        "tool_calls_append_only": "jarvis_reject_mutation",
        "tool_calls_no_truncate": "jarvis_reject_mutation",
        "tool_calls_parent_is_start": "jarvis_tool_calls_check_parent",
        "tool_calls_cycle_reference": "jarvis_check_cycle_reference",
        "tool_calls_queue_for_sealing": "jarvis_queue_for_sealing",
        "tool_calls_stamp_created_at": "jarvis_stamp_created_at",
    },
    "decision_log": {
        "decision_log_append_only": "jarvis_reject_mutation",
        "decision_log_no_truncate": "jarvis_reject_mutation",
        "decision_log_cycle_reference": "jarvis_check_cycle_reference",
        "decision_log_queue_for_sealing": "jarvis_queue_for_sealing",
        "decision_log_stamp_created_at": "jarvis_stamp_created_at",
    },
    "schema_changes": {
        "schema_changes_append_only": "jarvis_reject_mutation",
        "schema_changes_no_truncate": "jarvis_reject_mutation",
        "schema_changes_queue_for_sealing": "jarvis_queue_for_sealing",
        "schema_changes_stamp_created_at": "jarvis_stamp_created_at",
    },
    "audit_chain": {
        "audit_chain_append_only": "jarvis_reject_mutation",
        "audit_chain_no_truncate": "jarvis_reject_mutation",
    },
    "audit_pending": {},
    "audit_seal_head": {},
    "trail_info": {
        "trail_info_append_only": "jarvis_reject_mutation",
        "trail_info_no_truncate": "jarvis_reject_mutation",
    },
}

# function name -> (sha256 of its body, SECURITY DEFINER), as migration 0003 installed them
EXPECTED_FUNCTIONS: dict[str, tuple[str, bool]] = {
    "jarvis_canonical": ("49c896d66ad4da81d982b9ab211120cd587b4a9a9981a3a9876e80f11d284be7", False),
    "jarvis_check_cycle_reference": ("e99ae2519f06d3ddd669a11c3011a08718bed192f6d2571f3cf584d95a520d14", False),
    "jarvis_planning_cycles_check_one_open": (
        "44b946f051b6173bd19420f0fe37abaa14ee8a7b1a051baf71a8dbbc5ca0f5c4",
        False,
    ),
    "jarvis_planning_cycles_check_parent": ("08da8fcd7547e5b34d7841bc463c8d1856052b78667d6a54bc9a3e0f07f9efc0", False),
    "jarvis_queue_for_sealing": ("5536ea0994787f43b1b40d22f67b42b9676ab0b45e7b9ee80404eccf298bd796", True),
    "jarvis_reject_mutation": ("7ddf847cbc8eb6fe5c1799266e079bf6013f10cf15f0e4afbf3190dc77d3b29e", False),
    "jarvis_seal": ("8b9a590538f44dd6f183b7410e7f9e1fde47c345156a3029c9392a6d9110c75f", True),
    "jarvis_serial_uuid": ("ccda40a165b32fc8a147959ae8b7861e5303467a4ac1a1b6663739ece3d5e2d7", False),
    "jarvis_stamp_created_at": ("7e5a6b7635a71bc03c7dcaec3696c555fee901322093c70a154cb57db115d297", False),
    "jarvis_tool_calls_check_parent": ("e3585a2cfbfcbb4b11d4b4268e547b5ca91cc3ebd5d27ca7e65b2cf2ef9c900f", False),
}

EXPECTED_CONFIG = ["search_path=pg_catalog, pg_temp"]


def function_body_hash(body: str) -> str:
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def catalog_problems(raw: Any) -> list[tuple[str, str]]:
    """(object, what is wrong) for every deviation from what the migrations installed."""
    problems: list[tuple[str, str]] = []
    tables = {
        name: (oid, kind, rls, force_rls, has_children)
        for name, oid, kind, rls, force_rls, has_children in raw.execute(
            "SELECT c.relname, c.oid, c.relkind, c.relrowsecurity, c.relforcerowsecurity, c.relhassubclass "
            "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relname = ANY(%s)",
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
                "SELECT inhrelid::regclass::text FROM pg_catalog.pg_inherits WHERE inhparent = %s", (oid,)
            )
        ]
        if children or has_children:
            problems.append((table, f"has inheritance children ({', '.join(children) or 'dropped'}): rows outside it"))
        for (policy,) in raw.execute("SELECT polname FROM pg_catalog.pg_policy WHERE polrelid = %s", (oid,)):
            problems.append((table, f"has a row-level security policy {policy!r}"))
        for (rule,) in raw.execute("SELECT rulename FROM pg_catalog.pg_rewrite WHERE ev_class = %s", (oid,)):
            problems.append((table, f"has a rewrite rule {rule!r}"))
        expected = EXPECTED_TRIGGERS[table]
        seen: set[str] = set()
        for name, function, enabled, internal in raw.execute(
            "SELECT t.tgname, p.proname, t.tgenabled, t.tgisinternal FROM pg_catalog.pg_trigger t "
            "JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid WHERE t.tgrelid = %s",
            (oid,),
        ):
            if enabled != "O":
                problems.append((table, f"trigger {name} is disabled (tgenabled {enabled!r})"))
            if internal:
                continue
            seen.add(name)
            if name not in expected:
                problems.append((table, f"has an extra trigger {name} (calls {function})"))
            elif expected[name] != function:
                problems.append((table, f"trigger {name} calls {function} instead of {expected[name]}"))
        for name in sorted(set(expected) - seen):
            problems.append((table, f"trigger {name} is missing"))
    functions = {
        name: (source, definer, config)
        for name, source, definer, config in raw.execute(
            "SELECT p.proname, p.prosrc, p.prosecdef, p.proconfig FROM pg_catalog.pg_proc p "
            "JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = 'public' AND p.proname = ANY(%s)",
            (list(EXPECTED_FUNCTIONS),),
        )
    }
    for name, (body_hash, definer) in EXPECTED_FUNCTIONS.items():
        if name not in functions:
            problems.append((f"function {name}", "is missing"))
            continue
        source, actual_definer, config = functions[name]
        if function_body_hash(source) != body_hash:
            problems.append((f"function {name}", "its body differs from what the migrations installed"))
        if actual_definer != definer:
            problems.append((f"function {name}", f"SECURITY DEFINER is {actual_definer}, expected {definer}"))
        if not config or not [c for c in config if c.startswith("search_path=")] == EXPECTED_CONFIG:
            problems.append((f"function {name}", f"its search_path setting is {config}, expected {EXPECTED_CONFIG}"))
    return problems
