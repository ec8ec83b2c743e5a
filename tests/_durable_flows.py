"""A workflow and a tiny driver that the durability tests run in subprocesses.

The tests run ``_durable_flows.main([ROOT, COMMAND, RUN_ID, ARG...])`` in a
subprocess that imports this module (so an effect has the same name,
``_durable_flows.note``, in every process); it prints one JSON line. With
``--sqlite`` first, ROOT is a ``SqliteCheckpointer``'s database file rather
than a ``FileCheckpointer``'s directory. Commands:

- ``drive``: start the run if new, recover it if its process died, answer
  every pending interrupt with ``answer_for(payload)``, until it is done.
- ``step``: do one of those moves only (start, recover or answer), so a
  test can run each resume in a fresh process.
- ``race DIR``: answer the pending interrupt, but hold the claim (the first
  ``save``) until DIR/start exists, having made DIR/ready.<pid>: so every
  racer has read the paused run before any claims it. Print ``won`` or
  ``conflict``.

Crashes are injected with environment variables, each ending the process
with ``os._exit(3)``: ``PG_CRASH_STEP=<step id>`` inside that step (after its
effect), ``PG_CRASH_AFTER_SAVE=<n>`` right after the n-th ``save`` returned,
``PG_CRASH_IN_WRITE=<n>:<k>`` in the n-th file write after writing k bytes
of it. ``PG_CRASH_KILL=1`` makes each of those a ``SIGKILL`` the process sends
itself instead. Effects append their name to the file named by ``PG_EFFECTS``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from pausegraph import (
    Append,
    ConflictError,
    Done,
    Effect,
    EffectError,
    FileCheckpointer,
    Graph,
    Interrupt,
    LastWriteWins,
    MergeMap,
    Paused,
    Resume,
    ResumeError,
    Runner,
    SqliteCheckpointer,
    Status,
)
from pausegraph.checkpointers import StoreCheckpointer
from pausegraph.checkpointers import file as file_store

CRASH = 3


def note(name: str) -> str:
    """An effect: leaves a line in the effects file, so tests count its calls."""
    with open(os.environ["PG_EFFECTS"], "a") as f:
        f.write(name + "\n")
        f.flush()
        os.fsync(f.fileno())
    return name


def refuse(name: str) -> str:
    note(name)
    msg = f"{name} refused"
    raise ValueError(msg)


def _die() -> None:
    if os.environ.get("PG_CRASH_KILL"):
        os.kill(os.getpid(), signal.SIGKILL)
    os._exit(CRASH)


def _maybe_crash(step_id: str) -> None:
    if os.environ.get("PG_CRASH_STEP") == step_id:
        _die()


def charge(state: Any) -> Any:
    receipt = yield Effect(note, "charge")
    amount = yield Interrupt({"ask": "amount", "order": state["order"]})
    _maybe_crash("charge")
    return {"log": [f"{receipt}:{amount}"], "total": amount}


def ship(state: Any) -> Any:
    done = yield Effect(note, "ship")
    _maybe_crash("ship")
    return {"log": [done], "flags": {"shipped": True}}


def audit(state: Any) -> Any:
    try:
        yield Effect(refuse, "audit")
    except EffectError as exc:
        problem = str(exc)
    ok = yield Interrupt({"ask": "accept audit", "problem": problem})
    _maybe_crash("audit")
    return {"log": [f"audit:{ok}"], "flags": {"audit": problem}}


def close(state: Any) -> Any:
    _maybe_crash("close")
    return {"log": ["close"], "flags": {"closed": len(state["log"])}}


def build_graph(*, extra: bool = False) -> Graph:
    """The workflow; ``extra`` adds a step after ``close``, changing its structure."""
    channels = {
        "log": Append(),
        "total": LastWriteWins(),
        "flags": MergeMap(),
        "order": LastWriteWins(),
    }
    graph = (
        Graph("orders", channels)
        .step("charge", charge)
        .step("ship", ship)
        .step("audit", audit)
        .step("close", close)
        .edge("charge", "ship")
        .edge("charge", "audit")
        .edge("ship", "close")
        .edge("audit", "close")
    )
    if extra:
        graph.step("extra", close).edge("close", "extra")
    return graph


GRAPH = build_graph()
INPUT = {"order": "A-1"}
STEPS = ("charge", "ship", "audit", "close")
EFFECTS = ("charge", "ship", "audit")


def answer_for(payload: Any) -> Any:
    return {"amount": 42, "accept audit": True}[payload["ask"]]


def outcome_json(outcome: Any) -> dict[str, Any]:
    if isinstance(outcome, Done):
        return {"done": outcome.state}
    assert isinstance(outcome, Paused)
    return {"paused": [[i.id, i.payload] for i in outcome.interrupts]}


def one_move(runner: Runner, run_id: str) -> Any:
    """Start, recover or answer: whatever the run needs next."""
    store = runner.checkpointer
    if store.latest(GRAPH.name, run_id) is None:
        return runner.run(run_id, INPUT)
    info = runner.state(run_id)
    if info.status is Status.DONE:
        return Done(info.values, info.super_step)
    if info.status is Status.QUEUED:
        return runner.run(run_id)
    answers = {i.id: answer_for(i.payload) for i in info.interrupts}
    return runner.resume(run_id, Resume(answers=answers))


def _install_crashes(store: type[FileCheckpointer | StoreCheckpointer]) -> None:
    after = os.environ.get("PG_CRASH_AFTER_SAVE")
    if after:
        saves = [0]
        real_save = store.save

        def save(self: Any, checkpoint: Any) -> None:
            real_save(self, checkpoint)
            saves[0] += 1
            if saves[0] == int(after):
                _die()

        store.save = save  # type: ignore[method-assign]
    in_write = os.environ.get("PG_CRASH_IN_WRITE")
    if in_write:
        nth, k = map(int, in_write.split(":"))
        writes = [0]
        real_write = file_store._write_all

        def write_all(fd: int, data: bytes, offset: int) -> None:
            writes[0] += 1
            if writes[0] == nth:
                real_write(fd, data[: k % (len(data) + 1)], offset)
                _die()
            real_write(fd, data, offset)

        file_store._write_all = write_all


def main(argv: list[str]) -> None:
    sqlite = argv[:1] == ["--sqlite"]
    root, command, run_id, *rest = argv[1:] if sqlite else argv
    kind = SqliteCheckpointer if sqlite else FileCheckpointer
    _install_crashes(kind)
    runner = Runner(GRAPH, kind(root))
    if command == "drive":
        outcome = one_move(runner, run_id)
        while not isinstance(outcome, Done):
            outcome = one_move(runner, run_id)
        print(json.dumps(outcome_json(outcome)))
    elif command == "step":
        print(json.dumps(outcome_json(one_move(runner, run_id))))
    elif command == "race":
        (gate,) = rest
        # every racer reads the pause, then all resume at once
        info = runner.state(run_id)
        answers = {i.id: answer_for(i.payload) for i in info.interrupts}
        Path(gate, f"ready.{os.getpid()}").touch()
        while not Path(gate, "start").exists():
            time.sleep(0.001)
        try:
            runner.resume(run_id, Resume(answers=answers))
        except ConflictError:
            print(json.dumps("conflict"))
        except ResumeError as error:  # came after the winner moved the run on
            assert "already answered" in str(error), error  # noqa: PT017
            print(json.dumps("conflict"))
        else:
            print(json.dumps("won"))
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
