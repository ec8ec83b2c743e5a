"""PostgreSQL: appends sent without waiting for answers; the holder's note sent with a lock.

A handle that holds one run's lock sends that run's appends, all but the
one that ends a call, on its lock connection and returns before the server
answers (``postgres._send``). These tests pin down what that may and may
not change: a kill -9 after ``append`` returned loses nothing, a refused
append is raised at the hold's next append, ``sync()`` or the end of its
``with`` and nothing after it is saved, readers in the process see every
append sent, and another handle finds the holder named at once.

Every test gets a fresh schema from the ``postgres`` fixture
(``tests/conftest.py``), which skips without ``PAUSEGRAPH_TEST_POSTGRES``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import psycopg
import pytest
from conftest import PostgresSchema

from pausegraph import CheckpointError, ConflictError, Resume, Runner
from pausegraph.checkpointers import FrameInfo, RunSummary
from pausegraph.checkpointers import postgres as postgres_module

pytestmark = pytest.mark.skipif(
    not postgres_module._PIPELINES, reason="appends are sent without waiting in pipeline mode only"
)


def _info(seq: int) -> FrameInfo:
    return FrameInfo(seq, seq - 1, "l", seq, True, 1)


def _summary(seq: int, status: str = "queued") -> RunSummary:
    return RunSummary("wf", "r", seq, status, seq, None, b"")


def _until_let_go(store: Any, within_s: float = 30.0) -> None:
    """Wait until nobody holds run ``r`` of ``wf`` (a killed holder's session has ended)."""
    end = time.monotonic() + within_s
    while store.holder("wf", "r") is not None:
        assert time.monotonic() < end, "the killed process's session still holds the run"
        time.sleep(0.02)


def _seqs(schema: PostgresSchema) -> list[int]:
    with psycopg.connect(schema.url, autocommit=True) as connection:
        rows = connection.execute("SELECT seq FROM pausegraph_frames ORDER BY seq").fetchall()
    return [seq for (seq,) in rows]


def test_an_append_under_a_lock_returns_before_its_answer_and_sync_reads_it(
    postgres: PostgresSchema,
) -> None:
    store = postgres.checkpointer().store
    with store.lock("wf", "r"):
        store.append(_info(1), b"1", _summary(1))
        assert len(store._session.wire.unread) >= 1  # the note and the append, maybe
        store.sync()
        assert store._session.wire.unread == []
        assert _seqs(postgres) == [1]


def test_a_refused_append_is_raised_by_the_next_append_and_nothing_after_it_is_saved(
    postgres: PostgresSchema,
) -> None:
    store, other = postgres.checkpointer().store, postgres.checkpointer().store
    other.append(_info(1), b"theirs", _summary(1))  # a writer without the lock got there first
    with store.lock("wf", "r"):
        store.append(_info(1), b"mine", _summary(1))  # sent; refused by the server meanwhile
        store._settle_session(store._session)  # as a later read would
        with pytest.raises(ConflictError, match="already has checkpoint 1"):
            store.append(_info(2), b"2", _summary(2))
    assert _seqs(postgres) == [1]
    assert other.read("wf", "r", 1, 1) == [b"theirs"]


@pytest.mark.parametrize("where", ["sync", "ending append", "end of the hold"])
def test_a_refused_append_is_raised_once_wherever_its_answer_is_read(
    postgres: PostgresSchema, where: str
) -> None:
    store, other = postgres.checkpointer().store, postgres.checkpointer().store
    other.append(_info(1), b"theirs", _summary(1))
    lock = store.lock("wf", "r")
    lock.__enter__()
    store.append(_info(1), b"mine", _summary(1))
    if where == "sync":
        with pytest.raises(ConflictError, match="already has checkpoint 1"):
            store.sync()
        store.sync()  # said once
        lock.__exit__(None, None, None)
    elif where == "ending append":  # theirs is seq 1: the append after mine must not follow it
        with pytest.raises(ConflictError, match="already has checkpoint 1"):
            store.append(_info(2), b"2", _summary(2, status="paused"))
        lock.__exit__(None, None, None)
    else:
        with pytest.raises(ConflictError, match="already has checkpoint 1"):
            lock.__exit__(None, None, None)
    assert _seqs(postgres) == [1]
    assert store.holder("wf", "r") is None  # let go in every case
    with other.lock("wf", "r"):
        pass


def test_appends_sent_after_a_refused_one_never_follow_another_writers_checkpoint(
    postgres: PostgresSchema,
) -> None:
    """No fork: a writer that took seq 1 under us is not followed by our seq 2, 3, ..."""
    store, other = postgres.checkpointer().store, postgres.checkpointer().store
    other.append(_info(1), b"theirs", _summary(1))
    with store.lock("wf", "r"):
        store.append(_info(1), b"mine", _summary(1))  # refused, unanswered yet
        with pytest.raises(ConflictError, match="already has checkpoint 1"):
            store.append(_info(2), b"mine", _summary(2))  # reads the refusal first
        with pytest.raises(ConflictError, match="not the one this writer saved"):
            store.append(_info(2), b"mine", _summary(2, status="paused"))  # said once: then
    assert _seqs(postgres) == [1]  # the server's own check refuses it
    assert other.runs()[0].seq == 1


def test_an_append_the_server_refuses_is_raised_by_sync_and_the_run_is_let_go(
    postgres: PostgresSchema,
) -> None:
    store = postgres.checkpointer().store
    with psycopg.connect(postgres.url, autocommit=True) as admin:
        store.append(_info(1), b"1", _summary(1))  # the tables exist
        admin.execute("ALTER TABLE pausegraph_frames ADD CONSTRAINT one_only CHECK (seq < 2)")
    with store.lock("wf", "r"):
        store.append(_info(2), b"2", _summary(2))
        with pytest.raises(CheckpointError, match="one_only"):
            store.sync()
    assert _seqs(postgres) == [1]
    assert store.runs()[0].seq == 1
    with postgres.checkpointer().store.lock("wf", "r"):
        pass


def test_a_read_in_the_process_sees_every_append_sent(postgres: PostgresSchema) -> None:
    store = postgres.checkpointer().store
    seen: list[list[int]] = []
    with store.lock("wf", "r"):
        for seq in (1, 2, 3):
            store.append(_info(seq), str(seq).encode(), _summary(seq))
        reader = threading.Thread(
            target=lambda: seen.append([f.seq for f in store.frames("wf", "r")])
        )
        reader.start()
        reader.join()
        assert seen == [[1, 2, 3]]
        assert store.read("wf", "r", 1, 3) == [b"1", b"2", b"3"]
        assert store.runs()[0].seq == 3


def test_a_lost_lock_session_after_an_append_sent_stops_the_next_sync(
    postgres: PostgresSchema,
) -> None:
    store = postgres.checkpointer().store
    with store.lock("wf", "r"):
        store.append(_info(1), b"1", _summary(1))
        backend = store._session.backend_pid
        with psycopg.connect(postgres.url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (backend,))
        with pytest.raises(CheckpointError):
            store.sync()
    with store.lock("wf", "r"):  # a new lock session; the append was saved or not, never half
        assert _seqs(postgres) in ([], [1])


_KILLED_AFTER_APPEND = """
import sys
from pausegraph import PostgresCheckpointer
from pausegraph.checkpointers import FrameInfo, RunSummary

store = PostgresCheckpointer(sys.argv[1]).store
with store.lock("wf", "r"):
    for seq in (1, 2, 3):
        store.append(FrameInfo(seq, seq - 1, "l", seq, True, 1), b"x",
                      RunSummary("wf", "r", seq, "queued", seq, None, b""))
    print("appended", flush=True)
    sys.stdin.readline()  # killed here
"""


def test_a_process_killed_after_append_returned_loses_none_of_it(
    postgres: PostgresSchema,
) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED_AFTER_APPEND, postgres.url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "appended\n"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(60)
        for stream in (child.stdin, child.stdout):
            if stream is not None:
                stream.close()
    assert child.returncode == -signal.SIGKILL
    store = postgres.checkpointer().store
    _until_let_go(store)  # the server ends the killed session
    with store.lock("wf", "r"):
        assert [f.seq for f in store.frames("wf", "r")] == [1, 2, 3]
    assert store.runs()[0].seq == 3


_KILLED_WITH_AN_ANSWER_DUE = """
import os, signal, sys
from pausegraph import PostgresCheckpointer
from pausegraph.checkpointers import FrameInfo, RunSummary

store = PostgresCheckpointer(sys.argv[1]).store
with store.lock("wf", "r"):
    for seq in (1, 2):  # 3 MB each, back to back: the first one's answer comes meanwhile
        store.append(FrameInfo(seq, seq - 1, "l", seq, True, 1), bytes([seq]) * 3_000_000,
                     RunSummary("wf", "r", seq, "queued", seq, None, b""))
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_process_killed_with_an_answer_unread_loses_no_append_it_returned_from(
    postgres: PostgresSchema,
) -> None:
    """A socket closed with an answer unread is reset: the server drops what it had not read.

    Before one exchange at most was in flight on the lock connection, the
    second append was lost in every try of this test.
    """
    for attempt in range(3):
        child = subprocess.run(
            [sys.executable, "-c", _KILLED_WITH_AN_ANSWER_DUE, postgres.url], check=False
        )
        assert child.returncode == -signal.SIGKILL
        store = postgres.checkpointer().store
        _until_let_go(store)  # the server reads what was sent, then ends the session
        with store.lock("wf", "r"):
            assert [f.seq for f in store.frames("wf", "r")] == [1, 2], attempt
        store.delete("wf", "r")


def test_another_handle_finds_the_holder_named_as_soon_as_the_lock_is_taken(
    postgres: PostgresSchema,
) -> None:
    store, other = postgres.checkpointer().store, postgres.checkpointer().store
    for _ in range(20):
        with store.lock("wf", "r"):
            who = other.holder("wf", "r")
            assert who is not None
            assert who.pid == os.getpid()
            with pytest.raises(ConflictError, match=rf"process {os.getpid()} on host"):
                other.lock("wf", "r").__enter__()


def test_a_refused_take_writes_no_note_over_the_holders(postgres: PostgresSchema) -> None:
    store, other = postgres.checkpointer().store, postgres.checkpointer().store
    with store.lock("wf", "r"):
        before = other.holder("wf", "r")
        for _ in range(3):
            with pytest.raises(ConflictError):
                other.lock("wf", "r").__enter__()
        other.sync()  # the notes sent with the refused takes: answered
        assert other.holder("wf", "r") == before
        with psycopg.connect(postgres.url, autocommit=True) as admin:
            rows = admin.execute("SELECT backend_pid FROM pausegraph_holders").fetchall()
        assert rows == [(store._session.backend_pid,)]


def test_a_runner_on_postgres_runs_chains_and_cycles_with_appends_sent_ahead(
    postgres: PostgresSchema,
) -> None:
    from pausegraph import Graph, Interrupt, LastWriteWins

    def ask(state: dict[str, int]) -> object:
        answer = yield Interrupt(state["n"])
        return {"n": state["n"] + answer}

    def add(state: dict[str, int]) -> dict[str, int]:
        return {"n": state["n"] + 1}

    graph = Graph("chain", {"n": LastWriteWins()})
    names = [f"s{i}" for i in range(6)]
    for name in names:
        graph.step(name, add)
    graph.step("ask", ask)
    for a, b in zip([*names, "ask"], [*names[1:], "ask"], strict=False):
        graph.edge(a, b)
    runner, memory = Runner(graph, postgres.checkpointer()), Runner(graph)
    for each in (runner, memory):
        paused = each.run("r", {"n": 0})
        assert paused.interrupts[0].payload == 6
        done = each.resume("r", Resume(10))
        assert done.state == {"n": 16}
    history = [(m.seq, m.label, m.super_step) for m in runner.history("r")]
    assert history == [(m.seq, m.label, m.super_step) for m in memory.history("r")]
    cold = Runner(graph, postgres.checkpointer())
    assert cold.state("r").values == {"n": 16}
