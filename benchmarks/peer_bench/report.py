"""The run as Markdown: the machine, the command, every table and the goals."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from jarvis.db.audit import VerifyReport
from peer_bench.footprint import Footprint
from peer_bench.goals import Goal
from peer_bench.growth import INCREMENT_CALLS, INCREMENT_ROWS_LOADED, Growth
from peer_bench.rounds import Contender, Rates

SETTINGS = ("fsync", "synchronous_commit", "full_page_writes", "wal_level", "shared_buffers", "autovacuum")

AUDITED = ("raw", "raw_tool_calls", "lg_put", "record", "agent", "dbos", "lg_graph")
STATE = (
    ("raw_select", "raw_select"),
    ("state_get", "raw_select"),
    ("cached_get", "raw_select"),
    ("raw_upsert", "raw_upsert"),
    ("state_set", "raw_upsert"),
)


def server(url: str) -> str:
    """PostgreSQL's version and the settings that decide what a commit costs."""
    with psycopg.connect(url, autocommit=True) as conn:
        version: Any = conn.execute("SHOW server_version").fetchone()
        values = [f"{name} = {conn.execute(f'SHOW {name}').fetchone()[0]}" for name in SETTINGS]  # type: ignore[index]
    return f"PostgreSQL {version[0]} ({', '.join(values)})"


def _rate_row(label: str, rates: Rates, base: Rates, unit: str = "") -> str:
    ratio = rates.median / base.median if base.median else 0.0
    return f"| {label} | {rates.median:,.0f}{unit} | {rates.low:,.0f}-{rates.high:,.0f} | {ratio:.2f} |"


def tables(
    contenders: Sequence[Contender],
    rates: dict[str, Rates],
    footprints: dict[str, Footprint],
    *,
    chain: VerifyReport,
    growth: Growth | None,
    goals: Sequence[Goal],
) -> list[str]:
    label = {c.key: c.label for c in contenders}
    raw = rates["raw"]
    lines = [
        "| unit of work | calls/s (median) | min-max | x raw psycopg (plain table) |",
        "| --- | ---: | ---: | ---: |",
        *[_rate_row(label[key], rates[key], raw) for key in AUDITED],
        "",
        "| concurrency | calls/s (median) | min-max | x raw psycopg, same concurrency |",
        "| --- | ---: | ---: | ---: |",
        _rate_row(label["raw16"], rates["raw16"], rates["raw16"]),
        _rate_row(label["agents16"], rates["agents16"], rates["raw16"]),
        "",
        f"16 agents / one agent: **{rates['agents16'].median / rates['agent'].median:.2f}**. "
        f"Chain check after all rounds (`verify` of the whole trail, every agent's rows): {chain.summary()}",
        *[f"- {problem}" for problem in chain.problems[:5]],
        "",
        "| state | operations/s (median) | min-max | median ms per operation | x raw psycopg |",
        "| --- | ---: | ---: | ---: | ---: |",
        *[
            f"| {label[key]} | {rates[key].median:,.0f} | {rates[key].low:,.0f}-{rates[key].high:,.0f} | "
            f"{1000 / rates[key].median if rates[key].median else 0:.3f} | "
            f"{rates[key].median / rates[base].median if rates[base].median else 0:.2f} |"
            for key, base in STATE
        ],
        "",
        "What each contender writes per unit (one audited call, one state write), measured in a pass of its own "
        "after the timed rounds; Jarvis' figures include the sealing the call causes (run after it), DBOS' what its "
        "background threads commit to its system database meanwhile. WAL is the server's: exact only when nothing "
        "else writes to it.",
        "",
        "| contender | commits | rows inserted | rows updated | rows deleted | WAL bytes | bytes on disk | "
        "queue (audit_pending) bytes |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        *[
            f"| {label[key]} | {f.commits:.2f} | {f.inserted:.2f} | {f.updated:.2f} | {f.deleted:.2f} | "
            f"{f.wal_bytes:,.0f} | {f.disk_bytes:,.0f} | {f.queue_bytes:,.0f} |"
            for key, f in footprints.items()
        ],
    ]
    if growth is not None:
        incremental = (
            f"{growth.incremental_s:.2f} s ({growth.incremental_rows:,} rows checked"
            + (", from the start: no checkpoint found)" if growth.incremental_full else ")")
            if growth.incremental_s is not None
            else "not available (`verify` has no `incremental` keyword)"
        )
        lines += [
            "",
            f"Growth: {growth.rows:,} audited calls loaded through the append functions in planning cycles of ten "
            f"and sealed ({growth.verify_rows:,} rows in the chain at the full verify); no manual VACUUM."
            + (
                ""
                if growth.autovacuum
                else " **autovacuum is off on this server**: nothing reclaimed the queue's dead rows, so goal 5 "
                "measures the server's configuration as much as Jarvis."
            ),
            "",
            "| measurement | figure |",
            "| --- | ---: |",
            f"| agent cycle (open, 10 calls, close, seal) at 10k calls | {growth.cycle_ms_small:.2f} ms |",
            f"| agent cycle at {growth.rows:,} calls | {growth.cycle_ms_large:.2f} ms |",
            f"| cycle rate at {growth.rows:,} / at 10k | {growth.cycle_ratio:.2f} |",
            f"| seal (the whole queue after loading) | {growth.seal_rows_per_s:,.0f} rows/s |",
            f"| full verify ({growth.verify_rows:,} rows, {'OK' if growth.verify_ok else 'FAILED'}) | "
            f"{growth.verify_rows_per_s:,.0f} rows/s |",
            f"| incremental verify after {INCREMENT_CALLS:,} new calls ({INCREMENT_ROWS_LOADED:,} rows) "
            f"| {incremental} |",
            f"| bytes on disk per audited call ({growth.calls_in_trail:,} calls) | {growth.bytes_per_call:,.0f} |",
            f"| sealing queue (audit_pending) on disk | {growth.queue_bytes:,} bytes |",
        ]
    lines += [
        "",
        "### Goals",
        "",
        "| # | goal | target | this run | verdict |",
        "| ---: | --- | --- | --- | --- |",
        *[f"| {g.number} | {g.title} | {g.target} | {g.figures or '-'} | {g.verdict} |" for g in goals],
    ]
    return lines
