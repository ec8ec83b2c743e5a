"""Channel reducers, and the channel values of one run.

A graph declares its channels as ``{name: reducer}``. At the end of a layer
every write to a channel is folded into its value by the reducer, in step
order. Each fold also says how the value changed, as a ``Change`` that a
checkpointer can store and re-apply without knowing the reducer: ``SET``
(replace), ``MERGE`` (shallow dict update) or ``EXTEND`` (list extend). That
is what keeps a checkpoint as small as the writes that made it.
"""

from __future__ import annotations

import enum
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from ._values import (
    MAX_DEPTH,
    NATIVE,
    FrozenDict,
    FrozenList,
    freeze,
    named,
    normalize,
    shown,
    thaw,
)
from .errors import GraphError, PausegraphError, SerializationError, StepError


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
        dict.__setitem__(values, change.channel, change.value)
    elif change.op is Op.MERGE:
        dict.update(values[change.channel], change.value)
    else:
        list.extend(values[change.channel], change.value)


class _Builtin:
    """Shared behaviour of the built-in reducers (they hold no state)."""

    def initial(self) -> Any:
        """The channel's value before any write (a fresh one for each run)."""
        return None

    def accept(self, value: Any) -> Any:
        """The write as this reducer folds it; ``TypeError`` saying why if it cannot."""
        return value

    def keep(self, value: Any) -> Any:
        """An accepted edit as kept until it is folded: as given, as far as msgpack allows
        (``accept`` of what this returns, read back, is ``accept(value)``)."""
        return value


@attrs.frozen
class LastWriteWins(_Builtin):
    """The last write of a layer replaces the value. Default ``None``."""

    def fold(self, current: Any, incoming: list[Any]) -> tuple[Any, Op, Any]:
        """Fold a layer's writes into ``current``: ``(new value, op, stored change)``."""
        new = incoming[-1]
        return new, Op.SET, new


@attrs.frozen
class MergeMap(_Builtin):
    """Writes are dicts merged shallowly into the value; new keys win. Default ``{}``."""

    def initial(self) -> Any:
        return FrozenDict()

    def accept(self, value: Any) -> Any:
        if isinstance(value, Mapping):
            return value
        msg = f"a MergeMap channel takes a dict, got {type(value).__name__} {value!r}"
        raise TypeError(msg)

    def fold(self, current: Any, incoming: list[Any]) -> tuple[Any, Op, Any]:
        merged: dict[Any, Any] = {}
        for write in incoming:
            merged.update(write)
        dict.update(current, merged)  # a FrozenDict: only the engine changes it
        return current, Op.MERGE, merged


@attrs.frozen
class Append(_Builtin):
    """A list write extends the value; any other write is appended as one item.

    Default ``[]``.
    """

    def initial(self) -> Any:
        return FrozenList()

    def accept(self, value: Any) -> Any:
        # decided before msgpack turns a tuple into a list: a tuple is one item
        return value if isinstance(value, list) else [value]

    def keep(self, value: Any) -> Any:
        # a tuple would come back a list, and extend: kept as the one item it is
        return [value] if isinstance(value, tuple) else value

    def fold(self, current: Any, incoming: list[Any]) -> tuple[Any, Op, Any]:
        items: list[Any] = []
        for write in incoming:
            items.extend(write)
        list.extend(current, items)  # a FrozenList: only the engine changes it
        return current, Op.EXTEND, items


@attrs.frozen
class Reducer(_Builtin):
    """Any other way to combine writes: ``fn(current, incoming) -> new``.

    ``fn`` is called once per write, in step order, and returns the new
    value (when it raises, the engine calls it again on the writes one at a
    time, to find the step whose write it refuses). ``current`` is the
    function's own copy: it may return a new value (``current + [x]``) or
    change ``current`` and return it
    (``current.append(x); return current``); the run's state is not touched
    until the layer's writes are all folded. The result and ``default`` go
    through msgpack like any value, so they must be msgpack-native. The whole
    new value is stored at every change, so prefer the built-in reducers for
    large values::

        Reducer(lambda total, n: total + n, 0)
    """

    fn: Callable[[Any, Any], Any]
    default: Any = None

    def initial(self) -> Any:
        return freeze(self.default, max_depth=MAX_DEPTH)

    def fold(self, current: Any, incoming: list[Any]) -> tuple[Any, Op, Any]:
        new = thaw(current)  # the function's own copies, which it may change in place
        for write in incoming:
            new = self.fn(new, thaw(write))
        new = normalize(new, _reducer_result)  # what a cold run would read back
        return new, Op.SET, new


