"""State: channel reducers, the read-only state a step sees, and what may be written."""

from __future__ import annotations

import contextlib
import enum
from unittest.mock import ANY

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pausegraph import (
    Append,
    Failure,
    FileCheckpointer,
    Graph,
    GraphError,
    Interrupt,
    LastWriteWins,
    MemoryCheckpointer,
    MergeMap,
    Reducer,
    Resume,
    Runner,
    SerializationError,
    StepError,
    Update,
)


def single(fn, channels, *, input=None):
    graph = Graph("g", channels).step("s", fn)
    runner = Runner(graph)
    return runner, runner.run("r", input)


def test_defaults_are_none_empty_dict_empty_list_and_the_given_default():
    channels = {
        "lww": LastWriteWins(),
        "map": MergeMap(),
        "log": Append(),
        "total": Reducer(lambda a, b: a + b, 10),
    }
    _, outcome = single(lambda state: None, channels)
    assert outcome.state == {"lww": None, "map": {}, "log": [], "total": 10}


def test_last_write_wins_replaces_the_value():
    graph = Graph("g", {"x": LastWriteWins()})
    graph.step("a", lambda s: {"x": 1}).step("b", lambda s: {"x": 2}).step("c", lambda s: None)
    assert Runner(graph).run("r", {"x": 0}).state == {"x": 2}


def test_merge_map_merges_shallowly_and_new_keys_win():
    graph = Graph("g", {"m": MergeMap()})
    graph.step("a", lambda s: {"m": {"k": {"deep": 1}, "a": 1}})
    graph.step("b", lambda s: {"m": {"k": {"other": 2}}})
    outcome = Runner(graph).run("r", {"m": {"old": 0, "a": 0}})
    assert outcome.state == {"m": {"old": 0, "a": 1, "k": {"other": 2}}}


def test_merge_map_refuses_a_non_dict_write():
    with pytest.raises(StepError, match=r"'s'.*'m'"):
        single(lambda s: {"m": [1, 2]}, {"m": MergeMap()})


def test_append_extends_with_a_list_and_appends_anything_else():
    graph = Graph("g", {"log": Append()})
    graph.step("a", lambda s: {"log": [1, 2]})
    graph.step("b", lambda s: {"log": "three"})
    graph.step("c", lambda s: {"log": {"four": 4}})
    graph.step("d", lambda s: {"log": [[5, 6]]})
    outcome = Runner(graph).run("r", {"log": [0]})
    assert outcome.state == {"log": [0, 1, 2, "three", {"four": 4}, [5, 6]]}


def test_a_written_tuple_reads_as_a_list_hot_and_cold():
    # a tuple is stored as a msgpack array: the next step must read the same
    # value whether or not the process restarted in between
    seen = []

    def read(state):
        seen.append(state["x"])
        yield Interrupt("go on?")
        return {"y": state["x"]}

    checkpointer = MemoryCheckpointer()
    graph = Graph("g", {"x": LastWriteWins(), "y": LastWriteWins(), "log": Append()})
    graph.step("write", lambda s: {"x": (1, 2), "log": (3, 4)}).step("read", read)
    graph.edge("write", "read")
    hot = Runner(graph, checkpointer)
    hot.run("hot")
    hot_done = hot.resume("hot", Resume(None))
    Runner(graph, checkpointer).run("cold")
    cold_done = Runner(graph, checkpointer).resume("cold", Resume(None))
    assert seen == [[1, 2], [1, 2], [1, 2]]
    assert hot_done.state == cold_done.state == {"x": [1, 2], "y": [1, 2], "log": [[3, 4]]}


class _Level(enum.IntEnum):
    HIGH = 3


class _Name(str):
    pass


class _Ratio(float):
    pass


_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text()
    | st.sampled_from([_Level.HIGH, _Name("n"), _Ratio(0.5), 2**63, -(2**63), "\x7f", "é"])
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=_SCALARS, name=st.sampled_from(["x", _Name("x")]))
def test_a_written_scalar_reads_as_msgpack_gives_it_back_hot_and_cold(value, name):
    # most writes are scalars, normalised without a trip through msgpack: what a
    # step reads next must still be what a reloaded run reads, type and all
    expected = msgpack.unpackb(msgpack.packb(value))
    seen = []

    def read(state):
        seen.append((state["x"], type(state["x"]), [type(k) for k in state]))
        yield Interrupt("go on?")

    checkpointer = MemoryCheckpointer()
    graph = Graph("g", {"x": LastWriteWins()})
    graph.step("write", lambda s: {name: value}).step("read", read).edge("write", "read")
    Runner(graph, checkpointer).run("r")
    Runner(graph, checkpointer).resume("r", Resume(None))
    assert seen == [(expected, type(expected), [str])] * 2


