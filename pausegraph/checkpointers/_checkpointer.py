"""StoreCheckpointer: checkpoints over any bytes-level ``Store``.

This is where a checkpoint becomes frames and frames become a checkpoint
again, for every store alike: the snapshot policy (``_log.SnapshotPolicy``)
chooses snapshot or delta, the codec encodes, the store appends bytes; a
load asks the store for the frames from the last snapshot on and rebuilds.
A store also keeps each run's ``RunSummary`` (status, earliest deadline,
pending interrupts), so that listing runs or everything that waits for a
person never reads a frame.
"""

from __future__ import annotations

import builtins
import threading
from collections import OrderedDict
from contextlib import AbstractContextManager
from typing import Any

import attrs

from .._codec import decode_frame, extension_of, unpack_bounded
from .._machine import pending_entries, status_of
from .._records import (
    AtInterrupt,
    Checkpoint,
    CheckpointMeta,
    Extension,
    Failed,
    Frame,
    InLayer,
    Stage,
)
from .._values import pack
from ..errors import CheckpointError, CorruptCheckpointError
from ._lock import Holder
from ._log import SnapshotPolicy, rebuild
from ._store import FrameInfo, RunSummary, Store

_MAX_RUNS = 1024  # runs whose snapshot policy a handle keeps


@attrs.frozen
class SummaryData:
    """What ``RunSummary.data`` holds, decoded: enough to list a run and its interrupts."""

    super_step: int
    label: str
    # (interrupt id, step id, payload, deadline_ms, asked_ms) of each pending interrupt;
    # asked_ms (when the step reached it) is None in summaries written before it was kept
    interrupts: tuple[tuple[str, str, Any, int | None, int | None], ...]


def check_ids(workflow_id: object, run_id: object) -> None:
    """``CheckpointError`` unless both ids are ``str`` (a store encodes them as text)."""
    if not isinstance(workflow_id, str) or not isinstance(run_id, str):
        msg = (
            "a checkpointer takes the workflow and run ids as str, got "
            f"{type(workflow_id).__name__} and {type(run_id).__name__}"
        )
        raise CheckpointError(msg)


def check_seq(seq: object) -> None:
    """``CheckpointError`` unless ``seq`` is an ``int`` (``True`` is not checkpoint 1)."""
    if not isinstance(seq, int) or isinstance(seq, bool):
        msg = f"load(workflow_id, run_id, seq) takes seq as an int, got {seq!r:.80}"
        raise CheckpointError(msg)


def summary_of(checkpoint: Checkpoint) -> RunSummary:
    """The summary a store keeps for a run whose latest checkpoint is ``checkpoint``."""
    c = checkpoint
    return summary_from(
        c.workflow_id, c.run_id, (c.seq, c.super_step, c.label, c.timestamp_ms), c.stage
    )


def summary_from(
    workflow_id: str, run_id: str, head: tuple[int, int, str, int], stage: Stage
) -> RunSummary:
    """The summary of a run whose latest checkpoint has ``head`` and ``stage``.

    ``head`` is that checkpoint's (seq, super_step, label, timestamp_ms): all
    of it a summary reads besides the stage, so a store may keep just these
    and derive the summary when runs are listed.
    """
    seq, super_step, label, timestamp_ms = head
    if type(stage) is AtInterrupt or type(stage) is Failed or type(stage) is InLayer:
        pending = pending_entries(stage)  # a layer under way: what its claim left unanswered
        interrupts = [[e.id, s, e.payload, e.deadline_ms, e.asked_ms] for s, e in pending]
        deadlines = [e.deadline_ms for _, e in pending if e.deadline_ms is not None]
    else:  # the hot path of a layer: nothing pending
        interrupts, deadlines = [], []
    data = pack([super_step, label, interrupts])
    return RunSummary(
        workflow_id,
        run_id,
        seq,
        status_of(stage, running=False).value,
        timestamp_ms,
        min(deadlines) if deadlines else None,
        data,
    )


def summary_data(summary: RunSummary) -> SummaryData:
    """Decode ``summary.data``; ``CorruptCheckpointError`` if no engine wrote it."""
    return SummaryData(*summary_fields(summary))


#: (super_step, label, interrupts) of a summary: ``SummaryData``'s fields as a tuple
Fields = tuple[int, str, tuple[tuple[str, str, Any, int | None, int | None], ...]]


