"""The file store's run index (``root/index.sqlite3``) and its grouped fsync.

The index is derived from the logs: these tests leave it behind (a process
that died between an append and its index row, a log deleted or added behind
its back, a damaged database) and check that ``runs()`` still tells the truth.
The grouped fsync is checked by simulating a power loss: every log is cut
back to what was last fsynced, and everything a call returned, and every
checkpoint an effect's call depended on, must still be there.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import stat
from pathlib import Path
from typing import Any

import attrs
import pytest
from test_checkpointers import make_checkpoint

from pausegraph import (
    CheckpointError,
    Done,
    Effect,
    FileCheckpointer,
    Graph,
    Interrupt,
    LastWriteWins,
    Paused,
    Resume,
    ResumeError,
    Runner,
)
from pausegraph.checkpointers import file as file_store


def approval_graph(workflow: str = "approval") -> Graph:
    def ask(state: Any) -> Any:
        answer = yield Interrupt({"n": state["n"]})
        return {"answer": answer}

    channels = {"n": LastWriteWins(), "answer": LastWriteWins()}
    return Graph(workflow, channels).step("ask", ask)


def test_runs_lists_each_runs_summary_filtered_by_workflow_and_status(tmp_path: Path) -> None:
    one = Runner(approval_graph("one"), FileCheckpointer(tmp_path))
    two = Runner(approval_graph("two"), FileCheckpointer(tmp_path))
    assert isinstance(one.run("a", {"n": 1}), Paused)
    assert isinstance(one.run("b", {"n": 2}), Paused)
    assert isinstance(two.run("c", {"n": 3}), Paused)
    assert isinstance(one.resume("b", Resume(True)), Done)
    store = FileCheckpointer(tmp_path)
    every = {(s.workflow_id, s.run_id, s.status) for s in store.summaries()}
    assert every == {("one", "a", "paused"), ("one", "b", "done"), ("two", "c", "paused")}
    assert [s.run_id for s in store.summaries(workflow_id="one", status="paused")] == ["a"]
    assert {s.run_id for s in store.summaries(status="paused")} == {"a", "c"}
    (latest,) = store.summaries(workflow_id="one", status="done")
    assert latest.seq == len(store.list("one", "b"))
    assert (tmp_path / "index.sqlite3").exists()


def test_an_index_a_crash_left_behind_is_caught_by_the_logs_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileCheckpointer(tmp_path)
    store.save(make_checkpoint("r", 1, {"x": 1}))
    store.save(make_checkpoint("r", 2, {"x": 2}))
    assert [s.seq for s in FileCheckpointer(tmp_path).summaries()] == [2]
    # a process that dies between its append and its index row
    monkeypatch.setattr(file_store._Index, "put", lambda self, log, st: None)
    store.save(make_checkpoint("r", 3, {"x": 3}))
    store.save(make_checkpoint("s", 1, {"x": 1}))
    monkeypatch.undo()
    listed = {(s.run_id, s.seq) for s in FileCheckpointer(tmp_path).summaries()}
    assert listed == {("r", 3), ("s", 1)}


def test_a_log_removed_or_added_behind_the_index_is_dropped_or_listed(tmp_path: Path) -> None:
    store = FileCheckpointer(tmp_path)
    for run_id in ("a", "b"):
        store.save(make_checkpoint(run_id, 1, {"x": 1}))
    assert {s.run_id for s in store.summaries()} == {"a", "b"}
    a_log = tmp_path / "runs" / file_store._log_name("wf", "a")
    saved = a_log.read_bytes()
    a_log.unlink()
    assert [s.run_id for s in FileCheckpointer(tmp_path).summaries()] == ["b"]
    a_log.write_bytes(saved)  # restored from a backup
    assert {s.run_id for s in FileCheckpointer(tmp_path).summaries()} == {"a", "b"}


@pytest.mark.parametrize("damage", ["garbage", "empty", "removed"])
def test_a_damaged_or_missing_index_is_rebuilt_from_the_logs(tmp_path: Path, damage: str) -> None:
    store = FileCheckpointer(tmp_path)
    for run_id in ("a", "b"):
        store.save(make_checkpoint(run_id, 1, {"x": 1}))
    assert len(store.summaries()) == 2  # the listing writes the index
    store.close()
    index = tmp_path / "index.sqlite3"
    for extra in (Path(f"{index}-wal"), Path(f"{index}-shm")):
        extra.unlink(missing_ok=True)
    if damage == "removed":
        index.unlink()
    else:
        index.write_bytes(b"" if damage == "empty" else b"not a database at all " * 100)
    fresh = FileCheckpointer(tmp_path)
    assert {s.run_id for s in fresh.summaries()} == {"a", "b"}
    assert fresh.damaged() == []
    with contextlib.closing(sqlite3.connect(index)) as db:  # rebuilt, whole
        assert db.execute("SELECT count(*) FROM runs").fetchone() == (2,)
    fresh.save(make_checkpoint("c", 1, {"x": 1}))
    assert {s.run_id for s in FileCheckpointer(tmp_path).summaries()} == {"a", "b", "c"}


def test_a_same_size_rewrite_right_after_a_save_is_not_trusted_from_the_index(
    tmp_path: Path,
) -> None:
    store = FileCheckpointer(tmp_path)
    store.save(make_checkpoint("r", 1, {"x": 1}))
    path = tmp_path / "runs" / file_store._log_name("wf", "r")
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x40  # within the same mtime tick, the size unchanged
    path.write_bytes(bytes(data))
    fresh = FileCheckpointer(tmp_path)
    assert fresh.summaries() == []
    assert [name for name, _ in fresh.damaged()] == [path.name]


# --- grouped fsync and a power loss ------------------------------------------------------


class Disk:
    """Records what each ``fsync`` made durable: a log's inode -> its size then."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.synced: dict[int, int] = {}
        self.fsyncs = 0
        real = os.fsync

        def fsync(fd: int) -> None:
            real(fd)
            self.fsyncs += 1
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode):
                self.synced[st.st_ino] = st.st_size

        monkeypatch.setattr(os, "fsync", fsync)

    def unsynced(self, root: Path) -> list[str]:
        """The logs under ``root`` holding bytes that no ``fsync`` made durable."""
        return [
            p.name
            for p in (root / "runs").glob("*.log")
            if self.synced.get(p.stat().st_ino, -1) != p.stat().st_size
        ]

    def power_loss(self, root: Path) -> None:
        """Lose what was not fsynced: cut each log back to its last fsynced size."""
        for path in (root / "runs").glob("*.log"):
            size = self.synced.get(path.stat().st_ino)
            if size is None:
                path.unlink()
            else:
                os.truncate(path, size)


