"""Test configuration: hypothesis profiles chosen by HYPOTHESIS_PROFILE.

- ``ci``: a fixed number of examples, no deadline, derandomized (used by .ci/run).
- ``dev`` (default): fewer examples for a quick local loop.
- ``thorough``: many examples, for a long soak before a release.

The ``postgres`` fixture gives each test a fresh schema on the PostgreSQL
server that ``PAUSEGRAPH_TEST_POSTGRES`` names (skipped without it).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=60,
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=30, deadline=None)
settings.register_profile("thorough", max_examples=1000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


# --- PostgreSQL: a fresh schema per test on the server PAUSEGRAPH_TEST_POSTGRES names ---

POSTGRES_ENV = "PAUSEGRAPH_TEST_POSTGRES"
POSTGRES_HOW = (
    f"set {POSTGRES_ENV}=postgresql://USER:PASSWORD@HOST:PORT/DATABASE (a role that may "
    "CREATE SCHEMA there) to run the PostgreSQL tests; .ci/run starts a local server and sets it"
)


class PostgresSchema:
    """A schema made for one test: ``url`` connects with it first in ``search_path``.

    ``checkpointer()`` opens a ``PostgresCheckpointer`` on it, closed after the
    test; the schema is dropped with everything in it.
    """

    def __init__(self, server: str, schema: str) -> None:
        self.server = server
        self.schema = schema
        joiner = "&" if "?" in server else "?"
        self.url = f"{server}{joiner}options=-c%20search_path%3D{schema}"
        self.opened: list[Any] = []

    def checkpointer(self) -> Any:
        from pausegraph import PostgresCheckpointer

        opened = PostgresCheckpointer(self.url)
        self.opened.append(opened)
        return opened

    def with_tables(self) -> Any:
        """``checkpointer()`` with its tables made (a store makes them at its first write)."""
        opened = self.checkpointer()
        opened.store._tables(True)
        return opened

    def terminate(self, pid: int) -> None:
        """``pg_terminate_backend`` on server process ``pid``; returns once it is gone.

        The backend ends a moment after it is told to, and holds its locks until then.
        """
        import time

        import psycopg

        with psycopg.connect(self.server, autocommit=True) as admin:
            assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)
            while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
                time.sleep(0.01)


@pytest.fixture
def postgres() -> Iterator[PostgresSchema]:
    """A fresh schema on the test server; skips (saying how to enable) without one.

    With ``PAUSEGRAPH_TEST_POSTGRES`` set, a server that cannot be reached
    fails the test: CI must not pass by skipping.
    """
    server = os.environ.get(POSTGRES_ENV)
    if not server:
        pytest.skip(POSTGRES_HOW)
    try:
        import psycopg
    except ImportError:
        pytest.fail(f"{POSTGRES_ENV} is set but psycopg is not installed: pip install -e '.[test]'")
    schema = f"test_{uuid.uuid4().hex[:16]}"
    try:
        with psycopg.connect(server, autocommit=True, connect_timeout=10) as admin:
            admin.execute(f"CREATE SCHEMA {schema}")
    except psycopg.Error as exc:
        pytest.fail(f"{POSTGRES_ENV} is set but the server is not usable: {exc}")
    made = PostgresSchema(server, schema)
    try:
        yield made
    finally:
        for opened in made.opened:
            opened.close()
        with psycopg.connect(server, autocommit=True, connect_timeout=10) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")
