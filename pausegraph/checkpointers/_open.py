"""``open_checkpointer(url)``: a store named by one string, as ``--store`` takes it."""

from __future__ import annotations

import re
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


@attrs.frozen
class StoreURL:
    """A parsed store URL; ``kind``: ``"memory"``, ``"file"``, ``"sqlite"``, ``"postgresql"``."""

    kind: str
    target: str


def parse_store_url(url: str) -> StoreURL:
    """Split ``url`` into its kind and target; ``CheckpointError`` naming the accepted forms."""
    if not isinstance(url, str) or not url:
        msg = f"open_checkpointer(url) takes {FORMS}, got {url!r}"
        raise CheckpointError(msg)
    match = _SCHEME.match(url)
    if match is None:
        return StoreURL("file", url)
    scheme, rest = match.group(1).lower(), url[match.end() :]
    if scheme == "memory" and not rest:
        return StoreURL("memory", "")
    if scheme in ("postgresql", "postgres"):
        return StoreURL("postgresql", url)
    if scheme in ("file", "sqlite"):
        path = rest[2:] if rest.startswith("//") else rest  # file:///abs and sqlite:///abs
        if path:
            return StoreURL(scheme, path)
        msg = f"store URL {url!r} names no path: write {scheme}:PATH"
        raise CheckpointError(msg)
    msg = (
        f"unknown store URL {url!r}: a store is {FORMS} "
        "(write ./NAME for a directory whose name holds a colon)"
    )
    raise CheckpointError(msg)


def open_checkpointer(url: str) -> StoreCheckpointer | FileCheckpointer:
    """Open the store ``url`` names: the forms ``pausegraph --store`` takes.

    ::

        open_checkpointer("memory:")            # MemoryCheckpointer()
        open_checkpointer("runs")               # FileCheckpointer("runs")
        open_checkpointer("file:runs")          # the same
        open_checkpointer("sqlite:runs.db")     # SqliteCheckpointer("runs.db")
        open_checkpointer("postgresql://app@db/app")  # PostgresCheckpointer(url)

    ``postgresql://...`` (or ``postgres://``) is passed to psycopg as it is;
    it needs the ``pausegraph[postgres]`` extra: without it, a
    ``CheckpointError`` saying ``pip install pausegraph[postgres]``. Any
    other form is a ``CheckpointError`` naming the accepted ones. A file
    store's directory is created if it does not exist (see
    ``FileCheckpointer``).
    """
    parsed = parse_store_url(url)
    if parsed.kind == "memory":
        return MemoryCheckpointer()
    if parsed.kind == "file":
        return FileCheckpointer(Path(parsed.target))
    if parsed.kind == "sqlite":
        return SqliteCheckpointer(parsed.target)
    try:
        import psycopg  # noqa: F401
    except ImportError:
        msg = (
            f"store URL {describe_url(url)!r}: PostgreSQL stores need psycopg 3: "
            "`pip install pausegraph[postgres]`"
        )
        raise CheckpointError(msg) from None
    from .postgres import PostgresCheckpointer

    return PostgresCheckpointer(parsed.target)


def describe_url(url: str) -> str:
    """``url`` without a password (``postgresql://user:secret@host`` loses ``:secret``)."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://[^:@/]*):[^@/]*@", r"\1@", url)
