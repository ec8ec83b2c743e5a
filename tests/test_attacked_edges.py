"""Rules that an attack on the run state machine once broke, pinned one by one."""

from __future__ import annotations

import gc
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from pausegraph import (
    Effect,
    EffectError,
    FileCheckpointer,
    Goto,
    Graph,
    GraphError,
    Interrupt,
    LastWriteWins,
    MemoryCheckpointer,
    Resume,
    ResumeError,
    Runner,
    Update,
)
from pausegraph.checkpointers import Checkpointer
from pausegraph.cli import main as cli_main


@pytest.fixture(params=["memory", "file"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Checkpointer:
    if request.param == "memory":
        return MemoryCheckpointer()
    return FileCheckpointer(tmp_path / "store")


def _deep(n: int) -> Any:
    value: Any = 1
    for _ in range(n):
        value = [value]
    return value


@pytest.mark.parametrize(
    "value",
    [[{} for _ in range(200)], [[] for _ in range(5000)], _deep(99)],
    ids=["200 empty maps", "5000 empty lists", "99 deep"],
)
def test_every_value_the_engine_accepts_reads_back(store: Checkpointer, value: Any) -> None:
    def ask(state: Any) -> Any:
        answer = yield Interrupt("q")
        return {"out": answer}

    graph = Graph("g", {"v": LastWriteWins(), "out": LastWriteWins()}).step("ask", ask)
    Runner(graph, store).run("r", {"v": value})
    assert Runner(graph, store).state("r").values["v"] == value
    done = Runner(graph, store).resume("r", Resume(value))  # a cold resume replays it
    assert done.state == {"v": value, "out": value}


def test_the_effect_error_that_failed_a_step_is_retried_even_after_a_finally_effect(
    store: Checkpointer,
) -> None:
    calls = {"flaky": 0, "release": 0}

    def flaky() -> str:
        calls["flaky"] += 1
        if calls["flaky"] == 1:
            raise RuntimeError("down")
        return "ok"

    def release() -> str:
        calls["release"] += 1
        return "released"

    def step(state: Any) -> Any:
        try:
            result = yield Effect(flaky)
            return {"out": result}
        finally:
            yield Effect(release)

    runner = Runner(Graph("g", {"out": LastWriteWins()}).step("a", step), store)
    with pytest.raises(EffectError, match=r"RuntimeError: down"):
        runner.run("r")
    assert runner.run("r").state == {"out": "ok"}
    assert calls == {"flaky": 2, "release": 2}  # each attempt's finally ran once


def test_a_step_that_yields_forever_while_closed_is_let_go_quietly(
    capfd: pytest.CaptureFixture[str],
) -> None:
    def forever(state: Any) -> Any:
        try:
            yield Interrupt("q")
        finally:
            while True:
                try:
                    yield Effect(print, "never")
                except GeneratorExit:  # the point: a step that ignores being closed
                    continue

    runner = Runner(Graph("g", {"out": LastWriteWins()}).step("a", forever))
    runner.run("r")
    runner.cancel("r")
    del runner
    gc.collect()
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda: Update(5), GraphError),  # type: ignore[arg-type]
        (lambda: Resume(answers=5), ResumeError),  # type: ignore[arg-type]
        (lambda: Goto("a", update=3), GraphError),  # type: ignore[arg-type]
    ],
)
def test_a_command_given_something_that_is_not_a_dict_says_so(make: Any, error: type) -> None:
    with pytest.raises(error, match=r"must be a dict, got int"):
        make()


@pytest.mark.parametrize("run_id", ["a\x85b", "a\u2028b", "a\u2029b", "\u00a0"])
def test_run_ids_that_split_lines_are_stored_and_listed_on_one_line(
    run_id: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runner = Runner(Graph("g", {"x": LastWriteWins()}).step("s", lambda s: None),
                    FileCheckpointer(tmp_path))  # fmt: skip
    runner.run(run_id)
    assert runner.checkpointer.runs() == [("g", run_id)]
    assert cli_main(["--store", str(tmp_path), "runs"]) == 0
    listed = capsys.readouterr().out
    assert len(listed.splitlines()) == 2  # the header and one row
    assert repr(run_id) in listed


def test_leaving_a_refused_run_never_removes_another_holders_new_lock_file(
    tmp_path: Path,
) -> None:
    store = FileCheckpointer(tmp_path)
    lock_path = store.store._lock_path("wf", "r")
    taken, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def other_driver() -> None:
        try:
            with FileCheckpointer(tmp_path).lock("wf", "r"):
                taken.set()
                release.wait(10)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
            taken.set()

    with store.lock("wf", "r"):
        os.unlink(lock_path)  # as delete() does while it holds the run
        thread = threading.Thread(target=other_driver)
        thread.start()
        assert taken.wait(10)
    # the run has no log, but the lock file at the path is the other driver's now
    assert os.path.exists(lock_path)
    assert store.holder("wf", "r") is not None
    release.set()
    thread.join()
    assert errors == []
