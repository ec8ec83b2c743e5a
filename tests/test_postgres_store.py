"""The PostgreSQL store across processes: racing resumers, killed lock holders, poolers.

The workflow is ``tests/_durable_flows.py``'s, run in real subprocesses by its
``--sqlite`` driver with ``PostgresCheckpointer`` in place of
``SqliteCheckpointer`` (ROOT is then the store's URL). Every test gets a fresh
schema from the ``postgres`` fixture (``tests/conftest.py``), which skips
without ``PAUSEGRAPH_TEST_POSTGRES`` and fails if it is set and the server is
down.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from conftest import PostgresSchema

from pausegraph import (
    CheckpointError,
    ConflictError,
    Done,
    Effect,
    Graph,
    LastWriteWins,
    PostgresCheckpointer,
    ResumeError,
    Runner,
    Status,
    open_checkpointer,
)
from pausegraph.checkpointers import FrameInfo, RunSummary
from pausegraph.checkpointers.postgres import SCHEMA_VERSION

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _durable_flows
from test_durability import effects, environment, uninterrupted

COMMAND = [
    sys.executable,
    "-c",
    "import sys, _durable_flows, pausegraph; "
    "_durable_flows.SqliteCheckpointer = pausegraph.PostgresCheckpointer; "
    "_durable_flows.main(['--sqlite', *sys.argv[1:]])",
]

HOLD = """
import sys, time
from pausegraph import PostgresCheckpointer
store = PostgresCheckpointer(sys.argv[1])
with store.lock("orders", "r"):
    print("held", flush=True)
    time.sleep(600)
