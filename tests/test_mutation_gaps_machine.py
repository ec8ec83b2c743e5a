"""Tests that catch mutations of the run state machine, the commands and the held
pauses that the rest of the suite let through (found by mutation testing)."""

from __future__ import annotations

import sys

import pytest

from pausegraph import (
    After,
    CheckpointError,
    ConflictError,
    Continue,
    Done,
    DynamicInterrupt,
    Effect,
    Goto,
    Graph,
    GraphError,
    Interrupt,
    LastWriteWins,
    MemoryCheckpointer,
    Paused,
    Resume,
    ResumeError,
    RunInfo,
    Runner,
    SerializationError,
    StepError,
    Update,
)


class _Killed(BaseException):
    """Stands for the process dying: not an Exception, so nothing catches it."""


class _DiesAfterSave(MemoryCheckpointer):
    def __init__(self, label: str) -> None:
        super().__init__()
        self.label = label
        self.armed = True

    def save(self, checkpoint):  # type: ignore[no-untyped-def]
        super().save(checkpoint)
        if self.armed and checkpoint.label == self.label:
            self.armed = False
            raise _Killed


def _chain() -> Graph:
    return (
        Graph("g", {"x": LastWriteWins()})
        .step("a", lambda state: {"x": 1})
        .step("b", lambda state: {"x": 2})
        .edge("a", "b")
    )


def test_a_run_owing_its_after_pause_is_running_while_a_driver_holds_its_lock():
    # SPEC, Run status: "running": a live process is driving it now (from its lock);
    # a layer checkpoint that still owes its After pause is work waiting, like a claim
    store = _DiesAfterSave("layer:1")
    runner = Runner(_chain(), store, interrupt_after={"a"})
    with pytest.raises(_Killed):
        runner.run("r")
    assert runner.state("r").status == "queued"
    with store.lock("g", "r"):
        assert runner.state("r").status == "running"
    assert runner.state("r").status == "queued"
    assert runner.run("r").reason == After("a")
    assert runner.resume("r", Continue()).state == {"x": 2}


@pytest.mark.parametrize("where", ["before", "after", "interrupt"])
def test_run_on_a_paused_run_is_a_resume_error_and_saves_nothing(where):
    # SPEC, Runs: "if it is paused, `ResumeError` (use `resume`)"
    def ask(state):
        answer = yield Interrupt("q")
        return {"x": answer}

    graph = (
        Graph("g", {"x": LastWriteWins()})
        .step("a", ask if where == "interrupt" else (lambda state: {"x": 1}))
        .step("b", lambda state: {"x": 2})
        .edge("a", "b")
    )
    breakpoints = {
        "before": {"interrupt_before": {"b"}},
        "after": {"interrupt_after": {"a"}},
    }
    runner = Runner(graph, **breakpoints.get(where, {}))
    paused = runner.run("r", {"x": 0})
    assert isinstance(paused, Paused)
    before = runner.history("r")
    with pytest.raises(ResumeError, match="paused"):
        runner.run("r")
    with pytest.raises(ResumeError, match="paused"):
        runner.run("r", {"x": 0})
    assert runner.history("r") == before
    assert runner.state("r").status == "paused"
    command = Resume(5) if where == "interrupt" else Continue()
    assert runner.resume("r", command) == Done({"x": 2}, 2)


def _asks_in_second_layer() -> Graph:
    def ask(state):
        answer = yield Interrupt("q")
        return {"x": answer}

    return (
        Graph("g", {"x": LastWriteWins()})
        .step("a", lambda state: {"x": 1})
        .step("b", ask)
        .edge("a", "b")
    )


