"""The run state machine, as pure functions of the latest checkpoint.

Theory of operation
-------------------
A run's status is a function of its latest checkpoint's stage and of one
more fact, whether a live process holds the run's lock:

    stage                              status
    Finished                           done
    Cancelled                          cancelled
    Failed                             failed
    AtBefore, AtAfter, AtInterrupt     paused
    Start, InLayer, OwesAfter          running if a live process holds the
                                       run, else queued (work waits for a
                                       driver: a new run, a claim, a crash)

Every command is decided here, from the latest checkpoint alone, into a
``Claim``: the checkpoint to save (label, super-step, stage, edits to fold
into the values first) before any step runs. A command that does not fit
raises here, before anything is saved or any live generator is touched.
``_runner`` saves the claim and drives the run from it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from ._commands import (
    After,
    Before,
    Command,
    Continue,
    Done,
    DynamicInterrupt,
    Goto,
    Paused,
    PendingInterrupt,
    Resume,
    RunInfo,
    Status,
    Update,
)
from ._records import (
    Asked,
    AtAfter,
    AtBefore,
    AtInterrupt,
    Cancelled,
    Checkpoint,
    Entry,
    Failed,
    Failure,
    Finished,
    Forked,
    InLayer,
    OwesAfter,
    Progress,
    Raised,
    Stage,
    Start,
    fork_head,
    progress_of,
    skipped_of,
)
from ._values import normalize, storable, thaw
from .errors import ConflictError, ResumeError, SerializationError

_STATUS: dict[type, Status] = {
    Finished: Status.DONE,
    Cancelled: Status.CANCELLED,
    Failed: Status.FAILED,
    AtBefore: Status.PAUSED,
    AtAfter: Status.PAUSED,
    AtInterrupt: Status.PAUSED,
}


def status_of(stage: Stage, *, running: bool) -> Status:
    """The status of a run whose latest checkpoint has ``stage`` (see the module doc)."""
    status = _STATUS.get(type(stage))
    if status is not None:
        return status
    return Status.RUNNING if running else Status.QUEUED


def driven(checkpoint: Checkpoint, holder: Callable[[str, str], object | None]) -> bool:
    """Whether a live process drives the run now: work waits, and its live lock is held.

    ``holder`` is the store's ``holder``; it is asked only when the stage has
    work to do, so reading a paused or finished run costs no lock probe.
    """
    if type(checkpoint.stage) not in (Start, InLayer, OwesAfter):
        return False
    return holder(checkpoint.workflow_id, checkpoint.run_id) is not None


def pending_of(stage: Stage) -> tuple[PendingInterrupt, ...]:
    """The interrupts still waiting for an answer, in step order.

    Of a pause; of a failure (an answer may replace a timeout that failed
    the step); and of a layer under way (a claim that answered some of them,
    queued or running): those it did not answer still wait.
    """
    return tuple(
        PendingInterrupt(entry.id, step_id, thaw(entry.payload), entry.deadline_ms)
        for step_id, entry in pending_entries(stage)
    )


def pending_entries(stage: Stage) -> list[tuple[str, Asked]]:
    """``pending_of``'s interrupts as ``(step_id, journal entry)``, payloads as stored."""
    if type(stage) is AtInterrupt or type(stage) is InLayer:
        return stage.progress.pending()
    if type(stage) is Failed:
        # a timeout that failed the step waits for an answer that replaces it
        return stage.progress.pending(with_timeouts=True)
    return []


def info_of(checkpoint: Checkpoint, *, running: bool) -> RunInfo:
    """What ``Runner.state`` tells about a run."""
    stage = checkpoint.stage
    failure = stage.failure if type(stage) is Failed else None
    progress = progress_of(stage)  # a pause, a failure, or a layer under way (a claim)
    edits = () if progress is None else tuple(thaw(e) for e in progress.edits)
    return RunInfo(
        thaw(checkpoint.values),
        status_of(stage, running=running),
        checkpoint.super_step,
        pending_of(stage),
        failure,
        edits,
    )


def paused_of(stage: Stage) -> Paused:
    """The ``Paused`` outcome of a paused stage."""
    if type(stage) is AtBefore:
        return Paused(stage.layer + 1, Before(stage.step_ids[0]))
    if type(stage) is AtAfter:
        return Paused(stage.layer + 1, After(stage.step_ids[0]))
    assert type(stage) is AtInterrupt
    interrupts = pending_of(stage)
    first = interrupts[0]
    return Paused(
        stage.progress.layer + 1, DynamicInterrupt(first.step_id), first.payload, interrupts
    )


