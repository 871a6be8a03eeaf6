"""The verifier's bulk checks, computed inside PostgreSQL and returned only where something is wrong.

Reading a million rows into Python to hash them there costs far more than the hashing: instead
each row's canonical encoding (encoding 2: the row's JSON with keys ordered by length then
bytes, top-level nulls left out, `"$table"` added) is rendered by an expression built here, in
the verifier's code, from the row's own columns, hashed with PostgreSQL's `sha256` and compared
with the link's `row_hash` in the same query. Chain links are recomputed the same way, each from
its stored predecessor. Only rows and links that do not match come back.

That trusts PostgreSQL's built-in functions and operators, which a superuser can redefine in
place (`CREATE OR REPLACE FUNCTION pg_catalog.sha256 ...` keeps the built-in's OID, and the
planner inlines an SQL body), or re-point (`pg_operator.oprcode`). `builtin_problems` therefore
checks, in Python and without trusting any operator, every function and operator these queries
call: each must still be PostgreSQL's own compiled function. Built-ins are dispatched by OID to
compiled code, so an edited `prosrc` of an internal function never runs.

A table whose columns are not the ones the models declare (a column added, dropped or retyped)
is rendered with `public.jarvis_canonical(to_jsonb(row))` instead: every column, whatever its type,
exactly as the sealer rendered it (slower, and the catalog check compares that function's body).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql

from jarvis.db.base import Base

INTERNAL_LANGUAGE = 12
"""pg_language's OID of `internal`: PostgreSQL's compiled functions (fixed since forever)."""
FIRST_USER_OID = 16384
"""Objects PostgreSQL creates have OIDs below this; anything a user creates, at or above."""

TYPE_OIDS = {"uuid": 2950, "text": 25, "jsonb": 3802, "integer": 23, "bigint": 20, "timestamp with time zone": 1184}
"""The built-in types of the audit columns, by their fixed OIDs (compared without calling any function)."""

RELIED_ON_FUNCTIONS = (
    "pg_catalog.sha256(bytea)",
    "pg_catalog.convert_to(text, name)",
    "pg_catalog.to_json(anyelement)",
    "pg_catalog.jsonb_typeof(jsonb)",
    'pg_catalog.concat("any")',
    "pg_catalog.substr(text, integer)",
    "pg_catalog.date_part(text, timestamp with time zone)",
    "pg_catalog.width_bucket(anycompatible, anycompatiblearray)",
    "pg_catalog.lag(anycompatible, integer, anycompatible)",
    "pg_catalog.int8send(bigint)",
    "pg_catalog.uuid_send(uuid)",
    "pg_catalog.lpad(text, integer, text)",
    "pg_catalog.to_hex(bigint)",
    "pg_catalog.count()",
    "pg_catalog.pg_export_snapshot()",
)
"""Every function the queries below call (and `public.jarvis_serial_uuid`'s body calls)."""

RELIED_ON_OPERATORS = {
    ("=", "bytea", "bytea"): "byteaeq",
    ("<>", "bytea", "bytea"): "byteane",
    ("||", "bytea", "bytea"): "byteacat",
    ("||", "text", "text"): "textcat",
    ("=", "text", "text"): "texteq",
    ("<>", "text", "text"): "textne",
    ("=", "uuid", "uuid"): "uuid_eq",
    ("=", "bigint", "bigint"): "int8eq",
    ("<>", "bigint", "bigint"): "int8ne",
    (">", "bigint", "bigint"): "int8gt",
    ("<=", "bigint", "bigint"): "int8le",
    ("+", "bigint", "bigint"): "int8pl",
    ("-", "bigint", "bigint"): "int8mi",
    ("<>", "smallint", "smallint"): "int2ne",
    (">", "smallint", "smallint"): "int2gt",
    ("=", "oid", "oid"): "oideq",
    ("+", "integer", "integer"): "int4pl",
    ("<=", "integer", "integer"): "int4le",
    (">=", "integer", "integer"): "int4ge",
    ("<", "double precision", "double precision"): "float8lt",
    (">", "double precision", "double precision"): "float8gt",
    ("<>", "double precision", "double precision"): "float8ne",
    (">=", "timestamp with time zone", "timestamp with time zone"): "timestamptz_ge",
    ("<", "timestamp with time zone", "timestamp with time zone"): "timestamptz_lt",
}
"""Every operator the queries below use, with the built-in function that must implement it."""


def builtin_problems(raw: Any) -> list[tuple[str, str]]:
    """(object, what is wrong) for each function or operator above that is no longer PostgreSQL's own.

    Names are resolved by type-input casts of literals (dispatched by OID, never inlined) and every
    comparison is made here in Python: no operator of the database decides whether operators lie.
    """
    columns = ", ".join(f"%s::pg_catalog.regprocedure::pg_catalog.oid AS f{i}" for i in range(len(RELIED_ON_FUNCTIONS)))
    wanted = raw.execute(f"SELECT {columns}", RELIED_ON_FUNCTIONS).fetchone()
    procs = {
        oid: (name, lang)
        for oid, name, lang in raw.execute(
            "SELECT p.oid, p.proname::pg_catalog.text, p.prolang FROM pg_catalog.pg_proc p"
        )
    }
    problems: list[tuple[str, str]] = []
    for signature, oid in zip(RELIED_ON_FUNCTIONS, wanted, strict=True):
        if oid >= FIRST_USER_OID:
            problems.append((f"function {signature}", "is not PostgreSQL's own (a user created it)"))
        elif procs.get(oid, ("", INTERNAL_LANGUAGE))[1] != INTERNAL_LANGUAGE:
            problems.append((f"function {signature}", "was redefined: it is no longer PostgreSQL's compiled function"))
    types = {oid: name for name, oid in TYPE_OIDS.items()} | {
        17: "bytea",
        21: "smallint",
        26: "oid",
        701: "double precision",
    }
    found: dict[tuple[str, str, str], list[tuple[int, int]]] = {}
    for oid, name, left, right, code, namespace in raw.execute(
        "SELECT o.oid, o.oprname::pg_catalog.text, o.oprleft, o.oprright, o.oprcode::pg_catalog.oid, o.oprnamespace "
        "FROM pg_catalog.pg_operator o"
    ):
        key = (name, types.get(left, ""), types.get(right, ""))
        if key in RELIED_ON_OPERATORS and namespace == PG_CATALOG_NAMESPACE:
            found.setdefault(key, []).append((oid, code))
    for key, function in RELIED_ON_OPERATORS.items():
        label = f"operator {key[0]} ({key[1]}, {key[2]})"
        implementations = found.get(key, [])
        if len(implementations) != 1:
            problems.append((label, f"exists {len(implementations)} times in pg_catalog, expected once"))
            continue
        oid, code = implementations[0]
        name, language = procs.get(code, ("", -1))
        if oid >= FIRST_USER_OID or code >= FIRST_USER_OID or name != function or language != INTERNAL_LANGUAGE:
            problems.append((label, f"is implemented by {name or code}, not PostgreSQL's {function}"))
    return problems


PG_CATALOG_NAMESPACE = 11
"""pg_namespace's OID of pg_catalog (fixed)."""


def expected_columns(table: str) -> dict[str, str]:
    """{column: PostgreSQL type name} as the models declare the table."""
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    return {column.name: column.type.compile(dialect=dialect).lower() for column in Base.metadata.tables[table].columns}


def stored_columns(raw: Any, table: str) -> dict[str, int]:
    """{column: type OID} of `public.<table>` as the database holds it now."""
    return {
        name: type_oid
        for name, type_oid in raw.execute(
            "SELECT a.attname::pg_catalog.text, a.atttypid FROM pg_catalog.pg_attribute a "
            "WHERE a.attrelid = %s::pg_catalog.regclass::pg_catalog.oid "
            "AND a.attnum OPERATOR(pg_catalog.>) 0::pg_catalog.int2 AND NOT a.attisdropped",
            (f"public.{table}",),
        )
    }


def _key_order(key: str) -> tuple[int, bytes]:
    encoded = key.encode("utf-8")
    return len(encoded), encoded


def _member(column: str, kind: str) -> list[str]:
    """`, "column": value` as arguments of one `concat` (which skips NULLs): nothing when the value is NULL.

    The key is given only when the value is there (JSON null in a jsonb column counts as absent,
    as `jarvis_canonical` drops it); the value goes in as itself, printed by its type's output
    function, or through `to_json` where JSON needs quoting or another timestamp format.
    """
    key = f"', \"{column}\": '"
    value = f"x.{column}"
    if kind == "uuid":
        return [
            f"CASE WHEN {value} IS NOT NULL THEN {key[:-1]}\"' END",
            value,
            f"CASE WHEN {value} IS NOT NULL THEN '\"' END",
        ]
    if kind == "jsonb":
        present = f"pg_catalog.jsonb_typeof({value}) <> 'null'::pg_catalog.text"
        return [f"CASE WHEN {present} THEN {key} END", f"CASE WHEN {present} THEN {value} END"]
    present = f"CASE WHEN {value} IS NOT NULL THEN {key} END"
    if kind in ("text", "timestamp with time zone"):
        return [present, f"pg_catalog.to_json({value})"]
    return [present, value]  # integer, bigint: their decimal text


def canonical_sql(table: str, columns: dict[str, str] | None) -> str:
    """An expression for the row `x`'s canonical text (encoding 2).

    With the models' `columns` it is one `concat` of the members in canonical key order; without
    (the table's columns differ from the models') it is the sealer's own `jarvis_canonical`.
    """
    if columns is None:
        return f"public.jarvis_canonical('{table}'::pg_catalog.text, pg_catalog.to_jsonb(x))"
    members = {name: _member(name, kind) for name, kind in columns.items()}
    members["$table"] = [f'\', "$table": "{table}"\'']
    arguments = [argument for key in sorted(members, key=_key_order) for argument in members[key]]
    # Every member starts with ", "; the first one's is cut off (substr from the third character).
    return f"'{{' || pg_catalog.substr(pg_catalog.concat({', '.join(arguments)}), 3) || '}}'"


def renderable_columns(raw: Any, table: str) -> dict[str, str] | None:
    """The models' columns when the stored table has exactly those (names and types); else None."""
    wanted = expected_columns(table)
    if any(kind not in TYPE_OIDS for kind in wanted.values()):
        return None
    have = stored_columns(raw, table)
    if have != {name: TYPE_OIDS[kind] for name, kind in wanted.items()}:
        return None
    return wanted


def row_check_sql(table: str, columns: dict[str, str] | None, *, every_row: bool, id_is_uuid: bool) -> str:
    """Rows of `table` and their links that disagree, or that need a closer look in Python.

    `every_row` (a full verify) reads every row of the table with its link, if any (rows in no
    link come back; links whose row is gone are counted and named by `DELETED_ROWS_SQL`), in a
    plan PostgreSQL may run in parallel; otherwise only the links after `%(after)s` with their
    rows. Parameters: after, heads (checkpoint positions, sorted), lower and upper (epoch bounds
    of created_at per checkpoint interval), low and high (the loadable range). Returned: row id
    (NULL: deleted), the link's row id (NULL: not in the chain), seq, encoding, whether the hash
    matches, created_at's epoch, the checkpoint interval, and the link's row hash.
    """
    key = row_key(table, id_is_uuid)
    links = (
        "SELECT l.seq, l.row_id, l.row_hash, l.encoding FROM ONLY public.audit_chain l "
        f"WHERE l.table_name = '{table}'::pg_catalog.text"
    )
    if every_row:
        source = f"ONLY public.{table} x LEFT JOIN ({links}) c ON c.row_id = {key}"
    else:
        links += " AND l.seq > %(after)s::pg_catalog.int8"
        source = f"({links}) c LEFT JOIN ONLY public.{table} x ON {key} = c.row_id"
    return (
        f"SELECT {key} AS row_id, c.row_id AS link_row_id, c.seq, c.encoding, matches, epoch, interval, c.row_hash "
        f"FROM {source}, "
        "LATERAL (SELECT c.row_hash = pg_catalog.sha256(pg_catalog.convert_to("
        f"{canonical_sql(table, columns)}, 'UTF8'::pg_catalog.name)) AS matches, "
        "pg_catalog.date_part('epoch'::pg_catalog.text, x.created_at) AS epoch, "
        "pg_catalog.width_bucket(c.seq - 1::pg_catalog.int8, %(heads)s::pg_catalog.int8[]) AS interval) v "
        "WHERE x.id IS NULL OR c.row_id IS NULL OR c.encoding <> 2::pg_catalog.int2 OR matches IS NOT TRUE "
        "OR x.created_at IS NULL OR x.created_at < %(low)s::pg_catalog.timestamptz "
        "OR x.created_at >= %(high)s::pg_catalog.timestamptz "
        "OR epoch < (%(lower)s::pg_catalog.float8[])[interval] "
        "OR epoch > (%(upper)s::pg_catalog.float8[])[interval + 1::pg_catalog.int4]"
    )


def row_key(table: str, id_is_uuid: bool) -> str:
    """The row `x`'s id as its links name it (schema_changes' bigints through `jarvis_serial_uuid`)."""
    return "x.id" if id_is_uuid else "public.jarvis_serial_uuid(x.id)"


def deleted_rows_sql(table: str, id_is_uuid: bool) -> str:
    """Links of `table` whose row is gone: (seq, row id)."""
    return (
        "SELECT l.seq, l.row_id FROM ONLY public.audit_chain l "
        f"WHERE l.table_name = '{table}'::pg_catalog.text "
        f"AND NOT EXISTS (SELECT FROM ONLY public.{table} x WHERE {row_key(table, id_is_uuid)} = l.row_id)"
    )


LINK_CHECK_SQL = (
    "SELECT s.seq, s.table_name, s.row_id, s.previous_seq, s.chain_hash <> s.recomputed AS bad_link, s.encoding "
    "FROM (SELECT l.seq, l.table_name, l.row_id, l.encoding, l.chain_hash, "
    "  pg_catalog.lag(l.seq, 1, %(after)s::pg_catalog.int8) OVER w AS previous_seq, "
    "  pg_catalog.sha256(pg_catalog.lag(l.chain_hash, 1, %(previous)s::pg_catalog.bytea) OVER w "
    "    || pg_catalog.int8send(l.seq) || pg_catalog.convert_to(l.table_name, 'UTF8'::pg_catalog.name) "
    "    || '\\x00'::pg_catalog.bytea || pg_catalog.uuid_send(l.row_id) || l.row_hash) AS recomputed "
    "  FROM ONLY public.audit_chain l WHERE l.seq > %(after)s::pg_catalog.int8 WINDOW w AS (ORDER BY l.seq)) s "
    "WHERE s.chain_hash <> s.recomputed OR s.seq <> s.previous_seq + 1::pg_catalog.int8 "
    "OR s.encoding <> 1::pg_catalog.int2 AND s.encoding <> 2::pg_catalog.int2"
)
"""Links after `%(after)s` that do not follow from their stored predecessor (the first from
`%(previous)s`), positions skipped, and unknown encodings."""