def _reducer_result() -> str:
    return "the value its reducer returned"


AnyReducer = LastWriteWins | MergeMap | Append | Reducer
# the reducers that change a value in place, and how each copies one first
_IN_PLACE: dict[type, Callable[[Any], Any]] = {MergeMap: FrozenDict, Append: FrozenList}


def slot_setters(cls: type) -> tuple[Any, ...]:
    """The setters of ``cls``'s slots in field order, to build one without ``__init__``.

    For the hot paths (a fold, a decode): a frozen attrs ``__init__`` costs a
    ``__setattr__`` per field. ``cls`` must have no validator or converter
    (they would be skipped).
    """
    fields = attrs.fields(cls)
    assert all(f.validator is None and f.converter is None for f in fields), cls
    return tuple(cls.__dict__[f.name].__set__ for f in fields)


_set = dict.__setitem__
_SET = Op.SET
_new = object.__new__
_CHANGE = slot_setters(Change)

# Scalars that come back from msgpack as they went in, of exactly these types:
# a write made only of them needs no round trip through msgpack to be normalised.
# An int outside msgpack's range, a str it cannot encode (a lone surrogate is
# not ASCII) or one over its length limit takes the round trip, which refuses it.
_KEPT_SCALARS = frozenset({float, bool, type(None)})
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1
_STR_MAX = 2**32 - 1


def accept_writes(
    reducers: Mapping[str, AnyReducer],
    writes: Mapping[str, Any],
    what: str,
    error: type[PausegraphError],
    verb: str = "wrote to",
) -> dict[str, Any]:
    """Check writes against the channels; return them as the reducers fold them.

    Each must name a declared channel and fit its reducer, or ``error`` is
    raised naming ``what`` made it ("step 'a'", "Update edits") and the
    channel. The writes come back normalised through msgpack: a live run sees
    what a reloaded one reads (a tuple becomes a list), and the engine owns
    every value, read-only to everyone else. A value msgpack cannot encode is
    a ``SerializationError`` naming the channel.
    """
    try:  # a mapping of the user's own may raise anything as it is read; a dict cannot
        items = writes.items() if type(writes) is dict else list(writes.items())
    except Exception as exc:
        msg = f"the writes of {what} cannot be read: {named(exc)}. {NATIVE}"
        raise SerializationError(msg) from None
    accepted = {}
    plain = True  # every channel a str and every value a scalar msgpack keeps as it is
    for channel, value in items:
        reducer = reducers.get(channel)
        if reducer is None:
            declared = ", ".join(map(repr, reducers)) or "no channels"
            msg = (
                f"{what} {verb} undeclared channel {shown(channel)}; the graph declares {declared}"
            )
            raise error(msg)
        try:
            accepted[channel] = value = reducer.accept(value)
        except TypeError as exc:
            msg = f"{what} {verb} channel {shown(channel)}: {exc}"
            raise error(msg) from None
        except Exception as exc:  # a value whose own methods raise
            msg = f"{what} {verb} channel {shown(channel)}: {named(exc)}"
            raise SerializationError(msg) from None
        if plain:
            kind = type(value)
            plain = type(channel) is str and (
                kind in _KEPT_SCALARS
                or (kind is int and _INT_MIN <= value <= _INT_MAX)
                or (kind is str and len(value) <= _STR_MAX and value.isascii())
            )
    if plain:  # what msgpack would give back: the same values (most steps' writes)
        return FrozenDict(accepted)
    try:
        # one level more: the channel names; a value too deep is named below
        return freeze(accepted, max_depth=MAX_DEPTH + 1)  # type: ignore[no-any-return]
    except Exception as exc:  # msgpack's refusal, or a value whose own methods raise
        for channel, value in accepted.items():  # which channel: for the message
            normalize(value, lambda c=channel: f"channel {c!r} (written by {what})")  # type: ignore[misc]
        msg = f"the writes of {what} cannot be stored: {named(exc)}"
        raise SerializationError(msg) from None


def kept_edits(
    reducers: Mapping[str, AnyReducer], edits: Mapping[str, Any], what: str
) -> dict[str, Any]:
    """Edits checked as ``accept_writes`` checks writes (``GraphError`` naming what is
    wrong), kept as given (``keep``): as ``RunInfo.edits`` lists them until they are
    folded, through ``accepted_edits``."""
    accept_writes(reducers, edits, what, GraphError, verb="names")
    kept = {channel: reducers[channel].keep(value) for channel, value in edits.items()}
    return freeze(kept, max_depth=MAX_DEPTH + 1)  # type: ignore[no-any-return]