"""


def flow(
    pg: PostgresSchema, tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, pg.url, *args],
        capture_output=True, text=True, env=environment(tmp_path / "db", env), check=False,
        timeout=120,
    )  # fmt: skip


def ok(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def labels(pg: PostgresSchema) -> list[str]:
    history = pg.checkpointer().list("orders", "r")
    assert [m.seq for m in history] == list(range(1, len(history) + 1))
    return [m.label for m in history]


def test_of_8_processes_resuming_one_paused_run_on_postgres_exactly_one_wins(
    postgres: PostgresSchema, tmp_path: Path
) -> None:
    assert "paused" in ok(flow(postgres, tmp_path, "step", "r"))
    pause_seq = len(labels(postgres))
    before = effects(tmp_path / "db")
    gate = tmp_path / "gate"
    gate.mkdir()
    racers = [
        subprocess.Popen(
            [*COMMAND, postgres.url, "race", "r", str(gate)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment(tmp_path / "db"),
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
    assert labels(postgres)[pause_seq:].count("resume") == 1
    # the winner's effects ran once: ship and audit, after the pause
    ran = effects(tmp_path / "db") - before
    assert ran == {"ship": 1, "audit": 1}, ran
    final = ok(flow(postgres, tmp_path, "drive", "r"))
    assert final["done"] == uninterrupted()
    assert effects(tmp_path / "db") == {"charge": 1, "ship": 1, "audit": 1}


def _wait_for(predicate: Any, what: str, seconds: float = 30) -> None:
    end = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_a_lock_holder_killed_with_sigkill_releases_the_lock_and_the_run_is_queued(
    postgres: PostgresSchema, tmp_path: Path
) -> None:
    runner = Runner(_durable_flows.GRAPH, postgres.checkpointer())
    assert runner.start("r", _durable_flows.INPUT).status is Status.QUEUED
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, postgres.url],
        stdout=subprocess.PIPE,
        text=True,
        env=environment(tmp_path / "db"),
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "held\n"
        assert runner.state("r").status is Status.RUNNING
        who = runner.checkpointer.holder("orders", "r")
        assert who is not None
        assert who.pid == holder.pid
        with pytest.raises(ConflictError, match=rf" is running: process {holder.pid} on host "):
            runner.run("r")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(60)
        if holder.stdout is not None:
            holder.stdout.close()
    assert holder.returncode == -signal.SIGKILL
    # the kernel closes the socket; the server ends the session and its locks
    _wait_for(lambda: runner.state("r").status is Status.QUEUED, "the run to be queued")
    assert runner.checkpointer.holder("orders", "r") is None
    with runner.checkpointer.lock("orders", "r"):
        assert runner.state("r").status is Status.RUNNING


@pytest.mark.parametrize("crash", [{"PG_CRASH_STEP": "ship"}, {"PG_CRASH_AFTER_SAVE": "4"}])
def test_a_run_killed_with_sigkill_on_postgres_recovers_with_run(
    postgres: PostgresSchema, tmp_path: Path, crash: dict[str, str]
) -> None:
    first = flow(postgres, tmp_path, "drive", "r", env={**crash, "PG_CRASH_KILL": "1"})
    assert first.returncode == -signal.SIGKILL, first.stderr
    store = postgres.checkpointer()
    _wait_for(lambda: store.holder("orders", "r") is None, "the server to release the lock")
    final = ok(flow(postgres, tmp_path, "drive", "r"))  # recovers through run(run_id)
    assert final["done"] == uninterrupted()
    counts = effects(tmp_path / "db")
    assert set(counts) == {"charge", "ship", "audit"}
    assert all(n <= 2 for n in counts.values()), counts
    labels(postgres)


def _summary(seq: int) -> RunSummary:
    return RunSummary("wf", "r", seq, "queued", seq, None, b"")


def _info(seq: int) -> FrameInfo:
    return FrameInfo(seq, seq - 1, "l", seq, True, 1)


def test_a_driver_whose_lock_session_dropped_fails_its_next_save(
    postgres: PostgresSchema,
) -> None:
    store = postgres.checkpointer().store
    store.append(_info(1), b"1", _summary(1))
    with store.lock("wf", "r"):
        store.append(_info(2), b"2", _summary(2))
        store.sync()
        session = store._session
        assert session is not None
        postgres.terminate(session.backend_pid)  # returns once the backend is gone
        # sync() comes before every effect: the driver stops there
        with pytest.raises(CheckpointError, match=r"lost its live lock .* before its next effect"):
            store.sync()
        with store.lock("wf", "other"):  # the handle finds its lock session gone, opens another
            assert store.holder("wf", "other") is not None
            with pytest.raises(CheckpointError, match=r"^run 'r' of workflow 'wf': this process"):
                store.append(_info(3), b"3", _summary(3))
        with pytest.raises(CheckpointError, match=r"^run 'r' of workflow 'wf': this process lost"):
            store.append(_info(3), b"3", _summary(3))
    assert [f.seq for f in store.frames("wf", "r")] == [1, 2]
    assert store.holder("wf", "r") is None
    with store.lock("wf", "r"):  # a new lock session
        store.append(_info(3), b"3", _summary(3))


def test_a_lock_connection_moved_between_server_sessions_is_a_pooler_and_refused(
    postgres: PostgresSchema,
) -> None:
    store = postgres.checkpointer().store
    with store.lock("wf", "a"):
        session = store._session
        assert session is not None
        session.backend_pid += 1  # as a transaction-pooling proxy would show it
        with pytest.raises(
            CheckpointError, match=r"a direct connection or session pooling is needed"
        ):
            store.lock("wf", "b").__enter__()
    with store.lock("wf", "b"):  # a new lock connection
        assert store.holder("wf", "b") is not None


def test_reads_and_bad_input_on_an_empty_schema_make_no_tables(
    postgres: PostgresSchema, capsys: pytest.CaptureFixture[str]
) -> None:
    """SPEC, Command line: bad input never changes the store; the tables come with a write."""
    from pausegraph.cli import main

    def tables() -> list[Any]:
        with psycopg.connect(postgres.url, autocommit=True) as admin:
            return admin.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
            ).fetchall()

    store = postgres.checkpointer()
    for words in (["show", "nope"], ["history", "nope"], ["cancel", "nope"], ["delete", "nope"]):
        assert main(["--store", postgres.url, *words]) == 1
        assert "no run 'nope'" in capsys.readouterr().err
    assert main(["--store", postgres.url, "runs"]) == 0
    assert main(["--store", postgres.url, "inbox"]) == 0
    capsys.readouterr()
    assert store.runs() == []
    assert store.latest("wf", "r") is None
    assert store.store.holder("wf", "r") is None
    assert tables() == []
    runner = Runner(_durable_flows.GRAPH, store)
    with pytest.raises(ResumeError):
        runner.state("nope")
    assert tables() == []
    assert runner.start("r", _durable_flows.INPUT).status is Status.QUEUED  # a write
    assert len(tables()) == 4
    assert [run for _, run in postgres.checkpointer().runs()] == ["r"]


def test_a_first_write_waiting_while_another_process_makes_the_tables_uses_them(
    postgres: PostgresSchema,
) -> None:
    """The connection that looked first takes them for missing until a new transaction."""
    from pausegraph.checkpointers import postgres as postgres_module

    store = postgres.checkpointer()  # opened on the empty schema: nothing made
    with psycopg.connect(postgres.url, autocommit=True) as other:
        other.execute("BEGIN")
        other.execute("SELECT pg_advisory_xact_lock(%s)", (store.store._key(b"schema", b""),))

        def make_tables() -> None:  # another process, while this one's first write waits
            time.sleep(0.5)
            for statement in postgres_module._SCHEMA.split(";"):
                other.execute(statement.encode())
            other.execute("INSERT INTO pausegraph_schema VALUES (%s)", (SCHEMA_VERSION,))
            other.execute("COMMIT")

        maker = threading.Thread(target=make_tables)
        maker.start()
        try:
            assert Runner(_durable_flows.GRAPH, store).start("r", _durable_flows.INPUT).status
        finally:
            maker.join(30)
    assert [run for _, run in postgres.checkpointer().runs()] == ["r"]


@contextlib.contextmanager
def _wider_search_path(postgres: PostgresSchema) -> Iterator[tuple[Any, Any]]:
    """An admin connection, and a handle whose search_path puts an empty schema first."""
    first = f"{postgres.schema}_first"
    with psycopg.connect(postgres.server, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {first}")
        try:
            joiner = "&" if "?" in postgres.server else "?"
            both = f"{postgres.server}{joiner}options=-c%20search_path%3D{first},{postgres.schema}"
            wide = PostgresCheckpointer(both)
            try:
                yield admin, wide
            finally:
                wide.close()
            tables = admin.execute(
                "SELECT count(*) FROM pg_tables WHERE schemaname = %s", (first,)
            ).fetchone()
            assert tables == (0,)  # nothing made in the empty first schema
        finally:
            admin.execute(f"DROP SCHEMA {first} CASCADE")


def test_a_handle_whose_search_path_finds_the_tables_later_takes_their_schemas_locks(
    postgres: PostgresSchema,
) -> None:
    """Two handles on the same tables take the same live-lock keys, whatever their search_path."""
    with _wider_search_path(postgres) as (_, wide):
        owner = postgres.checkpointer()
        Runner(_durable_flows.GRAPH, owner).start("r", _durable_flows.INPUT)
        assert [run for _, run in wide.runs()] == ["r"]  # the tables of the second schema
        with owner.store.lock("orders", "r"), pytest.raises(ConflictError):
            wide.store.lock("orders", "r").__enter__()


def test_a_handle_opened_before_the_tables_exist_takes_their_schemas_keys_and_channel(
    postgres: PostgresSchema,
) -> None:
    with _wider_search_path(postgres) as (_, wide):  # opened while no schema has the tables
        owner = postgres.checkpointer()
        with owner.store.lock("orders", "r"), pytest.raises(ConflictError):
            wide.store.lock("orders", "r").__enter__()  # the same tables, the same key
        assert not wide.wait_for_work(0)
        Runner(_durable_flows.GRAPH, owner).start("q", _durable_flows.INPUT)
        assert wide.wait_for_work(5)  # it listens on the channel of those tables


def test_a_database_of_a_newer_schema_is_refused(postgres: PostgresSchema) -> None:
    postgres.with_tables()
    with psycopg.connect(postgres.url, autocommit=True) as admin:
        admin.execute("UPDATE pausegraph_schema SET version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(
        CheckpointError,
        match=rf"has schema version {SCHEMA_VERSION + 1}, newer than this pausegraph's "
        rf"{SCHEMA_VERSION}: upgrade pausegraph to open it$",
    ):
        postgres.checkpointer()


def test_open_checkpointer_opens_a_postgres_url_and_never_shows_the_password(
    postgres: PostgresSchema,
) -> None:
    opened = open_checkpointer(postgres.url)
    postgres.opened.append(opened)
    assert isinstance(opened, PostgresCheckpointer)
    password = psycopg.conninfo.conninfo_to_dict(postgres.url).get("password")
    if password:
        assert f":{password}@" not in repr(opened)


def test_many_processes_may_make_the_tables_at_once(postgres: PostgresSchema) -> None:
    threads = [threading.Thread(target=postgres.checkpointer) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert postgres.checkpointer().runs() == []


def test_what_200_small_appends_store_grows_with_the_changes(postgres: PostgresSchema) -> None:
    from pausegraph.testing._conformance import copy_run, recorded_run, same

    store = postgres.checkpointer()
    history = recorded_run([{"log": [f"{i:04d}" * 256]} for i in range(200)])
    copy_run(store, history, "r")
    assert same(store.latest("wf", "r"), history[-1])
    with psycopg.connect(postgres.url) as admin:
        row = admin.execute("SELECT sum(octet_length(frame)) FROM pausegraph_frames").fetchone()
    assert row is not None
    assert row[0] < 400_000, f"{row[0]} bytes of frames for 200 KB of changes"


def test_an_unreachable_server_is_a_checkpoint_error_without_the_password() -> None:
    url = "postgresql://someone:s3cret@127.0.0.1:1/nothing?connect_timeout=5"
    with pytest.raises(
        CheckpointError, match=r"^PostgreSQL store postgresql://someone:\*\*\*@127\.0\.0\.1:1/"
    ) as e:
        PostgresCheckpointer(url)
    assert "s3cret" not in str(e.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://app:s3cret@db:5433/runs", "postgresql://app:***@db:5433/runs"),
        ("postgresql://app@db/runs", "postgresql://app@db/runs"),  # no password given: none shown
        ("host=db dbname=runs password=s3cret", "postgresql://:***@db/runs"),
        (
            "postgresql://app:s3cret@db/runs?options=-c%20search_path%3Dt",
            "postgresql://app:***@db/runs?options=-c%20search_path%3Dt",
        ),
    ],
)
def test_the_store_names_its_database_with_a_given_password_as_stars(url: str, shown: str) -> None:
    from pausegraph.checkpointers.postgres import describe

    assert describe(url) == shown


def test_without_psycopg_open_checkpointer_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg: ImportError
    with pytest.raises(CheckpointError, match=r"pip install 'pausegraph\[postgres\]'") as e:
        open_checkpointer("postgresql://app:s3cret@db/app")
    assert "s3cret" not in str(e.value)


def test_import_pausegraph_does_not_import_psycopg() -> None:
    code = "import sys, pausegraph, pausegraph.checkpointers; print('psycopg' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_close_lets_the_handles_locks_go_before_it_returns(postgres: PostgresSchema) -> None:
    # closing the socket alone ends the session when the server notices, a moment later;
    # another handle looking right after close() found the run still "running"
    reader = postgres.checkpointer()
    for n in range(30):
        holder = postgres.checkpointer()
        run_id = f"r{n}"
        holder.store.append(_info(1), b"1", RunSummary("wf", run_id, 1, "queued", 1, None, b""))
        lock = holder.lock("wf", run_id)
        lock.__enter__()  # held, and never let go but by close()
        assert reader.holder("wf", run_id) is not None
        holder.close()
        assert reader.holder("wf", run_id) is None, n


def test_a_statement_another_client_prepared_in_the_session_names_the_pooler(
    postgres: PostgresSchema,
) -> None:
    # SPEC Stores: a transaction pooler breaks session locks, and the store says so with a
    # CheckpointError when it detects it; behind PgBouncer in transaction mode the sign
    # is a statement of ours prepared in the server session by another client
    store = postgres.checkpointer()
    runner = Runner(_durable_flows.GRAPH, store)
    runner.start("r", _durable_flows.INPUT)
    connection = store.store._connection()
    prepared = [row[0] for row in connection.execute("SELECT name FROM pg_prepared_statements")]
    assert "pausegraph_append" in prepared
    store.store._local.wire.prepared.clear()  # this client never prepared it: another did
    with pytest.raises(CheckpointError, match=r"already holds a statement .* session pooling"):
        runner.start("r2", _durable_flows.INPUT)


_STRICT_SERVER = (
    "-c default_transaction_isolation=serializable -c statement_timeout=1 -c lock_timeout=1 "
    "-c idle_session_timeout=300 -c idle_in_transaction_session_timeout=300 "
    "-c synchronous_commit=off"
)


def _strict(postgres: PostgresSchema, options: str = _STRICT_SERVER) -> str:
    """The schema's URL with defaults a server, a database or a role may set."""
    return postgres.url.replace("options=", "options=" + quote(options + " "), 1)


