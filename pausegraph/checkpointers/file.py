"""FileStore and FileCheckpointer: checkpoints in files, durable across processes and crashes.

Theory of operation
-------------------

``FileStore`` implements the bytes-level ``Store`` protocol: it keeps each
run's frames (opaque bytes), each frame's ``FrameInfo`` and the run's latest
``RunSummary``, and knows nothing of checkpoints, snapshots or rebuilding,
which ``StoreCheckpointer`` owns. ``FileCheckpointer(root)`` is
``StoreCheckpointer(FileStore(root))``.

A store is a directory::

    root/PAUSEGRAPH          marker: magic tag and format version of the store
    root/runs/<sha256>.log   one append-only log per run
    root/runs/<sha256>.lock  the run's live lock (``_lock.hold_file``)
    root/index.sqlite3       each log's latest summary, for runs() (derived, rebuildable)
    root/touched             the journal: logs changed in place since listings last looked
    root/tmp/                scratch space for creating the marker

A run's file name is the SHA-256 of its (workflow id, run id), never the ids
themselves, so no id can name a path outside ``root``; the ids are kept in
the log's header, which is how ``runs()`` gets them back.

A log is a header then records, each framed the same way::

    log     = b"PGLOG" version:u8  record(meta=msgpack [workflow_id, run_id], no frame)
              record(checkpoint 1)  record(checkpoint 2) ...
    record  = meta_len:u32 frame_len:u32 lengths_crc:u32 meta_crc:u32 frame_crc:u32
              meta[meta_len] frame[frame_len]
    meta    = msgpack [seq, super_step, label, timestamp_ms, is_snapshot,
                       status, updated_ms, deadline_ms, summary_data]
    frame   = the frame's bytes as given to ``append`` (the engine's delta or
              snapshot; the store never decodes them)

Format 2 (this one) added the run's summary to each record's meta (its
``RunSummary`` but the ids, kept in the header, and the seq, the record's):
the log is the truth about the run's latest summary, written in the same
``pwrite`` as the frame, so no crash can separate them. Format 1 stores are
refused with a message (the marker says ``format 1``).

Integers are big-endian, checksums CRC-32 (ids are kept as UTF-8 bytes).
Indexing a log checks each record's 20-byte head and meta and skips its frame
(a frame's checksum is checked when it is loaded); the log is read
``_WINDOW`` bytes at a time (``_PROBE`` after a big frame), and a record
whose head and meta are not in the window is read on its own, so a new
handle learns a long run of small records in a few reads without reading
its big values. Loading reads a run's consecutive frames in windows too.
The lengths have a checksum of their own, so a damaged length is told apart
from a record cut short:

- a *torn tail* (fewer than 20 bytes left, good lengths that run past the end
  of the file, or nothing but zero bytes from the record on) is a save that
  never finished. Reads ignore it; the next save cuts it off;
- any other bad record, or a bad header, is ``CorruptCheckpointError``
  naming the file, as is a record whose checksums are right but whose content
  does not decode, and a record whose seq is not the next one. The last
  record's frame is checked when the log is indexed, so that damage there is
  never taken for a torn tail and cut off.

Decoding is bounded by the bytes read, wherever a meta or a header is
decoded here, and a frame in ``FileCheckpointer`` (``_codec.unpack_bounded``,
through ``decode_frame``; a frame that does not decode is an error naming
the file and the record's offset, as is one whose seq is not its meta's).
msgpack's own limits bound each string and each container by the record's
length, which is not enough: a
1-byte ``[]`` becomes a 64-byte list, and nested arrays that each *claim* n
items make the decoder preallocate n slots at every level. So:

- a frame is first walked with ``Unpacker.skip()``, which builds nothing and
  fails unless every item each container claims is really there; the list
  slots preallocated at once are then never more than the bytes read;
- at most one array or map per byte is built (counted by the list and map
  hooks; an empty one is a byte, and a value the engine may write): an
  empty list costs 56 bytes plus its slot in the parent, about what plain
  values already cost in Python (a list of small negative ints: 36 bytes
  per byte). In all, decoding a record allocates at most about 64 bytes per
  byte of it, and a hostile record is refused within that;
- a meta holds exactly 9 scalars and a header 2 byte strings: arrays and maps
  of more items are refused before anything is built;
- extension types (timestamps included) are refused: pausegraph never stores
  them.

The header record is checked like any other (lengths, meta and its empty
frame's checksum). Any of these failures is ``CorruptCheckpointError``
naming the file.

An append takes an exclusive ``flock`` on the log, re-reads whatever other
processes appended since this handle last looked, refuses a seq the run
already has (``ConflictError``, nothing written), cuts off a torn tail and
appends the record with one ``pwrite``, *without* ``fsync``: the record is
in the page cache, which a killed process does not lose, so a kill -9
anywhere still leaves each run as if an append never started or finished.
``sync()`` (which the ``Runner`` calls before an effect's function runs and
before a call returns) fsyncs every log this handle appended to since its
last ``sync``, then ``runs/`` once if one of them is new to this handle:
durable before visible, and no sooner, so a pause/resume cycle costs one
fsync per call (plus the directory's, for a new run) and one per effect
instead of one per checkpoint. Only a power loss can lose an unsynced
append, and nothing outside the process has seen one.

A run's first append creates its log in place (``O_CREAT | O_EXCL``, no
temporary file, no fsync) and, under the exclusive ``flock``, writes the
header and the first record with one ``pwrite`` from byte 0. A log with no
complete header (empty, cut short inside the header, or all zero bytes,
which a crash or a power loss before the ``sync`` can leave) reads as no
run, and the next save of seq 1, in any process, cuts it to nothing and
writes it again under the ``flock``: the claim is decided on the file's
content, never by who created the file (docs/storage.md gives the whole
argument). Readers take a shared ``flock`` only while they look for new
records, and not at all when the file has not grown past what they
indexed.

An append that fails (a write refused for lack of space) leaves nothing of
itself readable and raises ``CheckpointError`` naming the OS error, never
``ConflictError``: it is cut back with ``ftruncate`` while the exclusive
``flock`` is still held, so no reader has seen it (if even that fails, the
error says the record may stay, and the handle indexes the file afresh
before using it again). A ``sync`` whose ``fsync`` fails cuts each such log
back to where it was before this handle's unsynced appends, under the
exclusive ``flock`` and only if no one appended after them, and raises the
same error naming the checkpoints; a log whose header this handle wrote is
removed instead (as is one whose first write failed), and so are they if
the ``fsync`` of ``runs/`` fails. The next save of the same seq then simply
succeeds. No syscall is added to an append that succeeds.

``runs()`` reads ``root/index.sqlite3``, one row per log: its name, a
*stamp* (inode, size and mtime of the log when the row was taken), its
inode and the summary its last record holds. Every change of a log in
place (an append, a cut, a delete) first writes the log's name to the
journal ``root/touched`` (``_Journal``: one ``os.write``, no ``fsync``)
and holds the journal's shared ``flock`` until it is done. An append's
entry also carries a *note*: the size the log will have once the record is
written, the time just before, the file's inode, the run's ids and the
record's meta (its summary). A listing reads the entries written since the
offset the index consumed, under the journal's exclusive ``flock`` (so
every change named is finished), and ``lstat``s each noted log while it
still holds it. A log whose last entry is a note, and that is still that
inode, of that size, modified no later than ``_RACY_NS`` after the note and
at least that long ago, takes its row from the note with no read of the
log: the append it announced finished (an append killed part way, refused,
cut back or followed by a cut or a delete leaves another size or file, or a
later entry without a note; a change by hand a later mtime). Every other
log named is read again and, if ``runs/`` changed, so is each log whose
name or inode the index lacks and that no note covers; rows, offset and
the directory's stamp are written in one SQLite
write transaction, so listings take turns and none writes a row older than
another's. A listing with nothing new reads the rows and nothing else; a
handle that lists again keeps the summaries and reads only the rows
written since (``_selected``). After a reboot
(``/proc/sys/kernel/random/boot_id``: a power loss may have cut logs back
and lost journal lines), or with a journal it cannot trust (missing,
damaged, another tag), it checks every log as it did before the journal:
one ``stat`` each; a row whose stamp matches is kept, any other log
(changed since, new, restored, or whose row is missing) is read again,
checked as a save would check it, and its row rewritten; rows whose log is
gone are dropped. The stamp is taken *before* the records are read, so a
row never claims a file state newer than its summary. A row taken within
``_RACY_NS`` of the log's mtime gets no stamp (a rewrite of the same size
inside one timestamp tick would leave the stamp unchanged). Saves write no
row, and the save path stays free of SQLite. The index is derived data, so
it is written with ``synchronous=OFF``; one that cannot be read is removed
and rebuilt from the logs; one that cannot be written (busy, read-only)
makes the listing check every log's stamp and write nothing; errors there
never fail a save or a listing. ``docs/storage.md`` ("Listing runs") says
why no listing shows a status older than a save that returned before it
began.

A handle keeps the descriptors of the logs it last used open (at most
``_MAX_OPEN_LOGS``), so a save costs no ``open``, and the index of the runs
it last used (at most ``_MAX_INDEXED``, least recently used forgotten first,
with the header cache bounded the same way): a long-lived handle's memory
does not grow with the number of runs it has touched. A forgotten run is
indexed again from its file when it is used; since every save re-reads the
log under the exclusive ``flock``, a save after that still sees every record
and refuses a seq already there. Under the ``flock`` a handle checks with an
``lstat`` that the log's path still names the file the descriptor is on: a
log deleted behind its back reads as no run, never a silent write to an
unlinked file, and one replaced (restored from a backup) is indexed afresh.
Closing a descriptor forgets what the handle knew of its file: with no
descriptor pinning the inode, its number may be reused by a new log.
A forked child opens its own descriptors, since an inherited one would share
the parent's ``flock``.

A log is opened with ``O_NONBLOCK | O_NOFOLLOW`` and ``fstat``\\ed before it
is read: a FIFO in its place cannot block the open, and anything but a
regular file (a directory, a FIFO, a socket, a symbolic link, say to another
run's log) is ``CorruptCheckpointError``. ``runs()`` checks each log on its
own: one that cannot be read, is not a regular file, fails a check, or
whose header names a run whose log is another file (a copy) is left out and
reported by ``damaged()``, and the other runs are listed as usual. Reading
such a run raises the error that says why.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import fcntl
import hashlib
import itertools
import os
import sqlite3
import stat
import struct
import threading
import time
import uuid
import weakref
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import msgpack

from .._channels import slot_setters
from .._codec import decode_frame
from .._codec import unpack_bounded as _unpack_bounded
from .._records import Frame
from .._values import pack
from ..errors import CheckpointError, CorruptCheckpointError
from ._checkpointer import StoreCheckpointer
from ._lock import Holder, Mark, file_holder, files_held, hold_file, store_path, synced_mark
from ._lock import fsync_dir as _fsync_dir  # a module name the fault tests replace
from ._log import refuse_seq
from ._store import FrameInfo, RunSummary

__all__ = ["FileCheckpointer", "FileStore"]

FORMAT_VERSION = 2
_LOG_MAGIC = b"PGLOG"
_MARKER_NAME = "PAUSEGRAPH"
_MARKER = b"PGSTORE pausegraph checkpoint store\nformat 2\n"
_INDEX_NAME = "index.sqlite3"
_LENGTHS = struct.Struct(">II")  # meta length, frame length
_HEAD = struct.Struct(">IIIII")  # the lengths, their crc, the meta's crc, the frame's crc
_MAX_LEN = 0xFFFFFFFF
_META_ITEMS = 9
_WINDOW = 1 << 18  # bytes a log is read at a time when indexed or loaded
_BIG = 1 << 14  # a frame past which indexing reads only _PROBE bytes at the next record
_PROBE = 1 << 12  # bytes read at a record after a big frame: its head and meta, usually
_MAX_OPEN_LOGS = 64  # descriptors a handle keeps open, one per recently used run
_MAX_INDEXED = 1024  # runs whose index a handle keeps, the most recently used
# an index row is trusted only if it was written this long after the log's mtime:
# a same-size rewrite within one timestamp tick would otherwise go unnoticed
_RACY_NS = 50_000_000
_T = TypeVar("_T")


def _crc(data: bytes) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def _record(meta: bytes, frame: bytes) -> bytes:
    lengths = _LENGTHS.pack(len(meta), len(frame))
    return _HEAD.pack(len(meta), len(frame), _crc(lengths), _crc(meta), _crc(frame)) + meta + frame


class _Torn(Exception):
    """The log ends in a record cut short: a save that never finished."""


class _NoHeader(Exception):
    """The log has no complete header: its creator's first write never finished (no run)."""


