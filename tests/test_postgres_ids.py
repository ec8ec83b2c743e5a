"""The PostgreSQL store with long ids that do not compress, its schema upgrade, and its listener.

Rows are keyed by digests of the ids, never by the ids: a B-tree entry holds
at most 2704 bytes (any index entry at most 8191 after compression), and the
other stores keep a 10,000-character id. Every test gets a fresh schema from
the ``postgres`` fixture (``tests/conftest.py``), which skips without
``PAUSEGRAPH_TEST_POSTGRES``.
"""

from __future__ import annotations

import random
import string
import threading
import time

import psycopg
import pytest
from conftest import PostgresSchema

from pausegraph import (
    CheckpointError,
    Done,
    Graph,
    Interrupt,
    LastWriteWins,
    Paused,
    PostgresCheckpointer,
    Resume,
    Runner,
    Worker,
)
from pausegraph.checkpointers.postgres import SCHEMA_VERSION, _digests

LETTERS = "".join(random.Random(0).choices(string.ascii_letters, k=10_000))
CJK = "".join(map(chr, random.Random(1).choices(range(0x4E00, 0xA000), k=3_000)))
NULS = "\x00" * 3 + "a\x00b" + "".join(random.Random(2).choices(string.ascii_letters, k=5_000))
LONG_IDS = [LETTERS, CJK, NULS]


def _asking(state: dict[str, object]) -> object:
    answer = yield Interrupt("q")
    return {"v": answer}


def _graph(name: str) -> Graph:
    return Graph(name, {"v": LastWriteWins()}).step("ask", _asking)


def _terminate_listener(pg: PostgresSchema, checkpointer: PostgresCheckpointer) -> None:
    """``pg_terminate_backend`` on the handle's listening connection; waits until it is gone."""
    listener = checkpointer.store._listener
    assert listener is not None
    pg.terminate(listener[1].info.backend_pid)


# ids with NULs (text cannot hold one: the store keeps ids as bytes)
@pytest.mark.parametrize(
    ("workflow_id", "run_id"),
    [("wf", LETTERS), ("wf", CJK), (LETTERS, "r"), (CJK, CJK), (NULS, "r"), (NULS, LETTERS),
     ("wf", NULS)],
    ids=["letters", "cjk", "letters-workflow", "cjk-both", "nuls-workflow", "nuls-letters",
         "nuls-run"],
)  # fmt: skip
def test_long_incompressible_ids_run_resume_list_and_delete(
    postgres: PostgresSchema, workflow_id: str, run_id: str
) -> None:
    checkpointer = postgres.checkpointer()
    runner = Runner(_graph(workflow_id), checkpointer)
    assert isinstance(runner.run(run_id, {}), Paused)
    assert isinstance(runner.run(run_id + "2", {}), Paused)  # a neighbour, kept apart
    assert isinstance(runner.resume(run_id, Resume(7)), Done)
    assert runner.state(run_id).values == {"v": 7}
    seqs = [m.seq for m in runner.history(run_id)]
    assert seqs == list(range(1, len(seqs) + 1))
    assert len(seqs) > 1
    assert (workflow_id, run_id) in checkpointer.runs()
    listed = checkpointer.summaries(workflow_id=workflow_id)
    assert sorted(s.run_id for s in listed) == sorted([run_id, run_id + "2"])
    assert {s.run_id: s.status for s in checkpointer.summaries(status="done")} == {run_id: "done"}
    with checkpointer.lock(workflow_id, run_id):  # the holders' table takes it too
        holder = checkpointer.store.holder(workflow_id, run_id)
        assert holder is not None
        assert holder.pid > 0
    runner.delete(run_id)
    runner.delete(run_id + "2")
    assert checkpointer.runs() == []
    assert checkpointer.list(workflow_id, run_id) == []


def test_workflow_ids_that_share_a_prefix_or_a_digest_input_are_kept_apart(
    postgres: PostgresSchema,
) -> None:
    store = postgres.checkpointer()
    # (w, r) pairs whose concatenation is the same: a digest of w + r would mix them
    pairs = [("ab", "c"), ("a", "bc"), (LETTERS, "x"), (LETTERS[:-1], LETTERS[-1] + "x")]
    for i, (workflow_id, run_id) in enumerate(pairs):
        Runner(_graph(workflow_id), store).run(run_id, {"v": i})
    assert sorted(store.runs()) == sorted(pairs)
    for i, (workflow_id, run_id) in enumerate(pairs):
        assert Runner(_graph(workflow_id), store).state(run_id).values == {"v": i}
        assert [s.run_id for s in store.summaries(workflow_id=workflow_id)] == [run_id]


