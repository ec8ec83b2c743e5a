"""Breakpoints: interrupt_before and interrupt_after."""

from __future__ import annotations

import itertools

import pytest

from pausegraph import (
    After,
    Append,
    Before,
    Continue,
    Done,
    Graph,
    GraphError,
    LastWriteWins,
    MemoryCheckpointer,
    Paused,
    Runner,
)


def writer(name):
    def step(state):
        return {"log": name}

    return step


def chain(*names):
    graph = Graph("g", {"log": Append()})
    for name in names:
        graph.step(name, writer(name))
    for src, dst in itertools.pairwise(names):
        graph.edge(src, dst)
    return graph


def test_seed_interrupt_before_b_pauses_before_b_and_continue_finishes():
    graph = Graph("seed", {"x": LastWriteWins()})
    graph.step("a", lambda s: {"x": "a"}).step("b", lambda s: {"x": "b"}).edge("a", "b")
    runner = Runner(graph, interrupt_before={"b"})
    paused = runner.run("r")
    assert isinstance(paused, Paused)
    assert paused.reason == Before("b")
    done = runner.resume("r", Continue())
    assert isinstance(done, Done)
    assert done.state == {"x": "b"}


def test_before_pauses_with_the_super_step_about_to_run_and_a_before_checkpoint():
    runner = Runner(chain("a", "b", "c"), interrupt_before={"b"})
    paused = runner.run("r")
    assert paused == Paused(2, Before("b"))
    assert paused.interrupts == ()
    assert runner.state("r").values == {"log": ["a"]}
    assert runner.state("r").status == "paused"
    assert runner.state("r").interrupts == ()
    last = runner.history("r")[-1]
    # a pause checkpoint carries the super-step of its Paused, not of its values
    assert (last.label, last.super_step) == ("before:b", 2)


def test_before_on_the_first_layer_pauses_before_any_step_runs():
    ran = []
    graph = Graph("g", {}).step("a", lambda s: ran.append("a"))
    runner = Runner(graph, interrupt_before={"a"})
    assert runner.run("r") == Paused(1, Before("a"))
    assert ran == []
    assert isinstance(runner.resume("r", Continue()), Done)
    assert ran == ["a"]


def test_after_pauses_once_the_layer_is_applied_and_checkpointed():
    runner = Runner(chain("a", "b", "c"), interrupt_after={"b"})
    paused = runner.run("r")
    assert paused == Paused(2, After("b"))
    assert runner.state("r").values == {"log": ["a", "b"]}
    labels = [(m.label, m.super_step) for m in runner.history("r")]
    assert labels == [("input", 0), ("layer:1", 1), ("layer:2", 2), ("after:b", 2)]


def test_continue_after_goes_on_with_the_next_layer():
    runner = Runner(chain("a", "b", "c"), interrupt_after={"b"})
    runner.run("r")
    done = runner.resume("r", Continue())
    assert done == Done({"log": ["a", "b", "c"]}, 3)
    labels = [m.label for m in runner.history("r")]
    assert labels[-3:] == ["after:b", "resume", "layer:3"]


def test_resume_runs_the_layer_past_the_breakpoint_that_paused():
    runner = Runner(chain("a", "b"), interrupt_before={"b"})
    runner.run("r")
    assert runner.resume("r", Continue()) == Done({"log": ["a", "b"]}, 2)
    assert [m.label for m in runner.history("r")] == [
        "input",
        "layer:1",
        "before:b",
        "resume",
        "layer:2",
    ]


def test_resume_skips_exactly_the_breakpoint_that_paused_and_later_ones_still_fire():
    runner = Runner(chain("a", "b", "c"), interrupt_before={"b", "c"})
    assert runner.run("r") == Paused(2, Before("b"))
    assert runner.resume("r", Continue()) == Paused(3, Before("c"))
    assert runner.state("r").values == {"log": ["a", "b"]}
    assert runner.resume("r", Continue()) == Done({"log": ["a", "b", "c"]}, 3)


def test_before_and_after_on_the_same_layer_both_fire():
    runner = Runner(chain("a", "b", "c"), interrupt_before={"b"}, interrupt_after={"b"})
    assert runner.run("r") == Paused(2, Before("b"))
    assert runner.resume("r", Continue()) == Paused(2, After("b"))
    assert runner.resume("r", Continue()) == Done({"log": ["a", "b", "c"]}, 3)


def test_after_of_one_layer_then_before_of_the_next():
    runner = Runner(chain("a", "b"), interrupt_before={"b"}, interrupt_after={"a"})
    assert runner.run("r") == Paused(1, After("a"))
    assert runner.resume("r", Continue()) == Paused(2, Before("b"))
    assert runner.resume("r", Continue()) == Done({"log": ["a", "b"]}, 2)


def test_several_breakpoints_in_one_layer_make_one_pause():
    graph = Graph("g", {"log": Append()})
    for name in ("root", "x", "y", "z"):
        graph.step(name, writer(name))
    for name in ("x", "y", "z"):
        graph.edge("root", name)
    runner = Runner(graph, interrupt_before={"z", "x"}, interrupt_after={"y", "z"})
    assert runner.run("r") == Paused(2, Before("x"))
    assert runner.resume("r", Continue()) == Paused(2, After("y"))
    assert runner.resume("r", Continue()) == Done({"log": ["root", "x", "y", "z"]}, 2)
    labels = [m.label for m in runner.history("r")]
    assert labels.count("before:x") == 1
    assert labels.count("after:y") == 1
    assert not any(label in labels for label in ("before:z", "after:z"))


def test_breakpoint_may_be_given_as_a_single_step_id_string():
    runner = Runner(chain("a", "bb"), interrupt_before="bb")
    assert runner.run("r") == Paused(2, Before("bb"))


@pytest.mark.parametrize("where", ["interrupt_before", "interrupt_after"])
def test_unknown_step_in_a_breakpoint_is_a_graph_error_when_the_runner_is_made(where):
    with pytest.raises(GraphError, match=rf"^{where} names unknown step 'ghost'"):
        Runner(chain("a"), **{where: {"ghost"}})


def test_breakpoint_pause_survives_a_new_runner():
    checkpointer = MemoryCheckpointer()
    graph = chain("a", "b")
    Runner(graph, checkpointer, interrupt_before={"b"}).run("r")
    fresh = Runner(graph, checkpointer, interrupt_before={"b"})
    assert fresh.state("r").status == "paused"
    assert fresh.resume("r", Continue()) == Done({"log": ["a", "b"]}, 2)
