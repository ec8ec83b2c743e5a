"""The file store's listing and its journal (``root/touched``).

A listing reads only the logs the journal names since the index was last
brought up to date (and ``runs/`` when the directory changed), yet it must
never show a status older than a save that returned before it began: after
a writer or a lister is killed at any point, with writers and listers racing
in other processes, and after a reboot. A journal it cannot trust sends it
through every log, as before the journal.
"""

from __future__ import annotations

import contextlib
import errno
import multiprocessing
import os
import random
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pausegraph.checkpointers import FrameInfo, RunSummary
from pausegraph.checkpointers import file as file_store
from pausegraph.checkpointers.file import FileStore
from pausegraph.errors import CheckpointError, ConflictError

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="forks processes")

FORK = multiprocessing.get_context("fork")


def save(store: FileStore, run_id: str, seq: int, status: str = "paused") -> None:
    info = FrameInfo(seq, seq - 1, f"step:{seq}", 1_000 + seq, seq == 1, 3)
    store.append(info, b"abc", RunSummary("wf", run_id, seq, status, 1_000 + seq, None, b""))


def listed(root: Path, store: FileStore | None = None) -> dict[str, tuple[int, str]]:
    """What a listing says: run id -> (seq, status)."""
    store = FileStore(root) if store is None else store
    return {s.run_id: (s.seq, s.status) for s in store.runs()}


def log_path(root: Path, run_id: str) -> Path:
    return root / "runs" / file_store._log_name("wf", run_id)


class Spy:
    """Counts the logs a listing reads again and whether it looked at every log."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.verified: list[str] = []
        self.full_checks = 0
        verify, stat_logs = FileStore._verify, FileStore._stat_logs

        def spy_verify(store: FileStore, name: str) -> Any:
            self.verified.append(name)
            return verify(store, name)

        def spy_stat_logs(store: FileStore) -> Any:
            self.full_checks += 1
            return stat_logs(store)

        monkeypatch.setattr(FileStore, "_verify", spy_verify)
        monkeypatch.setattr(FileStore, "_stat_logs", spy_stat_logs)

    def reset(self) -> None:
        self.verified.clear()
        self.full_checks = 0


def in_child(work: Callable[[], None]) -> int:
    """Run ``work`` in a forked process; its exit status (negative: killed by that signal)."""
    process = FORK.Process(target=work)
    process.start()
    process.join(60)
    assert process.exitcode is not None, "the child hung"
    return process.exitcode


def test_a_listing_reads_only_the_logs_saved_to_since_the_last_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileStore(tmp_path)
    for n in range(20):
        save(store, f"r{n}", 1)
    assert len(listed(tmp_path)) == 20  # the first listing checks every log
    spy = Spy(monkeypatch)
    assert len(listed(tmp_path)) == 20
    assert (spy.verified, spy.full_checks) == ([], 0)  # nothing changed: no log read
    save(store, "r3", 2, "done")
    time.sleep(file_store._RACY_NS / 1e9)  # a log changed this recently is read, note or not
    assert listed(tmp_path)["r3"] == (2, "done")
    assert (spy.verified, spy.full_checks) == ([], 0)  # the journal's note said it all
    store.delete("wf", "r4")  # an entry with no note: that log is looked at
    assert "r4" not in listed(tmp_path)
    assert (spy.verified, spy.full_checks) == ([log_path(tmp_path, "r4").name], 0)


def test_runs_another_handle_started_are_listed_from_the_journal_without_reading_a_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first listing after another handle wrote many new runs reads no log: notes say all."""
    listed(tmp_path)
    writer = FileStore(tmp_path)
    odd = "run-\udc80"  # an id that is not valid Unicode is kept as bytes in the index
    for n in range(200):
        save(writer, f"r{n}", 1)
        if n % 3 == 0:
            save(writer, f"r{n}", 2, "done")
    save(writer, odd, 1, "failed")
    time.sleep(file_store._RACY_NS / 1e9)
    spy = Spy(monkeypatch)
    runs = FileStore(tmp_path).runs()
    assert (spy.verified, spy.full_checks) == ([], 0)
    expected = {f"r{n}": (2, "done") if n % 3 == 0 else (1, "paused") for n in range(200)}
    assert {s.run_id: (s.seq, s.status) for s in runs} == {**expected, odd: (1, "failed")}
    assert {s.workflow_id for s in runs} == {"wf"}
    by_id = {s.run_id: s for s in runs}
    assert (by_id["r3"].updated_ms, by_id["r3"].deadline_ms, by_id["r3"].data) == (1_002, None, b"")
    # and a handle that checks every log agrees with the rows the notes wrote
    (tmp_path / "touched").unlink()
    assert listed(tmp_path) == {**expected, odd: (1, "failed")}


