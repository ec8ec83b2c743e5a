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

Values nest at most ``MAX_DEPTH`` dicts and lists deep, checked once, where
they enter (``normalize``). msgpack itself packs and unpacks up to 1,024
levels, and Python's ``repr``, ``json`` and ``copy`` give up near 1,000; a
checkpoint wraps each value in a few levels of its own. Without one limit at
the door, a value nested 1,000 deep would be accepted and then fail later and
elsewhere: in ``pausegraph show``, on a cold resume, or in the save itself.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from itertools import chain, compress
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


def _refuse_ext(code: int, data: bytes) -> NoReturn:
    """msgpack packs an ``ExtType`` (or a ``Timestamp``) as it is; a store refuses to read one."""
    msg = (
        f"msgpack cannot encode ExtType (extension type {code}) for pausegraph: it never "
        "stores extension types"
    )
    raise TypeError(msg)


# how msgpack writes a Timestamp (extension type -1: fixext 4, fixext 8, ext 8 of 12 bytes),
# which it packs as it is and unpacks past ``ext_hook``: a value whose bytes hold none of
# these holds no Timestamp, and only one that does is walked (``refused_part``)
_TIMESTAMP_HEADS = (b"\xd6\xff", b"\xd7\xff", b"\xc7\x0c\xff")


def _refuse_type(obj: object) -> object:
    msg = f"msgpack cannot encode {type(obj).__name__} {shown(obj)}"
    raise TypeError(msg)


def shown(obj: object, limit: int = 200) -> str:
    """``repr(obj)`` for a message that will be stored: cut to ``limit``, never raising.

    A ``__repr__`` may raise, or return what no store can encode (a lone
    surrogate): the message recording it must still be saved.
    """
    try:
        text = repr(obj)
    except Exception:
        return f"<{type(obj).__name__} whose repr() raised>"
    if len(text) > limit:
        text = text[:limit] + "..."
    return storable(text)


def storable(text: str) -> str:
    """``text`` with what UTF-8 cannot encode (lone surrogates) escaped: ``\\udcff``."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def said(exc: BaseException) -> str:
    """``str(exc)`` as text every store keeps: lone surrogates escaped, a broken ``__str__`` named.

    A message may hold what no store can encode as UTF-8 (a file name from
    ``os.listdir`` that is not UTF-8, a surrogate): the failure or effect
    error recording it could then not be saved, and its run would stay
    queued, driven again and again.
    """
    try:
        text = str(exc)
    except Exception:
        return f"<{type(exc).__name__} whose str() raised>"
    if type(text) is not str:  # a str subclass from __str__: kept as a plain str
        text = str(text)
    return storable(text)


def named(exc: BaseException) -> str:
    """``"ValueError: boom"``: the exception's class and ``said(exc)``, for a message."""
    return f"{type(exc).__name__}: {said(exc)}"


class _Packers(threading.local):
    # msgpack.packb builds a Packer per call, which costs more than packing a
    # small write; a Packer is not thread-safe, so each thread keeps its own.
    def __init__(self) -> None:
        self.packer = msgpack.Packer(use_bin_type=True, datetime=False, default=_refuse_type)


_packers = _Packers()


def packer() -> msgpack.Packer:
    """This thread's reused ``Packer``: a loop that packs many values binds its ``pack`` once."""
    return _packers.packer


def pack(obj: Any) -> bytes:
    """Encode msgpack-native data; raises TypeError/ValueError/OverflowError."""
    return _packers.packer.pack(obj)


#: How many dicts and lists a value may nest, one inside the other: ``[[1]]`` is
#: 2 deep, a scalar 0. Far more than any real state needs, and far enough
#: under msgpack's and Python's own limits for a checkpoint to wrap a value
#: in its records and still be encoded, decoded and printed.
MAX_DEPTH = 100


class TooDeep(ValueError):
    """A value nests more dicts and lists than ``MAX_DEPTH`` allows."""


def freeze(value: Any, *, max_depth: int | None = None) -> Any:
    """``value`` as a cold run reads it back: msgpack-normalised and read-only.

    Raises ``TypeError``/``ValueError``/``OverflowError`` if msgpack cannot
    encode it, and ``TooDeep`` (a ``ValueError``) if ``max_depth`` is given and
    the value nests deeper. Values from a store or already frozen were
    checked when they entered: freeze them without a ``max_depth``.
    """
    try:
        packed = pack(value)
        if (
            max_depth is not None  # a value entering (one from a store holds no Timestamp)
            and b"\xff" in packed  # one scan for most values: no 0xff, no Timestamp
            and any(head in packed for head in _TIMESTAMP_HEADS)
            and refused_part(value, "the value") is not None
        ):
            msg = "msgpack cannot encode Timestamp for pausegraph: it never stores extension types"
            raise TypeError(msg)
        frozen = msgpack.unpackb(
            packed,
            raw=False,
            strict_map_key=False,
            list_hook=FrozenList,
            object_hook=FrozenDict,
            ext_hook=_refuse_ext,
        )
    except ValueError:  # msgpack's own nesting limit (1,024) is one cause
        if max_depth is not None and _deeper_than(value, max_depth, None):
            raise _too_deep(max_depth) from None
        raise
    if (
        max_depth is not None
        and len(packed) > max_depth
        and _headers(packed) > max_depth
        and _deeper_than(frozen, max_depth, _FROZEN)
    ):
        raise _too_deep(max_depth)
    return frozen


