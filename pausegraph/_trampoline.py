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
import inspect
import os
from collections.abc import Callable, Collection, Mapping
from types import GeneratorType
from typing import Any

from ._instructions import All, Effect, Interrupt, Sleep, _mark, consumed, same_effect
from ._records import Asked, Entry, Forked, Raised, Returned, fork_head
from ._values import (
    MAX_DEPTH,
    freeze,
    named,
    normalize,
    packer,
    refused_part,
    same,
    shown,
    storable,
    thaw,
    unstorable,
)
from .errors import (
    EffectError,
    EffectResultError,
    InterruptTimeout,
    NondeterminismError,
    SerializationError,
    StepError,
)

_HINT = (
    "a step may yield Interrupt(payload), Effect(fn, *args), Sleep(seconds), All(*generators) "
    "or a generator object (a call to another generator function)"
)
_CLOSE_TRIES = 100  # yields a closing generator may make before it is given up on


class _Abandoned(BaseException):
    """Thrown into a step that keeps yielding while it is closed, to end it for good."""


_NOT_FAST: Any = object()  # no answer (``None`` is one)
# answers of these types are sent in as they are: nothing can change them
_IMMUTABLE = frozenset((int, float, str, bytes, bool, type(None)))

FINISHED = True
SUSPENDED = False


def check_writes(step_id: str, result: Any) -> Mapping[str, Any]:
    """A step's return value as writes, or a ``StepError`` saying what is wrong."""
    if result is None:
        return {}
    if type(result) is dict or isinstance(result, Mapping):
        return result
    if _is_async(result):
        _discard(result)
        msg = (
            f"step {shown(step_id)} returned {type(result).__name__}, not its writes: an "
            "async def step is not run (pausegraph is synchronous); write a plain function "
            "returning its writes or a generator function (def, not async def), and yield "
            "Effect(fn, ...) to call slow or blocking work"
        )
        raise StepError(msg)
    msg = (
        f"step {shown(step_id)} returned {type(result).__name__} {shown(result)}: "
        "return a dict of channel writes, or None"
    )
    raise StepError(msg)


def _is_async(result: Any) -> bool:
    """Whether ``result`` is what an ``async def`` function returns (coroutine, async generator)."""
    return inspect.iscoroutine(result) or inspect.isasyncgen(result)


def _discard(result: Any) -> None:
    """Close a coroutine or async generator a step returned, so it never warns it was not run."""
    with contextlib.suppress(Exception):
        if inspect.iscoroutine(result):
            result.close()
        else:
            result.aclose().close()


_WRAPS = "_pausegraph_wraps"


def step_failed(step_id: str, exc: BaseException) -> StepError:
    """The engine's ``StepError`` for ``exc``, raised by step ``step_id`` (``raised_by``)."""
    msg = f"step {step_id!r} raised {named(exc)}"
    error = StepError(msg)
    error.__cause__ = exc
    setattr(error, _WRAPS, exc)  # a private mark: what the step itself raised
    return error


def raised_by(error: BaseException) -> BaseException:
    """What the step raised: the cause of the engine's ``step_failed`` error, else ``error``."""
    raised: BaseException | None = getattr(error, _WRAPS, None)
    return error if raised is None else raised


def call_effect(
    step_id: str, effect: Effect, branch: str = ""
) -> tuple[Entry, BaseException | None]:
    """Call an effect's function once: its journal entry, and the error to throw in.

    A process the function forked that leaves it by raising (``sys.exit()``
    in the child) is not the run's: the exception goes on up in that child,
    and nothing is recorded there (end such a child with ``os._exit``).
    """
    pid = os.getpid()
    try:
        result = effect.fn(*effect.args, **effect.kwargs)
    except (Exception, SystemExit) as exc:  # sys.exit() in an effect is its error too
        if os.getpid() != pid:
            raise
        return effect_entry(step_id, effect, branch, None, exc)
    return effect_entry(step_id, effect, branch, result, None)


def _not_run(result: Any) -> TypeError:
    """The error of an effect whose function is ``async def``: its body never ran."""
    _discard(result)
    return TypeError(
        f"it returned {type(result).__name__} unrun: an async def function is not awaited "
        "(pausegraph is synchronous); pass a plain function (def), e.g. one calling "
        "asyncio.run(...)"
    )


