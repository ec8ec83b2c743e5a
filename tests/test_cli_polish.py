"""What the ``pausegraph`` command prints about its store: no passwords, clear mistakes.

A PostgreSQL store's password never reaches the terminal or a log: messages
show it as ``***``, and the ``go on with:`` commands leave it out (libpq
reads it from ``PGPASSWORD`` or ``~/.pgpass``). A ``--store`` naming the
wrong kind of file says what to write instead.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from pausegraph import (
    CheckpointError,
    CorruptCheckpointError,
    FileCheckpointer,
    ResumeError,
    Runner,
    SqliteCheckpointer,
)
from pausegraph.checkpointers._open import (
    describe_url,
    has_password,
    open_checkpointer,
    parse_store_url,
    redact_url,
)
from pausegraph.cli import load_graph, main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
EXPENSE = f"{EXAMPLES}/expense.py:graph"
SECRET = "s3cr3t-Pw"


def cli(capsys: pytest.CaptureFixture[str], *args: str, code: int = 0) -> tuple[str, str]:
    got = main(list(args))
    out, err = capsys.readouterr()
    assert got == code, err
    return out, err


# --- the redaction helpers ---------------------------------------------------------


def test_redact_url_stars_the_password_and_keeps_the_rest() -> None:
    url = f"postgresql://app:{SECRET}@db.example:5433/runs?options=-csearch_path%3Dtenant_a"
    assert redact_url(url) == (
        "postgresql://app:***@db.example:5433/runs?options=-csearch_path%3Dtenant_a"
    )
    assert describe_url(url) == (
        "postgresql://app@db.example:5433/runs?options=-csearch_path%3Dtenant_a"
    )
    assert has_password(url)


@pytest.mark.parametrize("typed", ["p@{}", "p/{}", "{}:x"])
def test_a_password_holding_an_unencoded_at_or_slash_is_hidden_whole(typed: str) -> None:
    url = f"postgresql://app:{typed.format(SECRET)}@db/runs"
    assert redact_url(url) == "postgresql://app:***@db/runs"
    assert SECRET not in describe_url(url)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            f"postgresql://app:{SECRET}@db/runs?application_name=me@host",
            "postgresql://app:***@db/runs?application_name=me@host",
        ),
        ("postgresql:///runs?host=/tmp&user=me@corp", "postgresql:///runs?host=/tmp&user=me@corp"),
        (f"postgresql+psycopg://app:{SECRET}@db/runs", "postgresql+psycopg://app:***@db/runs"),
    ],
)
def test_an_at_in_the_query_or_another_scheme_is_shown_rightly(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_a_password_parameter_is_hidden_too() -> None:
    url = f"postgres://app@db/runs?password={SECRET}&sslmode=require"
    assert redact_url(url) == "postgres://app@db/runs?password=***&sslmode=require"
    assert describe_url(url) == "postgres://app@db/runs?sslmode=require"
    assert describe_url(f"postgres://app@db/runs?password={SECRET}") == "postgres://app@db/runs"


@pytest.mark.parametrize(
    "url", ["postgresql://app@db/runs", "runs", "sqlite:a:b@c.db", "file:x?password=y"]
)
def test_urls_without_a_postgres_password_are_shown_as_they_are(url: str) -> None:
    assert redact_url(url) == url
    assert describe_url(url) == url
    assert not has_password(url)


# --- PostgreSQL stores on the command line --------------------------------------------


def pausegraph(*args: str, code: int = 0, **env: str) -> tuple[str, str]:
    """Run the command in a child process (its PostgreSQL connections end with it)."""
    done = subprocess.run(
        [str(Path(sys.executable).parent / "pausegraph"), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == code, done.stderr
    return done.stdout, done.stderr


def password_of(url: str) -> str:
    userinfo = url.split("://", 1)[1].split("@", 1)[0]
    assert ":" in userinfo, "PAUSEGRAPH_TEST_POSTGRES must hold a password for these tests"
    return userinfo.split(":", 1)[1]


def test_show_of_an_unknown_run_stars_the_password(postgres: Any) -> None:
    url: str = postgres.url
    password = password_of(url)
    _, err = pausegraph("--store", url, "show", "nosuch", code=1)
    assert f":{password}@" not in err
    assert f"in {redact_url(url)!r}" in err
    assert f"options=-c%20search_path%3D{postgres.schema}" in err  # the schema shows


def test_the_go_on_with_command_leaves_the_password_to_pgpassword(postgres: Any) -> None:
    url: str = postgres.url
    password = password_of(url)
    out, err = pausegraph(
        "--store", url, "run", EXPENSE, "--run-id", "e1",
        "--input", '{"employee": "ada", "amount": 500}',
    )  # fmt: skip
    assert f":{password}@" not in out + err
    (hint,) = [line for line in out.splitlines() if "go on with:" in line]
    assert f"--store {shlex.quote(describe_url(url))} resume" in hint
    assert err.count("PGPASSWORD") == 1  # the note, once
    # the command shown works as it is, the password coming from the environment
    words = shlex.split(hint.split("go on with:", 1)[1])
    assert words[0] == "pausegraph"
    answer = '{"approved": true, "by": "grace"}'
    words = [answer if w == "JSON" else w.replace("=JSON", f"={answer}") for w in words[1:]]
    pausegraph(*words, code=1, PGPASSWORD="wrong")  # the password does come from there
    out, err = pausegraph(*words, PGPASSWORD=password)
    assert "paused" in out or "done" in out, out + err


FAILING = """
from pausegraph import Graph, LastWriteWins

