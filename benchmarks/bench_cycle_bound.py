"""Where the durable stores' pause/resume cycle ratio against SqliteSaver can go.

The issue "Stores" asks for at least 8x per pause/resume cycle against
LangGraph's ``SqliteSaver`` for the file and the SQLite store. A cycle's
time on a disk is its CPU work plus its syncs: ``T = C + F * f``, with ``F``
the ``fsync``/``fdatasync`` calls a cycle makes and ``f`` what one costs on
that disk. The ratio of two such sums always lies between the ratio of
their CPU parts (a disk whose syncs are free) and the ratio of their sync
counts (a disk whose syncs cost everything), so measuring both bounds says
on which disks a target can be met at all:

- each side's cycle on the disk given by ``--dir`` and on a RAM file system
  (``--fast-dir``, default ``/dev/shm``: ``fsync`` there does nothing),
  round-robin in one process, medians;
- each side's syncs per cycle, counted by ``strace -f -c`` in a child
  process (two child runs of different lengths, so that setup cancels out);
  skipped when ``strace`` is not installed.

pausegraph's count is set by the SPEC's Durability rule: one sync per call
(``run``, then ``resume``), plus the directory of a log the call created.

    python benchmarks/bench_cycle_bound.py [--dir PATH] [--fast-dir PATH] [--samples N]
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _langgraph_side as lg
import _pausegraph_side as pg

from pausegraph import Runner

TARGET = 8.0
SIDES = ("pausegraph file", "pausegraph sqlite", "langgraph SqliteSaver")


def cycler(side: str, where: Path) -> Callable[[], None]:
    """One pause/resume cycle of the approval graph on ``side``'s store under ``where``."""
    ids = (f"t{n}" for n in itertools.count())
    if side == "langgraph SqliteSaver":
        cycle = lg.approval(lg.sqlite_saver(where / "lg.db"))
        return lambda: cycle(next(ids))
    store = pg.file_store(where / "files") if side == "pausegraph file" else None
    if store is None:
        store = pg.sqlite_store(where / "runs.db")
    runner = Runner(pg.approval_graph(), store)

    def one() -> None:
        run_id = next(ids)
        pg.approval_run(runner, run_id)
        pg.approval_resume(runner, run_id)

    return one


def timed(roots: dict[str, Path], samples: int) -> dict[tuple[str, str], float]:
    """Median seconds per cycle for each (disk, side), sampled round-robin."""
    cycles = {}
    for disk, root in roots.items():
        for n, side in enumerate(SIDES):
            where = root / f"{disk}-{n}"
            where.mkdir()
            cycles[(disk, side)] = cycler(side, where)
    for job in cycles.values():  # warm up: imports, statements, the first files
        for _ in range(20):
            job()
    times: dict[tuple[str, str], list[float]] = {key: [] for key in cycles}
    for _ in range(samples):
        for key, job in cycles.items():
            start = time.perf_counter()
            for _ in range(5):
                job()
            times[key].append((time.perf_counter() - start) / 5)
    return {key: statistics.median(values) for key, values in times.items()}


def syncs_per_cycle(side: str, root: Path) -> float | None:
    """``fsync`` and ``fdatasync`` calls per cycle of ``side``, by ``strace``; None without it."""
    strace = shutil.which("strace")
    if strace is None:
        return None
    counts = []
    for cycles in (20, 120):
        where = Path(tempfile.mkdtemp(dir=root))
        command = [strace, "-f", "-c", "-e", "trace=fsync,fdatasync", "-o", str(where / "st")]
        command += [sys.executable, __file__, "--child", side, str(cycles), str(where)]
        subprocess.run(command, check=True, env={**os.environ, "PYTHONHASHSEED": "0"})
        text = (where / "st").read_text()
        row = r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?f(?:data)?sync$"
        found = re.findall(row, text, re.M)
        counts.append(sum(int(n) for n in found))
    return (counts[1] - counts[0]) / 100


def child(side: str, cycles: int, where: Path) -> None:
    job = cycler(side, where)
    for _ in range(cycles):
        job()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=None, help="the disk (default: the temp dir)")
    parser.add_argument("--fast-dir", type=Path, default=Path("/dev/shm"))
    parser.add_argument("--samples", type=int, default=31)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), Path(args.child[2]))
        return 0
    if not lg.AVAILABLE:
        raise SystemExit(lg.MISSING)
    with (
        tempfile.TemporaryDirectory(dir=args.dir) as disk,
        tempfile.TemporaryDirectory(dir=args.fast_dir) as fast,
    ):
        roots = {"disk": Path(disk), "ram": Path(fast)}
        t = timed(roots, args.samples)
        syncs = {side: syncs_per_cycle(side, Path(disk)) for side in SIDES}
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"medians of {args.samples} round-robin samples of 5 cycles\n")
    print("| side | cycle on the disk | cycle in RAM (syncs free) | syncs a cycle | each sync |")
    print("|---|---|---|---|---|")
    for side in SIDES:
        n = syncs[side]
        disk_ms, ram_ms = t[("disk", side)] * 1e3, t[("ram", side)] * 1e3
        count = "strace not found" if n is None else f"{n:g}"
        each = "" if not n else f"{(disk_ms - ram_ms) / n:.2f} ms"
        print(f"| {side} | {disk_ms:.2f} ms | {ram_ms:.2f} ms | {count} | {each} |")
    print()
    print("| store vs SqliteSaver | on disk | syncs free | syncs dominant | break-even | target |")
    print("|---|---|---|---|---|---|")
    theirs = "langgraph SqliteSaver"
    for side in SIDES[:2]:
        on_disk = t[("disk", theirs)] / t[("disk", side)]
        in_ram = t[("ram", theirs)] / t[("ram", side)]
        ours_n, theirs_n = syncs[side], syncs[theirs]
        bound = even = "?"
        if ours_n and theirs_n is not None:
            bound = f"{theirs_n / ours_n:.1f}x"
            # the sync cost f at which (F_lg f + C_lg) / (F f + C) = TARGET, syncs costing alike
            slack = t[("ram", theirs)] - TARGET * t[("ram", side)]
            steeper = TARGET * ours_n - theirs_n
            if steeper <= 0:
                even = "any sync cost" if slack >= 0 else "none"
            else:
                even = f"syncs under {slack / steeper * 1e3:.2f} ms" if slack > 0 else "none"
        print(f"| {side} | {on_disk:.1f}x | {in_ram:.1f}x | {bound} | {even} | >= {TARGET:g}x |")
    print(
        "\nsyncs free: both sides' cycles in RAM (the CPU work alone); syncs dominant: the"
        "\nratio of sync counts, where it tends as a sync costs more; on any disk the ratio"
        "\nlies between the two. break-even: the sync cost under which the target can hold"
        "\nif each side's sync cost the same."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
