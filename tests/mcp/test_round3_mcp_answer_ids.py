"""A hostile upstream behind `jarvis mcp proxy` answers a call twice, the first time in a form the proxy might not
take for the answer but an MCP SDK client would (the id respelled, a duplicate key, `"method": null`, a batch ...).
The client must receive exactly one answer to its call: the one the trail records."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from jarvis.mcp.proxy import id_aliases
from jarvis_testkit import tamper
from jarvis_testkit.mcp_parties import INITIALIZE, INITIALIZED, Conversation, call, completions_by_start, proxy_session

DEADLINE = 120.0
HOSTILE = [sys.executable, str(Path(__file__).with_name("hostile_mcp_server.py"))]
FIRST = '{"content": [{"type": "text", "text": "the first answer"}]}'


def the_outcome(url: str, tool_name: str) -> dict[str, Any]:
    calls = tamper.rows(url, "tool_calls")
    (start,) = (row for row in calls if row["parent_id"] is None and row["tool_name"] == tool_name)
    return completions_by_start(calls)[start["id"]]


@pytest.mark.anyio
async def test_an_sdk_client_gets_the_recorded_answer_not_a_first_one_with_the_id_respelled(
    isolated_database_url: str,
) -> None:
    url = isolated_database_url
    with anyio.fail_after(DEADLINE):
        async with proxy_session(url, HOSTILE) as session:
            result = await session.call_tool("twice", {})  # first {"id": "2", ...}, then {"id": 2, ...}
    outcome = the_outcome(url, "twice")
    assert outcome["status"] == "succeeded"
    assert outcome["output"]["content"] == [{"type": "text", "text": "the second answer"}]
    assert [block.model_dump(exclude_none=True) for block in result.content] == outcome["output"]["content"]


@pytest.mark.parametrize(
    ("first", "recorded", "key"),
    [
        pytest.param('{"jsonrpc": "2.0", "id": "%ID%", "result": ' + FIRST + "}", "second", "result", id="string"),
        pytest.param('{"jsonrpc": "2.0", "id": "0%ID%", "result": ' + FIRST + "}", "second", "result", id="zero"),
        pytest.param('{"jsonrpc": "2.0", "id": " %ID% ", "result": ' + FIRST + "}", "second", "result", id="spaces"),
        pytest.param('{"jsonrpc": "2.0", "id": %ID%.0, "result": ' + FIRST + "}", "second", "result", id="float"),
        pytest.param('{"jsonrpc": "2.0", "id": "%ID%e0", "result": ' + FIRST + "}", "second", "result", id="exp"),
        pytest.param('{"jsonrpc": "2.0", "id": 99, "result": ' + FIRST + "}", "second", "result", id="unknown-id"),
        pytest.param('{"jsonrpc": "2.0", "result": ' + FIRST + "}", "second", "result", id="no-id"),
        pytest.param(
            '{"jsonrpc": "2.0", "id": 99, "id": %ID%, "result": ' + FIRST + "}", "second", "result", id="duplicate-id"
        ),
        pytest.param('[{"jsonrpc": "2.0", "id": %ID%, "result": ' + FIRST + "}]", "second", "result", id="batch"),
        pytest.param('{"jsonrpc": "2.0", "ID": %ID%, "Result": ' + FIRST + "}", "second", "result", id="key-case"),
        pytest.param(
            '{"jsonrpc": "2.0", "id": %ID%, "method": null, "result": ' + FIRST + "}",
            "first",
            "result",
            id="method-null",
        ),
        pytest.param(
            '{"jsonrpc": "2.0", "id": %ID%, "error": {"code": -32000, "message": "the first answer"}, "result": '
            + FIRST
            + "}",
            "first",
            "error",
            id="result-and-error",
        ),
    ],
)
def test_the_client_receives_exactly_one_answer_identical_to_the_recorded_completion(
    isolated_database_url: str, first: str, recorded: str, key: str
) -> None:
    url = isolated_database_url
    conversation = Conversation(url, HOSTILE)
    conversation.send(INITIALIZE)
    conversation.answer_to(1)
    conversation.send(INITIALIZED)
    conversation.send(call(2, "twice", {"first": first}))
    conversation.send(call(3, "echo", {"n": 3}))  # answered after both answers to 2: everything about 2 is in
    conversation.answer_to(3)
    conversation.close()
    outcome = the_outcome(url, "twice")
    assert f"the {recorded} answer" in json.dumps(outcome["output"])
    (to_echo,) = (answer for answer in conversation.received if isinstance(answer, dict) and answer.get("id") == 3)
    assert conversation.received[1:] == [{"jsonrpc": "2.0", "id": 2, key: outcome["output"]}, to_echo]


@pytest.mark.parametrize("confusable", ["2", "02", "2.0", " 2"])
def test_a_request_id_a_client_could_take_for_a_running_calls_is_refused_and_not_run(
    isolated_database_url: str, tmp_path: Path, confusable: str
) -> None:
    url, ran = isolated_database_url, tmp_path / "ran"
    ran.touch()
    conversation = Conversation(url, HOSTILE)
    conversation.send(INITIALIZE)
    conversation.answer_to(1)
    conversation.send(INITIALIZED)
    conversation.send(call(2, "hang", {}))
    conversation.send({**call(0, "append", {"path": str(ran)}), "id": confusable})
    refusal = conversation.answer_to(confusable)
    conversation.close()
    assert refusal["error"]["code"] == -32600 and "already in use by a running request" in refusal["error"]["message"]
    assert ran.read_text() == ""
    assert [row["tool_name"] for row in tamper.rows(url, "tool_calls") if row["parent_id"] is None] == ["hang"]


@pytest.mark.parametrize(
    ("one", "other"),
    [
        *[(2, "2"), (2, "02"), (2, " 2\n"), (2, "+2"), (2, "2.0"), (2, "2e0"), (2, "0x2"), (10, "1_0"), (0, "")],
        *[(2, "\u0662"), (2**53, 2**53 + 1), (2**53, str(2**53 + 1)), ("7", " 7")],
    ],
)
def test_ids_an_sdk_client_matches_to_one_request_share_an_alias(one: int | str, other: int | str) -> None:
    assert id_aliases(one) & id_aliases(other)


@pytest.mark.parametrize(("one", "other"), [(2, "3"), (2, "2x"), ("a", "b"), (2, "0x2g"), (1, "-0x1"), (-1, "-0")])
def test_ids_no_sdk_client_confuses_share_no_alias(one: int | str, other: int | str) -> None:
    assert not id_aliases(one) & id_aliases(other)