def _read_record(
    path: str, fd: int, at: int, size: int, *, frame: bool
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


def _write_all(fd: int, data: bytes, offset: int) -> None:
    """Write all of ``data`` at ``offset`` (a seam the crash tests patch)."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


class _Unpublished(Exception):
    """``_publish`` failed with ``error``; ``kept``: the file could not be taken back."""

    def __init__(self, error: OSError, *, kept: bool) -> None:
        super().__init__(error)
        self.error = error
        self.kept = kept


def _unlink_if_alone(fd: int, path: str, size: int) -> bool:
    """Unlink ``path`` (open on ``fd``) unless it grew past ``size``; whether it stays."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            st, now = os.fstat(fd), os.lstat(path)
            if st.st_size != size or (st.st_dev, st.st_ino) != (now.st_dev, now.st_ino):
                return True
            os.unlink(path)  # a handle waiting for the flock then finds no file: an error
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    except OSError:
        return True
    return False


def _cut(fd: int, log: _RunLog) -> bool:
    """Cut the log back to ``log.end`` after a failed append; whether something stays.

    Called under the exclusive ``flock``, so no one has read the failed record
    yet. If even the cut fails, the descriptor is closed so that this handle
    indexes the file afresh before it uses it again.
    """
    try:
        os.ftruncate(fd, log.end)
    except OSError:
        log.file_id = (0, 0)
        return True
    return False


def _unsaved(
    ids: tuple[str, str], seqs: tuple[int, int], path: str, exc: OSError, kept: bool
) -> CheckpointError:
    """The error for an append or sync that failed with ``exc`` (never a ``ConflictError``)."""
    first, last = seqs
    what = f"checkpoint {first}" if first == last else f"checkpoints {first} to {last}"
    what += f" of run {ids[1]!r} of workflow {ids[0]!r}"
    why = exc.strerror or str(exc)
    if kept:
        outcome = (
            "and it could not be taken back: its record may still be read; check the disk, "
            "then load the latest checkpoint and decide again"
        )
    else:
        outcome = "and nothing of it was kept: the run is as it was before this save"
    msg = f"could not save {what} to {path!r}: {why}; {outcome}"
    return CheckpointError(msg)


def _packed_ids(workflow_id: str, run_id: str) -> bytes:
    return pack([_id_bytes(workflow_id), _id_bytes(run_id)])


def _log_name(workflow_id: str, run_id: str) -> str:
    return hashlib.sha256(_packed_ids(workflow_id, run_id)).hexdigest() + ".log"


def _lock_name(workflow_id: str, run_id: str) -> str:
    """The name of the run's lock file in ``runs/``: its log's, ending ``.lock``."""
    return _log_name(workflow_id, run_id)[:-4] + ".lock"


def _log_header(packed_ids: bytes) -> bytes:
    return _LOG_MAGIC + bytes([FORMAT_VERSION]) + _record(packed_ids, b"")


def _meta(info: FrameInfo, summary: RunSummary) -> bytes:
    """A record's meta: the frame's ``FrameInfo`` (but its size) and the run's summary."""
    return pack(
        [
            info.seq,
            info.super_step,
            info.label,
            info.timestamp_ms,
            info.snapshot,
            summary.status,
            summary.updated_ms,
            summary.deadline_ms,
            summary.data,
        ]
    )


class _Entry:
    """Where one frame's record is, and what its meta says of the frame."""

    __slots__ = ("at", "end", "info")

    def __init__(self, at: int, end: int, info: FrameInfo) -> None:
        self.at = at  # offset of the record in the file
        self.end = end  # offset just past it
        self.info = info


# what a record's meta says of the run: status, updated_ms, deadline_ms, data
_Summary = tuple[str, int, int | None, bytes]


class _RunLog:
    """What this handle knows of one run's log: where each record is, and an open descriptor.

    ``end`` is the offset just past the last good record seen; records after
    it are read the next time the handle looks (``_refresh``). ``fd`` stays
    open between calls (``-1`` when closed); ``file_id`` (device, inode) is
    the file it was opened on, so that a log deleted or replaced behind the
    handle's back is noticed instead of written to. ``summary`` is what the
    last record says of the run. Everything here is used with ``lock`` held.

    Closing the descriptor forgets the file (``close``): an inode number is
    the file's identity only while a descriptor pins the inode. Once closed,
    the log may be deleted and a new one (the same run id started again)
    given the same inode number, with the same size even; the next open
    must therefore read the header and every record again.
    """

    __slots__ = (
        "dir_synced", "end", "entries", "fd", "file_id", "ids", "lock", "name", "packed_ids",
        "path", "pid", "summary", "synced", "writable",
    )  # fmt: skip

    def __init__(self, path: str, name: str, ids: tuple[str, str]) -> None:
        self.path = path
        self.name = name
        self.ids = ids
        self.packed_ids = _packed_ids(*ids)  # as the header holds them
        self.lock = threading.Lock()
        self.fd = -1
        self.writable = False  # fd was opened read-write (a store we may only read is still read)
        self.pid = 0  # the process that opened fd: a forked child must not share its flock
        self.file_id = (0, 0)
        # runs/ was fsynced since this handle opened the file: its name is durable
        self.dir_synced = False
        self.reset(0)  # and self.synced: what this handle's last sync made durable of it

    def reset(self, start: int) -> None:
        """Forget the index: the log's records start at ``start``.

        The sync mark goes too: what this handle synced may not be this file
        any more (a log replaced once its descriptor was closed may even
        have the old one's inode).
        """
        self.end = start
        self.entries: list[_Entry] = []
        self.summary: _Summary | None = None
        self.synced: Mark | None = None

    def run_summary(self) -> RunSummary | None:
        if self.summary is None or not self.entries:
            return None
        status, updated_ms, deadline_ms, data = self.summary
        seq = len(self.entries)
        return RunSummary(self.ids[0], self.ids[1], seq, status, updated_ms, deadline_ms, data)

    def close(self) -> None:
        """Close the descriptor and forget the file: the next open indexes it afresh."""
        self.file_id = (0, 0)
        self.reset(0)
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)  # in a forked child this closes only the child's copy


def _boot_id() -> str:
    """This boot of the machine (Linux), so that an index older than a power loss is redone."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return ""


# one row per log: (name, stamp, ino, workflow_id, run_id, seq, status, updated_ms,
# deadline_ms, data); seq 0 for a log with no checkpoint, _DAMAGED for one that
# failed its checks (status: why). An id is TEXT, or its UTF-8 (surrogatepass)
# bytes if it is not valid Unicode.
_Row = tuple[str, str, int, "str | bytes", "str | bytes", int, str, int, "int | None", bytes]
_SCHEMA = 4  # PRAGMA user_version of an index this pausegraph writes
_DAMAGED = -1  # the seq of a damaged log's row
_SUMMARY_ROWS = (
    "SELECT name, workflow_id, run_id, seq, status, updated_ms, deadline_ms, data FROM runs"
)
_BYTES_IDS = "SELECT 1 FROM runs WHERE typeof(workflow_id) = 'blob' OR typeof(run_id) = 'blob'"


def _stamp(st: os.stat_result, now_ns: int) -> str:
    """What the index keeps of a log's file state: ``""`` (never trusted) unless it is settled.

    A row is trusted while the log's inode, size and mtime are what they were
    when it was written, and only if that was at least ``_RACY_NS`` after the
    mtime: a rewrite of the same size within one timestamp tick of the row
    would otherwise leave all three unchanged.
    """
    if not stat.S_ISREG(st.st_mode) or now_ns - st.st_mtime_ns < _RACY_NS:
        return ""
    return f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"


def _stamp_holds(stamp: str | None, st: os.stat_result) -> bool:
    """Whether a row's ``stamp`` (``_stamp``; ``""`` is never trusted) fits the file ``st``."""
    return (
        bool(stamp)
        and stat.S_ISREG(st.st_mode)
        and stamp == f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"
    )


def _dir_stamp(st: os.stat_result, now_ns: int) -> str:
    """What the index keeps of ``runs/``'s state (``""``: changed too recently to trust)."""
    if now_ns - max(st.st_mtime_ns, st.st_ctime_ns) < _RACY_NS:
        return ""
    return f"{st.st_ino}:{st.st_mtime_ns}:{st.st_ctime_ns}"


def _id_cell(value: str) -> str | bytes:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return _id_bytes(value)
    return value


def _row(log: _RunLog, st: os.stat_result) -> _Row:
    """The index row for what ``log`` says now, read from the file state ``st``."""
    summary = log.run_summary()
    status, updated_ms, deadline_ms, data = log.summary or ("", 0, None, b"")
    return (
        log.name, _stamp(st, time.time_ns()), st.st_ino, _id_cell(log.ids[0]),
        _id_cell(log.ids[1]), 0 if summary is None else summary.seq, status, updated_ms,
        deadline_ms, data,
    )  # fmt: skip


def _damaged_row(name: str, why: str) -> _Row:
    return (name, "", 0, "", "", _DAMAGED, why, 0, None, b"")


def _summary_of_row(row: tuple[Any, ...]) -> RunSummary:
    """The ``RunSummary`` of a row's columns from ``workflow_id`` on."""
    wf, run, seq, status, updated_ms, deadline_ms, data = row
    wf = wf if type(wf) is str else _id_str(wf)
    run = run if type(run) is str else _id_str(run)
    return RunSummary(wf, run, seq, status, updated_ms, deadline_ms, data)


class _Index:
    """``root/index.sqlite3``: each log's latest summary, derived from the logs, for ``runs()``.

    Nothing here is ever the truth: every row was read from its log, and the
    listing reads a log again whenever the journal (``_Journal``), the
    directory or the row's stamp says it may have changed. So the database
    is written without ``fsync`` (``synchronous=OFF``) and, if it is damaged
    or unreadable, it is removed and rebuilt from the logs. Errors here never
    fail a save. Rows are only written inside ``session(write=True)``, which
    holds SQLite's write lock: listings that bring the index up to date take
    turns, so one cannot write a row read before another consumed the
    journal entry that made it stale.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def _db(self) -> sqlite3.Connection:
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        self._conn = None  # a connection inherited through fork is never used
        conn = sqlite3.connect(self.path, timeout=10, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=OFF")
            # keep the write-ahead log small
            conn.execute("PRAGMA wal_autocheckpoint=64")
            conn.execute("PRAGMA journal_size_limit=262144")
            if conn.execute("PRAGMA user_version").fetchone()[0] != _SCHEMA:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    if conn.execute("PRAGMA user_version").fetchone()[0] != _SCHEMA:
                        conn.execute("DROP TABLE IF EXISTS runs")
                        conn.execute("DROP TABLE IF EXISTS facts")
                        conn.execute(
                            "CREATE TABLE runs (name TEXT PRIMARY KEY, stamp TEXT, ino INTEGER, "
                            "workflow_id, run_id, seq INTEGER, status TEXT, updated_ms INTEGER, "
                            "deadline_ms INTEGER, data BLOB, gen INTEGER)"
                        )
                        conn.execute("CREATE TABLE facts (key TEXT PRIMARY KEY, value TEXT)")
                        first = [("epoch", uuid.uuid4().hex), ("gen", "0"), ("drops", "0")]
                        conn.executemany("INSERT INTO facts VALUES (?, ?)", first)
                        conn.execute(f"PRAGMA user_version={_SCHEMA}")
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
        except BaseException:
            conn.close()
            raise
        self._conn, self._pid = conn, os.getpid()
        return conn

    def reset(self) -> None:
        """Remove a damaged index; the next use builds it again from the logs."""
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                with contextlib.suppress(sqlite3.Error):
                    self._conn.close()
            self._conn = None
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(OSError):
                    os.unlink(self.path + suffix)

    @contextmanager
    def session(self, *, write: bool) -> Iterator[sqlite3.Connection]:
        """One transaction: a consistent snapshot, and SQLite's write lock if ``write``.

        Raises ``sqlite3.Error`` as SQLite does (busy, damaged...): the caller
        decides. Committed when the block ends, rolled back if it raises.
        """
        with self._lock:
            db = self._db()
            db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield db
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def rows(self) -> tuple[dict[str, _Row], bool]:
        """Every row by log name, and whether they were written since this boot.

        For the listing that writes nothing (the index is busy): an index
        that cannot be read reads as empty.
        """
        boot = _boot_id()
        try:
            with self.session(write=False) as db:
                rows = db.execute("SELECT * FROM runs").fetchall()
                fact = db.execute("SELECT value FROM facts WHERE key = 'boot'").fetchone()
        except sqlite3.Error:
            return {}, False
        return {row[0]: row for row in rows}, fact is not None and fact[0] == boot

    @staticmethod
    def put(db: sqlite3.Connection, *rows: _Row) -> None:
        """Write ``rows`` in the write ``session`` ``db``, marked with the session's ``gen``."""
        db.executemany(
            "INSERT OR REPLACE INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,"
            "(SELECT CAST(value AS INTEGER) FROM facts WHERE key = 'gen'))",
            rows,
        )

    @staticmethod
    def delete(db: sqlite3.Connection, names: Iterable[str]) -> None:
        """Drop the rows of ``names`` in the write ``session`` ``db``; count it in ``drops``."""
        if db.executemany("DELETE FROM runs WHERE name = ?", [(n,) for n in names]).rowcount:
            db.execute("UPDATE facts SET value = CAST(value AS INTEGER) + 1 WHERE key = 'drops'")

    @staticmethod
    def next_gen(db: sqlite3.Connection) -> None:
        """Start a new ``gen`` in the write ``session`` ``db``: the rows it writes carry it."""
        db.execute("UPDATE facts SET value = CAST(value AS INTEGER) + 1 WHERE key = 'gen'")

    def drop(self, names: builtins.list[str]) -> None:
        try:
            with self.session(write=True) as db:
                self.delete(db, names)
        except sqlite3.OperationalError:
            pass  # busy, locked, read-only: the journal entry makes the listing look
        except sqlite3.DatabaseError:
            self.reset()  # not a database, or a damaged one: rebuilt from the logs
        except sqlite3.Error:
            pass

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                with contextlib.suppress(sqlite3.Error):
                    self._conn.close()
            self._conn = None


