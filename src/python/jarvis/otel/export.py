"""Handing the trail's spans to the OpenTelemetry SDK's exporters: once, or as rows are sealed.

    exporter = otlp_exporter("http://127.0.0.1:4318")           # OTLP/HTTP protobuf, /v1/traces
    summary = export_trail(database, exporter)                  # every closed cycle and completed call

`otlp_exporter` builds the SDK's OTLP span exporter (HTTP/protobuf, or gRPC); headers, TLS and
compression come from the SDK's own OTEL_EXPORTER_OTLP_* variables. `OtlpJsonLinesExporter` writes
the OTLP/JSON encoding (one `ExportTraceServiceRequest` per line: what the collector's
`otlpjsonfile` receiver and file exporter read and write). Spans are exported in batches through
`SpanExporter.export` directly, not a span processor, so a refused batch is an error here (with the
endpoint and the fix), not a log line in a background thread.

`follow` is the live mode: it polls the chain head and, when the sealer has linked new rows,
exports the spans whose rows are all sealed; it stops cleanly (last batch sent, exporter shut
down) when `stop` is set, which the CLI does on SIGINT and SIGTERM.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, TextIO
from urllib.parse import urlsplit, urlunsplit

from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from jarvis.config import JarvisError
from jarvis.db.audit import AuditQueries
from jarvis.db.engine import Database
from jarvis.otel.spans import ReadyRow, TrailSpans

Protocol = Literal["http/protobuf", "grpc"]
PROTOCOLS: Final[tuple[Protocol, ...]] = ("http/protobuf", "grpc")
BATCH: Final = 512
"""Spans per export call."""
TRACES_PATH: Final = "/v1/traces"


class SpanExportError(JarvisError):
    """The exporter did not accept a batch of spans (endpoint down, refused, or a file not writable)."""


def otlp_exporter(endpoint: str, protocol: Protocol = "http/protobuf", *, timeout: float = 10.0) -> SpanExporter:
    """The SDK's OTLP span exporter for `endpoint`.

    http/protobuf: a URL; one without a path (`http://collector:4318`) gets the traces path
    `/v1/traces`, as OTEL_EXPORTER_OTLP_ENDPOINT does; one with a path is used as it is.
    grpc: `http://host:4317` (plaintext) or `https://host:4317` (TLS).
    """
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"--endpoint {endpoint!r} is not an http:// or https:// URL (e.g. http://127.0.0.1:4318)")
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

        if parts.path in ("", "/"):
            endpoint = urlunsplit(parts._replace(path=TRACES_PATH))
        return HttpExporter(endpoint=endpoint, timeout=timeout)
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter(endpoint=parts.netloc, insecure=parts.scheme == "http", timeout=timeout)
    raise ValueError(f"--protocol {protocol!r} is not one of {', '.join(PROTOCOLS)}")


class OtlpJsonLinesExporter(SpanExporter):
    """Writes each batch as one line of OTLP/JSON (an `ExportTraceServiceRequest`) to `stream`.

    The OTLP/JSON rules: lowerCamelCase keys, enums as integers, trace and span ids as hex (not
    protobuf JSON's base64), 64-bit integers as decimal strings.
    """

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        document = json_format.MessageToDict(encode_spans(spans), use_integers_for_enums=True)
        _hex_ids(document)
        try:
            self.stream.write(json.dumps(document, ensure_ascii=False, separators=(",", ":")) + "\n")
            self.stream.flush()
        except OSError:
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        """The stream belongs to the caller, who closes it."""

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        self.stream.flush()
        return True


_ID_KEYS = ("traceId", "spanId", "parentSpanId")


def _hex_ids(node: Any) -> None:
    """Rewrite protobuf JSON's base64 ids as the hex OTLP/JSON requires, in place (spans and links)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_KEYS and isinstance(value, str):
                node[key] = base64.b64decode(value).hex()
            else:
                _hex_ids(value)
    elif isinstance(node, list):
        for item in node:
            _hex_ids(item)


@dataclass
class ExportSummary:
    """What an export sent: spans of cycles and of calls, how many carry a tampered row, how many wait."""

    cycles: int = 0
    calls: int = 0
    tampered: int = 0
    waiting: int = 0

    def __str__(self) -> str:
        text = f"{self.cycles} cycle span(s) and {self.calls} tool call span(s)"
        if self.tampered:
            text += f", {self.tampered} of them marked tampered (values withheld)"
        return text


class _Batcher:
    """Collects ready spans and exports them BATCH at a time; a span counts as exported once accepted."""

    def __init__(self, spans: TrailSpans, exporter: SpanExporter, destination: str, summary: ExportSummary) -> None:
        self.spans, self.exporter, self.destination, self.summary = spans, exporter, destination, summary
        self.pending: list[ReadyRow] = []

    def add(self, row: ReadyRow) -> None:
        self.pending.append(row)
        if len(self.pending) >= BATCH:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        rows, self.pending = self.pending, []
        if self.exporter.export([row.span for row in rows]) != SpanExportResult.SUCCESS:
            raise SpanExportError(
                f"{self.destination} did not accept {len(rows)} span(s) (the exporter's log above says why). "
                "Fix: check that the collector is listening there and speaks this --protocol, then export again "
                "(the span ids are the same every time, so nothing is duplicated)"
            )
        for row in rows:
            self.spans.exported(row)
            if row.kind == "cycle":
                self.summary.cycles += 1
            else:
                self.summary.calls += 1
            self.summary.tampered += row.tampered


def export_trail(
    database: Database, exporter: SpanExporter, *, include_content: bool = False, destination: str = "the exporter"
) -> ExportSummary:
    """Export every closed cycle and completed call once (open ones are counted in `waiting`, not sent).

    Does not shut `exporter` down. Raises SpanExportError when a batch is refused.
    """
    spans = TrailSpans(database, include_content=include_content)
    summary = ExportSummary()
    batcher = _Batcher(spans, exporter, destination, summary)
    for row in spans.ready():
        batcher.add(row)
    batcher.flush()
    summary.waiting = spans.waiting
    return summary


def follow(
    database: Database,
    exporter: SpanExporter,
    stop: threading.Event,
    *,
    include_content: bool = False,
    interval: float = 1.0,
    destination: str = "the exporter",
    on_error: Callable[[Exception], None] | None = None,
    on_export: Callable[[ExportSummary], None] | None = None,
) -> ExportSummary:
    """Export spans as their rows are sealed, until `stop` is set; returns the totals.

    Polls the chain head every `interval` seconds; when its position moved (or the last pass failed),
    reads what is new and exports the spans whose rows are all sealed (the whole sealed trail on the
    first pass). A refused batch is passed to `on_error` (raised without one) and retried on the next
    poll; `on_export` gets the totals after each pass that sent something.
    """
    queries = AuditQueries(database)
    spans = TrailSpans(database, include_content=include_content, sealed_only=True)
    summary = ExportSummary()
    batcher = _Batcher(spans, exporter, destination, summary)
    seen_seq: int | None = None
    while not stop.is_set():
        head = queries.trail_head()
        if head.seq != seen_seq:
            before = (summary.cycles, summary.calls)
            try:
                for row in spans.ready():
                    batcher.add(row)
                    if stop.is_set():
                        break
                batcher.flush()
            except SpanExportError as error:
                if on_error is None:
                    raise
                batcher.pending.clear()
                spans = _rewound(spans)
                on_error(error)
            else:
                seen_seq = head.seq
                summary.waiting = spans.waiting
                if on_export is not None and (summary.cycles, summary.calls) != before:
                    on_export(summary)
        stop.wait(interval)
    return summary


def _rewound(spans: TrailSpans) -> TrailSpans:
    """After a refused batch: the window state of a pass that did not finish is not to be trusted; keep what
    was exported (and its horizon), so the next pass re-reads from there."""
    spans.cycles.waiting, spans.calls.waiting = [], []
    spans.cycles.newest = spans.calls.newest = None
    return spans
