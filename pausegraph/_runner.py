"""Runner: starts, resumes, inspects and forks runs; the only part that stores.

A run moves from checkpoint to checkpoint. Each checkpoint records ``next``,
what the run does from there (see ``_records.Next``), so any process that
loads the latest checkpoint knows how to go on. ``_drive`` is that loop:
check breakpoints, run a layer with ``_scheduler``, then save either the
layer's checkpoint or a pause.

Every command first *claims* the run by saving one checkpoint (``resume``,
``update``, ``done``), conditionally on the seq it read. A racing process
fails that save with ``ConflictError`` before any step code of its own runs.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from ._channels import Channels, accept_writes
from ._commands import (
    After,
    Before,
    Command,
    Continue,
    Done,
    DynamicInterrupt,
    Goto,
    Outcome,
    Paused,
    Resume,
    RunInfo,
    Status,
    Update,
    pending_of,
    status_of,
)
from ._graph import Graph
from ._records import (
    Checkpoint,
    CheckpointMeta,
    FinishedStep,
    JournalEntry,
    Next,
    PauseKind,
    PauseRecord,
    SuspendedStep,
)
from ._scheduler import LayerResult, finish_layer, run_layer
from ._trampoline import Trampoline
from ._values import freeze, normalize, same, thaw
from .checkpointers import Checkpointer, MemoryCheckpointer
from .errors import CheckpointError, ConflictError, GraphError, ResumeError

_MAX_HELD = 1024  # paused runs whose live generators a Runner keeps


@attrs.frozen
class _Held:
    """A pause this Runner saved, kept so that resuming it needs no reload.

    ``checkpoint`` is the pause checkpoint as saved (its values are read-only
    and nothing changed them since); ``steps`` are the live generators of
    its suspended steps. It is used only while the store's history still
    ends with it (``list``, which reads no values); if another process moves
    the run on after that look, the claim's conditional save fails and the
    Runner decides again on what the store holds.
    """

    checkpoint: Checkpoint
    steps: dict[str, Trampoline]


class _StaleHeld(Exception):
    """The held pause was not the run's latest checkpoint any more."""


