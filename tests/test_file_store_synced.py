"""A file-store log cut short after a sync is corrupt, never an earlier state.

SPEC, Checkpoints: "a truncated or altered record that a read needs is a
``CorruptCheckpointError`` naming the file, never a wrong state", and a
process killed inside ``save`` leaves the run "as if that save never
started". The store tells the two apart by the sync mark its lock file
keeps: a record a sync made durable is never a torn tail.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import threading
from pathlib import Path

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pausegraph import (
    CheckpointError,
    CorruptCheckpointError,
    Done,
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


def _ask(state: dict[str, int]):  # type: ignore[no-untyped-def]
    answer = yield Interrupt("go on?")
    return {"x": answer}


GRAPH = (
    Graph("g", {"x": LastWriteWins()})
    .step("a", lambda s: {"x": 1})
    .step("b", lambda s: {"x": 2})
    .step("c", _ask)
    .edge("a", "b")
    .edge("b", "c")
)


def _files(root: Path) -> tuple[Path, Path]:
    (log,) = (root / "runs").glob("*.log")
    return log, log.with_suffix(".lock")


def _paused_run(root: Path) -> bytes:
    """A run paused after three layers, its call returned (so synced); its log's bytes."""
    assert isinstance(Runner(GRAPH, FileCheckpointer(root)).run("r", {"x": 0}), Paused)
    return _files(root)[0].read_bytes()


@pytest.mark.parametrize(
    "damage",
    ["one byte cut", "last record cut", "only the header", "ten bytes", "emptied", "zero-filled"],
)
def test_a_synced_log_cut_short_is_a_corrupt_checkpoint_error_naming_it(
    tmp_path: Path, damage: str
) -> None:
    whole = _paused_run(tmp_path)
    log, lock = _files(tmp_path)
    history = Runner(GRAPH, FileCheckpointer(tmp_path)).history("r")
    header = whole.index(b"\n") + 1 if b"\n" in whole[:200] else 0
    cut = {
        "one byte cut": whole[:-1],
        "last record cut": whole[: len(whole) - 40],
        "only the header": whole[:header],
        "ten bytes": whole[:10],
        "emptied": b"",
        "zero-filled": bytes(len(whole)),
    }[damage]
    log.write_bytes(cut)
    runner = Runner(GRAPH, FileCheckpointer(tmp_path))
    for read in (lambda: runner.state("r"), lambda: runner.history("r")):
        with pytest.raises(CorruptCheckpointError) as caught:
            read()
        message = str(caught.value)
        assert repr(str(log)) in message
        assert f"{len(history)} were synced to disk (runs/{lock.name} says so)" in message
    with pytest.raises(CorruptCheckpointError):  # nothing is driven from a wrong state
        runner.resume("r", Resume(5))
    assert log.read_bytes() == cut  # and nothing was written


def test_a_save_cut_short_after_the_last_sync_still_reads_as_if_it_never_started(
    tmp_path: Path,
) -> None:
    whole = _paused_run(tmp_path)
    log, _ = _files(tmp_path)
    copy = tmp_path.parent / f"{tmp_path.name}-copy"  # the records the next call saves
    shutil.copytree(tmp_path, copy)
    Runner(GRAPH, FileCheckpointer(copy)).resume("r", Resume(1))
    next_records = _files(copy)[0].read_bytes()[len(whole) :]
    with log.open("ab") as f:  # what a process killed inside its next save leaves
        f.write(next_records[:30])
    runner = Runner(GRAPH, FileCheckpointer(tmp_path))
    assert runner.state("r").status == "paused"
    assert runner.resume("r", Resume(5)) == Done({"x": 5}, 3)


def test_an_older_copy_restored_on_purpose_reads_once_its_lock_file_is_removed(
    tmp_path: Path,
) -> None:
    runner = Runner(GRAPH, FileCheckpointer(tmp_path))
    runner.run("r", {"x": 0})
    log, lock = _files(tmp_path)
    backup = log.read_bytes()
    assert runner.resume("r", Resume(5)) == Done({"x": 5}, 3)
    log.write_bytes(backup)  # restored over the live file: the same inode
    with pytest.raises(CorruptCheckpointError, match=rf"remove runs/{lock.name} while no process"):
        Runner(GRAPH, FileCheckpointer(tmp_path)).state("r")
    lock.unlink()
    again = Runner(GRAPH, FileCheckpointer(tmp_path))
    assert again.state("r").status == "paused"
    assert again.resume("r", Resume(6)) == Done({"x": 6}, 3)


def test_a_run_deleted_and_started_again_is_not_held_to_the_old_mark(tmp_path: Path) -> None:
    runner = Runner(GRAPH, FileCheckpointer(tmp_path))
    runner.run("r", {"x": 0})
    runner.resume("r", Resume(5))
    runner.delete("r")
    assert not list((tmp_path / "runs").glob("*.lock"))
    assert isinstance(Runner(GRAPH, FileCheckpointer(tmp_path)).run("r", {"x": 0}), Paused)
    assert Runner(GRAPH, FileCheckpointer(tmp_path)).state("r").status == "paused"


