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
5. A step that yields a new ``Effect`` has it called, its entry recorded in
   its journal and saved (the caller's ``save`` hook), and only then gets
   the result.
6. A layer is *complete* when every step has finished. Only then are the
   writes folded through the reducers, in step order, and checkpointed.
7. A layer with suspended steps pauses the run. The finished steps' writes
   are kept and never run again; a suspended step continues when its
   interrupt is answered, either by ``send`` on the live generator or by
   calling the step again and replaying its journal.
8. A step that fails ends the layer: the steps not finished are not advanced
   further (their live generators are closed), and what the layer did so far
   is kept for a retry.
9. Conditional edges: before a layer runs, ``skipped_in`` asks the
   predicates of the edges into it on the state it reads; the steps it
   skips do not run at all. The caller saves that choice with the layer and
   never asks again for it (only a predicate that raised is asked again).
10. A step is a tree of branches (``All``): each advances until it finishes,
   suspends or waits on an effect; the effects waiting at once are called
   (one by one, or submitted to an executor together), recorded in step
   order then branch order, saved, and only then sent in. With an executor
   the steps of the layer take these rounds together.

This module calls step code and effect functions and nothing else. It never
encodes, stores, or decides what the run does next; ``_runner`` does.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from typing import Any, NoReturn

from ._channels import accept_writes, accepted_edits
from ._graph import Graph
from ._records import Entry, Failure, Progress
from ._trampoline import (
    FINISHED,
    SUSPENDED,
    Trampoline,
    Waits,
    call_effect,
    effect_entry,
    no_clock,
    raised_by,
    raised_entry,
    sent_back,
    start,
    step_failed,
)
from ._values import freeze, named, said
from ._values import shown as shown_value
from .errors import EffectError, NondeterminismError, SerializationError, StepError


def skipped_in(
    graph: Graph,
    steps: tuple[str, ...],
    state: Mapping[str, Any],
    skipped: tuple[str, ...],
    forced: tuple[str, ...] = (),
) -> tuple[str, ...]:
    """The steps of a layer that conditional edges skip, asking the predicates on ``state``.

    A step runs if it has no incoming edge, or one from a step that ran
    (not in ``skipped``) with no predicate or a true one; a ``forced`` step
    (a ``Goto`` target) always runs. Every predicate of an edge from a step
    that ran is asked, in edge order, even once an edge lets the step run:
    whether a predicate that raises fails the run never depends on the order
    the edges were added. A predicate that raises is a ``StepError`` of the
    destination step that chains it (see ``PredicateFailed``).
    """
    when = graph.when
    if not when and not skipped:
        return ()
    gone = set(skipped)
    preds = graph.preds
    shown = shown_state(state)
    out = []
    for step_id in steps:
        sources = preds[step_id]
        if not sources or step_id in forced:
            continue
        runs = False
        for src in sources:
            if src in gone:
                continue
            predicate = when.get((src, step_id))
            if predicate is None:
                runs = True
                continue
            try:
                runs = bool(predicate(state)) or runs
                if changed_behind(state, len(shown), "__builtins__" in shown):
                    raise undone(state, shown)
            except (Exception, SystemExit) as exc:
                name = getattr(predicate, "__qualname__", None) or repr(predicate)
                msg = f"the condition {name} of edge {src!r} -> {step_id!r} raised {named(exc)}"
                error = StepError(msg)
                error.__cause__ = exc
                raise PredicateFailed(step_id, error) from exc
        if not runs:
            out.append(step_id)
    return tuple(out)


_NOTHING_SEEN: Mapping[str, Any] = {}

Shown = dict[str, Any]
"""A state's channels and values as the engine gave it to steps (``shown_state``)."""


def shown_state(state: Mapping[str, Any]) -> Shown:
    """A shallow copy of ``state``: the values themselves, not copies (cheap)."""
    return dict.copy(state) if isinstance(state, dict) else dict(state)


def changed_behind(state: Mapping[str, Any], width: int, builtins: bool) -> bool:
    """Whether C code changed ``state`` behind its methods.

    ``width``: how many keys it had when given; ``builtins``: whether one of
    them was ``__builtins__`` (a channel of that name).

    The state refuses every change made through its methods, but C code can
    write to a dict directly: ``eval``/``exec`` given the state as their
    globals add ``__builtins__`` to it, whatever else they assign or delete
    there (``global`` statements). So a ``len`` and one lookup per step tell
    them, at the cost of nothing. (Not seen: a change inside a value, such
    as ``heapq`` on a list, guide §1; nor, in a graph with a channel named
    ``__builtins__``, a change that keeps the number of channels.)
    """
    return len(state) != width or ("__builtins__" in state) is not builtins


def undone(state: Mapping[str, Any], shown: Shown) -> TypeError:
    """Put ``shown`` back into ``state`` (changed by C code) and say what was changed."""
    added = [k for k in state if k not in shown]
    changed = [k for k, v in shown.items() if k not in state or state[k] is not v]
    assert isinstance(state, dict)  # the engine's state is a FrozenDict
    dict.clear(state)
    dict.update(state, shown)
    what = "; ".join(
        f"{how} {', '.join(map(shown_value, names))}"
        for how, names in (("added", added), ("changed or removed", changed))
        if names
    )
    return changed_error(what)


def changed_error(what: str) -> TypeError:
    msg = (
        f"the state is read-only, and C code changed it behind its methods ({what}); "
        "eval and exec given the state as their globals do that: give them a copy of it, "
        "dict(state), as globals instead"
    )
    return TypeError(msg)


class PredicateFailed(Exception):
    """The predicate of an edge into ``step_id`` raised: ``error`` is its ``StepError``."""

    def __init__(self, step_id: str, error: StepError) -> None:
        super().__init__(str(error))
        self.step_id = step_id
        self.error = error


class LayerFailed(Exception):
    """A step of the layer failed; ``progress`` is what the layer did until then."""

    def __init__(
        self, error: Exception, progress: Progress, failure: Failure, raised_at: int | None = None
    ) -> None:
        super().__init__(str(error))
        self.error = error
        self.progress = progress
        self.failure = failure
        self.raised_at = raised_at  # see ``Failed.raised_at``


#: numbers each submission to an executor: a process's own prefix, then a count
_submissions = map("{}-{}".format, itertools.repeat(uuid.uuid4().hex), itertools.count())


def call_once(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any], _: str
) -> Any:
    """An effect's call as an executor runs it: ``fn(*args, **kwargs)``.

    The last argument, unused, makes each submission a task of its own: a
    Dask cluster's executor takes tasks as pure by default, so two effects
    of the same function and arguments would be called once, and a failed
    one's error kept for its retry; and the effect's keyword arguments stay
    the function's (Dask's ``submit`` would read ``key=``, ``retries=``,
    ``pure=`` ... as its own).

    The result comes back checked as ``effect_entry`` would check it
    (``sent_back``): a result no store can keep, as why not.
    """
    return sent_back(fn(*args, **kwargs))


