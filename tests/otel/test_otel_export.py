"""The audit trail as OpenTelemetry spans: built on the SDK, ids from the trail, exported to real receivers.

Checked against the SDK's InMemorySpanExporter (ids, parentage, attributes, content opt-in, a
tampered row) and against a real OTLP/HTTP receiver (conftest.py: protobuf decoded with
opentelemetry-proto) for the batch export, the live mode and the CLI.
"""

from __future__ import annotations

import base64
import hashlib
import json
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from typer.testing import CliRunner

from jarvis.cli.main import app
from jarvis.db import Database
from jarvis.db.audit import PlanningLog, ToolCallLog, seal
from jarvis.otel.export import export_trail, follow, otlp_exporter
from jarvis.otel.spans import TrailSpans
from jarvis_testkit import tamper
from jarvis_testkit.otlp_receiver import WAIT, OtlpGrpcReceiver, OtlpReceiver
from jarvis_testkit.processes import jarvis_process
from jarvis_testkit.services import free_port

SECRET_ARGUMENT = "argument-secret-4711"
SECRET_RESULT = "result-secret-0815"
FORGED = "forged-by-a-superuser"
MCP_SESSION = "mcp-proxy:python -m mcp_server_time#0123456789ab/1"


@dataclass(frozen=True)
class Story:
    """A small trail: a cycle with a succeeded and a failed call, a call outside any cycle, a call still
    running, and an MCP session's cycle with one call; everything but the running call sealed."""

    url: str
    trail: uuid.UUID
    cycle: uuid.UUID
    ok_call: uuid.UUID
    ok_completion: uuid.UUID
    failed_call: uuid.UUID
    lone_call: uuid.UUID
    running_call: uuid.UUID
    mcp_cycle: uuid.UUID
    mcp_call: uuid.UUID


def write_story(database: Database, url: str) -> Story:
    planner, tools = PlanningLog(database, agent="planner"), ToolCallLog(database)
    cycle = planner.open_cycle({"goal": "fetch the page"})
    ok = tools.start("http_get", {"url": "https://example.test", "token": SECRET_ARGUMENT}, cycle_id=cycle)
    ok_completion = tools.record_completion(ok, "succeeded", output={"body": SECRET_RESULT})
    failed = tools.start("fail", {"why": "to fail"}, cycle_id=cycle)
    tools.record_completion(failed, "failed", error="ToolFailedError: it broke")
    planner.close_cycle(cycle, "failed", {"calls": 2})
    lone = tools.start("clock", {})
    tools.record_completion(lone, "succeeded", output="12:00")
    running = tools.start("slow", {"seconds": 60})
    session = PlanningLog(database, agent=MCP_SESSION)
    mcp_cycle = session.open_cycle({"mcp": "proxy", "upstream": ["python", "-m", "mcp_server_time"]})
    mcp_call = tools.start("get_current_time", {"timezone": "UTC"}, cycle_id=mcp_cycle)
    tools.record_completion(mcp_call, "succeeded", output={"content": [{"type": "text", "text": "noon"}]})
    session.close_cycle(mcp_cycle, "succeeded", {"calls": 1, "unsuccessful_calls": 0, "ended": "client left"})
    seal(database, wait=30)
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT trail_id FROM public.trail_info").fetchone()
    assert row is not None
    return Story(url, row[0], cycle, ok.id, ok_completion, failed.id, lone.id, running.id, mcp_cycle, mcp_call.id)


@pytest.fixture
def story(isolated_database: Database, isolated_database_url: str) -> Story:
    return write_story(isolated_database, isolated_database_url)


def expected_trace(story: Story, key: uuid.UUID) -> int:
    """The documented derivation, computed here independently: sha256("jarvis trace" ‖ trail ‖ key)[:16]."""
    digest = hashlib.sha256(b"jarvis trace\x00" + story.trail.bytes + key.bytes).digest()
    return int.from_bytes(digest[:16], "big")