@given(cut=st.integers(min_value=0), pause=st.booleans())
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=40)
def test_a_synced_log_cut_anywhere_never_reads_as_an_earlier_state(
    tmp_path_factory: pytest.TempPathFactory, cut: int, pause: bool
) -> None:
    root = tmp_path_factory.mktemp("cut")
    runner = Runner(GRAPH, FileCheckpointer(root))
    runner.run("r", {"x": 0})
    if not pause:
        runner.resume("r", Resume(7))
    log, _ = _files(root)
    os.truncate(log, cut % log.stat().st_size)  # anywhere short of its whole length
    with pytest.raises(CorruptCheckpointError, match=re.escape(repr(str(log)))):
        Runner(GRAPH, FileCheckpointer(root)).state("r")


def test_a_damaged_mark_is_no_mark_and_never_makes_a_healthy_log_corrupt(tmp_path: Path) -> None:
    # a note read while it is rewritten, or damaged, must not fail a healthy run
    _paused_run(tmp_path)
    _, lock = _files(tmp_path)
    note = msgpack.unpackb(lock.read_bytes())
    ino, first_ms, records, crc = note[3]
    for mark in ([ino, first_ms, records + 5, crc], [ino, first_ms, records + 5], "junk"):
        lock.write_bytes(msgpack.packb([0, "", 0, mark]))
        runner = Runner(GRAPH, FileCheckpointer(tmp_path))
        assert runner.state("r").status == "paused"
    lock.write_bytes(b"\xff" * 50)
    assert Runner(GRAPH, FileCheckpointer(tmp_path)).resume("r", Resume(3)) == Done({"x": 3}, 3)


def _mark(lock: Path) -> list[int]:
    mark: list[int] = msgpack.unpackb(lock.read_bytes())[3]
    return mark


def test_a_handle_that_saved_nothing_leaves_the_newer_mark_of_another(tmp_path: Path) -> None:
    first = Runner(GRAPH, FileCheckpointer(tmp_path))
    second = Runner(GRAPH, FileCheckpointer(tmp_path))
    first.run("r", {"x": 0})  # paused: this handle synced 4 records
    log, lock = _files(tmp_path)
    paused = log.read_bytes()
    assert second.resume("r", Resume(5)) == Done({"x": 5}, 3)  # 6 now, synced by the other
    assert first.run("r") == Done({"x": 5}, 3)  # saves nothing; its own mark says 4
    assert _mark(lock)[2] == 6
    log.write_bytes(paused)  # cut back after both calls returned: still caught
    with pytest.raises(CorruptCheckpointError, match=r"holds 4 checkpoints .* 6 were synced"):
        Runner(GRAPH, FileCheckpointer(tmp_path)).state("r")