def effect_entry(
    step_id: str, effect: Effect, branch: str, result: Any, exc: BaseException | None
) -> tuple[Entry, BaseException | None]:
    """The journal entry of an effect that returned ``result`` or raised ``exc``.

    An ``async def`` function's coroutine is its error (its body never ran,
    so a retry may call it again), not a result that could not be stored.
    """
    name = effect.name
    if exc is None and _is_async(result):
        exc = _not_run(result)
    if exc is not None:
        text = f"effect {name} in step {step_id!r} raised {named(exc)}"
        error = EffectError(text)
        error.__cause__ = exc
        return _thrown_for(Raised(name, text, branch), error)
    if type(result) is Unstorable:  # refused where an executor ran it (sent_back)
        return refused_entry(step_id, name, branch, result.part, result.why)
    try:
        value = freeze(result, max_depth=MAX_DEPTH)  # normalize, but the entry says why not
    except Exception as refused:  # msgpack's refusal, or a value whose own methods raise
        return _refused_entry(step_id, name, branch, result, refused)
    return Returned(name, value, branch), None


class Unstorable:
    """An effect's result that cannot be stored, as an executor's task returns it: why."""

    __slots__ = ("part", "why")

    def __init__(self, part: str | None, why: str) -> None:
        self.part, self.why = part, why


def sent_back(result: Any) -> Any:
    """What an executor's task returns for an effect's ``result``: ``effect_entry``'s
    checks made where the function ran, so that only plain data travels back.

    A coroutine raises the error it is (``_not_run``); a result no store can
    keep becomes an ``Unstorable`` saying why (a Dask worker process that
    cannot send a result back never answers); any other result is itself.
    """
    if _is_async(result):
        raise _not_run(result)
    try:
        freeze(result, max_depth=MAX_DEPTH)
    except Exception as refused:
        return Unstorable(*refusal_of(result, refused))
    return result


def _thrown_for(entry: Raised, error: EffectError) -> tuple[Raised, EffectError]:
    """``(entry, error)``, the error marked as thrown in for that journal entry.

    A step that fails by letting it propagate failed at that entry
    (``raised_entry``), which a retry drops, and no other: two branches'
    errors may read alike.
    """
    setattr(error, _ENTRY, entry)  # a private mark on the exception
    return entry, error


def raised_entry(error: BaseException) -> Entry | None:
    """The journal entry of the effect error that ``error`` is, or was raised from.

    ``error`` itself, then the chain a traceback shows: what it was raised
    from (``raise X from e``), or else what was being handled when it was
    raised (``raise X`` in an ``except``), and so on; ``raise X from None``
    ends the chain. A step that turns an effect's error into its own still
    failed because of that effect.
    """
    seen = 0
    cause: BaseException | None = error
    while cause is not None and seen < 100:  # a chain made into a loop ends too
        entry = getattr(cause, _ENTRY, None)
        if entry is not None:
            return entry  # type: ignore[no-any-return]
        # the chain a traceback shows: the explicit cause, else what was being handled
        if cause.__cause__ is not None or cause.__suppress_context__:
            cause = cause.__cause__
        else:
            cause = cause.__context__
        seen += 1
    return None


_ENTRY = "_pausegraph_entry"


def _refused_entry(
    step_id: str, name: str, branch: str, result: Any, refused: Exception
) -> tuple[Entry, BaseException]:
    """The entry of an effect that ran but returned what cannot be stored: an error.

    The call is recorded as raising: the step gets an ``EffectResultError``
    (an ``EffectError`` and a ``SerializationError``) at its ``yield``, as if
    the function had raised, and a replay throws the same error in again
    without calling the function. As for any effect error, a retry of the
    run it failed drops it and calls the function again (SPEC, Failures).
    """
    return refused_entry(step_id, name, branch, *refusal_of(result, refused))


def refusal_of(result: Any, refused: Exception) -> tuple[str | None, str]:
    """Why ``result`` cannot be stored: the part refused (if found), and the reason."""
    try:
        part = refused_part(result, "result")
    except Exception:  # a value whose own methods raise as it is walked
        part = None
    return part, unstorable(refused)


