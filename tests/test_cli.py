"""The ``pausegraph`` command, run as the installed console script in a subprocess."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pausegraph import (
    After,
    Append,
    Continue,
    Graph,
    LastWriteWins,
    MemoryCheckpointer,
    Paused,
    Runner,
)
from pausegraph._cli_render import jsonable, pending_of, status_of

PG = Path(sys.executable).parent / "pausegraph"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
EXPENSE = f"{EXAMPLES}/expense.py:graph"
REVIEW = f"{EXAMPLES}/review.py:graph"
INTERVIEW = f"{EXAMPLES}/interview.py:graph"


def pg(
    *args: str, store: Path | None = None, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    words = [str(PG)] + (["--store", str(store)] if store is not None else []) + list(args)
    return subprocess.run(
        words,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )


def ok(*args: str, store: Path, stdin: str = "", env: dict[str, str] | None = None) -> str:
    done = pg(*args, store=store, stdin=stdin, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return done.stdout


def ok_json(*args: str, store: Path, stdin: str = "", env: dict[str, str] | None = None) -> Any:
    return json.loads(ok(*args, "--json", store=store, stdin=stdin, env=env))


def tree_digest(root: Path) -> dict[str, str]:
    """A hash of every file under ``root``, to tell that nothing changed.

    The file store's ``index.sqlite3`` is left out: it is derived from the
    logs, and a read may bring it up to date.
    """
    if not root.exists():
        return {}
    if root.is_file():
        return {".": hashlib.sha256(root.read_bytes()).hexdigest()}
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "/"
        for p in sorted(root.rglob("*"))
        if not p.name.startswith("index.sqlite3")
    }


def test_a_run_pauses_and_finishes_across_separate_invocations(tmp_path: Path) -> None:
    store = tmp_path / "store"
    breakpoint_ = ("--interrupt-before", "pay")
    first = ok_json(
        "run", EXPENSE, "--run-id", "e1", "--input", '{"employee": "ada", "amount": 120}',
        *breakpoint_, store=store,
    )  # fmt: skip
    assert first["status"] == "paused"
    assert first["reason"] == {"kind": "interrupt", "step_id": "approve"}
    [pending] = first["interrupts"]
    assert pending["step_id"] == "approve"
    assert pending["payload"]["amount"] == 120

    second = ok_json(
        "resume", EXPENSE, "e1", "--value", '{"approved": true, "by": "grace"}', *breakpoint_,
        store=store,
    )  # fmt: skip
    assert second["reason"] == {"kind": "before", "step_id": "pay"}
    assert second["interrupts"] == []
    shown = ok_json("show", "e1", store=store)
    assert set(shown) == {
        "workflow", "run_id", "status", "super_step", "values", "interrupts", "failure", "edits",
        "reason",
    }  # fmt: skip
    assert (shown["failure"], shown["edits"], shown["reason"]) == (None, [], None)
    assert (shown["workflow"], shown["run_id"], shown["status"]) == ("expense", "e1", "paused")
    assert shown["values"]["paid"] is None

    last = ok_json("resume", EXPENSE, "e1", "--continue", *breakpoint_, store=store)
    assert (last["status"], last["reason"], last["values"]["paid"]) == ("done", None, 120)
    assert ok_json("runs", store=store) == [
        {"workflow": "expense", "run_id": "e1", "status": "done", "super_step": 3,
         "label": "layer:3", "interrupts": 0},
    ]  # fmt: skip
    labels = [m["label"] for m in ok_json("history", "e1", store=store)]
    assert labels[:3] == ["input", "layer:1", "interrupt:approve"]
    assert labels[-1] == "layer:3"
    assert "before:pay" in labels


def test_the_printed_hint_is_the_command_that_answers(tmp_path: Path) -> None:
    store = tmp_path / "store"
    out = ok("run", REVIEW, "--run-id", "r1", "--input", '{"document": "memo"}', store=store)
    assert "2 interrupt(s)" in out
    [hint] = [line for line in out.splitlines() if line.startswith("go on with: ")]
    words = shlex.split(hint.removeprefix("go on with: "))
    assert words[0] == "pausegraph"
    assert words.count("--answer") == 2
    words = [w.replace("=JSON", '={"ok": true}') for w in words[1:]]
    assert ok(*words, store=store).startswith("run r1 of workflow 'review' is done")
    shown = ok_json("show", "r1", store=store)
    assert shown["values"]["verdict"] == "published"


def test_answering_one_interrupt_by_id_leaves_the_other_pending(tmp_path: Path) -> None:
    store = tmp_path / "store"
    first = ok_json("run", REVIEW, "--run-id", "r1", "--input", '{"document": "memo"}', store=store)
    legal, editor = (i["id"] for i in first["interrupts"])
    second = ok_json("resume", REVIEW, "r1", "--answer", f'{legal}={{"ok": true}}', store=store)
    assert [i["id"] for i in second["interrupts"]] == [editor]
    shown = ok("show", "r1", store=store)
    assert editor in shown
    assert legal not in shown
    assert shown.endswith("resume WORKFLOW r1 --value JSON\n")
    third = ok_json("resume", REVIEW, "r1", "--answer", f'{editor}={{"ok": false}}', store=store)
    assert third["values"]["verdict"] == "sent back"


def test_interactive_reads_one_json_line_per_interrupt_and_empty_continues(tmp_path: Path) -> None:
    store = tmp_path / "store"
    review = ok_json(
        "run", REVIEW, "--run-id", "r1", "--input", '{"document": "memo"}', "--interactive",
        store=store, stdin='{"ok": true}\n{"ok": false, "why": "typos"}\n',
    )  # fmt: skip
    assert review["status"] == "done"
    assert review["values"]["reviews"] == {
        "legal": {"ok": True},
        "editor": {"ok": False, "why": "typos"},
    }
    out = ok(
        "run", EXPENSE, "--run-id", "e1", "--input", '{"employee": "ada", "amount": 500}',
        "--interrupt-before", "pay", "--interactive", store=store, stdin='{"approved": true}\n\n',
    )  # fmt: skip
    assert "breakpoint before step 'pay'" in out
    assert "is done" in out
    assert ok_json("show", "e1", store=store)["values"]["paid"] == 500


def test_interactive_end_of_input_leaves_the_run_paused(tmp_path: Path) -> None:
    store = tmp_path / "store"
    out = ok_json(
        "run", REVIEW, "--run-id", "r1", "--input", '{"document": "memo"}', "--interactive",
        store=store, stdin='{"ok": true}\n',
    )  # fmt: skip
    assert out["status"] == "paused"
    assert [i["step_id"] for i in out["interrupts"]] == ["editor"]
    assert ok_json("show", "r1", store=store)["status"] == "paused"
    text = ok("run", REVIEW, "--run-id", "r2", "--interactive", store=store, stdin="")
    assert text.count("2 interrupt(s) wait for an answer") == 1
    assert text.splitlines()[-1].startswith("end of input: the run stays paused; go on with: ")


def test_an_effect_runs_once_across_cold_resumes_in_new_processes(tmp_path: Path) -> None:
    store, charges = tmp_path / "store", tmp_path / "charges.txt"
    env = {"INTERVIEW_CHARGES": str(charges)}
    out = ok_json(
        "run", INTERVIEW, "--run-id", "i1", "--input", '{"candidate": "ada"}', store=store, env=env
    )
    for answer in ('"pro"', '"4000 0000 0000 0077"', '"no"'):
        assert out["status"] == "paused"
        out = ok_json("resume", INTERVIEW, "i1", "--value", answer, store=store, env=env)
    assert out["status"] == "done"
    assert out["values"]["receipt"] == {"charge": "ch-0077-25", "amount": 25}
    assert charges.read_text().splitlines() == ["charged 25 to card ending 0077"]


# --- bad input ------------------------------------------------------------------


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with run 'r1' (review, two pending interrupts) and 'shared' in two workflows."""
    store = tmp_path_factory.mktemp("cli") / "store"
    ok("run", REVIEW, "--run-id", "r1", "--input", '{"document": "memo"}', store=store)
    ok("run", REVIEW, "--run-id", "shared", "--input", '{"document": "memo"}', store=store)
    ok(
        "run",
        EXPENSE,
        "--run-id",
        "shared",
        "--input",
        '{"employee": "bo", "amount": 1}',
        store=store,
    )
    return store


