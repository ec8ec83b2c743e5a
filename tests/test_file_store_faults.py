"""FileCheckpointer under faults: hostile records, failed saves, damaged logs, many runs."""

from __future__ import annotations

import errno
import os
import re
import struct
import threading
import time
import tracemalloc
import zlib
from pathlib import Path
from typing import Any

import msgpack
import pytest
from test_checkpointers import make_checkpoint
from test_file_store import SUMMARY, forge, log_path, save_run

from pausegraph import (
    Append,
    Checkpoint,
    CheckpointError,
    ConflictError,
    CorruptCheckpointError,
    FileCheckpointer,
    Graph,
    Runner,
)
from pausegraph._channels import Change, Op
from pausegraph._codec import encode_frame
from pausegraph._values import pack
from pausegraph.checkpointers import file as file_store

# --- decoding is bounded by the bytes read, and refuses extension types ----------------


def append(root: Path, record: bytes) -> None:
    with log_path(root).open("ab") as f:
        f.write(record)


def peak_while(call: Any) -> int:
    """The most memory Python allocated while ``call()`` ran."""
    tracemalloc.start()
    try:
        call()
    except CorruptCheckpointError:
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def test_a_frame_of_a_million_empty_arrays_is_refused_within_the_decoding_bound(
    tmp_path: Path,
) -> None:
    save_run(FileCheckpointer(tmp_path), "r", 2)
    n = 1_000_000
    bomb = b"\xdd" + struct.pack(">I", n) + b"\x90" * n  # 1 MB: one array of a million []
    append(tmp_path, forge(pack([3, 2, "layer:2", 0, True, *SUMMARY]), bomb))
    store = FileCheckpointer(tmp_path)
    with pytest.raises(
        CorruptCheckpointError,
        match=r"^'.*\.log' is corrupt: the record at byte \d+ cannot be used, it does not decode",
    ):
        store.latest("wf", "r")
    # an empty list is one byte and a value the engine itself may write, so a reader
    # builds at most one container per byte: about 64 bytes of Python objects per byte
    assert peak_while(lambda: FileCheckpointer(tmp_path).latest("wf", "r")) < 80 * len(bomb)


def test_nested_arrays_claiming_more_items_than_the_record_holds_allocate_nothing_big(
    tmp_path: Path,
) -> None:
    save_run(FileCheckpointer(tmp_path), "r", 2)
    claim = 100_000  # each header preallocates 800 kB of list slots if believed
    bomb = b"".join(b"\xdd" + struct.pack(">I", claim) for _ in range(1000))
    append(tmp_path, forge(pack([3, 2, "layer:2", 0, True, *SUMMARY]), bomb))
    with pytest.raises(CorruptCheckpointError, match=r"it does not decode"):
        FileCheckpointer(tmp_path).latest("wf", "r")
    assert peak_while(lambda: FileCheckpointer(tmp_path).latest("wf", "r")) < 2_000_000


def test_a_meta_holding_nested_arrays_is_corrupt_for_list_runs_and_history(
    tmp_path: Path,
) -> None:
    save_run(FileCheckpointer(tmp_path), "r", 2)
    n = 1_000_000
    meta = b"\x95\xdd" + struct.pack(">I", n) + b"\x90" * n + pack([2, "x", 0, False])[1:]
    append(tmp_path, forge(meta, b""))
    store = FileCheckpointer(tmp_path)
    with pytest.raises(CorruptCheckpointError, match=r"its meta does not decode"):
        store.list("wf", "r")
    assert peak_while(lambda: FileCheckpointer(tmp_path).list("wf", "r")) < 4 * n


