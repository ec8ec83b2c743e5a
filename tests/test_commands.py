"""Commands: Continue, Resume, Update and Goto, and every error they can raise."""

from __future__ import annotations

import itertools

import pytest

from pausegraph import (
    After,
    Append,
    Before,
    Continue,
    Done,
    DynamicInterrupt,
    Goto,
    Graph,
    GraphError,
    Interrupt,
    LastWriteWins,
    MemoryCheckpointer,
    MergeMap,
    Paused,
    Reducer,
    Resume,
    ResumeError,
    RunInfo,
    Runner,
    Status,
    Update,
)
from pausegraph._inbox import run_summaries
from pausegraph.checkpointers._checkpointer import summary_fields


def writer(name):
    def step(state):
        return {"log": name}

    return step


def asker(name):
    def step(state):
        answer = yield Interrupt(f"{name}?")
        return {"log": [name, answer]}

    return step


def chain(*names, askers=()):
    graph = Graph("g", {"log": Append(), "note": LastWriteWins()})
    for name in names:
        graph.step(name, asker(name) if name in askers else writer(name))
    for src, dst in itertools.pairwise(names):
        graph.edge(src, dst)
    return graph


def layer_with_askers():
    """root, then plain ``p`` and askers ``x`` and ``y`` on layer 1, then ``end``."""
    graph = Graph("g", {"log": Append(), "note": LastWriteWins()})
    graph.step("root", writer("root")).step("p", writer("p"))
    graph.step("x", asker("x")).step("y", asker("y")).step("end", writer("end"))
    for name in ("p", "x", "y"):
        graph.edge("root", name).edge(name, "end")
    return graph


# --- the seed ------------------------------------------------------------------


def test_seed_update_at_a_before_breakpoint_goes_through_a_merge_map_channel():
    def only(state):
        return {"seen": dict(state["config"])}

    graph = Graph("seed", {"config": MergeMap(), "seen": LastWriteWins()}).step("only", only)
    runner = Runner(graph, interrupt_before={"only"})
    paused = runner.run("r", {"config": {"base": 1}})
    assert paused.reason == Before("only")
    done = runner.resume("r", Update({"config": {"injected": True}}))
    assert isinstance(done, Done)
    assert done.state["config"]["injected"] is True
    assert done.state["config"] == {"base": 1, "injected": True}
    assert done.state["seen"] == {"base": 1, "injected": True}


# --- Continue ------------------------------------------------------------------


def test_continue_with_a_dynamic_interrupt_pending_is_a_resume_error():
    runner = Runner(chain("a", askers={"a"}))
    paused = runner.run("r")
    before = runner.history("r")
    with pytest.raises(ResumeError, match=r"waits for an answer") as info:
        runner.resume("r", Continue())
    assert paused.interrupts[0].id in str(info.value)
    assert runner.history("r") == before


def test_continue_past_after_on_the_last_layer_saves_done():
    runner = Runner(chain("a", "b"), interrupt_after={"b"})
    assert runner.run("r") == Paused(2, After("b"))
    assert runner.resume("r", Continue()) == Done({"log": ["a", "b"], "note": None}, 2)
    last = runner.history("r")[-1]
    assert (last.label, last.super_step) == ("done", 2)
    assert runner.state("r").status == "done"


# --- Resume --------------------------------------------------------------------


@pytest.mark.parametrize("where", ["before", "after"])
def test_resume_at_a_breakpoint_is_a_resume_error(where):
    runner = Runner(chain("a", "b"), **{f"interrupt_{where}": {"a"}})
    runner.run("r")
    before = runner.history("r")
    with pytest.raises(ResumeError, match=r"breakpoint.*Continue\(\)"):
        runner.resume("r", Resume(True))
    assert runner.history("r") == before


def test_resume_update_is_applied_right_after_the_interrupted_layers_writes():
    runner = Runner(layer_with_askers())
    x, y = runner.run("r").interrupts
    done = runner.resume("r", Resume(answers={x.id: 1, y.id: 2}, update={"log": "edit"}))
    assert done.state["log"] == ["root", "p", "x", 1, "y", 2, "edit", "end"]


def test_resume_update_with_interrupts_left_pending_is_kept_until_the_layer_finishes():
    runner = Runner(layer_with_askers())
    x, y = runner.run("r").interrupts
    again = runner.resume("r", Resume(answers={x.id: 1}, update={"log": "edit"}))
    assert again.interrupts == (y,)
    assert runner.state("r").values["log"] == ["root"]
    done = runner.resume("r", Resume(answers={y.id: 2}))
    assert done.state["log"] == ["root", "p", "x", 1, "y", 2, "edit", "end"]


