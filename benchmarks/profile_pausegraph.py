"""Where pausegraph's time goes: cProfile of the benchmark workloads.

Run it from the repository root::

    python benchmarks/profile_pausegraph.py                 # every workload, top 15
    python benchmarks/profile_pausegraph.py cycle --top 25  # one workload

Each workload runs many times under one profiler (after an unprofiled warm-up)
and the functions are listed by their own time (tottime), the time spent in
the function's body and not in what it calls, or with ``--sort cumtime`` by
the time spent in them and everything they call. cProfile adds a fixed cost to
every call, so it overstates code that makes many small calls; use it to find
where the time goes, and the benchmark scripts to measure how much there is.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _pausegraph_side as pg
from _harness import Counter

from pausegraph import Runner


def chain_memory(ids: Counter, _root: Path) -> Callable[[], None]:
    graph = pg.chain_graph(200)
    run = pg.chain(200)
    runner = Runner(graph, pg.memory_store())
    return lambda: run(runner, ids())


def layer_memory(ids: Counter, _root: Path) -> Callable[[], None]:
    graph = pg.layer_graph(1000)
    run = pg.layer(1000)
    runner = Runner(graph, pg.memory_store())
    return lambda: run(runner, ids())


def _cycle(store: pg.Store) -> Callable[[str], None]:
    runner = Runner(pg.approval_graph(), store)

    def cycle(run_id: str) -> None:
        pg.approval_run(runner, run_id)
        pg.approval_resume(runner, run_id)

    return cycle


def cycle_memory(ids: Counter, _root: Path) -> Callable[[], None]:
    cycle = _cycle(pg.memory_store())
    return lambda: cycle(ids())


def cycle_file(ids: Counter, root: Path) -> Callable[[], None]:
    cycle = _cycle(pg.file_store(root / "cycle"))
    return lambda: cycle(ids())


def chain_file(ids: Counter, root: Path) -> Callable[[], None]:
    graph = pg.chain_graph(200)
    run = pg.chain(200)
    runner = Runner(graph, pg.file_store(root / "chain"))
    return lambda: run(runner, ids())


WORKLOADS: dict[str, tuple[str, Callable[[Counter, Path], Callable[[], None]], int]] = {
    "chain": ("chain of 200 trivial steps, memory store", chain_memory, 50),
    "layer": ("one layer of 1000 parallel steps, memory store", layer_memory, 10),
    "cycle": ("pause/resume cycle, memory store, hot resume", cycle_memory, 500),
    "chain-file": ("chain of 200 trivial steps, file store", chain_file, 5),
    "cycle-file": ("pause/resume cycle, file store, hot resume", cycle_file, 100),
}


def profile(name: str, top: int, root: Path, sort: str = "tottime") -> str:
    title, make, times = WORKLOADS[name]
    work = make(Counter(name), root)
    work()
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(times):
        work()
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.strip_dirs().sort_stats(sort).print_stats(top)
    body = out.getvalue().strip().splitlines()
    # drop pstats' preamble up to the totals line; keep the totals and the table
    start = next((i for i, line in enumerate(body) if "function calls" in line), 0)
    return f"## {title} (x{times})\n\n" + "\n".join(body[start:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("workloads", nargs="*", choices=[[], *WORKLOADS], default=[])
    parser.add_argument("--top", type=int, default=15, help="functions to list (default 15)")
    parser.add_argument(
        "--sort",
        choices=["tottime", "cumtime"],
        default="tottime",
        help="own time (default) or time including callees",
    )
    args = parser.parse_args(argv)
    names = args.workloads or list(WORKLOADS)
    if not pg.HAS_FILE_STORE:
        names = [n for n in names if not n.endswith("-file")]
    with tempfile.TemporaryDirectory(prefix="pausegraph-profile-") as tmp:
        for name in names:
            print(profile(name, args.top, Path(tmp), args.sort))
            print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
