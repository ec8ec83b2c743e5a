"""A run deleted and started again under its id by another handle is read afresh.

A handle keeps the decoded first frame of a run it loaded (the graph's
structure, the recorded breakpoints, the input's record) so that a load from a
later snapshot need not decode it again. Another handle (another process)
may delete the run and start it again under the same id with a first frame
of the very same meta: a fixed clock, the same input, breakpoint names of the
same length. The first handle must then drive the new run by the new run's
breakpoints (SPEC, Breakpoints: those recorded in the run's first checkpoint
are honoured by every later driver), not by what it remembers of the old run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pausegraph import (
    Before,
    Continue,
    Done,
    FileCheckpointer,
    Graph,
    LastWriteWins,
    Paused,
    Runner,
    SqliteCheckpointer,
)
from pausegraph.checkpointers import Checkpointer, StoreCheckpointer
from pausegraph.checkpointers.memory import MemoryStore


def _chain(n: int) -> Graph:
    graph = Graph("chain", {"n": LastWriteWins(), "big": LastWriteWins()})
    for i in range(n):
        graph.step(f"s{i}", lambda state: {"n": (state["n"] or 0) + 1})
        if i:
            graph.edge(f"s{i - 1}", f"s{i}")
    return graph


@pytest.mark.parametrize("kind", ["memory", "file", "sqlite"])
def test_a_handle_drives_a_run_started_again_elsewhere_by_its_own_breakpoints(
    tmp_path: Path, kind: str
) -> None:
    if kind == "memory":
        shared = MemoryStore()
        handles: list[Checkpointer] = [StoreCheckpointer(shared), StoreCheckpointer(shared)]
    elif kind == "file":
        handles = [FileCheckpointer(tmp_path / "s"), FileCheckpointer(tmp_path / "s")]
    else:
        handles = [SqliteCheckpointer(tmp_path / "r.db"), SqliteCheckpointer(tmp_path / "r.db")]
    mine, other = handles
    graph = _chain(40)
    first = Runner(graph, mine, interrupt_before={"s35"}, clock=lambda: 1000)
    assert first.run("r", {"big": "x"}) == Paused(36, Before("s35"), None, ())
    assert first.state("r").status == "paused"  # loaded from a snapshot after the first
    Runner(graph, other).delete("r")
    again = Runner(graph, other, interrupt_before={"s30"}, clock=lambda: 1000)
    assert again.run("r", {"big": "x"}) == Paused(31, Before("s30"), None, ())
    # the first handle drives the new run: past s30, and s35 is no breakpoint of it
    outcome = Runner(graph, mine, clock=lambda: 1000).resume("r", Continue())
    assert outcome == Done({"n": 40, "big": "x"}, 40)
