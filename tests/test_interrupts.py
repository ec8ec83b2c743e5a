"""Interrupts: pausing, siblings, ids, answers, hot and cold resumes."""

from __future__ import annotations

import re

import pytest

from pausegraph import (
    Append,
    ConflictError,
    DynamicInterrupt,
    Effect,
    Goto,
    Graph,
    Interrupt,
    LastWriteWins,
    MemoryCheckpointer,
    NondeterminismError,
    Paused,
    PendingInterrupt,
    Resume,
    ResumeError,
    Runner,
    SerializationError,
)


def asker(name, payload=None):
    def step(state):
        answer = yield Interrupt(payload if payload is not None else f"{name}?")
        return {"log": [name, answer]}

    return step


def fan_out(*names, counts=None):
    """A root step then each named step asking once, all on layer 1."""
    counts = {} if counts is None else counts

    def root(state):
        counts["root"] = counts.get("root", 0) + 1
        return {"log": "root"}

    graph = Graph("g", {"log": Append()}).step("root", root)
    for name in names:
        graph.step(name, asker(name)).edge("root", name)
    return graph


# --- the seed -------------------------------------------------------------


def test_seed_interrupt_then_resume_true_finishes_with_approved_and_amount():
    def a(state):
        answer = yield Interrupt({"q": "approve?"})
        return {"approved": answer}

    def b(state):
        return {"amount": 100}

    graph = Graph("seed", {"approved": LastWriteWins(), "amount": LastWriteWins()})
    graph.step("a", a).step("b", b).edge("a", "b")
    runner = Runner(graph)
    paused = runner.run("r")
    assert isinstance(paused, Paused)
    assert paused.reason == DynamicInterrupt("a")
    assert paused.payload == {"q": "approve?"}
    done = runner.resume("r", Resume(True))
    assert done.state["approved"] is True
    assert done.state["amount"] == 100


# --- pausing -----------------------------------------------------------------


def test_paused_lists_every_pending_interrupt_and_describes_the_first():
    runner = Runner(fan_out("x", "y"))
    paused = runner.run("r")
    assert paused.super_step == 2
    assert paused.reason == DynamicInterrupt("x")
    assert paused.payload == "x?"
    assert [(i.step_id, i.payload) for i in paused.interrupts] == [("x", "x?"), ("y", "y?")]
    assert all(isinstance(i, PendingInterrupt) for i in paused.interrupts)


def test_siblings_of_an_interrupted_step_still_run():
    graph = Graph("g", {"log": Append()})
    graph.step("asks", asker("asks")).step("plain", lambda s: {"log": "plain"})
    runner = Runner(graph)
    paused = runner.run("r")
    assert [i.step_id for i in paused.interrupts] == ["asks"]
    assert runner.resume("r", Resume(1)).state == {"log": ["asks", 1, "plain"]}


def test_later_layers_wait_for_the_interrupted_layer():
    graph = Graph("g", {"log": Append()})
    graph.step("asks", asker("asks")).step("next", lambda s: {"log": "next"})
    graph.edge("asks", "next")
    runner = Runner(graph)
    runner.run("r")
    assert runner.state("r").values == {"log": []}


def test_pause_checkpoint_is_labelled_with_the_first_interrupted_step_and_holds_the_layer_start():
    runner = Runner(fan_out("x", "y"))
    runner.run("r")
    history = runner.history("r")
    assert [(m.label, m.super_step) for m in history] == [
        ("input", 0),
        ("layer:1", 1),
        ("interrupt:x", 2),
    ]
    info = runner.state("r")
    assert info.status == "paused"
    assert info.super_step == 2
    assert info.values == {"log": ["root"]}


def test_finished_siblings_never_run_again():
    runs = []

    def plain(state):
        runs.append("plain")
        return {"log": "plain"}

    checkpointer = MemoryCheckpointer()
    graph = Graph("g", {"log": Append()})
    graph.step("x", asker("x")).step("plain", plain).step("y", asker("y"))
    runner = Runner(graph, checkpointer)
    paused = runner.run("r")
    x, y = (i.id for i in paused.interrupts)
    runner.resume("r", Resume(answers={x: 1}))
    done = Runner(graph, checkpointer).resume("r", Resume(answers={y: 2}))
    assert runs == ["plain"]
    assert done.state == {"log": ["x", 1, "plain", "y", 2]}


