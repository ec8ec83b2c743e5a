"""The memory store's fast paths give what the general paths give.

``MemoryCheckpointer`` saves and loads on its own store directly: frames it
encoded itself are decoded without the bounded reader's pre-pass, a frame's
info is kept as a tuple, and a run's summary is derived only when runs are
listed. Each test here compares a fast path with the general one
(``decode_frame``, ``StoreCheckpointer`` over the public protocol,
``summary_of``) on the same runs, or pins the bound that frames from outside
keep.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import values

from pausegraph import (
    Append,
    Checkpointer,
    ConflictError,
    Continue,
    CorruptCheckpointError,
    Done,
    Graph,
    Interrupt,
    LastWriteWins,
    MemoryCheckpointer,
    MergeMap,
    Paused,
    Resume,
    ResumeError,
    Runner,
    StepError,
)
from pausegraph._codec import decode_frame
from pausegraph.checkpointers import FrameInfo, MemoryStore, StoreCheckpointer
from pausegraph.checkpointers._checkpointer import summary_of
from pausegraph.checkpointers.memory import decode_own
from pausegraph.testing import CheckpointerConformance

WORKFLOW = "fast"


class TestMemoryStoreThroughTheProtocol(CheckpointerConformance):
    """The memory store spoken to through the public protocol only (its general path)."""

    durable = False

    def make_checkpointer(self, tmp_path: Path) -> Checkpointer:
        return StoreCheckpointer(MemoryStore())


def _asker(key: str) -> Any:
    def step(state: Mapping[str, Any]) -> Any:
        answer = yield Interrupt({"step": key, "n": state["n"]}, timeout=60)
        return {"log": [key, answer], "m": {key: answer}}

    return step


def _writer(writes: dict[str, Any]) -> Any:
    def step(state: Mapping[str, Any]) -> dict[str, Any]:
        return {"n": state["n"] + 1, **writes}

    return step


def _failing(state: Mapping[str, Any]) -> dict[str, Any]:
    msg = "no"
    raise ValueError(msg)


def _graph(plan: list[tuple[str, Any]]) -> Graph:
    """A chain of steps: ``("write", writes)`` or ``("ask", None)``, then a final step."""
    channels = {"n": LastWriteWins(), "x": LastWriteWins(), "log": Append(), "m": MergeMap()}
    graph = Graph(WORKFLOW, channels)
    names = []
    for i, (kind, writes) in enumerate(plan):
        name = f"s{i}"
        graph.step(name, _asker(name) if kind == "ask" else _writer(writes))
        if names:
            graph.edge(names[-1], name)
        names.append(name)
    return graph


plans = st.lists(
    st.tuples(st.just("write"), st.fixed_dictionaries({"x": values}))
    | st.tuples(st.just("ask"), st.none()),
    min_size=1,
    max_size=6,
)


def _drive(runner: Runner, run_id: str, answers: list[Any]) -> None:
    """Run to the end, answering each interrupt with the next answer (or stop at a pause)."""
    outcome = runner.run(run_id, {"n": 0})
    pending = iter(answers)
    while isinstance(outcome, Paused):
        answer = next(pending, None)
        if answer is None:
            return  # left paused: its summary lists the interrupt
        outcome = runner.resume(run_id, Resume(answer))
    assert isinstance(outcome, Done)


@settings(max_examples=40)
@given(plan=plans, answers=st.lists(values, max_size=6))
def test_own_frames_decode_as_the_bounded_reader_decodes_them(
    plan: list[tuple[str, Any]], answers: list[Any]
) -> None:
    store = MemoryCheckpointer()
    _drive(Runner(_graph(plan), store), "r", answers)
    frames = store.store.read(WORKFLOW, "r", 1, len(store.list(WORKFLOW, "r")))
    assert frames
    for data in frames:
        assert decode_own(data) == decode_frame(data)


def _unchanged(checkpoint: Any) -> Any:
    """A loaded checkpoint without ``changes``, which only a delta frame keeps."""
    assert checkpoint is not None
    return attrs.evolve(checkpoint, changes=None)


@contextmanager
def _twin_stores() -> Iterator[tuple[MemoryCheckpointer, StoreCheckpointer]]:
    """A memory checkpointer and a protocol-only one that every save goes to as well."""
    general = StoreCheckpointer(MemoryStore())
    fast = MemoryCheckpointer()
    original = fast.save

    def both(checkpoint: Any) -> None:
        original(checkpoint)
        general.save(checkpoint)

    fast.save = both  # type: ignore[method-assign]
    yield fast, general


@settings(max_examples=40)
@given(plan=plans, answers=st.lists(values, max_size=6))
def test_the_fast_store_keeps_and_loads_what_the_protocol_path_does(
    plan: list[tuple[str, Any]], answers: list[Any]
) -> None:
    with _twin_stores() as (fast, general):
        _drive(Runner(_graph(plan), fast), "r", answers)
        count = len(general.list(WORKFLOW, "r"))
        assert fast.list(WORKFLOW, "r") == general.list(WORKFLOW, "r")
        assert fast.last(WORKFLOW, "r") == general.last(WORKFLOW, "r")
        infos = fast.store.frames(WORKFLOW, "r")
        assert all(type(i) is FrameInfo for i in infos)
        assert [i.size for i in infos] == [len(d) for d in fast.store.read(WORKFLOW, "r", 1, count)]
        # the same frames up to the first snapshot the general policy's budget
        # refuses: the memory store keeps that one (and the policies part there)
        for f, g in zip(infos, general.store.frames(WORKFLOW, "r"), strict=True):
            if f != g:
                assert f.snapshot
                assert not g.snapshot
                break
        for seq in range(1, count + 1):  # a snapshot keeps no changes: not compared
            assert _unchanged(fast.load(WORKFLOW, "r", seq)) == _unchanged(
                general.load(WORKFLOW, "r", seq)
            )
        assert _unchanged(fast.latest(WORKFLOW, "r")) == _unchanged(general.latest(WORKFLOW, "r"))
        assert fast.summaries() == general.summaries()


def test_listed_summaries_are_those_of_the_latest_checkpoints() -> None:
    store = MemoryCheckpointer()
    graph = _graph([("write", {"x": 1}), ("ask", None), ("ask", None)])
    runner = Runner(graph, store, clock=lambda: 1_000)
    _drive(runner, "done", [1, 2])
    _drive(runner, "paused", [])
    _drive(runner, "paused-twice", ["a"])
    failing = Graph(WORKFLOW, {"n": LastWriteWins()}).step("boom", _failing)
    with pytest.raises(StepError):
        Runner(failing, store).run("failed", {"n": 0})
    runner.start("queued", {"n": 0})
    listed = store.summaries()
    assert {s.run_id: s.status for s in listed} == {
        "done": "done",
        "paused": "paused",
        "paused-twice": "paused",
        "failed": "failed",
        "queued": "queued",
    }
    for summary in listed:
        latest = store.latest(WORKFLOW, summary.run_id)
        assert latest is not None
        assert summary == summary_of(latest)
    assert store.summaries(status="paused") == [s for s in listed if s.status == "paused"]
    # a save after the listing lists the new latest checkpoint
    assert isinstance(runner.resume("paused", Resume(0)), Paused)
    assert isinstance(runner.resume("paused-twice", Resume("b")), Done)
    relisted = {s.run_id: s for s in store.summaries()}
    assert relisted["paused"].seq > {s.run_id: s for s in listed}["paused"].seq
    assert relisted["paused-twice"].status == "done"
    for summary in relisted.values():
        latest = store.latest(WORKFLOW, summary.run_id)
        assert latest is not None
        assert summary == summary_of(latest)


def test_a_frame_appended_through_the_store_is_read_with_the_bound() -> None:
    store = MemoryCheckpointer()
    graph = _graph([("write", {"x": 1}), ("ask", None)])
    Runner(graph, store).run("r", {"n": 0})
    saved = store.latest(WORKFLOW, "r")
    assert saved is not None
    # a snapshot frame that claims an array of 2**32 - 1 items and holds none: the
    # bounded reader refuses it before allocating anything
    claim = b"\xdd\xff\xff\xff\xff"
    info = FrameInfo(saved.seq + 1, saved.super_step, "outside", 0, True, len(claim))
    store.store.append(info, claim, summary_of(attrs.evolve(saved, seq=saved.seq + 1)))
    with pytest.raises(CorruptCheckpointError, match="does not decode"):
        store.latest(WORKFLOW, "r")
    # the run stays marked: frames this handle saves after it keep the bound too
    assert store.store._runs[(WORKFLOW, "r")].foreign


def test_concurrent_saves_to_one_run_keep_one_history() -> None:
    store = MemoryCheckpointer()
    graph = _graph([("write", {"x": i}) for i in range(3)])
    Runner(graph, store).run("r", {"n": 0})
    latest = store.latest(WORKFLOW, "r")
    assert latest is not None
    nxt = attrs.evolve(latest, seq=latest.seq + 1, label="race")
    outcomes: list[str] = []

    def save() -> None:
        try:
            store.save(nxt)
            outcomes.append("saved")
        except Exception as exc:
            outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=save) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["ConflictError"] * 7 + ["saved"]
    assert [m.seq for m in store.list(WORKFLOW, "r")] == list(range(1, nxt.seq + 1))


def test_the_live_lock_refuses_a_second_holder_and_is_free_once_let_go() -> None:
    store = MemoryCheckpointer()
    first = store.lock(WORKFLOW, "r")
    with first:
        held = store.holder(WORKFLOW, "r")
        assert held is not None
        with pytest.raises(ConflictError, match="is running"):
            store.lock(WORKFLOW, "r").__enter__()
        with pytest.raises(ConflictError):
            first.__enter__()  # the same lock, entered again: not a second free hold
        assert store.holder(WORKFLOW, "r") == held
        with store.lock(WORKFLOW, "other"):  # another run's lock is its own
            pass
    assert store.holder(WORKFLOW, "r") is None
    with store.lock(WORKFLOW, "r"):
        assert store.holder(WORKFLOW, "r") is not None
    with first:  # a lock let go may be taken again
        pass
    assert store.holder(WORKFLOW, "r") is None


class _Watched(MemoryCheckpointer):
    """A memory store that records the order of lock, sync and unlock, and can fail sync."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[str] = []
        self.fail_sync = False

    @contextmanager
    def _watched(self, workflow_id: str, run_id: str) -> Iterator[None]:
        with super().lock(workflow_id, run_id):
            self.events.append("locked")
            try:
                yield
            finally:
                self.events.append("unlocked")

    def lock(self, workflow_id: str, run_id: str) -> Any:
        return self._watched(workflow_id, run_id)

    def sync(self) -> None:
        self.events.append("sync")
        if self.fail_sync:
            msg = "the disk is gone"
            raise OSError(msg)