def failure_of(step_id: str, error: BaseException) -> Failure:
    """The ``Failure`` a run records for ``error`` raised by ``step_id``.

    SPEC, Failures: ``error_type`` is the class of the exception the step
    raised, of the cause for a ``StepError`` that chains one (the engine's
    own, which chains what the step raised, and one the step raised from
    another exception, followed down the chain), and ``"EffectError"`` for
    an effect error (a subclass included). The message is what the step
    raised says (``raise StepError("no stock") from KeyError("sku")``:
    ``KeyError``, ``"no stock"``); for an error the engine made about the
    step (a reducer or a predicate that raised), the exception its type names.
    """
    shown, seen = error, {id(error)}
    while (
        isinstance(shown, StepError)
        and not isinstance(shown, EffectError)
        and shown.__cause__ is not None
        and id(shown.__cause__) not in seen  # a chain made into a loop by hand ends there
    ):
        shown = shown.__cause__
        seen.add(id(shown))
    kind = "EffectError" if isinstance(shown, EffectError) else type(shown).__name__
    raised = raised_by(error)
    message = said(raised) if raised is not error else ""
    return Failure(step_id, kind, message or said(shown))  # the cause's if the step said nothing


def _executor_refused(step_id: str, cause: Exception) -> StepError:
    msg = (
        f"the executor refused an effect of step {step_id!r} "
        f"({named(cause)}); the effects it ran are saved, and a "
        "retry calls only those it did not run"
    )
    error = StepError(msg)
    error.__cause__ = cause
    return error