@pytest.mark.parametrize(
    ("value", "named"),
    [(2**64, "int 18446744073709551616"), (-(2**63) - 1, "int -9223372036854775809")],
)
def test_a_written_int_msgpack_cannot_encode_is_a_serialization_error(value, named):
    graph = Graph("g", {"x": LastWriteWins()}).step("s", lambda s: {"x": value})
    runner = Runner(graph)
    with pytest.raises(SerializationError, match=f"channel 'x'.*{named}"):
        runner.run("r")
    assert [m.label for m in runner.history("r")] == ["input", "failed:s"]


def test_reducer_calls_fn_with_current_and_incoming_in_step_order():
    calls = []

    def fn(current, incoming):
        calls.append((current, incoming))
        return [*current, incoming]

    graph = Graph("g", {"x": Reducer(fn, [])})
    graph.step("a", lambda s: {"x": "a"}).step("b", lambda s: {"x": "b"})
    assert Runner(graph).run("r").state == {"x": ["a", "b"]}
    assert calls == [([], "a"), (["a"], "b")]


def test_reducer_default_is_not_shared_between_runs():
    graph = Graph("g", {"x": Reducer(lambda cur, new: [*cur, new], [])})
    graph.step("a", lambda s: {"x": 1})
    runner = Runner(graph)
    assert runner.run("one").state == {"x": [1]}
    assert runner.run("two").state == {"x": [1]}


def test_input_goes_through_the_reducers():
    channels = {"log": Append(), "total": Reducer(lambda a, b: a + b, 100)}
    _, outcome = single(lambda s: None, channels, input={"log": "first", "total": 5})
    assert outcome.state == {"log": ["first"], "total": 105}


def test_steps_of_a_layer_read_the_state_of_the_previous_super_step():
    seen = {}

    def a(state):
        seen["a"] = state["x"]
        return {"x": "from a"}

    def b(state):
        seen["b"] = state["x"]
        return {"x": "from b"}

    graph = Graph("g", {"x": LastWriteWins()}).step("a", a).step("b", b)
    Runner(graph).run("r", {"x": "start"})
    assert seen == {"a": "start", "b": "start"}


@pytest.mark.parametrize("keep", ["values", "mapping", "shallow copy"])
def test_what_a_step_kept_of_the_state_stays_as_its_layer_began(keep, tmp_path):
    """A step that keeps what it read (not a copy) sees later layers change nothing of it."""
    kept = {}

    def keeper(name):
        def step(state):
            if keep == "values":
                kept[name] = {"log": state["log"], "map": state["map"], "x": state["x"]}
            else:
                kept[name] = state if keep == "mapping" else dict(state)
            return {"log": [name], "map": {name: 1}, "x": name}

        return step

    def ask(state):
        kept["ask"] = state if keep == "mapping" else dict(state)
        answer = yield Interrupt("more?")
        return {"log": [answer], "map": {"ask": answer}}

    channels = {"log": Append(), "map": MergeMap(), "x": LastWriteWins()}
    graph = (
        Graph("g", channels)
        .step("a", keeper("a"))
        .step("b", keeper("b"))
        .step("c", keeper("c"))
        .step("ask", ask)
        .step("d", keeper("d"))
        .edge("a", "c")
        .edge("b", "c")
        .edge("c", "ask")
        .edge("ask", "d")
    )
    runner = Runner(graph, FileCheckpointer(tmp_path))
    runner.run("r", {"log": ["start"], "map": {"start": 0}})
    done = runner.resume("r", Resume("yes"))
    start = {"log": ["start"], "map": {"start": 0}, "x": None}
    after_1 = {"log": ["start", "a", "b"], "map": {"start": 0, "a": 1, "b": 1}, "x": "b"}
    after_2 = {**after_1, "log": [*after_1["log"], "c"], "map": {**after_1["map"], "c": 1}}
    after_2["x"] = "c"
    after_3 = {**after_2, "log": [*after_2["log"], "yes"], "map": {**after_2["map"], "ask": "yes"}}
    assert {k: dict(v) for k, v in kept.items()} == {
        "a": start,
        "b": start,
        "c": after_1,
        "ask": after_2,
        "d": after_3,
    }
    assert done.state["log"] == ["start", "a", "b", "c", "yes", "d"]
    assert Runner(graph, FileCheckpointer(tmp_path)).state("r").values == done.state


