"""``inbox``, ``Waiting``, and ending runs from the store alone (cancel, delete, prune)."""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from pathlib import Path

import pytest

from pausegraph import (
    Checkpointer,
    ConflictError,
    Continue,
    FileCheckpointer,
    Graph,
    Interrupt,
    LastWriteWins,
    MemoryCheckpointer,
    PendingInterrupt,
    Resume,
    ResumeError,
    Runner,
    StepError,
    Update,
    Waiting,
    inbox,
)
from pausegraph._admin import cancel_run, delete_run, prune
from pausegraph._inbox import listed_status, run_summaries
from pausegraph._records import Checkpoint, CheckpointMeta
from pausegraph._values import pack
from pausegraph.checkpointers import (
    FrameInfo,
    Holder,
    MemoryStore,
    RunSummary,
    StoreCheckpointer,
)


def _ask(state):  # type: ignore[no-untyped-def]
    answer = yield Interrupt({"question": state["q"]})
    return {"a": answer}


def _ask_two(state):  # type: ignore[no-untyped-def]
    first = yield Interrupt("first")
    second = yield Interrupt("second")
    return {"a": [first, second]}


def _boom(state):  # type: ignore[no-untyped-def]
    yield Interrupt("before failing")
    raise ValueError("boom")


def _graph(name: str, fn: object) -> Graph:
    return Graph(name, {"q": LastWriteWins(), "a": LastWriteWins()}).step("ask", fn)


class _Clock:
    def __init__(self) -> None:
        self.now = 1_000

    def __call__(self) -> int:
        self.now += 1_000
        return self.now


class _Plain:
    """A checkpointer that keeps no summaries: inbox reads it run by run."""

    def __init__(self, inner: Checkpointer) -> None:
        self.inner = inner

    def save(self, checkpoint: Checkpoint) -> None:
        self.inner.save(checkpoint)

    def load(self, workflow_id: str, run_id: str, seq: int) -> Checkpoint | None:
        return self.inner.load(workflow_id, run_id, seq)

    def latest(self, workflow_id: str, run_id: str) -> Checkpoint | None:
        return self.inner.latest(workflow_id, run_id)

    def list(self, workflow_id: str, run_id: str) -> builtins.list[CheckpointMeta]:
        return self.inner.list(workflow_id, run_id)

    def last(self, workflow_id: str, run_id: str) -> CheckpointMeta | None:
        return self.inner.last(workflow_id, run_id)

    def runs(self) -> builtins.list[tuple[str, str]]:
        return self.inner.runs()

    def delete(self, workflow_id: str, run_id: str) -> None:
        self.inner.delete(workflow_id, run_id)

    def lock(self, workflow_id: str, run_id: str):  # type: ignore[no-untyped-def]
        return self.inner.lock(workflow_id, run_id)

    def holder(self, workflow_id: str, run_id: str) -> Holder | None:
        return self.inner.holder(workflow_id, run_id)

    def sync(self) -> None:
        self.inner.sync()


