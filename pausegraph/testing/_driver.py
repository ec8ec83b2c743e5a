"""The driver: run a workflow to its end, answering every interrupt, in any way asked.

``drive`` plays the part of the outside world: it starts a run, answers each
pending interrupt with ``answer(payload)``, continues past breakpoints, and,
as a ``Schedule`` says, swaps in a new ``Runner`` and a new checkpointer
handle at a pause (a cold resume: the next process replays the suspended
steps from their journals) or kills the "process" just before a save and
recovers the run with ``Runner.run(run_id)`` on a new ``Runner``.

Time is a ``FakeClock`` the driver owns (or the one it is given): it moves
only when the schedule lets time pass at a pause (``Schedule.waits``) or
when an interrupt is waited out (its answer is ``TIMEOUT``, or
``wait_out=True``): then the driver moves the clock to the earliest such
deadline and calls ``Runner.tick()``, as a worker would.

A store is given as a *checkpointer factory*: a callable that returns a new
handle on one and the same store each time it is called, as a new process
would open it. For a file store that is ``lambda: FileCheckpointer(root)``;
a memory store cannot be reopened, so ``memory_store()`` hands out the same
``MemoryCheckpointer`` every time (the new ``Runner`` still forgets every
live generator, which is what makes a resume cold).
"""

from __future__ import annotations

import builtins
import contextlib
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any

import attrs

from .._commands import Continue, Done, Outcome, Paused, PendingInterrupt, Resume, Status
from .._graph import Graph
from .._records import Checkpoint, CheckpointMeta
from .._runner import Runner
from ..checkpointers import Checkpointer, MemoryCheckpointer
from ..checkpointers._lock import Holder
from ..errors import ResumeError
from ._clock import TIMEOUT, FakeClock

CheckpointerFactory = Callable[[], Checkpointer]


def memory_store() -> CheckpointerFactory:
    """A checkpointer factory on one new ``MemoryCheckpointer``.

    Every call of the returned factory gives that same object: memory cannot
    be reopened, and a new ``Runner`` on it is as cold as it gets.
    """
    store = MemoryCheckpointer()

    def open_memory() -> Checkpointer:
        return store

    return open_memory


def _default_answer(payload: Any) -> Any:
    return payload


@attrs.frozen
class Schedule:
    """How ``drive`` goes through a run's pauses.

    ``cold[i]``: resume the i-th pause with a new ``Runner`` and a new
    checkpointer handle (else the same ``Runner``, which still holds the
    suspended generators); ``cold=True`` resumes every pause cold, however
    many there are (``Schedule(cold=True)``). ``one_by_one[i]``: answer only the first pending
    interrupt at the i-th pause (the others stay pending and the run pauses
    again). ``crashes``: the process dies just before these saves (counting
    every save attempt of the drive from 1), so the work since the previous
    save is lost and the run is recovered from the store. ``waits[i]``:
    seconds the clock moves at the i-th pause before it is answered (an
    answer after a deadline, before any tick, is still taken; to let a
    deadline fire, answer ``TIMEOUT``). Pauses past the end of a tuple are
    resumed hot, at once, with every answer.
    """

    cold: bool | tuple[bool, ...] = ()
    one_by_one: tuple[bool, ...] = ()
    crashes: frozenset[int] = frozenset()
    waits: tuple[float, ...] = ()

    def __repr__(self) -> str:
        # waits show only when set, so a schedule without time reads as it always did
        waits = f", waits={self.waits!r}" if self.waits else ""
        return (
            f"Schedule(cold={self.cold!r}, one_by_one={self.one_by_one!r}, "
            f"crashes={self.crashes!r}{waits})"
        )

    def is_cold(self, pause: int) -> bool:
        if isinstance(self.cold, bool):
            return self.cold
        return pause < len(self.cold) and self.cold[pause]

    def answers_one(self, pause: int) -> bool:
        return pause < len(self.one_by_one) and self.one_by_one[pause]

    def wait(self, pause: int) -> float:
        return self.waits[pause] if pause < len(self.waits) else 0


class _SimulatedCrash(BaseException):
    """The simulated death of a process: a BaseException, so no step code catches it."""


@attrs.define
class Trace:
    """What a drive went through, in order, for the ready-made properties.

    ``events`` holds ``("save", n)`` after each successful save and
    ``("crash", n)`` at each simulated death, where ``n`` is the length of
    the effect log at that moment (0 if no log was given).
    """

    done: Done | None = None
    events: list[tuple[str, int]] = attrs.Factory(list)
    pauses: int = 0
    saves: int = 0


