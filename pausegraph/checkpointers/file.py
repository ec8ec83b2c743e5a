"""FileCheckpointer: checkpoints in files, durable across processes and crashes.

Theory of operation
-------------------

A store is a directory::

    root/PAUSEGRAPH          marker: magic tag and format version of the store
    root/runs/<sha256>.log   one append-only log per run
    root/tmp/                scratch space for files being created

A run's file name is the SHA-256 of its (workflow id, run id), never the ids
themselves, so no id can name a path outside ``root``; the ids are kept in
the log's header, which is how ``runs()`` gets them back.

A log is a header then records, each framed the same way::

    log     = b"PGLOG" version:u8  record(meta=msgpack [workflow_id, run_id], no frame)
              record(checkpoint 1)  record(checkpoint 2) ...
    record  = meta_len:u32 frame_len:u32 lengths_crc:u32 meta_crc:u32 frame_crc:u32
              meta[meta_len] frame[frame_len]
    meta    = msgpack [seq, super_step, label, timestamp_ms, is_snapshot]
    frame   = encode_frame(...) bytes, a delta or a snapshot as
              ``_log.SnapshotPolicy`` chooses

Integers are big-endian, checksums CRC-32 (ids are kept as UTF-8 bytes).
Indexing a log reads each record's 20-byte head and meta and skips its frame,
so a new handle learns a long run without reading its values; a frame's
checksum is checked when it is loaded. The lengths have a checksum of their
own, so a damaged length is told apart from a record cut short:

- a *torn tail* (fewer than 20 bytes left, good lengths that run past the end
  of the file, or nothing but zero bytes from the record on) is a save that
  never finished. Reads ignore it; the next save cuts it off;
- any other bad record, or a bad header, is ``CorruptCheckpointError``
  naming the file, as is a record whose checksums are right but whose content
  does not decode, and a record whose seq is not the next one. The last
  record's frame is checked when the log is indexed, so that damage there is
  never taken for a torn tail and cut off.

A save takes an exclusive ``flock`` on the log, re-reads whatever other
processes appended since this handle last looked, refuses a seq the run
already has (``ConflictError``, nothing written), cuts off a torn tail,
appends the record with one ``pwrite`` and ``fsync``\\s it before returning.
A new log is written whole in ``tmp/`` and hard-linked into ``runs/`` (which
fails if it is already there), then the directory is fsynced; so a log file
is never seen without its header. Readers take a shared ``flock`` only while
they look for new records.
"""

from __future__ import annotations

import builtins
import fcntl
import hashlib
import os
import struct
import threading
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgpack

from .._records import Checkpoint, CheckpointMeta, Frame, converter, pack
from .._values import FrozenDict, FrozenList
from ..errors import CheckpointError, ConflictError, CorruptCheckpointError
from ._log import SnapshotPolicy, rebuild

__all__ = ["FileCheckpointer"]

FORMAT_VERSION = 1
_LOG_MAGIC = b"PGLOG"
_MARKER_NAME = "PAUSEGRAPH"
_MARKER = b"PGSTORE pausegraph checkpoint store\nformat 1\n"
_LENGTHS = struct.Struct(">II")  # meta length, frame length
_HEAD = struct.Struct(">IIIII")  # the lengths, their crc, the meta's crc, the frame's crc
_MAX_LEN = 0xFFFFFFFF


def _crc(data: bytes) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def _record(meta: bytes, frame: bytes) -> bytes:
    lengths = _LENGTHS.pack(len(meta), len(frame))
    return _HEAD.pack(len(meta), len(frame), _crc(lengths), _crc(meta), _crc(frame)) + meta + frame


class _Torn(Exception):
    """The log ends in a record cut short: a save that never finished."""


def _read_record(
    path: Path, fd: int, at: int, size: int, *, frame: bool
) -> tuple[bytes, bytes, int]:
    """The meta, the frame (if ``frame``) and the frame's length of the record at ``at``.

    Raises ``_Torn`` at a torn tail and ``CorruptCheckpointError`` at a
    damaged record. Without ``frame`` only the head and meta are read, so
    indexing a log does not read the frames.
    """
    head = os.pread(fd, _HEAD.size, at)
    if len(head) < _HEAD.size:
        raise _Torn
    meta_len, frame_len, lengths_crc, meta_crc, frame_crc = _HEAD.unpack(head)
    if lengths_crc != _crc(head[: _LENGTHS.size]):
        if _zeros_from(fd, at, size):
            raise _Torn
        raise _corrupt(path, at, "its length fields fail their checksum")
    meta_at = at + _HEAD.size
    if meta_len + frame_len > size - meta_at:
        raise _Torn
    meta = os.pread(fd, meta_len, meta_at)
    if len(meta) != meta_len or meta_crc != _crc(meta):
        raise _corrupt(path, at, "its meta fails its checksum")
    data = b""
    if frame:
        data = os.pread(fd, frame_len, meta_at + meta_len)
        if len(data) != frame_len or frame_crc != _crc(data):
            raise _corrupt(path, at, "its frame fails its checksum")
    return meta, data, frame_len


