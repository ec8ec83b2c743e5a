"""The ``pausegraph`` command says why a run is where it is and what goes on with it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from test_cli import REVIEW, ok, ok_json, pg

from pausegraph import FileCheckpointer, Runner
from pausegraph.cli import load_graph

TIMED = """\
from pausegraph import Graph, Interrupt, InterruptTimeout, LastWriteWins


def ask(state):
    try:
        answer = yield Interrupt("approve?", timeout=0)
    except InterruptTimeout:
        answer = "timed out"
    return {"answer": answer}


def later(state):
    again = yield Interrupt("again?", timeout=86400)
    return {"again": again}


def strict(state):
    answer = yield Interrupt("now or never", timeout=0)
    return {"answer": answer}


def boom(state):
    if state["answer"] == "fail":
        raise ValueError("the printer is on fire")
    return {"again": "printed"}


graph = Graph("timed", {"answer": LastWriteWins(), "again": LastWriteWins()})
graph.step("ask", ask).step("later", later).edge("ask", "later")
fragile = Graph("fragile", {"answer": LastWriteWins()})
fragile.step("strict", strict)
flaky = Graph("flaky", {"answer": LastWriteWins(), "again": LastWriteWins()})
flaky.step("boom", boom)


def unsure(state):
    raise KeyError("route")


