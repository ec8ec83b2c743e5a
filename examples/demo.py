"""The README's demo: pause a run, then resume it cold, as a new process would.

It starts the document review of ``review.py`` on a file store in a
temporary directory. The run pauses with two pending interrupts (both
reviewers are asked at once). Then a brand-new ``Runner`` on a brand-new
``FileCheckpointer`` handle, sharing nothing with the first but the
directory, answers both by id: the suspended steps are called again and
replayed from their journals, and the run finishes.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from review import graph

from pausegraph import FileCheckpointer, Paused, Resume, Runner


def main() -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="pausegraph-demo-") as store:
        print(f"store: {store} (a temporary directory, removed when the demo ends)\n")
        first = Runner(graph, FileCheckpointer(store))
        outcome = first.run("review-1", {"document": "Q3 report"})
        assert isinstance(outcome, Paused)
        print(f"paused at super-step {outcome.super_step}, waiting for:")
        for pending in outcome.interrupts:
            print(f"  interrupt {pending.id}  step {pending.step_id!r}  payload {pending.payload}")

        # A new Runner and a new store handle: nothing is shared but the files.
        second = Runner(graph, FileCheckpointer(store))
        answers = {i.id: {"ok": True, "by": i.payload["reviewer"]} for i in outcome.interrupts}
        print(f"\ncold resume with answers {answers}")
        done = second.resume("review-1", Resume(answers=answers))
        print(f"\n{done}")
        print("\ncheckpoints:")
        for meta in second.history("review-1"):
            print(f"  {meta.seq}  super-step {meta.super_step}  {meta.label}")
        return second.state("review-1").values


if __name__ == "__main__":
    main()