BAD = [
    pytest.param(2, [], id="no-command"),
    pytest.param(2, ["fly"], id="unknown-command"),
    pytest.param(2, ["run", f"{EXAMPLES}/expense.py"], id="workflow-without-attribute"),
    pytest.param(1, ["run", "no_such_module_here:graph"], id="unimportable-module"),
    pytest.param(1, ["run", f"{EXAMPLES}/nope.py:graph"], id="missing-file"),
    pytest.param(1, ["run", f"{EXAMPLES}/expense.py:nope"], id="missing-attribute"),
    pytest.param(1, ["run", f"{EXAMPLES}/expense.py:main"], id="attribute-not-a-graph"),
    pytest.param(2, ["run", EXPENSE, "--input", "{amount: 1}"], id="input-invalid-json"),
    pytest.param(2, ["run", EXPENSE, "--input", "[1]"], id="input-not-an-object"),
    pytest.param(1, ["run", EXPENSE, "--input", '{"nochannel": 1}'], id="input-unknown-channel"),
    pytest.param(1, ["run", EXPENSE, "--interrupt-before", "nostep"], id="unknown-breakpoint"),
    pytest.param(1, ["run", REVIEW, "--run-id", "r1"], id="run-on-paused-run"),
    pytest.param(1, ["resume", REVIEW, "nosuchrun", "--continue"], id="resume-unknown-run"),
    pytest.param(2, ["resume", REVIEW, "r1"], id="resume-without-command"),
    pytest.param(2, ["resume", REVIEW, "r1", "--value", "{nope"], id="value-invalid-json"),
    pytest.param(1, ["resume", REVIEW, "r1", "--value", "1"], id="value-with-two-pending"),
    pytest.param(2, ["resume", REVIEW, "r1", "--answer", "2.1.0"], id="answer-without-json"),
    pytest.param(1, ["resume", REVIEW, "r1", "--answer", "9.9.9=1"], id="unknown-interrupt-id"),
    pytest.param(1, ["resume", REVIEW, "r1", "--continue"], id="continue-at-interrupt"),
    pytest.param(1, ["resume", REVIEW, "r1", "--goto", "nostep"], id="goto-unknown-step"),
    pytest.param(1, ["resume", REVIEW, "r1", "--update", '{"x": 1}'], id="update-unknown-channel"),
    pytest.param(1, ["resume", EXPENSE, "r1", "--continue"], id="run-of-another-workflow"),
    pytest.param(1, ["show", "nosuchrun"], id="show-unknown-run"),
    pytest.param(1, ["history", "nosuchrun"], id="history-unknown-run"),
    pytest.param(1, ["show", "shared"], id="show-ambiguous-run"),
    pytest.param(1, ["history", "r1", "--workflow", "expense"], id="history-wrong-workflow"),
]