def _unpack_bounded(data: bytes) -> Any:
    """msgpack-decode ``data`` with every size limit bounded by its length.

    So a hostile record that claims a billion-item array cannot make the
    decoder allocate more than the record itself.
    """
    n = len(data)
    return msgpack.unpackb(
        data,
        raw=False,
        strict_map_key=False,
        use_list=True,
        max_str_len=n,
        max_bin_len=n,
        max_array_len=n,
        max_map_len=n,
        max_ext_len=n,
        list_hook=FrozenList,  # decoded values are read-only, as everywhere (see _values)
        object_hook=FrozenDict,
    )


def _write_all(fd: int, data: bytes, offset: int) -> None:
    """Write all of ``data`` at ``offset`` (a seam the crash tests patch)."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Entry:
    """Where one checkpoint's record is, and what its meta says."""

    __slots__ = ("at", "end", "frame_len", "meta", "snapshot")

    def __init__(
        self, at: int, end: int, frame_len: int, meta: CheckpointMeta, snapshot: bool
    ) -> None:
        self.at = at  # offset of the record in the file
        self.end = end  # offset just past it
        self.frame_len = frame_len
        self.meta = meta
        self.snapshot = snapshot


class _RunLog:
    """What this handle knows of one run's log: where each record is.

    ``end`` is the offset just past the last good record seen; records after
    it are read the next time the handle looks (``_refresh``).
    """

    __slots__ = ("base", "end", "entries", "first", "lock", "path", "policy")

    def __init__(self, path: Path, end: int) -> None:
        self.path = path
        self.end = end
        self.entries: list[_Entry] = []
        self.base: list[int] = []  # index of the snapshot each entry builds on
        self.policy = SnapshotPolicy()
        self.lock = threading.Lock()
        # the run's first frame, decoded once: rebuild() reads only its structure
        self.first: Frame | None = None


