"""Checkpointers: where runs are stored between super-steps and across processes."""

from __future__ import annotations

import builtins
import contextlib
from typing import TYPE_CHECKING, Any, Protocol

from .._records import Checkpoint, CheckpointMeta
from ._checkpointer import StoreCheckpointer
from ._lock import Holder
from ._open import open_checkpointer
from ._store import FrameInfo, RunSummary, Store
from .file import FileCheckpointer, FileStore
from .memory import MemoryCheckpointer, MemoryStore
from .sqlite import SqliteCheckpointer, SqliteStore

if TYPE_CHECKING:
    from .postgres import PostgresCheckpointer, PostgresStore

__all__ = [
    "Checkpointer",
    "FileCheckpointer",
    "FileStore",
    "FrameInfo",
    "Holder",
    "MemoryCheckpointer",
    "MemoryStore",
    "PostgresCheckpointer",
    "PostgresStore",
    "RunSummary",
    "SqliteCheckpointer",
    "SqliteStore",
    "Store",
    "StoreCheckpointer",
    "open_checkpointer",
]


def __getattr__(name: str) -> Any:
    # the PostgreSQL store imports psycopg: only when it is asked for, so that
    # ``import pausegraph`` works (and stays fast) without the postgres extra
    if name in ("PostgresCheckpointer", "PostgresStore"):
        from . import postgres

        return getattr(postgres, name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


class Checkpointer(Protocol):
    """The storage protocol a ``Runner`` calls; write your own against it.

    ``save`` is conditional: if the run already has a checkpoint with that
    ``seq`` it raises ``ConflictError`` and writes nothing, so of two
    processes resuming the same paused run only one succeeds. ``save`` must
    keep a copy (an encoding) of what it is given, not the objects. ``load``
    and ``latest`` return ``None`` for what is not there. A new store is
    easier written on the bytes-level ``Store`` protocol and wrapped in a
    ``StoreCheckpointer`` (docs/storage.md); either way,
    ``pausegraph.testing.CheckpointerConformance`` is the conformance suite
    it can run.
    """

    def save(self, checkpoint: Checkpoint) -> None: ...

    def load(self, workflow_id: str, run_id: str, seq: int) -> Checkpoint | None: ...

    def latest(self, workflow_id: str, run_id: str) -> Checkpoint | None: ...

    def list(self, workflow_id: str, run_id: str) -> builtins.list[CheckpointMeta]: ...

    def runs(self) -> builtins.list[tuple[str, str]]: ...

    def last(self, workflow_id: str, run_id: str) -> CheckpointMeta | None:
        """The meta of the run's latest checkpoint (``None`` if none), reading no frame."""
        ...

    def delete(self, workflow_id: str, run_id: str) -> None: ...

    def lock(self, workflow_id: str, run_id: str) -> contextlib.AbstractContextManager[None]:
        """Hold the run's live lock, or raise ``ConflictError`` naming its holder."""
        ...

    def holder(self, workflow_id: str, run_id: str) -> Holder | None: ...

    def sync(self) -> None:
        """Make every checkpoint saved so far durable (fsync, a synchronous commit)."""
        ...