@pytest.mark.parametrize(("code", "args"), BAD)
def test_bad_input_is_one_line_on_stderr_and_leaves_the_store_alone(
    populated: Path, code: int, args: list[str]
) -> None:
    before = tree_digest(populated)
    done = pg(*args, store=populated)
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith("pausegraph: error: ")
    assert done.stdout == ""
    assert tree_digest(populated) == before


def test_an_ambiguous_run_id_is_shown_with_workflow(populated: Path) -> None:
    done = pg("show", "shared", store=populated)
    assert "--workflow NAME" in done.stderr
    assert "'expense', 'review'" in done.stderr
    shown = ok_json("show", "shared", "--workflow", "review", store=populated)
    assert (shown["workflow"], len(shown["interrupts"])) == ("review", 2)


@pytest.mark.parametrize("kind", ["file", "foreign-dir", "missing"])
def test_a_store_that_is_not_a_store_is_refused_and_untouched(tmp_path: Path, kind: str) -> None:
    store = tmp_path / "store"
    if kind == "file":
        store.write_text("not a store")
    elif kind == "foreign-dir":
        store.mkdir()
        (store / "notes.txt").write_text("mine")
    before = tree_digest(store)
    done = pg("show", "r1", store=store)
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert line.startswith("pausegraph: error: ")
    assert tree_digest(store) == before
    assert store.exists() == (kind != "missing")