def summary_fields(summary: RunSummary) -> Fields:
    """``summary_data(summary)`` as a plain tuple: what a listing of many runs reads.

    ``CorruptCheckpointError`` if no engine wrote ``summary.data``.
    """
    try:
        super_step, label, interrupts = unpack_bounded(summary.data)
        if type(super_step) is int and type(label) is str and type(interrupts) is list:
            if not interrupts:  # a run that waits for nothing: the common row
                return super_step, label, ()
            if all(
                type(i) is list
                and len(i) == 5
                and type(i[0]) is str
                and type(i[1]) is str
                and (i[3] is None or type(i[3]) is int)
                and (i[4] is None or type(i[4]) is int)
                for i in interrupts
            ):  # what the engine writes: nothing to convert
                return super_step, label, tuple(map(tuple, interrupts))
        return int(super_step), str(label), tuple(map(_interrupt_fields, interrupts))
    except (ValueError, TypeError) as exc:
        msg = (
            f"the summary of run {summary.run_id!r} of workflow {summary.workflow_id!r} "
            f"does not decode: {exc}"
        )
        raise CorruptCheckpointError(msg) from None


def _interrupt_fields(fields: Any) -> tuple[str, str, Any, int | None, int | None]:
    """A summary's interrupt, 5 fields (4 before ``asked_ms`` was kept: it reads ``None``)."""
    if type(fields) is not list or len(fields) not in (4, 5):
        msg = f"an interrupt of 4 or 5 fields, got {fields!r:.80}"
        raise ValueError(msg)
    i, s, p, d, *asked = fields
    a = asked[0] if asked else None
    return str(i), str(s), p, None if d is None else int(d), None if a is None else int(a)


class _RunState:
    """What a handle remembers of a run it saves to: its frame count and snapshot policy."""

    __slots__ = ("count", "policy")

    def __init__(self) -> None:
        self.count = 0
        self.policy = SnapshotPolicy()


_CALLED = ("save", "latest", "last", "list", "lock", "sync")  # what every command calls


def checked_checkpointer(obj: Any, what: str) -> Any:
    """``obj`` if it looks like a checkpointer, else ``CheckpointError`` saying what ``what`` takes.

    Only the shape is checked (the calls every command makes), so that a
    wrong argument (``None``, a path, a URL) is refused where it is given,
    not later, deep inside a call.
    """
    if not all(callable(getattr(obj, name, None)) for name in _CALLED):
        msg = (
            f"{what} takes a checkpointer (MemoryCheckpointer(), FileCheckpointer(path), "
            f"open_checkpointer(url), ...), got {type(obj).__name__} {obj!r:.80}"
        )
        raise CheckpointError(msg)
    return obj


