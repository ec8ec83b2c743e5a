"""Listing speed: ``pausegraph runs``, ``inbox``, ``show ID`` and ``history ID`` on 10,000 runs.

Run it from the repository root::

    python benchmarks/bench_listing.py              # 10,000 runs
    python benchmarks/bench_listing.py --runs 1000  # a smoke run

The target (SPEC, Command line): each command takes under 0.2 s on a store
of 10,000 runs, not counting the interpreter's start. So each command is
timed in process, through ``pausegraph.cli.main([...])`` with standard output
sent to a buffer, best of ``--repeats``; the interpreter and the imports are
paid once before timing.

The first `runs` right after a build is timed on its own too (one call: the
file store's index catches up from its journal then). The store is built
once per kind in a temporary directory (``--dir`` to
choose the disk; ``--keep DIR`` builds the stores in DIR once and reuses
them on the next run with the same ``--runs``): a file store, and a SQLite store when
``pausegraph.checkpointers.sqlite`` exists. A memory store is pointless
here: the command line opens a new store each time. Two runs in three stay
paused on an interrupt (so ``inbox`` lists 6,667 of them), one in three is
done. Building is not timed; it takes a while (a run is at least two
durable checkpoints).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import os
import sys
import tempfile
import time
from collections.abc import Generator
from typing import Any

from pausegraph import Graph, Interrupt, LastWriteWins, Resume, Runner, open_checkpointer
from pausegraph.cli import main

TARGET_S = 0.2


def ask(state: Any) -> Generator[Any, Any, dict[str, Any]]:
    answer = yield Interrupt({"question": "approve?", "amount": state["amount"]})
    return {"approved": answer}


GRAPH = Graph("listing", {"amount": LastWriteWins(), "approved": LastWriteWins()}).step("ask", ask)


def build(url: str, runs: int) -> str:
    """Fill the store at ``url`` with ``runs`` runs; return the id of one to show."""
    runner = Runner(GRAPH, open_checkpointer(url))
    started = time.perf_counter()
    for n in range(runs):
        run_id = f"run-{n:05d}"
        runner.run(run_id, {"amount": n})
        if n % 3 == 0:
            runner.resume(run_id, Resume(True))
    print(f"built {runs} runs in {url} in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return f"run-{runs // 2:05d}"


def timed(argv: list[str], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        sink = io.StringIO()
        started = time.perf_counter()
        with contextlib.redirect_stdout(sink):
            code = main(argv)
        best = min(best, time.perf_counter() - started)
        if code != 0:
            msg = f"pausegraph {' '.join(argv)} exited {code}"
            raise SystemExit(msg)
    return best


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main_(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", help="where to build the stores (default: a temp dir)")
    parser.add_argument("--keep", help="build the stores here once, reuse them after")
    args = parser.parse_args(argv)
    kinds = ["file"]
    if importlib.util.find_spec("pausegraph.checkpointers.sqlite") is not None:
        kinds.append("sqlite")
    rows = []
    failed = False
    with contextlib.ExitStack() as stack:
        if args.keep is None:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(dir=args.dir))
        else:
            tmp = os.path.join(args.keep, str(args.runs))
            os.makedirs(tmp, exist_ok=True)
        for kind in kinds:
            url = f"file:{tmp}/files" if kind == "file" else f"sqlite:{tmp}/runs.db"
            built = os.path.join(tmp, f"{kind}.built")  # written once the store is whole
            if os.path.exists(built):
                shown = f"run-{args.runs // 2:05d}"
            else:
                shown = build(url, args.runs)
                # the first listing after another handle wrote every run: the file store's
                # index catches up from its journal (one call: it happens once)
                seconds = timed(["--store", url, "runs"], 1)
                ok = seconds < TARGET_S
                failed |= not ok
                rows.append((kind, "runs (first, after the build)", seconds, _verdict(ok)))
                if args.keep is not None:
                    with open(built, "w") as f:
                        f.write(url + "\n")
            commands = (
                ["runs"],
                ["inbox"],
                ["show", shown],
                ["show", shown, "--workflow", "listing"],
                ["history", shown],
            )
            for words in commands:
                seconds = timed(["--store", url, *words], args.repeats)
                ok = seconds < TARGET_S
                failed |= not ok
                rows.append((kind, " ".join(words), seconds, _verdict(ok)))
    print(f"| store | command ({args.runs} runs) | best of {args.repeats} | < {TARGET_S} s |")
    print("|---|---|---:|---|")
    for kind, command, seconds, verdict in rows:
        print(f"| {kind} | `pausegraph {command}` | {seconds * 1000:.1f} ms | {verdict} |")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main_())
