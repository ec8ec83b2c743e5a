"""Drive one step's stack of generators, recording or replaying its journal.

A generator step may yield a generator object to call it as a sub-step; the
trampoline keeps an explicit stack instead of recursing, so nesting depth is
bounded by memory, not by ``sys.getrecursionlimit()``. A value returned by a
sub-generator is sent to its caller; an exception is thrown into it.

The journal lists what the step yielded: ``Asked`` for every ``Interrupt``
(its answer is looked up by id in the layer's answers) and ``Returned`` or
``Raised`` for every ``Effect``. When the step is called again after a
restart, the trampoline *replays*: while the cursor is inside the journal,
each yield must match the recorded entry and gets the recorded answer or
result; past the end, it records new entries.

A new effect is not called here: ``advance`` hands it back to the
scheduler, which calls it, records the entry (``record``), has it saved, and
only then sends the result in (``advance`` again). So nothing outside the
journal ever sees a result that was not saved first.
"""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Callable, Collection, Mapping
from types import GeneratorType
from typing import Any

from ._instructions import Effect, Interrupt, Sleep, consumed
from ._records import Asked, Entry, Raised, Returned
from ._values import normalize, same, thaw
from .errors import (
    EffectError,
    InterruptTimeout,
    NondeterminismError,
    SerializationError,
    StepError,
)

_HINT = (
    "a step may yield Interrupt(payload), Effect(fn, *args) or a generator object "
    "(a call to another generator function)"
)
_CLOSE_TRIES = 100  # yields a closing generator may make before it is given up on


class _Abandoned(BaseException):
    """Thrown into a step that keeps yielding while it is closed, to end it for good."""


FINISHED = True
SUSPENDED = False


def check_writes(step_id: str, result: Any) -> Mapping[str, Any]:
    """A step's return value as writes, or a ``StepError`` saying what is wrong."""
    if result is None:
        return {}
    if type(result) is dict or isinstance(result, Mapping):
        return result
    msg = (
        f"step {step_id!r} returned {type(result).__name__} {result!r}: "
        "return a dict of channel writes, or None"
    )
    raise StepError(msg)


def step_failed(step_id: str, exc: Exception) -> StepError:
    msg = f"step {step_id!r} raised {type(exc).__name__}: {exc}"
    error = StepError(msg)
    error.__cause__ = exc
    return error


def call_effect(step_id: str, effect: Effect) -> tuple[Entry, BaseException | None]:
    """Call an effect's function once: its journal entry, and the error to throw in."""
    name = effect.name
    try:
        result = effect.fn(*effect.args, **effect.kwargs)
    except Exception as exc:
        text = f"effect {name} in step {step_id!r} raised {type(exc).__name__}: {exc}"
        error = EffectError(text)
        error.__cause__ = exc
        return Raised(name, text), error
    value = normalize(result, lambda: f"the result of effect {name} in step {step_id!r}")
    return Returned(name, value), None


def close_quietly(stack: list[GeneratorType[Any, Any, Any]]) -> None:
    """Close a generator stack, innermost first, running its ``finally`` blocks.

    Unlike ``generator.close()``, an ``Effect`` or ``Interrupt`` yielded
    while closing is dropped, unrun and unsaved, and nothing is printed:
    ``GeneratorExit`` is thrown in again at that ``yield``.
    """
    while stack:
        gen = stack.pop()
        for _ in range(_CLOSE_TRIES):
            try:
                dropped = gen.throw(GeneratorExit)
            except (GeneratorExit, StopIteration):
                break
            except Exception:  # a cleanup that fails has nowhere to report to
                break
            if type(dropped) is Interrupt or type(dropped) is Effect:
                consumed(dropped)  # dropped on purpose: no "never yielded" warning
        else:
            # it catches GeneratorExit and yields again, forever: end it with an
            # exception its `except GeneratorExit` does not catch, so that Python's
            # own close at collection has nothing left to complain about
            with contextlib.suppress(BaseException):
                gen.throw(_Abandoned)


def no_clock() -> int:  # pragma: no cover - the scheduler always passes the Runner's clock
    msg = "an interrupt with a timeout needs the Runner's clock"
    raise RuntimeError(msg)


