"""``open_checkpointer(url)``: a store named by one string, as ``--store`` takes it."""

from __future__ import annotations

import os
import re
import sqlite3
import urllib.parse
from pathlib import Path

import attrs

from ..errors import CheckpointError
from ._checkpointer import StoreCheckpointer
from .file import FileCheckpointer
from .memory import MemoryCheckpointer
from .sqlite import SqliteCheckpointer

FORMS = "'memory:', a directory path, 'file:PATH', 'sqlite:PATH' or 'postgresql://...'"
# A URL scheme; one letter is a Windows drive ("C:\\runs"), which is a path.
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")
# libpq's keyword form ("host=db dbname=app password=..."): meant for PostgreSQL, and
# never to be made a directory named after it, password and all. Any of libpq's keywords
# (those of PostgreSQL 17) at the start or after white space, followed by "="
_LIBPQ_KEYWORDS = "|".join(
    (
        "host", "hostaddr", "port", "dbname", "user", "password", "passfile", "require_auth",
        "channel_binding", "connect_timeout", "client_encoding", "options", "application_name",
        "fallback_application_name", "keepalives", "keepalives_idle", "keepalives_interval",
        "keepalives_count", "tcp_user_timeout", "replication", "gssencmode", "sslmode",
        "requiressl", "sslnegotiation", "sslcompression", "sslcert", "sslkey", "sslpassword",
        "sslcertmode", "sslrootcert", "sslcrl", "sslcrldir", "sslsni", "requirepeer",
        "ssl_min_protocol_version", "ssl_max_protocol_version", "krbsrvname", "gsslib",
        "gssdelegation", "service", "target_session_attrs", "load_balance_hosts",
    )
)  # fmt: skip
_KEYWORDS = re.compile(rf"(?:^|\s)(?:{_LIBPQ_KEYWORDS})\s*=")


@attrs.frozen
class StoreURL:
    """A parsed store URL; ``kind``: ``"memory"``, ``"file"``, ``"sqlite"``, ``"postgresql"``."""

    kind: str
    target: str


def parse_store_url(url: str) -> StoreURL:
    """Split ``url`` into its kind and target; ``CheckpointError`` naming the accepted forms.

    A path's leading ``~`` or ``~user`` is expanded (``sqlite:~/runs.db`` is
    in the home directory, not in a directory named ``~``).
    """
    if not isinstance(url, str) or not url:
        msg = f"open_checkpointer(url) takes {FORMS}, got {url!r}"
        raise CheckpointError(msg)
    match = _SCHEME.match(url)
    if match is None:
        if _KEYWORDS.search(url):
            msg = (
                "store URL in libpq's keyword form (host=... dbname=...): write a PostgreSQL "
                "store as postgresql://USER@HOST:PORT/DBNAME, or ./NAME for a directory"
            )
            raise CheckpointError(msg)
        return StoreURL("file", os.path.expanduser(url))
    scheme, rest = match.group(1).lower(), url[match.end() :]
    if scheme == "memory" and not rest:
        return StoreURL("memory", "")
    if scheme in ("postgresql", "postgres"):
        return StoreURL("postgresql", url)
    if scheme in ("file", "sqlite"):
        path = rest
        if rest.startswith("//"):  # a URL: file:///abs, file://localhost/abs (RFC 8089)
            host, slash, tail = rest[2:].partition("/")
            if host.lower() not in ("", "localhost"):
                msg = (
                    f"store URL {url!r} names the host {host!r}: a store's files are on this "
                    f"machine; write {scheme}:PATH, or {scheme}:///ABSOLUTE/PATH"
                )
                raise CheckpointError(msg)
            if "?" in tail or "#" in tail:
                msg = (
                    f"store URL {url!r} has a query or a fragment, which a store takes none "
                    f"of; percent-encode a '?' or '#' of the path (%3F, %23), or write "
                    f"{scheme}:PATH"
                )
                raise CheckpointError(msg)
            path = urllib.parse.unquote(slash + tail)  # a URL's path is percent-encoded
        if path:
            return StoreURL(scheme, os.path.expanduser(path))
        msg = f"store URL {url!r} names no path: write {scheme}:PATH"
        raise CheckpointError(msg)
    msg = (
        f"unknown store URL {redact_url(url)!r}: a store is {FORMS} "
        "(write ./NAME for a directory whose name holds a colon)"
    )
    raise CheckpointError(msg)


