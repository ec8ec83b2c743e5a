"""Scale: time per step and peak memory as a graph grows 10x and 100x (pausegraph only).

Run it from the repository root::

    python benchmarks/bench_scale.py           # chains of 1k, 10k, 100k; layers of 100, 1k, 10k
    python benchmarks/bench_scale.py --quick   # the two smaller sizes of each, one repeat

A chain of N steps is N super-steps and N checkpoints; a layer of N steps is
one super-step with N steps in it. Both run on a ``MemoryCheckpointer``, which
keeps every checkpoint (``history`` must list them all), so total memory
necessarily grows with N: what must stay flat is the time and the peak memory
*per step*. Each size is compared with the smallest of its kind and passes
within 2x.

Peak memory is Python's traced allocation (tracemalloc) during one run, taken
in a run of its own since tracing slows allocation down. A size whose
estimated time (from the previous size's per-step cost) would exceed the time
budget is skipped and reported, instead of hanging the suite on a super-linear
engine.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _pausegraph_side as pg
from _harness import (
    Counter,
    Row,
    Table,
    fmt_bytes,
    fmt_time,
    machine_lines,
    median_ns,
    parse_args,
    peak_bytes,
    print_tables,
    verdict_counts,
    within,
)

from pausegraph import Runner

FLAT_LIMIT = 2.0
BUDGET_S = 120.0
"""The most one size may take (all its repeats and its traced run) before it is skipped."""

TRACE_SLOWDOWN = 4.0
"""How much slower a run is under tracemalloc, for the time estimate."""


@dataclass(frozen=True)
class Shape:
    label: str
    build: Callable[[int], Any]
    run: Callable[[int], Callable[[Any, str], None]]


SHAPES = {
    "chain": Shape("chain of {n} steps", pg.chain_graph, pg.chain),
    "layer": Shape("layer of {n} steps", pg.layer_graph, pg.layer),
}


@dataclass(frozen=True)
class Measured:
    n: int
    per_step_ns: float = 0.0
    peak: int = 0
    skipped: str | None = None


def measure(kind: str, sizes: list[int], repeats: int, ids: Counter) -> list[Measured]:
    shape = SHAPES[kind]
    found: list[Measured] = []
    for n in sizes:
        if found and found[-1].skipped is None:
            estimate = found[-1].per_step_ns * n * (repeats + 1 + TRACE_SLOWDOWN) / 1e9
            if estimate > BUDGET_S:
                why = f"skipped: estimated {estimate:.0f} s > {BUDGET_S:.0f} s budget"
                found.append(Measured(n, skipped=why))
                continue
        started = time.perf_counter()
        graph = shape.build(n)
        Runner(graph)  # freezes the graph: its layers are computed once, here
        built = time.perf_counter() - started
        run = shape.run(n)

        def prepare(graph: Any = graph, run: Any = run) -> Callable[[], object]:
            return functools.partial(run, Runner(graph), ids())

        per_step = median_ns(prepare, repeats) / n
        peak = peak_bytes(prepare())
        found.append(Measured(n, per_step, peak))
        print(
            f"  {shape.label.format(n=n)}: {fmt_time(per_step)}/step, peak {fmt_bytes(peak)}, "
            f"graph built and frozen in {built:.2f} s",
            flush=True,
        )
    return found


def tables(kind: str, found: list[Measured]) -> tuple[Table, Table]:
    label = SHAPES[kind].label
    base = found[0]
    times = Table(
        f"6. {kind}: time per step as it grows (memory store; ratio = this size / smallest)",
        ("per step", f"at n={base.n}"),
    )
    peaks = Table(
        f"6. {kind}: peak traced memory per step, total in brackets (ratio = this size / smallest)",
        ("per step (total)", f"at n={base.n}"),
    )
    for m in found:
        name = label.format(n=m.n)
        if m.skipped is not None or base.skipped is not None:
            why = m.skipped or base.skipped or ""
            times.add(Row(name, why, passed=False))
            peaks.add(Row(name, why, passed=False))
            continue
        limit = None if m is base else FLAT_LIMIT
        times.add(within(name, m.per_step_ns, base.per_step_ns, limit=limit))
        row = within(name, m.peak / m.n, base.peak / base.n, limit=limit, fmt=fmt_bytes)
        row.ours = f"{fmt_bytes(m.peak / m.n)} ({fmt_bytes(m.peak)})"
        peaks.add(row)
    return times, peaks


def main(argv: list[str] | None = None) -> int:
    args = parse_args("pausegraph at scale: time and memory per step", argv, repeats=(3, 1))
    if args.quick:
        sizes = {"chain": [1_000, 10_000], "layer": [100, 1_000]}
    else:
        sizes = {"chain": [1_000, 10_000, 100_000], "layer": [100, 1_000, 10_000]}
    started = time.perf_counter()
    for line in machine_lines(["pausegraph", "msgpack", "attrs", "cattrs"]):
        print(line)
    print(f"medians of {args.repeats} timed repeats; peaks from one more run under tracemalloc")
    print()
    ids = Counter("scale")
    all_tables: list[Table] = []
    for kind, ns in sizes.items():
        found = measure(kind, ns, args.repeats, ids)
        all_tables.extend(tables(kind, found))
    print()
    print_tables(all_tables)
    passed, failed = verdict_counts(all_tables)
    print(f"targets: {passed} PASS, {failed} FAIL; took {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
