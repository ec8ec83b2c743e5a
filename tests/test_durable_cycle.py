"""What a pause/resume cycle costs a durable store, pinned by counting what it does.

The durability rule asks for one sync at the end of each call (plus one per
effect); these tests count the ``fsync`` calls, the ``ftruncate`` calls on
lock files and the SQLite statements a cycle makes, so that a change that
adds one shows up here rather than only in a benchmark.
"""

from __future__ import annotations

import os
import re
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from pausegraph import (
    Done,
    FileCheckpointer,
    Graph,
    Interrupt,
    LastWriteWins,
    Paused,
    Resume,
    Runner,
    SqliteCheckpointer,
)
from pausegraph._records import Start


def ask(state: Any) -> Iterator[Any]:
    answer = yield Interrupt("ok?")
    return {"answer": answer}


def after(state: Any) -> dict[str, Any]:
    return {"done": True}


GRAPH = (
    Graph("cycle", {"answer": LastWriteWins(), "done": LastWriteWins()})
    .step("ask", ask)
    .step("after", after)
    .edge("ask", "after")
)


class Syscalls:
    """Counts ``fsync`` calls (of a directory, of a file) and ``ftruncate`` calls."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.fsyncs: list[str] = []
        self.truncated: list[str] = []
        real_fsync, real_ftruncate = os.fsync, os.ftruncate

        def fsync(fd: int) -> None:
            self.fsyncs.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
            real_fsync(fd)

        def ftruncate(fd: int, length: int) -> None:
            self.truncated.append(os.readlink(f"/proc/self/fd/{fd}"))
            real_ftruncate(fd, length)

        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "ftruncate", ftruncate)

    def reset(self) -> None:
        self.fsyncs.clear()
        self.truncated.clear()


def test_a_file_store_cycle_costs_three_fsyncs_and_a_hot_resume_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = Runner(GRAPH, FileCheckpointer(tmp_path))
    assert isinstance(runner.run("warm"), Paused)  # the lock file of a known run exists after
    calls = Syscalls(monkeypatch)
    assert isinstance(runner.run("r"), Paused)
    assert calls.fsyncs == ["file", "dir"]  # the new log, then its name in runs/
    calls.reset()
    assert isinstance(runner.resume("r", Resume("yes")), Done)
    assert calls.fsyncs == ["file"]  # three checkpoints, one fsync
    lock = str(Path(runner.checkpointer.store._lock_path("cycle", "r")).resolve())
    assert calls.truncated == [lock]  # the live lock: emptied at release, no more


def test_a_file_store_resume_on_a_new_handle_syncs_runs_once_then_no_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A handle that first writes to a log it did not create syncs ``runs/`` too: the
    log's creator may not have synced it yet (it reads as no run then, never wrong)."""
    graph = Graph("loop", {"n": LastWriteWins()})

    def loop(state: Any) -> Iterator[Any]:
        yield Interrupt(1)
        yield Interrupt(2)
        return {"n": 2}

    graph.step("loop", loop)
    Runner(graph, FileCheckpointer(tmp_path)).run("r")
    calls = Syscalls(monkeypatch)
    runner = Runner(graph, FileCheckpointer(tmp_path))
    assert isinstance(runner.resume("r", Resume(1)), Paused)
    assert calls.fsyncs == ["file", "dir"]
    calls.reset()
    assert isinstance(runner.resume("r", Resume(2)), Done)
    assert calls.fsyncs == ["file"]


