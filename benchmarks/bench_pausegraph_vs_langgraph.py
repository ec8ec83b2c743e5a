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
    load_line,
    machine_lines,
    median_loop_ns,
    median_many,
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
SMALL_WRITES = {"n": 1}  # what a chain step writes

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
    loop_ops: int

    @classmethod
    def full(cls) -> Sizes:
        return cls(200, 1000, 200, 1024, 10_000, 10, (20, 420), 200_000)

    @classmethod
    def quick(cls) -> Sizes:
        return cls(50, 100, 50, 1024, 10_000, 10, (5, 45), 20_000)


def _per(total: float | None, count: int) -> float | None:
    return None if total is None else total / count


Plan = dict[str, Callable[[], Work]]
"""Named prepares, measured together round-robin by ``Bench.measure``."""


class FsyncFloor:
    """One unbuffered append of ``data`` then ``os.fsync``, as a prepare for ``median_many``."""

    def __init__(self, path: Path, data: bytes) -> None:
        self._file = path.open("ab", buffering=0)
        self._data = data

    def _op(self) -> None:
        self._file.write(self._data)
        os.fsync(self._file.fileno())

    def prepare(self) -> Work:
        return self._op

    def close(self) -> None:
        self._file.close()


class CreateFloor:
    """Creating one new file (``O_CREAT | O_EXCL``, then closing it) in ``directory``.

    A new run on the file store creates two files (its log and its lock file),
    on the SQLite store one (its lock file): what that costs depends on the
    file system's state as much as on the disk (ext4 slows down when it has
    to hunt for a free inode near a crowded directory), so the figure is
    printed with the floor, measured beside the cycles.
    """

    def __init__(self, directory: Path) -> None:
        directory.mkdir()
        self._directory = directory
        self._n = 0

    def _op(self) -> None:
        self._n += 1
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        os.close(os.open(self._directory / f"{self._n:064x}.log", flags, 0o644))

    def prepare(self) -> Work:
        return self._op


