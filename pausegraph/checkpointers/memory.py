"""MemoryCheckpointer: checkpoints in this process, encoded with msgpack.

The store keeps bytes like any other (``MemoryStore`` speaks the ``Store``
protocol), but ``MemoryCheckpointer`` talks to its own store directly, as
the hot loop of tests and scripts wants it:

- a save checks the seq, encodes and appends under one lock, with the run's
  snapshot policy kept beside its frames (no per-handle cache to learn); the
  policy keeps every snapshot it tries (``_KeepWhole``), as a store that may
  keep whole values can, instead of encoding a refused one a second time as
  a delta;
- the run's summary is derived from the latest frame's info and stage only
  when someone lists runs (a store in this process needs no second copy for
  a reader elsewhere);
- a frame's info is kept as a plain tuple, a ``FrameInfo`` only when listed
  (a hot loop's store holds many runs: plain tuples are cheaper to keep and
  the garbage collector stops scanning them);
- frames this handle encoded itself are decoded without the bounded
  reader's pre-pass (``unpack_bounded``): that bound is there for bytes
  that come from outside the process, and these never did. A frame put in
  through ``MemoryStore.append`` (a user's own ``StoreCheckpointer`` over
  this store) marks its run as foreign, and that run's frames are read
  through the bounded reader again.
"""

from __future__ import annotations

import builtins
import threading
import time

import attrs
import msgpack

from .._codec import structure_frame
from .._records import Checkpoint, CheckpointMeta, Frame, Stage
from ..errors import CheckpointError, ConflictError, CorruptCheckpointError
from ._checkpointer import StoreCheckpointer, check_ids, check_seq, summary_from
from ._lock import Holder, held_message
from ._log import SnapshotPolicy, rebuild, refuse_seq
from ._store import FrameInfo, RunSummary


class _KeepWhole(SnapshotPolicy):
    """The durable stores' snapshot policy without its budget: a snapshot tried is kept.

    The budget keeps a durable store within a small multiple of the writes
    on disk; the memory store may keep whole values (SPEC, "Size"), so the
    snapshot the policy encodes to weigh it is stored rather than thrown
    away and followed by a second encode as a delta. Loading still reads at
    most ``SNAPSHOT_EVERY`` deltas after a snapshot, and snapshots come no
    oftener than the deltas since the last one outweigh it twice.
    """

    __slots__ = ()

    def _affordable(self, size: int) -> bool:
        return True


# A FrameInfo's fields as a tuple, in its order: seq, super_step, label,
# timestamp_ms, snapshot, size.
_Info = tuple[int, int, str, int, bool, int]


class _Run:
    """One run's frames, their infos, its snapshot policy, and where its summary comes from."""

    __slots__ = ("first", "foreign", "frames", "infos", "policy", "stage", "summary")

    def __init__(self) -> None:
        self.infos: list[_Info] = []
        self.frames: list[bytes] = []
        self.policy: SnapshotPolicy = _KeepWhole()
        # the summary as appended, or None: derive it from the last info and ``stage``
        self.summary: RunSummary | None = None
        self.stage: Stage | None = None  # the latest checkpoint's, saved by this process
        self.foreign = False  # a frame came in through append(): read with the bound
        self.first: Frame | None = None  # frame 1 decoded, without its values

    def keep(self, info: _Info, frame: bytes) -> None:
        """Add a frame and its info (``(seq, super_step, label, timestamp_ms, snapshot, size)``)."""
        self.infos.append(info)
        self.frames.append(frame)
        self.policy.saved(info[5], info[4])

    def listed(self, workflow_id: str, run_id: str) -> RunSummary:
        """The run's summary, derived from its latest frame the first time it is asked."""
        summary = self.summary
        if summary is None:
            assert self.stage is not None
            seq, super_step, label, timestamp_ms, _, _ = self.infos[-1]
            head = (seq, super_step, label, timestamp_ms)
            summary = self.summary = summary_from(workflow_id, run_id, head, self.stage)
            self.stage = None
        return summary


