"""Who may change which value: the state is read-only to every step, live or
reloaded; what a store or a Runner hands out is the caller's own."""

from __future__ import annotations

import pytest

from pausegraph import (
    Append,
    Graph,
    Interrupt,
    LastWriteWins,
    MemoryCheckpointer,
    MergeMap,
    Paused,
    Resume,
    Runner,
)
from pausegraph._records import InLayer


def _graph(seen: list[str]) -> Graph:
    def ask(state):
        answer = yield Interrupt("items?")
        answer.append("changed by the step")  # the step's own copy
        return {"items": answer}

    def meddle(state):
        for attempt in (
            lambda: state["items"].append("x"),
            lambda: state["config"].update(x=1),
            lambda: state["config"]["nested"].append("x"),
        ):
            try:
                attempt()
            except TypeError:
                seen.append("refused")
        return {"done": True}

    g = Graph("values", {"items": Append(), "config": MergeMap(), "done": LastWriteWins()})
    return g.step("ask", ask).step("meddle", meddle).edge("ask", "meddle")


@pytest.mark.parametrize("cold", [False, True], ids=["hot", "cold"])
def test_the_state_is_read_only_to_the_bottom_live_and_reloaded(cold: bool) -> None:
    seen: list[str] = []
    store = MemoryCheckpointer()
    runner = Runner(_graph(seen), store)
    assert isinstance(runner.run("r", {"config": {"nested": [1]}}), Paused)
    if cold:
        runner = Runner(_graph(seen), store)
    done = runner.resume("r", Resume(["a"]))
    assert seen == ["refused"] * 3
    assert done.state == {
        "items": ["a", "changed by the step"],
        "config": {"nested": [1]},
        "done": True,
    }


def test_an_answer_the_step_changes_is_replayed_as_it_was_given() -> None:
    store = MemoryCheckpointer()
    runner = Runner(_graph([]), store)
    runner.run("r", {"config": {"nested": [1]}})
    runner.resume("r", Resume(["a"]))
    claim = store.load("values", "r", 3)
    assert claim is not None
    assert claim.label == "resume"
    assert isinstance(claim.stage, InLayer)
    assert list(claim.stage.progress.answers.values()) == [["a"]]
    fork = runner.fork("r", 3)  # replays `ask` from its journal in a new run
    assert Runner(_graph([]), store).run(fork).state["items"] == ["a", "changed by the step"]


def test_what_a_store_and_a_runner_hand_out_is_the_callers_own() -> None:
    store = MemoryCheckpointer()
    runner = Runner(_graph([]), store)
    runner.run("r", {"config": {"nested": [1]}})
    loaded = store.latest("values", "r")
    assert loaded is not None
    loaded.values["config"]["nested"].append(2)  # plain values: the caller's copy
    info = runner.state("r")
    info.values["config"]["nested"].append(3)
    assert store.latest("values", "r").values["config"] == {"nested": [1]}
    assert runner.state("r").values["config"] == {"nested": [1]}
