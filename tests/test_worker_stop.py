"""Stopping a worker: only the run in hand finishes; the CLI says so; a second signal ends it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from pausegraph import (
    Effect,
    FileCheckpointer,
    Graph,
    Interrupt,
    InterruptTimeout,
    LastWriteWins,
    MemoryCheckpointer,
    Runner,
    SqliteCheckpointer,
    Worker,
)
from pausegraph.checkpointers import Checkpointer


@pytest.fixture(params=["memory", "file", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Checkpointer:
    if request.param == "memory":
        return MemoryCheckpointer()
    if request.param == "file":
        return FileCheckpointer(tmp_path / "store")
    return SqliteCheckpointer(tmp_path / "runs.db")


class Gate:
    """An effect that says when it starts and returns only once let through."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.through = threading.Event()
        self.calls: list[Any] = []

    def __call__(self, n: Any) -> Any:
        self.calls.append(n)
        self.started.set()
        assert self.through.wait(30)
        return n


def gated(gate: Gate, name: str = "slow") -> Graph:
    def step(state: Any) -> Any:
        out = yield Effect(gate, state["n"])
        return {"out": out}

    return Graph(name, {"n": LastWriteWins(), "out": LastWriteWins()}).step("s", step)


def statuses(graph: Graph, store: Checkpointer, ids: list[str]) -> list[str]:
    runner = Runner(graph, store)
    return sorted(runner.state(run_id).status for run_id in ids)


def test_serve_finishes_only_the_run_in_hand_once_stopped(store: Checkpointer) -> None:
    gate = Gate()
    slow = gated(gate)
    ids = [f"q{n}" for n in range(4)]
    for n, run_id in enumerate(ids):
        Runner(slow, store).start(run_id, {"n": n})
    stop = threading.Event()
    serving = threading.Thread(target=Worker(store, [slow]).serve, args=(stop,))
    serving.start()
    assert gate.started.wait(30)
    stop.set()
    gate.through.set()
    serving.join(30)
    assert not serving.is_alive()
    assert len(gate.calls) == 1  # the run in hand, and no other
    assert statuses(slow, store, ids) == ["done", "queued", "queued", "queued"]
    assert Worker(store, [slow]).poll() == 3  # the others wait for the next worker


def test_poll_with_stop_set_moves_nothing(store: Checkpointer) -> None:
    gate = Gate()
    gate.through.set()
    slow = gated(gate)
    Runner(slow, store).start("q", {"n": 1})
    stop = threading.Event()
    stop.set()
    assert Worker(store, [slow]).poll(stop=stop) == 0
    assert gate.calls == []
    assert Worker(store, [slow]).poll(stop=threading.Event()) == 1


def test_a_stop_during_a_run_skips_the_other_graphs_and_the_ticks(store: Checkpointer) -> None:
    now = [1_700_000_000_000]

    def late(state: Any) -> Any:
        try:
            yield Interrupt("ship?", timeout=60)
        except InterruptTimeout:
            return {"n": "timed out"}
        return {}

    gate = Gate()
    slow = gated(gate)
    timed = Graph("timed", {"n": LastWriteWins()}).step("t", late)
    other = gated(gate, "other")
    Runner(timed, store).start("t")
    assert Worker(store, [timed], clock=lambda: now[0]).poll() == 1  # paused, deadline set
    now[0] += 60_000
    Runner(slow, store).start("q", {"n": 1})
    Runner(other, store).start("o", {"n": 2})
    stop = threading.Event()
    worker = Worker(store, [slow, timed, other], clock=lambda: now[0])
    moved: list[int] = []
    polling = threading.Thread(target=lambda: moved.append(worker.poll(stop=stop)))
    polling.start()
    assert gate.started.wait(30)
    stop.set()
    gate.through.set()
    polling.join(30)
    assert moved == [1]
    assert gate.calls == [1]
    assert Runner(timed, store).state("t").status == "paused"  # its deadline is not ticked
    assert Runner(other, store).state("o").status == "queued"


def test_a_stop_during_a_tick_finishes_the_run_ticked_and_takes_no_other_due_run(
    store: Checkpointer,
) -> None:
    # a tick went on with every due run once stop was set, and the run it was on was not
    # "in hand" (the worker command said "no run in hand"): an attack
    now = [1_700_000_000_000]
    gate = Gate()

    def late(state: Any) -> Any:
        try:
            yield Interrupt("ship?", timeout=60)
        except InterruptTimeout:
            out = yield Effect(gate, state["n"])
            return {"n": out}
        return {}

    timed = Graph("timed", {"n": LastWriteWins()}).step("t", late)
    ids = [f"t{n}" for n in range(3)]
    for n, run_id in enumerate(ids):
        Runner(timed, store).start(run_id, {"n": n})
    worker = Worker(store, [timed], clock=lambda: now[0])
    assert worker.poll() == 3  # each paused, its deadline a minute on
    now[0] += 60_000
    stop = threading.Event()
    polling = threading.Thread(target=lambda: worker.poll(stop=stop))
    polling.start()
    assert gate.started.wait(30)
    in_hand = worker._in_hand
    stop.set()
    gate.through.set()
    polling.join(30)
    assert not polling.is_alive()
    assert in_hand is not None
    assert in_hand[0] == "timed"
    assert len(gate.calls) == 1  # the run ticked, and no other
    assert statuses(timed, store, ids) == ["done", "paused", "paused"]
    assert Runner(timed, store).state(in_hand[1]).status == "done"
    assert worker._in_hand is None