def expected_span(story: Story, row_id: uuid.UUID) -> int:
    digest = hashlib.sha256(b"jarvis span\x00" + story.trail.bytes + row_id.bytes).digest()
    return int.from_bytes(digest[:8], "big")


def exported(database: Database, *, include_content: bool = False) -> dict[str, ReadableSpan]:
    memory = InMemorySpanExporter()
    export_trail(database, memory, include_content=include_content)
    spans = memory.get_finished_spans()
    by_call = {
        str(attributes(s).get("gen_ai.tool.call.id") or attributes(s)["gen_ai.conversation.id"]): s for s in spans
    }
    assert len(by_call) == len(spans), "two spans for one row"
    return by_call


def attributes(span: ReadableSpan) -> dict[str, object]:
    return dict(span.attributes or {})


# --- The spans, through the SDK's in-memory exporter.


def test_each_closed_cycle_and_completed_call_is_one_span_and_a_running_call_waits(
    story: Story, isolated_database: Database
) -> None:
    memory = InMemorySpanExporter()
    summary = export_trail(isolated_database, memory)
    names = sorted(span.name for span in memory.get_finished_spans())
    assert names == [
        "execute_tool clock",
        "execute_tool fail",
        "execute_tool get_current_time",
        "execute_tool http_get",
        f"invoke_agent {MCP_SESSION}",
        "invoke_agent planner",
    ]
    assert (summary.cycles, summary.calls, summary.waiting) == (2, 4, 1)
    assert str(story.running_call) not in exported(isolated_database)


def test_ids_are_derived_from_the_trail_so_exporting_again_gives_the_same_spans(
    story: Story, isolated_database: Database
) -> None:
    first, second = exported(isolated_database), exported(isolated_database)
    assert {k: (s.context.trace_id, s.context.span_id) for k, s in first.items()} == {
        k: (s.context.trace_id, s.context.span_id) for k, s in second.items()
    }
    cycle, call = first[str(story.cycle)], first[str(story.ok_call)]
    assert cycle.context.trace_id == expected_trace(story, story.cycle)
    assert cycle.context.span_id == expected_span(story, story.cycle)
    assert call.context.span_id == expected_span(story, story.ok_call)
    lone = first[str(story.lone_call)]  # outside any cycle: a trace of its own, keyed by the call
    assert lone.parent is None and lone.context.trace_id == expected_trace(story, story.lone_call)
    assert first[str(story.ok_call)].resource.attributes == second[str(story.ok_call)].resource.attributes


def test_tool_spans_are_children_of_their_cycle_span_in_its_trace(story: Story, isolated_database: Database) -> None:
    spans = exported(isolated_database)
    cycle = spans[str(story.cycle)]
    assert cycle.parent is None
    for call in (story.ok_call, story.failed_call):
        child = spans[str(call)]
        assert child.parent is not None and child.parent.span_id == cycle.context.span_id
        assert child.context.trace_id == cycle.context.trace_id
        assert cycle.start_time is not None and child.start_time is not None and child.end_time is not None
        assert cycle.start_time <= child.start_time < child.end_time
    mcp = spans[str(story.mcp_call)]
    assert mcp.parent is not None and mcp.parent.span_id == spans[str(story.mcp_cycle)].context.span_id
    assert mcp.context.trace_id != cycle.context.trace_id


def test_spans_carry_the_genai_attributes_and_a_failure_is_an_error_with_its_type(
    story: Story, isolated_database: Database
) -> None:
    spans = exported(isolated_database)
    cycle, ok, failed = spans[str(story.cycle)], spans[str(story.ok_call)], spans[str(story.failed_call)]
    assert attributes(cycle) | {"jarvis.audit.integrity": "verified"} == attributes(cycle)
    assert {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.id": "planner",
        "gen_ai.conversation.id": str(story.cycle),
    }.items() <= attributes(cycle).items()
    assert {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "http_get",
        "gen_ai.tool.call.id": str(story.ok_call),
        "gen_ai.agent.id": "planner",
        "gen_ai.conversation.id": str(story.cycle),
        "jarvis.audit.integrity": "verified",
    }.items() <= attributes(ok).items()
    assert ok.status.status_code == StatusCode.OK and "error.type" not in attributes(ok)
    assert failed.status.status_code == StatusCode.ERROR and attributes(failed)["error.type"] == "ToolFailedError"
    assert cycle.status.status_code == StatusCode.ERROR and attributes(cycle)["error.type"] == "failed"
    assert "mcp.method.name" not in attributes(ok)


