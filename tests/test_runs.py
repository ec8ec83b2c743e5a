"""Runs: run, state, history and fork on the memory store."""

from __future__ import annotations

import itertools

import pytest

from pausegraph import (
    Append,
    Before,
    CheckpointMeta,
    Continue,
    Done,
    FileCheckpointer,
    Graph,
    GraphError,
    Interrupt,
    LastWriteWins,
    MemoryCheckpointer,
    Paused,
    Resume,
    ResumeError,
    RunInfo,
    Runner,
    Status,
    StepError,
    Update,
)


def counting_chain(counts, *names):
    def writer(name):
        def step(state):
            counts[name] = counts.get(name, 0) + 1
            return {"log": name}

        return step

    graph = Graph("g", {"log": Append(), "note": LastWriteWins()})
    for name in names:
        graph.step(name, writer(name))
    for src, dst in itertools.pairwise(names):
        graph.edge(src, dst)
    return graph


def asking_graph():
    def ask(state):
        answer = yield Interrupt({"q": state["note"]})
        return {"log": answer}

    graph = Graph("g", {"log": Append(), "note": LastWriteWins()})
    return graph.step("first", lambda s: {"log": "first"}).step("ask", ask).edge("first", "ask")


# --- run -------------------------------------------------------------------------


def test_run_writes_input_as_super_step_zero_labelled_input():
    runner = Runner(counting_chain({}, "a"))
    runner.run("r", {"note": "hello"})
    first = runner.history("r")[0]
    assert (first.seq, first.super_step, first.label) == (1, 0, "input")
    assert runner.state("r").values == {"log": ["a"], "note": "hello"}


def test_run_on_a_done_run_returns_the_same_done_without_running_a_step():
    counts = {}
    runner = Runner(counting_chain(counts, "a", "b"))
    first = runner.run("r", {"note": 1})
    history = runner.history("r")
    assert runner.run("r") == first
    assert runner.run("r", {"note": 1}) == first
    assert Runner(runner.graph, runner.checkpointer).run("r") == first
    assert counts == {"a": 1, "b": 1}
    assert runner.history("r") == history


def test_run_with_an_equal_input_on_an_existing_run_is_ignored():
    # re-running a script after a crash just recovers the run
    crashes = [RuntimeError("crash")]

    def b(state):
        if crashes:
            raise crashes.pop()
        return {"log": "b"}

    checkpointer = MemoryCheckpointer()
    graph = counting_chain({}, "a").step("b", b).edge("a", "b")
    with pytest.raises(StepError):
        Runner(graph, checkpointer).run("r", {"note": ("same", 1)})
    done = Runner(graph, checkpointer).run("r", {"note": ["same", 1]})
    assert done == Done({"log": ["a", "b"], "note": ["same", 1]}, 2)


def test_run_with_a_different_input_on_an_existing_run_is_a_resume_error():
    runner = Runner(counting_chain({}, "a"))
    runner.run("r", {"note": "one"})
    history = runner.history("r")
    with pytest.raises(ResumeError, match=r"^run 'r' already exists with input"):
        runner.run("r", {"note": "two"})
    assert runner.history("r") == history


@pytest.mark.parametrize(
    ("first", "again", "equal"),
    [(1, [1], False), ([1], 1, False), ((1, 2), [1, 2], True), ("x", "x", True)],
)
def test_an_append_input_is_compared_by_its_encoding_as_given(tmp_path, first, again, equal):
    """SPEC: an equal input (compared by msgpack encoding) is ignored, a different one refused.

    ``1`` and ``[1]`` append the same item but encode differently; ``(1, 2)``
    and ``[1, 2]`` encode alike (a tuple is one item, a list two).
    """
    graph = Graph("g", {"l": Append()}).step("a", lambda s: None)
    for runner in (Runner(graph), Runner(graph, FileCheckpointer(tmp_path))):
        done = runner.run("r", {"l": first})
        history = runner.history("r")
        if equal:
            assert runner.run("r", {"l": again}) == done
            assert runner.start("r", {"l": again}).status == "done"
        else:
            for call in (runner.run, runner.start):
                with pytest.raises(ResumeError, match=r"already exists with input"):
                    call("r", {"l": again})
        assert runner.history("r") == history


