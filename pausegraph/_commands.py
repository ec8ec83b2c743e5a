"""The values a user gives and gets: commands, outcomes, pause reasons, run info."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from ._records import CheckpointMeta, Failure
from ._values import shown
from .errors import GraphError, ResumeError

__all__ = [
    "After",
    "Before",
    "CheckpointMeta",
    "Continue",
    "Done",
    "DynamicInterrupt",
    "Failure",
    "Goto",
    "Paused",
    "PendingInterrupt",
    "Resume",
    "RunInfo",
    "Status",
    "Update",
]


def _as_dict(value: Any, what: str, error: type[Exception]) -> dict[str, Any] | None:
    """``value`` as a plain dict (``None`` stays ``None``); anything but a mapping is refused."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        msg = f"{what} must be a dict, got {type(value).__name__} {shown(value)}"
        raise error(msg)
    return dict(value)


def _answers(value: Any) -> dict[str, Any] | None:
    answers = _as_dict(value, "Resume(answers=...)", ResumeError)
    for key in answers or ():
        if not isinstance(key, str):
            msg = (
                f"Resume(answers=...) is keyed by interrupt id, a str such as "
                f"Paused.interrupts[0].id; got {type(key).__name__} {shown(key)}"
            )
            raise ResumeError(msg)
    return answers


def _update(value: Any) -> dict[str, Any] | None:
    return _as_dict(value, "update=...", GraphError)


def _edits(value: Any) -> dict[str, Any]:
    edits = _as_dict(value, "Update(edits)", GraphError)
    if edits is None:
        msg = "Update(edits) must be a dict of channel values, got None"
        raise GraphError(msg)
    return edits


# --- pause reasons ---------------------------------------------------------


@attrs.frozen
class DynamicInterrupt:
    """A step yielded ``Interrupt``: it waits for an answer."""

    step_id: str


@attrs.frozen
class Before:
    """An ``interrupt_before`` breakpoint: the step's layer is about to run."""

    step_id: str


@attrs.frozen
class After:
    """An ``interrupt_after`` breakpoint: the step's layer has just been applied."""

    step_id: str


Reason = DynamicInterrupt | Before | After


@attrs.frozen
class PendingInterrupt:
    """An interrupt waiting for its answer.

    ``id`` is opaque (no ``=``, no white space) and stays the same every time
    the interrupt is replayed; answer it with ``Resume(answers={id: value})``.
    """

    id: str
    step_id: str
    payload: Any
    deadline_ms: int | None = None


def _interrupt_tuple(items: Iterable[PendingInterrupt]) -> tuple[PendingInterrupt, ...]:
    return tuple(items)


# --- outcomes ---------------------------------------------------------------


@attrs.frozen
class Done:
    """The run finished; ``state`` holds the final channel values."""

    state: dict[str, Any]
    super_step: int


@attrs.frozen
class Paused:
    """The run stopped and waits for ``Runner.resume``.

    ``reason`` and ``payload`` describe the first pending interrupt (or the
    breakpoint); ``interrupts`` lists every pending interrupt.
    """

    super_step: int
    reason: Reason
    payload: Any = None
    interrupts: tuple[PendingInterrupt, ...] = attrs.field(default=(), converter=_interrupt_tuple)


Outcome = Done | Paused


# --- commands ---------------------------------------------------------------


@attrs.frozen
class Continue:
    """Go on past a breakpoint."""


_NOTHING: Any = object()  # marks "no value given" to Resume


@attrs.frozen(init=False)
class Resume:
    """Answer pending interrupts.

    ``Resume(value)`` answers the only pending interrupt; ``value`` is always
    the answer itself, even when it is a dict. ``Resume(answers={id: value})``
    answers any of several by id; the others stay pending. ``update`` edits
    the channels right after the interrupted layer's writes.
    """

    value: Any
    answers: dict[str, Any] | None
    update: dict[str, Any] | None
    has_value: bool = attrs.field(repr=False)

    def __init__(
        self,
        value: Any = _NOTHING,
        *,
        answers: Mapping[str, Any] | None = None,
        update: Mapping[str, Any] | None = None,
    ) -> None:
        has_value = value is not _NOTHING
        self.__attrs_init__(
            value if has_value else None,
            _answers(answers),
            _update(update),
            has_value,
        )

    def __repr__(self) -> str:
        """The call that makes this command, with what was given only."""
        given = [f"value={self.value!r}"] if self.has_value else []
        if self.answers is not None:
            given.append(f"answers={self.answers!r}")
        if self.update is not None:
            given.append(f"update={self.update!r}")
        return f"Resume({', '.join(given)})"


@attrs.frozen
class Update:
    """Write ``edits`` through the reducers, as a step would, and go on.

    With interrupts pending, the edits are kept and applied right after the
    interrupted layer's writes, and the run stays paused.
    """

    edits: dict[str, Any] = attrs.field(converter=_edits)


@attrs.frozen
class Goto:
    """Drop the pending interrupts and run from the layer that holds ``step_id``."""

    step_id: str = attrs.field()
    update: dict[str, Any] | None = attrs.field(default=None, converter=_update)

    @step_id.validator
    def _a_step_id(self, _: Any, value: Any) -> None:
        if not isinstance(value, str):
            msg = f"Goto takes a step id (a str), got {type(value).__name__} {shown(value, 80)}"
            raise ResumeError(msg)


Command = Continue | Resume | Update | Goto


# --- inspection -------------------------------------------------------------


class Status(str, enum.Enum):
    """Where a run is: compare with the strings too (``info.status == "paused"``).

    ``QUEUED``: work waits for a driver; ``RUNNING``: a live process drives
    it now; ``PAUSED``: it waits for a command; ``FAILED``: a step failed
    (``run`` or ``Continue`` retries); ``CANCELLED`` and ``DONE``: over.
    """

    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    FAILED = "failed"
    CANCELLED = "cancelled"
    DONE = "done"

    def __str__(self) -> str:
        return self.value

    def __repr__(self) -> str:  # a string, as the status compares: RunInfo(status='done', ...)
        return repr(self.value)


def _edits_tuple(items: Iterable[Mapping[str, Any]]) -> tuple[dict[str, Any], ...]:
    return tuple(dict(e) for e in items)


@attrs.frozen
class RunInfo:
    """What ``Runner.state`` tells about a run.

    ``values``: the latest channel values; ``status``: see ``Status``;
    ``interrupts``: the pending ones; ``failure``: why a failed run failed;
    ``edits``: ``Update`` edits saved at a dynamic pause, applied when the
    interrupted layer finishes.
    """

    values: dict[str, Any]
    status: Status
    super_step: int
    interrupts: tuple[PendingInterrupt, ...] = attrs.field(default=(), converter=_interrupt_tuple)
    failure: Failure | None = None
    edits: tuple[dict[str, Any], ...] = attrs.field(default=(), converter=_edits_tuple)