class StoreCheckpointer:
    """A checkpointer over a bytes-level ``Store``: give it your own store.

    ::

        runner = Runner(graph, StoreCheckpointer(MyStore()))

    It offers what a ``Runner`` calls (``save``, ``load``, ``latest``,
    ``list``, ``runs``, ``delete``, ``lock``, ``holder``, ``sync``) plus
    ``summaries`` for listings; the store only keeps bytes (see
    ``pausegraph.checkpointers.Store``).
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._states: OrderedDict[tuple[str, str], _RunState] = OrderedDict()
        self._firsts: dict[tuple[str, str], tuple[FrameInfo, bytes, Frame]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} on {self.store!r}>"

    # --- writing ------------------------------------------------------------------

    def save(self, checkpoint: Checkpoint) -> None:
        """Append ``checkpoint`` as a snapshot or a delta, conditionally on its seq.

        Raises ``ConflictError`` if the run already has that seq (nothing is
        written), ``CheckpointError`` for a seq that is not the next one or
        a store that failed, ``SerializationError`` for a value msgpack
        cannot encode (before anything is written).
        """
        key = (checkpoint.workflow_id, checkpoint.run_id)
        state = self._state(key, checkpoint.seq)
        frame, snapshot = state.policy.encode(checkpoint)
        info = FrameInfo(
            checkpoint.seq,
            checkpoint.super_step,
            checkpoint.label,
            checkpoint.timestamp_ms,
            snapshot,
            len(frame),
        )
        try:
            self.store.append(info, frame, summary_of(checkpoint))
        except BaseException:
            with self._lock:
                self._states.pop(key, None)  # learn the run afresh next time
            raise
        state.policy.saved(len(frame), snapshot)
        state.count = checkpoint.seq

    def _state(self, key: tuple[str, str], seq: int) -> _RunState:
        with self._lock:
            state = self._states.get(key)
            if state is not None:
                self._states.move_to_end(key)
                if state.count == seq - 1:
                    return state
        state = _RunState()
        if seq != 1:  # another handle saved since: learn the run's frames
            state.count = state.policy.learn(self.store.frames(*key))
        with self._lock:
            self._states[key] = state
            while len(self._states) > _MAX_RUNS:
                self._states.popitem(last=False)
        return state

    def sync(self) -> None:
        """Make every checkpoint saved so far durable."""
        self.store.sync()

    def delete(self, workflow_id: str, run_id: str) -> None:
        """Remove every checkpoint of a run (nothing if it has none)."""
        check_ids(workflow_id, run_id)
        with self._lock:
            self._states.pop((workflow_id, run_id), None)
            self._firsts.pop((workflow_id, run_id), None)
        self.store.delete(workflow_id, run_id)

    def lock(self, workflow_id: str, run_id: str) -> AbstractContextManager[None]:
        """Hold the run's live lock; ``ConflictError`` naming the holder if another has it."""
        check_ids(workflow_id, run_id)
        return self.store.lock(workflow_id, run_id)

    def holder(self, workflow_id: str, run_id: str) -> Holder | None:
        """Who holds the run's live lock, or ``None``."""
        check_ids(workflow_id, run_id)
        return self.store.holder(workflow_id, run_id)

    # --- reading ------------------------------------------------------------------

    def load(self, workflow_id: str, run_id: str, seq: int) -> Checkpoint | None:
        """Checkpoint ``seq`` of a run, or ``None`` if there is none."""
        check_seq(seq)
        return self._loaded(workflow_id, run_id, seq)

    def latest(self, workflow_id: str, run_id: str) -> Checkpoint | None:
        """The run's checkpoint with the highest seq, or ``None``."""
        return self._loaded(workflow_id, run_id, None)

    def _loaded(self, workflow_id: str, run_id: str, seq: int | None) -> Checkpoint | None:
        """``_load`` on the frames listed now (``seq`` ``None``: the last); once more if the
        run was deleted (and maybe started again) between the listing and the read."""

        check_ids(workflow_id, run_id)

        def attempt() -> Checkpoint | None:
            infos = self.store.frames(workflow_id, run_id)
            return self._load(workflow_id, run_id, infos, len(infos) if seq is None else seq)

        try:
            return attempt()
        except _Vanished:
            try:
                return attempt()
            except _Vanished as vanished:
                raise CheckpointError(str(vanished)) from None

    def list(self, workflow_id: str, run_id: str) -> builtins.list[CheckpointMeta]:
        """Every checkpoint's meta of a run, oldest first (``[]`` if none)."""
        check_ids(workflow_id, run_id)
        return [
            CheckpointMeta(i.seq, i.super_step, i.label, i.timestamp_ms)
            for i in self.store.frames(workflow_id, run_id)
        ]

    def last(self, workflow_id: str, run_id: str) -> CheckpointMeta | None:
        """The meta of the run's latest checkpoint, or ``None``: a look that reads no frame."""
        check_ids(workflow_id, run_id)
        infos = self.store.frames(workflow_id, run_id)
        if not infos:
            return None
        i = infos[-1]
        return CheckpointMeta(i.seq, i.super_step, i.label, i.timestamp_ms)

    def runs(self) -> builtins.list[tuple[str, str]]:
        """Every ``(workflow_id, run_id)`` in the store."""
        return [(s.workflow_id, s.run_id) for s in self.store.runs()]

    def summaries(
        self, *, workflow_id: str | None = None, status: str | None = None
    ) -> builtins.list[RunSummary]:
        """The latest ``RunSummary`` of every run, filtered by workflow and status."""
        return self.store.runs(workflow_id=workflow_id, status=status)

    def _load(
        self, workflow_id: str, run_id: str, infos: builtins.list[FrameInfo], seq: int
    ) -> Checkpoint | None:
        if not 1 <= seq <= len(infos):
            return None
        base = seq
        while not infos[base - 1].snapshot:
            base -= 1
            if base == 0:
                msg = f"run {run_id!r} of workflow {workflow_id!r} has no snapshot before {seq}"
                raise CorruptCheckpointError(msg)
        datas = self.store.read(workflow_id, run_id, base, seq)
        if len(datas) != seq - base + 1:
            msg = f"the store returned {len(datas)} frames of run {run_id!r} for {base}..{seq}"
            raise _Vanished(msg)
        snapshot = self._decoded(workflow_id, run_id, infos[base - 1], datas[0])
        frames: builtins.list[Frame | Extension] = [snapshot]
        for at, data in enumerate(datas[1:], start=base + 1):
            # a delta before the last that only extends a layer's progress is folded
            # in without its records being built (_codec.extension_of)
            extension = None
            if at < seq and not infos[at - 1].snapshot:
                extension = extension_of(data, at)
            if extension is None:
                frames.append(self._decoded(workflow_id, run_id, infos[at - 1], data))
            else:
                frames.append(extension)
        first = snapshot if base == 1 else self._first(workflow_id, run_id, infos[0])
        try:
            return rebuild(workflow_id, run_id, first, frames)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            msg = f"checkpoint {seq} of run {run_id!r} does not rebuild: {exc}"
            raise CorruptCheckpointError(msg) from None

    def _first(self, workflow_id: str, run_id: str, info: FrameInfo) -> Frame:
        """The run's first frame, without its values (what ``rebuild`` reads of it).

        Its bytes are read every time and decoded only when they differ from
        the ones this handle decoded last for the run: a run deleted and
        started again under its id by another handle can have a first frame
        of the very same meta (a fixed clock, a breakpoint name of the same
        length) and other breakpoints.
        """
        key = (workflow_id, run_id)
        datas = self.store.read(workflow_id, run_id, 1, 1)
        if len(datas) != 1:
            msg = f"the store returned {len(datas)} frames of run {run_id!r} for 1..1"
            raise _Vanished(msg)
        (data,) = datas
        with self._lock:
            known = self._firsts.get(key)
        if known is not None and known[0] == info and known[1] == data:
            return known[2]
        first = attrs.evolve(
            self._decoded(workflow_id, run_id, info, data), values=None, input=None, changes=None
        )
        with self._lock:
            if len(self._firsts) >= _MAX_RUNS:
                self._firsts.clear()
            self._firsts[key] = (info, bytes(data), first)
        return first

    def _decoded(self, workflow_id: str, run_id: str, info: FrameInfo, data: bytes) -> Frame:
        """Frame ``info.seq`` decoded, and checked against what the store listed of it.

        A frame of another seq, a delta where the store lists a snapshot (or
        the reverse), or a first frame without the graph's structure is a
        ``CorruptCheckpointError`` (``_damaged``): bytes moved between rows,
        or written by something other than pausegraph, never a wrong state or
        an internal error.
        """
        seq = info.seq
        frame = self._decode(workflow_id, run_id, seq, data)
        if frame.seq != seq or frame.is_snapshot != info.snapshot:
            raise self._damaged(workflow_id, run_id, seq, "its frame does not match its meta")
        if seq == 1 and frame.structure is None:
            why = "the run's first frame has no graph structure"
            raise self._damaged(workflow_id, run_id, seq, why)
        return frame

    def _damaged(self, workflow_id: str, run_id: str, seq: int, why: str) -> CheckpointError:
        """The error for frame ``seq``, which decodes but is not the one listed (``why``)."""
        msg = (
            f"checkpoint {seq} of run {run_id!r} of workflow {workflow_id!r} is damaged: "
            f"{why}: the store holds bytes pausegraph did not write there"
        )
        return CorruptCheckpointError(msg)

    @staticmethod
    def _decode(workflow_id: str, run_id: str, seq: int, data: bytes) -> Frame:
        try:
            return decode_frame(data)
        except Exception as exc:  # cattrs and msgpack raise many kinds for bad bytes
            msg = (
                f"checkpoint {seq} of run {run_id!r} of workflow {workflow_id!r} does not "
                f"decode ({type(exc).__name__}): the store holds bytes pausegraph did not write"
            )
            raise CorruptCheckpointError(msg) from None


class _Vanished(Exception):
    """The store read fewer frames than it listed: the run was deleted meanwhile."""