class FileCheckpointer:
    """Keeps checkpoints in files under ``root``; they outlive the process.

    ::

        runner = Runner(graph, FileCheckpointer("runs"))

    ``save`` returns only once the checkpoint is on disk (``fsync``); a
    process killed inside ``save`` leaves the run as if that ``save`` never
    started or as if it finished. ``save`` is conditional across threads and
    processes (see ``Checkpointer``). Any number of handles, in any number of
    processes, may share one ``root``. Each run is one append-only log that
    stores each super-step's changes, with a full snapshot every so often;
    ``docs/storage.md`` describes the format.

    ``root`` is created if missing; an existing directory must be empty or a
    store made by ``FileCheckpointer``.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._runs_dir = self.root / "runs"
        self._tmp_dir = self.root / "tmp"
        self._logs: dict[str, _RunLog] = {}
        self._headers: dict[str, tuple[str, str]] = {}
        self._lock = threading.Lock()
        self._open_store()

    def __repr__(self) -> str:
        return f"<FileCheckpointer {str(self.root)!r}>"

    # --- the store --------------------------------------------------------------

    def _open_store(self) -> None:
        root, marker = self.root, self.root / _MARKER_NAME
        try:
            if root.exists() and not root.is_dir():
                msg = f"checkpoint store {str(root)!r} is not a directory: give a directory path"
                raise CheckpointError(msg)
            root.mkdir(parents=True, exist_ok=True)
            if not marker.exists():
                if any(p.name not in ("runs", "tmp") for p in root.iterdir()):
                    msg = (
                        f"{str(root)!r} is not a pausegraph store (it has no {_MARKER_NAME} file "
                        "and is not empty): give an empty or new directory"
                    )
                    raise CheckpointError(msg)
                self._tmp_dir.mkdir(exist_ok=True)
                self._publish(marker, _MARKER)
            content = marker.read_bytes()
            self._runs_dir.mkdir(exist_ok=True)
            self._tmp_dir.mkdir(exist_ok=True)
        except OSError as exc:
            if isinstance(exc, CheckpointError):
                raise
            msg = f"cannot open checkpoint store {str(root)!r}: {exc.strerror or exc}"
            raise CheckpointError(msg) from exc
        if content != _MARKER:
            first, _, rest = content.partition(b"\n")
            version = rest.removeprefix(b"format ").removesuffix(b"\n")
            if first == _MARKER.partition(b"\n")[0] and version.isdigit() and int(version) > 1:
                msg = (
                    f"{str(root)!r} is a store of format {int(version)}; this pausegraph reads "
                    f"format {FORMAT_VERSION}: upgrade pausegraph"
                )
                raise CorruptCheckpointError(msg)
            msg = (
                f"{str(marker)!r} is corrupt: it should read {_MARKER!r}. If {str(root)!r} is "
                "a pausegraph store, rewrite that file with that content"
            )
            raise CorruptCheckpointError(msg)

    def _publish(self, path: Path, content: bytes) -> bool:
        """Create ``path`` holding ``content`` atomically; False if it already exists."""
        tmp = self._tmp_dir / f"{uuid.uuid4().hex}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            _write_all(fd, content, 0)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        finally:
            tmp.unlink()
        _fsync_dir(path.parent)
        return True

    @staticmethod
    def _name(workflow_id: str, run_id: str) -> str:
        key = pack([_id_bytes(workflow_id), _id_bytes(run_id)])
        return hashlib.sha256(key).hexdigest() + ".log"

    # --- the protocol ---------------------------------------------------------

    def save(self, checkpoint: Checkpoint) -> None:
        """Append ``checkpoint`` to its run's log; return once it is on disk.

        Raises ``ConflictError`` (writing nothing) if the run already has that
        seq, ``CheckpointError`` if the seq skips one.
        """
        wf, run = checkpoint.workflow_id, checkpoint.run_id
        name = self._name(wf, run)
        path = self._runs_dir / name
        try:
            if name not in self._logs and not path.exists():
                header = _LOG_MAGIC + bytes([FORMAT_VERSION])
                header += _record(pack([_id_bytes(wf), _id_bytes(run)]), b"")
                self._publish(path, header)
            log = self._log(name, wf, run)
            with log.lock, self._locked(log.path, fcntl.LOCK_EX, os.O_RDWR) as fd:
                size = self._refresh(log, fd)
                count = len(log.entries)
                if checkpoint.seq != count + 1:
                    _refuse(checkpoint, count)
                frame, snapshot = log.policy.encode(checkpoint)
                meta = pack(
                    [checkpoint.seq, checkpoint.super_step, checkpoint.label,
                     checkpoint.timestamp_ms, snapshot]
                )  # fmt: skip
                if len(frame) > _MAX_LEN:
                    msg = f"checkpoint {checkpoint.seq} of run {run!r} is over 4 GiB encoded"
                    raise CheckpointError(msg)
                if size > log.end:
                    os.ftruncate(fd, log.end)  # a torn tail: a save that never finished
                record = _record(meta, frame)
                _write_all(fd, record, log.end)
                os.fsync(fd)
                end = log.end + len(record)
                self._add(log, _Entry(log.end, end, len(frame), checkpoint.meta, snapshot))
                log.end = end
        except CheckpointError:
            raise
        except OSError as exc:
            raise _os_error(exc, path) from exc

    def load(self, workflow_id: str, run_id: str, seq: int) -> Checkpoint | None:
        """Checkpoint ``seq`` of a run, or ``None`` if there is none."""
        log = self._current(workflow_id, run_id)
        if log is None:
            return None
        with log.lock:
            if not 1 <= seq <= len(log.entries):
                return None
            chain = log.entries[log.base[seq - 1] : seq]
            first = log.first
        try:
            fd = os.open(log.path, os.O_RDONLY)
            try:
                frames = [self._read_frame(log.path, fd, entry) for entry in chain]
                if first is None:
                    first = self._read_frame(log.path, fd, log.entries[0])
                    log.first = first
            finally:
                os.close(fd)
        except CheckpointError:
            raise
        except OSError as exc:
            raise _os_error(exc, log.path) from exc
        return rebuild(workflow_id, run_id, first, frames)

    def latest(self, workflow_id: str, run_id: str) -> Checkpoint | None:
        """The run's checkpoint with the highest seq, or ``None``."""
        log = self._current(workflow_id, run_id)
        if log is None:
            return None
        with log.lock:
            seq = len(log.entries)
        return self.load(workflow_id, run_id, seq) if seq else None

    def list(self, workflow_id: str, run_id: str) -> list[CheckpointMeta]:
        """Every checkpoint's meta of a run, oldest first (``[]`` if none)."""
        log = self._current(workflow_id, run_id)
        if log is None:
            return []
        with log.lock:
            return [entry.meta for entry in log.entries]

    def runs(self) -> builtins.list[tuple[str, str]]:
        """Every ``(workflow_id, run_id)`` with a checkpoint, from the log headers."""
        try:
            names = sorted(p.name for p in self._runs_dir.iterdir() if p.name.endswith(".log"))
        except OSError as exc:
            raise _os_error(exc, self._runs_dir) from exc
        found = []
        for name in names:
            ids = self._headers.get(name)
            if ids is None:
                path = self._runs_dir / name
                try:
                    with path.open("rb") as f:
                        ids, _ = _read_header(path, f.fileno())
                except CheckpointError:
                    raise
                except OSError as exc:
                    raise _os_error(exc, path) from exc
                self._headers[name] = ids
            log = self._current(*ids)
            if log is not None and log.entries:  # not a log whose first save never finished
                found.append(ids)
        return found

    # --- the index ------------------------------------------------------------

    def _log(self, name: str, workflow_id: str, run_id: str) -> _RunLog:
        """This handle's index of a run whose log exists (its header checked once)."""
        with self._lock:
            log = self._logs.get(name)
        if log is not None:
            return log
        path = self._runs_dir / name
        fd = os.open(path, os.O_RDONLY)
        try:
            ids, end = _read_header(path, fd)
        finally:
            os.close(fd)
        if ids != (workflow_id, run_id):
            msg = (
                f"{str(path)!r} is corrupt: its header names run {ids[1]!r} of workflow "
                f"{ids[0]!r}, not run {run_id!r} of workflow {workflow_id!r}"
            )
            raise CorruptCheckpointError(msg)
        with self._lock:
            self._headers[name] = ids
            return self._logs.setdefault(name, _RunLog(path, end))

    def _current(self, workflow_id: str, run_id: str) -> _RunLog | None:
        """The run's index, brought up to date with the file; ``None`` if no log."""
        name = self._name(workflow_id, run_id)
        try:
            if name not in self._logs and not (self._runs_dir / name).exists():
                return None
            log = self._log(name, workflow_id, run_id)
            with log.lock, self._locked(log.path, fcntl.LOCK_SH, os.O_RDONLY) as fd:
                self._refresh(log, fd)
        except CheckpointError:
            raise
        except OSError as exc:
            raise _os_error(exc, self._runs_dir / name) from exc
        return log

    @contextmanager
    def _locked(self, path: Path, how: int, flags: int) -> Iterator[int]:
        fd = os.open(path, flags)
        try:
            fcntl.flock(fd, how)
            yield fd
        finally:
            os.close(fd)  # closing the descriptor releases the flock

    def _add(self, log: _RunLog, entry: _Entry) -> None:
        log.policy.saved(entry.frame_len, entry.snapshot)
        log.base.append(len(log.entries) if entry.snapshot else log.base[-1])
        log.entries.append(entry)

    def _refresh(self, log: _RunLog, fd: int) -> int:
        """Index the records appended since ``log.end``; return the file size.

        Stops at a torn tail; raises ``CorruptCheckpointError`` at a bad record.
        """
        size = os.fstat(fd).st_size
        path = log.path
        while log.end < size:
            at = log.end
            seq = len(log.entries) + 1
            try:
                # the last record's frame is checked too: a damaged one must not
                # pass for a torn tail and be cut off by the next save
                meta, _, frame_len = _read_record(path, fd, at, size, frame=False)
            except _Torn:
                break
            end = at + _HEAD.size + len(meta) + frame_len
            entry = _decode_entry(path, at, end, meta, frame_len)
            if entry.meta.seq != seq or (seq == 1 and not entry.snapshot):
                raise _corrupt(path, at, f"it holds seq {entry.meta.seq} where {seq} belongs")
            if end == size:
                _read_record(path, fd, at, size, frame=True)
            self._add(log, entry)
            log.end = end
        return size

    @staticmethod
    def _read_frame(path: Path, fd: int, entry: _Entry) -> Frame:
        """Read, check again (the file may have changed since it was indexed) and decode."""
        try:
            _, data, _ = _read_record(path, fd, entry.at, entry.end, frame=True)
        except _Torn:
            raise _corrupt(path, entry.at, "the file was cut short after it was written") from None
        if len(data) != entry.frame_len:
            raise _corrupt(path, entry.at, "it was altered after it was indexed")
        try:
            frame = converter.structure(_unpack_bounded(data), Frame)
        except Exception as exc:  # msgpack's and cattrs' errors have no common base
            raise _corrupt(path, entry.at, f"it does not decode ({type(exc).__name__})") from None
        if frame.seq != entry.meta.seq or frame.is_snapshot != entry.snapshot:
            raise _corrupt(path, entry.at, "its frame does not match its meta")
        if frame.seq == 1 and frame.structure is None:
            raise _corrupt(path, entry.at, "the run's first frame has no graph structure")
        return frame