def test_what_a_step_kept_is_untouched_by_a_layer_whose_reducer_refused():
    kept = {}

    def a(state):
        kept["a"] = state
        kept["log"] = state["log"]
        return {"log": ["a"], "total": 1}

    def b(state):
        return {"log": ["b"], "total": "not a number"}

    channels = {"log": Append(), "total": Reducer(lambda t, n: t + n, 0)}
    runner = Runner(Graph("g", channels).step("a", a).step("b", b))
    with pytest.raises(StepError):
        runner.run("r", {"log": ["start"]})
    assert kept["log"] == ["start"]
    assert dict(kept["a"]) == {"log": ["start"], "total": 0}
    assert runner.state("r").values == {"log": ["start"], "total": 0}


def test_a_predicate_that_kept_the_state_sees_it_as_its_layer_began():
    kept = []

    def when(state):
        kept.append(state)
        return True

    channels = {"log": Append()}
    graph = (
        Graph("g", channels)
        .step("a", lambda s: {"log": ["a"]})
        .step("b", lambda s: {"log": ["b"]})
        .step("c", lambda s: {"log": ["c"]})
        .edge("a", "b", when=when)
        .edge("b", "c")
    )
    assert Runner(graph).run("r", {}).state == {"log": ["a", "b", "c"]}
    assert [dict(state) for state in kept] == [{"log": ["a"]}]


def test_state_setitem_in_a_step_is_a_type_error_and_changes_nothing():
    caught = []

    def meddle(state):
        try:
            state["x"] = "mutated"
        except TypeError as exc:
            caught.append(exc)
        try:
            del state["x"]
        except TypeError as exc:
            caught.append(exc)
        return {"seen": state["x"]}

    _, outcome = single(meddle, {"x": LastWriteWins(), "seen": LastWriteWins()}, input={"x": 1})
    assert len(caught) == 2
    assert outcome.state == {"x": 1, "seen": 1}


def _setitem(state):
    state["x"] = 2


def _delitem(state):
    del state["x"]


MUTATIONS = {
    "setitem": _setitem,
    "delitem": _delitem,
    "update": lambda state: state.update({"x": 2}),
    "pop": lambda state: state.pop("x"),
    "popitem": lambda state: state.popitem(),
    "setdefault": lambda state: state.setdefault("new", 2),
    "clear": lambda state: state.clear(),
}


@pytest.mark.parametrize("mutate", MUTATIONS.values(), ids=MUTATIONS.keys())
def test_every_way_of_mutating_the_state_is_a_type_error(mutate):
    errors = []

    def meddle(state):
        try:
            mutate(state)
        except Exception as exc:
            errors.append(exc)
        return {"seen": dict(state)}

    _, outcome = single(meddle, {"x": LastWriteWins(), "seen": LastWriteWins()}, input={"x": 1})
    assert [type(e) for e in errors] == [TypeError]
    assert outcome.state == {"x": 1, "seen": {"x": 1, "seen": None}}


def test_mutating_a_value_inside_the_state_never_reaches_the_state():
    # whether the engine refuses it (TypeError) or hands out copies, what a
    # step does to a value it reads must not change the run, hot or cold
    def meddle(state):
        with contextlib.suppress(TypeError):
            state["m"]["sneaky"] = 1
        with contextlib.suppress(AttributeError, TypeError):
            state["log"].append("sneaky")

    checkpointer = MemoryCheckpointer()
    graph = Graph("g", {"m": MergeMap(), "log": Append(), "n": LastWriteWins()})
    graph.step("meddle", meddle).step("after", lambda s: {"n": dict(s["m"])})
    graph.edge("meddle", "after")
    outcome = Runner(graph, checkpointer).run("r", {"m": {"x": 0}, "log": ["a"]})
    expected = {"m": {"x": 0}, "log": ["a"], "n": {"x": 0}}
    assert outcome.state == expected
    assert Runner(graph, checkpointer).state("r").values == expected


