"""The checkpointer conformance suite: what every store must do.

Subclass ``CheckpointerConformance`` in a test module, name the subclass
``Test...`` so pytest collects it, and say how to open your store::

    from pausegraph.testing import CheckpointerConformance

    class TestMyStore(CheckpointerConformance):
        def make_checkpointer(self, tmp_path):
            return MyStore(tmp_path / "store")

Every test method asks for pytest's ``tmp_path`` and opens one new, empty
store with ``make_checkpointer``. The checkpoints it saves come from real
runs of small workflows (recorded by a ``Runner`` on a
``MemoryCheckpointer``) and are copied into the store under test, so the
suite speaks only the public ``Checkpointer`` protocol and needs nothing
private. Hypothesis tests in it give each example a run id of its own, so
one store serves them all.

Adding a check: write a ``test_...(self, tmp_path)`` method that opens
``self.make_checkpointer(tmp_path)`` and uses ``recorded_run`` /
``copy_run`` for realistic histories.
"""

from __future__ import annotations

import builtins
import contextlib
import itertools
import multiprocessing
import os
import random
import re
import signal
import string
import threading
import time
import unittest
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .. import (
    Append,
    Checkpoint,
    CheckpointError,
    CheckpointMeta,
    ConflictError,
    Done,
    Effect,
    EffectError,
    Graph,
    Interrupt,
    LastWriteWins,
    MemoryCheckpointer,
    MergeMap,
    Paused,
    Resume,
    ResumeError,
    Runner,
    SerializationError,
    Status,
    Update,
)
from ..checkpointers import Checkpointer, RunSummary
from ._strategies import answers

WORKFLOW = "wf"


def _summaries(store: Checkpointer) -> builtins.list[RunSummary] | None:
    """The store's run summaries, sorted (None for a checkpointer that keeps none)."""
    summaries: Callable[..., builtins.list[RunSummary]] | None = getattr(store, "summaries", None)
    if summaries is None:
        return None
    return sorted(summaries(), key=lambda s: (s.workflow_id, s.run_id))


_ids = itertools.count()


def fresh_run_id() -> str:
    """A run id no other test of this process uses."""
    return f"run-{next(_ids)}"


# --- histories recorded from real runs ---------------------------------------------


class _Recorder(MemoryCheckpointer):
    """A memory store that also keeps the ``changes`` each save was told.

    A snapshot frame does not keep ``changes``, so ``load`` alone would not
    give back the deltas a store under test should be offered.
    """

    def __init__(self) -> None:
        super().__init__()
        self.changes: dict[tuple[str, str, int], Any] = {}

    def save(self, checkpoint: Checkpoint) -> None:
        super().save(checkpoint)
        key = (checkpoint.workflow_id, checkpoint.run_id, checkpoint.seq)
        self.changes[key] = checkpoint.changes

    def checkpoints(self, workflow_id: str, run_id: str) -> builtins.list[Checkpoint]:
        out = []
        for meta in self.list(workflow_id, run_id):
            loaded = self.load(workflow_id, run_id, meta.seq)
            assert loaded is not None
            key = (workflow_id, run_id, meta.seq)
            out.append(attrs.evolve(loaded, changes=self.changes[key]))
        return out


CHANNELS: Mapping[str, Callable[[], Any]] = {
    "x": LastWriteWins,
    "m": MergeMap,
    "log": Append,
}


def _writer(writes: Mapping[str, Any]) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    def write(state: Mapping[str, Any]) -> dict[str, Any]:
        return dict(writes)

    return write


def recorded_run(
    writes: Sequence[Mapping[str, Any]] = ({"x": 1},), *, input: Mapping[str, Any] | None = None
) -> list[Checkpoint]:
    """Every checkpoint of a real run, oldest first.

    The workflow is a chain of steps over the channels ``x`` (last write
    wins), ``m`` (merged dict) and ``log`` (appended list); step ``i`` makes
    the writes ``writes[i]``.
    """
    graph = Graph(WORKFLOW, {name: make() for name, make in CHANNELS.items()})
    for i, step_writes in enumerate(writes):
        graph.step(f"s{i}", _writer(step_writes))
        if i:
            graph.edge(f"s{i - 1}", f"s{i}")
    recorder = _Recorder()
    outcome = Runner(graph, recorder).run("r", input)
    assert isinstance(outcome, Done), outcome
    return recorder.checkpoints(WORKFLOW, "r")


def _checks(state: Mapping[str, Any]) -> Any:
    ok = yield Effect(_echo, "charged")
    try:
        yield Effect(_refuse, "declined")
    except EffectError as exc:
        ok = [ok, str(exc)]
    answer = yield Interrupt({"q": "ok?", "bytes": b"\x00"})
    return {"x": [ok, answer]}


def _sibling(state: Mapping[str, Any]) -> dict[str, Any]:
    return {"log": [1, b"\x00"], "m": {"k": True}}


def _echo(value: Any) -> Any:
    return value


