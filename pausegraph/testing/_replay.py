"""The replay check for CI: do the paused runs in a store still replay on new code?

Before deploying new step code while runs are paused, call
``assert_paused_runs_replay(graph, checkpointer)`` against (a copy of) the
production store. For every run of ``graph`` whose latest checkpoint holds
suspended steps, each suspended step is called again on the state it first
saw and fed its journal, exactly as a cold resume would. Nothing is saved
and no effect runs: the dry run stops where the journal ends.
"""

from __future__ import annotations

import attrs

from .._channels import Channels
from .._commands import Status
from .._graph import Graph
from .._machine import status_of
from .._records import Checkpoint, Failed, progress_of
from .._scheduler import failure_of, replay_journals
from ..checkpointers import Checkpointer, FileCheckpointer
from ..errors import PausegraphError


@attrs.frozen
class ReplayFailure:
    """One paused run whose suspended step no longer replays its journal."""

    run_id: str
    step_id: str | None  # None when the whole run cannot be resumed (a changed graph)
    error: str

    def __str__(self) -> str:
        where = f"run {self.run_id!r}" + (f", step {self.step_id!r}" if self.step_id else "")
        return f"{where}: {self.error}"


def find_replay_failures(graph: Graph, checkpointer: Checkpointer) -> list[ReplayFailure]:
    """Dry-run every suspended step of every paused run of ``graph``; list what fails.

    Runs of other workflows in the store are skipped (``workflow_id`` is the
    graph's name). A run recorded with a different graph structure, a step
    that raises, and a step that strays from its journal
    (``NondeterminismError``) are all failures. No checkpoint is written.

    The trap: ``[]`` also when nothing was checked (an empty store, a wrong
    path, a store of other workflows). ``assert_paused_runs_replay`` fails
    then; with this function, check the store's ``runs()`` yourself.
    """
    return _check(graph, checkpointer).failures


@attrs.frozen
class _Checked:
    failures: list[ReplayFailure]
    paused: int  # the paused runs of the graph's workflow that were checked
    others: int  # the other runs of the graph's workflow (not paused)
    elsewhere: tuple[str, ...]  # the other workflows the store holds runs of


def _check(graph: Graph, checkpointer: Checkpointer) -> _Checked:
    failures = []
    paused = others = 0
    elsewhere = set()
    for workflow_id, run_id in sorted(checkpointer.runs()):
        if workflow_id != graph.name:
            elsewhere.add(workflow_id)
            continue
        latest = checkpointer.latest(workflow_id, run_id)
        if latest is None:
            continue  # deleted meanwhile
        status = status_of(latest.stage, running=False)
        progress = progress_of(latest.stage)
        # what a resume, a recovery or a retry replays: a pause (at an interrupt, or at a
        # breakpoint: nothing to replay), a layer under way whose process died, and the
        # steps of a failed layer (its failing step may fail again as it was recorded)
        if status is Status.PAUSED or (status is Status.QUEUED and progress is not None):
            paused += 1
        elif status is Status.FAILED:
            others += 1
        else:
            others += 1
            continue
        difference = latest.structure.difference(graph.structure())
        if difference is not None:
            error = f"recorded with a different graph structure: {difference}"
            failures.append(ReplayFailure(run_id, None, error))
            continue
        if progress is not None:
            failures.extend(_replay_run(graph, latest))
    return _Checked(failures, paused, others, tuple(sorted(elsewhere)))


def _replay_run(graph: Graph, latest: Checkpoint) -> list[ReplayFailure]:
    progress = progress_of(latest.stage)
    assert progress is not None
    state = Channels(graph.channels, latest.values).values  # as the engine reads it
    stage = latest.stage
    failed = stage.failure if type(stage) is Failed else None
    failures = []
    for step_id, error in replay_journals(graph, state, progress):
        if (
            failed is not None
            and step_id == failed.step_id
            and failure_of(step_id, error).error_type == failed.error_type
        ):
            continue  # the failed step failing again as it was recorded: not the new code
        if isinstance(error, PausegraphError):
            text = f"{type(error).__name__}: {error}"
        else:  # pragma: no cover - the engine wraps what a step raises
            text = f"step raised {type(error).__name__}: {error}"
        failures.append(ReplayFailure(latest.run_id, step_id, text))
    return failures


def assert_paused_runs_replay(
    graph: Graph, checkpointer: Checkpointer, *, allow_empty: bool = False
) -> None:
    """Raise ``AssertionError`` listing every paused run that would not resume.

    Run it in CI before deploying changed step code while runs are paused::

        def test_paused_production_runs_still_replay():
            assert_paused_runs_replay(expenses.graph, FileCheckpointer("prod-copy"))

    Every failure is reported at once, each with its run, step and error.
    No checkpoint is written (listing a file store's runs may bring its
    index up to date). A run paused at a breakpoint counts as paused (its
    graph structure is checked; it has no journal to replay). A failed run
    is checked too, as its retry would replay it (its failing step may
    fail again as recorded), but does not count as paused.

    A store with no paused run of ``graph.name`` also fails the assertion,
    naming the store and the workflow: nothing was checked, which is most
    often a wrong path (``FileCheckpointer`` makes an empty store at any
    path, and a relative path depends on the working directory) or a graph
    renamed since. Pass ``allow_empty=True`` when no paused run is a fine
    outcome.
    """
    checked = _check(graph, checkpointer)
    if checked.failures:
        lines = "\n".join(f"  {f}" for f in checked.failures)
        count = len(checked.failures)
        msg = f"{count} suspended step(s) of {graph.name!r} no longer replay:\n{lines}"
        raise AssertionError(msg)
    if checked.paused == 0 and not allow_empty:
        raise AssertionError(_nothing_checked(graph, checkpointer, checked))


def _nothing_checked(graph: Graph, checkpointer: Checkpointer, checked: _Checked) -> str:
    store = repr(checkpointer)
    if isinstance(checkpointer, FileCheckpointer) and not checkpointer.root.is_absolute():
        store += f" (the directory {str(checkpointer.root.absolute())!r})"
    held = []
    if checked.others:
        held.append(f"{checked.others} run(s) of {graph.name!r}, none paused")
    if checked.elsewhere:
        held.append(f"runs of {', '.join(map(repr, checked.elsewhere))}")
    holds = f" (it holds {' and '.join(held)})" if held else " (it holds no run at all)"
    return (
        f"found no paused run of workflow {graph.name!r} in {store}{holds}: nothing was "
        "checked; is the path right? Pass allow_empty=True if no paused run is expected"
    )
