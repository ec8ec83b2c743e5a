"""Tests that catch mutations of the checkpointer, the codec, the records, the worker and
the inbox that the rest of the suite let through (found by mutation testing)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pausegraph import Before, Continue, Done, Graph, LastWriteWins, Paused, Resume, Runner
from pausegraph.checkpointers import MemoryStore, StoreCheckpointer


def _counter_chain(n: int) -> Graph:
    """``n`` steps in a line, each adding one to a small counter: a state overwritten in
    place, which the snapshot policy snapshots every few frames (so loading a late
    checkpoint starts from a snapshot that is not the run's first frame)."""
    g = Graph("chain", {"n": LastWriteWins(), "big": LastWriteWins()})
    for i in range(n):
        g.step(f"s{i}", lambda s: {"n": (s["n"] or 0) + 1})
        if i:
            g.edge(f"s{i - 1}", f"s{i}")
    return g


def test_a_run_deleted_and_started_again_under_its_id_keeps_its_own_breakpoints() -> None:
    """SPEC, Runs: ``delete`` removes every checkpoint of a run; Breakpoints: those of the
    Runner that starts a run are recorded in its first checkpoint and every later
    driver honours the recorded ones. A handle that loaded the deleted run must not
    read the new run's breakpoints from what it remembers of the old one."""
    graph = _counter_chain(40)
    store = StoreCheckpointer(MemoryStore())  # one handle, the durable stores' policy
    first = Runner(graph, store, interrupt_before={"s35"}, clock=lambda: 1000)
    assert first.run("r", {"big": "x" * 50}) == Paused(36, Before("s35"), None, ())
    assert any(f.snapshot for f in store.store.frames("chain", "r")[1:])  # a later snapshot
    assert first.state("r").status == "paused"  # loads from that later snapshot
    first.delete("r")

    # the same graph, input and clock, and a breakpoint name of the same length: the
    # new run's first frame has the very size and meta of the old one's
    second = Runner(graph, store, interrupt_before={"s30"}, clock=lambda: 1000)
    assert second.run("r", {"big": "x" * 50}) == Paused(31, Before("s30"), None, ())
    # a new Runner with no breakpoints of its own honours the run's recorded ones only
    outcome = Runner(graph, store, clock=lambda: 1000).resume("r", Continue())
    assert type(outcome) is Done
    assert outcome.state["n"] == 40


@pytest.mark.parametrize("kind", ["memory", "file", "sqlite"])
def test_a_handle_drives_a_run_started_again_elsewhere_by_its_own_breakpoints(
    tmp_path: Path, kind: str
) -> None:
    """The same, with the run deleted and started again by another handle (another
    process), whose deletion this handle cannot see: it must still drive the new run
    by the new run's breakpoints, not by what it decoded of the old run's first frame."""
    from pausegraph import FileCheckpointer, SqliteCheckpointer
    from pausegraph.checkpointers import Checkpointer

    if kind == "memory":
        shared = MemoryStore()
        handles: list[Checkpointer] = [StoreCheckpointer(shared), StoreCheckpointer(shared)]
    elif kind == "file":
        handles = [FileCheckpointer(tmp_path / "s"), FileCheckpointer(tmp_path / "s")]
    else:
        handles = [SqliteCheckpointer(tmp_path / "r.db"), SqliteCheckpointer(tmp_path / "r.db")]
    mine, other = handles
    graph = _counter_chain(40)
    first = Runner(graph, mine, interrupt_before={"s35"}, clock=lambda: 1000)
    assert first.run("r", {"big": "x"}) == Paused(36, Before("s35"), None, ())
    assert first.state("r").status == "paused"  # loaded from a snapshot after the first
    Runner(graph, other).delete("r")
    again = Runner(graph, other, interrupt_before={"s30"}, clock=lambda: 1000)
    assert again.run("r", {"big": "x"}) == Paused(31, Before("s30"), None, ())
    # the first handle drives the new run: past s30, and s35 is no breakpoint of it
    outcome = Runner(graph, mine, clock=lambda: 1000).resume("r", Continue())
    assert outcome == Done({"n": 40, "big": "x"}, 40)


def test_a_worker_takes_again_at_once_a_run_it_set_aside_once_something_saved_to_it() -> None:
    """SPEC, Workers: ``poll`` drives every queued run of its graphs. A run a worker could
    not drive (here: step code raised ``KeyboardInterrupt``) is set aside only while
    nothing is saved to it; once a person moves it on and ``submit``s a command, the
    next poll drives it."""
    from pausegraph import Interrupt, MemoryCheckpointer, Worker

    interrupting = [True]

    def step(state):
        if interrupting[0]:
            raise KeyboardInterrupt
        answer = yield Interrupt("ship?")
        return {"order": answer}

    g = Graph("orders", {"order": LastWriteWins()}).step("o", step)
    store = MemoryCheckpointer()
    Runner(g, store).start("r", {"order": "o-1"})
    worker = Worker(store, [g])
    with pytest.raises(KeyboardInterrupt):
        worker.poll()
    interrupting[0] = False
    runner = Runner(g, store)
    assert type(runner.run("r")) is Paused  # a person drives it on
    assert runner.submit("r", Resume("yes")).status == "queued"
    assert worker.poll() == 1
    assert runner.state("r").status == "done"
    assert runner.state("r").values == {"order": "yes"}


def _asking(n: int) -> Graph:
    """One step that asks ``n`` questions in a row, then writes the answers."""
    from pausegraph import Interrupt

    def ask(state):
        answers = []
        for i in range(n):
            answers.append((yield Interrupt(f"q{i}")))
        return {"answers": answers}

    channels = {"answers": LastWriteWins(), "big": LastWriteWins()}
    return Graph("asking", channels).step("ask", ask)


def test_handles_that_each_save_a_little_to_a_big_run_store_deltas_not_snapshots() -> None:
    """SPEC, Checkpoints (Size): what a checkpoint adds to a store grows with what changed
    since the previous one, not with the size of the whole state. A resume in another
    process is a new checkpointer handle on the same store: it learns the run's frames
    and goes on saving deltas."""
    store = MemoryStore()
    g = _asking(12)
    big = "x" * 20_000
    Runner(g, StoreCheckpointer(store)).run("r", {"big": big})
    for i in range(11):
        Runner(g, StoreCheckpointer(store)).resume("r", Resume(i))  # a new handle each time
    infos = store.frames("asking", "r")
    assert infos[0].snapshot
    assert infos[0].size > 20_000
    added = sum(i.size for i in infos[1:])
    assert added < 20_000, [(i.seq, i.snapshot, i.size) for i in infos]


def test_a_snapshot_follows_at_most_snapshot_every_deltas_whatever_their_size() -> None:
    """The hard bound of the snapshot policy (SPEC, Checkpoints (Size): loading reads one
    snapshot plus a bounded amount after it): after ``SNAPSHOT_EVERY`` deltas, however
    small beside the snapshot, the next frame is a snapshot; one delta fewer is not."""
    from pausegraph import MemoryCheckpointer
    from pausegraph.checkpointers._log import SNAPSHOT_EVERY, SnapshotPolicy

    memory = MemoryCheckpointer()
    Runner(_counter_chain(2), memory).run("r", {"n": 0})
    loaded = memory.latest("chain", "r")
    assert loaded is not None
    delta = type(loaded)(**{**vars(loaded), "seq": 5, "changes": ()})  # a delta is possible

    def policy_after(deltas: int) -> SnapshotPolicy:
        policy = SnapshotPolicy()
        policy.saved(10_000_000, True)  # a huge snapshot: the size bounds never fire
        for _ in range(deltas):
            policy.saved(1, False)
        return policy

    assert policy_after(SNAPSHOT_EVERY - 1).encode(delta)[1] is False
    assert policy_after(SNAPSHOT_EVERY).encode(delta)[1] is True


class _Altered(MemoryStore):
    """A store whose listing or bytes were altered by something other than pausegraph."""

    def __init__(self) -> None:
        super().__init__()
        self.first_listed_as_delta = False
        self.replaced: dict[int, bytes] = {}  # seq: the bytes read in its place

    def frames(self, workflow_id, run_id):  # type: ignore[no-untyped-def]
        infos = super().frames(workflow_id, run_id)
        if self.first_listed_as_delta and infos:
            i = infos[0]
            infos[0] = type(i)(i.seq, i.super_step, i.label, i.timestamp_ms, False, i.size)
        return infos

    def read(self, workflow_id, run_id, first, last):  # type: ignore[no-untyped-def]
        frames = super().read(workflow_id, run_id, first, last)
        for seq, data in self.replaced.items():
            if first <= seq < first + len(frames):
                frames[seq - first] = data
        return frames


def test_a_run_listed_with_no_snapshot_before_a_checkpoint_is_corrupt() -> None:
    """A store whose listing shows no snapshot at or before the checkpoint asked for
    holds what pausegraph did not write: ``CorruptCheckpointError`` (SPEC, Checkpoints:
    never a wrong state), not a store that failed for a while."""
    from pausegraph import CorruptCheckpointError

    store = _Altered()
    checkpointer = StoreCheckpointer(store)
    Runner(_counter_chain(11), checkpointer, clock=lambda: 1000).run("r", {"big": "x"})
    assert store.frames("chain", "r")[-1].snapshot  # a later snapshot exists
    store.first_listed_as_delta = True
    with pytest.raises(CorruptCheckpointError):
        checkpointer.load("chain", "r", 2)


def test_a_first_frame_without_the_graph_structure_is_corrupt() -> None:
    """SPEC, Runs: a checkpoint records the structure of the graph; a first frame that
    lacks it was not written by pausegraph: ``CorruptCheckpointError``."""
    from pausegraph import CorruptCheckpointError
    from pausegraph._codec import unpack_bounded
    from pausegraph._values import pack

    store = _Altered()
    checkpointer = StoreCheckpointer(store)
    Runner(_counter_chain(2), checkpointer).run("r", {"n": 0})
    (data,) = store.read("chain", "r", 1, 1)
    frame = unpack_bounded(data)
    del frame["structure"]
    store.replaced[1] = pack(frame)
    with pytest.raises(CorruptCheckpointError):
        checkpointer.latest("chain", "r")


def test_runs_lists_what_a_submitted_claim_left_unanswered(tmp_path: Path) -> None:
    """SPEC, Run status: the status (and what a listing shows of a run) is a function of
    the latest checkpoint, the same whoever reads it. A claim that answered one of two
    interrupts leaves the run queued with one still pending, as ``state`` says; the
    listing, read from the run's summary, says the same."""
    import contextlib
    import io
    import json

    from pausegraph import FileCheckpointer, Interrupt
    from pausegraph.cli import main

    def ask(name):
        def step(state):
            return {name: (yield Interrupt(name))}

        return step

    g = Graph("pair", {"a": LastWriteWins(), "b": LastWriteWins()})
    g.step("a", ask("a")).step("b", ask("b"))
    store = FileCheckpointer(tmp_path)
    runner = Runner(g, store)
    first, second = runner.run("r").interrupts
    info = runner.submit("r", Resume(answers={first.id: 1}))
    assert info.status == "queued"
    assert [i.id for i in info.interrupts] == [second.id]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["--store", str(tmp_path), "runs", "--json"]) == 0
    (row,) = json.loads(out.getvalue())
    assert row["status"] == "queued"
    assert row["interrupts"] == 1


