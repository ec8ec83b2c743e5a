"""Document review: two reviewers in the same layer are asked at once.

``legal`` and ``editor`` have no edge between them, so they run in the same
super-step; both yield an ``Interrupt`` and the run pauses with two pending
interrupts. Each is answered by its id, and the one not yet answered stays
pending.

Run the scripted demo with ``python examples/review.py``, or from a shell::

    pausegraph run examples/review.py:graph --run-id r1 --input '{"document": "Q3 report"}'
    pausegraph resume examples/review.py:graph r1 \\
        --answer '2.1.0={"ok": true}' --answer '2.2.0={"ok": true}'
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from typing import Any

from pausegraph import (
    Graph,
    Interrupt,
    LastWriteWins,
    MemoryCheckpointer,
    MergeMap,
    Paused,
    Resume,
    Runner,
)


def draft(state: Mapping[str, Any]) -> dict[str, Any]:
    return {"draft": f"{state['document']} (draft 1)"}


def _review(reviewer: str) -> Any:
    def review(state: Mapping[str, Any]) -> Generator[Any, Any, dict[str, Any]]:
        verdict = yield Interrupt({"reviewer": reviewer, "document": state["draft"]})
        return {"reviews": {reviewer: verdict}}

    return review


def decide(state: Mapping[str, Any]) -> dict[str, Any]:
    reviews = state["reviews"]
    approved = all(bool(verdict.get("ok")) for verdict in reviews.values())
    return {"verdict": "published" if approved else "sent back"}


graph = (
    Graph(
        "review",
        {
            "document": LastWriteWins(),
            "draft": LastWriteWins(),
            "reviews": MergeMap(),
            "verdict": LastWriteWins(),
        },
    )
    .step("draft", draft)
    .step("legal", _review("legal"))
    .step("editor", _review("editor"))
    .step("decide", decide)
    .edge("draft", "legal")
    .edge("draft", "editor")
    .edge("legal", "decide")
    .edge("editor", "decide")
)


def main() -> dict[str, Any]:
    """Ask both reviewers, answer one, then the other, and publish."""
    runner = Runner(graph, MemoryCheckpointer())
    outcome = runner.run("review-1", {"document": "Q3 report"})
    assert isinstance(outcome, Paused)
    for pending in outcome.interrupts:
        print(f"waiting: {pending.id} asks {pending.payload}")
    legal, editor = (i.id for i in outcome.interrupts)
    outcome = runner.resume("review-1", Resume(answers={legal: {"ok": True}}))
    assert isinstance(outcome, Paused)
    print("after legal answered, still waiting:", [i.id for i in outcome.interrupts])
    outcome = runner.resume("review-1", Resume(answers={editor: {"ok": True, "note": "typo p.3"}}))
    print("done:", outcome)
    return runner.state("review-1").values


if __name__ == "__main__":
    main()
