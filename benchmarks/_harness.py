"""Shared pieces of the benchmark scripts: timing, sizes, tables, command line.

Timing is wall-clock with ``time.perf_counter_ns``; every figure printed is the
median of several samples after one untimed warm-up, because the first run
pays for imports, caches and page faults that a long-lived process pays once.
Short workloads are timed in batches (see ``median_ns``). Garbage collection
stays on: both libraries allocate, and a benchmark that switched it off would
flatter whichever one allocates more.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

Prepared = Callable[[], object]
"""A zero-argument callable that does exactly the work being timed."""


def parse_args(
    description: str,
    argv: Sequence[str] | None = None,
    *,
    repeats: tuple[int, int] = (7, 3),
) -> argparse.Namespace:
    """The options every benchmark script takes; ``repeats`` is (full, quick) default."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smaller sizes and fewer repeats: a smoke run, not figures to quote",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help=f"timed repeats per measurement (default {repeats[0]}, or {repeats[1]} with --quick)",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="where file stores are made (default: a fresh temporary directory); "
        "put it on the disk you care about, fsync cost is the disk's",
    )
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = repeats[1] if args.quick else repeats[0]
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


SAMPLE_NS = 20_000_000
"""Short workloads are run in batches so that one timed sample lasts about this long."""

MAX_BATCH = 500


def median_ns(prepare: Callable[[], Prepared], repeats: int, *, warmup: int = 1) -> int:
    """Median wall time of one ``prepare()()``, in nanoseconds: ``median_many`` of one."""
    return median_many([prepare], repeats, warmup=warmup)[0]


