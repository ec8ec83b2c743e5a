"""Runner(executor=...): effects ready together run together; same journal as without one."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

import pytest

from pausegraph import (
    All,
    Append,
    Done,
    Effect,
    EffectError,
    FileCheckpointer,
    Graph,
    Interrupt,
    LastWriteWins,
    MemoryCheckpointer,
    Paused,
    Resume,
    Runner,
    SqliteCheckpointer,
    StepError,
)


def CLOCK() -> int:  # one time for every run: journals compared across runs hold it
    return 1_700_000_000_000


def square(x):
    return x * x


def slow_square(x):
    time.sleep(0.05 * (3 - x % 3))  # later branches finish first
    return x * x


def fails(x):
    raise ValueError(f"bad {x}")


def branch(n):
    a = yield Effect(slow_square, n)
    b = yield Effect(square, a)
    if n == 1:
        try:
            yield Effect(fails, n)
        except EffectError:
            b = -b
    answer = yield Interrupt(n)
    return [a, b, answer]


def fan(state):
    results = yield All(*(branch(n) for n in range(state["n"])))
    return {"out": results}


def plain_effects(state):
    first = yield Effect(slow_square, 2)
    second = yield Effect(square, first)
    return {"log": [first, second]}


def make_graph():
    graph = Graph("par", {"n": LastWriteWins(), "out": LastWriteWins(), "log": Append()})
    graph.step("fan", fan).step("plain", plain_effects).step("flat", lambda s: {"log": "flat"})
    return graph


def journals(runner, run_id):
    stage = runner.checkpointer.latest("par", run_id).stage
    return stage.progress.journals


@pytest.fixture(params=["memory", "file"])
def store_factory(request, tmp_path):
    if request.param == "memory":
        store = MemoryCheckpointer()
        return lambda: store
    return lambda: FileCheckpointer(tmp_path / "runs")


@pytest.mark.parametrize("pool", ["threads", "processes"])
@pytest.mark.parametrize("hot", [True, False])
def test_same_journal_and_outcome_with_and_without_an_executor(store_factory, pool, hot):
    if pool == "threads":
        executor = ThreadPoolExecutor(4)
    else:
        # not fork: a worker forked while the run's lock is held would keep holding it
        executor = ProcessPoolExecutor(4, mp_context=multiprocessing.get_context("forkserver"))
    with executor:
        alone = Runner(make_graph(), MemoryCheckpointer(), clock=CLOCK)
        together = Runner(make_graph(), store_factory(), executor=executor, clock=CLOCK)
        paused_alone = alone.run("r", {"n": 4})
        paused_together = together.run("r", {"n": 4})
        assert isinstance(paused_together, Paused)
        assert paused_alone == paused_together
        assert journals(alone, "r") == journals(together, "r")
        if not hot:
            together = Runner(make_graph(), store_factory(), executor=executor, clock=CLOCK)
        answers = {i.id: i.payload for i in paused_together.interrupts}
        done_alone = alone.resume("r", Resume(answers=answers))
        done = together.resume("r", Resume(answers=answers))
    assert isinstance(done, Done)
    assert done == done_alone
    assert done.state["out"] == [[0, 0, 0], [1, -1, 1], [4, 16, 2], [9, 81, 3]]
    assert done.state["log"] == [4, 16, "flat"]


def test_effects_ready_together_are_submitted_together():
    seen = []
    lock = threading.Lock()
    gate = threading.Barrier(3, timeout=5)

    def meet(x):
        with lock:
            seen.append(x)
        gate.wait()  # only passes if all three run at the same time
        return x

    def step(state):
        return {"out": (yield All(*(one(x) for x in range(3))))}

    def one(x):
        return (yield Effect(meet, x))

    graph = Graph("par", {"out": LastWriteWins()}).step("s", step)
    with ThreadPoolExecutor(3) as executor:
        done = Runner(graph, executor=executor).run("r", {})
    assert done.state["out"] == [0, 1, 2]
    assert sorted(seen) == [0, 1, 2]


def test_steps_of_a_layer_wait_on_effects_together():
    gate = threading.Barrier(2, timeout=5)

    def meet(x):
        gate.wait()
        return x

    def step(name):
        def run(state):
            return {"log": (yield Effect(meet, name))}

        return run

    graph = Graph("par", {"log": Append()}).step("a", step("a")).step("b", step("b"))
    with ThreadPoolExecutor(2) as executor:
        done = Runner(graph, executor=executor).run("r", {})
    assert done.state["log"] == ["a", "b"]


def test_an_effect_error_under_an_executor_is_recorded_as_without_one():
    def step(state):
        yield Effect(fails, 3)

    graph = Graph("par", {"log": Append()}).step("s", step)
    with ThreadPoolExecutor(2) as executor:
        runner = Runner(graph, executor=executor)
        with pytest.raises(EffectError, match="ValueError: bad 3"):
            runner.run("r", {})
    assert runner.state("r").failure.error_type == "EffectError"


class _RefusesTheSecond(ThreadPoolExecutor):
    """An executor that turns down its second job, as a pool shut down meanwhile would."""

    def __init__(self) -> None:
        super().__init__(2)
        self.jobs = 0

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        self.jobs += 1
        if self.jobs == 2:
            raise RuntimeError("cannot schedule new futures after shutdown")
        return super().submit(fn, *args, **kwargs)


def test_an_effect_the_executor_refuses_fails_the_step_and_the_ones_it_ran_are_kept(
    tmp_path: Any,
) -> None:
    ran: list[str] = []

    def effect(name: str) -> str:
        ran.append(name)
        return name

    def step(name: str) -> Any:
        def run(state: Any) -> Any:
            return {name: (yield Effect(effect, name))}

        return run

    graph = Graph("g", {"a": LastWriteWins(), "b": LastWriteWins()})
    graph.step("a", step("a")).step("b", step("b"))
    with _RefusesTheSecond() as pool:
        runner = Runner(graph, FileCheckpointer(tmp_path), executor=pool)
        with pytest.raises(StepError, match=r"the executor refused an effect of step 'b'"):
            runner.run("r", {})
    assert runner.state("r").status == "failed"
    with ThreadPoolExecutor(2) as pool:
        done = Runner(graph, FileCheckpointer(tmp_path), executor=pool).run("r")
    assert done.state == {"a": "a", "b": "b"}
    assert ran == ["a", "b"]  # a ran once: its result was saved before the step failed


def _ask_after_effects(state):
    squares = yield All(*(_one_square(n) for n in (3, 4)))
    answer = yield Interrupt("q")
    return {"out": [squares, answer]}


def _one_square(n):
    return (yield Effect(square, n))


ASKS_AFTER_EFFECTS = Graph("pp", {"out": LastWriteWins()}).step("s", _ask_after_effects)


@pytest.fixture(params=["file", "sqlite"])
def locking_store(request, tmp_path):
    """A store whose live lock is a lock file (a forked child gets a copy of it)."""
    if request.param == "file":
        return FileCheckpointer(tmp_path / "runs")
    return SqliteCheckpointer(tmp_path / "runs.db")


def test_a_process_pool_forked_while_a_run_is_locked_does_not_keep_its_lock(locking_store):
    # SPEC, Fan-out: any Executor works. A pool that forks its workers as the first
    # effect is submitted (the default on Linux) copies the run's lock file descriptor:
    # the child closes its copy, so the run is not "running" once its call returns
    store, graph = locking_store, ASKS_AFTER_EFFECTS
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
        runner = Runner(graph, store, executor=pool)
        assert isinstance(runner.run("r"), Paused)
        assert store.holder("pp", "r") is None
        assert runner.state("r").status == "paused"
        assert runner.resume("r", Resume("v")) == Done({"out": [[9, 16], "v"]}, 1)


def test_a_child_forked_with_a_copy_the_fork_hook_missed_does_not_keep_the_lock(locking_store):
    # another thread may fork while a lock file's descriptor is being opened or closed,
    # outside the set the at-fork hook closes: the release unlocks before it closes
    from pausegraph.checkpointers import _lock

    store, graph = locking_store, ASKS_AFTER_EFFECTS
    Runner(graph, store).run("r")
    with store.lock("pp", "r"):
        (fd,) = _lock._HELD
        _lock._HELD.discard(fd)  # as in that window
        child = os.fork()
        if child == 0:  # pragma: no cover - the child only waits, holding its copy
            time.sleep(30)
            os._exit(0)
        _lock._HELD.add(fd)
    try:
        assert store.holder("pp", "r") is None
        assert Runner(graph, store).resume("r", Resume("v")) == Done({"out": [[9, 16], "v"]}, 1)
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
