"""PostgresCheckpointer: every run in one PostgreSQL database, for processes on any machines.

Theory of operation
-------------------

psycopg 3 (the ``pausegraph[postgres]`` extra) talks to the server. The
store keeps every run in four tables of the connection's current schema
(the first schema of ``search_path``), made by its first write::

    pausegraph_schema(version)                      -- one row: this layout's version, 2
    pausegraph_frames(run_digest, seq, super_step, label, timestamp_ms, snapshot,
                      frame, PRIMARY KEY (run_digest, seq))
    pausegraph_runs(run_digest, workflow_digest, workflow, run, seq, status,
                    updated_ms, deadline_ms, data, PRIMARY KEY (run_digest))
                    -- plus indexes on workflow_digest, status, deadline_ms
    pausegraph_holders(run_digest, workflow, run, backend_pid, pid, host, since_ms,
                       PRIMARY KEY (run_digest)) -- who holds a live lock, for people
                       -- (UNLOGGED: see The live lock)

as the SQLite store keeps its ``frames`` and ``runs``. **Ids and labels are
``bytea``** (UTF-8 with ``surrogatepass``), not ``text``: PostgreSQL text
cannot hold a NUL or a lone surrogate, and workflow ids are graph names,
which pausegraph does not restrict; as bytes every id is stored and
compared exactly. **No index holds an id**: an index entry holds at most
2704 bytes (B-tree) or 8191 after compression, and an id may be 10,000
random characters. Rows are keyed by digests the server computes from the
ids (an append, the hot statement, sends them made: a tenth less time a
cycle): ``workflow_digest`` is SHA-256 of the workflow id, ``run_digest``
SHA-256 of the two ids' SHA-256s (two fixed-size parts: no two pairs of
ids share an input). The ids are kept beside them, in ``pausegraph_runs``
(and ``pausegraph_holders``), for listing; a frame has only its run's
digest. A listing by workflow finds rows by ``workflow_digest`` and compares
the id too.

The tables are made in one transaction under a transaction-level advisory
lock, so processes opening a new database at once do not race, by the
first write (``_tables``): reads of an empty schema find nothing and make
nothing. A schema of a newer version is refused when the store opens.
Version 1 (never released: it keyed rows by the ids, and refused long
ones) is upgraded in that transaction: its runs and frames are copied
aside, the tables made again, the rows put back with their digests; its
holders' notes are dropped (the live locks are advisory locks,
untouched). Processes of the older layout then fail their statements
(``CheckpointError``) rather than write anything.

**An append** is one statement (one round trip, its own transaction in
autocommit; ``_APPEND``): insert the frame if the run's ``max(seq)`` is the
one before, ``ON CONFLICT DO NOTHING``, and upsert the summary only with
the frame. The primary key ``(run_digest, seq)`` is the claim: of two
statements inserting the same seq, the second waits for the first and then
inserts nothing, which is a ``ConflictError`` (a gap is a
``CheckpointError``); a failed append leaves nothing.

**Durability.** An append commits with ``synchronous_commit`` off for its
own transaction (the session's setting stays ``on``; a connection whose
default is ``off`` is set back to ``on`` when the store opens it): the
server has it, a crash of the server may lose it. ``sync()`` commits one
statement that writes WAL (a transactional logical message: a commit that
wrote none does not wait for the disk) and so waits for the WAL to be
flushed up to it, every earlier append included, and checks the live locks
in the same statement. The handle counts the appends committed and those a
finished ``sync()`` covered: a ``sync()`` skips the flush only when every
append committed before it is covered, never on the strength of another
thread's flush still under way.

The append of a checkpoint that ends a call (its summary's status is not
``"queued"``: the run is left paused, done, failed or cancelled, and the
engine's ``sync()`` comes next) is the exception: it commits synchronously
(``_APPEND_ENDING``), so it flushes the WAL up to itself, and says whether
the backend holding the run's lock still holds it (its statement asks
``pg_locks``; on the lock connection, the answer of the unlock sent after
it tells instead). The ``sync()`` that follows in the same thread, with
nothing appended since and no other lock held in the process, then has
nothing to ask: one round trip a call less, the flush riding on the
append. Guessing "last" wrong costs only time (a synchronous append that
was not last: a flush more; a last one that was queued: ``sync()``
flushes as before), never durability.

**The live lock** of a run is a session-level advisory lock,
``pg_try_advisory_lock(key)``, where ``key`` is 64 bits of a SHA-256 of
(current schema, workflow id, run id). It is taken on a connection the
handle opens for its locks only (one per handle and process, holding every
lock the handle holds) and released by ``pg_advisory_unlock`` when the
``with`` exits, or by the server when the session ends: the process died
and the kernel closed its socket, or TCP keepalive found its host gone.
Session locks are re-entrant within a session, so the handle also keeps
the locks it holds and refuses a second holder in another thread itself.
Beside the lock, ``pausegraph_holders`` says who holds it (pid, host,
since) and the backend that holds it; ``holder()`` joins that row with
``pg_locks``, so a row left by a dead session, or by a hold let go, names
nobody. A collision of two runs' keys (2^-64) would only make them exclude
each other. The table is ``UNLOGGED`` (no WAL: its rows die with the
server, as the locks do), and letting go leaves the row, which the next
taker overwrites; ``delete`` removes it unless a live hold wrote it.

Taking the lock, noting the holder, and listing the run's frames (which
the engine asks for next) is one round trip; so is letting go, which also
sends ``NOTIFY`` on the schema's channel when the hold left the run
``"queued"``, for ``wait_for_work``.

**Letting go early.** The append that ends a call goes, when the handle
holds that run's lock and no other, on the lock connection with the unlock
after it, in one round trip of two transactions (``_append_and_let_go``;
with other holds, threads driving runs side by side, it goes on the
thread's own connection, so that their flushes are not queued on one
connection, and the release follows when the hold ends): the unlock
runs once the append has committed, and even if it failed. The hold is
over then (``_Hold.ended``): its ``with`` sends nothing on exit, and a later
append of that hold (in its thread) takes the lock again first
(``_retake``), or is a ``ConflictError`` naming whoever took the run
meanwhile, another thread of the process included.

**The hot statements** (an append, taking a lock with the frame list,
letting it go) go through psycopg's libpq wrapper, ``psycopg.pq``, rather
than its cursors (``_exchange``): prepared once per connection under names
of their own (``pausegraph_*``), parameters sent as text (bytes as binary),
results read in binary, several in one pipeline. A statement interrupted
half-way (``KeyboardInterrupt``) closes its connection, since it cannot be
read to its end any more: on the lock connection that ends the handle's
locks, which its drivers then see as lost.

**Saves and the lock.** When the handle holds the run's lock, ``append``
looks at the lock connection first: a session known to be gone, or one
whose socket has something to read (a session the server ends says so
before it closes), is asked, and a save on a lost lock fails with
``CheckpointError`` before anything is written. A quiet socket costs no
round trip. ``sync()``, which the engine calls before each effect, checks
in ``pg_locks`` each lock the calling thread holds, so a driver whose lock
session dropped unheard calls no further effect (and the primary key keeps
one writer per seq meanwhile). A hold (``_Hold``) belongs to the thread
whose ``with`` took it: another thread's lost lock is that thread's to
hear of, and a save belongs to its own thread's hold.

**Poolers.** A transaction-pooling proxy (PgBouncer in transaction mode)
hands each transaction to any server session, so a session lock is taken
by one backend and looked for on another. The lock connection checks
``pg_backend_pid()`` with every statement; a backend that changed is a
``CheckpointError`` saying a direct connection or session pooling is
needed.

**Threads and processes.** Each thread has its own data connection (in
autocommit mode; nothing is left open while idle), closed when the thread
ends (``close_at_thread_end``); a forked child opens
its own connections and never touches (nor closes) its parent's, whose
sessions belong to the parent, and never lets go of (nor saves under) its
parent's holds, even when it leaves the parent's ``with`` by raising.

**Ctrl-C.** A ``KeyboardInterrupt`` inside a query closes its connection
(it cannot be read to its end); one that lands after a lock was taken and
before the hold is recorded gives the lock back; one that lands while a
hold waits to let go (another thread on the lock connection) closes the
lock connection, so that the server lets the lock go, and the handle's
other holds learn they lost theirs before their next save or effect.

**Errors.** A server that cannot be reached, or any error it reports, is a
``CheckpointError`` naming the database (never its password) and what the
server said; a broken connection is dropped and opened again on next use.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import os
import re
import select
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, TypeVar
from urllib.parse import quote

from .._values import pack, storable
from ..errors import CheckpointError, ConflictError
from ._checkpointer import StoreCheckpointer
from ._lock import Holder, close_at_thread_end, held_message
from ._log import refuse_seq
from ._store import FrameInfo, RunSummary

try:
    import psycopg
    import psycopg.errors
    from psycopg import pq
    from psycopg.conninfo import conninfo_to_dict
except ImportError as exc:  # pragma: no cover - the extra is installed in the tests
    msg = f"PostgreSQL stores need psycopg 3: `pip install 'pausegraph[postgres]'` ({exc})"
    raise CheckpointError(msg) from exc

SCHEMA_VERSION = 2

# psycopg's pipeline mode needs libpq 14 or later (the binary package bundles one)
_PIPELINES = psycopg.Pipeline.is_supported()

# Ids are never indexed: a B-tree entry holds at most 2704 bytes, and any index
# entry at most 8191 after compression, while an id may be 10,000 random
# characters. Rows are keyed by fixed-size digests the server computes from the
# ids (``_RUN_DIGEST``, ``_WORKFLOW_DIGEST``); the ids themselves are kept
# beside them, exactly, for listing.
_SCHEMA = """
CREATE TABLE pausegraph_schema (version integer NOT NULL);
CREATE TABLE pausegraph_frames (
    run_digest bytea NOT NULL,
    seq integer NOT NULL,
    super_step integer NOT NULL,
    label bytea NOT NULL,
    timestamp_ms bigint NOT NULL,
    snapshot boolean NOT NULL,
    frame bytea NOT NULL,
    PRIMARY KEY (run_digest, seq)
);
CREATE TABLE pausegraph_runs (
    run_digest bytea NOT NULL,
    workflow_digest bytea NOT NULL,
    workflow bytea NOT NULL,
    run bytea NOT NULL,
    seq integer NOT NULL,
    status text NOT NULL,
    updated_ms bigint NOT NULL,
    deadline_ms bigint,
    data bytea NOT NULL,
    PRIMARY KEY (run_digest)
);
CREATE INDEX pausegraph_runs_by_workflow ON pausegraph_runs (workflow_digest);
CREATE INDEX pausegraph_runs_by_status ON pausegraph_runs (status);
CREATE INDEX pausegraph_runs_by_deadline ON pausegraph_runs (deadline_ms);
CREATE UNLOGGED TABLE pausegraph_holders (
    run_digest bytea NOT NULL,
    workflow bytea NOT NULL,
    run bytea NOT NULL,
    backend_pid integer NOT NULL,
    pid integer NOT NULL,
    host text NOT NULL,
    since_ms bigint NOT NULL,
    PRIMARY KEY (run_digest)
)
"""

# the digests that key the rows: SHA-256 of the workflow id, and SHA-256 of the two
# ids' SHA-256s (fixed-size parts, so no two pairs of ids share an encoding), made
# by the server from the ids sent as parameters (each parameter appears once), or,
# for an append (the hot statement), sent made (``_digests``)
_WORKFLOW_DIGEST = "sha256({w}::bytea)"
_RUN_DIGEST = "sha256(sha256({w}::bytea) || sha256({r}::bytea))"
_NAMED_RUN = _RUN_DIGEST.format(w="%(w)s", r="%(r)s")
_RUN_ARGS = _RUN_DIGEST.format(w="%s", r="%s")  # positional: (workflow, run)


def _digests(workflow: bytes, run: bytes) -> dict[str, bytes]:
    """The two digests, made here as the server makes them: ``wd`` and ``rd`` (appends)."""
    of_workflow = hashlib.sha256(workflow).digest()
    return {
        "wd": of_workflow,
        "rd": hashlib.sha256(of_workflow + hashlib.sha256(run).digest()).digest(),
    }


# version 1 (never released) keyed its tables by the ids themselves: its rows
# are copied aside, its tables made again keyed by digests, and the rows put back,
# in the transaction that makes the tables. Its holders' rows (a note for people)
# are dropped: a live lock is the advisory lock, which the upgrade leaves alone.
_UPGRADE_FROM_1 = (
    "CREATE TEMP TABLE pausegraph_v1_frames ON COMMIT DROP AS SELECT * FROM pausegraph_frames",
    "CREATE TEMP TABLE pausegraph_v1_runs ON COMMIT DROP AS SELECT * FROM pausegraph_runs",
    "DROP TABLE pausegraph_frames, pausegraph_runs, pausegraph_holders, pausegraph_schema",
    *_SCHEMA.split(";"),
    f"INSERT INTO pausegraph_frames SELECT {_RUN_DIGEST.format(w='workflow', r='run')}, seq, "
    "super_step, label, timestamp_ms, snapshot, frame FROM pausegraph_v1_frames",
    f"INSERT INTO pausegraph_runs SELECT {_RUN_DIGEST.format(w='workflow', r='run')}, "
    f"{_WORKFLOW_DIGEST.format(w='workflow')}, workflow, run, seq, status, updated_ms, "
    "deadline_ms, data FROM pausegraph_v1_runs",
)

# an advisory lock on one bigint shows in pg_locks as classid (high 32 bits),
# objid (low 32 bits) and objsubid 1
_HELD = (
    "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND classid = %s::bigint::oid AND objid = %s::bigint::oid AND objsubid = 1"
)

# which of many runs' locks are held (a listing of queued runs): their positions
_HELD_AMONG = (
    "SELECT k.n FROM unnest(%s::bigint[], %s::bigint[]) WITH ORDINALITY AS k(c, o, n) "
    "WHERE EXISTS ("
    + _HELD.replace("classid = %s::bigint::oid AND objid = %s::bigint::oid",
                    "classid = k.c::oid AND objid = k.o::oid")
    + ")"
)  # fmt: skip

# sync()'s statements, each one round trip in autocommit. A commit waits for the
# disk only if its transaction wrote WAL (an xid alone, as txid_current() gives, is
# committed without waiting): a transactional logical message writes a small WAL
# record, so the statement's commit (synchronous: the session's setting) flushes
# the WAL up to it, and every append committed before with it. The array says,
# lock by lock, whether the backend that took it still holds it.
_STILL_HELD = (
    "ARRAY(SELECT EXISTS (SELECT 1 FROM pg_locks AS l WHERE l.locktype = 'advisory' "
    "AND l.granted AND l.database = (SELECT oid FROM pg_database "
    "WHERE datname = current_database()) AND l.classid = k.c::oid AND l.objid = k.o::oid "
    "AND l.objsubid = 1 AND l.pid = k.p) "
    "FROM unnest(%s::bigint[], %s::bigint[], %s::integer[]) WITH ORDINALITY AS k(c, o, p, n) "
    "ORDER BY k.n)"
)
_FLUSH = "SELECT pg_logical_emit_message(true, 'pausegraph', 'sync')"
_FLUSH_AND_CHECK = _FLUSH + ", " + _STILL_HELD
_CHECK = "SELECT " + _STILL_HELD

# what every session of the store runs with, whatever the server's, the database's, the
# role's or the URL's defaults, set by its first statement: commits that wait for the disk
# unless an append says otherwise (a default of off made on; a stronger one, for
# replicas, kept); READ COMMITTED, under which an append's check and insert are one
# statement that never fails on another run's rows (SERIALIZABLE made appends to
# unrelated runs fail, after their effect had run); and no timeout: the lock connection
# is idle while a step or an effect runs, an append of a large effect result may take a
# while, and a save cut short after its effect ran makes the effect run again
_SESSION = (
    "SELECT CASE WHEN current_setting('synchronous_commit') = 'off' "
    "THEN set_config('synchronous_commit', 'on', false) END, "
    "set_config('default_transaction_isolation', 'read committed', false), "
    "set_config('statement_timeout', '0', false), "
    "set_config('lock_timeout', '0', false), "
    "set_config('idle_in_transaction_session_timeout', '0', false), "
    "CASE WHEN current_setting('server_version_num')::integer >= 140000 "
    "THEN set_config('idle_session_timeout', '0', false) END, "
    "CASE WHEN current_setting('server_version_num')::integer >= 170000 "
    "THEN set_config('transaction_timeout', '0', false) END"
)
# ... and, for a timeout so short that it cancels that first statement or ends the
# session before it, the options of a second try at connecting: after the session's own
# (the URL's, PGOPTIONS, a service file's), so that they win (see _retry_options)
_SESSION_OPTIONS = "-c statement_timeout=0"
_SESSION_OPTIONS_14 = _SESSION_OPTIONS + " -c idle_session_timeout=0"  # PostgreSQL 14 on


def _retry_options(given: str, server_version: int) -> str:
    """The options of a second connection: ``given`` (a session's), then the store's own.

    A lone backslash at the end of ``given`` (which the server drops) is
    dropped here, so that it does not escape the space before the store's.
    """
    if (len(given) - len(given.rstrip("\\"))) % 2:
        given = given[:-1]
    own = _SESSION_OPTIONS_14 if server_version >= 140000 else _SESSION_OPTIONS
    return f"{given} {own}".lstrip()


# an append is this one statement (its own transaction, in autocommit): the insert
# happens only if the run's last seq is the one before (``last``), and a seq another
# transaction took meanwhile is skipped by ON CONFLICT after waiting for it; the
# summary is written only with the frame. The commit does not wait for the disk.
_APPEND = (
    "WITH last AS (SELECT coalesce(max(seq), 0) AS n FROM pausegraph_frames "
    "WHERE run_digest = %(rd)s::bytea), "
    "added AS (INSERT INTO pausegraph_frames SELECT %(rd)s::bytea, %(seq)s::integer, "
    "%(step)s::integer, %(label)s, %(t)s::bigint, %(snap)s::boolean, %(frame)s FROM last "
    "WHERE last.n = %(seq)s::integer - 1 ON CONFLICT DO NOTHING RETURNING 1), "
    "summed AS (INSERT INTO pausegraph_runs SELECT %(rd)s::bytea, %(wd)s::bytea, "
    "%(w)s, %(r)s, %(sseq)s::integer, "
    "%(status)s::text, %(updated)s::bigint, %(deadline)s::bigint, %(data)s FROM added "
    "ON CONFLICT (run_digest) DO UPDATE SET seq = EXCLUDED.seq, "
    "status = EXCLUDED.status, updated_ms = EXCLUDED.updated_ms, "
    "deadline_ms = EXCLUDED.deadline_ms, data = EXCLUDED.data RETURNING 1) "
    "SELECT (SELECT n FROM last), (SELECT count(*) FROM added), (SELECT count(*) FROM summed), "
    "set_config('synchronous_commit', 'off', true)"
)

# the append of a checkpoint that ends a call (a run left paused, done, failed or
# cancelled: the engine's sync() comes next) commits synchronously, the session's
# setting, so it flushes the WAL up to it, every earlier append included; the last
# column says whether the backend that took the run's lock still holds it (true
# when the handle holds no lock for the run), which spares that sync() its round trip
_APPEND_ENDING = _APPEND.replace(
    "set_config('synchronous_commit', 'off', true)",
    "%(kc)s::bigint IS NULL OR EXISTS (" + _HELD + " AND pid = %(kp)s::integer)",
).replace(
    "classid = %s::bigint::oid AND objid = %s::bigint::oid",
    "classid = %(kc)s::bigint::oid AND objid = %(ko)s::bigint::oid",
)

_FRAMES = (
    "SELECT seq, super_step, label, timestamp_ms, snapshot, octet_length(frame) "
    f"FROM pausegraph_frames WHERE run_digest = {_RUN_ARGS} ORDER BY seq"
)

# taking a run's lock and noting its holder: one statement on the lock connection
_TAKE = (
    "WITH got AS MATERIALIZED (SELECT pg_try_advisory_lock(%(key)s) AS ok), "
    f"noted AS (INSERT INTO pausegraph_holders SELECT {_NAMED_RUN}, %(w)s, %(r)s, "
    "pg_backend_pid(), %(pid)s::integer, %(host)s::text, %(since)s::bigint FROM got WHERE ok "
    "ON CONFLICT (run_digest) DO UPDATE SET backend_pid = EXCLUDED.backend_pid, "
    "pid = EXCLUDED.pid, host = EXCLUDED.host, since_ms = EXCLUDED.since_ms RETURNING 1) "
    "SELECT (SELECT ok FROM got), (SELECT count(*) FROM noted), "
    "set_config('synchronous_commit', 'off', true), pg_backend_pid()"
)

# letting it go; with %(channel)s, telling the workers listening that work is queued
_RELEASE = "SELECT pg_advisory_unlock(%(key)s), pg_backend_pid()"
# ... without an append: the note of a run that has no checkpoint (a command refused on an
# unknown id) goes too, so that the command leaves the store as it was
_RELEASE_FORGETTING = (
    "WITH gone AS (DELETE FROM pausegraph_holders WHERE run_digest = "
    f"{_NAMED_RUN} AND NOT EXISTS (SELECT 1 FROM pausegraph_runs WHERE run_digest = "
    f"{_NAMED_RUN}) RETURNING 1) SELECT pg_advisory_unlock(%(key)s), pg_backend_pid()"
)
_RELEASE_AND_NOTIFY = _RELEASE_FORGETTING.replace(
    "SELECT pg_advisory_unlock", "SELECT pg_notify(%(channel)s, ''), pg_advisory_unlock"
)

# --- the hot statements, sent through libpq directly --------------------------------
#
# An append, taking a lock with the frame list, and letting it go are sent through
# psycopg's libpq wrapper (``psycopg.pq``): prepared once per connection under a name
# of ours, parameters in their text form (bytes in binary), results in binary. That
# is the statement alone, without psycopg's cursor, adapters and result machinery:
# about 0.07 ms less client time a statement, a third of an append's time on a
# local server. Everything else goes through psycopg as usual.

_OIDS = {"bool": 16, "bytea": 17, "int8": 20, "int4": 23, "text": 25}
# every parameter name of the hot statements, and its type
_TYPES = {
    **dict.fromkeys(("w", "r", "wd", "rd", "label", "frame", "data"), _OIDS["bytea"]),
    **dict.fromkeys(("seq", "step", "sseq", "pid", "kp"), _OIDS["int4"]),
    **dict.fromkeys(("t", "updated", "deadline", "key", "since", "kc", "ko"), _OIDS["int8"]),
    "snap": _OIDS["bool"],
    **dict.fromkeys(("status", "host", "channel"), _OIDS["text"]),
}


class _Statement:
    """A hot statement: its name on the server, its SQL with ``$n``, its parameters' names."""

    __slots__ = ("keys", "name", "sql", "types")

    def __init__(self, name: str, query: str) -> None:
        keys: builtins.list[str] = []

        def number(match: re.Match[str]) -> str:
            if match[1] not in keys:
                keys.append(match[1])
            return f"${keys.index(match[1]) + 1}"

        self.name = name.encode()
        self.sql = re.sub(r"%\((\w+)\)s", number, query).encode()
        self.keys = tuple(keys)
        self.types = [_TYPES[key] for key in keys]


def _params(
    statement: _Statement, args: dict[str, Any]
) -> tuple[builtins.list[bytes | None], builtins.list[int]]:
    """The statement's parameters and their formats: ``bytes`` binary, the rest as text."""
    values: builtins.list[bytes | None] = []
    formats: builtins.list[int] = []
    for key in statement.keys:
        value = args[key]
        if value is None or type(value) is bytes:
            values.append(value)
            formats.append(1)
        elif value is True or value is False:
            values.append(b"t" if value else b"f")
            formats.append(0)
        else:
            values.append(str(value).encode())
            formats.append(0)
    return values, formats


def _value(data: bytes | None, oid: int) -> object:
    """A result value in binary form, as Python."""
    if data is None:
        return None
    if oid in (20, 23, 21):
        return int.from_bytes(data, "big", signed=True)
    if oid == 16:
        return data == b"\x01"
    if oid == 25:
        return data.decode()
    return bytes(data)


class _Wire:
    """What the hot statements need of one connection: it, and the statements it prepared."""

    __slots__ = ("connection", "prepared")

    def __init__(self, connection: psycopg.Connection[Any]) -> None:
        self.connection = connection
        self.prepared: set[bytes] = set()


def _exchange(
    wire: _Wire, calls: builtins.list[tuple[_Statement, dict[str, Any]]], *, each: bool = False
) -> builtins.list[builtins.list[tuple[Any, ...]]]:
    """Send ``calls`` (statement, arguments) in one round trip; each one's rows.

    In pipeline mode (libpq 14 and later) the statements, and the first use
    of each on this connection (its ``PREPARE``), go out together, ended by
    one Sync: in autocommit they are one implicit transaction, each statement
    with a snapshot of its own. Without pipeline mode, one round trip each.
    An error the server reports is raised as ``psycopg.Error`` (the caller
    makes it a ``CheckpointError``); a broken connection is closed.

    With ``each``, a Sync follows every statement: each is its own
    transaction, committed before the next one runs, which runs even if the
    one before failed; and each statement's outcome is returned, its rows or
    the ``psycopg.Error`` it ended with (not raised).
    """
    connection = wire.connection
    with connection.lock:
        pgconn = connection.pgconn
        if _PIPELINES:
            try:
                pgconn.enter_pipeline_mode()  # in the try: a Ctrl-C here too leaves it
                results = _pipelined(wire, pgconn, calls, each)
            finally:
                if not connection.closed and pgconn.pipeline_status != pq.PipelineStatus.OFF:
                    try:
                        pgconn.exit_pipeline_mode()
                    except psycopg.Error:  # left busy by a failure: unusable
                        connection.close()
        else:
            results = []
            for statement, args in calls:
                if statement.name not in wire.prepared:
                    pgconn.send_prepare(statement.name, statement.sql, statement.types)
                    _succeeded(connection, _answers(connection, pgconn, 1))
                    wire.prepared.add(statement.name)
                pgconn.send_query_prepared(statement.name, *_params(statement, args), 1)
                results += _answers(connection, pgconn, 1)
                if not each:
                    _succeeded(connection, results[-1:])
    if each:
        return [_outcome(connection, result) for result in results]
    return [_rows_of(result) for result in results]


def _outcome(connection: psycopg.Connection[Any], result: Any) -> Any:
    """A statement's rows, or the ``psycopg.Error`` it ended with (not raised)."""
    try:
        _succeeded(connection, [result])
    except psycopg.Error as exc:
        return exc
    return _rows_of(result)


def _pipelined(
    wire: _Wire,
    pgconn: Any,
    calls: builtins.list[tuple[_Statement, dict[str, Any]]],
    each: bool,
) -> builtins.list[Any]:
    preparing = []
    for statement, _ in calls:  # first every PREPARE, whose answers come first
        if statement.name not in wire.prepared and statement.name not in preparing:
            pgconn.send_prepare(statement.name, statement.sql, statement.types)
            preparing.append(statement.name)
    for statement, args in calls:
        pgconn.send_query_prepared(statement.name, *_params(statement, args), 1)
        if each:
            pgconn.pipeline_sync()
    if not each:
        pgconn.pipeline_sync()
    syncs = len(calls) if each else 1
    results = _answers(wire.connection, pgconn, len(preparing) + len(calls), syncs=syncs)
    for name, result in zip(preparing, results, strict=False):
        if result.status == pq.ExecStatus.COMMAND_OK:  # prepared, whatever failed after it
            wire.prepared.add(name)
    if each:  # a failed PREPARE or statement stops only its own transaction
        return results[len(preparing) :]
    return _succeeded(wire.connection, results)[len(preparing) :]


def _answers(
    connection: psycopg.Connection[Any], pgconn: Any, count: int, *, syncs: int = 0
) -> builtins.list[Any]:
    """Flush what was sent, then read ``count`` results (piped: up to the ``syncs``-th Sync).

    The results are returned unchecked.
    """
    try:
        results: builtins.list[Any] = []
        fd = pgconn.socket
        while pgconn.flush():
            _wait(fd, select.POLLOUT)
        while True:
            while pgconn.is_busy():
                _wait(fd, select.POLLIN)
                pgconn.consume_input()
            result = pgconn.get_result()
            if result is None:
                if not syncs and len(results) == count:
                    break
                if connection.closed or pgconn.status == pq.ConnStatus.BAD:
                    # closed under this thread (a Ctrl-C in another one ended the session)
                    msg = "the connection was closed while its answer was awaited"
                    raise psycopg.OperationalError(msg)
                continue
            if result.status == pq.ExecStatus.PIPELINE_SYNC:
                syncs -= 1
                if not syncs:
                    break
                continue
            results.append(result)
    except BaseException:
        connection.close()  # a statement left half-read: the connection cannot be used again
        raise
    return results


def _succeeded(
    connection: psycopg.Connection[Any], results: builtins.list[Any]
) -> builtins.list[Any]:
    """``results``, or the first error among them raised as psycopg's exception for it."""
    for result in results:
        if result.status not in (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK):
            raise psycopg.errors.error_from_result(result, encoding=connection.info.encoding)
    return results


def _rows_of(result: Any) -> builtins.list[tuple[Any, ...]]:
    oids = [result.ftype(j) for j in range(result.nfields)]
    return [
        tuple(_value(result.get_value(i, j), oid) for j, oid in enumerate(oids))
        for i in range(result.ntuples)
    ]


_APPENDING = _Statement("pausegraph_append", _APPEND)
_APPENDING_LAST = _Statement("pausegraph_append_last", _APPEND_ENDING)
_TAKING = _Statement("pausegraph_take", _TAKE)
_LISTING = _Statement(
    "pausegraph_frames",
    _FRAMES.replace(_RUN_ARGS, _NAMED_RUN),
)
_RELEASING = _Statement("pausegraph_release", _RELEASE)
_RELEASING_FORGETTING = _Statement("pausegraph_release_forget", _RELEASE_FORGETTING)
_RELEASING_NOTIFYING = _Statement("pausegraph_release_notify", _RELEASE_AND_NOTIFY)
_BACKEND = _Statement("pausegraph_backend", "SELECT pg_backend_pid()")

_POOLING = (
    "a direct connection or session pooling is needed: a transaction-pooling proxy "
    "(PgBouncer in transaction mode) moves a session lock between clients"
)

_T = TypeVar("_T")

# connections a forked child inherited: kept referenced so that they are never
# finalized (closed) there, which would end the parent's sessions
_INHERITED: list[Any] = []


def _id(value: str) -> bytes:
    return value.encode("utf-8", "surrogatepass")


def _str(value: bytes) -> str:
    return bytes(value).decode("utf-8", "surrogatepass")


def _readable(fd: int, timeout_s: float) -> bool:
    """Whether ``fd`` has something to read, waiting up to ``timeout_s`` seconds."""
    if hasattr(select, "poll"):  # no limit on descriptor numbers, unlike select()
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(max(0, int(timeout_s * 1000 + 0.999))))
    return bool(select.select([fd], [], [], timeout_s)[0])


