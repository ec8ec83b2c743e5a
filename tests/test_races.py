"""Racing resumers on one store: exactly one wins, the others get ConflictError,
whether they lose at the claim or arrive while the winner is running."""

from __future__ import annotations

import threading
import time

from pausegraph import (
    ConflictError,
    Done,
    Graph,
    Interrupt,
    LastWriteWins,
    MemoryCheckpointer,
    Resume,
    Runner,
)


def ask(state):
    answer = yield Interrupt("who?")
    return {"winner": answer}


def slow(state):
    time.sleep(0.2)  # the winner is still running when the others look
    return {"done": True}


def test_of_8_threads_resuming_one_paused_run_one_wins_and_7_get_conflict_error():
    graph = Graph("race", {"winner": LastWriteWins(), "done": LastWriteWins()})
    graph.step("ask", ask).step("slow", slow).edge("ask", "slow")
    store = MemoryCheckpointer()
    Runner(graph, store).run("r")
    barrier = threading.Barrier(8)
    outcomes: list[object] = []

    def resume(n: int) -> None:
        runner = Runner(graph, store)
        barrier.wait()
        try:
            outcomes.append(runner.resume("r", Resume(n)))
        except ConflictError as error:
            outcomes.append(error)

    threads = [threading.Thread(target=resume, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wins = [o for o in outcomes if isinstance(o, Done)]
    assert len(wins) == 1
    assert sum(isinstance(o, ConflictError) for o in outcomes) == 7
    history = Runner(graph, store).history("r")
    assert [m.seq for m in history] == list(range(1, len(history) + 1))
    assert [m.label for m in history] == ["input", "interrupt:ask", "resume", "layer:1", "layer:2"]
    assert wins[0].state == {"winner": wins[0].state["winner"], "done": True}
