"""MemoryCheckpointer: checkpoints in this process, encoded with msgpack."""

from __future__ import annotations

import builtins
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from .._codec import decode_frame
from .._records import Checkpoint, CheckpointMeta, Frame
from ..errors import ConflictError
from ._lock import Holder, held_message
from ._log import SnapshotPolicy, rebuild, refuse_seq


class _RunFrames:
    __slots__ = ("base", "first", "frames", "metas", "policy")

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.base: list[int] = []  # index of the snapshot each frame builds on
        self.metas: list[CheckpointMeta] = []
        self.policy = SnapshotPolicy()
        self.first: Frame | None = None  # decoded once: it only holds immutable records


class MemoryCheckpointer:
    """Keeps checkpoints in memory, for tests, scripts and hot loops.

    Everything is stored msgpack-encoded, exactly as the file store encodes
    it, so a value that would not survive a file survives here neither, and
    nothing a caller mutates after ``save`` or after ``latest`` reaches the
    store. Safe to share between threads; ``save`` is conditional (see
    ``Checkpointer``). Lost when the process ends.
    """

    def __init__(self) -> None:
        self._runs: dict[tuple[str, str], _RunFrames] = {}
        self._holders: dict[tuple[str, str], Holder] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<MemoryCheckpointer: {len(self._runs)} runs>"

    def save(self, checkpoint: Checkpoint) -> None:
        key = (checkpoint.workflow_id, checkpoint.run_id)
        with self._lock:
            run = self._runs.get(key)
            count = 0 if run is None else len(run.frames)
            if checkpoint.seq != count + 1:
                refuse_seq(checkpoint, count)
            if run is None:
                run = _RunFrames()
            data, snapshot = run.policy.encode(checkpoint)
            run.policy.saved(len(data), snapshot)
            run.base.append(count if snapshot else run.base[-1])
            run.frames.append(data)
            if run.first is None:
                run.first = decode_frame(data)
            run.metas.append(checkpoint.meta)
            self._runs[key] = run

    def load(self, workflow_id: str, run_id: str, seq: int) -> Checkpoint | None:
        with self._lock:
            run = self._runs.get((workflow_id, run_id))
            if run is None or not 1 <= seq <= len(run.frames):
                return None
            chain = run.frames[run.base[seq - 1] : seq]
            first = run.first
        assert first is not None
        frames = [decode_frame(data) for data in chain]
        return rebuild(workflow_id, run_id, first, frames)

    def latest(self, workflow_id: str, run_id: str) -> Checkpoint | None:
        with self._lock:
            run = self._runs.get((workflow_id, run_id))
            seq = 0 if run is None else len(run.frames)
        return self.load(workflow_id, run_id, seq) if seq else None

    def list(self, workflow_id: str, run_id: str) -> builtins.list[CheckpointMeta]:
        with self._lock:
            run = self._runs.get((workflow_id, run_id))
            return [] if run is None else list(run.metas)

    def runs(self) -> builtins.list[tuple[str, str]]:
        with self._lock:
            return list(self._runs)

    def delete(self, workflow_id: str, run_id: str) -> None:
        """Remove every checkpoint of a run (nothing if it has none)."""
        with self._lock:
            self._runs.pop((workflow_id, run_id), None)

    @contextmanager
    def lock(self, workflow_id: str, run_id: str) -> Iterator[None]:
        """Hold the run's live lock; ``ConflictError`` naming the holder if another has it.

        In memory the holder is a thread of this process: a second ``Runner``
        (or thread) driving the same run is refused.
        """
        key = (workflow_id, run_id)
        with self._lock:
            holder = self._holders.get(key)
            if holder is not None:
                raise ConflictError(held_message(workflow_id, run_id, holder))
            self._holders[key] = Holder.here()
        try:
            yield
        finally:
            with self._lock:
                del self._holders[key]

    def holder(self, workflow_id: str, run_id: str) -> Holder | None:
        """Who holds the run's live lock, or ``None``."""
        with self._lock:
            return self._holders.get((workflow_id, run_id))
