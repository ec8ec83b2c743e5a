"""Property tests of the core engine: layering, reducers, values, and pauses."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st
from strategies import values

from pausegraph import (
    Append,
    Graph,
    Interrupt,
    LastWriteWins,
    MemoryCheckpointer,
    MergeMap,
    Paused,
    Reducer,
    Resume,
    Runner,
)


def noop(state):
    return None


# --- layering ----------------------------------------------------------------------


@st.composite
def dags(draw):
    """A random DAG: (insertion order of step ids, edges)."""
    n = draw(st.integers(1, 12))
    # rank fixes a topological order; insertion order is an independent shuffle
    ranked = [f"s{i}" for i in range(n)]
    pairs = [(a, b) for a, b in itertools.combinations(range(n), 2)]
    chosen = (
        draw(st.lists(st.sampled_from(pairs), unique=True, max_size=len(pairs))) if pairs else []
    )
    edges = [(ranked[a], ranked[b]) for a, b in chosen]
    order = draw(st.permutations(ranked))
    return list(order), edges


def build(order, edges):
    graph = Graph("g", {})
    for step in order:
        graph.step(step, noop)
    for src, dst in edges:
        graph.edge(src, dst)
    return graph


def longest_path_layers(order, edges):
    preds = {s: [a for a, b in edges if b == s] for s in order}
    depth: dict[str, int] = {}

    def layer(step):
        if step not in depth:
            depth[step] = max((layer(p) + 1 for p in preds[step]), default=0)
        return depth[step]

    return {s: layer(s) for s in order}


@given(dags())
def test_layers_partition_the_steps_and_follow_the_edges(dag):
    order, edges = dag
    layers = build(order, edges).layers()
    flat = [s for layer in layers for s in layer]
    assert sorted(flat) == sorted(order)
    assert len(flat) == len(set(flat))
    assert all(layers)
    layer_of = {s: k for k, layer in enumerate(layers) for s in layer}
    for src, dst in edges:
        assert layer_of[src] < layer_of[dst]


@given(dags())
def test_layer_is_the_longest_path_from_a_root(dag):
    order, edges = dag
    layers = build(order, edges).layers()
    layer_of = {s: k for k, layer in enumerate(layers) for s in layer}
    assert layer_of == longest_path_layers(order, edges)


@given(dags())
def test_layers_follow_insertion_order_and_are_deterministic(dag):
    order, edges = dag
    layers = build(order, edges).layers()
    position = {s: i for i, s in enumerate(order)}
    for layer in layers:
        assert list(layer) == sorted(layer, key=position.__getitem__)
    assert build(order, list(reversed(edges))).layers() == layers


@given(dags(), st.data())
def test_conditional_edges_do_not_change_the_layers(dag, data):
    order, edges = dag
    graph = Graph("g", {})
    for step in order:
        graph.step(step, noop)
    for src, dst in edges:
        if data.draw(st.booleans()):
            graph.edge(src, dst, when=lambda state: False)
        else:
            graph.edge(src, dst)
    assert graph.layers() == build(order, edges).layers()


# --- reducers against a model --------------------------------------------------------

maps = st.dictionaries(st.text(max_size=3), values, max_size=4)


def apply_model(kind, default, writes):
    value = default
    for write in writes:
        if kind == "lww":
            value = write
        elif kind == "map":
            value = {**value, **write}
        elif kind == "append":
            value = [*value, *write] if type(write) is list else [*value, write]
        else:
            value = [*value, write]
    return value


def concat(current, incoming):
    return [*current, incoming]


REDUCERS = {
    "lww": (LastWriteWins, None),
    "map": (MergeMap, {}),
    "append": (Append, []),
    "reducer": (lambda: Reducer(concat, []), []),
}


@st.composite
def write_layers(draw):
    """A reducer kind and writes, grouped in layers of steps, one write per step."""
    kind = draw(st.sampled_from(sorted(REDUCERS)))
    write = maps if kind == "map" else values
    layers = draw(st.lists(st.lists(write, min_size=1, max_size=3), min_size=1, max_size=4))
    return kind, layers


def writes_graph(kind, layers):
    make, _ = REDUCERS[kind]
    graph = Graph("g", {"c": make()})
    previous: list[str] = []
    for k, layer in enumerate(layers):
        names = []
        for i, write in enumerate(layer):
            name = f"l{k}s{i}"
            graph.step(name, lambda state, write=write: {"c": write})
            names.append(name)
        for src, dst in itertools.product(previous, names):
            graph.edge(src, dst)
        previous = names
    return graph


@given(write_layers())
def test_reducers_fold_writes_in_step_order_like_the_model(case):
    kind, layers = case
    checkpointer = MemoryCheckpointer()
    graph = writes_graph(kind, layers)
    done = Runner(graph, checkpointer).run("r")
    expected = apply_model(kind, REDUCERS[kind][1], [w for layer in layers for w in layer])
    assert done.state == {"c": expected}
    assert Runner(graph, checkpointer).state("r").values == {"c": expected}


@given(st.lists(maps, min_size=1, max_size=5), maps)
def test_folding_in_place_never_changes_a_value_written_to_another_channel(merges, start):
    checkpointer = MemoryCheckpointer()
    graph = Graph("g", {"m": MergeMap(), "copy": LastWriteWins()})
    graph.step("snap", lambda state: {"copy": state["m"]})
    previous = "snap"
    for i, merge in enumerate(merges):
        name = f"merge{i}"
        graph.step(name, lambda state, merge=merge: {"m": merge}).edge(previous, name)
        previous = name

    def ask(state):
        yield Interrupt("more?")
        return {"m": {"last": True}}

    graph.step("ask", ask).edge(previous, "ask")
    runner = Runner(graph, checkpointer)
    runner.run("r", {"m": start})
    assert Runner(graph, checkpointer).state("r").values["copy"] == start
    done = runner.resume("r", Resume(None))
    assert done.state["copy"] == start
    assert Runner(graph, checkpointer).state("r").values["copy"] == start
    assert done.state["m"] == apply_model("map", start, [*merges, {"last": True}])


@given(st.dictionaries(st.sampled_from(["a", "b", "c"]), values))
def test_json_like_and_bytes_values_survive_the_memory_checkpointer(given_values):
    checkpointer = MemoryCheckpointer()
    channels = {"a": LastWriteWins(), "b": LastWriteWins(), "c": LastWriteWins()}
    graph = Graph("g", channels).step("echo", lambda state: {"c": state["c"]})
    done = Runner(graph, checkpointer).run("r", given_values)
    expected = {"a": None, "b": None, "c": None, **given_values}
    assert done.state == expected
    assert Runner(graph, checkpointer).state("r").values == expected
    assert checkpointer.load("g", "r", 1).values == expected


# --- pauses do not change the outcome ---------------------------------------------------


def answer_for(payload):
    return {"answer": payload["step"], "seen": payload["seen"]}


def pausing_step(name, asks):
    def step(state):
        seen = len(state["log"])
        got = []
        for i in range(asks):
            answer = yield Interrupt({"step": name, "seen": seen, "i": i})
            got.append(answer)
        return {"log": [name, seen, got], "count": 1}

    return step


def known_step(name, asks):
    def step(state):
        seen = len(state["log"])
        got = [answer_for({"step": name, "seen": seen}) for _ in range(asks)]
        return {"log": [name, seen, got], "count": 1}

    return step


@st.composite
def workflows(draw):
    """Layers of step names (a chain of fan-outs) and how often each step asks."""
    widths = draw(st.lists(st.integers(1, 3), min_size=1, max_size=4))
    layers = [[f"l{k}s{i}" for i in range(w)] for k, w in enumerate(widths)]
    asks = {s: draw(st.integers(0, 2)) for layer in layers for s in layer}
    return layers, asks


def workflow_graph(layers, asks, make_step):
    graph = Graph("g", {"log": Append(), "count": Reducer(lambda a, b: a + b, 0)})
    for layer in layers:
        for name in layer:
            graph.step(name, make_step(name, asks[name]))
    for before, after in itertools.pairwise(layers):
        for src, dst in itertools.product(before, after):
            graph.edge(src, dst)
    return graph


@given(workflows(), st.lists(st.booleans(), min_size=1), st.booleans())
def test_final_state_is_the_same_as_with_every_answer_known_up_front(workflow, colds, one_by_one):
    layers, asks = workflow
    known = Runner(workflow_graph(layers, asks, known_step)).run("r")
    checkpointer = MemoryCheckpointer()
    graph = workflow_graph(layers, asks, pausing_step)
    runner = Runner(graph, checkpointer)
    outcome = runner.run("r")
    for cold in itertools.cycle(colds):
        if not isinstance(outcome, Paused):
            break
        if cold:
            runner = Runner(graph, checkpointer)
        pending = outcome.interrupts[:1] if one_by_one else outcome.interrupts
        answers = {p.id: answer_for(p.payload) for p in pending}
        outcome = runner.resume("r", Resume(answers=answers))
    assert outcome == known
    assert outcome.state["count"] == sum(len(layer) for layer in layers)