routed = Graph("routed", {"answer": LastWriteWins()})
routed.step("first", lambda s: {}).step("second", lambda s: {})
routed.edge("first", "second", when=unsure)
"""


@pytest.fixture
def flows(tmp_path: Path) -> str:
    path = tmp_path / "timed_flow.py"
    path.write_text(TIMED)
    return str(path)


def _failed_run(store: Path, flows: str) -> None:
    done = pg("run", f"{flows}:flaky", "--run-id", "f1", "--input", '{"answer": "fail"}',
              store=store)  # fmt: skip
    assert done.returncode == 1


def test_show_of_a_run_failed_by_a_condition_does_not_say_its_step_raised(
    tmp_path: Path, flows: str
) -> None:
    # the condition on the edge into 'second' raised, not 'second' itself
    store = tmp_path / "store"
    assert pg("run", f"{flows}:routed", "--run-id", "c1", store=store).returncode == 1
    out = ok("show", "c1", store=store)
    assert "failure     step 'second' failed: KeyError: 'route'\n" in out


def test_show_of_a_failed_run_names_the_step_the_error_and_the_commands_that_go_on(
    tmp_path: Path, flows: str
) -> None:
    store = tmp_path / "store"
    _failed_run(store, flows)
    out = ok("show", "f1", store=store)
    assert "failure     step 'boom' failed: ValueError: the printer is on fire\n" in out
    assert f"go on with: pausegraph --store {store} run WORKFLOW --run-id f1  (retries it)" in out
    assert f"or: pausegraph --store {store} resume WORKFLOW f1 --update JSON" in out
    shown = ok_json("show", "f1", store=store)
    assert shown["status"] == "failed"
    assert shown["failure"] == {
        "step_id": "boom", "error_type": "ValueError", "message": "the printer is on fire",
    }  # fmt: skip
    assert (shown["edits"], shown["reason"]) == ([], None)


def test_runs_says_a_failed_run_waits_for_a_retry(tmp_path: Path, flows: str) -> None:
    store = tmp_path / "store"
    _failed_run(store, flows)
    [row] = ok("runs", store=store).splitlines()[1:]
    assert row.split()[-4:] == ["retry", "(step", "'boom'", "failed)"]


@pytest.mark.parametrize("command", ["run", "resume"])
def test_json_of_a_failing_run_prints_the_failed_run_and_one_error_line(
    tmp_path: Path, flows: str, command: str
) -> None:
    store = tmp_path / "store"
    if command == "run":
        words = ["run", f"{flows}:flaky", "--run-id", "f1", "--input", '{"answer": "fail"}']
    else:
        _failed_run(store, flows)
        words = ["resume", f"{flows}:flaky", "f1", "--update", '{"answer": "fail"}']
    done = pg(*words, "--json", store=store)
    assert done.returncode == 1
    obj = json.loads(done.stdout)
    assert (obj["status"], obj["run_id"]) == ("failed", "f1")
    assert obj["failure"]["error_type"] == "ValueError"
    [line] = done.stderr.splitlines()
    assert line.startswith("pausegraph: error: run 'f1' of workflow 'flaky' failed: StepError: ")


def test_an_update_kept_at_a_dynamic_pause_is_shown(tmp_path: Path) -> None:
    store = tmp_path / "store"
    ok("run", REVIEW, "--run-id", "r1", "--input", '{"document": "memo"}', store=store)
    out = ok("resume", REVIEW, "r1", "--update", '{"document": "memo v2"}', store=store)
    assert 'edits kept for the end of the layer:\n  {"document": "memo v2"}\n' in out
    assert 'edits kept for the end of the layer:\n  {"document": "memo v2"}\n' in ok(
        "show", "r1", store=store
    )
    assert ok_json("show", "r1", store=store)["edits"] == [{"document": "memo v2"}]


def test_show_of_a_cancelled_run_gives_its_reason(tmp_path: Path) -> None:
    store = tmp_path / "store"
    ok("run", REVIEW, "--run-id", "r1", "--input", '{"document": "memo"}', store=store)
    ok("cancel", "r1", "--reason", "a duplicate of r0", store=store)
    assert "reason      a duplicate of r0\n" in ok("show", "r1", store=store)
    assert ok_json("show", "r1", store=store)["reason"] == "a duplicate of r0"


@pytest.mark.parametrize("where", ["before", "after"])
def test_v_prints_the_traceback_of_any_error(tmp_path: Path, where: str) -> None:
    words = ["show", "nope"]
    done = pg(*(["-v", *words] if where == "before" else [*words, "-v"]), store=tmp_path / "s")
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr
    assert done.stderr.splitlines()[-1] == (
        f"pausegraph: error: no run 'nope' in '{tmp_path / 's'}': 'pausegraph runs' lists the runs"
    )
    assert "Traceback" not in pg(*words, store=tmp_path / "s").stderr


def test_tick_goes_on_with_runs_whose_deadline_passed(tmp_path: Path, flows: str) -> None:
    store = tmp_path / "store"
    paused = ok("run", f"{flows}:graph", "--run-id", "t1", store=store)
    assert re.search(
        r"1\.0\.0 +ask +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \(passed\) +\"approve\?\"", paused
    )
    ok("run", f"{flows}:fragile", "--run-id", "x1", store=store)
    assert "(passed)" in ok("inbox", store=store)
    done = pg("tick", f"{flows}:graph", f"{flows}:fragile", store=store)
    assert done.returncode == 1  # a step raised: said in one line, and the others moved on
    [line] = done.stdout.splitlines()
    assert line.startswith("run t1 of workflow 'timed' paused at super-step 2: interrupt(s) ")
    assert line.endswith(f"go on with: pausegraph --store {store} resume {flows}:graph t1 "
                         "--value JSON")  # fmt: skip
    [said] = done.stderr.splitlines()  # one line, no traceback
    assert said.startswith(
        "pausegraph: error: run 'x1' of workflow 'fragile' failed after its deadline: StepError: "
        "step 'strict' raised InterruptTimeout"
    )
    assert ok_json("show", "x1", store=store)["status"] == "failed"
    [waiting] = ok_json("inbox", store=store)
    assert waiting["deadline_ms"] is not None
    shown = ok_json("show", "t1", store=store)
    assert shown["interrupts"][0]["deadline_ms"] == waiting["deadline_ms"]
    assert "(passed)" not in ok("show", "t1", store=store)
    assert ok_json("tick", f"{flows}:graph", store=store) == []


def test_tick_json_prints_each_moved_run(tmp_path: Path, flows: str) -> None:
    store = tmp_path / "store"
    ok("run", f"{flows}:graph", "--run-id", "t1", store=store)
    [moved] = ok_json("tick", f"{flows}:graph", store=store)
    assert (moved["run_id"], moved["status"], moved["values"]["answer"]) == (
        "t1", "paused", "timed out",
    )  # fmt: skip
    assert moved["reason"] == {"kind": "interrupt", "step_id": "later"}


def test_tick_json_and_quiet_still_say_a_run_that_failed(tmp_path: Path, flows: str) -> None:
    store = tmp_path / "store"
    ok("run", f"{flows}:fragile", "--run-id", "x1", store=store)
    done = pg("-q", "tick", f"{flows}:fragile", "--json", store=store)
    assert done.returncode == 1
    [failed] = json.loads(done.stdout)
    assert (failed["run_id"], failed["status"], failed["failure"]["step_id"]) == (
        "x1", "failed", "strict",
    )  # fmt: skip
    [said] = done.stderr.splitlines()
    assert said.startswith("pausegraph: error: run 'x1' of workflow 'fragile' failed after its ")


def test_tick_v_adds_the_traceback_of_a_step_that_raised(tmp_path: Path, flows: str) -> None:
    """SPEC, Command line: a step that raises during tick prints one line; -v adds the traceback."""
    store = tmp_path / "store"
    ok("run", f"{flows}:fragile", "--run-id", "x1", store=store)
    done = pg("-v", "tick", f"{flows}:fragile", store=store)
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr
    assert done.stderr.splitlines()[-1].startswith(
        "pausegraph: error: run 'x1' of workflow 'fragile' failed after its deadline: "
    )


def test_run_of_a_paused_run_gives_the_resume_command_with_the_interrupt_ids(
    tmp_path: Path,
) -> None:
    store = tmp_path / "store"
    ok("run", REVIEW, "--run-id", "r1", "--input", '{"document": "memo"}', store=store)
    done = pg("run", REVIEW, "--run-id", "r1", store=store)
    assert done.returncode == 1
    assert done.stderr == (
        "pausegraph: error: run 'r1' of workflow 'review' is paused (interrupts pending: "
        f"2.1.0, 2.2.0): go on with `pausegraph --store {store} resume {REVIEW} r1 "
        "--answer 2.1.0=JSON --answer 2.2.0=JSON`\n"
    )


def test_show_of_a_queued_run_says_run_drives_it(tmp_path: Path) -> None:
    store = tmp_path / "store"
    Runner(load_graph(REVIEW), FileCheckpointer(store)).start("q1", {"document": "memo"})
    out = ok("show", "q1", store=store)
    assert f"go on with: pausegraph --store {store} run WORKFLOW --run-id q1  (drives it)" in out
    [row] = ok("runs", store=store).splitlines()[1:]
    assert row.endswith("a driver")


def test_a_message_names_the_store_as_store_gave_it_not_by_a_python_repr(tmp_path: Path) -> None:
    """SPEC, Command line: messages speak in command-line terms."""
    store = tmp_path / "store"
    ok("run", REVIEW, "--run-id", "r1", "--input", '{"document": "memo"}', store=store)
    done = pg("resume", REVIEW, "nope", "--continue", store=store)
    assert done.returncode == 1
    assert f"in '{store}'" in done.stderr
    assert "Checkpointer" not in done.stderr


def test_v_on_a_failed_step_ends_with_the_steps_error_not_the_clis_own(
    tmp_path: Path, flows: str
) -> None:
    done = pg(
        "-v", "run", f"{flows}:flaky", "--run-id", "f1", "--input", '{"answer": "fail"}',
        store=tmp_path / "store",
    )  # fmt: skip
    assert done.returncode == 1
    traceback, said = done.stderr.rsplit("\n", 2)[0], done.stderr.splitlines()[-1]
    assert "ValueError: the printer is on fire" in traceback
    assert traceback.rstrip().splitlines()[-1].startswith("pausegraph.errors.StepError: ")
    assert "_Failure" not in done.stderr
    assert said.startswith("pausegraph: error: ")