def test_resume_update_naming_no_channel_is_a_graph_error_and_nothing_is_saved():
    runner = Runner(chain("a", askers={"a"}))
    runner.run("r")
    before = runner.history("r")
    with pytest.raises(GraphError, match=r"'nope'"):
        runner.resume("r", Resume(1, update={"nope": 1}))
    assert runner.history("r") == before


# --- Update --------------------------------------------------------------------


def test_update_at_a_breakpoint_saves_an_update_checkpoint_and_goes_on():
    runner = Runner(chain("a", "b"), interrupt_before={"b"})
    runner.run("r")
    done = runner.resume("r", Update({"log": "edit", "note": "n"}))
    assert done.state == {"log": ["a", "edit", "b"], "note": "n"}
    labels = [m.label for m in runner.history("r")]
    assert labels == ["input", "layer:1", "before:b", "update", "layer:2"]


def test_update_at_an_after_breakpoint_goes_on_with_the_next_layer():
    runner = Runner(chain("a", "b"), interrupt_after={"a"})
    runner.run("r")
    done = runner.resume("r", Update({"log": "edit"}))
    assert done.state["log"] == ["a", "edit", "b"]


def test_update_at_a_before_breakpoint_does_not_stop_there_again():
    runner = Runner(chain("a", "b", "c"), interrupt_before={"b", "c"})
    runner.run("r")
    assert runner.resume("r", Update({"note": "x"})) == Paused(3, Before("c"))


def test_update_with_interrupts_pending_returns_the_same_paused():
    runner = Runner(layer_with_askers())
    paused = runner.run("r")
    assert runner.resume("r", Update({"log": "edit"})) == paused
    assert runner.history("r")[-1].label == "update"
    info = runner.state("r")
    assert info.status == "paused"
    assert info.interrupts == paused.interrupts
    assert info.values["log"] == ["root"]


def test_update_with_interrupts_pending_is_applied_right_after_the_layers_writes():
    checkpointer = MemoryCheckpointer()
    graph = layer_with_askers()
    runner = Runner(graph, checkpointer)
    x, y = runner.run("r").interrupts
    runner.resume("r", Update({"log": "first edit"}))
    runner.resume("r", Update({"log": "second edit"}))
    done = Runner(graph, checkpointer).resume("r", Resume(answers={x.id: 1, y.id: 2}))
    assert done.state["log"] == ["root", "p", "x", 1, "y", 2, "first edit", "second edit", "end"]


def test_update_with_interrupts_pending_leaves_the_state_suspended_steps_replay_on():
    seen = []

    def reads(state):
        seen.append(state["note"])
        answer = yield Interrupt("q")
        return {"log": [state["note"], answer]}

    checkpointer = MemoryCheckpointer()
    graph = Graph("g", {"log": Append(), "note": LastWriteWins()}).step("reads", reads)
    Runner(graph, checkpointer).run("r", {"note": "original"})
    Runner(graph, checkpointer).resume("r", Update({"note": "edited"}))
    done = Runner(graph, checkpointer).resume("r", Resume("yes"))
    assert seen == ["original", "original"]
    assert done.state == {"log": ["original", "yes"], "note": "edited"}


def test_update_naming_no_channel_is_a_graph_error_and_nothing_is_saved():
    runner = Runner(chain("a", "b"), interrupt_before={"b"})
    runner.run("r")
    before = runner.history("r")
    with pytest.raises(GraphError, match=r"'nope'"):
        runner.resume("r", Update({"nope": 1}))
    assert runner.history("r") == before


# --- Goto ----------------------------------------------------------------------


def test_goto_an_unknown_step_is_a_resume_error_and_nothing_is_saved():
    runner = Runner(chain("a", "b"), interrupt_before={"b"})
    runner.run("r")
    before = runner.history("r")
    with pytest.raises(ResumeError, match=r"Goto\('ghost'\)"):
        runner.resume("r", Goto("ghost"))
    assert runner.history("r") == before


def test_goto_at_a_dynamic_pause_drops_the_finished_siblings_writes():
    runner = Runner(layer_with_askers())
    runner.run("r")
    again = runner.resume("r", Goto("p"))
    # the layer runs again from its start: p writes once, x and y ask anew
    assert isinstance(again, Paused)
    assert [i.step_id for i in again.interrupts] == ["x", "y"]
    assert runner.state("r").values["log"] == ["root"]
    assert [m.label for m in runner.history("r")][-2:] == ["resume", "interrupt:x"]
    x, y = again.interrupts
    done = runner.resume("r", Resume(answers={x.id: 1, y.id: 2}))
    assert done.state["log"] == ["root", "p", "x", 1, "y", 2, "end"]


def test_goto_at_a_dynamic_pause_keeps_update_edits():
    runner = Runner(chain("a", askers={"a"}))
    runner.run("r")
    runner.resume("r", Update({"note": "kept"}))
    again = runner.resume("r", Goto("a"))
    assert again.reason == DynamicInterrupt("a")
    assert runner.state("r").values == {"log": [], "note": "kept"}


