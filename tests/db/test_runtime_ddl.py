"""Runtime DDL: the agent creates tables while running, and hostile definitions create nothing."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text

from jarvis.db import Database, RuntimeDDLError, RuntimeSchema, StateStore, TableConflictError


@pytest.fixture
def schema(database: Database) -> RuntimeSchema:
    return RuntimeSchema(database)


def test_create_table_makes_a_table_with_id_and_created_at(schema: RuntimeSchema) -> None:
    result = schema.create_table("trades", {"symbol": "text", "qty": "numeric", "meta": "jsonb"})
    assert result.created
    row_id = schema.insert_row("trades", {"symbol": "ETH", "qty": 2, "meta": {"venue": "dex"}})
    rows = schema.rows("trades")
    assert [(r["id"], r["symbol"], r["meta"]) for r in rows] == [(row_id, "ETH", {"venue": "dex"})]
    assert rows[0]["created_at"] is not None


def test_identical_definition_is_a_no_op(schema: RuntimeSchema) -> None:
    schema.create_table("notes", {"body": "text"})
    again = schema.create_table("notes", {"body": "text"})
    assert again.created is False


def test_conflicting_definition_is_refused(schema: RuntimeSchema) -> None:
    schema.create_table("prices", {"usd": "numeric"})
    with pytest.raises(TableConflictError, match="already exists"):
        schema.create_table("prices", {"usd": "text"})


def test_creation_is_recorded_for_audit(schema: RuntimeSchema, owner_database: Database) -> None:
    schema.create_table("audited_ext", {"x": "integer"})
    with owner_database.connect() as conn:
        rows = conn.execute(text("SELECT action, columns FROM schema_changes WHERE table_name = 'audited_ext'")).all()
    assert [(r.action, r.columns) for r in rows] == [("create_table", {"x": "integer"})]


@pytest.mark.parametrize(
    "name",
    [
        "x; DROP TABLE tool_calls",
        'x"; DROP TABLE tool_calls; --',
        "pg_catalog",
        "pg_anything",
        "a" * 64,
        "Trades",
        "tr\u0430des",  # Cyrillic a
        "\uff54\uff52\uff41\uff44\uff45\uff53",  # fullwidth "trades"
        "select",
        "user",
        "1abc",
        "",
    ],
)
def test_hostile_table_names_are_refused_with_nothing_created(
    schema: RuntimeSchema, owner_database: Database, name: str
) -> None:
    before = schema.tables()
    with pytest.raises(RuntimeDDLError):
        schema.create_table(name, {"x": "text"})
    assert schema.tables() == before
    with owner_database.connect() as conn:
        assert conn.execute(text("SELECT to_regclass('public.tool_calls')")).scalar() is not None


@pytest.mark.parametrize("column", ["id", "created_at", "x y", "order", "col;drop"])
def test_hostile_or_reserved_column_names_are_refused(schema: RuntimeSchema, column: str) -> None:
    with pytest.raises(RuntimeDDLError):
        schema.create_table("cols_refused", {column: "text"})
    assert "cols_refused" not in schema.tables()


@pytest.mark.parametrize("kind", ["text; DROP TABLE x", "varchar(10)", "serial", "TEXT"])
def test_types_outside_the_menu_are_refused(schema: RuntimeSchema, kind: str) -> None:
    with pytest.raises(RuntimeDDLError, match="choose one of"):
        schema.create_table("types_refused", {"x": kind})
    assert "types_refused" not in schema.tables()


def test_max_length_name_is_accepted(schema: RuntimeSchema) -> None:
    assert schema.create_table("a" * 63, {"x": "text"}).created


def test_insert_into_unknown_column_is_refused(schema: RuntimeSchema) -> None:
    schema.create_table("strict_cols", {"x": "text"})
    with pytest.raises(RuntimeDDLError, match="no column"):
        schema.insert_row("strict_cols", {"y": "1"})


def test_ddl_works_while_other_connections_write(schema: RuntimeSchema, database: Database) -> None:
    state = StateStore(database)
    stop = threading.Event()
    writes: list[int] = []
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            while not stop.is_set():
                writes.append(state.set("busy.writer", len(writes)).version)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        created = [schema.create_table(f"concurrent_{i}", {"v": "integer"}).created for i in range(5)]
    finally:
        stop.set()
        thread.join()
    assert created == [True] * 5 and not errors and len(writes) > 0


def test_concurrent_identical_creates_make_one_table(schema: RuntimeSchema) -> None:
    results: list[bool] = []
    threads = [
        threading.Thread(target=lambda: results.append(schema.create_table("raced", {"v": "text"}).created))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False, False, False, True]
