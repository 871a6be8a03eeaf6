"""Round 2: honest rows verify must accept, and bundle lines the offline verifier must name, not crash on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from jarvis.agent.bundle import BundleFormatError, export_bundle, verify_bundle
from jarvis.agent.witnessing import seal_and_sign
from jarvis.config import Settings
from jarvis.db import Database
from jarvis.db.audit import ToolCallLog, seal, verify
from jarvis.db.jsonb import MAX_DEPTH
from jarvis_testkit.tamper import Trail, without_traceback


def nested(depth: int) -> Any:
    value: Any = {"usd": 1}
    for _ in range(depth - 1):
        value = {"next": value}
    return value


# --- (c) a false alarm nobody can clear: JSON the agent may write, verify cannot re-render


def test_tool_input_nested_as_deep_as_the_agent_allows_verifies(isolated_database: Database, trail: Trail) -> None:
    """`ensure_jsonb` lets the agent store documents MAX_DEPTH (500) levels deep, and the sealer hashes
    them; verify's `render_jsonb` recurses two Python frames per level and gives up ("nested too
    deeply to encode"), so an honest tool input (a web page, an API response) turns the trail TAMPERED
    for good, and every real finding after it is one more "(+N more)"."""
    honest = ToolCallLog(isolated_database).start("fetch", nested(MAX_DEPTH - 2), cycle_id=None).id
    assert seal(isolated_database).linked == 1

    report = without_traceback(lambda: verify(isolated_database))

    assert report.ok, f"row {honest}, written by the agent's own API: {report.summary()}"


def test_tool_input_nested_as_deep_as_the_agent_allows_verifies_offline(
    isolated_database: Database, trail: Trail, witnessed: Settings, tmp_path: Path
) -> None:
    ToolCallLog(isolated_database).start("fetch", nested(MAX_DEPTH - 2))
    seal_and_sign(isolated_database, witnessed)
    bundle = tmp_path / "trail.bundle"

    summary = without_traceback(lambda: export_bundle(isolated_database, witnessed, bundle))
    report = without_traceback(lambda: verify_bundle(bundle, witnessed.public_key_path()))

    assert summary.unreadable == 0 and report.ok, report.summary()


# --- (c) bundle lines with numbers the chain format cannot hold


def exported(isolated_database: Database, witnessed: Settings, tmp_path: Path) -> tuple[Path, list[dict[str, Any]]]:
    seal_and_sign(isolated_database, witnessed)
    bundle = tmp_path / "trail.bundle"
    export_bundle(isolated_database, witnessed, bundle)
    return bundle, [json.loads(line) for line in bundle.read_text().splitlines()]


def write(path: Path, lines: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


def test_bundle_link_at_position_2_to_the_64_is_named_not_an_overflow(
    isolated_database: Database, trail: Trail, witnessed: Settings, tmp_path: Path
) -> None:
    """`link_hash` packs seq into 8 bytes; a bundle line may hold any JSON integer."""
    bundle, lines = exported(isolated_database, witnessed, tmp_path)
    last_link = max(i for i, line in enumerate(lines) if "link" in line)
    lines[last_link]["link"]["seq"] = 2**64
    write(bundle, lines)

    with pytest.raises(BundleFormatError, match=r"line \d+: chain position 18446744073709551616 is outside"):
        verify_bundle(bundle, witnessed.public_key_path())


def test_bundle_checkpoint_at_position_2_to_the_64_is_named(
    isolated_database: Database, trail: Trail, witnessed: Settings, tmp_path: Path
) -> None:
    """Defended: a checkpoint line is validated (and its signature then fails)."""
    bundle, lines = exported(isolated_database, witnessed, tmp_path)
    checkpoint = next(i for i, line in enumerate(lines) if "checkpoint" in line)
    lines[checkpoint]["checkpoint"]["seq"] = 2**64
    write(bundle, lines)

    try:
        report = without_traceback(lambda: verify_bundle(bundle, witnessed.public_key_path()))
    except BundleFormatError:
        return
    assert not report.ok, report.summary()