SLOW = textwrap.dedent(
    """
    import os, time
    from pausegraph import Effect, Graph, LastWriteWins

    def charge(n):
        with open(os.environ["PG_CALLS"], "a") as log:
            log.write(f"start {n}\\n")
        time.sleep(float(os.environ["PG_EFFECT_S"]))
        return n

    def step(state):
        out = yield Effect(charge, state["n"])
        return {"out": out}

    graph = Graph("slow", {"n": LastWriteWins(), "out": LastWriteWins()}).step("s", step)
    """
)


def worker_process(
    tmp_path: Path, effect_s: float, runs: int = 4
) -> tuple[subprocess.Popen[bytes], Path, Path, Runner]:
    """A ``pausegraph worker`` on 4 queued runs of an ``effect_s`` effect, once it started one."""
    flow = tmp_path / "slow.py"
    flow.write_text(SLOW)
    calls = tmp_path / "calls.txt"
    location = f"sqlite:{tmp_path / 'runs.db'}"
    from pausegraph import open_checkpointer
    from pausegraph.cli import load_graph

    web = Runner(load_graph(f"{flow}:graph"), open_checkpointer(location))
    for n in range(runs):
        web.start(f"q{n}", {"n": n})
    env = {**os.environ, "PG_CALLS": str(calls), "PG_EFFECT_S": str(effect_s)}
    err = tmp_path / "worker.err"
    pg = str(Path(sys.executable).parent / "pausegraph")
    with err.open("ab") as stderr:  # the child keeps its own copy of the descriptor
        worker = subprocess.Popen(
            [pg, "--store", location, "worker", f"{flow}:graph"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    if runs:
        wait_for(lambda: calls.exists() and "start" in calls.read_text(), worker)
    else:  # the signal handlers are in place once it says it serves
        wait_for(lambda: "serving" in err.read_text(), worker)
    return worker, calls, err, web


def wait_for(condition: Any, worker: subprocess.Popen[bytes], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline or worker.poll() is not None:
            worker.kill()
            worker.wait()
            raise AssertionError("timed out waiting for the worker")
        time.sleep(0.02)


def test_the_worker_command_stops_after_the_run_in_hand(tmp_path: Path) -> None:
    worker, calls, err, web = worker_process(tmp_path, 2.0)
    worker.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    assert worker.wait(30) == 0
    assert time.monotonic() - sent < 2.0 + 1.5  # one run's effect, not four
    assert len(calls.read_text().split("\n")) - 1 == 1
    text = err.read_text()
    assert "stopping: finishing run q" in text
    assert "of workflow 'slow' first; SIGTERM again exits at once" in text
    states = [web.state(f"q{n}").status for n in range(4)]
    assert sorted(states) == ["done", "queued", "queued", "queued"]


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_second_signal_stops_the_worker_command_at_once(
    tmp_path: Path, signum: signal.Signals, code: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker, calls, err, web = worker_process(tmp_path, 60.0)
    worker.send_signal(signum)
    wait_for(lambda: "stopping:" in err.read_text(), worker)
    worker.send_signal(signum)
    assert worker.wait(10) == code
    said = err.read_text()
    assert f"stopped at once by a second {signum.name}" in said
    # the run in hand is named as stopped, not as one this worker cannot drive
    assert f"is left queued: stopped by KeyboardInterrupt: a second {signum.name}" in said
    assert "cannot drive" not in said
    assert len(calls.read_text().split("\n")) - 1 == 1
    assert [web.state(f"q{n}").status for n in range(4)] == ["queued"] * 4
    # its lock died with it: the next worker takes all four
    monkeypatch.setenv("PG_CALLS", str(calls))
    monkeypatch.setenv("PG_EFFECT_S", "0")
    assert Worker(web.checkpointer, [web.graph]).poll() == 4
    assert [web.state(f"q{n}").status for n in range(4)] == ["done"] * 4


def test_an_idle_worker_command_says_it_has_no_run_in_hand(tmp_path: Path) -> None:
    worker, calls, err, _ = worker_process(tmp_path, 0.0, runs=0)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(10) == 0
    assert "stopping: no run in hand\n" in err.read_text()
    assert not calls.exists()


def test_a_signal_that_lands_while_the_worker_holds_its_stop_event_lock_still_stops_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A signal handler runs between two bytecodes of the main thread, which may be inside
    ``stop.wait()`` holding the event's lock: setting the event there waited for itself."""
    from pausegraph import cli

    flow = tmp_path / "slow.py"
    flow.write_text(SLOW)
    handlers: dict[int, Any] = {}
    monkeypatch.setattr(cli.signal, "signal", lambda signum, h: handlers.__setitem__(signum, h))
    stopped: list[bool] = []

    def serve(self: Worker, stop: threading.Event) -> None:
        with stop._cond:  # type: ignore[attr-defined]  # as inside Event.wait
            handlers[signal.SIGTERM](signal.SIGTERM, None)
        stopped.append(stop.wait(10))

    monkeypatch.setattr(Worker, "serve", serve)
    args = ["--store", f"sqlite:{tmp_path / 'runs.db'}", "worker", f"{flow}:graph"]
    done = threading.Thread(target=cli.main, args=(args,), daemon=True)
    done.start()
    done.join(15)
    assert not done.is_alive(), "the handler waited for the lock its own thread held"
    assert stopped == [True]