def _wait(fd: int, event: int) -> None:
    """Block until ``fd`` is ready for ``event`` (``select.POLLIN`` or ``POLLOUT``), or fails."""
    poller = select.poll()
    poller.register(fd, event)
    poller.poll()


def _infos(rows: list[Any]) -> list[FrameInfo]:
    return [
        FrameInfo(s, step, _str(label), t, bool(snap), n) for s, step, label, t, snap, n in rows
    ]


# a URL whose part before its query, up to the last '@' there, holds another '@' or a
# '/': an unencoded one in a password, which libpq would read as host or path, and print
_AMBIGUOUS_USERINFO = re.compile(r"^postgres(?:ql)?://[^@?#]*[@/][^?#]*@", re.IGNORECASE)


def describe(conninfo: str) -> str:
    """``conninfo`` as ``postgresql://user:***@host:port/dbname``: a password given shows
    as ``***`` (``postgresql://user@host...`` without one).

    Its ``options`` (a ``search_path``, which says whose tables these are)
    are kept, as ``?options=...``.
    """
    try:
        parts = conninfo_to_dict(conninfo)
    except Exception:
        return "postgresql://?"
    hidden = ":***" if parts.get("password") else ""
    user = f"{parts.get('user') or ''}{hidden}@" if parts.get("user") or hidden else ""
    host = parts.get("host") or parts.get("hostaddr") or ""
    port = f":{parts['port']}" if parts.get("port") else ""
    options = f"?options={quote(str(parts['options']))}" if parts.get("options") else ""
    return f"postgresql://{user}{host}{port}/{parts.get('dbname', '')}{options}"


