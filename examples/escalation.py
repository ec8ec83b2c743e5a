"""Expense approval with deadlines: escalate to a manager after a day, auto-reject after a week.

``approve`` asks the employee's lead (an ``Interrupt`` with a one-day
timeout). If nobody answers in time, ``Runner.tick()`` throws
``InterruptTimeout`` into the step, which catches it, notifies the manager
(an ``Effect``, so the notice is sent once however often the step replays)
and asks again with what is left of the week. A second timeout rejects the
expense automatically.

Nothing here sleeps: ``main()`` moves a fake clock and ticks, as a worker
or a cron job calling ``runner.tick()`` every few minutes would in
production. Run it with ``python examples/escalation.py``.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from datetime import timedelta
from typing import Any

from pausegraph import (
    Effect,
    Graph,
    Interrupt,
    InterruptTimeout,
    LastWriteWins,
    MemoryCheckpointer,
    Paused,
    Resume,
    Runner,
)

LEAD_TIMEOUT = timedelta(days=1)
WEEK = timedelta(days=7)


def notify(who: str, message: str) -> str:
    """Send a notice (here: print it); returns what was sent, which the journal keeps."""
    print(f"   -> notice to {who}: {message}")
    return f"{who} notified"


def approve(state: Mapping[str, Any]) -> Generator[Any, Any, dict[str, Any]]:
    question = {"expense": state["expense"], "amount": state["amount"]}
    try:
        answer = yield Interrupt({**question, "to": "lead"}, timeout=LEAD_TIMEOUT)
        return {"decision": "approved" if answer else "rejected", "by": "lead"}
    except InterruptTimeout:
        pass  # the lead did not answer within a day: escalate
    yield Effect(notify, "manager", f"{state['expense']} waits for you since yesterday")
    try:
        answer = yield Interrupt({**question, "to": "manager"}, timeout=WEEK - LEAD_TIMEOUT)
    except InterruptTimeout:
        return {"decision": "rejected", "by": "the deadline (a week without an answer)"}
    return {"decision": "approved" if answer else "rejected", "by": "manager"}


graph = Graph(
    "escalation",
    {
        "expense": LastWriteWins(),
        "amount": LastWriteWins(),
        "decision": LastWriteWins(),
        "by": LastWriteWins(),
    },
).step("approve", approve)


class Clock:
    """Epoch milliseconds that move only when ``main`` says (pausegraph.testing has FakeClock)."""

    def __init__(self) -> None:
        self.now_ms = 1_700_000_000_000

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, delta: timedelta) -> None:
        self.now_ms += round(delta.total_seconds() * 1000)


def main() -> dict[str, str]:
    """Three expenses: one the lead approves, one the manager approves, one nobody answers."""
    clock = Clock()
    runner = Runner(graph, MemoryCheckpointer(), clock=clock)
    runs = {"taxi": 35, "hotel": 420, "laptop": 1900}
    for run_id, amount in runs.items():
        runner.run(run_id, {"expense": run_id, "amount": amount})
    print("day 0: three expenses wait for their leads")

    clock.advance(timedelta(hours=3))
    print("day 0, 3 h:", runner.resume("taxi", Resume(True)))

    clock.advance(timedelta(days=1) - timedelta(hours=3))
    print("day 1: tick")
    for run_id, outcome in runner.tick().items():
        assert isinstance(outcome, Paused)
        print(f"   {run_id}: now waits for", outcome.payload["to"])

    clock.advance(timedelta(days=2))
    print("day 3, the manager answers hotel:", runner.resume("hotel", Resume(True)))
    print("day 3: tick ->", runner.tick() or "nothing due")

    clock.advance(timedelta(days=4))
    print("day 7: tick")
    for run_id, outcome in runner.tick().items():
        print(f"   {run_id}:", outcome)

    decisions = {}
    for run_id in runs:
        values = runner.state(run_id).values
        decisions[run_id] = f"{values['decision']} by {values['by']}"
        print(f"{run_id}: {decisions[run_id]}")
    return decisions


if __name__ == "__main__":
    main()
