"""Ready-made properties: call them inside your own ``@given`` test.

Each one drives the workflow two or more ways with ``drive`` and raises
``AssertionError`` with a channel-by-channel diff when the ways disagree.
Engine errors (``NondeterminismError`` and the like) propagate as they are:
they are failures too, and their messages say which step strayed.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any

from .._commands import Done
from .._graph import Graph
from .._runner import Runner
from ._driver import CheckpointerFactory, Schedule, Trace, _default_answer, _drive, memory_store
from ._plans import GeneratedGraph, recording_effects
from ._probe import find_culprit

AnswerFn = Callable[[Any], Any]


def diff_states(expected: Mapping[str, Any], actual: Mapping[str, Any]) -> str:
    """The channels whose values differ, one per line (empty when equal)."""
    lines = []
    for channel in sorted(set(expected) | set(actual), key=str):
        want = expected.get(channel, "<missing>")
        got = actual.get(channel, "<missing>")
        if want != got:
            lines.append(f"  channel {channel!r}:\n    expected {want!r}\n    got      {got!r}")
    return "\n".join(lines)


def _compare(
    what: str, baseline: Done, other: Done, explain: Callable[[], str | None] | None = None
) -> None:
    diff = diff_states(baseline.state, other.state)
    if diff:
        culprit = explain() if explain is not None else None
        if culprit is not None:
            msg = f"{culprit}\nThe final states differ:\n{diff}"
        else:
            msg = f"the final state depends on {what}:\n{diff}"
        raise AssertionError(msg)
    if baseline.super_step != other.super_step:
        msg = f"the final super-step depends on {what}: {baseline.super_step} vs {other.super_step}"
        raise AssertionError(msg)


def _run(
    graph: Graph,
    *,
    answer: AnswerFn,
    input: Mapping[str, Any] | None,
    factory: CheckpointerFactory,
    schedule: Schedule,
    interrupt_before: Iterable[str],
    interrupt_after: Iterable[str],
    log: Sequence[Hashable] | None = None,
) -> Trace:
    return _drive(
        graph,
        answer=answer,
        input=input,
        factory=factory,
        schedule=schedule,
        run_id="run",
        interrupt_before=tuple(interrupt_before),
        interrupt_after=tuple(interrupt_after),
        max_commands=10_000,
        log=log,
    )


def _done(trace: Trace) -> Done:
    assert trace.done is not None
    return trace.done


def assert_path_independent(
    graph: Graph,
    *,
    schedule: Schedule,
    answer: AnswerFn = _default_answer,
    input: Mapping[str, Any] | None = None,
    checkpointer_factory: CheckpointerFactory | None = None,
    interrupt_before: Iterable[str] = (),
    interrupt_after: Iterable[str] = (),
) -> Done:
    """The final state does not depend on how the run went through its pauses.

    Drives the run once the plain way (one ``Runner``, every interrupt
    answered at once, no deaths) and once as ``schedule`` says (cold or hot
    resumes, answers one by one, process deaths before saves), on the store
    ``checkpointer_factory`` opens, and compares the two ``Done``\\ s.
    Returns the plain run's ``Done``.

    hypothesis seeds the ``random`` module alike for every example, so a
    step that decides on ``random.random()`` would draw the same numbers in
    every example's two runs; the scheduled run draws from ``random``
    seeded by the schedule instead (its state is put back afterwards), so
    such a step shows as the run depending on the schedule.
    """
    options: dict[str, Any] = {
        "answer": answer,
        "input": input,
        "interrupt_before": interrupt_before,
        "interrupt_after": interrupt_after,
    }
    baseline = _done(_run(graph, factory=memory_store(), schedule=Schedule(), **options))
    factory = checkpointer_factory or memory_store()
    drawn = random.getstate()
    random.seed(f"pausegraph.testing: {schedule!r}")
    try:
        other = _done(_run(graph, factory=factory, schedule=schedule, **options))
    finally:
        random.setstate(drawn)
    _compare(
        f"the schedule of resumes {schedule!r}",
        baseline,
        other,
        lambda: find_culprit(graph, schedule=schedule, **options),
    )
    return baseline


def assert_store_independent(
    graph: Graph,
    *,
    checkpointer_factories: Sequence[CheckpointerFactory],
    answer: AnswerFn = _default_answer,
    input: Mapping[str, Any] | None = None,
    schedule: Schedule | None = None,
    interrupt_before: Iterable[str] = (),
    interrupt_after: Iterable[str] = (),
) -> Done:
    """The final state does not depend on which checkpointer stored the run.

    Each factory must open its own, empty store (``memory_store()``,
    ``lambda: FileCheckpointer(tmp_path / "a")``, ...). One factory alone
    is compared with ``memory_store()``. Every pause is resumed cold by
    default, so each resume really reads the store. ``ValueError`` without
    a factory.
    """
    if not checkpointer_factories:
        msg = "assert_store_independent needs at least one checkpointer factory"
        raise ValueError(msg)
    if len(checkpointer_factories) == 1:  # one store compared with nothing checks nothing
        checkpointer_factories = [memory_store(), *checkpointer_factories]
    chosen = schedule if schedule is not None else Schedule(cold=True)
    results = [
        _done(
            _run(
                graph,
                answer=answer,
                input=input,
                factory=factory,
                schedule=chosen,
                interrupt_before=interrupt_before,
                interrupt_after=interrupt_after,
            )
        )
        for factory in checkpointer_factories
    ]
    options: dict[str, Any] = {
        "answer": answer,
        "input": input,
        "interrupt_before": interrupt_before,
        "interrupt_after": interrupt_after,
    }
    for i, other in enumerate(results[1:], start=1):
        _compare(
            f"the checkpointer (factory 0 vs factory {i})",
            results[0],
            other,
            lambda: find_culprit(graph, schedule=None, **options),
        )
    return results[0]


def assert_effects_run_once(
    graph: Graph,
    *,
    answer: AnswerFn = _default_answer,
    input: Mapping[str, Any] | None = None,
    schedule: Schedule | None = None,
    checkpointer_factory: CheckpointerFactory | None = None,
    log: Sequence[Hashable] | None = None,
    expected: Iterable[Hashable] | None = None,
    interrupt_before: Iterable[str] = (),
    interrupt_after: Iterable[str] = (),
) -> Done:
    """Every effect ran exactly once, except where a process death excuses it.

    ``log`` is a list your effect functions append a key to each time they
    really run (for ``graphs()`` workflows leave it out: the recording
    effect's log is used, and ``expected`` defaults to the plan's effects).
    Only what is appended during this call counts, so one module-level list
    can serve every example of a ``@given`` test without being cleared.
    A key may appear twice only if the process died after its first run and
    before any checkpoint was saved (then its result was lost, and the SPEC
    allows running it again); an effect whose result reached a checkpoint
    must never run again. With ``expected``, every expected key must have
    run, and nothing else. Without ``log``, a graph that ``graphs()`` did not
    make and in which no recording effect ran is a ``ValueError``: nothing
    was watched, so nothing would be checked.
    """
    options: dict[str, Any] = {
        "answer": answer,
        "input": input,
        "factory": checkpointer_factory or memory_store(),
        "schedule": schedule or Schedule(),
        "interrupt_before": interrupt_before,
        "interrupt_after": interrupt_after,
    }
    if log is None:
        if expected is None and isinstance(graph, GeneratedGraph):
            expected = graph.plan.expected_effects(answer)
        with recording_effects() as recorded:
            trace = _run(graph, log=recorded, **options)
        if not recorded and not isinstance(graph, GeneratedGraph):
            msg = (
                "assert_effects_run_once watched nothing: no recording effect ran in this "
                "graph, which graphs() did not make. Pass log=, a list your effect functions "
                "append a key to each time they run"
            )
            raise ValueError(msg)
        calls: list[Hashable] = list(recorded)
        start = 0
    else:
        # only the calls made during this check count: a log shared by every
        # hypothesis example (a module-level list) keeps what earlier ones added
        start = len(log)
        trace = _run(graph, log=log, **options)
        calls = list(log[start:])
    events = [(kind, mark - start) for kind, mark in trace.events]
    problems = _effect_problems(calls, events, expected)
    if problems:
        msg = "effects did not run exactly once:\n" + "\n".join(f"  {p}" for p in problems)
        raise AssertionError(msg)
    return _done(trace)


def _effect_problems(
    log: list[Hashable], events: list[tuple[str, int]], expected: Iterable[Hashable] | None
) -> list[str]:
    problems = []
    positions: dict[Hashable, list[int]] = {}
    for position, key in enumerate(log):
        positions.setdefault(key, []).append(position)
    for key, where in positions.items():
        for first, again in itertools.pairwise(where):
            # the first thing that happened after the earlier run must be a death,
            # and before the later run: otherwise a checkpoint held its result
            after = next(((kind, mark) for kind, mark in events if mark > first), None)
            if after is None or after[0] != "crash" or after[1] > again:
                problems.append(
                    f"{key!r} ran again (calls #{first + 1} and #{again + 1}) though a "
                    "checkpoint was saved after its first run and no process died in "
                    "between: either the workflow yields an Effect logging this key twice "
                    "(a bug, or give each call its own key), or a step calls the function "
                    "directly and repeats it on replay (call it as `yield Effect(fn, ...)`)"
                )
    if expected is not None:
        want = Counter(expected)
        got = Counter({key: len(where) for key, where in positions.items()})
        missing = sorted(map(repr, want - got))
        # runs beyond the expected count were vetted above: only unknown keys are wrong
        unexpected = sorted(repr(key) for key in got if key not in want)
        if missing:
            problems.append(f"never ran: {', '.join(missing)}")
        if unexpected:
            problems.append(f"not expected: {', '.join(unexpected)}")
    return problems


def assert_same_as_answers_up_front(
    graph: GeneratedGraph,
    *,
    answer: AnswerFn = _default_answer,
    input: Mapping[str, Any] | None = None,
    schedule: Schedule | None = None,
    checkpointer_factory: CheckpointerFactory | None = None,
) -> Done:
    """Pausing changes nothing: the run ends as if every answer had been known.

    Builds the same plan with its interrupts answered inside the steps
    (``GeneratedGraph(plan, answer=answer)``), runs that without a single
    pause, and compares it with driving ``graph`` through its interrupts.
    """
    known = Runner(GeneratedGraph(graph.plan, answer=answer)).run("run", input)
    assert isinstance(known, Done), known
    trace = _run(
        graph,
        answer=answer,
        input=input,
        factory=checkpointer_factory or memory_store(),
        schedule=schedule or Schedule(),
        interrupt_before=(),
        interrupt_after=(),
    )
    _compare("pausing for answers (vs knowing them up front)", known, _done(trace))
    return known