def test_goto_goes_on_from_the_start_of_the_target_layer_with_the_latest_state():
    runner = Runner(chain("a", "b", "c"), interrupt_before={"c"})
    runner.run("r")
    assert runner.resume("r", Goto("b")) == Paused(3, Before("c"))
    assert runner.state("r").values["log"] == ["a", "b", "b"]
    assert runner.resume("r", Continue()).state["log"] == ["a", "b", "b", "c"]


def test_goto_does_not_fire_a_before_breakpoint_on_the_target_layer():
    runner = Runner(chain("a", "b", "c"), interrupt_before={"b", "c"})
    runner.run("r")
    assert runner.resume("r", Goto("b")) == Paused(3, Before("c"))


@pytest.mark.parametrize(
    ("pause", "target", "counted"),
    [
        ("interrupt", "a", 1),  # the pause in b: its values hold a's writes
        ("interrupt", "c", 1),
        ("before", "a", 1),  # before b: a's writes
        ("after", "a", 2),  # after b: a's and b's
        ("done", "a", 3),
    ],
)
def test_a_goto_claims_super_step_counts_the_layers_its_values_include(
    pause: str, target: str, counted: int
) -> None:
    """SPEC, Super-steps: a checkpoint's super_step counts the layers whose writes its
    values include, whichever layer the claim goes on with."""

    def ask(state):
        answer = yield Interrupt("q")
        return {"log": [answer]}

    graph = (
        Graph("g", {"log": Append()})
        .step("a", lambda s: {"log": ["a"]})
        .step("b", ask if pause == "interrupt" else lambda s: {"log": ["b"]})
        .step("c", lambda s: {"log": ["c"]})
        .edge("a", "b")
        .edge("b", "c")
    )
    breakpoints = {"before": {"interrupt_before": {"b"}}, "after": {"interrupt_after": {"b"}}}
    runner = Runner(graph, **breakpoints.get(pause, {}))
    runner.run("r")
    runner.resume("r", Goto(target))
    history = runner.history("r")
    claim = next(m for m in reversed(history) if m.label == "resume")
    assert claim.super_step == counted
    assert [m.super_step for m in history[claim.seq :]] == sorted(
        m.super_step for m in history[claim.seq :]
    )


def test_goto_reopens_a_finished_run():
    runner = Runner(chain("a", "b"))
    runner.run("r")
    done = runner.resume("r", Goto("b", update={"note": "again"}))
    assert done == Done({"log": ["a", "b", "b"], "note": "again"}, 2)


def test_goto_update_is_applied_before_the_run_goes_on():
    seen = []

    def b(state):
        seen.append(state["note"])
        return {"log": "b"}

    graph = Graph("g", {"log": Append(), "note": LastWriteWins()})
    graph.step("a", writer("a")).step("b", b).edge("a", "b")
    runner = Runner(graph, interrupt_after={"b"})
    runner.run("r")
    runner.resume("r", Goto("b", update={"note": "goto"}))
    assert seen == [None, "goto"]


def test_goto_update_naming_no_channel_is_a_graph_error_and_nothing_is_saved():
    runner = Runner(chain("a", "b"))
    runner.run("r")
    before = runner.history("r")
    with pytest.raises(GraphError, match=r"'nope'"):
        runner.resume("r", Goto("a", update={"nope": 1}))
    assert runner.history("r") == before


# --- commands on runs that cannot take them --------------------------------------


@pytest.mark.parametrize(
    "command", [Continue(), Resume(1), Update({"note": 1}), Goto("a")], ids=repr
)
def test_any_command_on_an_unknown_run_is_a_resume_error(command):
    checkpointer = MemoryCheckpointer()
    with pytest.raises(ResumeError, match=r"no run 'ghost'"):
        Runner(chain("a"), checkpointer).resume("ghost", command)
    assert checkpointer.runs() == []


@pytest.mark.parametrize("command", [Continue(), Resume(1), Update({"note": 1})], ids=repr)
def test_continue_resume_or_update_on_a_finished_run_is_a_resume_error(command):
    runner = Runner(chain("a"))
    runner.run("r")
    before = runner.history("r")
    with pytest.raises(ResumeError, match=r"^run 'r' is finished"):
        runner.resume("r", command)
    assert runner.history("r") == before


def test_resume_with_something_that_is_not_a_command_is_a_resume_error():
    runner = Runner(chain("a"), interrupt_before={"a"})
    runner.run("r")
    with pytest.raises(ResumeError, match=r"Continue\(\)"):
        runner.resume("r", True)  # type: ignore[arg-type]


