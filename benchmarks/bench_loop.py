"""A long interrupt loop on the file store: bytes on disk and cold resume as rounds pile up.

Run it from the repository root::

    python benchmarks/bench_loop.py           # 1,000 rounds; cold resume at round 10 and 1,000
    python benchmarks/bench_loop.py --quick   # 100 rounds, fewer repeats: a smoke run

One step loops forever, ``x = yield Interrupt({"round": n, "pad": "x" * 100})``,
and one ``Runner`` answers it ``rounds`` times (``Resume(n)``), so the run is
paused inside one layer the whole time and every answer is a checkpoint of
that layer's progress. The tables give the bytes of the store directory after
the last round and the time of one *cold* resume (a new ``Runner`` on a new
``FileCheckpointer`` handle of the same directory, one ``resume``, as a new
process would do) after 10 rounds and after ``rounds`` rounds: the target is
that the late resume costs at most 2x the early one.

A cold resume loads the pause and replays the step up to its ``yield`` with
the answers already given, so some growth with the rounds is expected; the
target says how much. Each sample resumes its own copy of the store as it
stood after that round (copied outside the timed region), so every sample
answers the same round of the same log; samples of the two rounds are taken
round-robin.

The rows below it break the late resume down: a new handle's ``latest()``
(index the log, read and decode the frames from the last snapshot on), of
which the file store's indexing alone; the engine replaying the journal on
a checkpoint already loaded (no I/O); and the floor no engine can go under,
the step's own loop run bare (its ``Interrupt`` made and the generator sent
each answer). The last row is the engine's replay cost per round above
that floor.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Generator, Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (
    Row,
    Scratch,
    Table,
    fmt_bytes,
    fmt_time,
    load_line,
    machine_lines,
    median_many,
    parse_args,
    print_tables,
    tree_bytes,
    verdict_counts,
    within,
)

from pausegraph import FileCheckpointer, Graph, Interrupt, LastWriteWins, Paused, Resume, Runner
from pausegraph._instructions import consumed
from pausegraph._records import progress_of
from pausegraph._scheduler import replay_journals

EARLY = 10
"""The round the late cold resume is compared with."""

FLAT_LIMIT = 2.0
PAD = "x" * 100


def _loop(state: Mapping[str, Any]) -> Generator[Interrupt, Any, None]:
    n = 0
    while True:
        _x = yield Interrupt({"round": n, "pad": PAD})
        n += 1


def loop_graph() -> Graph:
    return Graph("loop", {"last": LastWriteWins()}).step("loop", _loop)


def _expect_round(out: object, n: int) -> None:
    if not isinstance(out, Paused) or out.payload != {"round": n, "pad": PAD}:
        raise RuntimeError(f"pausegraph loop expected a pause at round {n}, got {out!r}")


def build(graph: Graph, root: Path, rounds: int, keep: Mapping[int, Path]) -> float:
    """Answer the loop ``rounds`` times on one Runner; copy the store after each round in
    ``keep``. Returns the median time of one hot answer (resume to the next pause)."""
    runner = Runner(graph, FileCheckpointer(root))
    out = runner.run("loop")
    _expect_round(out, 0)
    times = []
    for n in range(rounds):
        if n in keep:
            shutil.copytree(root, keep[n])
        start = time.perf_counter_ns()
        out = runner.resume("loop", Resume(n))
        times.append(time.perf_counter_ns() - start)
        _expect_round(out, n + 1)
    if rounds in keep:
        shutil.copytree(root, keep[rounds])
    times.sort()
    return times[len(times) // 2]


def cold_resume(graph: Graph, template: Path, scratch: Scratch, n: int) -> Callable[[], Any]:
    """A prepare: copy the store as it stood after ``n`` rounds, then (timed) one cold
    resume on the copy: a new Runner on a new FileCheckpointer handle."""

    def prepare() -> Callable[[], None]:
        copy = scratch.new(f"cold-{n}")
        shutil.copytree(template, copy)

        def work() -> None:
            _expect_round(Runner(graph, FileCheckpointer(copy)).resume("loop", Resume(n)), n + 1)

        return work

    return prepare


FLOW = f"""\
from pausegraph import Graph, Interrupt, LastWriteWins

PAD = {PAD!r}


def _loop(state):
    n = 0
    while True:
        _x = yield Interrupt({{"round": n, "pad": PAD}})
        n += 1


