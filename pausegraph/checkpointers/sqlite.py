"""SqliteCheckpointer: many runs in one SQLite database, for several processes on one machine.

Theory of operation
-------------------

One database file (the standard library's ``sqlite3``) in WAL mode holds
every run, in two tables::

    runs(key INTEGER PRIMARY KEY, workflow, run, seq, status, updated_ms,
         deadline_ms, data, UNIQUE (workflow, run))
    frames(id INTEGER PRIMARY KEY,       -- the run's key * 2**32 + the seq
           super_step, label, timestamp_ms, snapshot, frame)

plus an index of the queued runs (``status = 'queued'``, what a worker looks
for). ``runs`` holds each run's latest ``RunSummary`` and a key SQLite gives
it when its first frame goes in; ``frames`` the frames ``StoreCheckpointer``
encodes (snapshots and deltas, as opaque bytes), each under the id its run's
key and its seq make. So a frame is one row of one B-tree, stored in its row
(not in overflow pages, as a ``WITHOUT ROWID`` table would put a frame of
more than about 1 KB), and an append writes two pages of the database: the
frame's and the run's row (three when the run enters or leaves the queued
index, four for a new run). A run's frames are read and deleted by their id
range, its key looked up in the same statement, so a run deleted and begun
again under the same key (SQLite reuses the largest) is never read half
under each. A run holds at most 2**32 - 1 checkpoints and a database 2**31 - 1
run keys; past either an append is a ``CheckpointError``, nothing written.
Listing runs, or every run that waits for a person, reads ``runs`` only.
Ids and labels are stored as UTF-8 BLOBs (``surrogatepass``), so any id,
a NUL or a lone surrogate included, is stored and compared exactly. The
schema's version is ``PRAGMA user_version`` (2); a database of schema 1
(frames and runs keyed by their ids, with indexes on every status and
deadline) is rebuilt as 2 in one transaction when it is opened, and one made
by a newer pausegraph is refused rather than misread.

**An append** is one transaction: ``BEGIN IMMEDIATE`` (the write lock, taken
up front, so two writers never deadlock upgrading a read), then for a run's
first frame its row in ``runs`` (the unique key refuses a run that exists)
and the frame under the key it got; for a later one, the frame inserted only
if the run's last seq in ``runs`` is the one before it (the check and the
insert in one statement), then the summary; ``COMMIT``. The summary is
updated with every column, or, when this handle last wrote the run the same
status and deadline, with a ``WHERE`` on them (the row alone changes, never
the index of queued runs; no row matched means the full update). If no frame
went in, the run's last seq says which refusal it is: ``ConflictError`` for
a seq it has, ``CheckpointError`` for a gap. The frame's id makes the claim
safe even without the check: a second frame with the same seq cannot
exist. A failed append (a failed ``COMMIT`` included) rolls back and leaves
nothing of itself. A writer that finds the database locked waits up to
``BUSY_TIMEOUT_S`` (SQLite's busy timeout), then fails with
``CheckpointError``.

**Durability.** The Durability rule of the spec asks that a checkpoint be on
disk before anything outside the process sees it, i.e. when the engine calls
``sync()`` (before an effect runs, before a call returns), and that a
process killed at any instant lose nothing. SQLite documents
(https://www.sqlite.org/pragma.html#pragma_synchronous) that in WAL mode:

- with ``synchronous=NORMAL`` "the WAL file is synchronized before each
  checkpoint and the database file is synchronized after each completed
  checkpoint ... but no sync operations occur during most transactions",
  and "a transaction committed in WAL mode with synchronous=NORMAL might
  roll back following a power loss or system crash", while "transactions
  are durable across application crashes regardless of the synchronous
  setting";
- with ``synchronous=FULL`` "an additional sync operation of the WAL file
  happens after each transaction commit".

So appends commit with ``NORMAL`` (no sync: a killed process loses
nothing; a power loss may lose them, which the rule allows while nothing
outside has seen them), and ``sync()`` does what ``FULL`` would have added
to the last of them: one ``fdatasync`` of the WAL file (``<path>-wal``),
through a descriptor of its own. The WAL file holds every frame committed
since the last checkpoint, whoever wrote it, so that one sync makes every
earlier commit durable. What a checkpoint moved out of the WAL is durable
already: it syncs the WAL before copying and the database file after, and
the WAL is reset, or removed when the last connection closes, only after
a completed one. The WAL file is where SQLite keeps it, beside the
database file with symbolic links resolved; if none is there (the last
connection closed, or a path not foreseen), ``sync()`` commits a small
transaction with ``synchronous=FULL`` instead, and SQLite syncs its WAL. As
SQLite does for a WAL file it creates, the first ``sync`` of a WAL file in
a process also syncs its directory; the process then keeps a descriptor
of that file (at most ``_MAX_NAMED`` of them), so that its inode number
cannot pass to a new file, and a handle opened later (a cold resume) finds
the same file there and skips the directory. ``sync()`` does nothing if
this handle appended nothing since the last one. A pause/resume cycle
saves five checkpoints and syncs twice: two ``fdatasync`` calls rather
than five, and no transaction of its own (before, ``sync()`` always
committed the ``meta`` counter with ``FULL``;
``benchmarks/bench_sqlite_cycle.py``, docs/storage.md).

**No reader pins the WAL.** Connections are in autocommit mode
(``isolation_level=None``) with explicit ``BEGIN IMMEDIATE``/``COMMIT``;
every read fetches all its rows at once, so an idle handle holds no open
read transaction and checkpoints can always reset the WAL. The WAL needs
shared memory: the database must be on a local disk, not a network share.

**Threads and processes.** Each thread has its own connection (a
``threading.local``), opened on first use and closed when the thread ends
(``close_at_thread_end``); a forked child opens its own rather than share its
parent's. SQLite serialises the writers of all
processes.

**The live lock** is not in the database (a lock held in a transaction would
block every other writer): it is ``_lock.hold_file`` on a lock file per run
in a directory beside the database, ``<path>.locks/<sha256 of the ids>.lock``,
an ``flock`` that the kernel releases when the process dies, however it dies.
Its release removes a lock file left by a call that created no run, asking
the database whether the run exists only if the handle appended nothing to
it during the hold (``_Hold``).

**Errors.** A file that is not a database, or a damaged one, is
``CorruptCheckpointError`` naming the file; any other SQLite error is
``CheckpointError`` naming the file and what SQLite said.
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import hashlib
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from types import TracebackType
from typing import Any, NoReturn, TypeVar

import attrs

from .._values import pack
from ..errors import CheckpointError, CorruptCheckpointError
from ._checkpointer import StoreCheckpointer
from ._lock import (
    Holder,
    close_at_thread_end,
    file_holder,
    files_held,
    fsync_dir,
    hold_file,
    store_path,
)
from ._log import refuse_seq
from ._store import FrameInfo, RunSummary

SCHEMA_VERSION = 2
BUSY_TIMEOUT_S = 60.0

# A frame's row is keyed by its run's key and its seq in one integer, the table's
# rowid: one B-tree, each frame stored in its row (a WITHOUT ROWID table keyed
# (workflow, run, seq) would put a frame of more than about 1 KB in overflow pages
# of its own), and no second B-tree of keys to write at every append.
_SEQS = 1 << 32  # seqs a run can have; a frame's id is key * _SEQS + seq
_MAX_KEY = (1 << 31) - 1  # the largest run key whose frame ids fit SQLite's integers

_RUNS_TABLE = """
CREATE TABLE {name} (
    key INTEGER PRIMARY KEY,
    workflow BLOB NOT NULL,
    run BLOB NOT NULL,
    seq INTEGER NOT NULL,
    status TEXT NOT NULL,
    updated_ms INTEGER NOT NULL,
    deadline_ms INTEGER,
    data BLOB NOT NULL,
    UNIQUE (workflow, run)
)"""
_FRAMES_TABLE = """
CREATE TABLE {name} (
    id INTEGER PRIMARY KEY,
    super_step INTEGER NOT NULL,
    label BLOB NOT NULL,
    timestamp_ms INTEGER NOT NULL,
    snapshot INTEGER NOT NULL,
    frame BLOB NOT NULL
)"""
# Only queued runs are in the status index (what a worker looks for at every poll):
# an append that leaves a run's status as it was writes no index page, and one that
# moves it between two other statuses neither. Other listings read the table.
_QUEUED_INDEX = "CREATE INDEX runs_queued ON runs (status) WHERE status = 'queued'"
_SCHEMA = (
    _RUNS_TABLE.format(name="runs"),
    _FRAMES_TABLE.format(name="frames"),
    _QUEUED_INDEX,
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    "INSERT INTO meta VALUES ('syncs', 0)",
)
# Schema 1 (frames and runs keyed by their ids, each with a second B-tree of keys,
# indexes on every status and deadline) becomes 2 in one transaction: the runs get
# keys in the order of their ids, and their frames the ids those keys give.
_FROM_SCHEMA_1 = (
    _RUNS_TABLE.format(name="runs_2"),
    "INSERT INTO runs_2 (workflow, run, seq, status, updated_ms, deadline_ms, data) "
    "SELECT workflow, run, seq, status, updated_ms, deadline_ms, data FROM runs "
    "ORDER BY workflow, run",
    _FRAMES_TABLE.format(name="frames_2"),
    f"INSERT INTO frames_2 SELECT r.key * {_SEQS} + f.seq, f.super_step, f.label, "
    "f.timestamp_ms, f.snapshot, f.frame FROM frames AS f JOIN runs_2 AS r "
    "ON r.workflow = f.workflow AND r.run = f.run",
    "DROP TABLE frames",
    "DROP TABLE runs",
    "ALTER TABLE runs_2 RENAME TO runs",
    "ALTER TABLE frames_2 RENAME TO frames",
    _QUEUED_INDEX,
)

# A run's first frame: its row in runs first (the unique key refuses a run that
# exists), then the frame under the key that row got.
_INSERT_RUN = (
    "INSERT INTO runs (workflow, run, seq, status, updated_ms, deadline_ms, data) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_FRAME = "INSERT INTO frames VALUES (?, ?, ?, ?, ?, ?)"

# A later frame, inserted only if the run's last seq is the one before it: the check
# and the insert in one statement. No row inserted means a seq the run has or a gap
# (or no run), told apart by _LAST_SEQ; the rowid refuses a taken seq anyway.
_INSERT_NEXT_FRAME = (
    f"INSERT INTO frames SELECT key * {_SEQS} + ?, ?, ?, ?, ?, ? FROM runs "
    "WHERE workflow = ? AND run = ? AND seq = ?"
)
_LAST_SEQ = "SELECT seq FROM runs WHERE workflow = ? AND run = ?"

# The run's summary, every column. SQLite rewrites the index entries of every column
# an UPDATE sets, changed or not: setting the status writes a page of the index of
# queued runs even when the status stays.
_SET_SUMMARY = (
    "UPDATE runs SET seq = ?, status = ?, updated_ms = ?, deadline_ms = ?, data = ? "
    "WHERE workflow = ? AND run = ?"
)
# The summary of a run whose status and deadline stay as they are: only the row
# changes. Tried when this handle last wrote that status and deadline; the WHERE
# decides, and nothing updated means _SET_SUMMARY.
_UPDATE_SUMMARY = (
    "UPDATE runs SET seq = ?, updated_ms = ?, data = ? "
    "WHERE workflow = ? AND run = ? AND status = ? AND deadline_ms IS ?"
)

# A run's frames with its row's seq (which must be the last frame's): one row with
# NULL frame columns for a row with no frame, none for no run
_FRAMES = (
    f"SELECT f.id & {_SEQS - 1}, f.super_step, f.label, f.timestamp_ms, f.snapshot, "
    "length(f.frame), typeof(f.super_step) = 'integer' AND typeof(f.timestamp_ms) = 'integer' "
    "AND typeof(f.snapshot) = 'integer' AND typeof(f.frame) = 'blob', r.seq "
    "FROM runs AS r LEFT JOIN frames AS f "
    f"ON f.id BETWEEN r.key * {_SEQS} AND r.key * {_SEQS} + {_SEQS - 1} "
    "WHERE r.workflow = ? AND r.run = ? ORDER BY f.id"
)

# A run's frames from one seq to another: the workflow, run and first seq, then the
# workflow, run and last seq, bound in that order. The run's key is looked up in the
# statement that reads or deletes the frames, so that a run deleted and begun again
# under a new key in between is never read half under each.
_FIRST_ID = f"(SELECT key * {_SEQS} FROM runs WHERE workflow = ? AND run = ?)"
_SEQ_RANGE = f"id BETWEEN {_FIRST_ID} + ? AND {_FIRST_ID} + ?"
_MAX_KEPT = 1024  # runs whose last written status and deadline a handle remembers

_T = TypeVar("_T")

# SQLite's primary result codes for a file that is not, or no longer, a database
_SQLITE_BUSY = 5
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26
_SQLITE_HEADER = b"SQLite format 3\0"  # the first 16 bytes of every SQLite database


def _not_sqlite(path: str) -> bool:
    """Whether ``path`` is a file that does not start with SQLite's header.

    Asked only once SQLite has said the file is not a database: closing a
    descriptor of a database file drops every POSIX lock this process holds
    on it, the ones SQLite's connections keep included (in WAL mode, the
    shared lock that tells another process's closing connection not to
    delete the WAL), so nothing here opens a database file SQLite may be using.
    """
    try:
        with open(path, "rb") as file:
            head = file.read(len(_SQLITE_HEADER))
    except OSError:
        return False
    return bool(head) and head != _SQLITE_HEADER


def _sync_data(fd: int) -> None:
    """``fdatasync`` where the system has it (as SQLite syncs its WAL), else ``fsync``."""
    sync = getattr(os, "fdatasync", None)
    (sync or os.fsync)(fd)


# WAL files whose directory this process synced: absolute path -> (pid, a descriptor
# of the file, its (device, inode)). The descriptor is held only so that the inode
# cannot be freed and its number given to a new file: while it is open, a file at
# that path with that (device, inode) is the one whose name was synced.
_NAMED: OrderedDict[str, tuple[int, int, tuple[int, int]]] = OrderedDict()
_NAMED_LOCK = threading.Lock()
_MAX_NAMED = 16  # WAL files a process keeps a descriptor of


def _named_durably(wal: str, fd: int) -> int:
    """Make the name of the WAL file open on ``fd`` durable, once per file and process.

    Syncs the directory unless this process did so for this very file (the
    inode it pins is the one open on ``fd``). Returns the descriptor the
    caller still has to close: ``fd``, or ``-1`` once ``fd`` is kept as the
    pin. Raises ``OSError`` if the directory's sync fails (nothing is
    remembered then).
    """
    st = os.fstat(fd)
    file_id = (st.st_dev, st.st_ino)
    pid = os.getpid()
    with _NAMED_LOCK:
        known = _NAMED.get(wal)
        if known is not None and known[0] == pid and known[2] == file_id:
            _NAMED.move_to_end(wal)
            return fd
    fsync_dir(os.path.dirname(wal))
    closing = []
    with _NAMED_LOCK:
        old = _NAMED.pop(wal, None)
        _NAMED[wal] = (pid, fd, file_id)
        if old is not None:
            closing.append(old)
        while len(_NAMED) > _MAX_NAMED:
            closing.append(_NAMED.popitem(last=False)[1])
    for old_pid, old_fd, _ in closing:
        if old_pid == pid:  # an inherited one is the parent's to close
            with contextlib.suppress(OSError):
                os.close(old_fd)
    return -1


def _unpin(wal: str) -> None:
    """Close this process's descriptor of the WAL file ``wal``, if it keeps one."""
    with _NAMED_LOCK:
        known = _NAMED.pop(wal, None)
    if known is not None and known[0] == os.getpid():
        with contextlib.suppress(OSError):
            os.close(known[1])


