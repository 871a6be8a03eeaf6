"""Audit bundles: one file an auditor verifies without the database, trusting only the signer's public key."""

from __future__ import annotations

import ast
import hashlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from jarvis.agent.bundle import BundleError, BundleFormatError, BundleReport, export_bundle, verify_bundle
from jarvis.agent.witnessing import seal_and_sign, verify_trail
from jarvis.cli.main import app
from jarvis.config import Settings, load_settings
from jarvis.db import Database, RuntimeSchema, open_database
from jarvis.db.audit import ExpectedHead, PlanningLog, ToolCallLog, seal, verify
from jarvis.db.audit.canonical import GENESIS, canonical_python_from_json, link_hash
from jarvis.witness import SigningKey, generate_key
from jarvis_testkit import tamper
from jarvis_testkit.services import free_port

runner = CliRunner()
Doc = dict[str, Any]


@dataclass
class Trail:
    url: str
    settings: Settings
    cycle: uuid.UUID
    starts: list[uuid.UUID]
    completions: list[uuid.UUID]


@pytest.fixture
def signer(tmp_path: Path, isolated_database_url: str) -> Settings:
    """Settings whose checkpoint key and witness log live in this test's directory."""
    settings = load_settings(
        database_url=isolated_database_url,
        signing_key=tmp_path / "keys" / "checkpoint.key",
        witness_log=tmp_path / "witness" / "trail.jsonl",
    )
    generate_key(settings.signing_key_path())
    return settings


def record(database: Database, settings: Settings, url: str) -> Trail:
    """Two sealed and signed batches: a cycle, a decision, tool calls, a runtime table (a schema_changes row)."""
    planning = PlanningLog(database, agent="victim")
    tools = ToolCallLog(database)
    cycle = planning.open_cycle(["pay rent"])
    planning.record_decision(cycle, "pay", {"amount": 1200.5, "note": "naïve ✓"})
    starts, completions = [], []
    for i in range(3):
        start = tools.start("transfer", {"to": f"landlord-{i}", "usd": 100 * i}, cycle_id=cycle)
        starts.append(start.id)
        completions.append(tools.record_completion(start, "succeeded", output={"tx": f"0x{i:04x}"}))
    seal_and_sign(database, settings)
    RuntimeSchema(database).create_table("ledger", {"memo": "text"})  # schema_changes ids are bigints
    start = tools.start("transfer", {"to": "landlord-3", "usd": 300}, cycle_id=cycle)
    starts.append(start.id)
    completions.append(tools.record_completion(start, "failed", error="insufficient funds"))
    planning.close_cycle(cycle, "succeeded", {"paid": 3})
    seal_and_sign(database, settings)
    return Trail(url, settings, cycle, starts, completions)


@pytest.fixture
def trail(isolated_database: Database, isolated_database_url: str, signer: Settings) -> Trail:
    return record(isolated_database, signer, isolated_database_url)


@pytest.fixture
def auditor(isolated_database_url: str, signer: Settings) -> Iterator[Database]:
    database = open_database(signer, url=isolated_database_url, role="auditor")
    yield database
    database.shutdown()


@pytest.fixture
def bundle(trail: Trail, auditor: Database, tmp_path: Path) -> Path:
    path = tmp_path / "out" / "trail.bundle"
    path.parent.mkdir()
    summary = export_bundle(auditor, trail.settings, path)
    assert summary.rows == summary.links == 12 and summary.checkpoints == 2 and summary.pending == 0
    return path


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


def row_of(documents: list[Doc], row_id: uuid.UUID) -> Doc:
    return next(r for r in rows(documents) if r["id"] == str(row_id))


def link_of(documents: list[Doc], row_id: uuid.UUID) -> Doc:
    return next(link for link in links(documents) if link["row_id"] == str(row_id))


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
    header = documents[0]
    header["head_seq"], header["head_hash"] = (
        (links(documents)[-1]["seq"], previous.hex()) if links(documents) else (0, GENESIS.hex())
    )


