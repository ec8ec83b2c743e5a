"""FileCheckpointer's own promises: layout, safe ids, torn tails, corruption, size."""

from __future__ import annotations

import errno
import fcntl
import gc
import itertools
import os
import re
import stat
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_checkpointers import make_checkpoint

from pausegraph import (
    Append,
    Checkpoint,
    CheckpointError,
    ConflictError,
    CorruptCheckpointError,
    FileCheckpointer,
    Graph,
    MergeMap,
    Runner,
)
from pausegraph._channels import Change, Op
from pausegraph._values import pack
from pausegraph.checkpointers import file as file_store


def save_run(store: FileCheckpointer, run_id: str, n: int) -> list[dict[str, Any]]:
    """Save ``n`` checkpoints, each appending to ``log``; return the values of each."""
    values: dict[str, Any] = {"log": []}
    expected = [{"log": []}]
    store.save(make_checkpoint(run_id, 1, {"log": []}))
    for seq in range(2, n + 1):
        values["log"].append(seq)
        store.save(
            make_checkpoint(
                run_id, seq, {"log": list(values["log"])}, (Change("log", Op.EXTEND, [seq]),)
            )
        )
        expected.append({"log": list(values["log"])})
    return expected


def log_path(root: Path) -> Path:
    (path,) = (root / "runs").iterdir()
    return path


# --- the store and its layout ----------------------------------------------------


def test_a_missing_root_is_created_with_its_parents(tmp_path: Path) -> None:
    FileCheckpointer(tmp_path / "a" / "b")
    assert sorted(p.name for p in (tmp_path / "a" / "b").iterdir()) == ["PAUSEGRAPH", "runs", "tmp"]


