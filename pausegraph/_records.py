"""Checkpoint records, and their msgpack codec (a cattrs converter).

A checkpoint is what a ``Checkpointer`` saves after each super-step and at
each pause. It holds the full channel values *and* the ``changes`` that made
them from the previous checkpoint, so a store may keep only the changes (with
a full snapshot every so often) and rebuild the values without knowing the
reducers.

A pause record says why and where a run stopped. For a dynamic interrupt it
also holds everything needed to finish the interrupted layer later, in any
process: the writes of the steps that finished, and for each suspended step
its *journal*, the list of what it yielded (interrupts with their answers,
effects with their results) in order. Replaying a step means calling it again
and feeding it its journal.

Everything here is plain data: no callables, no code, only msgpack.
"""

from __future__ import annotations

import enum
import operator
from typing import TYPE_CHECKING, Any, NewType

import attrs
import cattrs
import msgpack
from cattrs.gen import make_dict_unstructure_fn, override
from cattrs.preconf.msgpack import make_converter

from ._channels import Change, Op
from ._values import NATIVE, pack
from .errors import SerializationError

#: A user's value (channel value, payload, answer, effect result): msgpack-native,
#: passed through the converter untouched.
if TYPE_CHECKING:
    Value = Any
else:
    Value = NewType("Value", object)


class Next(enum.Enum):
    """What a run does next, from a given checkpoint."""

    LAYER = "layer"  # run layer ``super_step``, stopping first at its Before breakpoints
    LAYER_PAST_BEFORE = "layer-past-before"  # run layer ``super_step``; skip its Before breakpoints
    AFTER = "after"  # layer ``super_step - 1`` was applied; its After breakpoints are due
    REPLAY = "replay"  # finish the interrupted layer in ``pause`` with the recorded answers
    WAIT = "wait"  # paused: only a command goes on
    DONE = "done"


class PauseKind(enum.Enum):
    INTERRUPT = "interrupt"
    BEFORE = "before"
    AFTER = "after"


class EntryKind(enum.Enum):
    INTERRUPT = "interrupt"
    EFFECT = "effect"


@attrs.frozen
class JournalEntry:
    """One thing a step yielded, and what it got back.

    For an interrupt, ``key`` is the payload, ``id`` the interrupt id, and
    ``value`` the answer once ``answered``. For an effect, ``key`` is the
    function's name and ``value`` its result, or ``error`` the message of the
    ``EffectError`` it raised.
    """

    kind: EntryKind
    key: Value
    id: str = ""
    answered: bool = False
    value: Value = None
    error: str | None = None


@attrs.frozen
class SuspendedStep:
    """A step stopped at an interrupt: the last entry of its journal."""

    step_id: str
    journal: tuple[JournalEntry, ...]

    @property
    def pending(self) -> JournalEntry:
        return self.journal[-1]


@attrs.frozen
class FinishedStep:
    step_id: str
    writes: dict[str, Value]


@attrs.frozen
class PauseRecord:
    """Why and where a run stopped, and what finishing that layer needs.

    ``layer`` is the 0-based layer concerned (the run's ``super_step`` is
    ``layer + 1``). ``epoch`` is the seq from which the layer started running;
    interrupt ids are made from it. ``edits`` are ``Update`` edits kept to be
    applied right after the layer's writes; ``answered`` lists the interrupt
    ids already answered in this layer, to tell them from unknown ids.
    """

    kind: PauseKind
    layer: int
    step_ids: tuple[str, ...] = ()
    epoch: int = 0
    finished: tuple[FinishedStep, ...] = ()
    suspended: tuple[SuspendedStep, ...] = ()
    edits: tuple[dict[str, Value], ...] = ()
    answered: tuple[str, ...] = ()


@attrs.frozen
class Structure:
    """The shape of a graph, recorded in checkpoints to catch a changed graph."""

    steps: tuple[str, ...]
    edges: tuple[tuple[str, str], ...]

    def difference(self, other: Structure) -> str | None:
        """Describe how ``other`` differs from this one, or ``None`` if it does not."""
        parts = []
        added = [s for s in other.steps if s not in set(self.steps)]
        removed = [s for s in self.steps if s not in set(other.steps)]
        if added:
            parts.append(f"steps added: {', '.join(map(repr, added))}")
        if removed:
            parts.append(f"steps removed: {', '.join(map(repr, removed))}")
        mine, theirs = set(self.edges), set(other.edges)
        new_edges = [e for e in other.edges if e not in mine]
        old_edges = [e for e in self.edges if e not in theirs]
        if new_edges:
            parts.append("edges added: " + ", ".join(f"{a!r} -> {b!r}" for a, b in new_edges))
        if old_edges:
            parts.append("edges removed: " + ", ".join(f"{a!r} -> {b!r}" for a, b in old_edges))
        if not parts and self.steps != other.steps:
            parts.append(f"step order changed from {list(self.steps)!r} to {list(other.steps)!r}")
        return "; ".join(parts) or None


@attrs.frozen
class CheckpointMeta:
    """What ``Runner.history`` lists for each checkpoint."""

    seq: int
    super_step: int
    label: str
    timestamp_ms: int


