"""The `--rows N` run: the agent's cycle, sealing and verifying with N audited calls of history.

History is loaded through the real append path, server side: a DO block per batch that calls the
tables' append functions (every trigger fires, every row is queued) in planning cycles of ten
calls, as the app role; then it is sealed with Jarvis' `seal()`, so the chain is the one the
agent would have built. Nothing is vacuumed by hand: what autovacuum does in the meantime is
part of what is measured.
"""

from __future__ import annotations

import inspect
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from jarvis.db import Database
from jarvis.db.audit import PlanningLog, ToolCallLog, TrustedHead, seal, verify
from peer_bench.footprint import Meter
from peer_bench.jarvis_side import CALLS_PER_CYCLE, agent_cycle

AGENT = "bench-growth"
BASELINE_CALLS = 10_000
ROWS_PER_CYCLE = 2 + 2 * CALLS_PER_CYCLE
INCREMENT_ROWS = 10_000
"""The incremental verify's new rows (goal 4): whole cycles, so a little over 10,000."""
INCREMENT_CALLS = -(-INCREMENT_ROWS // ROWS_PER_CYCLE) * CALLS_PER_CYCLE
INCREMENT_ROWS_LOADED = INCREMENT_CALLS // CALLS_PER_CYCLE * ROWS_PER_CYCLE
CYCLES_PER_BATCH = 500
"""5,000 calls (11,000 rows) per transaction."""
CYCLES_PER_MEASUREMENT = 20

UUID7 = (
    "encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid()) placing "
    "substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3) FROM 1 FOR 6), "
    "52, 1), 53, 1), 'hex')::uuid"
)
"""A version-7 UUID (time first, like `jarvis.db.audit.uuid7`), so the indexes grow as they do in use."""

LOAD_BATCH = """
DO $bulk$
DECLARE
  cycle uuid;
  call uuid;
BEGIN
  FOR c IN 1..{cycles} LOOP
    cycle := {uuid7};
    PERFORM public.jarvis_append_planning_cycles(
      p_id => cycle, p_agent => '{agent}', p_status => 'started', p_goals => '{{"goal": "bench"}}'::jsonb);
    FOR i IN 0..{last_call} LOOP
      call := {uuid7};
      PERFORM public.jarvis_append_tool_calls(
        p_id => call, p_cycle_id => cycle, p_tool_name => 'bench', p_status => 'started',
        p_input => jsonb_build_object('i', i));
      PERFORM public.jarvis_append_tool_calls(
        p_id => {uuid7}, p_parent_id => call, p_tool_name => 'bench', p_status => 'succeeded',
        p_output => jsonb_build_object('ok', i), p_duration_ms => 0);
    END LOOP;
    PERFORM public.jarvis_append_planning_cycles(
      p_id => {uuid7}, p_parent_id => cycle, p_agent => '{agent}', p_status => 'succeeded',
      p_outcomes => '{{"done": true}}'::jsonb);
  END LOOP;
END $bulk$"""


@dataclass
class Growth:
    rows: int
    """Audited calls of history the cycle was measured at."""
    cycle_ms_small: float
    cycle_ms_large: float
    seal_rows_per_s: float
    verify_rows_per_s: float
    verify_rows: int
    verify_ok: bool
    incremental_s: float | None
    """Incremental verify after INCREMENT_CALLS new calls; None when `verify` has no incremental mode."""
    incremental_full: bool
    """The incremental verify found no checkpoint to start from and checked everything."""
    incremental_rows: int
    bytes_per_call: float
    queue_bytes: int
    calls_in_trail: int
    autovacuum: bool
    """Whether the server runs autovacuum at all: with it off, nothing reclaims the queue's dead rows."""

    @property
    def cycle_ratio(self) -> float:
        """Cycles per second at `rows` over at BASELINE_CALLS (1.0 = flat)."""
        return self.cycle_ms_small / self.cycle_ms_large


def verify_accepts(keyword: str) -> bool:
    """Whether this Jarvis' `verify` has the keyword (`incremental`, `progress`, `planned`): the
    benchmark runs against the Jarvis it is built with, older ones included."""
    return keyword in inspect.signature(verify).parameters


def progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=False
    )


def load(url: str, calls: int, progress: Progress, description: str) -> None:
    """Append `calls` audited calls (cycles of ten, as the app role) through the append functions."""
    cycles = calls // CALLS_PER_CYCLE
    task = progress.add_task(description, total=cycles * CALLS_PER_CYCLE)
    with psycopg.connect(url, autocommit=True) as conn:
        app_role = conn.execute("SELECT app_role FROM public.trail_info").fetchone()
        assert app_role is not None
        conn.execute(f'SET ROLE "{app_role[0]}"')
        while cycles > 0:
            batch = min(CYCLES_PER_BATCH, cycles)
            conn.execute(
                LOAD_BATCH.format(cycles=batch, last_call=CALLS_PER_CYCLE - 1, agent=AGENT, uuid7=UUID7).encode()
            )
            cycles -= batch
            progress.advance(task, batch * CALLS_PER_CYCLE)