# The bytes that can start an array or a map in msgpack. A value nested n deep
# packs n container headers, so if its encoding holds no more than n such
# bytes (data bytes included), it is no more than n deep: most values (small
# ones, text) skip the walk below.
_NOT_HEADERS = bytes(b for b in range(256) if not (0x80 <= b <= 0x9F or 0xDC <= b <= 0xDF))


def _headers(packed: bytes) -> int:
    return len(packed.translate(None, _NOT_HEADERS))


def _deeper_than(value: Any, limit: int, containers: frozenset[type] | None) -> bool:
    """Whether ``value`` nests more than ``limit`` containers deep.

    ``containers`` are the exact container types (``None``: any dict, list or
    tuple, subclasses too). Level by level, not recursively (the point is
    values too deep to recurse into), and at most ``limit + 1`` levels, so a
    value that contains itself ends too. Scalars are told from containers by
    C code (the set of a level's types, ``compress``), so a long list of
    numbers costs little.
    """
    level = [value]
    for _ in range(limit + 1):
        kinds = set(map(type, level))
        if containers is None:
            nested = {k for k in kinds if issubclass(k, (dict, list, tuple))}
        else:
            nested = kinds & containers
        if not nested:
            return False
        if len(nested) < len(kinds):
            level = list(compress(level, map(nested.__contains__, map(type, level))))
        level = list(chain.from_iterable(x.values() if isinstance(x, dict) else x for x in level))
    return True


_FROZEN = frozenset((FrozenDict, FrozenList))


def _too_deep(limit: int) -> TooDeep:
    return TooDeep(
        f"it nests dicts and lists more than {limit} deep, the limit: "
        "flatten it, or keep its deep part as a string or bytes"
    )


NATIVE = "Use msgpack-native values (dict, list, str, int, float, bool, None, bytes)."


def normalize(value: Any, what: Callable[[], str]) -> Any:
    """``freeze(value)``, or a ``SerializationError`` naming ``what`` it is.

    Every value a run takes in passes here (or through ``freeze`` with the
    same ``max_depth``), and this is where ``MAX_DEPTH`` is enforced. ``what``
    is called only on failure, to build the message.
    """
    try:
        return freeze(value, max_depth=MAX_DEPTH)
    except TooDeep as exc:
        msg = f"{what()} cannot be stored: {exc}"
        raise SerializationError(msg) from None
    except Exception as exc:  # msgpack's refusal, or a value whose own methods raise
        msg = f"{what()} cannot be stored: {_refusal(value, exc)}. {NATIVE}"
        raise SerializationError(msg) from None


def _refusal(value: Any, exc: Exception) -> str:
    """Why ``value`` cannot be stored, naming the refused part and its type where one is."""
    try:
        part = refused_part(value, "the value")
    except Exception:  # a value whose own methods raise as it is walked
        part = None
    if part is None:
        return unstorable(exc)
    if part.startswith("a key"):
        return f"{part}: a key must be a str, int, float, bool, None or bytes"
    if isinstance(exc, UnicodeEncodeError):
        return f"{part}: it holds a lone surrogate, which UTF-8 cannot encode ({said(exc)})"
    return f"{part}: {unstorable(exc)}"


def unstorable(exc: Exception) -> str:
    """Why a value cannot be stored: msgpack's refusal as it says it, anything else named."""
    if isinstance(exc, (TypeError, ValueError, OverflowError)):
        return said(exc)
    return named(exc)


def refused_part(value: Any, root: str) -> str | None:
    """Which part of ``value`` msgpack refuses, in words, for an error message.

    ``root`` names the value (``"result"``); the part is named by its type
    and its subscripts from there: ``"the datetime at result['at']"``,
    ``"a key of type date in result[0]"``, ``"result itself, of type Decimal"``.
    ``None`` if no single part is refused (the value is only too deep).
    Depth first, without recursion, at most ``MAX_DEPTH`` levels down.
    """
    todo: list[tuple[str, Any, int]] = [(root, value, 0)]
    while todo:
        path, part, depth = todo.pop()
        if isinstance(part, dict):
            if depth >= MAX_DEPTH:
                continue
            items = list(part.items())
            for key, _ in items:
                if isinstance(key, (list, tuple, dict)):  # packs, but reads back unhashable
                    return f"a key of type {type(key).__name__} in {path}"
                try:
                    pack(key)
                except Exception:
                    return f"a key of type {type(key).__name__} in {path}"
            todo.extend((f"{path}[{shown(k)}]", v, depth + 1) for k, v in reversed(items))
        elif isinstance(part, (list, tuple)):
            if depth >= MAX_DEPTH:
                continue
            todo.extend((f"{path}[{i}]", v, depth + 1) for i, v in reversed(list(enumerate(part))))
        else:
            try:
                if isinstance(part, (msgpack.ExtType, msgpack.Timestamp)):
                    raise TypeError  # packed as it is, and refused when read: never stored
                pack(part)
            except Exception:
                kind = type(part).__name__
                return f"{root} itself, of type {kind}" if path == root else f"the {kind} at {path}"
    return None


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
