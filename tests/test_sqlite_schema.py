"""The SQLite store's schema: frame ids from run keys, the upgrade from schema 1, bounds.

A frame's row id is its run's key times 2**32 plus its seq (one B-tree, each
frame in its row); only queued runs are in the status index. A database of
schema 1 (frames and runs keyed by their ids) is upgraded when it is opened.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Generator, Mapping
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from pausegraph import (
    CheckpointError,
    CorruptCheckpointError,
    Done,
    Graph,
    Interrupt,
    LastWriteWins,
    Paused,
    Resume,
    Runner,
    SqliteCheckpointer,
)
from pausegraph.checkpointers import FrameInfo, RunSummary
from pausegraph.checkpointers.sqlite import SCHEMA_VERSION

# schema 1, as pausegraph created it before the frame ids
_SCHEMA_1 = (
    """CREATE TABLE frames (
    workflow BLOB NOT NULL, run BLOB NOT NULL, seq INTEGER NOT NULL,
    super_step INTEGER NOT NULL, label BLOB NOT NULL, timestamp_ms INTEGER NOT NULL,
    snapshot INTEGER NOT NULL, frame BLOB NOT NULL, PRIMARY KEY (workflow, run, seq))""",
    """CREATE TABLE runs (
    workflow BLOB NOT NULL, run BLOB NOT NULL, seq INTEGER NOT NULL, status TEXT NOT NULL,
    updated_ms INTEGER NOT NULL, deadline_ms INTEGER, data BLOB NOT NULL,
    PRIMARY KEY (workflow, run))""",
    "CREATE INDEX runs_by_status ON runs (status)",
    "CREATE INDEX runs_by_deadline ON runs (deadline_ms)",
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    "INSERT INTO meta VALUES ('syncs', 0)",
)


def _ask(state: Mapping[str, Any]) -> Generator[Interrupt, Any, dict[str, Any]]:
    answer = yield Interrupt({"n": state["n"]}, timeout=3600)
    return {"answer": answer}


def _graph() -> Graph:
    channels = {"n": LastWriteWins(), "answer": LastWriteWins()}
    return (
        Graph("ask", channels)
        .step("first", lambda s: {"n": s["n"] + 1})
        .step("ask", _ask)
        .edge("first", "ask")
    )


def _state(store: SqliteCheckpointer, run_id: str) -> tuple[object, ...]:
    """What a reader sees of a run: its history, its latest checkpoint, its summary."""
    latest = store.latest("ask", run_id)
    assert latest is not None
    (summary,) = [s for s in store.summaries() if s.run_id == run_id]
    return store.list("ask", run_id), latest, summary


def _to_schema_1(source: Path, target: Path) -> None:
    """Write ``source``'s runs and frames into a new database of schema 1."""
    with closing(sqlite3.connect(source)) as old, closing(sqlite3.connect(target)) as new:
        for statement in _SCHEMA_1:
            new.execute(statement)
        keys = {}
        for key, *row in old.execute("SELECT * FROM runs"):
            keys[key] = row[:2]
            new.execute("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?)", row)
        for frame_id, *rest in old.execute("SELECT * FROM frames"):
            key, seq = divmod(frame_id, 2**32)
            new.execute(
                "INSERT INTO frames VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (*keys[key], seq, *rest)
            )
        new.execute("PRAGMA user_version = 1")
        new.commit()


def test_a_schema_1_database_is_upgraded_when_opened_and_reads_as_before(
    tmp_path: Path,
) -> None:
    now = [1_000_000]
    store = SqliteCheckpointer(tmp_path / "new.db")
    runner = Runner(_graph(), store, clock=lambda: now[0])
    for n in range(5):
        assert isinstance(runner.run(f"r{n}", {"n": n}), Paused)
    assert isinstance(runner.resume("r1", Resume("yes")), Done)
    runner.submit("r3", Resume("later"))  # queued: its claim saved, nothing run
    store.delete("ask", "r0")  # a key left unused
    expected = {f"r{n}": _state(store, f"r{n}") for n in range(1, 5)}
    store.close()
    _to_schema_1(tmp_path / "new.db", tmp_path / "old.db")

    upgraded = SqliteCheckpointer(tmp_path / "old.db")
    assert {f"r{n}": _state(upgraded, f"r{n}") for n in range(1, 5)} == expected
    assert {s.run_id for s in upgraded.summaries(status="queued")} == {"r3"}
    with closing(sqlite3.connect(tmp_path / "old.db")) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
        assert {"runs", "frames", "runs_queued"} <= tables
        assert not {"runs_2", "frames_2", "runs_by_status", "runs_by_deadline"} & tables
    # and it goes on: the upgraded runs resume, a new one starts
    again = Runner(_graph(), upgraded, clock=lambda: now[0])
    assert isinstance(again.resume("r2", Resume("no")), Done)
    assert isinstance(again.run("r3"), Done)
    assert isinstance(again.run("r9", {"n": 9}), Paused)
    assert [m.seq for m in upgraded.list("ask", "r2")] == list(range(1, 6))


