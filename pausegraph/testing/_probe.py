"""Which step made two runs end differently: the diagnosis behind the properties' messages.

When two ways of running a workflow end in different states, "the final
state depends on the schedule" is true but not helpful: almost always one
step is at fault. ``find_culprit`` runs the workflow again with every step
wrapped so that it records what it read and what it wrote, and compares the
runs step by step, in layer order:

- two plain runs (one ``Runner``, no cold resume, no death) that differ mean
  a step is not deterministic: it reads a clock, a counter, a random number
  or outside data;
- plain runs that agree, against a run under the schedule that differs, mean
  a step changes when it is replayed: code outside ``yield Effect(...)``
  runs again on a cold resume or a recovery.

The wrapped copy has the same name, steps (in the same order), edges and
channels, so it checkpoints and replays exactly like the original.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Mapping
from types import GeneratorType
from typing import Any

import attrs

from .._graph import Graph
from ._driver import Schedule, _drive, memory_store


@attrs.define
class _Seen:
    """One step in one run: how often it was called and what its last finish read and wrote."""

    calls: int = 0
    read: dict[str, Any] | None = None
    writes: Any = None


def _finish(
    gen: Generator[Any, Any, Any], seen: _Seen, read: dict[str, Any]
) -> Generator[Any, Any, Any]:
    writes = yield from gen
    seen.read, seen.writes = read, writes
    return writes


def _watch(
    step_id: str, fn: Callable[[Mapping[str, Any]], Any], record: dict[str, _Seen]
) -> Callable[[Mapping[str, Any]], Any]:
    def watched(state: Mapping[str, Any]) -> Any:
        seen = record.setdefault(step_id, _Seen())
        seen.calls += 1
        read = dict(state)
        out = fn(state)
        if type(out) is GeneratorType:
            return _finish(out, seen, read)
        seen.read, seen.writes = read, out
        return out

    watched.__name__ = getattr(fn, "__name__", step_id)
    watched.__qualname__ = getattr(fn, "__qualname__", step_id)
    return watched


def _watched_run(
    graph: Graph,
    *,
    schedule: Schedule,
    answer: Callable[[Any], Any],
    input: Mapping[str, Any] | None,
    interrupt_before: Iterable[str],
    interrupt_after: Iterable[str],
) -> dict[str, _Seen]:
    record: dict[str, _Seen] = {}
    probe = Graph(graph.name, graph.channels)
    for step_id, fn in graph.steps.items():
        probe.step(step_id, _watch(step_id, fn, record))
    for src, dst in graph.edges:
        probe.edge(src, dst, when=graph.when.get((src, dst)))
    _drive(
        probe,
        answer=answer,
        input=input,
        factory=memory_store(),
        schedule=schedule,
        run_id="run",
        interrupt_before=tuple(interrupt_before),
        interrupt_after=tuple(interrupt_after),
        max_commands=10_000,
        log=None,
    )
    return record


def _first_difference(
    graph: Graph, one: dict[str, _Seen], other: dict[str, _Seen]
) -> tuple[str, _Seen, _Seen] | None:
    for layer in graph.layers():
        for step_id in layer:
            a, b = one.get(step_id, _Seen()), other.get(step_id, _Seen())
            if a.writes != b.writes:
                return step_id, a, b
    return None


_DETERMINISM = (
    "A step must be a function of the state it reads, its answers and its effects' results: "
    "read clocks, counters, random numbers and outside data through `yield Effect(fn, ...)`, "
    "whose result is journalled and replayed."
)
_REPLAY = (
    "Code outside `yield Effect(fn, ...)` runs again each time the step is replayed (a cold "
    "resume, a recovery after a process died): wrap side effects and reads of outside state in "
    "`yield Effect(fn, ...)` so that their results are journalled."
)


def find_culprit(
    graph: Graph,
    *,
    schedule: Schedule | None,
    answer: Callable[[Any], Any],
    input: Mapping[str, Any] | None,
    interrupt_before: Iterable[str],
    interrupt_after: Iterable[str],
) -> str | None:
    """Name the step that made two runs differ, and say what to do; ``None`` if none did.

    ``schedule=None`` only looks for a step that is not deterministic.
    """
    options: dict[str, Any] = {
        "answer": answer,
        "input": input,
        "interrupt_before": interrupt_before,
        "interrupt_after": interrupt_after,
    }
    try:
        first = _watched_run(graph, schedule=Schedule(), **options)
        second = _watched_run(graph, schedule=Schedule(), **options)
        found = _first_difference(graph, first, second)
        if found is not None:
            step_id, a, b = found
            same_state = " from the same state" if a.read == b.read else ""
            return (
                f"step {step_id!r} is not deterministic: run twice the same way (same input, "
                f"same answers, every resume hot) it wrote {a.writes!r} and then "
                f"{b.writes!r}{same_state}. {_DETERMINISM}"
            )
        if schedule is None:
            return None
        scheduled = _watched_run(graph, schedule=schedule, **options)
    except Exception:  # the diagnosis is best effort: the caller still reports the diff
        return None
    found = _first_difference(graph, first, scheduled)
    if found is None:
        return None
    step_id, a, b = found
    return (
        f"step {step_id!r} writes differently when it is replayed: on a plain run it wrote "
        f"{a.writes!r}, under {schedule!r} (called {b.calls} time(s)) it wrote {b.writes!r}. "
        f"{_REPLAY}"
    )
