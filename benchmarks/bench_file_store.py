"""The file store's own figures: runs() on many runs, fsyncs and time per pause/resume cycle.

::

    python benchmarks/bench_file_store.py [--runs 10000] [--cycles 200]

Prints the median time of ``runs()`` (and a filtered ``runs(status=...)``) on
a store holding ``--runs`` paused runs, the fsyncs a pause/resume cycle of
the approval graph (workload 3) costs, and the cycle's median time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _pausegraph_side import approval_graph, approval_resume, approval_run

from pausegraph import FileCheckpointer, Runner


def count_fsyncs(action: object) -> int:
    real, calls = os.fsync, [0]

    def counting(fd: int) -> None:
        calls[0] += 1
        real(fd)

    os.fsync = counting  # type: ignore[assignment]
    try:
        action()  # type: ignore[operator]
    finally:
        os.fsync = real
    return calls[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--cycles", type=int, default=200)
    args = parser.parse_args()
    graph = approval_graph()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "cycles"
        runner = Runner(graph, FileCheckpointer(root))
        approval_run(runner, "warm")
        approval_resume(runner, "warm")
        start = count_fsyncs(lambda: approval_run(runner, "counted"))
        resume = count_fsyncs(lambda: approval_resume(runner, "counted"))
        print(f"fsyncs per cycle: {start + resume} (start {start}, resume {resume})")
        times = []
        for n in range(args.cycles):
            t0 = time.perf_counter()
            approval_run(runner, f"c{n}")
            approval_resume(runner, f"c{n}")
            times.append(time.perf_counter() - t0)
        median = statistics.median(times) * 1e3
        print(f"hot cycle (start, pause, resume, finish): median {median:.2f} ms")

        root = Path(tmp) / "listing"
        real_fsync = os.fsync
        os.fsync = lambda fd: None  # type: ignore[assignment]  # building is not what is timed
        try:
            runner = Runner(graph, FileCheckpointer(root))
            t0 = time.perf_counter()
            for n in range(args.runs):
                approval_run(runner, f"r{n}")
            built = time.perf_counter() - t0
        finally:
            os.fsync = real_fsync
        print(f"built {args.runs} paused runs in {built:.1f} s")
        store = FileCheckpointer(root)
        t0 = time.perf_counter()
        first = store.summaries()
        elapsed = (time.perf_counter() - t0) * 1e3
        print(f"first runs() (no index yet: every log read, rows written): {elapsed:.0f} ms")
        assert len(first) == args.runs
        time.sleep(0.1)
        changed = min(100, args.runs)
        for n in range(changed):
            approval_resume(runner, f"r{n}")
        time.sleep(0.1)
        t0 = time.perf_counter()
        after = FileCheckpointer(root).summaries(status="done")
        elapsed = (time.perf_counter() - t0) * 1e3
        assert len(after) == changed
        print(f"runs() of a new handle after {changed} runs changed: {elapsed:.0f} ms")
        for label, call in (
            ("runs()", store.summaries),
            ("runs(status='paused')", lambda: store.summaries(status="paused")),
            ("runs() of a new handle", lambda: FileCheckpointer(root).summaries()),
        ):
            samples = []
            for _ in range(7):
                t0 = time.perf_counter()
                got = call()
                samples.append(time.perf_counter() - t0)
                assert len(got) == args.runs - (changed if "status" in label else 0)
            print(f"{label} on {args.runs} runs: median {statistics.median(samples) * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