def _halves(key: int) -> tuple[int, int]:
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
    return unsigned >> 32, unsigned & 0xFFFF_FFFF


def _taking(key: int, ids: tuple[bytes, bytes]) -> dict[str, Any]:
    """The arguments of taking a run's lock (``_TAKING``): its key, ids, and who takes it."""
    me = Holder.here()
    return {"key": key, "w": ids[0], "r": ids[1], "pid": me.pid, "host": me.host,
            "since": me.since_ms}  # fmt: skip


class _Local(threading.local):
    pid: int = -1
    connection: psycopg.Connection[Any] | None = None
    wire: _Wire | None = None  # the connection's, for the hot statements
    # after an append that ended a call (committed synchronously): the handle's append
    # count then, and the (key, session) of the run's lock it found still held (or None)
    checked: tuple[int, _Hold | None] | None = None
    # an append that ended a call and let its run go found the lock already lost: what
    # the next sync() in this thread raises (the append itself was saved: the seq decides)
    lost: str | None = None

    def __init__(self) -> None:
        # the holds this thread has open, by run: a save belongs to its own thread's hold
        self.holds: dict[tuple[str, str], _Hold] = {}


class _Hold:
    """One ``with lock(...)`` of a run: its lock's key and session, and whether it let go early.

    ``ended`` turns true when the append that ended its call let the run go
    (see Letting go early): its ``with`` then sends nothing on exit, and a
    later append of the same thread takes the lock again first.
    """

    __slots__ = ("ended", "key", "name", "session")

    def __init__(self, name: tuple[str, str], key: int, session: _LockSession) -> None:
        self.name, self.key, self.session = name, key, session
        self.ended = False


