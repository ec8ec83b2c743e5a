"""Ending and removing runs with the store alone, without the workflow's code.

The command line may not have a run's ``Graph`` (``pausegraph cancel
RUN_ID``), and needs none: cancelling saves one checkpoint that keeps the
run's values and swaps its stage for ``Cancelled``, decided by the same
``decide_cancel`` as ``Runner.cancel``; deleting removes the run's
checkpoints. Both hold the run's live lock, so a run a live process drives
is a ``ConflictError`` naming it, and neither touches suspended generators
(there are none in this process).
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from ._commands import RunInfo, Status
from ._inbox import run_summaries
from ._machine import check_reason, decide_cancel, info_of
from ._records import Checkpoint
from ._runner import system_clock
from .checkpointers import Checkpointer
from .errors import ConflictError, CorruptCheckpointError, ResumeError

__all__ = ["cancel_run", "delete_run", "prune"]


def _no_run(workflow_id: str, run_id: str) -> str:
    return f"no run {run_id!r} of workflow {workflow_id!r}"


def cancel_run(
    checkpointer: Checkpointer,
    workflow_id: str,
    run_id: str,
    reason: str = "",
    *,
    clock: Callable[[], int] = system_clock,
) -> RunInfo:
    """``Runner.cancel`` without the graph: save a ``cancelled`` checkpoint on the latest one."""
    check_reason(reason)
    with checkpointer.lock(workflow_id, run_id):
        try:
            latest = checkpointer.latest(workflow_id, run_id)
            if latest is None:
                raise ResumeError(_no_run(workflow_id, run_id))
            claim = decide_cancel(latest, reason)
            saved: Checkpoint = attrs.evolve(
                latest,
                seq=latest.seq + 1,
                super_step=claim.super_step,
                label=claim.label,
                timestamp_ms=clock(),
                stage=claim.stage,
                changes=(),
                added=None,
                input=None,
            )
            checkpointer.save(saved)
        finally:
            checkpointer.sync()
    return info_of(saved, running=False)


def delete_run(checkpointer: Checkpointer, workflow_id: str, run_id: str) -> None:
    """``Runner.delete`` without the graph: remove every checkpoint of a run not running."""
    with checkpointer.lock(workflow_id, run_id):
        try:
            exists = bool(checkpointer.list(workflow_id, run_id))
        except CorruptCheckpointError:
            exists = True  # a damaged run is deleted all the same: that is the way out
        if not exists:
            raise ResumeError(_no_run(workflow_id, run_id))
        checkpointer.delete(workflow_id, run_id)
        checkpointer.sync()


def prune(
    checkpointer: Checkpointer, *, before_ms: int, workflow_id: str | None = None
) -> list[tuple[str, str]]:
    """Delete every done or cancelled run whose latest checkpoint is older than ``before_ms``.

    Each is deleted holding its live lock, if its latest checkpoint is still
    the one listed (a ``Goto`` may have re-opened it meanwhile); a run
    another process holds is skipped. Returns the ``(workflow_id, run_id)``
    deleted.
    """
    deleted = []
    for status in (Status.DONE, Status.CANCELLED):
        for summary in run_summaries(checkpointer, workflow_id=workflow_id, status=status.value):
            if summary.updated_ms >= before_ms:
                continue
            key = (summary.workflow_id, summary.run_id)
            try:
                with checkpointer.lock(*key):
                    metas = checkpointer.list(*key)
                    if not metas or metas[-1].seq != summary.seq:
                        continue  # it moved on since the listing (a Goto re-opened it)
                    checkpointer.delete(*key)
                    deleted.append(key)
            except ConflictError:
                continue  # a live process drives it now: not finished any more
    checkpointer.sync()
    return deleted
