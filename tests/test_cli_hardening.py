"""The ``pausegraph`` command at its edges: pipes, terminals, odd run ids, logging, messages."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_cli import EXPENSE, PG, REVIEW, ok, ok_json, pg, tree_digest

import pausegraph
from pausegraph import FileCheckpointer, Resume, ResumeError, Runner
from pausegraph._cli_render import cli_terms, shell_word
from pausegraph.checkpointers.file import _log_name
from pausegraph.cli import PIPE_CLOSED, load_graph, main

# Python calls the engine's messages name, which the command line must never print.
PYTHON_CALLS = ("Resume(", "Continue()", "Goto(", "Update(", "run(", "resume(")

FLAKY = """\
from pausegraph import Graph, Interrupt, LastWriteWins


def ask(state):
    answer = yield Interrupt("go?")
    return {"answer": answer}


def boom(state):
    if state["answer"] == "fail":
        raise ValueError("the printer is on fire")
    return {"result": "printed"}


graph = Graph("flaky", {"answer": LastWriteWins(), "result": LastWriteWins()})
graph.step("ask", ask).step("boom", boom).edge("ask", "boom")
"""


@pytest.fixture
def flaky(tmp_path: Path) -> str:
    path = tmp_path / "flaky_flow.py"
    path.write_text(FLAKY)
    return f"{path}:graph"


# --- a closed pipe ----------------------------------------------------------------


@pytest.mark.parametrize("args", [["show", "r1"], ["runs"], ["history", "r1"], ["--version"]])
def test_a_closed_stdout_ends_quietly_with_141(tmp_path: Path, args: list[str]) -> None:
    store = tmp_path / "store"
    ok("run", REVIEW, "--run-id", "r1", "--input", '{"document": "memo"}', store=store)
    proc = subprocess.Popen(
        [str(PG), "--store", str(store), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    proc.stdout.close()  # the reader is gone before the command writes a byte
    _, err = proc.communicate(timeout=60)
    assert err == b""
    assert proc.returncode == PIPE_CLOSED


def test_head_of_a_long_listing_is_quiet(tmp_path: Path) -> None:
    store = tmp_path / "store"
    runner = Runner(load_graph(REVIEW), FileCheckpointer(store))
    for k in range(300):
        runner.run(f"run-{k:04d}-{'x' * 40}", {"document": "memo"})
    done = subprocess.run(
        ["bash", "-c", f"'{PG}' --store '{store}' runs | head -1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.stderr == ""
    assert done.stdout.startswith("WORKFLOW")


@pytest.fixture(scope="module")
def big_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("big") / "store"
    runner = Runner(load_graph(REVIEW), FileCheckpointer(store))
    big = "x" * 100_000
    for k in range(3):
        runner.run(f"big-{k}", {"document": big})
    for k in range(150):
        runner.run(f"run-{k:04d}-{'y' * 2000}", {"document": "memo"})
    runner.resume("big-0", Resume(answers={"2.1.0": {"ok": True, "note": big}}))
    return store


@pytest.mark.parametrize("args", [["runs"], ["show", "big-0"], ["history", "big-0"], ["inbox"]])
def test_a_pipe_closed_in_the_middle_of_a_big_output_ends_with_141(
    big_store: Path, args: list[str]
) -> None:
    # Each output is far bigger than a pipe holds, so the reader goes away in the
    # middle of one large write (buffered stdout used to drop the rest silently, exit 0).
    store = big_store
    done = subprocess.run(
        ["bash", "-c", f"'{PG}' --store '{store}' {' '.join(args)} | head -c 10 >/dev/null; "
         'echo "${PIPESTATUS[0]}"'],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    assert done.stderr == ""
    assert done.stdout == f"{PIPE_CLOSED}\n"


# --- --interactive --------------------------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_interactive_at_a_terminal_asks_again_after_a_line_that_is_not_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "store"
    typed = 'yes please\n{"ok": true}\n[1, 2\n{"ok": false}\n'
    monkeypatch.setattr(sys, "stdin", _Terminal(typed))
    args = ["--store", str(store), "run", REVIEW, "--run-id", "r1", "--interactive"]
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert "is done" in out
    assert err.count("is not valid JSON") == 2
    assert err.count("try again") == 2
    assert err.count("answer 2.1.0 (step 'legal') as JSON: ") == 2
    assert ok_json("show", "r1", store=store)["values"]["reviews"] == {
        "legal": {"ok": True},
        "editor": {"ok": False},
    }


def test_interactive_at_a_terminal_asks_again_for_edits_that_are_not_an_object(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "store"
    monkeypatch.setattr(sys, "stdin", _Terminal('{"approved": true}\n[1]\n\n'))
    args = ["--store", str(store), "run", EXPENSE, "--run-id", "e1", "--interactive"]
    args += ["--input", '{"employee": "ada", "amount": 500}', "--interrupt-before", "pay"]
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert "is done" in out
    assert "must be a JSON object" in err
    assert ok_json("show", "e1", store=store)["values"]["paid"] == 500


def test_interactive_from_a_pipe_fails_on_a_line_that_is_not_json(tmp_path: Path) -> None:
    store = tmp_path / "store"
    ok("run", REVIEW, "--run-id", "r1", "--input", '{"document": "memo"}', store=store)
    before = tree_digest(store)
    done = pg("run", REVIEW, "--run-id", "r1", "--interactive", store=store, stdin="oops\n")
    assert done.returncode == 1  # a paused run cannot be run again: nothing read
    done = pg(
        "run", REVIEW, "--run-id", "r2", "--interactive", store=store, stdin='{"ok": 1}\noops\n'
    )
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert line.startswith("pausegraph: error: the answer to '2.2.0' is not valid JSON")
    shown = ok_json("show", "r2", store=store)
    assert (shown["status"], len(shown["interrupts"])) == ("paused", 2)  # nothing was sent
    assert tree_digest(store)[next(iter(before))] == before[next(iter(before))]


# --- messages in command-line terms ---------------------------------------------------


@pytest.fixture(scope="module")
def varied(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """r1: review, two interrupts; d1: review, done; e1: expense, at a breakpoint before pay."""
    store = tmp_path_factory.mktemp("terms") / "store"
    ok("run", REVIEW, "--run-id", "r1", "--input", '{"document": "memo"}', store=store)
    ok("run", REVIEW, "--run-id", "d1", "--input", '{"document": "memo"}', store=store)
    ok(
        "resume", REVIEW, "d1", "--answer", '2.1.0={"ok": true}', "--answer", '2.2.0={"ok": true}',
        store=store,
    )  # fmt: skip
    ok(
        "run", EXPENSE, "--run-id", "e1", "--input", '{"employee": "ada", "amount": 1}',
        "--interrupt-before", "pay", store=store,
    )  # fmt: skip
    return store


ERRORS = [
    ["run", REVIEW, "--run-id", "r1"],
    ["run", REVIEW, "--run-id", "r1", "--input", '{"document": "other"}'],
    ["run", REVIEW, "--input", '{"nochannel": 1}'],
    ["resume", REVIEW, "nosuchrun", "--continue"],
    ["resume", REVIEW, "r1", "--value", "1"],
    ["resume", REVIEW, "r1", "--continue"],
    ["resume", REVIEW, "r1", "--answer", "9.9.9=1"],
    ["resume", REVIEW, "r1", "--goto", "nostep"],
    ["resume", REVIEW, "r1", "--update", '{"x": 1}'],
    ["resume", REVIEW, "r1", "--answer", "2.1.0=1", "--update", '{"x": 1}'],
    ["resume", REVIEW, "r1", "--goto", "draft", "--update", '{"x": 1}'],
    ["resume", REVIEW, "r1", "--continue", "--update", "{}"],
    ["resume", REVIEW, "r1"],
    ["resume", REVIEW, "d1", "--continue"],
    ["resume", REVIEW, "d1", "--value", "1"],
    ["resume", REVIEW, "d1", "--update", '{"verdict": "x"}'],
    ["resume", EXPENSE, "e1", "--value", "1", "--interrupt-before", "pay"],
    ["resume", EXPENSE, "e1", "--answer", "2.1.0=1", "--interrupt-before", "pay"],
    ["resume", EXPENSE, "r1", "--continue"],
    ["resume", EXPENSE, "e1", "--value", "1"],
    ["show", "nosuchrun"],
    ["history", "r1", "--workflow", "expense"],
]


@pytest.mark.parametrize("args", ERRORS, ids=lambda a: " ".join(a[:1] + a[2:]))
def test_no_error_names_a_python_call(varied: Path, args: list[str]) -> None:
    done = pg(*args, store=varied)
    for call in PYTHON_CALLS:
        assert call not in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_each_python_call_of_the_engine_has_a_command_line_term() -> None:
    spec, run_id = "wf.py:graph", "r1"
    cases = {
        "use Resume(value) or Resume(answers=...)": "use --value JSON or --answer ID=JSON",
        "with Resume(answers={id: value, ...})": "with --answer ID=JSON",
        "Continue() has nothing to go on with; Goto(step_id) re-opens it": (
            "--continue has nothing to go on with; --goto STEP re-opens it"
        ),
        "Resume(value=1, answers=None, update=None) has": "--value JSON has",
        "Resume(value=None, answers={'a': 1}, update=None) has": "--answer ID=JSON has",
        "Resume(value=1) has": "--value JSON has",
        "Resume(value='answers=yes') has": "--value JSON has",
        "Resume(answers={'a': 1}) has": "--answer ID=JSON has",
        "Update(edits={'a': (1)}) has": "--update JSON has",
        "Goto('x'): no such step": "--goto 'x': no such step",
        "Goto(update=...) names": "--update JSON names",
        "(Before('pay') at super-step 2)": "(before step 'pay' at super-step 2)",
        "call run(run_id) to recover it": (
            "use `pausegraph run wf.py:graph --run-id r1` to recover it"
        ),
        "start it with run(run_id, input)": (
            "start it with `pausegraph run wf.py:graph --run-id r1 --input JSON`"
        ),
        "If that process died, run('r1') recovers": (
            "If that process died, `pausegraph run wf.py:graph --run-id r1` recovers"
        ),
        "use resume(run_id, command) to go on": (
            "use `pausegraph resume wf.py:graph r1 OPTION` (OPTION: --value JSON, "
            "--answer ID=JSON, --continue, --update JSON or --goto STEP) to go on"
        ),
    }
    for engine, cli in cases.items():
        assert cli_terms(engine, workflow=spec, run_id=run_id) == cli
    dashed = cli_terms("run(run_id)", workflow=spec, run_id="-x")
    assert dashed == "`pausegraph run wf.py:graph --run-id=-x`"


# --- resume --update with another command ------------------------------------------------


def test_goto_with_update_writes_the_edits_and_runs_again(tmp_path: Path) -> None:
    store = tmp_path / "store"
    ok("run", REVIEW, "--run-id", "r1", "--input", '{"document": "memo"}', store=store)
    out = ok_json(
        "resume", REVIEW, "r1", "--goto", "draft", "--update", '{"document": "memo v2"}',
        store=store,
    )  # fmt: skip
    assert out["status"] == "paused"
    assert out["values"]["draft"] == "memo v2 (draft 1)"


def test_answers_with_update_pass_the_update(tmp_path: Path) -> None:
    store = tmp_path / "store"
    ok("run", REVIEW, "--run-id", "r1", "--input", '{"document": "memo"}', store=store)
    out = ok_json(
        "resume", REVIEW, "r1", "--answer", '2.1.0={"ok": true}', "--answer", '2.2.0={"ok": true}',
        "--update", '{"document": "edited"}', store=store,
    )  # fmt: skip
    assert (out["status"], out["values"]["document"]) == ("done", "edited")


# --- odd run ids ------------------------------------------------------------------


def _run_hint(out: str, answer: str, store: Path) -> subprocess.CompletedProcess[str]:
    [hint] = [line for line in out.splitlines() if line.startswith("go on with: ")]
    command = hint.removeprefix("go on with: ").replace("JSON", answer)
    env = {**os.environ, "PATH": f"{PG.parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(
        ["bash", "-c", command],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=store.parent,
        check=False,
    )


@pytest.mark.parametrize("run_id", ["-x", "--value", "it's -1"])
def test_the_hint_for_an_odd_run_id_is_a_working_command(tmp_path: Path, run_id: str) -> None:
    store = tmp_path / "store"
    out = ok("run", EXPENSE, f"--run-id={run_id}", "--input", '{"employee": "a", "amount": 500}',
             store=store)  # fmt: skip
    assert len([line for line in out.splitlines() if "go on with" in line]) == 1
    done = _run_hint(out, """'{"approved": true}'""", store)
    assert done.returncode == 0, done.stderr
    assert "is done" in done.stdout
    shown = ok("show", "--workflow", "expense", "--", run_id, store=store)
    assert "status      done" in shown


def test_the_show_hint_for_a_dashed_run_id_puts_it_after_double_dash(tmp_path: Path) -> None:
    store = tmp_path / "store"
    ok("run", REVIEW, "--run-id=-r", "--input", '{"document": "memo"}', store=store)
    shown = ok("show", "--", "-r", store=store)
    assert shown.endswith(" resume --answer 2.1.0=JSON --answer 2.2.0=JSON -- WORKFLOW -r\n")


@pytest.mark.parametrize("run_id", [chr(0xD800), chr(0xDCFF), "ok" + chr(0xDC80)])
def test_a_run_id_with_a_lone_surrogate_is_refused_up_front(tmp_path: Path, run_id: str) -> None:
    # no JSON reply, web page or URL could carry it
    store = tmp_path / "store"
    runner = Runner(load_graph(REVIEW), FileCheckpointer(store))
    with pytest.raises(ResumeError, match=r"holds the lone surrogate"):
        runner.run(run_id, {"document": "memo"})
    assert runner.checkpointer.runs() == []
    if run_id == "\ud800":
        return  # no command line can carry it (only \udc80-\udcff stand for raw bytes)
    failed = pg("run", REVIEW, f"--run-id={run_id}", "--input", '{"document": "memo"}',
                store=store)  # fmt: skip
    assert failed.returncode != 0
    assert len(failed.stderr.strip().splitlines()) == 1
    assert "Traceback" not in failed.stderr
    assert FileCheckpointer(store).runs() == []


@pytest.mark.parametrize("run_id", ["a\nb", "tab\there", "e\x1bf", "nul\x00", "\xa0", "\u2028"])
def test_a_run_id_with_control_characters_is_stored_listed_and_shown_quoted(
    tmp_path: Path, run_id: str
) -> None:
    """SPEC: any run id is stored safely. One the terminal cannot show as it is is shown
    quoted, so it can neither split a table row nor pass for another id."""
    store = tmp_path / "store"
    runner = Runner(load_graph(REVIEW), FileCheckpointer(store))
    runner.run(run_id, {"document": "memo"})
    assert Runner(load_graph(REVIEW), FileCheckpointer(store)).state(run_id).status == "paused"
    assert ("review", run_id) in FileCheckpointer(store).runs()
    listed = ok("runs", store=store)
    assert repr(run_id) in listed
    assert len(listed.splitlines()) == 2  # the header and one row
    rows = json.loads(ok("runs", "--json", store=store))
    assert [row["run_id"] for row in rows] == [run_id]


def test_one_damaged_run_does_not_hide_the_others(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "store"
    runner = Runner(load_graph(REVIEW), FileCheckpointer(store))
    for run_id in ("bad", "good"):
        runner.run(run_id, {"document": "memo"})
    log = store / "runs" / _log_name("review", "bad")
    data = bytearray(log.read_bytes())
    data[10] ^= 0xFF  # inside the log's header record
    log.write_bytes(bytes(data))
    (store / "touched").unlink()  # no journal: the listing reads every log again
    assert main(["--store", str(store), "runs"]) == 1
    out, err = capsys.readouterr()
    assert [line.split()[1] for line in out.splitlines()] == ["RUN", "good"]
    assert err.startswith(f"pausegraph: error: the log {log.name} cannot be read: ")


# --- --version, logging, step errors ---------------------------------------------------


def test_version_prints_the_package_version() -> None:
    done = pg("--version")
    assert (done.returncode, done.stdout) == (0, f"pausegraph {pausegraph.__version__}\n")


@pytest.mark.parametrize("module", ["pausegraph", "pausegraph.cli"])
def test_python_m_runs_the_command(module: str, tmp_path: Path) -> None:
    words = [sys.executable, "-m", module]
    done = subprocess.run([*words, "--version"], capture_output=True, text=True, check=False)
    assert (done.returncode, done.stdout) == (0, f"pausegraph {pausegraph.__version__}\n")
    store = tmp_path / "store"
    done = subprocess.run(
        [*words, "--store", str(store), "run", REVIEW, "--input", '{"document": "d"}', "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "paused"


def test_graph_takes_store_after_the_command_and_opens_none(tmp_path: Path) -> None:
    store = tmp_path / "store"
    done = pg("graph", REVIEW, "--store", str(store))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("flowchart")
    assert not store.exists()


def test_a_failing_step_is_one_line_naming_run_step_and_error(tmp_path: Path, flaky: str) -> None:
    store = tmp_path / "store"
    ok("run", flaky, "--run-id", "f1", store=store)
    done = pg("resume", flaky, "f1", "--value", '"fail"', store=store)
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert re.match(r"^pausegraph: error: run 'f1' of workflow 'flaky' failed: StepError: ", line)
    assert "step 'boom'" in line
    assert "ValueError: the printer is on fire" in line
    assert f"`pausegraph --store {store} run {flaky} --run-id f1` retries it" in line
    for call in PYTHON_CALLS:
        assert call not in line


@pytest.mark.parametrize("where", ["before", "after"])
def test_v_adds_the_traceback_of_a_step_error(tmp_path: Path, flaky: str, where: str) -> None:
    store = tmp_path / "store"
    ok("run", flaky, "--run-id", "f1", store=store)
    words = ["resume", flaky, "f1", "--value", '"fail"']
    done = pg(*(["-v", *words] if where == "before" else [*words, "-v"]), store=store)
    assert done.returncode == 1
    assert "Traceback" in done.stderr
    assert 'raise ValueError("the printer is on fire")' in done.stderr
    assert done.stderr.splitlines()[-1].startswith("pausegraph: error: run 'f1'")


def _level_after(args: list[str]) -> int:
    assert main(["--store", "/nonexistent/store", *args, "runs", "--json"]) == 0
    logger = logging.getLogger("pausegraph")
    [handler] = [h for h in logger.handlers if h.get_name() == "pausegraph-cli"]
    assert isinstance(handler, logging.StreamHandler)
    return logger.level


@pytest.mark.parametrize(
    ("args", "level"),
    [([], 30), (["-v"], 20), (["-vv"], 10), (["-v", "-v"], 10), (["-q"], 40), (["-v", "-q"], 30)],
)
def test_v_and_q_set_one_stderr_handler_on_the_pausegraph_logger(
    args: list[str], level: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _level_after(args) == level
    assert _level_after(args) == level  # a second main() replaces its handler
    capsys.readouterr()


def test_shell_words_round_trip_through_bash() -> None:
    words = ["-x", "a\nb", "it's", "caf\u00e9", "\x85", "back\\slash", "\U0001f600", "\udcff"]
    script = 'for w in "$@"; do printf \'%s\\0\' "$w"; done'
    command = f"set -- {' '.join(shell_word(w) for w in words)}; {script}"
    done = subprocess.run(
        ["bash", "-c", command],
        capture_output=True,
        timeout=60,
        check=True,
        env={**os.environ, "LC_ALL": "C.UTF-8"},
    )
    got = done.stdout.decode("utf-8", "surrogateescape").split("\0")[:-1]
    assert got == words


# --- JSON has no NaN -------------------------------------------------------------------


def _paused_review(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A file store holding review run r1, paused at its two reviewers; and its digest."""
    store = tmp_path / "store"
    ok("run", REVIEW, "--run-id", "r1", "--input", '{"document": "memo"}', store=store)
    return store, tree_digest(store)


