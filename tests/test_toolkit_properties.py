"""The ready-made properties, as a user calls them from ``@given`` tests."""

from __future__ import annotations

from collections.abc import Generator, Mapping
from typing import Any

import pytest
from hypothesis import given, settings

from pausegraph import Effect, Graph, Interrupt, LastWriteWins
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