class LayerRun:
    """One layer under way: where each of its steps stands.

    ``progress`` is the layer's record (from a claim, an effect record, a
    pause or a failure); ``live`` holds the suspended generators this
    process still has (a hot resume), by step id. Steps with a journal and
    no live generator are called again and replay it.
    """

    def __init__(
        self,
        graph: Graph,
        steps: tuple[str, ...],
        state: Mapping[str, Any],
        layer: int,
        epoch: int,
        progress: Progress | None = None,
        live: Mapping[str, Trampoline] | None = None,
        clock: Callable[[], int] = no_clock,
        shown: Shown | None = None,
    ) -> None:
        self.graph = graph
        self.clock = clock
        self.timeouts: tuple[str, ...] = ()
        self.steps = steps
        self.state = state
        # the state as given, to tell and undo a change C code made to it (``changed_behind``);
        # the engine lets go of it with the state, before the layer's writes are folded.
        # ``shown``: that copy, taken by ``run_alone`` before it called the step
        self.shown: Shown | None = shown_state(state) if shown is None else shown
        self.width = len(self.shown)
        self.builtins = "__builtins__" in self.shown
        self.layer = layer
        self.epoch = epoch
        self.answers: dict[str, Any] = {}
        self.finished: dict[str, Mapping[str, Any]] = {}
        self.journals: dict[str, list[Entry]] = {}
        # the journals of steps that finished in this process, kept aside: a reducer that
        # refuses a step's writes makes that step unfinished again (``Runner._reducer_failed``)
        self.done_journals: dict[str, list[Entry]] = {}
        self.finished_before: frozenset[str] = frozenset()
        self.live: dict[str, Trampoline] = {}
        self.edits: tuple[dict[str, Any], ...] = ()  # as kept; as the reducers fold them:
        self.accepted: tuple[dict[str, Any], ...] = ()
        self.claimed: tuple[str, ...] = ()
        self.skipped: tuple[str, ...] = ()
        self.forced: tuple[str, ...] = ()
        if progress is None:
            return  # a layer from its start
        self.skipped = progress.skipped
        self.forced = progress.forced
        if progress.edits:  # edits kept at a pause may come from a store: freeze them too
            self.edits = tuple(freeze(e) for e in progress.edits)
            channels = graph.channels
            self.accepted = tuple(accepted_edits(channels, e) for e in self.edits)
        self.claimed = progress.claimed
        self.answers = dict(progress.answers)
        self.timeouts = progress.timeouts
        if progress.finished:  # a finished step's writes may come from a store: freeze them
            self.finished = {s: freeze(w) for s, w in progress.finished.items()}
        # steps that finished in an earlier claim: their journals were not kept
        self.finished_before = frozenset(progress.finished)
        if progress.journals:
            self.journals = {s: list(j) for s, j in progress.journals.items()}
        for step_id, trampoline in (live or {}).items():
            if len(trampoline.journal) == len(self.journals.get(step_id, ())):
                trampoline.answers = self.answers
                trampoline.timeouts = self.timeouts
                self.journals[step_id] = trampoline.journal
                self.live[step_id] = trampoline
            else:
                trampoline.close()

    def progress(self) -> Progress:
        """The layer's record as it stands."""
        finished = self.finished
        return Progress(
            self.layer,
            self.epoch,
            {s: finished[s] for s in self.steps if s in finished},  # type: ignore[misc]
            {s: tuple(j) for s, j in self.journals.items() if s not in finished},
            dict(self.answers),
            self.edits,
            self.claimed,
            self.timeouts,
            self.skipped,
            True,
            self.forced,
        )

    def writes(self) -> list[Mapping[str, Any]]:
        """The finished steps' writes in step order, then the kept edits."""
        finished = self.finished
        writes = [finished[s] for s in self.steps]
        if self.accepted:
            writes += self.accepted
        return writes

    def suspended(self) -> list[str]:
        """The steps waiting on an interrupt, in step order."""
        return [s for s in self.steps if s not in self.finished]

    def run(
        self,
        save: Callable[[LayerRun, str], None],
        before_effect: Callable[[], None],
        executor: Executor | None = None,
    ) -> bool:
        """Advance every step; ``True`` if the layer is complete.

        ``before_effect()`` is called before effects' functions (to make
        what was saved durable first); ``save(layer, step_id)`` after the
        effects a step waits on were called and recorded, before their
        results are sent in. Without ``executor`` each step runs in turn
        until it finishes or suspends, its effects called one by one; with
        one, every step advances until it waits, and the effects that wait
        together are submitted together (see ``_rounds``). Raises ``LayerFailed``.
        """
        if executor is not None:
            self._rounds(save, before_effect, executor)
            return len(self.finished) == len(self.steps)
        for step_id in self.steps:
            if step_id in self.finished:
                continue
            try:
                waits = self._advance(step_id)
                while waits:
                    trampoline = self.live[step_id]
                    for branch, effect in waits:
                        before_effect()
                        entry, error = call_effect(step_id, effect, branch.path)
                        trampoline.record(branch, entry, error)
                    # the effects that waited together are saved together: a replay then
                    # meets them as the live run did (saving each alone let a branch whose
                    # record was saved run ahead of a sibling's unsaved one on recovery,
                    # calling effects the live run never calls)
                    save(self, step_id)
                    waits = self._go_on(step_id, trampoline)
            except (StepError, NondeterminismError, SerializationError) as error:
                self._failed(step_id, error)
        return len(self.finished) == len(self.steps)

    def _rounds(
        self,
        save: Callable[[LayerRun, str], None],
        before_effect: Callable[[], None],
        executor: Executor,
    ) -> None:
        """Advance the steps in order until each waits; run the waiting effects together; repeat.

        The results are recorded in step order, then branch order, and
        saved before any is sent in, so the journals are those a run
        without an executor makes.
        """
        waiting: list[tuple[str, Waits]] = []
        for step_id in self.steps:
            if step_id in self.finished:
                continue
            try:
                waits = self._advance(step_id)
            except (StepError, NondeterminismError, SerializationError) as error:
                self._failed(step_id, error)
            if waits:
                waiting.append((step_id, waits))
        while waiting:
            before_effect()
            submitted = []
            refused: tuple[str, Exception] | None = None
            for step_id, waits in waiting:
                for branch, effect in waits:
                    try:
                        future = executor.submit(
                            call_once, effect.fn, effect.args, effect.kwargs, next(_submissions)
                        )
                    except Exception as not_run:  # a pool shut down: this function never ran
                        refused = refused or (step_id, not_run)
                        continue
                    submitted.append((step_id, branch, effect, future))
            for step_id, branch, effect, future in submitted:
                try:
                    result, exc = future.result(), None
                except (Exception, SystemExit) as raised:
                    result, exc = None, raised
                # a result msgpack refuses is recorded as an error too: the function ran
                entry, thrown = effect_entry(step_id, effect, branch.path, result, exc)
                self.live[step_id].record(branch, entry, thrown)
            save(self, waiting[0][0])
            if refused is not None:  # the effects that ran are saved; a retry calls the rest
                self._failed(refused[0], _executor_refused(*refused))
            going, waiting = waiting, []
            for step_id, _ in going:
                try:
                    waits = self._go_on(step_id, self.live[step_id])
                except (StepError, NondeterminismError, SerializationError) as error:
                    self._failed(step_id, error)
                if waits:
                    waiting.append((step_id, waits))

    def _failed(self, step_id: str, error: Exception) -> NoReturn:
        self.close()
        shown = self.shown  # a step that changed the state behind its methods, then raised:
        if shown is not None and changed_behind(self.state, self.width, self.builtins):
            undone(self.state, shown)  # its change is undone all the same
        entry = raised_entry(error)
        journal = self.journals.get(step_id, ()) if entry is not None else ()
        # -1: no effect error of this step's journal failed it (not even one with the same
        # message: ``_raised_at`` matches messages only for failures saved before this field)
        at = next((n for n, e in enumerate(journal) if e is entry), -1)
        raise LayerFailed(error, self.progress(), failure_of(step_id, error), at) from error

    def close(self) -> None:
        """Let every live generator go (the layer failed or is abandoned)."""
        live, self.live = self.live, {}
        for trampoline in live.values():
            trampoline.close()

    def take_live(self) -> dict[str, Trampoline]:
        """Hand over the live generators of the suspended steps (to hold for a hot resume)."""
        live, self.live = self.live, {}
        return live

    def _advance(self, step_id: str) -> Waits:
        """Start or go on with a step until it finishes, suspends or waits on effects."""
        trampoline = self.live.get(step_id) if self.live else None
        if trampoline is None:
            graph = self.graph
            journal = self.journals.get(step_id)
            started = start(
                step_id,
                graph.steps[step_id],
                self.state,
                [] if journal is None else journal,
                self.answers,
                self.epoch,
                graph.step_index[step_id],
                self.timeouts,
                self.clock,
            )
            state = self.state  # changed_behind(), inline: once per step
            if len(state) != self.width or ("__builtins__" in state) is not self.builtins:
                self._state_changed(step_id, state)
            if type(started) is not Trampoline:
                self._finish(step_id, started)  # type: ignore[arg-type]
                return []
            trampoline = started
            self.journals[step_id] = trampoline.journal
            self.live[step_id] = trampoline
        return self._go_on(step_id, trampoline)

    def _go_on(self, step_id: str, trampoline: Trampoline) -> Waits:
        status = trampoline.run()
        seen = trampoline.seen  # the state it was started on (a held pause's, when hot)
        if len(seen) != trampoline.seen_width or ("__builtins__" in seen) is not self.builtins:
            self._state_changed(step_id, seen)
        if status is FINISHED:
            trampoline.seen = _NOTHING_SEEN  # no longer holds what the layer will fold into
            del self.live[step_id]
            self._finish(step_id, trampoline.writes)
            return []
        if status is SUSPENDED:
            return []
        return status  # type: ignore[return-value]

    def _state_changed(self, step_id: str, seen: Mapping[str, Any]) -> NoReturn:
        """``StepError`` of ``step_id``, which changed the state ``seen`` behind its methods.

        The layer's own state is put back as it was given; a held pause's (a
        generator started in an earlier call) is no one else's, and the step
        fails all the same, as it fails when it replays cold.
        """
        if seen is self.state and self.shown is not None:
            exc = undone(self.state, self.shown)
        else:
            exc = changed_error("keys added, changed or removed")
        raise step_failed(step_id, exc) from exc

    def _finish(self, step_id: str, writes: Mapping[str, Any]) -> None:
        self.finished[step_id] = accepted_writes(self.graph, step_id, writes)
        if self.journals:
            journal = self.journals.pop(step_id, None)
            if journal:
                self.done_journals[step_id] = journal


