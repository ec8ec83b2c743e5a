"""``open_checkpointer(url)``, ``--store URL``, and the store-only commands of the CLI.

The command is called in process (``pausegraph.cli.main``): these commands
read and write the store alone, so no subprocess is needed to pin them.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from pausegraph import (
    CheckpointError,
    FileCheckpointer,
    MemoryCheckpointer,
    Runner,
    SqliteCheckpointer,
    open_checkpointer,
)
from pausegraph.checkpointers._open import parse_store_url
from pausegraph.cli import load_graph, main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
EXPENSE = f"{EXAMPLES}/expense.py:graph"
REVIEW = f"{EXAMPLES}/review.py:graph"

FORMS = "'memory:', a directory path, 'file:PATH', 'sqlite:PATH' or 'postgresql://...'"


# --- open_checkpointer --------------------------------------------------------------


def test_memory_url_opens_a_fresh_memory_store() -> None:
    assert isinstance(open_checkpointer("memory:"), MemoryCheckpointer)


@pytest.mark.parametrize("form", ["{path}", "file:{path}", "file://{path}"])
def test_a_directory_or_file_url_opens_a_file_store(tmp_path: Path, form: str) -> None:
    store = open_checkpointer(form.format(path=tmp_path / "runs"))
    assert isinstance(store, FileCheckpointer)
    assert store.root == tmp_path / "runs"


@pytest.mark.parametrize("scheme", ["file", "sqlite"])
def test_a_file_or_sqlite_url_is_read_as_a_url(tmp_path: Path, scheme: str) -> None:
    # file://localhost/abs and percent-escapes mean what they mean in a URL (RFC 8089)
    where = tmp_path / "my runs"
    quoted = str(where).replace(" ", "%20")
    assert parse_store_url(f"{scheme}://localhost{quoted}").target == str(where)
    assert parse_store_url(f"{scheme}://{quoted}").target == str(where)
    assert parse_store_url(f"{scheme}:{quoted}").target == quoted  # a path, as written
    with pytest.raises(CheckpointError, match=r"names the host 'runs': .* on this machine"):
        open_checkpointer(f"{scheme}://runs/x")
    with pytest.raises(CheckpointError, match=r"a query or a fragment"):
        open_checkpointer(f"{scheme}://{tmp_path}/x.db?mode=ro")
    assert parse_store_url(f"{scheme}://{tmp_path}/a%3Fb").target == f"{tmp_path}/a?b"
    assert not (Path.cwd() / "runs").exists()


def test_sqlite_url_opens_a_sqlite_store(tmp_path: Path) -> None:
    store = open_checkpointer(f"sqlite:{tmp_path / 'runs.db'}")
    assert isinstance(store, SqliteCheckpointer)


def test_postgresql_url_without_psycopg_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg: ImportError
    with pytest.raises(
        CheckpointError,
        match=r"^store URL 'postgresql://db/runs': PostgreSQL stores need psycopg 3: "
        r"`pip install 'pausegraph\[postgres\]'`$",
    ):
        open_checkpointer("postgresql://db/runs")


@pytest.mark.parametrize("url", ["redis://x", "s3:bucket", "memory:x"])
def test_an_unknown_url_names_the_accepted_forms(url: str) -> None:
    with pytest.raises(CheckpointError) as caught:
        open_checkpointer(url)
    assert FORMS in str(caught.value)
    assert repr(url) in str(caught.value)


@pytest.mark.parametrize("url", ["", "file:", "sqlite:"])
def test_a_url_without_a_target_is_refused(url: str) -> None:
    with pytest.raises(CheckpointError):
        open_checkpointer(url)


# --- the command line ----------------------------------------------------------------


def cli(capsys: pytest.CaptureFixture[str], *args: str, code: int = 0) -> str:
    got = main(list(args))
    out, err = capsys.readouterr()
    assert got == code, err
    if code == 0:
        assert err == "" or "no runs" in err or "nothing waits" in err
        return out
    return err


def cli_json(capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    return json.loads(cli(capsys, *args, "--json"))


@pytest.fixture
def populated(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """A file store with expense e1 paused, review r1 paused on two, expense e2 done."""
    store = str(tmp_path / "store")
    cli(capsys, "--store", store, "run", EXPENSE, "--run-id", "e1", "--input",
        '{"employee": "ada", "amount": 500}')  # fmt: skip
    cli(capsys, "--store", store, "run", REVIEW, "--run-id", "r1", "--input",
        '{"document": "memo"}')  # fmt: skip
    cli(capsys, "--store", store, "run", EXPENSE, "--run-id", "e2", "--input",
        '{"employee": "bob", "amount": 5}')  # fmt: skip
    return store


def test_store_takes_a_file_url(populated: str, capsys: pytest.CaptureFixture[str]) -> None:
    runs = cli_json(capsys, "--store", f"file:{populated}", "runs")
    assert sorted(r["run_id"] for r in runs) == ["e1", "e2", "r1"]


def test_store_takes_memory_which_holds_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_json(capsys, "--store", "memory:", "runs") == []
    assert cli_json(capsys, "--store", "memory:", "inbox") == []


def test_store_takes_a_sqlite_url(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = f"sqlite:{tmp_path / 'runs.db'}"
    cli(capsys, "--store", store, "run", REVIEW, "--run-id", "r1", "--input", '{"document": "m"}')
    assert [w["run_id"] for w in cli_json(capsys, "--store", store, "inbox")] == ["r1", "r1"]


def test_a_bad_store_url_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    err = cli(capsys, "--store", "redis://x", "runs", code=1)
    assert err.startswith("pausegraph: error: CheckpointError: unknown store URL 'redis://x'")
    assert len(err.splitlines()) == 1
    monkeypatch.setitem(sys.modules, "psycopg", None)  # without the postgres extra
    err = cli(capsys, "--store", "postgresql://db", "inbox", code=1)
    assert "pip install 'pausegraph[postgres]'" in err


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:secretpw@[bad/db",
        "postgresql://u:secret%ZZpw@127.0.0.1/db",
        'postgresql://u:ab"secret@[::1/db',  # a quote in the password
        "postgresql://u:p@secret@127.0.0.1/db",  # an unencoded '@': read as part of the host
        "postgresql://u:p/secret@127.0.0.1/db",  # an unencoded '/': read as the path
    ],
)
def test_a_postgresql_url_libpq_cannot_read_is_refused_without_its_password(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("psycopg")
    with pytest.raises(CheckpointError, match="cannot be read") as refused:
        open_checkpointer(url)
    assert "secret" not in str(refused.value)
    assert main(["--store", url, "runs"]) == 1
    err = capsys.readouterr().err
    assert "cannot be read" in err
    assert "secret" not in err


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:p@127.0.0.1:9/db?application_name=me@host",
        "postgresql://127.0.0.1:9/db?user=u&password=pa@ss",
        "postgresql:///db?host=/nowhere&user=me@corp",
    ],
)
def test_a_postgresql_url_with_an_at_in_its_query_is_read(url: str) -> None:
    pytest.importorskip("psycopg")
    with pytest.raises(CheckpointError) as refused:  # nothing listens there: it is read, then
        open_checkpointer(url)
    assert "cannot connect" in str(refused.value)
    assert "cannot be read" not in str(refused.value)


def test_runs_filters_by_status_and_workflow(
    populated: str, capsys: pytest.CaptureFixture[str]
) -> None:
    def ids(*args: str) -> list[str]:
        return [r["run_id"] for r in cli_json(capsys, "--store", populated, "runs", *args)]

    assert ids() == ["e1", "e2", "r1"]
    assert ids("--status", "paused") == ["e1", "r1"]
    assert ids("--status", "done") == ["e2"]
    assert ids("--workflow", "review") == ["r1"]
    assert ids("--status", "paused", "--workflow", "expense") == ["e1"]
    assert ids("--status", "running") == []
    text = cli(capsys, "--store", populated, "runs", "--status", "paused")
    assert text.splitlines()[0].split() == [
        "WORKFLOW", "RUN", "STATUS", "SUPER-STEP", "LAST", "CHECKPOINT", "WAITS", "FOR",
    ]  # fmt: skip


def test_runs_says_running_for_a_queued_run_a_live_process_holds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = FileCheckpointer(tmp_path / "store")
    Runner(load_graph(EXPENSE), store).start("q", {"employee": "ada", "amount": 5})
    where = str(tmp_path / "store")
    assert [r["status"] for r in cli_json(capsys, "--store", where, "runs")] == ["queued"]
    with store.lock("expense", "q"):
        runs = cli_json(capsys, "--store", where, "runs", "--status", "running")
    assert [r["run_id"] for r in runs] == ["q"]


def test_inbox_lists_each_waiting_interrupt(
    populated: str, capsys: pytest.CaptureFixture[str]
) -> None:
    waiting = cli_json(capsys, "--store", populated, "inbox")
    assert [(w["workflow"], w["run_id"]) for w in waiting] == [
        ("expense", "e1"), ("review", "r1"), ("review", "r1"),
    ]  # fmt: skip
    assert set(waiting[0]) == {
        "workflow", "run_id", "id", "step_id", "payload", "since_ms", "deadline_ms",
    }  # fmt: skip
    assert waiting[0]["payload"]["employee"] == "ada"
    only = cli_json(capsys, "--store", populated, "inbox", "--workflow", "review")
    assert [w["run_id"] for w in only] == ["r1", "r1"]
    text = cli(capsys, "--store", populated, "inbox")
    assert text.splitlines()[0].split()[:3] == ["SINCE", "(UTC)", "WORKFLOW"]
    assert len(text.splitlines()) == 4


def test_inbox_on_a_missing_store_lists_nothing_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_json(capsys, "--store", str(tmp_path / "none"), "inbox") == []
    assert not (tmp_path / "none").exists()


def test_cancel_ends_a_paused_run_without_its_workflow(
    populated: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = cli(capsys, "--store", populated, "cancel", "e1", "--reason", "duplicate")
    assert out == "run e1 of workflow 'expense' is cancelled\n"
    assert cli_json(capsys, "--store", populated, "show", "e1")["status"] == "cancelled"
    err = cli(capsys, "--store", populated, "cancel", "e1", code=1)
    assert "is cancelled: there is nothing to cancel" in err
    err = cli(capsys, "--store", populated, "cancel", "nosuchrun", code=1)
    assert "no run 'nosuchrun'" in err


def test_delete_removes_a_run(populated: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(capsys, "--store", populated, "delete", "e2") == (
        "run e2 of workflow 'expense' is deleted\n"
    )
    assert [r["run_id"] for r in cli_json(capsys, "--store", populated, "runs")] == ["e1", "r1"]


def test_delete_refuses_a_run_a_live_process_holds(
    populated: str, capsys: pytest.CaptureFixture[str]
) -> None:
    holder = FileCheckpointer(populated)
    with holder.lock("expense", "e1"):
        err = cli(capsys, "--store", populated, "delete", "e1", code=1)
    assert err.startswith("pausegraph: error: ConflictError")


def test_prune_deletes_old_finished_runs_and_says_how_many(
    populated: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cli(capsys, "--store", populated, "cancel", "r1")
    out = cli(capsys, "--store", populated, "prune", "--finished-before", "1")
    assert out.startswith("deleted 0 run(s)")
    out = cli(capsys, "--store", populated, "prune", "--finished-before", "0")
    assert out.startswith("deleted 2 run(s)")
    assert [r["run_id"] for r in cli_json(capsys, "--store", populated, "runs")] == ["e1"]


@pytest.mark.parametrize("days", ["-1", "nan", "inf", "1e308", "99999999999999999999", "36526"])
def test_prune_refuses_an_age_out_of_range_and_deletes_nothing(
    populated: str, capsys: pytest.CaptureFixture[str], days: str
) -> None:
    cli(capsys, "--store", populated, "cancel", "r1")
    err = cli(capsys, "--store", populated, "prune", f"--finished-before={days}", code=2)
    assert "--finished-before takes a number of days from 0 to 36525 (100 years)" in err
    assert "bug" not in err
    assert len(cli_json(capsys, "--store", populated, "runs")) == 3


def test_prune_takes_100_years(populated: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = cli(capsys, "--store", populated, "prune", "--finished-before", "36525")
    assert out.startswith("deleted 0 run(s) finished before 1926-")


WITH_EFFECT = """
    from pausegraph import Effect, Graph, Interrupt, LastWriteWins

    def price(item):
        return {"item": item, "price": 42}

    def buy(state):
        quote = yield Effect(price, state["item"])
        answer = yield Interrupt({"pay": quote["price"]})
        return {"paid": answer}

    graph = Graph("shop", {"item": LastWriteWins(), "paid": LastWriteWins()}).step("buy", buy)