def _refuse(value: Any) -> Any:
    msg = f"refused {value}"
    raise ValueError(msg)


def recorded_pause() -> list[Checkpoint]:
    """Every checkpoint of a run paused at an interrupt, with a journal and edits.

    Its last checkpoint's pause holds a finished step's writes, a suspended
    step's journal (an effect's result, an effect's error, an interrupt) and
    an ``Update``'s edits, which is everything a pause record can carry.
    """
    graph = (
        Graph(WORKFLOW, {name: make() for name, make in CHANNELS.items()})
        .step("a", _checks)
        .step("b", _sibling)
    )
    recorder = _Recorder()
    runner = Runner(graph, recorder)
    assert isinstance(runner.run("r"), Paused)
    edits: dict[str, Any] = {"x": 5}
    assert isinstance(runner.resume("r", Update(edits)), Paused)
    return recorder.checkpoints(WORKFLOW, "r")


def copy_run(
    store: Checkpointer,
    checkpoints: Sequence[Checkpoint],
    run_id: str,
    *,
    workflow_id: str = WORKFLOW,
    deltas: bool = True,
) -> list[Checkpoint]:
    """Save ``checkpoints`` into ``store`` as run ``run_id``; return what was saved.

    With ``deltas=False`` every checkpoint is saved without its ``changes``,
    so the store must keep its full values.
    """
    saved = []
    for checkpoint in checkpoints:
        renamed = attrs.evolve(checkpoint, workflow_id=workflow_id, run_id=run_id)
        if not deltas:
            renamed = attrs.evolve(renamed, changes=None)
        store.save(renamed)
        saved.append(renamed)
    return saved


def same(loaded: Checkpoint | None, saved: Checkpoint) -> bool:
    """Equal as checkpoints; ``changes`` is only what a save was told (a snapshot drops it)."""
    assert loaded is not None, f"checkpoint {saved.seq} of {saved.run_id!r} did not load"
    return attrs.evolve(loaded, changes=None) == attrs.evolve(saved, changes=None)


class _Raised:
    value: BaseException


@contextlib.contextmanager
def raises(kind: type[BaseException], pattern: str = "") -> Iterator[_Raised]:
    """``pytest.raises`` without pytest: the testing extra needs only hypothesis."""
    raised = _Raised()
    try:
        yield raised
    except kind as exc:
        raised.value = exc
        if not re.search(pattern, str(exc)):
            msg = f"{type(exc).__name__} message {str(exc)!r} does not match {pattern!r}"
            raise AssertionError(msg) from exc
    else:
        msg = f"expected {kind.__name__}, nothing was raised"
        raise AssertionError(msg)


# one super-step's writes to one of the three channels
_writes = st.one_of(
    st.builds(lambda v: {"x": v}, answers()),
    st.builds(lambda v: {"m": v}, st.dictionaries(st.text(max_size=4), answers(), max_size=3)),
    st.builds(lambda v: {"log": v}, st.lists(answers(), max_size=3)),
)

# pairs of (workflow_id, run_id) that differ, but that a store keying runs by a
# joined string, a case-insensitive or accent-insensitive collation, a fixed-width
# column, Unicode normalisation, trailing-space trimming or a C string would merge
_CLOSE_IDS = [
    (("a/b", "c"), ("a", "b/c")),
    (("a:b", "c"), ("a", "b:c")),
    ((WORKFLOW, "Order-1"), (WORKFLOW, "order-1")),
    ((WORKFLOW, "x" * 300), (WORKFLOW, "x" * 301)),
    ((WORKFLOW, "caf\u00e9"), (WORKFLOW, "cafe\u0301")),
    ((WORKFLOW, "r"), (WORKFLOW, "r ")),
    ((WORKFLOW, "a"), (WORKFLOW, "a\x00b")),
    ((WORKFLOW, "\u00c5"), (WORKFLOW, "\u212b")),  # Å as a letter and as the angstrom sign
]
_LARGE_VALUE_BYTES = 3 << 20  # 3 MiB: past 64 KiB and 1 MiB limits, and quick to store

_HOSTILE_IDS = [
    "../x",
    "../../etc/passwd",
    "/abs/path",
    "a/b",
    "nul\x00byte",
    "x" * 10_000,
    # long ids that do not compress: no store may need an id to fit in an index entry
    "".join(random.Random(0).choices(string.ascii_letters, k=10_000)),
    "".join(map(chr, random.Random(1).choices(range(0x4E00, 0xA000), k=3_000))),
    "ünïcødé ✓ 日本",
    ".",
    "..",
    "",
    "C:\\win",
    "\ud800 lone surrogate",
    " spaced ",
]

# one store serves every example (see ``_shared``), and every subclass of the
# suite runs the same inherited test on its own store: both are meant. No
# deadline: a correct store may take its time (an fsync per append, a round
# trip to a server), and the suite checks what it does, not how fast
_one_store = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.differing_executors],
)


def _ask(state: Mapping[str, Any]) -> Any:
    answer = yield Interrupt({"n": len(state["log"])})
    return {"log": [answer]}


