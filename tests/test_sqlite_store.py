"""The SQLite store across processes: racing resumers, crashes, a damaged file.

The workflow is ``tests/_durable_flows.py``'s, run in real subprocesses with
its ``--sqlite`` switch, as ``tests/test_durability.py`` runs it on the
file store.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
from contextlib import closing
from pathlib import Path
from typing import Any

import attrs
import pytest

from pausegraph import (
    CheckpointError,
    CorruptCheckpointError,
    Done,
    Effect,
    Graph,
    Interrupt,
    LastWriteWins,
    Paused,
    Resume,
    ResumeError,
    Runner,
    SqliteCheckpointer,
    inbox,
)
from pausegraph.checkpointers.sqlite import SCHEMA_VERSION

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _durable_flows
from test_durability import COMMAND, effects, environment, uninterrupted


def flow(
    db: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, "--sqlite", str(db), *args],
        capture_output=True, text=True, env=environment(db, env), check=False, timeout=120,
    )  # fmt: skip


def ok(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def labels(db: Path) -> list[str]:
    history = SqliteCheckpointer(db).list("orders", "r")
    assert [m.seq for m in history] == list(range(1, len(history) + 1))
    return [m.label for m in history]


def test_of_8_processes_resuming_one_paused_run_on_sqlite_exactly_one_wins(
    tmp_path: Path,
) -> None:
    db = tmp_path / "runs.db"
    assert "paused" in ok(flow(db, "step", "r"))
    pause_seq = len(labels(db))
    before = effects(db)
    gate = tmp_path / "gate"
    gate.mkdir()
    racers = [
        subprocess.Popen(
            [*COMMAND, "--sqlite", str(db), "race", "r", str(gate)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment(db),
        )
        for _ in range(8)
    ]
    while len(list(gate.glob("ready.*"))) < 8 and all(p.poll() is None for p in racers):
        threading.Event().wait(0.01)
    (gate / "start").touch()
    results = []
    for p in racers:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        results.append(json.loads(out))
    assert sorted(results) == ["conflict"] * 7 + ["won"]
    # one linear history: a single resume after the pause
    assert labels(db)[pause_seq:].count("resume") == 1
    # the winner's effects ran once: ship and audit, after the pause
    ran = effects(db) - before
    assert ran == {"ship": 1, "audit": 1}, ran
    final = ok(flow(db, "drive", "r"))
    assert final["done"] == uninterrupted()
    assert effects(db) == {"charge": 1, "ship": 1, "audit": 1}


@pytest.mark.parametrize(
    "crash",
    [
        {"PG_CRASH_STEP": "charge"},
        {"PG_CRASH_STEP": "ship"},
        {"PG_CRASH_STEP": "close"},
        {"PG_CRASH_AFTER_SAVE": "1"},
        {"PG_CRASH_AFTER_SAVE": "4"},
        {"PG_CRASH_AFTER_SAVE": "7"},
    ],
)
def test_a_run_killed_with_sigkill_on_sqlite_recovers_with_run(
    tmp_path: Path, crash: dict[str, str]
) -> None:
    db = tmp_path / "runs.db"
    first = flow(db, "drive", "r", env={**crash, "PG_CRASH_KILL": "1"})
    assert first.returncode == -signal.SIGKILL, first.stderr
    assert SqliteCheckpointer(db).holder("orders", "r") is None  # the kernel released it
    final = ok(flow(db, "drive", "r"))  # recovers through run(run_id), then answers
    assert final["done"] == uninterrupted()
    counts = effects(db)
    assert set(counts) == {"charge", "ship", "audit"}
    assert all(n <= 2 for n in counts.values()), counts
    labels(db)


def test_a_paused_run_resumes_in_another_process_on_sqlite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "runs.db"
    assert "paused" in ok(flow(db, "step", "r"))
    monkeypatch.setenv("PG_EFFECTS", str(tmp_path / "effects"))
    runner = Runner(_durable_flows.GRAPH, SqliteCheckpointer(db))
    (pending,) = runner.state("r").interrupts
    outcome = runner.resume("r", Resume(answers={pending.id: 42}))
    assert isinstance(outcome, Paused)


def test_a_file_that_is_not_a_database_is_a_corrupt_checkpoint_error_naming_it(
    tmp_path: Path,
) -> None:
    db = tmp_path / "runs.db"
    db.write_bytes(b"this is not an SQLite database, just some text" * 100)
    with pytest.raises(CorruptCheckpointError, match=rf"^{repr(str(db))!s} is not a usable "):
        SqliteCheckpointer(db)


def test_a_database_damaged_after_opening_is_a_corrupt_checkpoint_error(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    store = SqliteCheckpointer(db)
    store.close()
    with db.open("r+b") as f:  # overwrite the header's magic string
        f.write(b"garbage garbage!")
    with pytest.raises(CorruptCheckpointError, match=r"runs\.db"):
        SqliteCheckpointer(db).runs()


@pytest.mark.parametrize("column", ["frames.label", "runs.run", "runs.workflow"])
def test_an_id_or_label_that_is_not_utf8_is_a_corrupt_checkpoint_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, column: str
) -> None:
    db = tmp_path / "runs.db"
    monkeypatch.setenv("PG_EFFECTS", str(tmp_path / "effects"))
    runner = Runner(_durable_flows.GRAPH, SqliteCheckpointer(db))
    assert isinstance(runner.run("r", _durable_flows.INPUT), Paused)
    table, name = column.split(".")
    with closing(sqlite3.connect(db, isolation_level=None)) as connection:
        connection.execute(f"UPDATE {table} SET {name} = x'deadbeef'")
    store = SqliteCheckpointer(db)
    runner = Runner(_durable_flows.GRAPH, store)
    if table == "frames":
        reads = [lambda: runner.state("r"), lambda: runner.history("r")]
    else:
        reads = [store.runs, lambda: inbox(store)]
    for read in reads:
        with pytest.raises(CorruptCheckpointError, match=r"runs\.db.*bytes that are not UTF-8"):
            read()


@pytest.mark.parametrize(("into", "source"), [(1, 3), (3, 1), (2, 3)])
def test_a_frame_moved_to_another_row_is_a_corrupt_checkpoint_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, into: int, source: int
) -> None:
    # a delta where a snapshot is listed, a snapshot where a delta is, another seq's frame
    db = tmp_path / "runs.db"
    monkeypatch.setenv("PG_EFFECTS", str(tmp_path / "effects"))
    runner = Runner(_durable_flows.GRAPH, SqliteCheckpointer(db))
    assert isinstance(runner.run("r", _durable_flows.INPUT), Paused)
    with closing(sqlite3.connect(db, isolation_level=None)) as connection:
        # one run: its frames' ids are its key * 2**32 + their seqs
        query = "SELECT frame FROM frames WHERE id & 4294967295 = ?"
        (frame,) = connection.execute(query, (source,)).fetchone()
        connection.execute("UPDATE frames SET frame = ? WHERE id & 4294967295 = ?", (frame, into))
    with pytest.raises(CorruptCheckpointError, match=rf"^checkpoint {into} of run 'r' .* damaged"):
        SqliteCheckpointer(db).load("orders", "r", into)


def test_a_database_of_a_newer_schema_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    SqliteCheckpointer(db).close()
    with closing(sqlite3.connect(db, isolation_level=None)) as connection:
        connection.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(
        CheckpointError,
        match=rf"has schema version {SCHEMA_VERSION + 1}, newer than this pausegraph's "
        rf"{SCHEMA_VERSION}: upgrade pausegraph to open it$",
    ):
        SqliteCheckpointer(db)


def test_runs_are_listed_from_the_summaries_without_reading_frames(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "runs.db"
    runner = Runner(_durable_flows.GRAPH, SqliteCheckpointer(db))
    monkeypatch.setenv("PG_EFFECTS", str(tmp_path / "effects"))
    assert isinstance(runner.run("r", _durable_flows.INPUT), Paused)
    with closing(sqlite3.connect(db, isolation_level=None)) as connection:
        connection.execute("UPDATE frames SET frame = x'00'")  # no frame can decode now
    store = SqliteCheckpointer(db)
    assert [(s.run_id, s.status) for s in store.summaries(status="paused")] == [("r", "paused")]
    assert store.runs() == [("orders", "r")]
    with pytest.raises(CorruptCheckpointError, match=r"^checkpoint \d+ of run 'r' of workflow"):
        store.latest("orders", "r")


def test_an_idle_handle_holds_no_read_transaction_so_the_wal_can_be_reset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "runs.db"
    monkeypatch.setenv("PG_EFFECTS", str(tmp_path / "effects"))
    store = SqliteCheckpointer(db)
    runner = Runner(_durable_flows.GRAPH, store)
    assert isinstance(runner.run("r", _durable_flows.INPUT), Paused)
    runner.state("r")
    runner.history("r")
    store.summaries(status="paused")
    other = sqlite3.connect(db)
    try:
        # busy = 0: no reader stood in the way; the WAL was copied and emptied
        assert other.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone() == (0, 0, 0)
    finally:
        other.close()
    assert Path(f"{db}-wal").stat().st_size == 0


def test_a_writer_waits_for_another_writers_transaction_to_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "runs.db"
    monkeypatch.setenv("PG_EFFECTS", str(tmp_path / "effects"))
    runner = Runner(_durable_flows.GRAPH, SqliteCheckpointer(db))
    other = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another process writing, for a moment
    threading.Timer(0.3, lambda: other.execute("COMMIT")).start()
    try:
        assert isinstance(runner.run("r", _durable_flows.INPUT), Paused)
    finally:
        other.close()


class WalDisk:
    """What a power loss would keep of the WAL: its size at the last ``fdatasync`` of it."""

    def __init__(self, db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.wal = Path(f"{db}-wal")
        self.synced = 0
        real = os.fdatasync

        def fdatasync(fd: int) -> None:
            real(fd)
            if os.path.samestat(os.fstat(fd), self.wal.stat()):
                self.synced = os.fstat(fd).st_size

        monkeypatch.setattr(os, "fdatasync", fdatasync)

    def unsynced(self) -> int:
        """Bytes of the WAL that no ``fdatasync`` made durable."""
        return self.wal.stat().st_size - self.synced

    def power_loss(self, db: Path, into: Path) -> Path:
        """The database as a power loss now would leave it, copied to ``into``."""
        into.mkdir()
        shutil.copyfile(db, into / db.name)
        with self.wal.open("rb") as wal:
            Path(f"{into / db.name}-wal").write_bytes(wal.read(self.synced))
        return into / db.name


def test_a_power_loss_keeps_what_calls_returned_and_what_each_effect_saw_on_sqlite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``sync`` syncs the WAL itself: before an effect runs and before a call returns,
    every frame committed so far is durable, and nothing else is synced."""
    db = tmp_path / "runs.db"
    disk = WalDisk(db, monkeypatch)
    ran: list[str] = []

    def effect(name: str) -> str:
        assert disk.unsynced() == 0, f"effect {name} ran before its checkpoints were durable"
        ran.append(name)
        return name.upper()

    def work(state: Any) -> Any:
        first = yield Effect(effect, "one")
        answer = yield Interrupt({"first": first})
        return {"log": [first, answer]}

    graph = Graph("power", {"log": LastWriteWins()}).step("work", work)
    store = SqliteCheckpointer(db)
    runner = Runner(graph, store)
    assert isinstance(runner.run("r"), Paused)
    assert disk.unsynced() == 0
    done = runner.resume("r", Resume("yes"))
    assert isinstance(done, Done)
    assert disk.unsynced() == 0
    assert isinstance(runner.run("s"), Paused)
    paused = store.latest("power", "s")
    assert paused is not None
    # appended, never synced: the process dies before a call returns on it
    store.save(attrs.evolve(paused, seq=paused.seq + 1, label="lost", changes=None))
    assert disk.unsynced() > 0
    after = SqliteCheckpointer(disk.power_loss(db, tmp_path / "after"))
    assert Runner(graph, after).run("r") == done
    recovered = after.latest("power", "s")
    assert recovered is not None
    assert (recovered.seq, recovered.label) == (paused.seq, paused.label)
    assert ran == ["one", "one"]


