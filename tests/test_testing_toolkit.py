"""pausegraph.testing itself: its strategies, driver, properties, machine and replay check.

The properties and the machine are only worth something if they can fail, so
most tests here plant a bug (in a step, a store or a model) and check that
the toolkit reports it.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from collections.abc import Generator, Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import run_state_machine_as_test

from pausegraph import (
    Append,
    Checkpoint,
    Effect,
    Graph,
    Interrupt,
    LastWriteWins,
    MemoryCheckpointer,
    MergeMap,
    NondeterminismError,
    Paused,
    Reducer,
    Resume,
    Runner,
)
from pausegraph._values import normalize
from pausegraph.testing import (
    RunTrace,
    Schedule,
    WorkflowMachine,
    answers,
    assert_effects_run_once,
    assert_path_independent,
    assert_paused_runs_replay,
    assert_store_independent,
    drive,
    graphs,
    memory_store,
    schedules,
)
from pausegraph.testing._replay import find_replay_failures
from pausegraph.testing.generated import (
    Ask,
    Call,
    ChannelPlan,
    Fan,
    GeneratedGraph,
    StepPlan,
    When,
    WorkflowPlan,
    digest,
    plans,
)

# --- a small hand-written workflow ------------------------------------------------


def ask_amount(state: Mapping[str, Any]) -> Generator[Any, Any, dict[str, Any]]:
    amount = yield Interrupt({"question": "amount?"})
    return {"amount": amount}


def ask_note(state: Mapping[str, Any]) -> Generator[Any, Any, dict[str, Any]]:
    note = yield Interrupt({"question": "note?"})
    return {"notes": note}


def total(state: Mapping[str, Any]) -> dict[str, Any]:
    return {"total": (state["amount"] or 0) * 2}


def expense_graph(name: str = "expense") -> Graph:
    channels = {"amount": LastWriteWins(), "notes": Append(), "total": LastWriteWins()}
    return (
        Graph(name, channels)
        .step("amount", ask_amount)
        .step("note", ask_note)
        .step("total", total)
        .edge("amount", "total")
        .edge("note", "total")
    )


def answer_expense(payload: Any) -> Any:
    return 21 if payload["question"] == "amount?" else "lunch"


# --- the module ---------------------------------------------------------------------


def test_import_pausegraph_never_imports_hypothesis() -> None:
    code = "import pausegraph, sys; assert 'hypothesis' not in sys.modules, 'hypothesis imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@given(graph=graphs())
def test_generated_graphs_declare_every_built_in_reducer_and_a_custom_one(
    graph: GeneratedGraph,
) -> None:
    kinds = {type(reducer) for reducer in graph.channels.values()}
    assert kinds == {LastWriteWins, MergeMap, Append, Reducer}
    assert graph.layers()  # valid: no cycle, not empty


@given(plan=plans(max_steps=4))
def test_a_plan_builds_the_same_workflow_every_time(plan: Any) -> None:
    first = drive(GeneratedGraph(plan), answer=repr)
    second = drive(GeneratedGraph(plan), answer=repr)
    assert first == second


@given(value=answers())
def test_answers_are_msgpack_native_and_arrive_unchanged(value: Any) -> None:
    assert normalize(value, lambda: "an answer") == value


@given(schedule=schedules(crashes=False))
def test_schedules_without_crashes_never_kill_the_process(schedule: Schedule) -> None:
    assert schedule.crashes == frozenset()


# --- drive ------------------------------------------------------------------------------


def test_drive_answers_every_interrupt_with_a_function_of_its_payload() -> None:
    done = drive(expense_graph(), answer=answer_expense)
    assert done.state == {"amount": 21, "notes": ["lunch"], "total": 42}
    assert done.super_step == 2


calls: list[str] = []


def counted(state: Mapping[str, Any]) -> Generator[Any, Any, dict[str, Any]]:
    calls.append("called")
    answer = yield Interrupt("?")
    return {"x": answer}


@pytest.mark.parametrize(("cold", "expected_calls"), [(False, 1), (True, 2)])
def test_a_cold_drive_calls_a_suspended_step_again_on_a_new_runner(
    cold: bool, expected_calls: int
) -> None:
    calls.clear()
    graph = Graph("counted", {"x": LastWriteWins()}).step("s", counted)
    assert drive(graph, answer=str, cold=cold).state == {"x": "?"}
    assert len(calls) == expected_calls


@pytest.mark.parametrize("save", range(1, 8))
def test_a_death_before_any_save_is_recovered_to_the_same_end(save: int) -> None:
    assert drive(expense_graph(), answer=answer_expense, crash_before_save=save) == drive(
        expense_graph(), answer=answer_expense
    )


def test_drive_gives_up_on_a_run_that_never_ends() -> None:
    def forever(state: Mapping[str, Any]) -> Generator[Any, Any, None]:
        while True:
            yield Interrupt("again?")

    graph = Graph("forever", {}).step("forever", forever)
    with pytest.raises(
        AssertionError, match=r"^run 'run' of 'forever' did not finish after 5 commands$"
    ):
        drive(graph, max_commands=5)


# --- the properties can fail ----------------------------------------------------------

counter = itertools.count()


def reads_a_global(state: Mapping[str, Any]) -> Generator[Any, Any, dict[str, Any]]:
    seen = next(counter)  # a bug: not a function of the state and the answers
    answer = yield Interrupt("?")
    return {"x": [seen, answer]}


def test_path_property_reports_a_step_that_is_not_a_function_of_state_and_answers() -> None:
    graph = Graph("global", {"x": LastWriteWins()}).step("s", reads_a_global)
    with pytest.raises(
        AssertionError,
        match=r"^step 's' is not deterministic: run twice the same way \(same input, same "
        r"answers, every resume hot\) it wrote \{'x': \[\d+, '\?'\]\} and then "
        r"\{'x': \[\d+, '\?'\]\} from the same state\. A step must be a function of",
    ) as info:
        assert_path_independent(graph, schedule=Schedule(cold=(True,)), answer=str)
    assert "yield Effect(fn, ...)" in str(info.value)
    assert "The final states differ:\n  channel 'x'" in str(info.value)
    assert "schedule of resumes" not in str(info.value)


sent: list[str] = []


def send_mail(to: str) -> str:
    sent.append(to)
    return "sent"


def mails_outside_an_effect(state: Mapping[str, Any]) -> Generator[Any, Any, dict[str, Any]]:
    send_mail("boss")  # a bug: runs again on every replay
    receipt = yield Effect(send_mail, "client")  # journalled: runs once
    ok = yield Interrupt("send more?")
    return {"x": [receipt, ok]}


def test_effect_property_reports_a_side_effect_outside_an_effect() -> None:
    sent.clear()
    graph = Graph("mail", {"x": LastWriteWins()}).step("s", mails_outside_an_effect)
    with pytest.raises(
        AssertionError, match=r"^effects did not run exactly once:\n  'boss' ran again"
    ) as info:
        assert_effects_run_once(graph, schedule=Schedule(cold=(True,)), log=sent)
    assert "'client'" not in str(info.value)


def test_effect_property_accepts_a_rerun_only_when_the_process_died_before_a_save() -> None:
    def one_effect(state: Mapping[str, Any]) -> Generator[Any, Any, dict[str, Any]]:
        receipt = yield Effect(send_mail, "client")
        return {"x": receipt}

    sent.clear()
    graph = Graph("mail", {"x": LastWriteWins()}).step("s", one_effect)
    # save 1 is the input, save 2 the layer: dying before it loses the effect's result
    assert_effects_run_once(graph, schedule=Schedule(crashes=frozenset({2})), log=sent)
    assert sent == ["client", "client"]


def test_effect_property_reports_an_expected_effect_that_never_ran() -> None:
    channels = (ChannelPlan("last0", "last"),)
    plan = WorkflowPlan("g", channels, (StepPlan("s0", (Call("effect1"),)),))
    expected = [("s0", "effect1"), ("nowhere", "effect9")]
    with pytest.raises(
        AssertionError,
        match=r"^effects did not run exactly once:\n  never ran: \('nowhere', 'effect9'\)$",
    ):
        assert_effects_run_once(GeneratedGraph(plan), expected=expected)


class ForgetfulCheckpointer(MemoryCheckpointer):
    """A planted store bug: it loses the notes of every checkpoint it returns."""

    def latest(self, workflow_id: str, run_id: str) -> Checkpoint | None:
        checkpoint = super().latest(workflow_id, run_id)
        if checkpoint is not None:
            checkpoint.values["notes"] = []
        return checkpoint


def test_store_property_reports_a_store_that_loses_writes() -> None:
    forgetful = ForgetfulCheckpointer()
    with pytest.raises(
        AssertionError,
        match=r"^the final state depends on the checkpointer \(factory 0 vs factory 1\):\n"
        r"  channel 'notes'",
    ):
        assert_store_independent(
            expense_graph(),
            checkpointer_factories=[memory_store(), lambda: forgetful],
            answer=answer_expense,
            input={"notes": ["start"]},
        )


# --- the replay check ------------------------------------------------------------------


def paused_store(graph: Graph, runs: int) -> MemoryCheckpointer:
    store = MemoryCheckpointer()
    runner = Runner(graph, store)
    for i in range(runs):
        assert isinstance(runner.run(f"r{i}"), Paused)
    return store


def test_replay_check_passes_when_the_code_did_not_change_and_saves_nothing() -> None:
    store = paused_store(expense_graph(), 2)
    before = {run: store.list(*run) for run in store.runs()}
    assert_paused_runs_replay(expense_graph(), store)
    assert {run: store.list(*run) for run in store.runs()} == before


def test_replay_check_lists_every_suspended_step_that_no_longer_replays() -> None:
    store = paused_store(expense_graph(), 2)

    def ask_amount_v2(state: Mapping[str, Any]) -> Generator[Any, Any, dict[str, Any]]:
        amount = yield Interrupt({"question": "how much?"})  # a changed payload
        return {"amount": amount}

    channels = {"amount": LastWriteWins(), "notes": Append(), "total": LastWriteWins()}
    deployed = (
        Graph("expense", channels)
        .step("amount", ask_amount_v2)
        .step("note", ask_note)
        .step("total", total)
        .edge("amount", "total")
        .edge("note", "total")
    )
    failures = find_replay_failures(deployed, store)
    assert [(f.run_id, f.step_id) for f in failures] == [("r0", "amount"), ("r1", "amount")]
    assert all(f.error.startswith("NondeterminismError: step 'amount' yielded") for f in failures)
    with pytest.raises(
        AssertionError,
        match=r"^2 suspended step\(s\) of 'expense' no longer replay:\n"
        r"  run 'r0', step 'amount': NondeterminismError",
    ):
        assert_paused_runs_replay(deployed, store)


def test_replay_check_reports_a_changed_graph_and_skips_other_workflows() -> None:
    store = paused_store(expense_graph(), 1)
    Runner(expense_graph("other"), store).run("elsewhere")
    changed = expense_graph().step("extra", total)
    assert [str(f) for f in find_replay_failures(changed, store)] == [
        "run 'r0': recorded with a different graph structure: steps added: 'extra'"
    ]


def test_replay_check_never_calls_an_effect_past_the_journal() -> None:
    def charge_after(state: Mapping[str, Any]) -> Generator[Any, Any, dict[str, Any]]:
        ok = yield Interrupt("charge?")
        receipt = yield Effect(send_mail, "charged")
        return {"x": [ok, receipt]}

    sent.clear()
    graph = Graph("charge", {"x": LastWriteWins()}).step("s", charge_after)
    store = MemoryCheckpointer()
    runner = Runner(graph, store)
    runner.run("r")
    assert_paused_runs_replay(graph, store)
    assert sent == []


class Died(BaseException):
    """A process death, simulated by a store that dies when asked to save seq 4."""


class DiesAtSeq4(MemoryCheckpointer):
    def save(self, checkpoint: Checkpoint) -> None:
        if checkpoint.seq == 4:
            raise Died
        super().save(checkpoint)


def test_replay_check_replays_the_recorded_answers_of_a_run_that_died_mid_resume() -> None:
    graph = expense_graph()
    store = DiesAtSeq4()
    runner = Runner(graph, store)
    paused = runner.run("r")
    assert isinstance(paused, Paused)
    answers = {i.id: answer_expense(i.payload) for i in paused.interrupts}
    with pytest.raises(Died):  # the resume claim (seq 3) was saved; the layer (seq 4) not
        runner.resume("r", Resume(answers=answers))
    assert [m.label for m in store.list("expense", "r")][-1] == "resume"
    assert find_replay_failures(graph, store) == []
    changed = expense_graph().step("extra", total)
    assert [f.step_id for f in find_replay_failures(changed, store)] == [None]


# --- WorkflowMachine ------------------------------------------------------------------------

MACHINE_SETTINGS = settings(max_examples=25, stateful_step_count=8)


def record_total(state: Mapping[str, Any]) -> dict[str, Any]:
    doubled = (state["amount"] or 0) * 2
    return {"total": doubled, "log": doubled}


class ApprovalMachine(WorkflowMachine):
    graph = (
        Graph("approval", {"amount": LastWriteWins(), "total": LastWriteWins(), "log": Append()})
        .step("amount", ask_amount)
        .step("total", record_total)
        .edge("amount", "total")
    )
    answer_values = st.integers(0, 9)
    goto_targets = ("amount",)  # Goto("total") before an answer would double None

    def expected_values(self, trace: RunTrace) -> Mapping[str, Any] | None:
        # each answer finishes the first layer, so "total" runs once per answer
        amounts = [event.value for event in trace.answers()]
        if not amounts:
            return None
        doubled = [2 * amount for amount in amounts]
        return {"amount": amounts[-1], "total": doubled[-1], "log": doubled}


def test_machine_passes_a_correct_workflow_against_its_model() -> None:
    run_state_machine_as_test(ApprovalMachine, settings=MACHINE_SETTINGS)


payloads = itertools.count()


def asks_with_a_counter(state: Mapping[str, Any]) -> Generator[Any, Any, dict[str, Any]]:
    answer = yield Interrupt({"ticket": next(payloads)})  # a bug: differs on replay
    return {"x": answer}


class CounterMachine(WorkflowMachine):
    graph = Graph("counter", {"x": LastWriteWins()}).step("ask", asks_with_a_counter)


def test_machine_finds_a_payload_that_changes_on_replay_and_shrinks_to_a_reopen() -> None:
    with pytest.raises(
        NondeterminismError, match=r"^step 'ask' yielded Interrupt\(\{'ticket'"
    ) as info:
        run_state_machine_as_test(CounterMachine, settings=MACHINE_SETTINGS)
    steps = "\n".join(getattr(info.value, "__notes__", []))
    assert "state.start()" in steps
    # a hot resume cannot see the bug: only a replay does, on a new Runner (a restart
    # or a crash) or in a fork (no generator of it is held); hypothesis shrinks to any
    assert any(f"state.{how}(" in steps for how in ("reopen", "crash", "fork"))


class WrongModelMachine(ApprovalMachine):
    def expected_values(self, trace: RunTrace) -> Mapping[str, Any] | None:
        expected = super().expected_values(trace)
        return None if expected is None else {**expected, "total": expected["amount"] * 3}


def test_machine_reports_a_run_that_finished_unlike_the_model() -> None:
    # the failing example may be a fork of run0 (``run0.fork1.<hex>``), as hypothesis finds it
    finished = r"^run 'run0(\.fork\d+\.[0-9a-f]+)*' finished unlike the model"
    with pytest.raises(AssertionError, match=finished) as info:
        run_state_machine_as_test(WrongModelMachine, settings=MACHINE_SETTINGS)
    assert "channel 'total'" in str(info.value)


def test_a_conditional_plan_expects_the_effects_of_the_steps_that_run() -> None:
    channels = (ChannelPlan("last0", "last"),)
    steps = (StepPlan("s0", (Ask("ask1"),), ("last0",)), StepPlan("s1", (Call("effect1"),)))
    odd = When("last0", even=False)
    plan = WorkflowPlan("g", channels, steps, (("s0", "s1"),), (("s0", "s1", odd),))
    with pytest.raises(ValueError, match="answer="):
        plan.expected_effects()
    runs = plan.expected_effects(lambda payload: 1)
    skips = plan.expected_effects(lambda payload: 2)
    assert {digest({"by": "s0", "acc": [a]}) % 2 for a in (1, 2)} == {0, 1}
    assert sorted([runs, skips]) == [[], [("s1", "effect1")]]
    assert "last0_is_odd" in GeneratedGraph(plan).to_mermaid()


def test_a_fan_runs_its_branches_with_all_and_keeps_their_results() -> None:
    channels = (ChannelPlan("last0", "last"),)
    fan = Fan(((Ask("ask1"), Call("effect2")), (Call("effect3"),), (Ask("ask4"),)))
    plan = WorkflowPlan("g", channels, (StepPlan("s0", (fan,), ("last0",)),))
    assert plan.has_fan()
    assert plan.interrupt_count() == 2
    assert plan.expected_effects() == [("s0", "effect2"), ("s0", "effect3")]
    paused = Runner(GeneratedGraph(plan)).run("r")
    assert isinstance(paused, Paused)
    assert [i.payload["ask"] for i in paused.interrupts] == ["ask1", "ask4"]
    assert drive(GeneratedGraph(plan), answer=repr) == Runner(
        GeneratedGraph(plan, answer=repr)
    ).run("r")