def _tally(state: Mapping[str, Any]) -> dict[str, Any]:
    return {"count": len(state["log"]), "seen": {str(len(state["log"])): True}}


def _inspect_graph() -> Graph:
    channels: dict[str, Append | LastWriteWins | MergeMap] = {
        "log": Append(),
        "count": LastWriteWins(),
        "seen": MergeMap(),
    }
    return Graph("inspect", channels).step("ask", _ask).step("tally", _tally).edge("ask", "tally")


class _Boom(Exception):
    """What a step raises inside its driver's hold of the live lock."""


def _lock_refused_in_another_thread(store: Checkpointer, run_id: str) -> bool:
    """Whether ``store.lock`` of ``run_id`` is a ``ConflictError`` in a new thread."""
    refused: list[bool] = []

    def attempt() -> None:
        try:
            with store.lock(WORKFLOW, run_id):
                refused.append(False)
        except ConflictError:
            refused.append(True)

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(60)
    assert refused, "a lock attempt in another thread neither got the lock nor was refused"
    return refused[0]


def _hold_until_killed(store: Checkpointer, run_id: str, held: Any) -> None:
    """In a forked child: hold the run's live lock, say so, and wait to be killed."""
    with store.lock(WORKFLOW, run_id):
        held.set()
        while True:
            time.sleep(1)


def _disk_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