def test_a_call_syncs_before_it_lets_the_run_go_even_when_it_fails() -> None:
    store = _Watched()
    graph = _graph([("ask", None)])
    runner = Runner(graph, store)
    assert isinstance(runner.run("r", {"n": 0}), Paused)
    assert store.events == ["locked", "sync", "unlocked"]
    store.events.clear()
    with pytest.raises(ResumeError):  # refused by the machine: it saved nothing to sync
        runner.resume("r", Continue())
    assert store.events == ["locked", "unlocked"]  # still let go
    store.events.clear()
    store.fail_sync = True
    with pytest.raises(OSError, match="the disk is gone"):
        runner.resume("r", Resume(1))
    assert store.events == ["locked", "sync", "unlocked"]
    assert store.holder(WORKFLOW, "r") is None  # a failed sync does not keep the run held
    store.fail_sync = False
    assert isinstance(Runner(graph, store).run("r"), Done)


def test_runners_with_different_breakpoints_on_one_graph_keep_their_own() -> None:
    graph = _graph([("write", {"x": 1}), ("write", {"x": 2})])
    store = MemoryCheckpointer()
    plain = Runner(graph, store)
    stops = Runner(graph, store, interrupt_before={"s1"})
    assert isinstance(plain.run("a", {"n": 0}), Done)
    assert isinstance(stops.run("b", {"n": 0}), Paused)
    assert isinstance(plain.run("c", {"n": 0}), Done)
    assert isinstance(plain.resume("b", Continue()), Done)  # the run's own breakpoints
    assert isinstance(Runner(graph, store).run("d", {"n": 0}), Done)