def test_a_power_loss_keeps_what_calls_returned_and_what_each_effect_depended_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = Disk(monkeypatch)
    calls: list[str] = []
    root = tmp_path / "store"

    def effect(name: str) -> str:
        # what the run saved before this call must be durable before it happens
        assert disk.unsynced(root) == [], f"effect {name} ran before its checkpoints were durable"
        calls.append(name)
        return name.upper()

    def work(state: Any) -> Any:
        first = yield Effect(effect, "one")
        answer = yield Interrupt({"first": first})
        second = yield Effect(effect, f"two-{answer}")
        return {"log": [first, answer, second]}

    def graph() -> Graph:
        g = Graph("power", {"log": LastWriteWins(), "n": LastWriteWins()})
        return g.step("prep", lambda s: {"n": 1}).step("work", work).edge("prep", "work")

    runner = Runner(graph(), FileCheckpointer(root))
    paused = runner.run("r", {"n": 0})
    assert isinstance(paused, Paused)
    assert disk.unsynced(root) == []  # everything the call returned on is durable
    before, seqs = disk.fsyncs, len(FileCheckpointer(root).list("power", "r"))
    done = runner.resume("r", Resume("yes"))
    assert isinstance(done, Done)
    assert disk.unsynced(root) == []
    # one fsync before the effect, one for its record, one before the call returns
    # (here as many as the call's checkpoints; a chain of layers adds none)
    saved = len(FileCheckpointer(root).list("power", "r")) - seqs
    assert disk.fsyncs - before == 3 == saved

    # a third call that does not return: the process and the page cache die with it
    assert isinstance(runner.run("s", {"n": 0}), Paused)
    store = FileCheckpointer(root)
    latest = store.latest("power", "s")
    assert latest is not None
    # appended, never synced (the process died before its call returned): lost
    store.save(attrs.evolve(latest, seq=latest.seq + 1, label="lost", changes=None))
    disk.power_loss(root)

    after = Runner(graph(), FileCheckpointer(root))
    assert after.run("r") == done  # everything the calls returned is still there
    recovered = FileCheckpointer(root).latest("power", "s")
    assert recovered is not None
    assert (recovered.seq, recovered.label) == (latest.seq, latest.label)
    with pytest.raises(ResumeError, match=r"is paused"):  # paused, as its call returned it
        after.run("s")
    assert isinstance(after.resume("s", Resume("no")), Done)
    assert {s.run_id: s.status for s in FileCheckpointer(root).summaries()} == {
        "r": "done",
        "s": "done",
    }
    assert calls.count("one") == 2  # once for each run: never again after a power loss