def test_a_resume_claim_counts_the_layers_its_values_hold():
    # SPEC, Super-steps: "A checkpoint's `super_step` counts the layers whose writes its
    # values include"; the claim of an answer holds the interrupted layer's start state
    runner = Runner(_asks_in_second_layer())
    assert runner.run("r") == Paused(2, DynamicInterrupt("b"), "q", runner.state("r").interrupts)
    info = runner.submit("r", Resume(7))
    assert (info.status, info.super_step, info.values) == ("queued", 1, {"x": 1})
    assert runner.state("r").super_step == 1
    assert [(m.label, m.super_step) for m in runner.history("r")][-2:] == [
        ("interrupt:b", 2),
        ("resume", 1),
    ]
    assert runner.run("r") == Done({"x": 7}, 2)
    # and through resume() the same way
    runner.run("s")
    assert runner.resume("s", Resume(8)) == Done({"x": 8}, 2)
    assert [(m.label, m.super_step) for m in runner.history("s")][-3:] == [
        ("interrupt:b", 2),
        ("resume", 1),
        ("layer:2", 2),
    ]


def test_goto_on_a_queued_run_is_a_conflict_error_and_saves_nothing():
    # SPEC, status table: `resume`, `submit`, `cancel` on a "queued" run:
    # "`ConflictError` (a claim waits for a driver)"
    runner = Runner(_asks_in_second_layer())
    runner.start("new", {"x": 0})
    runner.run("claimed")
    runner.submit("claimed", Resume(3))
    for run_id in ("new", "claimed"):
        before = runner.history(run_id)
        assert runner.state(run_id).status == "queued"
        with pytest.raises(ConflictError, match="queued"):
            runner.resume(run_id, Goto("a"))
        with pytest.raises(ConflictError, match="queued"):
            runner.submit(run_id, Goto("b", update={"x": 9}))
        assert runner.history(run_id) == before
    assert runner.run("claimed") == Done({"x": 3}, 2)


def test_resume_with_empty_answers_is_a_resume_error_and_saves_nothing():
    # SPEC, Interrupts: "`Resume` with both or neither of `value` and `answers` is a
    # `ResumeError`" (an empty `answers` answers nothing); and Closing suspended steps:
    # "a command that is refused ... never closes or replaces the live generators"
    closed = []

    def ask(state):
        try:
            answer = yield Interrupt("q")
        finally:
            closed.append(True)
        return {"x": answer}

    runner = Runner(Graph("g", {"x": LastWriteWins()}).step("s", ask))
    runner.run("r")
    before = runner.history("r")
    with pytest.raises(ResumeError, match="answers nothing"):
        runner.resume("r", Resume(answers={}))
    with pytest.raises(ResumeError, match="answers nothing"):
        runner.submit("r", Resume(answers={}))
    assert runner.history("r") == before
    assert closed == []
    assert runner.resume("r", Resume(1)) == Done({"x": 1}, 1)