def test_a_run_begun_again_under_a_reused_key_reads_only_its_own_frames(
    tmp_path: Path,
) -> None:
    store = SqliteCheckpointer(tmp_path / "runs.db")
    runner = Runner(_graph(), store)
    assert isinstance(runner.run("a", {"n": 1}), Paused)
    assert isinstance(runner.run("b", {"n": 2}), Paused)
    assert isinstance(runner.resume("b", Resume("yes")), Done)
    store.delete("ask", "b")  # the largest key: SQLite may give it to the next run
    assert isinstance(runner.run("c", {"n": 3}), Paused)
    with closing(sqlite3.connect(tmp_path / "runs.db")) as db:
        keys = dict(db.execute("SELECT run, key FROM runs"))
    assert keys[b"c"] == 2  # the one "b" had
    assert [m.label for m in store.list("ask", "c")] == ["input", "layer:1", "interrupt:ask"]
    assert store.latest("ask", "b") is None
    assert store.latest("ask", "c").values["n"] == 4  # type: ignore[union-attr]


def _summary(run_id: str, seq: int) -> RunSummary:
    return RunSummary("w", run_id, seq, "queued", 1, None, b"\x90")


def _info(seq: int) -> FrameInfo:
    return FrameInfo(seq, 0, "input", 1, True, 1)


def test_a_seq_past_what_a_frame_id_holds_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    store = SqliteCheckpointer(tmp_path / "runs.db").store
    store.append(_info(1), b"\x01", _summary("r", 1))
    before = (store.frames("w", "r"), store.runs())
    too_far = r"checkpoint 4294967296 of run 'r'.* 1 to 4294967295"
    with pytest.raises(CheckpointError, match=too_far):
        store.append(_info(2**32), b"\x02", _summary("r", 2**32))
    assert (store.frames("w", "r"), store.runs()) == before
    assert store.read("w", "r", -5, 2**40) == [b"\x01"]  # bounds past the ids read nothing more


def test_a_store_out_of_run_keys_refuses_a_new_run_and_changes_nothing(tmp_path: Path) -> None:
    store = SqliteCheckpointer(tmp_path / "runs.db").store
    store.append(_info(1), b"\x01", _summary("last", 1))
    with closing(sqlite3.connect(tmp_path / "runs.db")) as db:
        db.execute("UPDATE runs SET key = ? WHERE run = ?", (2**31 - 1, b"last"))
        db.commit()
    with pytest.raises(CheckpointError, match=r"no run key left for run 'next'.* new database"):
        store.append(_info(1), b"\x01", _summary("next", 1))
    assert [s.run_id for s in store.runs()] == ["last"]
    assert store.frames("w", "next") == []


def test_queued_runs_are_listed_through_their_index(tmp_path: Path) -> None:
    checkpointer = SqliteCheckpointer(tmp_path / "runs.db")
    store = checkpointer.store
    for n in range(3):
        store.append(_info(1), b"\x01", _summary(f"q{n}", 1))
    queries: list[str] = []
    store._connection().set_trace_callback(queries.append)
    assert sorted(s.run_id for s in checkpointer.summaries(status="queued")) == ["q0", "q1", "q2"]
    (query,) = [q for q in queries if q.startswith("SELECT")]
    with closing(sqlite3.connect(tmp_path / "runs.db")) as db:
        plan = " ".join(str(row) for row in db.execute(f"EXPLAIN QUERY PLAN {query}"))
    assert "USING INDEX runs_queued" in plan


