"""Every error pausegraph raises on purpose.

Each class is one kind of mistake, and where a builtin exception means the
same thing the class subclasses it too, so ``except ValueError`` still works::

    PausegraphError
    ├── GraphError(ValueError)          the graph, a channel name or a breakpoint is wrong
    ├── StepError(RuntimeError)         a step failed, or returned/yielded something wrong
    │   ├── EffectError                 an Effect's function raised (thrown into the step)
    │   │   └── EffectResultError       ... or returned what cannot be stored (also a
    │   │                               SerializationError)
    │   └── NondeterminismError         a replayed step did not repeat its journal
    ├── ResumeError(ValueError)         a command does not fit the run's state
    ├── InterruptTimeout(TimeoutError)  an interrupt's deadline passed (thrown into the step)
    ├── SerializationError(TypeError)   a value msgpack cannot encode
    └── CheckpointError(OSError)        the store failed
        ├── ConflictError               another writer saved that checkpoint first
        └── CorruptCheckpointError      a stored record is truncated or altered

Whenever one of these is raised, nothing was saved by the call that raised it,
except where the message says otherwise: a ``StepError`` or
``NondeterminismError`` raised by ``Runner.resume`` leaves the run at the
``resume`` checkpoint that claimed it, and ``Runner.run(run_id)`` retries it.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ConflictError",
    "CorruptCheckpointError",
    "EffectError",
    "EffectResultError",
    "GraphError",
    "InterruptTimeout",
    "NondeterminismError",
    "PausegraphError",
    "ResumeError",
    "SerializationError",
    "StepError",
]


class PausegraphError(Exception):
    """Base class of every error pausegraph raises on purpose."""


class GraphError(PausegraphError, ValueError):
    """The graph is invalid, or an edit or breakpoint names something it lacks."""


class StepError(PausegraphError, RuntimeError):
    """A step raised, or returned or yielded something the engine cannot use.

    The original exception, if any, is chained as ``__cause__``. The run is
    then ``"failed"``: a ``failed:<step>`` checkpoint keeps the writes of the
    layer's steps that finished; ``Runner.run(run_id)`` retries the layer.
    """


class EffectError(StepError):
    """An ``Effect``'s function raised; this is thrown into the step.

    The message carries the original exception's type name and message. On a
    replay the same message is thrown again without calling the function, so
    there is no ``__cause__`` then.
    """


class ResumeError(PausegraphError, ValueError):
    """A command or a run id that does not fit the run's current state."""


class InterruptTimeout(PausegraphError, TimeoutError):
    """An interrupt's deadline passed before anyone answered it.

    ``Runner.tick()`` throws it into the step at the ``yield`` of an
    ``Interrupt(payload, timeout=...)`` whose deadline passed; the step may
    catch it (auto-approve, escalate) or let it fail the run.
    """


class SerializationError(PausegraphError, TypeError):
    """A value that msgpack cannot encode: a channel value, a payload, an answer."""


class EffectResultError(EffectError, SerializationError):
    """An ``Effect``'s function returned a value msgpack cannot store.

    Both an ``EffectError`` (it is thrown into the step at the effect's
    ``yield``, where the step may catch it, and an uncaught one fails the
    run with ``Failure.error_type`` ``"EffectError"``) and a
    ``SerializationError`` (a value that cannot be stored). The function ran,
    but its result is recorded as this error: a replay throws it again
    without calling the function; a retry of the run it failed calls the
    function again, as for any effect error that fails a run. Its
    ``__cause__`` (the first time only) is the ``SerializationError`` naming
    the part of the result that was refused.
    """


class NondeterminismError(StepError):
    """A replayed step yielded something other than its journal recorded.

    A ``StepError``, as the spec lists it among a layer's step errors: it
    fails the run like any other (``Failure.error_type`` is
    ``"NondeterminismError"``).
    """


class CheckpointError(PausegraphError, OSError):
    """The checkpointer could not store or read a checkpoint."""


class ConflictError(CheckpointError):
    """Another writer won the run: it saved a checkpoint with this ``seq`` first,
    or ``resume`` found the run claimed and running rather than paused."""


class CorruptCheckpointError(CheckpointError):
    """A stored record is truncated or altered; the message names the file."""