def test_runs_on_an_empty_store_lists_nothing(tmp_path: Path) -> None:
    assert ok_json("runs", store=tmp_path / "none") == []
    assert not (tmp_path / "none").exists()


# --- what show/runs compute from a checkpoint alone (in process) -------------------


def _graph() -> Graph:
    def ask(state: Any) -> Any:
        yield from ()
        return {"log": "asked"}

    return (
        Graph("g", {"log": Append(), "blob": LastWriteWins()})
        .step("a", ask)
        .step("b", lambda state: {"log": "b"})
        .edge("a", "b")
    )


def test_status_from_a_checkpoint_matches_the_runner() -> None:
    store = MemoryCheckpointer()
    runner = Runner(_graph(), store, interrupt_after={"b"})
    outcome = runner.run("x", {"blob": b"\x00\x01"})
    assert isinstance(outcome, Paused)
    latest = store.latest("g", "x")
    assert latest is not None
    assert status_of(latest) == runner.state("x").status == "paused"
    assert pending_of(latest) == ()
    runner.resume("x", Continue())
    latest = store.latest("g", "x")
    assert latest is not None
    assert status_of(latest) == runner.state("x").status == "done"


def test_a_run_that_died_before_its_owed_after_pause_is_queued_for_every_reader() -> None:
    store, died = MemoryCheckpointer(), MemoryCheckpointer()
    Runner(_graph(), store, interrupt_after={"b"}).run("x")
    # copy all but the After pause, as a process that died just before it leaves the store
    for meta in store.list("g", "x")[:-1]:
        checkpoint = store.load("g", "x", meta.seq)
        assert checkpoint is not None
        died.save(checkpoint)
    layer = died.latest("g", "x")
    assert layer is not None
    assert layer.label == "layer:2"
    assert status_of(layer) == Runner(_graph(), died).state("x").status == "queued"
    assert Runner(_graph(), died).run("x") == Paused(2, After("b"))


def test_bytes_are_printed_as_marked_base64_text() -> None:
    value = {"blob": b"\x00\x01", 1: [b"a"]}
    assert jsonable(value) == {"blob": "<bytes base64:AAE=>", 1: ["<bytes base64:YQ==>"]}
    assert json.loads(json.dumps(jsonable(value))) == {
        "blob": "<bytes base64:AAE=>",
        "1": ["<bytes base64:YQ==>"],
    }


@pytest.mark.parametrize(
    "args",
    [
        ["run", EXPENSE, "--input", '{"no_such_channel": 1}'],
        ["run", EXPENSE, "--run-id", ""],
        ["run", EXPENSE, "--run-id", "a\udcffb"],  # a raw byte no UTF-8 reads
    ],
    ids=["undeclared-channel", "empty-run-id", "lone-surrogate"],
)
@pytest.mark.parametrize("url", ["dir", "sqlite"])
def test_a_run_refused_for_its_input_or_id_makes_no_store(
    tmp_path: Path, args: list[str], url: str
) -> None:
    """SPEC: bad input never changes the store, and making one is a change."""
    where = tmp_path / ("store" if url == "dir" else "runs.db")
    words = ["--store", str(where) if url == "dir" else f"sqlite:{where}", *args]
    done = pg(*words)
    assert done.returncode == 1, done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith("pausegraph: error: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_run_whose_input_a_reducer_refuses_makes_no_store_and_says_so(tmp_path: Path) -> None:
    flow = tmp_path / "adding.py"
    flow.write_text(
        "from pausegraph import Graph, Reducer\n"
        "graph = Graph('adding', {'n': Reducer(lambda cur, new: cur + new, 0)})"
        ".step('a', lambda state: None)\n"
    )
    store = tmp_path / "store"
    done = pg("run", f"{flow}:graph", "--input", '{"n": "x"}', "--run-id", "r1", store=store)
    assert done.returncode == 1, done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith("pausegraph: error: ")
    assert "the reducer of channel 'n' raised TypeError" in line
    assert "retries it" not in line  # nothing was saved: there is no run to retry
    assert not store.exists()