_JOURNAL_NAME = "touched"
_JOURNAL_MAGIC = b"PGTOUCHED 2 "
# the magic, a tag (32 random hex digits, 16 of the boot's hash: _journal_head), a newline
_JOURNAL_HEAD = len(_JOURNAL_MAGIC) + 49
_NAME_LEN = 64 + len(".log")  # a log's file name: a SHA-256 in hex, ".log"
_ENTRY_HEAD = struct.Struct(">II")  # an entry's length after this head, and its crc
_NOTE_HEAD = struct.Struct(">QQQI")  # a note's log size, time (ns), inode, length of its ids
_NOTE_MAX = 1 << 12  # bytes of meta past which an append's entry carries no note
_JOURNAL_MAX = 1 << 20  # bytes past which a listing empties the journal
_JOURNAL_CAP = 64 << 20  # past which a writer does, and the next listing checks every log
_HEX = frozenset(b"0123456789abcdef")


# what an append's journal entry says of its log: its size once the record is
# written, the time (ns) just before, its inode, the run's ids (packed as in
# the log's header) and the record's meta
_Note = tuple[int, int, int, bytes, bytes]
# a note, and the log's lstat taken while the journal was held exclusively
_Noted = tuple[_Note, os.stat_result]


def _journal_entry(name: str, note: _Note | None) -> bytes:
    """One journal entry: its head (length, crc), the log's name and the note, if any."""
    body = name.encode("ascii")
    if note is not None:
        size, time_ns, ino, ids, meta = note
        body += _NOTE_HEAD.pack(size, time_ns, ino, len(ids)) + ids + meta
    return _ENTRY_HEAD.pack(len(body), _crc(body)) + body


def _journal_entries(data: bytes) -> dict[str, _Note | None] | None:
    """Each log named in ``data`` (entries) with the note of its last entry; None if damaged."""
    last: dict[bytes, tuple[int, int]] = {}  # each name's last entry: where its body is
    at, end, head, crc32 = 0, len(data), _ENTRY_HEAD.size, zlib.crc32
    unpack = _ENTRY_HEAD.unpack_from
    while at < end:
        if at + head > end:
            return None
        length, crc = unpack(data, at)
        at += head
        if length < _NAME_LEN or at + length > end or crc32(data[at : at + length]) != crc:
            return None
        last[data[at : at + _NAME_LEN]] = (at, length)
        at += length
    named: dict[str, _Note | None] = {}
    for name, (at, length) in last.items():
        if not _HEX.issuperset(name[:64]) or name[64:] != b".log":
            return None
        note: _Note | None = None
        if length > _NAME_LEN:
            ids_at = at + _NAME_LEN + _NOTE_HEAD.size
            if length < _NAME_LEN + _NOTE_HEAD.size:
                return None
            size, time_ns, ino, ids_len = _NOTE_HEAD.unpack_from(data, at + _NAME_LEN)
            if ids_at + ids_len > at + length:
                return None
            ids, meta = data[ids_at : ids_at + ids_len], data[ids_at + ids_len : at + length]
            note = (size, time_ns, ino, ids, meta)
        named[name.decode("ascii")] = note
    return named


class _Journal:
    """``root/touched``: the logs modified in place, so listings read only those.

    A header line (magic and a random tag, new each time the journal is
    emptied) then one entry per modification (``_journal_entry``): the log's
    file name and, for an append, a note of what it writes. A writer holds
    a shared ``flock`` on the journal from before it writes the entry until
    its modification of the log is done (``touching``); a listing reads the
    entries under the exclusive ``flock`` (``exclusive``), so every
    modification it reads of is finished and no other starts meanwhile.
    Nothing is fsynced: a power loss changes the boot id, and the listing
    then checks every log anyway.

    One descriptor per handle (read-write, ``O_APPEND``); its ``flock`` is
    shared by the handle's threads, so they count their shared holds here
    and the exclusive one waits for none to be left.
    """

    def __init__(self, path: str, tmp_dir: str) -> None:
        self.path = path
        self._tmp_dir = tmp_dir
        self._fd = -1
        self._pid = 0
        self._shared = 0
        self._size = 0  # the journal's size when the descriptor was last checked
        # entered directly on the hot path (its C ``__enter__``, not the Condition's);
        # re-entrant: a finalizer run by the collector mid-``enter`` may save too
        self._mutex = threading.RLock()
        self._cond = threading.Condition(self._mutex)
        self._waiting = 0  # threads in ``_wait``: ``leave`` notifies only if there are some

    def _open(self) -> int:
        """The journal's descriptor (``self._cond`` held); the journal is made if missing."""
        if self._fd >= 0 and self._pid == os.getpid():
            if self._shared:
                return self._fd
            st = os.fstat(self._fd)
            self._size = st.st_size
            if st.st_nlink:
                return self._fd
            self.close_fd()  # removed by hand: lines written there would go nowhere
        self._fd = -1  # one inherited through fork would share the parent's flock
        # O_NONBLOCK: a FIFO in the journal's place cannot block the open (nor, once
        # refused below, a write); it does nothing to a regular file
        flags = os.O_RDWR | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
        try:
            fd = os.open(self.path, flags)
        except FileNotFoundError:
            # made whole in tmp/ and linked, so no one sees it without its header
            tmp = os.path.join(self._tmp_dir, f"{uuid.uuid4().hex}.tmp")
            new = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                os.write(new, _journal_head())
                with contextlib.suppress(FileExistsError):
                    os.link(tmp, self.path)
            finally:
                os.close(new)
                os.unlink(tmp)
            fd = os.open(self.path, flags)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                # it cannot be emptied either, so no save may go on (see touching);
                # replacing it here could race a writer of a journal made meanwhile
                why = (
                    "it is not a regular file (a FIFO, a socket or a device stands where the "
                    "journal belongs); remove it, and the next save makes a new journal"
                )
                raise OSError(errno.EINVAL, why)
        except BaseException:
            os.close(fd)
            raise
        self._fd, self._pid = fd, os.getpid()
        return fd

    @contextmanager
    def touching(self, name: str) -> Iterator[None]:
        """Write ``name`` to the journal and hold it shared until the block ends.

        If the line cannot be written the journal is emptied, which sends the
        next listing through every log; if even that fails, ``OSError``, and
        the caller must not modify the log.
        """
        fd = self.enter(name)
        try:
            yield
        finally:
            self.leave(fd)

    def enter(self, name: str, note: _Note | None = None) -> int:
        """``touching``'s start: the entry written, the shared hold taken; its descriptor.

        Every ``enter`` that returns is followed by one ``leave`` of what it returned.
        """
        line = _journal_entry(name, note)
        with self._mutex:
            while self._shared < 0:
                self._wait()
            fd = self._open()
            if self._shared == 0:
                fcntl.flock(fd, fcntl.LOCK_SH)
            self._shared += 1
        try:
            try:
                if os.write(fd, line) != len(line):
                    raise OSError(errno.EIO, "short write")
                if self._size > _JOURNAL_CAP:  # no listing for a long while: stop the growth
                    raise OSError(errno.EFBIG, "the journal is full")
            except OSError:
                os.ftruncate(fd, 0)  # no header: the next listing checks every log
        except BaseException:
            self.leave(fd)
            raise
        return fd

    def leave(self, fd: int) -> None:
        """``touching``'s end: the shared hold that ``enter`` took is let go."""
        with self._mutex:
            self._shared -= 1
            if self._shared == 0:
                try:  # noqa: SIM105 (contextlib.suppress: a context manager every save)
                    fcntl.flock(fd, fcntl.LOCK_UN)
                except OSError:
                    pass
                if self._waiting:
                    self._cond.notify_all()

    def _wait(self) -> None:
        """Wait on ``self._cond`` (held), counted in ``_waiting``."""
        self._waiting += 1
        try:
            self._cond.wait()
        finally:
            self._waiting -= 1

    def consume(
        self, tag: str, offset: int, logs: str
    ) -> tuple[dict[str, _Noted | None] | None, str, int]:
        """The logs named since ``offset`` if the journal is still ``tag``'s, else None.

        Returns ``(named, tag, end)``: each log named, with the note of its
        last entry and the log's ``lstat`` (in the directory ``logs``), or
        ``None`` if that entry has no note or the log cannot be looked at;
        the listing records ``tag`` and ``end`` as what it consumed. Under
        the exclusive ``flock``: every modification named up to ``end`` is
        finished, and none that comes after has begun when the ``lstat``
        are taken (a writer writes its entry first), so a note and its
        ``lstat`` describe the same moment. A
        new index (``tag`` empty) reads the whole journal if its tag says it
        was begun or emptied this boot (a power loss since may have cut logs
        back behind it). A journal that is damaged (a bad header or entry),
        missing or past ``_JOURNAL_MAX`` is emptied with a new tag;
        ``named`` is ``None`` when it cannot be trusted, and the listing then
        checks every log.
        """
        with self._mutex:
            while self._shared:
                self._wait()
            fd = self._open()
            self._shared = -1  # no thread of this handle writes meanwhile
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    named, tag, end = self._consume(fd, tag, offset)
                    return None if named is None else _stat_noted(logs, named), tag, end
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                self._shared = 0
                if self._waiting:
                    self._cond.notify_all()

    def _consume(
        self, fd: int, tag: str, offset: int
    ) -> tuple[dict[str, _Note | None] | None, str, int]:
        size = os.fstat(fd).st_size
        head = os.pread(fd, _JOURNAL_HEAD, 0)
        found = _journal_tag(head)
        names: dict[str, _Note | None] | None = None
        if found is None or not found.endswith(_boot_tag()):
            found = None  # damaged, missing, or begun before a power loss: emptied
        elif not tag:
            offset = _JOURNAL_HEAD  # a new index, and a journal begun this boot: read it all
            tag = found
        if found == tag and _JOURNAL_HEAD <= offset <= size:
            names = _journal_entries(os.pread(fd, size - offset, offset))
        if found is None or (names is None and found == tag) or size > _JOURNAL_MAX:
            # emptied in place (writers' O_APPEND descriptors stay good) under the lock
            os.ftruncate(fd, 0)
            head = _journal_head()
            os.write(fd, head)
            return names, head[len(_JOURNAL_MAGIC) : -1].decode("ascii"), len(head)
        return names, found, size

    def close(self) -> None:
        with self._cond:
            self.close_fd()

    def close_fd(self) -> None:
        """Close the descriptor (``self._cond`` held, no ``flock`` of this handle on it)."""
        if self._fd >= 0 and self._pid == os.getpid():
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self._fd = -1

    def settled(self, tag: str, offset: int) -> bool:
        """Whether the journal is ``tag``'s and holds nothing past ``offset`` (no lock taken)."""
        with self._cond:
            try:
                fd = self._open()
                size = os.fstat(fd).st_size
                return size == offset and _journal_tag(os.pread(fd, _JOURNAL_HEAD, 0)) == tag
            except OSError:
                return False


