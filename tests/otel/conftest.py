"""Fixtures of the OpenTelemetry tests: a real OTLP/HTTP receiver on 127.0.0.1 (jarvis_testkit.otlp_receiver)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from jarvis_testkit.otlp_receiver import OtlpGrpcReceiver, OtlpReceiver


@pytest.fixture
def otlp_receiver() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver()
    receiver.thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()
        receiver.thread.join(timeout=10)


@pytest.fixture
def otlp_grpc_receiver() -> Iterator[OtlpGrpcReceiver]:
    receiver = OtlpGrpcReceiver()
    try:
        yield receiver
    finally:
        receiver.stop()