def forge_checkpoints(documents: list[Doc], key: SigningKey) -> None:
    """Replace every checkpoint by one the forger signs for the (rewritten) chain at the same position."""
    by_seq = {link["seq"]: link["chain_hash"] for link in links(documents)}
    for document in documents:
        if "checkpoint" in document:
            old = document["checkpoint"]
            head = bytes.fromhex(by_seq[old["seq"]])
            document["checkpoint"] = asdict(key.sign(old["trail"], old["seq"], head, _when(old["sealed_at"])))


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text)


def edit_row(documents: list[Doc], row_id: uuid.UUID, old: str, new: str) -> Doc:
    row = row_of(documents, row_id)
    assert old in row["canonical"]
    row["canonical"] = row["canonical"].replace(old, new)
    return row


def check(path: Path, public_key: Path, **kwargs: Any) -> BundleReport:
    return verify_bundle(path, public_key, **kwargs)


def jarvis(*args: str, url: str = "", **env: str) -> tuple[int, str]:
    environment = {"DATABASE_URL": url, "REDIS_URL": "", "COLUMNS": "400", **env}
    result = runner.invoke(app, list(args), env=environment)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def dead_database() -> str:
    """A URL nothing listens on: any attempt to use the database fails with exit 3."""
    return f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"


# --- the untouched bundle --------------------------------------------------------------------------------------


def test_untouched_bundle_verifies_offline_like_the_database(
    bundle: Path, trail: Trail, isolated_database: Database
) -> None:
    report = check(bundle, trail.settings.public_key_path())
    assert report.ok, report.summary()
    online = verify_trail(isolated_database, trail.settings)
    assert online.ok, online.summary()
    assert (report.rows_checked, report.head_seq, report.head_hash) == (12, online.head_seq, online.head_hash)
    assert report.checkpoints_checked == 2 and report.signed_seq == report.head_seq
    assert report.summary().startswith("OK: 12 audit rows verified offline")
    documents = read(bundle)
    assert documents[0]["format"] == "jarvis-audit-bundle" and documents[0]["version"] == 1
    assert [sorted(d) for d in documents[1:]] == [["row"]] * 12 + [["link"]] * 12 + [["checkpoint"]] * 2
    schema_change = next(r for r in rows(documents) if r["table"] == "schema_changes")
    assert uuid.UUID(schema_change["id"]).int == json.loads(schema_change["canonical"])["id"]
    assert "naïve ✓" in bundle.read_text(encoding="utf-8")  # UTF-8, not escapes
    assert list(bundle.parent.iterdir()) == [bundle]  # no temporary file left behind


def test_expected_head_is_checked_in_the_bundle(bundle: Path, trail: Trail) -> None:
    third = links(read(bundle))[2]["chain_hash"]
    found = check(bundle, trail.settings.public_key_path(), expect=ExpectedHead.parse(f"3:{third}"))
    assert found.ok and found.expected_head_found
    missing = check(bundle, trail.settings.public_key_path(), expect=ExpectedHead.parse("ab" * 32))
    assert not missing.ok and missing.expected_head_found is False


def test_cli_verifies_a_bundle_without_any_database(bundle: Path, trail: Trail) -> None:
    public_key = str(trail.settings.public_key_path())
    code, out = jarvis("audit", "verify", "--bundle", str(bundle), "--public-key", public_key, url=dead_database())
    assert code == 0, out
    assert "OK: 12 audit rows verified offline" in out
    # The default trusted key is the configured signing key's .pub, as for the database's own checkpoints.
    code, out = jarvis(
        "audit",
        "verify",
        "--bundle",
        str(bundle),
        url=dead_database(),
        JARVIS_SIGNING_KEY=str(trail.settings.signing_key_path()),
    )
    assert code == 0, out
    code, out = jarvis(
        "audit", "verify", "--bundle", str(bundle), "--public-key", public_key, "--json", url=dead_database()
    )
    data = json.loads(out)
    assert code == 0 and data["ok"] and data["rows_checked"] == 12 and data["checkpoints_checked"] == 2


