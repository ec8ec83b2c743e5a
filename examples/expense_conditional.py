"""Expense approval with a conditional edge: finance signs off only on big expenses.

``submit`` records the expense; ``finance`` asks a person (an ``Interrupt``)
and is reached only through the edge ``submit -> finance`` whose predicate
``approve_big`` says ``amount > 1000``; ``pay`` follows ``finance`` and also
``submit`` (when the amount is small), so small expenses are paid at once
and big ones wait for finance.

Run the scripted demo with ``python examples/expense_conditional.py``, or
drive it from a shell::

    pausegraph run examples/expense_conditional.py:graph --run-id e1 \\
        --input '{"employee": "ada", "amount": 4200}'
    pausegraph resume examples/expense_conditional.py:graph e1 \\
        --value '{"approved": true, "by": "grace"}'
    pausegraph graph examples/expense_conditional.py:graph   # s0 -->|approve_big| s1
    # (nodes are named by position: s0 is submit, s1 finance)
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from typing import Any

from pausegraph import (
    Append,
    Graph,
    Interrupt,
    LastWriteWins,
    MemoryCheckpointer,
    Resume,
    Runner,
)

LIMIT = 1000  # expenses above this need finance's approval


def approve_big(state: Mapping[str, Any]) -> bool:
    return bool(state["amount"] > LIMIT)


def approve_small(state: Mapping[str, Any]) -> bool:
    return not approve_big(state)


def submit(state: Mapping[str, Any]) -> dict[str, Any]:
    return {"log": f"{state['employee']} submitted {state['amount']}"}


def finance(state: Mapping[str, Any]) -> Generator[Any, Any, dict[str, Any]]:
    question = {"question": "finance: approve this expense?", "amount": state["amount"]}
    answer = yield Interrupt({**question, "employee": state["employee"]})
    by = answer.get("by", "?")
    return {"approved": bool(answer["approved"]), "log": f"finance decided ({by})"}


def pay(state: Mapping[str, Any]) -> dict[str, Any]:
    if state["approved"] is False:
        return {"paid": 0, "log": "not paid"}
    return {"paid": state["amount"], "log": f"paid {state['amount']} to {state['employee']}"}


graph = (
    Graph(
        "expense-conditional",
        {
            "employee": LastWriteWins(),
            "amount": LastWriteWins(),
            "approved": LastWriteWins(),
            "paid": LastWriteWins(),
            "log": Append(),
        },
    )
    .step("submit", submit)
    .step("finance", finance)
    .step("pay", pay)
    .edge("submit", "finance", when=approve_big)
    .edge("finance", "pay")
    .edge("submit", "pay", when=approve_small)
)


def main() -> dict[str, Any]:
    """A small expense is paid at once; a big one waits for finance, then is paid."""
    runner = Runner(graph, MemoryCheckpointer())
    outcome = runner.run("small", {"employee": "ada", "amount": 120})
    print("1. small expense:", outcome)
    outcome = runner.run("big", {"employee": "ada", "amount": 4200})
    print("2. big expense:", outcome)
    outcome = runner.resume("big", Resume({"approved": True, "by": "grace"}))
    print("3. after finance:", outcome)
    return runner.state("big").values


if __name__ == "__main__":
    main()
