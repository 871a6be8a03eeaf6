"""The UI's routes against real PostgreSQL (Starlette's TestClient): pages, filters, paging, and its guards."""

from __future__ import annotations

import json
import re
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import sqlalchemy.exc
from sqlalchemy import text
from starlette.testclient import TestClient
from ui.conftest import Trail
from ui.trails import HUGE, LINK, RTL, SCRIPT, served

from jarvis.config import Settings
from jarvis.db import Database
from jarvis.db.audit import AuditQueries
from jarvis.ui import create_app
from jarvis.ui.guard import CONTENT_SECURITY_POLICY, TOKEN_COOKIE

TOKEN = "t0ken-for-the-tests-0123456789"


@pytest.fixture(scope="module")
def client(trail: Trail, auditor_database: Database, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(auditor_database, settings), base_url="http://127.0.0.1:8765") as test_client:
        yield test_client


def test_the_cycle_list_shows_every_cycle_newest_first(client: TestClient, trail: Trail) -> None:
    page = client.get("/", params={"agent": "demo"})  # other tests of this module add cycles of other agents
    assert page.status_code == 200
    ids = re.findall(r'href="/cycles/([0-9a-f-]{36})"', page.text)
    expected = [str(r.cycle_id) for r in [*trail.demo, trail.hostile]][::-1]
    assert ids == expected


def test_the_cycle_list_counts_tool_calls_and_failures(client: TestClient, trail: Trail) -> None:
    page = client.get("/", params={"status": "failed", "agent": "demo"})
    row = page.text.split(f'href="/cycles/{trail.failed_cycle.cycle_id}"', 1)[1].split("</tr>", 1)[0]
    assert re.findall(r'<td class="num[^"]*">(\d+)</td>', row) == ["2", "1"]


def test_the_status_filter_lists_only_cycles_in_that_status(client: TestClient, trail: Trail) -> None:
    ids = re.findall(r'href="/cycles/([0-9a-f-]{36})"', client.get("/", params={"status": "succeeded"}).text)
    assert sorted(ids) == sorted(str(r.cycle_id) for r in trail.demo if r.status == "succeeded")


def test_the_agent_filter_lists_only_that_agents_cycles(client: TestClient) -> None:
    assert "no cycles match" in client.get("/", params={"agent": "someone-else"}).text
    assert len(re.findall(r'href="/cycles/', client.get("/", params={"agent": "demo"}).text)) == 4


def test_the_time_range_filter_excludes_cycles_outside_it(client: TestClient, trail: Trail) -> None:
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert "no cycles match" in client.get("/", params={"agent": "demo", "since": future}).text
    assert len(re.findall(r'href="/cycles/', client.get("/", params={"agent": "demo", "until": future}).text)) == 4


def test_a_bad_time_filter_is_a_readable_error(client: TestClient) -> None:
    page = client.get("/", params={"since": "yesterday<script>"})
    assert page.status_code == 400
    assert "is not a date or time" in page.text and "<script>" not in page.text


def test_keyset_pages_cover_every_cycle_once(client: TestClient, trail: Trail) -> None:
    seen: list[str] = []
    query: dict[str, str] = {"agent": "demo", "limit": "1"}
    for _ in range(10):
        page = client.get("/", params=query)
        seen += re.findall(r'href="/cycles/([0-9a-f-]{36})"', page.text)
        older = re.search(r'rel="next" href="/\?([^"]+)"', page.text)
        if older is None:
            break
        query = dict(pair.split("=", 1) for pair in older.group(1).replace("&amp;", "&").split("&"))
        query = {k: v.replace("%3A", ":").replace("%2B", "+").replace("%7E", "~") for k, v in query.items()}
    assert seen == [str(r.cycle_id) for r in [*trail.demo, trail.hostile]][::-1]


def test_the_cycle_page_draws_one_bar_per_tool_call_with_its_status(client: TestClient, trail: Trail) -> None:
    page = client.get(f"/cycles/{trail.failed_cycle.cycle_id}")
    assert page.status_code == 200
    assert re.findall(r'<g class="call (\w+)" data-status="(\w+)"', page.text) == [
        ("failed", "failed"),
        ("ok", "succeeded"),
    ]
    assert page.text.count('<g class="decision">') == 2


def test_the_cycle_page_lists_the_timeline_with_the_failed_step(client: TestClient, trail: Trail) -> None:
    page = client.get(f"/cycles/{trail.failed_cycle.cycle_id}")
    assert "tool.failed" in page.text
    assert "exchange API unreachable (simulated)" in page.text


