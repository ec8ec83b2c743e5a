"""Generated workflows as plain data: a *plan* is turned into a ``Graph`` by a factory.

A random workflow is drawn as a ``WorkflowPlan`` (frozen attrs values: the
channels, the steps and what each step does, the edges), never as random
code. ``GeneratedGraph(plan)`` builds real step functions from it. Two things
follow: the same plan always builds the same workflow (so hypothesis can
replay and shrink it), and the plan can build *variants* of the workflow,
such as one whose steps compute their answers instead of interrupting.

Every generated step is a deterministic function of the state it reads, the
answers it gets and its effects' results: it keeps an accumulator ``acc`` of
everything it has seen, and each interrupt payload and each write is derived
from it. So a run's final state is a function of its input and its answers,
and any difference between two ways of running it is an engine bug.
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Callable, Generator, Iterator, Mapping
from typing import Any, Literal

import attrs

from .._channels import AnyReducer, Append, LastWriteWins, MergeMap, Reducer
from .._graph import Graph
from .._instructions import All, Effect, Interrupt
from .._values import normalize
from ..errors import EffectError

ChannelKind = Literal["last", "merge", "append", "custom"]
AnswerFn = Callable[[Any], Any]


# --- what a step does ---------------------------------------------------------


@attrs.frozen
class Ask:
    """``answer = yield Interrupt({"step": ..., "ask": label, "acc": digest})``."""

    label: str


@attrs.frozen
class Call:
    """``result = yield Effect(recorded_effect, step, label, digest, fails)``.

    With ``fails`` the effect raises, and the step catches the ``EffectError``
    and keeps its message, so replaying a recorded failure is exercised too.
    """

    label: str
    fails: bool = False


@attrs.frozen
class Read:
    """Fold the current value of ``channel`` into the accumulator."""

    channel: str


@attrs.frozen
class Nest:
    """Run ``actions`` as a sub-generator (``yield sub(...)``) and keep its result."""

    actions: tuple[Action, ...]


@attrs.frozen
class Fan:
    """``results = yield All(*branches)``: each branch's actions as a sub-generator.

    Every branch starts from a copy of the accumulator; the step keeps a
    digest of the list of their results. Branches may interrupt and call
    effects, so their pauses and effects interleave inside one step.
    """

    branches: tuple[tuple[Action, ...], ...]


Action = Ask | Call | Read | Nest | Fan


@attrs.frozen
class When:
    """An edge's predicate: the digest of ``channel``'s value has the parity ``even``.

    A deterministic function of the state the destination's layer reads;
    built as a function named ``<channel>_is_even`` (or ``_is_odd``), so
    Mermaid labels the edge with it.
    """

    channel: str
    even: bool

    @property
    def name(self) -> str:
        return f"{self.channel}_is_{'even' if self.even else 'odd'}"

    def predicate(self) -> Callable[[Mapping[str, Any]], bool]:
        channel, parity = self.channel, 0 if self.even else 1

        def when(state: Mapping[str, Any]) -> bool:
            return digest(state[channel]) % 2 == parity

        when.__qualname__ = when.__name__ = self.name
        return when


@attrs.frozen
class ChannelPlan:
    """One channel: its name and its reducer (``LastWriteWins``, ``MergeMap``, ...)."""

    name: str
    kind: ChannelKind


@attrs.frozen
class StepPlan:
    """One step: its actions, in order, and the channels it writes at the end.

    A step whose actions never yield and whose ``plain`` flag is set is built
    as a plain function instead of a generator function.
    """

    step_id: str
    actions: tuple[Action, ...] = ()
    writes: tuple[str, ...] = ()
    plain: bool = False


@attrs.frozen
class WorkflowPlan:
    """A whole generated workflow; ``GeneratedGraph(plan)`` builds it."""

    name: str
    channels: tuple[ChannelPlan, ...]
    steps: tuple[StepPlan, ...]
    edges: tuple[tuple[str, str], ...] = ()
    when: tuple[tuple[str, str, When], ...] = ()
    """Predicates of some of ``edges``: ``(src, dst, When(...))``; the others are plain."""

    def expected_effects(self, answer: AnswerFn | None = None) -> list[tuple[str, str]]:
        """Every ``(step_id, label)`` a complete run calls ``recorded_effect`` with.

        With conditional edges, which steps run depends on the state, so on
        the answers: pass ``answer`` and the effects are those of a reference
        run (in memory, the interrupts answered up front with ``answer``).
        """
        if not self.when:
            return [(s.step_id, label) for s in self.steps for label in _effect_labels(s.actions)]
        if answer is None:
            msg = "a plan with conditional edges needs answer= to know which steps run"
            raise ValueError(msg)
        from .._runner import Runner  # the reference run; imported late: it is heavy

        with recording_effects() as log:
            Runner(GeneratedGraph(self, answer=answer)).run("expected-effects")
        return list(log)

    def interrupt_count(self) -> int:
        """Interrupts of a complete run if every step runs (an upper bound with ``when``)."""
        return sum(_count_asks(s.actions) for s in self.steps)

    def has_fan(self) -> bool:
        """Whether some step fans out with ``All``."""
        return any(_has_fan(s.actions) for s in self.steps)


def _effect_labels(actions: tuple[Action, ...]) -> Iterator[str]:
    for action in actions:
        if type(action) is Call:
            yield action.label
        elif type(action) is Nest:
            yield from _effect_labels(action.actions)
        elif type(action) is Fan:
            for branch in action.branches:
                yield from _effect_labels(branch)


def _count_asks(actions: tuple[Action, ...]) -> int:
    total = 0
    for action in actions:
        if type(action) is Ask:
            total += 1
        elif type(action) is Nest:
            total += _count_asks(action.actions)
        elif type(action) is Fan:
            total += sum(_count_asks(branch) for branch in action.branches)
    return total


def _has_fan(actions: tuple[Action, ...]) -> bool:
    for action in actions:
        if type(action) is Fan:
            return True
        if type(action) is Nest and _has_fan(action.actions):
            return True
    return False


def _yields(actions: tuple[Action, ...]) -> bool:
    return any(type(a) is not Read for a in actions)


# --- deterministic digests ----------------------------------------------------


def _canonical(value: Any) -> str:
    """A text form of a msgpack-native value that does not depend on dict order."""
    if isinstance(value, Mapping):
        items = sorted(f"{_canonical(k)}:{_canonical(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_canonical(v) for v in value) + "]"
    return f"{type(value).__name__}:{value!r}"


def digest(value: Any) -> int:
    """A stable 31-bit number summarising ``value`` (same in every process)."""
    return zlib.crc32(_canonical(value).encode("utf-8", "surrogatepass")) & 0x7FFFFFFF


def mix(current: int, incoming: int) -> int:
    """The custom reducer of generated graphs: order-sensitive, so step order shows."""
    return (current * 31 + incoming) % 2_147_483_647


# --- the recording effect -----------------------------------------------------

_active_logs: list[list[tuple[str, str]]] = []


@contextlib.contextmanager
def recording_effects() -> Iterator[list[tuple[str, str]]]:
    """Collect every call of ``recorded_effect`` made inside the ``with`` block.

    Yields a list that receives ``(step_id, label)`` per call, in call order,
    so a test can check that each effect of a finished run ran exactly once::

        with recording_effects() as log:
            drive(graph, answer=str)
        assert sorted(log) == sorted(graph.plan.expected_effects())
    """
    log: list[tuple[str, str]] = []
    _active_logs.append(log)
    try:
        yield log
    finally:
        _active_logs.remove(log)


def recorded_effect(step_id: str, label: str, seed: int, fails: bool) -> tuple[str, int]:
    """The effect generated steps call: logs the call, then returns or raises.

    It is a module-level function on purpose: an effect is recognised on
    replay by its module and qualified name, so a lambda or a closure made
    per test would still work but would read badly in a journal.
    """
    for log in _active_logs:
        log.append((step_id, label))
    if fails:
        msg = f"planned failure of {step_id}/{label}"
        raise ValueError(msg)
    return (label, seed)  # a tuple on purpose: it must arrive as a list on every path


# --- building a graph from a plan ----------------------------------------------


def _reducer(kind: ChannelKind) -> AnyReducer:
    if kind == "last":
        return LastWriteWins()
    if kind == "merge":
        return MergeMap()
    if kind == "append":
        return Append()
    return Reducer(mix, 0)


def _write_value(kind: ChannelKind, step_id: str, acc: list[Any]) -> Any:
    if kind == "last":
        return {"by": step_id, "acc": list(acc)}
    if kind == "merge":
        return {step_id: digest(acc)}
    if kind == "append":
        return {"by": step_id, "digest": digest(acc)}
    return digest(acc)


def _run_actions(
    step_id: str,
    actions: tuple[Action, ...],
    state: Mapping[str, Any],
    acc: list[Any],
    answer: AnswerFn | None,
) -> Generator[Any, Any, list[Any]]:
    for action in actions:
        if type(action) is Ask:
            payload = {"step": step_id, "ask": action.label, "acc": digest(acc)}
            if answer is None:
                value = yield Interrupt(payload)
            else:
                value = normalize(answer(payload), lambda: "an answer")
            acc.append(value)
        elif type(action) is Call:
            try:
                result = yield Effect(
                    recorded_effect, step_id, action.label, digest(acc), action.fails
                )
            except EffectError as exc:
                result = str(exc)
            acc.append(result)
        elif type(action) is Read:
            acc.append(digest(state[action.channel]))
        elif type(action) is Nest:
            inner = yield _run_actions(step_id, action.actions, state, list(acc), answer)
            acc.append(digest(inner))
        else:
            assert type(action) is Fan
            results = yield All(
                *(_run_actions(step_id, b, state, list(acc), answer) for b in action.branches)
            )
            acc.append(digest(results))
    return acc


def _make_step(
    plan: StepPlan, kinds: Mapping[str, ChannelKind], answer: AnswerFn | None
) -> Callable[[Mapping[str, Any]], Any]:
    step_id, actions = plan.step_id, plan.actions

    def writes(acc: list[Any]) -> dict[str, Any]:
        return {channel: _write_value(kinds[channel], step_id, acc) for channel in plan.writes}

    if plan.plain and not _yields(actions):

        def plain_step(state: Mapping[str, Any]) -> dict[str, Any]:
            acc = [digest(state[a.channel]) for a in actions if type(a) is Read]
            return writes(acc)

        plain_step.__qualname__ = plain_step.__name__ = f"plain_step_{step_id}"
        return plain_step

    def generator_step(state: Mapping[str, Any]) -> Generator[Any, Any, dict[str, Any]]:
        acc = yield from _run_actions(step_id, actions, state, [], answer)
        return writes(acc)

    generator_step.__qualname__ = generator_step.__name__ = f"generator_step_{step_id}"
    return generator_step


class GeneratedGraph(Graph):
    """A ``Graph`` built from a ``WorkflowPlan``; ``graphs()`` draws these.

    It is a real ``Graph`` (run it with any ``Runner``); ``plan`` keeps what
    it was built from, and its repr is the plan, so a failing hypothesis
    example shows the whole workflow. ``GeneratedGraph(plan, answer=fn)``
    builds the same workflow with its interrupts answered up front: each
    step computes ``fn(payload)`` where it would have yielded
    ``Interrupt(payload)``. Driving the plain graph with ``answer=fn`` must
    end in the same state.
    """

    def __init__(self, plan: WorkflowPlan, *, answer: AnswerFn | None = None) -> None:
        kinds = {c.name: c.kind for c in plan.channels}
        super().__init__(plan.name, {c.name: _reducer(c.kind) for c in plan.channels})
        for step in plan.steps:
            self.step(step.step_id, _make_step(step, kinds, answer))
        when = {(src, dst): w.predicate() for src, dst, w in plan.when}
        for src, dst in plan.edges:
            self.edge(src, dst, when=when.get((src, dst)))
        self.plan = plan
        self.answered_up_front = answer is not None

    def __repr__(self) -> str:
        extra = ", answer=<up front>" if self.answered_up_front else ""
        return f"GeneratedGraph({self.plan!r}{extra})"
