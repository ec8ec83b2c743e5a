"""Who may change which value: the state is read-only to every step, live or
reloaded; what a store or a Runner hands out is the caller's own."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pausegraph import (
    Append,
    Done,
    FileCheckpointer,
    Graph,
    Interrupt,
    LastWriteWins,
    MemoryCheckpointer,
    MergeMap,
    NondeterminismError,
    Paused,
    Resume,
    ResumeError,
    Runner,
)
from pausegraph._records import InLayer
from pausegraph._values import freeze, pack, same, thaw


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


# --- recorded values are compared by their msgpack encoding -----------------

#: values whose Python ``==`` disagrees with what a store keeps: NaN, -0.0,
#: 1 / 1.0 / True, the ends of msgpack's integer range, nested in containers
awkward_scalars = (
    st.sampled_from([float("nan"), -0.0, 0.0, 1, 1.0, True, 2**64 - 1, -(2**63)])
    | st.floats()  # NaN and the infinities included
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.none()
    | st.text(max_size=5)
    | st.binary(max_size=5)
)
awkward_values = st.recursive(
    awkward_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (float("nan"), float("nan")),
        ({"x": [float("nan")]}, {"x": [float("nan")]}),
        (2**64 - 1, 2**64 - 1),
        (-(2**63), -(2**63)),
        (b"\x00", b"\x00"),
    ],
)
def test_same_holds_for_values_a_store_keeps_alike(a: Any, b: Any) -> None:
    assert same(a, b)
    assert same(freeze(a), b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (1, 1.0),
        (1, True),
        (0, False),
        (0.0, -0.0),
        ([1], [1.0]),
        ({"x": 1}, {"x": True}),
        ("a", b"a"),
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}),  # key order is part of the encoding
    ],
)
def test_same_tells_apart_values_a_store_keeps_apart(a: Any, b: Any) -> None:
    assert not same(a, b)


@given(awkward_values)
def test_same_agrees_with_the_encoding_and_survives_a_round_trip(value: Any) -> None:
    frozen = freeze(value)
    assert same(value, frozen)
    assert same(thaw(frozen), value)
    assert same(value, frozen) == (pack(value) == pack(frozen))


def _asking_graph() -> Graph:
    def ask(state):
        answer = yield Interrupt(state["p"])
        return {"a": answer}

    return Graph("same", {"p": LastWriteWins(), "a": LastWriteWins()}).step("ask", ask)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=awkward_values)
@example(value=float("nan"))
@example(value={"x": [float("nan"), -0.0, {"n": 2**64 - 1}], "y": -(2**63)})
@example(value=[-0.0, True, 1, 1.0])
def test_awkward_payloads_and_inputs_resume_hot_and_cold_and_match_their_record(
    tmp_path: Path, value: Any
) -> None:
    graph = _asking_graph()
    given_input = {"p": value}
    for cold in (False, True):
        run_id = f"{'cold' if cold else 'hot'}-{uuid.uuid4().hex}"
        runner = Runner(graph, FileCheckpointer(tmp_path))
        assert isinstance(runner.run(run_id, given_input), Paused)
        # the same input again is recognised as the recorded one: the run is paused
        with pytest.raises(ResumeError, match=r"is paused"):
            runner.run(run_id, given_input)
        if cold:  # a new process: the step is replayed and its payload matched
            runner = Runner(graph, FileCheckpointer(tmp_path))
        done = runner.resume(run_id, Resume(value))
        assert isinstance(done, Done)
        assert same(done.state, {"p": value, "a": value})
        again = Runner(graph, FileCheckpointer(tmp_path)).run(run_id, given_input)
        assert same(again.state, done.state)


@pytest.mark.parametrize(
    ("first", "second"), [(1, 1.0), (1, True), (0.0, -0.0), (float("nan"), 0.0)]
)
def test_an_input_equal_by_python_but_not_by_encoding_is_another_input(
    first: Any, second: Any
) -> None:
    runner = Runner(_asking_graph())
    runner.run("r", {"p": first})
    with pytest.raises(ResumeError, match=r"^run 'r' already exists with input"):
        runner.run("r", {"p": second})


def test_a_replayed_payload_equal_by_python_but_not_by_encoding_is_nondeterminism() -> None:
    payloads = iter([1, 1.0])

    def ask(state):
        answer = yield Interrupt(next(payloads))
        return {"a": answer}

    graph = Graph("same", {"p": LastWriteWins(), "a": LastWriteWins()}).step("ask", ask)
    store = MemoryCheckpointer()
    Runner(graph, store).run("r")
    with pytest.raises(NondeterminismError, match=r"yielded Interrupt\(1\.0\)"):
        Runner(graph, store).resume("r", Resume("yes"))