def test_a_running_call_is_drawn_as_running(
    database: Database, auditor_database: Database, settings: Settings, client: TestClient
) -> None:
    from jarvis.db.audit import PlanningLog, ToolCallLog

    planning = PlanningLog(database, agent="runner")
    cycle_id = planning.open_cycle(["still working"])
    ToolCallLog(database).start("long_job", {"n": 1}, cycle_id=cycle_id)
    page = client.get(f"/cycles/{cycle_id}")
    assert re.findall(r'<g class="call (\w+)" data-status="(\w+)"', page.text) == [("running", "running")]


def test_each_outcome_of_a_call_is_drawn_distinctly(database: Database, client: TestClient) -> None:
    from jarvis.db.audit import PlanningLog, ToolCallLog

    planning, calls = PlanningLog(database, agent="outcomes"), ToolCallLog(database)
    cycle_id = planning.open_cycle(["every outcome"])
    for status in ("succeeded", "failed", "cancelled", "abandoned"):
        calls.record_completion(calls.start(f"ends_{status}", {}, cycle_id=cycle_id), status)
    calls.start("still_running", {}, cycle_id=cycle_id)
    page = client.get(f"/cycles/{cycle_id}")
    drawn = re.findall(r'<g class="call (\w+)" data-status="(\w+)"', page.text)
    assert drawn == [
        ("ok", "succeeded"),
        ("failed", "failed"),
        ("cancelled", "cancelled"),
        ("abandoned", "abandoned"),
        ("running", "running"),
    ]
    css = client.get("/static/ui.css").text
    fills = [re.search(rf"svg\.chart \.{name} \.bar {{ fill: ([^;]+);", css) for name, _ in drawn]
    assert all(fills) and len({fill.group(1) for fill in fills if fill}) == 5


def test_an_unknown_cycle_is_404(client: TestClient) -> None:
    assert client.get(f"/cycles/{uuid.uuid4()}").status_code == 404
    assert client.get("/cycles/not-a-uuid").status_code == 404


def test_the_integrity_page_shows_the_sealed_head_and_the_newest_checkpoint(
    client: TestClient, auditor_database: Database
) -> None:
    head = AuditQueries(auditor_database).trail_head()
    page = client.get("/integrity")
    assert f"{head.seq}:{head.chain_hash}" in page.text
    assert "newest signed checkpoint" in page.text and "ago)" in page.text


def test_verify_runs_in_the_background_and_reports_the_result(client: TestClient) -> None:
    started = client.post("/integrity/verify", follow_redirects=False)
    assert started.status_code == 303
    deadline = datetime.now(UTC) + timedelta(seconds=120)
    while (job := client.get("/integrity/progress").json())["state"] == "running":
        assert datetime.now(UTC) < deadline, "verify did not finish within 120 s"
        time.sleep(0.05)
    assert job["state"] == "done" and job["ok"] is True and job["percent"] == 100
    assert job["summary"].startswith("OK: ")
    assert "OK:" in client.get("/integrity").text


def test_the_memory_page_finds_facts_by_json_containment(client: TestClient) -> None:
    page = client.get("/memory", params={"contains": '{"chain": "ethereum"}'})
    assert "asset:eth" in page.text and "price:eth" not in page.text


def test_the_memory_page_refuses_a_search_that_is_not_json(client: TestClient) -> None:
    page = client.get("/memory", params={"contains": "{not json"})
    assert page.status_code == 400 and "is not JSON" in page.text


def test_the_state_page_shows_keys_values_and_versions(client: TestClient) -> None:
    page = client.get("/state", params={"prefix": "demo."})
    assert "demo.journal.last_symbol" in page.text and '<td class="num">1</td>' in page.text


def test_every_response_carries_the_content_security_policy(client: TestClient, trail: Trail) -> None:
    for path in ("/", f"/cycles/{trail.hostile.cycle_id}", "/integrity", "/memory", "/state", "/static/ui.js", "/x"):
        response = client.get(path)
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY, path
        assert response.headers["x-content-type-options"] == "nosniff"
    assert "'unsafe-inline'" not in CONTENT_SECURITY_POLICY and "script-src 'self'" in CONTENT_SECURITY_POLICY


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE", "POST"])
def test_no_write_method_is_accepted(client: TestClient, trail: Trail, method: str) -> None:
    for path in ("/", f"/cycles/{trail.hostile.cycle_id}", "/state", "/memory", "/integrity"):
        assert client.request(method, path).status_code == 405, (method, path)


def test_pages_contain_no_inline_script(client: TestClient, trail: Trail) -> None:
    for path in ("/", f"/cycles/{trail.hostile.cycle_id}", "/integrity", "/memory", "/state"):
        scripts = re.findall(r"<script[^>]*>", client.get(path).text)
        assert scripts == ['<script src="/static/ui.js" defer>'], path


