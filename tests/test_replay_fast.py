"""The fast replay of answered interrupts agrees with the general path, error for error.

A cold resume replays a step through every interrupt its journal recorded;
``Trampoline._drive`` takes the common case (an ``Asked`` entry, answered,
whose payload encodes to the same bytes) without normalising the payload,
and hands everything else to the general path. These tests run
the same replays with the fast path switched off and check that nothing
differs: the answers each ``yield`` gets, where the step stops, and the
``NondeterminismError`` (its message names both payloads and the position).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from pausegraph import (
    Effect,
    FileCheckpointer,
    Graph,
    Interrupt,
    InterruptTimeout,
    LastWriteWins,
    NondeterminismError,
    Paused,
    Resume,
    Runner,
    Sleep,
)
from pausegraph._records import Asked, Entry, Returned
from pausegraph._trampoline import SUSPENDED, Trampoline, start
from pausegraph._values import freeze, pack

scalars = (
    st.sampled_from([float("nan"), -0.0, 0.0, 1, 1.0, True, False, None, 2**64 - 1])
    | st.floats()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.text(max_size=4)
    | st.binary(max_size=4)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=6,
)


class _GeneralPathOnly(dict[str, Any]):
    """Answers the fast path never finds (it looks them up with ``get``): the general path."""

    def get(self, key: Any, default: Any = None) -> Any:
        return default


def _replay(
    journal: list[Entry], answers: dict[str, Any], yielded: list[Any], *, fast: bool
) -> tuple[list[Any], str]:
    """Replay ``journal`` with a step that yields ``yielded``: what it got, and how it ended."""
    got: list[Any] = []

    def step(state: Any) -> Generator[Any, Any, None]:
        for payload in yielded:
            got.append((yield Interrupt(payload)))

    given = answers if fast else _GeneralPathOnly(answers)
    tramp = start("s", step, {}, list(journal), given, 1, 0, clock=lambda: 0)
    assert type(tramp) is Trampoline
    try:
        status = tramp.run()
    except NondeterminismError as exc:
        return got, f"NondeterminismError: {exc}"
    finally:
        tramp.close()
    return got, "finished" if status is not SUSPENDED else f"suspended at {len(tramp.journal)}"


def _journal(recorded: list[Any], answered: int) -> tuple[list[Entry], dict[str, Any]]:
    journal: list[Entry] = [Asked(f"1.0.{n}", freeze(p)) for n, p in enumerate(recorded)]
    answers = {f"1.0.{n}": freeze([n, recorded[n]]) for n in range(min(answered, len(recorded)))}
    return journal, answers


@given(
    recorded=st.lists(values, max_size=5),
    changes=st.lists(st.tuples(st.integers(0, 5), values), max_size=2),
    answered=st.integers(0, 5),
    extra=st.integers(0, 1),
)
@example(recorded=[float("nan"), 1], changes=[], answered=2, extra=0)
@example(recorded=[1, 1], changes=[(1, 1.0)], answered=2, extra=0)
@example(recorded=[0.0], changes=[(0, -0.0)], answered=1, extra=0)
@example(recorded=[{"a": 1, "b": 2}], changes=[(0, {"b": 2, "a": 1})], answered=1, extra=0)
def test_fast_and_general_replay_agree(
    recorded: list[Any], changes: list[tuple[int, Any]], answered: int, extra: int
) -> None:
    yielded = list(recorded) + [None] * extra
    for position, value in changes:
        if position < len(yielded):
            yielded[position] = value
    journal, answers = _journal(recorded, answered)
    fast = _replay(journal, answers, yielded, fast=True)
    general = _replay(journal, answers, yielded, fast=False)
    assert pack(fast[0]) == pack(general[0])
    assert fast[1] == general[1]
    # and both are what the rule says: the first payload that encodes otherwise is an error
    differs = [
        n for n in range(min(len(recorded), len(yielded))) if pack(recorded[n]) != pack(yielded[n])
    ]
    if differs and differs[0] <= min(answered, len(recorded)):
        assert fast[1].startswith("NondeterminismError: step 's' yielded Interrupt(")
        assert f"at journal position {differs[0]}, but its journal recorded Interrupt(" in fast[1]


def test_the_fast_path_names_both_payloads_and_the_position() -> None:
    journal, answers = _journal(["first", float("nan"), {"n": 1}], 3)
    got, outcome = _replay(journal, answers, ["first", float("nan"), {"n": 1.0}], fast=True)
    assert got == [[0, "first"], [1, pytest.approx(float("nan"), nan_ok=True)]]
    assert outcome == (
        "NondeterminismError: step 's' yielded Interrupt({'n': 1.0}) at journal position 2, "
        "but its journal recorded Interrupt({'n': 1}) there: a step must repeat its interrupts "
        "(same payloads), effects (same functions) and All (same number of branches) in the "
        "same order when it is replayed; deploy code that does, or Goto a step to run the "
        "layer afresh"
    )


def test_a_replayed_answer_is_the_steps_own_copy() -> None:
    journal, answers = _journal([{"q": 1}, {"q": 2}], 2)
    answers["1.0.1"] = 7  # an immutable answer is sent as it is
    seen: list[Any] = []

    def step(state: Any) -> Generator[Any, Any, None]:
        first = yield Interrupt({"q": 1})
        first[1]["mine"] = True  # a plain, mutable copy: the journal's is not changed
        seen.append(first)
        seen.append((yield Interrupt({"q": 2})))
        yield Interrupt({"q": 3})

    tramp = start("s", step, {}, list(journal), answers, 1, 0, clock=lambda: 0)
    assert type(tramp) is Trampoline
    assert tramp.run() is SUSPENDED
    assert seen == [[0, {"q": 1, "mine": True}], 7]
    assert answers["1.0.0"] == [0, {"q": 1}]
    assert [e.id for e in tramp.journal] == ["1.0.0", "1.0.1", "1.0.2"]
    tramp.close()


def test_an_answer_of_none_replays_as_none() -> None:
    journal, answers = _journal(["a", "b"], 2)
    answers = dict.fromkeys(answers)
    got, outcome = _replay(journal, answers, ["a", "b"], fast=True)
    assert got == [None, None]
    assert outcome == "finished"


def test_a_recorded_effect_where_an_interrupt_is_yielded_is_nondeterminism() -> None:
    journal: list[Entry] = [Returned("m.f", 1)]
    got, outcome = _replay(journal, {}, ["q"], fast=True)
    assert got == []
    assert outcome.startswith(
        "NondeterminismError: step 's' yielded Interrupt('q') at journal position 0, "
        "but its journal recorded Effect(m.f) there"
    )


def _times_out(state: Any) -> Generator[Any, Any, dict[str, Any]]:
    log = []
    for n in range(3):
        log.append((yield Interrupt({"n": n})))
    try:
        yield Interrupt("late", timeout=1)
    except InterruptTimeout:
        log.append("timed out")
    log.append((yield Sleep(5)))
    log.append((yield Effect(len, "abc")))
    log.append((yield Interrupt("last")))
    return {"log": log}


def test_a_cold_resume_replays_timeouts_sleeps_and_effects_around_a_loop(tmp_path: Any) -> None:
    now = [1_000_000]
    graph = Graph("t", {"log": LastWriteWins()}).step("s", _times_out)
    runner = Runner(graph, FileCheckpointer(tmp_path), clock=lambda: now[0])
    out = runner.run("r")
    for n in range(3):
        assert isinstance(out, Paused)
        assert out.payload == {"n": n}
        out = Runner(graph, FileCheckpointer(tmp_path), clock=lambda: now[0]).resume("r", Resume(n))
    assert isinstance(out, Paused)
    assert out.payload == "late"
    now[0] += 2_000
    Runner(graph, FileCheckpointer(tmp_path), clock=lambda: now[0]).tick()
    now[0] += 6_000
    Runner(graph, FileCheckpointer(tmp_path), clock=lambda: now[0]).tick()
    cold = Runner(graph, FileCheckpointer(tmp_path), clock=lambda: now[0])
    assert cold.state("r").interrupts[0].payload == "last"
    done = cold.resume("r", Resume("end"))
    assert done.state["log"] == [0, 1, 2, "timed out", None, 3, "end"]
