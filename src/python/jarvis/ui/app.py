"""The web application: pages for cycles, one cycle, trail integrity, memory and state, and live events.

Only GET routes, plus one POST that starts a (read-only) verify. Every page reads through the
database handle it was given, which `jarvis ui` opens as the auditor role.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from jarvis.agent.witnessing import witness_log_path
from jarvis.cache import RedisLink
from jarvis.config import JarvisError, Settings
from jarvis.db import Database
from jarvis.db.audit import AuditQueries, Cursor
from jarvis.db.audit.queries import MAX_LIMIT
from jarvis.db.base import STATUSES
from jarvis.db.jsonb import InvalidJsonError
from jarvis.db.memory import MemoryStore
from jarvis.db.state import StateStore
from jarvis.ui.display import DISPLAY_LIMIT, cut, is_cut, pretty_json, shown, visible
from jarvis.ui.guard import Guard
from jarvis.ui.live import LiveReader, PollingReader, StreamingReader
from jarvis.ui.timeline_chart import MOST_BARS, build_chart
from jarvis.ui.verification import VerifyJob
from jarvis.witness import WitnessLog

PAGE_SIZE = 50
TIMELINE_PAGE = 200
"""A cycle page lists at most this many timeline rows, each value cut to DISPLAY_LIMIT characters in
PostgreSQL; the next rows are a link away (keyset on (created_at, id)). A cycle of any size costs one
page's memory and time."""
PROBLEM_LIMIT = 300
"""The most characters of a problem message a page shows (it may quote the bad input)."""
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9._~-]{16,256}")


class UiError(JarvisError):
    """The UI cannot start as configured (e.g. a token that is too short)."""