def accepted_edits(reducers: Mapping[str, AnyReducer], edits: Mapping[str, Any]) -> dict[str, Any]:
    """Kept edits (``kept_edits``, or as an earlier version kept them) as the reducers fold
    them; a channel no longer declared is passed on as it is."""
    return {
        channel: value if (reducer := reducers.get(channel)) is None else reducer.accept(value)
        for channel, value in edits.items()
    }


def _owned_refs() -> tuple[int, int]:
    """What ``sys.getrefcount`` says in ``Channels.apply`` of what only the engine holds.

    Of the values mapping (held by the ``Channels``), and of a value (held
    by the mapping): the same references as there, counted the same way.
    """
    channels = Channels({}, {"c": FrozenList()})
    values = channels.values
    current = values["c"]
    return sys.getrefcount(values), sys.getrefcount(current)


class Channels:
    """The channel values of one run, folded layer by layer.

    Every value here went through msgpack on its way in (decoded from a
    checkpoint, or a write, input or edit normalised when it arrived), so it
    is read-only to everyone else (see ``_values``) and belongs to the
    engine. So the mapping and the MergeMap and Append values are updated
    in place, and a step that changes one key of a large map copies nothing:
    unless something outside the engine still holds the mapping (a step kept
    ``state``) or the value (it kept ``state["log"]``, or a copy of the
    mapping), in which case that is changed as a copy, so that what a step
    read stays as it was when its layer began (CPython's reference count
    says which: the engine lets go of the state it gave the steps before it
    folds their writes).
    """

    __slots__ = ("reducers", "values")

    def __init__(self, reducers: Mapping[str, AnyReducer], values: dict[str, Any]) -> None:
        self.reducers = reducers
        # what steps read; only ``apply`` changes it. Values from a store are
        # plain: freeze them; our own are frozen already: copy the top level
        self.values = FrozenDict(values) if isinstance(values, FrozenDict) else freeze(values)
        if not reducers.keys() <= self.values.keys():  # a channel declared since: its default
            for name, reducer in reducers.items():
                if name not in self.values:
                    _set(self.values, name, reducer.initial())

    @classmethod
    def fresh(cls, reducers: Mapping[str, AnyReducer]) -> Channels:
        return cls(reducers, {name: r.initial() for name, r in reducers.items()})

    def apply(self, writes: Sequence[Mapping[str, Any]]) -> list[Change]:
        """Fold every write, in order, into the values and return the changes.

        The writes were checked (channel names, value types) and normalised
        when they were collected.
        """
        one = len(writes) == 1  # one step's writes (a chain's layer): one value a channel
        incoming: Mapping[str, Any]
        if one:
            incoming = writes[0]
        else:
            incoming = {}
            for mapping in writes:
                for channel, value in mapping.items():
                    bucket = incoming.get(channel)
                    if bucket is None:
                        incoming[channel] = [value]
                    else:
                        bucket.append(value)
        changes = []
        values = self.values
        getrefcount = sys.getrefcount
        if getrefcount(values) > _OWNED_MAP:
            values = self.values = FrozenDict(values)  # held elsewhere: changed as a copy
        reducers = self.reducers
        c0, c1, c2 = _CHANGE  # a Change built without its frozen __init__ (a third the cost)
        for channel, bucket in incoming.items():
            reducer = reducers[channel]
            if type(reducer) is LastWriteWins:  # its fold, inline: most channels are these
                new = bucket if one else bucket[-1]
                _set(values, channel, new)
                change = _new(Change)
                c0(change, channel)
                c1(change, _SET)
                c2(change, new)
                changes.append(change)
                continue
            if one:
                bucket = [bucket]
            current = values[channel]
            copy = _IN_PLACE.get(type(reducer))
            if copy is not None and getrefcount(current) > _OWNED_VALUE:
                current = copy(current)  # held elsewhere: changed as a copy
            try:
                new, op, delta = reducer.fold(current, bucket)
            except SerializationError as exc:  # a result msgpack cannot encode, or too deep
                unstorable = SerializationError(f"channel {channel!r}: {exc}")
                unstorable.channel = channel  # type: ignore[attr-defined]
                raise unstorable from None
            except (Exception, SystemExit) as exc:  # sys.exit() in a reducer fails the layer
                msg = f"the reducer of channel {channel!r} raised {named(exc)}"
                error = StepError(msg)
                error.channel = channel  # type: ignore[attr-defined]
                raise error from exc
            _set(values, channel, new)
            changes.append(Change(channel, op, delta))
        return changes


_OWNED_MAP, _OWNED_VALUE = _owned_refs()