def test_run_on_a_paused_run_is_a_resume_error_saying_to_use_resume():
    runner = Runner(asking_graph())
    runner.run("r")
    history = runner.history("r")
    with pytest.raises(ResumeError, match=r"^run 'r' is paused .*use resume"):
        runner.run("r")
    assert runner.history("r") == history


def test_run_on_a_run_whose_process_died_goes_on_from_its_latest_checkpoint():
    counts = {}
    fail = {"b"}

    def b(state):
        counts["b"] = counts.get("b", 0) + 1
        if fail:
            fail.clear()
            raise RuntimeError("crash")
        return {"log": "b"}

    checkpointer = MemoryCheckpointer()
    graph = counting_chain(counts, "a")
    graph.step("b", b).edge("a", "b")
    with pytest.raises(StepError):
        Runner(graph, checkpointer).run("r")
    fresh = Runner(graph, checkpointer)
    assert fresh.state("r").status == Status.FAILED
    assert fresh.run("r") == Done({"log": ["a", "b"], "note": None}, 2)
    assert counts == {"a": 1, "b": 2}
    labels = [m.label for m in fresh.history("r")]
    assert labels == ["input", "layer:1", "failed:b", "resume", "layer:2"]


@pytest.mark.parametrize("bad", ["", None, 3])
def test_run_id_must_be_a_non_empty_string(bad):
    with pytest.raises(ResumeError, match=r"run id"):
        Runner(counting_chain({}, "a")).run(bad)


# --- graph structure ---------------------------------------------------------------


def test_resume_with_a_graph_of_another_structure_is_a_resume_error_naming_the_difference():
    checkpointer = MemoryCheckpointer()
    Runner(asking_graph(), checkpointer).run("r")
    changed = asking_graph().step("extra", lambda s: None)
    with pytest.raises(ResumeError, match=r"steps added: 'extra'"):
        Runner(changed, checkpointer).resume("r", Resume(1))


def test_recovery_with_a_removed_edge_is_a_resume_error_naming_it():
    checkpointer = MemoryCheckpointer()
    graph = Graph("g", {"log": Append()}).step("a", lambda s: None).step("b", lambda s: 1)
    graph.edge("a", "b")
    with pytest.raises(StepError):
        Runner(graph, checkpointer).run("r")
    other = Graph("g", {"log": Append()}).step("a", lambda s: None).step("b", lambda s: None)
    with pytest.raises(ResumeError, match=r"edges removed: 'a' -> 'b'"):
        Runner(other, checkpointer).run("r")


def test_changing_a_steps_code_is_allowed():
    checkpointer = MemoryCheckpointer()
    Runner(asking_graph(), checkpointer).run("r")

    def ask_v2(state):
        answer = yield Interrupt({"q": state["note"]})
        return {"log": f"v2:{answer}"}

    graph = Graph("g", {"log": Append(), "note": LastWriteWins()})
    graph.step("first", lambda s: {"log": "other code"}).step("ask", ask_v2).edge("first", "ask")
    done = Runner(graph, checkpointer).resume("r", Resume("yes"))
    assert done.state["log"] == ["first", "v2:yes"]


# --- state and history -----------------------------------------------------------------


def test_state_reports_values_status_super_step_and_pending_interrupts():
    runner = Runner(asking_graph())
    paused = runner.run("r", {"note": "n"})
    info = runner.state("r")
    assert info == RunInfo({"log": ["first"], "note": "n"}, Status.PAUSED, 2, paused.interrupts)
    assert info.status == "paused"
    runner.resume("r", Resume("ok"))
    info = runner.state("r")
    assert info.status == "done"
    assert info.super_step == 2
    assert info.interrupts == ()