# --- dying between a layer checkpoint and its After pause --------------------------


class _Killed(BaseException):
    """Stands for the process dying: not an Exception, so nothing catches it."""


class _DiesAfterLayer(MemoryCheckpointer):
    def __init__(self, label):
        super().__init__()
        self.label = label
        self.armed = True

    def save(self, checkpoint):
        super().save(checkpoint)
        if self.armed and checkpoint.label == self.label:
            self.armed = False
            raise _Killed


def test_death_between_a_layer_checkpoint_and_its_after_pause_still_pauses_there():
    graph = chain("a", "b")
    checkpointer = _DiesAfterLayer("layer:1")
    with pytest.raises(_Killed):
        Runner(graph, checkpointer, interrupt_after={"a"}).run("r")
    assert checkpointer.list("g", "r")[-1].label == "layer:1"
    fresh = Runner(graph, checkpointer, interrupt_after={"a"})
    assert fresh.run("r") == Paused(1, After("a"))
    assert fresh.resume("r", Continue()) == Done({"log": ["a", "b"], "note": None}, 2)


def test_death_after_the_last_layer_checkpoint_still_pauses_after_it():
    graph = chain("a", "b")
    checkpointer = _DiesAfterLayer("layer:2")
    with pytest.raises(_Killed):
        Runner(graph, checkpointer, interrupt_after={"b"}).run("r")
    fresh = Runner(graph, checkpointer, interrupt_after={"b"})
    assert fresh.state("r").status != "done"
    assert fresh.run("r") == Paused(2, After("b"))
    assert fresh.resume("r", Continue()) == Done({"log": ["a", "b"], "note": None}, 2)
    assert fresh.history("r")[-1].label == "done"


def test_a_cancel_reason_no_store_can_keep_is_refused_before_anything_is_done():
    from pausegraph import SerializationError

    def ask(state):
        yield Interrupt("go?")

    runner = Runner(Graph("g", {"x": LastWriteWins()}).step("s", ask))
    runner.run("r")
    before = runner.history("r")
    with pytest.raises(SerializationError, match=r"the cancel reason .* cannot be stored"):
        runner.cancel("r", "bad \ud800")
    assert runner.history("r") == before
    assert runner.state("r").status == "paused"


def test_a_resume_prints_as_the_call_that_makes_it():
    """SPEC: value types have readable reprs; Resume() and Resume(None) differ, and say so."""
    shown = {
        "Resume(value=7)": Resume(7),
        "Resume(value={'a': 1})": Resume({"a": 1}),
        "Resume(value=2, update={'x': 1})": Resume(2, update={"x": 1}),
        "Resume(answers={'1.0.0': 1}, update={'x': 1})": Resume(
            answers={"1.0.0": 1}, update={"x": 1}
        ),
    }
    for text, command in shown.items():
        assert repr(command) == text
    assert repr(Resume(answers={"1.0.0": 1})) == "Resume(answers={'1.0.0': 1})"
    assert repr(Resume(None)) == "Resume(value=None)"
    assert repr(Resume()) == "Resume()"
    assert Resume() != Resume(None)


def test_a_run_info_prints_its_status_as_the_string_it_equals():
    info = RunInfo({"x": 1}, Status.DONE, 1, ())
    assert "status='done'" in repr(info)
    assert info.status == "done"
    assert repr(Status.PAUSED) == "'paused'"


def test_a_reducer_may_change_its_current_value_in_place():
    def add(current, item):
        current.append(item)
        return current

    def fill(state):
        return {"items": "b"}

    graph = Graph("inplace", {"items": Reducer(add, [])}).step("fill", fill)
    runner = Runner(graph)
    assert runner.run("r", {"items": "a"}).state == {"items": ["a", "b"]}
    assert runner.state("r").values == {"items": ["a", "b"]}


def test_a_queued_claim_that_answered_one_of_two_interrupts_lists_the_other_as_pending():
    # SPEC Runs: RunInfo.interrupts are "the pending ones": a submit that answered one of
    # two interrupts leaves the other waiting, queued or not
    def ask(name):
        def step(state):
            return {name: (yield Interrupt(f"{name}?"))}

        return step

    graph = Graph("g", {"a": LastWriteWins(), "b": LastWriteWins()})
    graph.step("a", ask("a")).step("b", ask("b"))
    runner = Runner(graph)
    first, second = runner.run("r").interrupts
    info = runner.submit("r", Resume(answers={first.id: 1}))
    assert info.status == "queued"
    assert info.interrupts == (second,)
    assert runner.state("r").interrupts == (second,)
    (summary,) = run_summaries(runner.checkpointer)  # what `pausegraph runs` counts
    assert [fields[0] for fields in summary_fields(summary)[2]] == [second.id]
    assert runner.run("r").interrupts == (second,)
