"""pausegraph against LangGraph (and against the floor), workload by workload.

Run it from the repository root::

    python benchmarks/bench_pausegraph_vs_langgraph.py           # the figures
    python benchmarks/bench_pausegraph_vs_langgraph.py --quick   # a smoke run

Each workload is built the same way in both libraries and timed in the same
process, one after the other; every time printed is a median over repeats
(see ``_harness.py``). In the LangGraph tables the ratio is how many times
cheaper pausegraph is (LangGraph / pausegraph); in the other tables it is
pausegraph's cost as a multiple of the baseline column. Targets are checked
here and printed as PASS/FAIL; they are never asserted in the unit tests,
where a loaded CI machine would make them flaky.
"""

from __future__ import annotations

import functools
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _langgraph_side as lg
from _harness import (
    Counter,
    Row,
    Scratch,
    Table,
    faster,
    fmt_bytes,
    fmt_time,
    machine_lines,
    median_loop_ns,
    median_ns,
    parse_args,
    print_tables,
    tree_bytes,
    verdict_counts,
    within,
)

try:
    import _pausegraph_side as pg

    from pausegraph import Runner
except ImportError as exc:  # the engine is not importable from here
    PG_MISSING: str | None = f"pausegraph not importable ({exc}): its columns are skipped"
else:
    PG_MISSING = None
PG_FILES = PG_MISSING is None and pg.HAS_FILE_STORE
FILES_MISSING = "pausegraph has no FileCheckpointer yet: its file-store cells are skipped"

STORAGE_LIMIT_BYTES = 400_000  # 0.4 MB for 200 steps of 1 KB
STORAGE_LIMIT_STEPS = 200

Work = Callable[[], object]


@dataclass(frozen=True)
class Sizes:
    chain: int
    layer: int
    storage_steps: int
    payload: int
    big_entries: int
    small_entries: int
    map_steps: tuple[int, int]
    fsync_ops: int
    loop_ops: int

    @classmethod
    def full(cls) -> Sizes:
        return cls(200, 1000, 200, 1024, 10_000, 10, (20, 220), 500, 200_000)

    @classmethod
    def quick(cls) -> Sizes:
        return cls(50, 100, 50, 1024, 10_000, 10, (5, 45), 30, 20_000)


def _per(total: float | None, count: int) -> float | None:
    return None if total is None else total / count