class _Unjournaled(Exception):
    """The journal cannot be read or written: the listing does without the index."""


def _journal_head() -> bytes:
    """A new journal's header: the magic, a new tag ending in this boot's, a newline."""
    return _JOURNAL_MAGIC + (uuid.uuid4().hex + _boot_tag()).encode("ascii") + b"\n"


def _boot_tag() -> str:
    """16 hex digits naming this boot, which end the tag of a journal emptied in it."""
    return hashlib.sha256(_boot_id().encode()).hexdigest()[:16]


def _journal_tag(head: bytes) -> str | None:
    """The tag in a journal's header, ``None`` if it is not a good header."""
    if len(head) != _JOURNAL_HEAD or not head.startswith(_JOURNAL_MAGIC) or head[-1:] != b"\n":
        return None
    tag = head[len(_JOURNAL_MAGIC) : -1]
    return tag.decode("ascii") if _HEX.issuperset(tag) else None


def _close_logs(open_logs: dict[_RunLog, None], lock: threading.Lock) -> None:
    """Close the descriptors a handle keeps open (also run when the handle is collected)."""
    with lock:
        logs = builtins.list(open_logs)
        open_logs.clear()
    for log in logs:
        with log.lock:
            log.close()


class FileStore:
    """The file store: runs as append-only logs of frames under ``root`` (see the module docs).

    Implements ``pausegraph.checkpointers.Store`` on bytes; ``FileCheckpointer``
    is this store under a ``StoreCheckpointer``. Any number of handles, in any
    number of processes, may share one ``root``. ``append`` writes without
    ``fsync``; ``sync`` fsyncs every log this handle appended to since its
    last ``sync``.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(store_path(root, "FileCheckpointer(root)"))
        self._runs_dir = self.root / "runs"
        self._tmp_dir = self.root / "tmp"
        self._runs_path = str(self._runs_dir)
        self._tmp_path = str(self._tmp_dir)
        # by (workflow id, run id), least recently used first; at most _MAX_INDEXED
        self._logs: dict[tuple[str, str], _RunLog] = {}
        # log file name -> ids, for runs(); at most _MAX_INDEXED
        self._headers: dict[str, tuple[str, str]] = {}
        self._open: dict[_RunLog, None] = {}  # logs with an open fd, oldest first
        # logs appended to since the last sync() -> the end of the log before the first
        self._unsynced: dict[_RunLog, int] = {}
        # failed syncs, which cut back what they could not make durable (see sync): a call
        # that saw it move checks that what it saved is still there (Runner)
        self.takebacks = 0
        # held by a sync from its start to its end (a take-back included): a sync that
        # waits for one under way sees its outcome (takebacks) before it says that the
        # appends it did not sync itself are durable; re-entrant, for a log handler
        self._syncing = threading.RLock()
        self._lock = threading.Lock()  # guards the four dicts and _deletes
        self._deletes = 0  # deletes through this handle: see _find
        # the damaged logs of the last runs() listing, for damaged() right after it
        self._damaged: builtins.list[tuple[str, str]] | None = None
        self._open_store()
        self._index = _Index(str(self.root / _INDEX_NAME))
        self._journal = _Journal(str(self.root / _JOURNAL_NAME), self._tmp_path)
        # every summary of the index, once this handle lists a second time: (epoch and
        # drops of the index, gen read up to, summaries by log name); see _selected
        self._kept: tuple[tuple[str | None, str | None], int, dict[str, RunSummary]] | None = None
        self._listed = False
        weakref.finalize(self, _close_logs, self._open, self._lock)
        weakref.finalize(self, self._journal.close)

    def __repr__(self) -> str:
        return f"<FileStore {str(self.root)!r}>"

    def close(self) -> None:
        """Close the files this handle keeps open; it reopens them if used again."""
        _close_logs(self._open, self._lock)
        self._index.close()
        self._journal.close()

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
                try:
                    fd = self._publish(str(marker), _MARKER)
                except _Unpublished as exc:
                    raise exc.error from None
                if fd is not None:
                    os.close(fd)
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
            if (
                first == _MARKER.partition(b"\n")[0]
                and version.isdigit()
                and int(version) != FORMAT_VERSION  # this format, but damaged: said below
            ):
                hint = (
                    "upgrade pausegraph"
                    if int(version) > FORMAT_VERSION
                    else "finish its runs with the pausegraph that made it"
                )
                msg = (
                    f"{str(root)!r} is a store of format {int(version)}; this pausegraph reads "
                    f"format {FORMAT_VERSION}: {hint}"
                )
                raise CorruptCheckpointError(msg)
            msg = (
                f"{str(marker)!r} is corrupt: it should read {_MARKER!r}. If {str(root)!r} is "
                "a pausegraph store, rewrite that file with that content"
            )
            raise CorruptCheckpointError(msg)

    def _publish(self, path: str, content: bytes) -> int | None:
        """Create ``path`` holding ``content`` atomically; ``None`` if it already exists.

        The file is written whole and fsynced in ``tmp/``, hard-linked into
        place (``link`` refuses an existing name, so two creators cannot
        overwrite each other) and its directory fsynced: no one ever sees the
        file without all of ``content``. Returns a read-write descriptor on
        the new file, which the caller closes.
        """
        tmp = os.path.join(self._tmp_path, f"{uuid.uuid4().hex}.tmp")
        try:
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as exc:
            raise _Unpublished(exc, kept=False) from exc
        try:
            try:
                _write_all(fd, content, 0)
                os.fsync(fd)
                os.link(tmp, path)
            finally:
                os.unlink(tmp)
        except FileExistsError:
            os.close(fd)
            return None
        except OSError as exc:
            os.close(fd)
            raise _Unpublished(exc, kept=False) from exc
        except BaseException:
            os.close(fd)
            raise
        try:
            _fsync_dir(os.path.dirname(path))
        except OSError as exc:
            # linked but not durable: take the name back, unless someone already
            # appended to the file (then it is theirs too, and it stays)
            kept = _unlink_if_alone(fd, path, len(content))
            os.close(fd)
            raise _Unpublished(exc, kept=kept) from exc
        except BaseException:
            os.close(fd)
            raise
        return fd

    # --- the protocol ---------------------------------------------------------

    # --- the protocol ---------------------------------------------------------

    def append(self, info: FrameInfo, frame: bytes, summary: RunSummary) -> None:
        """Append frame ``info.seq`` and the run's summary as one record; no ``fsync`` (``sync``).

        Raises ``ConflictError`` (writing nothing) if the run already has that
        seq, ``CheckpointError`` if the seq skips one or the write fails.
        """
        ids = (summary.workflow_id, summary.run_id)
        if len(frame) > _MAX_LEN:
            msg = f"checkpoint {info.seq} of run {ids[1]!r} is over 4 GiB encoded"
            raise CheckpointError(msg)
        meta = _meta(info, summary)
        record = _record(meta, frame)
        entry_info = _sized(info, len(frame))
        log = self._used(ids)
        path = log.path if log is not None else os.path.join(self._runs_path, _log_name(*ids))
        try:
            for again in (False, True):
                if log is None:
                    log = self._create(ids, info.seq, path)
                try:
                    self._append_to(log, record, meta, entry_info, summary)
                    return
                except FileNotFoundError as exc:
                    # the log was deleted behind this handle's back: no run. The handle
                    # forgets it, and a save of seq 1 starts the run again (O_EXCL)
                    with log.lock:
                        self._forget(log)
                    if again or info.seq != 1:
                        raise _os_error(exc, path) from exc
                    log = None
        except CheckpointError:
            raise
        except OSError as exc:
            raise _os_error(exc, path) from exc

    def _append_to(
        self, log: _RunLog, record: bytes, meta: bytes, info: FrameInfo, summary: RunSummary
    ) -> None:
        """``append``'s work on the run's log, under its exclusive ``flock``.

        ``FileNotFoundError`` (nothing written) if the log is gone. What
        ``_locked`` and ``_touching`` do, written out: every save goes
        through here, and their context managers cost more than the
        syscalls they make. The seq is checked before the journal entry is
        written, so a refused append leaves no note behind.
        """
        ids, path = log.ids, log.path
        journal = self._journal
        with log.lock:
            fd = self._flocked(log, fcntl.LOCK_EX, write=True)
            try:
                size = self._refresh(log, fd)
                count = len(log.entries)
                if info.seq != count + 1:
                    refuse_seq(ids[0], ids[1], info.seq, count)
                start = log.end  # 0: the log has no header yet (see _create)
                header = b"" if start else _log_header(log.packed_ids)
                data = header + record
                if size > start:
                    # a torn tail, a save that never finished (no reader takes it for a
                    # record), cut before the entry: one killed after its entry then
                    # leaves a size other than its note's, never one a torn tail matches
                    os.ftruncate(fd, start)
                note = None
                if len(meta) <= _NOTE_MAX:
                    ino = log.file_id[1]
                    note = (start + len(data), time.time_ns(), ino, log.packed_ids, meta)
                try:
                    held = journal.enter(log.name, note)
                except OSError as exc:
                    raise _os_error(exc, journal.path) from exc
                try:
                    try:
                        _write_all(fd, data, start)
                    except OSError as exc:
                        seqs = (info.seq, info.seq)
                        raise _unsaved(ids, seqs, path, exc, self._cut(fd, log)) from exc
                finally:
                    journal.leave(held)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
            if header:
                log.reset(len(header))
                self._remember_header(log.name, ids)
            at = log.end
            self._add(log, _Entry(at, at + len(record), info), summary)
            with self._lock:
                self._unsynced.setdefault(log, start)

    def _create(self, ids: tuple[str, str], seq: int, path: str) -> _RunLog:
        """This handle's index of a run it has none of; for seq 1, its log is created if missing.

        The log is created empty, in place, with ``O_CREAT | O_EXCL``: no
        temporary file, no ``fsync`` here. ``append`` then writes the header
        and the first record with one write under the exclusive ``flock``,
        and ``sync`` fsyncs the log and ``runs/``. A log with no complete
        header (empty, cut short inside its header, or all zero bytes: its
        creator died or lost power before its first write ended) reads as no
        run, and the next save of seq 1 writes it from byte 0, so a crash
        here never leaves a run with wrong content. A seq other than 1 for a
        run with no log is refused.
        """
        if seq != 1:
            if not _exists(path):
                refuse_seq(ids[0], ids[1], seq, 0)
            return self._known(path, ids)
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(path, flags, 0o644)
        except FileExistsError:
            return self._known(path, ids)  # someone else's, or a dead creator's: see append
        except OSError as exc:
            raise _unsaved(ids, (1, 1), path, exc, False) from exc
        log = _RunLog(path, os.path.basename(path), ids)
        with log.lock:
            try:
                st = os.fstat(fd)
            except BaseException:
                os.close(fd)
                raise
            log.fd, log.pid, log.file_id = fd, os.getpid(), (st.st_dev, st.st_ino)
            log.writable = True
            known = self._remember(ids, log)
            if known is not log:  # another thread of this handle indexed the run first
                log.close()
                return known
            self._opened(log)
        return log

    def _cut(self, fd: int, log: _RunLog) -> bool:
        """Take back a failed append (exclusive ``flock`` held); whether something stays.

        A log that had no header yet is removed again (a new run leaves no
        file behind); otherwise it is cut back to ``log.end``.
        """
        if log.end:
            return _cut(fd, log)
        try:
            os.ftruncate(fd, 0)
        except OSError:
            log.file_id = (0, 0)
            return True
        try:
            os.unlink(log.path)  # under the flock, and _locked checked it is this file
        except OSError:
            return False  # an empty log: no run
        self._drop(log)
        return False

    def _forget(self, log: _RunLog) -> None:
        """``_drop`` ``log`` and close its descriptor now: its file is gone (``log.lock`` held)."""
        log.close()
        with self._lock:
            self._open.pop(log, None)
        self._drop(log)

    def _drop(self, log: _RunLog) -> None:
        """Forget ``log`` (its file was removed); its descriptor is closed among the open logs."""
        log.file_id = (0, 0)
        with self._lock:
            if self._logs.get(log.ids) is log:
                del self._logs[log.ids]
            self._unsynced.pop(log, None)

    def frames(self, workflow_id: str, run_id: str) -> builtins.list[FrameInfo]:
        """Every frame's ``FrameInfo`` of a run, oldest first (``[]`` if none)."""
        log = self._find(workflow_id, run_id)
        if log is None:
            return []
        with log.lock:
            if self._guarded(log, lambda: self._catch_up(log), gone=lambda: -1) < 0:
                return []  # deleted behind this handle's back: no run
            return [entry.info for entry in log.entries]

    def read(self, workflow_id: str, run_id: str, first: int, last: int) -> builtins.list[bytes]:
        """The frames from seq ``first`` to ``last``, each checked against its checksum."""
        log = self._find(workflow_id, run_id)
        if log is None:
            return []

        def read() -> builtins.list[bytes]:
            fd = self._catch_up(log)
            entries = log.entries[max(first, 1) - 1 : max(last, 0)]
            try:
                return _read_frames(log.path, fd, entries)
            except CorruptCheckpointError:
                # this handle's index may be stale rather than the file damaged: a record
                # cut back (a failed fsync) and written again to the same size. Once, afresh
                log.close()
                fd = self._catch_up(log)
                return _read_frames(log.path, fd, log.entries[max(first, 1) - 1 : max(last, 0)])

        with log.lock:
            return self._guarded(log, read, gone=builtins.list)  # deleted meanwhile: none

    def corrupt_frame(self, workflow_id: str, run_id: str, seq: int, why: str) -> CheckpointError:
        """The error for frame ``seq`` whose checked bytes do not decode, naming its file."""
        log = self._find(workflow_id, run_id)
        if log is None or not 1 <= seq <= len(log.entries):
            path = os.path.join(self._runs_path, _log_name(workflow_id, run_id))
            return _corrupt(path, 0, why)
        return _corrupt(log.path, log.entries[seq - 1].at, why)

    def runs(
        self, *, workflow_id: str | None = None, status: str | None = None
    ) -> builtins.list[RunSummary]:
        """The latest summary of every run with a checkpoint, filtered, from the index.

        A log whose file differs from what the index says of it (or that the
        index lacks) is read again; a log that cannot be read (damaged,
        unreadable, not a regular file) is left out, so one bad run never
        hides the others: ``damaged()`` lists those, and reading such a run
        raises the error that says why.
        """
        found, self._damaged = self._listing(workflow_id, status)
        return found

    def damaged(self) -> builtins.list[tuple[str, str]]:
        """``(file name, reason)`` for each log in ``runs/`` that ``runs()`` leaves out.

        ::

            for name, why in store.damaged():
                print(f"runs/{name}: {why}")

        A log is damaged when it cannot be opened or read, is not a regular
        file (a directory, a FIFO, a symbolic link), has a header or a record
        that fails its checks, or is named for another run than the one its
        header holds (a copy of another run's log). Right after ``runs()``
        it answers from that listing (one pass over the logs for both);
        otherwise it lists afresh.
        """
        damaged, self._damaged = self._damaged, None
        return self._listing()[1] if damaged is None else damaged

    def _listing(
        self, workflow_id: str | None = None, status: str | None = None
    ) -> tuple[builtins.list[RunSummary], builtins.list[tuple[str, str]]]:
        """Each run's summary (filtered) and the logs that could not be listed, with why.

        From the index, brought up to date first (``_indexed``); if the index
        cannot be written (busy past SQLite's timeout, read-only), from every
        log's ``stat`` and the rows whose stamp still matches (``_scanned``).
        """
        for _ in range(2):
            try:
                return self._indexed(workflow_id, status)
            except sqlite3.OperationalError:
                break  # busy, locked, read-only: not damage
            except sqlite3.DatabaseError:
                self._index.reset()  # not a database, or a damaged one: rebuilt from the logs
            except sqlite3.Error:
                break
            except _Unjournaled:
                break
        found, damaged = self._scanned()
        return [
            s
            for s in found
            if (workflow_id is None or s.workflow_id == workflow_id)
            and (status is None or s.status == status)
        ], damaged

    def _indexed(
        self, workflow_id: str | None, status: str | None
    ) -> tuple[builtins.list[RunSummary], builtins.list[tuple[str, str]]]:
        """The listing from the index, after reading again each log that may have changed.

        The index's ``facts`` say what it is up to date with: the boot, the
        journal (its tag and the offset consumed) and ``runs/`` (a stamp of
        the directory). When all three still hold, the rows are the truth
        and nothing else is read. Otherwise, under SQLite's write lock: the
        journal's new names are read again, and, if the directory changed,
        every log whose name or inode the index does not have; if the
        journal or the boot cannot be trusted, every log is checked as
        before the journal (``_checked_all``). Damaged logs are checked at
        every listing, as they were.
        """
        boot = _boot_id()
        runs_dir = self._runs_path
        with self._index.session(write=False) as db:
            facts = dict(db.execute("SELECT key, value FROM facts").fetchall())
            tag, _, offset = facts.get("journal", "").partition(":")
            if (
                facts.get("boot") == boot
                and facts.get("dir")
                and offset.isdigit()
                and facts["dir"] == _dir_stamp(_stat_dir(runs_dir), time.time_ns())
                and self._journal.settled(tag, int(offset))
                and db.execute("SELECT 1 FROM runs WHERE seq < 0 LIMIT 1").fetchone() is None
            ):
                return self._selected(db, workflow_id, status), []
        with self._index.session(write=True) as db:
            self._index.next_gen(db)
            facts = dict(db.execute("SELECT key, value FROM facts").fetchall())
            tag, _, offset = facts.get("journal", "").partition(":")
            try:
                start = int(offset) if offset.isdigit() else 0
                names, tag, end = self._journal.consume(tag, start, runs_dir)
            except OSError:
                raise _Unjournaled from None  # a read-only store, say: listed without the index
            # the directory's stamp is taken before it is listed: a change after is seen next time
            dir_st = _stat_dir(runs_dir)
            inodes: dict[str, int] = {}  # of the logs runs/ has that the index has not
            if names is None or (facts.get("journal") and facts.get("boot") != boot):
                self._checked_all(db)
            else:
                known: dict[str, int] | None = None
                if facts.get("dir") != _dir_stamp(dir_st, time.time_ns()) or not facts.get("dir"):
                    listed = _listed_logs(runs_dir)
                    known = dict(db.execute("SELECT name, ino FROM runs").fetchall())
                    inodes = {n: ino for n, ino in listed.items() if known.get(n) != ino}
                    for name in inodes:
                        names.setdefault(name, None)
                    self._index.delete(db, [n for n in known if n not in listed])
                for (name,) in db.execute("SELECT name FROM runs WHERE seq < 0"):
                    names[name] = None  # a damaged log is read whole again, note or not
                if known is None and any(note is not None for note in names.values()):
                    known = dict(db.execute("SELECT name, ino FROM runs").fetchall())
                noted, unnoted = [], []
                for name in sorted(names):
                    note, ino = names[name], inodes.get(name)
                    row = None
                    if note is not None and known is not None:
                        row = self._noted(name, note, known.get(name) if ino is None else ino)
                    if row is None:
                        unnoted.append(name)
                    else:
                        noted.append(row)
                self._index.put(db, *noted)
                for name in unnoted:
                    self._reindex(db, name, inodes.get(name))
            fresh = {"boot": boot, "journal": f"{tag}:{end}"}
            fresh["dir"] = _dir_stamp(dir_st, time.time_ns())
            db.executemany("INSERT OR REPLACE INTO facts VALUES (?, ?)", fresh.items())
            damaged = db.execute("SELECT name, status FROM runs WHERE seq < 0 ORDER BY name")
            damaged_logs = [(name, why) for name, why in damaged.fetchall()]
            return self._selected(db, workflow_id, status), damaged_logs

    def _selected(
        self, db: sqlite3.Connection, workflow_id: str | None, status: str | None
    ) -> builtins.list[RunSummary]:
        """The summaries of the rows of runs with a checkpoint, filtered, by log name.

        A handle that lists again keeps every summary (``_kept``) and reads
        only the rows written since (each carries the ``gen`` of the listing
        that wrote it); rows dropped, or another index (``epoch``), make it
        read them all again.
        """
        facts = dict(db.execute("SELECT key, value FROM facts").fetchall())
        key, gen = (facts.get("epoch"), facts.get("drops")), int(facts.get("gen") or 0)
        kept = self._kept
        if kept is not None and kept[0] == key:
            if kept[1] != gen:
                by_name, grown = kept[2], False
                for name, *cells in db.execute(_SUMMARY_ROWS + " WHERE gen > ?", (kept[1],)):
                    if cells[2] > 0:
                        grown |= name not in by_name
                        by_name[name] = _summary_of_row(cells)
                    else:
                        by_name.pop(name, None)
                if grown:
                    by_name = dict(sorted(by_name.items()))
                kept = self._kept = (key, gen, by_name)
        elif self._listed:
            rows = db.execute(_SUMMARY_ROWS + " WHERE seq > 0 ORDER BY name").fetchall()
            kept = self._kept = (key, gen, {row[0]: _summary_of_row(row[1:]) for row in rows})
        else:
            self._listed = True  # a CLI call lists once: only the rows it shows
            query = _SUMMARY_ROWS + " WHERE seq > 0"
            args: builtins.list[Any] = []
            if workflow_id is not None:
                query += " AND workflow_id = ?"
                args.append(_id_cell(workflow_id))  # stored the same way, TEXT or bytes
            if status is not None:
                query += " AND status = ?"
                args.append(status)
            rows = db.execute(query + " ORDER BY name", args).fetchall()
            if db.execute(_BYTES_IDS).fetchone() is None:  # every id is TEXT: no decoding
                return builtins.list(itertools.starmap(RunSummary, (row[1:] for row in rows)))
            return [_summary_of_row(row[1:]) for row in rows]
        return [
            s
            for s in kept[2].values()
            if (workflow_id is None or s.workflow_id == workflow_id)
            and (status is None or s.status == status)
        ]

    def _checked_all(self, db: sqlite3.Connection) -> None:
        """Check every log as before the journal: a row is kept while its stamp matches."""
        rows = {row[0]: row for row in db.execute("SELECT name, stamp FROM runs")}
        for name, st in self._stat_logs():
            row = rows.pop(name, None)
            if row is not None and _stamp_holds(row[1], st):
                continue
            self._reindex(db, name)
        self._index.delete(db, rows)
        # the inodes the directory gives (d_ino), which the next listings compare with
        inodes = [(ino, name) for name, ino in _listed_logs(self._runs_path).items()]
        db.executemany("UPDATE runs SET ino = ? WHERE name = ? AND seq >= 0", inodes)

    def _reindex(self, db: sqlite3.Connection, name: str, ino: int | None = None) -> None:
        """Read the log ``name`` again and write its row (a damaged row, or none if it is gone).

        The row keeps the inode ``runs/`` gave for the file (``ino``; else the
        one it had; else ``fstat``'s): what the next listing compares with
        ``d_ino``, which some file systems (overlayfs) give other than ``st_ino``.
        """
        try:
            row = self._verify(name)
        except CheckpointError as exc:
            try:
                os.lstat(os.path.join(self._runs_path, name))
            except FileNotFoundError:
                row = None  # deleted meanwhile: no run, not damage
            except OSError:
                row = _damaged_row(name, str(exc))
            else:
                row = _damaged_row(name, str(exc))
        if row is None:
            self._index.delete(db, [name])
            return
        if row[5] >= 0:
            if ino is None:
                had = db.execute("SELECT ino FROM runs WHERE name = ? AND seq >= 0", (name,))
                ino = next(iter(had.fetchone() or ()), None)
            if ino is not None:
                row = (*row[:2], ino, *row[3:])
        self._index.put(db, row)

    @staticmethod
    def _noted(name: str, noted: _Noted, ino: int | None) -> _Row | None:
        """The row a journal note gives the log ``name``; ``None`` if it must be read instead.

        The note holds only if the log (its ``lstat`` taken with the journal
        held: ``_Journal.consume``) is still the regular file the noted
        append wrote to, of the size it gave it, last modified no later than
        ``_RACY_NS`` after the note was written and at least that long ago:
        an append that did not finish, or any change after it, leaves
        another size or file (or a later entry without a note), and a change
        by hand a later mtime. ``ino``: the inode ``runs/`` gave, or the
        row's (see ``_reindex``).
        """
        (size, time_ns, note_ino, packed_ids, meta), st = noted
        now = time.time_ns()
        if (
            not stat.S_ISREG(st.st_mode)
            or st.st_size != size
            or st.st_ino != note_ino
            or st.st_mtime_ns > time_ns + _RACY_NS
            or now - st.st_mtime_ns < _RACY_NS
        ):
            return None
        if hashlib.sha256(packed_ids).hexdigest() + ".log" != name:
            return None  # not the ids the log is named for
        try:
            wf, run = _unpack_bounded(packed_ids, items=2)
            ids = (_id_str(wf), _id_str(run))
            info, (status, updated_ms, deadline_ms, data) = _decode_meta(name, 0, meta, 0)
        except (ValueError, TypeError, msgpack.UnpackException, CorruptCheckpointError):
            return None
        return (
            name, _stamp(st, now), st.st_ino if ino is None else ino, _id_cell(ids[0]),
            _id_cell(ids[1]), info.seq, status, updated_ms, deadline_ms, data,
        )  # fmt: skip

    def _scanned(self) -> tuple[builtins.list[RunSummary], builtins.list[tuple[str, str]]]:
        """The listing when the index cannot be written: one ``stat`` per log, nothing written.

        A row is trusted only if it was written this boot and its stamp
        matches the file; any other log is read again.
        """
        rows, this_boot = self._index.rows()
        found, damaged = [], []
        for name, st in self._stat_logs():
            row = rows.get(name)
            if this_boot and row is not None and _stamp_holds(row[1], st):
                if row[5] > 0:
                    found.append(_summary_of_row(row[3:10]))
                continue
            try:
                read = self._verify(name)
            except CheckpointError as exc:
                damaged.append((name, str(exc)))
                continue
            if read is not None and read[5] > 0:
                found.append(_summary_of_row(read[3:]))
        return found, damaged

    def _stat_logs(self) -> builtins.list[tuple[str, os.stat_result]]:
        """Each log's name and ``lstat``, by name (one ``stat`` each, relative to ``runs/``).

        A log removed between the listing of ``runs/`` and its ``lstat`` (a
        run deleted meanwhile) is no run any more, and is left out.
        """
        found = []
        try:
            dir_fd = os.open(self._runs_path, os.O_RDONLY | os.O_DIRECTORY)
            try:
                lstat = os.stat
                for name in os.listdir(dir_fd):
                    if name.endswith(".log"):
                        with contextlib.suppress(FileNotFoundError):
                            found.append((name, lstat(name, dir_fd=dir_fd, follow_symlinks=False)))
            finally:
                os.close(dir_fd)
        except OSError as exc:
            raise _os_error(exc, self._runs_dir) from exc
        found.sort()
        return found

    def _verify(self, name: str) -> _Row | None:
        """Read the log ``name`` (checking it as a save would), index it, return its row.

        ``None`` if it was deleted before it could be opened.
        """
        path = os.path.join(self._runs_path, name)
        ids = self._headers.get(name)
        if ids is None:
            try:
                ids = self._header_of(path)
            except _NoHeader:
                return None  # its creator's first write never finished: no run
        if _log_name(*ids) != name:
            msg = (
                f"{path!r} is corrupt: its header names run {ids[1]!r} of workflow "
                f"{ids[0]!r}, whose log is another file"
            )
            raise CorruptCheckpointError(msg)
        log = self._find(*ids, listing=True)
        if log is None:
            return None

        def look() -> _Row | None:
            # the file's state is taken before its records are read, so a row never
            # claims a state newer than its summary (an append meanwhile: a mismatch)
            fd = self._fd(log)
            st = os.fstat(fd)
            # cut back since this handle indexed it, maybe written again to the same size
            # (a failed fsync's cut, then the same seq saved again): start afresh
            if st.st_size < log.end or not _tail_holds(log, fd, st.st_size):
                log.close()
                st = os.fstat(self._fd(log))
            self._catch_up(log)
            return _row(log, st)

        with log.lock:
            try:
                return self._guarded(log, look, gone=lambda: None)
            finally:
                with self._lock:
                    kept = self._logs.get(ids) is log or log in self._unsynced
                    if not kept:  # the listing's own (see _find): closed now
                        self._open.pop(log, None)
                if not kept:
                    log.close()

    def _header_of(self, path: str) -> tuple[str, str]:
        """The ids in the header of the log at ``path``, remembered for ``runs()``."""
        try:
            fd, _ = _open_log(path, os.O_RDONLY)
            try:
                ids, _ = _read_header(path, fd)
            finally:
                os.close(fd)
        except CheckpointError:
            raise
        except OSError as exc:
            raise _os_error(exc, path) from exc
        self._remember_header(os.path.basename(path), ids)
        return ids

    # --- durability -------------------------------------------------------------

    def sync(self) -> None:
        """``fsync`` every log this handle appended to since its last ``sync``; then ``runs/``.

        ``runs/`` is fsynced too (once) if one of those logs is new to this
        handle since its last such ``fsync``: a log it created, or one another
        handle created and may not have synced yet, so that the log's name is
        as durable as its bytes. A log whose ``fsync`` fails is cut back to
        where it was before this handle's unsynced appends (a log this handle
        created is removed), unless another writer appended after them, so
        nothing that may not be on disk stays readable, and
        ``CheckpointError`` names the OS error.
        """
        with self._syncing:  # one at a time: see _syncing
            self._sync_now()

    def _sync_now(self) -> None:
        """``sync``'s work, ``_syncing`` held."""
        with self._lock:
            pending, self._unsynced = self._unsynced, {}
        failure: CheckpointError | None = None
        named: builtins.list[tuple[_RunLog, int]] = []  # logs whose name needs runs/ synced
        marks: builtins.list[tuple[_RunLog, Mark | None]] = []
        for log, start in pending.items():
            try:
                needs_dir, mark = self._sync_log(log, start)
            except CheckpointError as exc:
                failure = failure or exc
                continue
            if needs_dir:
                named.append((log, start))
            marks.append((log, mark))
        if named:
            try:
                _fsync_dir(self._runs_path)
            except OSError as exc:
                for log, start in named:
                    with log.lock:
                        error = self._unsynced_error(log, start, exc)
                    failure = failure or error
                marks = [(log, mark) for log, mark in marks if log.dir_synced]
            else:
                for log, _ in named:
                    log.dir_synced = True
        for log, mark in marks:  # durable, name and all: the lock file may say so (_mark)
            if mark is not None:
                log.synced = mark
        if failure is not None:
            with self._lock:
                self.takebacks += 1
            raise failure

    def _sync_log(self, log: _RunLog, start: int) -> tuple[bool, Mark | None]:
        """``fsync`` the log: whether ``runs/`` needs an ``fsync`` for its name too, and
        the sync mark of what this made durable (``None``: nothing)."""
        with log.lock:
            try:
                fd = self._fd(log, write=True)
            except FileNotFoundError:
                return False, None  # deleted since: nothing of it needs to last
            except OSError as exc:
                raise _os_error(exc, log.path) from exc
            try:
                os.fsync(fd)
            except OSError as exc:
                raise self._unsynced_error(log, start, exc) from exc
            entries = log.entries
            mark = (log.file_id[1], entries[0].info.timestamp_ms, len(entries)) if entries else None
            return not log.dir_synced, mark

    def _unsynced_error(self, log: _RunLog, start: int, exc: OSError) -> CheckpointError:
        """Cut back the appends from ``start`` that failed to sync with ``exc``; the error.

        ``log.lock`` held.
        """
        seqs = [e.info.seq for e in log.entries if e.at >= start] or [0]
        try:
            kept = self._cut_unsynced(log, self._fd(log, write=True), start)
        except OSError:
            kept = True
        return _unsaved(log.ids, (seqs[0], seqs[-1]), log.path, exc, kept)

    def _cut_unsynced(self, log: _RunLog, fd: int, start: int) -> bool:
        """Cut the log back to ``start`` after a failed ``fsync``; whether something stays."""
        kept = True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                if self._current(log) and os.fstat(fd).st_size == log.end:
                    with self._touching(log.name):
                        os.ftruncate(fd, start)
                        kept = False
                        if not start:  # this handle created it: a new run leaves no file behind
                            os.unlink(log.path)
                            self._drop(log)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        except (OSError, CheckpointError):  # the flock, the journal or the cut failed: it stays
            pass
        log.file_id = (0, 0)  # index the file afresh before using it again
        # a sync by another thread may have marked records this cut took back: the lock
        # file keeps the mark it had before this call (hold_file's carried one)
        log.synced = None
        return kept

    # --- the live lock and deleting ------------------------------------------

    def _lock_path(self, workflow_id: str, run_id: str) -> str:
        return os.path.join(self._runs_path, _lock_name(workflow_id, run_id))

    def lock(self, workflow_id: str, run_id: str) -> contextlib.AbstractContextManager[None]:
        """Hold the run's live lock (an exclusive ``flock`` on ``runs/<hash>.lock``).

        Raises ``ConflictError`` naming the holder (pid, host, since) if a
        live process, this one included, holds it. The kernel releases it
        when the holder dies.
        """
        path = self._lock_path(workflow_id, run_id)
        log = os.path.join(self._runs_path, _log_name(workflow_id, run_id))
        return hold_file(
            path, workflow_id, run_id, lambda: _exists(log), lambda: self._mark(workflow_id, run_id)
        )

    def _mark(self, workflow_id: str, run_id: str) -> Mark | None:
        """The sync mark of the run's log, if this handle synced the file now at its path."""
        with self._lock:
            log = self._logs.get((workflow_id, run_id))
        mark = None if log is None else log.synced
        if mark is None:
            return None
        try:
            if os.stat(log.path, follow_symlinks=False).st_ino != mark[0]:  # type: ignore[union-attr]
                return None  # deleted and made again behind this handle's open descriptor
        except OSError:
            return None
        return mark

    def holder(self, workflow_id: str, run_id: str) -> Holder | None:
        """Who holds the run's live lock, or ``None`` if no live process does."""
        return file_holder(self._lock_path(workflow_id, run_id))

    def held_among(self, runs: builtins.list[tuple[str, str]]) -> set[tuple[str, str]]:
        """The runs among ``runs`` whose live lock a live process holds (``files_held``)."""
        by_name = {_lock_name(w, r): (w, r) for w, r in runs}
        return {by_name[name] for name in files_held(self._runs_path, by_name)}

    def delete(self, workflow_id: str, run_id: str) -> None:
        """Remove a run's log (nothing if it has none); its lock file and index row go too."""
        name = _log_name(workflow_id, run_id)
        with self._lock:
            self._deletes += 1  # a listing that looked before does not remember the run again
            log = self._logs.pop((workflow_id, run_id), None)
            self._headers.pop(name, None)
            if log is not None:
                self._open.pop(log, None)
                self._unsynced.pop(log, None)
        if log is not None:
            with log.lock:
                log.close()
        lock = self._lock_path(workflow_id, run_id)
        with self._touching(name):
            with contextlib.suppress(FileNotFoundError):
                # the sync mark goes first: one left behind by a delete killed halfway
                # would hold a run started again under this id to the old log's records
                os.truncate(lock, 0)
            for path in (os.path.join(self._runs_path, name), lock):
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    raise _os_error(exc, path) from exc
        self._index.drop([name])
        try:
            _fsync_dir(self._runs_path)
        except OSError as exc:
            raise _os_error(exc, self._runs_dir) from exc

    @contextmanager
    def _touching(self, name: str) -> Iterator[None]:
        """Name the log ``name`` in the journal while the block modifies it (``_Journal``).

        Every change of a log's file other than its creation (which listings
        see in ``runs/``) happens inside this block. Raises
        ``CheckpointError`` (nothing modified) if the journal cannot say so.
        """
        with contextlib.ExitStack() as stack:
            try:
                stack.enter_context(self._journal.touching(name))
            except OSError as exc:
                raise _os_error(exc, self._journal.path) from exc
            yield

    # --- reading --------------------------------------------------------------

    def _guarded(
        self, log: _RunLog, read: Callable[[], _T], *, gone: Callable[[], _T] | None = None
    ) -> _T:
        """Run ``read`` with OS errors turned into ``CheckpointError`` naming the log.

        If the log is gone (deleted behind this handle's back), the handle
        forgets it, and returns ``gone()`` if given (``log.lock`` held).
        """
        try:
            return read()
        except CheckpointError:
            raise
        except FileNotFoundError as exc:
            self._forget(log)
            if gone is None:
                raise _os_error(exc, log.path) from exc
            return gone()
        except OSError as exc:
            raise _os_error(exc, log.path) from exc

    def _catch_up(self, log: _RunLog) -> int:
        """Index what other handles appended; return the open descriptor (``log.lock`` held).

        When the file is still the one the descriptor was opened on and has
        not grown past what the index covers, nothing new can be there: no
        ``flock`` and no read. Otherwise index the new records under a shared
        ``flock``, so no record is read while a writer is still writing it.
        """
        fd = self._fd(log)
        # (a log with no record yet is looked at each time: see _check_synced)
        if log.entries and self._current(log) and os.fstat(fd).st_size == log.end:
            return fd
        with self._locked(log, fcntl.LOCK_SH) as locked:
            self._refresh(log, locked)
        return log.fd

    # --- the index ------------------------------------------------------------

    def _find(self, workflow_id: str, run_id: str, *, listing: bool = False) -> _RunLog | None:
        """This handle's index of a run, ``None`` if the run has no log.

        For a ``listing``, a run this handle deletes meanwhile is not
        remembered again: the index returned is then the listing's own, kept
        by no one, and the caller closes it when done.
        """
        ids = (workflow_id, run_id)
        log = self._used(ids)
        if log is not None:
            return log
        path = os.path.join(self._runs_path, _log_name(workflow_id, run_id))
        deletes = self._deletes
        try:
            if not _exists(path):
                return None
        except OSError as exc:
            raise _os_error(exc, path) from exc
        log = _RunLog(path, os.path.basename(path), ids)
        return self._remember(ids, log, deletes if listing else None)

    def _known(self, path: str, ids: tuple[str, str]) -> _RunLog:
        """The index of the run whose log is at ``path`` (made, empty, if new to this handle)."""
        return self._remember(ids, _RunLog(path, os.path.basename(path), ids))

    def _used(self, ids: tuple[str, str]) -> _RunLog | None:
        """This handle's index of a run, if it has one, now the most recently used."""
        with self._lock:
            log = self._logs.pop(ids, None)
            if log is not None:
                self._logs[ids] = log
        return log

    def _remember(self, ids: tuple[str, str], log: _RunLog, deletes: int | None = None) -> _RunLog:
        """Keep ``log`` as the run's index unless there is one; forget the oldest beyond the limit.

        Not kept if ``deletes`` is given and this handle deleted a run since
        it was counted (``_find``).

        A forgotten index is rebuilt from the file when its run is used again.
        One still in use by another thread stays valid for that thread (the
        ``flock`` and the re-read under it keep saves right, even with two
        indexes of one run for a moment); its descriptor is closed here when
        it is idle, else later among the open logs.
        """
        forgotten = []
        with self._lock:
            if deletes is not None and deletes != self._deletes:
                return log
            known = self._logs.setdefault(ids, log)
            while len(self._logs) > _MAX_INDEXED:
                forgotten.append(self._logs.pop(next(iter(self._logs))))
        for old in forgotten:
            if old.fd >= 0 and old.lock.acquire(blocking=False):
                try:
                    old.close()
                    with self._lock:
                        self._open.pop(old, None)
                finally:
                    old.lock.release()
        return known

    def _remember_header(self, name: str, ids: tuple[str, str]) -> None:
        with self._lock:
            self._headers.pop(name, None)
            self._headers[name] = ids
            if len(self._headers) > _MAX_INDEXED:
                del self._headers[next(iter(self._headers))]

    def _fd(self, log: _RunLog, *, write: bool = False) -> int:
        """The log's open descriptor (opened if needed, read-write if ``write``); ``log.lock`` held.

        Opening a file other than the one the index describes (the first
        open, or a log replaced since) reads and checks its header and starts
        the index afresh.
        """
        if log.fd >= 0 and log.pid == os.getpid() and (log.writable or not write):
            return log.fd
        # a descriptor inherited through fork shares the parent's flock, and one opened
        # read-only cannot write: replaced by a new one, opened while the old still pins
        # the inode, so that an equal file_id is the same file (see _RunLog)
        pinned = log.fd
        try:
            try:
                (fd, st), writable = _open_log(log.path, os.O_RDWR), True
            except CheckpointError:
                raise
            except OSError as exc:
                if write or exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                    raise
                (fd, st), writable = _open_log(log.path, os.O_RDONLY), False  # we may only read
        except BaseException:
            log.close()
            raise
        if pinned >= 0:
            log.fd = -1
            os.close(pinned)  # in a forked child this closes only the child's copy
        try:
            file_id = (st.st_dev, st.st_ino)
            if file_id != log.file_id:
                log.reset(self._header_end(log, fd))
                log.dir_synced = False
        except BaseException:
            os.close(fd)
            log.close()
            raise
        log.fd, log.pid, log.file_id, log.writable = fd, os.getpid(), file_id, writable
        self._opened(log)
        return fd

    def _header_end(self, log: _RunLog, fd: int) -> int:
        """Where the records of the log open on ``fd`` start; 0 if it has no header yet."""
        try:
            ids, start = _read_header(log.path, fd)
        except _NoHeader:
            return 0
        if ids != log.ids:
            msg = (
                f"{log.path!r} is corrupt: its header names run {ids[1]!r} of workflow "
                f"{ids[0]!r}, not run {log.ids[1]!r} of workflow {log.ids[0]!r}"
            )
            raise CorruptCheckpointError(msg)
        self._remember_header(log.name, ids)
        return start

    def _current(self, log: _RunLog) -> bool:
        """Whether ``log.path`` still names the file ``log.fd`` is open on (not a link to it)."""
        st = os.lstat(log.path)
        return (st.st_dev, st.st_ino) == log.file_id

    def _opened(self, log: _RunLog) -> None:
        """Count ``log`` among the open logs; close the oldest idle ones beyond the limit."""
        with self._lock:
            self._open.pop(log, None)
            self._open[log] = None
            if len(self._open) <= _MAX_OPEN_LOGS:
                return
            for victim in builtins.list(self._open):
                # a log in use by another thread is skipped, never waited for
                if victim is not log and victim.lock.acquire(blocking=False):
                    try:
                        victim.close()
                    finally:
                        victim.lock.release()
                    del self._open[victim]
                    if len(self._open) <= _MAX_OPEN_LOGS:
                        return

    @contextmanager
    def _locked(self, log: _RunLog, how: int, *, write: bool = False) -> Iterator[int]:
        """``flock`` the log (``log.lock`` held), checking under the lock that it is the file.

        A log deleted meanwhile is an ``OSError`` (no such file); one replaced
        is reopened and indexed afresh, so nothing is ever appended to a file
        that no longer has the log's name.
        """
        fd = self._flocked(log, how, write=write)
        try:
            yield fd
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def _flocked(self, log: _RunLog, how: int, *, write: bool = False) -> int:
        """``_locked``'s ``flock`` and check, taken; the caller releases the ``flock``."""
        while True:
            fd = self._fd(log, write=write)
            fcntl.flock(fd, how)
            try:
                if self._current(log):
                    return fd
            except BaseException:
                fcntl.flock(fd, fcntl.LOCK_UN)
                raise
            fcntl.flock(fd, fcntl.LOCK_UN)
            log.close()

    def _add(self, log: _RunLog, entry: _Entry, summary: RunSummary | _Summary) -> None:
        if isinstance(summary, RunSummary):
            summary = (summary.status, summary.updated_ms, summary.deadline_ms, summary.data)
        log.entries.append(entry)
        log.summary = summary
        log.end = entry.end

    def _refresh(self, log: _RunLog, fd: int) -> int:
        """Index the records appended since ``log.end``; return the file size.

        Stops at a torn tail; raises ``CorruptCheckpointError`` at a bad record.
        The log is read a window at a time and each record whose head and meta
        are in the window is checked in memory, its frame skipped. The window
        is ``_WINDOW`` bytes, or ``_PROBE`` after a record whose frame is
        bigger than ``_BIG``: a log of big frames is not read whole, just
        each record's start. A record that does not check, runs past the end
        of the file or has a meta past the window is read on its own by
        ``_read_record``, which decides every torn or damaged record, so
        both ways check the same things and give the same errors.
        """
        size = os.fstat(fd).st_size
        if size < log.end:  # cut back behind this handle (a copy restored in place): afresh
            log.reset(0)
        fresh = not log.entries  # indexed afresh: was it cut short after a sync?
        if not log.end and size:
            start = self._header_end(log, fd)  # a log with no header may have one now
            if start:
                log.reset(start)
        if log.end:
            self._index_from(log, fd, size)
        if fresh:
            self._check_synced(log)
        return size

    def _check_synced(self, log: _RunLog) -> None:
        """``CorruptCheckpointError`` if the log holds fewer records than a sync made durable.

        The run's lock file keeps a mark of what the last sync made durable
        (``hold_file``): fewer records now, in the same run's log (its first
        record's time; any log with no record left), is a log cut short or
        replaced after it was synced, never a save that did not finish,
        which only a record after the mark can be.
        """
        lock = self._lock_path(*log.ids)
        mark = synced_mark(lock)
        if mark is None:
            return
        _, first_ms, records = mark
        entries = log.entries
        if len(entries) >= records:
            return
        # the same run's log: its first record's time (a copy put back by a rename has
        # another inode). With no record left nothing tells, and nothing needs to: the
        # store's delete drops the mark before the log, so only a log removed by hand
        # leaves one behind for a run started again (the message says what to do)
        if entries and entries[0].info.timestamp_ms != first_ms:
            return
        try:
            current = self._current(log)
        except OSError:
            current = False
        if not current:
            return  # deleted (and maybe started again) since it was indexed: not this mark's
        log.reset(0)  # so that every read checks it again, and no save goes on from it
        lock = os.path.basename(lock)
        msg = (
            f"{log.path!r} is corrupt: it holds {len(entries)} checkpoints of run "
            f"{log.ids[1]!r}, and {records} were synced to disk (runs/{lock} says so): it was "
            "cut short or replaced by an older copy after that sync. Restore it from a "
            f"backup; if you restored an older copy (or removed the log) on purpose, remove "
            f"runs/{lock} while no process drives the run"
        )
        raise CorruptCheckpointError(msg)

    def _index_from(self, log: _RunLog, fd: int, size: int) -> None:
        """``_refresh``'s work from ``log.end``: index the records up to ``size``."""
        path = log.path
        entries = log.entries
        buf, buf_at, window = b"", log.end, _WINDOW
        head_size, crc = _HEAD.size, zlib.crc32
        while log.end < size:
            at = log.end
            seq = len(entries) + 1
            pos = at - buf_at
            if pos + head_size > len(buf):
                buf, buf_at, pos = os.pread(fd, min(size - at, window), at), at, 0
            frame_at = -1  # where the frame starts in buf, if the head and meta are there
            if pos + head_size <= len(buf):
                meta_len, frame_len, lengths_crc, meta_crc, frame_crc = _HEAD.unpack_from(buf, pos)
                meta_at = pos + head_size
                if (
                    meta_at + meta_len <= len(buf)
                    and at + head_size + meta_len + frame_len <= size
                    and lengths_crc == crc(buf[pos : pos + _LENGTHS.size])
                ):
                    frame_at = meta_at + meta_len
            if frame_at >= 0:
                meta = buf[meta_at:frame_at]
                if crc(meta) != meta_crc:
                    raise _corrupt(path, at, "its meta fails its checksum")
            else:  # torn, damaged, or past the window: decided record by record
                try:
                    meta, _, frame_len = _read_record(path, fd, at, size, frame=False)
                except _Torn:
                    break
            end = at + head_size + len(meta) + frame_len
            info, summary = _decode_meta(path, at, meta, frame_len)
            if info.seq != seq or (seq == 1 and not info.snapshot):
                raise _corrupt(path, at, f"it holds seq {info.seq} where {seq} belongs")
            if end == size:
                # the last record's frame is checked too: a damaged one must not
                # pass for a torn tail and be cut off by the next save
                if frame_at < 0 or frame_at + frame_len > len(buf):
                    _read_record(path, fd, at, size, frame=True)
                elif crc(memoryview(buf)[frame_at : frame_at + frame_len]) != frame_crc:
                    raise _corrupt(path, at, "its frame fails its checksum")
            entries.append(_Entry(at, end, info))
            log.summary = summary
            log.end = end
            window = _PROBE if frame_len > _BIG else _WINDOW

    @staticmethod
    def _read_frame(path: str, fd: int, entry: _Entry) -> bytes:
        """Read and check again (the file may have changed since it was indexed)."""
        try:
            _, data, _ = _read_record(path, fd, entry.at, entry.end, frame=True)
        except _Torn:
            raise _corrupt(path, entry.at, "the file was cut short after it was written") from None
        if len(data) != entry.info.size:
            raise _corrupt(path, entry.at, "it was altered after it was indexed")
        return data


