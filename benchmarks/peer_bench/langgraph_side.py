"""LangGraph's contenders: the Postgres checkpointer's two writes, and a compiled one-node graph."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any, TypedDict

from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.graph import END, START, StateGraph

from peer_bench.rounds import Contender


class CallState(TypedDict):
    i: int
    ok: int


def run_tool(state: CallState) -> dict[str, int]:
    """The graph's one node: a tool call whose output is its input."""
    return {"ok": state["i"]}


@contextmanager
def langgraph_contenders(url: str) -> Iterator[list[Contender]]:
    """`put()` + `put_writes()` (a checkpoint with the call's input, then its output as a pending write)
    and `.invoke(..., durability="sync")` of a compiled one-node graph, each on its own connection."""
    with ExitStack() as stack:
        saver = stack.enter_context(PostgresSaver.from_conn_string(url))
        saver.setup()
        graph_saver = stack.enter_context(PostgresSaver.from_conn_string(url))
        builder = StateGraph(CallState)
        builder.add_node("tool", run_tool)
        builder.add_edge(START, "tool")
        builder.add_edge("tool", END)
        graph = builder.compile(checkpointer=graph_saver)

        def put(n: int) -> tuple[int, float]:
            config: Any = {"configurable": {"thread_id": str(uuid.uuid4()), "checkpoint_ns": ""}}
            started = time.perf_counter()
            for i in range(n):
                checkpoint = empty_checkpoint()
                checkpoint["channel_values"] = {"i": i}
                checkpoint["channel_versions"] = {"i": i + 1}
                metadata: Any = {"source": "loop", "step": i, "parents": {}}
                config = saver.put(config, checkpoint, metadata, {"i": i + 1})
                saver.put_writes(config, [("ok", {"ok": i})], task_id=str(uuid.uuid4()))
            return n, time.perf_counter() - started

        def invoke(n: int) -> tuple[int, float]:
            config: Any = {"configurable": {"thread_id": str(uuid.uuid4())}}
            started = time.perf_counter()
            for i in range(n):
                graph.invoke({"i": i, "ok": 0}, config, durability="sync")
            return n, time.perf_counter() - started

        yield [
            Contender("lg_put", "LangGraph `PostgresSaver.put()` + `put_writes()`", put),
            Contender("lg_graph", 'LangGraph compiled 1-node graph `.invoke(durability="sync")`', invoke),
        ]