def test_an_appends_digests_made_here_are_the_servers(postgres: PostgresSchema) -> None:
    # appends send the digests made in Python; every other statement has the server make them
    pairs = [(b"wf", b"r"), (b"", b""), (b"a", b"bc"), (b"ab", b"c")]
    pairs += [(LETTERS.encode(), CJK.encode()), (NULS.encode(), b"\x00")]
    with psycopg.connect(postgres.url, autocommit=True) as admin:
        for workflow, run in pairs:
            row = admin.execute(
                "SELECT sha256(%s::bytea), sha256(sha256(%s::bytea) || sha256(%s::bytea))",
                (workflow, workflow, run),
            ).fetchone()
            assert row is not None
            assert _digests(workflow, run) == {"wd": bytes(row[0]), "rd": bytes(row[1])}


def test_no_index_holds_an_id_and_a_workflow_filter_uses_an_index(
    postgres: PostgresSchema,
) -> None:
    postgres.with_tables()
    with psycopg.connect(postgres.url, autocommit=True) as admin:
        indexed = admin.execute(
            "SELECT t.relname, a.attname FROM pg_index AS i "
            "JOIN pg_class AS t ON t.oid = i.indrelid "
            "JOIN pg_namespace AS n ON n.oid = t.relnamespace AND n.nspname = current_schema() "
            "JOIN pg_attribute AS a ON a.attrelid = t.oid AND a.attnum = ANY(i.indkey)"
        ).fetchall()
        assert {column for _, column in indexed} == {
            "run_digest", "seq", "workflow_digest", "status", "deadline_ms"
        }  # fmt: skip
        admin.execute("SET enable_seqscan = off")
        plan = admin.execute(
            "EXPLAIN SELECT * FROM pausegraph_runs "
            "WHERE workflow_digest = sha256(%s::bytea) AND workflow = %s",
            (b"wf", b"wf"),
        ).fetchall()
    assert "pausegraph_runs_by_workflow" in " ".join(line for (line,) in plan)


# version 1's tables, keyed by the ids themselves (as made before this layout)
_VERSION_1 = """
CREATE TABLE pausegraph_schema (version integer NOT NULL);
CREATE TABLE pausegraph_frames (
    workflow bytea NOT NULL, run bytea NOT NULL, seq integer NOT NULL,
    super_step integer NOT NULL, label bytea NOT NULL, timestamp_ms bigint NOT NULL,
    snapshot boolean NOT NULL, frame bytea NOT NULL, PRIMARY KEY (workflow, run, seq)
);
CREATE TABLE pausegraph_runs (
    workflow bytea NOT NULL, run bytea NOT NULL, seq integer NOT NULL, status text NOT NULL,
    updated_ms bigint NOT NULL, deadline_ms bigint, data bytea NOT NULL,
    PRIMARY KEY (workflow, run)
);
CREATE INDEX pausegraph_runs_by_status ON pausegraph_runs (status);
CREATE INDEX pausegraph_runs_by_deadline ON pausegraph_runs (deadline_ms);
CREATE TABLE pausegraph_holders (
    workflow bytea NOT NULL, run bytea NOT NULL, backend_pid integer NOT NULL,
    pid integer NOT NULL, host text NOT NULL, since_ms bigint NOT NULL,
    PRIMARY KEY (workflow, run)
);
INSERT INTO pausegraph_schema VALUES (1)
"""