def _tail_holds(log: _RunLog, fd: int, size: int) -> bool:
    """Whether the last record ``log`` indexed still says what it said (one read of its meta)."""
    if not log.entries:
        return True
    last = log.entries[-1]
    try:
        meta, _, frame_len = _read_record(log.path, fd, last.at, size, frame=False)
        info, summary = _decode_meta(log.path, last.at, meta, frame_len)
    except (_Torn, CorruptCheckpointError):
        return False
    return (info, summary) == (last.info, log.summary)


def _read_frames(path: str, fd: int, entries: builtins.list[_Entry]) -> builtins.list[bytes]:
    """The frames of ``entries`` (consecutive records), each checked as ``_read_frame`` does.

    The records are read a window (``_WINDOW`` bytes, or one record if it is
    bigger) at a time and checked in memory: the lengths, the meta's and the
    frame's checksums and the frame's length as indexed. A record that fails
    any of these is read again on its own by ``_read_frame``, which says why.
    """
    frames: builtins.list[bytes] = []
    buf, buf_at = b"", 0
    head_size, lengths_size, crc = _HEAD.size, _LENGTHS.size, zlib.crc32
    for n, entry in enumerate(entries):
        at, end = entry.at, entry.end
        pos = at - buf_at
        if pos < 0 or end - buf_at > len(buf):
            stop = end  # this record, and as many after it as fit in the window
            for later in itertools.islice(entries, n + 1, None):
                if later.end - at > _WINDOW:
                    break
                stop = later.end
            buf, buf_at, pos = os.pread(fd, stop - at, at), at, 0
        data = None
        if end - buf_at <= len(buf):
            meta_len, frame_len, lengths_crc, meta_crc, frame_crc = _HEAD.unpack_from(buf, pos)
            frame_at = pos + head_size + meta_len
            if (
                at + head_size + meta_len + frame_len == end
                and frame_len == entry.info.size
                and lengths_crc == crc(buf[pos : pos + lengths_size])
                and meta_crc == crc(memoryview(buf)[pos + head_size : frame_at])
            ):
                data = buf[frame_at : frame_at + frame_len]
                if crc(data) != frame_crc:
                    data = None
        frames.append(FileStore._read_frame(path, fd, entry) if data is None else data)
    return frames


