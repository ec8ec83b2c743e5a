"""Deadlines under the toolkit: FakeClock, TIMEOUT, and outcomes that ignore how a run was driven.

Random workflows of a few layers whose steps ask 1-3 interrupts, each with a
random timeout (or none) that the step catches or not, and sleep; random
answer times (``Schedule.waits``) and a random choice, per interrupt, to
answer it or wait it out (``TIMEOUT``). The final ``state()`` (values,
status, failure) is the same hot, cold, and with a process dying before
any save.
"""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Callable
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pausegraph import (
    Graph,
    Interrupt,
    InterruptTimeout,
    LastWriteWins,
    MergeMap,
    Runner,
    Sleep,
    StepError,
)
from pausegraph.testing import TIMEOUT, FakeClock, Schedule, drive, memory_store

# --- a small generator of workflows with deadlines ---------------------------


@attrs.frozen
class Ask:
    """``yield Interrupt(payload, timeout=timeout)``, caught or not; answered or waited out."""

    timeout: int | None
    catch: bool
    wait_out: bool


@attrs.frozen
class Nap:
    """``yield Sleep(seconds)``."""

    seconds: int


Action = Ask | Nap


def asks() -> st.SearchStrategy[Ask]:
    caught = st.builds(Ask, st.integers(0, 100), st.just(True), st.booleans())
    # an uncaught timeout fails the run and ends the drive: rarer, so runs go on
    uncaught = st.builds(
        Ask, st.integers(0, 100), st.just(False), st.sampled_from([False, False, False, True])
    )
    timed = caught | caught | uncaught
    untimed = st.builds(Ask, st.none(), st.booleans(), st.just(False))
    return timed | untimed


def actions() -> st.SearchStrategy[list[Action]]:
    naps = st.builds(Nap, st.integers(0, 100))
    return st.lists(asks() | naps, min_size=1, max_size=3).filter(
        lambda acts: any(isinstance(a, Ask) for a in acts)
    )


# layers of steps; every step of a layer follows every step of the layer before
Plan = list[list[list[Action]]]
plans: st.SearchStrategy[Plan] = st.lists(
    st.lists(actions(), min_size=1, max_size=2), min_size=1, max_size=3
)


def _step(name: str, acts: list[Action]) -> Callable[[Any], Any]:
    def step(state: Any) -> Any:
        got: list[Any] = [state["seen"]]
        for n, act in enumerate(acts):
            if isinstance(act, Nap):
                got.append((yield Sleep(act.seconds)))
                continue
            payload = {"step": name, "n": n, "wait_out": act.wait_out}
            if not act.catch:
                got.append((yield Interrupt(payload, timeout=act.timeout)))
                continue
            try:
                got.append((yield Interrupt(payload, timeout=act.timeout)))
            except InterruptTimeout:
                got.append("timed out")
        return {"results": {name: got}, "seen": name}

    return step


def build(plan: Plan) -> Graph:
    graph = Graph("deadlines", {"results": MergeMap(), "seen": LastWriteWins()})
    previous: list[str] = []
    for k, layer in enumerate(plan):
        names = [f"s{k}_{i}" for i in range(len(layer))]
        for name, acts in zip(names, layer, strict=True):
            graph = graph.step(name, _step(name, acts))
            for before in previous:
                graph = graph.edge(before, name)
        previous = names
    return graph


def answer_for(sleeps: str) -> Callable[[Any], Any]:
    def answer(payload: Any) -> Any:
        if payload is None:  # a Sleep: wake it early, or let it pass
            return TIMEOUT if sleeps == "wait" else "woken early"
        if payload["wait_out"]:
            return TIMEOUT
        return f"{payload['step']}.{payload['n']}"

    return answer


def outcome(plan: Plan, answer: Callable[[Any], Any], schedule: Schedule) -> Any:
    """The final ``state()`` of one drive, read by a new Runner on its store."""
    factory = memory_store()
    graph = build(plan)
    # an uncaught InterruptTimeout raises StepError and leaves the run failed
    with contextlib.suppress(StepError):
        drive(
            graph,
            answer=answer,
            checkpointer_factory=factory,
            schedule=schedule,
            clock=FakeClock(),
            max_commands=200,
        )
    info = Runner(graph, factory()).state("run")
    return info.values, info.status, info.failure


