"""WorkflowMachine: drive a workflow with random commands and check it against a model."""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from typing import Any, ClassVar

import attrs
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from .._commands import Continue, Done, Goto, Outcome, Paused, Resume, Status, Update
from .._graph import Graph
from .._records import Checkpoint, CheckpointMeta
from .._runner import Runner
from ..checkpointers import Checkpointer
from ..errors import GraphError
from ._driver import CheckpointerFactory, _SimulatedCrash, memory_store
from ._properties import diff_states
from ._strategies import answers


@attrs.frozen
class Answered:
    """An interrupt of ``step_id`` with ``payload`` got ``value``."""

    step_id: str
    payload: Any
    value: Any


@attrs.frozen
class Edited:
    """``Update(edits)`` was given."""

    edits: dict[str, Any]


@attrs.frozen
class Went:
    """``Goto(step_id)`` was given."""

    step_id: str


Event = Answered | Edited | Went


@attrs.frozen
class RunTrace:
    """What a run was given, oldest first: the model's input.

    A forked run's trace holds the source's events up to the checkpoint it
    was forked from.
    """

    run_id: str
    input: Mapping[str, Any] | None
    events: tuple[Event, ...] = ()

    def answers(self) -> list[Answered]:
        return [e for e in self.events if type(e) is Answered]


class _MortalHandle:
    """A checkpointer handle whose process can be made to die before a given save."""

    def __init__(self, inner: Checkpointer) -> None:
        self._inner = inner
        self.saves_left: int | None = None  # die when this reaches 0

    def __repr__(self) -> str:
        return repr(self._inner)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def save(self, checkpoint: Checkpoint) -> None:
        if self.saves_left is not None:
            if self.saves_left == 0:
                raise _SimulatedCrash("simulated process death before a save")
            self.saves_left -= 1
        self._inner.save(checkpoint)

    def load(self, workflow_id: str, run_id: str, seq: int) -> Checkpoint | None:
        return self._inner.load(workflow_id, run_id, seq)

    def latest(self, workflow_id: str, run_id: str) -> Checkpoint | None:
        return self._inner.latest(workflow_id, run_id)

    def list(self, workflow_id: str, run_id: str) -> builtins.list[CheckpointMeta]:
        return self._inner.list(workflow_id, run_id)

    def runs(self) -> builtins.list[tuple[str, str]]:
        return self._inner.runs()


@attrs.define
class _RunModel:
    trace: RunTrace
    event_seqs: list[int]  # the claim seq of each event in the trace
    history: list[CheckpointMeta]
    outcome: Outcome | None  # None when the last command gave no outcome (a fork)


