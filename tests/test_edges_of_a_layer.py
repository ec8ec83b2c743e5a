"""Edges of a layer: failures beside effects, re-answers, refused commands, closing, size.

Each test is named for the rule of SPEC.md it pins, and runs on a memory and a
file store where the store matters.
"""

from __future__ import annotations

import gc
import itertools
import subprocess
import sys
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from pausegraph import (
    After,
    All,
    Append,
    CheckpointError,
    ConflictError,
    Continue,
    Done,
    Effect,
    EffectError,
    Failure,
    FileCheckpointer,
    Goto,
    Graph,
    GraphError,
    Interrupt,
    LastWriteWins,
    MemoryCheckpointer,
    Paused,
    Reducer,
    Resume,
    ResumeError,
    Runner,
    SerializationError,
    StepError,
    Update,
)
from pausegraph._cli_render import status_of

Store = MemoryCheckpointer | FileCheckpointer


@pytest.fixture(params=["memory", "file"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[str], Store]:
    """A factory of fresh stores of the parametrized kind (a name gives a new directory)."""

    def make(name: str = "store") -> Store:
        if request.param == "memory":
            return MemoryCheckpointer()
        return FileCheckpointer(tmp_path / name)

    return make


@pytest.fixture
def store(make_store: Callable[[str], Store]) -> Store:
    return make_store("store")


# --- 1. a sibling failure does not repeat an effect -----------------------------------


def test_a_sibling_failure_does_not_repeat_a_finished_steps_effect(store: Store) -> None:
    charged: list[str] = []
    pay_calls: list[int] = []
    raised: list[int] = []

    def charge(amount: int) -> str:
        charged.append(f"charge {amount}")
        return "receipt"

    def pay(state: Any) -> Any:
        pay_calls.append(1)
        receipt = yield Effect(charge, 10)
        return {"paid": receipt}

    def boom(state: Any) -> Any:
        if not raised:
            raised.append(1)
            msg = "boom once"
            raise RuntimeError(msg)
        return {"boomed": True}

    graph = (
        Graph("sib", {"paid": LastWriteWins(), "boomed": LastWriteWins()})
        .step("pay", pay)
        .step("boom", boom)
    )
    runner = Runner(graph, store)
    with pytest.raises(StepError):
        runner.run("r")
    info = runner.state("r")
    assert info.status == "failed"
    assert info.failure is not None
    assert (info.failure.step_id, info.failure.error_type) == ("boom", "RuntimeError")
    assert "boom once" in info.failure.message
    assert runner.history("r")[-1].label == "failed:boom"

    assert runner.run("r") == Done({"paid": "receipt", "boomed": True}, 1)
    assert runner.state("r").status == "done"
    assert charged == ["charge 10"]
    assert pay_calls == [1]


# --- 3. a failed step re-answered --------------------------------------------------------


def test_a_failed_step_is_re_answered_and_what_followed_the_answer_runs_again(
    store: Store,
) -> None:
    noted: list[Any] = []

    def note(x: Any) -> Any:
        noted.append(x)
        return f"noted {x}"

    def ask(state: Any) -> Any:
        x = yield Interrupt("q")
        n = yield Effect(note, x)
        if x == "bad":
            msg = "bad answer"
            raise ValueError(msg)
        return {"answer": x, "note": n}

    graph = Graph("reask", {"answer": LastWriteWins(), "note": LastWriteWins()}).step("ask", ask)
    runner = Runner(graph, store)
    paused = runner.run("r")
    assert isinstance(paused, Paused)
    (pending,) = paused.interrupts
    with pytest.raises(StepError):
        runner.resume("r", Resume("bad"))
    info = runner.state("r")
    assert info.status == "failed"
    assert info.failure is not None
    assert (info.failure.step_id, info.failure.error_type) == ("ask", "ValueError")
    assert noted == ["bad"]

    before = runner.history("r")
    with pytest.raises(ResumeError):
        runner.resume("r", Resume(answers={"no-such-id": "good"}))
    assert runner.history("r") == before
    assert runner.state("r").status == "failed"

    outcome = runner.resume("r", Resume(answers={pending.id: "good"}))
    assert outcome == Done({"answer": "good", "note": "noted good"}, 1)
    # the effect after the re-answered interrupt runs again, on purpose
    assert noted == ["bad", "good"]


# --- 4. Update on a failed run --------------------------------------------------------


def test_update_on_a_failed_run_is_applied_before_the_retry(store: Store) -> None:
    sibling_calls: list[int] = []
    fragile_calls: list[Any] = []

    def sibling(state: Any) -> Any:
        sibling_calls.append(1)
        return {"log": ["sibling"]}

    def fragile(state: Any) -> Any:
        fragile_calls.append(state["fix"])
        if not state["fix"]:
            msg = "not fixed"
            raise RuntimeError(msg)
        return {"log": ["fragile"]}

    graph = (
        Graph("upd", {"log": Append(), "fix": LastWriteWins()})
        .step("sibling", sibling)
        .step("fragile", fragile)
    )
    runner = Runner(graph, store)
    with pytest.raises(StepError):
        runner.run("r", {"fix": False})
    assert runner.state("r").status == "failed"
    outcome = runner.resume("r", Update({"fix": True}))
    assert outcome == Done({"log": ["sibling", "fragile"], "fix": True}, 1)
    assert sibling_calls == [1]
    assert fragile_calls == [False, True]


def _refusing_bad(current: Any, value: Any) -> Any:
    """A reducer that refuses the write "bad"."""
    if value == "bad":
        msg = "refused bad"
        raise ValueError(msg)
    return value


def _asking(channel: str, question: str) -> Any:
    def step(state: Any) -> Any:
        answer = yield Interrupt(question)
        return {channel: answer}

    return step


def test_a_step_whose_writes_a_reducer_refused_takes_its_answer_again(store: Store) -> None:
    """SPEC, Failures: a failing step that had just been answered may be answered again."""
    graph = Graph("red", {"n": Reducer(_refusing_bad, 0)}).step("ask", _asking("n", "n?"))
    runner = Runner(graph, store)
    [pending] = runner.run("r").interrupts
    with pytest.raises(StepError, match="the reducer of channel 'n' raised ValueError"):
        runner.resume("r", Resume("bad"))
    failed = runner.state("r")
    assert failed.failure == Failure("ask", "ValueError", "refused bad")
    with pytest.raises(StepError):  # a retry replays the same answer: the same refusal
        runner.resume("r", Continue())
    assert Runner(runner.graph, store).resume("r", Resume(answers={pending.id: 7})) == Done(
        {"n": 7}, 1
    )


def test_of_two_writers_the_one_whose_write_a_reducer_refused_fails_and_is_answered_again(
    store: Store,
) -> None:
    graph = (
        Graph("two", {"tot": Reducer(_refusing_bad, "")})
        .step("a", _asking("tot", "a"))
        .step("b", _asking("tot", "b"))
    )
    runner = Runner(graph, store)
    ids = {i.step_id: i.id for i in runner.run("r").interrupts}
    with pytest.raises(StepError):
        runner.resume("r", Resume(answers={ids["a"]: "ok", ids["b"]: "bad"}))
    assert runner.state("r").failure == Failure("b", "ValueError", "refused bad")
    done = Runner(graph, store).resume("r", Resume(answers={ids["b"]: "good"}))
    assert done == Done({"tot": "good"}, 1)


def test_an_update_edit_a_reducer_refuses_at_the_end_of_the_layer_is_dropped(store: Store) -> None:
    """The run is not stuck: the failed checkpoint drops the refused edit, and a retry goes on."""

    def capped(total: Any, n: Any) -> Any:
        if total + n > 10:
            msg = f"cap: {total}+{n}"
            raise ValueError(msg)
        return total + n

    def five(state: Any) -> Any:
        return {"t": 5}

    def ask(state: Any) -> Any:
        yield Interrupt("ok?")
        return {}

    graph = Graph("cap", {"t": Reducer(capped, 0)}).step("a", five).step("b", ask)
    runner = Runner(graph, store)
    runner.run("r")
    runner.resume("r", Update({"t": 8}))  # 0 + 8 fits: kept for the end of the layer
    with pytest.raises(StepError, match="cap: 5"):
        runner.resume("r", Resume(True))  # 5 + 8 does not
    failed = runner.state("r")
    assert failed.status == "failed"
    assert failed.edits == ()  # refused, so dropped, and the failure says so
    assert failed.failure is not None
    assert failed.failure.message.endswith("(an Update edit, dropped: a retry goes on)")
    assert Runner(graph, store).resume("r", Continue()) == Done({"t": 5}, 1)


def test_a_refused_step_that_finished_in_an_earlier_claim_calls_its_effect_once(
    store: Store,
) -> None:
    """Its journal was not kept when it finished: it stays finished rather than run again."""
    calls: list[str] = []

    def charge(who: str) -> str:
        calls.append(who)
        return who

    def pays(state: Any) -> Any:
        yield Effect(charge, "A")
        return {"c": "bad"}  # refused, but only once "b" is answered and the layer folds

    graph = (
        Graph("early", {"c": Reducer(_refusing_bad, None), "d": LastWriteWins()})
        .step("a", pays)
        .step("b", _asking("d", "q"))
    )
    runner = Runner(graph, store)
    runner.run("r")
    with pytest.raises(StepError, match="refused bad"):
        runner.resume("r", Resume(1))
    for _ in range(2):
        with pytest.raises(StepError, match="refused bad"):
            Runner(graph, store).run("r")  # fails the same way until Update or Goto
    assert calls == ["A"]
    again = Runner(graph, store).resume("r", Goto("a"))
    assert isinstance(again, Paused)  # b asks again
    assert calls == ["A", "A"]  # Goto runs the layer again, on purpose


def test_a_reducer_may_change_in_place_a_write_it_returned_earlier(store: Store) -> None:
    def gather(current: Any, item: Any) -> Any:
        if current is None:
            return item  # the write itself becomes the value the next call changes
        current.extend(item)
        return current

    def one(state: Any) -> Any:
        return {"c": [1]}

    def two(state: Any) -> Any:
        return {"c": [2]}

    graph = Graph("own", {"c": Reducer(gather, None)}).step("a", one).step("b", two)
    assert Runner(graph, store).run("r") == Done({"c": [1, 2]}, 1)


def test_a_value_for_a_failed_run_with_two_answers_to_give_again_says_so(store: Store) -> None:
    def branch(state: Any, i: int) -> Any:
        answer = yield Interrupt(f"b{i}")
        if i == 1 and state["n"] is None:
            msg = "branch 1 needs n"
            raise RuntimeError(msg)
        return answer

    def both(state: Any) -> Any:
        return {"o": (yield All(branch(state, 0), branch(state, 1)))}

    runner = Runner(
        Graph("all", {"n": LastWriteWins(), "o": LastWriteWins()}).step("a", both), store
    )
    ids = [i.id for i in runner.run("r").interrupts]
    with pytest.raises(StepError):
        runner.resume("r", Resume(answers={ids[0]: "x", ids[1]: "y"}))
    with pytest.raises(ResumeError) as refused:
        runner.resume("r", Resume("z"))
    assert str(refused.value).startswith(
        f"run 'r' has 2 interrupts to answer again (answerable again, as the claim that failed "
        f"answered them: {ids[0]}, {ids[1]}): answer them by id"
    )


# --- 6. status is the same for every reader ------------------------------------------


def _two_layers() -> Graph:
    return (
        Graph("two", {"log": Append()})
        .step("a", lambda state: {"log": ["a"]})
        .step("b", lambda state: {"log": ["b"]})
        .edge("a", "b")
    )


def _status_everywhere(store: Store) -> set[str]:
    latest = store.latest("two", "r")
    assert latest is not None
    return {
        Runner(_two_layers(), store, interrupt_after={"b"}).state("r").status,
        Runner(_two_layers(), store).state("r").status,
        status_of(latest),
    }


def test_status_is_the_same_for_every_reader_even_before_an_owed_after_pause(
    make_store: Callable[[str], Store],
) -> None:
    store = make_store("store")
    assert Runner(_two_layers(), store, interrupt_after={"b"}).run("r") == Paused(2, After("b"))
    assert _status_everywhere(store) == {"paused"}

    died = make_store("died")
    for meta in store.list("two", "r")[:-1]:
        checkpoint = store.load("two", "r", meta.seq)
        assert checkpoint is not None
        died.save(checkpoint)
    assert _status_everywhere(died) == {"queued"}
    # a Runner without breakpoints honours the recorded one
    assert Runner(_two_layers(), died).run("r") == Paused(2, After("b"))
    assert _status_everywhere(died) == {"paused"}
    assert Runner(_two_layers(), died).resume("r", Continue()) == Done({"log": ["a", "b"]}, 2)
    assert _status_everywhere(died) == {"done"}


# --- 7. a finally that yields an Effect runs it exactly once -------------------------


def test_an_effect_in_finally_runs_exactly_once_across_a_dropped_runner(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    released: list[int] = []
    closed: list[int] = []

    def release() -> None:
        released.append(1)

    def hold(state: Any) -> Any:
        try:
            x = yield Interrupt("q")
        finally:
            closed.append(1)
            yield Effect(release)
        return {"out": x}

    graph = Graph("fin", {"out": LastWriteWins()}).step("hold", hold)
    runner_a = Runner(graph, store)
    assert isinstance(runner_a.run("r"), Paused)
    del runner_a
    gc.collect()
    captured = capsys.readouterr()
    assert captured.err == ""
    assert captured.out == ""
    assert closed == [1]  # the collected Runner closed its generator: finally ran
    assert released == []  # ... but the Effect yielded while closing was dropped

    runner_b = Runner(graph, store)
    assert runner_b.resume("r", Resume("x")) == Done({"out": "x"}, 1)
    assert closed == [1, 1]
    assert released == [1]
    assert capsys.readouterr().err == ""


def test_an_effect_in_finally_runs_once_when_a_hot_resume_finishes_the_step(
    store: Store,
) -> None:
    released: list[int] = []

    def release() -> None:
        released.append(1)

    def hold(state: Any) -> Any:
        try:
            x = yield Interrupt("q")
        finally:
            yield Effect(release)
        return {"out": x}

    graph = Graph("fin", {"out": LastWriteWins()}).step("hold", hold)
    runner = Runner(graph, store)
    assert isinstance(runner.run("r"), Paused)
    assert runner.resume("r", Resume("x")) == Done({"out": "x"}, 1)
    assert released == [1]
    assert "effect:hold" in [meta.label for meta in runner.history("r")]
    del runner
    gc.collect()
    assert released == [1]


def test_cancel_closes_the_live_generator_without_running_the_effect_in_finally(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    released: list[int] = []
    closed: list[int] = []

    def release() -> None:
        released.append(1)

    def hold(state: Any) -> Any:
        try:
            x = yield Interrupt("q")
        finally:
            closed.append(1)
            yield Effect(release)
        return {"out": x}

    graph = Graph("fin", {"out": LastWriteWins()}).step("hold", hold)
    runner = Runner(graph, store)
    assert isinstance(runner.run("r"), Paused)
    info = runner.cancel("r", "no longer needed")
    assert info.status == "cancelled"
    assert closed == [1]
    assert released == []
    assert capsys.readouterr().err == ""
    # Goto re-opens it; when the step really finishes, the cleanup effect runs once
    assert isinstance(runner.resume("r", Goto("hold")), Paused)
    assert runner.resume("r", Resume("y")) == Done({"out": "y"}, 1)
    assert closed == [1, 1]
    assert released == [1]


@pytest.mark.parametrize("depth", [1, 2])
def test_closing_a_step_inside_yield_from_drops_the_helpers_effect_quietly(
    store: Store, depth: int
) -> None:
    """A helper reached by ``yield from`` whose ``finally`` yields an ``Effect``: closed
    first, its effect dropped unrun and unmarked by no warning; run to its end, the
    effect runs once."""
    released: list[int] = []
    closed: list[int] = []

    def release() -> None:
        released.append(1)

    def helper() -> Any:
        try:
            x = yield Interrupt("q")
        finally:
            closed.append(1)
            yield Effect(release)
        return x

    def middle() -> Any:
        return (yield from helper())

    def hold(state: Any) -> Any:
        x = yield from (helper() if depth == 1 else middle())
        return {"out": x}

    graph = Graph("fin", {"out": LastWriteWins()}).step("hold", hold)
    runner = Runner(graph, store)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert isinstance(runner.run("r"), Paused)
        assert runner.cancel("r").status == "cancelled"
        gc.collect()
        assert (closed, released) == ([1], [])
        assert isinstance(runner.run("s"), Paused)
        assert runner.resume("s", Resume(2)) == Done({"out": 2}, 1)
        gc.collect()
    assert [str(w.message) for w in caught] == []
    assert (closed, released) == ([1, 1], [1])


def test_a_finally_that_cleans_up_through_yield_from_is_closed_quietly(store: Store) -> None:
    """A ``finally`` that runs ``yield from cleanup()``, whose effects (one in its own
    ``finally``) are dropped while closing: no warning, nothing run; the whole cleanup
    runs once when the step really finishes."""
    released: list[str] = []
    events: list[str] = []

    def release(what: str) -> None:
        released.append(what)

    def cleanup() -> Any:
        try:
            yield Effect(release, "a")
        finally:
            events.append("cleanup finally")
            yield Effect(release, "b")

    def hold(state: Any) -> Any:
        try:
            return {"out": (yield Interrupt("q"))}
        finally:
            events.append("step finally")
            yield from cleanup()

    graph = Graph("fin", {"out": LastWriteWins()}).step("hold", hold)
    runner = Runner(graph, store)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert isinstance(runner.run("r"), Paused)
        assert runner.cancel("r").status == "cancelled"
        gc.collect()
        assert (events, released) == (["step finally", "cleanup finally"], [])
        assert isinstance(runner.run("s"), Paused)
        assert runner.resume("s", Resume(2)) == Done({"out": 2}, 1)
        gc.collect()
    assert [str(w.message) for w in caught] == []
    assert released == ["a", "b"]


# --- 8. a refused command keeps the live generator -----------------------------------


def test_a_refused_command_keeps_the_live_generator(store: Store) -> None:
    calls: list[int] = []
    finals: list[int] = []

    def ask(state: Any) -> Any:
        calls.append(1)
        try:
            x = yield Interrupt("q")
        finally:
            finals.append(1)
        return {"out": x}

    graph = Graph("keep", {"out": LastWriteWins()}).step("ask", ask)
    runner = Runner(graph, store)
    assert isinstance(runner.run("r"), Paused)
    before = runner.history("r")
    with pytest.raises(ResumeError):
        runner.resume("r", Continue())
    with pytest.raises(ResumeError):
        runner.resume("r", Resume(answers={"nope": 1}))
    with pytest.raises(SerializationError):
        runner.resume("r", Resume(object()))
    with pytest.raises(GraphError):
        runner.resume("r", Update({"no_such_channel": 5}))
    assert finals == []
    assert runner.history("r") == before
    assert runner.resume("r", Resume(1)) == Done({"out": 1}, 1)
    assert calls == [1]  # resumed hot: the step was not called again
    assert finals == [1]


@pytest.mark.parametrize(
    "how", ["resume", "submit", "goto"], ids=["resume", "submit", "goto-resume"]
)
def test_a_command_whose_save_fails_keeps_the_live_generator(
    store: Store, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """A claim whose save fails (a full disk) claimed nothing: the suspended step is
    left as it was, not closed, and the command given again goes on hot."""
    calls: list[int] = []
    finals: list[int] = []

    def ask(state: Any) -> Any:
        calls.append(1)
        try:
            x = yield Interrupt("q")
        finally:
            finals.append(1)
        return {"out": x}

    graph = Graph("keep", {"out": LastWriteWins()}).step("ask", ask)
    runner = Runner(graph, store)
    assert isinstance(runner.run("r"), Paused)
    before = runner.history("r")
    saving = store.save

    def full(checkpoint: Any) -> None:
        raise CheckpointError("no space left on the device")

    monkeypatch.setattr(store, "save", full)
    command = Goto("ask") if how == "goto" else Resume(1)
    with pytest.raises(CheckpointError, match="no space left"):
        getattr(runner, "submit" if how == "submit" else "resume")("r", command)
    assert finals == []
    monkeypatch.setattr(store, "save", saving)
    assert runner.history("r") == before
    assert runner.state("r").status == "paused"
    if how == "submit":
        assert runner.submit("r", Resume(1)).status == "queued"
        assert finals == [1]  # a saved submit lets go of the pause: a driver replays the step
        assert runner.run("r") == Done({"out": 1}, 1)
        assert (calls, finals) == ([1, 1], [1, 1])
    elif how == "goto":  # the Goto, saved, closes the suspended step and asks again
        assert isinstance(runner.resume("r", Goto("ask")), Paused)
        assert (calls, finals) == ([1, 1], [1])
    else:
        assert runner.resume("r", Resume(1)) == Done({"out": 1}, 1)
        assert (calls, finals) == ([1], [1])  # resumed hot: the step was not called again


def _picky(current: Any, new: Any) -> Any:
    if new == "bad":
        raise ValueError("refused")
    return new


@pytest.mark.parametrize(
    "command",
    [Goto("b", update={"p": "bad"}), Goto("a", update={"p": "bad"}), Update({"p": "bad"})],
    ids=["goto-later", "goto-same", "goto-after-a-kept-update"],
)
@pytest.mark.parametrize("how", ["resume", "submit"])
def test_a_command_whose_edit_a_reducer_refuses_keeps_the_live_generator(
    store: Store, command: Any, how: str
) -> None:
    """Refused where given (StepError), nothing saved, the suspended step left as it was.

    An ``Update`` at a dynamic pause is kept for the end of the layer (SPEC), so
    its edit is refused only by a ``Goto``, which applies kept edits first.
    """
    calls: list[int] = []
    finals: list[int] = []

    def a(state: Any) -> Any:
        calls.append(1)
        try:
            x = yield Interrupt("q")
        finally:
            finals.append(1)
        return {"log": [x]}

    channels = {"log": Append(), "p": Reducer(_picky, None)}
    graph = Graph("g", channels).step("a", a).step("b", lambda s: {"log": ["b"]}).edge("a", "b")
    runner = Runner(graph, store)
    assert isinstance(runner.run("r"), Paused)
    if isinstance(command, Update):
        runner.resume("r", command)  # kept at the pause, for the end of the layer
        command = Goto("b")
    before = runner.history("r")
    with pytest.raises(StepError, match="the reducer of channel 'p' raised ValueError: refused"):
        getattr(runner, how)("r", command)
    assert runner.history("r") == before
    assert runner.state("r").status == "paused"
    assert finals == []
    if runner.state("r").edits:  # the kept bad edit fails the layer, and is dropped
        with pytest.raises(StepError, match="the reducer of channel 'p' raised"):
            runner.resume("r", Resume(1))
        failure = runner.state("r").failure
        assert failure is not None
        assert "an Update edit, dropped" in failure.message
        done = runner.run("r")
    else:
        done = runner.resume("r", Resume(1))
    assert isinstance(done, Done)
    assert done.state["log"] == [1, "b"]
    assert (calls, finals) == ([1], [1])  # resumed hot: the step was not called again


# --- 9. property: retries after one-shot failures give the clean result --------------


@st.composite
def failing_layered_flows(draw: st.DrawFn) -> tuple[list[int], dict[str, str]]:
    sizes = draw(st.lists(st.integers(1, 3), min_size=1, max_size=4))
    ids = [f"s{k}_{i}" for k, size in enumerate(sizes) for i in range(size)]
    failing = draw(st.sets(st.sampled_from(ids)))
    where = {sid: draw(st.sampled_from(["before", "after"])) for sid in sorted(failing)}
    return sizes, where


def _layered(
    sizes: list[int],
    where: dict[str, str],
    calls: dict[str, int],
    raised: set[str],
) -> Graph:
    def effect(sid: str, seen: int) -> str:
        calls[sid] = calls.get(sid, 0) + 1
        return f"{sid}@{seen}"

    def make(sid: str) -> Callable[[Any], Any]:
        def step(state: Any) -> Any:
            if where.get(sid) == "before" and sid not in raised:
                raised.add(sid)
                msg = f"{sid} fails before its effect"
                raise RuntimeError(msg)
            result = yield Effect(effect, sid, len(state["log"]))
            if where.get(sid) == "after" and sid not in raised:
                raised.add(sid)
                msg = f"{sid} fails after its effect"
                raise RuntimeError(msg)
            return {"log": [result], sid: result}

        return step

    ids = [[f"s{k}_{i}" for i in range(size)] for k, size in enumerate(sizes)]
    channels: dict[str, Any] = {"log": Append()}
    channels.update({sid: LastWriteWins() for layer in ids for sid in layer})
    graph = Graph("prop", channels)
    for layer in ids:
        for sid in layer:
            graph = graph.step(sid, make(sid))
    for upper, lower in itertools.pairwise(ids):
        for src in upper:
            for dst in lower:
                graph = graph.edge(src, dst)
    return graph


@given(failing_layered_flows())
def test_retrying_one_shot_failures_gives_the_clean_result_and_each_effect_once(
    flow: tuple[list[int], dict[str, str]],
) -> None:
    sizes, where = flow
    clean_calls: dict[str, int] = {}
    clean = Runner(_layered(sizes, {}, clean_calls, set()), MemoryCheckpointer()).run("r")
    assert isinstance(clean, Done)

    calls: dict[str, int] = {}
    runner = Runner(_layered(sizes, where, calls, set()), MemoryCheckpointer())
    failures = 0
    outcome: Any = None
    while outcome is None:
        try:
            outcome = runner.run("r")
        except StepError:
            failures += 1
            assert runner.state("r").status == "failed"
            assert failures <= len(where)
    event(f"failures={failures}")
    assert outcome == clean
    assert failures >= (1 if where else 0)
    assert calls == dict.fromkeys(clean_calls, 1)


# --- 9b. property: compensations forked in `except`, then the error raised again ------


@st.composite
def compensating_branches(draw: st.DrawFn) -> tuple[list[int], set[str], list[int], bool]:
    """Branches of effects (how many in each), which effects fail once, compensations."""
    lengths = draw(st.lists(st.integers(1, 2), min_size=1, max_size=3))
    names = [f"b{i}e{j}" for i, n in enumerate(lengths) for j in range(n)]
    failing = draw(st.sets(st.sampled_from(names)))
    comps = [draw(st.integers(0, 2)) for _ in lengths]
    return lengths, failing, comps, draw(st.booleans())


def _compensating(
    lengths: list[int], failing: set[str], comps: list[int], calls: dict[str, int]
) -> Graph:
    def act(name: str) -> str:
        calls[name] = calls.get(name, 0) + 1
        if name in failing and calls[name] == 1:
            msg = f"{name} is down"
            raise ValueError(msg)
        return name

    def do(name: str) -> Any:
        return (yield Effect(act, name))

    def branch(i: int) -> Any:
        try:
            got = []
            for j in range(lengths[i]):
                got.append((yield Effect(act, f"b{i}e{j}")))
            return got
        except EffectError:
            yield All(*(do(f"b{i}c{m}") for m in range(comps[i])))  # undo, then fail
            raise

    def step(state: Any) -> Any:
        try:
            return {"out": (yield All(*(branch(i) for i in range(len(lengths)))))}
        except EffectError:
            yield All(do("undo-all"))
            raise

    return Graph("comp", {"out": LastWriteWins()}).step("s", step)


@given(compensating_branches())
def test_retries_through_compensating_branches_call_each_effect_once_more_per_failure(
    flow: tuple[list[int], set[str], list[int], bool],
) -> None:
    lengths, failing, comps, cold = flow
    clean = Runner(_compensating(lengths, set(), comps, {}), MemoryCheckpointer()).run("r")
    assert isinstance(clean, Done)
    calls: dict[str, int] = {}
    store = MemoryCheckpointer()
    graph = _compensating(lengths, failing, comps, calls)
    runner = Runner(graph, store)
    failures = 0
    outcome: Any = None
    while outcome is None:
        if cold:
            runner = Runner(graph, store)
        try:
            outcome = runner.run("r")
        except EffectError:
            failures += 1
            assert failures <= len(failing)
    event(f"failures={failures}")
    assert outcome == clean
    assert failures == len(failing)  # each failing effect fails the run once, then is retried
    for i, n in enumerate(lengths):
        mine = {f"b{i}e{j}" for j in range(n)} & failing
        for j in range(n):
            assert calls[f"b{i}e{j}"] == 1 + (f"b{i}e{j}" in failing)
        for m in range(comps[i]):  # a branch undoes once per error it was given
            assert calls.get(f"b{i}c{m}", 0) == len(mine)
    assert calls.get("undo-all", 0) == failures


# --- 10. a long interrupt loop stays small on the file store -------------------------

ROUNDS = 1000


def _loop(state: Any) -> Any:
    n = 0
    x = None
    while n < ROUNDS:
        x = yield Interrupt({"round": n, "pad": "x" * 100})
        n += 1
    return {"rounds": n, "last": x}


def _size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def test_a_thousand_round_interrupt_loop_stays_under_two_megabytes(tmp_path: Path) -> None:
    graph = Graph("loop", {"rounds": LastWriteWins(), "last": LastWriteWins()}).step("loop", _loop)
    root = tmp_path / "store"
    runner = Runner(graph, FileCheckpointer(root))
    outcome = runner.run("r")
    for n in range(ROUNDS - 1):
        assert isinstance(outcome, Paused)
        assert outcome.payload == {"round": n, "pad": "x" * 100}
        outcome = runner.resume("r", Resume(n))
    assert isinstance(outcome, Paused)
    assert outcome.payload == {"round": ROUNDS - 1, "pad": "x" * 100}
    assert _size(root) < 2 * 1024 * 1024
    cold = Runner(graph, FileCheckpointer(root))
    assert cold.resume("r", Resume("end")) == Done({"rounds": ROUNDS, "last": "end"}, 1)
    assert _size(root) < 2 * 1024 * 1024


# --- 11. cancel and delete, start and submit ------------------------------------------


def _asker() -> Graph:
    def ask(state: Any) -> Any:
        x = yield Interrupt("q")
        return {"out": x}

    return Graph("ask", {"out": LastWriteWins()}).step("ask", ask)


def test_a_cancelled_run_refuses_commands_but_goto_reopens_it(store: Store) -> None:
    runner = Runner(_asker(), store)
    assert isinstance(runner.run("r"), Paused)
    info = runner.cancel("r", "changed my mind")
    assert info.status == "cancelled"
    assert runner.state("r").status == "cancelled"
    assert runner.history("r")[-1].label == "cancelled"
    before = runner.history("r")
    with pytest.raises(ResumeError):
        runner.resume("r", Continue())
    with pytest.raises(ResumeError):
        runner.resume("r", Resume(1))
    with pytest.raises(ResumeError):
        runner.run("r")
    assert runner.history("r") == before
    reopened = runner.resume("r", Goto("ask"))
    assert isinstance(reopened, Paused)
    assert runner.resume("r", Resume(2)) == Done({"out": 2}, 1)


@pytest.mark.parametrize("where", ["interrupt", "before", "after", "failed"])
def test_a_cancelled_checkpoint_counts_the_layers_its_values_hold(store: Store, where: str) -> None:
    """super_step counts the layers whose writes the values include, as for every checkpoint."""

    def ask(state: Any) -> Any:
        if where == "failed":
            raise RuntimeError("no")
        x = yield Interrupt("q")
        return {"out": x}

    graph = (
        Graph("g", {"n": LastWriteWins(), "out": LastWriteWins()})
        .step("a", lambda s: {"n": 1})
        .step("b", ask)
        .edge("a", "b")
    )
    breakpoints = {"before": {"interrupt_before": ["b"]}, "after": {"interrupt_after": ["a"]}}
    runner = Runner(graph, store, **breakpoints.get(where, {}))
    if where == "failed":
        with pytest.raises(StepError):
            runner.run("r")
    else:
        assert isinstance(runner.run("r"), Paused)
    info = runner.cancel("r", "stop")
    last = runner.history("r")[-1]
    assert (last.label, last.super_step, info.super_step) == ("cancelled", 1, 1)
    assert info.values == {"n": 1, "out": None}


def test_start_on_a_running_run_returns_its_run_info_and_claims_nothing(store: Store) -> None:
    """SPEC, Runs: start on an existing run follows run's rule on its input and returns
    its RunInfo without driving it: "running" too."""
    inside, go_on = threading.Event(), threading.Event()

    def slow() -> str:
        inside.set()
        go_on.wait(10)
        return "paid"

    def pay(state: Any) -> Any:
        return {"out": (yield Effect(slow))}

    graph = Graph("pay", {"out": LastWriteWins(), "n": LastWriteWins()}).step("pay", pay)
    driver = threading.Thread(target=Runner(graph, store).run, args=("r", {"n": 1}))
    driver.start()
    try:
        assert inside.wait(10)
        other = Runner(graph, store)
        history = other.history("r")
        assert other.start("r", {"n": 1}).status == "running"
        assert other.start("r").status == "running"
        # a different input: what run() says of it, the holder's ConflictError (it said
        # "it is queued" in a ResumeError)
        with pytest.raises(ConflictError, match=r"is running: process \d+ on host"):
            other.start("r", {"n": 2})
        assert other.history("r") == history
    finally:
        go_on.set()
        driver.join(10)
    assert Runner(graph, store).start("r").status == "done"


def test_cancel_on_a_done_run_is_refused_and_delete_forgets_the_run(store: Store) -> None:
    runner = Runner(_asker(), store)
    runner.run("r")
    assert runner.resume("r", Resume(1)) == Done({"out": 1}, 1)
    with pytest.raises(ResumeError):
        runner.cancel("r")
    assert runner.state("r").status == "done"
    runner.delete("r")
    with pytest.raises(ResumeError):
        runner.state("r")
    assert ("ask", "r") not in list(store.runs())
    with pytest.raises(ResumeError):
        runner.delete("r")


def test_start_then_run_drives_a_queued_run_and_submit_leaves_a_claim_queued(
    store: Store,
) -> None:
    runner = Runner(_asker(), store)
    info = runner.start("r")
    assert info.status == "queued"
    paused = runner.run("r")
    assert isinstance(paused, Paused)
    submitted = runner.submit("r", Resume(7))
    assert submitted.status == "queued"
    assert runner.state("r").status == "queued"
    assert runner.run("r") == Done({"out": 7}, 1)


def test_a_queued_run_refuses_commands_until_a_driver_runs_it(store: Store) -> None:
    runner = Runner(_asker(), store)
    runner.start("r")
    before = runner.history("r")
    for refused in (
        lambda: runner.resume("r", Continue()),
        lambda: runner.submit("r", Continue()),
    ):
        with pytest.raises(ConflictError, match="queued"):
            refused()
    assert runner.history("r") == before
    runner.start("only-started")  # holds only its input: cancel ends it (SPEC, Failures)
    assert runner.cancel("only-started").status == "cancelled"
    assert isinstance(runner.run("r"), Paused)
    runner.submit("r", Resume(1))
    before = runner.history("r")
    for refused in (
        lambda: runner.resume("r", Resume(2)),
        lambda: runner.submit("r", Resume(2)),
        lambda: runner.cancel("r"),
    ):
        with pytest.raises(ConflictError, match="queued"):
            refused()
    assert runner.history("r") == before
    runner.delete("r")
    with pytest.raises(ResumeError):
        runner.state("r")


def test_a_failed_run_can_be_cancelled_and_goto_reopens_it(store: Store) -> None:
    raised: list[int] = []

    def flaky(state: Any) -> Any:
        if not raised:
            raised.append(1)
            msg = "first time"
            raise RuntimeError(msg)
        return {"out": "ok"}

    graph = Graph("flaky", {"out": LastWriteWins()}).step("flaky", flaky)
    runner = Runner(graph, store)
    with pytest.raises(StepError):
        runner.run("r")
    assert runner.cancel("r").status == "cancelled"
    with pytest.raises(ResumeError):
        runner.run("r")
    with pytest.raises(ResumeError):
        runner.resume("r", Update({"out": "x"}))
    assert runner.resume("r", Goto("flaky")) == Done({"out": "ok"}, 1)


# --- more edges of a failed layer ---------------------------------------------------


def test_a_plain_retry_replays_the_answer_and_never_repeats_a_saved_effect(store: Store) -> None:
    noted: list[Any] = []

    def note(x: Any) -> Any:
        noted.append(x)
        return f"noted {x}"

    def ask(state: Any) -> Any:
        x = yield Interrupt("q")
        yield Effect(note, x)
        if x == "bad":
            msg = "bad answer"
            raise ValueError(msg)
        return {"answer": x}

    graph = Graph("reask", {"answer": LastWriteWins()}).step("ask", ask)
    runner = Runner(graph, store)
    runner.run("r")
    with pytest.raises(StepError):
        runner.resume("r", Resume("bad"))
    with pytest.raises(StepError):
        runner.run("r")
    with pytest.raises(StepError):
        runner.resume("r", Continue())
    assert noted == ["bad"]
    assert runner.state("r").status == "failed"


def test_a_retry_leaves_a_siblings_interrupt_pending(store: Store) -> None:
    raised: list[int] = []
    asked: list[int] = []

    def ask(state: Any) -> Any:
        asked.append(1)
        x = yield Interrupt("q")
        return {"answer": x}

    def boom(state: Any) -> Any:
        if not raised:
            raised.append(1)
            msg = "boom once"
            raise RuntimeError(msg)
        return {"boomed": True}

    graph = (
        Graph("pend", {"answer": LastWriteWins(), "boomed": LastWriteWins()})
        .step("ask", ask)
        .step("boom", boom)
    )
    runner = Runner(graph, store)
    with pytest.raises(StepError):
        runner.run("r")
    info = runner.state("r")
    assert info.status == "failed"
    assert [(i.step_id, i.payload) for i in info.interrupts] == [("ask", "q")]
    paused = runner.run("r")
    assert isinstance(paused, Paused)
    assert [i.id for i in paused.interrupts] == [i.id for i in info.interrupts]
    assert runner.resume("r", Resume(3)) == Done({"answer": 3, "boomed": True}, 1)


def test_the_effect_error_that_failed_a_run_is_called_again_but_a_caught_one_replays(
    store: Store,
) -> None:
    calls: dict[str, int] = {"caught": 0, "uncaught": 0}

    def flaky(name: str) -> str:
        calls[name] += 1
        if calls[name] == 1:
            msg = f"{name} refused"
            raise OSError(msg)
        return f"{name} ok"

    def step(state: Any) -> Any:
        try:
            first = yield Effect(flaky, "caught")
        except EffectError as error:
            first = f"caught: {error}"
        second = yield Effect(flaky, "uncaught")
        return {"first": first, "second": second}

    graph = Graph("eff", {"first": LastWriteWins(), "second": LastWriteWins()}).step("s", step)
    runner = Runner(graph, store)
    with pytest.raises(EffectError):
        runner.run("r")
    failure = runner.state("r").failure
    assert failure is not None
    assert (failure.step_id, failure.error_type) == ("s", "EffectError")
    outcome = runner.run("r")
    assert isinstance(outcome, Done)
    assert outcome.state["second"] == "uncaught ok"
    assert "caught refused" in outcome.state["first"]
    assert "OSError" in outcome.state["first"]
    assert calls == {"caught": 1, "uncaught": 2}


_CUT_SHORT = """
import gc, sys
from pausegraph import *

class Crash(BaseException):
    pass

def crash(x):
    raise Crash()

def release(x):
    print("release ran", flush=True)

def noop(x):
    return x

def waiter(state):
    try:
        yield Interrupt("ok?")
    finally:
        yield Effect(release, "waiter")  # yielded while closed: dropped, quietly

def worker(state):
    yield Effect(crash if sys.argv[1] == "crash" else noop, 1)

graph = Graph("noise", {"log": Append()}).step("waiter", waiter).step("worker", worker)
store = MemoryCheckpointer()
if sys.argv[1] == "save":
    real = store.save
    def failing(checkpoint):
        if checkpoint.label.startswith("effect:"):
            raise CheckpointError("disk full")
        real(checkpoint)
    store.save = failing
runner = Runner(graph, store)
try:
    runner.run("r")
except (Crash, CheckpointError):
    pass
del runner
gc.collect()
print(Runner(graph, store).state("r").status)
"""


@pytest.mark.parametrize("how", ["crash", "save"])
def test_a_layer_cut_short_closes_its_generators_itself(tmp_path: Path, how: str) -> None:
    # SPEC Closing suspended steps: pausegraph closes a generator it lets go, and an
    # Effect yielded while closing prints nothing: a BaseException through a step (a
    # test's stand-in for a crash, KeyboardInterrupt) or a save that fails left them to
    # the collector, which printed "generator ignored GeneratorExit"
    script = tmp_path / "cut.py"
    script.write_text(_CUT_SHORT)
    done = subprocess.run(
        [sys.executable, str(script), how], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["queued"]
    assert done.stderr == ""


def _closing_graph(closed: list[str]) -> Graph:
    """One step that pauses, and notes in ``closed`` each time its generator is closed."""

    def ask(state: Any) -> Any:
        try:
            yield Interrupt("ok?")
        finally:
            closed.append("closed")

    return Graph("g", {"x": LastWriteWins()}).step("ask", ask)


@pytest.mark.parametrize("how", ["cancel", "delete", "goto"])
def test_a_run_another_runner_cancels_or_sends_elsewhere_closes_what_this_one_holds(
    how: str,
) -> None:
    # SPEC Closing suspended steps: when the run is cancelled or sent elsewhere by Goto,
    # pausegraph closes the generator, "so its finally blocks run then": also the one a
    # second Runner of the process (on the same checkpointer) holds
    closed: list[str] = []
    graph = _closing_graph(closed)
    store = MemoryCheckpointer()
    holder, other = Runner(graph, store), Runner(graph, store)
    holder.run("r")
    assert closed == []
    if how == "cancel":
        other.cancel("r")
    elif how == "delete":
        other.delete("r")
    else:
        other.resume("r", Goto("ask"))  # pauses again, in the other Runner
    assert closed == ["closed"]
    del holder, other
    gc.collect()
    assert closed == ["closed"] * (2 if how == "goto" else 1)  # the other's own, at its end


_COLLECTED_MID_CALL = """
import gc, faulthandler
from pausegraph import *
faulthandler.dump_traceback_later(20, exit=True)  # a thread waiting on itself: fail, not hang
store = MemoryCheckpointer()
closed = [0]
def ask(state):
    try:
        yield Interrupt("ok?")
    finally:
        closed[0] += 1
        Runner(graph, store)  # a finally that makes a Runner on the same checkpointer
graph = Graph("g", {"x": LastWriteWins()}).step("ask", ask)
other = Runner(graph, store)
gc.set_threshold(700)
for i in range(4000):
    runner = Runner(graph, store)
    runner.ctx = {"runner": runner}  # a cycle: the collector frees it, in any later call
    runner.run(f"r{i}")
    del runner
    other.run(f"o{i}")
    other.cancel(f"o{i}")
gc.collect()
print(closed[0])
"""


def test_a_runner_collected_in_the_middle_of_another_call_closes_its_generators(
    tmp_path: Path,
) -> None:
    # the collector may free a Runner (and close its generators) inside any call, one that
    # holds the lock its finally blocks need too: no thread may wait on itself
    script = tmp_path / "collected.py"
    script.write_text(_COLLECTED_MID_CALL)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout) == 8000  # each of the 4,000 collected runs and 4,000 cancelled


def test_a_checkpointer_that_cannot_be_hashed_is_shared_by_its_runners_all_the_same() -> None:
    import dataclasses

    @dataclasses.dataclass
    class Wrapped:  # eq=True: unhashable, as a user's own checkpointer may well be
        inner: Any

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

    closed: list[str] = []
    graph = _closing_graph(closed)
    store = Wrapped(MemoryCheckpointer())
    holder, other = Runner(graph, store), Runner(graph, store)
    holder.run("r")
    other.cancel("r")
    assert closed == ["closed"]


def test_a_keyboard_interrupt_in_one_finally_still_closes_the_others() -> None:
    closed: list[str] = []

    def ask(name: str) -> Any:
        def step(state: Any) -> Any:
            try:
                yield Interrupt("ok?")
            finally:
                closed.append(name)
                if name == "a":
                    raise KeyboardInterrupt

        return step

    graph = Graph("g", {"x": LastWriteWins()}).step("a", ask("a")).step("b", ask("b"))
    runner = Runner(graph)
    runner.run("r")
    with pytest.raises(KeyboardInterrupt) as raised:
        runner.cancel("r")
    assert closed == ["a", "b"]
    # the traceback is still held, so nothing but the engine can have closed "b" (the
    # garbage collector would have, once pytest let go of it)
    assert raised.traceback is not None
    assert runner.state("r").status == "cancelled"