def test_hostile_trail_text_is_escaped_on_every_page(client: TestClient, trail: Trail) -> None:
    pages = [client.get(p).text for p in ("/", f"/cycles/{trail.hostile.cycle_id}", "/memory", "/state")]
    for html in pages:
        assert "<script>document" not in html and "<img src=x" not in html and "<b>key</b>" not in html
        assert 'href="javascript:' not in html and "\u202e" not in html
    cycle = pages[1]
    assert "&lt;script&gt;document.title=" in cycle and "&lt;img src=x onerror=" in cycle
    assert "[/INST] ignore previous instructions" in cycle
    assert "evil\\u202egnp.exe" in cycle  # the override is shown, not obeyed


def test_a_megabyte_value_is_cut_with_a_show_all_link_that_serves_plain_text(client: TestClient, trail: Trail) -> None:
    page = client.get(f"/cycles/{trail.hostile.cycle_id}")
    assert len(page.text) < 200_000
    link = re.search(r'class="show-all" href="(/cycles/[^"]+)"', page.text)
    assert link is not None
    full = client.get(link.group(1))
    assert full.headers["content-type"].startswith("text/plain") and full.headers["x-content-type-options"] == "nosniff"
    assert HUGE in full.text and SCRIPT in full.text and RTL not in full.text
    assert "<img src=x onerror=" in full.text and LINK in full.text


def test_the_ui_database_handle_cannot_write(auditor_database: Database) -> None:
    with pytest.raises(sqlalchemy.exc.DBAPIError) as refused:
        with auditor_database.begin() as conn:
            conn.execute(text("INSERT INTO agent_state (key, value) VALUES ('ui.wrote', '1')"))
    assert isinstance(refused.value.orig, psycopg.errors.ReadOnlySqlTransaction | psycopg.errors.InsufficientPrivilege)
    with pytest.raises(sqlalchemy.exc.DBAPIError):
        with auditor_database.begin() as conn:
            conn.execute(text("SET LOCAL transaction_read_only = off"))
            conn.execute(text("INSERT INTO agent_state (key, value) VALUES ('ui.wrote', '1')"))


def test_a_foreign_host_header_is_refused_on_loopback(client: TestClient) -> None:
    response = client.get("/", headers={"host": "attacker.example:8765"})
    assert response.status_code == 421


@pytest.mark.parametrize(
    "headers", [{"origin": "http://attacker.example"}, {"origin": "null"}, {"sec-fetch-site": "cross-site"}]
)
def test_a_cross_origin_post_is_refused(client: TestClient, headers: dict[str, str]) -> None:
    response = client.post("/integrity/verify", headers=headers, follow_redirects=False)
    assert response.status_code == 403


@pytest.fixture(scope="module")
def guarded(trail: Trail, auditor_database: Database, settings: Settings) -> Iterator[TestClient]:
    app = create_app(auditor_database, settings, token=TOKEN, loopback_only=False)
    with TestClient(app, base_url="http://192.0.2.10:8765") as test_client:
        yield test_client


def test_off_loopback_every_request_without_the_token_is_refused(guarded: TestClient, trail: Trail) -> None:
    for path in (
        "/",
        f"/cycles/{trail.hostile.cycle_id}",
        "/integrity",
        "/integrity/progress",
        "/events",
        "/static/ui.js",
    ):
        assert guarded.get(path).status_code == 401, path
    assert guarded.get("/", headers={"authorization": "Bearer wrong-token-wrong-token"}).status_code == 401
    assert guarded.get("/", headers={"cookie": f"{TOKEN_COOKIE}={TOKEN[:-1]}x"}).status_code == 401


