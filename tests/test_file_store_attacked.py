"""The file store against the attacks of the fix round: inode reuse, deletes racing listings,
a log vanishing under a full check, and a FIFO in the journal's place."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from test_checkpointers import make_checkpoint

from pausegraph import FileCheckpointer
from pausegraph._channels import Change, Op
from pausegraph.checkpointers import file as file_store
from pausegraph.errors import CheckpointError


def save_run(store: FileCheckpointer, run_id: str, n: int, first: Any = "a") -> None:
    """Save ``n`` checkpoints of ``run_id``; the first holds ``first``."""
    store.save(make_checkpoint(run_id, 1, {"log": [first]}))
    for seq in range(2, n + 1):
        change = (Change("log", Op.EXTEND, [seq]),)
        store.save(make_checkpoint(run_id, seq, {"log": [first, *range(2, seq + 1)]}, change))


def run_log(store: FileCheckpointer, run_id: str) -> Any:
    return store.store._logs[("wf", run_id)]


def log_file(root: Path, run_id: str) -> Path:
    return root / "runs" / file_store._log_name("wf", run_id)


# --- 1. a closed descriptor forgets its file: inode numbers are reused ------------


def test_a_handle_closed_forgets_what_it_read_of_each_log(tmp_path: Path) -> None:
    store = FileCheckpointer(tmp_path)
    save_run(store, "r", 3)
    store.close()  # "it reopens them if used again"
    log = run_log(store, "r")
    assert (log.fd, log.file_id, log.entries, log.end, log.summary) == (-1, (0, 0), [], 0, None)
    assert [m.seq for m in store.list("wf", "r")] == [1, 2, 3]


def test_a_log_closed_among_the_oldest_open_forgets_its_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(file_store, "_MAX_OPEN_LOGS", 2)
    store = FileCheckpointer(tmp_path)
    for run_id in ("a", "b", "c"):
        save_run(store, run_id, 2)
    log = run_log(store, "a")  # the oldest: its descriptor was closed for "c"
    assert (log.fd, log.file_id, log.entries, log.end, log.summary) == (-1, (0, 0), [], 0, None)
    assert [m.seq for m in store.list("wf", "a")] == [1, 2]


def test_a_log_replaced_then_deleted_before_its_reopen_is_forgotten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileCheckpointer(tmp_path)
    save_run(store, "r", 3)
    path = log_file(tmp_path, "r")
    copy = tmp_path / "copy.log"
    copy.write_bytes(path.read_bytes())
    os.replace(copy, path)  # replaced (a new inode): the handle closes its descriptor
    real_open = file_store._open_log

    def deleted_first(where: str, flags: int) -> tuple[int, os.stat_result]:
        os.unlink(where)  # ... and the log is deleted before the handle reopens it
        return real_open(where, flags)

    monkeypatch.setattr(file_store, "_open_log", deleted_first)
    assert store.list("wf", "r") == []  # deleted: no run
    monkeypatch.undo()
    assert ("wf", "r") not in store.store._logs
    save_run(store, "r", 1, first="new")
    latest = store.latest("wf", "r")
    assert latest is not None
    assert latest.values == {"log": ["new"]}


def test_a_run_deleted_and_started_again_on_the_same_inode_is_listed_as_the_new_run(
    tmp_path: Path,
) -> None:
    """The attacker's scenario: ext4 gives the new log the freed inode number (tried until
    it does; skipped on a file system that never reuses one)."""
    lister, writer = FileCheckpointer(tmp_path), FileCheckpointer(tmp_path)
    for attempt in range(200):
        run_id = f"x{attempt}"
        save_run(writer, run_id, 2, first="old")
        old = os.stat(log_file(tmp_path, run_id)).st_ino
        assert [s.seq for s in lister.summaries() if s.run_id == run_id] == [2]
        lister.close()
        writer.delete("wf", run_id)
        save_run(writer, run_id, 3, first="a longer new value")
        if os.stat(log_file(tmp_path, run_id)).st_ino == old:
            break
        writer.delete("wf", run_id)
    else:
        pytest.skip("this file system never gave a new log a freed inode number")
    assert [s.seq for s in lister.summaries() if s.run_id == run_id] == [3]
    latest = lister.latest("wf", run_id)
    assert latest is not None
    assert latest.values == {"log": ["a longer new value", 2, 3]}
    fresh = FileCheckpointer(tmp_path)
    assert [s.seq for s in fresh.summaries() if s.run_id == run_id] == [3]


# --- 2. a log that vanished is no run; a listing does not remember a deleted run --


def test_a_log_deleted_behind_a_handle_reads_as_no_run_and_starts_again(tmp_path: Path) -> None:
    store = FileCheckpointer(tmp_path)
    save_run(store, "r", 2)
    FileCheckpointer(tmp_path).delete("wf", "r")  # another handle
    assert store.latest("wf", "r") is None
    assert ("wf", "r") not in store.store._logs
    save_run(store, "r", 2, first="again")
    latest = FileCheckpointer(tmp_path).latest("wf", "r")
    assert latest is not None
    assert latest.values == {"log": ["again", 2]}


def test_a_first_save_over_a_log_deleted_behind_a_handle_starts_the_run_again(
    tmp_path: Path,
) -> None:
    store = FileCheckpointer(tmp_path)
    save_run(store, "r", 2)
    log_file(tmp_path, "r").unlink()
    store.save(make_checkpoint("r", 1, {"log": ["again"]}))  # no read first
    latest = FileCheckpointer(tmp_path).latest("wf", "r")
    assert latest is not None
    assert (latest.seq, latest.values) == (1, {"log": ["again"]})


def test_a_listing_racing_a_delete_of_the_same_handle_does_not_remember_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(file_store, "_NOTE_MAX", -1)  # no notes: the listing reads the log
    store = FileCheckpointer(tmp_path)
    save_run(store, "r", 2)
    store.close()
    store.store._logs.clear()  # a handle that has not used the run yet
    path = str(log_file(tmp_path, "r"))
    real_exists = file_store._exists
    deleting: list[threading.Thread] = []

    def delete_after(where: str) -> bool:
        found = real_exists(where)
        if where == path and not deleting:
            # another thread of the handle deletes the run right after the listing looked
            deleting.append(threading.Thread(target=store.delete, args=("wf", "r")))
            deleting[0].start()
            for _ in range(500):  # until the log is gone (its index row waits for the listing)
                if not real_exists(where):
                    break
                time.sleep(0.01)
        return found

    monkeypatch.setattr(file_store, "_exists", delete_after)
    store.summaries()  # the first listing: it reads every log
    deleting[0].join()
    assert ("wf", "r") not in store.store._logs
    assert not store.store._open
    monkeypatch.undo()
    save_run(store, "r", 1, first="again")
    assert [s.run_id for s in store.summaries()] == ["r"]


# --- 3. a log gone between listdir and lstat is not a run ------------------------


def test_a_full_check_skips_a_log_deleted_between_its_listing_and_its_stat(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileCheckpointer(tmp_path)
    save_run(store, "r", 2)
    store.summaries()
    (tmp_path / "index.sqlite3").unlink()  # the next listing checks every log
    real_listdir = os.listdir

    def with_a_vanished_log(where: Any) -> list[str]:
        return [*real_listdir(where), "0" * 64 + ".log"]

    monkeypatch.setattr(os, "listdir", with_a_vanished_log)
    assert [(s.run_id, s.seq) for s in FileCheckpointer(tmp_path).summaries()] == [("r", 2)]


# --- 4. a FIFO in the journal's place ------------------------------------------


def test_a_fifo_in_the_journals_place_fails_saves_without_blocking(tmp_path: Path) -> None:
    store = FileCheckpointer(tmp_path)
    save_run(store, "r", 2)
    store.summaries()
    journal = tmp_path / "touched"
    journal.unlink()
    os.mkfifo(journal)
    before = log_file(tmp_path, "r").read_bytes()
    other = FileCheckpointer(tmp_path)
    with pytest.raises(
        CheckpointError,
        match=rf"^checkpoint store cannot use {str(journal)!r}: it is not a regular file .*"
        "remove it, and the next save makes a new journal$",
    ):
        other.save(make_checkpoint("r", 3, {"log": ["a", 2, 3]}, (Change("log", Op.EXTEND, [3]),)))
    assert log_file(tmp_path, "r").read_bytes() == before  # nothing changed
    assert [(s.run_id, s.seq) for s in other.summaries()] == [("r", 2)]  # listed without it
    journal.unlink()
    other.save(make_checkpoint("r", 3, {"log": ["a", 2, 3]}, (Change("log", Op.EXTEND, [3]),)))
    assert [(s.run_id, s.seq) for s in FileCheckpointer(tmp_path).summaries()] == [("r", 3)]