"""


def test_show_and_history_tell_who_answered_what(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flow = tmp_path / "shopflow.py"
    flow.write_text(textwrap.dedent(WITH_EFFECT))
    store = str(tmp_path / "store")
    spec = f"{flow}:graph"
    cli(capsys, "--store", store, "run", spec, "--run-id", "s1", "--input", '{"item": "tea"}')
    shown = cli(capsys, "--store", store, "show", "s1")
    assert "journal of the layer under way" in shown
    assert "price" in shown
    assert "(pending)" in shown
    cli(capsys, "--store", store, "resume", spec, "s1", "--value", '"grace"')
    history = cli_json(capsys, "--store", store, "history", "s1")
    recorded = {h["label"]: h["recorded"] for h in history}
    assert recorded["effect:buy"]["result"] == {"item": "tea", "price": 42}
    [answers] = [h["recorded"]["answers"] for h in history if h["label"] == "resume"]
    assert list(answers.values()) == ["grace"]
    text = cli(capsys, "--store", store, "history", "s1")
    assert "answered " in text
    assert '"grace"' in text
    assert "returned" in text


def test_open_checkpointer_takes_a_path_object(tmp_path: Path) -> None:
    """SPEC: a directory path opens a file store; pytest's tmp_path is a pathlib.Path."""
    store = open_checkpointer(tmp_path / "runs")
    assert isinstance(store, FileCheckpointer)
    assert (tmp_path / "runs").is_dir()
    (tmp_path / "note").write_text("a")  # one byte of text: a file, not a SQLite database
    with pytest.raises(CheckpointError, match=r"is a file, not a store directory"):
        open_checkpointer(tmp_path / "note")
    with pytest.raises(CheckpointError, match=r"is a file, not a store directory"):
        open_checkpointer(str(tmp_path / "note"))


@pytest.mark.parametrize(
    "url",
    [
        "host=db dbname=app password=S3cr3t",
        "  dbname=app user=me",
        "service=app",
        "user=me password='S3cr3t' host=db",
        "client_encoding=UTF8 host=db user=app password=S3cr3t",  # any keyword, anywhere
        "sslpassword=S3cr3t host=db",
        "\nkeepalives=1 host=db",
    ],
)
def test_a_postgresql_keyword_conninfo_is_refused_not_made_a_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], url: str
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match=r"write a PostgreSQL store as postgresql://") as e:
        open_checkpointer(url)
    assert "S3cr3t" not in str(e.value)
    assert main(["--store", url, "runs"]) == 1
    assert "S3cr3t" not in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # no directory named after it, password and all


@pytest.mark.parametrize("path", ["./host=x", "data/host=x", "my dir=1", "HOST=x"])
def test_a_directory_path_holding_an_equals_sign_is_still_a_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    monkeypatch.chdir(tmp_path)
    assert parse_store_url(path).kind == "file"
