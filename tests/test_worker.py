"""Worker: queued runs, claims submitted by others, deadlines, and several workers at once."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pausegraph import (
    ConflictError,
    Effect,
    FileCheckpointer,
    Goto,
    Graph,
    GraphError,
    Interrupt,
    InterruptTimeout,
    LastWriteWins,
    MemoryCheckpointer,
    Resume,
    ResumeError,
    Runner,
    Sleep,
    SqliteCheckpointer,
    StepError,
    Update,
    Worker,
    _worker,
)
from pausegraph.checkpointers import Checkpointer

CALLS: list[Any] = []


def charge(run: Any) -> str:
    CALLS.append(run)
    return f"paid {run}"


def order(state: Any) -> Any:
    receipt = yield Effect(charge, state["order"])
    ok = yield Interrupt({"ship": state["order"]}, timeout=60)
    return {"receipt": receipt, "shipped": ok}


def graph() -> Graph:
    channels = {"order": LastWriteWins(), "receipt": LastWriteWins(), "shipped": LastWriteWins()}
    return Graph("orders", channels).step("o", order)


@pytest.fixture(params=["memory", "file", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Checkpointer:
    if request.param == "memory":
        return MemoryCheckpointer()
    if request.param == "file":
        return FileCheckpointer(tmp_path / "store")
    return SqliteCheckpointer(tmp_path / "runs.db")


@pytest.fixture(autouse=True)
def _fresh_calls() -> None:
    CALLS.clear()


def test_poll_drives_queued_runs_and_submitted_answers(store: Checkpointer) -> None:
    web = Runner(graph(), store)  # what a web handler would hold: it never runs a step
    for n in range(3):
        assert web.start(f"r{n}", {"order": n}).status == "queued"
    worker = Worker(store, [graph()])
    assert worker.poll() == 3
    assert all(web.state(f"r{n}").status == "paused" for n in range(3))
    assert web.submit("r1", Resume(True)).status == "queued"
    assert worker.poll() == 1
    assert web.state("r1").values == {"order": 1, "receipt": "paid 1", "shipped": True}
    assert worker.poll() == 0
    assert sorted(CALLS) == [0, 1, 2]


def test_poll_drives_the_oldest_queued_run_first_then_by_run_id(store: Checkpointer) -> None:
    # the same order on every store (the file store lists its runs in another order)
    now = [0]
    web = Runner(graph(), store, clock=lambda: now[0])
    for run_id, at in [("r1", 5_000), ("aaa", 5_000), ("Z", 3_000), ("m", 7_000), ("b", 5_000)]:
        now[0] = at
        web.start(run_id, {"order": run_id})
    assert Worker(store, [graph()], clock=lambda: now[0]).poll() == 5
    assert CALLS == ["Z", "aaa", "b", "r1", "m"]


def test_poll_skips_a_run_another_driver_holds(store: Checkpointer) -> None:
    Runner(graph(), store).start("r", {"order": 1})
    worker = Worker(store, [graph()])
    with store.lock("orders", "r"):
        held = threading.Thread(target=lambda: moved.append(worker.poll()))
        moved: list[int] = []
        held.start()
        held.join()
    assert moved == [0]
    assert worker.poll() == 1


def test_poll_never_raises_a_runs_own_error(
    store: Checkpointer, caplog: pytest.LogCaptureFixture
) -> None:
    def boom(state: Any) -> Any:
        raise RuntimeError("no stock")

    failing = Graph("orders", {"order": LastWriteWins()}).step("o", boom)
    Runner(failing, store).start("r", {"order": 1})
    with caplog.at_level(logging.WARNING, logger="pausegraph"):
        assert Worker(store, [failing]).poll() == 0  # SPEC: a failed run is not in the result
    assert Runner(failing, store).state("r").status == "failed"
    assert "no stock" in caplog.text


def test_a_run_this_graph_refuses_is_left_queued_and_said_once(
    store: Checkpointer, caplog: pytest.LogCaptureFixture
) -> None:
    Runner(graph(), store).start("r", {"order": "o-1"})
    changed = graph().step("audit", lambda state: None)  # a step added since the run started
    worker = Worker(store, [changed])
    with caplog.at_level(logging.WARNING, logger="pausegraph"):
        assert worker.poll() == 0  # not moved: an idle worker waits instead of spinning
        assert worker.poll() == 0
    said = [r.getMessage() for r in caplog.records if "is left queued" in r.getMessage()]
    assert len(said) == 1, said
    assert "'r' of workflow 'orders' is left queued: this worker cannot drive it" in said[0]
    assert Runner(graph(), store).state("r").status == "queued"
    assert CALLS == []


def test_a_failure_that_left_the_run_queued_is_not_counted_as_moved(
    store: Checkpointer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a step error whose failed checkpoint could not be saved: the worker must not take
    # the run again at once, poll after poll (it spun at 93% CPU on such a run)
    Runner(graph(), store).start("r", {"order": "o-1"})
    worker = Worker(store, [graph()])

    def unsaved(run_id: str, *args: Any) -> Any:
        raise StepError("step 'o' raised ValueError: its failure could not be saved")

    monkeypatch.setattr(worker.runners["orders"], "_drive_queued", unsaved)
    with caplog.at_level(logging.WARNING, logger="pausegraph"):
        assert worker.poll() == 0
        assert worker.poll() == 0
    assert caplog.text.count("is left queued") == 1


def test_a_keyboard_interrupt_from_step_code_names_the_run_and_is_not_taken_again(
    store: Checkpointer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def interrupting(state: Any) -> Any:
        calls.append(1)
        raise KeyboardInterrupt

    graph = Graph("orders", {"order": LastWriteWins()}).step("o", interrupting)
    Runner(graph, store).start("r", {"order": 1})
    worker = Worker(store, [graph])
    with caplog.at_level(logging.WARNING, logger="pausegraph"):
        with pytest.raises(KeyboardInterrupt):
            worker.poll()
        assert worker.poll() == 0  # the same worker (serve's driver) goes on without it
    assert calls == [1]
    assert "'r' of workflow 'orders' is left queued: stopped by KeyboardInterrupt" in caplog.text
    later = time.monotonic() + _worker.STUCK_RETRY_S + 1  # what it read may be a moment off:
    monkeypatch.setattr(time, "monotonic", lambda: later)
    with pytest.raises(KeyboardInterrupt):  # it tries such a run again after a while
        worker.poll()
    assert calls == [1, 1]
    assert caplog.text.count("is left queued") == 1  # the same reason is not said twice
    fixed = Graph("orders", {"order": LastWriteWins()}).step("o", lambda state: {"order": 2})
    assert Runner(fixed, store).run("r").state == {"order": 2}  # a person drives it on


def test_poll_ticks_passed_deadlines(store: Checkpointer) -> None:
    now = [1_700_000_000_000]

    def late(state: Any) -> Any:
        try:
            yield Interrupt("ship?", timeout=60)
        except InterruptTimeout:
            return {"order": "cancelled by the clock"}
        return {}

    timed = Graph("orders", {"order": LastWriteWins()}).step("o", late)
    Runner(timed, store).start("r")
    worker = Worker(store, [timed], clock=lambda: now[0])
    assert worker.poll() == 1  # driven to its pause
    assert worker.poll() == 0
    now[0] += 60_000
    assert worker.poll() == 1
    assert Runner(timed, store).state("r").values == {"order": "cancelled by the clock"}


def test_serve_stops_when_told(store: Checkpointer) -> None:
    Runner(graph(), store).start("r", {"order": 7})
    stop = threading.Event()
    worker = Worker(store, [graph()])
    serving = threading.Thread(target=worker.serve, args=(stop,))
    serving.start()
    deadline = time.monotonic() + 10
    while Runner(graph(), store).state("r").status != "paused" and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    serving.join(10)
    assert not serving.is_alive()
    assert Runner(graph(), store).state("r").status == "paused"


def test_a_worker_needs_distinct_graphs() -> None:
    with pytest.raises(GraphError, match=r"two graphs named 'orders'"):
        Worker(MemoryCheckpointer(), [graph(), graph()])
    with pytest.raises(GraphError, match=r"at least one graph"):
        Worker(MemoryCheckpointer(), [])


FLOW = textwrap.dedent(
    """
    import os
    from pausegraph import Effect, Graph, Interrupt, LastWriteWins

    def pay(run):
        with open(os.environ["PG_CALLS"], "a") as log:
            log.write(run + "\\n")
        return run

    def step(state):
        yield Effect(pay, state["order"])
        ok = yield Interrupt("ship?")
        return {"shipped": ok}

    graph = Graph("orders", {"order": LastWriteWins(), "shipped": LastWriteWins()})
    graph.step("s", step)
    """
)


@pytest.mark.parametrize("url", ["file", "sqlite", "postgres"])
def test_several_worker_processes_finish_every_run_each_effect_once(
    tmp_path: Path, url: str, request: pytest.FixtureRequest
) -> None:
    flow = tmp_path / "flow.py"
    flow.write_text(FLOW)
    calls = tmp_path / "calls.txt"
    location = location_of(url, tmp_path, request)
    env = {**os.environ, "PG_CALLS": str(calls)}
    pg = str(Path(sys.executable).parent / "pausegraph")
    logs = [tmp_path / f"worker{n}.err" for n in range(3)]
    workers = []
    for log in logs:
        with log.open("ab") as err:  # the child keeps its own copy of the descriptor
            workers.append(
                subprocess.Popen(
                    [pg, "--store", location, "worker", f"{flow}:graph"],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                )
            )
    for log in logs:  # signals stop a worker cleanly once it says it serves
        wait_for(lambda log=log: "serving" in log.read_text())
    try:
        from pausegraph import open_checkpointer
        from pausegraph.cli import load_graph

        store = closing(open_checkpointer(location))
        web = Runner(load_graph(f"{flow}:graph"), store)
        for n in range(30):
            web.start(f"r{n}", {"order": f"o{n}"})
        wait_for(lambda: all(web.state(f"r{n}").status == "paused" for n in range(30)))
        for n in range(30):
            web.submit(f"r{n}", Resume(True))
        wait_for(lambda: all(web.state(f"r{n}").status == "done" for n in range(30)))
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        codes = [worker.wait(30) for worker in workers]
    assert codes == [0, 0, 0]
    paid = calls.read_text().split()
    assert sorted(paid) == sorted(f"o{n}" for n in range(30))  # each effect once


OPENED: list[Any] = []


def closing(store: Any) -> Any:
    """Remember a store the test opened, to close it (a PostgreSQL one holds connections)."""
    OPENED.append(store)
    return store


@pytest.fixture(autouse=True)
def _close_opened() -> Iterator[None]:
    yield
    while OPENED:
        close = getattr(OPENED.pop(), "close", None)
        if close is not None:
            close()


def location_of(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A store URL of ``kind`` for worker processes (PostgreSQL: a fresh schema)."""
    if kind == "file":
        return str(tmp_path / "store")
    if kind == "sqlite":
        return f"sqlite:{tmp_path / 'runs.db'}"
    return str(request.getfixturevalue("postgres").url)