def describe(stage: Stage) -> str:
    """A short description of a paused stage, for messages."""
    if type(stage) is AtInterrupt:
        return "interrupts pending: " + ", ".join(i.id for i in pending_of(stage))
    outcome = paused_of(stage)
    reason = outcome.reason
    return f"{type(reason).__name__}({reason.step_id!r}) at super-step {outcome.super_step}"


@attrs.frozen
class Shape:
    """What decisions need to know of the graph and of the run's breakpoints."""

    workflow: str
    layers: tuple[tuple[str, ...], ...]
    layer_of: Mapping[str, int]


@attrs.frozen
class Claim:
    """The checkpoint a command saves before any step runs.

    ``edits`` are folded into the values through the reducers first.
    ``drive``: go on running from it (else the call returns ``paused``).
    ``keep_live``: the live generators of a held pause stay usable.
    """

    label: str
    super_step: int
    stage: Stage
    edits: tuple[Mapping[str, Any], ...] = ()
    drive: bool = True
    keep_live: bool = False


def _after_layer(shape: Shape, k: int, skipped: tuple[str, ...] = ()) -> Stage:
    """Where a run goes once layer ``k`` and its After breakpoint are behind it."""
    return Finished(skipped) if k + 1 == len(shape.layers) else Start(k + 1, skipped=skipped)


def decide_run(latest: Checkpoint, *, shape: Shape) -> Claim | Done:
    """``run(run_id)`` on an existing run (not held by another process)."""
    stage = latest.stage
    kind = type(stage)
    run_id = latest.run_id
    if kind is Finished:
        return Done(thaw(latest.values), latest.super_step)
    if kind is Failed:
        failed: Failed = stage  # type: ignore[assignment]
        return _retry(latest, failed.failure, failed.progress, "resume", _raised_at(failed))
    if kind is Cancelled:
        msg = f"run {run_id!r} was cancelled: Goto(step_id) re-opens it, or use a new run id"
        raise ResumeError(msg)
    if kind in (AtBefore, AtAfter, AtInterrupt):
        msg = f"run {run_id!r} is paused ({describe(stage)}): use resume(run_id, command) to go on"
        raise ResumeError(msg)
    return Claim("resume", latest.super_step, stage)  # recover: go on from where it was


def decide(latest: Checkpoint, command: Command, *, shape: Shape) -> Claim:
    """The claim for ``command`` on a run whose latest checkpoint is ``latest``."""
    run_id = latest.run_id
    stage = latest.stage
    kind = type(stage)
    if type(command) is Goto:
        return _goto(latest, command, shape)
    if not isinstance(command, (Continue, Resume, Update)):
        msg = (
            "resume() takes Continue(), Resume(value), Update(edits) or Goto(step_id), "
            f"got {command!r}"
        )
        raise ResumeError(msg)
    if kind is Finished:
        msg = (
            f"run {run_id!r} is finished: {command!r} has nothing to go on with; "
            "Goto(step_id) re-opens it"
        )
        raise ResumeError(msg)
    if kind is Cancelled:
        msg = f"run {run_id!r} was cancelled: {command!r} is refused; Goto(step_id) re-opens it"
        raise ResumeError(msg)
    if kind in (Start, InLayer, OwesAfter):
        raise ConflictError(queued_message(run_id))
    if kind is Failed:
        return _on_failed(latest, command)
    if type(command) is Update:
        edits = command.edits
        if kind is AtInterrupt:
            progress = stage.progress  # type: ignore[union-attr]
            kept = attrs.evolve(progress, edits=(*progress.edits, edits))
            return Claim(
                "update", latest.super_step, AtInterrupt(kept), drive=False, keep_live=True
            )
        return _past_breakpoint(
            stage, shape, "update", (edits,), latest.epoch_base + latest.seq + 1
        )
    if type(command) is Continue:
        if kind is AtInterrupt:
            pending = ", ".join(i.id for i in pending_of(stage))
            msg = (
                f"run {run_id!r} waits for an answer to interrupt(s) {pending}: "
                "use Resume(value) or Resume(answers=...)"
            )
            raise ResumeError(msg)
        return _past_breakpoint(stage, shape, "resume", (), latest.epoch_base + latest.seq + 1)
    assert isinstance(command, Resume)
    if kind is not AtInterrupt:
        msg = (
            f"run {run_id!r} is paused at a breakpoint ({describe(stage)}), "
            "where nothing waits for a value: use Continue() or Update(edits)"
        )
        raise ResumeError(msg)
    progress = stage.progress  # type: ignore[union-attr]
    answers = _answers(run_id, progress, command, reanswerable=())
    claimed = attrs.evolve(
        progress,
        answers={**progress.answers, **answers},
        edits=(*progress.edits, command.update) if command.update else progress.edits,
        claimed=tuple(answers),
    )
    return Claim("resume", latest.super_step - 1, InLayer(claimed), keep_live=True)


