"""``pausegraph history`` and the web run page read what each checkpoint recorded in one pass.

They loaded every checkpoint in turn, each rebuilt from its snapshot and the
deltas after it: quadratic in a run's length (24 s for the CLI's history of
a 2,000-round interrupt loop, 7 s for the run page of a 500-round one).
``history_of`` reads the frames once and decodes only those of claims and
effects; what it finds must be what loading each checkpoint finds.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import pytest

from pausegraph import (
    Append,
    Continue,
    Effect,
    FileCheckpointer,
    Graph,
    Interrupt,
    LastWriteWins,
    MemoryCheckpointer,
    Resume,
    Runner,
    SqliteCheckpointer,
    StepError,
    Update,
    Worker,
)
from pausegraph._cli_render import history_of, recorded_of
from pausegraph.checkpointers import Checkpointer


def _echo(value: Any) -> Any:
    return value


def _refuse(value: Any) -> Any:
    raise ValueError(f"no {value}")


def _loop(state: Any) -> Generator[Any, Any, dict[str, Any]]:
    seen = []
    while True:
        answer = yield Interrupt({"round": len(seen)})
        if answer == "stop":
            return {"log": seen}
        seen.append(answer)
        if len(seen) % 7 == 0:
            seen.append((yield Effect(_echo, answer)))


def _pair(state: Any) -> Generator[Any, Any, dict[str, Any]]:
    a = yield Interrupt("a?")
    try:
        yield Effect(_refuse, a)
    except Exception as exc:  # recorded as raised: replayed, never called again
        a = [a, str(exc)]
    b = yield Interrupt("b?")
    return {"log": [a, b]}


def _graph() -> Graph:
    channels = {"log": Append(), "note": LastWriteWins()}
    return (
        Graph("h", channels)
        .step("loop", _loop)
        .step("pair", _pair)
        .step("end", lambda state: {"note": len(state["log"])})
        .edge("loop", "end")
        .edge("pair", "end")
    )


def _answer_all(runner: Runner, run_id: str, value: Callable[[int], Any]) -> None:
    state = runner.state(run_id)
    for n in range(200):
        if state.status != "paused" or not state.interrupts:
            return
        if n % 11 == 5:  # an edit kept at the pause, saved as its own checkpoint
            runner.resume(run_id, Update({"note": n}))
        answers = {i.id: value(n) for i in state.interrupts}
        runner.resume(run_id, Resume(answers=answers))
        state = runner.state(run_id)


STORES: dict[str, Callable[[Path], Checkpointer]] = {
    "memory": lambda _: MemoryCheckpointer(),
    "file": lambda root: FileCheckpointer(root / "store"),
    "sqlite": lambda root: SqliteCheckpointer(root / "runs.db"),
}


@pytest.mark.parametrize("kind", sorted(STORES))
def test_history_of_finds_what_loading_each_checkpoint_finds(kind: str, tmp_path: Path) -> None:
    store = STORES[kind](tmp_path)
    runner = Runner(_graph(), store, interrupt_before=("end",))
    runner.run("r", {})
    _answer_all(runner, "r", lambda n: "stop" if n == 150 else n)
    runner.resume("r", Continue())
    assert runner.state("r").status == "done"
    expected = [
        (m, recorded_of(c) if (c := store.load("h", "r", m.seq)) is not None else None)
        for m in store.list("h", "r")
    ]
    assert len(expected) > 300
    assert sum(r is not None for _, r in expected) > 150  # answers and effects both
    assert {next(iter(r)) for _, r in expected if r} == {"answers", "effect"}
    assert history_of(store, "h", "r") == expected


@pytest.mark.parametrize("kind", sorted(STORES))
def test_history_of_rebuilds_no_checkpoint(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = STORES[kind](tmp_path)
    runner = Runner(_graph(), store)
    runner.run("r", {})
    _answer_all(runner, "r", lambda n: "stop" if n == 120 else n)

    def no_load(*args: Any) -> None:
        raise AssertionError("history_of loaded a checkpoint")

    monkeypatch.setattr(store, "load", no_load)
    history = history_of(store, "h", "r")
    assert [m.seq for m, _ in history] == list(range(1, len(history) + 1))
    assert history[-1][0].label.startswith("layer:")


@pytest.mark.parametrize("kind", sorted(STORES))
def test_an_answer_a_worker_takes_up_is_said_once_where_it_was_given(
    kind: str, tmp_path: Path
) -> None:
    # submit saves the claim, the worker claims again with the same answers
    store = STORES[kind](tmp_path)
    runner = Runner(_graph(), store)
    runner.start("r", {})
    Worker(store, [_graph()]).poll()
    given = []
    for n in range(3):
        answers = {i.id: n for i in runner.state("r").interrupts}
        runner.submit("r", Resume(answers=answers))
        Worker(store, [_graph()]).poll()
        given.append(answers)
    history = history_of(store, "h", "r")
    assert [r["answers"] for _, r in history if r and "answers" in r] == given
    claims = [m.label for m, _ in history if m.label == "resume"]
    assert len(claims) == 7  # the worker's first, then two of each answer: one says it
    # a checkpointer off the protocol (loading each checkpoint) says the same
    assert history_of(_Loaded(store), "h", "r") == history


class _Loaded:
    """A checkpointer that is not a ``StoreCheckpointer``: ``history_of`` loads each claim."""

    def __init__(self, store: Checkpointer) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def _strict(state: Any) -> Generator[Any, Any, dict[str, Any]]:
    got = yield Interrupt("exactly true?")
    if got is not True:
        raise ValueError(f"need true, got {got!r}")
    return {"note": got}


def _fail_then_reanswer(store: Checkpointer, again: Any) -> str:
    """Answer 1, which fails the strict step, then answer ``again``; the interrupt's id."""
    runner = Runner(Graph("strict", {"note": LastWriteWins()}).step("s", _strict), store)
    asked = runner.run("r").interrupts[0].id  # type: ignore[union-attr]
    with pytest.raises(StepError):
        runner.resume("r", Resume(answers={asked: 1}))
    with contextlib.suppress(StepError):
        runner.resume("r", Resume(answers={asked: again}))
    return asked


@pytest.mark.parametrize("kind", sorted(STORES))
@pytest.mark.parametrize("again", [True, 1], ids=["true-after-1", "1-after-1"])
def test_a_re_answer_of_a_failed_step_is_said_even_when_python_calls_it_equal(
    kind: str, again: Any, tmp_path: Path
) -> None:
    # 1 == True in Python, and a re-sent 1 re-runs the step: both are said
    store = STORES[kind](tmp_path)
    asked = _fail_then_reanswer(store, again)
    said = [r["answers"] for _, r in history_of(store, "strict", "r") if r and "answers" in r]
    assert said == [{asked: 1}, {asked: again}]
    assert type(said[1][asked]) is type(again)


@pytest.mark.parametrize("again", [True, 1], ids=["true-after-1", "1-after-1"])
def test_off_the_protocol_a_re_answer_is_said_too(again: Any) -> None:
    store = MemoryCheckpointer()
    asked = _fail_then_reanswer(store, again)
    history = history_of(_Loaded(store), "strict", "r")
    assert [r["answers"] for _, r in history if r and "answers" in r] == [
        {asked: 1},
        {asked: again},
    ]
    assert history == history_of(store, "strict", "r")
