"""The records of branches and conditional edges round-trip through the checkpoint codec."""

from __future__ import annotations

import pytest

from pausegraph._codec import decode_frame, encode_frame
from pausegraph._records import (
    Asked as AskedEntry,
)
from pausegraph._records import (
    AtAfter,
    AtBefore,
    AtInterrupt,
    Cancelled,
    Checkpoint,
    Finished,
    Forked,
    OwesAfter,
    Progress,
    Raised,
    Returned,
    Start,
    Structure,
)

JOURNAL = (
    Forked(2),
    AskedEntry("3.0.0-0.0", {"q": 1}, None, False, "0-0"),
    Returned("m.f", [1, 2], "0-1"),
    Forked(1, "0-1"),
    Raised("m.g", "boom", "0-1.1-0"),
)
PROGRESS = Progress(0, 3, journals={"s": JOURNAL}, skipped=("x",), decided=True, forced=("s",))
STAGES = [
    AtInterrupt(PROGRESS),
    Start(2, True, ("x",), ("s",)),
    OwesAfter(1, ("x",)),
    AtBefore(1, ("s",), ("x",), ("s",)),
    AtAfter(1, ("s",), ("x",)),
    Finished(("x",)),
    Cancelled("why", ("x",)),
    Start(0),
]


@pytest.mark.parametrize("stage", STAGES)
def test_stages_and_structures_round_trip(stage):
    structure = Structure(("a", "s", "x"), (("a", "s"), ("a", "x")), (("a", "x"),))
    checkpoint = Checkpoint("w", "r", 1, 0, "input", 0, {}, stage, structure)
    frame = decode_frame(encode_frame(checkpoint, snapshot=True))
    assert frame.stage == stage
    assert frame.structure == structure


def test_pending_lists_the_last_unanswered_interrupt_of_each_branch():
    journal = (
        Forked(3),
        AskedEntry("e.0-0.0", 0, None, False, "0-0"),
        AskedEntry("e.0-1.0", 1, None, False, "0-1"),
        AskedEntry("e.0-2.0", 2, None, False, "0-2"),
        AskedEntry("e.0-1.1", 3, None, False, "0-1"),
    )
    progress = Progress(0, 1, journals={"s": journal}, answers={"e.0-1.0": 1, "e.0-2.0": 2})
    assert [e.id for _, e in progress.pending()] == ["e.0-0.0", "e.0-1.1"]
