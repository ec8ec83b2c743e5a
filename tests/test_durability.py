"""Runs survive their process: cold resumes, crashes at any point, racing resumers.

The workflow under test lives in ``tests/_durable_flows.py`` and runs in real
subprocesses; crashes are real ``os._exit`` calls at points hypothesis picks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pausegraph import (
    Append,
    ConflictError,
    Done,
    Effect,
    FileCheckpointer,
    Graph,
    Interrupt,
    LastWriteWins,
    MemoryCheckpointer,
    Paused,
    Resume,
    ResumeError,
    Runner,
)
from pausegraph._records import Raised, Returned, progress_of

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _durable_flows

TESTS = Path(__file__).resolve().parent
# run as an import, not as __main__, so effects have the same name in and out of process
COMMAND = [sys.executable, "-c", "import sys, _durable_flows; _durable_flows.main(sys.argv[1:])"]
CRASH = 3
subprocess_settings = settings(
    max_examples=8, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def environment(root: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    path = os.pathsep.join([str(TESTS), str(TESTS.parent), os.environ.get("PYTHONPATH", "")])
    effects_file = str(root.parent / "effects")
    return {**os.environ, "PYTHONPATH": path, "PG_EFFECTS": effects_file, **(extra or {})}


def flow(
    root: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, str(root), *args],
        capture_output=True, text=True, env=environment(root, env), check=False, timeout=120,
    )  # fmt: skip


def ok(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def effects(root: Path) -> Counter[str]:
    path = root.parent / "effects"
    return Counter(path.read_text().split()) if path.exists() else Counter()


@cache
def uninterrupted() -> dict[str, Any]:
    """The final state of a run that never stopped, driven in one process."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return ok(flow(Path(tmp) / "store", "drive", "r"))["done"]  # type: ignore[no-any-return]


def journaled_effects(root: Path) -> set[str]:
    """Effects whose results a checkpoint of run ``r`` recorded."""
    store = FileCheckpointer(root)
    found = set()
    for meta in store.list("orders", "r"):
        checkpoint = store.load("orders", "r", meta.seq)
        assert checkpoint is not None
        progress = progress_of(checkpoint.stage)
        for journal in progress.journals.values() if progress else ():
            for entry in journal:
                if type(entry) is Returned:
                    found.add(entry.value)
                elif type(entry) is Raised:
                    found.add("audit")
    return found


def test_a_run_resumed_answer_by_answer_in_fresh_processes_ends_like_an_uninterrupted_run(
    tmp_path: Path,
) -> None:
    root = tmp_path / "store"
    moves = []
    outcome = ok(flow(root, "step", "r"))
    while "done" not in outcome:
        moves.append(outcome["paused"])
        outcome = ok(flow(root, "step", "r"))
    assert len(moves) == 2  # the amount, then the audit: each answered in a new process
    assert outcome["done"] == uninterrupted()
    assert effects(root) == Counter({"charge": 1, "ship": 1, "audit": 1})


def test_an_effect_error_is_replayed_in_a_new_process_without_calling_fn_again(
    tmp_path: Path,
) -> None:
    root = tmp_path / "store"
    ok(flow(root, "step", "r"))
    audit = ok(flow(root, "step", "r"))["paused"]
    problem = "effect _durable_flows.refuse in step 'audit' raised ValueError: audit refused"
    assert audit[0][1] == {"ask": "accept audit", "problem": problem}
    done = ok(flow(root, "step", "r"))["done"]
    assert done["flags"]["audit"] == problem
    assert effects(root)["audit"] == 1


crash_points = st.one_of(
    st.tuples(st.just("PG_CRASH_STEP"), st.sampled_from(["charge", "ship", "audit", "close"])),
    st.tuples(st.just("PG_CRASH_AFTER_SAVE"), st.integers(1, 12).map(str)),
    st.tuples(
        st.just("PG_CRASH_IN_WRITE"),
        st.tuples(st.integers(1, 14), st.integers(0, 400)).map(lambda t: f"{t[0]}:{t[1]}"),
    ),
)


@subprocess_settings
@given(crash=crash_points)
def test_a_process_killed_anywhere_recovers_to_the_same_final_state(
    tmp_path_factory: pytest.TempPathFactory, crash: tuple[str, str]
) -> None:
    root = tmp_path_factory.mktemp("crash") / "store"
    first = flow(root, "drive", "r", env=dict([crash]))
    assert first.returncode in (0, CRASH), first.stderr
    recorded = journaled_effects(root) if root.exists() else set()
    final = ok(flow(root, "drive", "r"))
    assert final["done"] == uninterrupted()
    counts = effects(root)
    assert set(counts) == {"charge", "ship", "audit"}
    for name in recorded:  # recorded before the crash: never run again
        assert counts[name] == 1, (name, counts)
    history = FileCheckpointer(root).list("orders", "r")
    assert [m.seq for m in history] == list(range(1, len(history) + 1))


# --- racing resumers ------------------------------------------------------------


def paused_run(root: Path) -> int:
    outcome = ok(flow(root, "step", "r"))
    assert "paused" in outcome
    return len(FileCheckpointer(root).list("orders", "r"))