class Bench:
    """Runs the workloads, one table each, remembering figures the floor table reuses."""

    def __init__(self, sizes: Sizes, repeats: int, scratch: Scratch) -> None:
        self.sizes = sizes
        self.repeats = repeats
        self.scratch = scratch
        self.ids = Counter("run")
        self.results: dict[str, float | None] = {}

    def _time(self, fn: Callable[[str], object], *, repeats: int | None = None) -> int:
        """Median time of ``fn(new_run_id)``."""

        def prepare() -> Work:
            return functools.partial(fn, self.ids())

        return median_ns(prepare, repeats or self.repeats)

    def _lg(self, build: Callable[[], Callable[[str], object]]) -> int | None:
        """Median time of a LangGraph run, or None when LangGraph is missing."""
        return self._time(build()) if lg.AVAILABLE else None

    def _lg_sqlite(self, build: Callable[[Any], Callable[[str], object]], name: str) -> int | None:
        if not lg.AVAILABLE:
            return None
        saver = lg.sqlite_saver(self.scratch.new(name).with_suffix(".db"))
        try:
            return self._time(build(saver))
        finally:
            saver.conn.close()

    def _pg_on(self, graph: Any, store: Any, run: Callable[[Any, str], None]) -> int:
        """Median time of ``run(runner, new_id)`` on one Runner over ``store``."""
        runner = Runner(graph, store)
        return self._time(functools.partial(run, runner))

    # -- 1. chain ----------------------------------------------------------------

    def chain(self) -> Table:
        n = self.sizes.chain
        theirs_none = self._lg(lambda: lg.chain(n, None))
        theirs_mem = self._lg(lambda: lg.chain(n, lg.memory_saver()))
        theirs_sql = self._lg_sqlite(lambda saver: lg.chain(n, saver), "lg-chain")
        ours_mem = ours_file = None
        if PG_MISSING is None:
            graph = pg.chain_graph(n)
            run = pg.chain(n)
            ours_mem = self._pg_on(graph, pg.memory_store(), run)
            if PG_FILES:
                root = self.scratch.new("pg-chain")
                ours_file = self._pg_on(graph, pg.file_store(root), run)
        self.results["chain_mem_step"] = _per(ours_mem, n)
        self.results["chain_file_step"] = _per(ours_file, n)
        table = Table(f"1. chain of {n} trivial steps: time per step", ("pausegraph", "LangGraph"))
        table.add(
            faster(
                "memory store vs InMemorySaver (sync)",
                _per(ours_mem, n),
                _per(theirs_mem, n),
                target=25,
            )
        )
        table.add(
            faster(
                "memory store vs no checkpointer",
                _per(ours_mem, n),
                _per(theirs_none, n),
                target=10,
            )
        )
        table.add(
            faster("file store vs SqliteSaver on a file", _per(ours_file, n), _per(theirs_sql, n))
        )
        return table

    # -- 2. layer ----------------------------------------------------------------

    def layer(self) -> Table:
        w = self.sizes.layer
        theirs_none = self._lg(lambda: lg.layer(w, None))
        theirs_mem = self._lg(lambda: lg.layer(w, lg.memory_saver()))
        ours = None
        if PG_MISSING is None:
            ours = self._pg_on(pg.layer_graph(w), pg.memory_store(), pg.layer(w))
        table = Table(
            f"2. one layer of {w} parallel steps, all writing to Append: time per step",
            ("pausegraph", "LangGraph"),
        )
        table.add(
            faster(
                "memory store vs InMemorySaver (sync)",
                _per(ours, w),
                _per(theirs_mem, w),
                target=25,
            )
        )
        table.add(
            faster(
                "memory store vs no checkpointer", _per(ours, w), _per(theirs_none, w), target=10
            )
        )
        return table

    # -- 3. pause/resume ---------------------------------------------------------

    def pause_resume(self) -> Table:
        theirs = {
            "memory": self._lg(lambda: lg.approval(lg.memory_saver())),
            "file": self._lg_sqlite(lg.approval, "lg-approval"),
        }
        table = Table(
            "3. pause/resume cycle: start, pause at an interrupt, resume, finish",
            ("pausegraph", "LangGraph"),
        )
        for kind, target, saver_name in (
            ("memory", 25, "InMemorySaver"),
            ("file", 4, "SqliteSaver"),
        ):
            hot = cold = hot_resume = cold_resume = None
            if PG_MISSING is None and (kind == "memory" or PG_FILES):
                hot, cold, hot_resume, cold_resume = self._pg_cycles(kind)
            self.results[f"cycle_{kind}_hot"] = hot
            table.add(
                faster(
                    f"{kind} store, hot resume, vs {saver_name}", hot, theirs[kind], target=target
                )
            )
            table.add(faster(f"{kind} store, cold resume, vs {saver_name}", cold, theirs[kind]))
            row = within(f"{kind} store: resume call alone, cold vs hot", cold_resume, hot_resume)
            row.ours = f"cold {row.ours}"
            row.theirs = f"hot {row.theirs}"
            table.add(row)
        return table

    def _pg_cycles(self, kind: str) -> tuple[int, int, int, int]:
        """Hot and cold cycles, then hot and cold ``resume`` calls alone.

        Hot: one Runner does both halves and keeps the suspended generator.
        Cold: a new Runner (on a new FileCheckpointer handle for files) for
        the resume, which replays the step's journal, as a new process would.
        """
        graph = pg.approval_graph()
        root = self.scratch.new(f"pg-approval-{kind}")
        store = pg.memory_store() if kind == "memory" else pg.file_store(root)

        def fresh_runner() -> Any:
            return Runner(graph, store if kind == "memory" else pg.file_store(root))

        hot_runner = Runner(graph, store)

        def hot_cycle(run_id: str) -> None:
            pg.approval_run(hot_runner, run_id)
            pg.approval_resume(hot_runner, run_id)

        def cold_cycle(run_id: str) -> None:
            pg.approval_run(fresh_runner(), run_id)
            pg.approval_resume(fresh_runner(), run_id)

        def prepare_hot_resume() -> Work:
            run_id = self.ids()
            pg.approval_run(hot_runner, run_id)
            return functools.partial(pg.approval_resume, hot_runner, run_id)

        def prepare_cold_resume() -> Work:
            run_id = self.ids()
            pg.approval_run(fresh_runner(), run_id)
            return lambda: pg.approval_resume(fresh_runner(), run_id)

        return (
            self._time(hot_cycle),
            self._time(cold_cycle),
            median_ns(prepare_hot_resume, self.repeats),
            median_ns(prepare_cold_resume, self.repeats),
        )

    # -- 4. storage --------------------------------------------------------------

    def payloads(self) -> list[str]:
        """Distinct, incompressible 1 KB strings, the same on every run."""
        rng = random.Random(6)
        size = self.sizes.payload
        return [rng.randbytes(size // 2).hex() for _ in range(self.sizes.storage_steps)]

    def storage(self) -> Table:
        n = self.sizes.storage_steps
        payloads = self.payloads()
        repeats = min(self.repeats, 3)  # every repeat is a fresh store, and SQLite's is slow
        theirs_bytes = theirs_time = None
        title_extra = ""
        if lg.AVAILABLE:
            dbs: list[tuple[Path, Any]] = []

            def lg_prepare() -> Work:
                path = self.scratch.new("lg-storage").with_suffix(".db")
                dbs.append((path, lg.sqlite_saver(path)))
                return functools.partial(lg.append_chain(payloads, dbs[-1][1]), self.ids())

            theirs_time = median_ns(lg_prepare, repeats)
            theirs_bytes = lg.sqlite_bytes(dbs[-1][0])
            title_extra = f"; SQLite WAL, synchronous={lg.sqlite_synchronous(dbs[-1][1])}"
            for _, saver in dbs:
                saver.conn.close()
        ours_bytes = ours_time = None
        if PG_FILES:
            graph = pg.append_chain_graph(payloads)
            roots: list[Path] = []

            def pg_prepare() -> Work:
                roots.append(self.scratch.new("pg-storage"))
                runner = Runner(graph, pg.file_store(roots[-1]))
                return functools.partial(pg.append_chain(n), runner, self.ids())

            ours_time = median_ns(pg_prepare, repeats)
            ours_bytes = tree_bytes(roots[-1])
        self.results["append_file_step"] = _per(ours_time, n)
        limit = STORAGE_LIMIT_BYTES * n / STORAGE_LIMIT_STEPS
        table = Table(
            f"4. storage: {n} steps each appending {self.sizes.payload} B, "
            f"bytes on disk at the end{title_extra}",
            ("pausegraph", "LangGraph"),
        )
        row = faster(
            "file store dir vs SqliteSaver db + -wal", ours_bytes, theirs_bytes, fmt=fmt_bytes
        )
        row.target = f"< {limit / 1e6:g} MB"
        row.passed = None if ours_bytes is None else ours_bytes < limit
        table.add(row)
        table.add(
            faster(
                "time per step, file store vs SqliteSaver", _per(ours_time, n), _per(theirs_time, n)
            )
        )
        return table

    # -- 5. large state ----------------------------------------------------------

    def large_state(self) -> Table:
        k1, k2 = self.sizes.map_steps
        big, small = self.sizes.big_entries, self.sizes.small_entries
        table = Table(
            f"5. large state: a MergeMap of {big} vs {small} entries, each step changing one "
            f"(marginal cost per step, from runs of {k1} and {k2} steps)",
            (f"{big} entries", f"{small} entries"),
        )
        if not PG_FILES:
            table.add(Row("pausegraph", "skipped", "skipped"))
            return table
        found = {
            (kind, entries): self._marginal_map_step(kind, entries)
            for kind in ("file", "memory")
            for entries in (big, small)
        }
        table.add(
            within(
                "file store: time per step",
                found["file", big][0],
                found["file", small][0],
                limit=2,
            )
        )
        table.add(
            within(
                "file store: bytes per step",
                found["file", big][1],
                found["file", small][1],
                limit=2,
                fmt=fmt_bytes,
            )
        )
        table.add(
            within(
                "memory store: time per step", found["memory", big][0], found["memory", small][0]
            )
        )
        return table

    def _marginal_map_step(self, kind: str, entries: int) -> tuple[float, float]:
        """(time, bytes) that one more step adds, from two chain lengths.

        The difference cancels what every run pays once (saving the input,
        the first snapshot), leaving what a super-step costs, snapshots taken
        every so often included.
        """
        k1, k2 = self.sizes.map_steps
        times, sizes = [], []
        for k in (k1, k2):
            graph = pg.map_chain_graph(k, entries)
            run = pg.map_chain(entries)
            roots: list[Path] = []

            def prepare(graph: Any = graph, run: Any = run, roots: list[Path] = roots) -> Work:
                roots.append(self.scratch.new("pg-map"))
                store = pg.file_store(roots[-1]) if kind == "file" else pg.memory_store()
                return functools.partial(run, Runner(graph, store), self.ids())

            times.append(median_ns(prepare, self.repeats))
            sizes.append(tree_bytes(roots[-1]) if kind == "file" else 0)
        return (times[1] - times[0]) / (k2 - k1), (sizes[1] - sizes[0]) / (k2 - k1)

    # -- 7. the floor ------------------------------------------------------------

    def floor(self) -> list[Table]:
        writes_small: dict[str, Any] = {"n": 1}
        writes_big: dict[str, Any] = {"items": self.payloads()[0]}
        small_bytes = msgpack.packb(writes_small)
        big_bytes = msgpack.packb(writes_big)
        ops = self.sizes.loop_ops
        send = floor_send_ns(ops, self.repeats)
        pack_small = median_loop_ns(
            functools.partial(msgpack.packb, writes_small), self.repeats, inner=ops
        )
        pack_big = median_loop_ns(
            functools.partial(msgpack.packb, writes_big), self.repeats, inner=ops
        )
        fsync_small = floor_fsync_ns(self.scratch.new("floor"), small_bytes, self.sizes.fsync_ops)
        fsync_big = floor_fsync_ns(self.scratch.new("floor"), big_bytes, self.sizes.fsync_ops)

        floor = Table("7. the floor: the least any engine does per super-step", ("time", "bytes"))
        floor.add(Row("one gen.send", fmt_time(send)))
        floor.add(Row("msgpack.packb({'n': 1})", fmt_time(pack_small), fmt_bytes(len(small_bytes))))
        floor.add(
            Row("msgpack.packb({'items': 1 KB str})", fmt_time(pack_big), fmt_bytes(len(big_bytes)))
        )
        floor.add(
            Row(
                "append + os.fsync, {'n': 1} bytes",
                fmt_time(fsync_small),
                fmt_bytes(len(small_bytes)),
            )
        )
        floor.add(
            Row(
                "append + os.fsync, 1 KB write bytes",
                fmt_time(fsync_big),
                fmt_bytes(len(big_bytes)),
            )
        )

        r = self.results
        above = Table(
            "7b. pausegraph above the floor: time per super-step", ("pausegraph", "floor")
        )
        above.add(
            within(
                "memory-store chain step vs send + packb", r["chain_mem_step"], send + pack_small
            )
        )
        above.add(
            within(
                "file-store chain step vs append + fsync",
                r["chain_file_step"],
                fsync_small,
                limit=2,
            )
        )
        above.add(
            within(
                "file-store 1 KB-append step vs append + fsync",
                r["append_file_step"],
                fsync_big,
                limit=2,
            )
        )
        return [floor, above]


def _echo() -> Generator[Any, Any, None]:
    value = None
    while True:
        value = yield value


def floor_send_ns(ops: int, repeats: int) -> float:
    """One ``send`` into a primed generator, loop overhead included."""
    gen = _echo()
    next(gen)
    send = gen.send
    samples = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        for _ in range(ops):
            send(1)
        samples.append((time.perf_counter_ns() - start) / ops)
    return statistics.median(samples)


def floor_fsync_ns(path: Path, data: bytes, ops: int) -> float:
    """Median of one unbuffered append of ``data`` followed by ``os.fsync``."""
    samples = []
    with path.open("ab", buffering=0) as f:
        f.write(data)
        os.fsync(f.fileno())
        for _ in range(ops):
            start = time.perf_counter_ns()
            f.write(data)
            os.fsync(f.fileno())
            samples.append(time.perf_counter_ns() - start)
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> int:
    args = parse_args("pausegraph vs LangGraph, workload by workload", argv)
    sizes = Sizes.quick() if args.quick else Sizes.full()
    scratch = Scratch(args.dir)
    started = time.perf_counter()
    packages = ["pausegraph", "langgraph", "langgraph-checkpoint-sqlite", "msgpack"]
    for line in machine_lines(packages):
        print(line)
    print(f"file stores under {scratch.root}; medians of {args.repeats} timed repeats")
    files_missing = None if PG_FILES or PG_MISSING else FILES_MISSING
    for missing in (PG_MISSING, files_missing, None if lg.AVAILABLE else lg.MISSING):
        if missing:
            print(missing)
    print()
    bench = Bench(sizes, args.repeats, scratch)
    tables: list[Table] = []
    try:
        workloads = (bench.chain, bench.layer, bench.pause_resume, bench.storage, bench.large_state)
        for workload in workloads:
            tables.append(workload())
            print_tables(tables[-1:])
            sys.stdout.flush()
        tables.extend(bench.floor())
        print_tables(tables[-2:])
    finally:
        scratch.close()
    passed, failed = verdict_counts(tables)
    print(f"targets: {passed} PASS, {failed} FAIL; took {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