def test_nan_and_infinities_are_refused_as_json_and_change_nothing(tmp_path: Path) -> None:
    store, before = _paused_review(tmp_path)
    for word in ("NaN", "Infinity", "-Infinity", "1e400"):
        done = pg("resume", REVIEW, "r1", "--answer", f"2.1.0={word}", store=store)
        assert done.returncode == 2, done.stderr
        assert f"{word} is " in done.stderr
        assert "JSON number" in done.stderr
        started = pg("run", REVIEW, "--run-id", "r2", "--input", f'{{"document": {word}}}',
                     store=store)  # fmt: skip
        assert started.returncode == 2, started.stderr
    assert tree_digest(store) == before


def test_a_nan_saved_from_python_is_printed_as_valid_json_with_a_marker(tmp_path: Path) -> None:
    store = tmp_path / "store"
    ok("run", REVIEW, "--run-id", "r1", "--input", '{"document": "memo"}', store=store)
    graph = load_graph(REVIEW)
    runner = Runner(graph, FileCheckpointer(store))
    first, second = (i.id for i in runner.state("r1").interrupts)
    nan, inf = {"ok": True, "score": float("nan")}, {"ok": True, "score": float("inf")}
    runner.resume("r1", Resume(answers={first: nan, second: inf}))
    text = ok("show", "r1", "--json", store=store)  # json.loads would take a bare NaN
    assert "NaN" not in text
    assert "Infinity" not in text
    scores = sorted(r["score"] for r in json.loads(text)["values"]["reviews"].values())
    assert scores == ["<float inf>", "<float nan>"]
    assert "NaN" not in ok("history", "r1", "--json", store=store)