def test_a_root_that_is_a_file_is_a_checkpoint_error(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(
        CheckpointError,
        match=r"^checkpoint store '.*/f' is not a directory: give a directory path$",
    ):
        FileCheckpointer(tmp_path / "f")


def test_a_directory_that_is_not_a_store_is_refused_and_left_alone(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(
        CheckpointError,
        match=(
            r"^'.*' is not a pausegraph store \(it has no PAUSEGRAPH file and is not empty\): "
            r"give an empty or new directory$"
        ),
    ):
        FileCheckpointer(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_a_store_of_a_newer_format_asks_for_an_upgrade(tmp_path: Path) -> None:
    FileCheckpointer(tmp_path)
    (tmp_path / "PAUSEGRAPH").write_bytes(b"PGSTORE pausegraph checkpoint store\nformat 7\n")
    with pytest.raises(
        CheckpointError,
        match=r"is a store of format 7; this pausegraph reads format 2: upgrade pausegraph$",
    ):
        FileCheckpointer(tmp_path)


def test_a_store_of_format_1_is_refused_with_a_message(tmp_path: Path) -> None:
    FileCheckpointer(tmp_path)
    (tmp_path / "PAUSEGRAPH").write_bytes(b"PGSTORE pausegraph checkpoint store\nformat 1\n")
    with pytest.raises(
        CorruptCheckpointError,
        match=r"is a store of format 1; this pausegraph reads format 2: finish its runs with the "
        r"pausegraph that made it$",
    ):
        FileCheckpointer(tmp_path)


@pytest.mark.parametrize(
    "damaged",
    [
        b"PGSTORE pausegraph checkpoint store\nformat 2",
        b"PGSTORE pausegraph checkpoint store\nformat 2\n\n",
    ],
    ids=["newline-cut", "newline-added"],
)
def test_a_damaged_marker_of_this_format_is_named_as_corrupt(
    tmp_path: Path, damaged: bytes
) -> None:
    """Not "a store of format 2; this pausegraph reads format 2": the file is named, with
    what it should read."""
    FileCheckpointer(tmp_path)
    (tmp_path / "PAUSEGRAPH").write_bytes(damaged)
    with pytest.raises(CorruptCheckpointError, match=r"PAUSEGRAPH' is corrupt: it should read"):
        FileCheckpointer(tmp_path)


def test_each_run_is_one_log_that_starts_with_the_magic_tag_and_version(tmp_path: Path) -> None:
    store = FileCheckpointer(tmp_path)
    save_run(store, "r", 3)
    path = log_path(tmp_path)
    assert path.read_bytes().startswith(b"PGLOG\x02")
    assert len(path.stem) == 64
    assert set(path.stem) <= set("0123456789abcdef")
    assert list((tmp_path / "tmp").iterdir()) == []


def test_a_new_handle_sees_everything_and_an_old_one_sees_later_saves(tmp_path: Path) -> None:
    first, second = FileCheckpointer(tmp_path), FileCheckpointer(tmp_path)
    expected = save_run(first, "r", 4)
    latest = second.latest("wf", "r")
    assert latest is not None
    assert latest.values == expected[-1]
    second.save(
        make_checkpoint(
            "r", 5, {"log": [*expected[-1]["log"], 5]}, (Change("log", Op.EXTEND, [5]),)
        )
    )
    seen = first.latest("wf", "r")
    assert seen is not None
    assert seen.seq == 5
    assert seen.values["log"][-1] == 5
    assert [m.seq for m in first.list("wf", "r")] == [1, 2, 3, 4, 5]


# --- hostile ids -----------------------------------------------------------------

hostile = st.sampled_from(
    ["../x", "../../etc/passwd", "/abs/path", "a/b", "nul\x00byte", "x" * 10_000,
     "ünïcødé ✓ 日本", ".", "..", "", "\ud800 lone surrogate", "C:\\win", " spaced "]
) | st.text(max_size=40)  # fmt: skip


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=30)
@given(workflow_id=hostile, run_id=hostile)
def test_no_id_can_name_a_path_outside_the_root(
    tmp_path: Path, workflow_id: str, run_id: str
) -> None:
    root = tmp_path / "store"
    store = FileCheckpointer(root)
    outside = sorted(os.listdir(tmp_path))
    checkpoint = make_checkpoint(run_id, 1, {"x": 1}, workflow_id=workflow_id)
    if store.latest(workflow_id, run_id) is None:
        store.save(checkpoint)
    assert sorted(os.listdir(tmp_path)) == outside
    for dirpath, _, files in os.walk(root):
        for name in files:
            assert Path(dirpath, name).resolve().is_relative_to(root.resolve())
    assert (workflow_id, run_id) in FileCheckpointer(root).runs()
    loaded = FileCheckpointer(root).latest(workflow_id, run_id)
    assert loaded is not None
    assert loaded.values == {"x": 1}


# --- torn tails: a save that never finished ---------------------------------------


@given(cut=st.integers(min_value=1, max_value=10_000))
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=20)
def test_a_torn_last_record_reads_as_if_that_save_never_happened(tmp_path: Path, cut: int) -> None:
    root = tmp_path / f"s{cut}"
    store = FileCheckpointer(root)
    expected = save_run(store, "r", 3)
    path = log_path(root)
    before = path.stat().st_size
    store.save(make_checkpoint("r", 4, {"log": [2, 3, 4]}, (Change("log", Op.EXTEND, [4]),)))
    whole = path.read_bytes()
    last = len(whole) - before
    os.truncate(path, before + cut % last)
    fresh = FileCheckpointer(root)
    latest = fresh.latest("wf", "r")
    assert latest is not None
    assert latest.seq == 3
    assert latest.values == expected[-1]
    fresh.save(
        make_checkpoint("r", 4, {"log": [2, 3, 4, 40]}, (Change("log", Op.EXTEND, [4, 40]),))
    )
    again = FileCheckpointer(root).latest("wf", "r")
    assert again is not None
    assert again.seq == 4
    assert again.values == {"log": [2, 3, 4, 40]}


def test_zero_bytes_after_the_last_record_are_a_torn_tail(tmp_path: Path) -> None:
    store = FileCheckpointer(tmp_path)
    expected = save_run(store, "r", 2)
    with log_path(tmp_path).open("ab") as f:
        f.write(b"\x00" * 100)
    latest = FileCheckpointer(tmp_path).latest("wf", "r")
    assert latest is not None
    assert latest.values == expected[-1]


# --- corruption: never a wrong state, never a raw error -----------------------------


def check_reads(root: Path, expected: list[dict[str, Any]], *, may_lose_tail: bool) -> None:
    """Every read gives the right values or raises CorruptCheckpointError."""
    try:
        store = FileCheckpointer(root)
        metas = store.list("wf", "r")
        assert store.runs() == ([("wf", "r")] if metas else [])
        assert may_lose_tail or len(metas) == len(expected)
        latest = store.latest("wf", "r")
        if latest is None:
            assert may_lose_tail
        else:
            assert latest.values == expected[latest.seq - 1]
            assert may_lose_tail or latest.seq == len(expected)
    except CorruptCheckpointError as exc:
        assert str(root) in str(exc)  # noqa: PT017 - it names the file
    for seq in range(1, len(expected) + 1):
        try:
            loaded = FileCheckpointer(root).load("wf", "r", seq)
        except CorruptCheckpointError:
            continue
        assert (loaded is None and may_lose_tail) or (
            loaded is not None and loaded.values == expected[seq - 1]
        )


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    root = tmp_path_factory.mktemp("pristine")
    store = FileCheckpointer(root)
    expected = save_run(store, "r", 6)
    return root, expected


def copy_store(source: Path, target: Path) -> None:
    for dirpath, _, files in os.walk(source):
        rel = Path(dirpath).relative_to(source)
        (target / rel).mkdir(parents=True, exist_ok=True)
        for name in files:
            (target / rel / name).write_bytes(Path(dirpath, name).read_bytes())


def store_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


@given(which=st.integers(min_value=0), where=st.integers(min_value=0), mask=st.integers(1, 255))
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_a_flipped_byte_anywhere_is_the_right_state_or_corrupt_checkpoint_error(
    pristine: tuple[Path, list[dict[str, Any]]], tmp_path_factory: pytest.TempPathFactory,
    which: int, where: int, mask: int,
) -> None:  # fmt: skip
    source, expected = pristine
    root = tmp_path_factory.mktemp("flipped")
    copy_store(source, root)
    files = store_files(root)
    target = files[which % len(files)]
    data = bytearray(target.read_bytes())
    data[where % len(data)] ^= mask
    target.write_bytes(bytes(data))
    check_reads(root, expected, may_lose_tail=False)


@given(which=st.integers(min_value=0), where=st.integers(min_value=0))
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_a_truncated_file_is_an_earlier_state_or_corrupt_checkpoint_error(
    pristine: tuple[Path, list[dict[str, Any]]], tmp_path_factory: pytest.TempPathFactory,
    which: int, where: int,
) -> None:  # fmt: skip
    source, expected = pristine
    root = tmp_path_factory.mktemp("cut")
    copy_store(source, root)
    files = store_files(root)
    target = files[which % len(files)]
    os.truncate(target, where % target.stat().st_size)
    check_reads(root, expected, may_lose_tail=True)


# what a record's meta says of the run after the frame's fields (format 2):
# status, updated_ms, deadline_ms, summary data
SUMMARY = ["paused", 0, None, b""]


def forge(meta: bytes, frame: bytes) -> bytes:
    lengths = struct.pack(">II", len(meta), len(frame))
    crc = lambda b: zlib.crc32(b) & 0xFFFFFFFF  # noqa: E731
    return (
        struct.pack(">IIIII", len(meta), len(frame), crc(lengths), crc(meta), crc(frame))
        + meta
        + frame
    )


def test_a_record_with_good_checksums_that_does_not_decode_is_corrupt(tmp_path: Path) -> None:
    store = FileCheckpointer(tmp_path)
    save_run(store, "r", 2)
    with log_path(tmp_path).open("ab") as f:
        f.write(forge(pack([3, 2, "layer:2", 0, False, *SUMMARY]), b"\xc1 not msgpack"))
    fresh = FileCheckpointer(tmp_path)
    assert [m.seq for m in fresh.list("wf", "r")] == [1, 2, 3]
    with pytest.raises(
        CorruptCheckpointError,
        match=(
            r"^'.*\.log' is corrupt: the record at byte \d+ cannot be used, it does not decode "
            r"\(.*\)\. Restore the file from a backup: no checkpoint of this run can be read "
            r"until then$"
        ),
    ):
        fresh.latest("wf", "r")


def test_a_hostile_record_cannot_make_the_reader_allocate_what_it_claims(tmp_path: Path) -> None:
    store = FileCheckpointer(tmp_path)
    save_run(store, "r", 2)
    bomb = b"\xdd\xff\xff\xff\xff"  # an array of 4 billion items, in 5 bytes
    with log_path(tmp_path).open("ab") as f:
        f.write(forge(pack([3, 2, "layer:2", 0, True, *SUMMARY]), bomb))
    with pytest.raises(CorruptCheckpointError, match=r"it does not decode \(ValueError\)"):
        FileCheckpointer(tmp_path).latest("wf", "r")


def test_a_record_that_claims_more_bytes_than_the_file_holds_is_a_torn_tail(tmp_path: Path) -> None:
    store = FileCheckpointer(tmp_path)
    expected = save_run(store, "r", 2)
    lengths = struct.pack(">II", 0xFFFFFFF0, 0xFFFFFFF0)
    with log_path(tmp_path).open("ab") as f:
        f.write(struct.pack(">IIIII", 0xFFFFFFF0, 0xFFFFFFF0, zlib.crc32(lengths), 0, 0))
    latest = FileCheckpointer(tmp_path).latest("wf", "r")
    assert latest is not None
    assert latest.values == expected[-1]


def test_a_record_out_of_seq_order_is_corrupt(tmp_path: Path) -> None:
    store = FileCheckpointer(tmp_path)
    save_run(store, "r", 2)
    with log_path(tmp_path).open("ab") as f:
        f.write(forge(pack([7, 2, "layer:2", 0, False, *SUMMARY]), b""))
    with pytest.raises(CorruptCheckpointError, match=r"it holds seq 7 where 3 belongs"):
        FileCheckpointer(tmp_path).list("wf", "r")


# --- size: what a super-step adds follows its writes, not the state ---------------------


def store_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in (root / "runs").iterdir())


