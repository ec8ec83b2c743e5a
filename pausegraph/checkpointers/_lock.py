"""The live lock of a run: held by the process driving it, released when it dies.

A run is ``"running"`` exactly while some live process holds its lock. The
lock is one the operating system (or the database session) releases when
the holder dies, so a crashed driver never leaves a run looking busy and no
heartbeat or timeout is needed. The holder's pid, host and start time are
written beside the lock for people to read; nothing decides liveness from
them (pids and host names are reused in containers).

``FileLock`` is the file store's: an exclusive ``flock`` on a lock file per
run. ``flock`` belongs to an open file description, so two handles in one
process exclude each other too, and the kernel drops it when the process
dies, however it dies.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import time
import weakref
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import attrs
import msgpack

from ..errors import CheckpointError, ConflictError

_TRIES = 20  # a reader probing a dead holder's lock holds it for a moment: try again briefly
_PAUSE_S = 0.0005


_HOST = socket.gethostname()  # for people to read; looked up once


@attrs.frozen
class Holder:
    """Who holds a run's live lock: process id, host name, since (epoch ms)."""

    pid: int
    host: str
    since_ms: int

    @classmethod
    def here(cls, since_ms: int | None = None) -> Holder:
        """This process, holding since ``since_ms`` (default: now)."""
        if since_ms is None:
            since_ms = time.time_ns() // 1_000_000
        return cls(os.getpid(), _HOST, since_ms)

    def describe(self) -> str:
        if not self.pid:
            return "a live process that left no note of itself"
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(self.since_ms / 1000))
        return f"process {self.pid} on host {self.host!r} since {since} UTC"


def held_message(workflow_id: str, run_id: str, holder: Holder | None) -> str:
    """The ``ConflictError`` message for a run that another driver holds."""
    who = holder.describe() if holder is not None else "another process"
    return (
        f"run {run_id!r} of workflow {workflow_id!r} is running: {who} is driving it. "
        "Wait for it to pause or finish; if that process dies its lock is released and the "
        "run becomes 'queued'"
    )


#: What a store's last successful sync made durable of a run's log, kept in its
#: lock file (see ``hold_file``): ``(inode, first record's timestamp_ms, records)``.
Mark = tuple[int, int, int]


def _encode(holder: Holder, mark: Mark | None = None) -> bytes:
    fields: list[Any] = [holder.pid, holder.host, holder.since_ms]
    if mark is not None:
        fields.append([*mark, _mark_crc(mark)])
    return msgpack.packb(fields)


def _mark_crc(mark: Mark) -> int:
    """A checksum of the mark: a note read while it is being rewritten is no mark at all."""
    return zlib.crc32(msgpack.packb(list(mark)))


def _fields(data: bytes) -> list[Any] | None:
    """The note's fields: its first msgpack object (a shorter note may leave bytes after it)."""
    try:
        unpacker = msgpack.Unpacker(raw=False, max_bin_len=0, max_ext_len=0, max_buffer_size=4096)
        unpacker.feed(data[:4096])
        fields = next(unpacker)
    except Exception:  # a holder note is for people; a damaged one says nothing
        return None
    return fields if type(fields) is list else None


def _decode(data: bytes) -> Holder | None:
    fields = _fields(data)
    try:
        pid, host, since = fields[:3]  # type: ignore[index]
        return Holder(int(pid), str(host), int(since))
    except Exception:  # a holder note is for people; a damaged one says nothing
        return None


def _mark_of(data: bytes) -> Mark | None:
    """The sync mark a lock file's note carries, or ``None`` (none, or not readable)."""
    fields = _fields(data)
    if fields is None or len(fields) < 4:
        return None
    mark = fields[3]
    if type(mark) is not list or len(mark) != 4 or any(type(n) is not int for n in mark):
        return None
    found = (mark[0], mark[1], mark[2])
    return found if mark[3] == _mark_crc(found) else None