@pytest.mark.parametrize("kind", ["file", "sqlite"])
def test_the_live_lock_costs_one_ftruncate_a_call_and_a_released_lock_file_holds_no_holder(
    tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileCheckpointer(tmp_path) if kind == "file" else SqliteCheckpointer(tmp_path / "r.db")
    runner = Runner(GRAPH, store)
    runner.run("r")
    lock = store.store._lock_path("cycle", "r")
    # released cleanly: empty, or (the file store) the sync mark alone, shorter than a note
    released = os.path.getsize(lock)
    assert released == 0 if kind == "sqlite" else 0 < released < 40
    assert store.holder("cycle", "r") is None
    calls = Syscalls(monkeypatch)
    with store.lock("cycle", "r"):
        holder = store.holder("cycle", "r")
        assert holder is not None
        assert holder.pid == os.getpid()
        assert calls.truncated == []  # the note went over something shorter
    assert calls.truncated == [str(Path(lock).resolve())]
    assert os.path.getsize(lock) == released
    assert store.holder("cycle", "r") is None
    Path(lock).write_bytes(b"x" * 100)  # a longer note, as a dead holder could leave
    calls.reset()
    with store.lock("cycle", "r"):
        holder = store.holder("cycle", "r")
        assert holder is not None
        assert holder.pid == os.getpid()
    assert len(calls.truncated) == 2


def test_the_sqlite_store_updates_a_runs_summary_in_place(tmp_path: Path) -> None:
    """The summary is upserted: the row keeps its rowid (``INSERT OR REPLACE`` would
    delete it and insert a new one, rewriting every index of ``runs``)."""
    db = tmp_path / "r.db"
    runner = Runner(GRAPH, SqliteCheckpointer(db))

    def rowid() -> int:
        with sqlite3.connect(db) as connection:
            (value,) = connection.execute("SELECT rowid FROM runs").fetchone()
        return int(value)

    runner.run("r")
    before = rowid()
    runner.resume("r", Resume("yes"))
    assert rowid() == before
    (summary,) = SqliteCheckpointer(db).summaries()
    assert (summary.run_id, summary.status) == ("r", "done")


def test_a_sqlite_append_is_four_statements_and_a_sync_is_none(tmp_path: Path) -> None:
    """An append checks the seq and inserts the frame in one statement; a summary whose
    status and deadline stay is updated without setting them (no index entry written);
    ``sync`` syncs the WAL file itself (one ``fdatasync``) rather than committing a
    transaction."""
    store = SqliteCheckpointer(tmp_path / "r.db")
    runner = Runner(GRAPH, store)
    assert isinstance(runner.run("warm"), Paused)
    statements: list[str] = []
    names = {
        r"INSERT INTO runs\b": "INSERT-RUN",
        r"INSERT INTO frames\b": "INSERT-FRAME",
        r"UPDATE runs SET seq = [^,]+, status\b": "SET-SUMMARY",
        r"UPDATE runs SET seq = [^,]+, updated_ms\b": "UPDATE-ROW",
    }

    def name(sql: str) -> str:  # the trace has the values in place of the ?s
        return next((v for k, v in names.items() if re.match(k, sql)), sql.split()[0])

    store.store._connection().set_trace_callback(lambda sql: statements.append(name(sql)))
    assert isinstance(runner.run("r"), Paused)
    run = " ".join(statements)
    statements.clear()
    assert isinstance(runner.resume("r", Resume("yes")), Done)
    resume = " ".join(statements)
    # run: the run looked up; its input (queued) as a new row and its first frame, with
    # no row to read first (a failed sync deletes the run); its pause (paused); no
    # transaction, no PRAGMA for the syncs, and no query at the lock's release
    assert run == (
        "SELECT BEGIN INSERT-RUN INSERT-FRAME COMMIT BEGIN INSERT-FRAME SET-SUMMARY COMMIT"
    )
    # resume: the run looked up; the claim (queued again), whose row is read first, as
    # what a failed sync puts back; a layer (still queued: the row alone); done
    assert resume == (
        "SELECT BEGIN SELECT INSERT-FRAME SET-SUMMARY COMMIT "
        "BEGIN INSERT-FRAME UPDATE-ROW COMMIT BEGIN INSERT-FRAME SET-SUMMARY COMMIT"
    )
    (summary,) = [s for s in store.summaries() if s.run_id == "r"]
    assert (summary.seq, summary.status) == (5, "done")


def test_a_sqlite_summary_another_handle_changed_is_upserted_whatever_this_one_wrote(
    tmp_path: Path,
) -> None:
    """What a handle last wrote to a run's summary is a hint: the update applies only
    where the row still has that status and deadline, else the summary is upserted."""
    db = tmp_path / "r.db"
    mine, theirs = SqliteCheckpointer(db), SqliteCheckpointer(db)
    assert isinstance(Runner(GRAPH, mine).run("r"), Paused)
    checkpoint = mine.latest("cycle", "r")
    assert checkpoint is not None
    # another handle deletes the run and starts it again, up to the same seq
    theirs.delete("cycle", "r")
    for seq in range(1, checkpoint.seq + 1):
        theirs.save(attrs.evolve(checkpoint, seq=seq, stage=Start(seq), changes=None))
    (summary,) = theirs.summaries()
    assert summary.status == "queued"
    # this handle last wrote "paused" with no deadline; a paused checkpoint again
    mine.save(attrs.evolve(checkpoint, seq=checkpoint.seq + 1, changes=None))
    (summary,) = SqliteCheckpointer(db).summaries()
    assert (summary.seq, summary.status) == (checkpoint.seq + 1, "paused")


def test_a_sqlite_lock_asks_whether_the_run_exists_only_if_it_appended_nothing(
    tmp_path: Path,
) -> None:
    """The release of a live lock removes a lock file left by a call that created no
    run; a hold in which the handle appended knows the run exists without a query."""
    store = SqliteCheckpointer(tmp_path / "r.db")
    runner = Runner(GRAPH, store)
    statements: list[str] = []
    store.store._connection().set_trace_callback(lambda sql: statements.append(sql.split()[0]))
    lock = Path(store.store._lock_path("cycle", "r"))
    with store.lock("cycle", "r"):  # an unknown run: nothing saved
        assert lock.exists()
    assert statements == ["SELECT"]
    assert not lock.exists()
    assert isinstance(runner.run("r"), Paused)
    assert lock.exists()
    assert os.path.getsize(lock) == 0
    checkpoint = store.latest("cycle", "r")
    assert checkpoint is not None
    with store.lock("cycle", "r"):  # the run deleted inside the hold: it asks again
        store.delete("cycle", "r")
        statements.clear()
    assert statements == ["SELECT"]
    assert not lock.exists()
    with store.lock("cycle", "r"):  # saved again inside the hold: no query
        store.save(attrs.evolve(checkpoint, seq=1, changes=None))
        statements.clear()
    assert statements == []
    assert lock.exists()