def _decode_entry(path: Path, at: int, end: int, meta_bytes: bytes, frame_len: int) -> _Entry:
    try:
        seq, super_step, label, timestamp_ms, snapshot = _unpack_bounded(meta_bytes)
        for value in (seq, super_step, timestamp_ms):
            if type(value) is not int:
                raise TypeError(value)
        if type(label) is not str or type(snapshot) is not bool:
            raise TypeError(label)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise _corrupt(path, at, f"its meta does not decode ({exc})") from None
    meta = CheckpointMeta(seq, super_step, label, timestamp_ms)
    return _Entry(at, end, frame_len, meta, snapshot)


def _read_header(path: Path, fd: int) -> tuple[tuple[str, str], int]:
    """The ids in a log's header, and the offset of its first record."""
    start = len(_LOG_MAGIC) + 1
    head = os.pread(fd, start, 0)
    if len(head) < start or not head.startswith(_LOG_MAGIC):
        msg = f"{str(path)!r} is corrupt: it does not start with the log's magic tag {_LOG_MAGIC!r}"
        raise CorruptCheckpointError(msg)
    version = head[len(_LOG_MAGIC)]
    if version != FORMAT_VERSION:
        # a version byte we do not know: damage, or a newer pausegraph; either way
        # nothing here can be read safely
        hint = "upgrade pausegraph" if version > FORMAT_VERSION else "the file is damaged"
        msg = (
            f"{str(path)!r} is corrupt or of another format: it says format {version}; "
            f"this pausegraph reads format {FORMAT_VERSION} ({hint})"
        )
        raise CorruptCheckpointError(msg)
    size = os.fstat(fd).st_size
    try:
        payload, _, frame_len = _read_record(path, fd, start, size, frame=False)
    except _Torn:
        raise _corrupt(path, start, "the log header is cut short") from None
    if frame_len:
        raise _corrupt(path, start, "the log header has a frame")
    try:
        wf, run = _unpack_bounded(payload)
        ids = (_id_str(wf), _id_str(run))
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise _corrupt(path, start, f"the log header does not decode ({exc})") from None
    return ids, start + _HEAD.size + len(payload)