def _id(value: str) -> bytes:
    return value.encode("utf-8", "surrogatepass")


def _str(value: bytes) -> str:
    return value.decode("utf-8", "surrogatepass")


class _Local(threading.local):
    pid: int = -1
    connection: sqlite3.Connection | None = None


_SUMMARY_ROW = (
    "SELECT workflow, run, seq, status, updated_ms, deadline_ms, data FROM runs "
    "WHERE workflow = ? AND run = ?"
)
_Row = tuple[Any, ...]


@attrs.define
class _Unsynced:
    """A run's appends since the last sync: the first and last seq, and the row before."""

    first: int
    last: int
    before: _Row | None


def _take_back_run(
    ids: tuple[bytes, bytes], unsynced: _Unsynced, connection: sqlite3.Connection
) -> bool:
    """Delete a run's unsynced frames and put its summary back; False if it moved on since."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        found = connection.execute(_LAST_SEQ, ids).fetchone()
        if found is None or found[0] != unsynced.last:
            connection.execute("ROLLBACK")
            return found is None  # gone already: nothing of it is read
        connection.execute(
            f"DELETE FROM frames WHERE {_SEQ_RANGE}", (*ids, unsynced.first, *ids, _SEQS - 1)
        )
        if unsynced.before is None:
            connection.execute("DELETE FROM runs WHERE workflow = ? AND run = ?", ids)
        else:
            _, _, seq, status, updated_ms, deadline_ms, data = unsynced.before
            connection.execute(_SET_SUMMARY, (seq, status, updated_ms, deadline_ms, data, *ids))
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    return True


def _wal_mode(connection: sqlite3.Connection) -> Any:
    """``PRAGMA journal_mode=WAL``, waited for as SQLite waits for any lock.

    Turning a new database to WAL takes an exclusive lock, and SQLite answers
    ``SQLITE_BUSY`` at once, without its busy handler, to a connection that
    asks while another does the same (two processes opening a new store
    together): asked again until ``BUSY_TIMEOUT_S``, as any other statement
    waits. Once the database is in WAL mode, which it keeps, asking is a
    read of that.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    pause = 0.001
    while True:
        try:
            return connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        except sqlite3.OperationalError as exc:
            busy = getattr(exc, "sqlite_errorcode", 0) & 0xFF == _SQLITE_BUSY
            if not busy or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