@attrs.define
class _Cursor:
    """Where a run stands inside one call: the latest saved checkpoint and the values."""

    run_id: str
    seq: int
    super_step: int
    next: Next
    pause: PauseRecord | None
    channels: Channels
    epoch_base: int
    # built from a held pause: its first save may find the run moved on
    held: _Held | None = None
    # live generators of the suspended steps, for finishing an interrupted layer
    hot: dict[str, Trampoline] = attrs.field(factory=dict)


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
    ``interrupt_after`` step has been applied.

    A ``Runner`` keeps the generators of steps suspended at an interrupt, so
    that resuming in the same process just sends the answer; any other
    ``Runner`` (another process, a restart) replays the steps from their
    journal instead, with the same outcome.
    """

    def __init__(
        self,
        graph: Graph,
        checkpointer: Checkpointer | None = None,
        *,
        interrupt_before: Iterable[str] = (),
        interrupt_after: Iterable[str] = (),
    ) -> None:
        if not isinstance(graph, Graph):
            msg = f"Runner(graph, ...) takes a Graph, got {type(graph).__name__} {graph!r}"
            raise GraphError(msg)
        self.graph = graph
        self._workflow = graph.name
        self._layers = graph.freeze()
        self.checkpointer: Checkpointer = (
            MemoryCheckpointer() if checkpointer is None else checkpointer
        )
        self._layer_of = {step: k for k, layer in enumerate(self._layers) for step in layer}
        self._before = self._breakpoints("interrupt_before", interrupt_before)
        self._after = self._breakpoints("interrupt_after", interrupt_after)
        self._structure = graph.structure()
        # run id -> the pause this Runner last saved for it (see _Held)
        self._held: dict[str, _Held] = {}

    def __repr__(self) -> str:
        return f"<Runner {self._workflow!r} on {self.checkpointer!r}>"

    def _breakpoints(self, name: str, steps: Iterable[str]) -> list[tuple[str, ...]]:
        if isinstance(steps, str):
            steps = (steps,)
        wanted = set(steps)
        unknown = sorted(wanted - set(self._layer_of))
        if unknown:
            msg = (
                f"{name} names unknown step {unknown[0]!r}; graph {self._workflow!r} has "
                f"{', '.join(map(repr, self._layer_of))}"
            )
            raise GraphError(msg)
        return [tuple(s for s in layer if s in wanted) for layer in self._layers]

    # --- public API ---------------------------------------------------------

    def run(self, run_id: str, input: Mapping[str, Any] | None = None) -> Outcome:
        """Start run ``run_id`` with ``input`` written as super-step 0, or recover it.

        On an existing run: an equal ``input`` (or none) is ignored; a run
        whose process died goes on from its latest checkpoint; a finished run
        returns its ``Done`` again without running a step. A paused run is a
        ``ResumeError``: use ``resume``.
        """
        _check_run_id(run_id)
        latest = self.checkpointer.latest(self._workflow, run_id)
        if latest is None:
            return self._start(run_id, input)
        self._check_structure(latest)
        if input is not None:
            given = self._edits(input, "the input")
            first = self.checkpointer.load(self._workflow, run_id, 1)
            recorded: Any = {} if first is None or first.input is None else first.input
            if not same(given, recorded):
                msg = (
                    f"run {run_id!r} already exists with input {recorded!r}, not {given!r}: "
                    "call run(run_id) to recover it, or use a new run id"
                )
                raise ResumeError(msg)
        status = self._status(latest)
        if status is Status.DONE:
            return Done(thaw(latest.values), latest.super_step)
        if status is Status.PAUSED:
            outcome = self._paused(latest)
            msg = (
                f"run {run_id!r} is paused ({_describe(outcome)}): "
                "use resume(run_id, command) to go on"
            )
            raise ResumeError(msg)
        cursor = self._cursor(latest)
        self._save(cursor, "resume", latest.super_step, latest.next, latest.pause, ())
        return self._drive(cursor)

    def resume(self, run_id: str, command: Command) -> Outcome:
        """Go on with a paused run: ``Continue``, ``Resume``, ``Update`` or ``Goto``.

        The command is checked, then claimed by saving one checkpoint, and
        only then does step code run; if another process claimed the run
        first this raises ``ConflictError`` and runs nothing.
        """
        _check_run_id(run_id)
        held = self._held.pop(run_id, None)
        if held is not None and self._still_latest(held.checkpoint):
            try:
                return self._command(held.checkpoint, command, held)
            except (_StaleHeld, ResumeError):
                pass  # decided on an old pause: decide again on what the store holds
        latest = self.checkpointer.latest(self._workflow, run_id)
        if latest is None:
            raise ResumeError(self._no_run(run_id))
        self._check_structure(latest)
        return self._command(latest, command, None)

    def _command(self, latest: Checkpoint, command: Command, held: _Held | None) -> Outcome:
        run_id = latest.run_id
        if type(command) is Goto:
            return self._goto(latest, command, held)
        if not isinstance(command, (Continue, Resume, Update)):
            msg = (
                f"resume() takes Continue(), Resume(value), Update(edits) or Goto(step_id), "
                f"got {command!r}"
            )
            raise ResumeError(msg)
        status = self._status(latest)
        if status is Status.DONE:
            msg = (
                f"run {run_id!r} is finished: {command!r} has nothing to go on with; "
                "Goto(step_id) re-opens it"
            )
            raise ResumeError(msg)
        if status is Status.RUNNING:
            # another resumer claimed the pause first (or its process died since)
            msg = (
                f"run {run_id!r} is not paused: another process claimed it and is running it. "
                f"If that process died, run({run_id!r}) recovers the run; resume it if it pauses"
            )
            raise ConflictError(msg)
        pause = latest.pause
        assert pause is not None
        if type(command) is Update:
            return self._update(latest, pause, command, held)
        if type(command) is Continue:
            if pause.kind is PauseKind.INTERRUPT:
                msg = (
                    f"run {run_id!r} waits for an answer to interrupt(s) "
                    f"{', '.join(_pending_ids(pause))}: use Resume(value) or Resume(answers=...)"
                )
                raise ResumeError(msg)
            return self._continue(latest, pause, held)
        assert isinstance(command, Resume)
        return self._answer(latest, pause, command, held)

    def state(self, run_id: str) -> RunInfo:
        """The latest values, status, super-step and pending interrupts of a run."""
        _check_run_id(run_id)
        latest = self.checkpointer.latest(self._workflow, run_id)
        if latest is None:
            raise ResumeError(self._no_run(run_id))
        status = self._status(latest)
        return RunInfo(thaw(latest.values), status, latest.super_step, pending_of(latest.pause))

    def history(self, run_id: str) -> list[CheckpointMeta]:
        """Every checkpoint of a run, oldest first."""
        _check_run_id(run_id)
        metas = self.checkpointer.list(self._workflow, run_id)
        if not metas:
            raise ResumeError(self._no_run(run_id))
        return metas

    def fork(self, run_id: str, seq: int, edits: Mapping[str, Any] | None = None) -> str:
        """Start a new run from checkpoint ``seq`` of ``run_id``; return its id.

        ``edits`` go through the reducers. On a checkpoint with pending
        interrupts they are kept like ``Update`` edits, so the suspended
        steps replay on the state they first saw. The source is untouched.
        """
        _check_run_id(run_id)
        if type(seq) is not int:
            msg = f"fork(run_id, seq) takes a checkpoint seq (an int from history()), got {seq!r}"
            raise ResumeError(msg)
        source = self.checkpointer.load(self._workflow, run_id, seq)
        if source is None:
            if not self.checkpointer.list(self._workflow, run_id):
                raise ResumeError(self._no_run(run_id))
            count = len(self.checkpointer.list(self._workflow, run_id))
            msg = f"run {run_id!r} has no checkpoint seq {seq!r}; its checkpoints are 1 to {count}"
            raise ResumeError(msg)
        self._check_structure(source)
        first = source if source.seq == 1 else self.checkpointer.load(self._workflow, run_id, 1)
        new_edits = self._edits(edits, "fork(edits=...)") if edits else None
        channels = Channels(self.graph.channels, source.values)
        pause = source.pause
        if new_edits:
            if pause is not None and pause.kind is PauseKind.INTERRUPT:
                pause = attrs.evolve(pause, edits=(*pause.edits, new_edits))
            else:
                channels.apply([new_edits])
        new_id = f"{run_id}.fork{seq}.{uuid.uuid4().hex[:8]}"
        checkpoint = Checkpoint(
            workflow_id=self._workflow,
            run_id=new_id,
            seq=1,
            super_step=source.super_step,
            label=f"fork-of:{run_id}@{seq}",
            timestamp_ms=time.time_ns() // 1_000_000,
            values=dict(channels.values),
            next=source.next,
            structure=self._structure,
            pause=pause,
            input=None if first is None else first.input,
            epoch_base=source.epoch_base + source.seq,
        )
        self.checkpointer.save(checkpoint)
        return new_id

    # --- starting and commands ----------------------------------------------

    def _start(self, run_id: str, input: Mapping[str, Any] | None) -> Outcome:
        given = self._edits(input, "the input") if input is not None else {}
        channels = Channels.fresh(self.graph.channels)
        changes = channels.apply([given]) if given else []
        cursor = _Cursor(run_id, 0, 0, Next.LAYER, None, channels, 0)
        self._save(cursor, "input", 0, Next.LAYER, None, changes, input=given)
        return self._drive(cursor)

    def _continue(self, latest: Checkpoint, pause: PauseRecord, held: _Held | None) -> Outcome:
        cursor = self._cursor(latest, held)
        self._go_past(cursor, pause, "resume", ())
        return self._drive(cursor)

    def _go_past(
        self, cursor: _Cursor, pause: PauseRecord, label: str, changes: Iterable[Any]
    ) -> None:
        """Save the claim that takes a run past the breakpoint it is paused at."""
        k = pause.layer
        if pause.kind is PauseKind.BEFORE:
            self._save(cursor, label, k, Next.LAYER_PAST_BEFORE, None, changes)
        elif k + 1 == len(self._layers):
            self._save(
                cursor, "done" if label == "resume" else label, k + 1, Next.DONE, None, changes
            )
        else:
            self._save(cursor, label, k + 1, Next.LAYER, None, changes)

    def _update(
        self, latest: Checkpoint, pause: PauseRecord, command: Update, held: _Held | None
    ) -> Outcome:
        edits = self._edits(command.edits, "Update(edits)")
        cursor = self._cursor(latest, held)
        if pause.kind is PauseKind.INTERRUPT:
            kept = attrs.evolve(pause, edits=(*pause.edits, edits))
            saved = self._save(cursor, "update", latest.super_step, Next.WAIT, kept, ())
            self._hold(saved, cursor.hot)
            return self._paused_outcome(kept)
        changes = cursor.channels.apply([edits])
        self._go_past(cursor, pause, "update", changes)
        return self._drive(cursor)

    def _answer(
        self, latest: Checkpoint, pause: PauseRecord, command: Resume, held: _Held | None
    ) -> Outcome:
        run_id = latest.run_id
        if pause.kind is not PauseKind.INTERRUPT:
            msg = (
                f"run {run_id!r} is paused at a breakpoint "
                f"({_describe(self._paused_outcome(pause))}), "
                "where nothing waits for a value: use Continue() or Update(edits)"
            )
            raise ResumeError(msg)
        answers = self._answers(run_id, pause, command)
        edits = self._edits(command.update, "Resume(update=...)") if command.update else None
        suspended = tuple(
            SuspendedStep(s.step_id, (*s.journal[:-1], _answered(s.pending, answers[s.pending.id])))
            if s.pending.id in answers
            else s
            for s in pause.suspended
        )
        claimed = attrs.evolve(
            pause,
            suspended=suspended,
            edits=(*pause.edits, edits) if edits else pause.edits,
            answered=(*pause.answered, *answers),
        )
        cursor = self._cursor(latest, held)
        self._save(cursor, "resume", pause.layer, Next.REPLAY, claimed, ())
        return self._drive(cursor)

    def _still_latest(self, checkpoint: Checkpoint) -> bool:
        """Whether the store's latest checkpoint of the run is this one (a cheap look)."""
        metas = self.checkpointer.list(self._workflow, checkpoint.run_id)
        return bool(metas) and metas[-1] == checkpoint.meta

    def _hold(self, checkpoint: Checkpoint, steps: dict[str, Trampoline]) -> None:
        """Keep a pause just saved, so that resuming it here needs no reload."""
        held = self._held
        held.pop(checkpoint.run_id, None)
        if len(held) >= _MAX_HELD:  # forget the pause held longest
            del held[next(iter(held))]
        held[checkpoint.run_id] = _Held(checkpoint, steps)

    def _answers(self, run_id: str, pause: PauseRecord, command: Resume) -> dict[str, Any]:
        pending = _pending_ids(pause)
        if command.has_value == (command.answers is not None):
            msg = (
                "give Resume exactly one of a value (Resume(value)) or answers by interrupt id "
                f"(Resume(answers={{id: value}})); run {run_id!r} waits on {', '.join(pending)}"
            )
            raise ResumeError(msg)
        if command.has_value:
            if len(pending) != 1:
                msg = (
                    f"run {run_id!r} has {len(pending)} pending interrupts ({', '.join(pending)}): "
                    "answer them by id with Resume(answers={id: value, ...})"
                )
                raise ResumeError(msg)
            given = {pending[0]: command.value}
        else:
            assert command.answers is not None
            given = command.answers
            if not given:
                msg = (
                    f"Resume(answers={{}}) answers nothing; "
                    f"run {run_id!r} waits on {', '.join(pending)}"
                )
                raise ResumeError(msg)
        for interrupt_id in given:
            if interrupt_id in pending:
                continue
            state = "was already answered" if interrupt_id in pause.answered else "is unknown"
            msg = (
                f"interrupt id {interrupt_id!r} {state} in run {run_id!r}; "
                f"pending: {', '.join(pending)}"
            )
            raise ResumeError(msg)
        return {
            i: normalize(v, lambda i=i: f"the answer to interrupt {i!r}")  # type: ignore[misc]
            for i, v in given.items()
        }

    def _goto(self, latest: Checkpoint, command: Goto, held: _Held | None) -> Outcome:
        target = command.step_id
        if target not in self._layer_of:
            msg = (
                f"Goto({target!r}): graph {self._workflow!r} has no such step; "
                f"its steps are {', '.join(map(repr, self._layer_of))}"
            )
            raise ResumeError(msg)
        update = self._edits(command.update, "Goto(update=...)") if command.update else None
        cursor = self._cursor(latest, held)
        cursor.hot = {}  # the pending interrupts are dropped with their generators
        pause = latest.pause
        writes: list[Mapping[str, Any]] = []
        if pause is not None and pause.kind is PauseKind.INTERRUPT:
            # the layer's own writes are dropped: it runs again
            writes.extend(freeze(edits) for edits in pause.edits)
        if update:
            writes.append(update)
        changes = cursor.channels.apply(writes) if writes else []
        self._save(cursor, "resume", self._layer_of[target], Next.LAYER_PAST_BEFORE, None, changes)
        return self._drive(cursor)

    # --- the loop -------------------------------------------------------------

    def _drive(self, cursor: _Cursor) -> Outcome:
        """Run layers from the cursor until the run pauses or is done."""
        layers = self._layers
        last = len(layers)
        graph = self.graph
        while True:
            step = cursor.next
            if step is Next.DONE:
                return Done(thaw(cursor.channels.values), cursor.super_step)
            if step is Next.AFTER:
                k = cursor.super_step - 1
                hits = self._after[k]
                if hits:
                    pause = PauseRecord(PauseKind.AFTER, k, hits)
                    self._hold(
                        self._save(cursor, f"after:{hits[0]}", k + 1, Next.WAIT, pause, ()), {}
                    )
                    return Paused(k + 1, After(hits[0]))
                cursor.next = Next.DONE if cursor.super_step == last else Next.LAYER
                continue
            claimed = None
            if step is Next.REPLAY:
                claimed = cursor.pause
                assert claimed is not None
                k, epoch = claimed.layer, claimed.epoch
                hot, cursor.hot = cursor.hot, {}
                result = finish_layer(graph, layers[k], cursor.channels.values, claimed, hot)
            elif step is Next.LAYER or step is Next.LAYER_PAST_BEFORE:
                k = cursor.super_step
                hits = self._before[k]
                if hits and step is Next.LAYER:
                    pause = PauseRecord(PauseKind.BEFORE, k, hits)
                    self._hold(
                        self._save(cursor, f"before:{hits[0]}", k + 1, Next.WAIT, pause, ()), {}
                    )
                    return Paused(k + 1, Before(hits[0]))
                epoch = cursor.epoch_base + cursor.seq
                result = run_layer(graph, layers[k], cursor.channels.values, epoch)
            else:  # pragma: no cover - WAIT never reaches the loop
                raise AssertionError(step)
            if result.suspended:
                return self._pause_layer(cursor, k, epoch, result, claimed)
            edits = [freeze(e) for e in claimed.edits] if claimed is not None else []
            changes = cursor.channels.apply([*result.finished.values(), *edits])
            follow = Next.AFTER if self._after[k] else Next.DONE if k + 1 == last else Next.LAYER
            self._save(cursor, f"layer:{k + 1}", k + 1, follow, None, changes)

    def _pause_layer(
        self,
        cursor: _Cursor,
        k: int,
        epoch: int,
        result: LayerResult,
        claimed: PauseRecord | None,
    ) -> Paused:
        """Save the pause of a layer with suspended steps (carrying a claim's edits)."""
        record = PauseRecord(
            PauseKind.INTERRUPT,
            k,
            (),
            epoch,
            tuple(FinishedStep(s, dict(w)) for s, w in result.finished.items()),
            result.records(),
            claimed.edits if claimed is not None else (),
            claimed.answered if claimed is not None else (),
        )
        first = next(iter(result.suspended))
        saved = self._save(cursor, f"interrupt:{first}", k + 1, Next.WAIT, record, ())
        live = {s: t for s, t in result.suspended.items() if isinstance(t, Trampoline)}
        self._hold(saved, live)
        return self._paused_outcome(record)

    # --- helpers --------------------------------------------------------------

    def _save(
        self,
        cursor: _Cursor,
        label: str,
        super_step: int,
        next: Next,
        pause: PauseRecord | None,
        changes: Iterable[Any],
        *,
        input: dict[str, Any] | None = None,
    ) -> Checkpoint:
        """Save the run's next checkpoint (conditionally: see ``Checkpointer.save``)."""
        seq = cursor.seq + 1
        checkpoint = Checkpoint(
            self._workflow,
            cursor.run_id,
            seq,
            super_step,
            label,
            time.time_ns() // 1_000_000,
            cursor.channels.values,
            next,
            self._structure,
            pause,
            tuple(changes),
            input,
            cursor.epoch_base,
        )
        try:
            self.checkpointer.save(checkpoint)
        except CheckpointError:
            # a claim built on a held pause: the run moved on (ConflictError) or
            # is not what it was (a seq gap: it was deleted and started again)
            if cursor.held is not None:
                raise _StaleHeld from None
            raise
        cursor.held = None
        cursor.seq, cursor.super_step, cursor.next, cursor.pause = seq, super_step, next, pause
        return checkpoint

    def _cursor(self, checkpoint: Checkpoint, held: _Held | None = None) -> _Cursor:
        return _Cursor(
            checkpoint.run_id,
            checkpoint.seq,
            checkpoint.super_step,
            checkpoint.next,
            checkpoint.pause,
            Channels(self.graph.channels, checkpoint.values),
            checkpoint.epoch_base,
            held,
            {} if held is None else held.steps,
        )

    def _status(self, checkpoint: Checkpoint) -> Status:
        layers = len(self._layers)
        return status_of(checkpoint, layers=layers, after_on_last=bool(self._after[layers - 1]))

    def _paused(self, checkpoint: Checkpoint) -> Paused:
        assert checkpoint.pause is not None
        return self._paused_outcome(checkpoint.pause)

    @staticmethod
    def _paused_outcome(pause: PauseRecord) -> Paused:
        if pause.kind is PauseKind.BEFORE:
            return Paused(pause.layer + 1, Before(pause.step_ids[0]))
        if pause.kind is PauseKind.AFTER:
            return Paused(pause.layer + 1, After(pause.step_ids[0]))
        interrupts = pending_of(pause)
        first = interrupts[0]
        return Paused(pause.layer + 1, DynamicInterrupt(first.step_id), first.payload, interrupts)

    def _edits(self, edits: Mapping[str, Any] | None, what: str) -> dict[str, Any]:
        """Check that ``edits`` name channels and fit them; return them msgpack-normalised."""
        if not isinstance(edits, Mapping):
            msg = f"{what} must be a dict of channel values, got {type(edits).__name__} {edits!r}"
            raise GraphError(msg)
        return accept_writes(self.graph.channels, edits, what, GraphError, verb="names")

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


def _check_run_id(run_id: object) -> None:
    if not isinstance(run_id, str) or not run_id:
        msg = f"a run id is a non-empty string, got {run_id!r}"
        raise ResumeError(msg)


def _answered(entry: JournalEntry, value: Any) -> JournalEntry:
    return attrs.evolve(entry, answered=True, value=value)


def _pending_ids(pause: PauseRecord) -> list[str]:
    return [s.pending.id for s in pause.suspended if not s.pending.answered]


def _describe(outcome: Paused) -> str:
    reason = outcome.reason
    if isinstance(reason, DynamicInterrupt):
        return f"interrupts pending: {', '.join(i.id for i in outcome.interrupts)}"
    return f"{type(reason).__name__}({reason.step_id!r}) at super-step {outcome.super_step}"