def median_many(
    prepares: Sequence[Callable[[], Prepared]], repeats: int, *, warmup: int = 1
) -> list[int]:
    """Median wall time of one ``prepare()()`` for each prepare, in nanoseconds.

    The samples are taken round-robin (one of each, then one of each again,
    ...), so that workloads compared with each other see the same machine: a
    neighbour that loads the CPU or the disk for a while slows every side
    alike instead of whichever happened to run then.

    ``prepare`` is called outside the timed region, so each timed call starts
    from its own fresh setup (a new store, a new run id) and setup cost never
    leaks into the figure. A workload shorter than ``SAMPLE_NS`` (judged from
    the warm-up) is timed as a batch of back-to-back calls, its sample being
    the batch time divided by the batch size, as ``timeit`` does: one call of
    a few hundred microseconds is otherwise at the mercy of whatever ran just
    before it (a collection that evicted the caches, a timer tick).
    """
    batches = []
    for prepare in prepares:
        elapsed = 0
        for _ in range(warmup):
            work = prepare()
            start = time.perf_counter_ns()
            work()
            elapsed = time.perf_counter_ns() - start
        batches.append(max(1, min(MAX_BATCH, SAMPLE_NS // max(elapsed, 1))) if warmup else 1)
    gc.collect()
    samples: list[list[float]] = [[] for _ in prepares]
    for _ in range(repeats):
        for prepare, batch, found in zip(prepares, batches, samples, strict=True):
            works = [prepare() for _ in range(batch)]
            start = time.perf_counter_ns()
            for work in works:
                work()
            found.append((time.perf_counter_ns() - start) / batch)
            del works
    return [int(statistics.median(found)) for found in samples]


def median_loop_ns(op: Callable[[], object], repeats: int, *, inner: int) -> float:
    """Median cost of one ``op()``, each repeat timing ``inner`` calls in a loop.

    For operations far below a microsecond, where one call is lost in the
    resolution and overhead of the clock.
    """
    for _ in range(min(inner, 1000)):
        op()
    samples: list[float] = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        for _ in range(inner):
            op()
        samples.append((time.perf_counter_ns() - start) / inner)
    return statistics.median(samples)


def peak_bytes(work: Prepared) -> int:
    """Peak traced Python allocation, in bytes, while ``work()`` runs.

    tracemalloc slows allocation down several times over, so peaks are taken
    in their own run and never mixed into a timing.
    """
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        work()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - base


def tree_bytes(path: Path) -> int:
    """Bytes in every regular file under ``path`` (or ``path`` itself if a file)."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


class Counter:
    """Unique ids: each run id must be new in its store."""

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix
        self._n = 0

    def __call__(self) -> str:
        self._n += 1
        return f"{self._prefix}-{self._n}"


class Scratch:
    """Fresh directories for file stores, all under one root, removed at exit."""

    def __init__(self, root: Path | None) -> None:
        if root is not None:
            root.mkdir(parents=True, exist_ok=True)
        self._tmp = tempfile.TemporaryDirectory(prefix="pausegraph-bench-", dir=root)
        self.root = Path(self._tmp.name)
        self._n = 0

    def new(self, name: str) -> Path:
        self._n += 1
        return self.root / f"{name}-{self._n}"

    def close(self) -> None:
        self._tmp.cleanup()


# --- formatting -------------------------------------------------------------


def fmt_time(ns: float | None) -> str:
    if ns is None:
        return "-"
    if ns < 1_000:
        return f"{ns:.0f} ns"
    if ns < 1_000_000:
        return f"{ns / 1_000:.1f} µs"
    if ns < 1_000_000_000:
        return f"{ns / 1_000_000:.2f} ms"
    return f"{ns / 1_000_000_000:.2f} s"


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    if n < 1024:
        return f"{n:.0f} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n / (1024 * 1024):.2f} MiB"


def fmt_ratio(r: float | None) -> str:
    if r is None:
        return "-"
    if r == float("inf"):
        return "inf"
    return f"{r:.1f}x" if r >= 10 else f"{r:.2f}x"


@dataclass
class Row:
    """One line of a results table, already formatted.

    ``passed`` is None for a row that is there for information, with no target.
    """

    workload: str
    ours: str
    theirs: str = "-"
    ratio: str = ""
    target: str = ""
    passed: bool | None = None

    def verdict(self) -> str:
        if self.passed is None:
            return ""
        return "PASS" if self.passed else "FAIL"


SKIPPED = "skipped"
"""The cell of a side that could not run (its library is missing); the header says why."""


def _cell(value: float | None, fmt: Callable[[float | None], str]) -> str:
    return SKIPPED if value is None else fmt(value)


def faster(
    workload: str,
    ours: float | None,
    theirs: float | None,
    *,
    target: float | None = None,
    fmt: Callable[[float | None], str] = fmt_time,
) -> Row:
    """A row comparing two costs (times or sizes); the ratio is theirs / ours.

    With ``target``, the row passes when pausegraph is at least ``target``
    times cheaper. A side that did not run (None) gets no ratio and no verdict.
    """
    target_text = "" if target is None else f">= {target:g}x"
    if ours is None or theirs is None:
        return Row(workload, _cell(ours, fmt), _cell(theirs, fmt), "", target_text)
    ratio = theirs / ours if ours > 0 else float("inf")
    return Row(
        workload,
        fmt(ours),
        fmt(theirs),
        fmt_ratio(ratio),
        target_text,
        None if target is None else ratio >= target,
    )


def within(
    workload: str,
    ours: float | None,
    base: float | None,
    *,
    limit: float | None = None,
    fmt: Callable[[float | None], str] = fmt_time,
) -> Row:
    """A row comparing a cost to a baseline; the ratio is ours / base.

    With ``limit``, the row passes when pausegraph costs at most ``limit``
    times the baseline.
    """
    limit_text = "" if limit is None else f"<= {limit:g}x"
    if ours is None or base is None:
        return Row(workload, _cell(ours, fmt), _cell(base, fmt), "", limit_text)
    ratio = ours / base if base > 0 else float("inf")
    return Row(
        workload,
        fmt(ours),
        fmt(base),
        fmt_ratio(ratio),
        limit_text,
        None if limit is None else ratio <= limit,
    )


@dataclass
class Table:
    title: str
    headers: tuple[str, str]
    rows: list[Row] = field(default_factory=list)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        return row

    def render(self) -> str:
        head = ("workload", *self.headers, "ratio", "target", "result")
        body = [(r.workload, r.ours, r.theirs, r.ratio, r.target, r.verdict()) for r in self.rows]
        widths = [max(len(c) for c in col) for col in zip(head, *body, strict=True)]

        def line(cells: Sequence[str]) -> str:
            return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

        rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
        return "\n".join([f"## {self.title}", "", line(head), rule, *map(line, body)])


def print_tables(tables: Iterable[Table]) -> None:
    for t in tables:
        print(t.render())
        print()


def verdict_counts(tables: Iterable[Table]) -> tuple[int, int]:
    verdicts = [r.verdict() for t in tables for r in t.rows]
    return verdicts.count("PASS"), verdicts.count("FAIL")


def cpu_model() -> str:
    """The processor's model name, from /proc/cpuinfo where there is one."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown processor"


def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        pass
    try:  # importable from a source tree on PYTHONPATH but not installed
        module = __import__(name.replace("-", "_"))
    except ImportError:
        return "not installed"
    return str(getattr(module, "__version__", "source tree"))


def load_line(when: str) -> str:
    """The load average: figures taken on a busy machine say so."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return f"load average {when}: unknown"
    return f"load average {when}: {one:.2f} {five:.2f} {fifteen:.2f} ({os.cpu_count()} CPUs)"


def machine_lines(packages: Sequence[str]) -> list[str]:
    """What the figures were measured on, printed above every set of tables."""
    versions = ", ".join(f"{name} {package_version(name)}" for name in packages)
    return [
        f"python {platform.python_version()} ({platform.python_implementation()}) "
        f"on {platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, {cpu_model()}",
        f"packages: {versions}",
        f"command: {' '.join([Path(sys.argv[0]).name, *sys.argv[1:]])}",
        load_line("at start"),
    ]
