"""Runner: starts, resumes, inspects and forks runs; the only part that stores.

Every call that changes a run first takes the run's live lock (so a run has
at most one driver, in any process), reads the latest checkpoint, lets
``_machine`` decide what the command means there (a ``Claim``, or an
error before anything is saved), saves the claim, and only then runs step
code: ``_drive`` runs layers with ``_scheduler`` and saves each layer's
checkpoint, each effect's record, and each pause or failure.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Executor
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any

import attrs

from ._channels import Append, Change, Channels, accept_writes, accepted_edits, kept_edits
from ._commands import (
    Command,
    Continue,
    Done,
    Goto,
    Outcome,
    Paused,
    Resume,
    RunInfo,
    Status,
    Update,
)
from ._graph import Graph
from ._held import Held, HeldPauses, close, deletions
from ._inbox import run_summaries
from ._instructions import MAX_TIMEOUT_S
from ._machine import (
    Claim,
    Shape,
    check_reason,
    decide,
    decide_cancel,
    decide_run,
    decide_tick,
    driven,
    info_of,
    paused_of,
    status_of,
)
from ._records import (
    AtAfter,
    AtBefore,
    AtInterrupt,
    Breakpoints,
    Checkpoint,
    CheckpointMeta,
    Failed,
    Finished,
    InLayer,
    OwesAfter,
    Progress,
    Stage,
    Start,
    Structure,
    progress_of,
    with_progress,
)
from ._scheduler import (
    LayerFailed,
    LayerRun,
    PredicateFailed,
    failure_of,
    run_alone,
    skipped_in,
)
from ._trampoline import Trampoline
from ._values import MAX_DEPTH, FrozenDict, freeze, same, shown, thaw
from .checkpointers import Checkpointer, MemoryCheckpointer
from .checkpointers._checkpointer import checked_checkpointer
from .errors import (
    CheckpointError,
    ConflictError,
    CorruptCheckpointError,
    GraphError,
    NondeterminismError,
    PausegraphError,
    ResumeError,
    SerializationError,
    StepError,
)

logger = logging.getLogger("pausegraph")


# a clock's readings: from year 1 to 100 years before the end of year 9999, so that any
# deadline set from one (MAX_TIMEOUT_S at most) is a date, and fits every store's 64 bits
_MIN_MS = -62_135_596_800_000  # 0001-01-01T00:00:00Z
_MAX_MS = 253_402_300_799_999 - math.ceil(MAX_TIMEOUT_S * 1000)  # 9899-12-31, about


def _checked_clock(clock: Callable[[], int]) -> Callable[[], int]:
    """``clock``, each reading checked: epoch milliseconds as an ``int``, else ``GraphError``.

    A finite ``float`` (``time.time() * 1000``) is taken as its ``int``. Any
    other reading (``None``, text, NaN, a time before year 1 or past about
    year 9899, from which a deadline 100 years on would be no date) would be
    saved as a checkpoint's time, or fail the save or the deadline: it is
    refused before anything is saved.
    """
    if not callable(clock):
        msg = f"Runner(clock=...) takes a function returning epoch ms, got {clock!r:.80}"
        raise GraphError(msg)

    def checked() -> int:
        now = clock()
        if type(now) is int and _MIN_MS <= now <= _MAX_MS:
            return now
        if (
            isinstance(now, (int, float))
            and not isinstance(now, bool)
            and math.isfinite(now)
            and _MIN_MS <= now <= _MAX_MS
        ):
            return int(now)
        msg = (
            "Runner(clock=...) must return epoch milliseconds as an int, from year 1 to "
            f"year 9899 ({_MIN_MS} to {_MAX_MS}); it returned {type(now).__name__} {now!r:.80}"
        )
        raise GraphError(msg)

    return checked


def _refused(channels: Channels, channel: str | None, progress: Progress) -> str | int | None:
    """Whose write to ``channel`` its reducer refuses: a step id, or a kept edit's index.

    The finished steps' writes are folded again one at a time, in step
    order, then the kept ``Update`` edits; the first refused is the answer.
    When none is refused alone, the first step that wrote to the channel
    (``None`` when none did, or the channel is unknown).
    """
    if channel is None:
        return None
    writers = [s for s, w in progress.finished.items() if channel in w]  # in step order
    folds: list[tuple[str | int, Any]] = [(s, progress.finished[s][channel]) for s in writers]
    reducer, value = channels.reducers[channel], channels.values[channel]
    folds += [(i, reducer.accept(e[channel])) for i, e in enumerate(progress.edits) if channel in e]
    for who, write in folds:
        try:
            value = reducer.fold(value, [write])[0]
        except (Exception, SystemExit):
            return who
    return writers[0] if writers else None


def system_clock() -> int:
    """The time now, in epoch milliseconds."""
    return time.time_ns() // 1_000_000


@attrs.define
class _Cursor:
    """Where a run stands inside one call: its latest saved checkpoint and values."""

    workflow: str
    run_id: str
    seq: int
    super_step: int
    stage: Stage
    channels: Channels
    epoch_base: int
    breakpoints: Breakpoints
    # the progress of the latest checkpoint, to save only what a layer adds to it
    progress: Progress | None = None


#: Seconds a command on a paused (failed, cancelled, done) run waits for a driver
#: that saved that checkpoint and is only finishing its call (its sync, letting go
#: of the live lock), before the ``ConflictError`` naming it.
FINISHING_WAIT_S = 2.0


class _Driving:
    """A call's hold on a run: its live lock, and a ``sync`` before the lock is let go.

    What ``with lock: try: ... finally: sync()`` does, as a plain context
    manager (every call of a hot loop enters one). A lock another process
    holds is asked for again through ``again`` (see ``Runner._after_finishing``).
    While it is held, the call is in this thread's ``_DRIVING``: a call that
    re-enters its own run from the same thread (a log handler, a step's
    ``finally`` run by a close) must not wait for itself. ``saved`` is the
    ``(seq, label, timestamp_ms)`` of the call's latest save (``None``: it
    saved nothing, and has nothing of its own to make durable), and
    ``takebacks`` the store's count of failed syncs when it began (see
    ``Runner._synced``; -1 once a sync of its own failed).
    """

    __slots__ = ("again", "key", "lock", "saved", "sync", "takebacks", "unsynced")

    def __init__(
        self,
        lock: AbstractContextManager[None],
        sync: Callable[[_Driving], None],
        again: Callable[[ConflictError], AbstractContextManager[None]],
        key: tuple[str, str],
        unsynced: Callable[[], None],
        takebacks: int,
    ) -> None:
        self.lock, self.sync, self.again, self.key = lock, sync, again, key
        self.unsynced = unsynced  # called, under the lock, when the sync fails
        self.takebacks = takebacks
        self.saved: tuple[int, str, int] | None = None

    def __enter__(self) -> _Driving:
        try:
            self.lock.__enter__()
        except ConflictError as busy:
            self.lock = self.again(busy)
        _DRIVING.calls.append(self)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        _DRIVING.calls.pop()  # calls nest: this one is the innermost
        if self.saved is None:  # nothing of its own to make durable (a refused command)
            return self.lock.__exit__(kind, error, tb)
        try:
            self.sync(self)
        except BaseException as failed:
            try:
                self.unsynced()
            except BaseException:
                self.lock.__exit__(type(failed), failed, failed.__traceback__)
                raise
            if not self.lock.__exit__(type(failed), failed, failed.__traceback__):
                raise
            return True
        return self.lock.__exit__(kind, error, tb)


class _DrivingHere(threading.local):
    def __init__(self) -> None:
        self.calls: list[_Driving] = []


_DRIVING = _DrivingHere()
_RELEASED: Mapping[str, Any] = FrozenDict()  # a finished layer's state, once the engine let go


def _driving_here() -> list[tuple[str, str]]:
    """The (workflow, run) of every call this thread is inside, innermost last."""
    return [call.key for call in _DRIVING.calls]


def _this_call() -> _Driving | None:
    """The innermost call this thread is inside, if any."""
    calls = _DRIVING.calls
    return calls[-1] if calls else None


def _takebacks_of(checkpointer: Any) -> int:
    """How many failed syncs took back saves through the store of ``checkpointer`` (0 for a
    store that never takes any back: it says nothing)."""
    return getattr(getattr(checkpointer, "store", checkpointer), "takebacks", 0)


@attrs.frozen
class _Plan:
    """Per layer: its Before and After breakpoint steps, the stage after it, its label."""

    before: list[tuple[str, ...]]
    after: list[tuple[str, ...]]
    follows: list[Stage]
    labels: list[str]


@attrs.frozen
class _Facts:
    """What every Runner of one graph derives from it alike, computed once per graph.

    A graph is frozen once a Runner uses it, so its layers and structure do
    not change; ``plans`` fills up per set of breakpoints as runs need them.
    """

    workflow: str
    shape: Shape
    structure: Structure
    plans: dict[Breakpoints, _Plan]


_FACTS: weakref.WeakKeyDictionary[Graph, _Facts] = weakref.WeakKeyDictionary()


def _facts_of(graph: Graph) -> _Facts:
    """The graph's ``_Facts``, derived the first time a Runner is made on it."""
    facts = _FACTS.get(graph)
    if facts is None or facts.workflow != graph.name:
        layers = graph.freeze()
        layer_of = {step: k for k, layer in enumerate(layers) for step in layer}
        shape = Shape(graph.name, layers, layer_of)
        facts = _FACTS[graph] = _Facts(graph.name, shape, graph.structure(), {})
    return facts


