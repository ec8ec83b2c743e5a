"""Read-only dicts and lists: how every value that went through msgpack comes back.

A run's values are shared between the engine and the steps that read them;
if a step could change a list inside the state, the change would show in the
live run but never reach a checkpoint, and a cold replay would see something
else. So every container in a run's state (and in what the engine keeps in a
journal: answers, effect results, payloads) is a ``FrozenDict`` or
``FrozenList``: a real ``dict`` or ``list`` (it reads, compares, prints and
serialises like one) whose changing methods raise ``TypeError``. Copy it to
change it: ``dict(x)``, ``list(x)``, ``x.copy()`` or ``copy.deepcopy(x)``
give plain ones. The engine changes them through the base class methods.

Stores hand out plain values (a caller may change what it loaded); the
engine freezes what it takes in (``freeze``) and hands out plain copies
(``thaw``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, NoReturn

import msgpack

from .errors import SerializationError

_HINT = (
    "this value belongs to the run and is read-only: copy it to change it "
    "(dict(x), list(x), copy.deepcopy(x)); a step changes the state by returning its writes"
)


def _refuse(self: object, *args: object, **kwargs: object) -> NoReturn:
    raise TypeError(_HINT)


class FrozenDict(dict[Any, Any]):
    """A dict whose changing methods raise ``TypeError``."""

    __slots__ = ()
    __setitem__ = __delitem__ = __ior__ = _refuse
    update = pop = popitem = clear = setdefault = _refuse

    def __copy__(self) -> dict[Any, Any]:
        return dict(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        return thaw(self)

    def __reduce__(self) -> tuple[Any, ...]:
        return (dict, (dict(self),))


class FrozenList(list[Any]):
    """A list whose changing methods raise ``TypeError``."""

    __slots__ = ()
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _refuse
    append = extend = insert = pop = remove = clear = sort = reverse = _refuse

    def __copy__(self) -> list[Any]:
        return list(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        return thaw(self)

    def __reduce__(self) -> tuple[Any, ...]:
        return (list, (list(self),))


def _refuse_type(obj: object) -> object:
    msg = f"msgpack cannot encode {type(obj).__name__} {obj!r}"
    raise TypeError(msg)


class _Packers(threading.local):
    # msgpack.packb builds a Packer per call, which costs more than packing a
    # small write; a Packer is not thread-safe, so each thread keeps its own.
    def __init__(self) -> None:
        self.packer = msgpack.Packer(use_bin_type=True, datetime=False, default=_refuse_type)


_packers = _Packers()


def pack(obj: Any) -> bytes:
    """Encode msgpack-native data; raises TypeError/ValueError/OverflowError."""
    return _packers.packer.pack(obj)


def freeze(value: Any) -> Any:
    """``value`` as a cold run reads it back: msgpack-normalised and read-only.

    Raises ``TypeError``/``ValueError``/``OverflowError`` if msgpack cannot
    encode it.
    """
    packed = pack(value)
    return msgpack.unpackb(
        packed, raw=False, strict_map_key=False, list_hook=FrozenList, object_hook=FrozenDict
    )


NATIVE = "Use msgpack-native values (dict, list, str, int, float, bool, None, bytes)."


def normalize(value: Any, what: Callable[[], str]) -> Any:
    """``freeze(value)``, or a ``SerializationError`` naming ``what`` it is.

    ``what`` is called only on failure, to build the message.
    """
    try:
        return freeze(value)
    except (TypeError, ValueError, OverflowError) as exc:
        msg = f"{what()} cannot be stored: {exc}. {NATIVE}"
        raise SerializationError(msg) from None


def thaw(value: Any) -> Any:
    """A plain, mutable deep copy of a msgpack-native value."""
    return msgpack.unpackb(pack(value), raw=False, strict_map_key=False)


def same(a: Any, b: Any) -> bool:
    """Whether two msgpack-normalised values are the same value, as a store keeps it.

    This is how the engine compares what it recorded with what it is given
    again (an interrupt payload on replay, a run's input). Python's ``==`` is
    wrong for that: ``nan != nan``, so a payload holding NaN would never match
    its own record, while ``1 == 1.0 == True`` and ``0.0 == -0.0`` would match
    values that a store keeps apart. Comparing the msgpack encodings gets both
    right. The trap: the order of a dict's keys is part of its encoding, so
    ``{"a": 1, "b": 2}`` and ``{"b": 2, "a": 1}`` are not the same.
    """
    return a is b or pack(a) == pack(b)