@pytest.mark.parametrize(
    "ext",
    [
        pytest.param(msgpack.packb(msgpack.Timestamp(1, 0)), id="timestamp"),
        pytest.param(msgpack.packb(msgpack.ExtType(5, b"x")), id="ext"),
        pytest.param(b"\xc7\x00\x05", id="empty-ext"),
    ],
)
def test_an_extension_type_in_a_frame_or_meta_is_corrupt_naming_the_file(
    tmp_path: Path, ext: bytes
) -> None:
    save_run(FileCheckpointer(tmp_path), "r", 2)
    frame = msgpack.packb(
        {"seq": 3, "super_step": 2, "label": "l", "timestamp_ms": 0, "next": "layer"}
    )
    # the same map with one more key: values, holding the extension type
    frame = bytes([frame[0] + 1]) + frame[1:] + msgpack.packb("values") + b"\x81\xa1x" + ext
    append(tmp_path, forge(pack([3, 2, "l", 0, True, *SUMMARY]), frame))
    with pytest.raises(CorruptCheckpointError, match=r"^'.*\.log' is corrupt: .*does not decode"):
        FileCheckpointer(tmp_path).latest("wf", "r")

    other = tmp_path / "other"
    save_run(FileCheckpointer(other), "r", 2)
    append(other, forge(b"\x95\x03\x02\xa1l" + ext + b"\xc2", b""))
    with pytest.raises(CorruptCheckpointError, match=r"its meta does not decode \(.*extension"):
        FileCheckpointer(other).list("wf", "r")


def test_a_log_header_whose_own_checksum_fails_is_corrupt(tmp_path: Path) -> None:
    save_run(FileCheckpointer(tmp_path), "r", 2)
    path = log_path(tmp_path)
    data = bytearray(path.read_bytes())
    # the header record's frame checksum (its frame is empty, so it must be crc32(b"") = 0)
    data[22:26] = struct.pack(">I", zlib.crc32(b"x"))
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptCheckpointError, match=r"^'.*' is corrupt: the record at byte 6 "):
        FileCheckpointer(tmp_path).latest("wf", "r")


def test_values_with_many_small_containers_still_read_back(tmp_path: Path) -> None:
    store = FileCheckpointer(tmp_path)
    values = {"pairs": [[i % 100, i % 7] for i in range(20_000)], "rows": [{"a": 1}] * 5000}
    store.save(make_checkpoint("r", 1, values))
    latest = FileCheckpointer(tmp_path).latest("wf", "r")
    assert latest is not None
    assert latest.values == values


# --- a failed save leaves nothing readable and is never a ConflictError ----------------


def eio(*args: Any) -> None:
    raise OSError(errno.EIO, os.strerror(errno.EIO))


def next_checkpoint(seq: int) -> Checkpoint:
    return make_checkpoint("r", seq, {"log": [seq]}, (Change("log", Op.SET, [seq]),))


UNSAVED = (
    r"^could not save checkpoint 3 of run 'r' of workflow 'wf' to '.*\.log': {}; "
    r"and nothing of it was kept: the run is as it was before this save$"
)


def save_and_sync(store: FileCheckpointer, checkpoint: Checkpoint) -> None:
    """Save, then sync as a Runner does: appends are fsynced by ``sync()``, which raises."""
    store.save(checkpoint)
    store.sync()