class Trampoline:
    """One step in progress: its generator stack and its journal."""

    __slots__ = (
        "answers", "clock", "cursor", "id_prefix", "journal", "stack", "step_id", "timeouts",
        "writes",
    )  # fmt: skip

    def __init__(
        self,
        step_id: str,
        gen: GeneratorType[Any, Any, Any],
        journal: list[Entry],
        answers: Mapping[str, Any],
        id_prefix: str,
        timeouts: Collection[str] = (),
        clock: Callable[[], int] = no_clock,
    ) -> None:
        self.step_id = step_id
        self.stack: list[GeneratorType[Any, Any, Any]] = [gen]
        self.journal = journal
        self.answers = answers  # the layer's answers by interrupt id, shared
        self.timeouts = timeouts  # the layer's timed-out interrupt ids, shared
        self.clock = clock  # epoch ms, for the deadline of a new interrupt
        self.cursor = 0  # entries before this were replayed or recorded
        self.id_prefix = id_prefix
        self.writes: Mapping[str, Any] = {}

    @property
    def pending(self) -> Asked:
        """The unanswered interrupt this step is suspended at."""
        entry = self.journal[-1]
        assert type(entry) is Asked
        return entry

    def record(self, entry: Entry) -> None:
        """Add the entry of an effect this step waits on (called before it is saved)."""
        self.journal.append(entry)
        self.cursor += 1

    def advance(self, value: Any = None, error: BaseException | None = None) -> bool | Effect:
        """Run until the step finishes, suspends, or yields a new effect.

        Returns ``FINISHED`` (see ``writes``), ``SUSPENDED`` (see ``pending``)
        or the ``Effect`` to call (``record`` its entry, then ``advance``
        with its result or error). Raises ``StepError`` (or ``EffectError``)
        if the step fails, and ``NondeterminismError`` if it strays from its
        journal.
        """
        stack = self.stack
        while True:
            gen = stack[-1]
            try:
                msg = gen.send(value) if error is None else gen.throw(error)
            except StopIteration as stop:
                stack.pop()
                value, error = stop.value, None
                if not stack:
                    return self._finish(value)
                continue
            except Exception as exc:
                stack.pop()
                if not stack:
                    if isinstance(exc, (StepError, NondeterminismError, SerializationError)):
                        raise
                    raise step_failed(self.step_id, exc) from exc
                value, error = None, exc
                continue
            error = None
            kind = type(msg)
            if kind is Interrupt or kind is Effect or kind is Sleep:
                consumed(msg)  # yielded: it must not warn that it never was
            if kind is Interrupt or kind is Sleep:
                entry = self._interrupt(msg)
                outcome = self.outcome(entry)
                if outcome is None:
                    if self.cursor != len(self.journal):  # pragma: no cover - never written
                        why = f"step {self.step_id!r}: {entry.id!r} has no answer but is not last"
                        raise NondeterminismError(why)
                    return SUSPENDED
                value, error = outcome
            elif kind is Effect:
                if self.cursor == len(self.journal):
                    effect: Effect = msg
                    return effect
                value, error = self._replay_effect(msg)
            elif kind is GeneratorType:
                stack.append(msg)
                value = None
            else:
                self.close()
                raise StepError(self._bad_yield(msg))

    def close(self) -> None:
        """Let the step go unfinished: close its generators quietly."""
        close_quietly(self.stack)

    def _finish(self, result: Any) -> bool:
        if self.cursor < len(self.journal):
            entry = self.journal[self.cursor]
            msg = (
                f"step {self.step_id!r} returned at journal position {self.cursor}, "
                f"but its journal recorded {describe_entry(entry)} there: it must repeat "
                "every recorded interrupt and effect, in order, when replayed"
            )
            raise NondeterminismError(msg)
        self.writes = check_writes(self.step_id, result)
        return FINISHED

    def outcome(self, entry: Asked) -> tuple[Any, BaseException | None] | None:
        """What the ``yield`` of ``entry`` gets: its answer, its timeout, or ``None`` (pending)."""
        answers = self.answers
        if entry.id in answers:
            return thaw(answers[entry.id]), None  # the step's own copy
        if entry.id in self.timeouts:
            return None, timed_out(self.step_id, entry)
        return None

    def _interrupt(self, msg: Interrupt | Sleep) -> Asked:
        """The journal entry of an interrupt just yielded: replayed, or recorded now."""
        timeout: float | None
        if type(msg) is Sleep:
            payload, timeout, sleep = None, msg.seconds, True
        else:
            what = f"the interrupt payload of step {self.step_id!r}"
            payload = normalize(msg.payload, lambda: what)  # type: ignore[union-attr]
            timeout, sleep = msg.timeout, False  # type: ignore[union-attr]
        journal = self.journal
        if self.cursor < len(journal):
            recorded = journal[self.cursor]
            if (
                type(recorded) is not Asked
                or recorded.sleep is not sleep
                or not same(recorded.payload, payload)
            ):
                got = f"Sleep({timeout!r})" if sleep else f"Interrupt({payload!r})"
                self._mismatch(recorded, got)
            entry: Asked = recorded  # type: ignore[assignment]
        else:
            deadline = None if timeout is None else self.clock() + round(timeout * 1000)
            entry = Asked(self.id_prefix + str(len(journal)), payload, deadline, sleep)
            journal.append(entry)
        self.cursor += 1
        return entry

    def _replay_effect(self, msg: Effect) -> tuple[Any, BaseException | None]:
        entry = self.journal[self.cursor]
        kind = type(entry)
        if isinstance(entry, Asked) or entry.effect != msg.name:
            self._mismatch(entry, f"Effect({msg.name})")
        self.cursor += 1
        if kind is Raised:
            return None, EffectError(entry.error)  # type: ignore[union-attr]
        return thaw(entry.value), None  # type: ignore[union-attr]

    def _mismatch(self, entry: Entry, got: str) -> None:
        self.close()
        msg = (
            f"step {self.step_id!r} yielded {got} at journal position {self.cursor}, but its "
            f"journal recorded {describe_entry(entry)} there: a step must repeat its interrupts "
            "(same payloads) and effects (same functions) in the same order when it is replayed; "
            "deploy code that does, or Goto a step to run the layer afresh"
        )
        raise NondeterminismError(msg)

    def _bad_yield(self, msg: object) -> str:
        hint = ""
        if callable(msg) and getattr(msg, "__code__", None) is not None:
            hint = " (did you yield a generator function instead of calling it?)"
        return f"step {self.step_id!r} yielded {msg!r}, which is not an instruction{hint}: {_HINT}"


