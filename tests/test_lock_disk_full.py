"""The file store's live lock on a full disk: the note is optional, the lock is not."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pausegraph import (
    ConflictError,
    FileCheckpointer,
    Graph,
    Interrupt,
    LastWriteWins,
    Paused,
    Runner,
)
from pausegraph.checkpointers import _lock


def ask(state: Any) -> Iterator[Any]:
    answer = yield Interrupt("ok?")
    return {"x": answer}


GRAPH = Graph("full", {"x": LastWriteWins()}).step("ask", ask)


@pytest.fixture
def no_space(monkeypatch: pytest.MonkeyPatch) -> None:
    def pwrite(fd: int, data: bytes, offset: int) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(_lock.os, "pwrite", pwrite)


def test_a_full_disk_still_lets_people_delete_runs(tmp_path: Path, monkeypatch: Any) -> None:
    runner = Runner(GRAPH, FileCheckpointer(tmp_path))
    assert isinstance(runner.run("r", {}), Paused)

    def pwrite(fd: int, data: bytes, offset: int) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite", pwrite)  # no block left for the holder's note
    runner.delete("r")
    monkeypatch.undo()
    assert runner.checkpointer.list("full", "r") == []


def test_a_lock_held_without_a_note_is_still_seen_as_held(tmp_path: Path, no_space: None) -> None:
    path = str(tmp_path / "r.lock")
    with _lock.hold_file(path, "wf", "r", lambda: True):
        holder = _lock.file_holder(path)
        assert holder is not None  # the run reads as running, though nobody is named
        assert "left no note" in _lock.held_message("wf", "r", holder)
        second = _lock.hold_file(path, "wf", "r", lambda: True)
        with pytest.raises(ConflictError, match="is running: another process is driving it"):
            second.__enter__()
    assert _lock.file_holder(path) is None
