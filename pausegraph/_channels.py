"""Channel reducers, and the channel values of one run.

A graph declares its channels as ``{name: reducer}``. At the end of a layer
every write to a channel is folded into its value by the reducer, in step
order. Each fold also says how the value changed, as a ``Change`` that a
checkpointer can store and re-apply without knowing the reducer: ``SET``
(replace), ``MERGE`` (shallow dict update) or ``EXTEND`` (list extend). That
is what keeps a checkpoint as small as the writes that made it.
"""

from __future__ import annotations

import copy
import enum
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs


class Op(enum.Enum):
    """How a stored change turns the previous value into the new one."""

    SET = "set"
    MERGE = "merge"
    EXTEND = "extend"


@attrs.frozen
class Change:
    """One channel's change in one checkpoint."""

    channel: str
    op: Op
    value: Any


def apply_change(values: dict[str, Any], change: Change) -> None:
    """Re-apply a stored change in place (``values`` must be freshly decoded)."""
    if change.op is Op.SET:
        values[change.channel] = change.value
    elif change.op is Op.MERGE:
        values[change.channel].update(change.value)
    else:
        values[change.channel].extend(change.value)


class _Builtin:
    """Shared behaviour of the built-in reducers (they hold no state)."""

    def default(self) -> Any:
        return None

    def accept(self, value: Any) -> Any:
        """The write as this reducer folds it; ``TypeError`` saying why if it cannot."""
        return value


@attrs.frozen
class LastWriteWins(_Builtin):
    """The last write of a layer replaces the value. Default ``None``."""

    def fold(self, current: Any, incoming: list[Any]) -> tuple[Any, Op, Any]:
        new = incoming[-1]
        return new, Op.SET, new


@attrs.frozen
class MergeMap(_Builtin):
    """Writes are dicts merged shallowly into the value; new keys win. Default ``{}``."""

    def default(self) -> Any:
        return {}

    def accept(self, value: Any) -> Any:
        if isinstance(value, Mapping):
            return value
        msg = f"a MergeMap channel takes a dict, got {type(value).__name__} {value!r}"
        raise TypeError(msg)

    def fold(self, current: Any, incoming: list[Any]) -> tuple[Any, Op, Any]:
        merged: dict[Any, Any] = {}
        for write in incoming:
            merged.update(write)
        current.update(merged)
        return current, Op.MERGE, merged


@attrs.frozen
class Append(_Builtin):
    """A list write extends the value; any other write is appended as one item.

    Default ``[]``.
    """

    def default(self) -> Any:
        return []

    def accept(self, value: Any) -> Any:
        # decided before msgpack turns a tuple into a list: a tuple is one item
        return value if type(value) is list else [value]

    def fold(self, current: Any, incoming: list[Any]) -> tuple[Any, Op, Any]:
        items: list[Any] = []
        for write in incoming:
            items.extend(write)
        current.extend(items)
        return current, Op.EXTEND, items


@attrs.frozen
class Reducer(_Builtin):
    """Any other way to combine writes: ``fn(current, incoming) -> new``.

    ``fn`` is called once per write, in step order, and must not mutate
    ``current``: return a new value instead. ``default`` is copied for each
    run. The whole new value is stored at every change, so prefer the
    built-in reducers for large values::

        Reducer(lambda total, n: total + n, 0)
    """

    fn: Callable[[Any, Any], Any]
    default_value: Any = attrs.field(default=None, alias="default")

    def default(self) -> Any:
        return copy.deepcopy(self.default_value)

    def fold(self, current: Any, incoming: list[Any]) -> tuple[Any, Op, Any]:
        new = current
        for write in incoming:
            new = self.fn(new, write)
        return new, Op.SET, new


AnyReducer = LastWriteWins | MergeMap | Append | Reducer


class Channels:
    """The channel values of one run, folded layer by layer.

    Every value here belongs to the engine: it was decoded from a checkpoint,
    made by a reducer, or normalised through msgpack on its way in (writes,
    input, edits, answers). So MergeMap and Append values are updated in
    place, and a step that changes one key of a large map copies nothing.
    """

    __slots__ = ("reducers", "values")

    def __init__(self, reducers: Mapping[str, AnyReducer], values: dict[str, Any]) -> None:
        self.reducers = reducers
        self.values = values

    @classmethod
    def fresh(cls, reducers: Mapping[str, AnyReducer]) -> Channels:
        return cls(reducers, {name: r.default() for name, r in reducers.items()})

    def apply(self, writes: Iterable[Mapping[str, Any]]) -> list[Change]:
        """Fold every write, in order, into the values and return the changes.

        The writes were checked (channel names, value types) and normalised
        when they were collected.
        """
        incoming: dict[str, list[Any]] = {}
        for mapping in writes:
            for channel, value in mapping.items():
                bucket = incoming.get(channel)
                if bucket is None:
                    incoming[channel] = [value]
                else:
                    bucket.append(value)
        changes = []
        values = self.values
        reducers = self.reducers
        for channel, bucket in incoming.items():
            new, op, delta = reducers[channel].fold(values[channel], bucket)
            values[channel] = new
            changes.append(Change(channel, op, delta))
        return changes
