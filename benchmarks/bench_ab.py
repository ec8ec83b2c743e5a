"""Two commits of the engine in one process, timed round-robin: is the new one slower?

Run it from the repository root::

    python benchmarks/bench_ab.py 8c3dcef HEAD            # old, new: pausegraph's own workloads
    python benchmarks/bench_ab.py 8c3dcef HEAD --quick    # a smoke run

Each commit's ``pausegraph`` package is exported with ``git archive`` into a
temporary directory under another name (``pg_a``, ``pg_b``: the engine
imports itself only relatively, so both load side by side), and each
workload of ``_pausegraph_side`` is built once on each. The samples are
taken round-robin in one process (``median_many``: one sample of A, one of
B, again and again), so a neighbour loading the machine for a while slows
both engines alike: on a shared machine this is steadier than comparing
whole runs of the other scripts, which may each meet a different neighbour.

The ratio is new / old, and each pausegraph workload passes when the new
commit is at most ``--limit`` (default 1.10: "not slower by more than 10%")
times the old one. Each workload is called ``WARMUP`` times first and its
batch size (``median_many``) judged from the last of those calls, which no
first-call cost (codec hooks built, caches filled) inflates: a batch judged
from a cold first call is too small, and its samples are noisier.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import importlib.util
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (
    Counter,
    Scratch,
    Table,
    fmt_time,
    load_line,
    machine_lines,
    median_many,
    print_tables,
    verdict_counts,
    within,
)

HERE = Path(__file__).resolve().parent
Work = Callable[[], object]
# calls of each workload before timing: the batch size is judged from the last,
# so a first call that builds codec hooks or fills caches does not shrink it
WARMUP = 3


def export(commit: str, name: str, into: Path) -> str:
    """Put ``commit``'s ``pausegraph/`` at ``into/name``; return the commit's short hash."""
    short = subprocess.run(
        ["git", "rev-parse", "--short", commit],
        cwd=HERE,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    archive = into / f"{name}.tar"
    with archive.open("wb") as out:
        subprocess.run(
            ["git", "archive", commit, "pausegraph"], cwd=HERE.parent, check=True, stdout=out
        )
    with tarfile.open(archive) as tar:
        tar.extractall(into / f"{name}-tree", filter="data")
    (into / f"{name}-tree" / "pausegraph").rename(into / name)
    return short


def side(name: str) -> tuple[ModuleType, Any]:
    """``_pausegraph_side`` bound to the engine package ``name``, and that package's Runner."""
    engine = importlib.import_module(name)
    saved = sys.modules.get("pausegraph")
    sys.modules["pausegraph"] = engine
    try:
        spec = importlib.util.spec_from_file_location(f"_side_{name}", HERE / "_pausegraph_side.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        if saved is None:
            del sys.modules["pausegraph"]
        else:
            sys.modules["pausegraph"] = saved
    return module, engine.Runner


class Plans:
    """The workloads, each a prepare per engine, with how many steps a run has."""

    def __init__(self, chain: int, layer: int, scratch: Scratch) -> None:
        self.chain = chain
        self.layer = layer
        self.scratch = scratch
        self.ids = Counter("ab")

    def each_run(self, fn: Callable[[str], object]) -> Callable[[], Work]:
        return lambda: functools.partial(fn, self.ids())

    def build(self, pg: ModuleType, runner: Any) -> dict[str, tuple[Callable[[], Work], int]]:
        n, w = self.chain, self.layer
        chain = pg.chain_graph(n)
        approval = pg.approval_graph()
        memory = pg.memory_store()
        hot = runner(approval, memory)

        def hot_cycle(run_id: str) -> None:
            pg.approval_run(hot, run_id)
            pg.approval_resume(hot, run_id)

        def cold_cycle(run_id: str) -> None:
            pg.approval_run(runner(approval, memory), run_id)
            pg.approval_resume(runner(approval, memory), run_id)

        files = pg.file_store(self.scratch.new("ab-chain"))
        return {
            f"chain of {n}, memory store: per step": (
                self.each_run(functools.partial(pg.chain(n), runner(chain, pg.memory_store()))),
                n,
            ),
            f"layer of {w}, memory store: per step": (
                self.each_run(
                    functools.partial(pg.layer(w), runner(pg.layer_graph(w), pg.memory_store()))
                ),
                w,
            ),
            "pause/resume cycle, memory store, hot": (self.each_run(hot_cycle), 1),
            "pause/resume cycle, memory store, cold": (self.each_run(cold_cycle), 1),
            f"chain of {n}, file store: per step": (
                self.each_run(functools.partial(pg.chain(n), runner(chain, files))),
                n,
            ),
            # a large MergeMap changed one key a step: folded in place, no copy of the map
            f"chain of {n} over a 10,000-key map, memory store: per step": (
                self.each_run(
                    functools.partial(
                        pg.map_chain(10_000),
                        runner(pg.map_chain_graph(n, 10_000), pg.memory_store()),
                    )
                ),
                n,
            ),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("old", help="the commit to compare with (e.g. 8c3dcef)")
    parser.add_argument("new", nargs="?", default="HEAD", help="the commit measured (HEAD)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    parser.add_argument("--repeats", type=int, default=None, help="round-robin rounds (15)")
    parser.add_argument("--limit", type=float, default=1.10, help="new / old at most (1.10)")
    parser.add_argument("--dir", type=Path, default=None, help="where file stores are made")
    args = parser.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 15)
    started = time.perf_counter()
    scratch = Scratch(args.dir)
    with tempfile.TemporaryDirectory(prefix="pausegraph-ab-") as tmp:
        old = export(args.old, "pg_a", Path(tmp))
        new = export(args.new, "pg_b", Path(tmp))
        sys.path.insert(0, tmp)
        for line in machine_lines(["msgpack", "attrs", "cattrs"]):
            print(line)
        print(f"old: {old} (pg_a), new: {new} (pg_b); medians of {repeats} round-robin rounds")
        print()
        plans = Plans(50 if args.quick else 200, 100 if args.quick else 1000, scratch)
        a, b = plans.build(*side("pg_a")), plans.build(*side("pg_b"))
        try:
            prepares = [p for key in a for p in (a[key][0], b[key][0])]
            t = median_many(prepares, repeats, warmup=WARMUP)
        finally:
            scratch.close()
    table = Table(
        f"old {old} vs new {new}: pausegraph's time (ratio = new / old)",
        (f"new {new}", f"old {old}"),
    )
    for i, (key, (_, steps)) in enumerate(a.items()):
        old_ns, new_ns = t[2 * i] / steps, t[2 * i + 1] / steps
        table.add(within(key, new_ns, old_ns, limit=args.limit, fmt=fmt_time))
    print_tables([table])
    print(load_line("at end"))
    passed, failed = verdict_counts([table])
    print(f"targets: {passed} PASS, {failed} FAIL; took {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
