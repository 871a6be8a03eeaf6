"""A real OTLP/HTTP receiver for tests (tests/otel): a small HTTP server on 127.0.0.1 that decodes each
`ExportTraceServiceRequest` with the `opentelemetry-proto` package, as a collector does."""

from __future__ import annotations

import gzip
import importlib
import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

WAIT = 60.0
"""Deadline for a span to arrive: the live mode polls every 0.05 s here, but a loaded 2-core machine stalls."""


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as the receiver decoded it: ids as hex, attributes as plain values."""

    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: int
    start: int
    end: int
    status_code: int
    status_message: str
    attributes: dict[str, object]
    resource: dict[str, object]


def _value(value: AnyValue) -> object:
    kind = value.WhichOneof("value")
    return None if kind is None else getattr(value, kind)


class OtlpReceiver:
    """Collects every span POSTed to /v1/traces; `wait_for` blocks (with a deadline) until a condition holds."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.requests = 0
        self.paths: list[str] = []
        self.changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                receiver.take(self.path, self.headers.get("Content-Type", ""), request)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def take(self, path: str, content_type: str, request: ExportTraceServiceRequest) -> None:
        assert content_type in ("application/x-protobuf", "grpc"), content_type
        spans = [
            _decoded(span, {a.key: _value(a.value) for a in resource_spans.resource.attributes})
            for resource_spans in request.resource_spans
            for scope_spans in resource_spans.scope_spans
            for span in scope_spans.spans
        ]
        with self.changed:
            self.paths.append(path)
            self.requests += 1
            self.spans.extend(spans)
            self.changed.notify_all()

    def wait_for(self, condition: Callable[[list[ReceivedSpan]], bool], what: str, timeout: float = WAIT) -> None:
        deadline = time.monotonic() + timeout
        with self.changed:
            while not condition(self.spans):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {timeout} s waiting for {what}; got {self.spans}")
                self.changed.wait(left)

    def by_name(self) -> dict[str, list[ReceivedSpan]]:
        with self.changed:
            named: dict[str, list[ReceivedSpan]] = {}
            for span in self.spans:
                named.setdefault(span.name, []).append(span)
            return named


def _decoded(span: Span, resource: dict[str, object]) -> ReceivedSpan:
    return ReceivedSpan(
        trace_id=span.trace_id.hex(),
        span_id=span.span_id.hex(),
        parent_span_id=span.parent_span_id.hex(),
        name=span.name,
        kind=span.kind,
        start=span.start_time_unix_nano,
        end=span.end_time_unix_nano,
        status_code=span.status.code,
        status_message=span.status.message,
        attributes={a.key: _value(a.value) for a in span.attributes},
        resource=resource,
    )


class OtlpGrpcReceiver(OtlpReceiver):
    """The same collection over OTLP/gRPC: the collector's TraceService on 127.0.0.1 (grpcio)."""

    def __init__(self) -> None:
        super().__init__()
        self.server.server_close()  # the HTTP side is not used
        # grpcio and the generated service module have no type information: used through Any.
        grpc: Any = importlib.import_module("grpc")
        service: Any = importlib.import_module("opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc")
        receiver = self

        class TraceService:
            """The collector's TraceService: grpc calls `Export` for every request."""

            def Export(self, request: ExportTraceServiceRequest, context: object) -> ExportTraceServiceResponse:
                receiver.take("/opentelemetry.proto.collector.trace.v1.TraceService/Export", "grpc", request)
                return ExportTraceServiceResponse()

        self.grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        service.add_TraceServiceServicer_to_server(TraceService(), self.grpc_server)
        self.port = self.grpc_server.add_insecure_port("127.0.0.1:0")
        self.grpc_server.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.grpc_server.stop(grace=None).wait(10)