def test_resuming_with_the_steps_of_a_layer_added_in_another_order_is_refused() -> None:
    """SPEC, Runs: a resume with a graph whose structure differs is a ``ResumeError`` that
    names the difference. The order steps were added in is part of it (SPEC, Graph:
    inside a layer steps run, and their writes apply, in that order)."""
    from pausegraph import Append, Interrupt, MemoryCheckpointer, ResumeError

    def a(state):
        yield Interrupt("a?")
        return {"log": "a"}

    def b(state):
        return {"log": "b"}

    def graph(order):
        g = Graph("ordered", {"log": Append()})
        for name in order:
            g.step(name, {"a": a, "b": b}[name])
        return g

    store = MemoryCheckpointer()
    assert type(Runner(graph("ab"), store).run("r")) is Paused
    with pytest.raises(ResumeError, match="order"):
        Runner(graph("ba"), store).resume("r", Resume(1))
    assert Runner(graph("ab"), store).resume("r", Resume(1)).state == {"log": ["a", "b"]}


def test_an_idle_serve_sleeps_between_polls_instead_of_spinning() -> None:
    """SPEC, Workers: ``serve()`` polls until ``stop`` is set, sleeping briefly when idle."""
    import threading
    import time

    from pausegraph import MemoryCheckpointer, Worker

    worker = Worker(MemoryCheckpointer(), [_counter_chain(2)])
    polls = []
    poll = worker.poll

    def counted(**kwargs):  # type: ignore[no-untyped-def]
        polls.append(time.monotonic())
        return poll(**kwargs)

    worker.poll = counted  # type: ignore[method-assign]
    stop = threading.Event()
    serving = threading.Thread(target=worker.serve, args=(stop,))
    serving.start()
    time.sleep(0.3)
    stop.set()
    serving.join(5)
    assert not serving.is_alive()
    assert 1 <= len(polls) <= 3, len(polls)