@pytest.mark.parametrize(
    ("edit", "what"),
    [
        ("DELETE FROM runs WHERE run = x'7231'", "a frame whose run has no row in runs"),
        ("UPDATE frames SET seq = -1 WHERE run = x'7231' AND seq = 1", "a frame whose seq"),
        ("UPDATE frames SET seq = 4294967298 WHERE run = x'7231' AND seq = 1", "a frame whose seq"),
    ],
)
def test_a_damaged_schema_1_database_is_refused_and_left_as_it_is(
    tmp_path: Path, edit: str, what: str
) -> None:
    # the upgrade would drop such a frame, or file it under another run's key
    store = SqliteCheckpointer(tmp_path / "new.db")
    runner = Runner(_graph(), store)
    for n in range(3):
        assert isinstance(runner.run(f"r{n}", {"n": n}), Paused)
    store.close()
    old = tmp_path / "old.db"
    _to_schema_1(tmp_path / "new.db", old)
    with closing(sqlite3.connect(old)) as db:
        db.execute(edit)
        db.commit()

    def content() -> list[str]:
        with closing(sqlite3.connect(old)) as db:
            return [*db.iterdump(), str(db.execute("PRAGMA user_version").fetchone())]

    before = content()
    with pytest.raises(CorruptCheckpointError, match=rf"old\.db.*{what}.*not upgraded"):
        SqliteCheckpointer(old)
    assert content() == before
    assert before[-1] == "(1,)"


def test_a_failed_sync_removes_a_run_begun_again_after_another_handle_deleted_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # this handle's unsynced append to the run deleted since must not be what the
    # failed sync puts back onto the run begun again
    mine = SqliteCheckpointer(tmp_path / "runs.db").store
    theirs = SqliteCheckpointer(tmp_path / "runs.db").store
    for seq in (1, 2):
        mine.append(_info(seq), b"old", _summary("x", seq))
    mine.sync()
    mine.append(_info(3), b"old", _summary("x", 3))
    theirs.delete("w", "x")
    mine.append(_info(1), b"new", _summary("x", 1))

    def eio(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr("os.fdatasync", eio)
    with pytest.raises(CheckpointError, match="nothing of the checkpoints saved since"):
        mine.sync()
    monkeypatch.undo()
    for store in (mine, theirs):
        assert store.frames("w", "x") == []
        assert store.runs() == []


_PAUSED_RUN = "(SELECT key FROM runs WHERE run = x'7230') * 4294967296"


@pytest.mark.parametrize(
    ("edit", "listed"),
    [
        # the listing reads the ids and the summary's bytes; the run is read from frames
        ("UPDATE runs SET run = 'r0' WHERE run = x'7230'", True),  # an id that is no BLOB
        ("UPDATE runs SET data = 'abc' WHERE run = x'7230'", True),
        ("UPDATE runs SET seq = 'abc' WHERE run = x'7230'", False),
        (f"UPDATE frames SET label = 'input' WHERE id = {_PAUSED_RUN} + 1", False),
        (f"UPDATE frames SET frame = 'abc' WHERE id = {_PAUSED_RUN} + 2", False),
        (f"UPDATE frames SET super_step = 'one' WHERE id = {_PAUSED_RUN} + 2", False),
        (f"DELETE FROM frames WHERE id = {_PAUSED_RUN} + 3", False),  # the last: a row says 3
        (f"DELETE FROM frames WHERE id = {_PAUSED_RUN} + 2", False),  # a gap
        (f"DELETE FROM frames WHERE id BETWEEN {_PAUSED_RUN} AND {_PAUSED_RUN} + 9", False),
    ],
)
def test_a_value_pausegraph_did_not_write_is_a_corrupt_checkpoint_error_naming_the_file(
    tmp_path: Path, edit: str, listed: bool
) -> None:
    db = tmp_path / "runs.db"
    runner = Runner(_graph(), SqliteCheckpointer(db))
    assert isinstance(runner.run("r0", {"n": 1}), Paused)
    with closing(sqlite3.connect(db)) as connection:
        connection.execute(edit)
        connection.commit()
    store = SqliteCheckpointer(db)
    again = Runner(_graph(), store)
    reads: list[Callable[[], object]] = [store.summaries]
    if not listed:
        reads = [
            lambda: again.state("r0"),
            lambda: again.history("r0"),
            lambda: again.resume("r0", Resume("yes")),
        ]
    for read in reads:
        with pytest.raises(CorruptCheckpointError, match=r"runs\.db.* Restore it from a backup"):
            read()
