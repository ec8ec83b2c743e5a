"""A map over documents: summarise each, and have a person review each summary.

``summarise`` fans out with ``All``: one branch per document in the input
(the width is decided at run time). Each branch calls the summariser as an
``Effect`` (so a resume never calls it again) and then asks a reviewer (an
``Interrupt``) to accept or rewrite that summary. The branches pause
independently, each with its own interrupt id; the run goes on once every
summary was reviewed, and ``publish`` collects them.

Run the scripted demo with ``python examples/summaries.py``; with
``Runner(..., executor=ThreadPoolExecutor())`` the summaries of a layer are
computed side by side.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from typing import Any

from pausegraph import (
    All,
    Effect,
    Graph,
    Interrupt,
    LastWriteWins,
    MemoryCheckpointer,
    Resume,
    Runner,
)


def summarise_text(title: str, text: str) -> str:
    """Stands in for a model call: the first sentence, trimmed."""
    first = text.split(". ")[0].strip().rstrip(".")
    return f"{title}: {first}."


def review_one(doc: Mapping[str, Any]) -> Generator[Any, Any, dict[str, Any]]:
    """One branch: summarise a document, then let a person accept or rewrite it."""
    draft = yield Effect(summarise_text, doc["title"], doc["text"])
    verdict = yield Interrupt({"review": doc["title"], "draft": draft})
    if verdict.get("accept"):
        return {"title": doc["title"], "summary": draft, "by": "model"}
    return {"title": doc["title"], "summary": verdict["rewrite"], "by": "reviewer"}


def summarise(state: Mapping[str, Any]) -> Generator[Any, Any, dict[str, Any]]:
    results = yield All(*(review_one(doc) for doc in state["documents"]))
    return {"summaries": results}


def publish(state: Mapping[str, Any]) -> dict[str, Any]:
    lines = [f"- {s['summary']} ({s['by']})" for s in state["summaries"]]
    return {"report": "\n".join(lines)}


graph = (
    Graph(
        "summaries",
        {"documents": LastWriteWins(), "summaries": LastWriteWins(), "report": LastWriteWins()},
    )
    .step("summarise", summarise)
    .step("publish", publish)
    .edge("summarise", "publish")
)

DOCUMENTS = [
    {"title": "Q3 report", "text": "Revenue grew 12%. Costs were flat."},
    {"title": "Hiring plan", "text": "We hire four engineers. Two start in May."},
    {"title": "Incident 42", "text": "The queue stalled for an hour. A retry loop was fixed."},
]


def main() -> dict[str, Any]:
    """Three documents: two summaries accepted, one rewritten, then the report."""
    store = MemoryCheckpointer()
    paused = Runner(graph, store).run("weekly", {"documents": DOCUMENTS})
    print("waiting for reviews:")
    answers = {}
    for interrupt in paused.interrupts:  # type: ignore[union-attr]
        print(f"  {interrupt.id}: {interrupt.payload['draft']}")
        accept = interrupt.payload["review"] != "Incident 42"
        answers[interrupt.id] = (
            {"accept": True} if accept else {"rewrite": "Incident 42: a stalled queue, fixed."}
        )
    # answered from another process: a new Runner replays each branch's journal
    done = Runner(graph, store).resume("weekly", Resume(answers=answers))
    print(done.state["report"])  # type: ignore[union-attr]
    return Runner(graph, store).state("weekly").values


if __name__ == "__main__":
    main()