class SqliteStore:
    """The SQLite store: every run in one database file (see the module documentation)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = store_path(path, "SqliteCheckpointer(path)")
        self._locks_dir = self.path + ".locks"
        self._local = _Local()
        self._lock = threading.Lock()
        self._open: list[tuple[int, sqlite3.Connection]] = []  # (pid, connection)
        self._appended = 0  # appends by this handle, and how many of them a sync covered
        self._synced = 0
        # (status, deadline_ms) this handle last wrote to each run's summary, most recent
        # last: a hint only (see _UPDATE_SUMMARY)
        self._kept: dict[tuple[bytes, bytes], tuple[str, int | None]] = {}
        self._holds: dict[tuple[bytes, bytes], _Hold] = {}  # live locks this handle holds
        # each run appended to since the last sync: its first and last seq appended, and
        # its summary row before them (None: no run), to take them back if the sync fails
        self._unsynced: dict[tuple[bytes, bytes], _Unsynced] = {}
        self._pending = threading.Lock()  # _unsynced's, taken before _lock when both are
        # failed syncs that took back what they could not make durable (see sync): a call
        # that saw it move checks that what it saved is still there (Runner)
        self.takebacks = 0
        # held by a sync from its start to its end (a take-back included): a sync that
        # waits for one under way sees its outcome (takebacks) before it says that the
        # appends it did not sync itself are durable; re-entrant, for a log handler
        self._syncing = threading.RLock()
        # SQLite opens the file first: a file that is no database is refused before
        # anything is made beside it (see _raise); this handle never opens the file
        # itself (see _not_sqlite)
        self._guarded(self._create_schema)
        try:
            os.makedirs(self._locks_dir, exist_ok=True)
        except OSError as exc:
            msg = f"SQLite store cannot create {self._locks_dir!r}: {exc.strerror or exc}"
            raise CheckpointError(msg) from exc
        # where SQLite keeps the WAL: beside the database file, symbolic links resolved
        self._wal = os.path.realpath(self.path) + "-wal"

    def __repr__(self) -> str:
        return f"<SqliteStore {self.path!r}>"

    def close(self) -> None:
        """Close every connection this handle opened; it opens new ones if used again.

        The process's descriptor of the WAL file (see ``sync``) is closed too.

        Call it when no other thread is using the handle. In a forked child it
        leaves the parent's connections alone (closing them there would touch
        what SQLite keeps for them; SQLite forbids carrying a connection across
        a fork).
        """
        with self._lock:
            connections, self._open = self._open, []
        for pid, connection in connections:
            if pid == os.getpid():
                connection.close()
        self._local = _Local()
        _unpin(self._wal)

    # --- connections and errors -----------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        local = self._local
        if local.connection is not None and local.pid == os.getpid():
            return local.connection
        connection = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        try:
            mode = _wal_mode(connection)
            if str(mode).lower() != "wal":
                msg = (
                    f"SQLite store {self.path!r} cannot use WAL mode (got {mode!r}): "
                    "put the database on a local disk"
                )
                raise CheckpointError(msg)
            connection.execute("PRAGMA synchronous=NORMAL")
        except BaseException:
            connection.close()
            raise
        local.pid, local.connection = os.getpid(), connection
        with self._lock:
            self._open.append((os.getpid(), connection))
        close_at_thread_end(local, self, self._lock, connection, sqlite3.Error)
        return connection

    def _guarded(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``work`` on this thread's connection; SQLite's errors become ours."""
        try:
            return work(self._connection())
        except sqlite3.Error as exc:
            self._raise(exc)

    def _damaged(self, what: str) -> NoReturn:
        """``CorruptCheckpointError`` for a database whose content pausegraph did not write."""
        msg = (
            f"{self.path!r} is not a usable pausegraph SQLite store: {what}. "
            "Restore it from a backup"
        )
        raise CorruptCheckpointError(msg) from None

    def _not_text(self, exc: UnicodeDecodeError) -> NoReturn:
        """``CorruptCheckpointError`` for an id or label column whose bytes are not UTF-8."""
        self._damaged(
            f"an id or label holds bytes that are not UTF-8 ({exc.reason} at byte {exc.start})"
        )

    def _wrong_type(self, table: str) -> NoReturn:
        """``CorruptCheckpointError`` for a column holding a value of another type than ours."""
        self._damaged(f"a row of {table} holds a value of another type than pausegraph writes")

    def _raise(self, exc: sqlite3.Error) -> NoReturn:
        """Raise SQLite's error as ours: ``CorruptCheckpointError`` for a damaged file."""
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
        if code == _SQLITE_NOTADB and _not_sqlite(self.path):
            msg = (
                f"{self.path!r} is not a usable pausegraph SQLite store: "
                "it is not a SQLite database (it lacks SQLite's header): check the path"
            )
            raise CorruptCheckpointError(msg) from None
        if code in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
            msg = (
                f"{self.path!r} is not a usable pausegraph SQLite store: {exc}. "
                "Restore it from a backup"
            )
            raise CorruptCheckpointError(msg) from None
        msg = f"SQLite store {self.path!r} failed: {exc}"
        raise CheckpointError(msg) from exc

    @staticmethod
    @contextmanager
    def _transaction(connection: sqlite3.Connection) -> Iterator[None]:
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    def _create_schema(self, connection: sqlite3.Connection) -> None:
        # user_version moves from 0 only in the transaction that creates the tables:
        # a database that has them is opened without taking the write lock
        if connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
            return
        with self._transaction(connection):
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            if version in (0, 1):
                if version == 1:
                    self._check_schema_1(connection)
                # executescript would commit first: one statement at a time
                for statement in _SCHEMA if version == 0 else _FROM_SCHEMA_1:
                    connection.execute(statement)
                connection.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            elif version > SCHEMA_VERSION:
                msg = (
                    f"SQLite store {self.path!r} has schema version {version}, newer than "
                    f"this pausegraph's {SCHEMA_VERSION}: upgrade pausegraph to open it"
                )
                raise CheckpointError(msg)

    def _check_schema_1(self, connection: sqlite3.Connection) -> None:
        """Refuse to upgrade a schema-1 database whose frames schema 2 cannot hold as they are.

        A frame whose run has no row, or whose seq is outside 1 to 2**32 - 1,
        would be dropped or read as another run's: the file is damaged, and
        the upgrade leaves it as it is (``CorruptCheckpointError``).
        """
        for query, what in (
            (
                "SELECT 1 FROM frames AS f WHERE NOT EXISTS (SELECT 1 FROM runs AS r "
                "WHERE r.workflow = f.workflow AND r.run = f.run) LIMIT 1",
                "a frame whose run has no row in runs",
            ),
            (
                "SELECT 1 FROM frames WHERE typeof(seq) != 'integer' OR seq < 1 "
                f"OR seq >= {_SEQS} LIMIT 1",
                f"a frame whose seq is not a number from 1 to {_SEQS - 1}",
            ),
        ):
            if connection.execute(query).fetchone() is not None:
                self._damaged(f"{what}; it was not upgraded to schema {SCHEMA_VERSION}")

    # --- the Store protocol ---------------------------------------------------------

    def append(self, info: FrameInfo, frame: bytes, summary: RunSummary) -> None:
        ids = (_id(summary.workflow_id), _id(summary.run_id))
        seq = info.seq
        if seq >= _SEQS:
            msg = f"SQLite store cannot keep checkpoint {seq} of run {summary.run_id!r}: "
            msg += f"a run's checkpoints are numbered 1 to {_SEQS - 1} here"
            raise CheckpointError(msg)
        # written out rather than through _guarded and _transaction: four statements
        # a checkpoint (five for a run's first since a sync), and the wrappers' calls
        # cost about as much as one of them
        pending = self._pending
        try:
            connection = self._connection()
            connection.execute("BEGIN IMMEDIATE")
            # held to this append's record below: a sync takes the unsynced record before
            # the check of whether this run is in it, or after the record, never between
            pending.acquire()
            try:
                before: _Row | None = None
                kept = (summary.status, summary.deadline_ms)
                if seq == 1:  # a new run: no row to read first (a failed sync removes the run)
                    try:
                        key = connection.execute(
                            _INSERT_RUN,
                            (*ids, seq, summary.status, summary.updated_ms,
                             summary.deadline_ms, summary.data),
                        ).lastrowid  # fmt: skip
                    except sqlite3.IntegrityError:  # the run exists
                        self._refuse(connection, summary, seq, ids)
                    if key is None or key > _MAX_KEY:
                        msg = f"SQLite store {self.path!r} has no run key left for "
                        msg += f"run {summary.run_id!r}: move its runs to a new database"
                        raise CheckpointError(msg)
                    connection.execute(
                        _INSERT_FRAME,
                        (key * _SEQS + 1, info.super_step, _id(info.label), info.timestamp_ms,
                         int(info.snapshot), frame),
                    )  # fmt: skip
                else:
                    if ids not in self._unsynced:  # what a failed sync puts back (see sync)
                        before = connection.execute(_SUMMARY_ROW, ids).fetchone()
                    # the frame goes in only if the run's last seq is the one before it
                    inserted = connection.execute(
                        _INSERT_NEXT_FRAME,
                        (seq, info.super_step, _id(info.label), info.timestamp_ms,
                         int(info.snapshot), frame, *ids, seq - 1),
                    ).rowcount  # fmt: skip
                    if inserted != 1:
                        self._refuse(connection, summary, seq, ids)
                    updated = self._kept.get(ids) == kept and connection.execute(
                        _UPDATE_SUMMARY, (seq, summary.updated_ms, summary.data, *ids, *kept)
                    ).rowcount == 1  # fmt: skip
                    if not updated:
                        connection.execute(
                            _SET_SUMMARY,
                            (seq, summary.status, summary.updated_ms, summary.deadline_ms,
                             summary.data, *ids),
                        )  # fmt: skip
                connection.execute("COMMIT")
            except BaseException:
                pending.release()
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            with self._lock:
                self._kept.pop(ids, None)
            self._raise(exc)
        except BaseException:
            with self._lock:
                self._kept.pop(ids, None)
            raise
        try:
            unsynced = self._unsynced.get(ids)
            if unsynced is None or seq == 1:
                # a run begun (again: another handle may have deleted the one this
                # handle appended to): a failed sync removes it whole
                self._unsynced[ids] = _Unsynced(seq, seq, before)
            else:
                unsynced.last = info.seq
            with self._lock:
                self._appended += 1
                hold = self._holds.get(ids)
                if hold is not None:
                    hold.appended = True
                self._kept.pop(ids, None)
                self._kept[ids] = kept
                if len(self._kept) > _MAX_KEPT:
                    del self._kept[next(iter(self._kept))]
        finally:
            pending.release()

    def _refuse(
        self,
        connection: sqlite3.Connection,
        summary: RunSummary,
        seq: int,
        ids: tuple[bytes, bytes],
    ) -> NoReturn:
        """Refuse an append of ``seq``, not the run's next: the run's last seq says how."""
        found = connection.execute(_LAST_SEQ, ids).fetchone()
        count = 0 if found is None else found[0]
        if type(count) is not int:
            self._wrong_type("runs")
        refuse_seq(summary.workflow_id, summary.run_id, seq, count)

    def frames(self, workflow_id: str, run_id: str) -> builtins.list[FrameInfo]:
        rows = self._rows(_FRAMES, (_id(workflow_id), _id(run_id)))
        if not rows:
            return []
        last = rows[-1]
        if last[0] is None:  # a row in runs, no frame
            self._damaged(f"run {run_id!r} of workflow {workflow_id!r} has no frame left")
        if last[-1] != last[0] or len(rows) != last[0]:
            seqs = f"frames {rows[0][0]} to {last[0]} ({len(rows)} of them)"
            self._damaged(f"run {run_id!r} has {seqs} where its row in runs says {last[-1]!r}")
        try:
            return [
                FrameInfo(s, step, _str(label), t, bool(snap), n)
                if ours
                else self._wrong_type("frames")
                for s, step, label, t, snap, n, ours, _ in rows
            ]
        except UnicodeDecodeError as exc:
            self._not_text(exc)
        except AttributeError:  # a label that is not a BLOB
            self._wrong_type("frames")

    def read(self, workflow_id: str, run_id: str, first: int, last: int) -> builtins.list[bytes]:
        first, last = max(first, 0), min(last, _SEQS - 1)
        if first > last:
            return []
        ids = (_id(workflow_id), _id(run_id))
        rows = self._rows(
            f"SELECT frame FROM frames WHERE {_SEQ_RANGE} ORDER BY id", (*ids, first, *ids, last)
        )
        try:
            return [frame if type(frame) is bytes else bytes(frame) for (frame,) in rows]
        except TypeError:  # a frame that is not a BLOB
            self._wrong_type("frames")

    def runs(
        self, *, workflow_id: str | None = None, status: str | None = None
    ) -> builtins.list[RunSummary]:
        where: builtins.list[str] = []
        args: builtins.list[bytes | str] = []
        if workflow_id is not None:
            where.append("workflow = ?")
            args.append(_id(workflow_id))
        if status == "queued":  # written out, so that SQLite uses the index of queued runs
            where.append("status = 'queued'")
        elif status is not None:
            where.append("status = ?")
            args.append(status)
        query = "SELECT workflow, run, seq, status, updated_ms, deadline_ms, data FROM runs"
        if where:
            query += " WHERE " + " AND ".join(where)
        rows = self._rows(query, tuple(args))
        # _str inlined: one call less per row of a listing of many runs
        try:
            return [
                RunSummary(
                    w.decode("utf-8", "surrogatepass"),
                    r.decode("utf-8", "surrogatepass"),
                    seq,
                    st,
                    updated,
                    deadline,
                    data if type(data) is bytes else bytes(data),
                )
                for w, r, seq, st, updated, deadline, data in rows
            ]
        except UnicodeDecodeError as exc:
            self._not_text(exc)
        except (AttributeError, TypeError):  # an id or a summary that is not a BLOB
            self._wrong_type("runs")

    def delete(self, workflow_id: str, run_id: str) -> None:
        ids = (_id(workflow_id), _id(run_id))

        def delete(connection: sqlite3.Connection) -> None:
            with self._transaction(connection):
                connection.execute(
                    f"DELETE FROM frames WHERE {_SEQ_RANGE}", (*ids, 0, *ids, _SEQS - 1)
                )
                connection.execute("DELETE FROM runs WHERE workflow = ? AND run = ?", ids)

        self._guarded(delete)
        with self._pending, self._lock:
            self._appended += 1
            self._unsynced.pop(ids, None)  # gone: nothing of it to take back
            hold = self._holds.get(ids)
            if hold is not None:  # the run is gone: the release asks again
                hold.appended = False
        self.sync()
        try:
            os.unlink(self._lock_path(workflow_id, run_id))
        except FileNotFoundError:
            pass
        except OSError as exc:
            msg = f"SQLite store cannot remove the lock file of run {run_id!r}: {exc.strerror}"
            raise CheckpointError(msg) from exc

    def lock(self, workflow_id: str, run_id: str) -> AbstractContextManager[None]:
        """Hold the run's live lock: an ``flock`` on ``<path>.locks/<hash>.lock``."""
        return _Hold(self, workflow_id, run_id)

    def _exists(self, ids: tuple[bytes, bytes]) -> bool:
        return bool(self._rows("SELECT 1 FROM runs WHERE workflow = ? AND run = ?", ids))

    def holder(self, workflow_id: str, run_id: str) -> Holder | None:
        return file_holder(self._lock_path(workflow_id, run_id))

    def held_among(self, runs: builtins.list[tuple[str, str]]) -> set[tuple[str, str]]:
        """The runs among ``runs`` whose live lock a live process holds (``files_held``)."""
        by_name = {_lock_name(w, r): (w, r) for w, r in runs}
        return {by_name[name] for name in files_held(self._locks_dir, by_name)}

    def sync(self) -> None:
        """Make every append of this handle durable: one ``fdatasync`` of the WAL file.

        What ``synchronous=FULL`` adds to a commit in WAL mode, done once for
        all the commits since the last ``sync``: the WAL file holds every
        frame committed since the last checkpoint, whoever wrote it, and a
        completed checkpoint has synced what it moved out of the WAL. The
        first ``sync`` of a WAL file in this process also syncs its directory,
        as SQLite does for a WAL it creates (``_named_durably``). Raises
        ``CheckpointError`` naming the OS error.
        """
        with self._syncing:  # one at a time: see _syncing
            self._sync_now()

    def _sync_now(self) -> None:
        """``sync``'s work, ``_syncing`` held."""
        with self._pending, self._lock:
            target = self._appended
            if self._synced >= target:
                return
            pending, self._unsynced = self._unsynced, {}
        try:
            self._sync_wal()
        except CheckpointError as exc:
            taken = self._take_back(pending)
            with self._lock:
                self.takebacks += 1
            raise CheckpointError(f"{exc}; {taken}") from exc.__cause__
        with self._lock:
            self._synced = max(self._synced, target)

    def _sync_wal(self) -> None:
        """``sync``'s work: one ``fdatasync`` of the WAL file (or a ``FULL`` commit)."""
        wal = self._wal
        try:
            # read-write: some systems refuse to sync a read-only descriptor; a handle
            # that appended may write the WAL anyway
            fd = os.open(wal, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            # no WAL where SQLite keeps it: removed when the last connection closed
            # (after a checkpoint that synced it), or a path this handle did not
            # foresee. Either way, let SQLite sync whatever WAL it writes: a commit
            # with synchronous=FULL, as before this handle synced the WAL itself
            self._guarded(self._sync_by_commit)
        except OSError as exc:
            msg = f"SQLite store cannot open {wal!r} to sync it: {exc.strerror or exc}"
            raise CheckpointError(msg) from exc
        else:
            try:
                _sync_data(fd)
                fd = _named_durably(wal, fd)
            except OSError as exc:
                msg = f"SQLite store cannot sync {wal!r}: {exc.strerror or exc}"
                raise CheckpointError(msg) from exc
            finally:
                if fd >= 0:
                    os.close(fd)

    def _take_back(self, pending: dict[tuple[bytes, bytes], _Unsynced]) -> str:
        """Delete the appends a failed sync may not have made durable; what was done.

        Each run's frames from the first unsynced seq on go, and its summary
        row is put back as it was before them (a run this handle began goes
        altogether), so nothing that may not be on disk stays readable (SPEC:
        a failed save leaves nothing of it readable). A run another writer
        appended to since is left as it is.
        """
        kept: builtins.list[str] = []
        for ids, unsynced in pending.items():
            with self._lock:
                self._kept.pop(ids, None)
            try:
                taken = self._guarded(functools.partial(_take_back_run, ids, unsynced))
            except CheckpointError:
                taken = False
            if taken and unsynced.before is None:
                with self._lock:
                    hold = self._holds.get(ids)
                    if hold is not None:  # the run is gone: the release removes its lock file
                        hold.appended = False
            if not taken:
                run = ids[1].decode("utf-8", "surrogatepass")
                kept.append(f"{run!r} (checkpoints {unsynced.first} to {unsynced.last})")
        if kept:
            return (
                f"these could not be taken back and may still be read: {', '.join(kept)}; "
                "check the disk, then load the latest checkpoint and decide again"
            )
        return "nothing of the checkpoints saved since the last sync was kept"

    def _sync_by_commit(self, connection: sqlite3.Connection) -> None:
        """A transaction committed with ``synchronous=FULL``: SQLite syncs its WAL file."""
        connection.execute("PRAGMA synchronous=FULL")
        try:
            with self._transaction(connection):
                connection.execute("UPDATE meta SET value = value + 1 WHERE key = 'syncs'")
        finally:
            connection.execute("PRAGMA synchronous=NORMAL")

    # --- helpers --------------------------------------------------------------------

    def _rows(self, query: str, args: tuple[Any, ...]) -> builtins.list[Any]:
        # fetchall: the read transaction ends with the statement, none stays open
        return self._guarded(lambda connection: connection.execute(query, args).fetchall())

    def _lock_path(self, workflow_id: str, run_id: str) -> str:
        return os.path.join(self._locks_dir, _lock_name(workflow_id, run_id))


def _lock_name(workflow_id: str, run_id: str) -> str:
    """The name of the run's lock file in ``<path>.locks/``."""
    return hashlib.sha256(pack([_id(workflow_id), _id(run_id)])).hexdigest() + ".lock"


class _Hold:
    """``SqliteStore.lock``: ``hold_file``, and whether this handle appended to the run in it.

    At release ``hold_file`` asks whether the run exists (a lock file left by a
    call that created no run is removed). An append of this handle during the
    hold says yes without a query: the run existed then, and a ``delete`` since
    removed the lock file's name, so there is nothing of this hold to remove.
    """

    __slots__ = ("appended", "held", "ids", "store")

    def __init__(self, store: SqliteStore, workflow_id: str, run_id: str) -> None:
        self.store = store
        self.ids = (_id(workflow_id), _id(run_id))
        self.appended = False
        self.held = hold_file(
            store._lock_path(workflow_id, run_id), workflow_id, run_id, self._exists
        )

    def _exists(self) -> bool:
        return self.appended or self.store._exists(self.ids)

    def __enter__(self) -> None:
        self.held.__enter__()  # ConflictError: nothing registered
        with self.store._lock:
            self.store._holds[self.ids] = self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        try:
            return self.held.__exit__(kind, error, tb)
        finally:
            with self.store._lock:
                if self.store._holds.get(self.ids) is self:
                    del self.store._holds[self.ids]


class SqliteCheckpointer(StoreCheckpointer):
    """Checkpoints in one SQLite database file, shared by the processes of one machine.

    ::

        runner = Runner(graph, SqliteCheckpointer("runs.db"))

    Many runs live in one file, in WAL mode; ``save`` is conditional on the
    seq (part of the frame's primary key), the live lock of a running run is an
    ``flock`` in ``<path>.locks/``, and every checkpoint is on disk before
    anything outside the process can see it. The database must be on a
    local disk; one made by an earlier pausegraph (schema 1) is upgraded in
    place when opened. A run keeps at most 2**32 - 1 checkpoints here
    (``CheckpointError`` past that). See docs/storage.md, "The SQLite store".
    """

    store: SqliteStore

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(SqliteStore(path))

    def __repr__(self) -> str:
        return f"<SqliteCheckpointer {self.store.path!r}>"

    def close(self) -> None:
        """Close the database connections (the store opens new ones if used again)."""
        self.store.close()