def decide_tick(latest: Checkpoint, now_ms: int) -> Claim | None:
    """The claim ``tick`` saves for a paused run whose deadlines passed at ``now_ms``, or ``None``.

    Every pending ``Sleep`` whose deadline passed is answered ``None``; every
    other pending interrupt whose deadline passed times out
    (``InterruptTimeout`` is thrown in at its ``yield``).
    """
    stage = latest.stage
    if type(stage) is not AtInterrupt:
        return None
    progress = stage.progress
    due = [
        e for _, e in progress.pending() if e.deadline_ms is not None and e.deadline_ms <= now_ms
    ]
    if not due:
        return None
    slept = {e.id: None for e in due if e.sleep}
    timeouts = tuple(e.id for e in due if not e.sleep)
    claimed = attrs.evolve(
        progress,
        answers={**progress.answers, **slept},
        timeouts=(*progress.timeouts, *timeouts),
        claimed=tuple(e.id for e in due),
    )
    return Claim("tick", latest.super_step - 1, InLayer(claimed), keep_live=True)


def check_reason(reason: object) -> None:
    """Refuse a cancel reason no store can keep, before anything is done.

    ``ResumeError`` for one that is not a ``str``; ``SerializationError`` for
    one holding a lone surrogate (text read as UTF-8 that was not).
    """
    if not isinstance(reason, str):
        msg = f"a cancel reason is text (a str), got {type(reason).__name__} {reason!r:.80}"
        raise ResumeError(msg)
    if reason != storable(reason):
        msg = (
            f"the cancel reason {reason!r:.80} cannot be stored: it holds a lone surrogate "
            "(text that was not UTF-8); give it as UTF-8 text"
        )
        raise SerializationError(msg)


def decide_cancel(latest: Checkpoint, reason: str) -> Claim:
    """``cancel(run_id, reason)``: a paused, failed or new run ends for good (``cancelled``).

    A queued run that only holds its input (``start``, or its process died
    before it saved anything after it) is ended too; any other queued run is
    a ``ConflictError`` (a claim waits for a driver: the SPEC's status
    table); a done or cancelled one a ``ResumeError``.
    """
    run_id = latest.run_id
    status = status_of(latest.stage, running=False)
    only_input = latest.seq == 1 and type(latest.stage) is Start  # the first checkpoint
    if status is Status.QUEUED and not only_input:  # a claim waits, or a layer was under way
        raise ConflictError(queued_message(run_id))
    if status is Status.DONE or status is Status.CANCELLED:
        msg = f"run {run_id!r} is {status.value}: there is nothing to cancel"
        raise ResumeError(msg)
    stage = Cancelled(reason, skipped_of(latest.stage))
    # its values are the pause's: at an interrupt or a Before breakpoint, those of
    # the layers before the paused one, which the pause's super_step counts too
    paused_in = type(latest.stage) in (AtInterrupt, AtBefore)
    return Claim("cancelled", latest.super_step - paused_in, stage, drive=False)


def queued_message(run_id: str) -> str:
    return (
        f"run {run_id!r} is queued: it has work waiting for a driver (a new run, a claimed "
        f"command, or a process that died); run({run_id!r}) drives it, then "
        "command it if it pauses"
    )


