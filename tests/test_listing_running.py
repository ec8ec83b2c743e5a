"""Which queued runs are running, asked for a whole listing at once (``running_among``).

PostgreSQL answers for them all with one query (probing 10,000 queued runs
one by one took a round trip each, 3-22 s), the memory store from its
table; the file and SQLite stores probe each run's lock file. Every way
must say what probing each run says, which is what ``Runner.state`` asks.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from pausegraph import (
    CheckpointError,
    FileCheckpointer,
    Graph,
    LastWriteWins,
    MemoryCheckpointer,
    Runner,
    SqliteCheckpointer,
)
from pausegraph._inbox import listed_status, run_summaries, running_among
from pausegraph.checkpointers import Checkpointer

FORK = multiprocessing.get_context("fork")
RUNS = [f"r{i}" for i in range(8)]


def _graph() -> Graph:
    return Graph("wf", {"x": LastWriteWins()}).step("s", lambda state: {"x": 1})


def _started(store: Checkpointer) -> Checkpointer:
    runner = Runner(_graph(), store)
    for run_id in RUNS:
        runner.start(run_id, {"x": 0})
    return store


def _hold_in_child(store: Checkpointer, run_id: str, held: Any) -> None:
    with store.lock("wf", run_id):
        held.set()
        signal.pause()


@pytest.fixture(params=["memory", "file", "sqlite", "postgres"])
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Checkpointer]:
    if request.param == "memory":
        store = MemoryCheckpointer()
        return lambda: store
    if request.param == "file":
        return lambda: FileCheckpointer(tmp_path / "store")
    if request.param == "sqlite":
        return lambda: SqliteCheckpointer(tmp_path / "runs.db")
    postgres = request.getfixturevalue("postgres")
    return postgres.checkpointer  # type: ignore[no-any-return]


@pytest.fixture
def child_holding() -> Iterator[Callable[[Checkpointer, str], None]]:
    children: list[Any] = []

    def hold(store: Checkpointer, run_id: str) -> None:
        held = FORK.Event()
        child = FORK.Process(target=_hold_in_child, args=(store, run_id, held), daemon=True)
        child.start()
        children.append(child)
        assert held.wait(60), "the child never took the lock"

    yield hold
    for child in children:
        os.kill(child.pid, signal.SIGKILL)
        child.join(60)


def _by_probe(store: Checkpointer) -> set[tuple[str, str]]:
    return {("wf", r) for r in RUNS if store.holder("wf", r) is not None}


def test_running_among_says_what_probing_each_run_says(
    make: Callable[[], Checkpointer], child_holding: Callable[[Checkpointer, str], None]
) -> None:
    store = _started(make())
    summaries = run_summaries(store)
    assert running_among(store, summaries) == set() == _by_probe(store)
    with ExitStack() as held:
        held.enter_context(store.lock("wf", "r1"))  # this process
        held.enter_context(make().lock("wf", "r5"))  # another handle of it
        if not isinstance(store, MemoryCheckpointer):  # another process
            child_holding(make(), "r6")
        want = {("wf", "r1"), ("wf", "r5")} | (
            set() if isinstance(store, MemoryCheckpointer) else {("wf", "r6")}
        )
        assert running_among(store, summaries) == want == _by_probe(store)
        running = running_among(store, summaries)
        listed = {s.run_id: listed_status(s, store, running).value for s in summaries}
        assert listed == {s.run_id: listed_status(s, store).value for s in summaries}
        assert sorted(r for r, status in listed.items() if status == "running") == sorted(
            r for _, r in want
        )
    after = running_among(store, run_summaries(store))  # the child still holds r6
    assert after == _by_probe(store) == want - {("wf", "r1"), ("wf", "r5")}


class _NeverHeld(MemoryCheckpointer):
    """A checkpointer whose own ``holder`` says no run is held."""

    def holder(self, workflow_id: str, run_id: str) -> Any:
        return None


def test_a_checkpointer_that_answers_holder_itself_is_asked_run_by_run() -> None:
    store = _started(_NeverHeld())
    with store.lock("wf", "r1"):
        assert running_among(store, run_summaries(store)) == set() == _by_probe(store)


@pytest.mark.parametrize("kind", ["directory", "fifo"])
def test_something_else_where_a_lock_file_belongs_is_a_checkpoint_error(
    tmp_path: Path, kind: str
) -> None:
    store = _started(FileCheckpointer(tmp_path / "store"))
    lock = store.store._lock_path("wf", "r0")
    if os.path.exists(lock):
        os.unlink(lock)
    if kind == "directory":
        os.mkdir(lock)
    else:
        os.mkfifo(lock)
    with pytest.raises(
        CheckpointError, match=r"^\[Errno \d+\] cannot read the lock file '.*\.lock': "
    ):
        store.holder("wf", "r0")
