"""The engine, proven on random workflows with pausegraph.testing.

Every property runs on each checkpointer: a fresh store per example, opened
through a factory so cold resumes and recoveries get a new handle on it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from pausegraph import Checkpointer, FileCheckpointer, Paused, Resume, Runner
from pausegraph.testing import (
    CheckpointerFactory,
    GeneratedGraph,
    answers,
    assert_effects_run_once,
    assert_path_independent,
    assert_paused_runs_replay,
    assert_same_as_answers_up_front,
    assert_store_independent,
    graphs,
    memory_store,
    schedules,
)


@contextmanager
def memory() -> Iterator[CheckpointerFactory]:
    yield memory_store()


@contextmanager
def files() -> Iterator[CheckpointerFactory]:
    with tempfile.TemporaryDirectory() as root:
        yield lambda: FileCheckpointer(Path(root) / "store")


STORES: dict[str, Callable[[], Any]] = {"memory": memory, "file": files}
store_names = pytest.mark.parametrize("store", sorted(STORES))
# the file store fsyncs every save: fewer examples keep the suite fast
FILE_EXAMPLES = 25


def limit(store: str) -> settings:
    return settings(max_examples=FILE_EXAMPLES) if store == "file" else settings()


def answer_with(seed: Any) -> Callable[[Any], Any]:
    """An answer that depends on the payload, so each interrupt gets its own answer."""
    return lambda payload: [seed, payload["acc"]]


@store_names
def test_final_state_does_not_depend_on_hot_cold_one_by_one_or_dying(store: str) -> None:
    @limit(store)
    @given(graph=graphs(max_steps=5), schedule=schedules(), seed=answers())
    def check(graph: GeneratedGraph, schedule: Any, seed: Any) -> None:
        with STORES[store]() as factory:
            assert_path_independent(
                graph, schedule=schedule, answer=answer_with(seed), checkpointer_factory=factory
            )

    check()


@store_names
def test_final_state_does_not_depend_on_breakpoints(store: str) -> None:
    @limit(store)
    @given(graph=graphs(max_steps=4), schedule=schedules(), data=st.data())
    def check(graph: GeneratedGraph, schedule: Any, data: st.DataObject) -> None:
        steps = st.sets(st.sampled_from(list(graph.steps)))
        before, after = data.draw(steps, label="before"), data.draw(steps, label="after")
        with STORES[store]() as factory:
            plain = Runner(GeneratedGraph(graph.plan, answer=repr)).run("run")
            done = assert_path_independent(
                graph,
                schedule=schedule,
                answer=repr,
                checkpointer_factory=factory,
                interrupt_before=before,
                interrupt_after=after,
            )
        assert done == plain

    check()


def test_final_state_does_not_depend_on_the_checkpointer() -> None:
    @settings(max_examples=FILE_EXAMPLES)
    @given(graph=graphs(max_steps=5), seed=answers())
    def check(graph: GeneratedGraph, seed: Any) -> None:
        with files() as on_disk:
            assert_store_independent(
                graph, checkpointer_factories=[memory_store(), on_disk], answer=answer_with(seed)
            )

    check()


@store_names
def test_every_effect_runs_once_unless_the_process_died_before_its_result_was_saved(
    store: str,
) -> None:
    @limit(store)
    @given(graph=graphs(max_steps=5), schedule=schedules())
    def check(graph: GeneratedGraph, schedule: Any) -> None:
        with STORES[store]() as factory:
            assert_effects_run_once(
                graph, schedule=schedule, answer=repr, checkpointer_factory=factory
            )

    check()


@pytest.mark.parametrize("shape", ["chain", "fanout"])
@given(data=st.data(), seed=answers())
def test_chains_and_fanouts_end_as_if_every_answer_was_known_up_front(
    shape: Any, data: st.DataObject, seed: Any
) -> None:
    graph = data.draw(graphs(max_steps=6, shape=shape), label="graph")
    schedule = data.draw(schedules(), label="schedule")
    assert_same_as_answers_up_front(graph, answer=answer_with(seed), schedule=schedule)


@store_names
def test_paused_runs_replay_with_the_code_that_paused_them_and_the_check_saves_nothing(
    store: str,
) -> None:
    @limit(store)
    @given(graph=graphs(max_steps=4), answered=st.integers(0, 3))
    def check(graph: GeneratedGraph, answered: int) -> None:
        with STORES[store]() as factory:
            checkpointer: Checkpointer = factory()
            runner = Runner(graph, checkpointer)
            outcome = runner.run("paused")
            for _ in range(answered):  # pause the run somewhere further on
                if not isinstance(outcome, Paused):
                    break
                first = outcome.interrupts[0]
                outcome = runner.resume("paused", Resume(answers={first.id: first.id}))
            before = {run: checkpointer.list(*run) for run in checkpointer.runs()}
            # the run may have ended (no interrupt, or all answered): nothing to check then
            assert_paused_runs_replay(graph, factory(), allow_empty=True)
            after = {run: checkpointer.list(*run) for run in checkpointer.runs()}
            assert after == before

    check()


def test_the_properties_above_draw_conditional_edges_and_all_fan_outs() -> None:
    """The graphs these properties draw include both new shapes, together."""
    drawn: list[GeneratedGraph] = []

    @settings(max_examples=300, phases=[Phase.generate], database=None)
    @given(graph=graphs(max_steps=5))
    def collect(graph: GeneratedGraph) -> None:
        drawn.append(graph)

    collect()
    both = [g for g in drawn if g.when and g.plan.has_fan() and g.plan.interrupt_count()]
    assert both, "no drawn graph had a conditional edge and an All"
    graph = both[0]
    assert all(w.name in graph.to_mermaid() for _, _, w in graph.plan.when)


@store_names
def test_conditional_edges_and_fan_outs_are_hot_cold_and_crash_independent(store: str) -> None:
    """Every example has a conditional edge and an All whose branches interrupt."""

    @limit(store)
    @given(
        graph=graphs(max_steps=4).filter(lambda g: bool(g.when) and g.plan.has_fan()),
        schedule=schedules(),
        seed=answers(),
    )
    def check(graph: GeneratedGraph, schedule: Any, seed: Any) -> None:
        with STORES[store]() as factory:
            assert_path_independent(
                graph, schedule=schedule, answer=answer_with(seed), checkpointer_factory=factory
            )
        with STORES[store]() as factory:  # a fresh store: the run above has ended
            assert_effects_run_once(
                graph, schedule=schedule, answer=answer_with(seed), checkpointer_factory=factory
            )

    check()
