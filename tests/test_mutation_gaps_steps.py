"""Tests that catch mutations of the trampoline, the scheduler, the reducers and the
instructions that the rest of the suite let through (found by mutation testing): each
fails on a mutant of the engine and passes on the engine as it is."""

from __future__ import annotations

import contextlib
import gc
import sys
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from pausegraph import (
    All,
    Append,
    Done,
    Effect,
    FileCheckpointer,
    Graph,
    Interrupt,
    LastWriteWins,
    MemoryCheckpointer,
    NondeterminismError,
    Paused,
    Resume,
    Runner,
    Sleep,
)

CALLED: list[Any] = []


@contextlib.contextmanager
def _noise() -> Iterator[tuple[list[Any], list[warnings.WarningMessage]]]:
    """What the block prints unasked: exceptions Python could not raise (a generator
    "ignored GeneratorExit"), and every warning."""
    unraisable: list[Any] = []
    old_hook = sys.unraisablehook
    sys.unraisablehook = unraisable.append
    try:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            yield unraisable, seen
    finally:
        sys.unraisablehook = old_hook


def give_list() -> list[int]:
    return [1, 2]


def one_step(fn: Any, name: str = "g") -> Graph:
    return Graph(name, {"out": LastWriteWins(), "log": Append()}).step("s", fn)


# --- SPEC, Interrupts: "Answers and effect results are normalised through msgpack before
# they are sent into a step ..., so hot and cold resumes see the same values" -------------


def test_a_fresh_effect_result_is_the_steps_own_mutable_copy() -> None:
    """A new effect's result is sent in as a plain list the step may change, as a replay's is."""

    def step(state):
        got = yield Effect(give_list)
        got.append(3)  # the step's own copy: as on replay (thawed there too)
        return {"out": got}

    outcome = Runner(one_step(step)).run("r")
    assert outcome == Done({"out": [1, 2, 3], "log": []}, 1)


# --- SPEC, Fan-out: "An exception in a branch closes the other branches and is raised at
# the yield All(...), where the step may catch it." A closed branch's effect never runs. --


def side_effect(tag: str) -> str:
    CALLED.append(tag)
    return tag


def test_a_branch_closed_by_its_siblings_error_never_has_its_waiting_effect_called() -> None:
    CALLED.clear()

    def waits_on_effect():
        got = yield Effect(side_effect, "closed-branch")
        return got

    def raises():
        raise ValueError("branch b fails")
        yield  # a generator

    def step(state):
        with contextlib.suppress(ValueError):
            yield All(waits_on_effect(), raises())
        answer = yield Interrupt("after")
        return {"out": answer}

    runner = Runner(one_step(step))
    paused = runner.run("r")
    assert isinstance(paused, Paused)
    assert paused.payload == "after"
    assert CALLED == []  # the closed branch's effect was dropped, not called
    assert runner.resume("r", Resume("x")) == Done({"out": "x", "log": []}, 1)
    assert CALLED == []


# --- SPEC, Interrupts: replay that "yields something other than the journal says" is a
# NondeterminismError; a recorded Sleep replayed as Interrupt(None) is another thing. -----


def test_a_recorded_sleep_replayed_as_an_interrupt_with_no_payload_is_nondeterminism() -> None:
    store = MemoryCheckpointer()

    def before(state):
        yield Sleep(60)
        answer = yield Interrupt("next")
        return {"out": answer}

    def after(state):
        yield Interrupt(None)  # same payload (None) as the Sleep's, but not a Sleep
        answer = yield Interrupt("next")
        return {"out": answer}

    first = Runner(one_step(before), store)
    paused = first.run("r")
    assert isinstance(paused, Paused)
    paused = first.resume("r", Resume("woken"))  # answers the sleep; pauses at "next"
    assert isinstance(paused, Paused)
    assert paused.payload == "next"
    cold = Runner(one_step(after), store)  # a new Runner: the step replays its journal
    with pytest.raises(NondeterminismError, match="'s'"):
        cold.resume("r", Resume("done"))


def test_an_interrupt_with_no_payload_replayed_as_a_sleep_is_nondeterminism() -> None:
    store = MemoryCheckpointer()

    def before(state):
        yield Interrupt(None)
        answer = yield Interrupt("next")
        return {"out": answer}

    def after(state):
        yield Sleep(60)  # no payload either, but a Sleep where an Interrupt was recorded
        answer = yield Interrupt("next")
        return {"out": answer}

    first = Runner(one_step(before), store)
    assert isinstance(first.run("r"), Paused)
    paused = first.resume("r", Resume("first"))
    assert isinstance(paused, Paused)
    assert paused.payload == "next"
    with pytest.raises(NondeterminismError, match="'s'"):
        Runner(one_step(after), store).resume("r", Resume("done"))