class Runner:
    """Runs a graph, storing a checkpoint after every super-step.

    ::

        runner = Runner(graph, FileCheckpointer("runs"), interrupt_before={"pay"})
        outcome = runner.run("order-42", {"amount": 100})
        if isinstance(outcome, Paused):
            outcome = runner.resume("order-42", Resume(True))

    ``checkpointer=None`` means a fresh ``MemoryCheckpointer``. Breakpoints
    name steps: the run pauses before the layer that holds an
    ``interrupt_before`` step, and after the layer that holds an
    ``interrupt_after`` step has been applied. They belong to the run: the
    ones of the ``Runner`` that starts it are recorded with it, and every
    later driver honours those, whatever its own. An unknown step is a
    ``GraphError``.

    ``clock`` returns the time in epoch milliseconds (checkpoint timestamps,
    deadlines); tests pass a fake one. A reading that is not a number of
    milliseconds (``None``, NaN) is a ``GraphError`` before anything is saved.

    Arguments it cannot use are refused here: ``GraphError`` for a graph,
    breakpoints, ``clock`` or ``executor`` of the wrong kind,
    ``CheckpointError`` for a ``checkpointer`` that is not one.

    ``executor`` (any ``concurrent.futures.Executor``): effects ready at the
    same time (the steps of a layer, the branches of an ``All``) are
    submitted to it together and awaited together; their results are
    recorded and sent back in step order, then branch order, so the journal
    is the same as without one. Without it effects run one by one in the
    calling thread.

    A ``Runner`` keeps the generators of steps suspended at an interrupt, so
    that resuming in the same process just sends the answer; any other
    ``Runner`` (another process, a restart) replays the steps from their
    journal instead, with the same outcome. It closes the generators it lets
    go (see "Closing suspended steps" in the guide).
    """

    def __init__(
        self,
        graph: Graph,
        checkpointer: Checkpointer | None = None,
        *,
        interrupt_before: Iterable[str] = (),
        interrupt_after: Iterable[str] = (),
        clock: Callable[[], int] | None = None,
        executor: Executor | None = None,
    ) -> None:
        if not isinstance(graph, Graph):
            msg = f"Runner(graph, ...) takes a Graph, got {type(graph).__name__} {graph!r}"
            raise GraphError(msg)
        self.graph = graph
        facts = _facts_of(graph)
        self._workflow = graph.name
        self._layers = facts.shape.layers
        self.checkpointer: Checkpointer = (
            MemoryCheckpointer()
            if checkpointer is None
            else checked_checkpointer(checkpointer, "Runner(graph, checkpointer)")
        )
        self._clock = system_clock if clock is None else _checked_clock(clock)
        if executor is not None and (
            isinstance(executor, type) or not callable(getattr(executor, "submit", None))
        ):
            msg = (
                "Runner(executor=...) takes a concurrent.futures.Executor, made (a thread "
                f"or process pool: ThreadPoolExecutor()), got {executor!r:.80}"
            )
            raise GraphError(msg)
        self._executor = executor
        self._conditional = bool(graph.when)
        self._shape = facts.shape
        self._breakpoints = Breakpoints(
            self._breakpoint_steps("interrupt_before", interrupt_before),
            self._breakpoint_steps("interrupt_after", interrupt_after),
        )
        self._plans = facts.plans
        self._structure = facts.structure
        self._deleted = deletions(self.checkpointer)  # shared by this process's Runners on it
        self._held = HeldPauses(self, self._deleted)
        # (run id, seq) of due runs this graph refused to tick, said once each (see _tick)
        self._refused_ticks: set[tuple[str, int]] = set()

    def __repr__(self) -> str:
        return f"<Runner {self._workflow!r} on {self.checkpointer!r}>"

    def _breakpoint_steps(self, name: str, steps: Iterable[str]) -> tuple[str, ...]:
        if isinstance(steps, str):
            steps = (steps,)
        try:
            wanted = set(steps)
        except TypeError:  # not iterable, or a step id that cannot be one (a list)
            wanted = None
        if wanted is None or not all(isinstance(step, str) for step in wanted):
            msg = f"{name} takes step ids (a str or a list of them), got {steps!r:.80}"
            raise GraphError(msg)
        if not wanted:
            return ()
        layer_of = self._shape.layer_of
        unknown = sorted(wanted - set(layer_of))
        if unknown:
            msg = (
                f"{name} names unknown step {unknown[0]!r}; graph {self._workflow!r} has "
                f"{', '.join(map(repr, layer_of))}"
            )
            raise GraphError(msg)
        return tuple(s for s in layer_of if s in wanted)

    # --- public API ---------------------------------------------------------

    def run(self, run_id: str, input: Mapping[str, Any] | None = None) -> Outcome:
        """Start run ``run_id`` with ``input`` written as super-step 0, or go on with it.

        On an existing run: an equal ``input`` (or none) is ignored, a
        different one is a ``ResumeError``. A ``"queued"`` run (its process
        died, or a claim waits) goes on from its latest checkpoint; a
        ``"failed"`` one retries its layer; a finished run returns its
        ``Done`` again without running a step. A paused or cancelled run is
        a ``ResumeError``; a run another process is driving is a
        ``ConflictError`` naming it. A step that fails raises ``StepError``
        (the run is then ``"failed"``).
        """
        check_run_id(run_id)
        given = self._input(input)
        with self._driving(run_id):
            latest = self.checkpointer.latest(self._workflow, run_id)
            if latest is None:
                cursor = self._save_input(run_id, given)
                return self._drive(cursor, {})
            self._check_existing(latest, given)
            return self._recover(latest)

    def _drive_queued(self, run_id: str) -> Outcome | None:
        """``run(run_id)`` if the run is still ``"queued"`` once its live lock is held, else None.

        For a ``Worker``, which lists the queued runs and then drives them one
        at a time: a run that another driver moved meanwhile (to a pause, the
        end, a failure) or deleted is left as it is, never retried nor
        started again. A run another process drives is a ``ConflictError``.
        """
        with self._driving(run_id):
            latest = self.checkpointer.latest(self._workflow, run_id)
            if latest is None or status_of(latest.stage, running=False) is not Status.QUEUED:
                return None
            self._check_structure(latest)
            return self._recover(latest)

    def _recover(self, latest: Checkpoint) -> Outcome:
        """``run(run_id)`` on the existing run ``latest`` (its live lock held): go on, retry,
        or its ``Done`` again."""
        decision = decide_run(latest, shape=self._shape)
        if type(decision) is Done:
            return decision
        assert isinstance(decision, Claim)
        cursor, changes = self._edited(latest, decision)
        self._drop_stale(latest)
        return self._claim(cursor, decision, changes)

    def resume(self, run_id: str, command: Command) -> Outcome:
        """Go on with a paused or failed run: ``Continue``, ``Resume``, ``Update`` or ``Goto``.

        The command is checked, then claimed by saving one checkpoint, and
        only then does step code run. A command that does not fit the run
        is a ``ResumeError`` (nothing saved); a run another process drives,
        or one whose claim waits for a driver, is a ``ConflictError``.
        """
        check_run_id(run_id)
        command = self._checked(command)
        with self._driving(run_id):
            latest = self._latest(run_id)
            claim = decide(latest, command, shape=self._shape)
            cursor, changes = self._edited(latest, claim)  # a refused edit touches nothing
            del latest  # a held pause shares its values: kept, the layers' folds would copy them
            return self._claim(cursor, claim, changes, close_held=not claim.keep_live)

    def start(self, run_id: str, input: Mapping[str, Any] | None = None) -> RunInfo:
        """Record a new run with ``input`` as super-step 0, without running a step.

        The run is ``"queued"``: ``run(run_id)`` or a ``Worker`` drives it.
        On an existing run ``input`` follows ``run``'s rule, and its
        ``RunInfo`` is returned as it is, whatever its status (``"running"``
        too: nothing is claimed).
        """
        return self._start(run_id, input)[0]

    def _start(self, run_id: str, input: Mapping[str, Any] | None) -> tuple[RunInfo, bool]:
        """``start``, and whether this call made the run (saved its input)."""
        check_run_id(run_id)
        given = self._input(input)
        try:
            with self._driving(run_id):  # held for a moment: no delete runs between the reads
                latest = self.checkpointer.latest(self._workflow, run_id)
                created = latest is None
                if latest is None:
                    self._save_input(run_id, given)
                    latest = self.checkpointer.latest(self._workflow, run_id)
                    assert latest is not None
                else:
                    self._check_existing(latest, given)
                return info_of(latest, running=False), created
        except ConflictError as busy:  # a driver holds it: read it as it is, running
            latest = self.checkpointer.latest(self._workflow, run_id)
            if latest is None:
                raise
            try:
                self._check_existing(latest, given)
            except PausegraphError:  # what run() would say first: the holder's ConflictError
                raise busy from None
            return info_of(latest, running=driven(latest, self.checkpointer.holder)), False

    def submit(self, run_id: str, command: Command) -> RunInfo:
        """Check ``command`` exactly as ``resume`` does and save its claim; run no step.

        Returns the run's ``RunInfo``: ``"queued"`` until a driver
        (``run(run_id)``, a ``Worker``) goes on with it (``"paused"`` for an
        ``Update`` kept at a dynamic pause; ``"done"`` for ``Continue`` at an
        ``After`` breakpoint of the last layer, which leaves no step to run).
        Raises what ``resume`` raises, with nothing saved.
        """
        check_run_id(run_id)
        command = self._checked(command)
        with self._driving(run_id):
            latest = self._latest(run_id)
            claim = decide(latest, command, shape=self._shape)
            cursor, changes = self._edited(latest, claim)
            saved = self._save(cursor, claim.label, claim.super_step, claim.stage, changes)
            self._held.drop(run_id)  # once saved: a save that fails leaves the pause as it was
            if not claim.keep_live:  # sent elsewhere (Goto): another Runner's pause of it ends
                self._deleted.moved(self._workflow, run_id, self._held)
            self._log_claim(saved)
            return info_of(saved, running=False)

    def cancel(self, run_id: str, reason: str = "") -> RunInfo:
        """End a paused or failed run for good (label ``cancelled``); returns its ``RunInfo``.

        Its suspended generators are closed. Commands on it are then a
        ``ResumeError``, except ``Goto``, which re-opens it. A queued run
        that holds only its input (``start``, or its process died before it
        saved more) is cancelled too; any other queued run (a claim waits
        for a driver) or a running one is a ``ConflictError``; a finished
        or cancelled one a ``ResumeError``. ``reason`` (a ``str``, else a
        ``ResumeError``) is kept with the run; one that cannot be stored (a
        lone surrogate) is a ``SerializationError``.
        """
        check_run_id(run_id)
        check_reason(reason)
        with self._driving(run_id):
            latest = self._latest(run_id)
            claim = decide_cancel(latest, reason)
            cursor = self._cursor(latest)
            saved = self._save(cursor, claim.label, claim.super_step, claim.stage, ())
            # closed once the cancel is saved: a save refused keeps them, and what their
            # finally blocks do to the state they hold is not in the cancelled checkpoint
            self._let_go(run_id)
            _log(logging.INFO, "run cancelled", saved)
            return info_of(saved, running=False)

    def delete(self, run_id: str) -> None:
        """Remove every checkpoint of a run that is not running.

        ``state`` then says it does not exist. A run another process drives
        is a ``ConflictError``; an unknown run a ``ResumeError``.
        """
        check_run_id(run_id)
        with self._driving(run_id):
            try:
                exists = bool(self.checkpointer.list(self._workflow, run_id))
            except CorruptCheckpointError:
                exists = True  # a damaged run is deleted all the same: that is the way out
            if not exists:
                raise ResumeError(self._no_run(run_id))
            self.checkpointer.delete(self._workflow, run_id)
            self._deleted.deleted(self._workflow, run_id)  # other Runners' pauses of it go
            self._let_go(run_id)
        logger.info("run %r deleted", run_id, extra={"workflow": self._workflow, "run_id": run_id})

    def _let_go(self, run_id: str) -> None:
        """Close what this Runner, and every other of the process on its checkpointer,
        holds of the run (it was cancelled or deleted: SPEC, Closing suspended steps)."""
        self._held.drop(run_id)
        self._deleted.moved(self._workflow, run_id, self._held)

    def tick(self) -> dict[str, Outcome]:
        """Go on with every paused run of this graph whose deadline has passed.

        Into each timed-out ``Interrupt`` it throws ``InterruptTimeout`` at
        the ``yield``; each passed ``Sleep`` returns ``None``. Each run is
        claimed like a resume (a run another ticker or driver holds is
        skipped) and driven to its next pause or end. Returns ``{run_id:
        outcome}`` for the runs it moved. It never raises a run's own error:
        a run whose step fails is left ``"failed"``, logged, and left out of
        the result; a due run this graph refuses (recorded with another graph
        of the same name) is left as it is and logged once per checkpoint. A
        deadline has passed when the clock is at or after it.
        """
        return self._tick(None)

    def _tick(
        self,
        failed: dict[str, PausegraphError] | None,
        *,
        taking: Callable[[str | None], object] | None = None,
        stop: threading.Event | None = None,
        aside: tuple[Callable[[str, int], bool], Callable[[str, int, CheckpointError], None]]
        | None = None,
    ) -> dict[str, Outcome]:
        """``tick``; with ``failed``, each run whose step failed goes there with its error,
        for the caller to report, instead of to the log. ``taking`` is told each run
        before it is ticked (and ``None`` after); once ``stop`` is set, no other run is.
        ``aside`` (a ``Worker``'s): whether a run at a seq is set aside (not ticked),
        and what to do with a run whose store failed (instead of logging it).
        """
        now = self._clock()
        moved: dict[str, Outcome] = {}
        for run_id, seq in self._due(now):
            if stop is not None and stop.is_set():
                break
            if aside is not None and aside[0](run_id, seq):
                continue
            if taking is not None:
                taking(run_id)
            try:
                outcome = self._tick_run(run_id, now)
            except ConflictError:
                continue  # another ticker or driver has it
            except ResumeError as refused:
                # moved on or deleted since it was listed (another ticker or driver got
                # there first), or refused by this graph (recorded with another one): said
                # once per checkpoint, so that a run this graph cannot tick does not wait
                # past its deadline unseen, nor fill a worker's log at every poll
                last = self.checkpointer.last(self._workflow, run_id)
                if last is not None and (run_id, last.seq) not in self._refused_ticks:
                    if len(self._refused_ticks) >= 1024:
                        self._refused_ticks.clear()
                    self._refused_ticks.add((run_id, last.seq))
                    logger.warning(
                        "run %r of workflow %r was left as it was after its deadline: %s",
                        run_id,
                        self._workflow,
                        refused,
                        extra={"workflow": self._workflow, "run_id": run_id},
                    )
                continue
            except (StepError, NondeterminismError, SerializationError, CheckpointError) as error:
                # a run's own error; CheckpointError: its checkpoints cannot be read (a
                # damaged log) or saved: the other due runs go on all the same
                if aside is not None and isinstance(error, CheckpointError):
                    aside[1](run_id, seq, error)
                    continue
                if failed is not None:
                    failed[run_id] = error
                    continue
                logger.warning(
                    "run %r of workflow %r %s after its deadline: %s",
                    run_id,
                    self._workflow,
                    "was left as it was" if isinstance(error, CheckpointError) else "failed",
                    error,
                    extra={"workflow": self._workflow, "run_id": run_id},
                )
                continue
            finally:
                if taking is not None:
                    taking(None)
            if outcome is not None:
                moved[run_id] = outcome
        return moved

    def _due(self, now: int) -> list[tuple[str, int]]:
        """The ids and seqs of this graph's paused runs with a deadline at or before ``now``."""
        return [
            (s.run_id, s.seq)
            for s in run_summaries(self.checkpointer, workflow_id=self._workflow, status="paused")
            if s.deadline_ms is not None and s.deadline_ms <= now
        ]

    def _tick_run(self, run_id: str, now: int) -> Outcome | None:
        with self._driving(run_id):
            latest = self._latest(run_id)
            claim = decide_tick(latest, now)
            if claim is None:
                return None  # answered, or moved on, since it was listed
            cursor, changes = self._edited(latest, claim)
            del latest  # a held pause shares its values: kept, the layers' folds would copy them
            return self._claim(cursor, claim, changes)

    def state(self, run_id: str) -> RunInfo:
        """The latest values, status, super-step, pending interrupts, failure and edits."""
        check_run_id(run_id)
        latest = self.checkpointer.latest(self._workflow, run_id)
        if latest is None:
            raise ResumeError(self._no_run(run_id))
        return info_of(latest, running=driven(latest, self.checkpointer.holder))

    def history(self, run_id: str) -> list[CheckpointMeta]:
        """Every checkpoint of a run, oldest first."""
        check_run_id(run_id)
        metas = self.checkpointer.list(self._workflow, run_id)
        if not metas:
            raise ResumeError(self._no_run(run_id))
        return metas

    def fork(self, run_id: str, seq: int, edits: Mapping[str, Any] | None = None) -> str:
        """Start a new run from checkpoint ``seq`` of ``run_id``; return its id.

        ``edits`` go through the reducers. On a checkpoint with a layer under
        way at a dynamic pause (or its claim) they are kept like ``Update``
        edits, so the suspended steps replay on the state they first saw; on
        a failed checkpoint they are applied before the retry, as
        ``Update`` on a failed run does. The new run has the source's
        breakpoints; the source is untouched.
        """
        check_run_id(run_id)
        if type(seq) is not int:
            msg = f"fork(run_id, seq) takes a checkpoint seq (an int from history()), got {seq!r}"
            raise ResumeError(msg)
        new_edits = self._kept(edits, "fork(edits=...)") if edits else None
        source = self.checkpointer.load(self._workflow, run_id, seq)
        if source is None:
            metas = self.checkpointer.list(self._workflow, run_id)
            if not metas:
                raise ResumeError(self._no_run(run_id))
            msg = (
                f"run {run_id!r} has no checkpoint seq {seq!r}; "
                f"its checkpoints are 1 to {len(metas)}"
            )
            raise ResumeError(msg)
        self._check_structure(source)
        first = source if source.seq == 1 else self.checkpointer.load(self._workflow, run_id, 1)
        channels = Channels(self.graph.channels, source.values)
        stage = source.stage
        progress = progress_of(stage)
        if new_edits:
            if progress is not None and type(stage) is not Failed:
                stage = with_progress(
                    stage, attrs.evolve(progress, edits=(*progress.edits, new_edits))
                )
            else:
                channels.apply([accepted_edits(self.graph.channels, new_edits)])
                if type(stage) is AtBefore:  # the predicates choose again, on the edited state
                    stage = attrs.evolve(stage, decided=None)
        new_id = f"{run_id}.fork{seq}.{uuid.uuid4().hex[:8]}"
        checkpoint = Checkpoint(
            workflow_id=self._workflow,
            run_id=new_id,
            seq=1,
            super_step=source.super_step,
            label=f"fork-of:{run_id}@{seq}",
            timestamp_ms=self._clock(),
            values=dict(channels.values),
            stage=stage,
            structure=self._structure,
            breakpoints=source.breakpoints,
            input=None if first is None else first.input,
            epoch_base=source.epoch_base + source.seq,
        )
        with self._driving(new_id) as call:
            self.checkpointer.save(checkpoint)
            call.saved = (checkpoint.seq, checkpoint.label, checkpoint.timestamp_ms)
        return new_id

    # --- claims ---------------------------------------------------------------

    def _driving(self, run_id: str) -> _Driving:
        """Hold the run's live lock; make what was saved durable before letting go.

        Durability: whatever a call saved is on disk (``sync``) before it
        returns or raises, and before any effect's function runs.
        """
        checkpointer = self.checkpointer
        return _Driving(
            checkpointer.lock(self._workflow, run_id),
            self._synced,
            functools.partial(self._after_finishing, run_id),
            (self._workflow, run_id),
            functools.partial(self._unsynced, run_id),
            _takebacks_of(checkpointer),
        )

    def _synced(self, call: _Driving | None) -> None:
        """``sync``, then make sure what ``call`` saved is still there.

        A store whose sync fails takes back everything it could not make
        durable, the saves of other calls through the same handle included
        (another thread's, or an outer call's of this thread: a log handler,
        a step that drives another run), whose own later sync then has
        nothing left to do. So a call that sees the store's count of failed
        syncs moved since it began checks that the run still ends with its
        latest save, and raises ``CheckpointError`` if not: nothing it was
        about to report, nor any effect's precondition, is lost unseen.
        """
        try:
            self.checkpointer.sync()
        except BaseException:
            if call is not None:  # its own sync failed: the call raises that, not a check's
                call.takebacks = -1
            raise
        if call is None or call.saved is None or call.takebacks < 0:
            return
        if _takebacks_of(self.checkpointer) == call.takebacks:
            return
        workflow, run_id = call.key
        meta = self.checkpointer.last(workflow, run_id)
        if meta is not None and (meta.seq, meta.label, meta.timestamp_ms) == call.saved:
            return
        seq, label, _ = call.saved
        msg = (
            f"checkpoint {seq} ({label}) of run {run_id!r} of workflow {workflow!r} was taken "
            "back by a failed sync of another call on the same store handle (the disk failed "
            "to make it durable): this call's work is not kept, and the run is where that "
            "sync left it; check the disk, then read the run's state again"
        )
        raise CheckpointError(msg)

    def _unsynced(self, run_id: str) -> None:
        """A call's sync failed: let go of a pause it held that the store took back.

        A store whose sync fails takes back what it could not make durable
        (SPEC, Checkpoints), so a pause this call saved and held may be gone,
        and the run where it was before the call: its generators, which took
        the call's answers, must never answer a later pause with the same
        seq, label and time (a fixed clock). A pause the store still ends
        with (a claim that failed before anything was saved) stays held.
        """
        try:
            self._current_held(run_id)
        except Exception:  # the store is failing: replaying it later is always right
            self._held.drop(run_id)

    def _current_held(self, run_id: str) -> Held | None:
        """The pause held for the run if the store still ends with it; else it is let go."""
        held = self._held.peek(run_id)
        if (
            held is not None
            and self.checkpointer.last(self._workflow, run_id) != held.checkpoint.meta
        ):
            self._held.drop(run_id)  # the run moved on elsewhere, or its pause was taken back
            return None
        return held

    def _after_finishing(self, run_id: str, busy: ConflictError) -> AbstractContextManager[None]:
        """The run's live lock, taken once a driver only finishing its call lets go.

        A driver saves a pause (or a failure, a cancel, the end) and then
        syncs and lets go of the lock: a command sent in that moment, by a
        client that saw the run ``"paused"`` (its status reads the latest
        checkpoint, not the lock), waits for it, up to ``FINISHING_WAIT_S``,
        instead of failing. Only for that checkpoint: if the run moved on
        while the command waited (another command claimed it first), it is
        a ``ConflictError``, as it was before the wait, so a ``Resume(value)``
        meant for that pause never answers the next one. ``busy`` is raised
        at once for a run whose latest checkpoint leaves work to do (it is
        being driven) and for a call this thread is already inside (it
        would wait for itself), and when the wait runs out. Returns the
        lock, entered.
        """
        key = (self._workflow, run_id)
        if key in _driving_here():
            raise busy
        latest = self.checkpointer.latest(self._workflow, run_id)
        if latest is None or type(latest.stage) in (Start, InLayer, OwesAfter):
            raise busy
        deadline = time.monotonic() + FINISHING_WAIT_S
        pause = 0.001
        while True:
            time.sleep(pause)
            lock = self.checkpointer.lock(self._workflow, run_id)
            try:
                lock.__enter__()
            except ConflictError:
                if time.monotonic() >= deadline:
                    raise
                pause = min(2 * pause, 0.02)
                continue
            try:
                now = self.checkpointer.last(self._workflow, run_id)
            except BaseException:
                lock.__exit__(None, None, None)
                raise
            if now == latest.meta:
                return lock
            lock.__exit__(None, None, None)
            msg = (
                f"run {run_id!r} of workflow {self._workflow!r} moved on while this "
                f"command waited for the driver that saved checkpoint {latest.seq} "
                f"({latest.label}) to let go of it: it is at checkpoint "
                f"{'none' if now is None else f'{now.seq} ({now.label})'} now. "
                "Read its state again and answer what is pending now"
            )
            raise ConflictError(msg) from busy

    def _drop_stale(self, latest: Checkpoint) -> None:
        """Let go of a held pause that is not the one ``latest`` (a claim waiting for a driver)
        was saved on.

        Only a pause held for the checkpoint right before ``latest`` is it (a
        ``submit`` answered it); if the run went elsewhere since (another
        handle's ``Goto``, ``cancel``, a claim driven by another process), the
        held generators are at another point of the run: they are closed, and
        the steps replay. The held pause must be the store's checkpoint there
        (its meta), not one of a run deleted and started again since.
        """
        run_id = latest.run_id
        held = self._held.peek(run_id)
        if held is not None:
            seq = held.checkpoint.seq
            if seq != latest.seq - 1 or (
                self.checkpointer.list(self._workflow, run_id)[seq - 1 : seq]
                != [held.checkpoint.meta]
            ):
                self._held.drop(run_id)

    def _latest(self, run_id: str) -> Checkpoint:
        """The run's latest checkpoint: the held pause if it still is, else from the store."""
        held = self._current_held(run_id)
        if held is not None:
            return held.checkpoint
        latest = self.checkpointer.latest(self._workflow, run_id)
        if latest is None:
            raise ResumeError(self._no_run(run_id))
        self._check_structure(latest)
        return latest

    def _edited(self, latest: Checkpoint, claim: Claim) -> tuple[_Cursor, list[Change]]:
        """A cursor on ``latest`` with the claim's edits folded in, and their changes.

        A reducer that refuses an edit raises here (``StepError``), before
        anything is saved or a live generator is touched.
        """
        cursor = self._cursor(latest)
        if not claim.edits:
            return cursor, []
        reducers = self.graph.channels
        return cursor, cursor.channels.apply([accepted_edits(reducers, e) for e in claim.edits])

    def _claim(
        self, cursor: _Cursor, claim: Claim, changes: list[Change], *, close_held: bool = False
    ) -> Outcome:
        """Save ``claim`` at ``cursor`` (edits folded in: ``_edited``), then drive the run.

        The live generators of the run's held pause are taken only once the
        claim is saved (and closed then if ``close_held``): a save that fails
        claimed nothing, and leaves the pause held as it was.
        """
        saved = self._save(cursor, claim.label, claim.super_step, claim.stage, changes)
        live = self._held.take(cursor.run_id)
        if close_held:
            close(live)
            live = {}
        if not claim.keep_live:  # sent elsewhere (Goto): another Runner's pause of it ends
            try:
                self._deleted.moved(self._workflow, cursor.run_id, self._held)
            except BaseException:  # a finally there raised KeyboardInterrupt: ours close too
                close(live)
                raise
        self._log_claim(saved)
        if not claim.drive:
            self._held.hold(saved, live)
            return paused_of(claim.stage)
        del saved  # it shares the values: held while the layers run, a fold would copy them
        return self._drive(cursor, live)

    def _log_claim(self, saved: Checkpoint) -> None:
        _log(logging.INFO, f"run claimed ({saved.label})", saved)

    # --- the loop -------------------------------------------------------------

    def _drive(self, cursor: _Cursor, live: dict[str, Trampoline]) -> Outcome:
        """Run layers from the cursor until the run pauses, fails or is done."""
        layers = self._layers
        plan = self._plan_of(cursor.breakpoints)
        before_hits, after_hits = plan.before, plan.after
        save_effect = functools.partial(self._save_effect, cursor)
        sync = functools.partial(self._synced, _this_call())
        debug = logger.isEnabledFor(logging.DEBUG)
        while True:
            stage = cursor.stage
            kind = type(stage)
            if kind is Finished:
                _log(logging.INFO, "run done", cursor)
                return Done(thaw(cursor.channels.values), cursor.super_step)
            if kind is OwesAfter:
                k = stage.layer  # type: ignore[union-attr]
                gone = stage.skipped  # type: ignore[union-attr]
                hits = tuple(s for s in after_hits[k] if s not in gone)
                return self._pause(cursor, f"after:{hits[0]}", k + 1, AtAfter(k, hits, gone), {})
            state = cursor.channels.values
            if kind is Start:
                k = stage.layer  # type: ignore[union-attr]
                gone, forced = stage.skipped, stage.forced  # type: ignore[union-attr]
                epoch = cursor.epoch_base + cursor.seq
                progress: Progress | None = None
                hits = before_hits[k]
                decided = None
                if self._conditional or gone or forced:
                    progress = Progress(k, epoch, skipped=gone, decided=False, forced=forced)
                    try:
                        progress = self._choose(progress, state)
                    except LayerFailed as failed:
                        past = stage.past_before  # type: ignore[union-attr]
                        self._fail(cursor, k, failed.progress, failed.failure, past_before=past)
                        raise failed.error from failed.error.__cause__
                    decided = progress.skipped
                    if hits and progress.skipped:
                        hits = tuple(s for s in hits if s not in progress.skipped)
                    if not (progress.skipped or forced):
                        progress = None
                if hits and not stage.past_before:  # type: ignore[union-attr]
                    at = AtBefore(k, hits, gone, forced, decided)
                    return self._pause(cursor, f"before:{hits[0]}", k + 1, at, {})
            else:
                assert kind is InLayer, stage
                progress = stage.progress  # type: ignore[union-attr]
                k, epoch = progress.layer, progress.epoch
                if not progress.decided:  # a claim of an earlier version's retry: as at Start
                    gone, forced = progress.skipped, progress.forced
                    try:
                        progress = self._choose(progress, state)
                    except LayerFailed as failed:
                        past = bool(forced)  # a Goto's target layer: its Before passed
                        self._fail(cursor, k, failed.progress, failed.failure, past_before=past)
                        raise failed.error from failed.error.__cause__
                    hits = tuple(s for s in before_hits[k] if s not in progress.skipped)
                    if hits and not forced and not progress.finished and not progress.journals:
                        at = AtBefore(k, hits, gone, forced, progress.skipped)
                        return self._pause(cursor, f"before:{hits[0]}", k + 1, at, {})
            steps = layers[k]
            if progress is not None and progress.skipped:
                gone_set = set(progress.skipped)
                steps = tuple(s for s in steps if s not in gone_set)
            if debug:
                _log(logging.DEBUG, f"super-step {k + 1} starts", cursor)
            if progress is None and len(steps) == 1 and not live:
                try:  # a layer of one step (a chain's): a plain function needs no LayerRun
                    alone = run_alone(self.graph, steps[0], state, k, epoch, self._clock)
                except LayerFailed as failed:
                    self._fail(cursor, k, failed.progress, failed.failure, failed.raised_at)
                    raise failed.error from failed.error.__cause__
                if not isinstance(alone, LayerRun):
                    state = _RELEASED  # only holders outside the engine keep it now
                    follow, label = plan.follows[k], plan.labels[k]
                    self._fold_alone(cursor, k, epoch, steps[0], alone, label, follow)
                    if debug:
                        _log(logging.DEBUG, f"super-step {k + 1} saved", cursor)
                    continue
                layer = alone
            else:
                layer = LayerRun(self.graph, steps, state, k, epoch, progress, live, self._clock)
                live = {}
            try:
                complete = layer.run(save_effect, sync, self._executor)
            except LayerFailed as failed:
                self._fail(cursor, k, failed.progress, failed.failure, failed.raised_at)
                raise failed.error from failed.error.__cause__
            except BaseException:  # a save that failed, KeyboardInterrupt: the run is left
                layer.close()  # queued, its generators closed now (SPEC: never by the collector)
                raise
            if not complete:
                first = layer.suspended()[0]
                done = layer.progress()
                return self._pause(
                    cursor, f"interrupt:{first}", k + 1, AtInterrupt(done), layer.take_live()
                )
            writes = layer.writes()
            state = layer.state = _RELEASED  # only holders outside the engine keep it now
            layer.shown = None
            try:
                changes = cursor.channels.apply(writes)
            except (StepError, SerializationError) as error:
                self._reducer_failed(cursor, k, layer, error)
                raise
            follow = plan.follows[k]
            if layer.skipped:
                follow = self._follow(k, layer.skipped, after_hits[k])
            self._save(cursor, plan.labels[k], k + 1, follow, changes)
            if debug:
                _log(logging.DEBUG, f"super-step {k + 1} saved", cursor)

    def _fold_alone(
        self,
        cursor: _Cursor,
        k: int,
        epoch: int,
        step_id: str,
        writes: Mapping[str, Any],
        label: str,
        follow: Stage,
    ) -> None:
        """Fold and save the writes of ``run_alone``'s step, as ``_drive`` does a layer's."""
        try:
            changes = cursor.channels.apply((writes,))
        except (StepError, SerializationError) as error:
            clock = self._clock
            layer = LayerRun(self.graph, (step_id,), _RELEASED, k, epoch, None, None, clock, {})
            layer.finished[step_id] = writes
            self._reducer_failed(cursor, k, layer, error)
            raise
        self._save(cursor, label, k + 1, follow, changes)

    def _choose(self, progress: Progress, state: Mapping[str, Any]) -> Progress:
        """Decide which steps of the progress's layer run (once: the decision is saved with it)."""
        k = progress.layer
        layer = self._layers[k]
        try:
            here = skipped_in(self.graph, layer, state, progress.skipped, progress.forced)
        except PredicateFailed as failed:
            failure = failure_of(failed.step_id, failed.error)
            raise LayerFailed(failed.error, progress, failure) from failed.error
        return attrs.evolve(progress, skipped=progress.skipped + here, decided=True)

    def _follow(self, k: int, skipped: tuple[str, ...], after: tuple[str, ...]) -> Stage:
        """The stage after layer ``k`` of a run that skipped ``skipped`` steps so far."""
        hits = tuple(s for s in after if s not in skipped)
        if hits:
            return OwesAfter(k, skipped)
        if k + 1 == len(self._layers):
            return Finished(skipped)
        return Start(k + 1, skipped=skipped)

    def _pause(
        self,
        cursor: _Cursor,
        label: str,
        super_step: int,
        stage: Stage,
        live: dict[str, Trampoline],
    ) -> Paused:
        try:
            saved = self._save(cursor, label, super_step, stage, ())
        except BaseException:
            close(live)  # the pause was not saved: no one will resume these generators
            raise
        self._held.hold(saved, live)
        _log(logging.INFO, f"run paused ({label})", saved)
        return paused_of(stage)

    def _save_effect(self, cursor: _Cursor, layer: LayerRun, step_id: str) -> None:
        """Save an effect's record (the layer's progress), durably, before its result is sent in.

        The ``sync`` makes the record durable here, not at the end of the
        call: a failure of that later sync (which cuts back what it could
        not make durable) must never take back a result the step already
        acted on, or recovery would call the effect's function again.
        """
        progress = layer.progress()
        self._save(cursor, f"effect:{step_id}", progress.layer, InLayer(progress), ())
        self._synced(_this_call())
        if logger.isEnabledFor(logging.DEBUG):
            _log(logging.DEBUG, f"effect of step {step_id!r} recorded", cursor)

    def _fail(
        self,
        cursor: _Cursor,
        k: int,
        progress: Progress,
        failure: Any,
        raised_at: int | None = None,
        *,
        past_before: bool = False,
    ) -> None:
        stage = Failed(progress, failure, raised_at, past_before)
        saved = self._save(cursor, f"failed:{failure.step_id}", k, stage, ())
        _log(logging.INFO, f"run failed in step {failure.step_id!r}: {failure.message}", saved)

    def _reducer_failed(
        self, cursor: _Cursor, k: int, layer: LayerRun, error: StepError | SerializationError
    ) -> None:
        """A reducer raised folding the layer's writes: fail the step whose write it refused.

        The culprit is found by ``_refused``. A step whose write was refused
        counts as not finished: it keeps its journal, a retry runs it again
        (replaying the journal), and an answer its claim gave may be given
        again, as for a step that raised itself; unless it finished in an
        earlier claim, whose journal is gone (run again, it would call its
        effects again): it stays finished, and a retry fails the same way
        until an ``Update`` or a ``Goto``. An edit that was refused is dropped
        from the failed checkpoint (a retry goes on without it), and the
        failure names the layer's first step.
        """
        latest = self.checkpointer.latest(self._workflow, cursor.run_id)
        assert latest is not None
        cursor.channels = Channels(self.graph.channels, latest.values)  # undo the partial fold
        progress = layer.progress()
        first = next(iter(progress.finished), self._layers[k][0])
        refused = _refused(cursor.channels, getattr(error, "channel", None), progress)
        if isinstance(refused, int):  # a kept edit: dropped, so that a retry goes on
            edits = progress.edits
            progress = attrs.evolve(progress, edits=(*edits[:refused], *edits[refused + 1 :]))
            failure = failure_of(first, error)
            dropped = f"{failure.message} (an Update edit, dropped: a retry goes on)"
            failure = attrs.evolve(failure, message=dropped)
        else:
            culprit = refused or first
            failure = failure_of(culprit, error)
            if culprit not in layer.finished_before:  # its journal is at hand: not finished
                journals = {
                    s: tuple(layer.done_journals.get(s) or layer.journals.get(s) or ())
                    if s == culprit
                    else progress.journals[s]
                    for s in layer.steps
                    if s == culprit or s in progress.journals
                }
                finished = {s: w for s, w in progress.finished.items() if s != culprit}
                progress = attrs.evolve(progress, finished=finished, journals=journals)
        self._fail(cursor, k, progress, failure, -1)

    # --- helpers --------------------------------------------------------------

    def _input(self, input: Mapping[str, Any] | None) -> tuple[dict[str, Any], Any] | None:
        """A run's ``input``: as the reducers take it, and as given (what is recorded).

        Both are msgpack-normalised; the second is what a later call's input
        is compared with (by encoding, as the SPEC says: an ``Append`` input
        ``1`` is not ``[1]``, though both append one item).
        """
        if input is None:
            return None
        accepted = self._edits(input, "the input")  # every value checked here
        channels = self.graph.channels
        # the two differ only where an Append channel was given one item, not a list
        items = {
            c: v
            for c, v in input.items()
            if type(channels[c]) is Append and not isinstance(v, list)
        }
        if not items:
            return accepted, accepted
        as_given = dict(accepted)
        for channel, value in items.items():
            as_given[channel] = freeze(value, max_depth=MAX_DEPTH)
        return accepted, as_given

    def _save_input(self, run_id: str, given: tuple[dict[str, Any], Any] | None) -> _Cursor:
        accepted, recorded = given or ({}, {})
        channels = Channels.fresh(self.graph.channels)
        changes = channels.apply([accepted]) if accepted else []
        cursor = _Cursor(self._workflow, run_id, 0, 0, Start(0), channels, 0, self._breakpoints)
        saved = self._save(cursor, "input", 0, Start(0), changes, input=recorded)
        _log(logging.INFO, "run started", saved)
        return cursor

    def _save(
        self,
        cursor: _Cursor,
        label: str,
        super_step: int,
        stage: Stage,
        changes: Iterable[Any],
        *,
        input: dict[str, Any] | None = None,
    ) -> Checkpoint:
        """Save the run's next checkpoint (conditionally: see ``Checkpointer.save``)."""
        seq = cursor.seq + 1
        progress = progress_of(stage)
        added = None
        if progress is not None and cursor.progress is not None:
            added = progress.additions(cursor.progress)
        checkpoint = Checkpoint(
            self._workflow,
            cursor.run_id,
            seq,
            super_step,
            label,
            self._clock(),
            cursor.channels.values,
            stage,
            self._structure,
            cursor.breakpoints,
            tuple(changes),
            added,
            input,
            cursor.epoch_base,
        )
        self.checkpointer.save(checkpoint)
        calls = _DRIVING.calls
        if calls:  # what this call saved last: see _synced
            calls[-1].saved = (seq, label, checkpoint.timestamp_ms)
        cursor.seq, cursor.super_step, cursor.stage, cursor.progress = (
            seq,
            super_step,
            stage,
            progress,
        )
        return checkpoint

    def _cursor(self, checkpoint: Checkpoint) -> _Cursor:
        return _Cursor(
            checkpoint.workflow_id,
            checkpoint.run_id,
            checkpoint.seq,
            checkpoint.super_step,
            checkpoint.stage,
            Channels(self.graph.channels, checkpoint.values),
            checkpoint.epoch_base,
            checkpoint.breakpoints,
            progress_of(checkpoint.stage),
        )

    def _plan_of(self, breakpoints: Breakpoints) -> _Plan:
        """What the loop needs per layer for a run with these breakpoints (kept per set)."""
        plan = self._plans.get(breakpoints)
        if plan is None:
            before, after = set(breakpoints.before), set(breakpoints.after)
            layers = self._layers
            before_hits = [tuple(s for s in layer if s in before) for layer in layers]
            after_hits = [tuple(s for s in layer if s in after) for layer in layers]
            follows: list[Stage] = [
                OwesAfter(k)
                if after_hits[k]
                else Finished()
                if k + 1 == len(layers)
                else Start(k + 1)
                for k in range(len(layers))
            ]
            labels = [f"layer:{k + 1}" for k in range(len(layers))]
            plan = self._plans[breakpoints] = _Plan(before_hits, after_hits, follows, labels)
        return plan

    def _checked(self, command: Command) -> Command:
        """``command`` with its edits checked against the channels and normalised."""
        kind = type(command)
        if kind is Update:
            return Update(self._kept(command.edits, "Update(edits)"))  # type: ignore[union-attr]
        if kind is Goto:
            update = command.update  # type: ignore[union-attr]
            if update:
                return Goto(command.step_id, self._kept(update, "Goto(update=...)"))  # type: ignore[union-attr]
            return command
        if kind is Resume:
            assert isinstance(command, Resume)
            if command.update:
                update = self._kept(command.update, "Resume(update=...)")
                if command.has_value:
                    return Resume(command.value, update=update)
                return Resume(answers=command.answers, update=update)
            return command
        if kind is Continue:
            return command
        msg = (
            "resume() takes Continue(), Resume(value), Update(edits) or Goto(step_id), "
            f"got {command!r}"
        )
        raise ResumeError(msg)

    def _check_existing(self, latest: Checkpoint, given: tuple[dict[str, Any], Any] | None) -> None:
        """``run``'s and ``start``'s rules on an existing run: its graph, and ``_input``'s."""
        self._check_structure(latest)
        if given is not None:
            self._check_input(latest, given[1])

    def _check_input(self, latest: Checkpoint, given: Any) -> None:
        first = (
            latest if latest.seq == 1 else self.checkpointer.load(self._workflow, latest.run_id, 1)
        )
        recorded: Any = {} if first is None or first.input is None else first.input
        if not same(given, recorded):
            status = status_of(latest.stage, running=False)
            go_on = {
                Status.PAUSED: "resume(run_id, command) goes on with it",
                Status.QUEUED: "run(run_id) without input goes on with it",
                Status.FAILED: "run(run_id) without input retries it",
                Status.DONE: "run(run_id) without input returns its result",
                Status.CANCELLED: "Goto(step_id) re-opens it",
            }[status]
            msg = (
                f"run {latest.run_id!r} already exists with input {recorded!r}, not {given!r}; "
                f"it is {status.value}: {go_on}, or use a new run id"
            )
            raise ResumeError(msg)

    def _edits(self, edits: Mapping[str, Any] | None, what: str) -> dict[str, Any]:
        """Check that ``edits`` name channels and fit them; return them msgpack-normalised."""
        return accept_writes(
            self.graph.channels, _mapping(edits, what), what, GraphError, verb="names"
        )

    def _kept(self, edits: Mapping[str, Any] | None, what: str) -> dict[str, Any]:
        """Check edits as ``_edits`` does; return them as given, msgpack-normalised
        (``kept_edits``: what ``RunInfo.edits`` lists)."""
        return kept_edits(self.graph.channels, _mapping(edits, what), what)

    def _check_structure(self, checkpoint: Checkpoint) -> None:
        if checkpoint.structure == self._structure:
            return
        difference = checkpoint.structure.difference(self._structure)
        if difference is not None:
            msg = (
                f"run {checkpoint.run_id!r} was recorded with a different graph "
                f"{self._workflow!r}: {difference}. Resume it with the graph it started with, "
                "or start a new run"
            )
            raise ResumeError(msg)

    def _no_run(self, run_id: str) -> str:
        return (
            f"no run {run_id!r} of workflow {self._workflow!r} in {self.checkpointer!r}: "
            "start it with run(run_id, input)"
        )