@attrs.frozen
class Checkpoint:
    """One saved point of a run.

    ``values`` are the full channel values. ``changes`` turn the previous
    checkpoint's values into these (``None`` if unknown: then a store must keep
    the full values). ``input`` is the run's input, kept in checkpoint 1 only.
    ``epoch_base`` keeps interrupt ids unique in a forked run.

    A store must copy (encode) what it keeps in ``save``: the engine goes on
    updating its values after ``save`` returns.
    """

    workflow_id: str
    run_id: str
    seq: int
    super_step: int
    label: str
    timestamp_ms: int
    values: dict[str, Value]
    next: Next
    structure: Structure
    pause: PauseRecord | None = None
    changes: tuple[Change, ...] | None = None
    input: Value | None = None
    epoch_base: int = 0

    @property
    def meta(self) -> CheckpointMeta:
        return CheckpointMeta(self.seq, self.super_step, self.label, self.timestamp_ms)


@attrs.frozen
class Frame:
    """A checkpoint as a store keeps it: a snapshot or just the changes.

    A snapshot has ``values``; a delta has ``changes`` and relies on the
    frames before it back to the last snapshot. The graph's ``structure`` and
    the run's ``input`` are kept in the run's first frame only.
    """

    seq: int
    super_step: int
    label: str
    timestamp_ms: int
    next: Next
    pause: PauseRecord | None = None
    epoch_base: int = 0
    changes: tuple[Change, ...] | None = None
    values: dict[str, Value] | None = None
    structure: Structure | None = None
    input: Value | None = None

    @property
    def is_snapshot(self) -> bool:
        return self.values is not None


for _cls in (JournalEntry, SuspendedStep, FinishedStep, PauseRecord, Structure, Checkpoint, Frame):
    attrs.resolve_types(_cls, globals(), locals())
attrs.resolve_types(Change)

converter: cattrs.Converter = make_converter(detailed_validation=False, omit_if_default=True)
converter.register_unstructure_hook(Value, lambda v: v)
converter.register_structure_hook(Value, lambda v, _: v)
for _enum in (Next, PauseKind, EntryKind, Op):
    # ``_value_`` is a plain attribute; ``.value`` goes through a descriptor
    converter.register_unstructure_hook(_enum, operator.attrgetter("_value_"))


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def _why_not_encodable(value: Any) -> str | None:
    try:
        pack(value)
    except (TypeError, ValueError, OverflowError) as exc:
        return str(exc)
    return None


# A delta straight from a Checkpoint, without building a Frame: the hot path.
# Its keys are a subset of Frame's, so it decodes as a Frame.
_unstructure_delta = make_dict_unstructure_fn(
    Checkpoint,
    converter,
    _cattrs_omit_if_default=True,
    workflow_id=override(omit=True),
    run_id=override(omit=True),
    values=override(omit=True),
    structure=override(omit=True),
    input=override(omit=True),
)


def encode_frame(checkpoint: Checkpoint, *, snapshot: bool) -> bytes:
    """Encode the frame a store keeps for ``checkpoint``: a snapshot or a delta.

    Raises ``SerializationError`` naming the value msgpack refused.
    """
    delta = not snapshot and checkpoint.changes is not None and checkpoint.seq != 1
    try:
        if delta:
            return pack(_unstructure_delta(checkpoint))
        return pack(converter.unstructure(frame_of(checkpoint, snapshot=True)))
    except (TypeError, ValueError, OverflowError):
        frame = frame_of(checkpoint, snapshot=not delta)
        raise SerializationError(_diagnose(frame)) from None


def decode_frame(data: bytes) -> Frame:
    """Decode a frame from bytes (the caller handles corrupt input)."""
    return converter.structure(unpack(data), Frame)


def _diagnose(frame: Frame) -> str:
    """Find which value of a frame msgpack refused, for the error message."""
    suspects: list[tuple[str, Any]] = []
    for name, value in (frame.values or {}).items():
        suspects.append((f"channel {name!r}", value))
    for change in frame.changes or ():
        suspects.append((f"channel {change.channel!r}", change.value))
    pause = frame.pause
    if pause is not None:
        for finished in pause.finished:
            for channel, value in finished.writes.items():
                suspects.append(
                    (f"channel {channel!r} (write of step {finished.step_id!r})", value)
                )
        for suspended in pause.suspended:
            for entry in suspended.journal:
                what = "interrupt payload" if entry.kind is EntryKind.INTERRUPT else "effect result"
                suspects.append((f"{what} of step {suspended.step_id!r}", entry.key))
                suspects.append((f"{what} of step {suspended.step_id!r}", entry.value))
        for edits in pause.edits:
            for channel, value in edits.items():
                suspects.append((f"channel {channel!r} (update)", value))
    suspects.append(("the run's input", frame.input))
    for what, value in suspects:
        why = _why_not_encodable(value)
        if why is not None:
            return f"{what} cannot be stored: {why}. {NATIVE}"
    return "the checkpoint cannot be encoded by msgpack"  # pragma: no cover - a bug in pausegraph


def frame_of(checkpoint: Checkpoint, *, snapshot: bool) -> Frame:
    """The frame a store keeps for ``checkpoint``: a snapshot or a delta."""
    c = checkpoint
    first = c.seq == 1
    if snapshot or first or c.changes is None:
        return Frame(
            c.seq, c.super_step, c.label, c.timestamp_ms, c.next, c.pause, c.epoch_base,
            values=c.values,
            structure=c.structure if first else None,
            input=c.input if first else None,
        )  # fmt: skip
    return Frame(
        c.seq, c.super_step, c.label, c.timestamp_ms, c.next, c.pause, c.epoch_base,
        changes=c.changes,
    )  # fmt: skip
