"""A sync that fails takes back what it could not make durable, and only that.

SPEC, Checkpoints: a ``CheckpointError`` raised by a failed save (an fsync
error) leaves nothing of that save readable. Each thread's call syncs what it
saved, so one thread's failed sync never takes back another's saves (which
would then be reported as saved), and a pause a failed sync took back is not
held by its Runner (its generators took answers the store no longer has).
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pausegraph import (
    Append,
    CheckpointError,
    FileCheckpointer,
    Graph,
    Interrupt,
    LastWriteWins,
    Resume,
    Runner,
    SqliteCheckpointer,
)

Store = FileCheckpointer | SqliteCheckpointer


@pytest.fixture(params=["file", "sqlite"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Store]:
    def make() -> Store:
        if request.param == "file":
            return FileCheckpointer(tmp_path / "store")
        return SqliteCheckpointer(tmp_path / "runs.db")

    return make


def _failing_in(monkeypatch: pytest.MonkeyPatch, thread: str | None) -> None:
    """``fsync`` and ``fdatasync`` fail with EIO (in the thread named ``thread``, or all)."""
    real_fsync, real_fdatasync = os.fsync, os.fdatasync

    def failing(real: Callable[[int], None]) -> Callable[[int], None]:
        def sync(fd: int) -> None:
            if thread is None or threading.current_thread().name == thread:
                raise OSError(errno.EIO, os.strerror(errno.EIO))
            real(fd)

        return sync

    monkeypatch.setattr(os, "fsync", failing(real_fsync))
    monkeypatch.setattr(os, "fdatasync", failing(real_fdatasync))


def test_a_threads_failed_sync_takes_back_only_its_own_saves(
    make_store: Callable[[], Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Thread B saves run b and waits; thread A saves run a and its sync fails: a is taken
    back, b is not, and B's call, synced by its own sync, says what the store holds."""
    store = make_store()
    graph = Graph("g", {"x": LastWriteWins()}).step("s", lambda s: {"x": 1})
    runner = Runner(graph, store)
    runner.run("warm")  # the run log's directory and the WAL named durably already
    _failing_in(monkeypatch, "A")
    store_type = type(store.store)
    real_sync = store_type.sync
    b_saved, a_done = threading.Event(), threading.Event()

    def sync(self: Any) -> None:
        if threading.current_thread().name == "B":
            b_saved.set()
            assert a_done.wait(10)
        real_sync(self)

    monkeypatch.setattr(store_type, "sync", sync)
    out: dict[str, Any] = {}

    def b() -> None:
        out["b"] = runner.start("b", {"x": 5})

    def a() -> None:
        assert b_saved.wait(10)
        try:
            runner.start("a", {"x": 7})
        except CheckpointError as exc:
            out["a"] = exc
        a_done.set()

    threads = [threading.Thread(target=b, name="B"), threading.Thread(target=a, name="A")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    monkeypatch.undo()
    assert isinstance(out["a"], CheckpointError)
    assert out["b"].status == "queued"
    fresh = Runner(graph, make_store())
    assert fresh.state("b") == out["b"]
    assert sorted(s.run_id for s in fresh.checkpointer.summaries()) == ["b", "warm"]


def test_a_pause_a_failed_sync_took_back_is_not_held(
    make_store: Callable[[], Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under a fixed clock, the pause another Runner reaches next has the same seq, label
    and time as the one taken back: the first Runner must not answer it with the
    generator that took the answer the store no longer has."""

    def step(state: Any) -> Any:
        first = yield Interrupt("first")
        second = yield Interrupt("second")
        return {"log": [first, second]}

    graph = Graph("g", {"log": Append()}).step("s", step)

    def clock() -> int:
        return 1_000

    a = Runner(graph, make_store(), clock=clock)
    a.run("r")
    _failing_in(monkeypatch, None)
    with pytest.raises(CheckpointError):
        a.resume("r", Resume("x"))
    monkeypatch.undo()
    b = Runner(graph, make_store(), clock=clock)
    assert b.resume("r", Resume("y")).payload == "second"
    assert a.resume("r", Resume("z")).state == {"log": ["y", "z"]}