def test_a_delta_that_changes_a_channel_the_run_does_not_have_is_corrupt() -> None:
    """SPEC, Checkpoints: a record a read needs that was altered is a
    ``CorruptCheckpointError``, never a raw error of the rebuild (here a ``KeyError``)."""
    from pausegraph import CorruptCheckpointError
    from pausegraph._codec import unpack_bounded
    from pausegraph._values import pack

    store = _Altered()
    checkpointer = StoreCheckpointer(store)
    Runner(_counter_chain(3), checkpointer).run("r", {"n": 0})
    infos = store.frames("chain", "r")
    assert not infos[1].snapshot
    (data,) = store.read("chain", "r", 2, 2)
    frame = unpack_bounded(data)
    frame["changes"] = [{"channel": "nope", "op": "merge", "value": {"k": 1}}]
    store.replaced[2] = pack(frame)
    with pytest.raises(CorruptCheckpointError):
        checkpointer.latest("chain", "r")


def test_an_update_claimed_on_a_failed_run_is_read_back_by_another_process(
    tmp_path: Path,
) -> None:
    """SPEC, Failures: on a failed run ``Update(edits)`` applies the edits through the
    reducers before the retry, so every step of the layer sees them; Workers: ``submit``
    saves the claim and another process drives it. The claim's record (a layer under
    way whose values changed) must load back with the edits."""
    from pausegraph import FileCheckpointer, Interrupt, StepError, Update

    def step(state):
        answer = yield Interrupt("q")
        if state["ok"] is None:
            raise ValueError("not ok yet")
        return {"out": answer}

    g = Graph("fixable", {"ok": LastWriteWins(), "out": LastWriteWins()}).step("a", step)
    runner = Runner(g, FileCheckpointer(tmp_path))
    assert type(runner.run("r")) is Paused
    with pytest.raises(StepError):
        runner.resume("r", Resume(1))
    assert runner.submit("r", Update({"ok": True})).status == "queued"
    cold = Runner(g, FileCheckpointer(tmp_path))
    assert cold.state("r").values["ok"] is True
    assert cold.run("r").state == {"ok": True, "out": 1}