def pay(state):
    raise ValueError("card declined")

graph = Graph("failing", {"paid": LastWriteWins()}).step("pay", pay)
"""


def test_a_failed_step_is_one_line_even_when_the_password_is_left_out(
    postgres: Any, tmp_path: Path
) -> None:
    # SPEC, Command line: a step that raises prints one line naming the run, the step
    # and the error; the note on the password joins that line instead of preceding it
    (tmp_path / "failing.py").write_text(FAILING)
    spec = f"{tmp_path}/failing.py:graph"
    url: str = postgres.url
    for quiet in ([], ["-q"]):
        run_id = f"f{len(quiet)}"
        out, err = pausegraph(*quiet, "--store", url, "run", spec, "--run-id", run_id, code=1)
        (line,) = err.splitlines()
        assert f"run {run_id!r} of workflow 'failing' failed: " in line
        assert "ValueError: " in line
        assert "card declined" in line
        assert line.endswith(
            "retries it; it leaves the store's password out: set PGPASSWORD or put it in ~/.pgpass)"
        )
        assert f":{password_of(url)}@" not in out + err


def test_a_store_without_password_gets_no_note(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = str(tmp_path / "runs")
    out, err = cli(
        capsys, "--store", store, "run", EXPENSE, "--run-id", "e1",
        "--input", '{"employee": "ada", "amount": 500}',
    )  # fmt: skip
    assert f"--store {store} resume" in out
    assert "PGPASSWORD" not in err


def test_the_worker_banner_stars_the_password(postgres: Any, tmp_path: Path) -> None:
    url: str = postgres.url
    log = tmp_path / "worker.err"
    pg = str(Path(sys.executable).parent / "pausegraph")
    password = password_of(url)
    with log.open("wb") as err:
        worker = subprocess.Popen(
            [pg, "--store", url, "worker", EXPENSE], stdout=subprocess.DEVNULL, stderr=err
        )
    try:
        deadline = time.monotonic() + 60
        while "serving" not in log.read_text():
            assert worker.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the worker never said it serves"
            time.sleep(0.05)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
    text = log.read_text()
    assert f"from {redact_url(url)};" in text
    assert f":{password}@" not in text


def test_store_help_names_postgresql_on_every_command(
    capsys: pytest.CaptureFixture[str],
) -> None:
    commands = ["run", "resume", "runs", "show", "history", "inbox", "tick", "worker"]
    commands += ["serve", "cancel", "delete", "prune"]
    for command in [None, *commands]:
        assert main(["--help"] if command is None else [command, "--help"]) == 0
        out, _ = capsys.readouterr()
        assert "postgresql://" in " ".join(out.split()), command


# --- --store naming the wrong file ---------------------------------------------------


def test_a_sqlite_file_without_sqlite_prefix_says_write_sqlite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "s.db"
    SqliteCheckpointer(db).close()
    for command in (["runs"], ["run", EXPENSE, "--input", '{"employee": "a", "amount": 5}']):
        _, err = cli(capsys, "--store", str(db), *command, code=1)
        assert err == (
            f"pausegraph: error: --store {str(db)!r} is a SQLite database, not a store "
            f"directory: write --store sqlite:{db}\n"
        )
    with pytest.raises(CheckpointError, match=r"is a SQLite database, not a store directory"):
        open_checkpointer(str(db))


def test_another_file_as_a_store_directory_says_it_is_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flow = tmp_path / "flow.py"
    flow.write_text("print('hi')\n")
    _, err = cli(capsys, "--store", str(flow), "runs", code=1)
    assert f"--store {str(flow)!r} is a file, not a store directory" in err
    assert "sqlite:PATH for a SQLite database" in err
    with pytest.raises(CheckpointError, match=r"is a file, not a store directory"):
        open_checkpointer(f"file:{flow}")


def test_sqlite_on_a_file_that_is_no_database_says_so_not_restore(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flow = tmp_path / "flow.py"
    flow.write_text("print('hi')\n" * 20)
    _, err = cli(capsys, "--store", f"sqlite:{flow}", "runs", code=1)
    assert "is not a SQLite database" in err
    assert "Restore" not in err
    assert "backup" not in err
    with pytest.raises(CorruptCheckpointError, match=r"is not a SQLite database"):
        SqliteCheckpointer(flow)
    assert not Path(f"{flow}.locks").exists()  # nothing made beside it
    assert flow.read_text() == "print('hi')\n" * 20


def test_an_empty_file_is_still_a_new_sqlite_database(tmp_path: Path) -> None:
    db = tmp_path / "new.db"
    db.touch()
    store = SqliteCheckpointer(db)
    assert store.store.runs() == []
    store.close()


@pytest.mark.parametrize("form", ["sqlite:~/x.db", "file:~/runs", "~/runs"])
def test_a_tilde_in_a_store_path_is_the_home_directory(
    form: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    assert parse_store_url(form).target == str(home / form.split("~/", 1)[1])
    cli(capsys, "--store", form, "run", EXPENSE, "--input", '{"employee": "a", "amount": 5}')
    assert not (tmp_path / "~").exists()
    assert (home / form.split("~/", 1)[1]).exists()


# --- runs --status with nothing found ---------------------------------------------------


def test_runs_with_a_status_and_none_found_names_the_status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = str(tmp_path / "runs")
    cli(capsys, "--store", store, "run", EXPENSE, "--input", '{"employee": "a", "amount": 5}')
    _, err = cli(capsys, "--store", store, "runs", "--status", "queued")
    assert err == f"no queued runs in {store}\n"
    _, err = cli(capsys, "--store", store, "runs", "--status", "paused", "--workflow", "expense")
    assert err == f"no paused runs of workflow 'expense' in {store}\n"
    _, err = cli(capsys, "--store", store, "runs", "--workflow", "nosuch")
    assert err == f"no runs of workflow 'nosuch' in {store}\n"
    _, err = cli(capsys, "--store", str(tmp_path / "empty"), "runs")
    assert err == f"no runs in {tmp_path / 'empty'}\n"


# --- a damaged run -------------------------------------------------------------------


def _expense_runs(tmp_path: Path, *run_ids: str) -> Path:
    """A file store under ``tmp_path`` with a paused expense run for each id; its path."""
    store = tmp_path / "s"
    runner = Runner(load_graph(EXPENSE), FileCheckpointer(store))
    for run_id in run_ids:
        runner.run(run_id, {"employee": "ann", "amount": 10})
    return store


def _damage_log_of(store: Path, run_id: str) -> None:
    (log,) = [p for p in (store / "runs").glob("*.log") if run_id.encode() in p.read_bytes()]
    data = bytearray(log.read_bytes())
    data[-3] ^= 0xFF  # the last record's frame: its checksum fails
    log.write_bytes(bytes(data))


def test_show_of_a_damaged_run_says_it_is_damaged_once_a_listing_left_it_out(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # SPEC Checkpoints: a damaged record a read needs is a CorruptCheckpointError naming
    # the file, never a wrong state: not "no run" once a listing has set the log apart
    store = _expense_runs(tmp_path, "good", "bad")
    _damage_log_of(store, "bad")
    assert [r for _, r in FileCheckpointer(store).runs()] == ["good"]  # set apart
    _, err = cli(capsys, "show", "bad", "--store", str(store), code=1)
    assert "is corrupt" in err
    assert ".log" in err
    # with no run of its workflow left to tell its name, the message says where to look
    Runner(load_graph(EXPENSE), FileCheckpointer(store)).delete("good")
    _, err = cli(capsys, "show", "bad", "--store", str(store), code=1)
    assert "no run 'bad'" in err
    assert "1 damaged log(s)" in err
    assert "--workflow" in err


def test_a_damaged_run_can_be_deleted(tmp_path: Path) -> None:
    store = _expense_runs(tmp_path, "bad")
    _damage_log_of(store, "bad")
    with pytest.raises(CorruptCheckpointError):
        Runner(load_graph(EXPENSE), FileCheckpointer(store)).state("bad")
    Runner(load_graph(EXPENSE), FileCheckpointer(store)).delete("bad")
    with pytest.raises(ResumeError, match="no run"):
        Runner(load_graph(EXPENSE), FileCheckpointer(store)).state("bad")
    assert list((store / "runs").glob("*.log")) == []


@pytest.mark.parametrize("named", [False, True])
def test_pausegraph_delete_deletes_a_damaged_run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, named: bool
) -> None:
    store = _expense_runs(tmp_path, "good", "bad")
    _damage_log_of(store, "bad")
    FileCheckpointer(store).runs()  # a listing sets it apart
    workflow = ["--workflow", "expense"] if named else []
    out, _ = cli(capsys, "delete", "bad", *workflow, "--store", str(store))
    assert "is deleted" in out
    assert [r for _, r in FileCheckpointer(store).runs()] == ["good"]
    assert len(list((store / "runs").glob("*.log"))) == 1


def test_store_and_input_mistakes_are_said_in_command_line_terms(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # SPEC Command line: errors in the command's own terms, not Python calls
    _, err = cli(capsys, "--store", "", "runs", code=1)
    assert "--store takes 'memory:'" in err
    assert "open_checkpointer" not in err
    if hasattr(sys, "get_int_max_str_digits"):  # Python 3.11+ refuses long integer text
        big = "9" * (sys.get_int_max_str_digits() + 1)
        _, err = cli(
            capsys, "--store", str(tmp_path), "run", EXPENSE, "--input", f'{{"amount": {big}}}',
            code=2,
        )  # fmt: skip
        assert "an integer of more than" in err
        assert "sys.set_int_max_str_digits" not in err