# --- SPEC, Interrupts: a replay must repeat the journal; a step that returns before
# reaching what its journal recorded "yields something other than the journal says". ----


def test_a_step_that_returns_before_the_end_of_its_journal_on_replay_is_nondeterminism() -> None:
    store = MemoryCheckpointer()

    def before(state):
        first = yield Interrupt("a")
        second = yield Interrupt("b")
        return {"out": [first, second]}

    def after(state):
        first = yield Interrupt("a")
        return {"out": [first]}  # returns where the journal recorded Interrupt("b")

    runner = Runner(one_step(before), store)
    assert isinstance(runner.run("r"), Paused)
    paused = runner.resume("r", Resume(1))
    assert isinstance(paused, Paused)
    assert paused.payload == "b"
    with pytest.raises(NondeterminismError, match="'s'"):
        Runner(one_step(after), store).resume("r", Resume(2))
    assert Runner(one_step(before), store).state("r").status == "failed"


# --- SPEC, Fan-out: "An exception in a branch closes the other branches"; SPEC, Closing
# suspended steps: what a closed generator yields in its finally "is not run, is not
# saved, and prints nothing". ----------------------------------------------------------


def release(tag: str) -> None:
    CALLED.append(tag)


def test_a_branch_error_closes_a_suspended_sibling_quietly_before_the_step_catches_it() -> None:

    CALLED.clear()
    order: list[str] = []

    def holds_a_lock():
        try:
            return (yield Interrupt("wait"))
        finally:
            order.append("sibling closed")
            yield Effect(release, "lock")  # dropped: the branch is only closed

    def raises():
        yield Effect(side_effect, "b")
        raise ValueError("b fails")

    def step(state):
        try:
            yield All(holds_a_lock(), raises())
        except ValueError:
            order.append("caught")
        return {"out": order[:]}

    with _noise() as (unraisable, seen):
        outcome = Runner(one_step(step)).run("r")
    assert outcome == Done({"out": ["sibling closed", "caught"], "log": []}, 1)
    assert CALLED == ["b"]  # release never ran
    assert unraisable == []  # no "generator ignored GeneratorExit"
    assert [str(w.message) for w in seen if "never yielded" in str(w.message)] == []


# --- SPEC, Closing suspended steps: a generator let go unfinished is closed "so its
# finally and with blocks run then, as they would for any Python generator": a caller's
# cleanup runs after that of what it called (innermost first), branches included. ------


def test_cancel_closes_a_step_innermost_first_through_nested_all_branches() -> None:
    order: list[str] = []

    def inner():
        try:
            return (yield Interrupt("inner"))
        finally:
            order.append("inner")

    def outer():
        try:
            return (yield All(inner()))
        finally:
            order.append("outer branch")

    def step(state):
        try:
            return {"out": (yield All(outer()))}
        finally:
            order.append("step")

    runner = Runner(one_step(step))
    assert isinstance(runner.run("r"), Paused)
    assert order == []
    runner.cancel("r")
    assert order == ["inner", "outer branch", "step"]


# --- SPEC, Conditional edges: "A step runs if ... at least one incoming edge comes from a
# step that ran and has no when or a when that is true". A false predicate on a later
# edge does not undo an earlier edge that lets the step run. ----------------------------


def _write(name: str):
    def step(state):
        return {"log": name}

    step.__name__ = name
    return step


def never(state) -> bool:
    return False


def always(state) -> bool:
    return True


@pytest.mark.parametrize("first_edge", ["plain", "true"])
def test_a_step_runs_when_any_incoming_edge_lets_it_whatever_the_edge_order(first_edge) -> None:
    graph = (
        Graph("g", {"out": LastWriteWins(), "log": Append()})
        .step("a", _write("a"))
        .step("b", _write("b"))
        .step("c", _write("c"))
    )
    graph = graph.edge("a", "c") if first_edge == "plain" else graph.edge("a", "c", when=always)
    graph = graph.edge("b", "c", when=never)  # added last: asked last
    outcome = Runner(graph).run("r")
    assert outcome == Done({"out": None, "log": ["a", "b", "c"]}, 2)