@pytest.mark.parametrize("how", ["update hot", "update cold", "fork hot", "fork cold"])
@pytest.mark.parametrize("kind", ["memory", "file"])
def test_edits_kept_at_a_pause_enter_the_state_read_only(how, kind, tmp_path):
    # SPEC State: "a step that tries to mutate it gets a TypeError", for values that came
    # in as edits kept with a pause too (Update at the pause, fork with edits), whether
    # the Runner still holds the pause or reads it back from the store
    def ask(state):
        yield Interrupt("q")

    def later(state):
        state["x"].append("sneaky")

    graph = Graph("g", {"x": LastWriteWins()}).step("ask", ask).step("later", later)
    graph.edge("ask", "later")
    store = MemoryCheckpointer() if kind == "memory" else FileCheckpointer(tmp_path / "s")
    runner = Runner(graph, store)
    runner.run("r")
    run_id = "r"
    if how.startswith("update"):
        runner.resume("r", Update({"x": [1]}))
    else:
        run_id = runner.fork("r", runner.history("r")[-1].seq, {"x": [1]})
    if how.endswith("cold"):
        runner = Runner(graph, store)
    with pytest.raises(StepError, match="'later'") as info:
        runner.resume(run_id, Resume("ok"))
    assert isinstance(info.value.__cause__, TypeError)
    assert runner.state(run_id).values == {"x": [1]}


@pytest.mark.parametrize(
    "code",
    [
        "eval('price * qty', state)",  # adds __builtins__
        "exec('global total; total = price * qty', state)",  # adds two names
        "exec('global price; price = 100', state)",  # replaces a channel's value
        "exec('global price; del price', state)",  # as many keys as before
    ],
)
@pytest.mark.parametrize("then_raise", [False, True])
def test_c_code_changing_the_state_is_undone_and_fails_the_step(code, then_raise):
    # SPEC State: "a step that tries to mutate it gets a TypeError, and nothing it did
    # reaches the state": eval/exec with the state as globals write to it through C,
    # past FrozenDict's methods; the engine undoes that and fails the step
    broken, seen = [True], []

    def calc(state):
        total = state["price"] * state["qty"]
        if broken[0]:
            eval(code, {"state": state})  # the step's own code, as a rules engine runs it
            if then_raise:
                raise ValueError("boom")
        return {"total": total}

    def later(state):
        seen.append(dict(state))

    channels = {"price": LastWriteWins(), "qty": LastWriteWins(), "total": LastWriteWins()}
    graph = Graph("g", channels).step("calc", calc).step("later", later).edge("calc", "later")
    runner = Runner(graph)
    match = "ValueError: boom" if then_raise else "'calc'.*read-only.*dict\\(state\\)"
    with pytest.raises(StepError, match=match) as info:
        runner.run("r", {"price": 2, "qty": 3})
    if not then_raise:
        assert isinstance(info.value.__cause__, TypeError)
        assert runner.state("r").failure.error_type == "TypeError"
    assert runner.state("r").values == {"price": 2, "qty": 3, "total": None}
    broken[0] = False
    done = runner.run("r")  # the retry, on the same Runner, reads the state as it was
    assert seen == [{"price": 2, "qty": 3, "total": 6}]
    assert done.state == {"price": 2, "qty": 3, "total": 6}


def test_a_condition_changing_the_state_through_c_fails_its_edge_and_is_undone():
    seen = []
    graph = Graph("g", {"n": LastWriteWins()})
    graph.step("a", lambda s: {"n": 1}).step("b", lambda s: seen.append(dict(s)))
    graph.step("c", lambda s: seen.append(dict(s)))
    graph.edge("a", "b", when=lambda s: eval("n > 0", s)).edge("a", "c")
    runner = Runner(graph)
    with pytest.raises(StepError, match=r"condition.*read-only"):
        runner.run("r")
    assert runner.state("r").values == {"n": 1}
    assert seen == []


def test_uncaught_state_mutation_is_a_step_error_chaining_the_type_error():
    def meddle(state):
        state["x"] = 2

    graph = Graph("g", {"x": LastWriteWins()}).step("meddle", meddle)
    runner = Runner(graph)
    with pytest.raises(StepError, match=r"'meddle'") as info:
        runner.run("r", {"x": 1})
    assert isinstance(info.value.__cause__, TypeError)
    assert runner.state("r").values == {"x": 1}


def test_write_to_undeclared_channel_is_a_step_error_naming_step_and_channel():
    graph = Graph("g", {"x": LastWriteWins()}).step("s", lambda s: {"nope": 1})
    with pytest.raises(StepError, match=r"'s'.*'nope'"):
        Runner(graph).run("r")