def assert_one_linear_history(root: Path, pause_seq: int) -> None:
    history = FileCheckpointer(root).list("orders", "r")
    assert [m.seq for m in history] == list(range(1, len(history) + 1))
    assert [m.label for m in history][pause_seq:].count("resume") == 1


def test_of_8_processes_resuming_one_paused_run_exactly_one_wins(tmp_path: Path) -> None:
    root = tmp_path / "store"
    pause_seq = paused_run(root)
    gate = tmp_path / "gate"
    gate.mkdir()
    racers = [
        subprocess.Popen(
            [*COMMAND, str(root), "race", "r", str(gate)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment(root),
        )
        for _ in range(8)
    ]
    while len(list(gate.glob("ready.*"))) < 8 and all(p.poll() is None for p in racers):
        threading.Event().wait(0.01)
    (gate / "start").touch()
    results = []
    for p in racers:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        results.append(json.loads(out))
    assert sorted(results) == ["conflict"] * 7 + ["won"]
    assert_one_linear_history(root, pause_seq)


def test_of_8_threads_resuming_one_paused_run_exactly_one_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "store"
    pause_seq = paused_run(root)
    monkeypatch.setenv("PG_EFFECTS", str(tmp_path / "effects"))

    barrier = threading.Barrier(8)
    results: list[str] = []

    def racer() -> None:
        runner = Runner(_durable_flows.GRAPH, FileCheckpointer(root))
        (pending,) = runner.state("r").interrupts
        barrier.wait(timeout=60)  # every racer has read the pause before any resumes
        try:
            runner.resume("r", Resume(answers={pending.id: 42}))
        except ConflictError:
            results.append("conflict")
        except ResumeError as error:  # came after the winner moved the run on
            assert "already answered" in str(error)  # noqa: PT017
            results.append("conflict")
        else:
            results.append("won")

    threads = [threading.Thread(target=racer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["conflict"] * 7 + ["won"]
    assert_one_linear_history(root, pause_seq)


# --- the graph changed between pause and resume --------------------------------------


def test_a_graph_changed_between_processes_is_a_resume_error_naming_the_difference(
    tmp_path: Path,
) -> None:
    root = tmp_path / "store"
    paused_run(root)
    changed = _durable_flows.build_graph(extra=True)
    with pytest.raises(
        ResumeError,
        match=(
            r"^run 'r' was recorded with a different graph 'orders': steps added: 'extra'; "
            r"edges added: 'close' -> 'extra'\. Resume it with the graph it started with, "
            r"or start a new run$"
        ),
    ):
        Runner(changed, FileCheckpointer(root)).resume("r", Resume(42))


# --- cold and hot resumes agree, over random graphs ----------------------------------


@st.composite
def random_flows(draw: st.DrawFn) -> tuple[Graph, dict[str, Any]]:
    """A random chain/fan-out of generator steps that interrupt and call effects."""
    n = draw(st.integers(1, 5))
    graph = Graph("random", {"log": Append(), "last": LastWriteWins()})
    plan: dict[str, Any] = {}
    for i in range(n):
        step_id = f"s{i}"
        asks = draw(st.integers(0, 2))
        effect = draw(st.booleans())
        plan[step_id] = (asks, effect)
        graph.step(step_id, make_step(step_id, asks, effect))
        if i:
            parent = draw(st.integers(0, i - 1)) if draw(st.booleans()) else i - 1
            graph.edge(f"s{parent}", step_id)
    return graph, plan


def counted(tag: str) -> str:
    return f"fx-{tag}"


def make_step(step_id: str, asks: int, effect: bool) -> Any:
    def step(state: Any) -> Any:
        got = []
        if effect:
            got.append((yield Effect(counted, step_id)))
        for k in range(asks):
            got.append((yield Interrupt({"step": step_id, "k": k, "seen": len(state["log"])})))
        return {"log": [[step_id, *got]], "last": step_id}

    step.__qualname__ = f"step_{step_id}"
    return step


def answer(payload: Any) -> Any:
    return [payload["step"], payload["k"] * 10 + payload["seen"]]


def drive(graph: Graph, *, cold_root: Path | None) -> Any:
    store: Any = MemoryCheckpointer() if cold_root is None else FileCheckpointer(cold_root)
    runner = Runner(graph, store)
    outcome = runner.run("r", {"log": ["in"]})
    while isinstance(outcome, Paused):
        if cold_root is not None:  # a new Runner on a new handle: every resume replays
            runner = Runner(graph, FileCheckpointer(cold_root))
        answers = {i.id: answer(i.payload) for i in outcome.interrupts}
        outcome = runner.resume("r", Resume(answers=answers))
    assert isinstance(outcome, Done)
    return outcome


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flow_=random_flows())
def test_cold_and_hot_resumes_give_the_same_outcome(
    tmp_path_factory: pytest.TempPathFactory, flow_: tuple[Graph, dict[str, Any]]
) -> None:
    graph, _ = flow_
    hot = drive(graph, cold_root=None)
    cold = drive(graph, cold_root=tmp_path_factory.mktemp("cold"))
    assert cold == hot