class _CrashingCheckpointer:
    """Wraps a handle; dies just before the save attempts the schedule names."""

    def __init__(
        self,
        inner: Checkpointer,
        trace: Trace,
        crashes: frozenset[int],
        log: Sequence[Hashable] | None,
    ) -> None:
        self._inner, self._trace, self._crashes, self._log = inner, trace, crashes, log

    def __repr__(self) -> str:
        return repr(self._inner)

    def __getattr__(self, name: str) -> Any:
        # whatever else the store offers (a new protocol method) reaches it unchanged
        return getattr(self._inner, name)

    def _mark(self) -> int:
        return 0 if self._log is None else len(self._log)

    def save(self, checkpoint: Checkpoint) -> None:
        trace = self._trace
        trace.saves += 1
        if trace.saves in self._crashes:
            trace.events.append(("crash", self._mark()))
            raise _SimulatedCrash(f"simulated process death before save #{trace.saves}")
        self._inner.save(checkpoint)
        trace.events.append(("save", self._mark()))

    def load(self, workflow_id: str, run_id: str, seq: int) -> Checkpoint | None:
        return self._inner.load(workflow_id, run_id, seq)

    def latest(self, workflow_id: str, run_id: str) -> Checkpoint | None:
        return self._inner.latest(workflow_id, run_id)

    def list(self, workflow_id: str, run_id: str) -> list[CheckpointMeta]:
        return self._inner.list(workflow_id, run_id)

    def runs(self) -> builtins.list[tuple[str, str]]:
        return self._inner.runs()

    def delete(self, workflow_id: str, run_id: str) -> None:
        self._inner.delete(workflow_id, run_id)

    def lock(self, workflow_id: str, run_id: str) -> contextlib.AbstractContextManager[None]:
        # a simulated death releases the lock, as the OS does for a real one
        return self._inner.lock(workflow_id, run_id)

    def holder(self, workflow_id: str, run_id: str) -> Holder | None:
        return self._inner.holder(workflow_id, run_id)

    def sync(self) -> None:
        self._inner.sync()

    def last(self, workflow_id: str, run_id: str) -> CheckpointMeta | None:
        return self._inner.last(workflow_id, run_id)


def drive(
    graph: Graph,
    *,
    answer: Callable[[Any], Any] = _default_answer,
    input: Mapping[str, Any] | None = None,
    checkpointer_factory: CheckpointerFactory | None = None,
    schedule: Schedule | None = None,
    cold: bool = False,
    crash_before_save: int | None = None,
    run_id: str = "run",
    interrupt_before: Iterable[str] = (),
    interrupt_after: Iterable[str] = (),
    max_commands: int = 10_000,
    clock: FakeClock | None = None,
    wait_out: bool = False,
) -> Done:
    """Run ``graph`` to its end and return its ``Done``.

    Every pending interrupt is answered with ``answer(payload)`` (the
    default echoes the payload back); breakpoints are continued. ``cold=True``
    resumes every pause with a new ``Runner`` on a new handle from
    ``checkpointer_factory`` (default: a fresh ``memory_store()``);
    ``schedule`` decides pause by pause instead, and may kill the process
    before given saves; ``crash_before_save=k`` adds one death before the
    k-th save. A run that dies is recovered the way a restarted script
    would: a new ``Runner`` calls ``run(run_id)``. ::

        done = drive(graph, answer=lambda p: p["amount"] < 100, cold=True)
        assert done.state["approved"] is True

    Deadlines: the runners read ``clock`` (default: a new ``FakeClock``,
    which stands still unless the drive moves it). An interrupt whose
    answer is ``TIMEOUT`` is waited out: once every pending interrupt is
    answered or waited out, the clock moves to the earliest waited-out
    deadline and ``Runner.tick()`` goes on with the run. ``wait_out=True``
    waits out every interrupt that has a deadline (``Sleep`` included)
    without asking ``answer``. ::

        late = lambda p: TIMEOUT if p == "approve?" else p
        done = drive(graph, answer=late, clock=FakeClock())

    A run that a tick leaves ``"failed"`` (an uncaught ``InterruptTimeout``)
    is run again with ``run(run_id)``, which raises its ``StepError``.

    Errors the engine raises (``NondeterminismError``, ``StepError``, ...)
    propagate unchanged. ``max_commands`` stops a run that never ends with
    an ``AssertionError``.
    """
    trace = _drive(
        graph,
        answer=answer,
        input=input,
        factory=checkpointer_factory or memory_store(),
        schedule=_schedule(schedule, cold, crash_before_save),
        run_id=run_id,
        interrupt_before=tuple(interrupt_before),
        interrupt_after=tuple(interrupt_after),
        max_commands=max_commands,
        log=None,
        clock=clock,
        wait_out=wait_out,
    )
    assert trace.done is not None
    return trace.done


