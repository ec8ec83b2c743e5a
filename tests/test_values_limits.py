"""Values nest at most MAX_DEPTH dicts and lists deep, checked where they enter.

Every way a value enters a run is tried at the limit (it must survive a
``FileCheckpointer``, a cold resume, ``thaw`` and ``pausegraph show``) and one
past it (a ``SerializationError`` naming where it came from and the limit,
with nothing saved).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pausegraph import (
    Append,
    Done,
    Effect,
    EffectError,
    FileCheckpointer,
    Goto,
    Graph,
    GraphError,
    Interrupt,
    LastWriteWins,
    Paused,
    Reducer,
    Resume,
    Runner,
    SerializationError,
    Update,
)
from pausegraph._values import MAX_DEPTH, freeze, normalize, thaw

PG = Path(sys.executable).parent / "pausegraph"
TOO_DEEP = rf"cannot be stored: it nests dicts and lists more than {MAX_DEPTH} deep, the limit"


def nest(depth: int) -> Any:
    """A value ``depth`` containers deep, dicts and lists in turn, a scalar at the bottom."""
    value: Any = "bottom"
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


def depth_of(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(depth_of, value.values()), default=0)
    if isinstance(value, (list, tuple)):
        return 1 + max(map(depth_of, value), default=0)
    return 0


def test_nest_builds_the_depth_it_is_asked_for() -> None:
    assert depth_of(nest(0)) == 0
    assert depth_of(nest(1)) == 1
    assert depth_of(nest(MAX_DEPTH)) == MAX_DEPTH


# --- the check itself ---------------------------------------------------------


@given(st.integers(min_value=0, max_value=MAX_DEPTH + 5), st.sampled_from(["list", "dict", "mix"]))
def test_normalize_takes_exactly_the_values_within_the_limit(depth: int, shape: str) -> None:
    value: Any = 1
    for level in range(depth):
        as_list = shape == "list" or (shape == "mix" and level % 2)
        value = [value, 2, "x" * 30] if as_list else {"k": value, "pad": b"\x90" * 30}
    if depth <= MAX_DEPTH:
        assert thaw(normalize(value, lambda: "it")) == value
    else:
        with pytest.raises(SerializationError, match=rf"^it {TOO_DEEP}"):
            normalize(value, lambda: "it")


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 1_000, 1_030, 5_000])
def test_values_deeper_than_msgpack_goes_are_refused_with_the_same_message(depth: int) -> None:
    with pytest.raises(SerializationError, match=rf"^the payload {TOO_DEEP}: flatten it"):
        normalize(nest(depth), lambda: "the payload")


def test_a_value_that_contains_itself_is_refused_as_too_deep() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(SerializationError, match=TOO_DEEP):
        normalize(loop, lambda: "it")


def test_freeze_without_a_limit_takes_what_the_store_gives_back() -> None:
    # values from a store were checked when they entered; the channel map is a level more
    assert thaw(freeze({"x": nest(MAX_DEPTH)})) == {"x": nest(MAX_DEPTH)}


# --- every entry point, at the limit and one past it -----------------------------


def _graph(write: Any = None, payload: Any = None, result: Any = None) -> Graph:
    def produce():
        return result

    def step(state):
        answer = yield Interrupt(payload)
        got = yield Effect(produce)
        return {"w": write, "answer": answer, "effect": got}

    channels = {
        "x": LastWriteWins(),
        "w": LastWriteWins(),
        "answer": LastWriteWins(),
        "effect": LastWriteWins(),
        "items": Append(),
    }
    return Graph("deep", channels).step("s", step)


def test_every_entry_point_takes_a_value_at_the_limit_through_a_file_store_and_a_cold_resume(
    tmp_path: Path,
) -> None:
    deep = nest(MAX_DEPTH)
    item = nest(MAX_DEPTH - 1)  # an Append channel's list is a level of its own
    graph = _graph(write=deep, payload=deep, result=deep)
    runner = Runner(graph, FileCheckpointer(tmp_path))
    paused = runner.run("r", {"x": deep, "items": [item]})
    assert isinstance(paused, Paused)
    assert paused.payload == deep
    # show reads the store: state, payload and all, as a table and as JSON
    for how in ([], ["--json"]):
        shown = subprocess.run(
            [str(PG), "--store", str(tmp_path), "show", "r", *how],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert shown.returncode == 0, shown.stderr
        assert shown.stderr == ""
    assert json.loads(shown.stdout)["values"]["x"] == deep
    assert json.loads(shown.stdout)["interrupts"][0]["payload"] == deep
    cold = Runner(graph, FileCheckpointer(tmp_path))
    assert isinstance(cold.resume("r", Resume(deep, update={"items": [item]})), Done)
    fork = cold.fork("r", 1, {"items": [item]})
    cold = Runner(graph, FileCheckpointer(tmp_path))
    assert isinstance(cold.run(fork), Paused)
    assert isinstance(cold.resume(fork, Resume(deep)), Done)
    info = Runner(graph, FileCheckpointer(tmp_path)).state("r")
    assert info.values == {
        "x": deep, "w": deep, "answer": deep, "effect": deep, "items": [item, item],
    }  # fmt: skip
    assert thaw(info.values) == info.values


def _paused(graph: Graph) -> tuple[Runner, int]:
    """A runner whose run "p" waits at the interrupt, and how many checkpoints it has."""
    runner = Runner(graph)
    assert isinstance(runner.run("p"), Paused)
    return runner, len(runner.history("p"))


def _enter_input(deep: Any) -> tuple[Runner, int]:
    runner = Runner(_graph(payload="q", result="r"))
    runner.run("p", {"x": deep})
    return runner, 0


def _enter_payload(deep: Any) -> tuple[Runner, int]:
    runner = Runner(_graph(payload=deep, result="r"))
    runner.run("p")
    return runner, 1  # the input checkpoint is saved before the step runs


def _enter_write(deep: Any) -> tuple[Runner, int]:
    runner, saved = _paused(_graph(write=deep, payload="q", result="r"))
    runner.resume("p", Resume("a"))
    return runner, saved + 1  # the resume claim


def _enter_effect_result(deep: Any) -> tuple[Runner, int]:
    runner, saved = _paused(_graph(payload="q", result=deep))
    try:
        runner.resume("p", Resume("a"))
    except EffectError as exc:
        # the function ran, so its refused result is recorded as its error: the SerializationError
        cause = exc.__cause__
        raise cause if isinstance(cause, SerializationError) else exc from None
    return runner, saved + 1


def _command(make: Any) -> Any:
    def enter(deep: Any) -> tuple[Runner, int]:
        runner, saved = _paused(_graph(payload="q", result="r"))
        make(runner, deep)
        return runner, saved

    return enter


ENTRY_POINTS = {
    "input": (_enter_input, r"^channel 'x' \(written by the input\)"),
    "step write": (_enter_write, r"^channel 'w' \(written by step 's'\)"),
    "interrupt payload": (_enter_payload, r"^the interrupt payload of step 's'"),
    "effect result": (_enter_effect_result, r"^the result of effect \S+produce in step 's'"),
    "Resume(value)": (
        _command(lambda r, deep: r.resume("p", Resume(deep))),
        r"^the answer to interrupt '1\.0\.0'",
    ),
    "Resume(answers=...)": (
        _command(lambda r, deep: r.resume("p", Resume(answers={"1.0.0": deep}))),
        r"^the answer to interrupt '1\.0\.0'",
    ),
    "Resume(update=...)": (
        _command(lambda r, deep: r.resume("p", Resume("a", update={"x": deep}))),
        r"^channel 'x' \(written by Resume\(update=\.\.\.\)\)",
    ),
    "Update(edits)": (
        _command(lambda r, deep: r.resume("p", Update({"x": deep}))),
        r"^channel 'x' \(written by Update\(edits\)\)",
    ),
    "Goto(update=...)": (
        _command(lambda r, deep: r.resume("p", Goto("s", update={"x": deep}))),
        r"^channel 'x' \(written by Goto\(update=\.\.\.\)\)",
    ),
    "fork(edits=...)": (
        _command(lambda r, deep: r.fork("p", 1, {"x": deep})),
        r"^channel 'x' \(written by fork\(edits=\.\.\.\)\)",
    ),
}


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_each_entry_point_takes_a_value_at_the_limit(name: str) -> None:
    enter, _ = ENTRY_POINTS[name]
    enter(nest(MAX_DEPTH))


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_each_entry_point_refuses_a_value_one_past_the_limit_naming_it(name: str) -> None:
    enter, where = ENTRY_POINTS[name]
    with pytest.raises(SerializationError, match=where + " " + TOO_DEEP):
        enter(nest(MAX_DEPTH + 1))


def test_a_value_past_the_limit_leaves_nothing_saved() -> None:
    runner, saved = _paused(_graph(payload="q", result="r"))
    with pytest.raises(SerializationError):
        runner.resume("p", Resume(nest(MAX_DEPTH + 1)))
    assert len(runner.history("p")) == saved


def test_a_reducer_default_past_the_limit_is_a_graph_error() -> None:
    Graph("g", {"x": Reducer(max, nest(MAX_DEPTH))})
    with pytest.raises(GraphError, match=rf"^the default of channel 'x' {TOO_DEEP}"):
        Graph("g", {"x": Reducer(max, nest(MAX_DEPTH + 1))})


def test_a_reducer_result_past_the_limit_is_a_serialization_error_naming_the_channel() -> None:
    graph = Graph("g", {"x": Reducer(lambda current, new: [new], [])})
    graph.step("s", lambda state: None)
    assert Runner(graph).run("r", {"x": nest(MAX_DEPTH - 1)}).state["x"] == [nest(MAX_DEPTH - 1)]
    with pytest.raises(
        SerializationError,
        match=r"^channel 'x': the value its reducer returned cannot be stored: it nests",
    ):
        Runner(graph).run("r", {"x": nest(MAX_DEPTH)})


def test_a_reducer_result_msgpack_cannot_encode_fails_the_run_with_a_serialization_error() -> None:
    # SPEC Checkpoints: "A value msgpack cannot encode is a SerializationError naming the
    # channel and the type, raised before the checkpoint is saved (the run then fails)"
    graph = Graph("g", {"tags": Reducer(lambda current, new: set(current) | set(new), [])})
    graph.step("s", lambda state: {"tags": ["a"]})
    runner = Runner(graph)
    with pytest.raises(SerializationError, match=r"^channel 'tags': .* of type set"):
        runner.run("r")
    info = runner.state("r")
    assert info.status == "failed"
    assert (info.failure.step_id, info.failure.error_type) == ("s", "SerializationError")


@pytest.mark.parametrize(
    "value",
    [msgpack.ExtType(5, b"xx"), msgpack.Timestamp(1), {"at": [msgpack.Timestamp(2**40, 5)]}],
    ids=["ext", "timestamp", "nested timestamp"],
)
@pytest.mark.parametrize("where", ["input", "write", "answer", "effect"])
def test_an_extension_type_is_refused_where_it_enters(
    where: str, value: Any, tmp_path: Any
) -> None:
    # SPEC Checkpoints: decoding refuses msgpack extension types, so none may be stored:
    # msgpack packs them as they are, and the run could never be read back
    def step(state: Any) -> Any:
        if where == "write":
            return {"x": value}
        if where == "answer":
            return {"x": (yield Interrupt("q"))}
        if where == "effect":
            return {"x": (yield Effect(lambda: value))}
        return None

    graph = Graph("g", {"x": LastWriteWins()}).step("s", step)
    store = FileCheckpointer(tmp_path / "s")
    runner = Runner(graph, store)
    if where == "input":
        with pytest.raises(SerializationError, match="extension types"):
            runner.run("r", {"x": value})
        assert store.runs() == []
        return
    if where == "answer":
        runner.run("r")
        with pytest.raises(SerializationError, match="extension types"):
            runner.resume("r", Resume(value))
    else:
        with pytest.raises((SerializationError, EffectError), match="extension types"):
            runner.run("r")
    assert Runner(graph, FileCheckpointer(tmp_path / "s")).state("r").status in ("paused", "failed")