def test_the_store_runs_its_sessions_with_its_own_settings_whatever_the_defaults(
    postgres: PostgresSchema,
) -> None:
    store = PostgresCheckpointer(_strict(postgres))
    postgres.opened.append(store)
    with store.lock("wf", "r"):  # the lock connection too
        settings = {
            name: (
                store.store._connection().execute(f"SHOW {name}").fetchone()[0],
                store.store._session.connection.execute(f"SHOW {name}").fetchone()[0],
            )
            for name in (
                "default_transaction_isolation", "statement_timeout", "lock_timeout",
                "idle_session_timeout", "idle_in_transaction_session_timeout",
                "synchronous_commit",
            )
        }  # fmt: skip
    assert settings == {
        "default_transaction_isolation": ("read committed", "read committed"),
        "statement_timeout": ("0", "0"),
        "lock_timeout": ("0", "0"),
        "idle_session_timeout": ("0", "0"),
        "idle_in_transaction_session_timeout": ("0", "0"),
        "synchronous_commit": ("on", "on"),
    }
    store.wait_for_work(0)  # and the listener
    listener = store.store._listener[1]
    assert listener.execute("SHOW idle_session_timeout").fetchone() == ("0",)


def test_an_effect_outlasting_the_servers_idle_timeout_runs_once_with_its_result_saved(
    postgres: PostgresSchema,
) -> None:
    # the lock connection is idle while the effect runs: ended by an idle_session_timeout,
    # the run lost its lock and was driven again, effect and all, for as long as it ran
    calls: list[int] = []

    def slow_and_big(n: int) -> str:
        calls.append(n)
        time.sleep(0.6)
        return "x" * 4_000_000  # its append takes longer than a 1 ms statement_timeout

    def pay(state: Any) -> Iterator[Any]:
        receipt = yield Effect(slow_and_big, 1)
        return {"receipt": len(receipt)}

    graph = Graph("slow", {"receipt": LastWriteWins()}).step("pay", pay)
    store = PostgresCheckpointer(_strict(postgres))
    postgres.opened.append(store)
    assert Runner(graph, store).run("r", {}) == Done({"receipt": 4_000_000}, 1)
    assert calls == [1]
    again = PostgresCheckpointer(_strict(postgres))
    postgres.opened.append(again)
    assert Runner(graph, again).state("r").values == {"receipt": 4_000_000}


