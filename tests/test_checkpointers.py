"""The checkpointer conformance suite, run against every built-in store.

The suite itself is ``pausegraph.testing.CheckpointerConformance``, so a
user's own store runs exactly the same tests. ``make_checkpoint`` builds a
checkpoint by hand for the file store's own tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import PostgresSchema

from pausegraph import (
    Checkpoint,
    Checkpointer,
    CheckpointError,
    FileCheckpointer,
    MemoryCheckpointer,
    SqliteCheckpointer,
)
from pausegraph._channels import Change
from pausegraph._records import Stage, Start, Structure
from pausegraph.checkpointers import StoreCheckpointer
from pausegraph.checkpointers.sqlite import SqliteStore
from pausegraph.testing import CheckpointerConformance

STRUCTURE = Structure(("a", "b"), (("a", "b"),))


def make_checkpoint(
    run_id: str,
    seq: int,
    values: dict[str, Any],
    changes: tuple[Change, ...] | None = (),
    *,
    workflow_id: str = "wf",
    stage: Stage | None = None,
    label: str = "",
) -> Checkpoint:
    return Checkpoint(
        workflow_id=workflow_id,
        run_id=run_id,
        seq=seq,
        super_step=seq - 1,
        label=label or f"layer:{seq - 1}",
        timestamp_ms=1_700_000_000_000 + seq,
        values=values,
        stage=Start(seq - 1) if stage is None else stage,
        structure=STRUCTURE,
        changes=changes,
        input={"x": 1} if seq == 1 else None,
    )


class TestMemoryCheckpointer(CheckpointerConformance):
    durable = False

    def make_checkpointer(self, tmp_path: Path) -> Checkpointer:
        return MemoryCheckpointer()


class TestFileCheckpointer(CheckpointerConformance):
    def make_checkpointer(self, tmp_path: Path) -> Checkpointer:
        return FileCheckpointer(tmp_path / "store")


class TestSqliteCheckpointer(CheckpointerConformance):
    def make_checkpointer(self, tmp_path: Path) -> Checkpointer:
        return SqliteCheckpointer(tmp_path / "store.db")


class TestPostgresCheckpointer(CheckpointerConformance):
    """The suite on PostgreSQL: a fresh schema per test (skipped without a server).

    The size test measures ``tmp_path``, where this store keeps nothing;
    ``tests/test_postgres_store.py`` measures the frames in the database.
    """

    @pytest.fixture(autouse=True)
    def _schema(self, postgres: PostgresSchema) -> None:
        self.postgres = postgres

    def make_checkpointer(self, tmp_path: Path) -> Checkpointer:
        return self.postgres.checkpointer()  # type: ignore[no-any-return]


class ForgotTheHook(CheckpointerConformance):
    pass


def test_a_suite_subclass_that_does_not_say_how_to_open_its_store_is_told_so(
    tmp_path: Path,
) -> None:
    with pytest.raises(
        TypeError,
        match=r"^ForgotTheHook must override make_checkpointer\(self, tmp_path\) to return a "
        r"new, empty checkpointer$",
    ):
        ForgotTheHook().test_runs_lists_every_workflow_and_run(tmp_path)


@pytest.mark.parametrize("kind", ["memory", "file", "sqlite"])
def test_ids_and_seqs_of_the_wrong_type_are_a_checkpoint_error_on_every_store(
    kind: str, tmp_path: Path
) -> None:
    # bad input gets a PausegraphError of its own on every store alike (an id that is
    # not a str raised AttributeError on some, was a missing run on others; True was seq 1)
    store = {
        "memory": MemoryCheckpointer,
        "file": lambda: FileCheckpointer(tmp_path / "s"),
        "sqlite": lambda: SqliteCheckpointer(tmp_path / "db"),
    }[kind]()
    store.save(make_checkpoint("r", 1, {}))
    for call in (
        lambda: store.latest("wf", 5),  # type: ignore[arg-type]
        lambda: store.list(b"wf", "r"),  # type: ignore[arg-type]
        lambda: store.last("wf", None),  # type: ignore[arg-type]
        lambda: store.holder("wf", 5),  # type: ignore[arg-type]
        lambda: store.delete(5, "r"),  # type: ignore[arg-type]
        lambda: store.lock("wf", 5),  # type: ignore[arg-type]
        lambda: store.load("wf", "r", True),
        lambda: store.load("wf", "r", "1"),  # type: ignore[arg-type]
        lambda: store.load("wf", "r", 1.0),  # type: ignore[arg-type]
    ):
        with pytest.raises(CheckpointError, match=r"takes"):
            call()
    assert store.load("wf", "r", 1) is not None

    class Id(str):
        pass

    assert store.load(Id("wf"), Id("r"), 1) is not None  # a str subclass is a str


class _CountedClose(SqliteStore):
    """A SQLite store counting its ``close`` calls (the size test must close it first)."""

    closed = 0

    def close(self) -> None:
        type(self).closed += 1
        super().close()


def test_the_size_test_closes_the_store_a_store_checkpointer_wraps(tmp_path: Path) -> None:
    # a user's store, wrapped in StoreCheckpointer as the docs say, was measured open:
    # a SQLite WAL of a few MB (folded in at close) read as the run's size
    class Suite(CheckpointerConformance):
        def make_checkpointer(self, tmp_path: Path) -> Any:
            return StoreCheckpointer(_CountedClose(str(tmp_path / "runs.db")))

    Suite().test_what_a_run_stores_grows_with_its_changes_not_its_state(tmp_path)
    assert _CountedClose.closed == 1