def test_update_of_none_is_refused_when_it_is_made():
    # Update(edits) takes a dict of channel values: None is a GraphError at once (as
    # a value class that cannot hold it), before any runner sees it
    with pytest.raises(GraphError, match=r"Update\(edits\) must be a dict"):
        Update(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("step", [["a"], {"a": 1}, 0, None])
def test_goto_a_step_id_that_is_not_a_str_is_a_resume_error(step):
    # SPEC, Commands: "`Goto(step_id)` ... An unknown step is a `ResumeError`"
    runner = Runner(_asks_in_second_layer())
    runner.run("r")
    before = runner.history("r")
    with pytest.raises(ResumeError):
        runner.resume("r", Goto(step))
    assert runner.history("r") == before
    assert runner.state("r").status == "paused"


def test_a_command_keeps_its_own_copy_of_the_dicts_it_was_given():
    # SPEC, Public names: "All value types (outcomes, reasons, commands, ...) are frozen
    # attrs classes ... comparable with `==`": changing the caller's dict afterwards
    # changes no command
    edits, update, answers = {"x": 1}, {"x": 2}, {"i": 3}
    commands = (
        Update(edits),
        Goto("a", update=update),
        Resume(answers=answers, update=update),
    )
    edits["x"] = update["x"] = answers["i"] = 99
    edits["y"] = answers["j"] = 0
    assert commands == (
        Update({"x": 1}),
        Goto("a", update={"x": 2}),
        Resume(answers={"i": 3}, update={"x": 2}),
    )
    assert commands[0].edits == {"x": 1}
    assert commands[2].answers == {"i": 3}

    runner = Runner(_asks_in_second_layer(), interrupt_before={"b"})
    runner.run("r")
    given = {"x": 5}
    command = Update(given)
    given["x"] = 6
    assert runner.resume("r", command) == Paused(
        2, DynamicInterrupt("b"), "q", runner.state("r").interrupts
    )
    assert runner.state("r").values == {"x": 5}
    # RunInfo too: it lists edits as its own dicts
    kept = {"x": 1}
    info = RunInfo({}, "paused", 0, edits=[kept])
    kept["x"] = 2
    assert info.edits == ({"x": 1},)


@pytest.mark.parametrize("how", ["value", "answers", "failed"])
def test_an_answer_nested_past_the_depth_limit_is_refused_before_anything_is_saved(how):
    # SPEC, Checkpoints: "Values nest at most a fixed depth (documented), checked where
    # they enter" (the guide: 100 dicts and lists); Interrupts: "an answer msgpack cannot
    # encode is a `SerializationError` raised before anything is saved"
    def ask(state):
        answer = yield Interrupt("q")
        if state["x"] == "fail":
            raise ValueError("boom")
        return {"x": answer}

    runner = Runner(Graph("g", {"x": LastWriteWins()}).step("s", ask))
    paused = runner.run("r", {"x": "fail" if how == "failed" else None})
    (interrupt,) = paused.interrupts
    if how == "failed":
        with pytest.raises(StepError):
            runner.resume("r", Resume(1))
    deep: object = 1
    for _ in range(150):
        deep = [deep]
    before = runner.history("r")
    command = Resume(deep) if how == "value" else Resume(answers={interrupt.id: deep})
    with pytest.raises(SerializationError, match="deep"):
        runner.resume("r", command)
    with pytest.raises(SerializationError, match="deep"):
        runner.submit("r", command)
    assert runner.history("r") == before


def _counted(calls: list[str], closed: list[str], name: str = "s"):
    def step(state):
        calls.append(name)
        try:
            answer = yield Interrupt("q")
        finally:
            closed.append(name)
        return {"x": answer}

    return step


def test_another_workflows_run_of_the_same_id_moving_on_leaves_this_pause_live():
    # SPEC, Interrupts: "while the same `Runner` still holds the live generator it sends
    # the answer in"; a cancel of run "r" of workflow g2 does not let go of run "r" of g1
    calls: list[str] = []
    closed: list[str] = []
    store = MemoryCheckpointer()
    one = Runner(
        Graph("g1", {"x": LastWriteWins()}).step("s", _counted(calls, closed, "one")),
        store,
    )
    two = Runner(
        Graph("g2", {"x": LastWriteWins()}).step("s", _counted(calls, closed, "two")),
        store,
    )
    one.run("r")
    two.run("r")
    two.cancel("r")
    assert closed == ["two"]
    two.delete("r")
    assert closed == ["two"]
    assert one.resume("r", Resume(1)) == Done({"x": 1}, 1)
    assert calls == ["one", "two"]  # sent in, not replayed
    assert closed == ["two", "one"]


def test_the_1025th_pause_a_runner_holds_closes_the_one_held_longest():
    # SPEC, Closing suspended steps: when a Runner lets one go without finishing it ("it
    # holds too many"), pausegraph closes it; the guide: it keeps up to 1,024 paused runs,
    # the pause evicted is the 1,025th's oldest
    calls: list[str] = []
    closed: list[str] = []

    def step(state):
        calls.append(state["x"])
        try:
            answer = yield Interrupt("q")
        finally:
            closed.append(state["x"])
        return {"x": answer}

    runner = Runner(Graph("g", {"x": LastWriteWins()}).step("s", step))
    for n in range(1024):
        runner.run(f"r{n}", {"x": n})
    assert closed == []
    runner.run("r1024", {"x": 1024})
    assert closed == [0]
    calls.clear()
    runner.resume("r1", Resume("hot"))
    runner.resume("r1024", Resume("hot"))
    assert calls == []  # still held: sent in
    runner.resume("r0", Resume("cold"))
    assert calls == [0]  # let go: replayed


def test_a_collected_runner_closes_its_held_generators_quietly(monkeypatch):
    # SPEC, Closing suspended steps: when "the `Runner` is garbage-collected" pausegraph
    # closes the generator; "an `Effect` or `Interrupt` yielded while a step is being
    # closed is not run, is not saved, and prints nothing (no "generator ignored
    # GeneratorExit")", so cleanup written as `yield Effect(release, ...)` runs exactly once
    import gc

    unraisable: list[object] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    released: list[int] = []
    closed: list[int] = []

    def release(n):
        released.append(n)

    def step(state):
        try:
            answer = yield Interrupt("q")
        finally:
            closed.append(1)
            yield Effect(release, 1)
        return {"x": answer}

    graph = Graph("g", {"x": LastWriteWins()}).step("s", step)
    store = MemoryCheckpointer()
    runner = Runner(graph, store)
    runner.run("r")
    del runner
    gc.collect()
    assert closed == [1]
    assert released == []
    assert unraisable == []
    assert Runner(graph, store).resume("r", Resume(2)) == Done({"x": 2}, 1)
    assert released == [1]


def _remembers_its_state() -> Graph:
    def step(state):
        answer = yield Interrupt("q")
        return {"x": [state["x"], answer]}

    return Graph("g", {"x": LastWriteWins()}).step("s", step)


def test_run_of_a_claim_on_a_run_deleted_and_started_again_elsewhere_replays(tmp_path):
    # SPEC, Interrupts: the live generator is used only "while the same `Runner` still
    # holds" it; "Otherwise ... it calls the step again on the same state and replays
    # its journal". A pause held from before the run was deleted (through another store
    # handle) and started again is not that run's.
    from pausegraph import FileCheckpointer

    graph = _remembers_its_state()
    here = Runner(graph, FileCheckpointer(tmp_path / "s"), clock=lambda: 1_000)
    there = Runner(graph, FileCheckpointer(tmp_path / "s"), clock=lambda: 2_000)
    here.run("r", {"x": "old"})
    there.delete("r")
    there.run("r", {"x": "new"})
    assert there.submit("r", Resume(1)).status == "queued"
    assert here.run("r") == Done({"x": ["new", 1]}, 1)


def test_submit_goto_closes_at_once_what_another_runner_holds_of_the_run():
    # SPEC, Closing suspended steps: a generator "sent elsewhere by `Goto`" is closed; the
    # guide: "A cancel, delete or `Goto` made through another `Runner` of the process on
    # the same checkpointer object closes this Runner's generators of the run at once"
    calls: list[str] = []
    closed: list[str] = []
    graph = Graph("g", {"x": LastWriteWins()}).step("s", _counted(calls, closed))
    store = MemoryCheckpointer()
    holder, other = Runner(graph, store), Runner(graph, store)
    holder.run("r")
    assert other.submit("r", Goto("s")).status == "queued"
    assert closed == ["s"]


class _RefusesLabel(MemoryCheckpointer):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def save(self, checkpoint):  # type: ignore[no-untyped-def]
        if checkpoint.label.startswith(self.prefix):
            raise CheckpointError("disk full")
        super().save(checkpoint)


def test_a_pause_that_cannot_be_saved_closes_its_generators_before_the_error_is_raised():
    # SPEC, Closing suspended steps: generators a Runner lets go are closed by pausegraph
    # (the guide: also when "a save ... cuts the layer short"), not left to the collector;
    # the traceback is kept alive here, so only the engine can have closed the step
    calls: list[str] = []
    closed: list[str] = []
    store = _RefusesLabel("interrupt:")
    runner = Runner(Graph("g", {"x": LastWriteWins()}).step("s", _counted(calls, closed)), store)
    with pytest.raises(CheckpointError) as raised:
        runner.run("r")
    assert closed == ["s"]
    assert raised.traceback is not None
    assert runner.state("r").status == "queued"


@pytest.mark.parametrize("update", [[("x", 1)], 5, "x"])
def test_an_update_that_is_not_a_dict_is_a_graph_error(update):
    # SPEC, Commands: "An edit (in `input`, `Update`, `update=` or `fork`) that names no
    # channel is a `GraphError`": an `update=` that is not a mapping names none
    with pytest.raises(GraphError, match="update"):
        Resume(1, update=update)
    with pytest.raises(GraphError, match="update"):
        Goto("a", update=update)