def test_calls_of_an_mcp_session_carry_the_mcp_attributes(story: Story, isolated_database: Database) -> None:
    spans = exported(isolated_database)
    call, cycle = attributes(spans[str(story.mcp_call)]), attributes(spans[str(story.mcp_cycle)])
    assert call["mcp.method.name"] == "tools/call" and call["mcp.session.id"] == MCP_SESSION
    assert call["gen_ai.tool.name"] == "get_current_time" and cycle["mcp.session.id"] == MCP_SESSION
    assert "mcp.request.id" not in call  # the trail does not record the JSON-RPC id: never invented


def test_arguments_and_results_are_exported_only_when_asked_for(story: Story, isolated_database: Database) -> None:
    plain = exported(isolated_database)
    assert SECRET_ARGUMENT not in repr([attributes(s) for s in plain.values()])
    assert SECRET_RESULT not in repr([attributes(s) for s in plain.values()])
    assert not any("gen_ai.tool.call.arguments" in attributes(s) for s in plain.values())
    content = attributes(exported(isolated_database, include_content=True)[str(story.ok_call)])
    assert json.loads(str(content["gen_ai.tool.call.arguments"]))["token"] == SECRET_ARGUMENT
    assert json.loads(str(content["gen_ai.tool.call.result"])) == {"body": SECRET_RESULT}


def test_a_row_a_superuser_edited_is_marked_tampered_and_its_forged_content_never_exported(
    story: Story, isolated_database: Database
) -> None:
    tamper.edit(story.url, "tool_calls", story.ok_completion, "output", f'\'{{"body": "{FORGED}"}}\'::jsonb')
    tamper.edit(story.url, "tool_calls", story.failed_call, "tool_name", f"'{FORGED}'")
    spans = exported(isolated_database, include_content=True)
    edited_outcome, edited_start = spans[str(story.ok_call)], spans[str(story.failed_call)]
    assert attributes(edited_outcome)["jarvis.audit.integrity"] == "tampered"
    assert edited_outcome.status.status_code == StatusCode.ERROR
    assert attributes(edited_outcome)["error.type"] == "tampered"
    assert "gen_ai.tool.call.result" not in attributes(edited_outcome)
    assert attributes(edited_start)["jarvis.audit.integrity"] == "tampered"
    assert edited_start.name == "execute_tool" and "gen_ai.tool.name" not in attributes(edited_start)
    assert "gen_ai.tool.call.arguments" not in attributes(edited_start)
    everything = repr([(s.name, attributes(s), s.status.description) for s in spans.values()])
    assert FORGED not in everything


def test_live_mode_waits_until_a_spans_rows_are_sealed(isolated_database: Database) -> None:
    planner, tools = PlanningLog(isolated_database, agent="planner"), ToolCallLog(isolated_database)
    cycle = planner.open_cycle(["unsealed"])
    call = tools.start("echo", {}, cycle_id=cycle)
    tools.record_completion(call, "succeeded", output=1)
    planner.close_cycle(cycle, "succeeded", {})
    live = TrailSpans(isolated_database, sealed_only=True)
    assert list(live.ready()) == [] and live.waiting == 2
    seal(isolated_database, wait=30)
    assert sorted(row.span.name for row in live.ready()) == ["execute_tool echo", "invoke_agent planner"]


# --- A real OTLP/HTTP receiver.