def test_resumed_step_may_interrupt_again_and_keeps_every_answer():
    def twice(state):
        first = yield Interrupt("first")
        second = yield Interrupt("second")
        return {"log": [first, second]}

    checkpointer = MemoryCheckpointer()
    graph = Graph("g", {"log": Append()}).step("twice", twice)
    runner = Runner(graph, checkpointer)
    assert runner.run("r").payload == "first"
    again = Runner(graph, checkpointer).resume("r", Resume("one"))
    assert again.payload == "second"
    assert again.super_step == 1
    assert Runner(graph, checkpointer).resume("r", Resume("two")).state == {"log": ["one", "two"]}


# --- ids -----------------------------------------------------------------------


def test_interrupt_ids_have_no_equals_sign_and_no_white_space():
    paused = Runner(fan_out("x", "y", "z")).run("r")
    ids = [i.id for i in paused.interrupts]
    assert len(set(ids)) == 3
    for interrupt_id in ids:
        assert interrupt_id
        assert "=" not in interrupt_id
        assert not re.search(r"\s", interrupt_id)


def test_interrupt_id_is_the_same_every_time_it_is_replayed():
    checkpointer = MemoryCheckpointer()
    graph = fan_out("x", "y")
    first = Runner(graph, checkpointer).run("r")
    x, y = first.interrupts
    again = Runner(graph, checkpointer).resume("r", Resume(answers={x.id: 1}))
    assert again.interrupts == (y,)
    assert Runner(graph, checkpointer).state("r").interrupts == (y,)


def test_interrupt_ids_are_never_reused_after_goto():
    runner = Runner(fan_out("x"))
    seen = set()
    paused = runner.run("r")
    for _ in range(3):
        (pending,) = paused.interrupts
        assert pending.id not in seen
        seen.add(pending.id)
        paused = runner.resume("r", Goto("x"))
    assert len(seen) == 3


def test_second_interrupt_of_a_step_gets_a_new_id():
    def twice(state):
        yield Interrupt("first")
        yield Interrupt("second")

    runner = Runner(Graph("g", {}).step("twice", twice))
    first = runner.run("r").interrupts[0].id
    second = runner.resume("r", Resume(1)).interrupts[0].id
    assert first != second


# --- Resume --------------------------------------------------------------------


def test_resume_value_answers_the_only_pending_interrupt():
    runner = Runner(fan_out("x"))
    runner.run("r")
    assert runner.resume("r", Resume("yes")).state == {"log": ["root", "x", "yes"]}


def test_resume_value_with_several_pending_is_a_resume_error_listing_their_ids():
    runner = Runner(fan_out("x", "y"))
    paused = runner.run("r")
    before = runner.history("r")
    with pytest.raises(ResumeError, match=r"2 pending interrupts") as info:
        runner.resume("r", Resume("yes"))
    for pending in paused.interrupts:
        assert pending.id in str(info.value)
    assert runner.history("r") == before


def test_a_dict_value_is_the_answer_itself_not_a_map_of_ids():
    runner = Runner(fan_out("x"))
    (pending,) = runner.run("r").interrupts
    done = runner.resume("r", Resume({pending.id: "not read as an id"}))
    assert done.state == {"log": ["root", "x", {pending.id: "not read as an id"}]}


def test_answers_may_cover_a_subset_and_the_rest_stay_pending():
    counts = {}
    runner = Runner(fan_out("x", "y", "z", counts=counts))
    x, y, z = runner.run("r").interrupts
    again = runner.resume("r", Resume(answers={y.id: "Y"}))
    assert isinstance(again, Paused)
    assert again.interrupts == (x, z)
    assert again.super_step == 2
    done = runner.resume("r", Resume(answers={x.id: "X", z.id: "Z"}))
    assert done.state == {"log": ["root", "x", "X", "y", "Y", "z", "Z"]}
    assert counts == {"root": 1}


def test_unknown_interrupt_id_is_a_resume_error_and_nothing_is_saved():
    runner = Runner(fan_out("x"))
    runner.run("r")
    before = runner.history("r")
    with pytest.raises(ResumeError, match=r"'nope' is unknown"):
        runner.resume("r", Resume(answers={"nope": 1}))
    assert runner.history("r") == before


@pytest.mark.parametrize("key", [0, None, b"1.0.0", ("1.0.0",)])
def test_an_interrupt_id_that_is_not_a_str_is_a_resume_error_and_nothing_is_saved(key):
    runner = Runner(fan_out("x"))
    runner.run("r")
    before = runner.history("r")
    with pytest.raises(ResumeError, match=r"keyed by interrupt id, a str .* got "):
        runner.resume("r", Resume(answers={key: 1}))
    assert runner.history("r") == before