def test_a_refused_append_leaves_no_note(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two handles append seq 2 with records of one length: the loser's note must not count."""
    first, second = FileStore(tmp_path), FileStore(tmp_path)
    save(first, "r", 1)
    second.frames("wf", "r")  # the second handle has indexed seq 1
    listed(tmp_path)
    save(first, "r", 2, "failed")
    with pytest.raises(ConflictError):
        save(second, "r", 2, "paused")  # as long as "failed": the log's size fits its record
    time.sleep(file_store._RACY_NS / 1e9)
    spy = Spy(monkeypatch)
    assert listed(tmp_path) == {"r": (2, "failed")}
    assert spy.verified == []


@pytest.mark.parametrize("when", ["at once", "later"])
def test_a_log_changed_by_hand_after_its_note_is_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    """The size is the note's, but the file was rewritten: right after the save, or later."""
    listed(tmp_path)
    save(FileStore(tmp_path), "r", 1)
    path = log_path(tmp_path, "r")
    if when == "later":
        time.sleep(2 * file_store._RACY_NS / 1e9)
    data = bytearray(path.read_bytes())
    data[-2] ^= 0x40  # in the frame: the record no longer checks
    path.write_bytes(bytes(data))
    time.sleep(file_store._RACY_NS / 1e9)
    spy = Spy(monkeypatch)
    fresh = FileStore(tmp_path)
    if when == "later":
        assert listed(tmp_path, fresh) == {}
        assert [name for name, _ in fresh.damaged()] == [path.name]
        assert spy.verified == [path.name]
    else:
        # changed within _RACY_NS of its note, and listed only after: the note is taken,
        # as the index's own stamps are (docs/storage.md); reading the run finds the damage
        assert listed(tmp_path, fresh) == {"r": (1, "paused")}
        assert spy.verified == []


def test_a_save_made_while_a_listing_reads_the_journal_cannot_pass_for_an_older_note(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A's save of seq 2 is killed part way; B saves seq 2 (same size) as a listing runs.

    The listing stats the noted logs while it holds the journal, so B's save
    (which writes its entry first) cannot land between the journal read and
    the stat, where its file would pass for A's note (found by attack).
    """
    store = FileStore(tmp_path)
    save(store, "r", 1)
    listed(tmp_path)

    def writer() -> None:
        def die(fd: int, data: bytes, offset: int) -> None:
            os.pwrite(fd, data[:20], offset)
            os.kill(os.getpid(), signal.SIGKILL)

        file_store._write_all = die
        save(FileStore(tmp_path), "r", 2, "failed")

    assert in_child(writer) == -signal.SIGKILL
    consume = file_store._Journal.consume

    def consume_then_let_b_save(journal: Any, *args: Any) -> Any:
        found = consume(journal, *args)
        save(FileStore(tmp_path), "r", 2, "paused")  # right after the journal was read
        time.sleep(2 * file_store._RACY_NS / 1e9)
        return found

    monkeypatch.setattr(file_store._Journal, "consume", consume_then_let_b_save)
    first = listed(tmp_path)
    monkeypatch.undo()
    # A's save never finished: never listed. B's may be, if the log is read after it
    assert first["r"] in ((1, "paused"), (2, "paused"))
    time.sleep(file_store._RACY_NS / 1e9)
    assert listed(tmp_path) == {"r": (2, "paused")}


def test_a_note_of_a_file_deleted_behind_its_writer_is_not_taken_for_the_new_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A appends to r's old file while r is deleted and started again at the same size."""
    a = FileStore(tmp_path)
    save(a, "r", 1)
    listed(tmp_path)
    enter = file_store._Journal.enter
    once: list[bool] = []

    def others_first(journal: Any, name: str, note: Any = None) -> Any:
        if not once:
            once.append(True)
            other = FileStore(tmp_path)
            other.delete("wf", "r")
            save(other, "r", 1)
            save(other, "r", 2, "failed")  # as long as A's "paused"
        return enter(journal, name, note)

    monkeypatch.setattr(file_store._Journal, "enter", others_first)
    save(a, "r", 2, "paused")  # into the old, unlinked file: its note names that inode
    monkeypatch.undo()
    time.sleep(file_store._RACY_NS / 1e9)
    assert listed(tmp_path) == {"r": (2, "failed")}


def test_a_log_cut_back_behind_a_writer_is_read_afresh_and_the_save_refused(
    tmp_path: Path,
) -> None:
    """A shorter copy restored in place: the writer must not write past its end (a hole)."""
    store = FileStore(tmp_path)
    save(store, "r", 1)
    path = log_path(tmp_path, "r")
    backup = path.read_bytes()
    save(store, "r", 2)
    save(store, "r", 3)
    with open(path, "r+b") as f:  # the same inode, cut back to seq 1
        f.truncate(0)
        f.write(backup)
    with pytest.raises(CheckpointError, match="seq"):
        save(store, "r", 4)
    assert path.read_bytes() == backup  # no hole of zeros, nothing written
    save(store, "r", 2, "done")
    assert listed(tmp_path) == {"r": (2, "done")}


@pytest.mark.parametrize("note", [True, False])
def test_a_record_cut_back_and_written_again_to_the_same_size_is_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, note: bool
) -> None:
    """A failed fsync cuts seq 3 back and seq 3 is saved again, as long: a long-lived handle
    whose index has the first one must not list it, nor take its own index for damage."""
    if not note:
        monkeypatch.setattr(file_store, "_NOTE_MAX", -1)
    worker, writer = FileStore(tmp_path), FileStore(tmp_path)
    save(writer, "r", 1)
    save(writer, "r", 2)
    writer.sync()
    save(writer, "r", 3, "queued")
    assert listed(tmp_path, worker) == {"r": (3, "queued")}

    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    with monkeypatch.context() as patched:
        patched.setattr(os, "fsync", failing_fsync)
        with pytest.raises(CheckpointError):
            writer.sync()  # seq 3 is cut back
    save(writer, "r", 3, "failed")  # seq 3 again, as long as "queued"
    writer.sync()
    assert listed(tmp_path, worker) == {"r": (3, "failed")}  # within 50 ms: the log is read
    assert listed(tmp_path) == {"r": (3, "failed")}
    frame = worker.read("wf", "r", 3, 3)  # its own index was stale, not the file damaged
    assert frame == [b"abc"]


def test_a_writer_killed_after_its_note_over_a_torn_tail_as_long_changes_nothing(
    tmp_path: Path,
) -> None:
    """A's seq 3 is torn at exactly the length of B's record; B dies after its note."""
    store = FileStore(tmp_path)
    save(store, "r", 1)
    save(store, "r", 2)
    info_b = FrameInfo(3, 2, "step:3", 1_003, False, 3)
    summary_b = RunSummary("wf", "r", 3, "failed", 1_003, None, b"")
    b_len = len(file_store._record(file_store._meta(info_b, summary_b), b"abc"))

    def writer_a() -> None:
        def torn(fd: int, data: bytes, offset: int) -> None:
            os.pwrite(fd, data[:b_len], offset)
            os.kill(os.getpid(), signal.SIGKILL)

        file_store._write_all = torn
        long = FrameInfo(3, 2, "step:3" + "x" * 40, 1_003, False, 3)
        summary = RunSummary("wf", "r", 3, "paused", 1_003, None, b"")
        FileStore(tmp_path).append(long, b"abc" * 20, summary)

    def writer_b() -> None:
        enter = file_store._Journal.enter

        def enter_then_die(journal: Any, name: str, note: Any = None) -> Any:
            enter(journal, name, note)
            os.kill(os.getpid(), signal.SIGKILL)

        file_store._Journal.enter = enter_then_die  # type: ignore[method-assign]
        FileStore(tmp_path).append(info_b, b"abc", summary_b)

    assert in_child(writer_a) == -signal.SIGKILL
    assert in_child(writer_b) == -signal.SIGKILL
    time.sleep(file_store._RACY_NS / 1e9)
    assert listed(tmp_path) == {"r": (2, "paused")}


def test_an_append_with_a_big_meta_is_noted_without_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(file_store, "_NOTE_MAX", 10)
    listed(tmp_path)
    save(FileStore(tmp_path), "r", 1)
    spy = Spy(monkeypatch)
    assert listed(tmp_path) == {"r": (1, "paused")}
    assert spy.verified == [log_path(tmp_path, "r").name]


def test_a_writer_killed_after_its_append_is_listed_with_its_new_status(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    save(store, "r", 1)
    assert listed(tmp_path) == {"r": (1, "paused")}

    def writer() -> None:
        child = FileStore(tmp_path)
        save(child, "r", 2, "done")
        os.kill(os.getpid(), signal.SIGKILL)  # before any listing could bring the index up

    assert in_child(writer) == -signal.SIGKILL
    assert listed(tmp_path) == {"r": (2, "done")}


@pytest.mark.parametrize("written", [0, 1, 40])
def test_a_writer_killed_between_its_journal_line_and_its_append_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, written: int
) -> None:
    """The note is written, then none or part of the record: the log is read, not the note."""
    store = FileStore(tmp_path)
    save(store, "r", 1)
    assert listed(tmp_path) == {"r": (1, "paused")}

    def writer() -> None:
        def die(fd: int, data: bytes, offset: int) -> None:
            os.pwrite(fd, data[:written], offset)
            os.kill(os.getpid(), signal.SIGKILL)

        file_store._write_all = die
        save(FileStore(tmp_path), "r", 2, "done")

    assert in_child(writer) == -signal.SIGKILL
    spy = Spy(monkeypatch)
    assert listed(tmp_path) == {"r": (1, "paused")}
    assert spy.verified == [log_path(tmp_path, "r").name]
    save(store, "r", 2, "failed")  # and the run goes on
    assert listed(tmp_path) == {"r": (2, "failed")}


def test_a_lister_killed_while_it_writes_the_index_leaves_nothing_stale(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    save(store, "a", 1)
    save(store, "b", 1)
    assert listed(tmp_path) == {"a": (1, "paused"), "b": (1, "paused")}
    save(store, "a", 2, "done")
    save(store, "b", 2, "done")

    def lister() -> None:
        put = file_store._Index.put

        def put_then_die(db: Any, *rows: Any) -> None:
            put(db, *rows[:1])  # one row written, the journal's offset not yet
            os.kill(os.getpid(), signal.SIGKILL)

        file_store._Index.put = staticmethod(put_then_die)  # type: ignore[method-assign]
        FileStore(tmp_path).runs()

    assert in_child(lister) == -signal.SIGKILL
    assert listed(tmp_path) == {"a": (2, "done"), "b": (2, "done")}


def test_a_slow_lister_cannot_write_a_row_older_than_a_later_listing(
    tmp_path: Path,
) -> None:
    """A lister that read a log, then stalled while a save and a second listing ran."""
    store = FileStore(tmp_path)
    save(store, "r", 1)
    assert listed(tmp_path) == {"r": (1, "paused")}
    save(store, "r", 2, "paused")
    read, go = FORK.Event(), FORK.Event()

    def slow_lister() -> None:
        put = file_store._Index.put

        def stalled_put(db: Any, *rows: Any) -> None:
            read.set()  # the log is read (seq 2); the row is not written yet
            go.wait(30)
            put(db, *rows)

        file_store._Index.put = staticmethod(stalled_put)  # type: ignore[method-assign]
        FileStore(tmp_path).runs()

    process = FORK.Process(target=slow_lister)
    process.start()
    try:
        assert read.wait(30)
        save(store, "r", 3, "done")  # returned before the next listing begins
        # this listing waits for the stalled one (SQLite's write lock), then reads seq 3
        threading.Timer(0.3, go.set).start()
        assert listed(tmp_path) == {"r": (3, "done")}
    finally:
        go.set()
        process.join(30)
    assert process.exitcode == 0
    assert listed(tmp_path) == {"r": (3, "done")}


def test_listings_racing_writers_never_show_a_status_older_than_a_returned_save(
    tmp_path: Path,
) -> None:
    runs, writers, seconds = 6, 3, 3.0
    FileStore(tmp_path)  # the store exists before anyone races
    returned = FORK.Array("i", runs * writers)  # the last seq whose save returned, per run
    stop = FORK.Event()

    def writer(w: int) -> None:
        store = FileStore(tmp_path)
        rng = random.Random(w)
        seqs = [0] * runs
        while not stop.is_set():
            n = rng.randrange(runs)
            seqs[n] += 1
            save(store, f"w{w}-r{n}", seqs[n], f"s{seqs[n]}")
            returned[w * runs + n] = seqs[n]
            if rng.random() < 0.05:
                store.sync()

    def lister(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            FileStore(tmp_path).runs()
            time.sleep(rng.random() / 100)

    processes = [FORK.Process(target=writer, args=(w,)) for w in range(writers)]
    processes += [FORK.Process(target=lister, args=(s,)) for s in range(2)]
    for process in processes:
        process.start()
    checked = 0
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            before = list(returned)
            now = listed(tmp_path)
            for w in range(writers):
                for n in range(runs):
                    seq = before[w * runs + n]
                    if seq:
                        got = now[f"w{w}-r{n}"]
                        assert got[0] >= seq, f"w{w}-r{n}: listed {got} after seq {seq} returned"
                        assert got[1] == f"s{got[0]}"
                        checked += 1
    finally:
        stop.set()
        for process in processes:
            process.join(30)
    assert all(p.exitcode == 0 for p in processes)
    assert checked > 0
    final = listed(tmp_path)
    assert {k: v[0] for k, v in final.items()} == {
        f"w{w}-r{n}": returned[w * runs + n]
        for w in range(writers)
        for n in range(runs)
        if returned[w * runs + n]
    }


def test_a_full_journal_is_emptied_and_listings_stay_right(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(file_store, "_JOURNAL_MAX", 2_000)  # about 28 lines
    journal = tmp_path / "touched"
    store = FileStore(tmp_path)
    save(store, "r", 1)
    listed(tmp_path)
    tag = journal.read_bytes()[: file_store._JOURNAL_HEAD]
    for seq in range(2, 60):
        save(store, "r", seq)
    assert journal.stat().st_size > 2_000
    spy = Spy(monkeypatch)
    assert listed(tmp_path) == {"r": (59, "paused")}
    assert spy.full_checks == 0  # what the journal named was read, then it was emptied
    assert journal.stat().st_size == file_store._JOURNAL_HEAD
    assert journal.read_bytes() != tag  # a new tag: an index that missed this checks all
    # the writer's descriptor still appends to the emptied journal
    save(store, "r", 60, "done")
    assert listed(tmp_path) == {"r": (60, "done")}
    assert spy.full_checks == 0


def test_an_index_from_before_the_emptying_checks_every_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An index whose listing was killed after the journal was emptied, before its commit."""
    monkeypatch.setattr(file_store, "_JOURNAL_MAX", 1_000)
    store = FileStore(tmp_path)
    save(store, "r", 1)
    listed(tmp_path)
    for seq in range(2, 30):
        save(store, "r", seq)

    def lister() -> None:
        def die(store: FileStore, name: str, *note: Any) -> Any:
            os.kill(os.getpid(), signal.SIGKILL)

        FileStore._verify = die  # type: ignore[method-assign]
        FileStore._noted = die  # type: ignore[method-assign]
        FileStore(tmp_path).runs()

    assert in_child(lister) == -signal.SIGKILL
    assert (tmp_path / "touched").stat().st_size == file_store._JOURNAL_HEAD  # emptied
    spy = Spy(monkeypatch)
    assert listed(tmp_path) == {"r": (29, "paused")}
    assert spy.full_checks == 1


def cut_back_by_hand(root: Path, run_id: str) -> None:
    """Cut the run's log back to its first record, as a power loss could, unjournaled."""
    path = log_path(root, run_id)
    store = FileStore(root)
    log = store._find("wf", run_id)
    assert log is not None
    with log.lock:
        store._catch_up(log)
        first_end = log.entries[0].end
    stat = path.stat()
    os.truncate(path, first_end)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def test_a_reboot_makes_the_listing_check_every_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileStore(tmp_path)
    save(store, "r", 1)
    save(store, "r", 2, "done")
    save(store, "s", 1)
    assert listed(tmp_path) == {"r": (2, "done"), "s": (1, "paused")}
    cut_back_by_hand(tmp_path, "r")  # what a power loss can do to unsynced appends
    spy = Spy(monkeypatch)
    monkeypatch.setattr(file_store, "_boot_id", lambda: "another-boot")
    assert listed(tmp_path) == {"r": (1, "paused"), "s": (1, "paused")}
    assert spy.full_checks == 1
    spy.reset()
    assert listed(tmp_path) == {"r": (1, "paused"), "s": (1, "paused")}
    assert spy.full_checks == 0  # once per boot


@pytest.mark.parametrize("damage", ["garbage", "cut-mid-line", "bad-line", "removed", "empty"])
def test_a_journal_that_cannot_be_trusted_makes_the_listing_check_every_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    store = FileStore(tmp_path)
    save(store, "r", 1)
    save(store, "r", 2, "done")
    assert listed(tmp_path) == {"r": (2, "done")}
    save(store, "s", 1)
    cut_back_by_hand(tmp_path, "r")  # unjournaled: only a check of every log sees it
    journal = tmp_path / "touched"
    data = journal.read_bytes()
    if damage == "garbage":
        journal.write_bytes(b"\x00garbage" * 20)
    elif damage == "cut-mid-line":
        journal.write_bytes(data[:-10])
    elif damage == "bad-line":
        journal.write_bytes(data + b"../../etc/passwd\n")
    elif damage == "removed":
        journal.unlink()
    else:
        journal.write_bytes(b"")
    spy = Spy(monkeypatch)
    fresh = FileStore(tmp_path)
    assert listed(tmp_path, fresh) == {"r": (1, "paused"), "s": (1, "paused")}
    assert spy.full_checks == 1
    assert fresh.damaged() == []
    spy.reset()
    save(store, "s", 2, "done")  # the journal works again, from the old descriptor too
    assert listed(tmp_path) == {"r": (1, "paused"), "s": (2, "done")}
    assert spy.full_checks == 0


def test_deleted_and_created_logs_disappear_and_appear(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileStore(tmp_path)
    other = FileStore(tmp_path)
    save(store, "a", 1)
    save(store, "a", 2, "done")
    save(store, "b", 1)
    assert listed(tmp_path) == {"a": (2, "done"), "b": (1, "paused")}
    other.delete("wf", "a")
    assert listed(tmp_path) == {"b": (1, "paused")}
    save(other, "a", 1, "queued")  # the same name again, maybe the same inode
    assert listed(tmp_path) == {"a": (1, "queued"), "b": (1, "paused")}
    save(other, "c", 1)  # a new log from another handle
    assert listed(tmp_path) == {"a": (1, "queued"), "b": (1, "paused"), "c": (1, "paused")}
    log_path(tmp_path, "b").unlink()  # by hand
    spy = Spy(monkeypatch)
    assert listed(tmp_path) == {"a": (1, "queued"), "c": (1, "paused")}
    assert spy.full_checks == 0  # runs/ changed: listed, not every log stat'ed


def test_a_damaged_log_is_reported_at_every_listing_until_it_is_removed(
    tmp_path: Path,
) -> None:
    store = FileStore(tmp_path)
    save(store, "a", 1)
    save(store, "b", 1)
    assert len(listed(tmp_path)) == 2
    path = log_path(tmp_path, "b")
    path.with_name("0" * 64 + ".log").write_bytes(b"not a log")  # a new file: runs/ changed
    for _ in range(2):
        fresh = FileStore(tmp_path)
        assert listed(tmp_path, fresh) == {"a": (1, "paused"), "b": (1, "paused")}
        assert [name for name, _ in fresh.damaged()] == ["0" * 64 + ".log"]
    path.with_name("0" * 64 + ".log").unlink()
    fresh = FileStore(tmp_path)
    listed(tmp_path, fresh)
    assert fresh.damaged() == []


def test_a_journal_no_listing_reads_stops_growing_and_the_next_listing_checks_every_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(file_store, "_JOURNAL_CAP", 1_000)
    store = FileStore(tmp_path)
    save(store, "r", 1)
    listed(tmp_path)
    for seq in range(2, 200):
        save(store, "r", seq)
    assert (tmp_path / "touched").stat().st_size < 2_000
    spy = Spy(monkeypatch)
    assert listed(tmp_path) == {"r": (199, "paused")}
    assert spy.full_checks == 1


def test_a_handle_that_lists_again_sees_what_other_handles_listed_saved_and_deleted(
    tmp_path: Path,
) -> None:
    worker = FileStore(tmp_path)  # a long-lived handle (a worker's tick, the web inbox)
    other = FileStore(tmp_path)
    for n in range(5):
        save(other, f"r{n}", 1)
    for _ in range(3):  # the second listing keeps every summary, the third reuses them
        assert listed(tmp_path, worker) == {f"r{n}": (1, "paused") for n in range(5)}
    save(other, "r1", 2, "done")
    assert listed(tmp_path) == {**{f"r{n}": (1, "paused") for n in range(5)}, "r1": (2, "done")}
    # another handle consumed the journal line: the worker reads the row it wrote
    assert listed(tmp_path, worker)["r1"] == (2, "done")
    save(other, "r9", 1, "queued")
    assert listed(tmp_path, worker)["r9"] == (1, "queued")
    assert list(listed(tmp_path, worker)) == sorted(listed(tmp_path, worker), key=by_log_name)
    other.delete("wf", "r2")
    assert "r2" not in listed(tmp_path)
    assert "r2" not in listed(tmp_path, worker)
    assert [s.run_id for s in worker.runs(status="done")] == ["r1"]
    assert [s.run_id for s in worker.runs(workflow_id="other")] == []
    (tmp_path / "index.sqlite3").unlink()  # another index: every row read again
    save(other, "r3", 2, "failed")
    assert listed(tmp_path, worker)["r3"] == (2, "failed")


def by_log_name(run_id: str) -> str:
    return file_store._log_name("wf", run_id)


def test_a_journal_line_that_cannot_be_written_sends_the_next_listing_through_every_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileStore(tmp_path)
    save(store, "r", 1)
    assert listed(tmp_path) == {"r": (1, "paused")}

    def no_space(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", no_space)
    save(store, "r", 2, "done")  # the journal is emptied instead: the save goes on
    monkeypatch.undo()
    spy = Spy(monkeypatch)
    assert listed(tmp_path) == {"r": (2, "done")}
    assert spy.full_checks == 1


def test_a_save_fails_before_it_changes_the_log_when_the_journal_refuses_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileStore(tmp_path)
    save(store, "r", 1)
    before = log_path(tmp_path, "r").read_bytes()

    def refused(*args: Any) -> Any:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "write", refused)
    monkeypatch.setattr(os, "ftruncate", refused)
    with pytest.raises(CheckpointError, match=r"cannot use '.*touched': Input/output error"):
        save(store, "r", 2, "done")
    monkeypatch.undo()
    assert log_path(tmp_path, "r").read_bytes() == before
    save(store, "r", 2, "done")  # the same seq again, once the disk is back
    assert listed(tmp_path) == {"r": (2, "done")}


def test_a_file_system_whose_d_ino_is_not_st_ino_reads_only_the_new_logs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """overlayfs may give ``readdir`` inodes other than ``stat``'s: rows keep the former."""
    listed_logs = file_store._listed_logs
    monkeypatch.setattr(
        file_store,
        "_listed_logs",
        lambda path: {name: ino + 10**9 for name, ino in listed_logs(path).items()},
    )
    store = FileStore(tmp_path)
    for n in range(5):
        save(store, f"r{n}", 1)
    assert len(listed(tmp_path)) == 5
    save(store, "r0", 2)
    save(store, "new", 1)
    assert len(listed(tmp_path)) == 6  # runs/ changed: the rows now hold d_ino
    spy = Spy(monkeypatch)
    save(store, "newer", 1)
    save(store, "r1", 2)
    time.sleep(file_store._RACY_NS / 1e9)
    assert listed(tmp_path)["r1"] == (2, "paused")
    assert spy.verified == []  # both taken from the journal's notes
    with contextlib.closing(sqlite3.connect(tmp_path / "index.sqlite3")) as db:
        inos = dict(db.execute("SELECT name, ino FROM runs"))
    for run_id in ("newer", "r1", "r2"):  # a noted new log, a noted one, an untouched one
        path = log_path(tmp_path, run_id)
        assert inos[path.name] == path.stat().st_ino + 10**9  # what readdir gives
    del store  # the next listing finds runs/ as the index has it: no log read
    time.sleep(file_store._RACY_NS / 1e9)
    assert len(listed(tmp_path)) == 7
    assert spy.verified == []
    save(FileStore(tmp_path), "r3", 2)  # a note whose log keeps its inode
    (tmp_path / "runs" / "x.tmp").write_bytes(b"")  # and runs/ changed meanwhile
    time.sleep(file_store._RACY_NS / 1e9)
    assert listed(tmp_path)["r3"] == (2, "paused")
    assert spy.verified == []


def test_a_listing_waits_for_a_save_under_way_in_another_thread_and_then_goes_on(
    tmp_path: Path,
) -> None:
    # a listing takes the journal only once no thread of its handle is between a
    # journal entry and the end of its log write; that writer's end must wake it
    store = FileStore(tmp_path)
    save(store, "a", 1)
    journal = store._journal
    held = journal.enter("0" * 64 + ".log")  # a save of this handle, under way
    listed: list[Any] = []
    lister = threading.Thread(target=lambda: listed.append(store.runs()), daemon=True)
    lister.start()
    lister.join(0.3)
    assert lister.is_alive()  # waiting for the save
    journal.leave(held)
    lister.join(10)
    assert not lister.is_alive()
    assert [row.run_id for row in listed[0]] == ["a"]
    fd = journal.enter("0" * 64 + ".log")  # and a writer goes on once the listing is done
    journal.leave(fd)
