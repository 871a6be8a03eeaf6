"""`jarvis audit export --format otel|otlp`: the trail as OpenTelemetry spans (the `[otel]` extra).

otel: OTLP/JSON lines to stdout or --output (what a collector's `otlpjsonfile` receiver reads).
otlp: to a collector at --endpoint, over --protocol http/protobuf (default) or grpc; with
--follow, as rows are sealed, until SIGINT or SIGTERM. The spans are built in `jarvis.otel`,
imported here only when asked for, so a missing extra is one error naming it.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from jarvis.cli.session import ExitCode, errors, fail, opened_database, reported_errors
from jarvis.config.extras import require
from jarvis.db import Database

# `jarvis.otel` is imported by name at run time only (`require`), never statically: the core (and the
# benchmarks resolve, which builds this module too) has no OpenTelemetry, so it is typed as Any here.
OtelModule = Any


def _otel(feature: str) -> OtelModule:
    """`jarvis.otel.export`, or exit 2 naming the extra that installs it."""
    with reported_errors():
        return require("jarvis.otel.export", extra="otel", feature=feature)


def export_spans(
    fmt: str,
    *,
    endpoint: str | None,
    protocol: str,
    follow: bool,
    interval: float,
    include_content: bool,
    output: Path | None,
    force: bool,
) -> None:
    """Check the options, then export once (otel, otlp) or follow the trail (otlp --follow)."""
    if fmt == "otel":
        if endpoint is not None or follow:
            fail("--endpoint and --follow are for --format otlp (otel writes OTLP/JSON to a file)", ExitCode.BAD_INPUT)
        if output is not None and output.exists() and not force:
            fail(f"{output} exists; choose another file, or pass --force to replace it", ExitCode.BAD_INPUT)
        _to_file(_otel("--format otel"), output, include_content)
        return
    if endpoint is None:
        fail("--format otlp needs --endpoint URL (e.g. http://127.0.0.1:4318)", ExitCode.BAD_INPUT)
    if output is not None:
        fail("--output is for --format otel (a file); otlp sends to --endpoint", ExitCode.BAD_INPUT)
    otel = _otel("--format otlp")
    if protocol not in otel.PROTOCOLS:
        fail(f"--protocol {protocol!r} is not one of {', '.join(otel.PROTOCOLS)}", ExitCode.BAD_INPUT)
    try:
        exporter = otel.otlp_exporter(endpoint, protocol)
    except ValueError as error:
        fail(str(error), ExitCode.BAD_INPUT)
    destination = f"the OTLP endpoint {endpoint} ({protocol})"
    try:
        with opened_database() as database, reported_errors():
            if follow:
                summary = _follow(otel, database, exporter, destination, include_content, interval)
            else:
                summary = otel.export_trail(
                    database, exporter, include_content=include_content, destination=destination
                )
    finally:
        exporter.shutdown()
    _report(summary, f"sent to {destination}" + ("; stopped" if follow else ""))


def _to_file(otel: OtelModule, output: Path | None, include_content: bool) -> None:
    """OTLP/JSON lines to stdout, or to `output` (written beside it, then renamed: never half a file)."""
    with opened_database() as database, reported_errors():
        if output is None:
            summary = otel.export_trail(
                database, otel.OtlpJsonLinesExporter(sys.stdout), include_content=include_content
            )
        else:
            partial = output.with_name(output.name + ".partial")
            try:
                with partial.open("w", encoding="utf-8") as stream:
                    summary = otel.export_trail(
                        database, otel.OtlpJsonLinesExporter(stream), include_content=include_content
                    )
                partial.replace(output)
            finally:
                partial.unlink(missing_ok=True)
    _report(summary, "written to stdout" if output is None else f"written to {output}")


def _report(summary: Any, where: str) -> None:
    errors.print(f"{summary} {where}", highlight=False, markup=False, soft_wrap=True)
    if summary.waiting:
        errors.print(
            f"{summary.waiting} cycle(s) or call(s) are still open (or, with --follow, not sealed yet) and were not "
            "exported: a span needs its end. Export again when they are closed, or use --format otlp --follow",
            highlight=False,
            markup=False,
        )


def _follow(
    otel: OtelModule,
    database: Database,
    exporter: Any,
    destination: str,
    include_content: bool,
    interval: float,
) -> Any:
    stop = threading.Event()
    errors.print(f"exporting spans to {destination} as rows are sealed (Ctrl-C to stop)", highlight=False, markup=False)
    with _stopped_by_signals(stop):
        return otel.follow(
            database,
            exporter,
            stop,
            include_content=include_content,
            interval=interval,
            destination=destination,
            on_error=lambda error: errors.print(f"error: {error}", style="yellow", highlight=False, markup=False),
            on_export=lambda totals: errors.print(f"{totals} sent so far", highlight=False, markup=False),
        )


@contextmanager
def _stopped_by_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set `stop`: the loop sends what it has, shuts the exporter down and exits 0."""

    def handler(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