def _past_breakpoint(
    stage: Stage, shape: Shape, label: str, edits: tuple[Mapping[str, Any], ...], epoch: int
) -> Claim:
    """The claim past a breakpoint pause; ``epoch``: the new interrupt ids' (the claim's seq).

    Past a ``Before`` pause whose layer's steps were chosen (``decided``)
    and with no edits, the claim starts the layer as chosen (its progress
    saved with the claim), so no predicate of that layer is asked again;
    edits may change what the predicates say, so they choose again.
    """
    if type(stage) is AtBefore:
        if stage.decided is not None and not edits:
            chosen = Progress(stage.layer, epoch, skipped=stage.decided, forced=stage.forced)
            return Claim(label, stage.layer, InLayer(chosen), edits)
        start = Start(stage.layer, True, stage.skipped, stage.forced)
        return Claim(label, stage.layer, start, edits)
    assert type(stage) is AtAfter
    follow = _after_layer(shape, stage.layer, stage.skipped)
    if type(follow) is Finished and label == "resume":
        label = "done"
    return Claim(label, stage.layer + 1, follow, edits)


def _goto(latest: Checkpoint, command: Goto, shape: Shape) -> Claim:
    target = command.step_id
    stage = latest.stage
    if target not in shape.layer_of:
        msg = (
            f"Goto({target!r}): graph {shape.workflow!r} has no such step; "
            f"its steps are {', '.join(map(repr, shape.layer_of))}"
        )
        raise ResumeError(msg)
    if type(stage) in (Start, InLayer, OwesAfter):
        raise ConflictError(queued_message(latest.run_id))
    edits: list[Mapping[str, Any]] = []
    if type(stage) is AtInterrupt or type(stage) is Failed:
        # the interrupted layer runs again: its own writes are dropped, kept edits are not
        edits.extend(stage.progress.edits)
    if command.update:
        edits.append(command.update)
    k = shape.layer_of[target]
    # the layers before the target's keep what they skipped; the target's and later ones choose
    # afresh, and the target itself runs
    layer_of = shape.layer_of
    skipped = tuple(s for s in skipped_of(stage) if layer_of.get(s, k) < k)
    # its values are the latest's (a dynamic pause's: those its layer began with), and its
    # super_step counts their layers, whichever layer runs next (SPEC, Super-steps)
    counted = latest.super_step - (type(stage) in (AtInterrupt, AtBefore))
    return Claim("resume", counted, Start(k, True, skipped, (target,)), tuple(edits))


def _retry(
    latest: Checkpoint,
    failure: Failure,
    progress: Progress,
    label: str,
    raised_at: int | None,
) -> Claim:
    """Go on with a failed layer: the effect error that failed it is dropped, and retried.

    ``raised_at`` is where that error is in the failing step's journal in
    ``progress`` (``_raised_at``; ``None``: nothing to drop), a result that
    could not be stored (``Raised.refused``) included: SPEC, Failures, "the
    effect error that failed the run is dropped, and that effect is called
    again".
    """
    if raised_at is not None:
        step_id = failure.step_id
        journal = progress.journals.get(step_id, ())
        # the error that failed the step, and what its `except` and `finally` did after it
        # (the branches they forked included), go; what the other branches recorded after
        # it (results saved together) stays
        kept, dropped, _ = _without_what_followed(journal, [(raised_at, journal[raised_at].branch)])
        journals = {**progress.journals, step_id: kept[:raised_at] + kept[raised_at + 1 :]}
        progress = attrs.evolve(progress, journals=journals)
        if dropped:  # interrupts asked after the error go, answers and timeouts with them,
            # and what the retry asks gets ids never used before
            progress = attrs.evolve(
                progress,
                epoch=latest.epoch_base + latest.seq + 1,
                answers={i: v for i, v in progress.answers.items() if i not in dropped},
                timeouts=tuple(i for i in progress.timeouts if i not in dropped),
                claimed=tuple(i for i in progress.claimed if i not in dropped),
            )
    if not progress.decided and not progress.finished and not progress.journals:
        # a predicate raised as the layer was about to begin: the retry starts it again,
        # its Before breakpoints checked then unless they had been passed (a Goto to it,
        # an Update at its Before pause: SPEC, Breakpoints and Commands)
        stage = latest.stage
        # a Goto's target layer (forced) had its Before passed: a record from before
        # past_before was kept says so by that alone
        past = (type(stage) is Failed and stage.past_before) or bool(progress.forced)
        start = Start(progress.layer, past, skipped=progress.skipped, forced=progress.forced)
        return Claim(label, latest.super_step, start)
    return Claim(label, latest.super_step, InLayer(progress))