def refused_entry(
    step_id: str, name: str, branch: str, part: str | None, why: str
) -> tuple[Entry, BaseException]:
    """``_refused_entry`` from its ``refusal_of``: what an executor's worker sends back."""
    where = "" if part is None else f" ({part})"
    cause = SerializationError(
        f"the result of effect {name} in step {step_id!r} cannot be stored{where}: "
        f"{why}; "
        "return msgpack-native values from the effect (dict, list, str, int, float, bool, "
        "None, bytes), e.g. a datetime as its .isoformat() text, a Decimal as str"
    )
    text = (
        f"effect {name} in step {step_id!r} ran, but its result was not stored: "
        f"SerializationError: {cause}"
    )
    text = storable(text)
    error = EffectResultError(text)
    error.__cause__ = cause
    return _thrown_for(Raised(name, text, branch, refused=True), error)


_DROPPED_QUIETLY = frozenset((Interrupt, Effect, Sleep, All))


def close_quietly(stack: list[GeneratorType[Any, Any, Any]]) -> None:
    """Close a generator stack, innermost first, running its ``finally`` blocks.

    Unlike ``generator.close()``, an instruction (``Effect``, ``Interrupt``,
    ``Sleep``, ``All``) yielded while closing is dropped, unrun and unsaved,
    and nothing is printed: ``GeneratorExit`` is thrown in again at that
    ``yield``. A generator suspended in ``yield from`` a helper generator
    (when the close begins, or in a ``finally`` the close runs) has the
    helper closed first, the same way: Python's own close of it would drop
    what its ``finally`` yields unmarked (a "never yielded" warning) and
    raise ``RuntimeError`` in the step.
    """
    tries: dict[int, int] = {}  # throws into each generator (alive, so its id holds)
    while stack:
        gen = stack[-1]
        helper = gen.gi_yieldfrom
        if type(helper) is GeneratorType and helper.gi_frame is not None:
            stack.append(helper)
            continue
        thrown = tries.get(id(gen), 0)
        if thrown == _CLOSE_TRIES:
            # it catches GeneratorExit and yields again, forever: end it with an
            # exception its `except GeneratorExit` does not catch, so that Python's
            # own close at collection has nothing left to complain about
            stack.pop()
            with contextlib.suppress(BaseException):
                gen.throw(_Abandoned)
            continue
        tries[id(gen)] = thrown + 1
        try:
            dropped = gen.throw(GeneratorExit)
        except (GeneratorExit, StopIteration):
            stack.pop()
            continue
        except (Exception, SystemExit):  # a cleanup that fails has nowhere to report to
            stack.pop()
            continue
        if type(dropped) in _DROPPED_QUIETLY:
            consumed(dropped)  # dropped on purpose: no "never yielded" warning


def no_clock() -> int:  # pragma: no cover - the scheduler always passes the Runner's clock
    msg = "an interrupt with a timeout needs the Runner's clock"
    raise RuntimeError(msg)


class Branch:
    """One generator stack of a step: the step itself (path ``""``) or a branch of an ``All``.

    ``entries`` is its own journal (the step's entries made by this branch),
    ``cursor`` how far it was replayed or recorded. It is *runnable* with
    ``send`` (the value or error its ``yield`` gets next), *waiting* at
    the interrupt ``waiting``, on the result of ``effect``, or on its
    ``children`` (an ``All``), or ``done``.
    """

    __slots__ = (
        "children", "closed", "cursor", "done", "effect", "entries", "index", "left", "parent",
        "path", "results", "send", "stack", "waiting",
    )  # fmt: skip

    def __init__(
        self,
        path: str,
        gen: GeneratorType[Any, Any, Any],
        entries: list[Entry],
        parent: Branch | None,
        index: int,
    ) -> None:
        self.path = path
        self.stack: list[GeneratorType[Any, Any, Any]] = [gen]
        self.entries = entries
        self.cursor = 0
        self.parent = parent
        self.index = index
        self.children: list[Branch] | None = None
        self.results: list[Any] = []
        self.left = 0
        self.send: tuple[Any, BaseException | None] | None = (None, None)
        self.waiting: Asked | None = None
        self.effect: Effect | None = None
        self.done = False
        self.closed = False