def test_the_memory_store_keeps_the_snapshot_it_tries_and_encodes_each_frame_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pausegraph.checkpointers import _log

    encoded: list[int] = []
    real = _log.encode_frame

    def counted(checkpoint: Any, *, snapshot: bool) -> bytes:
        encoded.append(checkpoint.seq)
        return real(checkpoint, snapshot=snapshot)

    monkeypatch.setattr(_log, "encode_frame", counted)
    with _twin_stores() as (fast, general):
        plan = [("write", {"x": 1}), ("ask", None), ("write", {"x": 2}), ("write", {"x": 3})]
        _drive(Runner(_graph(plan), fast), "r", [True])
        fast_infos = fast.store.frames(WORKFLOW, "r")
        general_infos = general.store.frames(WORKFLOW, "r")
    # the durable stores' policy tries a snapshot at frame 5, finds it over its
    # budget and encodes the frame again as a delta (its snapshot comes at 6);
    # the memory store keeps the one it tried
    assert [i.snapshot for i in general_infos] == [True, False, False, False, False, True, False]
    assert [i.snapshot for i in fast_infos] == [True, False, False, False, True, False, False]
    assert len(encoded) == 7 + 8  # once per frame in memory; general: frame 5 twice
    assert _unchanged(fast.latest(WORKFLOW, "r")) == _unchanged(general.latest(WORKFLOW, "r"))


def test_listing_run_ids_derives_no_summary() -> None:
    store = MemoryCheckpointer()
    runner = Runner(_graph([("ask", None)]), store)
    for run_id in ("a", "b"):
        runner.run(run_id, {"n": 0})
    assert sorted(store.runs()) == [(WORKFLOW, "a"), (WORKFLOW, "b")]
    assert all(run.summary is None for run in store.store._runs.values())
    assert [s.status for s in store.summaries()] == ["paused", "paused"]
    assert all(run.summary is not None for run in store.store._runs.values())