# --- SPEC, Failures: a StepError "ends the layer: steps that have not finished are not
# advanced further"; SPEC, Closing suspended steps: a generator let go unfinished (here,
# a failure) is closed, "so its finally and with blocks run then", quietly. -------------


def test_a_failing_layer_closes_its_suspended_siblings_before_the_error_is_raised() -> None:

    from pausegraph import StepError

    CALLED.clear()
    order: list[str] = []

    def waits(state):
        try:
            return {"out": (yield Interrupt("a?"))}
        finally:
            order.append("a closed")
            yield Effect(release, "a")  # dropped: the step is only closed

    def fails(state):
        raise ValueError("b fails")

    graph = Graph("g", {"out": LastWriteWins(), "log": Append()}).step("a", waits).step("b", fails)
    with _noise() as (unraisable, seen):
        runner = Runner(graph)
        with pytest.raises(StepError, match="'b'") as raised:
            runner.run("r")
        assert order == ["a closed"]  # closed by then, not left to the garbage collector
        del raised
        gc.collect()
    assert order == ["a closed"]
    assert CALLED == []
    assert unraisable == []
    assert [str(w.message) for w in seen if "never yielded" in str(w.message)] == []
    assert runner.state("r").status == "failed"


# --- SPEC, State: "a step that tries to mutate [the state] gets a TypeError"; values are
# normalised through msgpack, so hot and cold runs read the same: a custom Reducer's
# result included. ----------------------------------------------------------------------


def _acc_graph(reader: Any) -> Graph:
    from pausegraph import Reducer

    return (
        Graph("acc", {"acc": Reducer(lambda cur, x: (*cur, x), ()), "out": LastWriteWins()})
        .step("w", lambda state: {"acc": 1})
        .step("r", reader)
        .edge("w", "r")
    )


def test_a_custom_reducers_result_is_normalised_and_read_only() -> None:
    from pausegraph import StepError

    seen: list[Any] = []

    def reads(state):
        seen.append(type(state["acc"]))
        return {"out": state["acc"]}

    outcome = Runner(_acc_graph(reads)).run("r")
    assert outcome == Done({"acc": [1], "out": [1]}, 2)
    assert all(issubclass(t, list) for t in seen)  # the reducer's tuple reads as a list

    def mutates(state):
        state["acc"].append(2)  # the state is read-only, the reducer's result too
        return {"out": "changed"}

    runner = Runner(_acc_graph(mutates))
    with pytest.raises(StepError) as raised:
        runner.run("r2")
    assert isinstance(raised.value.__cause__, TypeError)
    assert runner.state("r2").values["acc"] == [1]


# --- SPEC, Failures: a layer's error fails the run (status "failed", Failure recorded);
# a reducer that calls sys.exit() fails the layer like any reducer error, it does not
# escape run() as SystemExit. ------------------------------------------------------------


def test_sys_exit_in_a_reducer_fails_the_run() -> None:

    from pausegraph import Reducer, StepError

    def leave(current, incoming):
        sys.exit(3)

    graph = Graph("g", {"n": Reducer(leave, 0)}).step("s", lambda state: {"n": 1})
    runner = Runner(graph)
    with pytest.raises(StepError, match="reducer"):
        runner.run("r")
    info = runner.state("r")
    assert info.status == "failed"
    assert info.failure is not None
    assert info.failure.error_type == "SystemExit"


# --- SPEC, Testing workflows: "a replay check for CI"; SPEC, Closing suspended steps: a
# generator let go unfinished is closed, and what it yields then "is not run, is not
# saved, and prints nothing". The dry replay lets every replayed step go. ---------------


def test_the_replay_check_closes_the_steps_it_replays_quietly() -> None:
    from pausegraph.testing import find_replay_failures

    CALLED.clear()
    order: list[str] = []

    def step(state):
        try:
            first = yield Interrupt("first")
            return {"out": [first, (yield Interrupt("second"))]}
        finally:
            order.append("closed")
            yield Effect(release, "lock")  # dropped when the step is only closed

    store = MemoryCheckpointer()
    runner = Runner(one_step(step), store)
    assert isinstance(runner.run("r"), Paused)
    assert isinstance(runner.resume("r", Resume(1)), Paused)
    del runner  # its held generator is closed here
    gc.collect()
    order.clear()
    with _noise() as (unraisable, seen):
        assert find_replay_failures(one_step(step), store) == []
        gc.collect()
    assert order == ["closed"]
    assert CALLED == []
    assert unraisable == []
    assert [str(w.message) for w in seen if "never yielded" in str(w.message)] == []


