"""A SQLite store never opens its database file behind SQLite's back.

POSIX record locks belong to a process and a file, not to a descriptor:
closing *any* descriptor of the database file drops every lock the process
holds on it, SQLite's included. In WAL mode each connection keeps a shared
lock on the database file for as long as it is open, and a connection that
closes checkpoints the WAL and deletes it when it can take an exclusive lock,
that is when it thinks it is the last one. A second handle that read the
file's header with ``open()``/``close()`` dropped the first handle's lock,
so another process's connection, closing, deleted the WAL the first handle
was still writing to: what it saved next was lost.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from pausegraph import Graph, LastWriteWins, Runner, SqliteCheckpointer, open_checkpointer
from pausegraph.checkpointers._open import is_sqlite_file
from pausegraph.errors import CheckpointError


def _graph() -> Graph:
    return Graph("g", {"n": LastWriteWins()}).step("s", lambda state: {"n": 1})


def _connect_and_close(path: Path) -> None:
    """Another process opens the database, reads it and closes its connection."""
    code = (
        "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
        "c.execute('select count(*) from sqlite_master').fetchall(); c.close()"
    )
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, timeout=60)


def test_a_second_handle_keeps_the_first_handles_wal(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    first = SqliteCheckpointer(db)
    runner = Runner(_graph(), first)
    runner.run("one", {"n": 0})
    SqliteCheckpointer(db)  # a second handle on the same file, in this process
    _connect_and_close(db)
    assert Path(f"{db}-wal").exists(), "another process deleted the WAL in use here"
    runner.run("two", {"n": 0})
    first.close()
    again = SqliteCheckpointer(db)
    assert again.latest("g", "one") is not None
    assert again.latest("g", "two") is not None


def test_asking_whether_a_file_is_sqlite_keeps_the_locks(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    first = SqliteCheckpointer(db)
    runner = Runner(_graph(), first)
    runner.run("one", {"n": 0})
    assert is_sqlite_file(str(db))
    # a bare path to a database file: refused, with a hint, and no lock dropped
    with pytest.raises(CheckpointError, match="open it as 'sqlite:"):
        open_checkpointer(str(db))
    _connect_and_close(db)
    assert Path(f"{db}-wal").exists()
    runner.run("two", {"n": 0})
    first.close()
    assert SqliteCheckpointer(db).latest("g", "two") is not None


def test_is_sqlite_file_answers_as_the_header_does(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()
    text = tmp_path / "flow.py"
    text.write_text("print('hi')\n" * 20)
    db = tmp_path / "real.db"
    sqlite3.connect(db).execute("create table t (x)").connection.close()
    assert not is_sqlite_file(str(empty))
    assert not is_sqlite_file(str(text))
    assert not is_sqlite_file(str(tmp_path / "missing.db"))
    assert is_sqlite_file(str(db))
    assert text.read_text() == "print('hi')\n" * 20
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.db", "flow.py", "real.db"]