def test_a_wal_files_directory_is_synced_once_per_file_and_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As SQLite syncs the directory of a WAL file it creates, ``sync`` syncs the WAL's
    directory the first time it syncs that file; a handle opened later in the same
    process (a cold resume) does not again, and a new WAL file (the old one removed
    when the last connection closed) is synced with its directory again."""
    db = tmp_path / "runs.db"
    dirs: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            dirs.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    graph = Graph("wal", {"log": LastWriteWins()}).step("ask", lambda s: {"log": 1})
    first = SqliteCheckpointer(db)
    Runner(graph, first).run("a")
    assert dirs == [str(tmp_path)]
    Runner(graph, first).run("b")
    second = SqliteCheckpointer(db)
    Runner(graph, second).run("c")
    assert dirs == [str(tmp_path)]  # the same WAL file: its name is durable already
    first.close()
    second.close()
    assert not Path(f"{db}-wal").exists()  # the last connection checkpointed and removed it
    open_files = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            open_files.append(os.readlink(f"/proc/self/fd/{fd}"))
    assert not [f for f in open_files if f.startswith(f"{db}-wal")]  # close() let it go
    third = SqliteCheckpointer(db)
    Runner(graph, third).run("d")
    assert dirs == [str(tmp_path)] * 2
    assert [s.run_id for s in third.summaries()] == ["a", "b", "c", "d"]


def test_a_database_opened_through_a_symbolic_link_has_its_wal_synced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite keeps the WAL beside the real database file, not beside the link:
    ``sync`` syncs that file."""
    real = tmp_path / "real"
    real.mkdir()
    (real / "runs.db").touch()  # an empty file is a new database
    db = tmp_path / "link.db"
    db.symlink_to(real / "runs.db")
    disk = WalDisk(real / "runs.db", monkeypatch)
    graph = Graph("link", {"log": LastWriteWins()}).step("ask", lambda s: {"log": 1})
    store = SqliteCheckpointer(db)  # kept: the last connection's close removes the WAL
    assert isinstance(Runner(graph, store).run("r"), Done)
    assert disk.synced > 0
    assert disk.unsynced() == 0


