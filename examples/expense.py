"""Expense approval: one question to a manager, and a breakpoint before paying.

``approve`` asks a person (an ``Interrupt``) when the amount is over the
limit; ``pay`` is where a careful operator wants to look before money moves,
so the demo runs with ``interrupt_before={"pay"}``.

Run the scripted demo with ``python examples/expense.py``, or drive it from
a shell::

    pausegraph run examples/expense.py:graph --run-id e1 \\
        --input '{"employee": "ada", "amount": 120}' --interrupt-before pay
    pausegraph resume examples/expense.py:graph e1 --interrupt-before pay \\
        --value '{"approved": true, "by": "grace"}'
    pausegraph resume examples/expense.py:graph e1 --interrupt-before pay --continue
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from typing import Any

from pausegraph import (
    Append,
    Continue,
    Graph,
    Interrupt,
    LastWriteWins,
    MemoryCheckpointer,
    Resume,
    Runner,
)

LIMIT = 100  # expenses above this need a person's approval


def submit(state: Mapping[str, Any]) -> dict[str, Any]:
    return {"log": f"{state['employee']} submitted {state['amount']}"}


def approve(state: Mapping[str, Any]) -> Generator[Any, Any, dict[str, Any]]:
    if state["amount"] <= LIMIT:
        return {"approved": True, "log": "approved automatically"}
    question = {"question": "approve this expense?", "amount": state["amount"]}
    answer = yield Interrupt({**question, "employee": state["employee"]})
    return {"approved": bool(answer["approved"]), "log": f"decided by {answer.get('by', '?')}"}


def pay(state: Mapping[str, Any]) -> dict[str, Any]:
    if not state["approved"]:
        return {"paid": 0, "log": "not paid"}
    return {"paid": state["amount"], "log": f"paid {state['amount']} to {state['employee']}"}


graph = (
    Graph(
        "expense",
        {
            "employee": LastWriteWins(),
            "amount": LastWriteWins(),
            "approved": LastWriteWins(),
            "paid": LastWriteWins(),
            "log": Append(),
        },
    )
    .step("submit", submit)
    .step("approve", approve)
    .step("pay", pay)
    .edge("submit", "approve")
    .edge("approve", "pay")
)


def main() -> dict[str, Any]:
    """Submit an expense, approve it as the manager, look before paying, pay."""
    runner = Runner(graph, MemoryCheckpointer(), interrupt_before={"pay"})
    outcome = runner.run("expense-1", {"employee": "ada", "amount": 120})
    print("1.", outcome)
    outcome = runner.resume("expense-1", Resume({"approved": True, "by": "grace"}))
    print("2.", outcome)
    print("   about to pay:", runner.state("expense-1").values)
    outcome = runner.resume("expense-1", Continue())
    print("3.", outcome)
    return runner.state("expense-1").values


if __name__ == "__main__":
    main()