def _schedule(schedule: Schedule | None, cold: bool, crash_before_save: int | None) -> Schedule:
    base = schedule or Schedule()
    if cold:
        base = attrs.evolve(base, cold=True)
    if crash_before_save is not None:
        base = attrs.evolve(base, crashes=base.crashes | {crash_before_save})
    return base


def _drive(
    graph: Graph,
    *,
    answer: Callable[[Any], Any],
    input: Mapping[str, Any] | None,
    factory: CheckpointerFactory,
    schedule: Schedule,
    run_id: str,
    interrupt_before: tuple[str, ...],
    interrupt_after: tuple[str, ...],
    max_commands: int,
    log: Sequence[Hashable] | None,
    clock: FakeClock | None = None,
    wait_out: bool = False,
) -> Trace:
    trace = Trace()
    time = FakeClock() if clock is None else clock

    def open_runner() -> Runner:
        handle = _CrashingCheckpointer(factory(), trace, schedule.crashes, log)
        return Runner(
            graph,
            handle,
            interrupt_before=interrupt_before,
            interrupt_after=interrupt_after,
            clock=time,
        )

    runner = open_runner()
    call: _Call = lambda r: r.run(run_id, input)  # noqa: E731
    for _ in range(max_commands):
        try:
            outcome = call(runner)
        except _SimulatedCrash:
            runner = open_runner()
            call = _recovery(runner, run_id, input)
            continue
        if isinstance(outcome, Done):
            trace.done = outcome
            return trace
        pending = outcome.interrupts if isinstance(outcome, Paused) else outcome
        pause = trace.pauses
        trace.pauses += 1
        if schedule.is_cold(pause):
            runner = open_runner()
        wait = schedule.wait(pause)
        if wait:
            time.advance(wait)
        call = _next(
            pending, answer, run_id, time, one=schedule.answers_one(pause), wait_out=wait_out
        )
    msg = f"run {run_id!r} of {graph.name!r} did not finish after {max_commands} commands"
    raise AssertionError(msg)


# one command of the drive: an outcome, or (after a recovery) the pending interrupts
_Call = Callable[[Runner], "Outcome | tuple[PendingInterrupt, ...]"]


def _recovery(runner: Runner, run_id: str, input: Mapping[str, Any] | None) -> _Call:
    """What a restarted script does: look at the run and go on from where it is."""
    try:
        info = runner.state(run_id)
    except ResumeError:  # died before the run's first checkpoint: start it again
        return lambda r: r.run(run_id, input)
    if info.status is not Status.PAUSED:
        return lambda r: r.run(run_id)
    return lambda r: info.interrupts  # paused: answer what the store says is pending


def _next(
    pending: tuple[PendingInterrupt, ...],
    answer: Callable[[Any], Any],
    run_id: str,
    clock: FakeClock,
    *,
    one: bool,
    wait_out: bool,
) -> _Call:
    """The drive's next command at a pause: answers, or (all waited out) a tick."""
    given: dict[str, Any] = {}
    waited: list[int] = []
    for interrupt in pending:
        if interrupt.deadline_ms is None:
            continue
        value = TIMEOUT if wait_out else answer(interrupt.payload)
        if value is TIMEOUT:
            waited.append(interrupt.deadline_ms)
        else:
            given[interrupt.id] = value
    if pending and len(waited) == len(pending):
        clock.advance_to(min(waited))
        return lambda r: _tick(r, run_id)
    command = _command(pending, answer, given, one=one)
    return lambda r: r.resume(run_id, command)


def _command(
    pending: tuple[PendingInterrupt, ...],
    answer: Callable[[Any], Any],
    given: dict[str, Any],
    *,
    one: bool,
) -> Continue | Resume:
    if not pending:
        return Continue()
    answered = [i for i in pending if i.deadline_ms is None or i.id in given]
    chosen = answered[:1] if one else answered
    values = {i.id: given[i.id] if i.id in given else _answer(answer, i) for i in chosen}
    if len(pending) == 1:
        return Resume(values[pending[0].id])
    return Resume(answers=values)


def _answer(answer: Callable[[Any], Any], interrupt: PendingInterrupt) -> Any:
    value = answer(interrupt.payload)
    if value is TIMEOUT:
        msg = (
            f"answer returned TIMEOUT for interrupt {interrupt.id!r} of step "
            f"{interrupt.step_id!r}, which has no deadline and would wait forever: "
            "answer it, or give it Interrupt(..., timeout=...)"
        )
        raise ValueError(msg)
    return value


def _tick(runner: Runner, run_id: str) -> Outcome | tuple[PendingInterrupt, ...]:
    """What a worker does once the clock passed a deadline: tick, then look at the run."""
    moved = runner.tick()
    if run_id in moved:
        return moved[run_id]
    info = runner.state(run_id)
    if info.status is Status.FAILED:  # tick never raises a run's error: run it to get it
        return runner.run(run_id)
    return info.interrupts
