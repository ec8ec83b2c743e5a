"""Loading folds a layer's plain deltas in without their records: the same checkpoints.

``StoreCheckpointer`` loads a checkpoint from a snapshot and the deltas after
it; a delta between them that only extends a layer's progress (plain
interrupts, answers, a claim) is decoded as an ``Extension`` and folded into
the progress directly (``_codec.extension_of``). These runs mix such deltas
with steps finishing inside the layer, layers ending and several steps
asking at once, and every checkpoint of every run must load the same with
the fold as without it.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from pathlib import Path
from typing import Any

import pytest

from pausegraph import (
    Append,
    FileCheckpointer,
    Graph,
    Interrupt,
    Paused,
    Resume,
    Runner,
    SqliteCheckpointer,
)
from pausegraph.checkpointers import _checkpointer


def _asker(name: str, rounds: int) -> Any:
    def step(state: Mapping[str, Any]) -> Generator[Interrupt, Any, dict[str, Any]]:
        got = []
        for n in range(rounds):
            got.append((yield Interrupt({"step": name, "round": n, "pad": "x" * n})))
        return {"log": [name, got]}

    return step


def _graph() -> Graph:
    g = Graph("fold", {"log": Append()})
    g.step("a", _asker("a", 7)).step("b", _asker("b", 3))
    g.step("c", lambda s: {"log": ["c"]})  # finishes inside the first layer
    g.step("d", _asker("d", 9))
    g.edge("a", "d").edge("b", "d").edge("c", "d")
    return g


def _drive(runner: Runner) -> None:
    out = runner.run("r")
    turn = 0
    while isinstance(out, Paused):
        turn += 1
        # answer one interrupt at a time, or all of them, so claims and pauses interleave
        pending = out.interrupts if turn % 3 else out.interrupts[:1]
        out = runner.resume("r", Resume(answers={i.id: [turn, i.id] for i in pending}))


@pytest.mark.parametrize("store", ["file", "sqlite"])
def test_every_checkpoint_loads_the_same_with_the_fold_as_without(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store: str
) -> None:
    def open_store() -> Any:
        if store == "file":
            return FileCheckpointer(tmp_path / "runs")
        return SqliteCheckpointer(tmp_path / "runs.db")

    _drive(Runner(_graph(), open_store()))
    folded_calls = []
    real = _checkpointer.extension_of

    def counting(data: bytes, seq: int) -> Any:
        extension = real(data, seq)
        folded_calls.append(extension is not None)
        return extension

    monkeypatch.setattr(_checkpointer, "extension_of", counting)
    folding = open_store()
    count = len(folding.list("fold", "r"))
    with_fold = [folding.load("fold", "r", seq) for seq in range(1, count + 1)]
    assert any(folded_calls), "no delta was folded: the test does not test the fold"
    monkeypatch.setattr(_checkpointer, "extension_of", lambda data, seq: None)
    plain = open_store()
    without = [plain.load("fold", "r", seq) for seq in range(1, count + 1)]
    assert with_fold == without
    assert folding.latest("fold", "r") == plain.latest("fold", "r") == without[-1]
