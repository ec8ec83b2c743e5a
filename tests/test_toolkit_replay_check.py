"""The replay check for CI fails when it checked nothing: a wrong path must not pass."""

from __future__ import annotations

import os
import re
from collections.abc import Generator, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from pausegraph import (
    Effect,
    EffectError,
    FileCheckpointer,
    Graph,
    Interrupt,
    LastWriteWins,
    MemoryCheckpointer,
    Runner,
)
from pausegraph.testing import assert_paused_runs_replay
from pausegraph.testing._replay import find_replay_failures


def ask(state: Mapping[str, Any]) -> Generator[Any, Any, dict[str, Any]]:
    answer = yield Interrupt("ok?")
    return {"x": answer}


def graph(name: str = "expense") -> Graph:
    return Graph(name, {"x": LastWriteWins()}).step("ask", ask)


@pytest.fixture
def in_tmp(tmp_path: Path) -> Iterator[Path]:
    here = Path.cwd()
    os.chdir(tmp_path)
    try:
        yield tmp_path
    finally:
        os.chdir(here)


def test_a_store_at_a_mistyped_path_fails_naming_the_store_and_the_workflow(tmp_path: Path) -> None:
    typo = tmp_path / "prod-copy-typo"
    expected = (
        f"found no paused run of workflow 'expense' in <FileCheckpointer {str(typo)!r}> "
        "(it holds no run at all): nothing was checked; is the path right? "
        "Pass allow_empty=True if no paused run is expected"
    )
    with pytest.raises(AssertionError, match=f"^{re.escape(expected)}$"):
        assert_paused_runs_replay(graph(), FileCheckpointer(typo))


def test_a_relative_path_is_named_with_the_directory_it_means(in_tmp: Path) -> None:
    where = str(in_tmp / "prod-copy")
    with pytest.raises(AssertionError) as raised:
        assert_paused_runs_replay(graph(), FileCheckpointer("prod-copy"))
    assert f"<FileCheckpointer 'prod-copy'> (the directory {where!r})" in str(raised.value)


def test_a_store_of_finished_runs_and_other_workflows_fails_saying_what_it_holds() -> None:
    store = MemoryCheckpointer()
    quick = Graph("expense", {"x": LastWriteWins()}).step("ask", lambda state: {"x": 1})
    Runner(quick, store).run("finished")
    with pytest.raises(AssertionError, match=r"\(it holds 1 run\(s\) of 'expense', none paused\)"):
        assert_paused_runs_replay(graph(), store)
    Runner(graph("other"), store).run("elsewhere")  # paused, but another workflow
    with pytest.raises(
        AssertionError,
        match=r"\(it holds 1 run\(s\) of 'expense', none paused and runs of 'other'\): "
        "nothing was checked",
    ):
        assert_paused_runs_replay(graph(), store)


def test_allow_empty_lets_a_store_with_no_paused_run_pass(tmp_path: Path) -> None:
    assert_paused_runs_replay(graph(), FileCheckpointer(tmp_path / "empty"), allow_empty=True)
    assert_paused_runs_replay(graph(), MemoryCheckpointer(), allow_empty=True)


def test_allow_empty_still_reports_the_failures_of_the_runs_it_checked() -> None:
    store = MemoryCheckpointer()
    Runner(graph(), store).run("r")
    changed = graph().step("extra", lambda s: {"x": 2})
    with pytest.raises(AssertionError, match=r"^1 suspended step\(s\) of 'expense'"):
        assert_paused_runs_replay(changed, store, allow_empty=True)


def test_one_paused_run_is_enough_to_pass() -> None:
    store = MemoryCheckpointer()
    Runner(graph(), store).run("r")
    assert_paused_runs_replay(graph(), store)


def test_find_replay_failures_returns_an_empty_list_for_an_empty_store_as_documented() -> None:
    assert find_replay_failures(graph(), MemoryCheckpointer()) == []
    doc = find_replay_failures.__doc__ or ""
    assert "``[]`` also when nothing was checked" in doc


def test_a_failed_run_is_not_a_paused_run_and_a_breakpoints_pause_is():
    # SPEC Testing: "every paused run in a store still replays": a failed run's own error
    # (an effect that raised) is not a replay failure, and a store whose only paused run
    # waits at a breakpoint holds a paused run
    def down():
        raise ConnectionError("api down")

    def call(state):
        return {"v": (yield Effect(down))}

    failing = Graph("wf", {"v": LastWriteWins()}).step("s", call)
    store = MemoryCheckpointer()
    with pytest.raises(EffectError):
        Runner(failing, store).run("e")
    assert find_replay_failures(failing, store) == []
    with pytest.raises(AssertionError, match="none paused"):
        assert_paused_runs_replay(failing, store)

    stops = Graph("wf2", {"v": LastWriteWins()}).step("a", lambda s: None)
    stops.step("b", lambda s: None).edge("a", "b")
    Runner(stops, store, interrupt_before=["b"]).run("p")
    assert_paused_runs_replay(stops, store)  # one paused run, nothing to replay: passes


def test_a_failed_runs_suspended_sibling_is_checked_and_a_started_run_is_not_paused():
    # a retry replays the failed layer's other steps: a change there is a failure; a run
    # only started (nothing under way) holds nothing to replay and is not a paused run
    def down():
        raise ConnectionError("api down")

    def pay(state):
        return {"v": (yield Effect(down))}

    def ask(question):
        def step(state):
            return {"w": (yield Interrupt(question))}

        return step

    def graph(question):
        channels = {"v": LastWriteWins(), "w": LastWriteWins()}
        return Graph("wf", channels).step("ask", ask(question)).step("pay", pay)

    store = MemoryCheckpointer()
    with pytest.raises(EffectError):
        Runner(graph("approve?"), store).run("r")
    assert find_replay_failures(graph("approve?"), store) == []
    (failure,) = find_replay_failures(graph("approve v2?"), store)
    assert (failure.run_id, failure.step_id) == ("r", "ask")
    assert failure.error.startswith("NondeterminismError")

    started = MemoryCheckpointer()
    Runner(graph("approve?"), started).start("s")
    with pytest.raises(AssertionError, match="none paused"):
        assert_paused_runs_replay(graph("approve?"), started)