def open_checkpointer(url: str | os.PathLike[str]) -> StoreCheckpointer | FileCheckpointer:
    """Open the store ``url`` names: the forms ``pausegraph --store`` takes.

    ::

        open_checkpointer("memory:")            # MemoryCheckpointer()
        open_checkpointer("runs")               # FileCheckpointer("runs")
        open_checkpointer("file:runs")          # the same
        open_checkpointer("sqlite:runs.db")     # SqliteCheckpointer("runs.db")
        open_checkpointer("postgresql://app@db/app")  # PostgresCheckpointer(url)

    ``postgresql://...`` (or ``postgres://``) is passed to psycopg as it is;
    it needs the ``pausegraph[postgres]`` extra: without it, a
    ``CheckpointError`` saying ``pip install 'pausegraph[postgres]'``. Any
    other form is a ``CheckpointError`` naming the accepted ones. A file
    store's directory is created if it does not exist (see
    ``FileCheckpointer``); a path naming a regular file is a
    ``CheckpointError`` (a SQLite database's says to write ``sqlite:PATH``).
    A path's leading ``~`` is expanded; a ``pathlib.Path`` (any
    ``os.PathLike``) is a directory path, a file store's.
    """
    if isinstance(url, os.PathLike) and not isinstance(url, str):
        path = os.fspath(url)
        if not isinstance(path, str):  # a PathLike of bytes
            msg = f"open_checkpointer takes a str URL or a path, got {url!r:.80}"
            raise CheckpointError(msg)
        return _file_store(path)
    parsed = parse_store_url(url)
    if parsed.kind == "memory":
        return MemoryCheckpointer()
    if parsed.kind == "file":
        return _file_store(parsed.target)
    if parsed.kind == "sqlite":
        return SqliteCheckpointer(parsed.target)
    try:
        import psycopg  # noqa: F401
    except ImportError:
        msg = (
            f"store URL {describe_url(url)!r}: PostgreSQL stores need psycopg 3: "
            "`pip install 'pausegraph[postgres]'`"
        )
        raise CheckpointError(msg) from None
    from .postgres import PostgresCheckpointer

    return PostgresCheckpointer(parsed.target)


def is_sqlite_file(path: str) -> bool:
    """Whether ``path`` is a SQLite database with something in it (``False`` if unreadable).

    Asked through SQLite, read-only, never by opening the file: closing a
    descriptor of a database file drops every POSIX lock this process holds
    on it, those of SQLite's own connections included, and this process may
    have a store open on that very file. SQLite's own descriptors share its
    locks and are closed with care.
    """
    try:
        if os.path.getsize(path) == 0:
            return False  # an empty file is no database yet (SQLite would take it as one)
        uri = "file:" + urllib.parse.quote(os.path.abspath(path)) + "?mode=ro"
        connection = sqlite3.connect(uri, uri=True)
    except (OSError, sqlite3.Error):
        return False
    try:
        # a file too short for a header (a byte of text) reads as an empty database
        (pages,) = connection.execute("PRAGMA page_count").fetchone()
    except sqlite3.Error:
        return False
    finally:
        connection.close()
    return bool(pages)


def _file_store(path: str) -> FileCheckpointer:
    """The file store at ``path``; ``CheckpointError`` if a regular file is there."""
    if os.path.isfile(path):
        raise CheckpointError(_a_file_is_no_directory(path))
    return FileCheckpointer(Path(path))


def _a_file_is_no_directory(path: str) -> str:
    """Why a file store cannot live at ``path``, a regular file; what to write instead."""
    if is_sqlite_file(path):
        return (
            f"store path {path!r} is a SQLite database, not a store directory: "
            f"open it as 'sqlite:{path}'"
        )
    return (
        f"store path {path!r} is a file, not a store directory: give a directory "
        "(it is created if need be), or 'sqlite:PATH' for a SQLite database"
    )


# The userinfo's password (scheme://user:PASSWORD@host), from the user name's ':' to the
# last '@' before the query (one holding an unencoded '@' or '/' is masked whole), in a URL
# of any scheme (postgresql+psycopg://, or a mistyped one with a space, shown as a path)
_USERINFO_PASSWORD = re.compile(r"^([A-Za-z][A-Za-z0-9+. -]*://[^:@/?#]*):[^?#]*@")


def _without_password_parameter(url: str, replacement: str | None) -> str:
    """``url`` with its ``password=`` query parameters dropped, or their values replaced."""
    base, question, rest = url.partition("?")
    if not question:
        return url
    query, hash_, fragment = rest.partition("#")
    kept = []
    for parameter in query.split("&"):
        if parameter.partition("=")[0].lower() != "password":
            kept.append(parameter)
        elif replacement is not None:
            kept.append(f"{parameter.partition('=')[0]}={replacement}")
    return base + (f"?{'&'.join(kept)}" if kept else "") + hash_ + fragment


def _is_postgres(url: str) -> bool:
    return url[:13].lower().startswith(("postgresql://", "postgres://"))


def describe_url(url: str) -> str:
    """``url`` without a password (``postgresql://user:secret@host`` loses ``:secret``).

    A ``password=`` query parameter goes too; the rest (user, host, port,
    database, the other parameters) stays, so the result still connects
    when libpq finds the password in ``PGPASSWORD`` or ``~/.pgpass``. Any
    other store's URL is returned as it is.
    """
    if not _is_postgres(url):
        return url
    return _without_password_parameter(_USERINFO_PASSWORD.sub(r"\1@", url), None)


def redact_url(url: str) -> str:
    """``url`` to show: a PostgreSQL URL's password as ``***``, any other store as it is.

    ``postgresql://app:secret@db/app?options=-csearch_path%3Dx`` becomes
    ``postgresql://app:***@db/app?options=-csearch_path%3Dx``.
    """
    shown = _USERINFO_PASSWORD.sub(r"\1:***@", url)  # another scheme's too: a typo
    return _without_password_parameter(shown, "***") if _is_postgres(url) else shown


def has_password(url: str) -> bool:
    """Whether ``url`` holds a password (which ``describe_url`` leaves out)."""
    return describe_url(url) != url