def test_appending_1kb_per_step_for_200_steps_stays_within_a_few_times_the_state(
    tmp_path: Path,
) -> None:
    def add(state: Any) -> Any:
        return {"log": ["x" * 1024]}

    graph = Graph("grow", {"log": Append()})
    for n in range(200):
        graph.step(f"s{n}", add)
        if n:
            graph.edge(f"s{n - 1}", f"s{n}")
    outcome = Runner(graph, FileCheckpointer(tmp_path)).run("r", {})
    assert len(outcome.state["log"]) == 200
    state_bytes = 200 * 1027
    assert store_bytes(tmp_path) < 4 * state_bytes


def test_changing_one_key_of_a_10000_key_map_adds_a_small_record(tmp_path: Path) -> None:
    def touch(n: int) -> Any:
        return lambda state: {"m": {f"k{n}": n}}

    steps = 30
    graph = Graph("map", {"m": MergeMap()})
    for n in range(steps):
        graph.step(f"s{n}", touch(n))
        if n:
            graph.edge(f"s{n - 1}", f"s{n}")
    sizes: list[int] = []

    class Measured(FileCheckpointer):
        def save(self, checkpoint: Checkpoint) -> None:
            super().save(checkpoint)
            sizes.append(store_bytes(tmp_path))

    big = {f"k{i}": i for i in range(10_000)}
    Runner(graph, Measured(tmp_path)).run("r", {"m": big})
    assert sizes[0] > 2 * len(pack(big))  # the input, and the first snapshot of the state
    added = [after - before for before, after in itertools.pairwise(sizes)]
    assert len(added) == steps
    assert max(added) < 200, added


