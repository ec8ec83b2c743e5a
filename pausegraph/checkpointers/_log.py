"""What every built-in store shares: frames, when to snapshot, how to rebuild.

A store keeps each run as a sequence of frames, one per checkpoint. Most are
*deltas* (just the changes the super-step made); every so often one is a full
*snapshot*. A frame is a snapshot when it is the run's first, when the
checkpoint brings no changes, when ``SNAPSHOT_EVERY`` deltas have passed, or
when the deltas since the last snapshot outweigh it ``SNAPSHOT_RATIO`` times.
So what a super-step adds grows with its writes, not with the state, and
rebuilding any checkpoint decodes one snapshot and at most ``SNAPSHOT_EVERY``
deltas.
"""

from __future__ import annotations

from collections.abc import Sequence

from .._channels import apply_change
from .._records import Checkpoint, Frame, encode_frame

SNAPSHOT_EVERY = 1000
SNAPSHOT_RATIO = 2


class SnapshotPolicy:
    """Decides, frame by frame, whether a run's next frame is a snapshot."""

    __slots__ = ("delta_bytes", "deltas", "snapshot_bytes")

    def __init__(self) -> None:
        self.deltas = 0
        self.delta_bytes = 0
        self.snapshot_bytes = 0

    def encode(self, checkpoint: Checkpoint) -> tuple[bytes, bool]:
        """Encode the frame for ``checkpoint``; say whether it is a snapshot.

        Does not change the policy: call ``saved`` once the frame is stored.
        """
        snapshot = (
            checkpoint.changes is None
            or checkpoint.seq == 1
            or self.deltas >= SNAPSHOT_EVERY
            or self.delta_bytes > SNAPSHOT_RATIO * self.snapshot_bytes
        )
        return encode_frame(checkpoint, snapshot=snapshot), snapshot

    def saved(self, size: int, snapshot: bool) -> None:
        if snapshot:
            self.deltas, self.delta_bytes, self.snapshot_bytes = 0, 0, size
        else:
            self.deltas += 1
            self.delta_bytes += size


def rebuild(workflow_id: str, run_id: str, first: Frame, frames: Sequence[Frame]) -> Checkpoint:
    """The checkpoint of ``frames[-1]``, from a snapshot ``frames[0]`` and the deltas after it.

    ``first`` is the run's first frame, which holds the graph's structure
    (it may be ``frames[0]`` itself). The frames must be freshly decoded:
    their values are updated in place.
    """
    base = frames[0]
    assert base.values is not None
    assert first.structure is not None
    values = base.values
    for frame in frames[1:]:
        for change in frame.changes or ():
            apply_change(values, change)
    last = frames[-1]
    return Checkpoint(
        workflow_id=workflow_id,
        run_id=run_id,
        seq=last.seq,
        super_step=last.super_step,
        label=last.label,
        timestamp_ms=last.timestamp_ms,
        values=values,
        next=last.next,
        structure=first.structure,
        pause=last.pause,
        changes=last.changes,
        input=last.input if last.seq == 1 else None,
        epoch_base=last.epoch_base,
    )