def test_write_to_undeclared_channel_applies_no_write_of_that_layer():
    graph = Graph("g", {"x": LastWriteWins(), "log": Append()})
    graph.step("good", lambda s: {"x": "written", "log": "good"})
    graph.step("bad", lambda s: {"nope": 1})
    graph.step("later", lambda s: {"log": "later"})
    runner = Runner(graph)
    with pytest.raises(StepError, match=r"'bad'.*'nope'"):
        runner.run("r", {"x": "start"})
    info = runner.state("r")
    assert info.values == {"x": "start", "log": []}
    assert info.status == "failed"
    assert [m.label for m in runner.history("r")] == ["input", "failed:bad"]


def test_input_naming_no_channel_is_a_graph_error_and_nothing_is_saved():
    checkpointer = MemoryCheckpointer()
    graph = Graph("g", {"x": LastWriteWins()}).step("s", lambda s: None)
    with pytest.raises(GraphError, match=r"'nope'"):
        Runner(graph, checkpointer).run("r", {"nope": 1})
    assert checkpointer.runs() == []


def test_unencodable_write_is_a_serialization_error_naming_channel_and_type():
    class Opaque:
        pass

    graph = Graph("g", {"x": LastWriteWins(), "y": LastWriteWins()})
    graph.step("a", lambda s: {"x": 1}).step("b", lambda s: {"y": 1})
    graph.step("c", lambda s: {"y": Opaque()}).edge("a", "b").edge("b", "c")
    runner = Runner(graph)
    with pytest.raises(SerializationError, match=r"'y'.*Opaque"):
        runner.run("r")
    history = runner.history("r")
    assert [m.label for m in history] == ["input", "layer:1", "layer:2", "failed:c"]
    assert runner.state("r").values == {"x": 1, "y": 1}


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ({(1, 2): 3}, "a key of type tuple in the value: a key must be a str"),
        ({"k": "\udcff"}, r"the str at the value\['k'\]: it holds a lone surrogate"),
        ("\ud800", "the value itself, of type str: it holds a lone surrogate"),
        ({frozenset(): 1}, "a key of type frozenset in the value"),
    ],
)
def test_an_unstorable_value_is_named_by_its_type_and_place(value, named):
    # SPEC Checkpoints: "a SerializationError naming the channel and the type"
    graph = Graph("g", {"v": LastWriteWins()}).step("s", lambda s: {})
    with pytest.raises(SerializationError, match=f"channel 'v'.*{named}"):
        Runner(graph).run("r", {"v": value})


def test_unencodable_write_of_a_finished_sibling_fails_the_layer():
    def asks(state):
        yield Interrupt("q")

    graph = Graph("g", {"x": LastWriteWins()})
    graph.step("bad", lambda s: {"x": {1, 2}}).step("asks", asks)
    runner = Runner(graph)
    with pytest.raises(SerializationError, match=r"'x'.*set"):
        runner.run("r")
    assert [m.label for m in runner.history("r")] == ["input", "failed:bad"]
    assert runner.state("r").failure == Failure("bad", "SerializationError", ANY)


def test_run_goes_on_after_a_fixed_unencodable_write():
    values = [{"x": object()}, {"x": "fine"}]
    graph = Graph("g", {"x": LastWriteWins()}).step("s", lambda s: values.pop(0))
    runner = Runner(graph)
    with pytest.raises(SerializationError):
        runner.run("r")
    assert runner.run("r").state == {"x": "fine"}


def test_in_place_folding_leaves_a_value_written_to_another_channel_alone():
    # ``copy`` keeps the MergeMap value of ``m`` as it was at super-step 1;
    # the merges of later layers must not reach it, hot or cold.
    checkpointer = MemoryCheckpointer()
    graph = Graph("g", {"m": MergeMap(), "copy": LastWriteWins()})
    graph.step("snap", lambda s: {"copy": s["m"]})
    graph.step("grow", lambda s: {"m": {"new": 1}})

    def ask(state):
        yield Interrupt("go on?")
        return {"m": {"newer": 2}}

    graph.step("ask", ask).edge("snap", "grow").edge("grow", "ask")
    runner = Runner(graph, checkpointer)
    runner.run("r", {"m": {"old": 0}})
    hot = runner.resume("r", Resume(True))
    assert hot.state["copy"] == {"old": 0}
    assert hot.state["m"] == {"old": 0, "new": 1, "newer": 2}
    cold = Runner(graph, checkpointer).state("r").values
    assert cold == hot.state