def test_already_answered_interrupt_id_is_a_resume_error_and_nothing_is_saved():
    runner = Runner(fan_out("x", "y"))
    x, _ = runner.run("r").interrupts
    runner.resume("r", Resume(answers={x.id: 1}))
    before = runner.history("r")
    with pytest.raises(
        ResumeError, match=rf"^interrupt id '{re.escape(x.id)}' was already answered"
    ):
        runner.resume("r", Resume(answers={x.id: 2}))
    assert runner.history("r") == before


def test_already_answered_earlier_interrupt_of_the_same_step_is_refused():
    def twice(state):
        yield Interrupt("first")
        yield Interrupt("second")

    runner = Runner(Graph("g", {}).step("twice", twice))
    first = runner.run("r").interrupts[0].id
    runner.resume("r", Resume(1))
    before = runner.history("r")
    with pytest.raises(ResumeError, match=r"already answered"):
        runner.resume("r", Resume(answers={first: 1}))
    assert runner.history("r") == before


def test_an_interrupt_a_goto_dropped_unanswered_may_have_been_dropped_says_the_error():
    runner = Runner(fan_out("x", "y"))
    dropped = runner.run("r").interrupts[0].id
    runner.resume("r", Goto("x"))
    before = runner.history("r")
    with pytest.raises(ResumeError, match=r"was already answered or dropped by a Goto"):
        runner.resume("r", Resume(answers={dropped: 1}))
    assert runner.history("r") == before


def test_resume_with_both_value_and_answers_is_a_resume_error():
    runner = Runner(fan_out("x"))
    (pending,) = runner.run("r").interrupts
    with pytest.raises(ResumeError, match=r"exactly one"):
        runner.resume("r", Resume(1, answers={pending.id: 1}))


def test_resume_with_neither_value_nor_answers_is_a_resume_error():
    runner = Runner(fan_out("x"))
    runner.run("r")
    before = runner.history("r")
    with pytest.raises(ResumeError, match=r"exactly one"):
        runner.resume("r", Resume())
    assert runner.history("r") == before


def test_resume_none_is_a_value():
    runner = Runner(fan_out("x"))
    runner.run("r")
    assert runner.resume("r", Resume(None)).state == {"log": ["root", "x", None]}


# --- normalising answers --------------------------------------------------------


def _normalised_answer(hot: bool):
    received = []

    def step(state):
        answer = yield Interrupt("q")
        received.append(answer)
        return {"log": [answer]}

    checkpointer = MemoryCheckpointer()
    graph = Graph("g", {"log": Append()}).step("s", step)
    runner = Runner(graph, checkpointer)
    runner.run("r")
    resumer = runner if hot else Runner(graph, checkpointer)
    done = resumer.resume("r", Resume((1, ("nested", b"raw"))))
    return received, done


@pytest.mark.parametrize("hot", [True, False], ids=["hot", "cold"])
def test_a_tuple_answer_arrives_as_a_list(hot):
    received, done = _normalised_answer(hot)
    assert received == [[1, ["nested", b"raw"]]]
    assert type(received[0]) is list
    assert done.state == {"log": [[1, ["nested", b"raw"]]]}


def test_hot_and_cold_resumes_receive_the_same_answer():
    assert _normalised_answer(True) == _normalised_answer(False)


def test_unencodable_answer_is_a_serialization_error_before_anything_is_saved():
    runner = Runner(fan_out("x"))
    runner.run("r")
    before = runner.history("r")
    with pytest.raises(SerializationError, match=r"answer"):
        runner.resume("r", Resume(object()))
    assert runner.history("r") == before
    assert runner.resume("r", Resume("fine")).state == {"log": ["root", "x", "fine"]}


def test_unencodable_payload_is_a_serialization_error():
    def step(state):
        yield Interrupt({1, 2})

    runner = Runner(Graph("g", {}).step("s", step))
    with pytest.raises(SerializationError, match=r"'s'"):
        runner.run("r")
    assert [m.label for m in runner.history("r")] == ["input", "failed:s"]


# --- claim and replay ----------------------------------------------------------


def test_resume_first_saves_a_claim_checkpoint_labelled_resume():
    runner = Runner(fan_out("x"))
    runner.run("r")
    before = len(runner.history("r"))
    runner.resume("r", Resume(1))
    history = runner.history("r")
    assert history[before].label == "resume"
    assert [m.label for m in history[before:]] == ["resume", "layer:2"]


def test_claim_is_saved_before_any_step_code_runs():
    seen = []

    class Spy(MemoryCheckpointer):
        def save(self, checkpoint):
            seen.append(("save", checkpoint.label))
            super().save(checkpoint)

    def step(state):
        answer = yield Interrupt("q")
        seen.append(("step", answer))
        return {"log": [answer]}

    graph = Graph("g", {"log": Append()}).step("s", step)
    checkpointer = Spy()
    Runner(graph, checkpointer).run("r")
    seen.clear()
    Runner(graph, checkpointer).resume("r", Resume(7))
    assert seen == [("save", "resume"), ("step", 7), ("save", "layer:1")]