class MemoryStore:
    """The in-process store: runs as lists of frames in a dict, guarded by one lock.

    The live lock is a table of holders: a second driver of a run in this
    process (another thread, another ``Runner``) is refused. ``sync`` has
    nothing to do.
    """

    def __init__(self) -> None:
        self._runs: dict[tuple[str, str], _Run] = {}
        self._holders: dict[tuple[str, str], _LiveLock] = {}  # the live lock of each held run
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<MemoryStore: {len(self._runs)} runs>"

    def _next(self, key: tuple[str, str], seq: int) -> _Run | None:
        """The run ``seq`` would be appended to (``None``: a new run); the lock is held.

        Raises what ``refuse_seq`` raises for a seq that is not the next one.
        """
        run = self._runs.get(key)
        count = 0 if run is None else len(run.frames)
        if seq != count + 1:
            refuse_seq(key[0], key[1], seq, count)
        return run

    def append(self, info: FrameInfo, frame: bytes, summary: RunSummary) -> None:
        key = (summary.workflow_id, summary.run_id)
        with self._lock:
            run = self._next(key, info.seq)
            if run is None:
                run = self._runs[key] = _Run()
            i = info
            run.keep(
                (i.seq, i.super_step, i.label, i.timestamp_ms, i.snapshot, i.size), bytes(frame)
            )
            run.summary, run.stage, run.foreign = summary, None, True

    def frames(self, workflow_id: str, run_id: str) -> builtins.list[FrameInfo]:
        with self._lock:
            run = self._runs.get((workflow_id, run_id))
            return [] if run is None else [FrameInfo(*i) for i in run.infos]

    def read(self, workflow_id: str, run_id: str, first: int, last: int) -> builtins.list[bytes]:
        with self._lock:
            run = self._runs.get((workflow_id, run_id))
            return [] if run is None else run.frames[first - 1 : last]

    def runs(
        self, *, workflow_id: str | None = None, status: str | None = None
    ) -> builtins.list[RunSummary]:
        with self._lock:
            listed = (
                r.listed(w, i)
                for (w, i), r in self._runs.items()
                if workflow_id is None or w == workflow_id
            )
            return [s for s in listed if status is None or s.status == status]

    def delete(self, workflow_id: str, run_id: str) -> None:
        with self._lock:
            self._runs.pop((workflow_id, run_id), None)

    def lock(self, workflow_id: str, run_id: str) -> _LiveLock:
        return _LiveLock(self, (workflow_id, run_id))

    def holder(self, workflow_id: str, run_id: str) -> Holder | None:
        held = self._holders.get((workflow_id, run_id))
        return None if held is None else Holder.here(held.since)

    def held_among(self, runs: builtins.list[tuple[str, str]]) -> set[tuple[str, str]]:
        """The runs among ``runs`` whose live lock is held."""
        holders = self._holders
        return {ids for ids in runs if ids in holders}

    def sync(self) -> None:
        pass  # nothing outlives the process: nothing to make durable


class _LiveLock:
    """A run's live lock in a ``MemoryStore``: held by this process, one holder at a time.

    Taking it is one ``dict.setdefault`` (atomic: the keys are tuples of
    strings, whose hashing and comparing run no Python code), so it needs no
    store-wide lock: the first to put itself in the table holds the run.
    """

    __slots__ = ("holders", "key", "since")

    def __init__(self, store: MemoryStore, key: tuple[str, str]) -> None:
        self.holders, self.key = store._holders, key
        self.since = 0  # epoch ms, set when taken

    def __enter__(self) -> None:
        key = self.key
        if self.since:  # this very lock is held already: a second holder all the same
            raise ConflictError(held_message(key[0], key[1], Holder.here(self.since)))
        self.since = time.time_ns() // 1_000_000
        holder = self.holders.setdefault(key, self)
        if holder is not self:
            self.since = 0
            raise ConflictError(held_message(key[0], key[1], Holder.here(holder.since)))

    def __exit__(self, *exc: object) -> None:
        del self.holders[self.key]
        self.since = 0


def decode_own(data: bytes) -> Frame:
    """Decode a frame this process encoded itself: no bounded pre-pass.

    The same msgpack options as ``unpack_bounded`` (so the same objects come
    back), without its ``skip()`` pass and size limits, which guard against
    bytes from outside. Never use it on bytes read from a file or a database.
    """
    return structure_frame(msgpack.unpackb(data, raw=False, strict_map_key=False, use_list=True))