def test_cli_exports_atomically_and_refuses_to_overwrite(trail: Trail, tmp_path: Path) -> None:
    env = {
        "JARVIS_SIGNING_KEY": str(trail.settings.signing_key_path()),
        "JARVIS_WITNESS_LOG": str(trail.settings.witness_log),
    }
    target = tmp_path / "cli.bundle"
    code, out = jarvis("audit", "export", "--format", "bundle", url=trail.url, **env)
    assert code == 2 and "--output" in out
    code, out = jarvis("audit", "export", "--format", "bundle", "--output", str(target), url=trail.url, **env)
    assert code == 0, out
    assert str(target) in out and "12 rows, 12 links, " in out and "signed checkpoint(s)" in out  # it signs first
    first = target.read_bytes()
    code, out = jarvis("audit", "export", "--format", "bundle", "--output", str(target), url=trail.url, **env)
    assert code == 2 and "exists" in out and "--force" in out
    assert target.read_bytes() == first
    code, out = jarvis("audit", "export", "--format", "bundle", "-o", str(target), "--force", url=trail.url, **env)
    assert code == 0, out
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")) == []
    code, out = jarvis("audit", "verify", "--bundle", str(target), url=dead_database(), **env)
    assert code == 0, out


def test_export_refuses_an_existing_file_unless_forced(trail: Trail, auditor: Database, tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.write_text("keep me")
    with pytest.raises(BundleError, match="exists.*--force"):
        export_bundle(auditor, trail.settings, target)
    assert target.read_text() == "keep me"
    export_bundle(auditor, trail.settings, target, force=True)
    assert read(target)[0]["format"] == "jarvis-audit-bundle"


def test_rows_waiting_to_be_sealed_are_left_out(
    trail: Trail, isolated_database: Database, auditor: Database, tmp_path: Path
) -> None:
    ToolCallLog(isolated_database).start("late", {})
    summary = export_bundle(auditor, trail.settings, tmp_path / "b")
    assert summary.pending == 1 and summary.rows == 12
    report = check(tmp_path / "b", trail.settings.public_key_path())
    assert report.ok and report.pending == 1 and "1 row(s) were waiting to be sealed" in report.summary()


# --- tampering with the bundle ---------------------------------------------------------------------------------


def test_edited_row_text_is_reported_naming_the_row(bundle: Path, trail: Trail) -> None:
    documents = read(bundle)
    edit_row(documents, trail.starts[1], "landlord-1", "attacker")
    write(bundle, documents)
    report = check(bundle, trail.settings.public_key_path())
    assert not report.ok
    assert report.problems[0].row_id == trail.starts[1] and "content was changed" in report.problems[0].reason
    code, out = jarvis(
        "audit",
        "verify",
        "--bundle",
        str(bundle),
        "--public-key",
        str(trail.settings.public_key_path()),
        url=dead_database(),
    )
    assert code == 1 and "TAMPERED" in out and str(trail.starts[1]) in out


@pytest.mark.parametrize(
    ("old", "new", "reason"),
    [
        (', "input": ', ',  "input": ', "not in canonical form"),  # spacing: not the bytes that were hashed
        ('"$table": "tool_calls"', '"$table": "decision_log"', 'its "$table" is not tool_calls'),
        ('"status": "started"', '"status": "started", "extra": null', "not in canonical form"),  # NULLs are left out
    ],
)
def test_row_text_that_is_not_canonical_is_reported(
    bundle: Path, trail: Trail, old: str, new: str, reason: str
) -> None:
    documents = read(bundle)
    edit_row(documents, trail.starts[0], old, new)
    rechain(documents)  # even with its hash and the chain made to fit
    write(bundle, documents)
    report = check(bundle, trail.settings.public_key_path())
    assert not report.ok
    assert report.problems[0].row_id == trail.starts[0] and reason in report.problems[0].reason, report.summary()


def test_row_text_of_another_row_is_reported(bundle: Path, trail: Trail) -> None:
    documents = read(bundle)
    victim, other = row_of(documents, trail.starts[0]), row_of(documents, trail.starts[1])
    victim["canonical"] = other["canonical"]
    write(bundle, documents)
    report = check(bundle, trail.settings.public_key_path())
    assert any(p.row_id == trail.starts[0] and f"not of {trail.starts[0]}" in p.reason for p in report.problems)


def test_edited_link_is_reported(bundle: Path, trail: Trail) -> None:
    documents = read(bundle)
    row = edit_row(documents, trail.completions[2], "0x0002", "0xdead")
    link = link_of(documents, trail.completions[2])
    link["row_hash"] = hashlib.sha256(row["canonical"].encode()).hexdigest()  # the row's hash, not its chain
    write(bundle, documents)
    report = check(bundle, trail.settings.public_key_path())
    assert not report.ok
    assert report.problems[0].row_id == trail.completions[2] and report.problems[0].seq == link["seq"]
    assert "chain link does not match its predecessor" in report.problems[0].reason


def test_consistently_rewritten_chain_is_caught_by_the_signed_checkpoints(bundle: Path, trail: Trail) -> None:
    documents = read(bundle)
    edit_row(documents, trail.starts[0], "landlord-0", "attacker")
    rechain(documents)
    write(bundle, documents)
    report = check(bundle, trail.settings.public_key_path())
    assert not report.ok
    assert all(p.table == "audit_chain" for p in report.problems), report.summary()
    assert "history was rewritten" in report.problems[0].reason and report.checkpoints_checked == 0


def test_dropping_the_last_rows_and_links_but_keeping_the_checkpoint_is_reported(bundle: Path, trail: Trail) -> None:
    documents = read(bundle)
    dropped = {(link["table"], link["row_id"]) for link in links(documents)[-2:]}
    documents = [
        d
        for d in documents
        if not ("link" in d and d["link"]["seq"] > 10)
        and not ("row" in d and (d["row"]["table"], d["row"]["id"]) in dropped)
    ]
    rechain(documents)  # the header is made to agree, too
    write(bundle, documents)
    report = check(bundle, trail.settings.public_key_path())
    assert not report.ok
    assert [p.reason for p in report.problems if "chain was cut" in p.reason], report.summary()
    assert str(report.problems[0]).startswith("audit_chain (chain position 12): checkpoint 12:")


def test_missing_row_and_row_outside_the_chain_are_reported(bundle: Path, trail: Trail) -> None:
    documents = read(bundle)
    removed = row_of(documents, trail.completions[0])
    documents.remove({"row": removed})
    forged = dict(row_of(documents, trail.starts[3]))
    forged_id = uuid.uuid4()
    forged["id"] = str(forged_id)
    forged["canonical"] = forged["canonical"].replace(str(trail.starts[3]), str(forged_id))
    documents.insert(1, {"row": forged})
    write(bundle, documents)
    reasons = {(p.row_id, p.reason) for p in check(bundle, trail.settings.public_key_path()).problems}
    assert (trail.completions[0], "row was deleted (it is not in the bundle)") in reasons
    assert any(row_id == forged_id and "not in the chain" in reason for row_id, reason in reasons)


def test_checkpoint_signed_by_another_key_is_reported(bundle: Path, trail: Trail) -> None:
    documents = read(bundle)
    documents[-1]["checkpoint"] = asdict(
        SigningKey.generate().sign(
            documents[0]["trail"],
            12,
            bytes.fromhex(documents[0]["head_hash"]),
            _when(documents[-1]["checkpoint"]["sealed_at"]),
        )
    )
    write(bundle, documents)
    report = check(bundle, trail.settings.public_key_path())
    assert not report.ok
    assert len(report.problems) == 2 and "bad signature" in report.problems[0].reason
    assert "not signed by the trusted key" in report.problems[0].reason
    assert "no signature vouches for them" in report.problems[1].reason  # what came after the first checkpoint
    assert report.checkpoints_checked == 1


def test_checkpoints_re_signed_by_the_forger_do_not_verify_with_the_trusted_key(
    bundle: Path, trail: Trail, tmp_path: Path
) -> None:
    documents = read(bundle)
    edit_row(documents, trail.starts[2], "landlord-2", "attacker")
    rechain(documents)
    forger = SigningKey.generate()
    forge_checkpoints(documents, forger)
    write(bundle, documents)
    forger_public = tmp_path / "forger.pub"
    forger_public.write_bytes(forger.public_key.to_pem())
    assert check(bundle, forger_public).ok  # consistent in itself: only the key tells
    report = check(bundle, trail.settings.public_key_path())
    assert not report.ok and report.checkpoints_checked == 0
    reasons = [p.reason for p in report.problems]
    assert sum("not signed by the trusted key" in r for r in reasons) == 2
    assert any("no checkpoint signed by the trusted key" in r for r in reasons)
    code, out = jarvis(
        "audit",
        "verify",
        "--bundle",
        str(bundle),
        "--public-key",
        str(trail.settings.public_key_path()),
        url=dead_database(),
    )
    assert code == 1 and "bad signature" in out


def test_checkpoint_removed_from_the_bundle_is_reported(bundle: Path, trail: Trail) -> None:
    documents = read(bundle)[:-1]
    write(bundle, documents)
    report = check(bundle, trail.settings.public_key_path())
    assert not report.ok and "checkpoints were removed or added" in report.problems[0].reason


# --- malformed bundles -------------------------------------------------------------------------------------------


def replace_line(path: Path, number: int, text: str) -> None:
    lines = path.read_text(encoding="utf-8").split("\n")
    lines[number - 1] = text
    path.write_text("\n".join(lines), encoding="utf-8")


@pytest.mark.parametrize(
    ("number", "text", "message"),
    [
        (5, "{not json", "line 5 is not JSON"),
        (1, '{"format": "something else"}', "line 1: not a Jarvis audit bundle"),
        (3, '{"row": {"table": "tool_calls"}}', "line 3: missing field(s)"),
        (
            4,
            '{"row": {"table": "users", "id": "x", "encoding": 2, "canonical": ""}}',
            "line 4: 'users' is not a chained",
        ),
        (
            18,
            '{"link": {"seq": "18", "table": "tool_calls", "row_id": "x", "row_hash": "", "chain_hash": "", '
            '"encoding": 2}}',
            "line 18: field seq must be an integer",
        ),
        (2, '{"link": 1}', "line 2: link must be a JSON object"),
        (7, "[]", "line 7 is not a JSON object"),
        (9, '{"table": "tool_calls"}', "line 9 is not a"),
        (27, '{"checkpoint": {"seq": 1}}', "line 27: missing field(s)"),
    ],
)
def test_malformed_line_is_named_and_exits_2(bundle: Path, trail: Trail, number: int, text: str, message: str) -> None:
    replace_line(bundle, number, text)
    with pytest.raises(BundleFormatError, match="line") as caught:
        check(bundle, trail.settings.public_key_path())
    assert message in str(caught.value)
    code, out = jarvis(
        "audit",
        "verify",
        "--bundle",
        str(bundle),
        "--public-key",
        str(trail.settings.public_key_path()),
        url=dead_database(),
    )
    assert code == 2 and f"line {number}" in out and "Traceback" not in out


def test_lines_out_of_order_and_a_cut_off_file_are_malformed(bundle: Path, trail: Trail) -> None:
    original = bundle.read_bytes()
    documents = read(bundle)
    documents.insert(20, documents.pop(2))  # a row among the links
    write(bundle, documents)
    with pytest.raises(BundleFormatError, match=r"line 21: a row line after the link lines"):
        check(bundle, trail.settings.public_key_path())
    bundle.write_bytes(original[:-10])
    with pytest.raises(BundleFormatError, match=r"line 27 is incomplete"):
        check(bundle, trail.settings.public_key_path())
    bundle.write_bytes(b"")
    with pytest.raises(BundleFormatError, match=r"line 1: the file is empty"):
        check(bundle, trail.settings.public_key_path())


def test_missing_bundle_or_public_key_exits_2(bundle: Path, trail: Trail, tmp_path: Path) -> None:
    code, out = jarvis(
        "audit", "verify", "--bundle", str(tmp_path / "nope"), "--public-key", str(trail.settings.public_key_path())
    )
    assert code == 2 and "cannot read the bundle" in out
    code, out = jarvis("audit", "verify", "--bundle", str(bundle), "--public-key", str(tmp_path / "nope.pub"))
    assert code == 2 and "no public key" in out
    code, out = jarvis("audit", "verify", "--bundle", str(bundle), "--seal", url=dead_database())
    assert code == 2 and "--seal" in out


# --- legacy links (encoding 1, sealed before migration 0003) ------------------------------------------------------


def make_links_legacy(url: str) -> int:
    """Turn every link of the audit tables into an encoding-1 link, as a database sealed before 0003 has them."""
    with tamper.superuser_without_triggers(url) as conn:
        conn.execute("SET TimeZone = 'UTC'")  # as the verifier reads rows
        chain = conn.execute("SELECT seq, table_name, row_id, row_hash FROM audit_chain ORDER BY seq").fetchall()
        previous, legacy = GENESIS, 0
        for link in chain:
            row_hash, encoding = bytes(link["row_hash"]), 2
            if link["table_name"] != "schema_changes":
                row_json = conn.execute(
                    f"SELECT to_jsonb(x)::text AS j FROM {link['table_name']} x WHERE id = %s", (link["row_id"],)
                ).fetchone()
                assert row_json is not None
                row_hash = hashlib.sha256(canonical_python_from_json(link["table_name"], row_json["j"])).digest()
                encoding, legacy = 1, legacy + 1
            previous = link_hash(previous, link["seq"], link["table_name"], link["row_id"], row_hash)
            conn.execute(
                "UPDATE audit_chain SET row_hash = %s, chain_hash = %s, encoding = %s WHERE seq = %s",
                (row_hash, previous, encoding, link["seq"]),
            )
        conn.execute("UPDATE audit_seal_head SET chain_hash = %s", (previous,))
    return legacy


def test_legacy_encoding_1_rows_are_exported_and_verified(
    isolated_database: Database, isolated_database_url: str, signer: Settings, auditor: Database, tmp_path: Path
) -> None:
    planning = PlanningLog(isolated_database, agent="old")
    cycle = planning.open_cycle(["before 0003"])
    planning.record_decision(cycle, "weigh", {"ratio": 0.1, "big": 12345678901234567890})
    seal(isolated_database)
    assert make_links_legacy(isolated_database_url) == 2
    assert verify(isolated_database).ok  # the database's verifier agrees the links are sound
    record(isolated_database, signer, isolated_database_url)  # newer links (encoding 2) chained after them, then signed
    path = tmp_path / "legacy.bundle"
    export_bundle(auditor, signer, path)
    documents = read(path)
    assert sorted(r["encoding"] for r in rows(documents)).count(1) == 2
    report = check(path, signer.public_key_path())
    assert report.ok and report.rows_checked == 14, report.summary()
    decision = next(r for r in rows(documents) if r["table"] == "decision_log" and r["encoding"] == 1)
    assert '"ratio":0.1' in decision["canonical"]  # compact, sorted, numbers through float: encoding 1
    decision["canonical"] = decision["canonical"].replace('"ratio":0.1', '"ratio":0.10000000000000001')
    write(path, documents)
    report = check(path, signer.public_key_path())
    assert not report.ok and report.problems[0].row_id == uuid.UUID(decision["id"]), report.summary()


# --- the verifier needs no database --------------------------------------------------------------------------------


def test_bundle_module_imports_no_database_driver_when_loaded() -> None:
    import jarvis.agent.bundle as module

    tree = ast.parse(Path(module.__file__ or "").read_text(encoding="utf-8"))
    top_level: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            top_level += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            top_level.append(node.module or "")
    assert top_level and not [
        name
        for name in top_level
        if name.split(".")[0] in ("psycopg", "sqlalchemy") or name.startswith(("jarvis.db", "jarvis.agent.witnessing"))
    ]
