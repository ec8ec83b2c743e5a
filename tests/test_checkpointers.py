"""The checkpointer conformance suite: what every store must do.

``TestCheckpointerConformance`` runs against the ``checkpointer`` fixture,
parametrized here over ``MemoryCheckpointer()`` and
``FileCheckpointer(tmp_path)``. To check your own store, subclass it in your
tests and override the fixture::

    class TestMyStore(TestCheckpointerConformance):
        @pytest.fixture
        def checkpointer(self, tmp_path):
            return MyStore(tmp_path)

Each hypothesis example uses a run id of its own, so one store serves them all.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import threading
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import values

from pausegraph import (
    Append,
    Checkpoint,
    Checkpointer,
    CheckpointError,
    CheckpointMeta,
    ConflictError,
    Done,
    FileCheckpointer,
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
)
from pausegraph._channels import Change, Op
from pausegraph._records import (
    Asked,
    AtInterrupt,
    Progress,
    Raised,
    Returned,
    Stage,
    Start,
    Structure,
)

STRUCTURE = Structure(("a", "b"), (("a", "b"),))
_ids = itertools.count()


def fresh_run_id() -> str:
    return f"run-{next(_ids)}"


def make_checkpoint(
    run_id: str,
    seq: int,
    values: dict[str, Any],
    changes: tuple[Change, ...] | None = (),
    *,
    workflow_id: str = "wf",
    stage: Stage | None = None,
    label: str = "",
) -> Checkpoint:
    return Checkpoint(
        workflow_id=workflow_id,
        run_id=run_id,
        seq=seq,
        super_step=seq - 1,
        label=label or f"layer:{seq - 1}",
        timestamp_ms=1_700_000_000_000 + seq,
        values=values,
        stage=Start(seq - 1) if stage is None else stage,
        structure=STRUCTURE,
        changes=changes,
        input={"x": 1} if seq == 1 else None,
    )


# one super-step's change to one of three channels: x (set), m (merge), log (extend)
changes = st.one_of(
    st.tuples(st.just("x"), st.just(Op.SET), values),
    st.tuples(
        st.just("m"), st.just(Op.MERGE), st.dictionaries(st.text(max_size=4), values, max_size=3)
    ),
    st.tuples(st.just("log"), st.just(Op.EXTEND), st.lists(values, max_size=3)),
)


def apply(model: dict[str, Any], channel: str, op: Op, value: Any) -> None:
    if op is Op.SET:
        model[channel] = value
    elif op is Op.MERGE:
        model[channel].update(value)
    else:
        model[channel].extend(value)


def save_history(
    store: Checkpointer, run_id: str, steps: list[tuple[str, Op, Any]], *, as_deltas: bool = True
) -> list[dict[str, Any]]:
    """Save a run whose super-steps make ``steps``; return the values after each seq."""
    model: dict[str, Any] = {"x": None, "m": {}, "log": []}
    expected = [copy.deepcopy(model)]
    store.save(make_checkpoint(run_id, 1, copy.deepcopy(model)))
    for seq, (channel, op, value) in enumerate(steps, start=2):
        apply(model, channel, op, copy.deepcopy(value))
        delta = (Change(channel, op, copy.deepcopy(value)),) if as_deltas else None
        store.save(make_checkpoint(run_id, seq, copy.deepcopy(model), delta))
        expected.append(copy.deepcopy(model))
    return expected


def same(loaded: Checkpoint | None, saved: Checkpoint) -> bool:
    """Equal as checkpoints; ``changes`` is only what a save was told (a snapshot drops it)."""
    assert loaded is not None
    return attrs.evolve(loaded, changes=None) == attrs.evolve(saved, changes=None)


def a_pause() -> Stage:
    return AtInterrupt(
        Progress(
            layer=0,
            epoch=1,
            finished={"b": {"x": [1, b"\x00"]}},
            journals={
                "a": (
                    Returned("mod.fn", {"r": 1}),
                    Raised("mod.bad", "ValueError: no"),
                    Asked("1.0.2", {"q": "ok?"}),
                )
            },
            answers={"1.0.0": [1]},
            edits=({"x": 5},),
        )
    )


@pytest.fixture(params=["memory", "file"])
def checkpointer(request: pytest.FixtureRequest, tmp_path: Any) -> Checkpointer:
    if request.param == "memory":
        return MemoryCheckpointer()
    return FileCheckpointer(tmp_path / "store")


one_store = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


class TestCheckpointerConformance:
    """What the ``Checkpointer`` protocol promises, for any store."""

    def test_what_is_saved_loads_back_equal(self, checkpointer: Checkpointer) -> None:
        saved = make_checkpoint("r", 1, {"x": [1, "two", b"3"], "m": {}, "log": []})
        checkpointer.save(saved)
        assert same(checkpointer.load("wf", "r", 1), saved)
        assert same(checkpointer.latest("wf", "r"), saved)

    def test_load_and_latest_are_none_for_what_is_not_there(
        self, checkpointer: Checkpointer
    ) -> None:
        assert checkpointer.latest("wf", "nope") is None
        assert checkpointer.load("wf", "nope", 1) is None
        assert checkpointer.list("wf", "nope") == []
        checkpointer.save(make_checkpoint("r", 1, {"x": 1}))
        assert checkpointer.load("wf", "r", 0) is None
        assert checkpointer.load("wf", "r", 2) is None
        assert checkpointer.latest("other-wf", "r") is None

    def test_saving_a_seq_the_run_has_is_a_conflict_and_writes_nothing(
        self, checkpointer: Checkpointer
    ) -> None:
        first = make_checkpoint("r", 1, {"x": 1})
        second = make_checkpoint("r", 2, {"x": 2}, (Change("x", Op.SET, 2),))
        checkpointer.save(first)
        checkpointer.save(second)
        rival = make_checkpoint("r", 2, {"x": 99}, (Change("x", Op.SET, 99),), label="rival")
        with pytest.raises(
            ConflictError, match=r"^run 'r' of workflow 'wf' already has checkpoint 2: "
        ):
            checkpointer.save(rival)
        with pytest.raises(ConflictError):
            checkpointer.save(make_checkpoint("r", 1, {"x": 7}))
        assert same(checkpointer.latest("wf", "r"), second)
        assert checkpointer.list("wf", "r") == [first.meta, second.meta]
        third = make_checkpoint("r", 3, {"x": 3}, (Change("x", Op.SET, 3),))
        checkpointer.save(third)
        assert same(checkpointer.latest("wf", "r"), third)

    def test_a_seq_gap_is_a_checkpoint_error_not_a_conflict(
        self, checkpointer: Checkpointer
    ) -> None:
        with pytest.raises(CheckpointError) as caught:
            checkpointer.save(make_checkpoint("r", 3, {"x": 1}))
        assert not isinstance(caught.value, ConflictError)
        assert str(caught.value) == (
            "run 'r' of workflow 'wf' has 0 checkpoints; the next must be seq 1, not 3"
        )
        checkpointer.save(make_checkpoint("r", 1, {"x": 1}))
        with pytest.raises(CheckpointError, match=r"^.* the next must be seq 2, not 5$"):
            checkpointer.save(make_checkpoint("r", 5, {"x": 1}, ()))
        assert [m.seq for m in checkpointer.list("wf", "r")] == [1]

    def test_runs_lists_every_workflow_and_run(self, checkpointer: Checkpointer) -> None:
        assert checkpointer.runs() == []
        for workflow_id, run_id in [("wf", "a"), ("wf", "b"), ("other", "a")]:
            checkpointer.save(make_checkpoint(run_id, 1, {"x": run_id}, workflow_id=workflow_id))
        assert sorted(checkpointer.runs()) == [("other", "a"), ("wf", "a"), ("wf", "b")]

    def test_the_same_run_id_in_two_workflows_is_two_runs(self, checkpointer: Checkpointer) -> None:
        checkpointer.save(make_checkpoint("r", 1, {"x": "one"}, workflow_id="one"))
        checkpointer.save(make_checkpoint("r", 1, {"x": "two"}, workflow_id="two"))
        checkpointer.save(make_checkpoint("r", 2, {"x": 2}, (), workflow_id="two"))
        one, two = checkpointer.latest("one", "r"), checkpointer.latest("two", "r")
        assert one is not None
        assert one.values == {"x": "one"}
        assert one.seq == 1
        assert two is not None
        assert two.seq == 2

    def test_list_gives_every_checkpoints_meta_oldest_first(
        self, checkpointer: Checkpointer
    ) -> None:
        save_history(checkpointer, "r", [("x", Op.SET, 1), ("log", Op.EXTEND, [2])])
        assert checkpointer.list("wf", "r") == [
            CheckpointMeta(1, 0, "layer:0", 1_700_000_000_001),
            CheckpointMeta(2, 1, "layer:1", 1_700_000_000_002),
            CheckpointMeta(3, 2, "layer:2", 1_700_000_000_003),
        ]

    def test_mutating_what_was_saved_or_loaded_does_not_reach_the_store(
        self, checkpointer: Checkpointer
    ) -> None:
        values: dict[str, Any] = {"x": None, "m": {"k": [1]}, "log": [1]}
        checkpointer.save(make_checkpoint("r", 1, values))
        values["m"]["k"].append(2)
        values["log"].append(2)
        loaded = checkpointer.latest("wf", "r")
        assert loaded is not None
        assert loaded.values == {"x": None, "m": {"k": [1]}, "log": [1]}
        # a store may hand out read-only values (the built-in ones do); if it
        # hands out mutable ones, changing them must not reach the store
        with contextlib.suppress(TypeError):
            loaded.values["m"]["k"].append(3)
        with contextlib.suppress(TypeError):
            loaded.values["log"].clear()
        again = checkpointer.load("wf", "r", 1)
        assert again is not None
        assert again.values == {"x": None, "m": {"k": [1]}, "log": [1]}

    def test_a_pause_record_round_trips(self, checkpointer: Checkpointer) -> None:
        checkpointer.save(make_checkpoint("r", 1, {"x": 1}))
        paused = make_checkpoint("r", 2, {"x": 1}, (), stage=a_pause(), label="interrupt:a")
        checkpointer.save(paused)
        assert same(checkpointer.latest("wf", "r"), paused)

    def test_an_unencodable_value_is_a_serialization_error_and_writes_nothing(
        self, checkpointer: Checkpointer
    ) -> None:
        checkpointer.save(make_checkpoint("r", 1, {"x": 1}))
        bad = make_checkpoint("r", 2, {"x": object()}, (Change("x", Op.SET, object()),))
        with pytest.raises(SerializationError, match=r"^channel 'x' cannot be stored: "):
            checkpointer.save(bad)
        assert [m.seq for m in checkpointer.list("wf", "r")] == [1]
        good = make_checkpoint("r", 2, {"x": 2}, (Change("x", Op.SET, 2),))
        checkpointer.save(good)
        assert same(checkpointer.latest("wf", "r"), good)

    @one_store
    @given(value=values)
    def test_values_round_trip_exactly(self, checkpointer: Checkpointer, value: Any) -> None:
        run_id = fresh_run_id()
        saved = make_checkpoint(run_id, 1, {"x": value, "m": {"k": value}, "log": [value]})
        checkpointer.save(saved)
        assert same(checkpointer.latest("wf", run_id), saved)

    @one_store
    @given(steps=st.lists(changes, max_size=12))
    def test_deltas_rebuild_the_same_values_as_snapshots(
        self, checkpointer: Checkpointer, steps: list[tuple[str, Op, Any]]
    ) -> None:
        as_deltas, as_snapshots = fresh_run_id(), fresh_run_id()
        expected = save_history(checkpointer, as_deltas, steps)
        assert save_history(checkpointer, as_snapshots, steps, as_deltas=False) == expected
        for seq, values_then in enumerate(expected, start=1):
            from_deltas = checkpointer.load("wf", as_deltas, seq)
            from_snapshots = checkpointer.load("wf", as_snapshots, seq)
            assert from_deltas is not None
            assert from_snapshots is not None
            assert from_deltas.values == from_snapshots.values == values_then

    def test_of_many_threads_saving_the_same_seq_exactly_one_wins(
        self, checkpointer: Checkpointer
    ) -> None:
        checkpointer.save(make_checkpoint("r", 1, {"x": 0}))
        barrier = threading.Barrier(8)
        outcomes: list[str] = []

        def racer(n: int) -> None:
            barrier.wait()
            try:
                checkpointer.save(make_checkpoint("r", 2, {"x": n}, (Change("x", Op.SET, n),)))
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
        assert len(winners) == 1
        assert outcomes.count("conflict") == 7
        latest = checkpointer.latest("wf", "r")
        assert latest is not None
        assert latest.seq == 2
        assert latest.values == {"x": int(winners[0][4:])}


# --- the Runner's inspection and time travel, on every store ----------------


def ask(state: Any) -> Any:
    answer = yield Interrupt({"n": len(state["log"])})
    return {"log": [answer]}


def tally(state: Any) -> Any:
    return {"count": len(state["log"]), "seen": {str(len(state["log"])): True}}


GRAPH = (
    Graph("inspect", {"log": Append(), "count": LastWriteWins(), "seen": MergeMap()})
    .step("ask", ask)
    .step("tally", tally)
    .edge("ask", "tally")
)


class TestRunnerOnEveryStore:
    def test_state_history_and_fork_behave_the_same_on_every_store(
        self, checkpointer: Checkpointer
    ) -> None:
        runner = Runner(GRAPH, checkpointer)
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

    def test_state_and_history_of_an_unknown_run_are_resume_errors(
        self, checkpointer: Checkpointer
    ) -> None:
        runner = Runner(GRAPH, checkpointer)
        with pytest.raises(ResumeError, match=r"^no run 'ghost' of workflow 'inspect' in "):
            runner.state("ghost")
        with pytest.raises(ResumeError, match=r"^no run 'ghost' "):
            runner.history("ghost")
        runner.run("r", {})
        with pytest.raises(ResumeError, match=r"^run 'r' has no checkpoint seq 9; "):
            runner.fork("r", 9)
