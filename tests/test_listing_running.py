"""Which queued runs are running, asked for a whole listing at once (``running_among``).

A listing of 10,000 queued runs probed each run's lock file (0.3-0.5 s);
the built-in stores now answer for them all at once: the file and SQLite
stores from one read of /proc/locks (where the file system names its files
there as ``stat`` does, else file by file), PostgreSQL with one query, the
memory store from its table. Every way must say what probing each run says.
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
    FileCheckpointer,
    Graph,
    LastWriteWins,
    MemoryCheckpointer,
    Runner,
    SqliteCheckpointer,
)
from pausegraph._inbox import listed_status, run_summaries, running_among
from pausegraph.checkpointers import Checkpointer, _lock

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


@pytest.mark.skipif(not os.path.exists("/proc/locks"), reason="Linux's /proc/locks")
def test_a_device_whose_files_proc_locks_does_not_name_as_stat_is_probed_file_by_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _started(FileCheckpointer(tmp_path / "store"))
    summaries = run_summaries(store)
    device = os.stat(tmp_path / "store").st_dev
    assert _lock._names_as_stat(str(tmp_path), device)  # this machine's disk: trusted
    read = []
    real = _lock._exclusive_flocks
    monkeypatch.setattr(_lock, "_exclusive_flocks", lambda: read.append(1) or real())
    monkeypatch.setitem(_lock._NAMED_AS_STAT, device, False)  # as on a btrfs subvolume
    with store.lock("wf", "r2"):
        assert running_among(store, summaries) == {("wf", "r2")}
    assert read == []  # not trusted: every lock file probed on its own
    monkeypatch.setitem(_lock._NAMED_AS_STAT, device, True)
    with store.lock("wf", "r3"):
        assert running_among(store, summaries) == {("wf", "r3")}
    assert read == [1]  # trusted: /proc/locks read once for the whole listing


def test_a_lock_file_missing_or_never_made_is_not_held(tmp_path: Path) -> None:
    store = FileCheckpointer(tmp_path / "store")
    assert store.store.held_among([("wf", "nobody"), ("wf", "x")]) == set()
    sqlite = SqliteCheckpointer(tmp_path / "runs.db")
    assert sqlite.store.held_among([("wf", "nobody")]) == set()
