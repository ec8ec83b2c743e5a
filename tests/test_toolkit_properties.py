"""The ready-made properties, as a user calls them from ``@given`` tests."""

from __future__ import annotations

import random
from collections.abc import Generator, Mapping
from typing import Any

import attrs
import pytest
from hypothesis import given, settings

from pausegraph import (
    Checkpoint,
    Effect,
    Graph,
    Interrupt,
    LastWriteWins,
    MemoryCheckpointer,
    NondeterminismError,
)
from pausegraph.testing import (
    Schedule,
    assert_effects_run_once,
    assert_path_independent,
    assert_store_independent,
    memory_store,
    schedules,
)

# --- assert_effects_run_once with a log shared by every example ------------------------

sent: list[str] = []  # never cleared: as in docs/testing.md


def send_mail(to: str) -> str:
    sent.append(to)
    return "sent"


def mail_then_ask(state: Mapping[str, Any]) -> Generator[Any, Any, dict[str, Any]]:
    receipt = yield Effect(send_mail, "client")
    ok = yield Interrupt("send more?")
    return {"x": [receipt, ok]}


MAIL = Graph("mail", {"x": LastWriteWins()}).step("s", mail_then_ask)


@settings(max_examples=15)
@given(schedule=schedules())
def test_a_log_shared_across_examples_only_counts_the_calls_of_each_check(
    schedule: Schedule,
) -> None:
    assert_effects_run_once(MAIL, schedule=schedule, answer=str, log=sent, expected=["client"])


def test_a_check_still_fails_on_a_rerun_after_earlier_calls_in_the_log() -> None:
    def mails_outside(state: Mapping[str, Any]) -> Generator[Any, Any, dict[str, Any]]:
        send_mail("boss")  # a bug: runs again on every replay
        ok = yield Interrupt("?")
        return {"x": ok}

    sent[:] = ["boss", "boss", "client"]  # what earlier checks left
    graph = Graph("mail", {"x": LastWriteWins()}).step("s", mails_outside)
    with pytest.raises(
        AssertionError,
        match=r"^effects did not run exactly once:\n  'boss' ran again \(calls #1 and #2\)",
    ):
        assert_effects_run_once(graph, schedule=Schedule(cold=True), log=sent)


# --- the properties name the step at fault ----------------------------------------------

opened: list[str] = []


def opens_outside_an_effect(state: Mapping[str, Any]) -> Generator[Any, Any, dict[str, Any]]:
    opened.append("connection")  # a bug: a side effect outside an Effect, again on replay
    yield Interrupt("?")
    count = len(opened)
    opened.clear()
    return {"x": count}


def test_path_property_names_a_step_that_changes_on_replay_and_suggests_an_effect() -> None:
    opened.clear()
    graph = Graph("opens", {"x": LastWriteWins()}).step("s", opens_outside_an_effect)
    with pytest.raises(
        AssertionError,
        match=r"^step 's' writes differently when it is replayed: on a plain run it wrote "
        r"\{'x': 1\}, under Schedule\(cold=True, one_by_one=\(\), crashes=frozenset\(\)\) "
        r"\(called 2 time\(s\)\) it wrote \{'x': 2\}\. Code outside `yield Effect\(fn, \.\.\.\)` "
        r"runs again each time the step is replayed",
    ) as info:
        assert_path_independent(graph, schedule=Schedule(cold=True), answer=str)
    assert str(info.value).endswith(
        "The final states differ:\n  channel 'x':\n    expected 1\n    got      2"
    )


ticks = iter(range(10**6))


def stamps(state: Mapping[str, Any]) -> dict[str, Any]:
    return {"stamp": next(ticks)}  # a bug: like reading the clock


def passes(state: Mapping[str, Any]) -> dict[str, Any]:
    return {"seen": state["stamp"]}


def test_store_property_names_the_first_step_that_is_not_deterministic() -> None:
    channels = {"stamp": LastWriteWins(), "seen": LastWriteWins()}
    graph = Graph("stamped", channels).step("stamp", stamps).step("pass", passes)
    graph.edge("stamp", "pass")
    with pytest.raises(AssertionError, match=r"^step 'stamp' is not deterministic: "):
        assert_store_independent(graph, checkpointer_factories=[memory_store(), memory_store()])


# --- what a property would otherwise pass without checking ------------------------------


def coin(state: Mapping[str, Any]) -> Generator[Any, Any, dict[str, Any]]:
    # a bug: whether the step asks depends on a random draw
    answer = (yield Interrupt("heads?")) if random.random() < 0.5 else "tails"
    return {"x": answer}


def test_a_step_deciding_on_random_is_caught_though_hypothesis_seeds_random_alike() -> None:
    # hypothesis seeds ``random`` the same way before every example: the two runs of an
    # example drew the same two numbers in every example, on the same side of 0.5
    graph = Graph("coin", {"x": LastWriteWins()}).step("coin", coin)
    caught = []
    for cold in (False, True):
        for wait in range(4):  # schedules with no death: the scheduled run draws once
            schedule = Schedule(cold=cold, waits=(float(wait),))
            random.seed(0)  # as hypothesis does
            try:
                assert_path_independent(graph, schedule=schedule)
            except (AssertionError, NondeterminismError):
                caught.append(schedule)
    assert caught


class LossyCheckpointer(MemoryCheckpointer):
    """A store that gives channel ``x`` back as text: runs resumed cold end differently."""

    def latest(self, workflow_id: str, run_id: str) -> Checkpoint | None:
        latest = super().latest(workflow_id, run_id)
        if latest is None:
            return None
        return attrs.evolve(latest, values={**latest.values, "x": repr(latest.values["x"])})


def asks_then_copies(state: Mapping[str, Any]) -> Generator[Any, Any, dict[str, Any]]:
    yield Interrupt("copy?")
    return {"y": state["x"]}


def test_one_store_alone_is_compared_with_the_memory_store() -> None:
    channels = {"x": LastWriteWins(), "y": LastWriteWins()}
    graph = Graph("copy", channels).step("a", lambda state: {"x": 1})
    graph.step("b", asks_then_copies).edge("a", "b")
    lossy = LossyCheckpointer()
    with pytest.raises(AssertionError, match=r"factory 0 vs factory 1(.|\n)*'1'"):
        assert_store_independent(graph, checkpointer_factories=[lambda: lossy])


def test_effects_run_once_without_a_log_on_a_graph_of_ones_own_is_refused() -> None:
    with pytest.raises(ValueError, match=r"watched nothing.*Pass log="):
        assert_effects_run_once(MAIL, schedule=Schedule(cold=True), answer=str)