def create_app(
    database: Database,
    settings: Settings,
    *,
    token: str | None = None,
    loopback_only: bool = True,
    redis_link: RedisLink | None = None,
    live_window: float = 25.0,
) -> Guard:
    """The UI as an ASGI application over `database` (open it as the auditor role: it only reads).

    `token`: required on every request when given (off loopback, `jarvis ui` demands one).
    `loopback_only`: answer only to loopback Host names (the default bind is 127.0.0.1).
    `redis_link`: live events from the Redis stream; None polls PostgreSQL.
    `live_window`: seconds one event-stream response lasts before the browser reconnects (and resumes).
    """
    if token is not None and not TOKEN_PATTERN.fullmatch(token):
        raise UiError(
            "the UI token must be 16-256 characters of A-Z a-z 0-9 . _ ~ - "
            '(e.g. python3 -c "import secrets; print(secrets.token_urlsafe(32))")'
        )
    pages = Pages(database, settings, redis_link=redis_link, live_window=live_window)
    routes = [
        Route("/", pages.cycles),
        Route("/cycles/{cycle_id}", pages.cycle),
        Route("/cycles/{cycle_id}/rows/{row_id}", pages.row_value),
        Route("/integrity", pages.integrity),
        Route("/integrity/verify", pages.start_verify, methods=["POST"]),
        Route("/integrity/progress", pages.verify_progress),
        Route("/memory", pages.memory),
        Route("/state", pages.state),
        Route("/events", pages.events),
        Mount("/static", app=StaticFiles(packages=[("jarvis.ui", "static")]), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={404: pages.not_found, 405: pages.not_allowed})
    return Guard(app, token=token, loopback_only=loopback_only)


def templates() -> Environment:
    """The package's Jinja templates, autoescaped whatever their name, with the display filters of jarvis.ui.display."""
    environment = Environment(
        loader=PackageLoader("jarvis.ui", "templates"),
        autoescape=select_autoescape(("html", "svg"), default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(
        shown=shown, pretty=pretty_json, visible=visible, cut=cut, is_cut=is_cut, when=_when, ago=_ago
    )
    environment.globals.update(DISPLAY_LIMIT=DISPLAY_LIMIT, STATUSES=STATUSES)
    return environment


class Pages:
    """The route handlers; database reads run in worker threads (the engine is synchronous)."""

    def __init__(self, database: Database, settings: Settings, *, redis_link: RedisLink | None, live_window: float):
        self.database = database
        self.settings = settings
        self.queries = AuditQueries(database)
        self.memory_store = MemoryStore(database)
        self.state_store = StateStore(database)
        self.verify_job = VerifyJob(database, settings)
        self.redis_link = redis_link
        self.live_window = live_window
        self.environment = templates()

    def render(self, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        return HTMLResponse(self.environment.get_template(name).render(**context), status_code=status_code)

    def problem(self, message: str, status_code: int = 400) -> HTMLResponse:
        """A one-line answer to a bad request (a message that echoes a long input is cut)."""
        line = " ".join(message.split())
        return self.render("problem.html", status_code, title="Cannot show this", message=cut(line, PROBLEM_LIMIT))

    async def not_found(self, request: Request, exc: Exception) -> Response:
        return self.problem("no such page", 404)

    async def not_allowed(self, request: Request, exc: Exception) -> Response:
        allowed = getattr(exc, "headers", None) or {"Allow": "GET, HEAD"}  # the route's own methods
        return PlainTextResponse("this UI is read-only: only GET (and POST /integrity/verify)", 405, headers=allowed)

    async def cycles(self, request: Request) -> Response:
        params = request.query_params
        agent = params.get("agent") or None
        status = params.get("status") or None
        try:
            since = _moment(params.get("since"), "since")
            until = _moment(params.get("until"), "until")
            before = Cursor.parse(params["before"]) if params.get("before") else None
            limit = _limit(params.get("limit"))
            page = await anyio.to_thread.run_sync(
                lambda: self.queries.cycles(
                    agent=agent, status=status, since=since, until=until, before=before, limit=limit + 1
                )
            )
        except (ValueError, InvalidJsonError) as error:
            return self.problem(str(error))
        more = len(page) > limit
        page = page[:limit]
        counts = await anyio.to_thread.run_sync(lambda: self.queries.call_counts([c.id for c in page]))
        filters = {k: v for k, v in (("agent", agent), ("status", status)) if v}
        filters.update({k: params[k] for k in ("since", "until", "limit") if params.get(k)})
        next_query = {**filters, "before": str(page[-1].cursor)} if more and page else None
        return self.render(
            "cycles.html",
            title="Cycles",
            cycles=page,
            counts=counts,
            filters=filters,
            next_query=next_query,
            first_query=filters if before is not None else None,
            # Examples in the visitor's range: an hour ago, and today (UTC, the form the filters take).
            since_example=(datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"),
            until_example=datetime.now(UTC).strftime("%Y-%m-%d"),
        )

    async def cycle(self, request: Request) -> Response:
        cycle_id = _uuid(request.path_params["cycle_id"])
        if cycle_id is None:
            return self.problem("a cycle id is a UUID", 404)
        after_text = request.query_params.get("after")
        try:
            after = Cursor.parse(after_text) if after_text else None
        except ValueError as error:
            return self.problem(f"after: {error}")
        summary = await anyio.to_thread.run_sync(lambda: self.queries.cycle(cycle_id))
        if summary is None:
            return self.problem(f"no planning cycle {cycle_id}", 404)
        timeline, calls, counts = await anyio.to_thread.run_sync(
            lambda: (
                self.queries.timeline(cycle_id, after=after, limit=TIMELINE_PAGE + 1, preview=DISPLAY_LIMIT + 1),
                self.queries.calls_in_cycle(cycle_id, limit=MOST_BARS),
                self.queries.call_counts([cycle_id]),
            )
        )
        more = len(timeline) > TIMELINE_PAGE
        timeline = timeline[:TIMELINE_PAGE]
        total_calls = counts[cycle_id].calls if cycle_id in counts else 0
        chart = build_chart(summary, calls, timeline, datetime.now(UTC), total_calls=total_calls)
        return self.render(
            "cycle.html",
            title="Cycle",
            cycle=summary,
            chart=chart,
            timeline=timeline,
            page_size=TIMELINE_PAGE,
            first_page=after is not None,
            next_query={"after": str(timeline[-1].cursor)} if more and timeline else None,
        )

    async def row_value(self, request: Request) -> Response:
        """One timeline row's value in full, as plain text: what "show all" opens (inert: never HTML)."""
        cycle_id = _uuid(request.path_params["cycle_id"])
        row_id = _uuid(request.path_params["row_id"])
        if cycle_id is None or row_id is None:
            return PlainTextResponse("not found", 404)
        found = await anyio.to_thread.run_sync(lambda: self.queries.timeline(cycle_id, row_id=row_id))
        entry = next((e for e in found if e.id == row_id), None)
        if entry is None:
            return PlainTextResponse("not found", 404)
        if entry.why is not None:
            return PlainTextResponse(entry.why, 409)
        if entry.integrity == "tampered":
            return PlainTextResponse(
                "TAMPERED: this row does not match its chain link; its value is withheld "
                "(`jarvis audit verify` names what changed)",
                409,
            )
        body = entry.detail if isinstance(entry.detail, str) else json.dumps(entry.detail, indent=2, ensure_ascii=False)
        response = PlainTextResponse(visible(body))
        response.headers["content-disposition"] = "inline"
        return response

    async def integrity(self, request: Request) -> Response:
        head = await anyio.to_thread.run_sync(self.queries.trail_head)
        checkpoint, checkpoint_problem, log_path = None, None, None
        try:
            log_path = witness_log_path(self.settings, self.database)
            witness_log = WitnessLog(log_path)  # its last line only: the log grows by one line per seal
            checkpoint = await anyio.to_thread.run_sync(witness_log.last)
        except JarvisError as error:
            checkpoint_problem = str(error)
        return self.render(
            "integrity.html",
            title="Trail integrity",
            head=head,
            checkpoint=checkpoint,
            checkpoint_problem=checkpoint_problem,
            log_path=str(log_path) if log_path else None,
            job=self.verify_job.progress(),
            now=datetime.now(UTC),
        )

    async def start_verify(self, request: Request) -> Response:
        await anyio.to_thread.run_sync(self.verify_job.start)
        return RedirectResponse("/integrity", status_code=303)

    async def verify_progress(self, request: Request) -> Response:
        job = self.verify_job.progress()
        report = job.report
        return JSONResponse(
            {
                "state": job.state,
                "percent": job.percent,
                "done": job.done,
                "total": job.total,
                "ok": None if report is None else report.ok,
                "summary": None if report is None else visible(cut(report.summary(), 1_000)),
                "error": None if job.error is None else visible(cut(job.error, 1_000)),
            }
        )

    async def memory(self, request: Request) -> Response:
        subject = request.query_params.get("subject") or None
        raw = request.query_params.get("contains") or ""
        include_stale = request.query_params.get("stale") == "1"
        try:
            if raw:
                contains = json.loads(raw)
                facts = await anyio.to_thread.run_sync(
                    lambda: self.memory_store.search(contains, subject=subject, include_stale=include_stale)
                )
            elif subject:
                facts = await anyio.to_thread.run_sync(
                    lambda: self.memory_store.about(subject, include_stale=include_stale)
                )
            else:
                facts = await anyio.to_thread.run_sync(lambda: self.memory_store.fresh(limit=200))
        except json.JSONDecodeError as error:
            return self.problem(f'"contains" is not JSON ({error.msg}); e.g. {{"chain": "ethereum"}}')
        except RecursionError:  # json.loads of thousands of nested brackets: bad input, not a server fault
            return self.problem('"contains" is nested too deeply; e.g. {"chain": "ethereum"}')
        except (ValueError, InvalidJsonError) as error:
            return self.problem(str(error))
        by_subject: dict[str, list[Any]] = {}
        for fact in facts:
            by_subject.setdefault(fact.subject, []).append(fact)
        return self.render(
            "memory.html",
            title="Memory",
            by_subject=by_subject,
            subject=subject or "",
            contains=raw,
            stale=include_stale,
        )

    async def state(self, request: Request) -> Response:
        prefix = request.query_params.get("prefix") or ""
        try:
            entries = await anyio.to_thread.run_sync(lambda: self.state_store.list(prefix, limit=500))
        except (ValueError, InvalidJsonError) as error:
            return self.problem(str(error))
        return self.render("state.html", title="State", entries=entries, prefix=prefix)

    async def events(self, request: Request) -> Response:
        resume_from = request.headers.get("last-event-id")
        reader: LiveReader
        link = self.redis_link
        if link is not None:
            reader = await anyio.to_thread.run_sync(lambda: StreamingReader(link, resume_from=resume_from))
        else:
            reader = await anyio.to_thread.run_sync(lambda: PollingReader(self.queries, resume_from=resume_from))
        return StreamingResponse(
            self._event_stream(reader),
            media_type="text/event-stream",
            headers={"x-accel-buffering": "no"},
        )

    async def _event_stream(self, reader: LiveReader) -> AsyncIterator[str]:
        """Events for `live_window` seconds, then the response ends and EventSource reconnects (Last-Event-ID)."""
        yield "retry: 1000\n\n"
        deadline = anyio.current_time() + self.live_window
        while anyio.current_time() < deadline:
            events = await anyio.to_thread.run_sync(reader.read, 1.0)
            for event in events:
                yield f"id: {event.position}\nevent: audit\ndata: {json.dumps(event.data)}\n\n"
            if not events:
                yield ": waiting\n\n"


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _limit(value: str | None) -> int:
    """How many cycles a page lists, from the URL: a whole number in 1..MAX_LIMIT - 1 (one more is read)."""
    if not value:
        return PAGE_SIZE
    if not value.isascii() or not value.isdigit() or len(value) > 6 or not 1 <= int(value) < MAX_LIMIT:
        raise ValueError(f"limit must be a whole number from 1 to {MAX_LIMIT - 1}")
    return int(value)


def _moment(value: str | None, name: str) -> datetime | None:
    """A filter time from the form: an ISO date or date-time; no time zone means UTC."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{name} {value!r} is not a date or time (e.g. 2026-11-26 or 2026-11-26T14:00)") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _when(moment: datetime | None) -> str:
    return "" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def _ago(moment: datetime | str | None, now: datetime | None = None) -> str:
    if moment is None:
        return ""
    at = datetime.fromisoformat(moment) if isinstance(moment, str) else moment
    seconds = max(0.0, ((now or datetime.now(UTC)) - at).total_seconds())
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"