class _LockSession:
    """The connection that holds this handle's live locks, in one process."""

    def __init__(self, connection: psycopg.Connection[Any], backend_pid: int) -> None:
        self.connection = connection
        self.wire = _Wire(connection)
        self.backend_pid = backend_pid
        self.pid = os.getpid()
        self.broken = False  # the connection failed (not a pooler): another may be opened


def _unlock_quietly(session: _LockSession, key: int | None) -> None:
    """Unlock the run's lock ``key`` (``None``: every lock) on the lock session, errors ignored.

    A session that ended has let its locks go already; one left mid-exchange
    cannot be asked, so it is ended instead (``broken``).
    """
    connection = session.connection
    if connection.closed:
        return  # the session ended: the server let its locks go
    if connection.pgconn.pipeline_status != pq.PipelineStatus.OFF:
        session.broken = True
        connection.close()
        return
    with contextlib.suppress(psycopg.Error):
        if key is None:
            connection.execute("SELECT pg_advisory_unlock_all()")
        else:
            connection.execute("SELECT pg_advisory_unlock(%s)", (key,))


class PostgresStore:
    """The PostgreSQL store: every run in one database (see the module documentation)."""

    def __init__(self, conninfo: str) -> None:
        if not isinstance(conninfo, str) or not conninfo or conninfo != storable(conninfo):
            msg = f"PostgresStore(conninfo) takes a libpq URL or conninfo string, got {conninfo!r}"
            raise CheckpointError(msg)
        how = (
            "write it as postgresql://USER:PASSWORD@HOST:PORT/DBNAME, with '@', '/', ':' "
            "and '%' in the user name or password percent-encoded (%40, %2F, %3A, %25)"
        )
        if _AMBIGUOUS_USERINFO.match(conninfo):  # a password would be read as a host or path
            msg = f"PostgreSQL store URL cannot be read (an '@' or '/' before its host); {how}"
            raise CheckpointError(msg)
        try:
            conninfo_to_dict(conninfo)
        except psycopg.Error as exc:  # libpq quotes the URL, password and all: not repeated
            reason = re.sub(
                r'"([^"]*)"',
                lambda m: '"..."' if len(m[1]) > 1 and m[1] in conninfo else m[0],
                str(exc).replace(conninfo, "(the URL)"),
            ).strip()
            msg = f"PostgreSQL store URL cannot be read ({reason}); {how}"
            raise CheckpointError(msg) from None
        self.conninfo = conninfo
        self.where = describe(conninfo)
        self._local = _Local()
        self._mutex = threading.RLock()  # guards _open and the lock session
        self._open: list[tuple[int, psycopg.Connection[Any]]] = []  # (pid, connection)
        self._session: _LockSession | None = None
        # the runs whose lock a ``with`` of this handle holds now, in any thread (a hold
        # let go early is not here: see Letting go early)
        self._holding: dict[tuple[str, str], _Hold] = {}
        # appends committed (with synchronous_commit off), and how many of them a finished
        # sync() flushed: a sync() that finds all flushed has nothing to wait for, but one
        # that another thread's flush, still under way, will cover must flush too
        self._counts = threading.Lock()
        self._appended = 0
        self._flushed = 0
        # runs held whose last append left them queued: their release notifies
        self._queued: dict[tuple[str, str], bool] = {}
        self._listener: tuple[int, psycopg.Connection[Any]] | None = None  # wait_for_work's
        self._listened: set[str] = set()  # the channels it listens on
        # a held run's frame list as read when its lock was taken, by the (process,
        # thread) that took it: the next frames() of that run in that thread returns it (once)
        self._listed: dict[tuple[str, str], tuple[tuple[int, int], builtins.list[FrameInfo]]] = {}
        self._namespace = b""
        # whether the tables are there: a store opened on an empty schema makes them only
        # with its first write, so that a read (a command given a wrong id) changes nothing
        self._ready = False
        try:
            self._tables(False)
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"<PostgresStore {self.where!r}>"

    def close(self) -> None:
        """Close this handle's connections (releasing its live locks); used again, it reopens.

        Call it when no other thread is using the handle. In a forked child it
        leaves the parent's connections alone.
        """
        with self._mutex:
            connections, self._open = self._open, []
            session, self._session = self._session, None
            listener, self._listener = self._listener, None
        if session is not None:
            # closing the socket ends the session, and its locks, only when the server
            # notices, a moment later: another handle would find the runs still held
            if session.pid == os.getpid() and not session.broken:
                _unlock_quietly(session, None)
            connections.append((session.pid, session.connection))
        if listener is not None:
            connections.append(listener)
        for pid, connection in connections:
            if pid == os.getpid():
                connection.close()
            else:
                _INHERITED.append(connection)
        self._local = _Local()

    # --- connections and errors -----------------------------------------------------

    def _connect(self) -> psycopg.Connection[Any]:
        """A new connection, with the store's session settings (``_SESSION``)."""
        connection = self._connected()
        given, version = connection.info.options, connection.info.server_version
        try:
            try:
                connection.execute(_SESSION)
            except psycopg.OperationalError:  # a timeout of a millisecond or so, or a failure
                connection.close()
                connection = self._connected(options=_retry_options(given, version))
                connection.execute(_SESSION)
        except psycopg.Error as exc:
            connection.close()
            raise self._failed(exc) from exc
        except BaseException:
            connection.close()
            raise
        return connection

    def _connected(self, options: str | None = None) -> psycopg.Connection[Any]:
        """A new connection (``options``: the session's, in place of those libpq finds)."""
        try:
            if options is None:
                return psycopg.connect(self.conninfo, autocommit=True)
            return psycopg.connect(self.conninfo, autocommit=True, options=options)
        except psycopg.Error as exc:
            msg = f"PostgreSQL store {self.where} cannot connect: {exc}".rstrip()
            raise CheckpointError(msg) from None

    def _connection(self) -> psycopg.Connection[Any]:
        local = self._local
        connection = local.connection
        if connection is not None and local.pid == os.getpid() and not connection.closed:
            return connection
        connection = self._connect()
        local.pid, local.connection, local.wire = os.getpid(), connection, _Wire(connection)
        with self._mutex:
            self._open.append((os.getpid(), connection))
        close_at_thread_end(local, self, self._mutex, connection, Exception)
        return connection

    def _failed(self, exc: psycopg.Error) -> CheckpointError:
        if isinstance(exc, psycopg.errors.DuplicatePreparedStatement) and "pausegraph_" in str(
            exc
        ):  # prepared on this connection's session by another client: a transaction pooler
            return CheckpointError(
                f"PostgreSQL store {self.where}: the server session already holds a statement "
                f"this connection never prepared there ({exc}); {_POOLING}"
            )
        return CheckpointError(f"PostgreSQL store {self.where} failed: {exc}".rstrip())

    def _guarded(self, work: Callable[[psycopg.Connection[Any]], _T]) -> _T:
        """Run ``work`` on this thread's connection; psycopg's errors become ours."""
        connection = self._connection()
        try:
            return work(connection)
        except psycopg.Error as exc:
            if connection.closed or connection.broken:
                self._drop(connection)
            raise self._failed(exc) from exc
        except BaseException:  # a Ctrl-C inside a query leaves the connection busy: drop it
            self._drop(connection)
            raise

    def _sent(self, statement: _Statement, args: dict[str, Any]) -> builtins.list[Any]:
        """Run a hot statement on this thread's connection (see ``_exchange``); its rows."""
        connection = self._connection()
        wire = self._local.wire
        assert wire is not None
        assert wire.connection is connection
        try:
            return _exchange(wire, [(statement, args)])[0]
        except psycopg.Error as exc:
            if connection.closed or connection.broken:
                self._drop(connection)
            raise self._failed(exc) from exc
        except BaseException:  # interrupted: _exchange closed a connection left half-read
            if connection.closed:
                self._drop(connection)
            raise

    def _drop(self, connection: psycopg.Connection[Any]) -> None:
        with self._mutex:
            self._open = [(p, c) for p, c in self._open if c is not connection]
        if self._local.connection is connection:
            self._local.connection = self._local.wire = None
        connection.close()

    def _create_schema(self, connection: psycopg.Connection[Any], create: bool = True) -> bool:
        """Check the tables' version (upgrading an old layout); make them if ``create``.

        Returns whether they are there now.
        """
        with connection.transaction():
            row = connection.execute("SELECT current_schema()").fetchone()
            if row is None or row[0] is None:
                msg = (
                    f"PostgreSQL store {self.where}: no schema of the search_path exists "
                    "to make the store's tables in; create one or set search_path"
                )
                raise CheckpointError(msg)
            self._namespace = _id(row[0])
            connection.execute("SELECT pg_advisory_xact_lock(%s)", (self._key(b"schema", b""),))
            # the schema holding the tables (the first of search_path that has them), whose
            # name keys the live locks: every handle on these tables takes the same keys
            found = connection.execute(
                "SELECT n.nspname FROM pg_class AS c JOIN pg_namespace AS n "
                "ON n.oid = c.relnamespace WHERE c.oid = to_regclass('pausegraph_schema')"
            ).fetchone()
            if found is not None and found[0] is not None:
                self._namespace = _id(found[0])
            else:
                if not create:
                    return False
                for statement in _SCHEMA.split(";"):
                    connection.execute(statement.encode())
                connection.execute("INSERT INTO pausegraph_schema VALUES (%s)", (SCHEMA_VERSION,))
                return True
            row = connection.execute(
                "SELECT max(version), (SELECT relpersistence::text FROM pg_class "
                "WHERE oid = to_regclass('pausegraph_holders')) FROM pausegraph_schema"
            ).fetchone()
            version = 0 if row is None or row[0] is None else int(row[0])
            if version == SCHEMA_VERSION and row is not None and row[1] == "p":
                # made logged by an earlier release: the notes need no WAL (see Locking)
                connection.execute("ALTER TABLE pausegraph_holders SET UNLOGGED")
            if version > SCHEMA_VERSION:
                msg = (
                    f"PostgreSQL store {self.where} has schema version {version}, newer "
                    f"than this pausegraph's {SCHEMA_VERSION}: upgrade pausegraph to open it"
                )
                raise CheckpointError(msg)
            if version == 1:  # ids as keys: upgraded in place (see _UPGRADE_FROM_1)
                for statement in _UPGRADE_FROM_1:
                    connection.execute(statement.encode())
                connection.execute("INSERT INTO pausegraph_schema VALUES (%s)", (SCHEMA_VERSION,))
            elif version != SCHEMA_VERSION:
                msg = (
                    f"PostgreSQL store {self.where} has schema version {version}, which "
                    f"this pausegraph ({SCHEMA_VERSION}) does not know; pausegraph_schema "
                    "should hold one row, the layout's version"
                )
                raise CheckpointError(msg)
        return True

    def _tables(self, create: bool) -> bool:
        """Whether the store's tables are there, made now if ``create`` (asked until they are).

        Another process may make them while this one waits for the lock that
        guards their making: this connection, which looked before, may then
        still take them for missing and fail to make them again ("already
        exists"); a new transaction sees them, so it asks once more.
        """
        if not self._ready:
            for attempt in (1, 2):
                try:
                    self._ready = self._guarded(lambda c: self._create_schema(c, create))
                    break
                except CheckpointError as exc:
                    raced = (psycopg.errors.DuplicateTable, psycopg.errors.UniqueViolation)
                    if attempt == 2 or not isinstance(exc.__cause__, raced):
                        raise
        return self._ready

    def _key(self, workflow: bytes, run: bytes) -> int:
        digest = hashlib.sha256(pack([b"pausegraph", self._namespace, workflow, run])).digest()
        return int.from_bytes(digest[:8], "big", signed=True)

    # --- the Store protocol ---------------------------------------------------------

    def append(self, info: FrameInfo, frame: bytes, summary: RunSummary) -> None:
        self._tables(True)  # the first write to an empty schema makes the tables
        workflow_id, run_id = summary.workflow_id, summary.run_id
        ids = (_id(workflow_id), _id(run_id))
        name = (workflow_id, run_id)
        self._listed.pop(name, None)
        own = self._local.holds.get(name)  # this thread's hold of the run, if any
        if own is not None and own.session.pid != os.getpid():
            own = None  # a forked child: the hold is its parent's
        if own is not None and own.ended:  # let go early, and saved to again
            self._retake(own)
        held = own if own is not None else self._held(workflow_id, run_id)
        if held is not None:
            self._check_session(workflow_id, run_id, held.session)
        args = {
            "w": ids[0], "r": ids[1], **_digests(*ids), "seq": info.seq, "step": info.super_step,
            "label": _id(info.label), "t": info.timestamp_ms, "snap": info.snapshot,
            "frame": frame, "sseq": summary.seq, "status": summary.status,
            "updated": summary.updated_ms, "deadline": summary.deadline_ms, "data": summary.data,
        }  # fmt: skip
        ending = summary.status != "queued"  # a call's last checkpoint: sync() comes next
        if ending:  # the run's lock, to check with it (none: nothing to check)
            if held is None:
                args.update(kc=None, ko=None, kp=None)
            else:
                high, low = _halves(held.key)
                args.update(kc=high, ko=low, kp=held.session.backend_pid)
        self._local.checked = None
        with self._counts:
            covered = self._appended  # committed before this statement is sent
        # alone on the lock connection (one hold in the process): the ending append goes there,
        # with the unlock; with other holds, on this thread's connection, so that the threads'
        # flushes run side by side (the server commits them together) instead of in a queue
        if ending and own is not None and _PIPELINES and len(self._holding) == 1:
            row = self._append_and_let_go(own, args)
        else:
            row = self._sent(_APPENDING_LAST if ending else _APPENDING, args)[0]
        last, added = int(row[0]), int(row[1])
        if not added:  # the seq is taken (by a writer that committed meanwhile), or a gap
            refuse_seq(workflow_id, run_id, info.seq, info.seq if last == info.seq - 1 else last)
        with self._counts:  # on the server; durable now if ending, else at the next sync()
            self._appended += 1
            if ending:  # flushed: every append committed before it was sent, and itself
                alone = self._appended == covered + 1  # no other thread's append counted since
                self._flushed = max(self._flushed, self._appended if alone else covered)
                if row[-1]:  # and the run's lock (if held) was still held: sync() may trust it
                    self._local.checked = (self._appended, held)
                elif row[-1] is False and held is not None and held.ended:  # sync() cannot ask
                    self._local.lost = self._lost_message(name, held.session.backend_pid)
        if held is not None and not held.ended:
            self._queued[name] = summary.status == "queued"

    def _append_and_let_go(self, hold: _Hold, args: dict[str, Any]) -> tuple[Any, ...]:
        """The append that ends a call, then the run's unlock: one round trip, two transactions.

        Both go on the lock connection, each with its own Sync: the append
        commits (synchronously) before the unlock runs, so nobody can take
        the run before the checkpoint that ends the call is durable and
        visible, and the unlock runs even if the append failed. The hold is
        then over (``hold.ended``); its ``with`` sends nothing when it exits.
        Returns the append's row, whose last value says whether the lock was
        still held: the unlock's answer, true only if this session held the
        lock, on which the append ran just before it (the append itself
        asks ``pg_locks`` only on another connection), or ``None`` if the
        unlock failed (unknown).
        """
        key, session = hold.key, hold.session
        args.update(kc=None, ko=None, kp=None)  # the unlock's answer tells (see above)
        with self._mutex:
            # out of the holds before the unlock is sent, as ``_release`` does: another
            # thread's sync() checking the locks meanwhile takes it for let go, not lost
            if self._holding.get(hold.name) is hold:
                del self._holding[hold.name]
            hold.ended = True
            try:
                appended, released = _exchange(
                    session.wire, [(_APPENDING_LAST, args), (_RELEASING, {"key": key})], each=True
                )
            except psycopg.Error as exc:  # the connection broke: its locks went with it
                session.connection.close()
                session.broken = True
                raise self._failed(exc) from exc
            except BaseException:  # the unlock may not have been sent: send it now
                _unlock_quietly(session, key)
                raise
            still: bool | None = None
            if isinstance(released, psycopg.Error):  # cancelled, say: once more
                _unlock_quietly(session, key)
            else:
                self._same_backend(session, released[0][-1])
                still = bool(released[0][0])
        if isinstance(appended, psycopg.Error):  # nothing of it was saved
            raise self._failed(appended)
        return (*appended[0][:-1], still)

    def _retake(self, hold: _Hold) -> None:
        """Take again, for ``hold``, the lock of a run it let go with an append that ended a call.

        The engine saves nothing after such an append; a caller of the store
        that does gets the lock back first, or ``ConflictError`` naming whoever
        took the run meanwhile (another thread of this process included:
        nothing saved), or ``CheckpointError`` if the lock session is gone.
        """
        workflow_id, run_id = name = hold.name
        with self._mutex:
            session = hold.session
            if session is not self._session or session.connection.closed:
                msg = (
                    f"run {run_id!r} of workflow {workflow_id!r}: this process lost its live "
                    f"lock (its database session {session.backend_pid} ended); nothing was saved"
                )
                raise CheckpointError(msg)
            # session locks are re-entrant: a hold of another thread is refused here
            if self._held(*name) is not None:
                raise ConflictError(held_message(workflow_id, run_id, self.holder(*name)))
            args = _taking(hold.key, (_id(workflow_id), _id(run_id)))
            if not self._take(session, args):
                raise ConflictError(held_message(workflow_id, run_id, self.holder(*name)))
            self._listed.pop(name, None)
            hold.ended = False
            self._holding[name] = hold

    def _check_session(self, workflow_id: str, run_id: str, session: _LockSession) -> None:
        """Refuse to save for a run whose lock session this process knows, or sees, is gone.

        No round trip while the lock connection is idle and quiet: a session
        the server ended sends its goodbye (or a closed socket) to the client,
        and only then is the session asked. ``sync()`` checks with the server.
        """
        if session is self._session and not session.connection.closed:
            try:
                quiet = not _readable(session.connection.fileno(), 0)
            except (OSError, ValueError, psycopg.Error):
                quiet = False
            if quiet:
                return
            with self._mutex, contextlib.suppress(CheckpointError):
                self._on_session(session, _BACKEND, {})
                return
        msg = (
            f"run {run_id!r} of workflow {workflow_id!r}: this process lost its live lock "
            f"(its database session {session.backend_pid} ended, or a pooler moved it: "
            f"{_POOLING}); nothing was saved. Another driver may have taken the run over"
        )
        raise CheckpointError(msg)

    def frames(self, workflow_id: str, run_id: str) -> builtins.list[FrameInfo]:
        listed = self._listed.pop((workflow_id, run_id), None)
        if listed is not None and listed[0] == (os.getpid(), threading.get_ident()):
            return listed[1]
        if not self._tables(False):
            return []
        return _infos(self._rows(_FRAMES, (_id(workflow_id), _id(run_id))))

    def read(self, workflow_id: str, run_id: str, first: int, last: int) -> builtins.list[bytes]:
        if not self._tables(False):
            return []
        rows = self._rows(
            f"SELECT frame FROM pausegraph_frames WHERE run_digest = {_RUN_ARGS} "
            "AND seq BETWEEN %s AND %s ORDER BY seq",
            (_id(workflow_id), _id(run_id), first, last),
        )
        return [bytes(frame) for (frame,) in rows]

    def runs(
        self, *, workflow_id: str | None = None, status: str | None = None
    ) -> builtins.list[RunSummary]:
        if not self._tables(False):
            return []
        where: builtins.list[str] = []
        args: builtins.list[bytes | str] = []
        if workflow_id is not None:
            # the digest finds the rows (indexed); the id itself is compared too
            where.append(f"workflow_digest = {_WORKFLOW_DIGEST.format(w='%s')} AND workflow = %s")
            args += [_id(workflow_id), _id(workflow_id)]
        if status is not None:
            where.append("status = %s")
            args.append(status)
        query = (
            "SELECT workflow, run, seq, status, updated_ms, deadline_ms, data FROM pausegraph_runs"
        )
        if where:
            query += " WHERE " + " AND ".join(where)
        return [
            RunSummary(_str(w), _str(r), seq, st, updated, deadline, bytes(data))
            for w, r, seq, st, updated, deadline, data in self._rows(query, tuple(args))
        ]

    def delete(self, workflow_id: str, run_id: str) -> None:
        self._listed.pop((workflow_id, run_id), None)
        if not self._tables(False):
            return  # no tables, no run
        ids = (_id(workflow_id), _id(run_id))

        def delete(connection: psycopg.Connection[Any]) -> None:
            with connection.transaction():
                connection.execute(
                    f"DELETE FROM pausegraph_frames WHERE run_digest = {_RUN_ARGS}", ids
                )
                connection.execute(
                    f"DELETE FROM pausegraph_runs WHERE run_digest = {_RUN_ARGS}", ids
                )
                # the holder's note, unless its session holds the run's lock now
                connection.execute(
                    f"DELETE FROM pausegraph_holders AS h WHERE run_digest = {_RUN_ARGS} "
                    "AND NOT EXISTS (" + _HELD + " AND pid = h.backend_pid)",
                    (*ids, *_halves(self._key(*ids))),
                )

        self._guarded(delete)

    def lock(self, workflow_id: str, run_id: str) -> AbstractContextManager[None]:
        """Hold the run's live lock: a session advisory lock on this handle's lock connection."""
        return self._hold(workflow_id, run_id)

    @contextmanager
    def _hold(self, workflow_id: str, run_id: str) -> Iterator[None]:
        name = (workflow_id, run_id)
        ids = (_id(workflow_id), _id(run_id))
        # the holder's note needs the tables (a hold is for writing), and their schema keys
        self._tables(True)  # the lock (see _create_schema)
        key = self._key(*ids)
        args = _taking(key, ids)
        with self._mutex:
            if self._held(*name) is not None:  # session locks are re-entrant: refuse it here
                raise ConflictError(held_message(workflow_id, run_id, self.holder(*name)))
            session = self._lock_session()
            got: bool | None = None  # None: the lock may have been taken, unrecorded
            hold: _Hold | None = None
            try:
                try:
                    got = self._take(session, args)
                except CheckpointError:  # _take gave the lock back if its session lives
                    got = False
                    if not session.broken:
                        raise
                    session = self._lock_session()  # it had dropped: once more, on a new one
                    got = None
                    got = self._take(session, args)
                if not got:
                    raise ConflictError(held_message(workflow_id, run_id, self.holder(*name)))
                hold = _Hold(name, key, session)
                self._holding[name] = hold
            except BaseException:
                if got is not False:  # a Ctrl-C after the lock was taken: give it back
                    if hold is not None and self._holding.get(name) is hold:
                        del self._holding[name]
                    _unlock_quietly(session, key)
                raise
        mine = self._local.holds
        outer = mine.get(name)  # this thread's earlier hold of the run, let go early, if any
        try:
            self._queued.pop(name, None)
            mine[name] = hold
            yield
        finally:
            if outer is None:
                mine.pop(name, None)
            else:
                mine[name] = outer
            self._let_go(hold, ids)

    def _let_go(self, hold: _Hold, ids: tuple[bytes, bytes]) -> None:
        """``_release`` under the mutex; interrupted before it let the lock go, end the session.

        A Ctrl-C that lands while the hold waits for the mutex (another thread
        is on the lock connection) would leave the lock held for as long as
        the process lives: closing the lock connection ends the session, and
        the server lets go of its locks (the handle's other holds learn they
        lost theirs before their next save or effect).
        """
        try:
            with self._mutex:
                self._release(hold, ids)
        except BaseException:
            session = hold.session
            if (
                not hold.ended
                and self._holding.get(hold.name) is hold
                and session.pid == os.getpid()
            ):
                self._holding.pop(hold.name, None)
                session.broken = True
                with contextlib.suppress(BaseException):
                    session.connection.close()
            raise

    def _take(self, session: _LockSession, args: dict[str, Any]) -> bool:
        """Try the lock and note its holder, in one statement; ``True`` if taken.

        The run's frame list comes back in the same round trip, read after
        the lock is taken: the engine's next call is ``frames()``, which
        gets it once from ``_listed`` (see there).
        """
        try:
            (got, _noted, _mode), rows = self._on_session(session, _TAKING, args, (_LISTING, args))
        except CheckpointError:
            # the lock outlives a failed statement: give it back if the session lives
            _unlock_quietly(session, args["key"])
            raise
        if got:
            name = (_str(args["w"]), _str(args["r"]))
            self._listed[name] = ((os.getpid(), threading.get_ident()), _infos(rows))
        return bool(got)

    def _release(self, hold: _Hold, ids: tuple[bytes, bytes]) -> None:
        """Let ``hold``'s lock go, unless the append that ended its call did (under ``_mutex``)."""
        name, key, session = hold.name, hold.key, hold.session
        if session.pid != os.getpid():
            return  # a forked child: the lock is its parent's
        if hold.ended or self._holding.get(name) is not hold:
            return  # let go already: what is kept for the run now is another hold's
        del self._holding[name]
        queued = self._queued.pop(name, False)
        self._listed.pop(name, None)
        if session.connection.closed or session is not self._session:
            return  # the session ended: the server released its locks
        args = {"w": ids[0], "r": ids[1], "key": key}
        if queued:  # the hold left the run queued: a driver is wanted
            args["channel"] = self._channel
        # an error there closed a broken lock session, and its locks went with it
        with contextlib.suppress(CheckpointError):
            self._on_session(
                session, _RELEASING_NOTIFYING if queued else _RELEASING_FORGETTING, args
            )

    def _lock_session(self) -> _LockSession:
        """This handle's lock connection in this process (call it under ``_mutex``)."""
        session = self._session
        if session is not None and session.pid == os.getpid() and not session.connection.closed:
            return session
        if session is not None and session.pid != os.getpid():
            _INHERITED.append(session.connection)  # the parent's: never close it here
        connection = self._connect()
        try:
            row = connection.execute("SELECT pg_backend_pid()").fetchone()
        except psycopg.Error as exc:
            connection.close()
            raise self._failed(exc) from exc
        assert row is not None
        self._session = _LockSession(connection, int(row[0]))
        return self._session

    def _on_session(
        self,
        session: _LockSession,
        statement: _Statement,
        args: dict[str, Any],
        then: tuple[_Statement, dict[str, Any]] | None = None,
    ) -> Any:
        """Run ``statement`` (its last column ``pg_backend_pid()``) on the lock connection.

        A backend other than the session's is a transaction-pooling proxy at
        work. With ``then`` (a statement and its arguments), that one is sent
        in the same round trip (pipeline mode), run after ``statement`` with a
        snapshot of its own, and ``(values, its rows)`` is returned.
        """
        connection = session.connection
        try:
            answers = _exchange(session.wire, [(statement, args)] + ([then] if then else []))
        except psycopg.Error as exc:
            if connection.broken or connection.closed:
                connection.close()
                session.broken = True
            raise self._failed(exc) from exc
        row = answers[0][0]
        rows = answers[1] if then is not None else []
        *values, backend = row
        self._same_backend(session, backend)
        return values if then is None else (values, rows)

    def _same_backend(self, session: _LockSession, backend: int) -> None:
        """Refuse a lock connection whose server process changed: a pooler moved it."""
        if backend != session.backend_pid:
            session.connection.close()
            msg = (
                f"PostgreSQL store {self.where}: the live-lock connection moved from server "
                f"process {session.backend_pid} to {backend}; {_POOLING}"
            )
            raise CheckpointError(msg)

    def _held(self, workflow_id: str, run_id: str) -> _Hold | None:
        """The hold of the run's lock if this handle holds it in this process, in any thread."""
        held = self._holding.get((workflow_id, run_id))
        if held is None or held.session.pid != os.getpid():
            return None  # a forked child does not hold its parent's locks
        return held

    def holder(self, workflow_id: str, run_id: str) -> Holder | None:
        if not self._tables(False):
            return None  # nothing was ever saved or held here
        ids = (_id(workflow_id), _id(run_id))
        rows = self._rows(
            "SELECT h.pid, h.host, h.since_ms FROM (" + _HELD.replace("SELECT 1", "SELECT pid")
            + ") AS l LEFT JOIN pausegraph_holders AS h ON h.backend_pid = l.pid "
            f"AND h.run_digest = {_RUN_ARGS}",
            (*_halves(self._key(*ids)), *ids),
        )  # fmt: skip
        if not rows:
            return None
        pid, host, since = rows[0]
        return Holder(0, "?", 0) if pid is None else Holder(pid, host, since)

    def held_among(self, runs: builtins.list[tuple[str, str]]) -> set[tuple[str, str]]:
        """The runs among ``runs`` whose live lock a session holds: one query for them all."""
        if not runs or not self._tables(False):
            return set()
        halves = [_halves(self._key(_id(w), _id(r))) for w, r in runs]
        rows = self._rows(_HELD_AMONG, ([c for c, _ in halves], [o for _, o in halves]))
        return {runs[n - 1] for (n,) in rows}

    def sync(self) -> None:
        """Make the appends durable, and check the live locks this handle holds.

        Appends commit with ``synchronous_commit`` off (the server has them; a
        crash of the server may lose the last ones). One synchronous commit
        here flushes the write-ahead log up to it, so every earlier commit is
        on disk too: one flush per call instead of one per checkpoint. The
        engine calls ``sync()`` before each effect too: a driver whose lock
        session dropped is stopped here, with ``CheckpointError``, before the
        effect runs. Flush and check are one statement: one round trip, none
        with nothing to flush and no lock held. None either right after the
        append of a checkpoint that ends a call (a run left paused, done,
        failed or cancelled), in the same thread with nothing appended since:
        that append committed synchronously and checked the run's lock in its
        own statement (see Durability in the module documentation).
        """
        lost, self._local.lost = self._local.lost, None
        if lost is not None:
            raise CheckpointError(lost)
        # this thread's holds (another thread's lost lock is that thread's to hear of), each
        # with its entry, so that one let go meanwhile (removed before its unlock) is no loss
        mine = [
            (name, hold.key, hold.session.backend_pid, hold)
            for name, hold in list(self._local.holds.items())
            if not hold.ended
            and self._holding.get(name) is hold
            and hold.session.pid == os.getpid()
        ]
        checked, self._local.checked = self._local.checked, None
        with self._counts:
            covered = self._appended  # every append committed before the flush is sent
            flush = covered > self._flushed
        if not flush and not mine:
            return
        if not flush and checked is not None and checked[0] == covered:
            # this thread's last append ended its call: it flushed, and found the lock it
            # held still held; nothing was appended since, and no other lock is held here
            verified = checked[1]
            if all(entry is verified for *_, entry in mine):
                return
        query = (_FLUSH_AND_CHECK if mine else _FLUSH) if flush else _CHECK
        halves = [_halves(key) for _, key, _, _ in mine]
        args = ([h[0] for h in halves], [h[1] for h in halves], [pid for _, _, pid, _ in mine])
        row = self._guarded(
            lambda connection: connection.execute(query, args if mine else ()).fetchone()
        )
        assert row is not None
        if flush:
            with self._counts:
                self._flushed = max(self._flushed, covered)
        for ((workflow_id, run_id), _, backend_pid, entry), still in zip(
            mine, row[-1] if mine else [], strict=True
        ):
            # another thread sharing the handle may have let its run go while the
            # statement ran: a lock is lost only if the hold it was checked for goes on
            if not still and self._holding.get((workflow_id, run_id)) is entry:
                raise CheckpointError(self._lost_message((workflow_id, run_id), backend_pid))

    @staticmethod
    def _lost_message(name: tuple[str, str], backend_pid: int) -> str:
        workflow_id, run_id = name
        return (
            f"run {run_id!r} of workflow {workflow_id!r}: this process lost its live "
            f"lock (its database session {backend_pid} ended, or a pooler moved it: "
            f"{_POOLING}); stopped before its next effect. Another driver may have "
            "taken the run over"
        )

    # --- waking workers -------------------------------------------------------------

    @property
    def _channel(self) -> str:
        """The NOTIFY channel of this store's schema (notifications are database-wide)."""
        return "pausegraph_" + hashlib.sha256(self._namespace).hexdigest()[:16]

    def wait_for_work(self, timeout_s: float) -> bool:
        """Block up to ``timeout_s`` seconds for a sign that a run may be queued.

        ``True`` when a hold of a run that left it ``"queued"`` (``start``,
        ``submit``, a claim) ended since the last call, in any process:
        PostgreSQL's LISTEN/NOTIFY on a connection this method opens (one per
        handle and process) and listens on from its first call, so work queued
        after that first call is never missed. ``False`` after the timeout.
        Runs left queued by a driver that died send nothing: a worker still
        polls. A listening connection that dropped (its session ended) is
        closed and opened again, listening, and the call that saw it returns
        ``True``: what was sent meanwhile is lost, so something may be
        queued. Raises ``CheckpointError`` if the server cannot be reached
        to listen (a dropped connection that could not be opened again is
        tried again, and so reported, by the next call).
        """
        self._tables(False)  # the tables' schema names the channel (see _create_schema)
        connection = self._listening()
        deadline = time.monotonic() + max(timeout_s, 0.0)
        try:
            while True:
                if self._heard(connection):
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                _readable(connection.fileno(), left)
        except (OSError, ValueError, psycopg.Error):
            with self._mutex:
                if self._listener is not None and self._listener[1] is connection:
                    self._listener = None
            connection.close()
        # listen again now, before the caller looks for work, so that nothing queued
        # after its look is missed; if the server is not there, the next call says so
        with contextlib.suppress(CheckpointError):
            self._listening()
        return True

    def _listening(self) -> psycopg.Connection[Any]:
        """The listening connection, listening on the channel of the tables' schema now."""
        with self._mutex:
            listener = self._listener
            channel = self._channel
            if listener is not None and listener[0] == os.getpid() and not listener[1].closed:
                connection = listener[1]
                if channel in self._listened:
                    return connection
            else:
                if listener is not None and listener[0] != os.getpid():
                    _INHERITED.append(listener[1])  # the parent's: never close it here
                connection = self._connect()
                self._listened = set()
            try:
                connection.execute(f'LISTEN "{channel}"')
            except psycopg.Error as exc:
                connection.close()
                raise self._failed(exc) from exc
            self._listened.add(channel)  # a handle that found its tables later listens on both
            self._listener = (os.getpid(), connection)
            return connection

    @staticmethod
    def _heard(connection: psycopg.Connection[Any]) -> bool:
        """Whether notifications came: they are read (all of them) with an empty query."""
        heard: list[object] = []
        connection.add_notify_handler(heard.append)
        try:
            if _readable(connection.fileno(), 0):
                connection.execute("")
        finally:
            connection.remove_notify_handler(heard.append)
        return bool(heard)

    # --- helpers --------------------------------------------------------------------

    def _rows(self, query: str, args: tuple[Any, ...]) -> builtins.list[Any]:
        return self._guarded(lambda connection: connection.execute(query, args).fetchall())


