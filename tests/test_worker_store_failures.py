"""A worker outlives a store that fails for a while (a dropped connection, a full disk)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest

from pausegraph import (
    Graph,
    Interrupt,
    LastWriteWins,
    MemoryCheckpointer,
    Runner,
    Worker,
    _worker,
)
from pausegraph.errors import CheckpointError


def ask(state: Any) -> Iterator[Any]:
    answer = yield Interrupt("ok?")
    return {"x": answer}


GRAPH = Graph("flaky", {"x": LastWriteWins()}).step("ask", ask)


class Flaky(MemoryCheckpointer):
    """A store whose first ``failures`` lock calls fail as a dropped connection would."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def lock(self, workflow_id: str, run_id: str) -> AbstractContextManager[None]:
        if self.failures and run_id != "setup":
            self.failures -= 1
            raise CheckpointError("the connection to the store dropped")
        return super().lock(workflow_id, run_id)


def test_serve_logs_a_store_failure_and_goes_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_worker, "IDLE_WAIT_S", 0.01)
    store = Flaky(failures=0)
    Runner(GRAPH, store).start("r", {})
    store.failures = 2  # the worker's first two tries fail
    worker = Worker(store, [GRAPH])
    stop = threading.Event()
    thread = threading.Thread(target=worker.serve, args=(stop,))
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while Runner(GRAPH, store).state("r").status != "paused":
            assert thread.is_alive(), "the worker died on a failing store"
            assert time.monotonic() < deadline, "the run was never driven"
            time.sleep(0.01)
    finally:
        stop.set()
        thread.join(10)
    assert store.failures == 0
    assert "the store failed" in caplog.text


def test_a_poll_leaves_a_run_whose_store_failed_and_the_next_poll_drives_it() -> None:
    store = Flaky(failures=0)
    Runner(GRAPH, store).start("r", {})
    store.failures = 1
    worker = Worker(store, [GRAPH])
    assert worker.poll() == 0  # logged, and the run left queued as it was
    assert Runner(GRAPH, store).state("r").status == "queued"
    assert worker.poll() == 1
    assert Runner(GRAPH, store).state("r").status == "paused"
