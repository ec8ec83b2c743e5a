"""PostgreSQL: a save that returned survives a kill -9, and the holder is named at once.

Every test gets a fresh schema from the ``postgres`` fixture
(``tests/conftest.py``), which skips without ``PAUSEGRAPH_TEST_POSTGRES``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
from conftest import PostgresSchema

from pausegraph import ConflictError, Graph, Interrupt, LastWriteWins, Resume, Runner

_KILLED_AFTER_APPENDS = """
import os, signal, sys
from pausegraph import PostgresCheckpointer
from pausegraph.checkpointers import FrameInfo, RunSummary

store = PostgresCheckpointer(sys.argv[1]).store
size = int(sys.argv[2])
with store.lock("wf", "r"):
    for seq in (1, 2, 3):
        store.append(FrameInfo(seq, seq - 1, "l", seq, True, 1), bytes([seq]) * size,
                     RunSummary("wf", "r", seq, "queued", seq, None, b""))
    os.kill(os.getpid(), signal.SIGKILL)
"""


def _until_let_go(store: Any, within_s: float = 30.0) -> None:
    """Wait until nobody holds run ``r`` of ``wf`` (a killed holder's session has ended)."""
    end = time.monotonic() + within_s
    while store.holder("wf", "r") is not None:
        assert time.monotonic() < end, "the killed process's session still holds the run"
        time.sleep(0.02)


@pytest.mark.parametrize("size", [1, 3_000_000], ids=["1 B", "3 MB"])
def test_a_process_killed_right_after_its_saves_returned_loses_none_of_them(
    postgres: PostgresSchema, size: int
) -> None:
    """The SPEC's Durability rule: a process killed at any instant loses nothing it saved.

    A store that returned from a save before the server had its answer
    (an experiment of the seventh session) lost the 3 MB saves every time:
    a socket closed with an answer unread is reset, and the server drops
    what it had not read (docs/storage.md, "Appends are not deferred").
    """
    for attempt in range(2):
        child = subprocess.run(
            [sys.executable, "-c", _KILLED_AFTER_APPENDS, postgres.url, str(size)], check=False
        )
        assert child.returncode == -signal.SIGKILL
        store = postgres.checkpointer().store
        _until_let_go(store)
        with store.lock("wf", "r"):
            assert [f.seq for f in store.frames("wf", "r")] == [1, 2, 3], attempt
        assert store.read("wf", "r", 3, 3) == [bytes([3]) * size]
        store.delete("wf", "r")


def test_another_handle_finds_the_holder_named_as_soon_as_the_lock_is_taken(
    postgres: PostgresSchema,
) -> None:
    store, other = postgres.checkpointer().store, postgres.checkpointer().store
    for _ in range(10):
        with store.lock("wf", "r"):
            who = other.holder("wf", "r")
            assert who is not None
            assert who.pid == os.getpid()
            with pytest.raises(ConflictError, match=rf"process {os.getpid()} on host"):
                other.lock("wf", "r").__enter__()


def test_a_refused_take_leaves_the_holders_note_alone(postgres: PostgresSchema) -> None:
    store, other = postgres.checkpointer().store, postgres.checkpointer().store
    with store.lock("wf", "r"):
        before = other.holder("wf", "r")
        for _ in range(3):
            with pytest.raises(ConflictError):
                other.lock("wf", "r").__enter__()
        assert other.holder("wf", "r") == before


def test_a_runner_on_postgres_keeps_the_history_a_memory_runner_keeps(
    postgres: PostgresSchema,
) -> None:
    def ask(state: dict[str, int]) -> object:
        answer = yield Interrupt(state["n"])
        return {"n": state["n"] + answer}

    def add(state: dict[str, int]) -> dict[str, int]:
        return {"n": state["n"] + 1}

    graph = Graph("chain", {"n": LastWriteWins()})
    names = [f"s{i}" for i in range(6)]
    for name in names:
        graph.step(name, add)
    graph.step("ask", ask)
    for a, b in zip([*names, "ask"], [*names[1:], "ask"], strict=False):
        graph.edge(a, b)
    runner, memory = Runner(graph, postgres.checkpointer()), Runner(graph)
    for each in (runner, memory):
        paused = each.run("r", {"n": 0})
        assert paused.interrupts[0].payload == 6
        assert each.resume("r", Resume(10)).state == {"n": 16}
    history = [(m.seq, m.label, m.super_step) for m in runner.history("r")]
    assert history == [(m.seq, m.label, m.super_step) for m in memory.history("r")]
    assert Runner(graph, postgres.checkpointer()).state("r").values == {"n": 16}
