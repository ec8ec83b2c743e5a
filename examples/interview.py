"""An interview: one step asks several questions, then charges a card once.

``interview`` is a single generator step. Each question goes through the
``ask()`` sub-generator (yielding a generator object runs it as a sub-call),
so the step pauses once per question. Between the questions it charges the
card through an ``Effect``: ``charge_card`` runs exactly once, and when the
step is replayed later (a resume in a new process) its recorded receipt is
sent back instead of charging again.

``charge_card`` is a fake: it appends one line to the file named by the
``INTERVIEW_CHARGES`` environment variable, if set, so you can count charges
across processes::

    export INTERVIEW_CHARGES=/tmp/charges.txt
    pausegraph run examples/interview.py:graph --run-id i1 --input '{"candidate": "ada"}'
    pausegraph resume examples/interview.py:graph i1 --value '"pro"'
    pausegraph resume examples/interview.py:graph i1 --value '"4242"'
    pausegraph resume examples/interview.py:graph i1 --value '"no, thanks"'
    cat /tmp/charges.txt    # one line
"""

from __future__ import annotations

import os
from collections.abc import Generator, Mapping
from typing import Any

from pausegraph import (
    Effect,
    Graph,
    Interrupt,
    LastWriteWins,
    MemoryCheckpointer,
    MergeMap,
    Paused,
    Resume,
    Runner,
)

PRICES = {"basic": 10, "pro": 25}


def charge_card(card: str, amount: int) -> dict[str, Any]:
    """A stand-in for a payment API: deterministic, and it leaves a trace."""
    path = os.environ.get("INTERVIEW_CHARGES")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"charged {amount} to card ending {card[-4:]}\n")
    return {"charge": f"ch-{card[-4:]}-{amount}", "amount": amount}


def ask(question: str) -> Generator[Any, Any, Any]:
    """Ask one question; the answer is the value of the ``yield``."""
    answer = yield Interrupt({"question": question})
    return answer


def greet(state: Mapping[str, Any]) -> dict[str, Any]:
    return {"answers": {"greeting": f"welcome, {state['candidate']}"}}


def interview(state: Mapping[str, Any]) -> Generator[Any, Any, dict[str, Any]]:
    plan = yield ask("Which plan: basic or pro?")
    card = yield ask("Card number?")
    receipt = yield Effect(charge_card, str(card), PRICES.get(plan, PRICES["basic"]))
    anything = yield ask(f"Charged {receipt['amount']}. Anything else?")
    return {"answers": {"plan": plan, "other": anything}, "receipt": receipt}


def summary(state: Mapping[str, Any]) -> dict[str, Any]:
    plan = state["answers"]["plan"]
    return {"summary": f"{state['candidate']} is on {plan}, receipt {state['receipt']['charge']}"}


graph = (
    Graph(
        "interview",
        {
            "candidate": LastWriteWins(),
            "answers": MergeMap(),
            "receipt": LastWriteWins(),
            "summary": LastWriteWins(),
        },
    )
    .step("greet", greet)
    .step("interview", interview)
    .step("summary", summary)
    .edge("greet", "interview")
    .edge("interview", "summary")
)

SCRIPT = ["pro", "4242 4242 4242 4242", "no, thanks"]


def main() -> dict[str, Any]:
    """Answer the three questions in turn; the card is charged once."""
    runner = Runner(graph, MemoryCheckpointer())
    outcome = runner.run("interview-1", {"candidate": "ada"})
    for answer in SCRIPT:
        assert isinstance(outcome, Paused)
        print(f"{outcome.interrupts[0].id}: {outcome.payload['question']} -> {answer!r}")
        outcome = runner.resume("interview-1", Resume(answer))
    print("done:", outcome)
    return runner.state("interview-1").values


if __name__ == "__main__":
    main()
