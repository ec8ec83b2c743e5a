"""Workflows that tests/test_edges_processes.py drives in subprocesses.

``main([ROOT, DIR, GRAPH, RUN_ID])`` runs ``RUN_ID`` of ``GRAPH`` ("two_effects"
or "hold") on ``FileCheckpointer(ROOT)`` and prints the outcome's repr. Effects
append their name to ``DIR/effects`` (so a test counts their calls across
processes) and read their markers in ``DIR``:

- ``two_effects``: one step, ``a = yield Effect(first)``, ``b = yield
  Effect(second)``; ``second`` ends the process with ``os._exit(9)`` the first
  time it is called (it leaves ``DIR/crashed``).
- ``hold``: one step whose effect ``wait_for_go`` waits until ``DIR/go`` exists.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from pausegraph import Effect, FileCheckpointer, Graph, LastWriteWins, Runner

CRASH = 9


def _dir() -> Path:
    return Path(os.environ["PG_EDGE_DIR"])


def _note(name: str) -> None:
    with open(_dir() / "effects", "a") as f:
        f.write(name + "\n")
        f.flush()
        os.fsync(f.fileno())


def effects() -> list[str]:
    path = _dir() / "effects"
    return path.read_text().splitlines() if path.exists() else []


def first() -> str:
    _note("first")
    return "one"


def second() -> str:
    _note("second")
    marker = _dir() / "crashed"
    if not marker.exists():
        marker.write_text("")
        os._exit(CRASH)
    return "two"


def wait_for_go() -> str:
    _note("wait")
    while not (_dir() / "go").exists():
        time.sleep(0.01)
    return "went"


def _two_effects_step(state: Any) -> Any:
    a = yield Effect(first)
    b = yield Effect(second)
    return {"a": a, "b": b}


def _hold_step(state: Any) -> Any:
    got = yield Effect(wait_for_go)
    return {"got": got}


def graphs() -> dict[str, Graph]:
    return {
        "two_effects": Graph("two_effects", {"a": LastWriteWins(), "b": LastWriteWins()}).step(
            "both", _two_effects_step
        ),
        "hold": Graph("hold", {"got": LastWriteWins()}).step("hold", _hold_step),
    }


def main(argv: list[str]) -> None:
    root, directory, graph, run_id = argv
    os.environ["PG_EDGE_DIR"] = directory
    outcome = Runner(graphs()[graph], FileCheckpointer(root)).run(run_id)
    print(repr(outcome), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
