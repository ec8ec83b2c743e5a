"""What a generator step may yield to the scheduler: ``Interrupt``, ``Effect``, ``All``.

A step may also yield a generator object, which the trampoline runs as a
sub-call; that needs no class of its own.

An instruction does nothing until it is yielded, and forgetting the
``yield`` is easy: ``Interrupt(q)`` alone on a line is a valid statement, and
the step goes on as if nobody needed asking. So, as Python does for a
coroutine never awaited, each instruction remembers where it was made, the
trampoline marks it when it takes it (``consumed``), and one that is
garbage-collected unmarked warns (``RuntimeWarning``) naming that place.
"""

from __future__ import annotations

import datetime
import math
import os
import reprlib
import sys
import warnings
from collections.abc import Callable
from types import CodeType, GeneratorType
from typing import Any

import attrs

from ._values import shown

#: A timeout: seconds as an ``int`` or ``float``, or a ``timedelta``.
Timeout = int | float | datetime.timedelta

#: The longest timeout or sleep, in seconds: 100 years. A deadline is kept as
#: epoch milliseconds in a 64-bit integer (msgpack, SQLite, PostgreSQL's bigint).
MAX_TIMEOUT_S = 100 * 365.25 * 86_400


class _Instruction:
    """What ``Interrupt`` and ``Effect`` share: the never-yielded warning.

    ``_origin`` is the code object and bytecode offset of the call that made
    the instruction, and ``None`` once the trampoline took it. It is a slot of its own, not
    an attrs field: equality, hashing and the repr ignore it, and a copy
    (``copy.copy``) does not carry it, so it never warns for a copy.
    """

    __slots__ = ("_origin",)

    _origin: tuple[CodeType, int] | None
    _fix: str  # the line to write instead, for the warning

    def _describe(self) -> str:
        return f"{type(self).__name__}(...)"  # each instruction shows its own arguments

    def __del__(self, _finalizing: Callable[[], bool] = sys.is_finalizing) -> None:
        try:
            origin = self._origin
        except AttributeError:  # a copy, or __init__ refused its arguments
            return
        if origin is None or _finalizing():
            return
        code, offset = origin
        # the line is worked out only now: reading f_lineno costs more than f_lasti
        line = next((n for start, end, n in code.co_lines() if start <= offset < end), None)
        msg = (
            f"{self._describe()} created at {code.co_filename}:{line} was never yielded: "
            f"write {self._fix!r}"
        )
        warnings.warn(msg, RuntimeWarning, stacklevel=2)


def consumed(instruction: _Instruction) -> None:
    """Mark ``instruction`` as yielded: the trampoline took it, it never warns."""
    _mark(instruction, None)


_getframe = sys._getframe

# the slot's own setter: instructions are frozen, and this is the fastest way in
_mark: Callable[[_Instruction, tuple[CodeType, int] | None], None] = _Instruction.__dict__[
    "_origin"
].__set__


@attrs.frozen(init=False)
class Interrupt(_Instruction):
    """Yield this from a step to pause the run until someone answers.

    The value of the ``yield`` expression is the answer given with
    ``Runner.resume(run_id, Resume(answer))``::

        def approve(state):
            ok = yield Interrupt({"question": "approve?", "amount": state["amount"]})
            return {"approved": ok}

    The payload is stored in the checkpoint, so it must be encodable by
    msgpack (dicts, lists, strings, numbers, booleans, ``None``, bytes). On a
    replay the step must yield the same payload at the same position.

    ``timeout`` (seconds, as an ``int``, ``float`` or ``timedelta``) gives the
    interrupt a deadline: once it has passed unanswered, ``Runner.tick()``
    (or a ``Worker``) throws ``InterruptTimeout`` into the step at its
    ``yield``, where ``except InterruptTimeout:`` may go on without an answer.
    A timeout of another type is a ``TypeError``; one that is negative, not
    finite or over 100 years a ``ValueError``.

    Without the ``yield`` nothing happens: the step goes on at once. Such an
    ``Interrupt``, never yielded, warns (``RuntimeWarning``) when it is
    garbage-collected, naming the file and line that made it.
    """

    payload: Any = None
    timeout: float | None = attrs.field(default=None, repr=False)
    _fix = "answer = yield Interrupt(...)"

    def __repr__(self) -> str:
        if self.timeout is None:
            return f"Interrupt(payload={self.payload!r})"
        return f"Interrupt(payload={self.payload!r}, timeout={self.timeout!r})"

    def __init__(self, payload: Any = None, *, timeout: Timeout | None = None) -> None:
        # what attrs' own __init__ does, without its two extra calls: the hot path
        _set_payload(self, payload)
        if timeout is not None:
            timeout = seconds_of(timeout, "Interrupt(timeout=...)")
        _set_timeout(self, timeout)
        frame = _getframe(1)
        _mark(self, (frame.f_code, frame.f_lasti))

    def _describe(self) -> str:
        return f"Interrupt({reprlib.repr(self.payload)})"


