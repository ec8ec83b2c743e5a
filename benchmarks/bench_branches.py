"""A wide ``All``: 1,000, 5,000 and 10,000 branches, each interrupting once.

Run it from the repository root::

    python benchmarks/bench_branches.py            # ~2 s
    python benchmarks/bench_branches.py --quick    # smaller sizes, a smoke run

One step yields ``All(*(ask(n) for n in range(branches)))``; each branch
yields one ``Interrupt(n)`` and returns its answer. For each size, on a
fresh ``FileCheckpointer``:

- **pause**: ``Runner.run`` until the run pauses with every branch waiting;
- **cold resume**: a new ``Runner`` on a new store handle answers every
  interrupt with one ``Resume(answers={id: value, ...})`` and runs to the end;
- **bytes on disk**: the store's files after the pause and after the end.

The table shows each figure per branch and its ratio to the smallest size's:
growth is linear when the ratios stay near 1 (target: at most 2x at the
largest size, for time and bytes). Exits 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Generator, Mapping
from pathlib import Path
from typing import Any

from pausegraph import (
    All,
    Done,
    FileCheckpointer,
    Graph,
    Interrupt,
    LastWriteWins,
    Paused,
    Resume,
    Runner,
)

SIZES = (1_000, 5_000, 10_000)
QUICK_SIZES = (100, 500, 1_000)
TARGET = 2.0  # per-branch cost at the largest size within 2x of the smallest's


def ask(n: int) -> Generator[Any, Any, Any]:
    answer = yield Interrupt(n)
    return answer


def fan(state: Mapping[str, Any]) -> Generator[Any, Any, dict[str, Any]]:
    results = yield All(*(ask(n) for n in range(state["branches"])))
    return {"out": len(results)}


def graph() -> Graph:
    g = Graph("branches", {"branches": LastWriteWins(), "out": LastWriteWins()})
    return g.step("fan", fan)


def disk_bytes(root: Path) -> int:
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file())


def measure(branches: int, where: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory(dir=where) as tmp:
        root = Path(tmp) / "runs"
        start = time.perf_counter()
        paused = Runner(graph(), FileCheckpointer(root)).run("r", {"branches": branches})
        pause = time.perf_counter() - start
        assert isinstance(paused, Paused)
        assert len(paused.interrupts) == branches
        paused_bytes = disk_bytes(root)
        answers = {i.id: i.payload for i in paused.interrupts}
        start = time.perf_counter()
        done = Runner(graph(), FileCheckpointer(root)).resume("r", Resume(answers=answers))
        resume = time.perf_counter() - start
        assert isinstance(done, Done)
        assert done.state["out"] == branches
        return {
            "pause": pause,
            "resume": resume,
            "paused_bytes": paused_bytes,
            "end_bytes": disk_bytes(root),
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes: a smoke run")
    parser.add_argument("--repeats", type=int, default=3, help="best of N (default 3)")
    parser.add_argument("--dir", default=None, help="where to put the file stores")
    args = parser.parse_args()
    sizes = QUICK_SIZES if args.quick else SIZES
    where = args.dir or os.environ.get("TMPDIR") or tempfile.gettempdir()
    rows = {}
    for n in sizes:
        runs = [measure(n, where) for _ in range(args.repeats)]
        rows[n] = {key: min(r[key] for r in runs) for key in runs[0]}
    base = rows[sizes[0]]

    def per(n: int, key: str) -> float:
        return rows[n][key] / n

    def ratio(n: int, key: str) -> float:
        return per(n, key) / (base[key] / sizes[0])

    print(f"best of {args.repeats}; ratio = per branch at this size / per branch at {sizes[0]}")
    print()
    print(
        "| branches | pause (s) | per branch (µs) | ratio | cold resume (s) "
        "| per branch (µs) | ratio | bytes paused | per branch | ratio "
        "| bytes at end | per branch |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in sizes:
        r = rows[n]
        print(
            f"| {n:,} | {r['pause']:.3f} | {per(n, 'pause') * 1e6:.1f} | {ratio(n, 'pause'):.2f} "
            f"| {r['resume']:.3f} | {per(n, 'resume') * 1e6:.1f} | {ratio(n, 'resume'):.2f} "
            f"| {int(r['paused_bytes']):,} | {per(n, 'paused_bytes'):.1f} "
            f"| {ratio(n, 'paused_bytes'):.2f} | {int(r['end_bytes']):,} "
            f"| {per(n, 'end_bytes'):.1f} |"
        )
    last = sizes[-1]
    print()
    ok = True
    for key, label in (("pause", "pause"), ("resume", "cold resume"), ("paused_bytes", "bytes")):
        passed = ratio(last, key) <= TARGET
        ok = ok and passed
        verdict = "PASS" if passed else "FAIL"
        print(f"{label}: per-branch ratio at {last:,} = {ratio(last, key):.2f} ({verdict})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