def test_a_handle_never_leaves_its_mark_on_a_log_made_again_since(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a fixed clock: the new log's first record has the old one's time, so only the
    # inode tells them apart (and the file system may reuse it once the old is gone)
    old = Runner(GRAPH, FileCheckpointer(tmp_path), clock=lambda: 1_000_000)
    new = Runner(GRAPH, FileCheckpointer(tmp_path), clock=lambda: 1_000_000)
    old.run("r", {"x": 0})
    old.resume("r", Resume(5))  # this handle synced 6 records of the first log
    new.delete("r")
    new.run("r", {"x": 0})  # the run again: 4 records in a new log
    log, lock = _files(tmp_path)
    with pytest.raises(ResumeError):
        old.run("r")  # refused (paused): it saves nothing, and keeps no mark of another file
    assert _mark(lock)[0] == log.stat().st_ino
    assert _mark(lock)[2] == 4
    assert Runner(GRAPH, FileCheckpointer(tmp_path)).state("r").status == "paused"


def test_records_a_failed_sync_took_back_are_not_left_marked_by_another_threads_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # one handle, two threads: T1's sync fsyncs the log of T2's run after T2 appended to
    # it; T2's own sync then fails and takes its appends back. No mark may say they stay
    store = FileCheckpointer(tmp_path)
    events = {k: threading.Event() for k in ("m", "b", "taken", "c", "t1")}

    def m(state: object) -> dict[str, int]:
        events["m"].set()
        assert events["b"].wait(10)
        return {"x": 1}

    def b(state: object) -> dict[str, int]:
        events["b"].set()
        assert events["taken"].wait(10)
        return {"x": 2}

    def c(state: object) -> dict[str, int]:
        events["c"].set()
        assert events["t1"].wait(10)
        return {"x": 3}

    ell = Graph("L", {"x": LastWriteWins()}).step("a", lambda s: {"x": 1}).step("b", b)
    ell = ell.step("c", c).edge("a", "b").edge("b", "c")
    em = Graph("M", {"x": LastWriteWins()}).step("m", m)
    l_log = store.store._lock_path("L", "l")[:-5] + ".log"
    m_log = store.store._lock_path("M", "m")[:-5] + ".log"
    real_fsync, l_synced = os.fsync, []

    def fsync(fd: int) -> None:
        target = os.readlink(f"/proc/self/fd/{fd}")
        thread = threading.current_thread().name
        if thread == "T1" and target == m_log and not events["taken"].is_set():
            events["taken"].set()
            assert events["c"].wait(10)  # T2 appends to l's log meanwhile
        if target == l_log:
            if thread == "T2" and l_synced:
                raise OSError(errno.EIO, "injected")
            if thread == "T1":
                l_synced.append(True)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    out: dict[str, object] = {}

    def t1() -> None:
        out["m"] = Runner(em, store).run("m", {"x": 0})
        events["t1"].set()

    def t2() -> None:
        assert events["m"].wait(10)
        with pytest.raises(CheckpointError, match="could not save"):
            Runner(ell, store).run("l", {"x": 0})
        out["l"] = "refused"

    threads = [threading.Thread(target=t1, name="T1"), threading.Thread(target=t2, name="T2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert out == {"m": Done({"x": 1}, 1), "l": "refused"}
    assert l_synced  # the scene happened: T1 synced l's log with T2's records in it
    again = Runner(ell, FileCheckpointer(tmp_path))
    assert again.state("l").status == "queued"
    assert again.run("l") == Done({"x": 3}, 3)


def test_an_older_copy_put_back_by_a_rename_is_caught_too(tmp_path: Path) -> None:
    runner = Runner(GRAPH, FileCheckpointer(tmp_path))
    runner.run("r", {"x": 0})
    log, _ = _files(tmp_path)
    backup = log.read_bytes()
    runner.resume("r", Resume(5))
    staged = log.with_name("staged")
    staged.write_bytes(backup)
    os.replace(staged, log)  # as rsync and most backup tools put a file back: a new inode
    with pytest.raises(CorruptCheckpointError, match="holds 4 checkpoints"):
        Runner(GRAPH, FileCheckpointer(tmp_path)).state("r")


def test_a_delete_killed_between_its_two_unlinks_leaves_no_mark_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the log goes first, then its lock file: a process killed in between must not leave
    # the old run's mark to hold a run started again under this id (a fixed clock: the
    # new log's first record has the old one's time)
    runner = Runner(GRAPH, FileCheckpointer(tmp_path), clock=lambda: 1_000_000)
    runner.run("r", {"x": 0})
    runner.resume("r", Resume(5))  # 6 records synced
    real_unlink = os.unlink

    def unlink(path: object, *args: object, **kwargs: object) -> None:
        if str(path).endswith(".lock"):
            raise KeyboardInterrupt  # the process dies here
        real_unlink(path, *args, **kwargs)  # type: ignore[arg-type]

    _, lock = _files(tmp_path)
    monkeypatch.setattr(os, "unlink", unlink)
    with pytest.raises(KeyboardInterrupt):
        FileCheckpointer(tmp_path).delete("g", "r")
    monkeypatch.setattr(os, "unlink", real_unlink)
    assert lock.exists()
    assert lock.read_bytes() == b""  # no mark: a new log, even on the old inode, is free
    again = Runner(GRAPH, FileCheckpointer(tmp_path), clock=lambda: 1_000_000)
    assert isinstance(again.run("r", {"x": 0}), Paused)  # 4 records, under the old id
    assert Runner(GRAPH, FileCheckpointer(tmp_path)).state("r").status == "paused"


@pytest.mark.parametrize("copy", ["empty", "header only", "zero-filled"])
def test_a_log_replaced_by_a_rename_with_no_record_left_is_corrupt_not_a_new_run(
    tmp_path: Path, copy: str
) -> None:
    whole = _paused_run(tmp_path)
    log, lock = _files(tmp_path)
    staged = log.with_name("staged")
    staged.write_bytes({"empty": b"", "header only": whole[:80], "zero-filled": bytes(100)}[copy])
    os.replace(staged, log)
    runner = Runner(GRAPH, FileCheckpointer(tmp_path))
    with pytest.raises(CorruptCheckpointError, match="holds 0 checkpoints"):
        runner.state("r")
    with pytest.raises(CorruptCheckpointError, match="holds 0 checkpoints"):
        runner.run("r", {"x": 0})  # never started again from nothing
    lock.unlink()  # what the message says to do, if it was meant
    assert isinstance(Runner(GRAPH, FileCheckpointer(tmp_path)).run("r", {"x": 0}), Paused)


def test_a_log_deleted_and_made_again_while_it_was_indexed_is_not_judged_by_the_new_mark(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a fixed clock: both lives of the run have the same first record's time
    other = Runner(GRAPH, FileCheckpointer(tmp_path), clock=lambda: 1_000_000)
    reader = Runner(GRAPH, FileCheckpointer(tmp_path), clock=lambda: 1_000_000)
    other.run("r", {"x": 0})  # 4 records
    real = file_store.synced_mark

    def meanwhile(path: str) -> object:  # between the reader's index and its mark read
        monkeypatch.setattr(file_store, "synced_mark", real)
        other.delete("r")
        other.run("r", {"x": 0})
        other.resume("r", Resume(5))  # 6 records, synced, in a new log
        return real(path)

    monkeypatch.setattr(file_store, "synced_mark", meanwhile)
    assert reader.state("r").status == "paused"  # what it indexed: not corrupt
    assert reader.state("r").status == "done"
