"""Worker throughput: runs per second for 1, 2 and 4 worker processes on one store.

Each run is started with ``Runner.start`` (a web handler's call: no step runs)
and driven by ``pausegraph worker`` processes until every run is done. A
run is three layers, the middle one calling an effect, so each run costs a
few checkpoints, one effect record and the syncs around it. The table says
how throughput scales with workers on this machine (2 cores here): with a
durable store most of a run's time is fsync, which the disk serialises.

    python benchmarks/bench_workers.py [--runs 200] [--store file|sqlite|URL]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

from pausegraph import Runner, open_checkpointer
from pausegraph.cli import load_graph

FLOW = textwrap.dedent(
    """
    from pausegraph import Effect, Graph, LastWriteWins

    def note(order):
        return order

    def prepare(state):
        return {"order": state["order"]}

    def charge(state):
        receipt = yield Effect(note, state["order"])
        return {"receipt": receipt}

    def finish(state):
        return {"done": True}

    channels = {"order": LastWriteWins(), "receipt": LastWriteWins(), "done": LastWriteWins()}
    graph = Graph("bench", channels).step("prepare", prepare).step("charge", charge)
    graph.step("finish", finish).edge("prepare", "charge").edge("charge", "finish")
    """
)


def measure(location: str, flow: Path, runs: int, workers: int) -> float:
    """Seconds for ``workers`` processes to finish ``runs`` runs started beforehand."""
    store = open_checkpointer(location)
    waiting = store.summaries(workflow_id="bench", status="queued")
    if waiting:  # the workers would drive those too, and the figures would be wrong
        msg = f"{location} already holds {len(waiting)} queued runs of workflow 'bench'"
        raise SystemExit(f"{msg}: give an empty store (a PostgreSQL schema of its own)")
    web = Runner(load_graph(f"{flow}:graph"), store)
    # ids of this measurement only: a store kept from an earlier one (a PostgreSQL
    # database) holds runs of the same ids already done, which no worker would drive
    prefix = f"w{workers}-{uuid.uuid4().hex[:8]}-"
    for n in range(runs):
        info = web.start(f"{prefix}{n}", {"order": n})
        if info.status != "queued":
            raise SystemExit(f"run {prefix}{n} is {info.status!r}, not queued: a fresh store?")
    pg = str(Path(sys.executable).parent / "pausegraph")
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            [pg, "--store", location, "worker", f"{flow}:graph"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(workers)
    ]
    try:
        pending = [f"{prefix}{n}" for n in range(runs)]
        while pending:
            pending = [r for r in pending if web.state(r).status != "done"]
            time.sleep(0.02)
        return time.perf_counter() - started
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--store", default="sqlite", help="file, sqlite or a store URL")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        flow = Path(tmp, "flow.py")
        flow.write_text(FLOW)
        location = {
            "file": str(Path(tmp, "store")),
            "sqlite": f"sqlite:{Path(tmp, 'runs.db')}",
        }.get(args.store, args.store)
        print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(f"store {args.store}: {args.runs} runs of 3 layers and one effect each\n")
        print("| workers | seconds | runs/s | vs 1 worker |")
        print("|---|---|---|---|")
        base = None
        for workers in (1, 2, 4):
            seconds = measure(location, flow, args.runs, workers)
            rate = args.runs / seconds
            base = base or rate
            print(f"| {workers} | {seconds:.2f} | {rate:.1f} | {rate / base:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