def test_history_lists_every_checkpoint_oldest_first():
    runner = Runner(counting_chain({}, "a", "b"), interrupt_before={"b"})
    runner.run("r")
    runner.resume("r", Continue())
    history = runner.history("r")
    assert all(isinstance(m, CheckpointMeta) for m in history)
    assert [m.seq for m in history] == [1, 2, 3, 4, 5]
    assert [m.label for m in history] == ["input", "layer:1", "before:b", "resume", "layer:2"]
    stamps = [m.timestamp_ms for m in history]
    assert stamps == sorted(stamps)


@pytest.mark.parametrize("call", ["state", "history"])
def test_state_and_history_of_an_unknown_run_are_resume_errors(call):
    runner = Runner(counting_chain({}, "a"))
    with pytest.raises(ResumeError, match=r"no run 'ghost'"):
        getattr(runner, call)("ghost")


def test_runs_of_two_runners_on_one_store_are_seen_by_both():
    checkpointer = MemoryCheckpointer()
    graph = counting_chain({}, "a")
    Runner(graph, checkpointer).run("r")
    assert Runner(graph, checkpointer).state("r").status == "done"
    assert checkpointer.runs() == [("g", "r")]


# --- fork ------------------------------------------------------------------------------


def test_fork_starts_a_new_run_from_a_checkpoint_and_leaves_the_source_alone():
    runner = Runner(counting_chain({}, "a", "b", "c"))
    runner.run("r", {"note": "n"})
    source_history = runner.history("r")
    source_state = runner.state("r")
    new_id = runner.fork("r", 2)
    assert new_id != "r"
    first = runner.history(new_id)[0]
    assert (first.seq, first.label, first.super_step) == (1, "fork-of:r@2", 1)
    assert runner.state(new_id).values == {"log": ["a"], "note": "n"}
    assert runner.run(new_id) == Done({"log": ["a", "b", "c"], "note": "n"}, 3)
    assert runner.history("r") == source_history
    assert runner.state("r") == source_state


def test_fork_edits_go_through_the_reducers():
    runner = Runner(counting_chain({}, "a", "b"))
    runner.run("r")
    new_id = runner.fork("r", 2, {"log": "edit", "note": "forked"})
    assert runner.state(new_id).values == {"log": ["a", "edit"], "note": "forked"}
    assert runner.run(new_id).state == {"log": ["a", "edit", "b"], "note": "forked"}


def test_fork_of_a_pause_checkpoint_carries_the_pause_and_keeps_edits_like_update():
    seen = []

    def ask(state):
        seen.append(state["note"])
        answer = yield Interrupt("q")
        return {"log": [state["note"], answer]}

    graph = Graph("g", {"log": Append(), "note": LastWriteWins()}).step("ask", ask)
    runner = Runner(graph)
    paused = runner.run("r", {"note": "original"})
    seq = runner.history("r")[-1].seq
    new_id = runner.fork("r", seq, {"note": "edited"})
    info = runner.state(new_id)
    assert info.status == "paused"
    assert [i.payload for i in info.interrupts] == [i.payload for i in paused.interrupts]
    done = runner.resume(new_id, Resume("yes"))
    assert done.state == {"log": ["original", "yes"], "note": "edited"}
    assert seen == ["original", "original"]
    assert runner.state("r").status == "paused"


