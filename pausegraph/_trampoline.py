"""Drive one step's stack of generators, recording or replaying its journal.

A generator step may yield a generator object to call it as a sub-step; the
trampoline keeps an explicit stack instead of recursing, so nesting depth is
bounded by memory, not by ``sys.getrecursionlimit()``. A value returned by a
sub-generator is sent to its caller; an exception is thrown into it.

The journal lists what the step yielded: every ``Interrupt`` with its answer
and every ``Effect`` with its result. When the step is called again after a
restart, the trampoline *replays*: while the cursor is inside the journal,
each yield must match the recorded entry and gets the recorded answer or
result; past the end, it records new entries.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import GeneratorType
from typing import Any

from ._instructions import Effect, Interrupt, consumed
from ._records import EntryKind, JournalEntry, Value
from ._values import normalize, same, thaw
from .errors import EffectError, NondeterminismError, StepError

_HINT = (
    "a step may yield Interrupt(payload), Effect(fn, *args) or a generator object "
    "(a call to another generator function)"
)


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


class Trampoline:
    """One step in progress: its generator stack and its journal."""

    __slots__ = ("cursor", "id_prefix", "journal", "stack", "step_id", "writes")

    def __init__(
        self,
        step_id: str,
        gen: GeneratorType[Any, Any, Any],
        journal: list[JournalEntry],
        id_prefix: str,
    ) -> None:
        self.step_id = step_id
        self.stack: list[GeneratorType[Any, Any, Any]] = [gen]
        self.journal = journal
        self.cursor = 0  # entries before this were replayed or recorded
        self.id_prefix = id_prefix
        self.writes: Mapping[str, Any] = {}

    @property
    def pending(self) -> JournalEntry:
        """The unanswered interrupt this step is suspended at."""
        return self.journal[-1]

    def answer(self, value: Value) -> bool:
        """Record the answer to the pending interrupt and go on (see ``advance``)."""
        entry = self.journal[-1]
        self.journal[-1] = JournalEntry(EntryKind.INTERRUPT, entry.key, entry.id, True, value)
        return self.advance(thaw(value))

    def advance(self, value: Any = None) -> bool:
        """Run until the step finishes (``True``, see ``writes``) or suspends (``False``).

        Raises ``StepError`` (or ``EffectError``) if the step fails, and
        ``NondeterminismError`` if it strays from its journal.
        """
        stack = self.stack
        error: BaseException | None = None
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
                    if isinstance(exc, (StepError, NondeterminismError)):
                        raise
                    raise step_failed(self.step_id, exc) from exc
                value, error = None, exc
                continue
            error = None
            kind = type(msg)
            if kind is Interrupt or kind is Effect:
                consumed(msg)  # yielded: it must not warn that it never was
            if kind is Interrupt:
                entry = self._interrupt(msg)
                if not entry.answered:
                    return False
                value = thaw(entry.value)  # the step's own copy: the journal keeps its own
            elif kind is Effect:
                value, error = self._effect(msg)
            elif kind is GeneratorType:
                stack.append(msg)
                value = None
            else:
                self._close()
                raise StepError(self._bad_yield(msg))

    def _finish(self, result: Any) -> bool:
        if self.cursor < len(self.journal):
            entry = self.journal[self.cursor]
            msg = (
                f"step {self.step_id!r} returned at journal position {self.cursor}, "
                f"but its journal recorded {_describe_entry(entry)} there: it must repeat "
                "every recorded interrupt and effect, in order, when replayed"
            )
            raise NondeterminismError(msg)
        self.writes = check_writes(self.step_id, result)
        return True

    def _interrupt(self, msg: Interrupt) -> JournalEntry:
        payload = normalize(msg.payload, lambda: f"the interrupt payload of step {self.step_id!r}")
        journal = self.journal
        if self.cursor < len(journal):
            entry = journal[self.cursor]
            if entry.kind is not EntryKind.INTERRUPT or not same(entry.key, payload):
                self._mismatch(entry, f"Interrupt({payload!r})")
        else:
            entry = JournalEntry(EntryKind.INTERRUPT, payload, self.id_prefix + str(len(journal)))
            journal.append(entry)
        self.cursor += 1
        return entry

    def _effect(self, msg: Effect) -> tuple[Any, BaseException | None]:
        name = msg.name
        journal = self.journal
        if self.cursor < len(journal):
            entry = journal[self.cursor]
            if entry.kind is not EntryKind.EFFECT or entry.key != name:
                self._mismatch(entry, f"Effect({name})")
            self.cursor += 1
            if entry.error is not None:
                return None, EffectError(entry.error)
            return thaw(entry.value), None
        try:
            result = msg.fn(*msg.args, **msg.kwargs)
        except Exception as exc:
            text = f"effect {name} in step {self.step_id!r} raised {type(exc).__name__}: {exc}"
            journal.append(JournalEntry(EntryKind.EFFECT, name, error=text))
            self.cursor += 1
            error = EffectError(text)
            error.__cause__ = exc
            return None, error
        result = normalize(result, lambda: f"the result of effect {name} in step {self.step_id!r}")
        journal.append(JournalEntry(EntryKind.EFFECT, name, value=result))
        self.cursor += 1
        return thaw(result), None

    def _mismatch(self, entry: JournalEntry, got: str) -> None:
        self._close()
        msg = (
            f"step {self.step_id!r} yielded {got} at journal position {self.cursor}, but its "
            f"journal recorded {_describe_entry(entry)} there: a step must repeat its interrupts "
            "(same payloads) and effects (same functions) in the same order when it is replayed; "
            "deploy code that does, or Goto a step to run the layer afresh"
        )
        raise NondeterminismError(msg)

    def _bad_yield(self, msg: object) -> str:
        hint = ""
        if callable(msg) and getattr(msg, "__code__", None) is not None:
            hint = " (did you yield a generator function instead of calling it?)"
        return f"step {self.step_id!r} yielded {msg!r}, which is not an instruction{hint}: {_HINT}"

    def _close(self) -> None:
        while self.stack:
            self.stack.pop().close()


def _describe_entry(entry: JournalEntry) -> str:
    if entry.kind is EntryKind.INTERRUPT:
        return f"Interrupt({entry.key!r})"
    return f"Effect({entry.key})"


def start(
    step_id: str, fn: Callable[[Mapping[str, Any]], Any], state: Mapping[str, Any], id_prefix: str
) -> Trampoline | Mapping[str, Any]:
    """Call a step: its writes if it is a plain function, else a fresh trampoline."""
    try:
        result = fn(state)
    except Exception as exc:
        if isinstance(exc, StepError):
            raise
        raise step_failed(step_id, exc) from exc
    if type(result) is GeneratorType:
        return Trampoline(step_id, result, [], id_prefix)
    return check_writes(step_id, result)
