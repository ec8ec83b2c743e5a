"""Graph: step ids, edges, validation errors, layers and the Mermaid picture."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from pausegraph import Graph, GraphError, LastWriteWins, Runner


def noop(state):
    return None


def graph_of(*steps: str, edges: tuple[tuple[str, str], ...] = ()) -> Graph:
    graph = Graph("g", {"x": LastWriteWins()})
    for step in steps:
        graph.step(step, noop)
    for src, dst in edges:
        graph.edge(src, dst)
    return graph


def layers_of(graph: Graph) -> list[list[str]]:
    return [list(layer) for layer in graph.layers()]


def test_step_and_edge_are_chainable():
    graph = Graph("g", {}).step("a", noop).step("b", noop).edge("a", "b")
    assert isinstance(graph, Graph)
    assert graph.layers() == [["a"], ["b"]]


@pytest.mark.parametrize("bad", ["", None, 3])
def test_step_id_must_be_a_non_empty_string(bad):
    with pytest.raises(GraphError, match=r"step id"):
        Graph("g", {}).step(bad, noop)


def test_duplicate_step_id_is_a_graph_error_naming_it():
    graph = graph_of("a")
    with pytest.raises(GraphError, match=r"duplicate step id 'a'"):
        graph.step("a", noop)


def test_edge_to_unknown_step_is_a_graph_error_naming_it():
    graph = graph_of("a")
    with pytest.raises(GraphError, match=r"unknown step 'ghost'"):
        graph.edge("a", "ghost")


def test_edge_from_unknown_step_is_a_graph_error_naming_it():
    graph = graph_of("a")
    with pytest.raises(GraphError, match=r"unknown step 'ghost'"):
        graph.edge("ghost", "a")


def test_self_edge_is_a_graph_error_naming_the_step():
    graph = graph_of("a")
    with pytest.raises(GraphError, match=r"'a' -> 'a'"):
        graph.edge("a", "a")


def test_cycle_is_a_graph_error_naming_its_steps():
    # the cycle may be refused by the edge that closes it or by layers()
    graph = graph_of("a", "b", "c", "off", edges=(("a", "b"), ("b", "c")))

    def close_the_cycle():
        graph.edge("c", "a")
        graph.layers()

    with pytest.raises(GraphError, match=r"cycle") as info:
        close_the_cycle()
    message = str(info.value)
    for step in ("'a'", "'b'", "'c'"):
        assert step in message
    assert "'off'" not in message


def test_cycle_is_refused_before_a_runner_runs_anything():
    def build_and_run():
        graph = graph_of("a", "b", edges=(("a", "b"),)).edge("b", "a")
        Runner(graph).run("r")

    with pytest.raises(GraphError, match=r"cycle.*'a'"):
        build_and_run()


def test_empty_graph_is_a_graph_error():
    with pytest.raises(GraphError, match=r"no steps"):
        Runner(Graph("empty", {}))


def test_step_needs_a_callable():
    with pytest.raises(GraphError, match=r"'a'"):
        Graph("g", {}).step("a", "not callable")  # type: ignore[arg-type]


def test_channel_needs_a_reducer():
    with pytest.raises(GraphError, match=r"'x'"):
        Graph("g", {"x": 3})  # type: ignore[dict-item]


@pytest.mark.parametrize("channels", [None, ["x"], "x"])
def test_channels_that_are_not_a_mapping_are_a_graph_error(channels):
    with pytest.raises(GraphError, match=r"channels as a mapping of name to reducer"):
        Graph("g", channels)


def test_a_reducer_whose_fn_is_not_callable_is_a_graph_error_naming_the_channel():
    from pausegraph import Reducer

    with pytest.raises(GraphError, match=r"channel 'x': Reducer\(fn, default\) needs a callable"):
        Graph("g", {"x": Reducer(5, 0)})  # type: ignore[arg-type]


def test_steps_without_predecessors_are_layer_zero():
    assert graph_of("a", "b", "c").layers() == [["a", "b", "c"]]


def test_layer_is_the_longest_path_from_a_root():
    # a -> b -> c and a -> c: c is on layer 2, not 1
    graph = graph_of("a", "b", "c", edges=(("a", "b"), ("b", "c"), ("a", "c")))
    assert graph.layers() == [["a"], ["b"], ["c"]]


def test_steps_inside_a_layer_keep_insertion_order():
    graph = graph_of("z", "m", "a", "root", edges=(("root", "m"), ("root", "z"), ("root", "a")))
    assert graph.layers() == [["root"], ["z", "m", "a"]]


def test_layer_k_runs_as_super_step_k_plus_one():
    order: list[tuple[str, int]] = []

    def record(name):
        def step(state):
            order.append((name, state["x"]))
            return {"x": state["x"] + 1}

        return step

    graph = Graph("g", {"x": LastWriteWins()})
    for name in ("a", "b", "c"):
        graph.step(name, record(name))
    graph.edge("a", "b").edge("b", "c")
    runner = Runner(graph)
    outcome = runner.run("r", {"x": 0})
    # the value a step reads counts the super-steps before it
    assert order == [("a", 0), ("b", 1), ("c", 2)]
    assert outcome.super_step == 3
    assert [m.super_step for m in runner.history("r")] == [0, 1, 2, 3]
    assert [m.label for m in runner.history("r")] == ["input", "layer:1", "layer:2", "layer:3"]


def test_graph_is_frozen_once_a_runner_uses_it():
    graph = graph_of("a")
    Runner(graph)
    with pytest.raises(GraphError, match=r"frozen"):
        graph.step("b", noop)
    with pytest.raises(GraphError, match=r"frozen"):
        graph.edge("a", "a")


def test_to_mermaid_draws_every_step_and_edge():
    graph = graph_of("fetch", "approve", edges=(("fetch", "approve"),))
    text = graph.to_mermaid()
    assert text.startswith("flowchart")
    assert "fetch" in text
    assert "approve" in text
    assert text.count("-->") == 1


def test_to_mermaid_refuses_an_empty_graph_and_a_cycle_as_layers_does():
    with pytest.raises(GraphError, match=r"no steps"):
        Graph("g", {}).to_mermaid()
    cyclic = graph_of("a", "b", edges=(("a", "b"), ("b", "a")))
    with pytest.raises(GraphError, match=r"cycle: 'a' -> 'b' -> 'a'|cycle: 'b' -> 'a' -> 'b'"):
        cyclic.to_mermaid()


_LAYERS_SCRIPT = textwrap.dedent(
    """
    from pausegraph import Graph
    def noop(state):
        return None
    g = Graph("g", {})
    names = ["delta", "alpha", "kilo", "bravo", "zulu", "echo", "mike", "lima"]
    for n in names:
        g.step(n, noop)
    for src, dst in [("alpha", "zulu"), ("kilo", "zulu"), ("delta", "echo"),
                     ("zulu", "mike"), ("echo", "mike"), ("bravo", "lima")]:
        g.edge(src, dst)
    print([list(layer) for layer in g.layers()])
    """
)


def _layers_with_hash_seed(seed: str) -> str:
    env = {**os.environ, "PYTHONHASHSEED": seed}
    done = subprocess.run(
        [sys.executable, "-c", _LAYERS_SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def test_layer_order_does_not_change_with_pythonhashseed():
    first = _layers_with_hash_seed("0")
    second = _layers_with_hash_seed("12345")
    assert first == second
    assert first == repr([["delta", "alpha", "kilo", "bravo"], ["zulu", "echo", "lima"], ["mike"]])