def test_a_version_1_database_is_upgraded_in_place_with_its_runs(
    postgres: PostgresSchema,
) -> None:
    made = PostgresSchema(postgres.server, postgres.schema + "_v2")
    with psycopg.connect(postgres.server, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {made.schema}")
        try:
            source = made.checkpointer()  # runs recorded by this layout, copied as version 1's
            Runner(_graph("wf"), source).run("paused", {})
            Runner(_graph("wf\x00b"), source).run("other", {})
            source.close()
            with psycopg.connect(postgres.url, autocommit=True) as old:
                for statement in _VERSION_1.split(";"):
                    old.execute(statement.encode())
                old.execute(
                    f"INSERT INTO pausegraph_frames SELECT r.workflow, r.run, f.seq, "
                    f"f.super_step, f.label, f.timestamp_ms, f.snapshot, f.frame "
                    f"FROM {made.schema}.pausegraph_frames AS f "
                    f"JOIN {made.schema}.pausegraph_runs AS r USING (run_digest)"
                )
                old.execute(
                    f"INSERT INTO pausegraph_runs SELECT workflow, run, seq, status, updated_ms, "
                    f"deadline_ms, data FROM {made.schema}.pausegraph_runs"
                )
                old.execute("INSERT INTO pausegraph_holders VALUES ('wf', 'paused', 1, 1, 'h', 1)")
        finally:
            admin.execute(f"DROP SCHEMA {made.schema} CASCADE")
    upgraded = postgres.checkpointer()
    with psycopg.connect(postgres.url, autocommit=True) as admin:
        assert admin.execute("SELECT version FROM pausegraph_schema").fetchall() == [
            (SCHEMA_VERSION,)
        ]
    assert sorted(upgraded.runs()) == [("wf", "paused"), ("wf\x00b", "other")]
    assert upgraded.store.holder("wf", "paused") is None
    runner = Runner(_graph("wf"), upgraded)
    assert isinstance(runner.resume("paused", Resume(3)), Done)
    assert [m.seq for m in runner.history("paused")] == [1, 2, 3, 4]
    assert [s.run_id for s in upgraded.summaries(workflow_id="wf\x00b")] == ["other"]
    postgres.checkpointer()  # opened again: nothing more to upgrade


def test_a_schema_table_without_a_known_version_is_refused(postgres: PostgresSchema) -> None:
    postgres.with_tables()
    with psycopg.connect(postgres.url, autocommit=True) as admin:
        admin.execute("DELETE FROM pausegraph_schema")
    with pytest.raises(CheckpointError, match=r"has schema version 0, which this pausegraph"):
        postgres.checkpointer()


# --- wait_for_work's listening connection ---------------------------------------------


def test_wait_for_work_listens_again_after_its_connection_is_terminated(
    postgres: PostgresSchema,
) -> None:
    mine = postgres.checkpointer()
    assert mine.wait_for_work(0) is False  # listening from here on
    _terminate_listener(postgres, mine)
    started = time.monotonic()
    assert mine.wait_for_work(5) is True  # it saw the drop: something may be queued
    assert time.monotonic() - started < 2
    assert mine.wait_for_work(0.2) is False  # listening again, on a new connection
    Runner(_graph("wf"), postgres.checkpointer()).start("r1")
    assert mine.wait_for_work(5) is True  # and hears work queued after the drop


def test_wait_for_work_raises_only_when_it_cannot_listen_again(
    postgres: PostgresSchema,
) -> None:
    mine = postgres.checkpointer()
    assert mine.wait_for_work(0) is False
    mine.store.conninfo = "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2"
    _terminate_listener(postgres, mine)
    assert mine.wait_for_work(5) is True
    with pytest.raises(CheckpointError, match=r"cannot connect"):
        mine.wait_for_work(0)


def test_a_worker_serves_on_after_its_listening_connection_is_terminated(
    postgres: PostgresSchema,
) -> None:
    served = PostgresCheckpointer(postgres.url)
    postgres.opened.append(served)
    graph = Graph("wf", {"v": LastWriteWins()}).step("s", lambda state: {"v": 2})
    worker, stop, failed = Worker(served, [graph]), threading.Event(), []

    def serve() -> None:
        try:
            worker.serve(stop)
        except BaseException as exc:
            failed.append(exc)

    serving = threading.Thread(target=serve)
    serving.start()
    try:
        deadline = time.monotonic() + 10
        while served.store._listener is None and time.monotonic() < deadline:
            time.sleep(0.01)
        _terminate_listener(postgres, served)
        time.sleep(0.5)  # the worker sees the drop
        client = Runner(graph, postgres.checkpointer())
        client.start("r1", {"v": 1})
        deadline = time.monotonic() + 10
        while client.state("r1").status != "done" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.state("r1").status == "done"
        assert serving.is_alive()
        assert not failed
    finally:
        stop.set()
        serving.join(10)
    assert not failed