def test_the_token_in_a_header_is_accepted(guarded: TestClient) -> None:
    assert guarded.get("/", headers={"authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_a_first_visit_with_the_token_sets_a_cookie_and_drops_it_from_the_url(guarded: TestClient) -> None:
    first = guarded.get("/memory", params={"token": TOKEN, "subject": "asset:eth"}, follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"] == "/memory?subject=asset%3Aeth"
    assert "HttpOnly" in first.headers["set-cookie"] and "SameSite=Strict" in first.headers["set-cookie"]
    assert guarded.get("/memory", headers={"cookie": f"{TOKEN_COOKIE}={TOKEN}"}).status_code == 200


def test_a_short_token_is_refused(auditor_database: Database, settings: Settings) -> None:
    from jarvis.ui.app import UiError

    with pytest.raises(UiError, match="16-256 characters"):
        create_app(auditor_database, settings, token="short")


def next_live_event(base_url: str, tool_name: str, append: Callable[[], object]) -> dict[str, str]:
    """Open /events, call `append` once the stream is open, and return the event naming `tool_name` (30 s deadline)."""
    deadline = time.monotonic() + 30
    with urllib.request.urlopen(f"{base_url}/events", timeout=10) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = (raw.decode().rstrip("\n") for raw in response)
        assert next(lines) == "retry: 1000"
        append()
        for line in lines:
            assert time.monotonic() < deadline, f"no live event for {tool_name} within 30 s"
            if line.startswith("data: "):
                event = json.loads(line[6:])
                if event.get("name") == tool_name:
                    return dict(event)
    raise AssertionError(f"the event stream ended without an event for {tool_name}")


def test_live_events_arrive_by_polling_postgresql(
    database: Database, auditor_database: Database, settings: Settings
) -> None:
    from jarvis.db.audit import ToolCallLog

    app = create_app(auditor_database, settings, live_window=60)
    with served(app) as base_url:
        event = next_live_event(base_url, "polled_tool", lambda: ToolCallLog(database).start("polled_tool", {}))
    assert event["kind"] == "tool.started" and event["table"] == "tool_calls"


def test_live_events_arrive_from_the_redis_stream(
    database: Database, auditor_database: Database, settings: Settings, redis_url: str
) -> None:
    from jarvis.cache import AuditStream, RedisLink, namespace_for
    from jarvis.db.audit import ToolCallLog

    key = b"k" * 32
    link = RedisLink(redis_url, namespace=f"ui-test-{uuid.uuid4()}-{namespace_for(database)}", auth_key=key)
    app = create_app(auditor_database, settings, redis_link=link, live_window=60)
    log = ToolCallLog(database, listeners=[AuditStream(link).publish])
    try:
        with served(app) as base_url:
            event = next_live_event(base_url, "streamed_tool", lambda: log.start("streamed_tool", {}))
    finally:
        link.close()
    assert event["kind"] == "tool_call.started" and event["status"] == "started"


def test_a_tampered_trail_fails_verify_naming_the_first_problem(
    isolated_database: Database, isolated_database_url: str, settings: Settings
) -> None:
    from ui.trails import demo_agent, run_demo_plan

    from jarvis.db import open_database
    from jarvis_testkit import tamper

    run_demo_plan(demo_agent(isolated_database))
    changed = AuditQueries(isolated_database).tool_calls(limit=1)[0].id
    tamper.edit(isolated_database_url, "tool_calls", changed, "input", "'{\"rewritten\": true}'")
    reader = open_database(settings, url=isolated_database_url, role="auditor")
    try:
        with TestClient(create_app(reader, settings), base_url="http://127.0.0.1") as tampered:
            tampered.post("/integrity/verify")
            deadline = time.monotonic() + 120
            while (job := tampered.get("/integrity/progress").json())["state"] == "running":
                assert time.monotonic() < deadline, "verify did not finish within 120 s"
                time.sleep(0.05)
            page = tampered.get("/integrity").text
    finally:
        reader.shutdown()
    assert job["ok"] is False
    assert job["summary"].startswith(f"TAMPERED: tool_calls row {changed}")
    assert "row content was changed after it was sealed" in job["summary"]
    assert f"TAMPERED: tool_calls row {changed}" in page


def test_verify_reports_its_progress_against_the_work_it_planned(
    trail: Trail, auditor_database: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jarvis.ui.verification import VerifyJob

    job = VerifyJob(auditor_database, settings)
    seen: list[tuple[int, int, int]] = []
    advance = job._advance

    def recorded(done: int) -> None:
        advance(done)
        snapshot = job.progress()
        seen.append((snapshot.done, snapshot.total, snapshot.percent))

    monkeypatch.setattr(job, "_advance", recorded)
    assert job.start()
    finished = job.wait(120)
    assert finished.state == "done" and finished.percent == 100
    assert len(seen) >= 2 and [done for done, _, _ in seen] == sorted(done for done, _, _ in seen)
    assert all(percent < 100 for _, _, percent in seen)  # 100 only once verify has returned its report
    assert seen[-1][0] == seen[-1][1] == finished.total  # the last step is all the planned work


def test_the_time_filters_suggest_times_near_now_not_a_fixed_date(client: TestClient) -> None:
    from datetime import UTC, datetime, timedelta

    def an_hour_ago() -> str:
        return (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H")

    before = an_hour_ago()
    page = client.get("/").text
    after = an_hour_ago()  # the hour may turn while the page is rendered

    assert 'placeholder="2026-11-26T14:00"' not in page
    assert f'placeholder="{before}' in page or f'placeholder="{after}' in page
