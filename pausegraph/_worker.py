"""Worker: drives the queued, crashed and due runs of some graphs from a shared store.

A worker is a loop around two calls every ``Runner`` already has: ``run``
on each queued run (one recorded by ``start``, a command claimed by
``submit``, or a run whose process died) and ``tick`` for passed deadlines.
Exclusion comes from the store's live lock, not from the worker: ``run`` on
a run another worker holds is a ``ConflictError``, which the worker takes as
"someone else has it" and skips. So any number of workers, in any number of
processes (on any number of machines, with a shared PostgreSQL store), may
serve the same graphs; a worker that is killed leaves its run ``"queued"``
(its lock dies with it) for another one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from typing import TypeVar

from ._commands import Status
from ._graph import Graph
from ._inbox import run_summaries
from ._runner import Runner
from ._values import named
from .checkpointers import Checkpointer, RunSummary
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
_T = TypeVar("_T")


def _oldest_first(summary: RunSummary) -> tuple[int, str]:
    """A poll's order: the run queued first (its last checkpoint's time), then by run id."""
    return summary.updated_ms, summary.run_id


#: How long a worker leaves a run it could not move (seconds), unless it changes.
STUCK_RETRY_S = 60.0

#: Seconds an idle ``serve`` waits before it polls again.
IDLE_WAIT_S = 0.5

#: Seconds a ``serve`` waiting on its store's ``wait_for_work`` may take to see ``stop``.
WAKE_SLICE_S = 0.25

#: The longest a worker waits before it tries a failing store again (seconds).
MAX_RETRY_WAIT_S = 30.0


def retry_wait(failures: int) -> float:
    """Seconds to wait after ``failures`` failures in a row: ``IDLE_WAIT_S``, doubling, up to
    ``MAX_RETRY_WAIT_S``."""
    return float(min(IDLE_WAIT_S * (1 << min(failures - 1, 16)), MAX_RETRY_WAIT_S))


#: Runs a worker keeps set aside at most (per kind): past it, the one set aside longest ago
#: is forgotten (and tried at its next poll), so that runs deleted meanwhile cost nothing.
MAX_SET_ASIDE = 10_000


def _keep(table: dict[tuple[str, str], _T], key: tuple[str, str], value: _T) -> None:
    """``table[key] = value``, as the newest entry, the oldest dropped past ``MAX_SET_ASIDE``."""
    table.pop(key, None)
    table[key] = value
    if len(table) > MAX_SET_ASIDE:
        del table[next(iter(table))]


def _times(failures: int) -> str:
    return f"{failures} time{'' if failures == 1 else 's'} in a row"


class Retries:
    """When to try a failing store again: after ``IDLE_WAIT_S``, then twice as long each time.

    A store that fails for a while (a server restarting, a network cut, a
    full disk) is tried again after ``IDLE_WAIT_S`` seconds, and after twice
    the wait before each time it fails again, up to ``MAX_RETRY_WAIT_S``: a
    long outage costs each worker a log line every half minute, not two a
    second. The first try that succeeds logs that the store answers again,
    and the next failure starts over.
    """

    __slots__ = ("failures", "who")

    def __init__(self, who: str) -> None:
        self.who = who  # what the log lines name: "worker", "the driver thread"
        self.failures = 0

    def failed(self, error: BaseException) -> float:
        """Log ``error``; the seconds to wait before trying again."""
        self.failures += 1
        wait = retry_wait(self.failures)
        logger.warning(
            "%s: the store failed (%s), trying again in %.3g s: %s",
            self.who,
            _times(self.failures),
            wait,
            error,
        )
        return wait

    def succeeded(self) -> None:
        """A try succeeded: log it if the store had failed, and start over."""
        if self.failures:
            logger.info(
                "%s: the store answers again, after %d failed tr%s",
                self.who,
                self.failures,
                "y" if self.failures == 1 else "ies",
            )
            self.failures = 0


def runners_for(
    checkpointer: Checkpointer,
    graphs: Iterable[Graph],
    what: str,
    *,
    executor: Executor | None = None,
    clock: Callable[[], int] | None = None,
) -> dict[str, Runner]:
    """A ``Runner`` per graph, by workflow name; ``GraphError`` naming ``what`` for bad graphs.

    The graphs must be ``Graph`` objects with distinct names, at least one.
    """
    checked_checkpointer(checkpointer, what)  # None would make each Runner a memory store
    if isinstance(graphs, Graph) or not isinstance(graphs, Iterable):
        msg = f"{what} takes a list of Graphs, got {graphs!r:.80}"
        raise GraphError(msg)
    runners: dict[str, Runner] = {}
    for graph in graphs:
        if not isinstance(graph, Graph):
            msg = f"{what} takes Graphs, got {graph!r}"
            raise GraphError(msg)
        if graph.name in runners:
            msg = f"{what} got two graphs named {graph.name!r}: give each workflow once"
            raise GraphError(msg)
        runners[graph.name] = Runner(graph, checkpointer, executor=executor, clock=clock)
    if not runners:
        msg = f"{what} needs at least one graph to serve"
        raise GraphError(msg)
    return runners


def _check_stop(stop: object, what: str) -> None:
    """``GraphError`` unless ``stop`` is None or has an ``is_set()`` (a ``threading.Event``)."""
    if stop is not None and not callable(getattr(stop, "is_set", None)):
        msg = f"{what} takes a threading.Event, got {stop!r:.80}"
        raise GraphError(msg)


class Worker:
    """Drives every queued run of ``graphs`` in ``checkpointer``, and their passed deadlines.

    ::

        worker = Worker(FileCheckpointer("runs"), [expense.graph])
        worker.serve()            # until interrupted; or worker.poll() once

    ``graphs`` is an iterable of ``Graph`` (distinct names). ``executor``
    (a ``concurrent.futures.Executor`` for effects) and ``clock`` (epoch ms)
    are passed to each ``Runner``. ``poll`` and ``serve`` never
    raise a run's own error: a run whose step fails is left ``"failed"`` and
    logged (WARNING), as ``tick`` does.
    """

    def __init__(
        self,
        checkpointer: Checkpointer,
        graphs: Iterable[Graph],
        *,
        executor: Executor | None = None,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self.checkpointer = checkpointer
        self.runners = runners_for(
            checkpointer, graphs, "Worker(checkpointer, graphs)", executor=executor, clock=clock
        )
        #: (workflow, run id) of the run being driven, for messages (the CLI's on a signal)
        self._in_hand: tuple[str, str] | None = None
        #: runs this worker found it cannot move: why, their last seq then, and until
        #: when (``time.monotonic()``) it leaves them be while that seq stays; each is
        #: logged once
        self._stuck: dict[tuple[str, str], tuple[str, int, float]] = {}
        #: runs whose store failed as this worker drove them: how many times in a row,
        #: their last seq then, and until when it leaves them be while that seq stays
        self._failing: dict[tuple[str, str], tuple[int, int, float]] = {}
        #: the damaged logs (file store) already said, with why: each is said once
        self._damaged_said: set[tuple[str, str]] = set()

    def __repr__(self) -> str:
        return f"<Worker of {', '.join(map(repr, self.runners))} on {self.checkpointer!r}>"

    def poll(self, *, stop: threading.Event | None = None) -> int:
        """Go once over the store; return how many runs were moved.

        Drives every queued run of the graphs to its next pause or end, one
        run at a time, oldest first (by the time of its last checkpoint, then
        by run id), then ticks each graph's passed deadlines. A run whose
        step failed (left ``"failed"`` and logged) is not counted, as
        ``Runner.tick`` leaves it out of its result. A run held
        by another driver is skipped. ``stop`` (a ``threading.Event``), when
        set, ends the poll early: it is looked at before each run (queued or
        due), before each graph's tick and before each graph, so once it is
        set only the run in hand goes on to its next pause or end, every
        other queued run stays queued and every other due run paused. A
        store that cannot be listed raises its own error (such as
        ``CheckpointError``); a run's own error is never raised.
        """
        _check_stop(stop, "Worker.poll(stop=...)")
        moved: set[tuple[str, str]] = set()  # a run driven to a pause, then ticked, is one
        for n, (name, runner) in enumerate(self.runners.items()):
            if stop is not None and stop.is_set():
                return len(moved)
            queued = run_summaries(self.checkpointer, workflow_id=name, status="queued")
            if n == 0:
                self._say_damaged()
            queued.sort(key=_oldest_first)  # the same order on every store
            for summary in queued:
                if stop is not None and stop.is_set():
                    return len(moved)
                if self._resting((name, summary.run_id), summary.seq):
                    continue  # nothing saved to it since this worker could not move it
                if self._drive(runner, summary.run_id, summary.seq):
                    moved.add((name, summary.run_id))
            if stop is not None and stop.is_set():
                return len(moved)

            # run by run, as the queued ones: the run being ticked is the one in hand, and
            # once stop is set no other due run is taken
            def taking(run_id: str | None, name: str = name) -> None:
                self._in_hand = None if run_id is None else (name, run_id)

            def resting(run_id: str, seq: int, name: str = name) -> bool:
                return self._resting((name, run_id), seq)

            def store_failed(
                run_id: str, seq: int, error: CheckpointError, name: str = name
            ) -> None:
                self._store_failed(name, run_id, seq, error, " after its deadline")

            ticked = runner._tick(None, taking=taking, stop=stop, aside=(resting, store_failed))
            moved.update((name, run_id) for run_id in ticked)
        return len(moved)

    def _say_damaged(self) -> None:
        """Log, once each, the logs a store leaves out of its listings as damaged.

        The file store cannot list a run whose log does not read (``damaged()``,
        answered from the listing just made): no poll would drive or tick it,
        and nothing would say so. Said again if it is damaged again after a
        repair.
        """
        damaged = getattr(self.checkpointer, "damaged", None)
        if not callable(damaged):
            return
        try:
            now = {(str(name), str(why)) for name, why in damaged()}
        except (PausegraphError, OSError):
            return
        for name, why in sorted(now - self._damaged_said):
            logger.warning(
                "the log %s cannot be read, so its run is neither driven nor ticked until it "
                "is restored from a backup or deleted: %s",
                name,
                why,
            )
        self._damaged_said = now

    def _resting(self, key: tuple[str, str], seq: int) -> bool:
        """Whether the run is set aside (``_stuck``, ``_failing``) at ``seq`` for a while yet."""
        now = time.monotonic()
        return any(
            aside is not None and aside[1] == seq and now < aside[2]
            for aside in (self._stuck.get(key), self._failing.get(key))
        )

    def _store_failed(
        self, name: str, run_id: str, seq: int, error: CheckpointError, when: str = ""
    ) -> None:
        """The store failed as this worker drove (or ticked: ``when``) a run listed at ``seq``.

        Damage (``CorruptCheckpointError``) needs a person: the run is set aside
        for ``STUCK_RETRY_S``, said once. Any other failure (a lost lock, a full
        disk, a save cut short) is tried again after ``retry_wait`` of the
        failures in a row, logged each time, unless something saves to the run
        meanwhile. The run is set aside at the checkpoint it ends with now: the
        worker may have saved a claim before the store failed, and one that
        failed again right after its own claim fails in a row.
        """
        now_at = self._seq_now(name, run_id, seq)
        if isinstance(error, CorruptCheckpointError):
            self._set_aside(name, run_id, now_at, error, when)
            return
        key = (name, run_id)
        before = self._failing.get(key)
        failures = before[0] + 1 if before is not None and before[1] == seq else 1
        wait = retry_wait(failures)
        _keep(self._failing, key, (failures, now_at, time.monotonic() + wait))
        logger.warning(
            "run %r of workflow %r: the store failed%s (%s), trying it again in %.3g s: %s",
            run_id,
            name,
            when,
            _times(failures),
            wait,
            error,
            extra={"workflow": name, "run_id": run_id},
        )

    def _seq_now(self, name: str, run_id: str, listed: int) -> int:
        """The seq the run ends with now; ``listed`` if the store cannot say."""
        try:
            last = self.checkpointer.last(name, run_id)
        except (PausegraphError, OSError):
            return listed
        return listed if last is None else last.seq

    def _drive(self, runner: Runner, run_id: str, seq: int) -> bool:
        """Drive one listed run (at checkpoint ``seq`` then) if it is still queued; whether it
        moved (see ``poll``)."""
        self._in_hand = (runner.graph.name, run_id)
        try:
            if runner._drive_queued(run_id) is None:
                return False  # another driver moved it, or it was deleted, since the listing
        except ConflictError:
            return False  # another driver has it
        except ResumeError as error:  # it moved on since the listing, or this graph refuses it
            self._if_still_queued(runner, run_id, error)
            return False
        except (StepError, NondeterminismError, SerializationError) as error:
            logger.warning(
                "run %r of workflow %r failed: %s",
                run_id,
                runner.graph.name,
                error,
                extra={"workflow": runner.graph.name, "run_id": run_id},
            )
            # not counted (SPEC: a failed run is not in the result, as for tick); one whose
            # failure could not be saved is still queued: set aside, or the worker would
            # take it again at once, poll after poll
            self._if_still_queued(runner, run_id, error)
            return False
        except CheckpointError as error:  # this run's store failed (a lost lock, a full disk)
            self._store_failed(runner.graph.name, run_id, seq, error)
            return False
        except BaseException as error:  # KeyboardInterrupt: a signal, or step code raising it
            self._if_still_queued(runner, run_id, error)
            raise
        finally:
            self._in_hand = None
        self._failing.pop((runner.graph.name, run_id), None)
        return True

    def _if_still_queued(self, runner: Runner, run_id: str, error: BaseException) -> bool:
        """Whether the run is still queued after ``error``; if so, say so once per run and error.

        Such a run needs a person: a graph whose structure changed since the
        run started (deploy the old one, or ``Goto``/``delete`` the run), a
        failure the store could not save, or step code raising
        ``KeyboardInterrupt``. This worker takes it again once something
        saves to it (another driver), or after ``STUCK_RETRY_S`` seconds
        (what it read may be a moment off: a claim saved just after the
        failure, a run deleted and started again at the same seq).
        """
        name = runner.graph.name
        try:
            queued = runner.state(run_id).status is Status.QUEUED
            last = self.checkpointer.last(name, run_id)
        except (PausegraphError, OSError):  # deleted meanwhile, or the store is failing
            return False
        if not queued or last is None:
            return False
        self._set_aside(name, run_id, last.seq, error)
        return True

    def _set_aside(
        self, name: str, run_id: str, seq: int, error: BaseException, when: str = ""
    ) -> None:
        """Leave a queued run (or a due one: ``when``) at ``seq`` be for ``STUCK_RETRY_S``;
        say so once per error."""
        key, why = (name, run_id), named(error)
        before = self._stuck.get(key)
        _keep(self._stuck, key, (why, seq, time.monotonic() + STUCK_RETRY_S))
        if before is None or before[0] != why:
            # an Exception: the run cannot be driven here; a KeyboardInterrupt (a signal, or
            # step code raising it) stopped this worker, and reaches its caller
            if isinstance(error, Exception):
                how = f"this worker cannot {'tick' if when else 'drive'} it: {why}"
            else:
                how = f"stopped by {why.removesuffix(': ')}"
            logger.warning(
                "run %r of workflow %r is left %s: %s",
                run_id,
                name,
                f"as it was{when}" if when else "queued",
                how,
                extra={"workflow": name, "run_id": run_id},
            )

    def serve(self, stop: threading.Event | None = None) -> None:
        """Poll until ``stop`` is set, waiting ``IDLE_WAIT_S`` seconds when a poll moved nothing.

        Once ``stop`` is set, the run in hand is driven to its next pause or
        end (a tick under way goes on with the runs it found due) and
        ``serve`` returns; no other run is taken, and the queued ones stay
        queued for another worker. Without ``stop`` it serves until the
        process is interrupted (``KeyboardInterrupt``). On a store that can say when
        work may be queued (a checkpointer with ``wait_for_work(timeout_s)``,
        such as ``PostgresCheckpointer``), an idle worker wakes as soon as it
        does instead of at the end of its wait.
        """
        _check_stop(stop, "Worker.serve(stop=...)")
        stop = threading.Event() if stop is None else stop
        wait_for_work: Callable[[float], bool] | None = getattr(
            self.checkpointer, "wait_for_work", None
        )
        retries = Retries("worker")
        listening = _Listening(wait_for_work)
        if wait_for_work is not None:
            listening.wait(stop, 0)  # listen from now on: what is queued after this poll wakes us
        while not stop.is_set():
            try:
                moved = self.poll(stop=stop)
            except CheckpointError as error:  # the store cannot be listed
                stop.wait(retries.failed(error))
                continue
            retries.succeeded()
            if not moved:
                listening.wait(stop, IDLE_WAIT_S)


class _Listening:
    """An idle worker's wait: on the store's ``wait_for_work`` if it has one, else a sleep.

    A store whose listening fails (a session refused, a dropped connection)
    while its polls go through is waited on by sleeping instead, the poll
    interval unchanged, and listened to again after ``retry_wait`` of its
    failures in a row (logged each time): a worker whose listener cannot
    connect logs a line every half minute, not at every poll.
    """

    __slots__ = ("after", "retries", "wait_for_work")

    def __init__(self, wait_for_work: Callable[[float], bool] | None) -> None:
        self.wait_for_work = wait_for_work
        self.retries = Retries("worker (listening for work)")
        self.after = 0.0  # ``time.monotonic()`` before which it sleeps instead

    def wait(self, stop: threading.Event, seconds: float) -> None:
        """Wait ``seconds``, or less if the store says work may be queued or ``stop`` is set."""
        wait_for_work = self.wait_for_work
        if wait_for_work is None or time.monotonic() < self.after:
            stop.wait(seconds)
            return
        until = time.monotonic() + seconds
        try:
            while True:  # once at least: a first call starts listening
                left = until - time.monotonic()
                # in slices, so that a stop is seen within WAKE_SLICE_S
                if wait_for_work(max(0.0, min(left, WAKE_SLICE_S))) or left <= 0:
                    break
                if stop.is_set():
                    break
        except CheckpointError as error:
            self.after = time.monotonic() + self.retries.failed(error)
            stop.wait(max(0.0, until - time.monotonic()))
            return
        self.retries.succeeded()