def synced_mark(path: str) -> Mark | None:
    """The sync mark in the lock file at ``path``, read without its lock; ``None`` if none.

    A lock file that cannot be read has no mark: the mark only adds a check.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return _mark_of(os.pread(fd, 4096, 0))
    except OSError:
        return None
    finally:
        os.close(fd)


def _open_locked(path: str, workflow_id: str, run_id: str) -> tuple[int, int]:
    """Open the lock file at ``path`` and take its ``flock``; the descriptor and file size.

    A lock file is removed when its run is deleted (or was never created):
    after taking the lock, check that the path still names the file locked,
    or start again on the new one.
    """
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            msg = f"cannot open the lock file {path!r} of run {run_id!r}: {exc.strerror}"
            raise CheckpointError(exc.errno or errno.EIO, msg) from exc
        try:
            for attempt in range(_TRIES):
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if attempt + 1 == _TRIES:
                        holder = _decode(os.pread(fd, 4096, 0))
                        raise ConflictError(held_message(workflow_id, run_id, holder)) from None
                    time.sleep(_PAUSE_S)
            st = os.fstat(fd)
            try:
                same = os.stat(path, follow_symlinks=False).st_ino == st.st_ino
            except FileNotFoundError:
                same = False
        except BaseException:
            os.close(fd)
            raise
        if same:
            return fd, st.st_size
        os.close(fd)


# The descriptors of the lock files this process holds. A forked child (a
# ProcessPoolExecutor's worker, started while a run is driven) gets copies of
# them, and an flock lasts while any descriptor of its open file is open: the
# child closes its copies at once, so that the lock goes when its holder lets
# it go or dies, whatever the children do.
_HELD: set[int] = set()


def _close_held_in_child() -> None:
    for fd in _HELD:
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()


os.register_at_fork(after_in_child=_close_held_in_child)


@contextmanager
def hold_file(
    path: str,
    workflow_id: str,
    run_id: str,
    exists: Callable[[], bool],
    mark: Callable[[], Mark | None] | None = None,
) -> Iterator[None]:
    """Hold the lock file at ``path`` for the run; ``ConflictError`` if someone else does.

    ``exists`` says whether the run has a checkpoint: a lock file left by a
    call that created no run (a refused command, an unknown run) is removed,
    so that refusing changes nothing in the store.

    The holder's note goes into the file with one ``pwrite``; the file is cut
    to the note only if something longer is there (a holder that died). At
    release the note becomes the run's *sync mark* alone, if there is one
    (``mark()``, the store's, or the one the file held before), and the file
    is emptied if not: a refused command leaves it as it was. One
    ``ftruncate`` per call, not two: each is a change to the file's
    metadata that may wait for another process's journal commit.

    The mark says how many records of the log (told by its first record's
    time) a sync made durable, so that a reader can tell a
    log cut short after it was synced from a save that never finished. It
    is written after the sync, never synced itself: it can only lag behind
    the log, never be ahead of it.
    """
    fd, size = _open_locked(path, workflow_id, run_id)
    holder_pid = os.getpid()
    _HELD.add(fd)
    try:
        carried = None
        try:
            if size:
                carried = _mark_of(os.pread(fd, min(size, 4096), 0))
            note = _encode(Holder.here(), carried)
            os.pwrite(fd, note, 0)
            if size > len(note):
                os.ftruncate(fd, len(note))
        except OSError:
            # a full disk (or a failing one): the flock is the lock, the note only
            # names its holder, and a store with no space left must still let
            # people cancel and delete runs to make room
            pass
        try:
            yield
        finally:
            if os.getpid() == holder_pid:  # a forked child's copy was closed at the fork
                _release(fd, path, exists, mark, carried)
    finally:
        if os.getpid() == holder_pid:
            _HELD.discard(fd)
            # unlocked before it is closed: a child forked by another thread while this
            # descriptor was not among _HELD keeps a copy, and must not keep the lock
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _release(
    fd: int,
    path: str,
    exists: Callable[[], bool],
    mark: Callable[[], Mark | None] | None,
    carried: Mark | None,
) -> None:
    """``hold_file``'s release: the note becomes the sync mark, or the file goes."""
    try:
        if not exists():
            os.ftruncate(fd, 0)
            if _names(path, fd):  # never another holder's new file
                os.unlink(path)
        else:
            kept = _newer(mark() if mark is not None else None, carried)
            left = b"" if kept is None else _encode(Holder(0, "", 0), kept)
            if left:
                os.pwrite(fd, left, 0)
            os.ftruncate(fd, len(left))
    except OSError:  # the note is for people only: the lock goes with the close
        pass


def _newer(ours: Mark | None, carried: Mark | None) -> Mark | None:
    """The mark to leave: the one that says more of the same file, or ``ours`` (the
    store checked that it names the file at the log's path now) over another file's."""
    if ours is None:
        return carried
    if carried is not None and carried[:2] == ours[:2] and carried[2] > ours[2]:
        return carried  # another handle synced more of it since this one did
    return ours


def fsync_dir(path: str) -> None:
    """``fsync`` the directory ``path``, making the names in it durable (both file stores)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _names(path: str, fd: int) -> bool:
    """Whether ``path`` still names the file open on ``fd``."""
    try:
        return os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


# how a lock file is opened to be probed: read-only, never through a symbolic link,
# never waiting (a FIFO in its place)
_PROBE_OPEN = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def file_holder(path: str) -> Holder | None:
    """Who holds the lock file at ``path``, or ``None`` if nobody alive does."""
    try:
        fd = os.open(path, _PROBE_OPEN)
    except FileNotFoundError:
        return None
    except OSError as exc:
        msg = f"cannot open the lock file {path!r}: {exc.strerror}"
        raise CheckpointError(exc.errno or errno.EIO, msg) from exc
    try:
        note = os.pread(fd, 4096, 0)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            # held; with no note yet (its holder just took it) or none it could write
            return _decode(note) or Holder(0, "?", 0)
        fcntl.flock(fd, fcntl.LOCK_UN)  # its holder died without a word
        return None
    except OSError as exc:  # a directory or a FIFO where the lock file belongs, say
        msg = f"cannot read the lock file {path!r}: {exc.strerror}"
        raise CheckpointError(exc.errno or errno.EIO, msg) from exc
    finally:
        os.close(fd)


def files_held(directory: str, names: Iterable[str]) -> set[str]:
    """The names among ``names`` whose lock file in ``directory`` a live process holds.

    What ``file_holder`` says of each (held or not), probed through one
    descriptor of ``directory``: no path is resolved again per file, and
    nobody's note is read unless its file is held. A name with no file is
    not held. A lock file that cannot be probed (a directory or a FIFO in
    its place, a permission) is asked of ``file_holder``, which raises the
    ``CheckpointError`` it raises for it; so does a ``directory`` that
    cannot be opened (one that does not exist holds nothing).
    """
    try:
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return set()
    except OSError as exc:
        msg = f"cannot open the directory of lock files {directory!r}: {exc.strerror}"
        raise CheckpointError(exc.errno or errno.EIO, msg) from exc
    probe, unlock = fcntl.LOCK_SH | fcntl.LOCK_NB, fcntl.LOCK_UN
    open_, pread, flock, close = os.open, os.pread, fcntl.flock, os.close
    held: set[str] = set()
    odd: list[str] = []
    try:
        for name in names:
            try:
                fd = open_(name, _PROBE_OPEN, dir_fd=dir_fd)
            except FileNotFoundError:
                continue
            except OSError:
                odd.append(name)
                continue
            try:
                pread(fd, 0, 0)  # what file_holder's read refuses: a directory, a FIFO
                try:
                    flock(fd, probe)
                except BlockingIOError:
                    held.add(name)
                else:
                    flock(fd, unlock)
            except OSError:
                odd.append(name)
            finally:
                close(fd)
    finally:
        close(dir_fd)
    for name in odd:
        if file_holder(os.path.join(directory, name)) is not None:
            held.add(name)
    return held


class _ThreadEnd:
    """Kept in one thread's ``threading.local``: collected when that thread ends."""

    __slots__ = ("__weakref__",)


def at_thread_end(local: object, callback: Callable[[], None]) -> None:
    """Call ``callback`` when the calling thread ends (or at exit), in this process only.

    A store keeps a connection per thread; a thread pool that ends idle
    threads (a web server's) would otherwise leave one open per thread it
    ever had. ``local`` is the ``threading.local`` the connection is kept
    in: a token stored there is collected with the thread's storage, and
    its finalizer runs ``callback``. In a forked child the callback does
    nothing: the connection is the parent's.
    """
    token = _ThreadEnd()
    local._thread_end = token  # type: ignore[attr-defined]
    pid = os.getpid()

    def ended() -> None:
        if os.getpid() == pid:
            callback()

    weakref.finalize(token, ended)


def close_at_thread_end(
    local: object,
    owner: object,
    lock: AbstractContextManager[Any],
    connection: Any,
    errors: type[BaseException],
) -> None:
    """When the calling thread ends, close its ``connection`` and drop it from ``owner``.

    ``owner`` (a store handle, held weakly) keeps the ``(pid, connection)``
    of every connection it opened in ``owner._open``, guarded by ``lock``;
    closing ignores ``errors`` (the connection may be broken already).
    """
    ref = weakref.ref(owner)

    def forget() -> None:
        handle: Any = ref()
        if handle is not None:
            with lock:
                handle._open = [(p, c) for p, c in handle._open if c is not connection]
        with contextlib.suppress(errors):
            connection.close()

    at_thread_end(local, forget)


def store_path(path: object, what: str) -> str:
    """``path`` (a ``str`` or ``os.PathLike`` naming a file system path) as a ``str``.

    ``CheckpointError`` saying what ``what`` takes for anything else: bytes,
    ``None``, an empty path, a NUL character (which no file name holds).
    """
    try:
        text = os.fspath(path) if isinstance(path, (str, os.PathLike)) else None
    except TypeError:
        text = None
    if not isinstance(text, str) or not text or "\0" in text:
        msg = f"{what} takes a path (a str or pathlib.Path), got {path!r:.80}"
        raise CheckpointError(msg)
    return text
