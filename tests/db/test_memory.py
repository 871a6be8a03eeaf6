"""memory_facts: add, look up by subject or JSONB containment, mark stale, list fresh."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from jarvis.cli.main import app
from jarvis.db import Database, InvalidJsonError, InvalidKeyError, MemoryStore


@pytest.fixture
def memory(database: Database) -> MemoryStore:
    return MemoryStore(database)


def test_facts_about_a_subject_come_newest_first(memory: MemoryStore) -> None:
    memory.add("paris", {"population": 2.1})
    memory.add("paris", {"population": 2.2})
    memory.add("london", {"population": 8.9})
    assert [f.body["population"] for f in memory.about("paris")] == [2.2, 2.1]


def test_search_by_containment_finds_matching_bodies(memory: MemoryStore) -> None:
    memory.add("eth", {"kind": "token", "chain": "ethereum", "decimals": 18})
    memory.add("btc", {"kind": "token", "chain": "bitcoin"})
    found = memory.search({"chain": "ethereum"})
    assert [f.subject for f in found] == ["eth"]


def _subject_filter_fixture(memory: MemoryStore, tag: str) -> list[int]:
    """Two facts about `wanted`, then five newer matching facts about `other`; the ids of the `wanted` ones."""
    wanted = [memory.add("wanted", {"tag": tag, "i": i}).id for i in range(2)]
    for i in range(5):
        memory.add("other", {"tag": tag, "i": i})
    return wanted[::-1]


def test_search_by_subject_filters_before_the_limit(memory: MemoryStore) -> None:
    wanted = _subject_filter_fixture(memory, "api")
    found = memory.search({"tag": "api"}, subject="wanted", limit=2)
    assert [f.id for f in found] == wanted
    assert memory.search({"tag": "api"}, subject="nobody") == []


def test_cli_memory_search_with_subject_fills_the_limit(memory: MemoryStore, migrated_database_url: str) -> None:
    # Issue #12 item 10: the newest `--limit` matches were fetched first and filtered by subject afterwards,
    # so older facts about the subject never showed (here: none at all instead of both).
    wanted = _subject_filter_fixture(memory, "cli")
    result = CliRunner().invoke(
        app,
        ["memory", "search", '{"tag": "cli"}', "--subject", "wanted", "--limit", "2", "--json"],
        env={"DATABASE_URL": migrated_database_url},
    )
    assert result.exit_code == 0, result.output
    facts = json.loads(result.stdout)
    assert [f["id"] for f in facts] == wanted
    assert {f["subject"] for f in facts} == {"wanted"}


def test_mark_stale_hides_the_fact_from_fresh_queries_but_keeps_it(memory: MemoryStore) -> None:
    fact = memory.add("price.sol", {"usd": 100})
    assert memory.mark_stale(fact_id=fact.id) == 1
    assert all(f.id != fact.id for f in memory.fresh())
    assert [f.id for f in memory.about("price.sol", include_stale=True)] == [fact.id]
    assert memory.about("price.sol") == []


def test_mark_stale_by_subject_counts_changed_facts(memory: MemoryStore) -> None:
    memory.add("rumour", {"n": 1})
    memory.add("rumour", {"n": 2})
    assert memory.mark_stale(subject="rumour") == 2
    assert memory.mark_stale(subject="rumour") == 0


def test_fresh_lists_newest_first(memory: MemoryStore) -> None:
    first = memory.add("order", {"i": 1})
    second = memory.add("order", {"i": 2})
    ids = [f.id for f in memory.fresh()]
    assert ids.index(second.id) < ids.index(first.id)


def test_search_needs_an_object(memory: MemoryStore) -> None:
    with pytest.raises(InvalidJsonError, match="takes a JSON object"):
        memory.search(["not", "an", "object"])  # type: ignore[arg-type]


def test_body_with_nul_is_refused(memory: MemoryStore) -> None:
    with pytest.raises(InvalidJsonError, match="NUL"):
        memory.add("nul", {"text": "a\x00b"})
    assert memory.about("nul", include_stale=True) == []


def test_containment_search_uses_the_gin_index(owner_database: Database) -> None:
    with owner_database.connect() as conn:
        conn.execute(text("SET enable_seqscan = off"))
        plan = "\n".join(conn.execute(text("EXPLAIN SELECT id FROM memory_facts WHERE body @> '{\"a\": 1}'")).scalars())
    assert "ix_memory_facts_body" in plan


def test_an_empty_subject_is_an_invalid_key_not_invalid_json(memory: MemoryStore) -> None:
    # Issue #13 item 1: an empty subject was called a JSON problem (InvalidJsonError).
    with pytest.raises(InvalidKeyError, match="non-empty") as info:
        memory.add(" ", {"x": 1})
    assert not isinstance(info.value, InvalidJsonError)
