"""A Runner keeps the pauses it saved (and their live generators); it must never
act on one that another Runner or process has moved on from."""

from __future__ import annotations

import time

import pytest

from pausegraph import (
    After,
    Before,
    Continue,
    Done,
    DynamicInterrupt,
    FileCheckpointer,
    Graph,
    GraphError,
    Interrupt,
    LastWriteWins,
    MemoryCheckpointer,
    Paused,
    Resume,
    ResumeError,
    Runner,
)

calls: list[str] = []


def ask(state):
    calls.append("ask")
    answer = yield Interrupt({"q": state["n"]})
    return {"answer": answer}


def bump(state):
    return {"n": state["n"] + 1}


def graph() -> Graph:
    g = Graph("hot", {"n": LastWriteWins(), "answer": LastWriteWins()})
    return g.step("bump", bump).step("ask", ask).edge("bump", "ask")


def test_a_runner_resumes_its_own_pause_without_calling_the_step_again():
    calls.clear()
    runner = Runner(graph())
    runner.run("r", {"n": 0})
    assert runner.resume("r", Resume("yes")) == Done({"n": 1, "answer": "yes"}, 2)
    assert calls == ["ask"]


def test_a_pause_another_runner_moved_on_from_is_decided_again_on_the_store():
    store = MemoryCheckpointer()
    first = Runner(graph(), store, interrupt_before={"ask"})
    second = Runner(graph(), store, interrupt_before={"ask"})
    assert first.run("r", {"n": 0}) == Paused(2, Before("ask"))
    # the other runner goes past the breakpoint and stops at the interrupt
    paused = second.resume("r", Continue())
    assert isinstance(paused, Paused)
    assert paused.reason == DynamicInterrupt("ask")
    # `first` still holds the Before pause, where Resume would be an error; it
    # must answer the interrupt the store says is pending instead
    assert first.resume("r", Resume("late")) == Done({"n": 1, "answer": "late"}, 2)
    assert [m.label for m in first.history("r")] == [
        "input",
        "layer:1",
        "before:ask",
        "resume",
        "interrupt:ask",
        "resume",
        "layer:2",
    ]


def test_a_held_pause_that_was_answered_elsewhere_is_not_answered_twice():
    calls.clear()
    store = MemoryCheckpointer()
    first = Runner(graph(), store)
    second = Runner(graph(), store)
    paused = first.run("r", {"n": 0})
    assert isinstance(paused, Paused)
    assert second.resume("r", Resume("from second")) == Done({"n": 1, "answer": "from second"}, 2)
    # the held pause is stale: the claim fails, the store says the run is done
    with pytest.raises(ResumeError, match=r"^run 'r' is finished"):
        first.resume("r", Resume("from first"))
    assert first.state("r").values == {"n": 1, "answer": "from second"}


def test_an_after_pause_held_by_a_runner_continues_without_a_reload():
    runner = Runner(graph(), interrupt_after={"bump"})
    assert runner.run("r", {"n": 0}) == Paused(1, After("bump"))
    outcome = runner.resume("r", Continue())
    assert isinstance(outcome, Paused)
    assert outcome.payload == {"q": 1}


def test_a_held_pause_of_a_run_deleted_and_started_again_is_not_used():
    first_store = MemoryCheckpointer()
    runner = Runner(graph(), first_store)
    assert isinstance(runner.run("r", {"n": 0}), Paused)
    # the store is replaced (a test resets it, an operator restores a backup)
    # and the run started again: same seqs and labels, a later timestamp
    runner.checkpointer = fresh = MemoryCheckpointer()
    time.sleep(0.002)
    Runner(graph(), fresh).run("r", {"n": 10})
    assert runner.resume("r", Resume("ok")) == Done({"n": 11, "answer": "ok"}, 2)


@pytest.mark.parametrize("store", ["memory", "file"])
def test_a_pause_held_before_another_runner_deleted_and_restarted_the_run_is_not_used(
    store, tmp_path
):
    """Under a fixed clock the new run's checkpoints have the old one's seq, label and time."""
    checkpointer = MemoryCheckpointer() if store == "memory" else FileCheckpointer(tmp_path)
    fixed = lambda: 1_700_000_000_000  # noqa: E731
    holder = Runner(graph(), checkpointer, clock=fixed)
    other = Runner(graph(), checkpointer, clock=fixed)
    assert isinstance(holder.run("r", {"n": 0}), Paused)
    other.delete("r")
    assert isinstance(other.run("r", {"n": 10}), Paused)
    done = holder.resume("r", Resume("ok"))  # the store's run, replayed: not the held one
    assert done == Done({"n": 11, "answer": "ok"}, 2)
    assert Runner(graph(), checkpointer).state("r").values == done.state


def test_a_runner_needs_a_graph():
    with pytest.raises(GraphError, match=r"^Runner\(graph, \.\.\.\) takes a Graph, got dict"):
        Runner({"not": "a graph"})  # type: ignore[arg-type]


def test_a_runner_on_the_default_store_sees_deletions_by_another_on_it():
    fixed = lambda: 1_700_000_000_000  # noqa: E731
    holder = Runner(graph(), clock=fixed)  # its own MemoryCheckpointer
    other = Runner(graph(), holder.checkpointer, clock=fixed)
    assert isinstance(holder.run("r", {"n": 0}), Paused)
    other.delete("r")
    assert isinstance(other.run("r", {"n": 10}), Paused)
    assert holder.resume("r", Resume("ok")) == Done({"n": 11, "answer": "ok"}, 2)


def test_deletions_never_keep_a_pause_held_before_its_run_was_deleted():
    """Bounded, the record only ever lets a pause go too early, never keeps a wrong one."""
    from pausegraph._held import Deletions

    deletions = Deletions(limit=3)
    before = deletions.now()
    deletions.deleted("w", "r")
    after = deletions.now()
    assert deletions.since("w", "r", before)
    assert not deletions.since("w", "r", after)
    assert not deletions.since("w", "other", before)
    for n in range(5):  # past the limit: the record is emptied, the floor raised
        deletions.deleted("w", f"x{n}")
    assert deletions.since("w", "r", before)
    assert deletions.since("w", "r", after)  # held before the floor: let go, to be safe
    fresh = deletions.now()
    assert not deletions.since("w", "r", fresh)
    deletions.deleted("w", "r")
    assert deletions.since("w", "r", fresh)
