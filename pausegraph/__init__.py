"""pausegraph: workflows that stop and wait for people.

A step is a generator function that ``yield``s ``Interrupt(payload)`` to pause
until someone answers; a ``Runner`` runs a layered graph of steps in
super-steps and checkpoints after each one, so a paused run resumes, in this
process or another, exactly where it stopped.
"""

from typing import TYPE_CHECKING, Any

from ._channels import Append, LastWriteWins, MergeMap, Reducer
from ._commands import (
    After,
    Before,
    Continue,
    Done,
    DynamicInterrupt,
    Goto,
    Paused,
    PendingInterrupt,
    Resume,
    RunInfo,
    Status,
    Update,
)
from ._graph import Graph
from ._inbox import Waiting, inbox
from ._instructions import All, Effect, Interrupt, Sleep
from ._records import Checkpoint, CheckpointMeta, Failure
from ._runner import Runner
from ._worker import Worker
from .checkpointers import (
    Checkpointer,
    FileCheckpointer,
    MemoryCheckpointer,
    SqliteCheckpointer,
    open_checkpointer,
)
from .errors import (
    CheckpointError,
    ConflictError,
    CorruptCheckpointError,
    EffectError,
    GraphError,
    InterruptTimeout,
    NondeterminismError,
    PausegraphError,
    ResumeError,
    SerializationError,
    StepError,
)

__all__ = [
    "After",
    "All",
    "Append",
    "Before",
    "Checkpoint",
    "CheckpointError",
    "CheckpointMeta",
    "Checkpointer",
    "ConflictError",
    "Continue",
    "CorruptCheckpointError",
    "Done",
    "DynamicInterrupt",
    "Effect",
    "EffectError",
    "Failure",
    "FileCheckpointer",
    "Goto",
    "Graph",
    "GraphError",
    "Interrupt",
    "InterruptTimeout",
    "LastWriteWins",
    "MemoryCheckpointer",
    "MergeMap",
    "NondeterminismError",
    "Paused",
    "PausegraphError",
    "PendingInterrupt",
    "PostgresCheckpointer",
    "Reducer",
    "Resume",
    "ResumeError",
    "RunInfo",
    "Runner",
    "SerializationError",
    "Sleep",
    "SqliteCheckpointer",
    "Status",
    "StepError",
    "Update",
    "Waiting",
    "Worker",
    "inbox",
    "open_checkpointer",
]

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .checkpointers.postgres import PostgresCheckpointer


def __getattr__(name: str) -> Any:
    # imported on first use only: the PostgreSQL store imports psycopg (the
    # ``pausegraph[postgres]`` extra), which ``import pausegraph`` must not need
    if name == "PostgresCheckpointer":
        from .checkpointers.postgres import PostgresCheckpointer

        return PostgresCheckpointer
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


def _rehome() -> None:
    # Show public classes as ``pausegraph.Paused`` in reprs, tracebacks and docs,
    # not as the private module that happens to define them. Annotations are
    # resolved first, while their defining module is still known.
    import typing

    import attrs

    for name in __all__:
        obj = globals().get(name)
        if isinstance(obj, type) and obj.__module__.startswith("pausegraph._"):
            if attrs.has(obj):
                attrs.resolve_types(obj)
                obj.__annotations__ = typing.get_type_hints(obj)
            obj.__module__ = __name__


_rehome()