_set_payload: Callable[[Interrupt, Any], None] = Interrupt.__dict__["payload"].__set__
_set_timeout: Callable[[Interrupt, Any], None] = Interrupt.__dict__["timeout"].__set__


@attrs.frozen(init=False)
class Sleep(_Instruction):
    """Yield this from a step to wait ``seconds`` durably: a timer that survives restarts.

    It is an interrupt with no payload whose deadline, once passed, makes
    ``Runner.tick()`` send ``None`` back (where an ``Interrupt`` with a
    timeout gets ``InterruptTimeout``)::

        def remind(state):
            yield Sleep(timedelta(days=1))
            yield Effect(send_reminder, state["email"])

    It is listed among the run's pending interrupts with its
    ``deadline_ms``, so answering it ends it early (the answer is what the
    ``yield`` returns).
    """

    seconds: float
    _fix = "yield Sleep(...)"

    def __init__(self, seconds: Timeout) -> None:
        _set_seconds(self, seconds_of(seconds, "Sleep(seconds)"))
        frame = _getframe(1)
        _mark(self, (frame.f_code, frame.f_lasti))

    def _describe(self) -> str:
        return f"Sleep({self.seconds!r})"


_set_seconds: Callable[[Sleep, Any], None] = Sleep.__dict__["seconds"].__set__