def _without_what_followed(
    journal: tuple[Entry, ...], points: list[tuple[int, str]]
) -> tuple[tuple[Entry, ...], set[str], dict[int, int]]:
    """The journal without what followed each point ``(index, branch path)`` in its branch.

    After a point, the entries of its branch, of the branches it was called
    from (which the error or the answer went back through) and of its own
    branches go, and so do the branches that a fork dropped here had made:
    forked again at the same place, they would get the same paths and replay
    what the old ones recorded. The other branches' entries stay. Returns
    the kept journal (the points themselves kept), the ids of the interrupts
    that went, and where each kept entry moved (old index to new).
    """
    first = min(at for at, _ in points)
    cursors: dict[str, int] = {}  # each branch's position, as its trampoline counted it
    gone: list[str] = []  # the paths of branches made by forks that went
    kept: list[Entry] = []
    dropped: set[str] = set()
    moved: dict[int, int] = {}
    for n, e in enumerate(journal):
        branch = e.branch
        position = cursors.get(branch, 0)
        cursors[branch] = position + 1
        if n > first and (
            any(n > at and _related(branch, path) for at, path in points)
            or any(branch == g or branch.startswith(g + ".") for g in gone)
        ):
            if type(e) is Asked:
                dropped.add(e.id)
            elif type(e) is Forked:
                head = fork_head(branch, position)
                gone.extend(f"{head}{i}" for i in range(e.count))
            continue
        moved[n] = len(kept)
        kept.append(e)
    return tuple(kept), dropped, moved


def _raised_at(stage: Failed) -> int | None:
    """Where the effect error that failed the step is in its journal, or ``None``.

    The failed checkpoint says where (``Failed.raised_at``: the step raised
    that error, or raised its own from it; ``-1``: none did). A failure saved
    before ``raised_at`` was says nothing: its ``EffectError`` is matched by
    its message, the last error recorded with it.
    """
    failure = stage.failure
    journal = stage.progress.journals.get(failure.step_id, ())
    at = stage.raised_at
    if at is not None:
        entry = journal[at] if 0 <= at < len(journal) else None
        return at if type(entry) is Raised else None
    if failure.error_type != "EffectError":
        return None
    raised = [n for n, e in enumerate(journal) if type(e) is Raised and e.error == failure.message]
    return raised[-1] if raised else None


def _on_path(branch: str, path: str) -> bool:
    """Whether ``branch`` is the branch ``path`` of a step or one of its ancestors."""
    return not branch or branch == path or path.startswith(branch + ".")


def _related(branch: str, path: str) -> bool:
    """Whether ``branch`` is ``path``, one of its ancestors or one of its descendants."""
    return _on_path(branch, path) or not path or branch.startswith(path + ".")


def _on_failed(latest: Checkpoint, command: Continue | Resume | Update) -> Claim:
    stage = latest.stage
    assert type(stage) is Failed
    progress, failure = stage.progress, stage.failure
    raised_at = _raised_at(stage)
    if type(command) is Continue:
        return _retry(latest, failure, progress, "resume", raised_at)
    if type(command) is Update:
        claim = _retry(latest, failure, progress, "update", raised_at)
        return attrs.evolve(claim, edits=(command.edits,))
    assert isinstance(command, Resume)
    journal = progress.journals.get(failure.step_id, ())
    asked = {e.id: i for i, e in enumerate(journal) if type(e) is Asked}
    # what the failing claim answered takes a new answer (a tick's claim holds the timeouts
    # it made). A timeout an earlier claim delivered, which its step took and went on from,
    # stands (SPEC, Interrupts: an answered id is refused); one its step did not go on from
    # is listed (``pending(with_timeouts=True)``) and takes an answer that replaces it
    again_ok = dict.fromkeys(progress.claimed)
    reanswerable = tuple(i for i in again_ok if i in asked)
    answers = _answers(latest.run_id, progress, command, reanswerable=reanswerable, failed=True)
    journals = progress.journals
    epoch = progress.epoch
    again = [i for i in answers if i in reanswerable]
    if again:
        # what followed a re-answered interrupt in its branch (its callers and the branches
        # it forked after it included) goes; what sibling branches recorded stays
        points = [(asked[i], journal[asked[i]].branch) for i in again]
        kept, dropped, moved = _without_what_followed(journal, points)
        # the failing error stays where its branch was not re-answered; else it went. An
        # answer to what its own branch asked after it (the `except` that caught it, or
        # what that forked) is the answer to the failure: the error stays recorded
        if raised_at is not None:
            failed_in = journal[raised_at].branch
            if any(at > raised_at and _related(path, failed_in) for at, path in points):
                raised_at = None
        raised_at = None if raised_at is None else moved.get(raised_at)
        journals = {**journals, failure.step_id: kept}
        base = {k: v for k, v in progress.answers.items() if k not in dropped}
        # new interrupts of this layer get ids never used before
        epoch = latest.epoch_base + latest.seq + 1
    else:
        base = dict(progress.answers)
    claimed = attrs.evolve(
        progress,
        epoch=epoch,
        journals=journals,
        timeouts=tuple(i for i in progress.timeouts if i not in answers),
        answers={**base, **answers},
        edits=(*progress.edits, command.update) if command.update else progress.edits,
        claimed=tuple(answers),
    )
    return _retry(latest, failure, claimed, "resume", raised_at)