def test_json_nested_too_deeply_is_one_short_usage_line_and_changes_nothing(
    tmp_path: Path,
) -> None:
    store, before = _paused_review(tmp_path)
    deep = "[" * 30_000 + "]" * 30_000
    done = pg("resume", REVIEW, "r1", "--answer", f"2.1.0={deep}", store=store)
    assert done.returncode == 2, done.stderr
    assert "nested too deeply" in done.stderr
    assert "bug" not in done.stderr
    assert len(done.stderr) < 600
    assert tree_digest(store) == before


def test_an_answer_no_store_can_keep_is_refused_without_calling_the_run_failed(
    tmp_path: Path,
) -> None:
    store, before = _paused_review(tmp_path)
    done = pg("resume", REVIEW, "r1", "--answer", '2.1.0="\\ud800"', store=store)
    assert done.returncode == 1, done.stderr
    assert "SerializationError" in done.stderr
    assert "nothing was saved (run 'r1' is paused)" in done.stderr
    assert "failed" not in done.stderr
    assert "retries it" not in done.stderr
    assert tree_digest(store) == before


@pytest.mark.parametrize("spelling", ["file", "module"])
def test_a_workflow_that_exits_while_imported_is_one_line_and_a_failure(
    tmp_path: Path, spelling: str
) -> None:
    # SPEC, Command line: a workflow that cannot be imported prints one clear line on
    # stderr and exits non-zero; a module calling sys.exit(3) did neither (exit 3, silent)
    (tmp_path / "exits_on_import.py").write_text("import sys\nsys.exit(3)\n")
    workflow = (
        f"{tmp_path / 'exits_on_import.py'}:graph"
        if spelling == "file"
        else "exits_on_import:graph"
    )
    store = tmp_path / "store"
    done = pg("run", workflow, "--run-id", "r1", store=store, env={"PYTHONPATH": str(tmp_path)})
    assert done.returncode == 1, (done.returncode, done.stderr)
    assert done.stderr.count("\n") == 1
    assert "cannot import workflow" in done.stderr
    assert "sys.exit(3)" in done.stderr
    assert "Traceback" not in done.stderr
    assert not store.exists() or tree_digest(store) == {}