# --- the property -------------------------------------------------------------


@given(
    plan=plans,
    sleeps=st.sampled_from(["wait", "wake"]),
    waits=st.lists(st.integers(0, 150), max_size=8).map(tuple),
    crash=st.integers(1, 14),
)
def test_deadline_outcomes_are_the_same_hot_cold_and_after_a_crash(
    plan: Plan, sleeps: str, waits: tuple[int, ...], crash: int
) -> None:
    answer = answer_for(sleeps)
    hot = outcome(plan, answer, Schedule(waits=waits))
    cold = outcome(plan, answer, Schedule(cold=True, waits=waits))
    assert cold == hot
    crashed = outcome(plan, answer, Schedule(crashes=frozenset({crash}), waits=waits))
    values, status, failure = crashed
    # a recovery is one more pause, so later waits (and deadlines shown in a
    # failure's message) may shift; which step failed, and how, may not
    assert (values, status) == hot[:2]
    assert (failure and (failure.step_id, failure.error_type)) == (
        hot[2] and (hot[2].step_id, hot[2].error_type)
    )


# --- the driver's handling of time, rule by rule --------------------------------


def approval(state: Any) -> Any:
    try:
        answer = yield Interrupt("approve?", timeout=datetime.timedelta(days=1))
    except InterruptTimeout:
        answer = "escalated"
    nap = yield Sleep(60)
    return {"decision": [answer, nap]}


GRAPH = Graph("approval", {"decision": LastWriteWins()}).step("a", approval)


def test_a_fake_clock_moves_only_when_told() -> None:
    clock = FakeClock(1_000)
    assert clock() == 1_000
    assert clock.advance(1.5) == 2_500
    assert clock.advance(datetime.timedelta(minutes=1)) == 62_500
    assert clock.advance_to(10) == 62_500  # never back
    assert repr(clock) == "FakeClock(now_ms=62500)"
    with pytest.raises(ValueError, match=r"^FakeClock.advance\(seconds\) takes a finite"):
        clock.advance(-1)


def test_timeout_moves_the_clock_to_the_deadline_and_ticks() -> None:
    clock = FakeClock()
    start = clock()
    done = drive(GRAPH, answer=lambda p: TIMEOUT if p == "approve?" else p, clock=clock)
    assert done.state == {"decision": ["escalated", None]}
    assert clock() == start + 24 * 3600 * 1000  # the sleep was answered (None) at once


def test_wait_out_lets_every_deadline_pass_sleeps_included() -> None:
    clock = FakeClock()
    start = clock()
    done = drive(GRAPH, wait_out=True, cold=True, clock=clock)
    assert done.state == {"decision": ["escalated", None]}
    assert clock() == start + (24 * 3600 + 60) * 1000


def test_an_answer_after_the_deadline_before_a_tick_is_taken() -> None:
    late = Schedule(waits=(2 * 24 * 3600,))
    done = drive(GRAPH, answer=lambda p: "yes" if p == "approve?" else "up", schedule=late)
    assert done.state == {"decision": ["yes", "up"]}


def test_an_uncaught_timeout_raises_the_runs_step_error() -> None:
    def strict(state: Any) -> Any:
        yield Interrupt("q", timeout=5)
        return {}

    graph = Graph("strict", {"decision": LastWriteWins()}).step("a", strict)
    with pytest.raises(StepError, match=r"^step 'a' raised InterruptTimeout: interrupt '1.0.0'"):
        drive(graph, wait_out=True)


def test_timeout_for_an_interrupt_without_a_deadline_is_refused() -> None:
    def open_ended(state: Any) -> Any:
        yield Interrupt("q")
        return {}

    graph = Graph("open", {"decision": LastWriteWins()}).step("a", open_ended)
    with pytest.raises(ValueError, match=r"^answer returned TIMEOUT for interrupt '1.0.0'"):
        drive(graph, answer=lambda p: TIMEOUT)