class MemoryCheckpointer(StoreCheckpointer):
    """Keeps checkpoints in memory, for tests, scripts and hot loops.

    Everything is stored msgpack-encoded, exactly as the durable stores
    encode it, so a value that would not survive a file survives here
    neither, and nothing a caller mutates after ``save`` or after ``latest``
    reaches the store. Safe to share between threads; ``save`` is
    conditional. Lost when the process ends.
    """

    store: MemoryStore

    def __init__(self) -> None:
        super().__init__(MemoryStore())

    def __repr__(self) -> str:
        return f"<MemoryCheckpointer: {len(self.store._runs)} runs>"

    def lock(self, workflow_id: str, run_id: str) -> _LiveLock:
        """Hold the run's live lock; ``ConflictError`` naming the holder if another has it."""
        check_ids(workflow_id, run_id)
        return _LiveLock(self.store, (workflow_id, run_id))

    def sync(self) -> None:
        """Nothing to do: nothing outlives the process."""

    def save(self, checkpoint: Checkpoint) -> None:
        """Append ``checkpoint`` as a snapshot or a delta, conditionally on its seq.

        Raises ``ConflictError`` if the run already has that seq (nothing is
        written), ``CheckpointError`` for a seq that is not the next one,
        ``SerializationError`` for a value msgpack cannot encode (nothing is
        written).
        """
        store = self.store
        key = (checkpoint.workflow_id, checkpoint.run_id)
        with store._lock:
            run = store._next(key, checkpoint.seq)
            policy = _KeepWhole() if run is None else run.policy
            frame, snapshot = policy.encode(checkpoint)
            if run is None:
                run = store._runs[key] = _Run()
                run.policy = policy
            c = checkpoint
            run.keep((c.seq, c.super_step, c.label, c.timestamp_ms, snapshot, len(frame)), frame)
            run.summary, run.stage = None, c.stage

    def load(self, workflow_id: str, run_id: str, seq: int) -> Checkpoint | None:
        """Checkpoint ``seq`` of a run, or ``None`` if there is none."""
        check_seq(seq)
        return self._load_own(workflow_id, run_id, seq)

    def latest(self, workflow_id: str, run_id: str) -> Checkpoint | None:
        """The run's checkpoint with the highest seq, or ``None``."""
        return self._load_own(workflow_id, run_id, None)

    def runs(self) -> builtins.list[tuple[str, str]]:
        """Every ``(workflow_id, run_id)`` in the store (no summary is derived for it)."""
        with self.store._lock:
            return list(self.store._runs)

    def last(self, workflow_id: str, run_id: str) -> CheckpointMeta | None:
        """The meta of the run's latest checkpoint, or ``None``: a look that reads no frame."""
        check_ids(workflow_id, run_id)
        store = self.store
        with store._lock:
            run = store._runs.get((workflow_id, run_id))
            if run is None or not run.infos:
                return None
            seq, super_step, label, timestamp_ms, _, _ = run.infos[-1]
        return CheckpointMeta(seq, super_step, label, timestamp_ms)

    def _load_own(self, workflow_id: str, run_id: str, seq: int | None) -> Checkpoint | None:
        check_ids(workflow_id, run_id)
        store = self.store
        with store._lock:
            run = store._runs.get((workflow_id, run_id))
            if run is None:
                return None
            infos = run.infos
            if seq is None:
                seq = len(infos)
            if not 1 <= seq <= len(infos):
                return None
            base = seq
            while not infos[base - 1][4]:  # not a snapshot
                base -= 1
                if base == 0:
                    msg = f"run {run_id!r} of workflow {workflow_id!r} has no snapshot before {seq}"
                    raise CorruptCheckpointError(msg)
            datas = run.frames[base - 1 : seq]
            first, foreign = run.first, run.foreign
            head = None if base == 1 or first is not None else run.frames[0]
        if foreign:  # bytes that came in through append(): read them with the bound
            frames = [self._decode(workflow_id, run_id, base + n, d) for n, d in enumerate(datas)]
        else:
            frames = [decode_own(d) for d in datas]
        if base == 1:
            first = frames[0]
        elif first is None:
            assert head is not None
            decoded = self._decode(workflow_id, run_id, 1, head) if foreign else decode_own(head)
            first = attrs.evolve(decoded, values=None, input=None, changes=None)
            with store._lock:
                if store._runs.get((workflow_id, run_id)) is run:
                    run.first = first
        if len(frames) != seq - base + 1:  # pragma: no cover - the lock makes it impossible
            msg = f"the store returned {len(frames)} frames of run {run_id!r} for {base}..{seq}"
            raise CheckpointError(msg)
        try:
            return rebuild(workflow_id, run_id, first, frames)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            msg = f"checkpoint {seq} of run {run_id!r} does not rebuild: {exc}"
            raise CorruptCheckpointError(msg) from None
