"""The web inbox under load: answers per second through the HTTP API, and the inbox page's time.

In process, through Starlette's ``TestClient`` (no sockets: what is timed is
pausegraph's and Starlette's work, not the loopback). For each store kind
(file, SQLite):

- **answers per second**: N runs paused at one question; each answer is a
  ``POST /api/runs/{workflow}/{run_id}/resume`` with ``{"value": ...}``,
  claimed with ``submit`` and driven by the server's own worker thread; the
  reply comes when the run is done. Sequential requests: one client.
- **the inbox page**: ``GET /`` on a store of 10,000 runs, two in three
  waiting (target < 0.2 s, SPEC "Command line" figures for listings).

    python benchmarks/bench_web.py [--answers 200] [--runs 10000] [--kinds file sqlite]

``--answers 0`` skips the answers part.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Generator, Mapping
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from pausegraph import Graph, Interrupt, LastWriteWins, Resume, Runner, open_checkpointer
from pausegraph.web import app

LOCAL = "http://127.0.0.1"
JSON = {"Content-Type": "application/json"}


def ask(state: Mapping[str, Any]) -> Generator[Any, Any, dict[str, Any]]:
    answer = yield Interrupt({"question": "approve?", "amount": state["amount"]})
    return {"approved": answer}


GRAPH = Graph("web", {"amount": LastWriteWins(), "approved": LastWriteWins()}).step("ask", ask)


def answers_per_second(url: str, count: int) -> float:
    store = open_checkpointer(url)
    runner = Runner(GRAPH, store)
    for n in range(count):
        runner.run(f"a{n}", {"amount": n})
    with TestClient(app([GRAPH], store, wait_s=10), base_url=LOCAL) as client:
        started = time.perf_counter()
        for n in range(count):
            reply = client.post(f"/api/runs/web/a{n}/resume", json={"value": True}, headers=JSON)
            if reply.status_code != 200 or reply.json()["status"] != "done":
                raise SystemExit(f"answer {n}: {reply.status_code} {reply.text[:200]}")
        return count / (time.perf_counter() - started)


def inbox_page(url: str, runs: int, repeats: int = 5) -> float:
    store = open_checkpointer(url)
    runner = Runner(GRAPH, store)
    for n in range(runs):
        runner.run(f"r{n:05d}", {"amount": n})
        if n % 3 == 0:
            runner.resume(f"r{n:05d}", Resume(True))
    times = []
    with TestClient(app([GRAPH], store, drive=False), base_url=LOCAL) as client:
        client.get("/")
        for _ in range(repeats):
            started = time.perf_counter()
            page = client.get("/")
            times.append(time.perf_counter() - started)
            if page.status_code != 200:
                raise SystemExit(f"inbox page: {page.status_code}")
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers", type=int, default=200)
    parser.add_argument("--runs", type=int, default=10_000)
    kinds = ["file", "sqlite"]
    parser.add_argument("--kinds", nargs="+", default=kinds, choices=kinds)
    args = parser.parse_args(argv)
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("| store | answers/s (sequential) | inbox page, runs | median | < 0.2 s |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.kinds:
            a = str(Path(tmp, "a")) if kind == "file" else f"sqlite:{Path(tmp, 'a.db')}"
            b = str(Path(tmp, "b")) if kind == "file" else f"sqlite:{Path(tmp, 'b.db')}"
            rate = answers_per_second(a, args.answers) if args.answers else 0.0
            page = inbox_page(b, args.runs)
            verdict = "PASS" if page < 0.2 else "FAIL"
            print(f"| {kind} | {rate:.0f} | {args.runs} | {page * 1000:.0f} ms | {verdict} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
