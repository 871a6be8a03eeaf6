"""A bundle cannot be trimmed unseen (issue 22, B3).

Whoever holds an exported bundle keeps only its oldest checkpoint, turns a failed call after it into
a success, recomputes the chain and fixes the header's checkpoint count. Every link must be vouched
for by a signed checkpoint, so such a bundle fails on its own; with the signer's witness log
(`--witness-log`) or the head the auditor was given (`--expect`) it fails naming the rewrite. An
export by the agent's login seals and signs first, so an honest bundle ends at a checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from typer.testing import CliRunner

from jarvis.agent.bundle import export_bundle
from jarvis.agent.witnessing import seal_and_sign
from jarvis.config import Settings, load_settings
from jarvis.db import Database, open_database
from jarvis.db.audit import PlanningLog, ToolCallLog, seal
from jarvis.db.audit.canonical import GENESIS, canonical_jsonb, link_hash
from jarvis.witness import generate_key
from jarvis_testkit.operator import audit
from jarvis_testkit.roles import as_login

runner = CliRunner()
Doc = dict[str, Any]


def read(path: Path) -> list[Doc]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line]


def write(path: Path, documents: list[Doc]) -> None:
    path.write_text(
        "".join(json.dumps(d, ensure_ascii=False, separators=(",", ":")) + "\n" for d in documents), encoding="utf-8"
    )


def rows(documents: list[Doc]) -> list[Doc]:
    return [d["row"] for d in documents if "row" in d]


def links(documents: list[Doc]) -> list[Doc]:
    return [d["link"] for d in documents if "link" in d]


def rechain(documents: list[Doc]) -> None:
    """What a careful forger does after editing rows: recompute every row hash, link and the header's head."""
    texts = {(r["table"], r["id"]): r["canonical"] for r in rows(documents)}
    previous = GENESIS
    for link in links(documents):
        text = texts.get((link["table"], link["row_id"]))
        if text is not None:
            link["row_hash"] = hashlib.sha256(text.encode()).hexdigest()
        previous = link_hash(
            previous, link["seq"], link["table"], uuid.UUID(link["row_id"]), bytes.fromhex(link["row_hash"])
        )
        link["chain_hash"] = previous.hex()
    documents[0]["head_seq"], documents[0]["head_hash"] = links(documents)[-1]["seq"], previous.hex()


@pytest.fixture
def signer(tmp_path: Path, isolated_database_url: str) -> Settings:
    settings = load_settings(
        database_url=isolated_database_url,
        data_dir=tmp_path,
        signing_key=tmp_path / "keys" / "checkpoint.key",
        witness_log=tmp_path / "witness" / "trail.jsonl",
    )
    generate_key(settings.signing_key_path())
    return settings


@pytest.fixture
def failed_call(isolated_database: Database, signer: Settings) -> str:
    """Two signed batches; the second holds a failed payment. Returns the failed completion's id."""
    planning = PlanningLog(isolated_database, agent="victim")
    tools = ToolCallLog(isolated_database)
    cycle = planning.open_cycle(["pay rent"])
    start = tools.start("transfer", {"to": "landlord", "usd": 100}, cycle_id=cycle)
    tools.record_completion(start, "succeeded", output={"tx": "0x01"})
    seal_and_sign(isolated_database, signer, wait=30)
    start = tools.start("transfer", {"to": "attacker", "usd": 9000}, cycle_id=cycle)
    failed = tools.record_completion(start, "failed", error="refused")
    planning.close_cycle(cycle, "succeeded", {"paid": 1})
    seal_and_sign(isolated_database, signer, wait=30)
    return str(failed)


@pytest.fixture
def auditor(isolated_database_url: str, signer: Settings) -> Iterator[Database]:
    database = open_database(signer, url=isolated_database_url, role="auditor")
    yield database
    database.shutdown()


@pytest.fixture
def trimmed(failed_call: str, auditor: Database, signer: Settings, tmp_path: Path) -> Path:
    """The attack: an honest export, cut back to its oldest checkpoint, the failed call made a success."""
    path = tmp_path / "trail.bundle"
    export_bundle(auditor, signer, path)
    documents = read(path)
    checkpoints = [d for d in documents if "checkpoint" in d]
    assert len(checkpoints) == 2
    documents = [d for d in documents if "checkpoint" not in d] + checkpoints[:1]
    row = next(r for r in rows(documents) if r["id"] == failed_call)
    canonical = json.loads(row["canonical"])
    canonical["status"], canonical["output"] = "succeeded", {"tx": "0xf0f0"}
    del canonical["error"]
    row["canonical"] = canonical_jsonb("tool_calls", json.dumps(canonical)).decode()
    rechain(documents)
    documents[0]["checkpoints"] = 1
    write(path, documents)
    return path


