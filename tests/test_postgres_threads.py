"""Threads sharing one PostgreSQL handle: no false "lost its live lock", every run once.

The docs recommend one ``Runner`` (so one ``PostgresCheckpointer``) for all
the threads of a web server. The handle keeps the live locks of every thread
on one lock session, and ``sync()`` (before each effect and at the end of a
hold) checks all of them: a lock another thread let go while that check ran
is no loss. Each test gets a fresh schema from the ``postgres`` fixture
(``tests/conftest.py``).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Generator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import pytest
from conftest import PostgresSchema
from starlette.testclient import TestClient

from pausegraph import (
    CheckpointError,
    Done,
    Effect,
    Graph,
    Interrupt,
    LastWriteWins,
    Paused,
    Resume,
    Runner,
    Status,
)
from pausegraph.checkpointers import FrameInfo, RunSummary
from pausegraph.web import app

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _web_flows import approval

THREADS = 16
_T = TypeVar("_T")
LOCAL = "http://127.0.0.1"


def _note(amount: int) -> dict[str, int]:
    return {"noted": amount}


def _ask(state: Mapping[str, Any]) -> Generator[Any, Any, dict[str, Any]]:
    answer = yield Interrupt({"amount": state["amount"]})
    receipt = yield Effect(_note, state["amount"])  # sync() before it: the locks are checked
    return {"answer": answer, "receipt": receipt}


def _graph() -> Graph:
    channels = {"amount": LastWriteWins(), "answer": LastWriteWins(), "receipt": LastWriteWins()}
    return Graph("pay", channels).step("ask", _ask)


def _together(count: int, work: Callable[[int], None]) -> list[BaseException]:
    """Run ``work(0..count-1)`` in threads released at once; the errors they raised."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def one(n: int) -> None:
        barrier.wait()
        try:
            work(n)
        except BaseException as exc:  # every error is the test's finding
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(thread.is_alive() for thread in threads)
    return errors


def _recorded_once(store: Any, workflow: str, run_ids: list[str]) -> None:
    listed = [summary.run_id for summary in store.store.runs(workflow_id=workflow)]
    assert sorted(listed) == sorted(run_ids)  # each run once, and no other
    for run_id in run_ids:
        history = store.list(workflow, run_id)
        assert [m.seq for m in history] == list(range(1, len(history) + 1))


def test_16_threads_start_submit_and_resume_on_one_handle_without_a_false_lock_loss(
    postgres: PostgresSchema,
) -> None:
    store = postgres.checkpointer()
    runner = Runner(_graph(), store)
    rounds = 3  # a false loss showed in most rounds of 16 starts
    phase = threading.Barrier(THREADS, timeout=60)  # an error breaks it

    def drive(n: int) -> None:  # the same 16 threads throughout: one data connection each
        for round_ in range(rounds):
            run_id = f"t{n}-{round_}"
            runner.start(run_id, {"amount": n})
            phase.wait()
            assert isinstance(runner.run(run_id), Paused)
            phase.wait()
            if n % 2:  # half go on in the call...
                assert isinstance(runner.resume(run_id, Resume(n)), Done)
            else:  # ...half queue the answer, then drive it
                assert runner.submit(run_id, Resume(n)).status == Status.QUEUED
                assert isinstance(runner.run(run_id), Done)
            phase.wait()

    assert _together(THREADS, drive) == []
    run_ids = [f"t{n}-{r}" for n in range(THREADS) for r in range(rounds)]
    for run_id in run_ids:
        info = runner.state(run_id)
        n = int(run_id[1:].split("-")[0])
        assert info.status == Status.DONE
        assert info.values["answer"] == n
        assert info.values["receipt"] == {"noted": n}
    _recorded_once(store, "pay", run_ids)


