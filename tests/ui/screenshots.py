"""Regenerate docs/screenshots/*.png: the demo's trail in `jarvis ui`, photographed by headless Chromium.

    PYTHONPATH=src/python:tests python -m ui.screenshots        # from the repository root

Uses DATABASE_URL's server (else a private embedded PostgreSQL, like the tests) with a throwaway
database, runs the demo's plan with a real agent, serves the UI as the auditor role and saves the
cycle list, the failed cycle and the integrity page after a verify. Not a test: it asserts nothing.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("JARVIS_DATA_DIR", tempfile.mkdtemp(prefix="jarvis-screenshots-"))

from playwright.sync_api import sync_playwright  # noqa: E402
from ui.trails import CHROMIUM, demo_agent, launch, run_demo_plan, served  # noqa: E402

from jarvis.config import load_settings  # noqa: E402
from jarvis.db import open_database  # noqa: E402
from jarvis.db.migrate import upgrade_to_head  # noqa: E402
from jarvis.ui import create_app  # noqa: E402
from jarvis_testkit import services  # noqa: E402

OUT = Path("docs/screenshots")


def main() -> None:
    if not CHROMIUM.exists():
        sys.exit(f"{CHROMIUM} is missing: apt-get install chromium")
    OUT.mkdir(parents=True, exist_ok=True)
    with services.fresh_database(services.postgres_admin_url(), "ui_screenshots") as url:
        settings = load_settings(database_url=url)
        upgrade_to_head(settings, url=url)
        writer = open_database(settings, url=url)
        reader = open_database(settings, url=url, role="auditor")
        try:
            agent = demo_agent(writer)
            results = run_demo_plan(agent)
            failed = next(result for result in results if result.status == "failed")
            with served(create_app(reader, settings)) as base, sync_playwright() as playwright:
                browser = launch(playwright)
                page = browser.new_page(viewport={"width": 1280, "height": 760})
                page.goto(f"{base}/")
                page.wait_for_selector("#live-state:text-is('connected')")
                agent.run_tool("clock", {})  # one live event, as it arrives
                page.wait_for_selector("#live li")
                page.screenshot(path=str(OUT / "cycles.png"), full_page=True)
                page.goto(f"{base}/cycles/{failed.cycle_id}")
                page.screenshot(path=str(OUT / "cycle.png"), full_page=True)
                page.goto(f"{base}/integrity")
                page.click("#verify-form button")
                page.wait_for_selector("#verify[data-state='done']", state="attached", timeout=120_000)
                page.screenshot(path=str(OUT / "integrity.png"), full_page=True)
                browser.close()
        finally:
            writer.shutdown()
            reader.shutdown()
    print(f"wrote {', '.join(str(path) for path in sorted(OUT.glob('*.png')))}")


if __name__ == "__main__":
    main()