cli = audit


def test_a_bundle_trimmed_to_its_oldest_checkpoint_and_rewritten_after_it_fails(
    trimmed: Path, signer: Settings
) -> None:
    code, output = cli(signer, "verify", "--bundle", str(trimmed))

    assert code == 1, output
    assert "OK" not in output.split()[0], output
    assert "no signature vouches for them" in output and "(3 link(s))" in output, output


def test_a_trimmed_bundle_checked_against_the_witness_log_is_named_rewritten(trimmed: Path, signer: Settings) -> None:
    code, output = cli(signer, "verify", "--bundle", str(trimmed), "--witness-log", str(signer.witness_log))

    assert code == 1, output
    assert "does not match the chain: history was rewritten" in output and "witness log" in output, output


def test_a_bundle_cut_before_the_witness_logs_newest_checkpoint_fails(
    failed_call: str, auditor: Database, signer: Settings, tmp_path: Path
) -> None:
    """Cut at the oldest checkpoint, nothing rewritten: internally whole, yet the signer's log reaches further."""
    path = tmp_path / "trail.bundle"
    export_bundle(auditor, signer, path)
    documents = read(path)
    oldest = next(d for d in documents if "checkpoint" in d)
    kept = [link["row_id"] for link in links(documents) if link["seq"] <= oldest["checkpoint"]["seq"]]
    documents = (
        [documents[0]]
        + [{"row": r} for r in rows(documents) if r["id"] in kept]
        + [{"link": link} for link in links(documents) if link["row_id"] in kept]
        + [oldest]
    )
    rechain(documents)
    documents[0]["checkpoints"] = 1
    write(path, documents)
    assert cli(signer, "verify", "--bundle", str(path))[0] == 0  # nothing inside it gives it away

    code, output = cli(signer, "verify", "--bundle", str(path), "--witness-log", str(signer.witness_log))

    assert code == 1, output
    assert "beyond the chain's head" in output, output


def test_an_export_by_the_agents_login_seals_and_signs_first(isolated_database: Database, signer: Settings) -> None:
    """Rows written after the last signature: the agent's export seals and signs them, so the bundle verifies."""
    planning = PlanningLog(isolated_database, agent="victim")
    planning.close_cycle(planning.open_cycle(["pay rent"]), "succeeded", {"paid": 1})
    path = signer.data_dir / "trail.bundle"

    code, output = cli(signer, "export", "--format", "bundle", "--output", str(path))
    assert code == 0, output

    code, output = cli(signer, "verify", "--bundle", str(path))
    assert code == 0, output
    assert output.startswith("OK"), output


@pytest.fixture
def auditor_login(isolated_database_url: str) -> Iterator[str]:
    """A login that is only the auditor role (SELECT-only): the URL to connect with."""
    login = f"auditor_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(isolated_database_url, autocommit=True) as conn:
        role = conn.execute("SELECT auditor_role FROM public.trail_info").fetchone()
        assert role is not None
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE {}").format(sql.Identifier(login), sql.Identifier(role[0])))
    try:
        yield as_login(isolated_database_url, login)
    finally:
        with psycopg.connect(isolated_database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(login)))


def test_an_export_by_an_auditor_login_says_what_no_checkpoint_vouches_for(
    isolated_database: Database, signer: Settings, auditor_login: str
) -> None:
    planning = PlanningLog(isolated_database, agent="victim")
    planning.close_cycle(planning.open_cycle(["pay rent"]), "succeeded", {"paid": 1})
    seal_and_sign(isolated_database, signer, wait=30)
    planning.close_cycle(planning.open_cycle(["pay the plumber"]), "succeeded", {"paid": 1})
    seal(isolated_database, wait=30)  # sealed, not signed
    path = signer.data_dir / "trail.bundle"
    as_auditor = signer.model_copy(update={"database_url": auditor_login})

    code, output = cli(as_auditor, "export", "--format", "bundle", "--output", str(path))

    assert code == 0, output
    assert "come after the newest signed checkpoint" in output and "cannot seal" in output, output
    assert cli(signer, "verify", "--bundle", str(path))[0] == 1