def test_a_channel_declared_after_the_run_began_reads_as_its_default(tmp_path):
    """The structure is steps and edges: a new channel is allowed, and starts at its default."""

    def ask(state):
        answer = yield Interrupt("q")
        return {"y": answer, "seen": [state["z"], state["log"]]}

    old = Graph("g", {"y": LastWriteWins(), "seen": LastWriteWins()}).step("ask", ask)
    new = Graph(
        "g",
        {"y": LastWriteWins(), "seen": LastWriteWins(), "z": LastWriteWins(), "log": Append()},
    ).step("ask", ask)
    Runner(old, FileCheckpointer(tmp_path)).run("r")
    done = Runner(new, FileCheckpointer(tmp_path)).resume("r", Resume(1))
    assert done.state == {"y": 1, "seen": [None, []], "z": None, "log": []}


def test_a_renamed_channel_reads_as_its_default(tmp_path):
    def ask(state):
        answer = yield Interrupt("q")
        return {"new": [answer, state["new"]]}

    old = Graph("g", {"old": LastWriteWins()}).step("ask", ask)
    new = Graph("g", {"new": LastWriteWins()}).step("ask", ask)
    Runner(old, FileCheckpointer(tmp_path)).run("r", {"old": 1})
    done = Runner(new, FileCheckpointer(tmp_path)).resume("r", Resume(2))
    assert done.state["new"] == [2, None]


@pytest.mark.parametrize("hot", [True, False])
def test_folding_copies_nothing_no_one_outside_the_engine_holds(monkeypatch, hot, tmp_path):
    """The speed half of the copy-on-write rule: a resume copies no value it folds into."""
    from pausegraph import _channels

    copies = []
    for reducer, copy in list(_channels._IN_PLACE.items()):
        monkeypatch.setitem(
            _channels._IN_PLACE, reducer, lambda v, copy=copy: copies.append(1) or copy(v)
        )

    def ask(state):
        answer = yield Interrupt("q")
        return {"log": [answer], "map": {"a": answer}}

    channels = {"log": Append(), "map": MergeMap()}
    graph = (
        Graph("g", channels)
        .step("first", lambda s: {"log": [0], "map": {"z": 0}})
        .step("ask", ask)
        .step("last", lambda s: {"log": ["end"], "map": {"b": 1}})
        .edge("first", "ask")
        .edge("ask", "last")
    )
    runner = Runner(graph, FileCheckpointer(tmp_path))
    runner.run("r")
    if not hot:
        runner = Runner(graph, FileCheckpointer(tmp_path))
    assert runner.resume("r", Resume(1)).state == {
        "log": [0, 1, "end"],
        "map": {"z": 0, "a": 1, "b": 1},
    }
    assert copies == []


@pytest.mark.parametrize("hot", [True, False])
def test_a_step_changing_its_state_through_c_after_a_pause_fails_hot_as_cold(hot, tmp_path):
    # a generator resumed hot still holds the state it was started on (the pause's), not
    # the layer's new one: its change is told all the same, so hot and cold agree
    def ask(state):
        yield Interrupt("go?")
        eval("1", state)
        return {"x": 2}

    graph = Graph("g", {"x": LastWriteWins()}).step("ask", ask)
    store = FileCheckpointer(tmp_path / "s")
    runner = Runner(graph, store)
    runner.run("r", {"x": 1})
    if not hot:
        runner = Runner(graph, store)
    with pytest.raises(StepError, match="read-only"):
        runner.resume("r", Resume(True))
    assert Runner(graph, store).state("r").status == "failed"


def test_a_finally_changing_the_state_through_c_leaves_the_cancel_as_saved():
    def ask(state):
        try:
            yield Interrupt("go?")
        finally:
            eval("1", state)

    graph = Graph("g", {"x": LastWriteWins()}).step("ask", ask)
    runner = Runner(graph)
    runner.run("r", {"x": 1})
    info = runner.cancel("r")  # closes the held generator: its finally runs the eval
    assert (info.status, info.values) == ("cancelled", {"x": 1})
    assert runner.state("r").values == {"x": 1}


def test_a_step_that_changed_the_state_through_c_then_raised_finds_what_it_kept_undone():
    # the state a step was given is put back as it was given, even when the step raised
    # after the change: a reference it kept (here, in a list) never shows the change
    kept = []

    def calc(state):
        kept.append(state)
        eval("1", state)  # adds __builtins__ to the state, through C
        raise ValueError("boom")

    graph = Graph("g", {"x": LastWriteWins()}).step("calc", calc)
    with pytest.raises(StepError, match="ValueError: boom"):
        Runner(graph).run("r", {"x": 1})
    assert dict(kept[0]) == {"x": 1}
