"""A worker outlives a store that fails for a while (a dropped connection, a full disk)."""

from __future__ import annotations

import threading
import time
import types
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from pausegraph import (
    FileCheckpointer,
    Graph,
    Interrupt,
    InterruptTimeout,
    LastWriteWins,
    MemoryCheckpointer,
    Runner,
    Worker,
    _worker,
)
from pausegraph.errors import CheckpointError, CorruptCheckpointError


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


def test_a_poll_leaves_a_run_whose_store_failed_and_a_later_poll_drives_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_worker, "IDLE_WAIT_S", 0.01)
    store = Flaky(failures=0)
    Runner(GRAPH, store).start("r", {})
    store.failures = 1
    worker = Worker(store, [GRAPH])
    assert worker.poll() == 0  # logged, and the run left queued as it was
    assert Runner(GRAPH, store).state("r").status == "queued"
    time.sleep(0.02)  # once the wait after one failure is over
    assert worker.poll() == 1
    assert Runner(GRAPH, store).state("r").status == "paused"


def test_retries_wait_twice_as_long_each_time_up_to_the_cap_and_start_over(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_worker, "IDLE_WAIT_S", 0.5)
    monkeypatch.setattr(_worker, "MAX_RETRY_WAIT_S", 30.0)
    retries = _worker.Retries("worker")
    caplog.set_level("INFO", logger="pausegraph")
    failure = CheckpointError("the connection to the store dropped")
    assert [retries.failed(failure) for _ in range(9)] == [
        0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0
    ]  # fmt: skip
    assert "the store failed (9 times in a row), trying again in 30 s" in caplog.text
    assert "answers again" not in caplog.text
    retries.succeeded()
    assert "worker: the store answers again, after 9 failed tries" in caplog.text
    assert retries.failed(failure) == 0.5  # a new outage starts over
    caplog.clear()
    retries.succeeded()
    retries.succeeded()  # once only
    assert caplog.text.count("answers again, after 1 failed try") == 1
    for _ in range(10_000):  # a very long outage: the wait stays at the cap, no overflow
        wait = retries.failed(failure)
    assert wait == 30.0


