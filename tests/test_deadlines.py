"""Deadlines and durable timers: Interrupt(timeout=...), Sleep, Runner.tick()."""

from __future__ import annotations

import contextlib
import datetime
import logging
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pausegraph import (
    All,
    Done,
    Effect,
    EffectError,
    FileCheckpointer,
    Graph,
    Interrupt,
    InterruptTimeout,
    LastWriteWins,
    MemoryCheckpointer,
    Paused,
    Resume,
    ResumeError,
    Runner,
    Sleep,
    SqliteCheckpointer,
    StepError,
    Worker,
)
from pausegraph._instructions import MAX_TIMEOUT_S, seconds_of
from pausegraph.checkpointers import Checkpointer

DAY = 24 * 3600 * 1000


class Clock:
    """A clock tests move instead of sleeping (epoch ms)."""

    def __init__(self, now: int = 1_700_000_000_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@pytest.fixture(params=["memory", "file", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Checkpointer:
    if request.param == "memory":
        return MemoryCheckpointer()
    if request.param == "sqlite":
        return SqliteCheckpointer(tmp_path / "runs.db")
    return FileCheckpointer(tmp_path / "store")


def approval(state: Any) -> Any:
    try:
        answer = yield Interrupt({"ask": "approve?"}, timeout=datetime.timedelta(days=1))
    except InterruptTimeout:
        answer = "auto-rejected"
    return {"decision": answer}


def strict(state: Any) -> Any:
    answer = yield Interrupt("approve?", timeout=60)
    return {"decision": answer}


def napper(state: Any) -> Any:
    woke = yield Sleep(30)
    return {"decision": ["woke", woke]}


def graph_of(step: Any, name: str = "g") -> Graph:
    return Graph(name, {"decision": LastWriteWins()}).step("a", step)


def test_the_deadline_is_the_clock_at_the_pause_plus_the_timeout(store: Checkpointer) -> None:
    clock = Clock()
    runner = Runner(graph_of(approval), store, clock=clock)
    paused = runner.run("r")
    assert isinstance(paused, Paused)
    assert paused.interrupts[0].deadline_ms == clock.now + DAY
    assert runner.state("r").interrupts[0].deadline_ms == clock.now + DAY


@pytest.mark.parametrize("cold", [False, True])
def test_a_replay_never_moves_the_deadline(store: Checkpointer, cold: bool) -> None:
    clock = Clock()

    def two(state: Any) -> Any:
        first = yield Interrupt("one", timeout=10)
        second = yield Interrupt("two", timeout=10)
        return {"decision": [first, second]}

    runner = Runner(graph_of(two), store, clock=clock)
    first_deadline = runner.run("r").interrupts[0].deadline_ms  # type: ignore[union-attr]
    clock.now += 5_000
    if cold:
        runner = Runner(graph_of(two), store, clock=clock)
    paused = runner.resume("r", Resume(1))
    assert isinstance(paused, Paused)
    assert paused.interrupts[0].deadline_ms == clock.now + 10_000  # the new one: its own time
    history = runner.history("r")
    assert first_deadline == history[0].timestamp_ms + 10_000


@pytest.mark.parametrize("cold", [False, True])
def test_tick_throws_the_timeout_in_and_a_step_may_catch_it(
    store: Checkpointer, cold: bool
) -> None:
    clock = Clock()
    runner = Runner(graph_of(approval), store, clock=clock)
    runner.run("r")
    clock.now += DAY - 1
    assert runner.tick() == {}  # not yet
    clock.now += 1  # at the deadline: passed
    if cold:
        runner = Runner(graph_of(approval), store, clock=clock)
    assert runner.tick() == {"r": Done({"decision": "auto-rejected"}, 1)}
    assert runner.tick() == {}


def test_an_uncaught_timeout_fails_the_run_and_an_answer_replaces_it(store: Checkpointer) -> None:
    clock = Clock()
    runner = Runner(graph_of(strict), store, clock=clock)
    pending = runner.run("r").interrupts[0]  # type: ignore[union-attr]
    clock.now += 60_000
    assert runner.tick() == {}  # the run's own error is not raised: it is failed
    info = runner.state("r")
    assert info.status == "failed"
    assert info.failure is not None
    assert info.failure.error_type == "InterruptTimeout"
    assert [i.id for i in info.interrupts] == [pending.id]  # its answer may replace the timeout
    assert runner.tick() == {}  # tick never retries a failed run on its own
    done = runner.resume("r", Resume(answers={pending.id: "late yes"}))
    assert done == Done({"decision": "late yes"}, 1)


def test_the_one_timed_out_interrupt_of_a_failed_run_is_answered_by_a_plain_value(
    store: Checkpointer,
) -> None:
    # the tick's claim and the timeout name the same interrupt: it is one, not two
    clock = Clock()
    runner = Runner(graph_of(strict), store, clock=clock)
    runner.run("r")
    clock.now += 60_000
    runner.tick()
    assert len(runner.state("r").interrupts) == 1
    assert runner.resume("r", Resume("late yes")) == Done({"decision": "late yes"}, 1)


def test_a_passed_sleep_returns_none_and_answering_it_ends_it_early(store: Checkpointer) -> None:
    clock = Clock()
    runner = Runner(graph_of(napper), store, clock=clock)
    paused = runner.run("r")
    assert isinstance(paused, Paused)
    assert paused.payload is None
    assert paused.interrupts[0].deadline_ms == clock.now + 30_000
    assert runner.state("r").status == "paused"
    clock.now += 30_000
    assert runner.tick() == {"r": Done({"decision": ["woke", None]}, 1)}
    runner.run("early")
    assert runner.resume("early", Resume("now")) == Done({"decision": ["woke", "now"]}, 1)


def test_a_deadline_that_passed_while_no_process_ran_fires_on_the_next_tick(
    tmp_path: Path,
) -> None:
    clock = Clock()
    Runner(graph_of(approval), FileCheckpointer(tmp_path), clock=clock).run("r")
    del clock  # the process is gone; a week later another one ticks
    later = Clock(1_700_000_000_000 + 7 * DAY)
    moved = Runner(graph_of(approval), FileCheckpointer(tmp_path), clock=later).tick()
    assert moved == {"r": Done({"decision": "auto-rejected"}, 1)}


def test_answering_a_timed_out_interrupt_before_a_tick_is_allowed(store: Checkpointer) -> None:
    clock = Clock()
    runner = Runner(graph_of(strict), store, clock=clock)
    runner.run("r")
    clock.now += 10 * 60_000
    assert runner.resume("r", Resume("yes")) == Done({"decision": "yes"}, 1)
    assert runner.tick() == {}


def test_tick_moves_only_its_own_graphs_runs(store: Checkpointer) -> None:
    clock = Clock()
    mine = Runner(graph_of(approval, "mine"), store, clock=clock)
    theirs = Runner(graph_of(approval, "theirs"), store, clock=clock)
    mine.run("a")
    theirs.run("b")
    clock.now += DAY
    assert list(mine.tick()) == ["a"]
    assert theirs.state("b").status == "paused"


def test_two_tickers_racing_move_each_run_once(tmp_path: Path) -> None:
    clock = Clock()
    calls: list[str] = []

    def notify(run: str) -> str:
        calls.append(run)
        return run

    def escalate(state: Any) -> Any:
        try:
            yield Interrupt("approve?", timeout=1)
        except InterruptTimeout:
            yield Effect(notify, "escalated")
        return {"decision": "escalated"}

    graph = graph_of(escalate)
    for n in range(20):
        Runner(graph, FileCheckpointer(tmp_path), clock=clock).run(f"r{n}")
    clock.now += 1000
    results: list[dict[str, Any]] = []
    barrier = threading.Barrier(2)

    def ticker() -> None:
        runner = Runner(graph, FileCheckpointer(tmp_path), clock=clock)
        barrier.wait(10)
        results.append(runner.tick())

    threads = [threading.Thread(target=ticker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    moved = [run for result in results for run in result]
    assert sorted(moved) == sorted(f"r{n}" for n in range(20))  # each by exactly one
    assert len(calls) == 20


def test_retries_with_backoff_need_no_new_api(store: Checkpointer) -> None:
    clock = Clock()
    attempts: list[int] = []

    def flaky() -> str:
        attempts.append(len(attempts))
        if len(attempts) < 3:
            raise ConnectionError("try later")
        return "sent"

    def send(state: Any) -> Any:
        for attempt in range(5):
            try:
                result = yield Effect(flaky)
                return {"decision": result}
            except EffectError:
                yield Sleep(2**attempt)
        return {"decision": "gave up"}

    runner = Runner(graph_of(send), store, clock=clock)
    assert isinstance(runner.run("r"), Paused)
    for _ in range(2):
        clock.now += 60_000
        outcome = runner.tick()["r"]
    assert outcome == Done({"decision": "sent"}, 1)
    assert attempts == [0, 1, 2]


@pytest.mark.parametrize("bad", ["1", -1, float("nan"), float("inf"), True])
def test_a_timeout_is_seconds_as_a_number_or_timedelta(bad: Any) -> None:
    with pytest.raises((TypeError, ValueError), match=r"seconds"):
        Interrupt("q", timeout=bad)
    with pytest.raises((TypeError, ValueError), match=r"seconds"):
        Sleep(bad)
    with pytest.raises(TypeError, match=r"^Sleep\(seconds\) takes seconds"):
        Sleep(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "huge", [1e300, 10**30, 2**63 // 1000, datetime.timedelta.max, MAX_TIMEOUT_S + 1]
)
def test_a_timeout_over_100_years_is_refused(huge: Any) -> None:
    # its deadline (epoch ms) must fit the stores' 64-bit integers
    with pytest.raises(ValueError, match=r"takes at most 100 years"):
        Interrupt("q", timeout=huge)
    with pytest.raises(ValueError, match=r"takes at most 100 years"):
        Sleep(huge)
    assert seconds_of(MAX_TIMEOUT_S, "Interrupt(timeout=...)") == MAX_TIMEOUT_S


def test_a_step_asking_with_a_huge_timeout_fails_its_run_on_a_durable_store(
    tmp_path: Path,
) -> None:
    def asks(state: Any) -> Any:
        return {"decision": (yield Interrupt("q", timeout=1e300))}

    store = SqliteCheckpointer(tmp_path / "runs.db")
    runner = Runner(graph_of(asks), store)
    with pytest.raises(StepError, match=r"at most 100 years"):
        runner.run("r")
    info = runner.state("r")
    assert info.status == "failed"  # not left queued, which only delete could end
    assert info.failure is not None
    assert info.failure.error_type == "ValueError"


@given(
    timeouts=st.lists(st.none() | st.integers(0, 100), min_size=1, max_size=4),
    waits=st.lists(st.integers(0, 150), min_size=1, max_size=6),
    cold=st.booleans(),
)
def test_hot_and_cold_ticks_give_the_same_outcome(
    timeouts: list[int | None], waits: list[int], cold: bool
) -> None:
    def asks(state: Any) -> Any:
        got = []
        for n, seconds in enumerate(timeouts):
            try:
                got.append((yield Interrupt(n, timeout=seconds)))
            except InterruptTimeout:
                got.append("timeout")
        return {"decision": got}

    def play(always_cold: bool) -> Any:
        clock = Clock()
        store = MemoryCheckpointer()
        runner = Runner(graph_of(asks), store, clock=clock)
        outcome: Any = runner.run("r")
        for wait in waits:
            if isinstance(outcome, Done):
                break
            clock.now += wait * 1000
            if always_cold:
                runner = Runner(graph_of(asks), store, clock=clock)
            outcome = runner.tick().get("r", outcome)
        return runner.state("r")

    assert play(False) == play(cold)


def test_a_step_failure_after_a_timeout_is_left_failed_not_raised() -> None:
    clock = Clock()

    def boom(state: Any) -> Any:
        try:
            yield Interrupt("q", timeout=1)
        except InterruptTimeout:
            raise RuntimeError("escalation service down") from None
        return {}

    runner = Runner(graph_of(boom), clock=clock)
    runner.run("r")
    clock.now += 1000
    assert runner.tick() == {}
    assert runner.state("r").failure is not None
    with pytest.raises(StepError, match=r"escalation service down"):
        runner.run("r")


def test_a_late_answer_to_an_interrupt_that_timed_out_says_so(store: Checkpointer) -> None:
    def escalate(state: Any) -> Any:
        try:
            answer = yield Interrupt("manager?", timeout=60)
        except InterruptTimeout:
            answer = yield Interrupt("director?")
        return {"decision": answer}

    clock = Clock()
    runner = Runner(graph_of(escalate), store, clock=clock)
    manager = runner.run("r").interrupts[0].id  # type: ignore[union-attr]
    clock.now += 60_000
    runner.tick()
    before = runner.history("r")
    with pytest.raises(ResumeError, match=rf"interrupt id '{manager}' timed out"):
        runner.resume("r", Resume(answers={manager: "yes"}))
    assert runner.history("r") == before


def _asks_with_a_timeout(channel: str) -> Any:
    def step(state: Any) -> Any:
        answer = yield Interrupt(channel, timeout=5)
        return {channel: answer}

    return step


@pytest.mark.parametrize("cold", [False, True])
def test_every_timed_out_interrupt_a_failed_run_lists_may_be_answered(cold: bool) -> None:
    # a tick times out both steps' interrupts; the run fails on a's, and b never got
    # its timeout: its interrupt is listed, and an answer to it replaces the timeout
    from pausegraph.testing import FakeClock

    graph = (
        Graph("g", {"a": LastWriteWins(), "b": LastWriteWins()})
        .step("a", _asks_with_a_timeout("a"))
        .step("b", _asks_with_a_timeout("b"))
    )
    clock, store = FakeClock(), MemoryCheckpointer()
    runner = Runner(graph, store, clock=clock)
    a, b = (i.id for i in runner.run("r").interrupts)
    clock.advance(5)
    assert runner.tick() == {}
    info = runner.state("r")
    assert (info.status, [i.id for i in info.interrupts]) == ("failed", [a, b])
    runner = Runner(graph, store, clock=clock) if cold else runner
    with pytest.raises(StepError, match=r"step 'a' raised InterruptTimeout"):
        runner.resume("r", Resume(answers={b: "B"}))  # taken: a's timeout still fails it
    assert [i.id for i in runner.state("r").interrupts] == [a]
    done = runner.resume("r", Resume("A"))  # the one listed: a's
    assert isinstance(done, Done)
    assert done.state == {"a": "A", "b": "B"}


class _Clock:
    def __init__(self) -> None:
        self.t = 1_000_000

    def __call__(self) -> int:
        return self.t


def _caught_then_asks(state: Any) -> Any:
    try:
        a = yield Interrupt("A", timeout=1)
    except InterruptTimeout:
        a = "TIMEOUT"
    b = yield Interrupt("B")
    if b == "fail":
        raise RuntimeError("boom")
    return {"x": [a, b]}


def _caught_then_times_out(state: Any) -> Any:
    try:
        a = yield Interrupt("A", timeout=1)
    except InterruptTimeout:
        a = "TIMEOUT"
    b = yield Interrupt("B", timeout=1)  # its timeout is not caught: it fails the run
    return {"x": [a, b]}


def _timed_branch() -> Any:
    try:
        return (yield Interrupt("T", timeout=1))
    except InterruptTimeout:
        return "TIMEOUT"


def _waiting_branch() -> Any:
    return (yield Interrupt("W"))


def _forks(state: Any) -> Any:
    return {"x": (yield All(_waiting_branch(), _timed_branch()))}


def _fails_on_b(state: Any) -> Any:
    if (yield Interrupt("B")) == "fail":
        raise RuntimeError("boom")
    return {"y": "ok"}


@pytest.mark.parametrize("how", ["another error", "another timeout"])
def test_a_timeout_an_earlier_claim_delivered_stands_on_a_failed_run(how: str) -> None:
    """SPEC, Interrupts: an already answered id is a ResumeError, nothing saved; Failures:
    only what the failing claim answered is answered again. A timeout a step took in an
    earlier claim, and went on from (it asked B after it), is its answer: a later failure
    of the layer, whatever its error, does not reopen it, and what followed it stays."""
    clock = _Clock()
    step = _caught_then_asks if how == "another error" else _caught_then_times_out
    runner = Runner(Graph("g", {"x": LastWriteWins()}).step("s", step), clock=clock)
    timed = runner.run("r").interrupts[0].id
    clock.t += 1000
    b = runner.tick()["r"].interrupts[0].id
    if how == "another error":
        with pytest.raises(StepError, match="boom"):
            runner.resume("r", Resume(answers={b: "fail"}))
    else:
        clock.t += 1000
        assert runner.tick() == {}  # B's timeout failed the run
    assert [i.id for i in runner.state("r").interrupts] == ([] if how == "another error" else [b])
    before = runner.history("r")
    with pytest.raises(ResumeError, match="timed out"):
        runner.resume("r", Resume(answers={timed: "late"}))
    assert runner.history("r") == before
    done = runner.resume("r", Resume(answers={b: "ok"}))
    assert isinstance(done, Done)
    assert done.state["x"] == ["TIMEOUT", "ok"]


def test_a_timeout_a_branch_took_with_nothing_after_it_may_be_replaced_on_a_failed_run() -> None:
    """The documented reading (guide, failures): a timed-out interrupt whose branch recorded
    nothing after it (it caught the timeout and returned, the All still waiting) is listed
    on a failed run, and an answer replaces the timeout."""
    clock = _Clock()
    graph = Graph("g", {"x": LastWriteWins(), "y": LastWriteWins()})
    runner = Runner(graph.step("a", _forks).step("b", _fails_on_b), clock=clock)
    t = {i.payload: i.id for i in runner.run("r").interrupts}["T"]
    clock.t += 1000
    now = {i.payload: i.id for i in runner.tick()["r"].interrupts}
    with pytest.raises(StepError, match="boom"):
        runner.resume("r", Resume(answers={now["B"]: "fail"}))
    assert t in [i.id for i in runner.state("r").interrupts]
    done = runner.resume("r", Resume(answers={now["B"]: "ok", now["W"]: "w", t: "late"}))
    assert isinstance(done, Done)
    assert done.state["x"] == ["w", "late"]


def test_resume_value_on_a_failed_run_answers_the_one_interrupt_it_lists() -> None:
    def fails_after_its_answer(state: Any) -> Any:
        yield Interrupt("a?")
        raise RuntimeError("boom")

    def waits(state: Any) -> Any:
        answer = yield Interrupt("b?")
        return {"y": answer}

    graph = Graph("g", {"y": LastWriteWins()}).step("a", fails_after_its_answer).step("b", waits)
    runner = Runner(graph)
    a, b = (i.id for i in runner.run("r").interrupts)
    with pytest.raises(StepError, match="boom"):
        runner.resume("r", Resume(answers={a: 1}))
    assert [i.id for i in runner.state("r").interrupts] == [b]
    with pytest.raises(StepError, match="boom"):  # b's answer taken; a fails again
        runner.resume("r", Resume(7))
    assert runner.state("r").interrupts == ()


@pytest.mark.parametrize("kind", ["file", "sqlite"])
def test_a_damaged_run_due_is_left_and_the_other_due_runs_move(
    kind: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # SPEC Deadlines: tick and Worker.poll never raise a run's own error; one run whose
    # latest checkpoint cannot be read must not keep the other due runs paused
    import sqlite3

    def napper(state: Any) -> Any:
        yield Sleep(1)
        return {"a": "slept"}

    graph = Graph("naps", {"a": LastWriteWins()}).step("s", napper)
    now = [1_000_000]

    def store() -> Checkpointer:
        if kind == "file":
            return FileCheckpointer(tmp_path / "s")
        return SqliteCheckpointer(tmp_path / "db")

    for n in range(3):
        Runner(graph, store(), clock=lambda: now[0]).run(f"r{n}")
    if kind == "sqlite":
        with contextlib.closing(sqlite3.connect(tmp_path / "db")) as db, db:
            db.execute(
                "UPDATE frames SET frame = x'c1c1' "
                "WHERE id = (SELECT key FROM runs WHERE run = ?) * 4294967296 + 2",
                (b"r0",),
            )
    else:
        (log,) = [p for p in (tmp_path / "s" / "runs").glob("*.log") if b"r0" in p.read_bytes()]
        data = bytearray(log.read_bytes())
        data[-3] ^= 0xFF  # the last record's frame: its checksum fails
        log.write_bytes(bytes(data))
    now[0] += 5_000
    with caplog.at_level("WARNING", logger="pausegraph"):
        moved = Runner(graph, store(), clock=lambda: now[0]).tick()
    assert sorted(moved) == ["r1", "r2"]
    if kind == "sqlite":  # the file store's listing leaves a damaged log out (damaged())
        assert "run 'r0' of workflow 'naps' was left as it was after its deadline" in caplog.text
    Runner(graph, store(), clock=lambda: now[0]).run("r3")
    now[0] += 5_000
    assert Worker(store(), [graph], clock=lambda: now[0]).poll() == 1  # r3; r0 left


def test_pausegraph_show_marks_a_timed_out_interrupt(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A timeout a step took stands as its answer: the journal ``pausegraph show`` prints
    says "(timed out)", not "(pending)", for it."""
    from pausegraph.cli import main

    clock = _Clock()
    store = FileCheckpointer(tmp_path / "store")
    runner = Runner(
        Graph("g", {"x": LastWriteWins()}).step("s", _caught_then_asks), store, clock=clock
    )
    runner.run("r")
    clock.t += 1000
    runner.tick()
    capsys.readouterr()
    assert main(["show", "r", "--store", str(tmp_path / "store")]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if "interrupt" in line]
    assert any('"A"' in line and "(timed out)" in line for line in rows), rows
    assert any('"B"' in line and "(pending)" in line for line in rows), rows


def test_a_due_run_this_graph_cannot_tick_is_said_once_not_skipped_unseen(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # a worker whose graph of the same name has another structure skipped the due run
    # at every tick without a word (an attack)
    now = [1_700_000_000_000]

    def late(state: Any) -> Any:
        try:
            yield Interrupt("q", timeout=60)
        except InterruptTimeout:
            return {"n": 1}
        return {}

    old = Graph("g", {"n": LastWriteWins()}).step("t", late)
    new = Graph("g", {"n": LastWriteWins()}).step("t", late).step("u", lambda s: {})
    new.edge("t", "u")
    store = MemoryCheckpointer()
    Runner(old, store, clock=lambda: now[0]).run("r")
    now[0] += 60_000
    ticker = Runner(new, store, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="pausegraph"):
        assert ticker.tick() == {}
        assert ticker.tick() == {}
    said = [r.getMessage() for r in caplog.records if "after its deadline" in r.getMessage()]
    assert len(said) == 1
    assert "'r'" in said[0]
    assert "different graph" in said[0]
    assert Runner(old, store, clock=lambda: now[0]).tick()["r"].state == {"n": 1}
