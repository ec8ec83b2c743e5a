"""A pause/resume cycle on the SQLite store, against the file store.

Run it from the repository root::

    python benchmarks/bench_sqlite_cycle.py            # 300 cycles per store, 5 rounds
    python benchmarks/bench_sqlite_cycle.py --quick    # 30 cycles, 1 round
    python benchmarks/bench_sqlite_cycle.py --dir PATH # put the stores on that disk

The graph: input, one step that interrupts once, one step after it. A cycle
is ``run`` (saves the input, the pause) then ``resume`` (saves the claim and
two layers) on one ``Runner``, a new run id each time. Three stores, in
round-robin so a busy machine slows them alike:

- ``file``: ``FileCheckpointer``, an ``fsync`` per call, and one of ``runs/``
  for the call that creates a run (3 a cycle);
- ``sqlite``: ``SqliteCheckpointer`` as shipped: appends commit with
  ``synchronous=NORMAL``, ``sync()`` is one ``fdatasync`` of the WAL file;
- ``sqlite FULL``: the design left out, every append committed with
  ``synchronous=FULL`` and ``sync()`` doing nothing.

Each figure is the median of the rounds' median cycle times.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pausegraph import (
    Append,
    Done,
    FileCheckpointer,
    Graph,
    Interrupt,
    Paused,
    Resume,
    Runner,
    SqliteCheckpointer,
)
from pausegraph.checkpointers import StoreCheckpointer
from pausegraph.checkpointers.sqlite import SqliteStore


def ask(state: Any) -> Iterator[Any]:
    answer = yield Interrupt("ok?")
    return {"log": [answer]}


def after(state: Any) -> dict[str, Any]:
    return {"log": ["after"]}


GRAPH = Graph("cycle", {"log": Append()}).step("ask", ask).step("after", after).edge("ask", "after")


class _FullStore(SqliteStore):
    """Every append committed with ``synchronous=FULL``; nothing left for ``sync``."""

    def _connection(self) -> sqlite3.Connection:
        connection = super()._connection()
        connection.execute("PRAGMA synchronous=FULL")
        return connection

    def sync(self) -> None:
        pass


def cycle(runner: Runner, run_id: str) -> None:
    paused = runner.run(run_id, {"log": ["in"]})
    assert isinstance(paused, Paused)
    done = runner.resume(run_id, Resume("yes"))
    assert isinstance(done, Done)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    cycles, rounds = (30, 1) if args.quick else (300, 5)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        stores: dict[str, Callable[[Path], Any]] = {
            "file": lambda d: FileCheckpointer(d / "files"),
            "sqlite": lambda d: SqliteCheckpointer(d / "runs.db"),
            "sqlite FULL": lambda d: StoreCheckpointer(_FullStore(d / "full.db")),
        }
        medians: dict[str, list[float]] = {name: [] for name in stores}
        for r in range(rounds):
            for name, make in stores.items():
                where = root / f"{r}-{name.replace(' ', '-')}"
                where.mkdir()
                runner = Runner(GRAPH, make(where))
                times = []
                for i in range(cycles):
                    start = time.perf_counter()
                    cycle(runner, f"run-{i}")
                    times.append(time.perf_counter() - start)
                medians[name].append(statistics.median(times))
    print("| store | pause/resume cycle, median |")
    print("|---|---|")
    for name, values in medians.items():
        print(f"| {name} | {statistics.median(values) * 1000:.2f} ms |")


if __name__ == "__main__":
    main()