def _zeros_from(fd: int, at: int, size: int) -> bool:
    """Whether the file holds only zero bytes from ``at`` on (space a crash left unwritten)."""
    while at < size:
        chunk = os.pread(fd, min(1 << 20, size - at), at)
        if not chunk:
            break
        if chunk.count(0) != len(chunk):
            return False
        at += len(chunk)
    return True


def _id_bytes(value: str) -> bytes:
    # surrogatepass: even an id that is not valid Unicode has one stable name
    return value.encode("utf-8", "surrogatepass")


def _id_str(value: Any) -> str:
    if type(value) is not bytes:
        raise TypeError(f"an id is stored as bytes, not {type(value).__name__}")
    return value.decode("utf-8", "surrogatepass")


def _corrupt(path: Path, at: int, why: str) -> CorruptCheckpointError:
    msg = (
        f"{str(path)!r} is corrupt: the record at byte {at} cannot be used, {why}. "
        "Restore the file from a backup, or fork the run from an earlier checkpoint"
    )
    return CorruptCheckpointError(msg)


def _os_error(exc: OSError, path: Path) -> CheckpointError:
    msg = f"checkpoint store cannot use {str(path)!r}: {exc.strerror or exc}"
    return CheckpointError(msg)


def _refuse(checkpoint: Checkpoint, count: int) -> None:
    where = f"run {checkpoint.run_id!r} of workflow {checkpoint.workflow_id!r}"
    if checkpoint.seq <= count:
        msg = (
            f"{where} already has checkpoint {checkpoint.seq}: another writer resumed or "
            "advanced it first; load the latest checkpoint and decide again"
        )
        raise ConflictError(msg)
    msg = f"{where} has {count} checkpoints; the next must be seq {count + 1}, not {checkpoint.seq}"
    raise CheckpointError(msg)
