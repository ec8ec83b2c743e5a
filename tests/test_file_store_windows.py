"""The file store reads a log a window at a time: the same records, checks and errors as one by one.

``FileStore`` indexes a log and reads a run's frames from buffers of up to
``_WINDOW`` bytes, falling back to reading a record on its own (``_read_record``)
for a record that does not fit or does not check. These tests build logs of
records of every size around the window, damage or cut them anywhere, and
check that a new handle sees exactly what it sees when every record is read
on its own (a window too small for any record).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pausegraph import CorruptCheckpointError
from pausegraph._values import pack
from pausegraph.checkpointers import file as file_store
from pausegraph.checkpointers._store import FrameInfo, RunSummary
from pausegraph.checkpointers.file import FileStore

WF, RUN = "wf", "run"
ONE_BY_ONE = 1  # a window no record fits in: every record read on its own


def _fill(root: Path, sizes: list[int]) -> Path:
    store = FileStore(root)
    for n, size in enumerate(sizes, start=1):
        frame = bytes((n + i) % 251 for i in range(size))
        info = FrameInfo(n, n, f"step {n}", 1_700_000_000_000 + n, n == 1 or n % 7 == 0, size)
        summary = RunSummary(WF, RUN, n, "paused", 1_700_000_000_000 + n, None, b"s" * (n % 5))
        store.append(info, frame, summary)
    store.close()
    (log,) = (root / "runs").glob("*.log")
    return log


def _look(root: Path) -> tuple[str, object]:
    """What a new handle sees: every FrameInfo and frame, or the error it raises."""
    store = FileStore(root)
    try:
        try:
            infos = store.frames(WF, RUN)
        except CorruptCheckpointError as exc:
            return "error", f"indexing: {exc}"
        try:
            frames = store.read(WF, RUN, 1, len(infos))
        except CorruptCheckpointError as exc:
            return "error", f"reading: {exc}"
    finally:
        store.close()
    return "ok", (infos, frames)


def _both(root: Path, monkeypatch: pytest.MonkeyPatch, window: int) -> tuple[object, object]:
    """What a new handle sees through ``window`` (a probe of an eighth of it after a
    frame of a quarter of it), and record by record."""
    with monkeypatch.context() as m:
        m.setattr(file_store, "_WINDOW", window)
        m.setattr(file_store, "_BIG", window // 4)
        m.setattr(file_store, "_PROBE", max(window // 8, 1))
        windowed = _look(root)
    with monkeypatch.context() as m:
        m.setattr(file_store, "_WINDOW", ONE_BY_ONE)
        m.setattr(file_store, "_PROBE", ONE_BY_ONE)
        alone = _look(root)
    return windowed, alone


sizes = st.lists(st.sampled_from([0, 1, 30, 200, 900, 5000]), min_size=1, max_size=12)
windows = st.sampled_from([64, 300, 1000, 4096, 20_000, 1 << 18])


@settings(max_examples=40, deadline=None)
@given(sizes=sizes, window=windows)
def test_a_whole_log_reads_the_same_through_any_window(
    tmp_path_factory: pytest.TempPathFactory, sizes: list[int], window: int
) -> None:
    root = tmp_path_factory.mktemp("log")
    _fill(root, sizes)
    with pytest.MonkeyPatch.context() as m:
        windowed, alone = _both(root, m, window)
    assert windowed == alone
    assert windowed[0] == "ok"
    infos, frames = windowed[1]  # type: ignore[misc]
    assert [i.size for i in infos] == sizes
    assert [len(f) for f in frames] == sizes


def _records(log: Path) -> list[tuple[int, int, int]]:
    """(offset, meta length, frame length) of every record of ``log``."""
    data = log.read_bytes()
    at = len(file_store._LOG_MAGIC) + 1
    records = []
    while at < len(data):
        meta_len, frame_len = file_store._LENGTHS.unpack_from(data, at)
        records.append((at, meta_len, frame_len))
        at += file_store._HEAD.size + meta_len + frame_len
    return records


def _record_bytes(log: Path) -> list[int]:
    """Every offset of a record's head and meta in ``log``, and a few of each frame's."""
    offsets = []
    for at, meta_len, frame_len in _records(log):
        frame_at = at + file_store._HEAD.size + meta_len
        offsets += range(at, frame_at)
        offsets += [frame_at, frame_at + frame_len // 2, frame_at + frame_len - 1][:frame_len]
    return offsets


@pytest.mark.parametrize("window", [300, 8000, 1 << 18])
def test_a_damaged_byte_anywhere_gives_the_same_outcome_through_a_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, window: int
) -> None:
    log = _fill(tmp_path, [30, 0, 900, 200, 30, 5000, 1, 40])
    good = log.read_bytes()
    for at in _record_bytes(log):
        data = bytearray(good)
        data[at] ^= 0x41
        log.write_bytes(bytes(data))
        windowed, alone = _both(tmp_path, monkeypatch, window)
        assert windowed == alone, at
        assert windowed[0] == "error", at  # every frame is read: no damage goes unseen


@settings(max_examples=60, deadline=None)
@given(sizes=sizes, window=windows, where=st.floats(0, 1), zeros=st.booleans())
def test_a_log_cut_short_or_zero_filled_anywhere_gives_the_same_outcome_through_any_window(
    tmp_path_factory: pytest.TempPathFactory,
    sizes: list[int],
    window: int,
    where: float,
    zeros: bool,
) -> None:
    root = tmp_path_factory.mktemp("log")
    log = _fill(root, sizes)
    data = log.read_bytes()
    at = int(where * len(data))
    # a save cut short, or (power loss) the space past it never written
    log.write_bytes(data[:at] + (bytes(len(data) - at) if zeros else b""))
    with pytest.MonkeyPatch.context() as m:
        windowed, alone = _both(root, m, window)
    assert windowed == alone


@pytest.mark.parametrize("part", ["head", "meta", "frame"])
def test_a_record_altered_after_indexing_is_refused_through_the_window(
    tmp_path: Path, part: str
) -> None:
    log = _fill(tmp_path, [40] * 30)
    store = FileStore(tmp_path)
    infos = store.frames(WF, RUN)
    data = bytearray(log.read_bytes())
    at, meta_len, _ = _records(log)[20]  # a record in the middle: its head, meta or frame
    frame_at = at + file_store._HEAD.size + meta_len
    data[{"head": at + 3, "meta": frame_at - 2, "frame": frame_at + 5}[part]] ^= 1
    log.write_bytes(bytes(data))
    with pytest.raises(CorruptCheckpointError, match="is corrupt"):
        store.read(WF, RUN, 1, len(infos))
    store.close()


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        (1, "it holds one int, not a list of 9 fields"),
        ({"a": 1}, "it holds one dict, not a list of 9 fields"),
        ([1] * 8, "it holds 8 fields, not 9"),
        ([1, 1, 2, 1, True, "s", 1, None, b""], "field 2 is of type int, not str"),
        ([1, 1, "l", 1, 1, "s", 1, None, b""], "field 4 is of type int, not bool"),
        ([1, 1, "l", 1, True, "s", 1, "x", b""], "field 7 is of type str, not int"),
        ([1, 1, "l", 1, True, "s", 1, 5, "d"], "field 8 is of type str, not bytes"),
    ],
)
def test_a_meta_of_the_wrong_shape_is_corrupt_naming_the_field(fields: object, why: str) -> None:
    with pytest.raises(CorruptCheckpointError, match=f"its meta does not decode \\({why}\\)"):
        file_store._decode_meta("log", 0, pack(fields), 1)
    good = [1, 2, "l", 3, True, "s", 4, None, b"d"]
    info, summary = file_store._decode_meta("log", 0, pack(good), 5)
    assert info == FrameInfo(1, 2, "l", 3, True, 5)
    assert summary == ("s", 4, None, b"d")


def test_a_log_of_big_frames_is_indexed_without_reading_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fill(tmp_path, [200_000] * 12)
    read = []
    real = file_store.os.pread

    def pread(fd: int, n: int, at: int) -> bytes:
        read.append(n)
        return real(fd, n, at)

    monkeypatch.setattr(file_store.os, "pread", pread)
    store = FileStore(tmp_path)
    assert [i.size for i in store.frames(WF, RUN)] == [200_000] * 12
    # the first window, a probe at each record after it, and the last frame's check
    assert sum(read) < file_store._WINDOW + 12 * file_store._PROBE + 2 * 200_000
    store.close()