def test_batch_export_reaches_a_real_otlp_http_receiver_with_ids_parentage_and_attributes(
    story: Story, isolated_database: Database, otlp_receiver: OtlpReceiver
) -> None:
    exporter = otlp_exporter(otlp_receiver.url)
    try:
        summary = export_trail(isolated_database, exporter)
    finally:
        exporter.shutdown()
    assert (summary.cycles, summary.calls) == (2, 4)
    otlp_receiver.wait_for(lambda spans: len(spans) == 6, "six spans")
    assert set(otlp_receiver.paths) == {"/v1/traces"}
    named = otlp_receiver.by_name()
    cycle, call = named["invoke_agent planner"][0], named["execute_tool http_get"][0]
    assert cycle.trace_id == f"{expected_trace(story, story.cycle):032x}" == call.trace_id
    assert cycle.span_id == f"{expected_span(story, story.cycle):016x}" and cycle.parent_span_id == ""
    assert call.span_id == f"{expected_span(story, story.ok_call):016x}" and call.parent_span_id == cycle.span_id
    assert call.attributes["gen_ai.operation.name"] == "execute_tool"
    assert call.attributes["gen_ai.tool.call.id"] == str(story.ok_call)
    assert call.attributes["gen_ai.conversation.id"] == str(story.cycle)
    assert cycle.attributes["gen_ai.agent.id"] == "planner"
    assert named["execute_tool fail"][0].status_code == 2  # STATUS_CODE_ERROR
    assert call.start < call.end and call.resource["service.name"] == "jarvis"
    assert call.resource["jarvis.trail.id"] == str(story.trail)
    mcp = named["execute_tool get_current_time"][0]
    assert mcp.attributes["mcp.method.name"] == "tools/call" and mcp.attributes["mcp.session.id"] == MCP_SESSION


def test_batch_export_over_grpc_reaches_a_real_otlp_grpc_receiver(
    story: Story, isolated_database: Database, otlp_grpc_receiver: OtlpGrpcReceiver
) -> None:
    exporter = otlp_exporter(otlp_grpc_receiver.url, "grpc")
    try:
        export_trail(isolated_database, exporter)
    finally:
        exporter.shutdown()
    otlp_grpc_receiver.wait_for(lambda spans: len(spans) == 6, "six spans over gRPC")
    named = otlp_grpc_receiver.by_name()
    cycle, call = named["invoke_agent planner"][0], named["execute_tool http_get"][0]
    assert call.parent_span_id == cycle.span_id == f"{expected_span(story, story.cycle):016x}"
    assert call.trace_id == f"{expected_trace(story, story.cycle):032x}"


@pytest.fixture
def live(isolated_database: Database, otlp_receiver: OtlpReceiver) -> Iterator[threading.Event]:
    """`follow` running in a thread against the receiver, polling every 0.05 s; stopped (and joined) after."""
    stop, failures = threading.Event(), []
    exporter = otlp_exporter(otlp_receiver.url)

    def run() -> None:
        try:
            follow(isolated_database, exporter, stop, interval=0.05)
        except BaseException as error:  # reported by the test, not lost in the thread
            failures.append(error)
        finally:
            exporter.shutdown()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        thread.join(timeout=WAIT)
        assert not thread.is_alive(), "follow did not stop"
        assert not failures, failures


def test_live_mode_exports_to_a_real_receiver_as_rows_are_sealed(
    story: Story, isolated_database: Database, otlp_receiver: OtlpReceiver, live: threading.Event
) -> None:
    otlp_receiver.wait_for(lambda spans: len(spans) == 6, "the sealed trail's six spans")
    planner, tools = PlanningLog(isolated_database, agent="planner"), ToolCallLog(isolated_database)
    cycle = planner.open_cycle(["later"])
    call = tools.start("echo", {"n": 1}, cycle_id=cycle)
    tools.record_completion(call, "succeeded", output=1)
    planner.close_cycle(cycle, "succeeded", {})
    seal(isolated_database, wait=30)
    otlp_receiver.wait_for(lambda spans: len(spans) == 8, "the two new spans once sealed")
    echo = otlp_receiver.by_name()["execute_tool echo"][0]
    assert echo.span_id == f"{expected_span(story, call.id):016x}"
    assert echo.parent_span_id == f"{expected_span(story, cycle):016x}"
    assert echo.trace_id == f"{expected_trace(story, cycle):032x}"
    the_running_call = tools.start("slow", {}, call_id=None)
    tools.record_completion(the_running_call, "succeeded", output=2)
    seal(isolated_database, wait=30)
    otlp_receiver.wait_for(lambda spans: len(spans) == 9, "the completed call's span")
    assert len({span.span_id for span in otlp_receiver.spans}) == 9, "a span was exported twice"