class WorkflowMachine(RuleBasedStateMachine):
    """Drives a workflow with random commands and checks invariants after each.

    Subclass it, set ``graph`` (and optionally ``input``, breakpoints,
    ``answer_values``, ``edit_values``), override ``make_checkpointer_factory``
    to test another store and ``expected_values`` to check results against a
    model, then expose its test case::

        class ApprovalMachine(WorkflowMachine):
            graph = approval_graph
            input = {"amount": 120}

            def expected_values(self, trace):
                approved = [a.value for a in trace.answers()][-1:]
                return {"amount": 120, "approved": approved[0] if approved else None}

        TestApproval = ApprovalMachine.TestCase

    The rules start runs, answer some or all pending interrupts (``Resume``),
    continue breakpoints, ``Update`` paused runs (when ``edit_values`` is
    set), ``Goto`` a random step (of ``goto_targets``), fork from a random
    checkpoint (with random edits when ``edit_values`` is set; the source run
    must be left untouched, and the fork is sometimes driven to its end),
    *reopen*: a new ``Runner`` on a new checkpointer handle, as after a
    restart, and *crash*: answer a paused run but let the process die before
    one of the saves that follow, then recover on a new ``Runner`` with
    ``run(run_id)``, as a restarted script would. After every rule: each
    run's history is linear (seq 1, 2, ..., the old history a prefix of the
    new), ``Runner.state`` agrees with the
    last outcome, and a finished run's values equal ``expected_values``.
    Any error the engine raises fails the test, with hypothesis's shrunk
    list of commands.
    """

    graph: ClassVar[Graph]
    input: ClassVar[Mapping[str, Any] | None] = None
    interrupt_before: ClassVar[tuple[str, ...]] = ()
    interrupt_after: ClassVar[tuple[str, ...]] = ()
    #: the answers ``Resume`` gives
    answer_values: ClassVar[st.SearchStrategy[Any]] = answers()
    #: edits for ``Update``; ``None`` leaves the update rule out
    edit_values: ClassVar[st.SearchStrategy[dict[str, Any]] | None] = None
    #: the steps ``Goto`` may name; ``None`` means every step, ``()`` leaves the rule out
    goto_targets: ClassVar[tuple[str, ...] | None] = None
    max_runs: ClassVar[int] = 3

    def __init__(self) -> None:
        if not isinstance(getattr(type(self), "graph", None), Graph):
            msg = (
                f"{type(self).__name__} needs its workflow: set the class attribute "
                "`graph = <a Graph>` in the WorkflowMachine subclass"
            )
            raise GraphError(msg)
        super().__init__()
        self._factory = self.make_checkpointer_factory()
        self.runner = self._open()
        self._runs: dict[str, _RunModel] = {}

    # --- what a subclass may override -----------------------------------------

    def make_checkpointer_factory(self) -> CheckpointerFactory:
        """A factory on one new, empty store for this test case (default: memory)."""
        return memory_store()

    def expected_values(self, trace: RunTrace) -> Mapping[str, Any] | None:
        """The model: a finished run's channel values, or ``None`` not to check."""
        return None

    # --- helpers ----------------------------------------------------------------

    def _open(self) -> Runner:
        self._handle = _MortalHandle(self._factory())
        return Runner(
            self.graph,
            self._handle,
            interrupt_before=self.interrupt_before,
            interrupt_after=self.interrupt_after,
        )

    def _paused_ids(self) -> list[str]:
        return [r for r, m in self._runs.items() if self.runner.state(r).status is Status.PAUSED]

    def _record(self, run_id: str, event: Event | None, outcome: Outcome | None) -> None:
        model = self._runs[run_id]
        if event is not None:
            model.trace = attrs.evolve(model.trace, events=(*model.trace.events, event))
            model.event_seqs.append(len(model.history) + 1)  # the command's claim
        model.outcome = outcome

    # --- rules --------------------------------------------------------------------

    @precondition(lambda self: len(self._runs) < self.max_runs)
    @rule()
    def start(self) -> None:
        run_id = f"run{len(self._runs)}"
        self._runs[run_id] = _RunModel(RunTrace(run_id, self.input), [], [], None)
        self._record(run_id, None, self.runner.run(run_id, self.input))

    def _answer(self, data: st.DataObject, run_id: str) -> tuple[Continue | Resume, list[Answered]]:
        """Draw a command for a paused run: Continue a breakpoint, or answer some interrupts."""
        pending = self.runner.state(run_id).interrupts
        if not pending:
            return Continue(), []
        chosen = data.draw(
            st.lists(st.sampled_from(pending), min_size=1, unique_by=lambda i: i.id),
            label="answered",
        )
        given = {i.id: data.draw(self.answer_values, label=f"answer {i.id}") for i in chosen}
        events = [Answered(i.step_id, i.payload, given[i.id]) for i in chosen]
        return Resume(answers=given), events

    def _record_all(self, run_id: str, events: list[Answered], claim: int) -> None:
        model = self._runs[run_id]
        model.trace = attrs.evolve(model.trace, events=(*model.trace.events, *events))
        model.event_seqs.extend([claim] * len(events))

    @precondition(lambda self: bool(self._paused_ids()))
    @rule(data=st.data())
    def resume(self, data: st.DataObject) -> None:
        run_id = data.draw(st.sampled_from(self._paused_ids()), label="run_id")
        command, events = self._answer(data, run_id)
        claim = len(self._runs[run_id].history) + 1
        outcome = self.runner.resume(run_id, command)
        self._record_all(run_id, events, claim)
        self._runs[run_id].outcome = outcome

    @precondition(lambda self: bool(self._paused_ids()))
    @rule(data=st.data())
    def crash(self, data: st.DataObject) -> None:
        """A process death between checkpoints, and the recovery a restarted script does."""
        run_id = data.draw(st.sampled_from(self._paused_ids()), label="run_id")
        command, events = self._answer(data, run_id)
        before = len(self.runner.history(run_id))
        self._handle.saves_left = data.draw(st.integers(0, 3), label="saves before the death")
        try:
            outcome: Outcome | None = self.runner.resume(run_id, command)
        except _SimulatedCrash:
            outcome = None
        finally:
            self._handle.saves_left = None
        if outcome is not None:  # the command needed fewer saves: nobody died
            self._record_all(run_id, events, before + 1)
            self._runs[run_id].outcome = outcome
            return
        self.runner = self._open()
        if len(self.runner.history(run_id)) > before:  # the claim was saved: the answers hold
            self._record_all(run_id, events, before + 1)
        info = self.runner.state(run_id)
        if info.status is Status.QUEUED:
            outcome = self.runner.run(run_id)
        self._runs[run_id].outcome = outcome

    @precondition(lambda self: self.edit_values is not None and bool(self._paused_ids()))
    @rule(data=st.data())
    def update(self, data: st.DataObject) -> None:
        assert self.edit_values is not None
        run_id = data.draw(st.sampled_from(self._paused_ids()), label="run_id")
        edits = data.draw(self.edit_values, label="edits")
        outcome = self.runner.resume(run_id, Update(edits))
        self._record(run_id, Edited(dict(edits)), outcome)

    @precondition(lambda self: bool(self._runs) and self.goto_targets != ())
    @rule(data=st.data())
    def goto(self, data: st.DataObject) -> None:
        run_id = data.draw(st.sampled_from(list(self._runs)), label="run_id")
        targets = list(self.graph.steps) if self.goto_targets is None else self.goto_targets
        step_id = data.draw(st.sampled_from(targets), label="step_id")
        outcome = self.runner.resume(run_id, Goto(step_id))
        self._record(run_id, Went(step_id), outcome)

    @precondition(lambda self: bool(self._runs) and len(self._runs) < self.max_runs)
    @rule(data=st.data())
    def fork(self, data: st.DataObject) -> None:
        source_id = data.draw(st.sampled_from(list(self._runs)), label="run_id")
        source = self._runs[source_id]
        seq = data.draw(st.integers(1, len(source.history)), label="seq")
        edits = None
        if self.edit_values is not None:
            edits = data.draw(st.none() | self.edit_values, label="edits")
        source_before = (self.runner.history(source_id), self.runner.state(source_id))
        new_id = self.runner.fork(source_id, seq, edits)
        kept = [i for i, s in enumerate(source.event_seqs) if s <= seq]
        events = tuple(source.trace.events[i] for i in kept)
        if edits is not None:
            events = (*events, Edited(dict(edits)))
        trace = RunTrace(new_id, self.input, events)
        self._runs[new_id] = _RunModel(trace, [1] * len(events), [], None)
        if self.runner.state(new_id).status is Status.QUEUED:
            # forked from a checkpoint between layers: run() goes on from there
            self._record(new_id, None, self.runner.run(new_id))
        if data.draw(st.booleans(), label="drive the fork to its end"):
            self._drive_to_end(data, new_id)
        source_after = (self.runner.history(source_id), self.runner.state(source_id))
        if source_after != source_before:
            msg = (
                f"forking run {source_id!r} at seq {seq} changed it:\n"
                f"  before {source_before!r}\n  after  {source_after!r}"
            )
            raise AssertionError(msg)

    def _drive_to_end(self, data: st.DataObject, run_id: str, *, max_commands: int = 20) -> None:
        for _ in range(max_commands):
            if self.runner.state(run_id).status is not Status.PAUSED:
                return
            command, events = self._answer(data, run_id)
            claim = len(self.runner.history(run_id)) + 1
            outcome = self.runner.resume(run_id, command)
            self._record_all(run_id, events, claim)
            self._runs[run_id].outcome = outcome

    @rule()
    def reopen(self) -> None:
        """A restart: a new Runner on a new handle; live generators are gone."""
        self.runner = self._open()

    # --- invariants ---------------------------------------------------------------

    @invariant()
    def history_is_linear(self) -> None:
        for run_id, model in self._runs.items():
            history = self.runner.history(run_id)
            seqs = [m.seq for m in history]
            if seqs != list(range(1, len(history) + 1)):
                msg = f"run {run_id!r}: checkpoint seqs are {seqs}, not 1, 2, 3, ..."
                raise AssertionError(msg)
            if history[: len(model.history)] != model.history:
                msg = (
                    f"run {run_id!r}: its history was rewritten:\n  before {model.history!r}\n"
                    f"  now    {history!r}"
                )
                raise AssertionError(msg)
            model.history = history

    @invariant()
    def state_agrees_with_the_last_outcome(self) -> None:
        for run_id, model in self._runs.items():
            info = self.runner.state(run_id)
            outcome = model.outcome
            if isinstance(outcome, Done):
                _expect(run_id, info.status is Status.DONE, f"status {info.status} after Done")
                _expect(run_id, info.values == outcome.state, "state().values differ from Done")
            elif isinstance(outcome, Paused):
                _expect(run_id, info.status is Status.PAUSED, f"status {info.status} after Paused")
                _expect(
                    run_id,
                    info.interrupts == outcome.interrupts,
                    f"state().interrupts {info.interrupts!r} differ from {outcome.interrupts!r}",
                )
            _expect(run_id, info.status is not Status.RUNNING, "running after a command returned")

    @invariant()
    def finished_runs_match_the_model(self) -> None:
        for run_id, model in self._runs.items():
            info = self.runner.state(run_id)
            if info.status is not Status.DONE:
                continue
            expected = self.expected_values(model.trace)
            if expected is None:
                continue
            diff = diff_states(expected, info.values)
            if diff:
                msg = f"run {run_id!r} finished unlike the model ({model.trace!r}):\n{diff}"
                raise AssertionError(msg)


def _expect(run_id: str, ok: bool, what: str) -> None:
    if not ok:
        msg = f"run {run_id!r}: {what}"
        raise AssertionError(msg)
