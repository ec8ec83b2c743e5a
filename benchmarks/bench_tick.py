"""``Runner.tick()`` over many paused runs of which a few are due.

Run it from the repository root::

    python benchmarks/bench_tick.py               # memory and file stores
    python benchmarks/bench_tick.py --kinds memory --repeats 5
    python benchmarks/bench_tick.py --quick       # a tenth of the runs: a smoke run

A worker calls ``tick()`` every few seconds or minutes, over a store where
most runs wait for a person with a deadline days away, and a few have
passed theirs. Its cost should follow the runs it moves (each is claimed,
replayed and saved like a resume), not the runs it leaves alone. So every
store holds ``runs`` paused runs whose interrupt has a deadline: ``due`` of
them a second away, the others a year away. Three shapes are compared:
100 due of 1,000, 100 due of 10,000 (ten times the runs, the same work),
and 10 due of 10,000 (a tenth of the work).

Each due run's step catches the ``InterruptTimeout`` and asks again with a
new one-second timeout, so every repeat moves the clock one second and
ticks the same ``due`` runs once more (the journal of each grows by one
entry per repeat). Beside the tick, the table shows how ``tick`` lists
the candidates: the store's ``summaries(workflow_id=..., status="paused")``
where it has one (the memory store), else ``runs()`` and every run's
``latest()`` checkpoint (the file store until its summaries land): the
part of the cost that grows with every paused run.
Building the stores is not timed (the file store's takes a while).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Generator
from datetime import timedelta
from pathlib import Path
from typing import Any

from pausegraph import (
    FileCheckpointer,
    Graph,
    Interrupt,
    InterruptTimeout,
    LastWriteWins,
    MemoryCheckpointer,
    Runner,
)
from pausegraph.checkpointers import Checkpointer

SHAPES = [(1_000, 100), (10_000, 100), (10_000, 10)]
YEAR = timedelta(days=365)


def wait(state: Any) -> Generator[Any, Any, dict[str, Any]]:
    timeout = 1 if state["due"] else YEAR
    rounds = 0
    while True:
        try:
            answer = yield Interrupt({"question": "approve?"}, timeout=timeout)
            return {"answer": answer, "rounds": rounds}
        except InterruptTimeout:
            rounds += 1


GRAPH = Graph(
    "tick", {"due": LastWriteWins(), "answer": LastWriteWins(), "rounds": LastWriteWins()}
).step("wait", wait)


class Clock:
    def __init__(self) -> None:
        self.now_ms = 1_700_000_000_000

    def __call__(self) -> int:
        return self.now_ms


def build(store: Checkpointer, runs: int, due: int, clock: Clock) -> float:
    """Start ``runs`` paused runs, every ``runs // due``-th of them due; returns seconds taken."""
    runner = Runner(GRAPH, store, clock=clock)
    every = runs // due
    started = time.perf_counter()
    for n in range(runs):
        runner.run(f"run-{n:05d}", {"due": n % every == 0})
    return time.perf_counter() - started


def measure(store: Checkpointer, due: int, clock: Clock, repeats: int) -> dict[str, float]:
    # a new Runner holds no live generators: every tick replays, as a worker's would
    runner = Runner(GRAPH, store, clock=clock)
    ticks, listings = [], []
    for _ in range(repeats + 1):  # the first is a warm-up
        clock.now_ms += 1_000
        started = time.perf_counter()
        moved = runner.tick()
        ticks.append(time.perf_counter() - started)
        if len(moved) != due:
            msg = f"tick moved {len(moved)} runs, expected {due}"
            raise SystemExit(msg)
        started = time.perf_counter()
        listing(store)
        listings.append(time.perf_counter() - started)
    return {"tick": statistics.median(ticks[1:]), "listing": statistics.median(listings[1:])}


def listing(store: Checkpointer) -> None:
    """What ``tick`` reads to find the due runs: summaries, or every run's latest checkpoint."""
    summaries = getattr(store, "summaries", None)
    if summaries is not None:
        summaries(workflow_id=GRAPH.name, status="paused")
        return
    for workflow, run_id in store.runs():  # a store without summaries (the file store, today)
        if workflow == GRAPH.name:
            store.latest(workflow, run_id)


def open_store(kind: str, root: Path, name: str) -> Checkpointer:
    if kind == "memory":
        return MemoryCheckpointer()
    return FileCheckpointer(root / name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", nargs="+", default=["memory", "file"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--scale", type=int, default=1, help="divide the run counts by this")
    parser.add_argument("--dir", help="where to build the file stores (default: a temp dir)")
    parser.add_argument("--quick", action="store_true", help="--scale 10 --repeats 2")
    args = parser.parse_args(argv)
    if args.quick:
        args.scale, args.repeats = 10, 2
    rows = []
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for kind in args.kinds:
            for runs, due in SHAPES:
                runs, due = runs // args.scale, max(1, due // args.scale)
                clock = Clock()
                store = open_store(kind, Path(tmp), f"{runs}-{due}")
                built = build(store, runs, due, clock)
                print(f"built {runs} runs on {kind} in {built:.1f} s", file=sys.stderr)
                result = measure(store, due, clock, args.repeats)
                rows.append((kind, runs, due, result["tick"], result["listing"]))
    header = f"{'store':<7} {'runs':>6} {'due':>4} {'tick':>10} {'per due run':>12} {'listing':>10}"
    print(header)
    print("-" * len(header))
    for kind, runs, due, tick, listing in rows:
        print(
            f"{kind:<7} {runs:>6} {due:>4} {tick * 1e3:>8.1f} ms {tick / due * 1e3:>9.2f} ms "
            f"{listing * 1e3:>7.1f} ms"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