class Died(BaseException):
    """The process dies inside an effect (no save, no sync after it)."""


def test_a_power_loss_after_a_process_died_mid_call_recovers_with_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = Disk(monkeypatch)
    root = tmp_path / "store"
    dying = [True]

    def effect(name: str) -> str:
        assert disk.unsynced(root) == [], f"effect {name} ran before its checkpoints were durable"
        if name == "second" and dying[0]:
            raise Died
        return name

    def work(state: Any) -> Any:
        first = yield Effect(effect, "first")
        second = yield Effect(effect, "second")
        return {"log": [first, second]}

    graph = Graph("died", {"log": LastWriteWins()}).step("work", work)
    with pytest.raises(Died):
        Runner(graph, FileCheckpointer(root)).run("r", {"log": []})
    disk.power_loss(root)
    dying[0] = False
    done = Runner(graph, FileCheckpointer(root)).run("r")
    assert isinstance(done, Done)
    assert done.state == {"log": ["first", "second"]}
    history = [m.label for m in FileCheckpointer(root).list("died", "r")]
    assert history.count("effect:work") == 2  # the first effect's result outlived the loss


def test_a_failed_fsync_at_the_end_of_a_call_never_takes_back_an_effect_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An effect's record is durable before the step sees the result (no repeat on recovery)."""
    root = tmp_path / "store"
    calls: list[str] = []
    failing = [False]
    real = os.fsync

    def fsync(fd: int) -> None:
        if failing[0]:
            raise OSError(errno.EIO, "input/output error")
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)

    def charge(n: int) -> str:
        calls.append(f"charge:{n}")
        return "paid"

    def work(state: Any) -> Any:
        receipt = yield Effect(charge, 1)
        failing[0] = True  # the disk fails after the step got its result
        return {"log": [receipt]}

    graph = Graph("eio", {"log": LastWriteWins()}).step("work", work)
    with pytest.raises(CheckpointError):
        Runner(graph, FileCheckpointer(root)).run("r", {"log": []})
    failing[0] = False
    monkeypatch.setattr(os, "fsync", real)
    done = Runner(graph, FileCheckpointer(root)).run("r")
    assert isinstance(done, Done)
    assert done.state == {"log": ["paid"]}
    assert calls == ["charge:1"]  # the result was durable: recovery never charged again
