"""A command on a paused run waits for a driver that is only finishing its call.

A driver saves its pause, then syncs and lets go of the run's live lock. A
client that polls until the run reads ``"paused"`` and answers at once
(what docs/serving.md and docs/deployment.md advise) could meet that
moment: on PostgreSQL, 18 of 200 such answers failed with a
``ConflictError`` "is running" while ``state`` said ``"paused"``. The
command now waits for the lock, up to ``FINISHING_WAIT_S``; a run whose
latest checkpoint leaves work to do is being driven, and refused at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import pytest

from pausegraph import (
    ConflictError,
    FileCheckpointer,
    Graph,
    Interrupt,
    LastWriteWins,
    MemoryCheckpointer,
    Resume,
    Runner,
    _runner,
)
from pausegraph.checkpointers import Checkpointer


def _ask(state: Any) -> Generator[Any, Any, dict[str, Any]]:
    answer = yield Interrupt("ok?")
    return {"answer": answer}


def _graph() -> Graph:
    return Graph("g", {"answer": LastWriteWins()}).step("ask", _ask)


STORES: dict[str, Callable[[Path], tuple[Checkpointer, Checkpointer]]] = {
    "memory": lambda _: (lambda m: (m, m))(MemoryCheckpointer()),
    "file": lambda root: (FileCheckpointer(root), FileCheckpointer(root)),
}


def _hold(store: Checkpointer, seconds: float, held: threading.Event) -> threading.Thread:
    """Another driver holding the run's live lock for ``seconds``, then letting go."""

    def hold() -> None:
        with store.lock("g", "r"):
            held.set()
            time.sleep(seconds)

    thread = threading.Thread(target=hold)
    thread.start()
    assert held.wait(10)
    return thread


@pytest.mark.parametrize("kind", sorted(STORES))
def test_an_answer_waits_for_a_driver_finishing_its_pause(kind: str, tmp_path: Path) -> None:
    mine, theirs = STORES[kind](tmp_path)
    runner = Runner(_graph(), mine)
    runner.run("r")
    assert runner.state("r").status == "paused"
    held = threading.Event()
    thread = _hold(theirs, 0.3, held)
    started = time.monotonic()
    done = runner.resume("r", Resume("yes"))
    waited = time.monotonic() - started
    thread.join()
    assert done.state["answer"] == "yes"  # type: ignore[union-attr]
    assert 0.25 <= waited < _runner.FINISHING_WAIT_S


@pytest.mark.parametrize("kind", sorted(STORES))
def test_a_holder_that_keeps_a_paused_run_is_named_after_the_wait(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_runner, "FINISHING_WAIT_S", 0.2)
    mine, theirs = STORES[kind](tmp_path)
    runner = Runner(_graph(), mine)
    runner.run("r")
    held = threading.Event()
    thread = _hold(theirs, 1.0, held)
    started = time.monotonic()
    with pytest.raises(ConflictError, match="is running"):
        runner.resume("r", Resume("yes"))
    waited = time.monotonic() - started
    thread.join()
    assert 0.2 <= waited < 0.9
    assert mine.list("g", "r")[-1].label == "interrupt:ask"  # nothing saved
    assert runner.resume("r", Resume("yes")).state["answer"] == "yes"  # type: ignore[union-attr]


@pytest.mark.parametrize("kind", sorted(STORES))
def test_a_run_with_work_to_do_is_refused_at_once(kind: str, tmp_path: Path) -> None:
    mine, theirs = STORES[kind](tmp_path)
    runner = Runner(_graph(), mine)
    runner.start("r")  # queued: a driver holding it is driving it
    held = threading.Event()
    thread = _hold(theirs, 1.0, held)
    started = time.monotonic()
    with pytest.raises(ConflictError, match="is running"):
        runner.run("r")
    waited = time.monotonic() - started
    thread.join()
    assert waited < 0.5


def _twice(state: Any) -> Generator[Any, Any, dict[str, Any]]:
    first = yield Interrupt("first?")
    second = yield Interrupt("second?")
    return {"answer": [first, second]}


@pytest.mark.parametrize("kind", sorted(STORES))
def test_of_two_waiting_answers_the_second_never_answers_the_next_pause(
    kind: str, tmp_path: Path
) -> None:
    mine, theirs = STORES[kind](tmp_path)
    graph = Graph("g", {"answer": LastWriteWins()}).step("ask", _twice)
    Runner(graph, mine).run("r")
    held = threading.Event()
    thread = _hold(theirs, 0.3, held)
    outcomes: dict[str, Any] = {}

    def answer(who: str) -> None:
        try:
            outcomes[who] = Runner(graph, mine).resume("r", Resume(f"{who} to first"))
        except ConflictError as exc:
            outcomes[who] = exc

    clients = [threading.Thread(target=answer, args=(who,)) for who in ("b", "c")]
    for client in clients:
        client.start()
    for client in clients:
        client.join()
    thread.join()
    refused = [o for o in outcomes.values() if isinstance(o, ConflictError)]
    assert len(refused) == 1, outcomes
    assert "moved on while this command waited" in str(refused[0])
    state = Runner(graph, mine).state("r")
    assert state.status == "paused"
    assert [i.payload for i in state.interrupts] == ["second?"]  # nobody answered it


@pytest.mark.parametrize("kind", sorted(STORES))
def test_a_call_that_re_enters_its_own_run_is_refused_at_once(kind: str, tmp_path: Path) -> None:
    mine, _ = STORES[kind](tmp_path)
    runner = Runner(_graph(), mine)
    seen: list[BaseException] = []

    class Answering(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "paused" in record.getMessage():
                started = time.monotonic()
                try:
                    runner.submit("r", Resume("from the log"))
                except ConflictError as exc:
                    seen.append(exc)
                seen.append(TimeoutError(time.monotonic() - started))

    handler = Answering(level=logging.INFO)
    log = logging.getLogger("pausegraph")
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        runner.run("r")
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
    assert isinstance(seen[0], ConflictError)
    assert seen[1].args[0] < 0.5  # no wait for itself
    assert runner.state("r").status == "paused"
