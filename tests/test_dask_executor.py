"""Runner(executor=...) on a local Dask cluster: the same journal as without an executor.

The effect journals, the pauses and the final state equal those of a run
without an executor. History labels equal those of a run on a thread pool:
with any executor the effects ready together are saved together, so the
history has fewer ``effect:`` checkpoints than a run without one.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from test_parallel_effects import journals, make_graph

from pausegraph import Done, FileCheckpointer, MemoryCheckpointer, Paused, Resume, Runner

distributed = pytest.importorskip("distributed")


def CLOCK() -> int:  # one time for every run: journals compared across runs hold it
    return 1_700_000_000_000


def test_same_journal_on_a_dask_clusters_executor(tmp_path):
    # no dashboard: it would warn when its port is taken; the cluster warns of nothing else
    with (
        distributed.Client(
            processes=False, n_workers=1, threads_per_worker=4, dashboard_address=None
        ) as client,
        ThreadPoolExecutor(4) as threads,
    ):
        executor = client.get_executor()
        alone = Runner(make_graph(), MemoryCheckpointer(), clock=CLOCK)
        threaded = Runner(make_graph(), MemoryCheckpointer(), executor=threads, clock=CLOCK)
        together = Runner(
            make_graph(), FileCheckpointer(tmp_path / "runs"), executor=executor, clock=CLOCK
        )
        paused_alone = alone.run("r", {"n": 4})
        paused = together.run("r", {"n": 4})
        threaded.run("r", {"n": 4})
        assert isinstance(paused, Paused)
        assert paused == paused_alone
        assert journals(together, "r") == journals(alone, "r")
        # a cold resume: a new Runner on a new handle, on the same cluster
        together = Runner(
            make_graph(), FileCheckpointer(tmp_path / "runs"), executor=executor, clock=CLOCK
        )
        answers = {i.id: i.payload for i in paused.interrupts}
        done_alone = alone.resume("r", Resume(answers=answers))
        done = together.resume("r", Resume(answers=answers))
        threaded.resume("r", Resume(answers=answers))
        labels = [m.label for m in together.history("r")]
        assert labels == [m.label for m in threaded.history("r")]
        assert labels[0] == "input"
        assert labels[-2:] == ["resume", "layer:1"]
    assert isinstance(done, Done)
    assert done == done_alone
    assert done.state["out"] == [[0, 0, 0], [1, -1, 1], [4, 16, 2], [9, 81, 3]]
    assert done.state["log"] == [4, 16, "flat"]


COUNTS: dict[str, int] = {}


def counted(name: str, fail_first: bool = False) -> str:
    COUNTS[name] = COUNTS.get(name, 0) + 1
    if fail_first and COUNTS[name] == 1:
        raise ValueError("first call fails")
    return name


def test_on_dask_each_effect_is_its_own_call_and_a_retry_calls_a_failed_one_again() -> None:
    # Dask takes tasks as pure by default: effects of one function and arguments were
    # merged into one call, and a failed one's error was kept for every retry
    from pausegraph import All, Effect, Graph, LastWriteWins, StepError

    def twice(state):
        both = yield All(_one(), _one())
        flaky = yield Effect(counted, "flaky", fail_first=True)
        return {"x": [*both, flaky]}

    COUNTS.clear()
    graph = Graph("g", {"x": LastWriteWins()}).step("s", twice)
    with distributed.Client(
        processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None
    ) as client:
        runner = Runner(graph, MemoryCheckpointer(), executor=client.get_executor())
        with pytest.raises(StepError, match="first call fails"):
            runner.run("r")
        done = runner.run("r")
    assert done.state == {"x": ["same", "same", "flaky"]}
    assert COUNTS == {"same": 2, "flaky": 2}


def _one():
    from pausegraph import Effect

    return (yield Effect(counted, "same"))


def lock_result(name: str) -> object:
    import threading

    return threading.Lock()  # no store keeps it, and no process can send it


def _guarded(name: str):
    from pausegraph import Effect, EffectError

    try:
        return (yield Effect(lock_result, name))
    except EffectError as error:
        return f"{type(error).__name__}: {error}"


def test_an_unstorable_result_is_the_same_error_on_every_executor() -> None:
    # a Dask worker process that cannot pickle a result never answers: the run hung for
    # good (an attack); a process pool failed it with a pickling error instead of the
    # EffectResultError a run without an executor records. The worker now checks first
    from concurrent.futures import ProcessPoolExecutor

    from pausegraph import All, Graph, LastWriteWins

    def step(state):
        return {"x": list((yield All(_guarded("a"), _guarded("b"))))}

    def said(done: Any) -> list[str]:  # the lock's address differs from process to process
        return [re.sub(r"0x[0-9a-f]+", "0x", text) for text in done.state["x"]]

    graph = Graph("g", {"x": LastWriteWins()}).step("s", step)
    alone = said(Runner(graph, MemoryCheckpointer()).run("r"))
    assert alone[0].startswith("EffectResultError: effect ")
    assert "cannot be stored" in alone[0]
    with ProcessPoolExecutor(1) as processes:
        assert said(Runner(graph, MemoryCheckpointer(), executor=processes).run("r")) == alone
    with distributed.Client(
        processes=True, n_workers=1, threads_per_worker=2, dashboard_address=None
    ) as client:
        on_dask = Runner(graph, MemoryCheckpointer(), executor=client.get_executor()).run("r")
    assert said(on_dask) == alone