def test_a_timed_out_interrupt_of_a_claimed_tick_is_not_listed_as_pending() -> None:
    """SPEC, Runs: ``state`` gives ``interrupts`` (the pending ones); Deadlines: ``tick``
    claims a run like a resume and throws ``InterruptTimeout`` into each timed-out
    interrupt, which then waits for nothing. A tick whose driver stopped after its claim
    leaves the run queued with that interrupt no longer pending."""
    from pausegraph import Interrupt, InterruptTimeout, MemoryCheckpointer

    now = [1_000_000]
    stopping = [True]

    def step(state):
        try:
            yield Interrupt("q", timeout=1)
        except InterruptTimeout:
            if stopping[0]:
                stopping[0] = False
                raise KeyboardInterrupt from None  # the driver stops here (a signal)
            return {"out": "timed out"}
        return {"out": "answered"}

    g = Graph("timed", {"out": LastWriteWins()}).step("s", step)
    store = MemoryCheckpointer()
    runner = Runner(g, store, clock=lambda: now[0])
    assert len(runner.run("r").interrupts) == 1
    now[0] += 1_000
    with pytest.raises(KeyboardInterrupt):
        runner.tick()
    info = Runner(g, store, clock=lambda: now[0]).state("r")
    assert info.status == "queued"
    assert info.interrupts == ()
    assert Runner(g, store, clock=lambda: now[0]).run("r").state == {"out": "timed out"}


