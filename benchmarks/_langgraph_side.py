"""The LangGraph half of each workload, built the way its docs build graphs.

Everything here is optional: when LangGraph is not installed, ``AVAILABLE`` is
False and the scripts print "skipped" in LangGraph's columns, so a plain dev
environment still measures pausegraph.

Choices that keep the comparison fair:

- checkpointed runs pass ``durability="sync"``: the checkpoint is written
  before ``invoke`` goes on, as pausegraph's is before ``run`` goes on;
- ``recursion_limit`` is raised above the chain length (LangGraph's default
  of 25 super-steps would stop a 200-step chain);
- the SQLite saver uses the connection settings of ``SqliteSaver.from_conn_string``
  (WAL journal, SQLite's default ``synchronous``), on the same disk as
  pausegraph's file store.
"""

from __future__ import annotations

import operator
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypedDict

try:
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.checkpoint.sqlite import SqliteSaver
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import Command, interrupt
except ImportError:  # the bench extra is not installed
    AVAILABLE = False
else:
    AVAILABLE = True

MISSING = "langgraph not installed: its columns are skipped (pip install -e .[bench])"

Compiled = Any
Saver = Any


class ChainState(TypedDict):
    n: int


class ListState(TypedDict):
    items: Annotated[list[Any], operator.add]


class ApprovalState(TypedDict, total=False):
    n: int
    answer: Any
    done: bool


def _config(thread_id: str | None, steps: int) -> dict[str, Any]:
    config: dict[str, Any] = {"recursion_limit": steps + 10}
    if thread_id is not None:
        config["configurable"] = {"thread_id": thread_id}
    return config


def memory_saver() -> Saver:
    return InMemorySaver()


def sqlite_saver(path: Path) -> Saver:
    """A SqliteSaver on a file, set up outside any timed region."""
    conn = sqlite3.connect(str(path), check_same_thread=False)
    saver = SqliteSaver(conn)
    saver.setup()
    return saver


def sqlite_synchronous(saver: Saver) -> int:
    """SQLite's ``PRAGMA synchronous`` on the saver's connection (2 = FULL)."""
    return int(saver.conn.execute("PRAGMA synchronous").fetchone()[0])


def sqlite_bytes(path: Path) -> int:
    """The database file plus its write-ahead log: what a copy of the store needs.

    The ``-shm`` index is left out: it is a memory-mapped scratch file that
    SQLite rebuilds, not data.
    """
    total = 0
    for p in (path, path.with_name(path.name + "-wal")):
        if p.exists():
            total += p.stat().st_size
    return total


def _increment(state: ChainState) -> dict[str, int]:
    return {"n": state["n"] + 1}


def chain(steps: int, saver: Saver | None) -> Callable[[str | None], None]:
    """A chain of ``steps`` nodes each adding one to ``n``; returns ``invoke(thread_id)``."""
    builder = StateGraph(ChainState)
    previous = START
    for i in range(steps):
        builder.add_node(f"s{i}", _increment)
        builder.add_edge(previous, f"s{i}")
        previous = f"s{i}"
    builder.add_edge(previous, END)
    graph: Compiled = builder.compile(checkpointer=saver)
    durability = None if saver is None else "sync"

    def invoke(thread_id: str | None) -> None:
        out = graph.invoke({"n": 0}, _config(thread_id, steps), durability=durability)
        if out["n"] != steps:
            raise RuntimeError(f"LangGraph chain ended with n={out['n']!r}, expected {steps}")

    return invoke


def _appender(item: Any) -> Callable[[ListState], dict[str, list[Any]]]:
    def node(state: ListState) -> dict[str, list[Any]]:
        return {"items": [item]}

    return node


def layer(width: int, saver: Saver | None) -> Callable[[str | None], None]:
    """``width`` parallel nodes, all fanned out from START, each appending its index."""
    builder = StateGraph(ListState)
    for i in range(width):
        builder.add_node(f"p{i}", _appender(i))
        builder.add_edge(START, f"p{i}")
        builder.add_edge(f"p{i}", END)
    graph: Compiled = builder.compile(checkpointer=saver)
    durability = None if saver is None else "sync"

    def invoke(thread_id: str | None) -> None:
        out = graph.invoke({"items": []}, _config(thread_id, 1), durability=durability)
        if len(out["items"]) != width:
            raise RuntimeError(f"LangGraph layer wrote {len(out['items'])} items, not {width}")

    return invoke


def append_chain(payloads: list[str], saver: Saver) -> Callable[[str], None]:
    """A chain whose node i appends ``payloads[i]`` to an ``operator.add`` list."""
    builder = StateGraph(ListState)
    previous = START
    for i, payload in enumerate(payloads):
        builder.add_node(f"s{i}", _appender(payload))
        builder.add_edge(previous, f"s{i}")
        previous = f"s{i}"
    builder.add_edge(previous, END)
    graph: Compiled = builder.compile(checkpointer=saver)

    def invoke(thread_id: str) -> None:
        out = graph.invoke({"items": []}, _config(thread_id, len(payloads)), durability="sync")
        if len(out["items"]) != len(payloads):
            raise RuntimeError("LangGraph append chain lost items")

    return invoke


def _prepare(state: ApprovalState) -> dict[str, int]:
    return {"n": 1}


def _approve(state: ApprovalState) -> dict[str, Any]:
    answer = interrupt({"question": "approve?", "n": state["n"]})
    return {"answer": answer}


def _finish(state: ApprovalState) -> dict[str, bool]:
    return {"done": True}


def approval(saver: Saver) -> Callable[[str], None]:
    """prepare -> approve (interrupts) -> finish; returns one pause/resume cycle."""
    builder = StateGraph(ApprovalState)
    builder.add_node("prepare", _prepare)
    builder.add_node("approve", _approve)
    builder.add_node("finish", _finish)
    builder.add_edge(START, "prepare")
    builder.add_edge("prepare", "approve")
    builder.add_edge("approve", "finish")
    builder.add_edge("finish", END)
    graph: Compiled = builder.compile(checkpointer=saver)

    def cycle(thread_id: str) -> None:
        config = _config(thread_id, 3)
        paused = graph.invoke({"n": 0}, config, durability="sync")
        if "__interrupt__" not in paused:
            raise RuntimeError(f"LangGraph approval did not pause: {paused!r}")
        done = graph.invoke(Command(resume=True), config, durability="sync")
        if done.get("answer") is not True or done.get("done") is not True:
            raise RuntimeError(f"LangGraph approval did not finish: {done!r}")

    return cycle