@pytest.fixture(params=["memory", "file", "plain"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Checkpointer]:
    if request.param == "memory":
        yield MemoryCheckpointer()
    elif request.param == "file":
        yield FileCheckpointer(tmp_path / "store")
    else:
        yield _Plain(MemoryCheckpointer())


def test_inbox_lists_every_pending_interrupt_oldest_first(store: Checkpointer) -> None:
    clock = _Clock()
    one = Runner(_graph("one", _ask), store, clock=clock)
    two = Runner(_graph("two", _ask_two), store, clock=clock)
    two.run("b", {"q": "x"})
    one.run("a", {"q": "early"})
    one.run("c", {"q": "late"})
    # since_ms is when the step reached the interrupt: an Update saved at the pause later
    # does not move it (it was the time of the run's latest checkpoint)
    one.resume("a", Update({"q": "moved"}))
    waiting = inbox(store)
    assert [(w.workflow_id, w.run_id, w.interrupt.payload) for w in waiting] == [
        ("two", "b", "first"),
        ("one", "a", {"question": "early"}),
        ("one", "c", {"question": "late"}),
    ]
    first = waiting[0]
    assert first == Waiting("two", "b", PendingInterrupt(first.interrupt.id, "ask", "first"), 3_000)
    assert [w.since_ms for w in waiting] == sorted(w.since_ms for w in waiting)


def test_inbox_orders_ties_by_run_id_then_interrupt_order() -> None:
    store = MemoryCheckpointer()
    runner = Runner(_graph("wf", _ask), store, clock=lambda: 5)
    for run_id in ("r3", "r1", "r2"):
        runner.run(run_id, {"q": run_id})
    assert [w.run_id for w in inbox(store)] == ["r1", "r2", "r3"]


def test_inbox_filters_by_workflow_and_skips_breakpoints_failures_and_done_runs() -> None:
    store = MemoryCheckpointer()
    Runner(_graph("one", _ask), store).run("a", {"q": 1})
    Runner(_graph("two", _ask), store).run("b", {"q": 2})
    Runner(_graph("bp", _ask), store, interrupt_before=["ask"]).run("at-breakpoint")
    failing = Runner(_graph("boom", _boom), store)
    failing.run("failed")
    with pytest.raises(StepError):
        failing.resume("failed", Resume(1))
    done = Runner(_graph("one", _ask), store)
    done.run("done", {"q": 3})
    done.resume("done", Resume("yes"))
    assert [w.run_id for w in inbox(store)] == ["a", "b"]
    assert [w.run_id for w in inbox(store, workflow="two")] == ["b"]
    assert inbox(store, workflow="nope") == []


class _Watched(MemoryStore):
    """A store that fails any frame read once ``watching`` is set."""

    watching = False

    def read(self, workflow_id: str, run_id: str, first: int, last: int) -> list[bytes]:
        assert not self.watching, "a frame was read"
        return super().read(workflow_id, run_id, first, last)

    def frames(self, workflow_id: str, run_id: str) -> list:  # type: ignore[type-arg]
        assert not self.watching, "a run's frames were listed"
        return super().frames(workflow_id, run_id)


def test_inbox_reads_summaries_only_never_a_frame() -> None:
    store = _Watched()
    checkpointer = StoreCheckpointer(store)
    runner = Runner(_graph("wf", _ask), checkpointer)
    runner.run("r", {"q": 1})
    runner.run("s", {"q": 2})
    runner.resume("s", Update({"q": 3}))
    store.watching = True
    assert [w.interrupt.payload for w in inbox(checkpointer)] == [
        {"question": 1},
        {"question": 2},
    ]


def test_run_summaries_match_with_and_without_summaries() -> None:
    inner = MemoryCheckpointer()
    runner = Runner(_graph("wf", _ask), inner)
    runner.run("a", {"q": 1})
    runner.run("b", {"q": 2})
    runner.resume("b", Resume(1))
    fast = sorted(run_summaries(inner), key=lambda s: s.run_id)
    slow = sorted(run_summaries(_Plain(inner)), key=lambda s: s.run_id)
    assert fast == slow
    assert [s.status for s in run_summaries(inner, status="done")] == ["done"]


def test_listed_status_says_running_while_a_live_process_holds_a_queued_run() -> None:
    store = MemoryCheckpointer()
    runner = Runner(_graph("wf", _ask), store)
    runner.start("r", {"q": 1})
    [summary] = run_summaries(store)
    assert listed_status(summary, store) == "queued"
    with store.lock("wf", "r"):
        assert listed_status(summary, store) == "running"


# --- cancel, delete, prune without the graph ------------------------------------


def test_cancel_run_without_the_graph_is_what_runner_cancel_saves(store: Checkpointer) -> None:
    runner = Runner(_graph("wf", _ask), store)
    runner.run("r", {"q": 1})
    info = cancel_run(store, "wf", "r", "duplicate")
    assert info.status == "cancelled"
    assert runner.state("r").status == "cancelled"
    assert runner.state("r").values == {"q": 1, "a": None}
    assert [m.label for m in runner.history("r")][-1] == "cancelled"
    with pytest.raises(ResumeError, match=r"^run 'r' is cancelled: there is nothing to cancel$"):
        cancel_run(store, "wf", "r")
    with pytest.raises(ResumeError, match="cancelled"):
        runner.resume("r", Continue())


def test_cancel_run_refuses_a_queued_claim_a_running_run_and_unknown_runs() -> None:
    store = MemoryCheckpointer()
    runner = Runner(_graph("wf", _ask), store)
    runner.run("q", {"q": 1})
    runner.submit("q", Resume(1))  # a claim waits for a driver
    with pytest.raises(ConflictError, match="queued"):
        cancel_run(store, "wf", "q")
    runner.start("new", {"q": 1})
    with store.lock("wf", "new"), pytest.raises(ConflictError):
        cancel_run(store, "wf", "new")
    with pytest.raises(ResumeError, match=r"^no run 'x' of workflow 'wf'$"):
        cancel_run(store, "wf", "x")


def test_a_run_only_started_is_cancelled() -> None:
    # SPEC Failures: "cancel(run_id, reason) ends a paused, failed or queued run for good";
    # the status table's ConflictError is for a queued claim ("a claim waits for a driver")
    store = MemoryCheckpointer()
    runner = Runner(_graph("wf", _ask), store)
    runner.start("s", {"q": 1})
    info = runner.cancel("s", "not needed")
    assert (info.status, info.super_step) == ("cancelled", 0)
    assert [m.label for m in runner.history("s")] == ["input", "cancelled"]
    with pytest.raises(ResumeError, match="cancelled"):
        runner.run("s")


def test_delete_run_removes_the_run_unless_a_live_process_holds_it(store: Checkpointer) -> None:
    runner = Runner(_graph("wf", _ask), store)
    runner.run("r", {"q": 1})
    with store.lock("wf", "r"), pytest.raises(ConflictError):
        delete_run(store, "wf", "r")
    delete_run(store, "wf", "r")
    assert store.runs() == []
    with pytest.raises(ResumeError, match=r"^no run 'r' of workflow 'wf'$"):
        delete_run(store, "wf", "r")


def test_prune_deletes_only_done_and_cancelled_runs_older_than_the_cutoff(
    store: Checkpointer,
) -> None:
    clock = _Clock()
    runner = Runner(_graph("wf", _ask), store, clock=clock)
    for run_id in ("old-done", "old-cancelled", "old-paused", "new-done"):
        runner.run(run_id, {"q": run_id})
    runner.resume("old-done", Resume(1))
    runner.cancel("old-cancelled")
    cutoff = clock.now + 1
    runner.resume("new-done", Resume(2))
    deleted = prune(store, before_ms=cutoff)
    assert sorted(deleted) == [("wf", "old-cancelled"), ("wf", "old-done")]
    assert sorted(r for _, r in store.runs()) == ["new-done", "old-paused"]


def test_prune_skips_a_run_a_live_process_holds() -> None:
    store = MemoryCheckpointer()
    runner = Runner(_graph("wf", _ask), store)
    runner.run("r", {"q": 1})
    runner.resume("r", Resume(1))
    with store.lock("wf", "r"):
        assert prune(store, before_ms=2**62) == []
    assert prune(store, before_ms=2**62) == [("wf", "r")]


def test_an_interrupt_waits_since_its_step_reached_it_whatever_is_answered_beside(
    store: Checkpointer,
) -> None:
    # SPEC inbox: "oldest first": answering one of a run's two interrupts must not make
    # the other one look new
    now = [1_000_000]

    def ask(name: str):  # type: ignore[no-untyped-def]
        def step(state):  # type: ignore[no-untyped-def]
            return {name: (yield Interrupt(name))}

        return step

    graph = Graph("g", {"a": LastWriteWins(), "b": LastWriteWins()})
    graph.step("a", ask("a")).step("b", ask("b"))
    runner = Runner(graph, store, clock=lambda: now[0])
    first, second = runner.run("zz").interrupts  # t = 1,000,000
    now[0] += 3_600_000
    runner.run("aa")  # an hour later
    now[0] += 3_600_000
    runner.resume("zz", Resume(answers={first.id: 1}))  # zz pauses again on b
    listed = [(w.run_id, w.interrupt.id, w.since_ms) for w in inbox(store)]
    assert listed[0] == ("zz", second.id, 1_000_000)
    assert [r for r, _, _ in listed] == ["zz", "aa", "aa"]


def test_a_summary_written_before_asked_times_were_kept_lists_the_pause_time() -> None:
    # a store written by an earlier pausegraph holds 4 fields an interrupt: no asked_ms
    data = pack([1, "interrupt:s", [["1.0.0", "s", "q?", None]]])
    store = MemoryStore()
    store.append(
        FrameInfo(1, 0, "input", 1, True, 1),
        b"x",
        RunSummary("wf", "r", 1, "paused", 42, None, data),
    )
    (waiting,) = inbox(StoreCheckpointer(store))
    assert (waiting.interrupt.id, waiting.since_ms) == ("1.0.0", 42)