#: what ``Trampoline.run`` returns when effects wait: ``(branch, effect)`` in branch order
Waits = list[tuple[Branch, Effect]]


class Trampoline:
    """One step in progress: its branches (generator stacks) and its journal."""

    __slots__ = (
        "answers", "by_path", "clock", "id_prefix", "journal", "root", "seen", "seen_width",
        "step_id", "timeouts", "writes",
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
        self.journal = journal
        self.answers = answers  # the layer's answers by interrupt id, shared
        self.timeouts = timeouts  # the layer's timed-out interrupt ids, shared
        self.clock = clock  # epoch ms, for the deadline of a new interrupt
        self.id_prefix = id_prefix
        self.writes: Mapping[str, Any] = {}
        # the state the step was called with, and how many keys it had (set by ``start``)
        self.seen: Mapping[str, Any] = {}
        self.seen_width = 0
        by_path: dict[str, list[Entry]] = {}
        if journal and any(e.branch for e in journal):
            for entry in journal:
                by_path.setdefault(entry.branch, []).append(entry)
            root = by_path.pop("", [])
        else:
            root = list(journal)
        self.by_path = by_path  # the recorded entries of branches not made yet, by path
        self.root = Branch("", gen, root, None, 0)

    def record(self, branch: Branch, entry: Entry, error: BaseException | None) -> None:
        """Add the entry of an effect ``branch`` waits on (before it is saved)."""
        self.journal.append(entry)
        branch.entries.append(entry)
        branch.cursor += 1
        branch.effect = None
        branch.send = (None if error is not None else _value(entry), error)

    def run(self) -> bool | Waits:
        """Run every branch that can go on until each finishes, suspends or waits on an effect.

        Returns ``FINISHED`` (see ``writes``), ``SUSPENDED`` (every branch
        left waits on an interrupt), or the effects to call, in branch
        order: ``record`` each entry, save, then ``run`` again. Raises
        ``StepError`` (or ``EffectError``) if the step fails, and
        ``NondeterminismError`` if it strays from its journal.
        """
        waits: Waits = []
        self._visit(self.root, waits)
        if self.root.done:
            return FINISHED
        waits = [w for w in waits if not w[0].closed]
        return waits or SUSPENDED

    def _visit(self, root: Branch, waits: Waits) -> None:
        """Drive ``root`` and, depth first in branch order, the branches of its ``All``s.

        A loop with a stack of its own, not recursion: ``All`` nests to any
        depth, as sub-calls do. A branch waiting on its ``All`` has its
        children visited in order until one raises or all are done; then it
        goes on itself.
        """
        parents: list[tuple[Branch, int]] = []  # branches visiting their children: the next
        branch: Branch | None = root
        while True:
            if branch is None:
                if not parents:
                    return
                parent, i = parents.pop()
                children = parent.children
                if children is None:  # its All ended (all done, or one raised): it goes on
                    if self._drive(parent, waits):
                        parents.append((parent, 0))
                elif i < len(children):
                    parents.append((parent, i + 1))
                    branch = children[i]
                continue  # else it still waits on them
            if branch.done or branch.closed:
                branch = None
                continue
            if branch.children is not None:
                parents.append((branch, 0))
                branch = None
                continue
            if branch.waiting is not None:
                outcome = self.outcome(branch.waiting)
                if outcome is None:
                    branch = None
                    continue
                branch.waiting = None
                branch.send = outcome
            elif branch.send is None:
                branch = None  # waits on its effect's result
                continue
            if self._drive(branch, waits):
                parents.append((branch, 0))
            branch = None

    def _drive(self, branch: Branch, waits: Waits) -> bool:
        """Run ``branch`` until it finishes, fails, waits, or yields an ``All``: then True
        (its branches are to be visited: ``_visit``)."""
        assert branch.send is not None
        value, error = branch.send
        branch.send = None
        stack = branch.stack
        entries = branch.entries  # only ever appended to
        answers_get = self.answers.get
        encode = packer().pack
        while True:
            gen = stack[-1]
            try:
                msg = gen.send(value) if error is None else gen.throw(error)
            except StopIteration as stop:
                stack.pop()
                value, error = stop.value, None
                if not stack:
                    self._branch_done(branch, value)
                    return False
                continue
            except (Exception, SystemExit) as exc:  # sys.exit() in a step fails it
                stack.pop()
                if not stack:
                    self._branch_failed(branch, exc)
                    return False
                value, error = None, exc
                continue
            error = None
            kind = type(msg)
            if kind is Interrupt and branch.cursor < len(entries):
                # The common replay, once per earlier round of a loop: an interrupt
                # its journal recorded, and answered. The payload is encoded once and
                # its bytes compared with the recorded payload's (what ``same`` does,
                # without normalising it first), and an immutable answer is sent as
                # it is. Anything else (another entry, a payload that differs or
                # does not encode, no answer yet) takes the general path below,
                # which decides and raises what it raises.
                recorded = entries[branch.cursor]
                if type(recorded) is Asked and not recorded.sleep:
                    answer = answers_get(recorded.id, _NOT_FAST)
                    if answer is not _NOT_FAST:
                        try:
                            fast = encode(msg.payload) == encode(recorded.payload)
                        except Exception:  # the general path says what is wrong
                            fast = False
                        if fast:
                            _mark(msg, None)  # consumed: it was yielded
                            branch.cursor += 1
                            value = answer if type(answer) in _IMMUTABLE else thaw(answer)
                            continue
            if kind is Interrupt or kind is Sleep:
                consumed(msg)  # yielded: it must not warn that it never was
                entry = self._interrupt(branch, msg)
                outcome = self.outcome(entry)
                if outcome is None:
                    branch.waiting = entry
                    return False
                value, error = outcome
            elif kind is Effect:
                consumed(msg)
                if branch.cursor == len(branch.entries):
                    branch.effect = msg
                    waits.append((branch, msg))
                    return False
                value, error = self._replay_effect(branch, msg)
            elif kind is GeneratorType:
                stack.append(msg)
                value = None
            elif kind is All:
                consumed(msg)
                self._fork(branch, msg)
                if branch.send is None:
                    return True  # waits on its branches
                value, error = branch.send  # no branches
                branch.send = None
            else:
                self.close()
                raise StepError(self._bad_yield(msg))

    def _fork(self, branch: Branch, msg: All) -> None:
        """Replay or record the ``Forked`` entry of ``msg`` and make its branches."""
        gens = msg.generators
        count = len(gens)
        entries = branch.entries
        position = branch.cursor
        if position < len(entries):
            recorded = entries[position]
            if type(recorded) is not Forked or recorded.count != count:
                for gen in gens:
                    gen.close()
                self._mismatch(branch, recorded, f"All(<{count} branches>)")
        else:
            entry = Forked(count, branch.path)
            self.journal.append(entry)
            entries.append(entry)
        branch.cursor += 1
        if not count:
            branch.send = ([], None)
            return
        head = fork_head(branch.path, position)
        by_path = self.by_path
        children = []
        for i, gen in enumerate(gens):
            path = f"{head}{i}"
            recorded_entries = by_path.pop(path, None) if by_path else None
            children.append(Branch(path, gen, recorded_entries or [], branch, i))
        branch.children = children
        branch.results = [None] * count
        branch.left = count

    def _branch_done(self, branch: Branch, result: Any) -> None:
        if branch.cursor < len(branch.entries):
            entry = branch.entries[branch.cursor]
            where = self._where(branch)
            msg = (
                f"step {self.step_id!r} returned{where} at journal position {branch.cursor}, "
                f"but its journal recorded {describe_entry(entry)} there: it must repeat "
                "every recorded interrupt and effect, in order, when replayed"
            )
            self.close()
            raise NondeterminismError(msg)
        branch.done = True
        parent = branch.parent
        if parent is None:
            self.writes = check_writes(self.step_id, result)
            return
        parent.results[branch.index] = result
        parent.left -= 1
        if not parent.left:
            results, parent.results = parent.results, []
            parent.children = None
            parent.send = (results, None)

    def _branch_failed(self, branch: Branch, exc: BaseException) -> None:
        branch.done = True
        parent = branch.parent
        if parent is None:
            entry = getattr(exc, _ENTRY, None)
            if entry is not None and any(e is entry for e in self.journal):
                raise exc  # an effect's error this step's journal holds: the run ends as it is
            raise step_failed(self.step_id, exc) from exc  # a Runner's inside it included
        # the other branches of this All are closed; the error is raised at its yield
        assert parent.children is not None
        for other in parent.children:
            if other is not branch:
                _close_branch(other)
        parent.children = None
        parent.results = []
        parent.send = (None, exc)

    def close(self) -> None:
        """Let the step go unfinished: close its generators quietly, innermost first."""
        _close_branch(self.root)

    def outcome(self, entry: Asked) -> tuple[Any, BaseException | None] | None:
        """What the ``yield`` of ``entry`` gets: its answer, its timeout, or ``None`` (pending)."""
        answers = self.answers
        if entry.id in answers:
            return thaw(answers[entry.id]), None  # the step's own copy
        if entry.id in self.timeouts:
            return None, timed_out(self.step_id, entry)
        return None

    def _interrupt(self, branch: Branch, msg: Interrupt | Sleep) -> Asked:
        """The journal entry of an interrupt just yielded: replayed, or recorded now."""
        timeout: float | None
        if type(msg) is Sleep:
            payload, timeout, sleep = None, msg.seconds, True
        else:
            what = f"the interrupt payload of step {self.step_id!r}"
            payload = normalize(msg.payload, lambda: what)  # type: ignore[union-attr]
            timeout, sleep = msg.timeout, False  # type: ignore[union-attr]
        entries = branch.entries
        position = branch.cursor
        if position < len(entries):
            recorded = entries[position]
            if (
                type(recorded) is not Asked
                or recorded.sleep is not sleep
                or not same(recorded.payload, payload)
            ):
                got = f"Sleep({timeout!r})" if sleep else f"Interrupt({payload!r})"
                self._mismatch(branch, recorded, got)
            entry: Asked = recorded  # type: ignore[assignment]
        else:
            now = self.clock()
            deadline = None if timeout is None else now + round(timeout * 1000)
            path = branch.path
            if path:
                entry_id = f"{self.id_prefix}{path}.{position}"
                entry = Asked(entry_id, payload, deadline, sleep, path, now)
            else:
                entry = Asked(self.id_prefix + str(position), payload, deadline, sleep, "", now)
            self.journal.append(entry)
            entries.append(entry)
        branch.cursor += 1
        return entry

    def _replay_effect(self, branch: Branch, msg: Effect) -> tuple[Any, BaseException | None]:
        entry = branch.entries[branch.cursor]
        kind = type(entry)
        if (kind is not Returned and kind is not Raised) or (
            entry.effect != msg.name  # type: ignore[union-attr]
            and not same_effect(entry.effect, msg)  # type: ignore[union-attr]
        ):
            self._mismatch(branch, entry, f"Effect({msg.name})", _module_hint(entry, msg))
        branch.cursor += 1
        if kind is Raised:
            raised: Raised = entry  # type: ignore[assignment]
            thrown = EffectResultError if raised.refused else EffectError
            return None, _thrown_for(raised, thrown(raised.error))[1]
        return thaw(entry.value), None  # type: ignore[union-attr]

    def _where(self, branch: Branch) -> str:
        return f" in branch {branch.path!r}" if branch.path else ""

    def _mismatch(self, branch: Branch, entry: Entry, got: str, hint: str = "") -> None:
        self.close()
        msg = (
            f"step {self.step_id!r} yielded {got}{self._where(branch)} at journal position "
            f"{branch.cursor}, but its journal recorded {describe_entry(entry)} there: {hint}a "
            "step must repeat its interrupts (same payloads), effects (same functions) and All "
            "(same number of branches) in the same order when it is replayed; "
            "deploy code that does, or Goto a step to run the layer afresh"
        )
        raise NondeterminismError(msg)

    def _bad_yield(self, msg: object) -> str:
        hint = ""
        if callable(msg) and getattr(msg, "__code__", None) is not None:
            hint = " (did you yield a generator function instead of calling it?)"
        elif isinstance(msg, Mapping):
            hint = " (to write channels, `return {...}` from the step, do not yield it)"
        return (
            f"step {shown(self.step_id)} yielded {shown(msg)}, "
            f"which is not an instruction{hint}: {_HINT}"
        )


def _module_hint(entry: Entry, effect: Effect) -> str:
    """What to say when a recorded effect differs from ``effect`` by its module's name only."""
    if type(entry) is not Returned and type(entry) is not Raised:
        return ""
    fn = effect.fn
    qualname = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    recorded = entry.effect
    if not recorded.endswith(f".{qualname}"):
        return ""
    was = recorded[: -len(qualname) - 1]
    now = effect.name[: -len(qualname) - 1]
    return (
        f"the function {qualname!r} was recorded under module {was!r} and is under module "
        f"{now!r} now; if it is the same function, this is a module-name difference (an "
        "effect is recorded by its module's import name): load the workflow under the "
        f"module name it was started with ({was!r}; a file path 'dir/name.py:graph' is "
        "imported as 'name'); otherwise "
    )


def _close_branch(branch: Branch) -> None:
    """Close a branch and every branch under it, innermost first (no recursion)."""
    todo = [branch]
    order = []
    while todo:
        b = todo.pop()
        if b.done or b.closed:
            continue
        order.append(b)
        if b.children:
            todo.extend(b.children)
    for b in reversed(order):
        b.closed = True
        close_quietly(b.stack)


def _value(entry: Entry) -> Any:
    return thaw(entry.value)  # type: ignore[union-attr]


def timed_out(step_id: str, entry: Asked) -> InterruptTimeout:
    """The error thrown in at the ``yield`` of an interrupt whose deadline passed."""
    when = datetime.datetime.fromtimestamp((entry.deadline_ms or 0) / 1000, datetime.timezone.utc)
    msg = (
        f"interrupt {entry.id!r} of step {step_id!r} timed out: nobody answered it by its "
        f"deadline {when:%Y-%m-%d %H:%M:%S} UTC"
    )
    return InterruptTimeout(msg)


def describe_entry(entry: Entry) -> str:
    if isinstance(entry, Forked):
        return f"All(<{entry.count} branches>)"
    if isinstance(entry, Asked):
        if entry.sleep:
            return "Sleep(...)"
        return f"Interrupt({entry.payload!r})"
    return f"Effect({entry.effect})"


def id_prefix(epoch: int, step_index: int) -> str:
    """Interrupt ids are ``<epoch>.<step index>.<journal position>``: unique in a run."""
    return f"{epoch}.{step_index}."


def start(
    step_id: str,
    fn: Callable[[Mapping[str, Any]], Any],
    state: Mapping[str, Any],
    journal: list[Entry],
    answers: Mapping[str, Any],
    epoch: int,
    step_index: int,
    timeouts: Collection[str] = (),
    clock: Callable[[], int] = no_clock,
) -> Trampoline | Mapping[str, Any]:
    """Call a step: its writes if it is a plain function, else a trampoline on ``journal``.

    With a non-empty ``journal`` the step is being replayed, so it must be a
    generator step. ``epoch`` and ``step_index`` make the prefix of the
    step's interrupt ids (``id_prefix``).
    """
    try:
        result = fn(state)
    except (Exception, SystemExit) as exc:  # sys.exit() in a step fails it
        raise step_failed(step_id, exc) from exc
    if type(result) is GeneratorType:
        prefix = id_prefix(epoch, step_index)
        trampoline = Trampoline(step_id, result, journal, answers, prefix, timeouts, clock)
        trampoline.seen, trampoline.seen_width = state, len(state)  # to tell C code changing it
        return trampoline
    if journal:
        hint = ""
        if _is_async(result):
            _discard(result)
            hint = " (an async def step is not run: write def)"
        msg = (
            f"step {step_id!r} has a journal to replay, but calling it again returned "
            f"{type(result).__name__}, not a generator: it cannot replay its journal{hint}"
        )
        raise NondeterminismError(msg)
    return check_writes(step_id, result)
