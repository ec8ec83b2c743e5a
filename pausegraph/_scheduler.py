"""Super-steps: run the steps of one layer and collect their writes and pauses.

Theory of operation
-------------------
1. Layer k (0-based) of the graph runs as super-step k + 1.
2. Every step of a layer reads the same read-only state: the values at the
   end of the previous super-step. Nothing a step writes is visible to its
   siblings.
3. Steps run one after another in the order they were added to the graph.
4. A step that yields ``Interrupt`` is suspended; its siblings still run,
   each to its end or to its own interrupt.
5. A layer is *complete* when every step has finished. Only then are the
   writes folded through the reducers, in step order, and checkpointed.
6. A layer with suspended steps pauses the run. The finished steps' writes
   are kept and never run again; a suspended step continues when its
   interrupt is answered, either by ``send`` on the live generator or by
   calling the step again and replaying its journal.

This module is pure: it calls step code and nothing else. It never encodes,
stores, or decides what the run does next; ``_runner`` does.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import GeneratorType
from typing import Any

import attrs

from ._channels import accept_writes
from ._graph import Graph
from ._records import PauseRecord, SuspendedStep
from ._trampoline import Trampoline, start, step_failed
from ._values import freeze
from .errors import NondeterminismError, StepError


@attrs.define
class LayerResult:
    """Where each step of a layer stands, in step order."""

    finished: dict[str, Mapping[str, Any]]
    # a suspended step: its live trampoline when this process holds one, else its record
    suspended: dict[str, Trampoline | SuspendedStep]

    def records(self) -> tuple[SuspendedStep, ...]:
        return tuple(
            s if isinstance(s, SuspendedStep) else SuspendedStep(step_id, tuple(s.journal))
            for step_id, s in self.suspended.items()
        )


def id_prefix(epoch: int, step_index: int) -> str:
    """Interrupt ids are ``<epoch>.<step index>.<journal position>``: unique in a run."""
    return f"{epoch}.{step_index}."


def _collect(graph: Graph, step_id: str, writes: Mapping[str, Any]) -> dict[str, Any]:
    """A finished step's writes, checked and normalised (see ``accept_writes``)."""
    try:
        return accept_writes(graph.channels, writes, f"step {step_id!r}", StepError)
    except StepError as error:
        msg = f"{error}; no write of this layer was applied"
        raise StepError(msg) from None


def run_layer(
    graph: Graph, layer: tuple[str, ...], state: Mapping[str, Any], epoch: int
) -> LayerResult:
    """Run every step of a layer from its start."""
    finished: dict[str, Mapping[str, Any]] = {}
    suspended: dict[str, Trampoline | SuspendedStep] = {}
    index = graph.step_index
    steps = graph.steps
    for step_id in layer:
        outcome = start(step_id, steps[step_id], state, id_prefix(epoch, index[step_id]))
        if type(outcome) is Trampoline:
            if not outcome.advance():
                suspended[step_id] = outcome
                continue
            outcome = outcome.writes
        assert not isinstance(outcome, Trampoline)
        finished[step_id] = _collect(graph, step_id, outcome)
    return LayerResult(finished, suspended)


def finish_layer(
    graph: Graph,
    layer: tuple[str, ...],
    state: Mapping[str, Any],
    pause: PauseRecord,
    live: Mapping[str, Trampoline],
) -> LayerResult:
    """Go on with an interrupted layer: answered steps continue, others stay suspended.

    ``state`` is the state the layer started from; ``live`` holds the
    suspended generators this process still has (a hot resume), by step id.
    Steps without a live generator are called again and replay their journal.
    """
    done = {f.step_id: freeze(f.writes) for f in pause.finished}  # may come from a store
    waiting = {s.step_id: s for s in pause.suspended}
    finished: dict[str, Mapping[str, Any]] = {}
    suspended: dict[str, Trampoline | SuspendedStep] = {}
    for step_id in layer:
        if step_id in done:
            finished[step_id] = done[step_id]
            continue
        record = waiting[step_id]
        pending = record.pending
        if not pending.answered:
            held = live.get(step_id)
            keep = held is not None and tuple(held.journal) == record.journal
            suspended[step_id] = held if keep and held is not None else record
            continue
        trampoline = live.get(step_id)
        if trampoline is not None and tuple(trampoline.journal[:-1]) == record.journal[:-1]:
            ran_to_end = trampoline.answer(pending.value)
        else:
            trampoline = _replay(graph, step_id, state, record, pause.epoch)
            ran_to_end = trampoline.advance()
        if not ran_to_end:
            suspended[step_id] = trampoline
            continue
        finished[step_id] = _collect(graph, step_id, trampoline.writes)
    return LayerResult(finished, suspended)


def _replay(
    graph: Graph, step_id: str, state: Mapping[str, Any], record: SuspendedStep, epoch: int
) -> Trampoline:
    try:
        gen = graph.steps[step_id](state)
    except Exception as exc:
        if isinstance(exc, StepError):
            raise
        raise step_failed(step_id, exc) from exc
    if type(gen) is not GeneratorType:
        msg = (
            f"step {step_id!r} was suspended at an interrupt, but calling it again returned "
            f"{type(gen).__name__}, not a generator: it cannot replay its journal"
        )
        raise NondeterminismError(msg)
    prefix = id_prefix(epoch, graph.step_index[step_id])
    return Trampoline(step_id, gen, list(record.journal), prefix)