def _log(level: int, message: str, where: Checkpoint | _Cursor) -> None:
    if not logger.isEnabledFor(level):
        return
    workflow = where.workflow_id if isinstance(where, Checkpoint) else where.workflow
    logger.log(
        level,
        "%s: run %r of workflow %r, checkpoint %d",
        message,
        where.run_id,
        workflow,
        where.seq,
        extra={"workflow": workflow, "run_id": where.run_id, "seq": where.seq},
    )


def _mapping(edits: object, what: str) -> Mapping[str, Any]:
    """``edits`` if it is a mapping; ``GraphError`` naming ``what`` otherwise."""
    if not isinstance(edits, Mapping):
        msg = f"{what} must be a dict of channel values, got {type(edits).__name__} {edits!r}"
        raise GraphError(msg)
    return edits


def check_run_id(run_id: object) -> None:
    """A run id is a non-empty string that UTF-8 can encode; ``ResumeError`` saying why otherwise.

    Any character is stored safely (SPEC), control characters and NUL
    included, and shown quoted where they would break a line. A lone
    surrogate is refused: no JSON reply, web page or URL could carry it.
    """
    if not isinstance(run_id, str) or not run_id:
        msg = f"a run id is a non-empty string, got {shown(run_id)}"
        raise ResumeError(msg)
    if not run_id.isprintable():  # the rare case: only then look for a lone surrogate
        bad = next((c for c in run_id if "\ud800" <= c <= "\udfff"), None)
        if bad is not None:
            msg = (
                f"run id {shown(run_id)} holds the lone surrogate {shown(bad)}, which no text "
                "encoding can carry (a JSON reply, a web page, a URL): use other characters"
            )
            raise ResumeError(msg)
