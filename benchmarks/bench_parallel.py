"""Parallel effects: 8 steps of one layer, each waiting 0.2 s on an effect, with 8 threads.

Run it from the repository root::

    python benchmarks/bench_parallel.py

Each of the 8 steps yields ``Effect(wait, 0.2)`` (``time.sleep``). With
``Runner(executor=ThreadPoolExecutor(8))`` the effects are submitted
together and awaited together, so the run should take about one effect's
time: the target is a wall time within 1.5x of one effect (0.3 s), on the
memory store and on the file store. Without an executor the same run takes
8 effects' time (shown for reference). Prints a Markdown table with a
PASS/FAIL column; exits 1 if a target is missed.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable, Generator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pausegraph import Append, Effect, FileCheckpointer, Graph, MemoryCheckpointer, Runner
from pausegraph.checkpointers import Checkpointer

STEPS = 8
SECONDS = 0.2
TARGET = 1.5


def wait(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def waiting_step(name: str) -> Callable[[Mapping[str, Any]], Generator[Any, Any, Any]]:
    def step(state: Mapping[str, Any]) -> Generator[Any, Any, Any]:
        yield Effect(wait, SECONDS)
        return {"log": name}

    return step


def graph() -> Graph:
    g = Graph("parallel", {"log": Append()})
    for n in range(STEPS):
        g.step(f"s{n}", waiting_step(f"s{n}"))
    return g


def timed(store: Checkpointer, executor: ThreadPoolExecutor | None, run_id: str) -> float:
    runner = Runner(graph(), store, executor=executor)
    start = time.perf_counter()
    runner.run(run_id, {})
    return time.perf_counter() - start


def main() -> int:
    rows = []
    ok = True
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(STEPS) as pool:
        stores: list[tuple[str, Checkpointer]] = [
            ("memory", MemoryCheckpointer()),
            ("file", FileCheckpointer(f"{tmp}/runs")),
        ]
        for name, store in stores:
            best = min(timed(store, pool, f"{name}-{n}") for n in range(3))
            passed = best <= TARGET * SECONDS
            ok = ok and passed
            rows.append((f"{STEPS} threads, {name} store", best, "PASS" if passed else "FAIL"))
        alone = timed(MemoryCheckpointer(), None, "alone")
        rows.append(("no executor, memory store (reference)", alone, ""))
    print(f"| run | wall time (s) | target <= {TARGET * SECONDS:.2f} s |")
    print("|---|---|---|")
    for label, seconds, verdict in rows:
        print(f"| {label} | {seconds:.3f} | {verdict} |")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