def test_fork_of_a_failed_checkpoint_applies_its_edits_before_the_retry_as_update_does():
    """Fork edits go through the reducers, before the retry, as a failed run's ``Update``."""
    seen = []

    def check(state):
        seen.append(state["bad"])
        if state["bad"]:
            raise ValueError("bad")
        return {"out": "ok"}

    def fine(state):
        return {"log": "fine"}

    graph = (
        Graph("g", {"bad": LastWriteWins(), "out": LastWriteWins(), "log": Append()})
        .step("check", check)
        .step("fine", fine)
    )
    runner = Runner(graph)
    with pytest.raises(StepError):
        runner.run("r", {"bad": True})
    seq = runner.history("r")[-1].seq
    new_id = runner.fork("r", seq, {"bad": False})
    info = runner.state(new_id)
    assert info.status == "failed"
    assert info.values["bad"] is False  # applied, not kept for after the layer
    assert info.edits == ()
    done = runner.run(new_id)  # the retry sees the edit
    assert done.state == {"bad": False, "out": "ok", "log": ["fine"]}
    assert seen == [True, False]
    assert runner.state("r").status == "failed"  # the source is untouched


def test_a_queued_claim_lists_the_update_edits_kept_at_its_pause():
    """RunInfo.edits: ``Update`` edits saved at a dynamic pause and not yet applied."""

    def ask(state):
        answer = yield Interrupt("q")
        return {"note": answer}

    graph = Graph("g", {"log": Append(), "note": LastWriteWins()}).step("ask", ask)
    store = MemoryCheckpointer()
    runner = Runner(graph, store)
    paused = runner.run("r")
    runner.resume("r", Update({"log": "kept"}))
    assert runner.state("r").edits == ({"log": "kept"},)  # as given
    runner.resume("r", Update({"log": ["one", "two"]}))
    runner.resume("r", Update({"log": ("a", "pair")}))  # one item: an Append takes a tuple so
    kept = ({"log": "kept"}, {"log": ["one", "two"]}, {"log": [["a", "pair"]]})
    assert runner.state("r").edits == Runner(graph, store).state("r").edits == kept
    queued = runner.submit("r", Resume(answers={paused.interrupts[0].id: "yes"}))
    assert queued.status == "queued"
    assert queued.edits == runner.state("r").edits == kept
    log = ["kept", "one", "two", ["a", "pair"]]
    assert Runner(graph, store).run("r").state == {"log": log, "note": "yes"}
    assert runner.state("r").edits == ()


def test_fork_of_a_breakpoint_pause_resumes_with_continue():
    runner = Runner(counting_chain({}, "a", "b"), interrupt_before={"b"})
    runner.run("r")
    new_id = runner.fork("r", 3)
    assert runner.state(new_id).status == "paused"
    assert runner.resume(new_id, Continue()).state["log"] == ["a", "b"]
    assert runner.state("r").status == "paused"
    assert isinstance(runner.resume("r", Continue()), Done)


def test_fork_interrupt_ids_differ_from_the_sources():
    runner = Runner(asking_graph())
    paused = runner.run("r")
    new_id = runner.fork("r", 2)
    forked = runner.run(new_id)
    assert isinstance(forked, Paused)
    assert {i.id for i in forked.interrupts}.isdisjoint({i.id for i in paused.interrupts})


def test_fork_of_an_unknown_seq_is_a_resume_error():
    runner = Runner(counting_chain({}, "a"))
    runner.run("r")
    with pytest.raises(ResumeError, match=r"seq 99"):
        runner.fork("r", 99)


def test_fork_of_an_unknown_run_is_a_resume_error():
    with pytest.raises(ResumeError, match=r"no run 'ghost'"):
        Runner(counting_chain({}, "a")).fork("ghost", 1)


def test_fork_edits_naming_no_channel_are_a_graph_error_and_nothing_is_saved():
    checkpointer = MemoryCheckpointer()
    runner = Runner(counting_chain({}, "a"), checkpointer)
    runner.run("r")
    with pytest.raises(GraphError, match=r"'nope'"):
        runner.fork("r", 1, {"nope": 1})
    assert checkpointer.runs() == [("g", "r")]


def test_fork_before_a_breakpoint_pauses_there_when_run():
    runner = Runner(counting_chain({}, "a", "b"), interrupt_before={"b"})
    runner.run("r")
    new_id = runner.fork("r", 2)
    assert runner.run(new_id) == Paused(2, Before("b"))
