"""The pausegraph half of each workload, built the same way as LangGraph's.

Each builder makes the ``Graph`` once (outside any timed region, as LangGraph's
``compile`` is) and returns a callable that does one run on a given store.
Every run checks its outcome, so a broken engine fails loudly instead of
timing the wrong work.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from pathlib import Path
from typing import Any

from pausegraph import (
    Append,
    Done,
    Graph,
    Interrupt,
    LastWriteWins,
    MemoryCheckpointer,
    MergeMap,
    Paused,
    Resume,
    Runner,
)

try:
    from pausegraph import FileCheckpointer
except ImportError:  # an engine without its file store yet: the file rows are skipped
    HAS_FILE_STORE = False
else:
    HAS_FILE_STORE = True

Store = Any


def memory_store(_path: Path | None = None) -> Store:
    return MemoryCheckpointer()


def file_store(path: Path) -> Store:
    return FileCheckpointer(path)


def sqlite_store(path: Path) -> Store:
    """A SQLite store in a database file inside ``path`` (a directory made for it)."""
    from pausegraph import SqliteCheckpointer

    path.mkdir(parents=True, exist_ok=True)
    return SqliteCheckpointer(path / "runs.db")


try:
    from pausegraph import SqliteCheckpointer as _Sqlite  # noqa: F401 - is it there?
except ImportError:  # an engine without its SQLite store: those rows are skipped
    HAS_SQLITE_STORE = False
else:
    HAS_SQLITE_STORE = True


def _expect_done(out: object, what: str) -> Done:
    if not isinstance(out, Done):
        raise RuntimeError(f"pausegraph {what} did not finish: {out!r}")
    return out


def _increment(state: Mapping[str, Any]) -> dict[str, int]:
    return {"n": state["n"] + 1}


def chain_graph(steps: int) -> Graph:
    """``steps`` steps in a line, each adding one to ``n``."""
    graph = Graph("chain", {"n": LastWriteWins()})
    for i in range(steps):
        graph.step(f"s{i}", _increment)
        if i:
            graph.edge(f"s{i - 1}", f"s{i}")
    return graph


def chain(steps: int) -> Callable[[Runner, str], None]:
    def run(runner: Runner, run_id: str) -> None:
        done = _expect_done(runner.run(run_id, {"n": 0}), "chain")
        if done.state["n"] != steps:
            raise RuntimeError(f"pausegraph chain ended with n={done.state['n']!r}")

    return run


def _appender(item: Any) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    def step(state: Mapping[str, Any]) -> dict[str, Any]:
        return {"items": item}

    return step


def layer_graph(width: int) -> Graph:
    """``width`` steps with no edges: one layer, each appending its index."""
    graph = Graph("layer", {"items": Append()})
    for i in range(width):
        graph.step(f"p{i}", _appender(i))
    return graph


def layer(width: int) -> Callable[[Runner, str], None]:
    def run(runner: Runner, run_id: str) -> None:
        done = _expect_done(runner.run(run_id), "layer")
        if len(done.state["items"]) != width:
            raise RuntimeError(f"pausegraph layer wrote {len(done.state['items'])} items")

    return run


def append_chain_graph(payloads: list[str]) -> Graph:
    """A chain whose step i appends ``payloads[i]`` to an ``Append`` channel."""
    graph = Graph("append-chain", {"items": Append()})
    for i, payload in enumerate(payloads):
        graph.step(f"s{i}", _appender(payload))
        if i:
            graph.edge(f"s{i - 1}", f"s{i}")
    return graph


def append_chain(count: int) -> Callable[[Runner, str], None]:
    def run(runner: Runner, run_id: str) -> None:
        done = _expect_done(runner.run(run_id), "append chain")
        if len(done.state["items"]) != count:
            raise RuntimeError("pausegraph append chain lost items")

    return run


def _touch(key: str, value: int) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    def step(state: Mapping[str, Any]) -> dict[str, Any]:
        return {"m": {key: value}}

    return step


def big_map(entries: int) -> dict[str, int]:
    return {f"k{i}": i for i in range(entries)}


def map_chain_graph(steps: int, entries: int) -> Graph:
    """A chain over a ``MergeMap`` of ``entries`` keys; step i changes one entry."""
    graph = Graph("map-chain", {"m": MergeMap()})
    for i in range(steps):
        graph.step(f"s{i}", _touch(f"k{i % entries}", -i - 1))
        if i:
            graph.edge(f"s{i - 1}", f"s{i}")
    return graph


def map_chain(entries: int) -> Callable[[Runner, str], None]:
    initial = big_map(entries)

    def run(runner: Runner, run_id: str) -> None:
        done = _expect_done(runner.run(run_id, {"m": initial}), "map chain")
        if len(done.state["m"]) != entries:
            raise RuntimeError("pausegraph map chain changed the number of entries")

    return run


def _prepare(state: Mapping[str, Any]) -> dict[str, int]:
    return {"n": 1}


def _approve(state: Mapping[str, Any]) -> Generator[Interrupt, Any, dict[str, Any]]:
    answer = yield Interrupt({"question": "approve?", "n": state["n"]})
    return {"answer": answer}


def _finish(state: Mapping[str, Any]) -> dict[str, bool]:
    return {"done": True}


def approval_graph() -> Graph:
    """prepare -> approve (interrupts) -> finish, as in LangGraph's approval graph."""
    channels = {"n": LastWriteWins(), "answer": LastWriteWins(), "done": LastWriteWins()}
    return (
        Graph("approval", channels)
        .step("prepare", _prepare)
        .step("approve", _approve)
        .step("finish", _finish)
        .edge("prepare", "approve")
        .edge("approve", "finish")
    )


def approval_run(runner: Runner, run_id: str) -> None:
    """Start a run and check that it paused at ``approve``."""
    paused = runner.run(run_id, {"n": 0})
    if not isinstance(paused, Paused):
        raise RuntimeError(f"pausegraph approval did not pause: {paused!r}")


def approval_resume(runner: Runner, run_id: str) -> None:
    """Answer the pending interrupt and check that the run finished."""
    done = _expect_done(runner.resume(run_id, Resume(True)), "approval")
    if done.state["answer"] is not True or done.state["done"] is not True:
        raise RuntimeError(f"pausegraph approval finished with {done.state!r}")