class CheckpointerConformance:
    """The tests every ``Checkpointer`` must pass; subclass it for your store.

    Override ``make_checkpointer(tmp_path)`` to return a new, empty store
    (``tmp_path`` is pytest's per-test directory); name the subclass
    ``Test...``. It checks conditional ``save`` (``ConflictError`` for a seq
    the run has, ``CheckpointError`` for a gap, nothing written either way),
    copies on save and load, ``load``/``latest``/``list`` of what is not
    there, ``runs()``, ``delete``, the live lock (between threads, let go
    when its holder raises, kept through a refused second attempt, and
    released when a holding process is killed), run summaries filtered by
    workflow and status, size on disk (measured after ``close()``, the
    checkpointer's or its wrapped store's, if it has one), deltas against
    snapshots, pause records, unencodable values, a 3 MiB value that does not compress,
    racing threads, awkward ids and ids a careless encoding would merge
    (joined, case-folded, cut, normalised, trimmed), two handles seeing
    each other's runs and checkpoints, and a ``Runner``'s ``state``,
    ``history`` and ``fork`` on the store.

    What it cannot tell in a test's time: a lock that a lease times out
    (the SPEC's live lock is held for as long as its holder lives, however
    long an effect takes), and a store that loses what a power cut takes
    from the page cache.

    Set ``durable = False`` for a store that keeps runs in the process's
    memory: the tests of what outlives a process (a holder killed with
    ``SIGKILL``, a saver killed with ``SIGKILL`` whose checkpoints a new
    handle must read back through ``reopen``, bytes on disk) are then
    skipped. A durable store keeps
    everything under ``tmp_path``; if it has a ``close()`` method, the size
    test calls it before measuring the files there.
    """

    durable = True

    def make_checkpointer(self, tmp_path: Path) -> Checkpointer:
        """A new, empty store for one test; subclasses must override it."""
        msg = (
            f"{type(self).__name__} must override make_checkpointer(self, tmp_path) "
            "to return a new, empty checkpointer"
        )
        raise TypeError(msg)

    def reopen(self, tmp_path: Path) -> Checkpointer:
        """Another handle on the store ``make_checkpointer(tmp_path)`` made, as a process opens it.

        By default ``make_checkpointer(tmp_path)`` again, which reaches the
        same store when the store lives at a path under ``tmp_path`` (or
        at one database per test); override it if ``make_checkpointer``
        makes a store of its own at each call.
        """
        return self.make_checkpointer(tmp_path)

    # --- save and load ------------------------------------------------------------

    def test_what_is_saved_loads_back_equal(self, tmp_path: Path) -> None:
        store = self.make_checkpointer(tmp_path)
        saved = copy_run(store, recorded_run([{"x": [1, "two", b"3"]}, {"log": [4]}]), "r")
        for checkpoint in saved:
            assert same(store.load(WORKFLOW, "r", checkpoint.seq), checkpoint)
        assert same(store.latest(WORKFLOW, "r"), saved[-1])

    def test_a_loaded_checkpoint_saved_again_with_other_values_loads_back_with_them(
        self, tmp_path: Path
    ) -> None:
        store = self.make_checkpointer(tmp_path)
        saved = copy_run(store, recorded_run([{"x": [1]}, {"log": [4]}]), "r")
        loaded = store.latest(WORKFLOW, "r")
        assert loaded is not None
        values = {**loaded.values, "x": "edited by hand"}
        again = attrs.evolve(loaded, seq=loaded.seq + 1, label="by-hand", values=values)
        store.save(again)
        for got in (store.latest(WORKFLOW, "r"), store.load(WORKFLOW, "r", len(saved) + 1)):
            assert got is not None
            assert got.values == values, "a loaded checkpoint's changes were stored, not its values"

    def test_load_and_latest_are_none_for_what_is_not_there(self, tmp_path: Path) -> None:
        store = self.make_checkpointer(tmp_path)
        assert store.latest(WORKFLOW, "nope") is None
        assert store.load(WORKFLOW, "nope", 1) is None
        assert store.list(WORKFLOW, "nope") == []
        copy_run(store, recorded_run()[:1], "r")
        assert store.load(WORKFLOW, "r", 0) is None
        assert store.load(WORKFLOW, "r", 2) is None
        assert store.latest("other-wf", "r") is None
        assert store.list("other-wf", "r") == []

    def test_saving_a_seq_the_run_has_is_a_conflict_and_writes_nothing(
        self, tmp_path: Path
    ) -> None:
        store = self.make_checkpointer(tmp_path)
        first, second, third = recorded_run([{"x": 2}, {"x": 3}])
        copy_run(store, [first, second], "r")
        listed = _summaries(store)
        rival = attrs.evolve(second, run_id="r", values={**second.values, "x": 99}, label="rival")
        with raises(ConflictError, r"^run 'r' of workflow 'wf' already has checkpoint 2: "):
            store.save(attrs.evolve(rival, changes=None))
        with raises(ConflictError):
            store.save(attrs.evolve(first, run_id="r"))
        assert same(store.latest(WORKFLOW, "r"), second)
        assert store.list(WORKFLOW, "r") == [first.meta, second.meta]
        assert _summaries(store) == listed  # the run's summary is not the refused one's
        store.save(attrs.evolve(third, run_id="r"))
        assert same(store.latest(WORKFLOW, "r"), third)

    def test_a_seq_gap_is_a_checkpoint_error_not_a_conflict(self, tmp_path: Path) -> None:
        store = self.make_checkpointer(tmp_path)
        first, second = recorded_run()
        with raises(CheckpointError) as caught:
            store.save(attrs.evolve(first, run_id="r", seq=3))
        assert not isinstance(caught.value, ConflictError)
        assert str(caught.value) == (
            "run 'r' of workflow 'wf' has 0 checkpoints; the next must be seq 1, not 3"
        )
        store.save(attrs.evolve(first, run_id="r"))
        listed = _summaries(store)
        with raises(CheckpointError, r"^.* the next must be seq 2, not 5$"):
            store.save(attrs.evolve(second, run_id="r", seq=5))
        assert [m.seq for m in store.list(WORKFLOW, "r")] == [1]
        assert _summaries(store) == listed

    def test_runs_lists_every_workflow_and_run(self, tmp_path: Path) -> None:
        store = self.make_checkpointer(tmp_path)
        assert store.runs() == []
        history = recorded_run()
        for workflow_id, run_id in [("wf", "a"), ("wf", "b"), ("other", "a")]:
            copy_run(store, history, run_id, workflow_id=workflow_id)
        assert sorted(store.runs()) == [("other", "a"), ("wf", "a"), ("wf", "b")]

    def test_the_same_run_id_in_two_workflows_is_two_runs(self, tmp_path: Path) -> None:
        store = self.make_checkpointer(tmp_path)
        copy_run(store, recorded_run([{"x": "one"}])[:1], "r", workflow_id="one")
        copy_run(store, recorded_run([{"x": "two"}]), "r", workflow_id="two")
        one, two = store.latest("one", "r"), store.latest("two", "r")
        assert one is not None
        assert one.seq == 1
        assert one.values["x"] is None
        assert two is not None
        assert two.seq == 2
        assert two.values["x"] == "two"

    def test_list_gives_every_checkpoints_meta_oldest_first(self, tmp_path: Path) -> None:
        store = self.make_checkpointer(tmp_path)
        saved = copy_run(store, recorded_run([{"x": 1}, {"log": [2]}]), "r")
        assert store.list(WORKFLOW, "r") == [c.meta for c in saved]
        assert [m.seq for m in store.list(WORKFLOW, "r")] == [1, 2, 3]
        assert all(type(m) is CheckpointMeta for m in store.list(WORKFLOW, "r"))

    def test_mutating_what_was_saved_or_loaded_does_not_reach_the_store(
        self, tmp_path: Path
    ) -> None:
        store = self.make_checkpointer(tmp_path)
        values: dict[str, Any] = {"x": None, "m": {"k": [1]}, "log": [1]}
        first = recorded_run()[0]
        store.save(attrs.evolve(first, run_id="r", values=values, changes=None))
        values["m"]["k"].append(2)
        values["log"].append(2)
        loaded = store.latest(WORKFLOW, "r")
        assert loaded is not None
        assert loaded.values == {"x": None, "m": {"k": [1]}, "log": [1]}
        # a store may hand out read-only values (the built-in ones do); if it
        # hands out mutable ones, changing them must not reach the store
        with contextlib.suppress(TypeError):
            loaded.values["m"]["k"].append(3)
        with contextlib.suppress(TypeError):
            loaded.values["log"].clear()
        again = store.load(WORKFLOW, "r", 1)
        assert again is not None
        assert again.values == {"x": None, "m": {"k": [1]}, "log": [1]}

    def test_a_pause_record_round_trips(self, tmp_path: Path) -> None:
        store = self.make_checkpointer(tmp_path)
        saved = copy_run(store, recorded_pause(), "r")
        assert type(saved[-1].stage).__name__ == "AtInterrupt"
        for checkpoint in saved:
            assert same(store.load(WORKFLOW, "r", checkpoint.seq), checkpoint)

    def test_an_unencodable_value_is_a_serialization_error_and_writes_nothing(
        self, tmp_path: Path
    ) -> None:
        store = self.make_checkpointer(tmp_path)
        first, second = recorded_run()
        store.save(attrs.evolve(first, run_id="r"))
        bad = attrs.evolve(second, run_id="r", values={**second.values, "x": object()})
        with raises(SerializationError, r"^channel 'x' cannot be stored: "):
            store.save(attrs.evolve(bad, changes=None))
        assert [m.seq for m in store.list(WORKFLOW, "r")] == [1]
        good = attrs.evolve(second, run_id="r")
        store.save(good)
        assert same(store.latest(WORKFLOW, "r"), good)

    def test_awkward_ids_are_kept_apart_and_round_trip(self, tmp_path: Path) -> None:
        store = self.make_checkpointer(tmp_path)
        history = recorded_run()
        pairs = [(w, r) for w in ("wf", "../x", "a/b", _HOSTILE_IDS[6]) for r in _HOSTILE_IDS]
        for i, (workflow_id, run_id) in enumerate(pairs):
            store.save(
                attrs.evolve(
                    history[0],
                    workflow_id=workflow_id,
                    run_id=run_id,
                    values={**history[0].values, "x": i},
                    changes=None,
                )
            )
        assert sorted(store.runs()) == sorted(pairs)
        for i, (workflow_id, run_id) in enumerate(pairs):
            loaded = store.latest(workflow_id, run_id)
            assert loaded is not None, (workflow_id, run_id)
            assert (loaded.workflow_id, loaded.run_id, loaded.values["x"]) == (
                workflow_id,
                run_id,
                i,
            )

    def test_ids_that_a_careless_encoding_would_merge_are_different_runs(
        self, tmp_path: Path
    ) -> None:
        # each pair is two runs a store keyed by a joined, folded, cut, normalised or
        # trimmed id would take for one: the second's first save must not conflict
        store = self.make_checkpointer(tmp_path)
        first = recorded_run()[0]
        pairs = [(ids, i) for i, pair in enumerate(_CLOSE_IDS) for ids in pair]
        for (workflow_id, run_id), i in pairs:
            values = {**first.values, "x": [workflow_id, run_id, i]}
            renamed = attrs.evolve(
                first, workflow_id=workflow_id, run_id=run_id, values=values, changes=None
            )
            store.save(renamed)
        assert sorted(store.runs()) == sorted(ids for ids, _ in pairs)
        for (workflow_id, run_id), i in pairs:
            loaded = store.latest(workflow_id, run_id)
            assert loaded is not None, (workflow_id, run_id)
            assert loaded.values["x"] == [workflow_id, run_id, i], (workflow_id, run_id)
            assert [m.seq for m in store.list(workflow_id, run_id)] == [1]

    def test_a_large_value_that_does_not_compress_round_trips(self, tmp_path: Path) -> None:
        # the SPEC sets no size limit on a checkpoint: the value must be kept whole. A
        # store with a column or record limit (64 KiB is a common one) fails, whether it
        # keeps a part of the frame or refuses the save
        store = self.make_checkpointer(tmp_path)
        first = recorded_run()[0]
        blob = random.Random(0).randbytes(_LARGE_VALUE_BYTES)
        values = {**first.values, "x": blob, "log": [blob[:1000]]}
        saved = attrs.evolve(first, run_id="big", values=values, changes=None)
        store.save(saved)
        assert same(store.latest(WORKFLOW, "big"), saved)
        if self.durable:  # and as written, not as a handle remembers it
            assert same(self.reopen(tmp_path).latest(WORKFLOW, "big"), saved)

    @_one_store
    @given(value=answers())
    def test_values_round_trip_exactly(self, tmp_path: Path, value: Any) -> None:
        store = self._shared(tmp_path)
        first = recorded_run()[0]
        values = {"x": value, "m": {"k": value}, "log": [value]}
        saved = attrs.evolve(first, run_id=fresh_run_id(), values=values, changes=None)
        store.save(saved)
        assert same(store.latest(WORKFLOW, saved.run_id), saved)

    @_one_store
    @given(writes=st.lists(_writes, min_size=1, max_size=12))
    def test_deltas_rebuild_the_same_values_as_snapshots(
        self, tmp_path: Path, writes: list[dict[str, Any]]
    ) -> None:
        store = self._shared(tmp_path)
        history = recorded_run(writes)
        as_deltas = copy_run(store, history, fresh_run_id())
        as_snapshots = copy_run(store, history, fresh_run_id(), deltas=False)
        for delta, snapshot in zip(as_deltas, as_snapshots, strict=True):
            from_deltas = store.load(WORKFLOW, delta.run_id, delta.seq)
            from_snapshots = store.load(WORKFLOW, snapshot.run_id, snapshot.seq)
            assert from_deltas is not None
            assert from_snapshots is not None
            assert from_deltas.values == from_snapshots.values == delta.values

    def test_of_many_threads_saving_the_same_seq_exactly_one_wins(self, tmp_path: Path) -> None:
        store = self.make_checkpointer(tmp_path)
        first, second = recorded_run()
        store.save(attrs.evolve(first, run_id="r"))
        barrier = threading.Barrier(8)
        outcomes: list[str] = []

        def racer(n: int) -> None:
            rival = attrs.evolve(second, run_id="r", values={**second.values, "x": n}, changes=None)
            barrier.wait()
            try:
                store.save(rival)
            except ConflictError:
                outcomes.append("conflict")
            else:
                outcomes.append(f"won:{n}")

        threads = [threading.Thread(target=racer, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        winners = [o for o in outcomes if o.startswith("won:")]
        assert len(winners) == 1, outcomes
        assert outcomes.count("conflict") == 7
        latest = store.latest(WORKFLOW, "r")
        assert latest is not None
        assert latest.seq == 2
        assert latest.values["x"] == int(winners[0][4:])

    # --- deleting, listing, the live lock, size -------------------------------------

    def test_a_deleted_run_is_gone_and_a_new_run_may_take_its_id(self, tmp_path: Path) -> None:
        store = self.make_checkpointer(tmp_path)
        history = recorded_run([{"x": 1}, {"log": [2]}])
        copy_run(store, history, "r")
        kept = copy_run(store, history, "kept")
        store.delete(WORKFLOW, "r")
        assert store.runs() == [(WORKFLOW, "kept")]
        assert store.latest(WORKFLOW, "r") is None
        assert store.load(WORKFLOW, "r", 1) is None
        assert store.list(WORKFLOW, "r") == []
        store.delete(WORKFLOW, "r")  # deleting what is not there does nothing
        store.delete("other-wf", "kept")
        again = copy_run(store, recorded_run([{"x": "again"}]), "r")
        assert [m.seq for m in store.list(WORKFLOW, "r")] == [1, 2]
        assert same(store.latest(WORKFLOW, "r"), again[-1])
        assert same(store.latest(WORKFLOW, "kept"), kept[-1])

    def test_the_live_lock_refuses_a_second_holder_in_another_thread(self, tmp_path: Path) -> None:
        store = self.make_checkpointer(tmp_path)
        copy_run(store, recorded_run(), "r")
        assert store.holder(WORKFLOW, "r") is None
        refused: list[BaseException] = []

        def second() -> None:
            try:
                with store.lock(WORKFLOW, "r"):
                    refused.append(AssertionError("a second holder got the lock"))
            except ConflictError as exc:
                refused.append(exc)

        with store.lock(WORKFLOW, "r"):
            holder = store.holder(WORKFLOW, "r")
            assert holder is not None
            assert holder.pid == os.getpid()
            thread = threading.Thread(target=second)
            thread.start()
            thread.join()
            (error,) = refused
            assert isinstance(error, ConflictError), error
            assert re.match(
                rf"^run 'r' of workflow 'wf' is running: process {os.getpid()} on host ",
                str(error),
            ), error
            with store.lock(WORKFLOW, "other"):  # another run's lock is another lock
                assert store.holder(WORKFLOW, "other") is not None
        assert store.holder(WORKFLOW, "r") is None
        assert store.holder(WORKFLOW, "other") is None
        with store.lock(WORKFLOW, "r"):  # released: anyone may take it again
            assert store.holder(WORKFLOW, "r") is not None

    def test_the_live_lock_refuses_a_second_holder_in_the_same_thread(self, tmp_path: Path) -> None:
        # a step that calls run(run_id) on its own run: the lock is not reentrant
        store = self.make_checkpointer(tmp_path)
        copy_run(store, recorded_run(), "r")
        with store.lock(WORKFLOW, "r"):
            with (
                raises(ConflictError, r"^run 'r' of workflow 'wf' is running: process "),
                store.lock(WORKFLOW, "r"),
            ):
                pass
            assert store.holder(WORKFLOW, "r") is not None  # the refusal let go of nothing
            # nor did it free the lock itself: another thread is still refused
            assert _lock_refused_in_another_thread(store, "r")
        assert store.holder(WORKFLOW, "r") is None

    def test_the_live_lock_is_let_go_when_its_holder_raises(self, tmp_path: Path) -> None:
        # a step that raises ends its driver's call with the exception: the run must not
        # stay "running" after it, nor the exception be swallowed by the lock
        store = self.make_checkpointer(tmp_path)
        copy_run(store, recorded_run(), "r")
        with raises(_Boom), store.lock(WORKFLOW, "r"):
            raise _Boom
        assert store.holder(WORKFLOW, "r") is None
        assert not _lock_refused_in_another_thread(store, "r")
        with store.lock(WORKFLOW, "r"):
            assert store.holder(WORKFLOW, "r") is not None

    def test_a_holder_killed_with_sigkill_releases_the_live_lock(self, tmp_path: Path) -> None:
        if not self.durable:
            raise unittest.SkipTest("an in-memory store's locks die with its one process")
        store = self.make_checkpointer(tmp_path)
        saved = copy_run(store, recorded_run(), "r")
        context = multiprocessing.get_context("fork")
        held = context.Event()
        child = context.Process(target=_hold_until_killed, args=(store, "r", held), daemon=True)
        child.start()
        try:
            assert held.wait(60), "the child never took the lock"
            holder = store.holder(WORKFLOW, "r")
            assert holder is not None
            assert holder.pid == child.pid
            with raises(ConflictError, rf" is running: process {child.pid} on host "):
                store.lock(WORKFLOW, "r").__enter__()
        finally:
            assert child.pid is not None
            os.kill(child.pid, signal.SIGKILL)
            child.join(60)
        assert child.exitcode == -signal.SIGKILL
        # the OS frees a file lock as the process dies; a database server frees a
        # session's lock a moment later, when its server process sees the socket close
        waited = time.monotonic() + 10
        while store.holder(WORKFLOW, "r") is not None and time.monotonic() < waited:
            time.sleep(0.01)
        assert store.holder(WORKFLOW, "r") is None
        with store.lock(WORKFLOW, "r"):
            mine = store.holder(WORKFLOW, "r")
            assert mine is not None
            assert mine.pid == os.getpid()
        assert same(store.latest(WORKFLOW, "r"), saved[-1])

    def test_a_process_killed_with_sigkill_loses_nothing_it_saved(self, tmp_path: Path) -> None:
        if not self.durable:
            raise unittest.SkipTest("an in-memory store's runs die with its one process")
        self.make_checkpointer(tmp_path)  # the store, made here as every test makes it
        run = recorded_run([{"x": [1, "two"]}, {"log": [3]}, {"x": [4]}])
        context = multiprocessing.get_context("fork")
        saved = context.Event()

        def save_then_wait() -> None:  # a new process, its own handle; saved, never synced
            copy_run(self.reopen(tmp_path), run, "r")
            saved.set()
            time.sleep(600)

        child = context.Process(target=save_then_wait, daemon=True)
        child.start()
        try:
            assert saved.wait(60), "the child never saved"
        finally:
            assert child.pid is not None
            os.kill(child.pid, signal.SIGKILL)
            child.join(60)
        store = self.reopen(tmp_path)
        assert [m.seq for m in store.list(WORKFLOW, "r")] == [c.seq for c in run]
        for checkpoint in run:
            loaded = store.load(WORKFLOW, "r", checkpoint.seq)
            assert loaded is not None
            assert same(loaded, attrs.evolve(checkpoint, workflow_id=WORKFLOW, run_id="r"))

    def test_two_handles_see_each_others_runs_and_checkpoints(self, tmp_path: Path) -> None:
        # a worker's handle lists the runs a web handler's handle starts, and both read
        # every checkpoint the other saves: nothing is cached per handle or per process
        if not self.durable:
            raise unittest.SkipTest("an in-memory store has one handle")
        one = self.make_checkpointer(tmp_path)
        run = recorded_run([{"x": 1}, {"log": [2]}, {"x": 3}])
        copy_run(one, run[:2], "r")
        two = self.reopen(tmp_path)
        for store in (one, two):
            assert store.runs() == [(WORKFLOW, "r")]
            assert [m.seq for m in store.list(WORKFLOW, "r")] == [1, 2]
        copy_run(two, run[2:3], "r")
        copy_run(two, run[:1], "s")
        for store in (one, two):
            assert sorted(store.runs()) == [(WORKFLOW, "r"), (WORKFLOW, "s")]
            assert [m.seq for m in store.list(WORKFLOW, "r")] == [1, 2, 3]
            latest = store.latest(WORKFLOW, "r")
            assert same(latest, attrs.evolve(run[2], run_id="r"))
            summaries = _summaries(store)
            if summaries is not None:
                assert sorted((s.run_id, s.seq) for s in summaries) == [("r", 3), ("s", 1)]
        copy_run(one, run[3:], "r")  # and back: the first handle saves after the second
        with raises(ConflictError):  # the second handle knows seq 3 is taken
            two.save(attrs.evolve(run[2], run_id="r"))
        assert [m.seq for m in two.list(WORKFLOW, "r")] == [m.seq for m in one.list(WORKFLOW, "r")]

    def test_summaries_filter_runs_by_workflow_and_status(self, tmp_path: Path) -> None:
        store = self.make_checkpointer(tmp_path)
        summaries: Callable[..., builtins.list[RunSummary]] | None = getattr(
            store, "summaries", None
        )
        if summaries is None:
            raise unittest.SkipTest(f"{type(store).__name__} keeps no run summaries")
        paused, done = recorded_pause(), recorded_run([{"x": 1}])
        copy_run(store, paused, "p")
        copy_run(store, paused, "p", workflow_id="other")
        copy_run(store, done[:1], "d")

        def ids(**filters: str) -> builtins.list[tuple[str, str]]:
            return sorted((s.workflow_id, s.run_id) for s in summaries(**filters))

        assert ids() == [("other", "p"), ("wf", "d"), ("wf", "p")]
        assert ids(status="paused") == [("other", "p"), ("wf", "p")]
        assert ids(status="queued") == [("wf", "d")]  # started, not finished
        store.save(attrs.evolve(done[1], run_id="d"))
        assert ids(status="queued") == []
        assert ids(status="done") == [("wf", "d")]
        assert ids(workflow_id="wf") == [("wf", "d"), ("wf", "p")]
        assert ids(workflow_id="wf", status="paused") == [("wf", "p")]
        assert ids(workflow_id="other", status="done") == []
        assert ids(workflow_id="nope") == []
        (summary,) = summaries(workflow_id="wf", status="paused")
        assert (summary.seq, summary.updated_ms) == (len(paused), paused[-1].timestamp_ms)
        assert summary.deadline_ms is None
        store.delete(WORKFLOW, "p")
        assert ids(status="paused") == [("other", "p")]

    def test_what_a_run_stores_grows_with_its_changes_not_its_state(self, tmp_path: Path) -> None:
        if not self.durable:
            raise unittest.SkipTest("an in-memory store may keep whole values")
        store = self.make_checkpointer(tmp_path)
        # 200 layers, each appending 1 KB to a log: 200 KB of changes, a 200 KB
        # final state; copies of the state at each checkpoint would be 20 MB
        history = recorded_run([{"log": [f"{i:04d}" * 256]} for i in range(200)])
        copy_run(store, history, "r")
        assert same(store.latest(WORKFLOW, "r"), history[-1])
        # closed first, if it can be: the checkpointer, or the bytes-level store a
        # StoreCheckpointer wraps (a SQLite WAL of a few MB is folded in at close)
        for owner in (store, getattr(store, "store", None)):
            close = getattr(owner, "close", None)
            if callable(close):
                close()
                break
        size = _disk_bytes(tmp_path)
        assert size < 400_000, f"{size} bytes on disk for 200 KB of changes"

    # --- a Runner on the store ----------------------------------------------------

    def test_state_history_and_fork_behave_the_same_on_every_store(self, tmp_path: Path) -> None:
        runner = Runner(_inspect_graph(), self.make_checkpointer(tmp_path))
        paused = runner.run("r", {"log": ["in"]})
        assert isinstance(paused, Paused)
        info = runner.state("r")
        assert info.status is Status.PAUSED
        assert info.values["log"] == ["in"]
        assert [i.id for i in info.interrupts] == [paused.interrupts[0].id]
        done = runner.resume("r", Resume("yes"))
        assert done == Done({"log": ["in", "yes"], "count": 2, "seen": {"2": True}}, 2)
        labels = [m.label for m in runner.history("r")]
        assert labels == ["input", "interrupt:ask", "resume", "layer:1", "layer:2"]
        assert [m.seq for m in runner.history("r")] == [1, 2, 3, 4, 5]
        fork_id = runner.fork("r", 2, {"log": ["edited"]})
        assert runner.history(fork_id)[0].label == "fork-of:r@2"
        assert runner.state("r").values == done.state  # the source is untouched
        forked = runner.resume(fork_id, Resume("no"))
        assert isinstance(forked, Done)
        assert forked.state["log"] == ["in", "no", "edited"]

    def test_state_and_history_of_an_unknown_run_are_resume_errors(self, tmp_path: Path) -> None:
        runner = Runner(_inspect_graph(), self.make_checkpointer(tmp_path))
        with raises(ResumeError, r"^no run 'ghost' of workflow 'inspect' in "):
            runner.state("ghost")
        with raises(ResumeError, r"^no run 'ghost' "):
            runner.history("ghost")
        runner.run("r", {})
        with raises(ResumeError, r"^run 'r' has no checkpoint seq 9; "):
            runner.fork("r", 9)

    # --- helpers --------------------------------------------------------------------

    def _shared(self, tmp_path: Path) -> Checkpointer:
        """One store for every example of a hypothesis test (they use fresh run ids)."""
        stores: dict[Path, Checkpointer] = self.__dict__.setdefault("_stores", {})
        if tmp_path not in stores:
            stores[tmp_path] = self.make_checkpointer(tmp_path)
        return stores[tmp_path]