class Unlisted(MemoryCheckpointer):
    """A store whose next ``failures`` listings fail, as a server restarting would."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 0

    def summaries(self, **filters: Any) -> Any:
        if self.failures:
            self.failures -= 1
            raise CheckpointError("the server is restarting")
        return super().summaries(**filters)


def test_serve_waits_longer_while_the_store_cannot_be_listed(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_worker, "IDLE_WAIT_S", 0.001)
    monkeypatch.setattr(_worker, "MAX_RETRY_WAIT_S", 0.004)
    caplog.set_level("INFO", logger="pausegraph")
    store = Unlisted()
    Runner(GRAPH, store).start("r", {})
    store.failures = 5
    waits: list[float] = []

    class Stop(threading.Event):
        def wait(self, timeout: float | None = None) -> bool:
            waits.append(timeout or 0.0)
            if Runner(GRAPH, store).state("r").status == "paused":
                self.set()
            return super().wait(timeout)

    Worker(store, [GRAPH]).serve(Stop())
    assert Runner(GRAPH, store).state("r").status == "paused"
    assert waits[:5] == [0.001, 0.002, 0.004, 0.004, 0.004]
    assert "worker: the store failed (5 times in a row), trying again in 0.004 s" in caplog.text
    assert "worker: the store answers again, after 5 failed tries" in caplog.text


def test_a_run_whose_store_fails_is_tried_again_later_and_later_and_others_go_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # a run whose save always fails (a huge effect result a proxy cuts short, say) must not
    # be tried at every poll, nor hold back the runs queued after it
    monkeypatch.setattr(_worker, "IDLE_WAIT_S", 0.5)
    monkeypatch.setattr(_worker, "MAX_RETRY_WAIT_S", 1.0)
    now = [1000.0]
    monkeypatch.setattr(_worker, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    store = Flaky(failures=0)
    Runner(GRAPH, store).start("r", {})
    store.failures = 3
    worker = Worker(store, [GRAPH])
    assert worker.poll() == 0
    assert worker.poll() == 0  # set aside: not tried again at once
    assert store.failures == 2
    Runner(GRAPH, store).start("setup", {})  # queued meanwhile: driven at once
    assert worker.poll() == 1
    assert Runner(GRAPH, store).state("setup").status == "paused"
    now[0] += 0.5
    assert worker.poll() == 0  # tried again (a second failure), then left for 1 s
    assert store.failures == 1
    now[0] += 0.9
    assert worker.poll() == 0
    assert store.failures == 1
    now[0] += 0.1
    assert worker.poll() == 0  # the third failure, at the cap
    assert store.failures == 0
    now[0] += 0.99
    assert worker.poll() == 0
    now[0] += 0.01
    assert worker.poll() == 1
    assert Runner(GRAPH, store).state("r").status == "paused"
    assert "the store failed (1 time in a row), trying it again in 0.5 s" in caplog.text
    assert "the store failed (2 times in a row), trying it again in 1 s" in caplog.text
    assert "the store failed (3 times in a row), trying it again in 1 s" in caplog.text
    assert worker._failing == {}  # forgotten once it moved


def test_a_failure_at_a_new_checkpoint_starts_the_wait_over(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = Flaky(failures=0)
    Runner(GRAPH, store).start("r", {})  # queued at checkpoint 1
    worker = Worker(store, [GRAPH])
    worker._failing[("flaky", "r")] = (5, 7, 0.0)  # a streak at checkpoint 7, waited out
    store.failures = 1
    worker.poll()
    assert "the store failed (1 time in a row), trying it again in 0.5 s" in caplog.text
    assert worker._failing[("flaky", "r")][:2] == (1, 1)


def test_the_runs_set_aside_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_worker, "MAX_SET_ASIDE", 3)
    store = Flaky(failures=0)
    for n in range(5):
        Runner(GRAPH, store).start(f"q{n}", {})
    store.failures = 5
    worker = Worker(store, [GRAPH])
    worker.poll()
    assert store.failures == 0
    assert list(worker._failing) == [("flaky", "q2"), ("flaky", "q3"), ("flaky", "q4")]


class FlakyTicks(MemoryCheckpointer):
    """A store whose locks fail (``CheckpointError``, or damage) once ``broken`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.broken: type[CheckpointError] | None = None
        self.tries = 0

    def lock(self, workflow_id: str, run_id: str) -> AbstractContextManager[None]:
        if self.broken is not None:
            self.tries += 1
            raise self.broken("the connection to the store dropped")
        return super().lock(workflow_id, run_id)


def timed(state: Any) -> Iterator[Any]:
    try:
        answer = yield Interrupt("ok?", timeout=1)
    except InterruptTimeout:
        answer = "timed out"
    return {"x": answer}


TIMED = Graph("timed", {"x": LastWriteWins()}).step("ask", timed)


@pytest.mark.parametrize("error", [CheckpointError, CorruptCheckpointError])
def test_a_due_run_whose_store_fails_is_set_aside_not_ticked_at_every_poll(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, error: Any
) -> None:
    now = [1000.0]
    monkeypatch.setattr(_worker, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    clock = [1_700_000_000_000]
    store = FlakyTicks()
    Runner(TIMED, store, clock=lambda: clock[0]).run("r")
    clock[0] += 2000  # its deadline passed
    store.broken = error
    worker = Worker(store, [TIMED], clock=lambda: clock[0])
    for _ in range(10):  # ten polls within the wait
        worker.poll()
        now[0] += 0.01
    assert store.tries == 1
    assert caplog.text.count("'r'") == 1
    if error is CheckpointError:
        assert "the store failed after its deadline (1 time in a row), trying it again" in (
            caplog.text
        )
        now[0] += 0.5
        worker.poll()
        assert store.tries == 2  # tried again once the wait is over
    else:
        assert (
            "run 'r' of workflow 'timed' is left as it was after its deadline: this worker "
            "cannot tick it: CorruptCheckpointError"
        ) in caplog.text
    store.broken = None
    now[0] += 60
    worker.poll()
    assert Runner(TIMED, store).state("r").status == "done"


class Damaged(MemoryCheckpointer):
    """A store whose run ``r`` reads as damaged when a driver takes it."""

    def __init__(self) -> None:
        super().__init__()
        self.tries = 0
        self.damaged = False

    def lock(self, workflow_id: str, run_id: str) -> AbstractContextManager[None]:
        if run_id == "r" and self.damaged:
            self.tries += 1
            raise CorruptCheckpointError("runs/r.log: record 2 fails its checksum")
        return super().lock(workflow_id, run_id)


def test_a_damaged_run_is_set_aside_and_logged_once_not_at_every_poll(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    store = Damaged()
    Runner(GRAPH, store).start("r", {})
    Runner(GRAPH, store).start("s", {})
    store.damaged = True
    monkeypatch.setattr(_worker, "STUCK_RETRY_S", 0.3)
    worker = Worker(store, [GRAPH])
    assert worker.poll() == 1  # s; r is damaged
    assert worker.poll() == 0
    assert store.tries == 1
    assert caplog.text.count("'r'") == 1
    assert "is left queued: this worker cannot drive it: CorruptCheckpointError" in caplog.text
    time.sleep(0.3)
    worker.poll()  # worth trying again after a while: someone may have mended it
    assert store.tries == 2


def test_the_web_driver_waits_longer_while_the_store_keeps_failing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("starlette")
    from pausegraph.web._app import _Driver

    monkeypatch.setattr(_worker, "MAX_RETRY_WAIT_S", 0.004)
    monkeypatch.setattr("pausegraph.web._app.IDLE_WAIT_S", 0.001)
    monkeypatch.setattr(_worker, "IDLE_WAIT_S", 0.001)
    store = Unlisted()
    Runner(GRAPH, store).start("r", {})
    store.failures = 5
    driver = _Driver(Worker(store, [GRAPH]))
    waits: list[float | None] = []

    class Wake(threading.Event):
        def wait(self, timeout: float | None = None) -> bool:
            waits.append(timeout)
            if len(waits) == 8:
                driver._stop.set()
            return super().wait(timeout)

    driver._wake = Wake()
    driver._loop()
    assert Runner(GRAPH, store).state("r").status == "paused"
    # the first wait is the idle one; then five failures, then the store answers again
    assert waits == [0.001, 0.001, 0.002, 0.004, 0.004, 0.004, 0.001, 0.001]


class FailsAfterClaims(MemoryCheckpointer):
    """A store that takes a worker's claim, then fails to save the layer that follows."""

    def __init__(self) -> None:
        super().__init__()
        self.broken = False

    def save(self, checkpoint: Any) -> None:
        if self.broken and checkpoint.label.startswith("layer:"):
            raise CheckpointError("the disk is full")
        super().save(checkpoint)


def test_a_run_whose_save_fails_after_the_workers_own_claim_still_waits_longer_each_time(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    now = [1000.0]
    monkeypatch.setattr(_worker, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    calls: list[int] = []

    def step(state: Any) -> dict[str, Any]:
        calls.append(1)
        return {"x": 1}

    graph = Graph("claims", {"x": LastWriteWins()}).step("s", step)
    store = FailsAfterClaims()
    Runner(graph, store).start("r", {})
    store.broken = True
    worker = Worker(store, [graph])
    for _ in range(5):
        worker.poll()
    assert len(calls) == 1  # the claim moved the run on, and it still waits
    now[0] += 0.5
    for _ in range(5):
        worker.poll()
    assert len(calls) == 2
    assert "the store failed (2 times in a row), trying it again in 1 s" in caplog.text
    now[0] += 1.0
    worker.poll()
    assert len(calls) == 3
    assert "the store failed (3 times in a row), trying it again in 2 s" in caplog.text


class DeafListener(MemoryCheckpointer):
    """A store whose polls go through but whose listening for work always fails."""

    def __init__(self) -> None:
        super().__init__()
        self.listens = 0

    def wait_for_work(self, timeout_s: float) -> bool:
        self.listens += 1
        raise CheckpointError("too many connections for role")


def test_a_listener_that_keeps_failing_is_tried_later_and_later_while_polls_go_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_worker, "IDLE_WAIT_S", 0.01)
    monkeypatch.setattr(_worker, "MAX_RETRY_WAIT_S", 0.08)
    caplog.set_level("INFO", logger="pausegraph")
    store = DeafListener()
    worker = Worker(store, [GRAPH])
    polls = [0]
    poll = worker.poll

    def counted(*, stop: threading.Event | None = None) -> int:
        polls[0] += 1
        return poll(stop=stop)

    monkeypatch.setattr(worker, "poll", counted)
    stop = threading.Event()
    thread = threading.Thread(target=worker.serve, args=(stop,))
    thread.start()
    time.sleep(0.6)
    stop.set()
    thread.join(5)
    assert polls[0] >= 20  # polls every IDLE_WAIT_S all the same
    assert store.listens <= 12  # listened at 0.01, 0.02, 0.04, 0.08, 0.08, ... s
    assert "worker (listening for work): the store failed (3 times in a row)" in caplog.text
    assert "answers again" not in caplog.text


def test_a_damaged_log_the_file_store_cannot_list_is_said_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = FileCheckpointer(tmp_path / "store")
    Runner(TIMED, store).run("r")  # paused, its deadline a second away
    [log] = (tmp_path / "store" / "runs").glob("*.log")
    good = log.read_bytes()
    damaged = bytearray(good)
    damaged[len(good) // 2] ^= 0xFF
    log.write_bytes(bytes(damaged))
    worker = Worker(FileCheckpointer(tmp_path / "store"), [TIMED])
    worker.poll()
    worker.poll()
    assert caplog.text.count(f"the log {log.name} cannot be read") == 1
    assert "neither driven nor ticked until it is restored from a backup" in caplog.text
    log.write_bytes(good)  # restored
    worker.poll()
    assert worker._damaged_said == set()
