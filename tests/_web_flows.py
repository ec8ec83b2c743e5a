"""Workflows the web tests serve: one question, a breakpoint, a step that waits for a signal."""

from __future__ import annotations

import threading
import time
from collections.abc import Generator, Mapping
from typing import Any

from pausegraph import Graph, Interrupt, LastWriteWins

GO = threading.Event()  # ``slow`` waits for it, so a test can hold a run "running"


def ask(state: Mapping[str, Any]) -> Generator[Any, Any, dict[str, Any]]:
    answer = yield Interrupt({"question": state["question"], "amount": state["amount"]})
    return {"answer": answer}


def book(state: Mapping[str, Any]) -> dict[str, Any]:
    return {"booked": f"booked after {state['answer']!r}"}


def slow(state: Mapping[str, Any]) -> dict[str, Any]:
    GO.wait(10)
    return {"booked": "slow"}


def nap(state: Mapping[str, Any]) -> dict[str, Any]:
    time.sleep(1.5)  # long enough for a test to signal the server meanwhile
    return {"booked": "after a nap"}


def _asking() -> dict[str, LastWriteWins]:
    return {name: LastWriteWins() for name in ("question", "amount", "answer", "booked")}


def approval() -> Graph:
    return Graph("approval", _asking()).step("ask", ask).step("book", book).edge("ask", "book")


def waiting() -> Graph:
    channels = {"booked": LastWriteWins()}
    return Graph("waiting", channels).step("slow", slow)


approval_graph = approval()


def napping() -> Graph:
    """A step that sleeps, then ``ask``: a run that is running for a moment, then pauses."""
    return Graph("napping", _asking()).step("nap", nap).step("ask", ask).edge("nap", "ask")


napping_graph = napping()
