"""FileCheckpointer under faults: hostile records, failed saves, damaged logs, many runs."""

from __future__ import annotations

import errno
import os
import struct
import tracemalloc
import zlib
from pathlib import Path
from typing import Any

import msgpack
import pytest
from test_checkpointers import make_checkpoint
from test_file_store import forge, log_path, save_run

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
from pausegraph._records import pack
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


def test_a_frame_of_a_million_empty_arrays_is_refused_without_building_them(
    tmp_path: Path,
) -> None:
    save_run(FileCheckpointer(tmp_path), "r", 2)
    n = 1_000_000
    bomb = b"\xdd" + struct.pack(">I", n) + b"\x90" * n  # 1 MB: one array of a million []
    append(tmp_path, forge(pack([3, 2, "layer:2", 0, True]), bomb))
    store = FileCheckpointer(tmp_path)
    with pytest.raises(
        CorruptCheckpointError,
        match=r"^'.*\.log' is corrupt: the record at byte \d+ cannot be used, it does not decode",
    ):
        store.latest("wf", "r")
    # a million empty lists cost 64 MB; the reader stops at one container per 2 bytes
    assert peak_while(lambda: FileCheckpointer(tmp_path).latest("wf", "r")) < 48 * len(bomb)


def test_nested_arrays_claiming_more_items_than_the_record_holds_allocate_nothing_big(
    tmp_path: Path,
) -> None:
    save_run(FileCheckpointer(tmp_path), "r", 2)
    claim = 100_000  # each header preallocates 800 kB of list slots if believed
    bomb = b"".join(b"\xdd" + struct.pack(">I", claim) for _ in range(1000))
    append(tmp_path, forge(pack([3, 2, "layer:2", 0, True]), bomb))
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
    append(tmp_path, forge(pack([3, 2, "l", 0, True]), frame))
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


@pytest.mark.parametrize("fault", ["fsync", "write", "short-write"])
def test_an_append_that_fails_leaves_the_log_as_it_was_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    store = FileCheckpointer(tmp_path)
    save_run(store, "r", 2)
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
        store.save(next_checkpoint(3))
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
    monkeypatch.setattr(os, "fsync", eio)
    monkeypatch.setattr(os, "ftruncate", eio)
    with pytest.raises(CheckpointError, match=r"could not be taken back: its record may still be"):
        store.save(next_checkpoint(3))
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
    with pytest.raises(
        CheckpointError,
        match=r"^could not save checkpoint 1 of run 'r' .*: Input/output error; and nothing of",
    ) as raised:
        store.save(make_checkpoint("r", 1, {"x": 1}))
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
        if fsyncs == 3:  # a new run's log and its directory, then the first append
            eio()
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", third_fails)
    with pytest.raises(CheckpointError, match=r"Input/output error") as raised:
        runner.run("r")
    assert not isinstance(raised.value, ConflictError)
    monkeypatch.undo()
    # the save that failed (seq 2, after the input) left nothing behind
    assert [m.seq for m in FileCheckpointer(tmp_path).list("wf", "r")] == [1]
    done = Runner(graph, FileCheckpointer(tmp_path)).run("r")
    assert done.state == {"log": ["a", "b"]}