def test_hot_and_cold_resumes_give_the_same_outcome():
    effects = []

    def charge(amount):
        effects.append(amount)
        return {"receipt": amount}

    def pay(state):
        receipt = yield Effect(charge, 10)
        ok = yield Interrupt({"confirm": receipt})
        return {"log": [receipt, ok]}

    graph = Graph("g", {"log": Append()}).step("pay", pay).step("other", asker("other"))
    checkpointer = MemoryCheckpointer()
    hot = Runner(graph, checkpointer)
    hot.run("hot")
    Runner(graph, checkpointer).run("cold")

    def finish(make_runner, run_id):
        outcome = make_runner().state(run_id)
        for pending in outcome.interrupts:
            outcome = make_runner().resume(run_id, Resume(answers={pending.id: pending.step_id}))
        return outcome

    hot_done = finish(lambda: hot, "hot")
    cold_done = finish(lambda: Runner(graph, checkpointer), "cold")
    assert hot_done.state == cold_done.state
    assert hot_done.super_step == cold_done.super_step
    assert effects == [10, 10]


def test_a_racing_resumer_fails_its_claim_with_conflict_error_before_running_a_step():
    calls = []

    class Stale(MemoryCheckpointer):
        """Hands out the pause checkpoint even after another process resumed it."""

        stale = None

        def latest(self, workflow_id, run_id):
            return self.stale or super().latest(workflow_id, run_id)

    def step(state):
        answer = yield Interrupt("q")
        calls.append(answer)
        return {"log": [answer]}

    graph = Graph("g", {"log": Append()}).step("s", step)
    checkpointer = Stale()
    Runner(graph, checkpointer).run("r")
    paused_at = checkpointer.latest("g", "r")
    Runner(graph, checkpointer).resume("r", Resume("winner"))
    history = checkpointer.list("g", "r")
    checkpointer.stale = paused_at
    with pytest.raises(ConflictError):
        Runner(graph, checkpointer).resume("r", Resume("loser"))
    assert calls == ["winner"]
    assert checkpointer.list("g", "r") == history


# --- replaying a journal ---------------------------------------------------------


def _replayed_with(first, second):
    """Pause with step code ``first``, then resume cold with step code ``second``."""
    checkpointer = MemoryCheckpointer()
    Runner(Graph("g", {"log": Append()}).step("s", first), checkpointer).run("r")
    return Runner(Graph("g", {"log": Append()}).step("s", second), checkpointer)


def record(value):
    return value


def other_record(value):
    return value


def test_replay_with_another_payload_is_a_nondeterminism_error_naming_step_and_position():
    def first(state):
        yield Effect(record, 1)
        yield Interrupt("first payload")

    def second(state):
        yield Effect(record, 1)
        yield Interrupt("another payload")

    runner = _replayed_with(first, second)
    with pytest.raises(NondeterminismError, match=r"step 's' .*position 1"):
        runner.resume("r", Resume(1))


def test_replay_with_another_effect_function_is_a_nondeterminism_error():
    def first(state):
        yield Effect(record, 1)
        yield Interrupt("q")

    def second(state):
        yield Effect(other_record, 1)
        yield Interrupt("q")

    with pytest.raises(NondeterminismError, match=r"step 's' .*position 0"):
        _replayed_with(first, second).resume("r", Resume(1))


def test_replay_in_another_order_is_a_nondeterminism_error():
    def first(state):
        yield Effect(record, 1)
        yield Interrupt("a")
        yield Interrupt("b")

    def second(state):
        yield Interrupt("a")
        yield Effect(record, 1)
        yield Interrupt("b")

    runner = _replayed_with(first, second)
    with pytest.raises(NondeterminismError, match=r"'s'"):
        runner.resume("r", Resume(1))


def test_replay_does_not_compare_effect_arguments_and_does_not_call_fn():
    calls = []

    def tracked(value):
        calls.append(value)
        return value

    def first(state):
        got = yield Effect(tracked, "recorded")
        answer = yield Interrupt("q")
        return {"log": [got, answer]}

    def second(state):
        got = yield Effect(tracked, "other argument")
        answer = yield Interrupt("q")
        return {"log": [got, answer]}

    runner = _replayed_with(first, second)
    assert runner.resume("r", Resume("a")).state == {"log": ["recorded", "a"]}
    assert calls == ["recorded"]