def wait_for(condition: Any, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the workers")
        time.sleep(0.05)


CHAOS_FLOW = textwrap.dedent(
    """
    import os
    from pausegraph import Effect, Graph, Interrupt, LastWriteWins

    def effect(name, order):
        with open(os.environ["PG_CALLS"], "a") as log:
            log.write(f"{name}:{order}\\n")
            log.flush()
        return name

    def step(state):
        yield Effect(effect, "reserve", state["order"])
        ok = yield Interrupt("ship?")
        yield Effect(effect, "ship", state["order"])
        return {"shipped": ok}

    graph = Graph("orders", {"order": LastWriteWins(), "shipped": LastWriteWins()})
    graph.step("s", step)
    """
)


@pytest.mark.parametrize("url", ["file", "sqlite", "postgres"])
def test_chaos_a_killed_worker_leaves_its_runs_to_the_others(
    tmp_path: Path, url: str, request: pytest.FixtureRequest
) -> None:
    flow = tmp_path / "chaos.py"
    flow.write_text(CHAOS_FLOW)
    calls = tmp_path / "calls.txt"
    location = location_of(url, tmp_path, request)
    env = {**os.environ, "PG_CALLS": str(calls)}
    pg = str(Path(sys.executable).parent / "pausegraph")
    logs = [tmp_path / f"worker{n}.err" for n in range(4)]

    def spawn(n: int) -> subprocess.Popen[bytes]:
        with logs[n].open("ab") as err:  # the child keeps its own copy of the descriptor
            return subprocess.Popen(
                [pg, "--store", location, "worker", f"{flow}:graph"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )

    workers = [spawn(n) for n in range(3)]
    for log in logs[:3]:
        wait_for(lambda log=log: log.exists() and "serving" in log.read_text())
    runs = [f"r{n}" for n in range(200)]
    kills = 0
    try:
        from pausegraph import open_checkpointer
        from pausegraph.cli import load_graph

        web = Runner(load_graph(f"{flow}:graph"), closing(open_checkpointer(location)))
        for n, run_id in enumerate(runs):
            web.start(run_id, {"order": n})
            if n == 60:  # a worker dies at a moment of its own choosing
                workers[0].kill()
                workers[0].wait()
                kills += 1
                workers[0] = spawn(3)  # and is restarted
                wait_for(lambda: logs[3].exists() and "serving" in logs[3].read_text())
        answered: set[str] = set()
        deadline = time.monotonic() + 120
        while len(answered) < len(runs):  # a separate process answers what waits
            for run_id in runs:
                if run_id not in answered and web.state(run_id).status == "paused":
                    try:
                        web.submit(run_id, Resume(True))
                    except ConflictError:
                        # a worker that listed the run as queued before it paused holds
                        # it for a moment to find it paused: answer it on the next pass
                        continue
                    answered.add(run_id)
            assert time.monotonic() < deadline, "runs did not reach their pause"
            time.sleep(0.05)
        wait_for(lambda: all(web.state(r).status == "done" for r in runs), 120)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.wait(30)
    lines = calls.read_text().split()
    for name in ("reserve", "ship"):
        done = [line for line in lines if line.startswith(name + ":")]
        assert set(done) == {f"{name}:{n}" for n in range(200)}
        # each effect once, but for one repeat per killed worker (its crash window)
        assert len(done) - 200 <= kills
    for log in logs[:3] + logs[3:]:
        text = log.read_text() if log.exists() else ""
        assert "Traceback" not in text
        assert "ConflictError" not in text


def test_a_worker_runs_effects_on_its_executor(store: Checkpointer) -> None:
    from concurrent.futures import ThreadPoolExecutor

    Runner(graph(), store).start("r", {"order": 5})
    with ThreadPoolExecutor(2) as pool:
        assert Worker(store, [graph()], executor=pool).poll() == 1
    assert CALLS == [5]
    assert Runner(graph(), store).state("r").status == "paused"


@pytest.mark.parametrize("elsewhere", ["goto", "cancel-goto", "update", "answer"])
def test_a_worker_holding_a_pause_the_run_left_elsewhere_replays_instead(
    tmp_path: Path, elsewhere: str
) -> None:
    # the worker drove the run to a pause and holds its generator; another handle moves the
    # run (a Goto: new interrupt ids; an Update kept at the pause; an answer), a submit
    # answers what is pending now, and the worker drives that claim
    def ask2(state: Any) -> Any:
        first = yield Interrupt("q0")
        second = yield Interrupt("q1")
        return {"x": [first, second]}

    graph = Graph("g", {"x": LastWriteWins()}).step("s", ask2)
    store = FileCheckpointer(tmp_path)
    worker = Worker(store, [graph])
    Runner(graph, store).start("r", {})
    assert worker.poll() == 1
    other = Runner(graph, store)
    if elsewhere == "goto":
        other.resume("r", Goto("s"))
    elif elsewhere == "cancel-goto":
        other.cancel("r")
        other.resume("r", Goto("s"))
    elif elsewhere == "update":
        other.resume("r", Update({"x": "kept"}))
    else:
        other.resume("r", Resume("first"))
    answers = ["first"] if elsewhere == "answer" else []
    while (info := Runner(graph, store).state("r")).status == "paused":
        [pending] = info.interrupts
        answers.append(f"answer to {pending.payload}")
        Runner(graph, store).submit("r", Resume(answers={pending.id: answers[-1]}))
        assert worker.poll() == 1
    assert info.status == "done"
    # an Update kept at a dynamic pause is applied after the layer's writes
    assert info.values["x"] == ("kept" if elsewhere == "update" else answers)
    labels = [meta.label for meta in Runner(graph, store).history("r")]
    assert labels[-1] == "layer:1"


def test_a_worker_holding_a_pause_of_a_run_deleted_and_started_again_replays(
    tmp_path: Path,
) -> None:
    # the new run pauses at the same seq as the old one: the held generator is the old
    # run's, and must not get the new run's answer
    def ask(state: Any) -> Any:
        answer = yield Interrupt(f"for {state['who']}?")
        return {"out": f"{state['who']}:{answer}"}

    graph = Graph("g", {"who": LastWriteWins(), "out": LastWriteWins()}).step("s", ask)
    store = FileCheckpointer(tmp_path)
    worker = Worker(store, [graph])
    Runner(graph, store).start("r", {"who": "alice"})
    assert worker.poll() == 1  # it holds alice's generator
    other = Runner(graph, store)
    other.delete("r")
    other.start("r", {"who": "bob"})
    time.sleep(0.002)  # the new run's checkpoints have other times than the old one's
    assert Worker(store, [graph]).poll() == 1  # bob's run pauses, at the same seq
    other.submit("r", Resume("yes"))
    assert worker.poll() == 1
    assert other.state("r").values == {"who": "bob", "out": "bob:yes"}


def _meddling_graph(meddle: Any) -> Graph:
    """Runs named ``a*`` call ``meddle()`` inside their step (while the worker drives them);
    every run charges once, a run with ``fail`` set by an effect that raises."""

    def decline(run: Any) -> str:
        CALLS.append(run)
        raise RuntimeError("card declined")

    def step(state: Any) -> Any:
        if state["order"].startswith("a"):
            meddle()
        receipt = yield Effect(decline if state.get("fail") else charge, state["order"])
        return {"receipt": receipt}

    channels = {"order": LastWriteWins(), "receipt": LastWriteWins(), "fail": LastWriteWins()}
    return Graph("orders", channels).step("o", step)


@pytest.mark.parametrize("other", ["done", "failed", "deleted"])
def test_poll_leaves_a_listed_run_that_another_driver_moved_meanwhile(
    store: Checkpointer, other: str
) -> None:
    # SPEC Workers: poll drives *queued* runs and counts the runs it moved; a run another
    # driver finished, failed or deleted after the worker listed it is not retried (its
    # effect called again), started again from no input, or counted
    def meddle() -> None:
        if other == "deleted":
            web.delete("b2")
        else:
            with contextlib.suppress(StepError):
                web.run("b2")

    flow = _meddling_graph(meddle)
    web = Runner(flow, store)
    web.start("a1", {"order": "a1"})
    web.start("b2", {"order": "b2", "fail": other == "failed"})
    worker = Worker(store, [flow])
    assert worker.poll() == 1  # a1 only: b2 was moved (or deleted) by the step of a1
    assert worker.poll() == 0
    if other == "deleted":
        assert CALLS == ["a1"]
        with pytest.raises(ResumeError, match="b2"):
            web.state("b2")
    else:
        assert CALLS == ["b2", "a1"]
        assert web.state("b2").status == ("done" if other == "done" else "failed")


def test_a_run_driven_to_a_pause_then_ticked_in_one_poll_counts_once(store: Checkpointer) -> None:
    # "returns how many runs it moved": one run, even if its drive and the tick both moved it
    def nap(state: Any) -> Any:
        yield Sleep(0)
        return {"order": "woke"}

    flow = Graph("orders", {"order": LastWriteWins()}).step("o", nap)
    Runner(flow, store).start("r")
    worker = Worker(store, [flow])
    assert worker.poll() == 1
    assert Runner(flow, store).state("r").values == {"order": "woke"}
