"""The engine's records: what a checkpoint says about a run, as plain attrs data.

A checkpoint holds the channel values and a *stage*: what the run does next
from there. Each stage is its own class (a tagged union, encoded by
``_codec``), so no field means something for some stages only:

    Start(layer)           run ``layer`` from its beginning
    InLayer(progress)      a layer is under way: go on with it (a claim that
                           answered interrupts, an effect's record, a retry)
    OwesAfter(layer)       ``layer`` was applied; its After breakpoint is due
    AtBefore / AtAfter     paused at a breakpoint
    AtInterrupt(progress)  paused: interrupts of the layer wait for answers
    Failed(progress, ...)  a step of the layer failed
    Finished, Cancelled    the run is over

A ``Progress`` is everything needed to finish an interrupted layer in any
process: the writes of its finished steps, each other step's *journal* (what
it yielded, in order: ``Asked`` for an interrupt, ``Returned``/``Raised`` for
an effect), the answers given so far by interrupt id, and ``Update`` edits
kept for the end of the layer. Replaying a step means calling it again and
feeding it its journal.

This module imports neither msgpack nor cattrs: ``_codec`` alone turns these
records into bytes.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, NewType

import attrs

from ._channels import Change

#: A user's value (channel value, payload, answer, effect result): msgpack-native.
if TYPE_CHECKING:
    Value = Any
else:
    Value = NewType("Value", object)


# --- journal entries --------------------------------------------------------


@attrs.frozen
class Asked:
    """The step yielded an ``Interrupt`` (or a ``Sleep``): its id and payload.

    The answer is in ``Progress``. ``asked_ms`` (epoch ms) is when the step
    first reached it, and ``deadline_ms`` (epoch ms) was fixed then: neither
    moves on replay. ``sleep`` marks a ``Sleep``, whose deadline answers
    ``None`` instead of timing out. ``asked_ms`` is ``None`` in records older
    than it (their pause's time stands in for it: ``inbox``).
    """

    id: str
    payload: Value
    deadline_ms: int | None = None
    sleep: bool = False
    branch: str = ""
    asked_ms: int | None = None


@attrs.frozen
class Returned:
    """The step yielded an ``Effect`` whose function returned ``value``."""

    effect: str
    value: Value
    branch: str = ""


@attrs.frozen
class Raised:
    """The step yielded an ``Effect`` whose function raised; ``error`` is the message.

    ``refused`` marks an effect whose function *returned*, but whose result
    could not be stored (msgpack refused it): a replay throws it in as an
    ``EffectResultError``; a retry of the run it failed calls the function
    again, as for an error the function raised.
    """

    effect: str
    error: str
    branch: str = ""
    refused: bool = False


@attrs.frozen
class Forked:
    """The step (or branch) yielded ``All`` of ``count`` sub-generators.

    Branch ``i`` of the ``All`` at position ``p`` of branch ``b`` has the
    path ``f"{b}.{p}-{i}"`` (``f"{p}-{i}"`` under the step itself, whose
    path is ``""``). Every entry carries the path of the branch that made it
    (``branch``); a branch's entries, in journal order, are its own journal.
    """

    count: int
    branch: str = ""


Entry = Asked | Returned | Raised | Forked


@attrs.frozen
class Failure:
    """Why a run failed: the step, the class name of what it raised, the message."""

    step_id: str
    error_type: str
    message: str


@attrs.frozen
class Progress:
    """A layer under way: what its steps did so far.

    ``layer`` is 0-based. ``epoch`` makes the layer's new interrupt ids
    unique in the run. ``finished`` maps each finished step to its writes;
    ``journals`` maps each other step that started to its journal.
    ``answers`` holds every answer given in this layer, by interrupt id.
    ``edits`` are ``Update`` edits applied after the layer's writes.
    ``claimed`` lists the ids the latest claim answered (a failure may
    answer them again). ``timeouts`` lists the interrupts whose deadline
    passed: ``InterruptTimeout`` is thrown in at their ``yield``.
    ``skipped`` lists the steps the run skipped (conditional edges) in its
    layers so far, this one included once ``decided``: the steps of this
    layer that run were chosen when it started and are never chosen again
    (``decided`` is false only when a predicate raised). ``forced`` names a
    ``Goto`` target, which runs whatever the predicates say.
    """

    layer: int
    epoch: int
    finished: dict[str, dict[str, Value]] = attrs.field(factory=dict)
    journals: dict[str, tuple[Entry, ...]] = attrs.field(factory=dict)
    answers: dict[str, Value] = attrs.field(factory=dict)
    edits: tuple[dict[str, Value], ...] = ()
    claimed: tuple[str, ...] = ()
    timeouts: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    decided: bool = True
    forced: tuple[str, ...] = ()

    def pending(self, *, with_timeouts: bool = False) -> list[tuple[str, Asked]]:
        """``(step_id, entry)`` of every interrupt waiting for an answer, in journal order.

        An interrupt that timed out waits no more, unless ``with_timeouts``
        (on a failed run, an answer may replace its timeout).
        """
        out: list[tuple[str, Asked]] = []
        answers = self.answers
        timeouts = () if with_timeouts else self.timeouts
        for step_id, journal in self.journals.items():
            if journal:
                last = journal[-1]
                if type(last) is Forked or last.branch:
                    out.extend((step_id, e) for e in branch_pending(journal, answers, timeouts))
                elif type(last) is Asked and last.id not in answers and last.id not in timeouts:
                    out.append((step_id, last))
        return out

    def extend(self, more: Progress) -> Progress:
        """This progress with ``more`` (as made by ``additions``) added."""
        builder = ProgressBuilder(self)
        builder.add(more)
        return builder.build()

    def additions(self, base: Progress) -> Progress | None:
        """What this progress adds to ``base``, or ``None`` if it is not an extension.

        Journals and edits only ever grow by appending, and an answer is
        never changed, except by a re-answer after a failure; any such
        change, or another layer, gives ``None`` (store it whole).
        """
        if base.layer != self.layer or base.epoch != self.epoch:
            return None
        if (base.skipped, base.decided, base.forced) != (self.skipped, self.decided, self.forced):
            return None
        journals: dict[str, tuple[Entry, ...]] = {}
        for step_id, old in base.journals.items():
            new = self.journals.get(step_id)
            if new is None:
                if step_id in self.finished:
                    continue  # a finished step's journal is not needed any more
                return None
            n = len(old)
            if len(new) < n or (n and new[n - 1] is not old[-1] and new[n - 1] != old[-1]):
                return None
            if len(new) > n:
                journals[step_id] = new[n:]
        for step_id, new in self.journals.items():
            if step_id not in base.journals and new:
                journals[step_id] = new
        # answers are only ever added, at the end (a re-answer starts a new epoch)
        known = len(base.answers)
        if len(self.answers) < known:
            return None
        answers = dict(itertools.islice(self.answers.items(), known, None))
        if any(key in base.answers for key in answers):
            return None
        n = len(base.edits)
        if self.edits[:n] != base.edits:
            return None
        t = len(base.timeouts)
        if self.timeouts[:t] != base.timeouts:
            return None
        finished = {s: w for s, w in self.finished.items() if s not in base.finished}
        if len(finished) + len(base.finished) != len(self.finished):
            return None
        return Progress(
            self.layer,
            self.epoch,
            finished,
            journals,
            answers,
            self.edits[n:],
            self.claimed,
            self.timeouts[t:],
            self.skipped,
            self.decided,
            self.forced,
        )


class Extension(NamedTuple):
    """What loading reads of a layer's plain delta that extends the progress before it.

    The progress such a frame adds (its journal entries, answers and claim),
    without the ``Frame``, stage and ``Progress`` decoding would build:
    ``_codec.extension_of`` makes one, ``ProgressBuilder.extend`` folds it in.
    """

    seq: int
    layer: int
    epoch: int
    journals: dict[str, tuple[Entry, ...]]
    answers: dict[str, Value]
    claimed: tuple[str, ...]


class ProgressBuilder:
    """Adds many ``additions`` to a progress in time linear in their total size.

    ``Progress.extend`` per frame would copy the whole journal every time:
    loading a run that paused a thousand times in one layer is a thousand
    additions.
    """

    __slots__ = (
        "answers",
        "claimed",
        "decided",
        "edits",
        "epoch",
        "finished",
        "forced",
        "journals",
        "layer",
        "skipped",
        "timeouts",
    )

    def __init__(self, base: Progress) -> None:
        self.layer, self.epoch, self.claimed = base.layer, base.epoch, base.claimed
        self.finished = dict(base.finished)
        self.journals: dict[str, list[Entry]] = {s: list(j) for s, j in base.journals.items()}
        self.answers = dict(base.answers)
        self.edits = list(base.edits)
        self.timeouts = list(base.timeouts)
        self.skipped, self.decided, self.forced = base.skipped, base.decided, base.forced

    def add(self, more: Progress) -> None:
        self.layer, self.epoch, self.claimed = more.layer, more.epoch, more.claimed
        for step_id in more.finished:
            self.journals.pop(step_id, None)
        self.finished.update(more.finished)
        for step_id, entries in more.journals.items():
            self.journals.setdefault(step_id, []).extend(entries)
        self.answers.update(more.answers)
        self.edits.extend(more.edits)
        self.timeouts.extend(more.timeouts)
        self.skipped, self.decided, self.forced = more.skipped, more.decided, more.forced

    def extend(self, more: Extension) -> None:
        """``add`` the progress of a layer's plain delta, held as an ``Extension``.

        What ``add`` does with the ``Progress`` that delta decodes to: no
        step finished, no edit and no timeout added, nothing skipped or
        forced, the layer decided.
        """
        self.layer, self.epoch, self.claimed = more.layer, more.epoch, more.claimed
        journals = self.journals
        for step_id, entries in more.journals.items():
            journals.setdefault(step_id, []).extend(entries)
        self.answers.update(more.answers)
        self.skipped, self.decided, self.forced = (), True, ()

    def build(self) -> Progress:
        return Progress(
            self.layer,
            self.epoch,
            self.finished,
            {s: tuple(j) for s, j in self.journals.items()},
            self.answers,
            tuple(self.edits),
            self.claimed,
            tuple(self.timeouts),
            self.skipped,
            self.decided,
            self.forced,
        )


def branch_pending(
    journal: tuple[Entry, ...], answers: dict[str, Value], timeouts: tuple[str, ...]
) -> list[Asked]:
    """The unanswered interrupts of a journal with branches: the last entry of each live branch.

    A branch is live while its parent waits in the ``All`` that made it: the
    parent's last entry is that ``All``'s ``Forked`` (see ``Forked`` for the
    paths). A parent that went on past it (a branch's exception closed the
    others, and the step caught it) left its branches closed, their
    interrupts asked no more.
    """
    last: dict[str, Entry] = {}
    counts: dict[str, int] = {}
    for entry in journal:
        last[entry.branch] = entry
        counts[entry.branch] = counts.get(entry.branch, 0) + 1
    done = set(timeouts)
    return [
        e
        for path, e in last.items()
        if type(e) is Asked and e.id not in answers and e.id not in done and _live(path, counts)
    ]


def fork_head(branch: str, position: int) -> str:
    """What the paths of the branches of an ``All`` start with (see ``Forked``)."""
    return f"{branch}.{position}-" if branch else f"{position}-"


def _live(path: str, counts: Mapping[str, int]) -> bool:
    """Whether branch ``path`` is live: each ancestor's last entry is the fork that made it."""
    while path:
        parent, _, fork = path.rpartition(".")
        position = int(fork.partition("-")[0])
        if counts.get(parent, 0) != position + 1:
            return False
        path = parent
    return True


# --- stages -----------------------------------------------------------------


@attrs.frozen
class Start:
    """Run ``layer`` from its beginning; ``past_before``: without its Before breakpoints."""

    layer: int
    past_before: bool = False
    skipped: tuple[str, ...] = ()
    forced: tuple[str, ...] = ()


@attrs.frozen
class InLayer:
    """A layer is under way: go on with it from ``progress``."""

    progress: Progress


@attrs.frozen
class OwesAfter:
    """``layer`` was applied and checkpointed; its After breakpoint is still due."""

    layer: int
    skipped: tuple[str, ...] = ()


@attrs.frozen
class AtBefore:
    """Paused before ``layer`` at the Before breakpoints of ``step_ids``.

    ``decided``: the steps the run skips with this layer's included, as its
    predicates chose when the pause was made (``None`` if none was asked);
    a ``Continue`` runs the layer as chosen, without asking them again.
    """

    layer: int
    step_ids: tuple[str, ...]
    skipped: tuple[str, ...] = ()
    forced: tuple[str, ...] = ()
    decided: tuple[str, ...] | None = None


@attrs.frozen
class AtAfter:
    """Paused after ``layer`` at the After breakpoints of ``step_ids``."""

    layer: int
    step_ids: tuple[str, ...]
    skipped: tuple[str, ...] = ()


@attrs.frozen
class AtInterrupt:
    """Paused: interrupts of the layer in ``progress`` wait for answers."""

    progress: Progress


@attrs.frozen
class Failed:
    """A step of the layer in ``progress`` failed.

    ``raised_at`` is where, in the failing step's journal, the effect error
    that failed it is recorded: the step let it through, or raised its own
    error from it (``raise X from e``). ``-1``: no recorded effect error
    failed it (the step raised something else). ``None``: the record was
    saved before this field (its effect error is found by its message). A
    retry drops that entry, so that effect is called again, and keeps every
    other recorded error, a sibling branch's error with the same message
    included. ``past_before``: a predicate raised as the layer was about to
    begin, after its Before breakpoints were passed (a ``Goto`` to it, an
    ``Update`` at its Before pause): a retry does not check them again.
    """

    progress: Progress
    failure: Failure
    raised_at: int | None = None
    past_before: bool = False


@attrs.frozen
class Finished:
    """The run is done; ``skipped``: the steps it skipped (a ``Goto`` needs them)."""

    skipped: tuple[str, ...] = ()


@attrs.frozen
class Cancelled:
    """The run was cancelled for good (``Goto`` re-opens it)."""

    reason: str = ""
    skipped: tuple[str, ...] = ()


Stage = (
    Start | InLayer | OwesAfter | AtBefore | AtAfter | AtInterrupt | Failed | Finished | Cancelled
)
WithProgress = (InLayer, AtInterrupt, Failed)


def progress_of(stage: Stage) -> Progress | None:
    """The layer progress a stage carries, if any."""
    if type(stage) in WithProgress:
        return stage.progress  # type: ignore[union-attr]
    return None


def skipped_of(stage: Stage) -> tuple[str, ...]:
    """The steps a run skipped so far (conditional edges), as its stage records them."""
    progress = progress_of(stage)
    if progress is not None:
        return progress.skipped
    return getattr(stage, "skipped", ())


def with_progress(stage: Stage, progress: Progress) -> Stage:
    """``stage`` (one that carries a progress) with ``progress`` instead."""
    same_stage: Any = stage
    return attrs.evolve(same_stage, progress=progress)  # type: ignore[no-any-return]


# --- graph shape and run settings ---------------------------------------------


@attrs.frozen
class Structure:
    """The shape of a graph, recorded in checkpoints to catch a changed graph."""

    steps: tuple[str, ...]
    edges: tuple[tuple[str, str], ...]
    conditional: tuple[tuple[str, str], ...] = ()

    def difference(self, other: Structure) -> str | None:
        """Describe how ``other`` differs from this one, or ``None`` if it does not."""
        parts = []
        added = [s for s in other.steps if s not in set(self.steps)]
        removed = [s for s in self.steps if s not in set(other.steps)]
        if added:
            parts.append(f"steps added: {', '.join(map(repr, added))}")
        if removed:
            parts.append(f"steps removed: {', '.join(map(repr, removed))}")
        mine, theirs = set(self.edges), set(other.edges)
        new_edges = [e for e in other.edges if e not in mine]
        old_edges = [e for e in self.edges if e not in theirs]
        if new_edges:
            parts.append("edges added: " + ", ".join(f"{a!r} -> {b!r}" for a, b in new_edges))
        if old_edges:
            parts.append("edges removed: " + ", ".join(f"{a!r} -> {b!r}" for a, b in old_edges))
        kinds = set(self.conditional) ^ set(other.conditional)
        changed = [e for e in other.edges if e in kinds and e in mine]
        if changed:
            parts.append(
                "edges changed kind (conditional or not): "
                + ", ".join(f"{a!r} -> {b!r}" for a, b in changed)
            )
        if not parts and self.steps != other.steps:
            parts.append(f"step order changed from {list(self.steps)!r} to {list(other.steps)!r}")
        return "; ".join(parts) or None


@attrs.frozen
class Breakpoints:
    """The static breakpoints of a run, recorded when it starts."""

    before: tuple[str, ...] = ()
    after: tuple[str, ...] = ()


@attrs.frozen
class CheckpointMeta:
    """What ``Runner.history`` lists for each checkpoint."""

    seq: int
    super_step: int
    label: str
    timestamp_ms: int


@attrs.frozen(slots=False)  # made at every save: a dict-based init costs half a slotted one's
class Checkpoint:
    """One saved point of a run.

    ``values`` are the full channel values; ``stage`` says what the run
    does next. ``changes`` turn the previous checkpoint's values into these
    (the engine's hint, so a store keeps a delta: a checkpoint loaded from a
    store has none, and one saved with ``changes`` that do not lead to its
    ``values`` is stored wrong), and ``added`` is what ``stage``'s progress adds to the previous
    checkpoint's (``None``: unknown, store the whole). ``input`` is the run's
    input, ``structure`` and ``breakpoints`` the graph's shape and the run's
    breakpoints, all recorded in checkpoint 1. ``epoch_base`` keeps
    interrupt ids unique in a forked run.

    A store must copy (encode) what it keeps in ``save``: the engine goes on
    updating its values after ``save`` returns.
    """

    workflow_id: str
    run_id: str
    seq: int
    super_step: int
    label: str
    timestamp_ms: int
    values: dict[str, Value]
    stage: Stage
    structure: Structure
    breakpoints: Breakpoints = Breakpoints()
    changes: tuple[Change, ...] | None = None
    added: Progress | None = None
    input: Value | None = None
    epoch_base: int = 0

    @property
    def meta(self) -> CheckpointMeta:
        return CheckpointMeta(self.seq, self.super_step, self.label, self.timestamp_ms)


@attrs.frozen
class Frame:
    """A checkpoint as a store keeps it: a snapshot or just what changed.

    A snapshot has ``values`` and its stage whole; a delta has ``changes``
    and, when ``extends`` is set, a stage whose progress holds only what was
    added to the previous frame's. A delta relies on the frames before it
    back to the last snapshot. ``structure``, ``breakpoints`` and ``input``
    are kept in the run's first frame only.
    """

    seq: int
    super_step: int
    label: str
    timestamp_ms: int
    stage: Stage
    epoch_base: int = 0
    extends: bool = False
    changes: tuple[Change, ...] | None = None
    values: dict[str, Value] | None = None
    structure: Structure | None = None
    breakpoints: Breakpoints | None = None
    input: Value | None = None

    @property
    def is_snapshot(self) -> bool:
        return self.values is not None


for _cls in (
    Asked, Returned, Raised, Forked, Failure, Progress, Start, InLayer, OwesAfter, AtBefore,
    AtAfter, AtInterrupt, Failed, Finished, Cancelled, Structure, Breakpoints, CheckpointMeta,
    Checkpoint, Frame,
):  # fmt: skip
    attrs.resolve_types(_cls, globals(), locals())
attrs.resolve_types(Change)
