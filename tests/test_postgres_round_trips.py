"""The PostgreSQL store's round trips, its exact claim under them, and workers woken by NOTIFY.

Every test gets a fresh schema from the ``postgres`` fixture
(``tests/conftest.py``), which skips without ``PAUSEGRAPH_TEST_POSTGRES``.
"""

from __future__ import annotations

import select
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from conftest import PostgresSchema

from pausegraph import (
    CheckpointError,
    ConflictError,
    Graph,
    Interrupt,
    LastWriteWins,
    Resume,
    Runner,
    Worker,
    _worker,
)
from pausegraph.checkpointers import FrameInfo, RunSummary
from pausegraph.checkpointers import postgres as postgres_module


def _info(seq: int) -> FrameInfo:
    return FrameInfo(seq, seq - 1, "l", seq, True, 1)


def _summary(seq: int, run: str = "r", status: str = "queued") -> RunSummary:
    return RunSummary("wf", run, seq, status, seq, None, b"")


class Statements:
    """Counts the round trips of every psycopg connection: a statement, or a pipeline of them."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sent: list[str] = []
        self.piped = False
        execute = psycopg.Connection.execute
        pipeline = psycopg.Connection.pipeline

        def counted(connection: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
            if self.piped:
                self.sent[-1] += f"; {query}"
            else:
                self.sent.append(str(query))
            return execute(connection, query, *args, **kwargs)

        @contextmanager
        def piped(connection: Any) -> Iterator[Any]:
            self.sent.append("pipeline:")
            self.piped = True
            try:
                with pipeline(connection) as pipe:
                    yield pipe
            finally:
                self.piped = False

        exchange = postgres_module._exchange

        def exchanged(wire: Any, calls: list[tuple[Any, Any]], **how: Any) -> Any:
            # the hot statements, sent through libpq: one round trip in pipeline mode
            sql = [statement.sql.decode() for statement, _ in calls]
            piped = postgres_module._PIPELINES and len(sql) > 1
            self.sent += ["pipeline: " + "; ".join(sql)] if piped else sql
            return exchange(wire, calls, **how)

        monkeypatch.setattr(psycopg.Connection, "execute", counted)
        monkeypatch.setattr(psycopg.Connection, "pipeline", piped)
        monkeypatch.setattr(postgres_module, "_exchange", exchanged)

    def take(self) -> list[str]:
        sent, self.sent = self.sent, []
        return sent


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> Statements:
    return Statements(monkeypatch)


def test_a_held_save_is_one_statement_and_sync_lock_and_release_one_each(
    postgres: PostgresSchema, statements: Statements
) -> None:
    store = postgres.checkpointer().store
    with store.lock("wf", "warm"):  # the lock connection is opened once, then kept
        pass
    statements.take()
    with store.lock("wf", "r"):
        assert len(statements.take()) == 1  # take the lock, note the holder, list the frames
        assert store.frames("wf", "r") == []  # as listed with the lock
        assert statements.take() == []
        for seq in (1, 2, 3):
            store.append(_info(seq), b"x", _summary(seq))
            assert len(statements.take()) == 1
        store.sync()  # flush and check the lock
        assert len(statements.take()) == 1
        store.sync()  # nothing to flush: the lock check alone
        assert len(statements.take()) == 1
    assert len(statements.take()) == 1  # release
    store.sync()  # nothing appended, no lock held: nothing to ask
    assert statements.take() == []
    assert [f.seq for f in store.frames("wf", "r")] == [1, 2, 3]
    assert store.runs()[0].seq == 3


def test_the_frames_listed_with_the_lock_are_the_runs_then_and_serve_one_call(
    postgres: PostgresSchema, statements: Statements
) -> None:
    store, other = postgres.checkpointer().store, postgres.checkpointer().store
    other.append(_info(1), b"1", _summary(1))
    with store.lock("wf", "r"):
        statements.take()
        assert [f.seq for f in store.frames("wf", "r")] == [1]  # what the other handle saved
        assert statements.take() == []
        assert [f.seq for f in store.frames("wf", "r")] == [1]  # once: then from the server
        assert len(statements.take()) == 1
    with store.lock("wf", "r"):
        store.append(_info(2), b"2", _summary(2))  # a save forgets the listing
        assert [f.seq for f in store.frames("wf", "r")] == [1, 2]
    with store.lock("wf", "r"):
        seen: list[list[FrameInfo]] = []
        elsewhere = threading.Thread(target=lambda: seen.append(store.frames("wf", "r")))
        statements.take()
        elsewhere.start()
        elsewhere.join()
        assert statements.take()[-1].startswith("SELECT seq")  # another thread asks the server
        assert [f.seq for f in seen[0]] == [1, 2]
        assert [f.seq for f in store.frames("wf", "r")] == [1, 2]


def test_two_handles_appending_the_same_seq_at_once_exactly_one_wins(
    postgres: PostgresSchema,
) -> None:
    stores = [postgres.checkpointer().store for _ in range(2)]
    for n in range(25):
        run = f"r{n}"
        stores[0].append(_info(1), b"1", _summary(1, run))
        barrier = threading.Barrier(2)
        outcomes: list[object] = [None, None]

        def write(
            k: int,
            run: str = run,
            barrier: threading.Barrier = barrier,
            outcomes: list[object] = outcomes,
        ) -> None:
            barrier.wait()
            try:
                stores[k].append(_info(2), bytes([k]), _summary(2, run, f"s{k}"))
                outcomes[k] = "won"
            except ConflictError as exc:
                outcomes[k] = exc

        threads = [threading.Thread(target=write, args=(k,)) for k in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(map(str, outcomes)).count("won") == 1, outcomes
        winner = outcomes.index("won")
        assert stores[1].read("wf", run, 1, 2) == [b"1", bytes([winner])]
        statuses = {s.run_id: s.status for s in stores[1].runs(workflow_id="wf")}
        assert statuses[run] == f"s{winner}"  # the loser wrote no summary either


def test_an_append_refuses_a_gap_and_a_taken_seq_and_leaves_nothing(
    postgres: PostgresSchema,
) -> None:
    store = postgres.checkpointer().store
    store.append(_info(1), b"1", _summary(1, status="paused"))
    with pytest.raises(CheckpointError, match="has 1 checkpoints; the next must be seq 2, not 3"):
        store.append(_info(3), b"3", _summary(3, status="done"))
    with pytest.raises(ConflictError, match="already has checkpoint 1"):
        store.append(_info(1), b"x", _summary(1, status="done"))
    assert store.read("wf", "r", 1, 1) == [b"1"]
    assert [s.status for s in store.runs()] == ["paused"]


def test_appends_commit_without_waiting_and_sync_flushes_the_wal_past_them(
    postgres: PostgresSchema,
) -> None:
    store = postgres.checkpointer().store
    connection = store._connection()
    store.append(_info(1), b"1", _summary(1))
    (mode,) = connection.execute("SHOW synchronous_commit").fetchone()
    assert mode == "on"  # the session stays synchronous: only the append's commit is not
    (written,) = connection.execute("SELECT pg_current_wal_insert_lsn()").fetchone()
    store.sync()
    (flushed,) = connection.execute(
        "SELECT pg_current_wal_flush_lsn() >= %s::pg_lsn", (written,)
    ).fetchone()
    assert flushed


# --- workers woken by NOTIFY ------------------------------------------------------


def _ask(state: Any) -> Any:
    ok = yield Interrupt("ship?")
    return {"shipped": ok}


def _graph() -> Graph:
    return Graph("orders", {"shipped": LastWriteWins()}).step("ask", _ask)


def _until(check: Any, within_s: float) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > within_s:
            raise AssertionError(f"not within {within_s} s")
        time.sleep(0.01)
    return time.monotonic() - started


def _submitted(runner: Runner, run_id: str) -> bool:
    try:
        runner.submit(run_id, Resume(True))
    except ConflictError:
        return False
    return True


def test_a_worker_polling_every_30_s_wakes_on_a_start_and_an_answer_at_once(
    postgres: PostgresSchema, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_worker, "IDLE_WAIT_S", 30.0)
    worker = Worker(postgres.checkpointer(), [_graph()])
    web = Runner(_graph(), postgres.checkpointer())
    stop = threading.Event()
    serving = threading.Thread(target=worker.serve, args=(stop,))
    serving.start()
    try:
        time.sleep(0.5)  # the worker polled, found nothing, and waits its 30 s
        web.start("r1")
        assert _until(lambda: web.state("r1").status == "paused", 2.0) < 2.0
        _until(lambda: _submitted(web, "r1"), 2.0)  # once the worker let go of it
        assert _until(lambda: web.state("r1").status == "done", 2.0) < 2.0
        assert web.state("r1").values["shipped"] is True
    finally:
        stop.set()
        serving.join(5)
    assert not serving.is_alive()  # stop is seen within a slice, not after 30 s


def test_wait_for_work_hears_a_start_elsewhere_and_times_out_otherwise(
    postgres: PostgresSchema,
) -> None:
    mine = postgres.checkpointer()
    assert mine.wait_for_work(0) is False  # listening from here on
    started = time.monotonic()
    assert mine.wait_for_work(0.2) is False
    assert time.monotonic() - started >= 0.2
    web = Runner(_graph(), postgres.checkpointer())
    web.start("r1")  # a hold that leaves the run queued: notified at its release
    assert mine.wait_for_work(5) is True
    assert mine.wait_for_work(0) is False  # heard once, not again
    web.run("r1")  # a hold that leaves it paused: nobody is woken
    assert mine.wait_for_work(0.2) is False
    web.submit("r1", Resume(True))
    assert mine.wait_for_work(5) is True


def test_work_queued_in_another_schema_wakes_nobody_here(postgres: PostgresSchema) -> None:
    mine = postgres.checkpointer()
    assert mine.wait_for_work(0) is False
    elsewhere = PostgresSchema(postgres.server, postgres.schema + "_other")
    with psycopg.connect(postgres.server, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {elsewhere.schema}")
        try:
            Runner(_graph(), elsewhere.checkpointer()).start("r1")
            assert mine.wait_for_work(0.3) is False
        finally:
            for opened in elsewhere.opened:
                opened.close()
            admin.execute(f"DROP SCHEMA {elsewhere.schema} CASCADE")


def test_a_save_after_the_lock_session_ended_fails_without_asking_pg_locks(
    postgres: PostgresSchema, statements: Statements
) -> None:
    store = postgres.checkpointer().store
    with store.lock("wf", "r"):
        store.append(_info(1), b"1", _summary(1))
        session = store._session
        assert session is not None
        postgres.terminate(session.backend_pid)
        statements.take()
        # the ended session's goodbye waits on its socket: the save asks that session
        with pytest.raises(CheckpointError, match=r"^run 'r' of workflow 'wf': this process lost"):
            store.append(_info(2), b"2", _summary(2))
        assert statements.take() == ["SELECT pg_backend_pid()"]
        with pytest.raises(CheckpointError, match=r"lost its live lock"):  # known now: no asking
            store.append(_info(2), b"2", _summary(2))
        assert statements.take() == []
    assert [f.seq for f in store.frames("wf", "r")] == [1]


def test_without_pipeline_mode_the_lock_and_the_listing_take_two_round_trips(
    postgres: PostgresSchema, statements: Statements, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pausegraph.checkpointers import postgres as module

    monkeypatch.setattr(module, "_PIPELINES", False)  # as with a libpq before 14
    store, other = postgres.checkpointer().store, postgres.checkpointer().store
    other.append(_info(1), b"1", _summary(1))
    with store.lock("wf", "warm"):
        pass
    statements.take()
    with store.lock("wf", "r"):
        assert len(statements.take()) == 2
        assert [f.seq for f in store.frames("wf", "r")] == [1]
        assert statements.take() == []


# --- the append that ends a call, the hot statements, the holders' notes ------------------


def test_the_append_that_ends_a_call_flushes_and_lets_the_run_go_in_one_round_trip(
    postgres: PostgresSchema, statements: Statements
) -> None:
    store = postgres.checkpointer().store
    connection = store._connection()
    with store.lock("wf", "r"):
        store.append(_info(1), b"1", _summary(1))  # queued: the call goes on, no flush
        (written,) = connection.execute("SELECT pg_current_wal_insert_lsn()").fetchone()
        statements.take()
        store.append(_info(2), b"2", _summary(2, status="paused"))  # the call's last
        (sent,) = statements.take()
        assert sent.startswith("pipeline: ")  # the append, then the unlock: one round trip
        assert "synchronous_commit" not in sent  # the session's setting: on
        assert sent.endswith("SELECT pg_advisory_unlock($1), pg_backend_pid()")
        (flushed,) = connection.execute(
            "SELECT pg_current_wal_flush_lsn() >= %s::pg_lsn", (written,)
        ).fetchone()
        assert flushed  # the first append's WAL is on disk with the second's commit
        assert store.holder("wf", "r") is None  # let go: the run is paused, not running
        statements.take()
        store.sync()  # flushed by that append, and no lock held: nothing to ask
        assert statements.take() == []
        with postgres.checkpointer().store.lock("wf", "r"):  # anyone may take it now
            pass
        statements.take()
    assert statements.take() == []  # nothing left to release
    assert [f.seq for f in store.frames("wf", "r")] == [1, 2]


def test_with_other_holds_the_ending_append_stays_on_the_threads_connection(
    postgres: PostgresSchema, statements: Statements
) -> None:
    store = postgres.checkpointer().store
    with store.lock("wf", "other"), store.lock("wf", "r"):  # two drivers in the process
        statements.take()
        store.append(_info(1), b"1", _summary(1, status="paused"))
        (sent,) = statements.take()
        assert "pg_advisory_unlock" not in sent  # flushes side by side with other threads'
        assert store.holder("wf", "r") is not None  # released when the hold ends
        statements.take()
    assert len(statements.take()) == 2  # the two releases
    assert store.holder("wf", "r") is None


def test_a_save_after_the_run_was_let_go_takes_the_lock_again_or_is_refused(
    postgres: PostgresSchema, statements: Statements
) -> None:
    store, other = postgres.checkpointer().store, postgres.checkpointer().store
    with store.lock("wf", "r"):
        store.append(_info(1), b"1", _summary(1, status="paused"))  # let go
        statements.take()
        store.append(_info(2), b"2", _summary(2))  # the hold goes on: the lock again first
        assert len(statements.take()) == 2  # take the lock (with its listing), the append
        assert store.holder("wf", "r") is not None
        with pytest.raises(ConflictError):
            other.lock("wf", "r").__enter__()
        statements.take()
        store.sync()  # flush and check the lock taken again
        assert len(statements.take()) == 1
    assert store.holder("wf", "r") is None  # released when the hold ended
    with store.lock("wf", "r"):
        store.append(_info(3), b"3", _summary(3, status="done"))  # let go
        # taken meanwhile: the hold's next save is refused
        with other.lock("wf", "r"), pytest.raises(ConflictError, match="'r' of workflow 'wf'"):
            store.append(_info(4), b"4", _summary(4))
    assert [f.seq for f in store.frames("wf", "r")] == [1, 2, 3]
    with store.lock("wf", "r"):  # nothing held or left behind by the refused hold
        pass


def _in_thread(work: Any, *, raising: bool = True) -> list[BaseException]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:  # reported to the test
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if raising:
        assert errors == []
    return errors


def test_a_hold_let_go_early_never_unlocks_a_later_hold_of_the_run_in_another_thread(
    postgres: PostgresSchema,
) -> None:
    store, other = postgres.checkpointer().store, postgres.checkpointer().store
    with store.lock("wf", "r"):  # A: its call ends, its `with` stays open
        store.append(_info(1), b"1", _summary(1, status="paused"))

        def b_then_c() -> None:
            with store.lock("wf", "r"):  # B: takes the run, ends its call too
                store.append(_info(2), b"2", _summary(2, status="paused"))

        _in_thread(b_then_c)
        c_lock = store.lock("wf", "r")  # C: takes the run and keeps it
        _in_thread(c_lock.__enter__)
    # A's `with` is over: C's lock stands
    assert store.holder("wf", "r") is not None
    with pytest.raises(ConflictError):
        other.lock("wf", "r").__enter__()
    _in_thread(lambda: c_lock.__exit__(None, None, None))
    assert store.holder("wf", "r") is None


def test_a_save_after_letting_go_is_refused_while_another_thread_of_the_process_holds_the_run(
    postgres: PostgresSchema,
) -> None:
    store = postgres.checkpointer().store
    with store.lock("wf", "r"):
        store.append(_info(1), b"1", _summary(1, status="paused"))  # let go
        b_lock = store.lock("wf", "r")
        _in_thread(b_lock.__enter__)  # another thread takes the run
        with pytest.raises(ConflictError, match="'r' of workflow 'wf'"):
            store.append(_info(2), b"2", _summary(2))  # not under the other thread's hold
        _in_thread(lambda: store.append(_info(2), b"b", _summary(2)))  # the holder saves
        _in_thread(lambda: b_lock.__exit__(None, None, None))
    assert store.read("wf", "r", 1, 2) == [b"1", b"b"]
    assert store.holder("wf", "r") is None


def test_a_ctrl_c_inside_a_query_drops_the_connection_and_the_handle_goes_on(
    postgres: PostgresSchema, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = postgres.checkpointer().store
    store.append(_info(1), b"1", _summary(1))
    with store.lock("wf", "r"):
        store.append(_info(2), b"2", _summary(2))
        execute = psycopg.Connection.execute

        def interrupted(connection: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
            connection.pgconn.send_query(b"SELECT pg_sleep(0.2)")  # a query under way...
            raise KeyboardInterrupt  # ...and Ctrl-C before its answer is read

        monkeypatch.setattr(psycopg.Connection, "execute", interrupted)
        with pytest.raises(KeyboardInterrupt):
            store.sync()
        monkeypatch.setattr(psycopg.Connection, "execute", execute)
        store.sync()  # a new connection: not "another command is already in progress"
        store.append(_info(3), b"3", _summary(3))
    assert [f.seq for f in store.frames("wf", "r")] == [1, 2, 3]


def test_a_forked_child_leaving_its_parents_hold_leaves_the_lock_to_the_parent(
    postgres: PostgresSchema,
) -> None:
    import os

    store, other = postgres.checkpointer().store, postgres.checkpointer().store
    pid = -1
    try:
        with store.lock("wf", "r"):
            pid = os.fork()
            if pid == 0:  # the child leaves its copy of the parent's `with` by raising
                raise SystemExit(0)
            os.waitpid(pid, 0)
            assert store.holder("wf", "r") is not None  # still the parent's
            with pytest.raises(ConflictError):
                other.lock("wf", "r").__enter__()
            store.append(_info(1), b"1", _summary(1))
            store.sync()  # not "lost its live lock"
    finally:
        if pid == 0:
            os._exit(0)  # the child, out of the `with`: gone without running more
    assert store.holder("wf", "r") is None


def test_a_ctrl_c_right_after_the_lock_is_taken_gives_it_back(
    postgres: PostgresSchema, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, other = postgres.checkpointer().store, postgres.checkpointer().store
    infos = postgres_module._infos

    def interrupted(rows: Any) -> Any:
        raise KeyboardInterrupt  # while the frame list is read, the lock just taken

    monkeypatch.setattr(postgres_module, "_infos", interrupted)
    with pytest.raises(KeyboardInterrupt):
        store.lock("wf", "r").__enter__()
    monkeypatch.setattr(postgres_module, "_infos", infos)
    assert store.holder("wf", "r") is None
    with other.lock("wf", "r"):
        pass
    with store.lock("wf", "r"):
        pass


def test_a_ctrl_c_while_a_hold_waits_to_let_go_ends_the_session_and_so_the_lock(
    postgres: PostgresSchema, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, other = postgres.checkpointer().store, postgres.checkpointer().store
    release = store._release

    def interrupted(*args: Any) -> None:
        raise KeyboardInterrupt  # as if it landed while the mutex was awaited

    monkeypatch.setattr(store, "_release", interrupted)
    with pytest.raises(KeyboardInterrupt), store.lock("wf", "r"):
        pass
    monkeypatch.setattr(store, "_release", release)
    for _ in range(500):  # the server ends the closed session a moment later
        if store.holder("wf", "r") is None:
            break
        time.sleep(0.01)
    assert store.holder("wf", "r") is None
    with other.lock("wf", "r"):
        pass
    with store.lock("wf", "r"):  # a new lock session
        store.append(_info(1), b"1", _summary(1))
        store.sync()


def test_another_threads_lost_lock_does_not_stop_this_threads_driver(
    postgres: PostgresSchema,
) -> None:
    store = postgres.checkpointer().store
    b_lock = store.lock("wf", "b")
    _in_thread(b_lock.__enter__)  # another thread's hold...
    assert store._session is not None
    postgres.terminate(store._session.backend_pid)  # ...whose lock session ends
    with store.lock("wf", "d"):  # this thread's, on a new session
        store.append(_info(1), b"1", _summary(1, run="d"))
        store.sync()  # B's loss is B's driver's to hear of
    (lost,) = _in_thread(lambda: store.append(_info(1), b"1", _summary(1, run="b")), raising=False)
    assert isinstance(lost, CheckpointError)
    assert "'b' of workflow 'wf': this process lost" in str(lost)
    _in_thread(lambda: b_lock.__exit__(None, None, None))


def test_the_run_is_let_go_even_when_the_append_that_ends_the_call_is_refused(
    postgres: PostgresSchema,
) -> None:
    store, other = postgres.checkpointer().store, postgres.checkpointer().store
    with store.lock("wf", "r"):
        store.append(_info(1), b"1", _summary(1))
        other.append(_info(2), b"x", _summary(2))  # a writer without the lock took seq 2
        with pytest.raises(ConflictError):
            store.append(_info(2), b"2", _summary(2, status="paused"))
        assert store.holder("wf", "r") is None
    with other.lock("wf", "r"):
        assert [f.seq for f in other.frames("wf", "r")] == [1, 2]
    assert store.read("wf", "r", 2, 2) == [b"x"]


def test_an_ending_append_the_server_refuses_saves_nothing_and_still_lets_the_run_go(
    postgres: PostgresSchema,
) -> None:
    store = postgres.checkpointer().store
    store.append(_info(1), b"1", _summary(1))
    with psycopg.connect(postgres.url, autocommit=True) as admin:
        admin.execute("ALTER TABLE pausegraph_frames ADD CONSTRAINT one_only CHECK (seq < 2)")
    with store.lock("wf", "r"):
        with pytest.raises(CheckpointError, match="one_only"):
            store.append(_info(2), b"2", _summary(2, status="paused"))
        assert store.holder("wf", "r") is None
    assert [f.seq for f in store.frames("wf", "r")] == [1]
    assert store.runs()[0].seq == 1  # the summary with it
    with postgres.checkpointer().store.lock("wf", "r"):
        pass


def test_an_unlock_that_fails_after_the_ending_append_is_sent_again(
    postgres: PostgresSchema, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = postgres.checkpointer().store
    failing = postgres_module._Statement("pausegraph_test_release", "SELECT 1 / 0, %(key)s::bigint")
    monkeypatch.setattr(postgres_module, "_RELEASING", failing)  # as if cancelled
    with store.lock("wf", "r"):
        store.append(_info(1), b"1", _summary(1, status="paused"))  # saved, and said so
        assert store.holder("wf", "r") is None  # unlocked by the second try
    assert [f.seq for f in store.frames("wf", "r")] == [1]


def test_a_sync_asks_again_after_an_append_since_or_in_another_thread(
    postgres: PostgresSchema, statements: Statements
) -> None:
    store = postgres.checkpointer().store
    with store.lock("wf", "r"):
        store.append(_info(1), b"1", _summary(1))
        statements.take()
        store.sync()  # an append not flushed, and a lock held: one statement
        assert len(statements.take()) == 1
        store.append(_info(2), b"2", _summary(2))
        statements.take()
        elsewhere = threading.Thread(target=store.sync)  # not the thread that appended
        elsewhere.start()
        elsewhere.join()
        asked = [s for s in statements.take() if s != postgres_module._SESSION]  # its connection's
        assert len(asked) == 1  # flushes for every thread, and checks this thread's lock
        store.sync()  # flushed by the other thread's sync: the lock check alone
        assert len(statements.take()) == 1
        store.append(_info(3), b"3", _summary(3, status="done"))  # flushed, let go
        statements.take()
        store.sync()
        assert statements.take() == []


def test_an_ending_append_that_finds_its_lock_gone_leaves_its_sync_to_fail(
    postgres: PostgresSchema,
) -> None:
    store = postgres.checkpointer().store
    with store.lock("wf", "r"):
        hold = store._holding[("wf", "r")]
        key, session = hold.key, hold.session
        session.connection.execute("SELECT pg_advisory_unlock(%s)", (key,))  # the lock, gone
        store.append(_info(1), b"1", _summary(1, status="paused"))  # saved: the seq decides
        with pytest.raises(CheckpointError, match="'r' of workflow 'wf': this process lost"):
            store.sync()
        store.sync()  # said once
    assert [f.seq for f in store.frames("wf", "r")] == [1]


def test_a_runner_cycle_takes_six_round_trips(
    postgres: PostgresSchema, statements: Statements
) -> None:
    runner = Runner(_graph(), postgres.checkpointer())
    runner.run("warm")
    runner.resume("warm", Resume(True))
    statements.take()
    runner.run("r1")  # the lock and the frames, input, the pause (flushed) and the release
    assert len(statements.take()) == 3
    runner.resume("r1", Resume(True))  # the lock and the frames, the claim, the end and release
    sent = statements.take()
    assert len(sent) == 3, sent
    assert runner.state("r1").values["shipped"] is True


@pytest.mark.parametrize("piped", [True, False], ids=["pipeline", "no-pipeline"])
def test_the_hot_statements_report_server_errors_and_survive_them(
    postgres: PostgresSchema, monkeypatch: pytest.MonkeyPatch, piped: bool
) -> None:
    monkeypatch.setattr(postgres_module, "_PIPELINES", piped)  # False: as with a libpq before 14
    store = postgres.checkpointer().store
    store.append(_info(1), b"1", _summary(1))
    wire = store._local.wire
    boom = postgres_module._Statement("pausegraph_test_boom", "SELECT 1 / %(seq)s::integer")
    with pytest.raises(psycopg.errors.DivisionByZero):
        postgres_module._exchange(wire, [(boom, {"seq": 0})])
    with pytest.raises(psycopg.errors.DivisionByZero):  # a pipeline stops at the error
        postgres_module._exchange(wire, [(boom, {"seq": 0}), (boom, {"seq": 1})])
    assert postgres_module._exchange(wire, [(boom, {"seq": 1})]) == [[(1,)]]
    store.append(_info(2), b"2", _summary(2))  # the connection goes on
    assert [f.seq for f in store.frames("wf", "r")] == [1, 2]


def test_the_holders_notes_are_unlogged_left_at_release_and_gone_with_the_run(
    postgres: PostgresSchema,
) -> None:
    store = postgres.with_tables().store
    with psycopg.connect(postgres.url, autocommit=True) as admin:

        def notes() -> list[Any]:
            return admin.execute("SELECT run FROM pausegraph_holders").fetchall()

        (persistence,) = admin.execute(
            "SELECT relpersistence::text FROM pg_class WHERE oid = 'pausegraph_holders'::regclass"
        ).fetchone()
        assert persistence == "u"  # no WAL: the notes die with the server, as the locks do
        with store.lock("wf", "r"):
            store.append(_info(1), b"1", _summary(1))
            assert store.holder("wf", "r") is not None
        assert notes() == [(b"r",)]  # left at release: the next taker overwrites it
        assert store.holder("wf", "r") is None  # its session holds no lock: names nobody
        with store.lock("wf", "r"):
            store.delete("wf", "r")  # a live hold's note stays
            assert notes() == [(b"r",)]
            assert store.holder("wf", "r") is not None
        store.delete("wf", "r")
        assert notes() == []
        # a hold of a run with no checkpoint (a command refused on an unknown id) leaves no
        # note: the refused command leaves the store as it was (SPEC, Command line)
        with store.lock("wf", "typo"):
            assert notes() == [(b"typo",)]
        assert notes() == []


def test_a_logged_holders_table_of_an_earlier_release_is_made_unlogged_on_open(
    postgres: PostgresSchema,
) -> None:
    postgres.with_tables().close()
    with psycopg.connect(postgres.url, autocommit=True) as admin:
        admin.execute("ALTER TABLE pausegraph_holders SET LOGGED")
        postgres.checkpointer()
        (persistence,) = admin.execute(
            "SELECT relpersistence::text FROM pg_class WHERE oid = 'pausegraph_holders'::regclass"
        ).fetchone()
    assert persistence == "u"


def test_a_hot_statement_interrupted_half_way_closes_its_connection(
    postgres: PostgresSchema, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = postgres.checkpointer().store
    store.append(_info(1), b"1", _summary(1))
    wait = postgres_module._wait

    def interrupted(fd: int, event: int) -> None:
        if event == select.POLLIN:
            raise KeyboardInterrupt
        wait(fd, event)

    connection = store._connection()
    monkeypatch.setattr(postgres_module, "_wait", interrupted)
    with pytest.raises(KeyboardInterrupt):
        store.append(_info(2), b"2", _summary(2))
    assert connection.closed  # it cannot be read to its end any more
    monkeypatch.setattr(postgres_module, "_wait", wait)
    frames = store.frames("wf", "r")  # a new connection; the append may have committed
    store.append(_info(len(frames) + 1), b"3", _summary(len(frames) + 1))
    with store.lock("wf", "r"):
        monkeypatch.setattr(postgres_module, "_wait", interrupted)
        with pytest.raises(KeyboardInterrupt):  # on the lock connection: the locks end
            store._on_session(store._session, postgres_module._BACKEND, {})
        monkeypatch.setattr(postgres_module, "_wait", wait)
        seq = len(store.frames("wf", "r")) + 1
        with pytest.raises(CheckpointError, match="this process lost its live lock"):
            store.append(_info(seq), b"x", _summary(seq))


def test_a_threads_connection_is_closed_when_the_thread_ends(postgres: PostgresSchema) -> None:
    """A web server's pool ends idle threads: their connections must not pile up."""
    import gc

    store = postgres.checkpointer().store
    store.runs()
    opened: list[Any] = []

    def list_runs() -> None:
        store.runs()
        opened.append(store._local.connection)

    for _ in range(3):
        threads = [threading.Thread(target=list_runs) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    gc.collect()
    assert len(store._open) == 1  # this thread's only
    assert len(opened) == 18
    assert all(connection.closed for connection in opened)
