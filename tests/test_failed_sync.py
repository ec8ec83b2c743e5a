"""A sync that fails takes back what it could not make durable, and says so to every call.

SPEC, Checkpoints: a ``CheckpointError`` raised by a failed save (an fsync
error) leaves nothing of that save readable. A failed sync takes back every
save the handle had not made durable, another thread's or an outer call's
included, and each call whose saves it took raises ``CheckpointError`` too,
never reporting them saved (nor calling an effect on them); a pause a failed
sync took back is not held by its Runner (its generators took answers the
store no longer has).
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest

from pausegraph import (
    Append,
    CheckpointError,
    Done,
    Effect,
    FileCheckpointer,
    Graph,
    Interrupt,
    LastWriteWins,
    Resume,
    ResumeError,
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


def _syncs_failing(monkeypatch: pytest.MonkeyPatch, fails: Callable[[], bool]) -> None:
    """``fsync`` and ``fdatasync`` fail with EIO whenever ``fails()`` says so (it is asked
    at each call, in the calling thread)."""
    for name in ("fsync", "fdatasync"):
        real = getattr(os, name)

        def sync(fd: int, real: Callable[[int], None] = real) -> None:
            if fails():
                raise OSError(errno.EIO, os.strerror(errno.EIO))
            real(fd)

        monkeypatch.setattr(os, name, sync)


def _failing_in(monkeypatch: pytest.MonkeyPatch, thread: str | None) -> None:
    """``fsync`` and ``fdatasync`` fail with EIO (in the thread named ``thread``, or all)."""
    _syncs_failing(monkeypatch, lambda: thread is None or threading.current_thread().name == thread)


def test_a_failed_sync_fails_every_call_whose_saves_it_took_back(
    make_store: Callable[[], Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Thread B saves run b and waits; thread A saves run a and its sync fails, taking
    back a and b (the disk may have lost either): both calls raise, and neither run is
    there; the calls given again work."""
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

    def call(name: str) -> None:
        try:
            out[name] = runner.start(name, {"x": 5})
        except CheckpointError as exc:
            out[name] = exc

    def a() -> None:
        assert b_saved.wait(10)
        call("a")
        a_done.set()

    threads = [
        threading.Thread(target=call, args=("b",), name="B"),
        threading.Thread(target=a, name="A"),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    monkeypatch.undo()
    assert isinstance(out["a"], CheckpointError)
    assert isinstance(out["b"], CheckpointError)
    assert "was taken back by a failed sync of another call" in str(out["b"])
    fresh = Runner(graph, make_store())
    assert sorted(s.run_id for s in fresh.checkpointer.summaries()) == ["warm"]
    assert runner.start("b", {"x": 5}).status == "queued"
    assert fresh.state("b").status == "queued"


def test_an_inner_calls_failed_sync_fails_the_outer_call_before_its_effect(
    make_store: Callable[[], Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A step that starts another run (same handle, same thread) whose sync fails: that
    takes back the outer call's claim too, so the effect after it is not called on an
    answer the store no longer has; the answer given again calls it once."""
    store = make_store()
    charged: list[int] = []
    failing = [False]
    _syncs_failing(monkeypatch, lambda: failing[0])
    audit = Runner(Graph("audit", {"x": LastWriteWins()}).step("a", lambda s: None), store)

    def charge(amount: int) -> str:
        charged.append(amount)
        return "ok"

    def step(state: Any) -> Any:
        amount = yield Interrupt("how much?")
        failing[0] = True
        try:
            audit.start(f"audit-{amount}")
        except CheckpointError:
            pass  # a best-effort audit: its failure is ignored
        finally:
            failing[0] = False
        yield Effect(charge, amount)
        return {"x": amount}

    graph = Graph("g", {"x": LastWriteWins()}).step("s", step)
    runner = Runner(graph, store)
    audit.start("warm")
    runner.run("r")
    with pytest.raises(CheckpointError, match="taken back by a failed sync of another call"):
        runner.resume("r", Resume(100))
    assert charged == []
    assert Runner(graph, make_store()).state("r").status == "paused"
    assert Runner(graph, make_store()).resume("r", Resume(100)) == Done({"x": 100}, 1)
    assert charged == [100]


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


def test_a_refused_command_saves_nothing_and_syncs_nothing(
    make_store: Callable[[], Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A command refused before anything was saved has nothing of its own to make durable:
    it raises its own error even while the disk fails (another call's saves are that
    call's to sync, and to be told about)."""
    store = make_store()

    def ask(state: Any) -> Any:
        return {"log": [(yield Interrupt("q"))]}

    runner = Runner(Graph("g", {"log": Append()}).step("s", ask), store)
    runner.run("r")
    latest = store.latest("g", "r")
    assert latest is not None
    store.save(attrs.evolve(latest, run_id="other", seq=1))  # saved, not synced yet
    _failing_in(monkeypatch, None)
    with pytest.raises(ResumeError, match="unknown"):
        runner.resume("r", Resume(answers={"no-such-id": 1}))
    with pytest.raises(CheckpointError):  # the other save's sync says what it says
        store.sync()


def test_a_sync_waits_for_one_under_way_and_sees_its_take_back(
    make_store: Callable[[], Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    """B's call syncs while A's sync, which took B's save with its own, is still in a slow
    fsync that then fails: B's sync waits for it, sees the take-back, and raises; it does
    not return with its save neither durable nor there."""
    store = make_store()

    def ask(state: Any) -> Any:
        return {"x": (yield Interrupt("q"))}

    graph = Graph("g", {"x": LastWriteWins()}).step("s", ask)
    runner = Runner(graph, store)
    runner.run("warm")
    b_saved, a_syncing = threading.Event(), threading.Event()

    def slow_in_a() -> bool:
        if threading.current_thread().name != "A":
            return False
        a_syncing.set()
        time.sleep(0.3)  # B's sync starts meanwhile
        return True

    _syncs_failing(monkeypatch, slow_in_a)
    store_type = type(store.store)
    real_sync = store_type.sync

    def sync(self: Any) -> None:
        if threading.current_thread().name == "B":
            b_saved.set()
            assert a_syncing.wait(10)
        real_sync(self)

    monkeypatch.setattr(store_type, "sync", sync)
    out: dict[str, Any] = {}

    def call(name: str) -> None:
        try:
            out[name] = runner.run(name)
        except CheckpointError as exc:
            out[name] = exc

    def a() -> None:
        assert b_saved.wait(10)
        call("a")

    threads = [
        threading.Thread(target=call, args=("b",), name="B"),
        threading.Thread(target=a, name="A"),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    monkeypatch.undo()
    assert isinstance(out["a"], CheckpointError)
    assert isinstance(out["b"], CheckpointError), out["b"]
    fresh = Runner(graph, make_store())
    with pytest.raises(ResumeError, match="no run"):
        fresh.state("b")


def test_a_calls_own_failed_sync_is_the_error_it_raises(
    make_store: Callable[[], Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sync before an effect fails once: the call raises that sync's error (the OS
    error and the file), not the check that another call took its saves back."""
    store = make_store()

    def step(state: Any) -> Any:
        answer = yield Interrupt("q")
        yield Effect(len, "x")
        return {"x": answer}

    runner = Runner(Graph("g", {"x": LastWriteWins()}).step("s", step), store)
    runner.run("r")
    left = [1]

    def once() -> bool:
        if not left[0]:
            return False
        left[0] -= 1
        return True

    _syncs_failing(monkeypatch, once)
    with pytest.raises(CheckpointError) as raised:
        runner.resume("r", Resume(1))
    assert "Input/output error" in str(raised.value)
    assert "another call" not in str(raised.value)