@pytest.mark.parametrize("fault", ["fsync", "write", "short-write"])
def test_an_append_that_fails_leaves_the_log_as_it_was_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    store = FileCheckpointer(tmp_path)
    save_run(store, "r", 2)
    store.sync()  # as a Runner does before a call returns
    before = log_path(tmp_path).read_bytes()
    real_write_all = file_store._write_all

    def no_space(fd: int, data: bytes, offset: int) -> None:
        if fault == "short-write":
            real_write_all(fd, data[: len(data) // 2], offset)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    if fault == "fsync":
        monkeypatch.setattr(os, "fsync", eio)
    else:
        monkeypatch.setattr(file_store, "_write_all", no_space)
    why = "Input/output error" if fault == "fsync" else "No space left on device"
    with pytest.raises(CheckpointError, match=UNSAVED.format(why)) as raised:
        save_and_sync(store, next_checkpoint(3))
    assert not isinstance(raised.value, ConflictError)
    assert log_path(tmp_path).read_bytes() == before
    assert [m.seq for m in store.list("wf", "r")] == [1, 2]
    assert [m.seq for m in FileCheckpointer(tmp_path).list("wf", "r")] == [1, 2]
    monkeypatch.undo()
    store.save(next_checkpoint(3))  # the same seq again: no ConflictError
    latest = FileCheckpointer(tmp_path).latest("wf", "r")
    assert latest is not None
    assert (latest.seq, latest.values) == (3, {"log": [3]})


def test_an_append_whose_cut_back_fails_too_says_its_record_may_stay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileCheckpointer(tmp_path)
    save_run(store, "r", 2)
    store.sync()
    monkeypatch.setattr(os, "fsync", eio)
    monkeypatch.setattr(os, "ftruncate", eio)
    with pytest.raises(CheckpointError, match=r"could not be taken back: its record may still be"):
        save_and_sync(store, next_checkpoint(3))
    monkeypatch.undo()
    # the handle reads the file afresh: what it says matches what a new handle says
    assert store.list("wf", "r") == FileCheckpointer(tmp_path).list("wf", "r")


@pytest.mark.parametrize("fault", ["write", "fsync", "dir-fsync"])
def test_a_failed_first_save_leaves_no_run_and_can_be_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    store = FileCheckpointer(tmp_path)
    if fault == "write":
        monkeypatch.setattr(file_store, "_write_all", eio)
    elif fault == "fsync":
        monkeypatch.setattr(os, "fsync", eio)
    else:
        monkeypatch.setattr(file_store, "_fsync_dir", eio)
    # the log is created in place and synced by sync(): a fault there takes it back whole
    with pytest.raises(
        CheckpointError,
        match=r"^could not save checkpoint 1 of run 'r' .*: Input/output error; and nothing of",
    ) as raised:
        save_and_sync(store, make_checkpoint("r", 1, {"x": 1}))
    assert not isinstance(raised.value, ConflictError)
    assert list((tmp_path / "runs").iterdir()) == []
    assert list((tmp_path / "tmp").iterdir()) == []
    assert store.latest("wf", "r") is None
    assert store.runs() == []
    monkeypatch.undo()
    store.save(make_checkpoint("r", 1, {"x": 2}))
    latest = FileCheckpointer(tmp_path).latest("wf", "r")
    assert latest is not None
    assert latest.values == {"x": 2}


def test_a_run_whose_save_fails_on_fsync_is_not_reported_as_claimed_by_another_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    graph = Graph("wf", {"log": Append()})
    graph.step("a", lambda s: {"log": "a"}).step("b", lambda s: {"log": "b"}).edge("a", "b")
    runner = Runner(graph, FileCheckpointer(tmp_path))
    runner.run("r0")  # the run's log exists: later saves append
    fsyncs = 0
    real_fsync = os.fsync

    def third_fails(fd: int) -> None:
        nonlocal fsyncs
        fsyncs += 1
        if fsyncs == 1:  # the call's one sync: the new run's log
            eio()
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", third_fails)
    with pytest.raises(CheckpointError, match=r"Input/output error") as raised:
        runner.run("r")
    assert not isinstance(raised.value, ConflictError)
    monkeypatch.undo()
    # the saves that failed to sync (the input and both layers) left nothing behind
    assert FileCheckpointer(tmp_path).list("wf", "r") == []
    assert FileCheckpointer(tmp_path).runs() == [("wf", "r0")]
    done = Runner(graph, FileCheckpointer(tmp_path)).run("r")
    assert done.state == {"log": ["a", "b"]}


# --- one damaged log never hides the other runs ------------------------------------------


def three_runs(root: Path) -> FileCheckpointer:
    store = FileCheckpointer(root)
    for run_id in ("a", "b", "c"):
        save_run(store, run_id, 2)
    return store


def log_of(root: Path, run_id: str) -> Path:
    return root / "runs" / file_store._log_name("wf", run_id)


def listing_of(root: Path) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """``runs()`` and ``damaged()`` of a new handle, each in a thread that must not block."""
    result: list[Any] = []

    def list_them() -> None:
        store = FileCheckpointer(root)
        result.extend([store.runs(), store.damaged()])

    worker = threading.Thread(target=list_them, daemon=True)
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive(), "listing the store blocked"
    return result[0], result[1]


def test_a_flipped_byte_in_one_log_leaves_the_others_listed_and_that_one_reported(
    tmp_path: Path,
) -> None:
    three_runs(tmp_path)
    time.sleep(2 * file_store._RACY_NS / 1e9)  # damaged later than the journal's note of it
    path = log_of(tmp_path, "b")
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x40
    path.write_bytes(bytes(data))
    runs, damaged = listing_of(tmp_path)
    assert runs == sorted([("wf", "a"), ("wf", "c")], key=lambda ids: file_store._log_name(*ids))
    assert [name for name, _ in damaged] == [path.name]
    assert re.match(r"^'.*\.log' is corrupt: the record at byte \d+ cannot be used", damaged[0][1])
    with pytest.raises(CorruptCheckpointError, match=re.escape(repr(str(path)))):
        FileCheckpointer(tmp_path).latest("wf", "b")


def test_an_unreadable_log_leaves_the_others_listed_and_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    three_runs(tmp_path)
    path = str(log_of(tmp_path, "b"))
    real_open = os.open

    def unreadable(name: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if str(name) == path:  # as chmod 000 would be, for a user other than root
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
        return real_open(name, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", unreadable)
    (tmp_path / "touched").unlink()  # no journal notes: the listing opens every log
    store = FileCheckpointer(tmp_path)
    assert sorted(store.runs()) == [("wf", "a"), ("wf", "c")]
    assert store.damaged() == [
        (os.path.basename(path), f"checkpoint store cannot use {path!r}: Permission denied")
    ]
    with pytest.raises(CheckpointError, match=r"Permission denied"):
        store.latest("wf", "b")


@pytest.mark.parametrize("kind", ["fifo", "directory", "symlink"])
def test_a_log_that_is_not_a_regular_file_is_refused_never_blocks_and_hides_nothing(
    tmp_path: Path, kind: str
) -> None:
    three_runs(tmp_path)
    path = log_of(tmp_path, "x")
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    else:  # run x's name pointing at run a's log: never listed twice, nor read as x
        path.symlink_to(log_of(tmp_path, "a"))
    runs, damaged = listing_of(tmp_path)
    assert sorted(runs) == [("wf", "a"), ("wf", "b"), ("wf", "c")]
    assert damaged == [
        (
            path.name,
            f"{str(path)!r} is corrupt: it is not a regular file (a directory, a FIFO, a socket "
            "or a symbolic link stands where a run's log belongs); move it away",
        )
    ]
    with pytest.raises(CorruptCheckpointError, match=r"is not a regular file"):
        FileCheckpointer(tmp_path).latest("wf", "x")
    with pytest.raises(CorruptCheckpointError, match=r"is not a regular file"):
        FileCheckpointer(tmp_path).save(make_checkpoint("x", 1, {}))


def test_a_copy_of_one_runs_log_under_another_name_is_reported_not_listed_twice(
    tmp_path: Path,
) -> None:
    three_runs(tmp_path)
    copy = log_of(tmp_path, "x")
    copy.write_bytes(log_of(tmp_path, "a").read_bytes())
    runs, damaged = listing_of(tmp_path)
    assert sorted(runs) == [("wf", "a"), ("wf", "b"), ("wf", "c")]
    assert damaged == [
        (
            copy.name,
            f"{str(copy)!r} is corrupt: its header names run 'a' of workflow 'wf', whose log "
            "is another file",
        )
    ]


def test_a_meta_holding_nested_arrays_hides_only_its_own_run(tmp_path: Path) -> None:
    three_runs(tmp_path)
    meta = b"\x95\xdd" + struct.pack(">I", 1000) + b"\x90" * 1000 + pack([2, "x", 0, False])[1:]
    with log_of(tmp_path, "b").open("ab") as f:
        f.write(forge(meta, b""))
    runs, damaged = listing_of(tmp_path)
    assert sorted(runs) == [("wf", "a"), ("wf", "c")]
    assert "its meta does not decode" in damaged[0][1]


# --- a long-lived handle keeps a bounded index -------------------------------------------


def test_a_handle_indexes_at_most_1024_runs_and_reindexes_a_forgotten_one_from_its_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "fsync", lambda fd: None)  # 6,000 fsyncs would only be slow
    writer = FileCheckpointer(tmp_path)
    for n in range(3000):
        writer.save(make_checkpoint(f"r{n}", 1, {"n": n}))
    assert len(writer.store._logs) == file_store._MAX_INDEXED == 1024
    monkeypatch.undo()

    store = FileCheckpointer(tmp_path)
    first = store.latest("wf", "r0")
    assert first is not None
    assert first.values == {"n": 0}
    for n in range(1, 3000):
        latest = store.latest("wf", f"r{n}")
        assert latest is not None
        assert latest.values == {"n": n}
    assert len(store.store._logs) <= 1024
    assert len(store.store._headers) <= 1024
    assert ("wf", "r0") not in store.store._logs
    assert len(store.runs()) == 3000
    assert len(store.store._logs) <= 1024

    # r0 was forgotten; another handle saved its seq 2 meanwhile: still a conflict here
    FileCheckpointer(tmp_path).save(make_checkpoint("r0", 2, {"n": 2}, (Change("n", Op.SET, 2),)))
    with pytest.raises(ConflictError):
        store.save(make_checkpoint("r0", 2, {"n": 20}, (Change("n", Op.SET, 20),)))
    store.save(make_checkpoint("r0", 3, {"n": 3}, (Change("n", Op.SET, 3),)))
    latest = FileCheckpointer(tmp_path).latest("wf", "r0")
    assert latest is not None
    assert (latest.seq, latest.values) == (3, {"n": 3})


def test_a_handle_that_forgets_a_run_in_use_by_another_thread_stays_correct(
    tmp_path: Path,
) -> None:
    store = FileCheckpointer(tmp_path)
    save_run(store, "r", 1)
    held = store.store._logs[("wf", "r")]
    with held.lock:  # another thread inside a save of r while the index is full
        for n in range(file_store._MAX_INDEXED):
            store.store._known(f"{tmp_path}/runs/none{n}.log", ("wf", f"none{n}"))
        assert ("wf", "r") not in store.store._logs
        assert held.fd >= 0  # in use: not closed under that thread
    store.save(make_checkpoint("r", 2, {"log": [2]}, (Change("log", Op.SET, [2]),)))
    with pytest.raises(ConflictError):
        store.save(make_checkpoint("r", 2, {"log": [9]}, (Change("log", Op.SET, [9]),)))
    assert [m.seq for m in FileCheckpointer(tmp_path).list("wf", "r")] == [1, 2]


def test_a_delta_frame_whose_meta_says_snapshot_is_corrupt_naming_the_file(
    tmp_path: Path,
) -> None:
    store = FileCheckpointer(tmp_path)
    store.save(make_checkpoint("r", 1, {"x": 1}))
    frame = encode_frame(make_checkpoint("r", 2, {"x": 2}, ()), snapshot=False)
    append(tmp_path, forge(pack([2, 1, "layer:1", 0, True, *SUMMARY]), frame))
    with pytest.raises(
        CorruptCheckpointError, match=r"^'.*\.log' is corrupt: .*its frame does not match its meta"
    ):
        FileCheckpointer(tmp_path).latest("wf", "r")
