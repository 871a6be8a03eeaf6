"""The audit trail as OpenTelemetry traces (the `[otel]` extra): built on the OpenTelemetry SDK.

One trace per planning cycle: an `invoke_agent` span for the cycle, with one `execute_tool` child
span per tool call in it (a call outside any cycle is a trace of its own). Trace and span ids are
derived from the trail, so exporting the same rows twice gives the same spans (`spans`). The
spans go to the SDK's own exporters: OTLP over HTTP/protobuf or gRPC, or OTLP/JSON lines to a file
(`export`), once (`export_trail`) or as rows are sealed (`follow`).

Every module here imports the OpenTelemetry SDK: the core imports none of them; the CLI reaches
them through `jarvis.config.extras.require`, so a missing extra is one error naming `[otel]`.
"""
