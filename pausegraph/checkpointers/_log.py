"""What every built-in store shares: frames, when to snapshot, how to rebuild.

A store keeps each run as a sequence of frames, one per checkpoint. Most are
*deltas* (just the changes the super-step made); every so often one is a full
*snapshot* (see ``SnapshotPolicy`` for when). So what a super-step adds
grows with its writes, not with the state, and rebuilding any checkpoint
decodes one snapshot and at most ``SNAPSHOT_EVERY`` deltas.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NoReturn

from .._channels import apply_change
from .._codec import encode_frame
from .._records import (
    Breakpoints,
    Checkpoint,
    Extension,
    Frame,
    ProgressBuilder,
    Stage,
    progress_of,
    with_progress,
)
from ..errors import CheckpointError, ConflictError
from ._store import FrameInfo

SNAPSHOT_EVERY = 1000
SNAPSHOT_RATIO = 2
SNAPSHOT_BUDGET = 0.5
SNAPSHOT_CAP = 16


class SnapshotPolicy:
    """Decides, frame by frame, whether a run's next frame is a snapshot.

    Three bounds, in order of strength:

    - at most ``SNAPSHOT_EVERY`` deltas follow a snapshot, so loading decodes
      a bounded number of frames whatever the run does;
    - otherwise a snapshot is due once the deltas since the last one outweigh
      it ``SNAPSHOT_RATIO`` times (loading reads few bytes beyond the state),
    - but only if all snapshots together, this one included, stay within
      ``SNAPSHOT_BUDGET`` times all deltas. A state that grows step by step
      (an Append log) is then not copied again and again: the store stays
      within about 1.5 times the writes, plus one snapshot per
      ``SNAPSHOT_EVERY`` frames. A state overwritten in place (a counter)
      stays small and is snapshotted often;
    - whatever the budget, a snapshot is due once the deltas since the last
      one outweigh it ``SNAPSHOT_CAP`` times, so loading reads at most about
      ``SNAPSHOT_CAP + 1`` times the snapshot it starts from (the SPEC's Size
      rule). A growing state's snapshots then grow at least that many times
      over each time, so together they stay within a small multiple of the
      last one.

    The budget is checked against the snapshot's real size, which costs an
    encode of the state; a snapshot found too big is not tried again until
    the budget has grown by its size.
    """

    __slots__ = (
        "all_deltas",
        "all_snapshots",
        "delta_bytes",
        "deltas",
        "refused_bytes",
        "snapshot_bytes",
    )

    def __init__(self) -> None:
        self.deltas = 0  # since the last snapshot
        self.delta_bytes = 0  # since the last snapshot
        self.snapshot_bytes = 0  # the last snapshot
        self.all_deltas = 0  # bytes, over the whole run
        self.all_snapshots = 0  # bytes, over the whole run
        self.refused_bytes = 0  # the last snapshot found over budget

    def _affordable(self, size: int) -> bool:
        return self.all_snapshots + size <= SNAPSHOT_BUDGET * self.all_deltas

    def encode(self, checkpoint: Checkpoint) -> tuple[bytes, bool]:
        """Encode the frame for ``checkpoint``; say whether it is a snapshot.

        Call ``saved`` once the frame is stored.
        """
        c = checkpoint
        if (
            c.changes is None
            or c.seq == 1
            or self.deltas >= SNAPSHOT_EVERY
            or self.delta_bytes > SNAPSHOT_CAP * self.snapshot_bytes
        ):
            return encode_frame(c, snapshot=True), True
        if self.delta_bytes > SNAPSHOT_RATIO * self.snapshot_bytes and self._affordable(
            self.refused_bytes
        ):
            data = encode_frame(c, snapshot=True)
            if self._affordable(len(data)):
                return data, True
            self.refused_bytes = len(data)
        return encode_frame(c, snapshot=False), False

    def learn(self, infos: Sequence[FrameInfo]) -> int:
        """Take in a run's frames saved so far, oldest first; return how many there are.

        The same as ``saved`` for each frame in turn, in one pass (a handle
        that saves to a run another handle saved to learns its whole log).
        """
        deltas, delta_bytes, snapshot_bytes = self.deltas, self.delta_bytes, self.snapshot_bytes
        all_deltas, all_snapshots, refused = self.all_deltas, self.all_snapshots, self.refused_bytes
        for info in infos:
            size = info.size
            if info.snapshot:
                deltas, delta_bytes, snapshot_bytes, refused = 0, 0, size, 0
                all_snapshots += size
            else:
                deltas += 1
                delta_bytes += size
                all_deltas += size
        self.deltas, self.delta_bytes, self.snapshot_bytes = deltas, delta_bytes, snapshot_bytes
        self.all_deltas, self.all_snapshots, self.refused_bytes = all_deltas, all_snapshots, refused
        return infos[-1].seq if infos else 0

    def saved(self, size: int, snapshot: bool) -> None:
        if snapshot:
            self.deltas, self.delta_bytes, self.snapshot_bytes = 0, 0, size
            self.all_snapshots += size
            self.refused_bytes = 0
        else:
            self.deltas += 1
            self.delta_bytes += size
            self.all_deltas += size


def rebuild(
    workflow_id: str, run_id: str, first: Frame, frames: Sequence[Frame | Extension]
) -> Checkpoint:
    """The checkpoint of ``frames[-1]``, from a snapshot ``frames[0]`` and the deltas after it.

    ``first`` is the run's first frame, which holds the graph's structure
    and the run's breakpoints (it may be ``frames[0]`` itself). The frames
    must be freshly decoded: their values are updated in place. A frame that
    ``extends`` adds its stage's progress to the previous frame's. A delta
    between the first and the last may come as an ``Extension`` (a layer's
    plain delta that extends, decoded without its records): it is folded in
    as its frame would be. The checkpoint has no ``changes`` (see ``Checkpoint``).
    """
    base, last = frames[0], frames[-1]
    assert type(base) is Frame
    assert type(last) is Frame
    assert base.values is not None
    assert first.structure is not None
    values = base.values
    stage = base.stage
    builder: ProgressBuilder | None = None  # while frames extend a layer's progress
    for frame in frames[1:]:
        if type(frame) is Extension:
            builder = builder or _builder(stage, frame.seq)
            builder.extend(frame)
            continue  # its stage is never the last: the last frame is a Frame
        assert type(frame) is Frame
        for change in frame.changes or ():
            apply_change(values, change)
        if frame.extends:
            added = progress_of(frame.stage)
            builder = builder or _builder(stage, frame.seq)
            if added is None:
                msg = f"checkpoint {frame.seq} extends a progress but carries none"
                raise ValueError(msg)
            builder.add(added)
        else:
            builder = None
        stage = frame.stage
    if builder is not None:
        stage = with_progress(stage, builder.build())
    return Checkpoint(
        workflow_id=workflow_id,
        run_id=run_id,
        seq=last.seq,
        super_step=last.super_step,
        label=last.label,
        timestamp_ms=last.timestamp_ms,
        values=values,
        stage=stage,
        structure=first.structure,
        breakpoints=first.breakpoints or Breakpoints(),
        # no ``changes``: they describe how the engine built this checkpoint from the one
        # before; a caller that saves a copy with other values must have them stored whole
        input=last.input if last.seq == 1 else None,
        epoch_base=last.epoch_base,
    )


def refuse_seq(workflow_id: str, run_id: str, seq: int, count: int) -> NoReturn:
    """Raise for an append of ``seq`` to a run that has ``count`` checkpoints.

    A seq the run has is a ``ConflictError`` (another writer got there
    first); a gap is a ``CheckpointError``.
    """
    where = f"run {run_id!r} of workflow {workflow_id!r}"
    if seq <= count:
        msg = (
            f"{where} already has checkpoint {seq}: another writer resumed or "
            "advanced it first; load the latest checkpoint and decide again"
        )
        raise ConflictError(msg)
    msg = f"{where} has {count} checkpoints; the next must be seq {count + 1}, not {seq}"
    raise CheckpointError(msg)


def _builder(stage: Stage, seq: int) -> ProgressBuilder:
    """A builder over the progress of ``stage``, which frame ``seq`` extends.

    Raises ``ValueError`` if that stage has no layer under way.
    """
    before = progress_of(stage)
    if before is None:
        msg = f"checkpoint {seq} extends a checkpoint with no layer under way"
        raise ValueError(msg)
    return ProgressBuilder(before)
