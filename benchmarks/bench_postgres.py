"""PostgreSQL: pausegraph's store against LangGraph's PostgresSaver on the same server.

Two workloads, each sampled round-robin (one of ours, one of theirs, again)
so a busy moment slows both: a pause/resume cycle (start, pause at an
interrupt, resume, finish: the approval graph of the other benchmarks) and a
chain of 20 trivial steps (time per step). Each side gets a fresh schema.
Target (issue "PostgreSQL and workers"): at least 4x per cycle. It also
prints each side's round trips to the server per cycle (``round_trips``).

    PAUSEGRAPH_TEST_POSTGRES=postgresql://... python benchmarks/bench_postgres.py
    python benchmarks/bench_postgres.py --url postgresql://... [--samples 15]

Needs the bench extra and ``langgraph-checkpoint-postgres``; LangGraph's
column is skipped without it.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import itertools
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _langgraph_side as lg
import _pausegraph_side as pg
import psycopg

from pausegraph import PostgresCheckpointer, Runner

CHAIN = 20


def schema_url(server: str, admin: psycopg.Connection[Any]) -> tuple[str, str]:
    name = f"bench_{uuid.uuid4().hex[:12]}"
    admin.execute(f"CREATE SCHEMA {name}")
    joiner = "&" if "?" in server else "?"
    return name, f"{server}{joiner}options=-c%20search_path%3D{name}"


def langgraph_saver(url: str) -> Any:
    try:
        from langgraph.checkpoint.postgres import PostgresSaver
    except ImportError:
        return None
    conn = psycopg.connect(url, autocommit=True, prepare_threshold=0)
    saver = PostgresSaver(conn)
    saver.setup()
    return saver


def median_of(samples: list[float]) -> float:
    return statistics.median(samples)


def round_trips(job: Callable[[], None], times: int = 10) -> float:
    """Round trips to the server per ``job()``, from every psycopg connection of the process.

    A statement is one, and so is a pipeline (its statements and one Sync go
    out together); ``executemany`` outside a pipeline is one (psycopg
    pipelines it); ``transaction()`` is two (``BEGIN`` or ``SAVEPOINT``,
    then ``COMMIT``, ``RELEASE`` or ``ROLLBACK``). The PostgreSQL store's
    hot statements, sent through libpq by its ``_exchange``, count one an
    exchange (a pipeline), or one a statement without pipeline mode.
    Connecting is not counted.
    """
    count = 0
    depth = 0
    execute, executemany = psycopg.Cursor.execute, psycopg.Cursor.executemany
    pipeline = psycopg.Connection.pipeline
    transaction = psycopg.Connection.transaction

    @contextlib.contextmanager
    def transacted(connection: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal count
        count += depth == 0
        try:
            with transaction(connection, *args, **kwargs) as tx:
                yield tx
        finally:
            count += depth == 0

    def counted(method: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            nonlocal count
            count += depth == 0
            return method(*args, **kwargs)

        return call

    @contextlib.contextmanager
    def piped(connection: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal count, depth
        count += depth == 0
        depth += 1
        try:
            with pipeline(connection, *args, **kwargs) as pipe:
                yield pipe
        finally:
            depth -= 1

    store_module: Any = importlib.import_module("pausegraph.checkpointers.postgres")
    exchange = getattr(store_module, "_exchange", None)  # not in stores before libpq exchanges

    def exchanged(wire: Any, calls: list[Any], **how: Any) -> Any:
        nonlocal count
        count += 1 if store_module._PIPELINES else len(calls)
        return exchange(wire, calls, **how)  # type: ignore[misc]

    if exchange is not None:
        store_module._exchange = exchanged
    psycopg.Cursor.execute = counted(execute)  # type: ignore[method-assign]
    psycopg.Cursor.executemany = counted(executemany)  # type: ignore[method-assign]
    psycopg.Connection.pipeline = piped  # type: ignore[method-assign,assignment]
    psycopg.Connection.transaction = transacted  # type: ignore[method-assign,assignment]
    try:
        for _ in range(times):
            job()
    finally:
        psycopg.Cursor.execute = execute  # type: ignore[method-assign]
        psycopg.Cursor.executemany = executemany  # type: ignore[method-assign]
        psycopg.Connection.pipeline = pipeline  # type: ignore[method-assign]
        psycopg.Connection.transaction = transaction  # type: ignore[method-assign]
        if exchange is not None:
            store_module._exchange = exchange
    return count / times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("PAUSEGRAPH_TEST_POSTGRES"))
    parser.add_argument("--samples", type=int, default=15)
    args = parser.parse_args(argv)
    if not args.url:
        raise SystemExit("give --url postgresql://... or set PAUSEGRAPH_TEST_POSTGRES")
    ids = (f"t{n}" for n in itertools.count())
    with psycopg.connect(args.url, autocommit=True) as admin:
        ours_schema, ours_url = schema_url(args.url, admin)
        theirs_schema, theirs_url = schema_url(args.url, admin)
        store = PostgresCheckpointer(ours_url)
        saver = langgraph_saver(theirs_url) if lg.AVAILABLE else None
        try:
            runner = Runner(pg.approval_graph(), store)
            chain_runner = Runner(pg.chain_graph(CHAIN), store)

            def pausegraph_cycle() -> None:
                run_id = next(ids)
                pg.approval_run(runner, run_id)
                pg.approval_resume(runner, run_id)

            work: dict[str, Callable[[], None]] = {
                "pausegraph cycle": pausegraph_cycle,
                "pausegraph chain": lambda: pg.chain(CHAIN)(chain_runner, next(ids)),
            }
            if saver is not None:
                cycle = lg.approval(saver)
                chain = lg.chain(CHAIN, saver)
                work["langgraph cycle"] = lambda: cycle(next(ids))
                work["langgraph chain"] = lambda: chain(next(ids))
            for job in work.values():  # warm up (psycopg prepares after 5 uses)
                for _ in range(6):
                    job()
            trips = {name: round_trips(job) for name, job in work.items() if "cycle" in name}
            samples: dict[str, list[float]] = {name: [] for name in work}
            # each round in a new order: a job run right after a heavy one pays for the
            # caches it left cold, so a fixed order would tax whichever job follows it
            shuffler = random.Random(12)
            order = list(work.items())
            for _ in range(args.samples):
                shuffler.shuffle(order)
                for name, job in order:
                    started = time.perf_counter()
                    job()
                    samples[name].append(time.perf_counter() - started)
        finally:
            store.close()
            if saver is not None:
                saver.conn.close()
            admin.execute(f"DROP SCHEMA {ours_schema} CASCADE")
            admin.execute(f"DROP SCHEMA {theirs_schema} CASCADE")
    t = {name: median_of(s) for name, s in samples.items()}
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"medians of {args.samples} round-robin samples")
    print(
        "round trips per cycle: "
        + ", ".join(f"{name.split()[0]} {n:g}" for name, n in trips.items())
        + "\n"
    )
    print("| workload | pausegraph | LangGraph PostgresSaver | ratio | target | result |")
    print("|---|---|---|---|---|---|")
    for kind, per, target in (("cycle", 1, 4.0), ("chain", CHAIN, None)):
        ours = t[f"pausegraph {kind}"] / per
        theirs = t.get(f"langgraph {kind}")
        unit = "per cycle" if kind == "cycle" else "per step"
        if theirs is None:
            print(f"| {kind} ({unit}) | {ours * 1e3:.2f} ms | skipped | | | |")
            continue
        ratio = theirs / per / ours
        verdict = "" if target is None else ("PASS" if ratio >= target else "FAIL")
        want = "" if target is None else f">= {target:g}x"
        print(
            f"| {kind} ({unit}) | {ours * 1e3:.2f} ms | {theirs / per * 1e3:.2f} ms "
            f"| {ratio:.1f}x | {want} | {verdict} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