class Bench:
    """Runs the workloads, one table each, remembering figures the floor table reuses.

    Within a workload every side is measured in one round-robin
    (``median_many``), so a busy neighbour slows both libraries alike.
    """

    def __init__(self, sizes: Sizes, repeats: int, scratch: Scratch) -> None:
        self.sizes = sizes
        self.repeats = repeats
        self.scratch = scratch
        self.ids = Counter("run")
        self.results: dict[str, float | None] = {}

    def measure(self, plan: Plan, *, repeats: int | None = None) -> dict[str, int]:
        medians = median_many(list(plan.values()), repeats or self.repeats)
        return dict(zip(plan, medians, strict=True))

    def each_run(self, fn: Callable[[str], object]) -> Callable[[], Work]:
        """A prepare calling ``fn`` with a new run id each time."""
        return lambda: functools.partial(fn, self.ids())

    def on_runner(
        self, graph: Any, store: Any, run: Callable[[Any, str], None]
    ) -> Callable[[], Work]:
        """A prepare running ``run(runner, new_id)`` on one Runner over ``store``."""
        return self.each_run(functools.partial(run, Runner(graph, store)))

    def sqlite(self, name: str, savers: list[Any]) -> Any:
        saver = lg.sqlite_saver(self.scratch.new(name).with_suffix(".db"))
        savers.append(saver)
        return saver

    def fsync_floor(self, data: bytes, floors: list[FsyncFloor]) -> Callable[[], Work]:
        floor = FsyncFloor(self.scratch.new("floor"), data)
        floors.append(floor)
        return floor.prepare

    # -- 1. chain ----------------------------------------------------------------

    def chain(self) -> Table:
        n = self.sizes.chain
        plan: Plan = {}
        savers: list[Any] = []
        floors: list[FsyncFloor] = []
        if lg.AVAILABLE:
            plan["lg none"] = self.each_run(lg.chain(n, None))
            plan["lg memory"] = self.each_run(lg.chain(n, lg.memory_saver()))
            plan["lg sqlite"] = self.each_run(lg.chain(n, self.sqlite("lg-chain", savers)))
        if PG_MISSING is None:
            graph = pg.chain_graph(n)
            plan["pg memory"] = self.on_runner(graph, pg.memory_store(), pg.chain(n))
            if PG_FILES:
                store = pg.file_store(self.scratch.new("pg-chain"))
                plan["pg file"] = self.on_runner(graph, store, pg.chain(n))
            if pg.HAS_SQLITE_STORE:
                store = pg.sqlite_store(self.scratch.new("pg-chain-sqlite"))
                plan["pg sqlite"] = self.on_runner(graph, store, pg.chain(n))
        plan["fsync"] = self.fsync_floor(msgpack.packb(SMALL_WRITES), floors)
        try:
            t = self.measure(plan)
        finally:
            for saver in savers:
                saver.conn.close()
            for floor in floors:
                floor.close()

        def per(key: str) -> float | None:
            return t[key] / n if key in t else None

        self.results.update(
            chain_mem_step=per("pg memory"), chain_file_step=per("pg file"), fsync_small=t["fsync"]
        )
        table = Table(f"1. chain of {n} trivial steps: time per step", ("pausegraph", "LangGraph"))
        _step_targets(table, per)
        table.add(faster("file store vs SqliteSaver on a file", per("pg file"), per("lg sqlite")))
        table.add(faster("SQLite store vs SqliteSaver", per("pg sqlite"), per("lg sqlite")))
        # a whole chain on a durable store: at most 2x the memory chain plus one fsync
        fsync_s = t["fsync"]
        for kind in ("file", "sqlite"):
            durable = t.get(f"pg {kind}")
            memory = t.get("pg memory")
            if durable is not None and memory is not None:
                table.add(
                    within(
                        f"{kind} store: whole chain vs 2x memory chain + one fsync",
                        durable,
                        2 * memory + fsync_s,
                        limit=1,
                    )
                )
        return table

    # -- 2. layer ----------------------------------------------------------------

    def layer(self) -> Table:
        w = self.sizes.layer
        plan: Plan = {}
        if lg.AVAILABLE:
            plan["lg none"] = self.each_run(lg.layer(w, None))
            plan["lg memory"] = self.each_run(lg.layer(w, lg.memory_saver()))
        if PG_MISSING is None:
            plan["pg memory"] = self.on_runner(pg.layer_graph(w), pg.memory_store(), pg.layer(w))
        t = self.measure(plan)

        def per(key: str) -> float | None:
            return t[key] / w if key in t else None

        table = Table(
            f"2. one layer of {w} parallel steps, all writing to Append: time per step",
            ("pausegraph", "LangGraph"),
        )
        _step_targets(table, per)
        return table

    # -- 3. pause/resume ---------------------------------------------------------

    def pause_resume(self) -> Table:
        plan: Plan = {}
        savers: list[Any] = []
        if lg.AVAILABLE:
            plan["lg memory"] = self.each_run(lg.approval(lg.memory_saver()))
            plan["lg file"] = self.each_run(lg.approval(self.sqlite("lg-approval", savers)))
        kinds = ["memory", "file"] if PG_FILES else ["memory"] if PG_MISSING is None else []
        if PG_FILES and pg.HAS_SQLITE_STORE:
            kinds.append("sqlite")
        for kind in kinds:
            plan.update(self._pg_cycles(kind))
        plan["create"] = CreateFloor(self.scratch.new("create-floor")).prepare
        try:
            t = self.measure(plan)
        finally:
            for saver in savers:
                saver.conn.close()
        self.results["create"] = t["create"]
        table = Table(
            "3. pause/resume cycle: start, pause at an interrupt, resume, finish",
            ("pausegraph", "LangGraph"),
        )
        for kind, target, saver_name in (
            ("memory", 25, "InMemorySaver"),
            ("file", 8, "SqliteSaver"),
            ("sqlite", 8, "SqliteSaver"),
        ):
            theirs = t.get(f"lg {'memory' if kind == 'memory' else 'file'}")
            table.add(
                faster(
                    f"{kind} store, hot resume, vs {saver_name}",
                    t.get(f"pg {kind} hot"),
                    theirs,
                    target=target,
                )
            )
            table.add(
                faster(
                    f"{kind} store, cold resume, vs {saver_name}", t.get(f"pg {kind} cold"), theirs
                )
            )
            row = within(
                f"{kind} store: resume call alone, cold vs hot",
                t.get(f"pg {kind} cold resume"),
                t.get(f"pg {kind} hot resume"),
            )
            row.ours = f"cold {row.ours}"
            row.theirs = f"hot {row.theirs}"
            table.add(row)
        return table

    def _pg_cycles(self, kind: str) -> Plan:
        """Hot and cold cycles, then hot and cold ``resume`` calls alone.

        Hot: one Runner does both halves and keeps the suspended generator.
        Cold: a new Runner (on a new FileCheckpointer handle for files) for
        each call, so the resume replays the step's journal, as a new process
        would.
        """
        graph = pg.approval_graph()
        root = self.scratch.new(f"pg-approval-{kind}")
        opener = {"memory": pg.memory_store, "file": pg.file_store, "sqlite": pg.sqlite_store}
        store = opener[kind](root)

        def fresh_runner() -> Any:
            return Runner(graph, store if kind == "memory" else opener[kind](root))

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

        return {
            f"pg {kind} hot": self.each_run(hot_cycle),
            f"pg {kind} cold": self.each_run(cold_cycle),
            f"pg {kind} hot resume": prepare_hot_resume,
            f"pg {kind} cold resume": prepare_cold_resume,
        }

    # -- 4. storage --------------------------------------------------------------

    def payloads(self) -> list[str]:
        """Distinct, incompressible 1 KB strings, the same on every run."""
        rng = random.Random(6)
        size = self.sizes.payload
        return [rng.randbytes(size // 2).hex() for _ in range(self.sizes.storage_steps)]

    def storage(self) -> Table:
        n = self.sizes.storage_steps
        payloads = self.payloads()
        plan: Plan = {}
        savers: list[Any] = []
        floors: list[FsyncFloor] = []
        dbs: list[Path] = []
        roots: list[Path] = []
        if lg.AVAILABLE:

            def lg_prepare() -> Work:
                dbs.append(self.scratch.new("lg-storage").with_suffix(".db"))
                saver = lg.sqlite_saver(dbs[-1])
                savers.append(saver)
                return functools.partial(lg.append_chain(payloads, saver), self.ids())

            plan["lg"] = lg_prepare
        if PG_FILES:
            graph = pg.append_chain_graph(payloads)

            def pg_prepare() -> Work:
                roots.append(self.scratch.new("pg-storage"))
                runner = Runner(graph, pg.file_store(roots[-1]))
                return functools.partial(pg.append_chain(n), runner, self.ids())

            plan["pg"] = pg_prepare
        plan["fsync"] = self.fsync_floor(msgpack.packb({"items": payloads[0]}), floors)
        synchronous = None
        try:
            # every sample is a fresh store, and SQLite's is slow to fill: fewer repeats
            t = self.measure(plan, repeats=min(self.repeats, 3))
            if savers:
                synchronous = lg.sqlite_synchronous(savers[-1])
        finally:
            for saver in savers:
                saver.conn.close()
            for floor in floors:
                floor.close()
        ours_bytes = tree_bytes(roots[-1]) if roots else None
        theirs_bytes = lg.sqlite_bytes(dbs[-1]) if dbs else None
        ours_time = t["pg"] / n if "pg" in t else None
        self.results.update(append_file_step=ours_time, fsync_big=t["fsync"])
        limit = STORAGE_LIMIT_BYTES * n / STORAGE_LIMIT_STEPS
        extra = "" if synchronous is None else f"; SQLite WAL, synchronous={synchronous}"
        table = Table(
            f"4. storage: {n} steps each appending {self.sizes.payload} B, "
            f"bytes on disk at the end{extra}",
            ("pausegraph", "LangGraph"),
        )
        row = faster(
            "file store dir vs SqliteSaver db + -wal", ours_bytes, theirs_bytes, fmt=fmt_bytes
        )
        row.target = f"< {limit / 1e6:g} MB"
        row.passed = None if ours_bytes is None else ours_bytes < limit
        table.add(row)
        theirs_time = t["lg"] / n if "lg" in t else None
        table.add(faster("time per step, file store vs SqliteSaver", ours_time, theirs_time))
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
        plan: Plan = {}
        roots: dict[str, list[Path]] = {}
        for kind in ("file", "memory"):
            for entries in (big, small):
                for k in (k1, k2):
                    key = f"{kind} {entries} {k}"
                    roots[key] = []
                    plan[key] = self._map_prepare(kind, entries, k, roots[key])
        t = self.measure(plan)

        def step(kind: str, entries: int) -> tuple[float, float]:
            """(time, bytes) one more step adds: the difference cancels what a run pays once."""
            short, long = f"{kind} {entries} {k1}", f"{kind} {entries} {k2}"
            size = (
                (tree_bytes(roots[long][-1]) - tree_bytes(roots[short][-1]))
                if kind == "file"
                else 0
            )
            return (t[long] - t[short]) / (k2 - k1), size / (k2 - k1)

        big_file, small_file = step("file", big), step("file", small)
        table.add(within("file store: time per step", big_file[0], small_file[0], limit=2))
        table.add(
            within("file store: bytes per step", big_file[1], small_file[1], limit=2, fmt=fmt_bytes)
        )
        table.add(
            within("memory store: time per step", step("memory", big)[0], step("memory", small)[0])
        )
        return table

    def _map_prepare(
        self, kind: str, entries: int, steps: int, roots: list[Path]
    ) -> Callable[[], Work]:
        graph = pg.map_chain_graph(steps, entries)
        run = pg.map_chain(entries)

        def prepare() -> Work:
            roots.append(self.scratch.new("pg-map"))
            store = pg.file_store(roots[-1]) if kind == "file" else pg.memory_store()
            return functools.partial(run, Runner(graph, store), self.ids())

        return prepare

    # -- 7. the floor ------------------------------------------------------------

    def floor(self) -> list[Table]:
        writes_big: dict[str, Any] = {"items": self.payloads()[0]}
        small_bytes = msgpack.packb(SMALL_WRITES)
        big_bytes = msgpack.packb(writes_big)
        ops = self.sizes.loop_ops
        send = floor_send_ns(ops, self.repeats)
        pack_small = median_loop_ns(
            functools.partial(msgpack.packb, SMALL_WRITES), self.repeats, inner=ops
        )
        pack_big = median_loop_ns(
            functools.partial(msgpack.packb, writes_big), self.repeats, inner=ops
        )
        r = self.results
        fsync_small, fsync_big = r["fsync_small"], r["fsync_big"]

        floor = Table(
            "7. the floor: the least any engine does per super-step "
            "(fsyncs timed beside workloads 1 and 4)",
            ("time", "bytes"),
        )
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

        floor.add(
            Row(
                "create a file (O_EXCL), timed beside workload 3",
                fmt_time(r.get("create")),
            )
        )

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


def _step_targets(table: Table, per: Callable[[str], float | None]) -> None:
    """The two per-step targets workloads 1 and 2 share (memory store vs LangGraph)."""
    table.add(
        faster(
            "memory store vs InMemorySaver (sync)", per("pg memory"), per("lg memory"), target=25
        )
    )
    table.add(
        faster("memory store vs no checkpointer", per("pg memory"), per("lg none"), target=10)
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args("pausegraph vs LangGraph, workload by workload", argv)
    sizes = Sizes.quick() if args.quick else Sizes.full()
    scratch = Scratch(args.dir)
    started = time.perf_counter()
    packages = [
        "pausegraph",
        "langgraph",
        "langgraph-checkpoint",
        "langgraph-checkpoint-sqlite",
        "msgpack",
    ]
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
    print(load_line("at end"))
    passed, failed = verdict_counts(tables)
    print(f"targets: {passed} PASS, {failed} FAIL; took {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
