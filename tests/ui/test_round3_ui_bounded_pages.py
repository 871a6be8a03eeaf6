"""B12 (issue 22): a cycle page costs one page of memory and time, whatever the cycle's size.

One MCP session can make a cycle of tens of thousands of calls with 20 kB values each; the cycle
page used to load every value of the cycle before keeping 2,000 rows. Here a cycle of 3,000 calls
with 20 kB outputs (6,001 rows, ~60 MB of values) is shown: one page holds at most TIMELINE_PAGE
rows, each value cut in SQL, the response stays small, the Python heap of the request stays
small, and every row is reachable through the next-page links exactly once.
"""

from __future__ import annotations

import re
import tracemalloc
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from starlette.testclient import TestClient

from jarvis.config import Settings
from jarvis.db import Database
from jarvis.db.audit import PlanningLog
from jarvis.ui import create_app
from jarvis.ui.app import TIMELINE_PAGE

CALLS = 3_000
VALUE_BYTES = 20_000
ROW_ID = re.compile(r'<tr id="row-([0-9a-f-]{36})"')


@pytest.fixture(scope="module")
def big_cycle(database: Database, migrated_database_url: str) -> uuid.UUID:
    """An open cycle with CALLS tool calls whose outputs are VALUE_BYTES each, written set-wise in two statements.

    Written with the triggers on (each row is queued for the sealer, as the agent's own rows are).
    """
    cycle = PlanningLog(database, agent="bulk").open_cycle(["a very long MCP session"])
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO public.tool_calls (id, cycle_id, tool_name, status, input) "
            "SELECT gen_random_uuid(), %s, 'fetch', 'started', jsonb_build_object('page', i) "
            "FROM generate_series(1, %s) i",
            (cycle, CALLS),
        )
        conn.execute(
            "INSERT INTO public.tool_calls (id, parent_id, tool_name, status, output, duration_ms) "
            "SELECT gen_random_uuid(), s.id, 'fetch', 'succeeded', "
            "jsonb_build_object('body', repeat(md5(s.id::text), %s)), 1 "
            "FROM public.tool_calls s WHERE s.cycle_id = %s",
            (VALUE_BYTES // 32, cycle),
        )
    return cycle


@pytest.fixture(scope="module")
def client(auditor_database: Database, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(auditor_database, settings), base_url="http://127.0.0.1") as test_client:
        yield test_client


def test_a_huge_cycle_renders_one_bounded_page(client: TestClient, big_cycle: uuid.UUID) -> None:
    tracemalloc.start()
    try:
        page = client.get(f"/cycles/{big_cycle}")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert page.status_code == 200
    rows = ROW_ID.findall(page.text)
    assert 0 < len(rows) <= TIMELINE_PAGE
    assert len(page.content) < 1_500_000, f"{len(page.content):,} bytes for one page"
    assert peak < 40_000_000, f"the request's Python heap peaked at {peak:,} bytes"
    assert re.search(rf'rel="next" href="/cycles/{big_cycle}\?after=', page.text)


def test_every_row_of_a_huge_cycle_is_reachable_by_next_page_links(client: TestClient, big_cycle: uuid.UUID) -> None:
    seen: list[str] = []
    path: str | None = f"/cycles/{big_cycle}"
    pages = 0
    while path is not None:
        page = client.get(path)
        assert page.status_code == 200
        rows = ROW_ID.findall(page.text)
        assert len(rows) <= TIMELINE_PAGE
        seen += rows
        pages += 1
        found = re.search(r'rel="next" href="([^"]+)"', page.text)
        path = found.group(1).replace("&amp;", "&") if found else None
        assert pages <= 2 * CALLS // TIMELINE_PAGE + 2, "the next-page links do not end"
    assert len(seen) == 2 * CALLS + 1 and len(set(seen)) == len(seen)


def test_a_large_value_on_a_page_is_cut_with_a_show_all_link(client: TestClient, big_cycle: uuid.UUID) -> None:
    path: str | None = f"/cycles/{big_cycle}"
    links: list[str] = []
    while path is not None and not links:  # the outputs come after the starts
        page = client.get(path)
        links = re.findall(r'class="show-all" href="(/cycles/[^"]+)"', page.text)
        found = re.search(r'rel="next" href="([^"]+)"', page.text)
        path = found.group(1).replace("&amp;", "&") if found else None
    assert links, "no value was cut"
    assert len(page.content) < 1_500_000
    full = client.get(links[0])
    assert full.status_code == 200 and len(full.text) > VALUE_BYTES