graph = Graph("loop", {{"last": LastWriteWins()}}).step("loop", _loop)
"""


def cold_process(scratch: Scratch, template: Path, n: int) -> Callable[[], Any]:
    """A prepare: copy the store after ``n`` rounds, then (timed) a cold resume as a user
    makes one from another process: ``pausegraph resume flow.py:graph loop --value n``
    (the console script's own ``main``),
    a new interpreter that imports pausegraph and the workflow, opens the store, loads,
    replays, saves the answer and the next pause, and prints it."""
    flow = scratch.root / "loopflow.py"
    if not flow.exists():
        flow.write_text(FLOW)
    expected = f'"round": {n + 1},'

    def prepare() -> Callable[[], None]:
        copy = scratch.new(f"process-{n}")
        shutil.copytree(template, copy)
        command = [
            *(
                sys.executable,
                "-c",
                "import sys; from pausegraph.cli import main; sys.exit(main())",
            ),
            *("resume", f"{flow}:graph", "loop"),
            *("--value", str(n), "--store", str(copy)),
        ]

        def work() -> None:
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0 or expected not in done.stdout:
                raise RuntimeError(f"pausegraph resume failed: {done.stdout}{done.stderr}")

        return work

    return prepare


def cold_load(template: Path, scratch: Scratch, n: int) -> Callable[[], Any]:
    """A prepare: copy the store as it stood after ``n`` rounds, then (timed) a new
    FileCheckpointer handle's ``latest``: the read and decode part of a cold resume."""

    def prepare() -> Callable[[], None]:
        copy = scratch.new(f"load-{n}")
        shutil.copytree(template, copy)

        def work() -> None:
            if FileCheckpointer(copy).latest("loop", "loop") is None:
                raise RuntimeError("pausegraph loop: the copied store has no checkpoint")

        return work

    return prepare


def cold_index(template: Path, scratch: Scratch, n: int) -> Callable[[], Any]:
    """A prepare: copy the store after ``n`` rounds, then (timed) a new handle's
    ``frames``: the file store indexing the run's log, one record at a time."""

    def prepare() -> Callable[[], None]:
        copy = scratch.new(f"index-{n}")
        shutil.copytree(template, copy)

        def work() -> None:
            if not FileCheckpointer(copy).store.frames("loop", "loop"):
                raise RuntimeError("pausegraph loop: the copied store has no frame")

        return work

    return prepare


def replay(graph: Graph, template: Path, n: int) -> Callable[[], Any]:
    """A prepare: (timed) the engine replaying the step through its journal after ``n``
    rounds, as a cold resume does, but with no I/O: the checkpoint is loaded outside."""
    checkpoint = FileCheckpointer(template).latest("loop", "loop")
    progress = None if checkpoint is None else progress_of(checkpoint.stage)
    if progress is None or len(progress.journals["loop"]) != n + 1:
        raise RuntimeError(f"pausegraph loop: no journal of {n + 1} entries after {n} rounds")

    def prepare() -> Callable[[], None]:
        def work() -> None:
            if replay_journals(graph, {}, progress):
                raise RuntimeError("pausegraph loop: the journal does not replay")

        return work

    return prepare


def bare(n: int) -> Callable[[], Any]:
    """A prepare: (timed) the user's own code a replay cannot avoid, with no engine: the
    loop's generator sent ``n`` answers (``n + 1`` ``Interrupt`` made, each marked taken
    as the engine marks it, so none warns)."""

    def prepare() -> Callable[[], None]:
        def work() -> None:
            gen = _loop({})
            msg = next(gen)
            for answer in range(n):
                consumed(msg)
                msg = gen.send(answer)
            consumed(msg)
            gen.close()

        return work

    return prepare


def main(argv: list[str] | None = None) -> int:
    args = parse_args("a long interrupt loop on the file store", argv)
    rounds = 100 if args.quick else 1000
    scratch = Scratch(args.dir)
    started = time.perf_counter()
    for line in machine_lines(["pausegraph", "msgpack"]):
        print(line)
    print(f"file stores under {scratch.root}; medians of {args.repeats} timed repeats")
    print()
    graph = loop_graph()
    tables: list[Table] = []
    try:
        root = scratch.new("loop")
        keep = {EARLY: scratch.new(f"at-{EARLY}"), rounds: scratch.new(f"at-{rounds}")}
        build_start = time.perf_counter()
        hot = build(graph, root, rounds, keep)
        build_s = time.perf_counter() - build_start
        size = tree_bytes(root)
        early, late, early_load, late_load, early_index, late_index = median_many(
            [
                *(cold_resume(graph, keep[n], scratch, n) for n in (EARLY, rounds)),
                *(cold_load(keep[n], scratch, n) for n in (EARLY, rounds)),
                *(cold_index(keep[n], scratch, n) for n in (EARLY, rounds)),
            ],
            args.repeats,
        )
        early_process, late_process = median_many(
            [cold_process(scratch, keep[n], n) for n in (EARLY, rounds)],
            max(3, args.repeats // 2),
        )
        early_replay, late_replay, early_bare, late_bare = median_many(
            [*(replay(graph, keep[n], n) for n in (EARLY, rounds)), bare(EARLY), bare(rounds)],
            args.repeats,
        )
        table = Table(
            f"8. interrupt loop of {rounds} rounds (payload {{'round': n, 'pad': 100 B}}), "
            "file store",
            (f"at round {rounds}", f"at round {EARLY}"),
        )
        table.add(
            Row(
                f"bytes on disk after {rounds} rounds ({fmt_bytes(size / rounds)} per round)",
                f"{fmt_bytes(size)} ({size:,} B)",
            )
        )
        table.add(Row("hot resume to the next pause (median over the rounds)", fmt_time(hot)))
        table.add(
            within(
                f"cold resume at round {rounds} vs round {EARLY}",
                late,
                early,
                limit=FLAT_LIMIT,
            )
        )
        table.add(
            within(
                f"cold resume from a new process (`pausegraph resume`), round {rounds} vs {EARLY}",
                late_process,
                early_process,
                limit=FLAT_LIMIT,
            )
        )
        table.add(
            within(
                "of which: a new handle's latest() (read + decode), no target",
                late_load,
                early_load,
            )
        )
        table.add(
            within(
                "of which: the file store indexing the log (frames()), no target",
                late_index,
                early_index,
            )
        )
        table.add(
            within(
                "of which: the engine replaying the journal (no I/O), no target",
                late_replay,
                early_replay,
            )
        )
        table.add(
            within(
                "the floor: the step's own loop, bare (no engine), no target",
                late_bare,
                early_bare,
            )
        )
        over = (late_replay - late_bare) / rounds
        table.add(
            Row(f"engine replay cost per round above the floor (over {rounds})", f"{over:.0f} ns")
        )
        tables.append(table)
        print_tables(tables)
        print(f"{rounds} rounds driven in {build_s:.1f} s")
    finally:
        scratch.close()
    print(load_line("at end"))
    passed, failed = verdict_counts(tables)
    print(f"targets: {passed} PASS, {failed} FAIL; took {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