class _OwnCheckpointer:
    """A user's own checkpointer (not a ``StoreCheckpointer``: it keeps no run summaries),
    here delegating to a memory one; ``being_created`` are runs its ``runs()`` lists
    before their first checkpoint is there."""

    def __init__(self, being_created: tuple[tuple[str, str], ...] = ()) -> None:
        from pausegraph import MemoryCheckpointer

        self.inner = MemoryCheckpointer()
        self.being_created = list(being_created)

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.inner, name)

    def runs(self):  # type: ignore[no-untyped-def]
        return [*self.inner.runs(), *self.being_created]


def _asking_graph(name: str) -> Graph:
    from pausegraph import Interrupt

    def ask(state):
        return {"x": (yield Interrupt(name))}

    return Graph(name, {"x": LastWriteWins()}).step("ask", ask)


def test_the_inbox_of_a_checkpointer_without_summaries_filters_by_workflow() -> None:
    """SPEC, Stores: ``inbox(checkpointer, *, workflow=None)`` lists every pending
    interrupt of every paused run (of ``workflow``, if given), for any checkpointer."""
    from pausegraph import inbox

    own = _OwnCheckpointer()
    Runner(_asking_graph("w1"), own, clock=lambda: 1000).run("r1")
    Runner(_asking_graph("w2"), own, clock=lambda: 2000).run("r2")
    assert [(w.workflow_id, w.run_id) for w in inbox(own)] == [("w1", "r1"), ("w2", "r2")]
    assert [(w.workflow_id, w.run_id) for w in inbox(own, workflow="w2")] == [("w2", "r2")]


def test_a_run_listed_before_its_first_checkpoint_is_left_out_of_the_inbox() -> None:
    """SPEC, Checkpoints: ``runs()`` lists every ``(workflow_id, run_id)`` in the store; a
    run another process is creating right now has no checkpoint yet (``latest`` is
    ``None``): the inbox and a worker leave it out instead of failing."""
    from pausegraph import Worker, inbox

    own = _OwnCheckpointer(being_created=(("w1", "new"),))
    runner = Runner(_asking_graph("w1"), own, clock=lambda: 1000)
    runner.run("r1")
    assert [w.run_id for w in inbox(own)] == ["r1"]
    runner.start("r2")
    assert Worker(own, [_asking_graph("w1")]).poll() == 1
    assert runner.state("r2").status == "paused"


def test_inbox_orders_interrupts_asked_at_the_same_moment_by_run_id_then_workflow() -> None:
    """``inbox`` lists oldest first: by ``since_ms``, then run id, then workflow (its
    documented order; SPEC, Stores: oldest first)."""
    from pausegraph import MemoryCheckpointer, inbox

    store = MemoryCheckpointer()
    Runner(_asking_graph("z"), store, clock=lambda: 1000).run("a")
    Runner(_asking_graph("y"), store, clock=lambda: 1000).run("b")
    Runner(_asking_graph("x"), store, clock=lambda: 500).run("c")
    assert [(w.run_id, w.workflow_id) for w in inbox(store)] == [
        ("c", "x"),
        ("a", "z"),
        ("b", "y"),
    ]


def test_a_poll_told_to_stop_reads_nothing_from_the_store() -> None:
    """``Worker.poll(stop=...)`` looks at ``stop`` before each graph: a poll whose stop is
    already set moves nothing and does not even list the store (so a store failing at that
    moment does not make it raise; SPEC, Workers: a stopped worker takes no other run)."""
    import threading

    from pausegraph import CheckpointError, Worker

    class Unlistable(MemoryStore):
        def runs(self, *, workflow_id=None, status=None):  # type: ignore[no-untyped-def]
            raise CheckpointError("the store cannot be listed right now")

    worker = Worker(StoreCheckpointer(Unlistable()), [_counter_chain(2)])
    stop = threading.Event()
    stop.set()
    assert worker.poll(stop=stop) == 0