def timed_out(step_id: str, entry: Asked) -> InterruptTimeout:
    """The error thrown in at the ``yield`` of an interrupt whose deadline passed."""
    when = datetime.datetime.fromtimestamp((entry.deadline_ms or 0) / 1000, datetime.timezone.utc)
    msg = (
        f"interrupt {entry.id!r} of step {step_id!r} timed out: nobody answered it by its "
        f"deadline {when:%Y-%m-%d %H:%M:%S} UTC"
    )
    return InterruptTimeout(msg)


def describe_entry(entry: Entry) -> str:
    if isinstance(entry, Asked):
        if entry.sleep:
            return "Sleep(...)"
        return f"Interrupt({entry.payload!r})"
    return f"Effect({entry.effect})"


def start(
    step_id: str,
    fn: Callable[[Mapping[str, Any]], Any],
    state: Mapping[str, Any],
    journal: list[Entry],
    answers: Mapping[str, Any],
    id_prefix: str,
    timeouts: Collection[str] = (),
    clock: Callable[[], int] = no_clock,
) -> Trampoline | Mapping[str, Any]:
    """Call a step: its writes if it is a plain function, else a trampoline on ``journal``.

    With a non-empty ``journal`` the step is being replayed, so it must be a
    generator step.
    """
    try:
        result = fn(state)
    except Exception as exc:
        if isinstance(exc, (StepError, SerializationError)):
            raise
        raise step_failed(step_id, exc) from exc
    if type(result) is GeneratorType:
        return Trampoline(step_id, result, journal, answers, id_prefix, timeouts, clock)
    if journal:
        msg = (
            f"step {step_id!r} has a journal to replay, but calling it again returned "
            f"{type(result).__name__}, not a generator: it cannot replay its journal"
        )
        raise NondeterminismError(msg)
    return check_writes(step_id, result)
