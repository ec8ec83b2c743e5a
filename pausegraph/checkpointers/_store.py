"""The storage protocol: what a store implements, on bytes.

A *store* keeps runs as numbered frames of opaque bytes. The engine (in
``StoreCheckpointer``) owns everything else: the codec, snapshots and deltas,
rebuilding a checkpoint, and what a run's summary says. So a new store never
sees the engine's objects and never re-implements any of that; it only
promises the following, for any number of handles (and processes, for a
durable store):

- ``append(info, frame, summary)`` adds frame ``info.seq`` to the run named in
  ``summary``, *conditionally*: if the run already has that seq, it raises
  ``ConflictError`` and writes nothing; if ``info.seq`` is not the next one
  (1 for a new run), ``CheckpointError``. In the same step (one transaction,
  or under the same lock) it replaces the run's summary. A failed append
  leaves nothing of itself readable.
- ``frames(workflow_id, run_id)`` lists the run's ``FrameInfo``, oldest
  first (``[]`` for an unknown run); ``read(workflow_id, run_id, first,
  last)`` returns the frames' bytes from seq ``first`` to ``last``
  inclusive, exactly as appended.
- ``runs(workflow_id=None, status=None)`` lists the runs' latest
  ``RunSummary``, filtered, without reading their frames.
- ``delete(workflow_id, run_id)`` removes a run (nothing if unknown).
- ``lock(workflow_id, run_id)`` holds the run's *live lock*: one that the
  operating system or the database session releases when the holder dies,
  never a lease the store times out itself. It raises ``ConflictError``
  naming the holder if anyone else, in any process, holds it; ``holder``
  says who holds it, or ``None``.
- ``sync()`` makes every append so far durable (fsync, a synchronous
  commit). The engine calls it before anything outside the process can see
  what was appended: before an effect's function runs and before a call
  returns. ``append`` itself need not be durable; a store may be.

The conformance suite ``pausegraph.testing.CheckpointerConformance`` checks a
store through ``StoreCheckpointer(store)``.
"""

from __future__ import annotations

import builtins
from contextlib import AbstractContextManager
from typing import Protocol

import attrs

from ._lock import Holder


@attrs.frozen
class FrameInfo:
    """What a store keeps beside a frame, and lists without reading it.

    ``seq`` numbers the run's frames from 1; ``label``, ``super_step`` and
    ``timestamp_ms`` (epoch ms) are the checkpoint's; ``snapshot`` says the
    frame holds the whole state (a delta needs the frames before it back to
    the last snapshot); ``size`` is the frame's length in bytes.
    """

    seq: int
    super_step: int
    label: str
    timestamp_ms: int
    snapshot: bool
    size: int


@attrs.frozen
class RunSummary:
    """A run's latest state in a few fields, kept by the store to list runs fast.

    ``status`` is the run's status as its latest checkpoint says it
    (``"queued"``, ``"paused"``, ``"failed"``, ``"cancelled"`` or ``"done"``;
    whether a queued run is ``"running"`` is the live lock's to say).
    ``deadline_ms`` is the earliest deadline of a pending interrupt, if any.
    ``data`` is the engine's own encoding of the rest (super-step, label,
    pending interrupts): a store keeps it as it is.
    """

    workflow_id: str
    run_id: str
    seq: int
    status: str
    updated_ms: int
    deadline_ms: int | None
    data: bytes


class Store(Protocol):
    """The bytes-level storage protocol (see the module documentation)."""

    def append(self, info: FrameInfo, frame: bytes, summary: RunSummary) -> None: ...

    def frames(self, workflow_id: str, run_id: str) -> builtins.list[FrameInfo]: ...

    def read(
        self, workflow_id: str, run_id: str, first: int, last: int
    ) -> builtins.list[bytes]: ...

    def runs(
        self, *, workflow_id: str | None = None, status: str | None = None
    ) -> builtins.list[RunSummary]: ...

    def delete(self, workflow_id: str, run_id: str) -> None: ...

    def lock(self, workflow_id: str, run_id: str) -> AbstractContextManager[None]: ...

    def holder(self, workflow_id: str, run_id: str) -> Holder | None: ...

    def sync(self) -> None: ...
