"""Which queued runs are running, asked for a whole listing at once (``running_among``).

PostgreSQL answers for them all with one query (probing 10,000 queued runs
one by one took a round trip each, 3-22 s), the memory store from its
table; the file and SQLite stores probe each run's lock file through one
descriptor of its directory. Every way must say what probing each run
says, which is what ``Runner.state`` asks.
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
from pausegraph.checkpointers import Checkpointer, StoreCheckpointer
from pausegraph.checkpointers.file import FileStore
from pausegraph.checkpointers.sqlite import SqliteStore

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


class _NeverHeldFiles(FileStore):
    """A file store whose own ``holder`` says no run is held (``held_among`` inherited)."""

    def holder(self, workflow_id: str, run_id: str) -> Any:
        return None


class _NeverHeldSqlite(SqliteStore):
    def holder(self, workflow_id: str, run_id: str) -> Any:
        return None


@pytest.mark.parametrize("kind", ["file", "sqlite"])
def test_a_store_that_answers_holder_itself_is_asked_run_by_run(tmp_path: Path, kind: str) -> None:
    if kind == "file":
        store = _started(StoreCheckpointer(_NeverHeldFiles(tmp_path / "store")))
    else:
        store = _started(StoreCheckpointer(_NeverHeldSqlite(tmp_path / "runs.db")))
    with store.lock("wf", "r1"):
        assert running_among(store, run_summaries(store)) == set() == _by_probe(store)


@pytest.mark.parametrize("store_kind", ["file", "sqlite"])
@pytest.mark.parametrize("kind", ["directory", "fifo"])
def test_something_else_where_a_lock_file_belongs_is_a_checkpoint_error(
    tmp_path: Path, kind: str, store_kind: str
) -> None:
    if store_kind == "file":
        store = _started(FileCheckpointer(tmp_path / "store"))
    else:
        store = _started(SqliteCheckpointer(tmp_path / "runs.db"))
    assert isinstance(store, StoreCheckpointer)
    lock = store.store._lock_path("wf", "r0")  # type: ignore[attr-defined]
    if os.path.exists(lock):
        os.unlink(lock)
    if kind == "directory":
        os.mkdir(lock)
    else:
        os.mkfifo(lock)
    error = r"^\[Errno \d+\] cannot read the lock file '.*\.lock': "
    with pytest.raises(CheckpointError, match=error):
        store.holder("wf", "r0")
    # a whole listing probes through the directory, and says the same of it
    with pytest.raises(CheckpointError, match=error):
        running_among(store, run_summaries(store))


@pytest.mark.parametrize("kind", ["file", "sqlite"])
def test_lock_files_missing_or_left_by_dead_holders_are_not_running(
    tmp_path: Path, kind: str, child_holding: Callable[[Checkpointer, str], None]
) -> None:
    def make() -> Checkpointer:
        if kind == "file":
            return FileCheckpointer(tmp_path / "store")
        return SqliteCheckpointer(tmp_path / "runs.db")

    store = _started(make())
    summaries = run_summaries(store)
    assert isinstance(store, StoreCheckpointer)
    gone = store.store._lock_path("wf", "r2")  # type: ignore[attr-defined]
    if os.path.exists(gone):
        os.unlink(gone)  # a run with no lock file (never held, or removed by hand)
    child_holding(make(), "r3")
    child_holding(make(), "r4")
    assert running_among(store, summaries) == {("wf", "r3"), ("wf", "r4")} == _by_probe(store)
    os.kill(_holders_pid(store, "r4"), signal.SIGKILL)  # its lock file stays, with its note
    _wait_free(store, "r4")
    assert running_among(store, summaries) == {("wf", "r3")} == _by_probe(store)


def _holders_pid(store: Checkpointer, run_id: str) -> int:
    holder = store.holder("wf", run_id)
    assert holder is not None
    return holder.pid


def _wait_free(store: Checkpointer, run_id: str) -> None:
    import time

    deadline = time.monotonic() + 30
    while store.holder("wf", run_id) is not None:
        assert time.monotonic() < deadline, "the killed holder's lock was never released"
        time.sleep(0.01)
