"""Everything waiting for a person, across runs, from the stores' run summaries.

A store keeps each run's ``RunSummary`` (status, super-step, label, pending
interrupts) beside its frames, so listing runs or what waits for an answer
reads one summary per run: no frame is decoded and no workflow's code is
imported (the CLI and a web inbox may not have it). ``run_summaries`` is
the one place that asks a checkpointer for them; a checkpointer that keeps
no summaries (a user's own ``Checkpointer``) is read the slow way, one
``latest`` per run, with the same result.

The trap: a ``"queued"`` summary may be a run a live process drives right
now. Only the live lock knows, so ``listed_status`` asks it, and only for
runs with work to do (asking costs a lock probe).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import attrs

from ._commands import PendingInterrupt, Status
from .checkpointers import Checkpointer, RunSummary, StoreCheckpointer
from .checkpointers._checkpointer import checked_checkpointer, summary_fields, summary_of
from .errors import GraphError, PausegraphError

__all__ = ["Waiting", "inbox", "listed_status", "run_summaries", "running_among", "waiting"]

#: Called with (workflow_id, run_id, error) for a run whose summary cannot be read.
OnError = Callable[[str, str, PausegraphError], None]


@attrs.frozen
class Waiting:
    """An interrupt waiting for an answer: which run, which interrupt, since when.

    ``since_ms`` (epoch ms) is when the step reached the interrupt: it does
    not move when another interrupt of the run is answered or an ``Update``
    is saved at the pause (for a run paused before pausegraph kept that
    time, it is the time of the run's latest checkpoint). Answer it with
    ``Runner(graph, store).resume(run_id, Resume(answers={waiting.interrupt.id: value}))``.
    """

    workflow_id: str
    run_id: str
    interrupt: PendingInterrupt
    since_ms: int


def run_summaries(
    checkpointer: Checkpointer,
    *,
    workflow_id: str | None = None,
    status: str | None = None,
    on_error: OnError | None = None,
) -> list[RunSummary]:
    """The latest ``RunSummary`` of every run, filtered by workflow and stored status.

    ``status`` is a stored status (``"queued"`` covers running runs too: see
    ``listed_status``). A checkpointer without ``summaries`` is read run by
    run; a run that cannot be read there goes to ``on_error`` (``None``:
    raise).
    """
    if isinstance(checkpointer, StoreCheckpointer):
        return checkpointer.summaries(workflow_id=workflow_id, status=status)
    found = []
    for workflow, run_id in checkpointer.runs():
        if workflow_id is not None and workflow != workflow_id:
            continue
        try:
            latest = checkpointer.latest(workflow, run_id)
        except PausegraphError as exc:
            if on_error is None:
                raise
            on_error(workflow, run_id, exc)
            continue
        if latest is None:  # a run being created right now
            continue
        summary = summary_of(latest)
        if status is None or summary.status == status:
            found.append(summary)
    return found


def listed_status(
    summary: RunSummary,
    checkpointer: Checkpointer,
    running: set[tuple[str, str]] | None = None,
) -> Status:
    """The status ``Runner.state`` gives: a queued run that a live process holds is running.

    ``running``: what ``running_among`` found for a listing's summaries, so
    that each queued run is not probed on its own.
    """
    status = _STATUSES.get(summary.status)
    if status is None:
        status = Status(summary.status)  # not a status: the enum's own ValueError
    if status is Status.QUEUED:
        ids = (summary.workflow_id, summary.run_id)
        if ids in running if running is not None else checkpointer.holder(*ids):
            return Status.RUNNING
    return status


def running_among(checkpointer: Checkpointer, summaries: list[RunSummary]) -> set[tuple[str, str]]:
    """The queued runs among ``summaries`` that a live process drives (holds the live lock of).

    Asked of the store for all of them at once where it can (``held_among``
    of the PostgreSQL store: one query of ``pg_locks``, where probing each
    run took a round trip each, 3-22 s for 10,000 queued runs; of the file
    and SQLite stores: each run's lock file probed through one descriptor
    of its directory; of the memory store: its table), else run by run
    with ``holder``, as ``Runner.state`` asks. Reading ``/proc/locks`` once
    instead of probing was tried and missed locks (held by a process of
    another pid namespace, or skipped by a read that is not a snapshot
    while other locks came and went).
    """
    queued = [(s.workflow_id, s.run_id) for s in summaries if s.status == _QUEUED]
    if not queued:
        return set()
    batch = None
    # a checkpointer or store whose own holder() says otherwise (a subclass that
    # overrides it, not held_among) is asked run by run
    if isinstance(checkpointer, StoreCheckpointer) and (
        type(checkpointer).holder is StoreCheckpointer.holder
    ):
        batch = _batch_of(checkpointer.store)
    if batch is not None:
        return batch(queued)
    return {ids for ids in queued if checkpointer.holder(*ids) is not None}


def _batch_of(store: object) -> Callable[[list[tuple[str, str]]], set[tuple[str, str]]] | None:
    """``store.held_among``, if the class that defines it defines the ``holder`` it has too."""
    for cls in type(store).__mro__:
        if "held_among" in vars(cls):
            if vars(cls).get("holder") is not getattr(type(store), "holder", None):
                return None
            return store.held_among  # type: ignore[attr-defined,no-any-return]
    return None


def inbox(checkpointer: Checkpointer, *, workflow: str | None = None) -> list[Waiting]:
    """Every pending interrupt of every paused run, oldest first.

    ::

        for waiting in inbox(FileCheckpointer("runs"), workflow="expense"):
            print(waiting.run_id, waiting.interrupt.id, waiting.interrupt.payload)

    Oldest first means by ``since_ms``, then run id (then workflow), then
    the interrupts' own order in the run. It reads the stores' run summaries only: no
    workflow's code is imported and no checkpoint is loaded (with a
    checkpointer that keeps no summaries, each run's latest checkpoint is).
    A run paused at a breakpoint waits for ``Continue``, not an answer, and
    is not listed; a failed run's unanswered interrupts are not either
    (``Runner.state`` shows them).
    """
    checked_checkpointer(checkpointer, "inbox(checkpointer)")
    if workflow is not None and not isinstance(workflow, str):
        msg = f"inbox(workflow=...) takes a workflow name (a str), got {workflow!r:.80}"
        raise GraphError(msg)
    return [
        Waiting(workflow_id, run_id, PendingInterrupt(*interrupt[:4]), since)
        for since, run_id, workflow_id, _, interrupt in waiting(checkpointer, workflow=workflow)
    ]


#: (since_ms, run_id, workflow_id, n, (interrupt id, step id, payload, deadline_ms, asked_ms))
Row = tuple[int, str, str, int, tuple[str, str, Any, int | None, int | None]]


def waiting(checkpointer: Checkpointer, *, workflow: str | None = None) -> list[Row]:
    """``inbox`` as plain tuples, in its order: what the command line prints from.

    ``n`` is the interrupt's place in its run.
    """
    found: list[Row] = []
    add = found.append
    for summary in run_summaries(checkpointer, workflow_id=workflow, status=Status.PAUSED.value):
        paused, run_id, workflow_id = summary.updated_ms, summary.run_id, summary.workflow_id
        for n, interrupt in enumerate(summary_fields(summary)[2]):
            asked = interrupt[4]
            add((paused if asked is None else asked, run_id, workflow_id, n, interrupt))
    found.sort(key=_ORDER)
    return found


_ORDER = operator.itemgetter(0, 1, 2, 3)
_STATUSES = {s.value: s for s in Status}  # Status(value) without the enum's own lookup
_QUEUED = Status.QUEUED.value