def seconds_of(value: Any, what: str) -> float:
    """A timeout in seconds from an ``int``, ``float`` or ``timedelta``; refuses anything else.

    Raises ``TypeError`` for another type and ``ValueError`` for a value
    that is not finite, is negative or is over ``MAX_TIMEOUT_S`` (100 years).
    """
    if isinstance(value, datetime.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except OverflowError:  # an int past any float: past the limit too
            seconds = 2.0 * MAX_TIMEOUT_S if value > 0 else -1.0
    else:
        msg = f"{what} takes seconds as an int, float or timedelta, got {shown(value, 40)}"
        raise TypeError(msg)
    if not math.isfinite(seconds) or seconds < 0:
        msg = f"{what} takes a finite number of seconds, 0 or more, got {shown(value, 40)}"
        raise ValueError(msg)
    if seconds > MAX_TIMEOUT_S:
        msg = (
            f"{what} takes at most 100 years ({MAX_TIMEOUT_S:.0f} seconds), got "
            f"{shown(value, 40)}: for no deadline, leave the timeout out"
        )
        raise ValueError(msg)
    return seconds


@attrs.frozen(init=False)
class Effect(_Instruction):
    """Yield this from a step to call ``fn(*args, **kwargs)`` once, its result recorded.

    The result is recorded in the step's journal and sent back as the value of
    the ``yield``; when the step is replayed (after a restart, in another
    process) the recorded result is sent instead and ``fn`` is not called.
    One window is left, as for any engine: a process that dies (or loses the
    run's live lock, or whose disk fails the save) after ``fn`` returned and
    before its record was saved calls it again on recovery; make such
    effects idempotent (guide, section 3)::

        def charge(state):
            receipt = yield Effect(stripe_charge, state["card"], amount=100)
            return {"receipt": receipt}

    If ``fn`` raises, an ``EffectError`` naming the original type and message
    is thrown into the step at the ``yield``; a replay throws the same error.
    If ``fn`` returns what msgpack cannot encode (a ``datetime``, a
    ``Decimal``), the call is recorded as raising: the step gets an
    ``EffectResultError`` (an ``EffectError`` and a ``SerializationError``),
    which a replay throws again. An effect error that fails the run is the
    one call a retry makes again (SPEC, Failures).
    An effect is recognised on replay by ``fn``'s module and qualified name,
    not by its arguments (see ``name`` for a script's functions). The
    result is normalised through msgpack, so a tuple arrives as a list, the
    same on every path. An ``Effect`` never yielded calls nothing, and warns
    like an ``Interrupt`` never yielded.
    """

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    _fix = "result = yield Effect(...)"

    def __init__(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> None:
        if not callable(fn):
            msg = f"Effect(fn, ...) needs a callable first, got {fn!r}"
            raise TypeError(msg)
        _set_fn(self, fn)  # as attrs' own __init__ does, but cheaper (see Interrupt)
        _set_args(self, args)
        _set_kwargs(self, kwargs)
        frame = _getframe(1)
        _mark(self, (frame.f_code, frame.f_lasti))

    def _describe(self) -> str:
        return f"Effect({self.name})"

    @property
    def name(self) -> str:
        """The name that identifies this effect in a journal: ``module.qualname``.

        A function of the script Python runs (module ``__main__``) is named
        under the module name that script has when imported (``main_name``),
        so that a run started by ``python flow.py`` replays when
        ``flow.py:graph`` is loaded by the command line or a worker.
        """
        fn = self.fn
        module = getattr(fn, "__module__", None) or type(fn).__module__
        qualname = getattr(fn, "__qualname__", None) or type(fn).__qualname__
        if module == "__main__":
            module = main_name()
        return f"{module}.{qualname}"


def main_name() -> str:
    """The import name of the ``__main__`` module: how ``python -m`` or a file loader names it.

    ``__main__.__spec__.name`` when it has one (``python -m pkg.flow``),
    else the stem of its file (``python flow.py`` gives ``flow``, the
    module the command line's ``flow.py:graph`` imports), else
    ``"__main__"`` (an interactive session, ``python -c``).
    """
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    file = getattr(main, "__file__", None)
    seen = _main_seen
    if seen and seen[0] is main and seen[1] is spec and seen[2] is file:
        return seen[3]  # type: ignore[no-any-return]
    found = "__main__"
    name = getattr(spec, "name", None)
    if isinstance(name, str) and name and name != "__main__":
        found = name
    elif isinstance(file, str) and file:
        found = os.path.splitext(os.path.basename(file))[0] or found
    _main_seen[:] = (main, spec, file, found)  # the answer for this __main__, until it changes
    return found


_main_seen: list[Any] = []


def same_effect(recorded: str, effect: Effect) -> bool:
    """Whether a journal's effect name ``recorded`` names ``effect``'s function.

    Equal names, or the same qualified name where one side's module is
    ``__main__`` (a journal written before ``__main__`` functions were named
    by ``main_name``, or a process whose ``__main__`` has no file): the
    function of the script and the same function of its module are one.
    """
    name = effect.name
    if recorded == name:
        return True
    fn = effect.fn
    qualname = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    if recorded == f"__main__.{qualname}":
        return True
    return name == f"__main__.{qualname}" and recorded.endswith(f".{qualname}")


_set_fn: Callable[[Effect, Any], None] = Effect.__dict__["fn"].__set__
_set_args: Callable[[Effect, Any], None] = Effect.__dict__["args"].__set__
_set_kwargs: Callable[[Effect, Any], None] = Effect.__dict__["kwargs"].__set__


@attrs.frozen(init=False)
class All(_Instruction):
    """Yield this from a step to run sub-generators side by side; get their return values.

    ::

        def review(state):
            verdicts = yield All(*(ask_reviewer(name) for name in state["reviewers"]))
            return {"verdicts": verdicts}

    Each branch is a generator object and may yield anything a step may
    (``Interrupt``, ``Effect``, ``Sleep``, a sub-call, another ``All``). An
    interrupt pauses its branch only; the others run on to their end or to
    their own interrupt, and each interrupt has its own id. The ``yield``
    gets the list of the branches' return values, in the order given. A
    branch that raises closes the others, and its exception is raised at
    the ``yield All(...)``. With a ``Runner(executor=...)``, the effects
    the branches wait on at the same time run together.
    """

    generators: tuple[Any, ...]
    _fix = "results = yield All(...)"

    def __init__(self, *generators: Any) -> None:
        for n, gen in enumerate(generators):
            if not isinstance(gen, GeneratorType):
                hint = ""
                if callable(gen) and getattr(gen, "__code__", None) is not None:
                    hint = " (call the generator function: All(f(x)), not All(f))"
                msg = f"All(...) takes generator objects, got {gen!r} as branch {n}{hint}"
                raise TypeError(msg)
        seen: dict[int, int] = {}
        for n, gen in enumerate(generators):
            first = seen.setdefault(id(gen), n)
            if first != n:  # one generator runs once: a second branch would get nothing
                msg = (
                    f"All(...) got the same generator object as branches {first} and {n}: "
                    "make one per branch (All(f(x), f(x)), not g = f(x); All(g, g))"
                )
                raise ValueError(msg)
        _set_generators(self, generators)
        frame = _getframe(1)
        _mark(self, (frame.f_code, frame.f_lasti))

    def __repr__(self) -> str:
        return f"All(<{len(self.generators)} branches>)"

    def _describe(self) -> str:
        return f"All(<{len(self.generators)} branches>)"


_set_generators: Callable[[All, Any], None] = All.__dict__["generators"].__set__
