"""MemoryCheckpointer: checkpoints in this process, encoded with msgpack."""

from __future__ import annotations

import builtins
import threading
import time

from ..errors import ConflictError
from ._checkpointer import StoreCheckpointer
from ._lock import Holder, held_message
from ._log import refuse_seq
from ._store import FrameInfo, RunSummary


class _Run:
    __slots__ = ("frames", "infos", "summary")

    def __init__(self, summary: RunSummary) -> None:
        self.infos: list[FrameInfo] = []
        self.frames: list[bytes] = []
        self.summary = summary


class MemoryStore:
    """The in-process store: runs as lists of frames in a dict, guarded by one lock.

    The live lock is a table of holders: a second driver of a run in this
    process (another thread, another ``Runner``) is refused. ``sync`` has
    nothing to do.
    """

    def __init__(self) -> None:
        self._runs: dict[tuple[str, str], _Run] = {}
        self._holders: dict[tuple[str, str], int] = {}  # held runs: since (epoch ms)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<MemoryStore: {len(self._runs)} runs>"

    def append(self, info: FrameInfo, frame: bytes, summary: RunSummary) -> None:
        key = (summary.workflow_id, summary.run_id)
        with self._lock:
            run = self._runs.get(key)
            count = 0 if run is None else len(run.frames)
            if info.seq != count + 1:
                refuse_seq(key[0], key[1], info.seq, count)
            if run is None:
                run = self._runs[key] = _Run(summary)
            run.infos.append(info)
            run.frames.append(bytes(frame))
            run.summary = summary

    def frames(self, workflow_id: str, run_id: str) -> builtins.list[FrameInfo]:
        with self._lock:
            run = self._runs.get((workflow_id, run_id))
            return [] if run is None else list(run.infos)

    def read(self, workflow_id: str, run_id: str, first: int, last: int) -> builtins.list[bytes]:
        with self._lock:
            run = self._runs.get((workflow_id, run_id))
            return [] if run is None else run.frames[first - 1 : last]

    def runs(
        self, *, workflow_id: str | None = None, status: str | None = None
    ) -> builtins.list[RunSummary]:
        with self._lock:
            return [
                r.summary
                for (w, _), r in self._runs.items()
                if (workflow_id is None or w == workflow_id)
                and (status is None or r.summary.status == status)
            ]

    def delete(self, workflow_id: str, run_id: str) -> None:
        with self._lock:
            self._runs.pop((workflow_id, run_id), None)

    def lock(self, workflow_id: str, run_id: str) -> _LiveLock:
        return _LiveLock(self, (workflow_id, run_id))

    def holder(self, workflow_id: str, run_id: str) -> Holder | None:
        with self._lock:
            since = self._holders.get((workflow_id, run_id))
        return None if since is None else Holder.here(since)

    def sync(self) -> None:
        pass  # nothing outlives the process: nothing to make durable


class _LiveLock:
    """A run's live lock in a ``MemoryStore``: held by this process, one holder at a time."""

    __slots__ = ("key", "store")

    def __init__(self, store: MemoryStore, key: tuple[str, str]) -> None:
        self.store, self.key = store, key

    def __enter__(self) -> None:
        store, key = self.store, self.key
        with store._lock:
            since = store._holders.get(key)
            if since is None:
                store._holders[key] = time.time_ns() // 1_000_000
                return
        raise ConflictError(held_message(key[0], key[1], Holder.here(since)))

    def __exit__(self, *exc: object) -> None:
        with self.store._lock:
            del self.store._holders[self.key]


class MemoryCheckpointer(StoreCheckpointer):
    """Keeps checkpoints in memory, for tests, scripts and hot loops.

    Everything is stored msgpack-encoded, exactly as the durable stores
    encode it, so a value that would not survive a file survives here
    neither, and nothing a caller mutates after ``save`` or after ``latest``
    reaches the store. Safe to share between threads; ``save`` is
    conditional. Lost when the process ends.
    """

    def __init__(self) -> None:
        super().__init__(MemoryStore())

    def __repr__(self) -> str:
        return f"<MemoryCheckpointer: {len(self.store.runs())} runs>"