def test_appends_to_many_runs_at_once_never_fail_under_a_serializable_default(
    postgres: PostgresSchema,
) -> None:
    def work(n: int) -> Any:
        return {"n": n}

    def step(state: Any) -> Iterator[Any]:
        got = yield Effect(work, state["n"])
        return got

    graph = Graph("many", {"n": LastWriteWins()}).step("a", step).step("b", step).edge("a", "b")
    url = _strict(postgres, "-c default_transaction_isolation=serializable")
    store = PostgresCheckpointer(url)
    postgres.opened.append(store)
    Runner(graph, store).run("warm", {"n": 0})  # the tables, made once

    def drive(first: int) -> None:
        own = PostgresCheckpointer(url)
        postgres.opened.append(own)
        runner = Runner(graph, own)
        for n in range(first, first + 15):
            runner.run(f"r{n}", {"n": n})

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(drive, range(0, 60, 15)))  # raises what any of them raised
    assert sorted(s.run_id for s in store.summaries(status="done")) == sorted(
        ["warm", *(f"r{n}" for n in range(60))]
    )


def test_pgoptions_in_the_environment_still_counts_beside_the_stores_own_settings(
    postgres: PostgresSchema, monkeypatch: pytest.MonkeyPatch
) -> None:
    # libpq sends PGOPTIONS only when the URL gives no options; the store's own settings
    # are options too, so it passes the environment's on with them
    monkeypatch.setenv("PGOPTIONS", f"-c search_path={postgres.schema}")
    store = PostgresCheckpointer(postgres.server)
    postgres.opened.append(store)
    Runner(Graph("env", {"x": LastWriteWins()}).step("a", lambda s: {"x": 1}), store).run("r")
    with psycopg.connect(postgres.server) as admin:
        where = admin.execute(
            "SELECT table_schema FROM information_schema.tables "
            "WHERE table_name = 'pausegraph_frames' AND table_schema = %s",
            (postgres.schema,),
        ).fetchall()
    assert where == [(postgres.schema,)]
    assert store.store._connection().execute("SHOW statement_timeout").fetchone() == ("0",)


