"""The replay check for CI: do the paused runs in a store still replay on new code?

Before deploying new step code while runs are paused, call
``assert_paused_runs_replay(graph, checkpointer)`` against (a copy of) the
production store. For every run of ``graph`` whose latest checkpoint holds
suspended steps, each suspended step is called again on the state it first
saw and fed its journal, exactly as a cold resume would. Nothing is saved
and no effect runs: the dry run stops where the journal ends.
"""

from __future__ import annotations

from types import GeneratorType, MappingProxyType
from typing import Any

import attrs

from .._graph import Graph
from .._instructions import Effect, Interrupt
from .._records import Checkpoint, JournalEntry, PauseKind
from .._scheduler import id_prefix
from .._trampoline import Trampoline
from ..checkpointers import Checkpointer
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


class _JournalEnd(Exception):
    """The dry run reached the end of the journal: all that was recorded replayed."""


class _DryRun(Trampoline):
    """A trampoline that replays a journal but never goes past it.

    Past the journal a real resume would record new entries, which means
    calling effects for real; the dry run stops there instead.
    """

    __slots__ = ()

    def _interrupt(self, msg: Interrupt) -> JournalEntry:
        if self.cursor >= len(self.journal):
            raise _JournalEnd
        return super()._interrupt(msg)

    def _effect(self, msg: Effect) -> tuple[Any, BaseException | None]:
        if self.cursor >= len(self.journal):
            raise _JournalEnd
        return super()._effect(msg)


def find_replay_failures(graph: Graph, checkpointer: Checkpointer) -> list[ReplayFailure]:
    """Dry-run every suspended step of every paused run of ``graph``; list what fails.

    Runs of other workflows in the store are skipped (``workflow_id`` is the
    graph's name). A run recorded with a different graph structure, a step
    that raises, and a step that strays from its journal
    (``NondeterminismError``) are all failures. The store is only read.
    """
    failures = []
    for workflow_id, run_id in sorted(checkpointer.runs()):
        if workflow_id != graph.name:
            continue
        latest = checkpointer.latest(workflow_id, run_id)
        pause = None if latest is None else latest.pause
        if latest is None or pause is None or pause.kind is not PauseKind.INTERRUPT:
            continue
        difference = latest.structure.difference(graph.structure())
        if difference is not None:
            error = f"recorded with a different graph structure: {difference}"
            failures.append(ReplayFailure(run_id, None, error))
            continue
        failures.extend(_replay_run(graph, latest))
    return failures


def _replay_run(graph: Graph, latest: Checkpoint) -> list[ReplayFailure]:
    pause = latest.pause
    assert pause is not None
    state = MappingProxyType(latest.values)
    failures = []
    for suspended in pause.suspended:
        step_id = suspended.step_id
        try:
            gen = graph.steps[step_id](state)
            if type(gen) is not GeneratorType:
                error = f"calling it again returned {type(gen).__name__}, not a generator"
                failures.append(ReplayFailure(latest.run_id, step_id, error))
                continue
            prefix = id_prefix(pause.epoch, graph.step_index[step_id])
            dry = _DryRun(step_id, gen, list(suspended.journal), prefix)
            try:
                dry.advance()
            except _JournalEnd:
                pass
            finally:
                dry._close()
        except PausegraphError as exc:
            failures.append(ReplayFailure(latest.run_id, step_id, f"{type(exc).__name__}: {exc}"))
        except Exception as exc:
            error = f"step raised {type(exc).__name__}: {exc}"
            failures.append(ReplayFailure(latest.run_id, step_id, error))
    return failures


def assert_paused_runs_replay(graph: Graph, checkpointer: Checkpointer) -> None:
    """Raise ``AssertionError`` listing every paused run that would not resume.

    Run it in CI before deploying changed step code while runs are paused::

        def test_paused_production_runs_still_replay():
            assert_paused_runs_replay(expenses.graph, FileCheckpointer("prod-copy"))

    Every failure is reported at once, each with its run, step and error.
    The store is never written to.
    """
    failures = find_replay_failures(graph, checkpointer)
    if failures:
        lines = "\n".join(f"  {f}" for f in failures)
        msg = f"{len(failures)} suspended step(s) of {graph.name!r} no longer replay:\n{lines}"
        raise AssertionError(msg)