def _stat_dir(path: str) -> os.stat_result:
    try:
        return os.stat(path)
    except OSError as exc:
        raise _os_error(exc, path) from exc


def _listed_logs(path: str) -> dict[str, int]:
    """Each log's name in the directory ``path`` and its inode (no ``stat``: ``d_ino``)."""
    try:
        with os.scandir(path) as entries:
            return {e.name: e.inode() for e in entries if e.name.endswith(".log")}
    except OSError as exc:
        raise _os_error(exc, path) from exc


def _stat_noted(logs: str, named: dict[str, _Note | None]) -> dict[str, _Noted | None]:
    """``named`` with each noted log's ``lstat`` in the directory ``logs`` (None: not there)."""
    looked: dict[str, _Noted | None] = dict.fromkeys(named)
    try:
        dir_fd = os.open(logs, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return looked
    try:
        for name, note in named.items():
            if note is not None:
                with contextlib.suppress(OSError):
                    looked[name] = (note, os.stat(name, dir_fd=dir_fd, follow_symlinks=False))
    finally:
        os.close(dir_fd)
    return looked


def _exists(path: str) -> bool:
    try:
        os.lstat(path)  # a symbolic link is there, and refused when opened
    except FileNotFoundError:
        return False
    return True


def _open_log(path: str, flags: int) -> tuple[int, os.stat_result]:
    """Open the log at ``path``; refuse anything but a regular file.

    ``O_NONBLOCK`` so that a FIFO in a log's place cannot block the open (it
    does nothing to a regular file), ``O_NOFOLLOW`` so that a symbolic link
    (say to another run's log) is refused rather than followed.
    """
    try:
        fd = os.open(path, flags | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK, errno.EISDIR, errno.ENXIO):
            raise _not_regular(path) from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _not_regular(path)
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def _not_regular(path: str) -> CorruptCheckpointError:
    msg = (
        f"{path!r} is corrupt: it is not a regular file (a directory, a FIFO, a socket or "
        "a symbolic link stands where a run's log belongs); move it away"
    )
    return CorruptCheckpointError(msg)


def _decode_meta(
    path: str, at: int, meta_bytes: bytes, frame_len: int
) -> tuple[FrameInfo, _Summary]:
    """A record's ``FrameInfo`` and what it says of the run, checked field by field."""
    try:
        fields = _unpack_bounded(meta_bytes, items=_META_ITEMS)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise _corrupt(path, at, f"its meta does not decode ({exc})") from None
    if type(fields) is list and len(fields) == _META_ITEMS:
        seq, super_step, label, timestamp_ms, snapshot, status, updated_ms, deadline, data = fields
        if (
            type(seq) is int
            and type(super_step) is int
            and type(timestamp_ms) is int
            and type(updated_ms) is int
            and type(label) is str
            and type(snapshot) is bool
            and type(status) is str
            and (deadline is None or type(deadline) is int)
            and type(data) is bytes
        ):
            # FrameInfo(seq, super_step, label, timestamp_ms, snapshot, frame_len), built
            # through its slots: a cold handle builds one per record of the log
            info = _new_info(FrameInfo)
            set_seq, set_step, set_label, set_time, set_snapshot, set_size = _INFO_SLOTS
            set_seq(info, seq)
            set_step(info, super_step)
            set_label(info, label)
            set_time(info, timestamp_ms)
            set_snapshot(info, snapshot)
            set_size(info, frame_len)
            return info, (status, updated_ms, deadline, data)
    raise _corrupt(path, at, f"its meta does not decode ({_meta_fault(fields)})")


def _meta_fault(fields: Any) -> str:
    """Why decoded meta ``fields`` are not a record's meta: the first field of a wrong type."""
    if type(fields) is not list:
        return f"it holds one {type(fields).__name__}, not a list of {_META_ITEMS} fields"
    if len(fields) != _META_ITEMS:
        return f"it holds {len(fields)} fields, not {_META_ITEMS}"
    kinds = (int, int, str, int, bool, str, int, int, bytes)
    for n, (value, kind) in enumerate(zip(fields, kinds, strict=True)):
        if type(value) is not kind and not (n == 7 and value is None):
            return f"field {n} is of type {type(value).__name__}, not {kind.__name__}"
    return "it is not a record's meta"  # pragma: no cover - every field checked above


_new_info = object.__new__
_INFO_SLOTS = slot_setters(FrameInfo)


def _read_header(path: str, fd: int) -> tuple[tuple[str, str], int]:
    """The ids in a log's header, and the offset of its first record."""
    start = len(_LOG_MAGIC) + 1
    head = os.pread(fd, start, 0)
    size = os.fstat(fd).st_size
    if len(head) < start or not head.startswith(_LOG_MAGIC):
        if (len(head) < start and _LOG_MAGIC.startswith(head[: len(_LOG_MAGIC)])) or _zeros_from(
            fd, 0, size
        ):
            raise _NoHeader  # created, and its first write cut short or never made durable
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
    try:
        payload, _, frame_len = _read_record(path, fd, start, size, frame=True)
    except _Torn:
        raise _NoHeader from None  # the header and first record are one write: cut short
    if frame_len:
        raise _corrupt(path, start, "the log header has a frame")
    try:
        wf, run = _unpack_bounded(payload, items=2)
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


def _corrupt(path: str, at: int, why: str) -> CorruptCheckpointError:
    msg = (
        f"{str(path)!r} is corrupt: the record at byte {at} cannot be used, {why}. "
        "Restore the file from a backup: no checkpoint of this run can be read until then"
    )
    return CorruptCheckpointError(msg)


def _os_error(exc: OSError, path: str | Path) -> CheckpointError:
    msg = f"checkpoint store cannot use {str(path)!r}: {exc.strerror or exc}"
    return CheckpointError(msg)


def _sized(info: FrameInfo, size: int) -> FrameInfo:
    """``info`` with ``size`` set to the frame's real length."""
    if info.size == size:
        return info
    return FrameInfo(info.seq, info.super_step, info.label, info.timestamp_ms, info.snapshot, size)


class FileCheckpointer(StoreCheckpointer):
    """Keeps checkpoints in files under ``root``; they outlive the process.

    ::

        runner = Runner(graph, FileCheckpointer("runs"))

    A ``StoreCheckpointer`` over a ``FileStore(root)``. ``save`` appends
    without ``fsync``; ``sync`` (which the ``Runner`` calls before an effect
    runs and before a call returns) fsyncs what this handle appended since.
    A process killed anywhere leaves each run as if a save never started or
    as if it finished; a power loss loses at most what was saved since the
    last ``sync``. ``save`` is conditional across threads and processes (see
    ``Checkpointer``). Any number of handles, in any number of processes, may
    share one ``root``. Each run is one append-only log that stores each
    super-step's changes, with a full snapshot every so often;
    ``docs/storage.md`` describes the format.

    A handle keeps the logs it last used open (at most 64), so that a run's
    next save or load does not open its file again; ``close()`` (or dropping
    the handle) closes them. It keeps the index of at most 1024 runs (the
    most recently used); others are read again from their files as needed.

    ``runs()`` lists runs from ``root/index.sqlite3`` and skips a log it
    cannot read; ``damaged()`` says which logs it skipped and why. A handle
    that lists more than once keeps every run's summary between listings
    (about half a KB a run), so that the next reads only what changed.

    ``root`` is created if missing; an existing directory must be empty or a
    store made by ``FileCheckpointer``.
    """

    store: FileStore

    def __init__(self, root: str | os.PathLike[str]) -> None:
        super().__init__(FileStore(root))

    def __repr__(self) -> str:
        return f"<FileCheckpointer {str(self.root)!r}>"

    @property
    def root(self) -> Path:
        """The store's directory."""
        return self.store.root

    def close(self) -> None:
        """Close the files this handle keeps open; it reopens them if used again."""
        self.store.close()

    def damaged(self) -> builtins.list[tuple[str, str]]:
        """``(file name, reason)`` for each log ``runs()`` leaves out (``FileStore.damaged``)."""
        return self.store.damaged()

    def _decode(self, workflow_id: str, run_id: str, seq: int, data: bytes) -> Frame:  # type: ignore[override]
        """Decode a checked frame; one that does not decode is an error naming its file."""
        try:
            return decode_frame(data)
        except Exception as exc:  # cattrs and msgpack raise many kinds for bad bytes
            why = f"it does not decode ({type(exc).__name__})"
            raise self._damaged(workflow_id, run_id, seq, why) from None

    def _damaged(self, workflow_id: str, run_id: str, seq: int, why: str) -> CheckpointError:
        """The error for frame ``seq`` (``why``), naming its file and where in it."""
        return self.store.corrupt_frame(workflow_id, run_id, seq, why)