def test_a_service_files_options_still_count_beside_the_stores_own_settings(
    postgres: PostgresSchema, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    parts = psycopg.conninfo.conninfo_to_dict(postgres.server)
    lines = [f"{key}={parts[key]}" for key in ("host", "port", "dbname", "user", "password")]
    services = tmp_path / "pg_service.conf"
    services.write_text(
        "[app]\n" + "\n".join(lines) + f"\noptions=-c search_path={postgres.schema}\n"
    )
    monkeypatch.setenv("PGSERVICEFILE", str(services))
    store = PostgresCheckpointer("service=app")
    postgres.opened.append(store)
    Runner(Graph("svc", {"x": LastWriteWins()}).step("a", lambda s: {"x": 1}), store).run("r")
    with psycopg.connect(postgres.server) as admin:
        where = admin.execute(
            "SELECT table_schema FROM information_schema.tables "
            "WHERE table_name = 'pausegraph_frames' AND table_schema = %s",
            (postgres.schema,),
        ).fetchall()
    assert where == [(postgres.schema,)]
    assert store.store._connection().execute("SHOW statement_timeout").fetchone() == ("0",)


def test_a_statement_timeout_too_short_for_the_first_statement_connects_again_without_it(
    postgres: PostgresSchema, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pausegraph.checkpointers import postgres as postgres_module

    slow = postgres_module._SESSION.replace("SELECT ", "SELECT pg_sleep(0.2), ", 1)
    monkeypatch.setattr(postgres_module, "_SESSION", slow)
    store = PostgresCheckpointer(_strict(postgres, "-c statement_timeout=50"))
    postgres.opened.append(store)
    connection = store.store._connection()
    assert connection.execute("SHOW statement_timeout").fetchone() == ("0",)
    assert connection.execute("SHOW search_path").fetchone() == (postgres.schema,)


@pytest.mark.parametrize(
    ("given", "version", "options"),
    [
        ("", 150000, "-c statement_timeout=0 -c idle_session_timeout=0"),
        ("-c search_path=s", 130000, "-c search_path=s -c statement_timeout=0"),
        # a lone backslash at the end would escape the space before the store's options
        (
            "-c application_name=ab\\",
            150000,
            "-c application_name=ab -c statement_timeout=0 -c idle_session_timeout=0",
        ),
        ("-c a=b\\\\", 130000, "-c a=b\\\\ -c statement_timeout=0"),  # an escaped one stays
    ],
)
def test_a_second_connections_options_keep_the_sessions_own_first(
    given: str, version: int, options: str
) -> None:
    from pausegraph.checkpointers.postgres import _retry_options

    assert _retry_options(given, version) == options


def test_an_idle_timeout_that_ends_the_session_before_its_first_statement_connects_again(
    postgres: PostgresSchema, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pausegraph.checkpointers import postgres as postgres_module

    connect = psycopg.connect

    def idle_first(*args: Any, **kwargs: Any) -> Any:
        connection = connect(*args, **kwargs)
        time.sleep(0.3)  # the session idles past its idle_session_timeout before the store asks
        return connection

    monkeypatch.setattr(postgres_module.psycopg, "connect", idle_first)
    options = f"-c search_path={postgres.schema} -c idle_session_timeout=100 "
    store = PostgresCheckpointer(
        f"{postgres.server}?options={quote(options + '-c application_name=ab' + chr(92))}"
    )  # a lone backslash last, which the server drops
    postgres.opened.append(store)
    connection = store.store._connection()
    assert connection.execute("SHOW idle_session_timeout").fetchone() == ("0",)
    assert connection.execute("SHOW search_path").fetchone() == (postgres.schema,)
    assert connection.execute("SHOW application_name").fetchone() == ("ab",)