def accepted_writes(graph: Graph, step_id: str, writes: Mapping[str, Any]) -> Mapping[str, Any]:
    """A finished step's writes as the reducers fold them (``accept_writes``); ``StepError``."""
    try:
        return accept_writes(graph.channels, writes, f"step {step_id!r}", StepError)
    except StepError as error:
        msg = f"{error}; no write of this layer was applied"
        raise StepError(msg) from None


def run_alone(
    graph: Graph,
    step_id: str,
    state: Mapping[str, Any],
    layer: int,
    epoch: int,
    clock: Callable[[], int] = no_clock,
) -> Mapping[str, Any] | LayerRun:
    """Start a layer of one step, from its start, with no generator of it held.

    What ``LayerRun(...).run`` does for such a layer, without building one
    for a plain function step (a chain's every layer): its accepted writes
    if it finished, or, for a generator step, a ``LayerRun`` holding its
    trampoline, to ``run`` as any layer. Raises ``LayerFailed`` as ``run``
    does, the state put back if C code changed it.
    """
    shown = shown_state(state)
    width, builtins = len(shown), "__builtins__" in shown

    def record() -> LayerRun:  # the layer's record, built only when it is needed
        return LayerRun(graph, (step_id,), state, layer, epoch, None, None, clock, shown)

    try:
        started = start(
            step_id,
            graph.steps[step_id],
            state,
            [],
            {},
            epoch,
            graph.step_index[step_id],
            (),
            clock,
        )
        if len(state) != width or ("__builtins__" in state) is not builtins:
            record()._state_changed(step_id, state)  # undoes the change, raises StepError
        if isinstance(started, Trampoline):  # taken on as ``_advance`` takes on what it started
            run = record()
            started.answers = run.answers
            run.journals[step_id] = started.journal
            run.live[step_id] = started
            return run
        return accepted_writes(graph, step_id, started)
    except (StepError, NondeterminismError, SerializationError) as error:
        record()._failed(step_id, error)