def test_a_sync_that_finds_no_wal_file_commits_with_full_synchronous(tmp_path: Path) -> None:
    """No WAL file where the handle looks (a path it did not foresee): ``sync`` lets
    SQLite sync whatever WAL it writes, with a commit under ``synchronous=FULL``."""
    db = tmp_path / "runs.db"
    store = SqliteCheckpointer(db)
    graph = Graph("lost", {"log": LastWriteWins()}).step("ask", lambda s: {"log": 1})
    assert isinstance(Runner(graph, store).run("r"), Done)
    done = store.latest("lost", "r")
    assert done is not None
    store.store._wal = str(tmp_path / "elsewhere.db-wal")
    statements: list[str] = []
    store.store._connection().set_trace_callback(statements.append)
    store.save(attrs.evolve(done, seq=done.seq + 1, changes=None))
    statements.clear()
    store.sync()
    assert statements[0] == "PRAGMA synchronous=FULL"
    assert "UPDATE meta SET value = value + 1 WHERE key = 'syncs'" in statements
    assert statements[-1] == "PRAGMA synchronous=NORMAL"
    latest = SqliteCheckpointer(db).latest("lost", "r")
    assert latest is not None
    assert latest.seq == done.seq + 1


def test_a_threads_connection_is_closed_when_the_thread_ends(tmp_path: Path) -> None:
    """A web server's pool ends idle threads: their connections must not pile up."""
    import gc

    def descriptors() -> int:
        opened = []
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):  # the listing's own descriptor is gone
                opened.append(os.readlink(f"/proc/self/fd/{fd}"))
        return sum(path.endswith("runs.db") for path in opened)

    store = SqliteCheckpointer(tmp_path / "runs.db")
    store.runs()  # this thread's connection
    counts = []
    for _ in range(6):
        threads = [threading.Thread(target=store.runs) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        gc.collect()
        assert len(store.store._open) == 1  # this thread's only
        counts.append(descriptors())
    # SQLite keeps a closed connection's descriptor while the process holds locks on the
    # file, and reuses it: bounded by the threads at once (8 and this one), not by the
    # threads ever had (48)
    assert max(counts) <= 9, counts


def _eio(fd: int) -> None:
    raise OSError(errno.EIO, os.strerror(errno.EIO))


def _asking_graph() -> Graph:
    def ask(state: Any) -> Any:
        answer = yield Interrupt("ok?")
        return {"log": answer}

    return (
        Graph("sync", {"log": LastWriteWins()})
        .step("ask", ask)
        .step("after", lambda s: {"log": s["log"]})
        .edge("ask", "after")
    )


def test_a_failed_sync_takes_back_what_the_call_saved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sync that fails (an fsync error) is a ``CheckpointError``, and leaves nothing of
    the call's saves readable (SPEC, Checkpoints): the paused run is as it was, a new run
    does not exist, and other runs are untouched; the call given again works."""
    store = SqliteCheckpointer(tmp_path / "runs.db")
    graph = _asking_graph()
    runner = Runner(graph, store)
    assert isinstance(runner.run("paused"), Paused)
    assert isinstance(runner.run("other"), Paused)
    before = runner.history("paused")
    listed = store.runs()
    monkeypatch.setattr(os, "fdatasync", _eio)
    with pytest.raises(CheckpointError, match=r"Input/output error.*nothing of the checkpoints"):
        runner.resume("paused", Resume(1))
    with pytest.raises(CheckpointError, match="Input/output error"):
        runner.run("new")
    monkeypatch.undo()
    for reader in (runner, Runner(graph, SqliteCheckpointer(tmp_path / "runs.db"))):
        assert reader.history("paused") == before
        assert reader.state("paused").status == "paused"
        with pytest.raises(ResumeError, match="no run"):
            reader.state("new")
    assert sorted(store.runs(), key=str) == sorted(listed, key=str)
    assert runner.resume("paused", Resume(2)) == Done({"log": 2}, 2)
    assert isinstance(runner.run("new"), Paused)
    assert not [p for p in Path(f"{tmp_path / 'runs.db'}.locks").iterdir() if "new" in p.name]


def test_handles_opening_a_new_database_together_wait_for_each_other(tmp_path: Path) -> None:
    """Turning a new database to WAL takes an exclusive lock, for which SQLite answers
    "database is locked" at once, without its busy timeout: handles (threads here,
    processes alike) that open a new store together must wait for each other instead."""
    for n in range(20):
        path = tmp_path / f"s{n}.db"
        barrier = threading.Barrier(4)
        errors: list[BaseException] = []

        def open_it(
            path: Path = path,
            barrier: threading.Barrier = barrier,
            errors: list[BaseException] = errors,
        ) -> None:
            barrier.wait()
            try:
                SqliteCheckpointer(path).close()
            except BaseException as exc:  # what the test reports
                errors.append(exc)

        threads = [threading.Thread(target=open_it) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