class PostgresCheckpointer(StoreCheckpointer):
    """Checkpoints in a PostgreSQL database, shared by processes on any number of machines.

    ::

        runner = Runner(graph, PostgresCheckpointer("postgresql://app@db/app"))

    Needs the ``pausegraph[postgres]`` extra (psycopg 3). ``save`` is
    conditional on the seq (the table's primary key); the live lock of a
    running run is a session-level advisory lock on a connection the store
    owns, released when that session ends, so it needs a direct connection
    or session pooling, not a transaction-pooling proxy. Appends commit
    without waiting for the disk; ``sync()`` (called by the engine before
    every effect and before a call returns) flushes them with one
    synchronous commit. ``wait_for_work`` lets a ``Worker`` wake on
    LISTEN/NOTIFY when a run is queued. See docs/storage.md, "The
    PostgreSQL store".
    """

    store: PostgresStore

    def __init__(self, conninfo: str) -> None:
        super().__init__(PostgresStore(conninfo))

    def __repr__(self) -> str:
        return f"<PostgresCheckpointer {self.store.where!r}>"

    def close(self) -> None:
        """Close the database connections (the store opens new ones if used again)."""
        self.store.close()

    def wait_for_work(self, timeout_s: float) -> bool:
        """Block up to ``timeout_s`` seconds for a sign that a run may be queued.

        ``True`` as soon as a ``start``, ``submit`` or other call leaves a run
        ``"queued"`` (in any process, on this database and schema) after
        this handle's first call, ``False`` at the timeout: ``Worker.serve``
        waits with it instead of sleeping its poll interval. ``True`` too
        when the listening connection dropped (it is opened again, listening:
        a notification may have been lost). Raises ``CheckpointError`` if the
        server cannot be reached to listen. See ``PostgresStore.wait_for_work``.
        """
        return self.store.wait_for_work(timeout_s)