def replay_journals(
    graph: Graph, state: Mapping[str, Any], progress: Progress
) -> list[tuple[str, BaseException]]:
    """Replay every journal of a layer under way, as a cold resume would, but stop at its end.

    Each step with a journal is called again on ``state`` and fed its
    journal; where a resume would go past it (call a new effect, reach a new
    interrupt or finish) the dry run stops. Nothing is saved and no effect
    runs. Returns ``(step_id, error)`` for each step that fails to replay.
    """
    failures: list[tuple[str, BaseException]] = []
    for step_id, journal in progress.journals.items():
        if not journal:
            continue
        answers = progress.answers
        trampoline = None
        try:
            outcome = start(
                step_id,
                graph.steps[step_id],
                state,
                list(journal),
                answers,
                progress.epoch,
                graph.step_index[step_id],
                progress.timeouts,
                _never,
            )
            assert type(outcome) is Trampoline  # a plain step with a journal raises in start()
            trampoline = outcome
            trampoline.run()
        except (Exception, SystemExit) as error:  # sys.exit() in a step fails it
            failures.append((step_id, error))
        finally:
            if trampoline is not None:
                trampoline.close()
    return failures


def _never() -> int:
    """The clock of a dry replay: past the journal it stops, so no new deadline is set."""
    return 0