@contextmanager
def chain_progress(url: str, progress: Progress, description: str, total: int) -> Iterator[None]:
    """Advance a bar from the seal head's position while `seal()` runs (one row, read twice a second)."""
    task = progress.add_task(description, total=total)
    done = threading.Event()
    with psycopg.connect(url, autocommit=True) as conn:
        start = _head(conn)

        def follow() -> None:
            while not done.wait(0.5):
                progress.update(task, completed=_head(conn) - start)

        follower = threading.Thread(target=follow, daemon=True)
        follower.start()
        try:
            yield
        finally:
            done.set()
            follower.join()
            progress.update(task, completed=_head(conn) - start)


def _head(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT seq FROM public.audit_seal_head").fetchone()
    return int(row[0]) if row else 0


def queued(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM public.audit_pending").fetchone()
    return int(row[0]) if row else 0


def seal_all(database: Database, url: str, progress: Progress, description: str) -> tuple[int, float, Any]:
    """Seal the whole queue; (rows linked, seconds, the last SealResult)."""
    with chain_progress(url, progress, description, queued(url)):
        started = time.perf_counter()
        result = seal(database, wait=30)
        seconds = time.perf_counter() - started
    return result.linked, seconds, result


def cycle_ms(database: Database, rounds: int) -> float:
    """The median over `rounds` of the mean agent cycle (open, ten calls, close, seal), in ms."""
    planning, tools = PlanningLog(database, agent=AGENT), ToolCallLog(database)
    means = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(CYCLES_PER_MEASUREMENT):
            agent_cycle(planning, tools, database)
        means.append((time.perf_counter() - started) * 1000 / CYCLES_PER_MEASUREMENT)
    return statistics.median(means)


def timed_verify(database: Database, progress: Progress, description: str, **options: Any) -> tuple[Any, float]:
    """verify() with a bar fed by its own `planned`/`progress` callbacks when it has them."""
    task = progress.add_task(description, total=None)
    if verify_accepts("planned") and verify_accepts("progress"):
        options["planned"] = lambda total: progress.update(task, total=total)
        options["progress"] = lambda done: progress.update(task, completed=done)
    started = time.perf_counter()
    report = verify(database, **options)
    seconds = time.perf_counter() - started
    finished = progress.tasks[task].total or report.rows_checked
    progress.update(task, total=finished, completed=finished)
    return report, seconds


def grow(database: Database, url: str, meter: Meter, database_name: str, *, rows: int, rounds: int) -> Growth:
    """Load BASELINE_CALLS calls, time the cycle; load up to `rows`, seal, time the cycle again; verify
    (full, then incrementally after INCREMENT_CALLS more); bytes per call at `rows`."""
    empty_disk, _ = meter.sizes([database_name])
    baseline = min(BASELINE_CALLS, rows)
    with progress_bar() as progress:
        load(url, baseline, progress, f"loading {baseline:,} calls")
        seal_all(database, url, progress, "sealing them")
        small = cycle_ms(database, rounds)
        load(url, rows - baseline, progress, f"loading {rows - baseline:,} more calls")
        linked, seal_seconds, _ = seal_all(database, url, progress, "sealing them")
        large = cycle_ms(database, rounds)
        report, verify_seconds = timed_verify(database, progress, "verifying the whole trail")
        disk, queue = meter.sizes([database_name])
        calls = _calls(url)
        incremental_s: float | None = None
        incremental_rows, incremental_full = 0, False
        if verify_accepts("incremental"):
            head = seal(database)  # the head a signed checkpoint would hold
            trusted = TrustedHead(head.head_seq, head.head_hash, head.sealed_at, "the benchmark's head")
            load(url, INCREMENT_CALLS, progress, f"loading {INCREMENT_CALLS:,} new calls")
            seal_all(database, url, progress, "sealing them")
            incremental, incremental_s = timed_verify(
                database, progress, "verifying the new rows", trusted=[trusted], incremental=True
            )
            incremental_rows = incremental.rows_checked
            incremental_full = getattr(incremental, "verified_from", True) is None
    return Growth(
        rows=rows,
        cycle_ms_small=small,
        cycle_ms_large=large,
        seal_rows_per_s=linked / seal_seconds if seal_seconds else 0.0,
        verify_rows_per_s=report.rows_checked / verify_seconds if verify_seconds else 0.0,
        verify_rows=report.rows_checked,
        verify_ok=report.ok,
        incremental_s=incremental_s,
        incremental_rows=incremental_rows,
        incremental_full=incremental_full,
        bytes_per_call=(disk - empty_disk) / calls if calls else 0.0,
        queue_bytes=queue,
        calls_in_trail=calls,
        autovacuum=_autovacuum(url),
    )


def _autovacuum(url: str) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SHOW autovacuum").fetchone()
    return bool(row and row[0] == "on")


def _calls(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM ONLY public.tool_calls WHERE parent_id IS NULL").fetchone()
    return int(row[0]) if row else 0