# --- creating a run, and the descriptors a handle keeps open -----------------------------

TESTS = Path(__file__).resolve().parent


def in_subprocess(root: Path, code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a new interpreter with ``root``, ``FileCheckpointer``,
    ``file_store`` and ``make_checkpoint`` in scope (for what only a real
    process exit or a real other process can show)."""
    prelude = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from pausegraph import FileCheckpointer\n"
        "from pausegraph.checkpointers import file as file_store\n"
        "from pausegraph._channels import Change, Op\n"
        "from test_checkpointers import make_checkpoint\n"
        f"root = Path({str(root)!r})\n"
    )
    path = os.pathsep.join([str(TESTS), str(TESTS.parent), os.environ.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": path}, check=False,
        timeout=120,
    )  # fmt: skip


def test_a_new_run_killed_while_its_save_is_synced_holds_its_first_checkpoint(
    tmp_path: Path,
) -> None:
    FileCheckpointer(tmp_path)  # the store's marker exists before the kill is armed
    killed = in_subprocess(
        tmp_path,
        """
        file_store._fsync_dir = lambda path: os._exit(3)  # die after the log's fsync
        store = FileCheckpointer(root)
        store.save(make_checkpoint("r", 1, {"log": ["first"]}))
        store.sync()
        """,
    )
    assert killed.returncode == 3, killed.stderr
    store = FileCheckpointer(tmp_path)
    assert store.runs() == [("wf", "r")]
    latest = store.latest("wf", "r")
    assert latest is not None
    assert (latest.seq, latest.values) == (1, {"log": ["first"]})
    assert list((tmp_path / "tmp").iterdir()) == []
    store.save(make_checkpoint("r", 2, {"log": ["first", 2]}, (Change("log", Op.EXTEND, [2]),)))
    assert [m.seq for m in FileCheckpointer(tmp_path).list("wf", "r")] == [1, 2]


@pytest.mark.parametrize("written", [0, 1, 5, 6, 20, 40, -1])
def test_a_run_whose_creator_died_in_its_first_write_does_not_exist_and_can_be_created_again(
    tmp_path: Path, written: int
) -> None:
    """The log is created empty, then written: a kill in between, or inside the
    write (``written`` bytes of it; -1: all but the last byte), leaves no run."""
    FileCheckpointer(tmp_path)
    killed = in_subprocess(
        tmp_path,
        f"""
        def die(fd, data, offset):
            n = {written} if {written} >= 0 else len(data) - 1
            os.pwrite(fd, data[:n], offset)
            os._exit(3)
        file_store._write_all = die
        FileCheckpointer(root).save(make_checkpoint("r", 1, {{"log": ["lost"]}}))
        """,
    )
    assert killed.returncode == 3, killed.stderr
    assert log_path(tmp_path).exists()
    for store in (FileCheckpointer(tmp_path), FileCheckpointer(tmp_path)):
        assert store.runs() == []
        assert store.damaged() == []
        assert store.latest("wf", "r") is None
        assert store.list("wf", "r") == []
        with pytest.raises(CheckpointError, match="the next must be seq 1"):
            store.save(make_checkpoint("r", 2, {"log": ["no"]}))
    store.save(make_checkpoint("r", 1, {"log": ["again"]}))
    store.sync()
    fresh = FileCheckpointer(tmp_path)
    latest = fresh.latest("wf", "r")
    assert latest is not None
    assert latest.values == {"log": ["again"]}
    assert fresh.runs() == [("wf", "r")]
    assert fresh.damaged() == []


def test_a_log_of_zero_bytes_a_power_loss_left_reads_as_no_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileCheckpointer(tmp_path)
    store.save(make_checkpoint("r", 1, {"x": 1}))
    path = log_path(tmp_path)
    path.write_bytes(bytes(len(path.read_bytes())))  # the size reached the disk, the data not
    monkeypatch.setattr(file_store, "_boot_id", lambda: "the boot after the power loss")
    fresh = FileCheckpointer(tmp_path)
    assert fresh.runs() == []
    assert fresh.damaged() == []
    assert fresh.latest("wf", "r") is None
    fresh.save(make_checkpoint("r", 1, {"x": 2}))
    latest = FileCheckpointer(tmp_path).latest("wf", "r")
    assert latest is not None
    assert latest.values == {"x": 2}


def test_creating_a_run_is_one_write_in_place_and_its_sync_fsyncs_the_log_then_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileCheckpointer(tmp_path)
    writes: list[tuple[int, bytes]] = []
    synced: list[str] = []
    real_write_all, real_fsync = file_store._write_all, os.fsync

    def write_all(fd: int, data: bytes, offset: int) -> None:
        writes.append((offset, data))
        real_write_all(fd, data, offset)

    def fsync(fd: int) -> None:
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "log")
        real_fsync(fd)

    monkeypatch.setattr(file_store, "_write_all", write_all)
    monkeypatch.setattr(os, "fsync", fsync)
    store.save(make_checkpoint("r", 1, {"x": 1}))
    assert writes == [(0, log_path(tmp_path).read_bytes())]
    assert synced == []  # the save itself syncs nothing
    store.save(make_checkpoint("r", 2, {"x": 2}, (Change("x", Op.SET, 2),)))
    store.sync()
    assert synced == ["log", "dir"]  # one fsync for both saves, and the new log's name
    store.save(make_checkpoint("r", 3, {"x": 3}, (Change("x", Op.SET, 3),)))
    store.sync()
    store.sync()  # nothing new: nothing to sync
    assert synced == ["log", "dir", "log"]  # no new file: no directory fsync
    assert list((tmp_path / "tmp").iterdir()) == []
    (meta, *_) = FileCheckpointer(tmp_path).list("wf", "r")
    assert meta.seq == 1


def test_a_handle_keeping_a_log_open_sees_what_another_process_appended(tmp_path: Path) -> None:
    store = FileCheckpointer(tmp_path)
    expected = save_run(store, "r", 2)
    other = in_subprocess(
        tmp_path,
        """
        change = (Change("log", Op.EXTEND, [3]),)
        FileCheckpointer(root).save(make_checkpoint("r", 3, {"log": [2, 3]}, change))
        """,
    )
    assert other.returncode == 0, other.stderr
    latest = store.latest("wf", "r")
    assert latest is not None
    assert (latest.seq, latest.values) == (3, {"log": [*expected[-1]["log"], 3]})
    with pytest.raises(ConflictError):
        store.save(make_checkpoint("r", 3, {"log": [9]}, (Change("log", Op.SET, [9]),)))
    store.save(make_checkpoint("r", 4, {"log": [2, 3, 4]}, (Change("log", Op.EXTEND, [4]),)))
    assert [m.seq for m in FileCheckpointer(tmp_path).list("wf", "r")] == [1, 2, 3, 4]


def test_a_log_deleted_behind_a_handle_is_never_written_to(tmp_path: Path) -> None:
    store = FileCheckpointer(tmp_path)
    save_run(store, "r", 2)
    path = log_path(tmp_path)
    path.unlink()
    with pytest.raises(
        CheckpointError,
        match=rf"^checkpoint store cannot use {re.escape(repr(str(path)))}: No such file",
    ):
        store.save(make_checkpoint("r", 3, {"log": [2, 3]}, (Change("log", Op.EXTEND, [3]),)))
    assert list((tmp_path / "runs").iterdir()) == []
    assert FileCheckpointer(tmp_path).latest("wf", "r") is None


def test_a_log_replaced_behind_a_handle_is_read_afresh(tmp_path: Path) -> None:
    store = FileCheckpointer(tmp_path)
    expected = save_run(store, "r", 2)
    path = log_path(tmp_path)
    backup = tmp_path / "backup.log"
    backup.write_bytes(path.read_bytes())
    store.save(make_checkpoint("r", 3, {"log": [2, 3]}, (Change("log", Op.EXTEND, [3]),)))
    os.replace(backup, path)  # restored from a backup taken at seq 2
    assert [m.seq for m in store.list("wf", "r")] == [1, 2]
    latest = store.latest("wf", "r")
    assert latest is not None
    assert latest.values == expected[-1]
    store.save(make_checkpoint("r", 3, {"log": [2, 30]}, (Change("log", Op.EXTEND, [30]),)))
    again = FileCheckpointer(tmp_path).latest("wf", "r")
    assert again is not None
    assert again.values == {"log": [2, 30]}


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors in /proc")
def test_a_handle_keeps_at_most_64_logs_open_and_close_releases_them(tmp_path: Path) -> None:
    gc.collect()  # descriptors of earlier tests' handles close now, not during this test
    before = open_descriptors()
    store = FileCheckpointer(tmp_path)
    for n in range(100):
        store.save(make_checkpoint(f"r{n}", 1, {"x": n}))
    assert open_descriptors() - before == 64 + 1  # the logs, and the journal (root/touched)
    for n in range(100):  # every run still reads right, its log reopened as needed
        latest = store.latest("wf", f"r{n}")
        assert latest is not None
        assert latest.values == {"x": n}
    assert open_descriptors() - before == 64 + 1
    store.close()
    assert open_descriptors() == before
    store.save(make_checkpoint("r0", 2, {"x": 2}, (Change("x", Op.SET, 2),)))
    assert open_descriptors() - before == 2  # the log, and the store's journal (touched)
    del store
    gc.collect()
    assert open_descriptors() == before


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_takes_its_own_flock_not_its_parents(tmp_path: Path) -> None:
    store = FileCheckpointer(tmp_path)
    save_run(store, "r", 1)
    held = store.store._logs[("wf", "r")].fd
    fcntl.flock(held, fcntl.LOCK_EX)  # as if a thread of the parent were inside save()
    try:
        pid = os.fork()
        if pid == 0:  # the child must not inherit that lock through the handle's descriptor
            code = 1
            try:
                assert [m.seq for m in store.list("wf", "r")] == [1]
                fcntl.flock(store.store._logs[("wf", "r")].fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                code = 0  # the parent's lock holds against the child, as against anyone
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
    finally:
        fcntl.flock(held, fcntl.LOCK_UN)
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_log_this_process_may_only_read_is_read_and_a_save_to_it_says_why_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = save_run(FileCheckpointer(tmp_path), "r", 2)
    real_open = os.open

    def read_only(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if str(path).endswith(".log") and flags & os.O_RDWR:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    store = FileCheckpointer(tmp_path)
    latest = store.latest("wf", "r")
    assert latest is not None
    assert latest.values == expected[-1]
    assert store.runs() == [("wf", "r")]
    with pytest.raises(
        CheckpointError, match=r"^checkpoint store cannot use '.*\.log': Permission denied$"
    ):
        store.save(make_checkpoint("r", 3, {"log": [2, 3]}, (Change("log", Op.EXTEND, [3]),)))
    assert [m.seq for m in store.list("wf", "r")] == [1, 2]


@pytest.mark.parametrize("again", [False, True])
def test_a_run_deleted_between_listing_its_frames_and_reading_them_reads_as_it_is_now(
    tmp_path: Path, again: bool
) -> None:
    """latest() lists the frames, then reads them: a delete (and a new start) in between
    gives the run as it is now, not a bare ValueError or a 'returned 0 frames' error."""
    store = FileCheckpointer(tmp_path)
    for seq in (1, 2, 3):
        store.save(make_checkpoint("r", seq, {"log": ["a"] * seq}))
    real = store.store.read
    calls: list[int] = []

    def deleted_first(workflow_id: str, run_id: str, first: int, last: int) -> Any:
        if not calls:
            FileCheckpointer(tmp_path).delete("wf", "r")
            if again:
                FileCheckpointer(tmp_path).save(make_checkpoint("r", 1, {"log": ["new"]}))
        calls.append(1)
        return real(workflow_id, run_id, first, last)

    store.store.read = deleted_first  # type: ignore[method-assign]
    latest = store.latest("wf", "r")
    if again:
        assert latest is not None
        assert (latest.seq, latest.values) == (1, {"log": ["new"]})
    else:
        assert latest is None