# --- SPEC, State: "a step that tries to mutate [the state] gets a TypeError": also when
# the layer before was finished by a cold resume, its finished steps' writes read back
# from the store. ------------------------------------------------------------------------


def test_writes_of_a_layer_finished_cold_are_read_only_to_the_next_layer() -> None:
    from pausegraph import StepError

    def a(state):
        return {"out": [1], "log": {"k": 1}}

    def b(state):
        return {"other": (yield Interrupt("b?"))}

    def c(state):
        state["out"].append(2)
        return {}

    graph = (
        Graph("g", {"out": LastWriteWins(), "other": LastWriteWins(), "log": Append()})
        .step("a", a)
        .step("b", b)
        .step("c", c)
        .edge("a", "c")
        .edge("b", "c")
    )
    store = MemoryCheckpointer()
    assert isinstance(Runner(graph, store).run("r"), Paused)
    cold = Runner(graph, store)  # a's writes come back from the store
    with pytest.raises(StepError, match="'c'") as raised:
        cold.resume("r", Resume(5))
    assert isinstance(raised.value.__cause__, TypeError)
    assert cold.state("r").values["out"] == [1]


# --- SPEC, Testing workflows: "a replay check for CI: every paused run in a store still
# replays against the current code without a NondeterminismError". A step that went on
# past a timed-out interrupt is replayed past it, as a resume replays it. ---------------


def _after_a_timeout(second: str) -> Graph:
    from pausegraph import InterruptTimeout

    def step(state):
        with contextlib.suppress(InterruptTimeout):
            yield Interrupt("a", timeout=10)
        return {"out": (yield Interrupt(second))}

    return Graph("g", {"out": LastWriteWins()}).step("s", step)


def test_the_replay_check_replays_past_a_timed_out_interrupt() -> None:
    from pausegraph.testing import FakeClock, find_replay_failures

    clock = FakeClock()
    store = MemoryCheckpointer()
    runner = Runner(_after_a_timeout("b"), store, clock=clock)
    assert isinstance(runner.run("r"), Paused)
    clock.advance(10)
    moved = runner.tick()
    assert isinstance(moved["r"], Paused)
    assert moved["r"].payload == "b"
    assert find_replay_failures(_after_a_timeout("b"), store) == []
    failures = find_replay_failures(_after_a_timeout("c"), store)
    assert [(f.run_id, f.step_id) for f in failures] == [("r", "s")]
    assert "NondeterminismError" in failures[0].error


# --- SPEC, Interrupts: "An effect is identified by its function's module and qualified
# name". A function of the script Python runs (module __main__) is recorded under the
# name that script is imported as, so a same-named function of another module is not it.


def _renamed(fn: Any, module: str) -> Any:
    import types

    copy = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__)
    copy.__module__ = module
    copy.__qualname__ = "lookup"
    return copy


def _lookup(x: int) -> int:
    return x


def _looking_up(fn: Any) -> Graph:
    def step(state):
        got = yield Effect(fn, 1)
        ok = yield Interrupt("ok?")
        return {"out": [got, ok]}

    return Graph("lookups", {"out": LastWriteWins()}).step("s", step)


def test_an_effect_of_the_main_script_is_not_matched_by_another_modules_function() -> None:

    main = sys.modules.get("__main__")
    spec_name = getattr(getattr(main, "__spec__", None), "name", None)
    if spec_name in (None, "", "__main__") and not getattr(main, "__file__", None):
        pytest.skip("__main__ has no import name here (an interactive session)")
    store = MemoryCheckpointer()
    for run_id in ("r", "r2"):
        paused = Runner(_looking_up(_renamed(_lookup, "__main__")), store).run(run_id)
        assert isinstance(paused, Paused)
    with pytest.raises(NondeterminismError, match="lookup"):
        Runner(_looking_up(_renamed(_lookup, "elsewhere")), store).resume("r", Resume(True))
    # the same function of the script still replays
    done = Runner(_looking_up(_renamed(_lookup, "__main__")), store).resume("r2", Resume(True))
    assert done == Done({"out": [1, True]}, 1)


