"""Bad arguments to the public API: the right PausegraphError, naming what was wrong, nothing saved.

Found by an audit that fed every public call wrong types; each of these
raised a raw Python error from deep inside a call, or saved a value that
made the run unreadable.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Generator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from pausegraph import (
    CheckpointError,
    FileCheckpointer,
    Goto,
    Graph,
    GraphError,
    Interrupt,
    InterruptTimeout,
    LastWriteWins,
    MemoryCheckpointer,
    ResumeError,
    Runner,
    SerializationError,
    Sleep,
    SqliteCheckpointer,
    Worker,
    inbox,
    open_checkpointer,
)
from pausegraph._instructions import MAX_TIMEOUT_S
from pausegraph.web import app


def ask(state: Any) -> Any:
    answer = yield Interrupt({"q": 1})
    return {"x": answer}


def graph() -> Graph:
    return Graph("g", {"x": LastWriteWins()}).step("ask", ask)


@pytest.mark.parametrize(
    "reading",
    [None, "", math.nan, math.inf, True, [1], 1e300, 2**63, 253_402_300_000_000, -(10**15)],
)
def test_a_clock_reading_that_is_no_epoch_ms_is_refused_and_nothing_is_saved(reading: Any) -> None:
    store = MemoryCheckpointer()
    with pytest.raises(GraphError, match=r"clock=\.\.\.\) must return epoch milliseconds"):
        Runner(graph(), store, clock=lambda: reading).run("r")
    assert store.runs() == []


def test_the_latest_clock_reading_accepted_still_takes_any_timeout() -> None:
    # a clock in year 9999 (accepted then) set deadlines past any date: a worker's tick
    # raised ValueError formatting the timeout, and a clock near 2**63 overflowed the
    # stores (an attack). Now the clock stops 100 years (the longest timeout) earlier
    def waits(state: Any) -> Generator[Any, Any, dict[str, Any]]:
        try:
            answer = yield Interrupt("q", timeout=state["timeout"])
        except InterruptTimeout as timeout:
            answer = str(timeout)
        return {"x": answer}

    last = 250_246_540_799_999
    now = [last - 3_600_000]
    flow = Graph("late", {"timeout": LastWriteWins(), "x": LastWriteWins()})
    flow.step("waits", waits)
    store = MemoryCheckpointer()
    runner = Runner(flow, store, clock=lambda: now[0])
    runner.start("r", {"timeout": 3600})
    runner.start("far", {"timeout": MAX_TIMEOUT_S})
    worker = Worker(store, [flow], clock=lambda: now[0])
    assert worker.poll() == 2
    assert [i.deadline_ms for i in runner.state("far").interrupts] == [
        now[0] + int(MAX_TIMEOUT_S * 1000)
    ]
    now[0] = last
    worker.poll()
    info = runner.state("r")
    assert info.status == "done"
    assert info.values["x"].endswith("by its deadline 9899-12-30 23:59:59 UTC")
    assert runner.state("far").status == "paused"
    now[0] = last + 1
    with pytest.raises(GraphError, match="from year 1 to year 9899"):
        runner.run("later")
    assert len(store.runs()) == 2


def test_a_finite_float_clock_reading_is_taken_as_its_int() -> None:
    store = MemoryCheckpointer()
    Runner(graph(), store, clock=lambda: 1_700_000_000_123.9).run("r")
    [meta] = Runner(graph(), store).history("r")[-1:]
    assert meta.timestamp_ms == 1_700_000_000_123


def test_a_worker_with_a_bad_clock_leaves_the_run_queued_and_readable() -> None:
    store = MemoryCheckpointer()
    Runner(graph(), store).start("q")
    with pytest.raises(GraphError, match=r"must return epoch milliseconds"):
        Worker(store, [graph()], clock=lambda: math.nan).poll()
    assert Runner(graph(), store).state("q").status == "queued"


@pytest.mark.parametrize(
    ("make", "kind", "says"),
    [
        (lambda: Runner(graph(), 5), CheckpointError, r"Runner\(graph, checkpointer\) takes a"),
        (lambda: Runner(graph(), clock=5), GraphError, r"clock=\.\.\.\) takes a function"),
        (lambda: Runner(graph(), executor=5), GraphError, r"executor=\.\.\.\) takes a"),
        (lambda: Runner(graph(), interrupt_before=None), GraphError, r"interrupt_before takes"),
        (lambda: Runner(graph(), interrupt_after=[["ask"]]), GraphError, r"interrupt_after takes"),
        (lambda: inbox(None), CheckpointError, r"inbox\(checkpointer\) takes a checkpointer"),
        (lambda: inbox(MemoryCheckpointer(), workflow=5), GraphError, r"workflow name"),
        (lambda: Worker(MemoryCheckpointer(), None), GraphError, r"takes a list of Graphs"),
        (lambda: Worker(None, [graph()]), CheckpointError, r"takes a checkpointer"),
        (lambda: app([graph()], None), CheckpointError, r"takes a checkpointer"),
        (lambda: app([graph()], MemoryCheckpointer(), token=5), GraphError, r"token=\.\.\.\)"),
        (lambda: app([graph()], MemoryCheckpointer(), token=""), GraphError, r"token=\.\.\.\)"),
        (lambda: app([graph()], MemoryCheckpointer(), wait_s="x"), GraphError, r"wait_s"),
        (lambda: app([graph()], MemoryCheckpointer(), wait_s=math.nan), GraphError, r"wait_s"),
        (lambda: FileCheckpointer(None), CheckpointError, r"FileCheckpointer\(root\) takes a path"),
        (lambda: SqliteCheckpointer(b"x"), CheckpointError, r"SqliteCheckpointer\(path\) takes"),
        (lambda: open_checkpointer("a\x00b"), CheckpointError, r"takes a path"),
        (lambda: Graph("g", {}).step("\udcff", ask), GraphError, r"lone surrogate"),
        (lambda: Graph("\udcff", {}), GraphError, r"lone surrogate"),
        (lambda: graph().edge([1], "ask"), GraphError, r"names unknown step \[1\]"),
        (lambda: Goto([1]), ResumeError, r"Goto takes a step id \(a str\)"),
        (lambda: Sleep(10**400), ValueError, r"at most 100 years"),
        (lambda: Sleep(10**5000), ValueError, r"at most 100 years"),
        (lambda: Sleep(-(10**5000)), ValueError, r"0 or more"),
        (lambda: Runner(graph(), executor=ThreadPoolExecutor), GraphError, r"Executor, made"),
    ],
)
def test_a_wrong_argument_is_refused_where_it_is_given(make: Any, kind: Any, says: str) -> None:
    with pytest.raises(kind, match=says):
        make()


def test_poll_and_serve_refuse_a_stop_that_is_no_event() -> None:
    worker = Worker(MemoryCheckpointer(), [graph()])
    with pytest.raises(GraphError, match=r"poll\(stop=\.\.\.\) takes a threading.Event"):
        worker.poll(stop=5)  # type: ignore[arg-type]
    with pytest.raises(GraphError, match=r"serve\(stop=\.\.\.\) takes a threading.Event"):
        worker.serve(stop="x")  # type: ignore[arg-type]
    assert worker.poll(stop=threading.Event()) == 0


def test_a_cancel_reason_that_is_not_text_is_refused_by_the_cli_path_too(tmp_path: Path) -> None:
    from pausegraph._admin import cancel_run

    store = FileCheckpointer(tmp_path)
    Runner(graph(), store).run("p")
    before = store.list("g", "p")
    with pytest.raises(SerializationError, match=r"the cancel reason .* cannot be stored"):
        cancel_run(store, "g", "p", "bad \udcff")
    with pytest.raises(ResumeError, match=r"a cancel reason is text"):
        cancel_run(store, "g", "p", 5)  # type: ignore[arg-type]
    assert store.list("g", "p") == before


def test_an_unlimited_wait_is_a_wait_with_no_limit() -> None:
    assert app([graph()], MemoryCheckpointer(), wait_s=math.inf) is not None
