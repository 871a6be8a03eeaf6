"""End to end in a real browser: Playwright driving Debian's Chromium against `jarvis ui` served by uvicorn.

The demo's trail is opened like an operator would: the cycle list, the failed cycle's timeline, a
hostile cycle that must not execute anything, and a live event after a new tool call.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from ui.conftest import Trail
from ui.trails import chromium_or_skip, launch, served

from jarvis.config import Settings
from jarvis.db import Database
from jarvis.db.audit import ToolCallLog
from jarvis.ui import create_app

DEADLINE_MS = 30_000


@pytest.fixture(scope="module")
def base_url(trail: Trail, auditor_database: Database, settings: Settings) -> Iterator[str]:
    with served(create_app(auditor_database, settings, live_window=60)) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = launch(playwright)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context()
    opened = context.new_page()
    opened.set_default_timeout(DEADLINE_MS)
    opened.dialogs = []  # every dialog a page opened: none may
    opened.on("dialog", lambda dialog: (opened.dialogs.append(dialog.message), dialog.dismiss()))
    yield opened
    context.close()


def test_the_cycle_list_shows_the_demo_cycles(page: Any, base_url: str, trail: Trail) -> None:
    page.goto(f"{base_url}/")
    rows = page.locator("table.cycles tbody tr")
    assert rows.count() == 4
    assert page.locator(f'a[href="/cycles/{trail.failed_cycle.cycle_id}"]').count() == 1
    assert page.locator("table.cycles .badge.failed").count() == 2  # the demo's failed cycle and the hostile one


def test_the_failed_cycle_shows_its_bars_and_the_failed_step(page: Any, base_url: str, trail: Trail) -> None:
    page.goto(f"{base_url}/")
    page.click(f'a[href="/cycles/{trail.failed_cycle.cycle_id}"]')
    page.wait_for_url(re.compile(r"/cycles/"))
    bars = page.locator("svg.chart g.call")
    assert bars.count() == 2
    assert [bars.nth(i).get_attribute("data-status") for i in range(2)] == ["failed", "succeeded"]
    assert page.locator("svg.chart g.call.failed rect.bar").bounding_box()["width"] > 0
    assert page.locator("svg.chart g.decision").count() == 2
    failed_row = page.locator("table.timeline tr.kind-tool-failed")
    assert failed_row.count() == 1
    assert "exchange API unreachable (simulated)" in failed_row.inner_text()


def test_a_hostile_trail_executes_nothing(page: Any, base_url: str, trail: Trail) -> None:
    for path in ("/", f"/cycles/{trail.hostile.cycle_id}", "/memory", "/state"):
        page.goto(f"{base_url}{path}")
        page.wait_for_load_state("load")
        assert page.evaluate("window.__pwned === undefined"), path
        assert page.title().endswith("Jarvis trail"), path
        assert page.locator("main script, main img, main b, main iframe").count() == 0, path
        assert page.locator('a[href^="javascript:"]').count() == 0, path
    page.goto(f"{base_url}/cycles/{trail.hostile.cycle_id}")
    page.hover("svg.chart g.decision")
    page.locator("table.timeline details").first.click()
    assert "<script>document.title" in page.locator("table.timeline").inner_text()
    show_all = page.locator("a.show-all").first.get_attribute("href")
    page.goto(f"{base_url}{show_all}")  # the whole 1 MB value: plain text, never HTML
    assert "<script>document.title" in page.inner_text("body")
    assert page.evaluate("window.__pwned === undefined")
    assert page.dialogs == []


def test_a_new_tool_call_appears_live(page: Any, base_url: str, database: Database) -> None:
    page.goto(f"{base_url}/")
    page.wait_for_selector("#live-state:text-is('connected')")
    ToolCallLog(database).start("live_in_the_browser", {"from": "the test"})
    page.wait_for_selector("#live li:has-text('live_in_the_browser')", timeout=DEADLINE_MS)
    assert "tool.started" in page.locator("#live li", has_text="live_in_the_browser").first.inner_text()


def test_the_verify_button_fills_the_progress_bar_and_reports_ok(page: Any, base_url: str) -> None:
    page.goto(f"{base_url}/integrity")
    page.click("#verify-form button")
    page.wait_for_selector("#verify[data-state='done'], #verify[data-state='error']", state="attached", timeout=120_000)
    assert page.locator("#verify").get_attribute("data-state") == "done", page.locator("#verify-result").inner_text()
    assert page.locator("#verify-bar").get_attribute("value") == "100"
    assert page.locator("#verify-result").inner_text().startswith("OK: ")