# --- The CLI.

runner = CliRunner()


def test_cli_format_otel_writes_otlp_json_that_decodes_as_an_export_request(story: Story, tmp_path: Path) -> None:
    output = tmp_path / "spans.jsonl"
    result = runner.invoke(
        app, ["audit", "export", "--format", "otel", "--output", str(output)], env={"DATABASE_URL": story.url}
    )
    assert result.exit_code == 0, result.output
    spans = []
    for line in output.read_text().splitlines():
        document = json.loads(line)
        for resource in document["resourceSpans"]:
            for scope in resource["scopeSpans"]:
                for span in scope["spans"]:
                    assert len(span["traceId"]) == 32 and len(span["spanId"]) == 16  # hex, as OTLP/JSON says
                    assert isinstance(span["kind"], int)
                    spans.append(dict(span))  # a copy: the ids are rewritten below
        # The same document with protobuf JSON's base64 ids is a valid ExportTraceServiceRequest.
        for resource in document["resourceSpans"]:
            for scope in resource["scopeSpans"]:
                for span in scope["spans"]:
                    for key in ("traceId", "spanId", "parentSpanId"):
                        if key in span:
                            span[key] = base64.b64encode(bytes.fromhex(span[key])).decode()
        json_format.ParseDict(document, ExportTraceServiceRequest())
    by_name = {span["name"]: span for span in spans}
    assert by_name["invoke_agent planner"]["traceId"] == f"{expected_trace(story, story.cycle):032x}"
    assert len(spans) == 6 and SECRET_ARGUMENT not in output.read_text()


def test_cli_format_otlp_sends_the_spans_to_the_endpoint(story: Story, otlp_receiver: OtlpReceiver) -> None:
    result = runner.invoke(
        app,
        ["audit", "export", "--format", "otlp", "--endpoint", otlp_receiver.url, "--include-content"],
        env={"DATABASE_URL": story.url},
    )
    assert result.exit_code == 0, result.output
    otlp_receiver.wait_for(lambda spans: len(spans) == 6, "six spans")
    call = otlp_receiver.by_name()["execute_tool http_get"][0]
    assert SECRET_ARGUMENT in str(call.attributes["gen_ai.tool.call.arguments"])


def test_cli_format_otlp_to_a_closed_port_fails_with_the_endpoint_named(story: Story) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    result = runner.invoke(
        app,
        ["audit", "export", "--format", "otlp", "--endpoint", endpoint],
        env={"DATABASE_URL": story.url, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "1"},
    )
    assert result.exit_code == 1 and endpoint in result.output and "Fix:" in result.output


def test_cli_follow_exports_then_stops_cleanly_on_sigterm(story: Story, otlp_receiver: OtlpReceiver) -> None:
    process = jarvis_process(
        "audit", "export", "--format", "otlp", "--endpoint", otlp_receiver.url, "--follow", "--interval", "0.05",
        database_url=story.url,
    )  # fmt: skip
    try:
        otlp_receiver.wait_for(lambda spans: len(spans) == 6, "the follower's first six spans")
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=WAIT)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert "stopped" in err and "Traceback" not in err


def test_without_the_otel_extra_the_export_names_the_extra_to_install(story: Story) -> None:
    blocked = "import sys; sys.modules['opentelemetry'] = None; from jarvis.cli.main import main; main()"
    result = subprocess.run(
        [sys.executable, "-c", blocked, "audit", "export", "--format", "otel"],
        env={"PYTHONPATH": ":".join(sys.path), "DATABASE_URL": story.url, "COLUMNS": "200", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert result.returncode == 2, result.stderr
    assert "pip install 'jarvis[otel]'" in result.stderr