def _answers(
    run_id: str,
    progress: Progress,
    command: Resume,
    *,
    reanswerable: Sequence[str],
    failed: bool = False,
) -> dict[str, Any]:
    # on a failed run, what RunInfo.interrupts lists: a timeout not yet thrown in (its step
    # did not go on) waits for an answer that replaces it
    pending = [entry.id for _, entry in progress.pending(with_timeouts=failed)]
    pending_set = set(pending)
    again = [i for i in reanswerable if i not in pending_set]
    allowed = [*pending, *again]
    allowed_set = set(allowed)
    waits = ", ".join(pending) or "nothing"
    answered = f"answerable again, as the claim that failed answered them: {', '.join(again)}"
    if again:  # a failed run: not pending, but the claim that failed answered them
        waits += f" ({answered})"
    if not allowed:  # only a failed run gets here: a paused one has a pending interrupt
        msg = (
            f"run {run_id!r} failed and waits for no answer: retry it with Continue() or "
            "run(run_id), fix its state first with Update(edits), or Goto(step_id)"
        )
        raise ResumeError(msg)
    if command.has_value == (command.answers is not None):
        msg = (
            "give Resume exactly one of a value (Resume(value)) or answers by interrupt id "
            f"(Resume(answers={{id: value}})); run {run_id!r} waits on {waits}"
        )
        raise ResumeError(msg)
    if command.has_value:
        # the one pending interrupt; on a failed run with none pending, the one to answer again
        candidates = pending or allowed
        if len(candidates) != 1:
            kind, which = (
                ("pending interrupts", waits)
                if pending
                else ("interrupts to answer again", answered)
            )
            msg = (
                f"run {run_id!r} has {len(candidates)} {kind} ({which}): "
                "answer them by id with Resume(answers={id: value, ...})"
            )
            raise ResumeError(msg)
        given = {candidates[0]: command.value}
    else:
        assert command.answers is not None
        given = command.answers
        if not given:
            msg = f"Resume(answers={{}}) answers nothing; run {run_id!r} waits on {waits}"
            raise ResumeError(msg)
    for interrupt_id in given:
        if interrupt_id in allowed_set:
            continue
        if interrupt_id in progress.answers and failed:
            state = (
                "was already answered and stands (only the failed step's interrupts that the "
                "claim which failed answered may be answered again; Goto re-asks it)"
            )
        elif interrupt_id in progress.answers:
            state = "was already answered (the run has moved on past it)"
        elif _earlier(interrupt_id, progress.epoch):  # answered, or dropped by a Goto
            state = (
                "was already answered or dropped by a Goto at an earlier point of the run, or "
                "was never asked in it (it is not pending)"
            )
        elif any(
            type(e) is Asked and e.id == interrupt_id
            for journal in progress.journals.values()
            for e in journal
        ):  # asked in this layer, neither pending nor answered
            if interrupt_id in progress.timeouts:
                state = "timed out (the step was told so and went on)"
            else:  # its All branch was closed when a sibling raised
                state = "no longer waits: its branch was closed when a sibling branch raised"
        else:
            state = "is unknown"
        msg = f"interrupt id {interrupt_id!r} {state} in run {run_id!r}; pending: {waits}"
        raise ResumeError(msg)
    return {
        i: normalize(v, lambda i=i: f"the answer to interrupt {i!r}")  # type: ignore[misc]
        for i, v in given.items()
    }


def _earlier(interrupt_id: str, epoch: int) -> bool:
    """Whether ``interrupt_id`` is one of this run's ids from before the layer's epoch."""
    head, _, _ = interrupt_id.partition(".")
    return head.isdigit() and int(head) < epoch