# --- SPEC, Steps: an effect's result "is recorded in the step's journal and saved durably
# *before* it is sent into the step"; SPEC, Checkpoints (Durability): a checkpoint is
# synced "before an Effect's function is called". Both with and without an executor. ----

EVENTS: list[str] = []


class _RecordingStore(FileCheckpointer):
    def save(self, checkpoint: Any, *args: Any, **kwargs: Any) -> Any:
        EVENTS.append(f"save:{checkpoint.label}")
        return super().save(checkpoint, *args, **kwargs)

    def sync(self, *args: Any, **kwargs: Any) -> Any:
        EVENTS.append("sync")
        return super().sync(*args, **kwargs)


def _noted(x: int) -> int:
    EVENTS.append("effect")
    return x


@pytest.mark.parametrize("executor", [None, "threads"])
def test_every_save_is_synced_before_an_effect_is_called_and_its_result_saved_before_use(
    tmp_path, executor
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    store = _RecordingStore(tmp_path / "runs")

    def first(state):
        return {"out": 0}

    def step(state):
        a = yield Effect(_noted, 1)
        EVENTS.append(f"got:{a}")
        b = yield Effect(_noted, 2)
        EVENTS.append(f"got:{b}")
        return {"out": [a, b]}

    graph = Graph("g", {"out": LastWriteWins()}).step("a", first).step("s", step).edge("a", "s")
    EVENTS.clear()
    pool = ThreadPoolExecutor(2) if executor else None
    try:
        outcome = Runner(graph, store, executor=pool).run("r")
    finally:
        if pool is not None:
            pool.shutdown()
    assert outcome == Done({"out": [1, 2]}, 2)
    assert EVENTS.count("effect") == 2
    for n, event in enumerate(EVENTS):
        if event == "effect":  # nothing saved and unsynced when an effect is called
            last_save = max(i for i in range(n) if EVENTS[i].startswith("save:"))
            assert "sync" in EVENTS[last_save:n], EVENTS
        if event.startswith("got:"):  # the result was saved (and synced) before the step saw it
            last_effect = max(i for i in range(n) if EVENTS[i] == "effect")
            assert "save:effect:s" in EVENTS[last_effect:n], EVENTS
            assert "sync" in EVENTS[EVENTS.index("save:effect:s", last_effect) : n], EVENTS


# --- SPEC, Commands: "Update(edits): ... write edits through the reducers, as a step
# would"; SPEC, State: the state belongs to the run (read-only to everyone else). What the
# caller does to its own edits dict after the call never reaches the run. ---------------


@pytest.mark.parametrize("where", ["dynamic pause", "breakpoint"])
def test_changing_the_edits_after_an_update_does_not_change_the_run(where) -> None:
    from pausegraph import MergeMap, Update

    def ask(state):
        return {"out": (yield Interrupt("q"))}

    graph = Graph("g", {"out": LastWriteWins(), "m": MergeMap(), "x": LastWriteWins()}).step(
        "a", ask
    )
    before = {"a"} if where == "breakpoint" else set()
    runner = Runner(graph, MemoryCheckpointer(), interrupt_before=before)
    assert isinstance(runner.run("r"), Paused)
    edits: dict[str, Any] = {"m": {"k": [1]}, "x": [3, [4]]}
    paused = runner.resume("r", Update(edits))
    assert isinstance(paused, Paused)
    assert paused.payload == "q"
    edits["m"]["k"].append(9)  # the caller's own objects, changed after the call
    edits["x"][1].append(5)
    outcome = runner.resume("r", Resume(1))
    assert outcome == Done({"out": 1, "m": {"k": [1]}, "x": [3, [4]]}, 1)


# --- SPEC, State / Checkpoints: "A value msgpack cannot encode is a SerializationError
# naming the channel ... (the run then fails: see Failures)": also a value whose own
# methods raise while the reducer looks at it. -----------------------------------------


class _Treacherous:
    @property  # type: ignore[misc]
    def __class__(self):
        raise RuntimeError("no class for you")


def test_a_write_whose_own_methods_raise_in_the_reducer_fails_the_run_naming_the_channel():
    from pausegraph import SerializationError

    graph = Graph("g", {"log": Append()}).step("s", lambda state: {"log": _Treacherous()})
    runner = Runner(graph)
    with pytest.raises(SerializationError, match="'log'"):
        runner.run("r")
    info = runner.state("r")
    assert info.status == "failed"
    assert info.failure is not None
    assert info.failure.step_id == "s"