def test_24_parallel_posts_to_the_web_app_on_postgres_all_succeed(
    postgres: PostgresSchema,
) -> None:
    store = postgres.checkpointer()
    run_ids = [f"w{n}" for n in range(24)]
    with TestClient(app([approval()], store, wait_s=30), base_url=LOCAL) as client:
        replies: dict[str, Any] = {}

        def post(n: int) -> None:
            body = {"input": {"question": "ok?", "amount": n}}
            replies[run_ids[n]] = client.post(f"/api/runs/approval/{run_ids[n]}", json=body)

        assert _together(len(run_ids), post) == []
        assert {run_id: r.status_code for run_id, r in replies.items()} == dict.fromkeys(
            run_ids, 201
        )
        asked = {run_id: r.json()["interrupts"][0]["id"] for run_id, r in replies.items()}

        def answer(n: int) -> None:
            run_id = run_ids[n]
            body = {"answers": {asked[run_id]: "fine"}}
            replies[run_id] = client.post(f"/api/runs/approval/{run_id}/resume", json=body)

        assert _together(len(run_ids), answer) == []
        assert {run_id: r.status_code for run_id, r in replies.items()} == dict.fromkeys(
            run_ids, 200
        )
        assert {r.json()["status"] for r in replies.values()} == {"done"}
    _recorded_once(store, "approval", run_ids)


def test_a_lock_session_ended_under_threads_is_still_a_lock_loss(
    postgres: PostgresSchema,
) -> None:
    """Threads each holding a run; the lock session is terminated: each one's sync() says so."""
    store = postgres.checkpointer()
    held = threading.Barrier(THREADS + 1)
    ended = threading.Event()

    def hold(n: int) -> None:
        with store.store.lock("pay", f"h{n}"):
            held.wait()
            ended.wait(30)
            store.sync()

    results: list[list[BaseException]] = []
    holding = threading.Thread(target=lambda: results.append(_together(THREADS, hold)))
    holding.start()
    held.wait(30)
    session = store.store._session
    assert session is not None
    postgres.terminate(session.backend_pid)  # and wait until it is gone, its locks with it
    ended.set()
    holding.join(60)
    assert len(results) == 1
    errors = results[0]
    assert len(errors) == THREADS
    assert all(isinstance(e, CheckpointError) for e in errors)
    assert all("lost its live lock" in str(e) for e in errors), errors


def test_sync_ignores_a_lock_let_go_while_it_checked_but_not_one_still_held(
    postgres: PostgresSchema,
) -> None:
    """The race itself, made certain: another hold ends between sync()'s listing and statement."""
    store = postgres.checkpointer()
    inner = store.store
    with inner.lock("pay", "mine"):
        theirs = inner.lock("pay", "theirs")
        theirs.__enter__()
        guarded = inner._guarded

        def released_meanwhile(work: Callable[[Any], _T]) -> _T:
            theirs.__exit__(None, None, None)  # as another thread's `with` ends
            return guarded(work)

        inner._guarded = released_meanwhile  # type: ignore[method-assign]
        try:
            store.sync()  # "theirs" was let go during the check: no loss
        finally:
            inner._guarded = guarded  # type: ignore[method-assign]
        # a lock gone while its hold goes on is a loss
        hold = inner._holding[("pay", "mine")]
        key, session = hold.key, hold.session
        session.connection.execute("SELECT pg_advisory_unlock(%s)", (key,))
        with pytest.raises(CheckpointError, match="'mine' of workflow 'pay': this process lost"):
            store.sync()


def test_a_sync_flushes_its_thread_s_append_while_another_thread_s_flush_is_under_way(
    postgres: PostgresSchema,
) -> None:
    """A sync() may not lean on a flush another thread sent but that has not finished.

    Thread B's sync() has taken up the handle's appends and is held before its
    flush reaches the server; this thread's sync() must flush its own append
    itself (before, it found nothing left to flush and returned at once, so an
    effect could run before the checkpoint claiming it was on disk).
    """
    inner = postgres.checkpointer().store
    inner.append(
        FrameInfo(1, 0, "l", 1, True, 1), b"x", RunSummary("wf", "r", 1, "queued", 1, None, b"")
    )
    guarded = inner._guarded
    entered, release = threading.Event(), threading.Event()
    calls: list[str] = []

    def watched(work: Callable[[Any], _T]) -> _T:
        if threading.current_thread() is other:
            calls.append("other")
            entered.set()
            release.wait(30)  # its flush is sent only after this thread's sync()
        else:
            calls.append("this")
        return guarded(work)

    other = threading.Thread(target=inner.sync)
    inner._guarded = watched  # type: ignore[method-assign]
    try:
        other.start()
        assert entered.wait(30)
        inner.sync()
        assert calls == ["other", "this"]  # this thread flushed, not waiting for the other
        release.set()
        other.join(30)
        inner.sync()  # everything is flushed now: no round trip
        assert calls == ["other", "this"]
    finally:
        release.set()
        inner._guarded = guarded  # type: ignore[method-assign]
