"""SPEC rules no other test pinned, found by reading SPEC.md sentence by sentence.

Each test is named for the SPEC line it covers (``test_l<line>_...``, SPEC.md
as of 2026-12-01).
"""

from __future__ import annotations

import itertools
import json
import socket
import sys
import textwrap
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

import pausegraph
from pausegraph import (
    After,
    Append,
    Before,
    ConflictError,
    Continue,
    Done,
    Effect,
    FileCheckpointer,
    Graph,
    Interrupt,
    LastWriteWins,
    MemoryCheckpointer,
    Paused,
    Resume,
    ResumeError,
    Runner,
    StepError,
    Worker,
)
from pausegraph.cli import main as cli_main

LOCAL = "http://127.0.0.1"


class Clock:
    def __init__(self, now: int = 1_700_000_000_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def writer(name: str):
    def step(state):
        return {"log": name}

    return step


def chain(*names: str, graph_name: str = "g") -> Graph:
    graph = Graph(graph_name, {"log": Append()})
    for name in names:
        graph.step(name, writer(name))
    for src, dst in itertools.pairwise(names):
        graph.edge(src, dst)
    return graph


# --- L23: Runner(graph, None): a fresh MemoryCheckpointer ---------------------------------


def test_l23_runner_without_a_checkpointer_gets_its_own_fresh_memory_store() -> None:
    graph = chain("a")
    first, second = Runner(graph), Runner(graph)
    assert isinstance(first.checkpointer, MemoryCheckpointer)
    assert isinstance(second.checkpointer, MemoryCheckpointer)
    assert first.checkpointer is not second.checkpointer
    first.run("r")
    with pytest.raises(ResumeError):
        second.state("r")  # not shared: the other runner's store has no run "r"
    assert list(second.checkpointer.runs()) == []


# --- L96: anything else yielded: a StepError naming the step and the yielded object --------


def test_l96_yielding_a_non_instruction_is_a_step_error_naming_the_object() -> None:
    class Marker:
        def __repr__(self) -> str:
            return "<Marker-7f3a>"

    def gen(state):
        yield Marker()
        return {"log": "never"}

    runner = Runner(Graph("g", {"log": Append()}).step("odd_step", gen))
    with pytest.raises(StepError) as info:
        runner.run("r")
    assert "odd_step" in str(info.value)
    assert "<Marker-7f3a>" in str(info.value)


# --- L139-144: run on a crashed run claims it the same way (a `resume` checkpoint first) ---


def test_l144_run_on_a_crashed_run_first_saves_a_resume_claim_before_any_step() -> None:
    seen: list[tuple[str, Any]] = []

    class Watching(MemoryCheckpointer):
        def save(self, checkpoint: Any) -> Any:
            seen.append(("save", checkpoint.label))
            return super().save(checkpoint)

    def b(state):
        seen.append(("step", "b"))
        return {"log": "b"}

    graph = Graph("g", {"log": Append()}).step("a", writer("a")).step("b", b).edge("a", "b")
    source = MemoryCheckpointer()
    Runner(graph, source).run("r")
    died = Watching()
    for meta in source.list("g", "r")[:2]:  # input, layer:1: the process died in layer 2
        died.save(source.load("g", "r", meta.seq))
    seen.clear()
    runner = Runner(graph, died)
    assert runner.state("r").status == "queued"
    assert runner.run("r") == Done({"log": ["a", "b"]}, 2)
    assert seen[0] == ("save", "resume")  # the claim, before step code
    assert seen.index(("save", "resume")) < seen.index(("step", "b"))


# --- L169-172: breakpoints belong to the run; every later driver honours them -------------


def test_l171_a_runner_without_breakpoints_honours_the_runs_recorded_ones() -> None:
    store = MemoryCheckpointer()
    graph = chain("a", "b", "c", "d")
    assert Runner(graph, store, interrupt_before={"b"}, interrupt_after={"c"}).run("r") == (
        Paused(2, Before("b"))
    )
    plain = Runner(graph, store)  # no breakpoints of its own
    assert plain.resume("r", Continue()) == Paused(3, After("c"))
    assert plain.resume("r", Continue()) == Done({"log": ["a", "b", "c", "d"]}, 4)


def test_l171_a_runner_with_other_breakpoints_does_not_add_its_own_to_a_run() -> None:
    store = MemoryCheckpointer()
    graph = chain("a", "b", "c")
    assert Runner(graph, store).run("r") == Done({"log": ["a", "b", "c"]}, 3)
    Runner(graph, store).start("s")
    stops = Runner(graph, store, interrupt_before={"b"})
    assert stops.run("s") == Done({"log": ["a", "b", "c"]}, 3)  # started without breakpoints


def test_l171_start_records_breakpoints_and_a_worker_honours_them() -> None:
    store = MemoryCheckpointer()
    graph = chain("a", "b")
    info = Runner(graph, store, interrupt_before={"b"}).start("r")
    assert info.status == "queued"
    assert Worker(store, [chain("a", "b")]).poll() == 1
    reader = Runner(graph, store)
    assert reader.state("r").status == "paused"
    assert [m.label for m in reader.history("r")][-1] == "before:b"
    assert reader.state("r").values == {"log": ["a"]}


def test_l171_tick_honours_the_runs_recorded_breakpoints() -> None:
    clock = Clock()

    def nap(state):
        yield pausegraph.Sleep(10)
        return {"log": "nap"}

    graph = Graph("g", {"log": Append()}).step("nap", nap).step("b", writer("b")).edge("nap", "b")
    store = MemoryCheckpointer()
    paused = Runner(graph, store, interrupt_before={"b"}, clock=clock).run("r")
    assert isinstance(paused, Paused)
    clock.now += 10_000
    moved = Runner(graph, store, clock=clock).tick()
    assert moved == {"r": Paused(2, Before("b"))}


def test_l171_the_web_server_honours_the_runs_recorded_breakpoints() -> None:
    from starlette.testclient import TestClient

    from pausegraph.web import app

    def ask(state):
        return {"log": (yield Interrupt("q?"))}

    graph = Graph("web", {"log": Append()}).step("ask", ask).step("b", writer("b")).edge("ask", "b")
    store = MemoryCheckpointer()
    assert isinstance(Runner(graph, store, interrupt_before={"b"}).run("r"), Paused)
    with TestClient(app([graph], store, wait_s=5), base_url=LOCAL) as client:
        reply = client.post("/api/runs/web/r/resume", json={"value": "yes"})
        assert reply.status_code == 200, reply.text
        assert reply.json()["status"] == "paused"
    assert [m.label for m in store.list("web", "r")][-1] == "before:b"


# --- L298-300, L355-359: commands on a running run -----------------------------------------


def test_l298_every_command_on_a_running_run_is_a_conflict_error_naming_pid_host_since() -> None:
    inside, go_on = threading.Event(), threading.Event()
    called: list[str] = []

    def slow() -> str:
        inside.set()
        go_on.wait(10)
        return "paid"

    def pay(state):
        called.append("pay")
        return {"log": (yield Effect(slow))}

    graph = Graph("pay", {"log": Append()}).step("pay", pay)
    store = MemoryCheckpointer()
    driver = threading.Thread(target=Runner(graph, store).run, args=("r",))
    driver.start()
    try:
        assert inside.wait(10)
        other = Runner(graph, store)
        assert other.state("r").status == "running"
        before = other.history("r")
        calls = {
            "run": lambda: other.run("r"),
            "resume": lambda: other.resume("r", Continue()),
            "submit": lambda: other.submit("r", Continue()),
            "cancel": lambda: other.cancel("r"),
            "delete": lambda: other.delete("r"),
        }
        for name, call in calls.items():
            with pytest.raises(ConflictError) as info:
                call()
            message = str(info.value)
            host = socket.gethostname()
            assert str(__import__("os").getpid()) in message, (name, message)
            assert host in message, (name, message)
            assert "since" in message, (name, message)
        assert other.history("r") == before
        assert called == ["pay"]
    finally:
        go_on.set()
        driver.join(10)
    assert Runner(graph, store).state("r").status == "done"


def test_l358_submit_and_cancel_of_an_unknown_run_are_resume_errors() -> None:
    store = MemoryCheckpointer()
    runner = Runner(chain("a"), store)
    with pytest.raises(ResumeError):
        runner.submit("ghost", Continue())
    with pytest.raises(ResumeError):
        runner.cancel("ghost")
    with pytest.raises(ResumeError):
        runner.delete("ghost")
    assert list(store.runs()) == []


def test_l359_delete_removes_a_cancelled_run_and_run_then_starts_it_again() -> None:
    def ask(state):
        return {"log": (yield Interrupt("q"))}

    store = MemoryCheckpointer()
    runner = Runner(Graph("g", {"log": Append()}).step("ask", ask), store)
    runner.run("r")
    runner.cancel("r", "no")
    with pytest.raises(ResumeError):
        runner.run("r")  # cancelled: run is a ResumeError (table)
    runner.delete("r")
    with pytest.raises(ResumeError):
        runner.state("r")
    assert isinstance(runner.run("r"), Paused)  # unknown again: run starts it


# --- L403: tick never retries a failed run on its own --------------------------------------


def test_l403_tick_never_retries_a_failed_run() -> None:
    clock = Clock()
    calls: list[int] = []

    def flaky(state):
        calls.append(1)
        raise RuntimeError("down")

    def waits(state):
        return {"log": (yield Interrupt("q", timeout=5))}

    graph = Graph("g", {"log": Append()}).step("flaky", flaky).step("waits", waits)
    store = MemoryCheckpointer()
    runner = Runner(graph, store, clock=clock)
    with pytest.raises(StepError):
        runner.run("r")
    assert runner.state("r").status == "failed"
    before = runner.history("r")
    clock.now += 60_000  # whatever deadline the layer holds has passed
    assert runner.tick() == {}
    assert Worker(store, [graph], clock=clock).poll() == 0
    assert runner.history("r") == before
    assert calls == [1]
    assert runner.state("r").status == "failed"


# --- L521-528: the resume route takes continue, update and goto -----------------------------


def _bp_graph() -> Graph:
    def ask(state):
        return {"log": (yield Interrupt("q"))}

    return (
        Graph("api", {"log": Append(), "note": LastWriteWins()})
        .step("a", writer("a"))
        .step("ask", ask)
        .edge("a", "ask")
    )


def test_l522_api_resume_continue_goes_past_a_breakpoint() -> None:
    from starlette.testclient import TestClient

    from pausegraph.web import app

    store = MemoryCheckpointer()
    Runner(_bp_graph(), store, interrupt_before={"ask"}).run("r")
    with TestClient(app([_bp_graph()], store, wait_s=5), base_url=LOCAL) as client:
        reply = client.post("/api/runs/api/r/resume", json={"continue": True})
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["status"] == "paused"
        assert [i["step_id"] for i in body["interrupts"]] == ["ask"]
        assert body["interrupts"][0]["payload"] == "q"


def test_l522_api_resume_update_writes_edits_at_a_breakpoint_and_goes_on() -> None:
    from starlette.testclient import TestClient

    from pausegraph.web import app

    store = MemoryCheckpointer()
    Runner(_bp_graph(), store, interrupt_before={"ask"}).run("r")
    with TestClient(app([_bp_graph()], store, wait_s=5), base_url=LOCAL) as client:
        reply = client.post("/api/runs/api/r/resume", json={"update": {"note": "edited"}})
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["values"]["note"] == "edited"
        assert body["status"] == "paused"
        assert [i["step_id"] for i in body["interrupts"]] == ["ask"]
    assert "update" in [m.label for m in store.list("api", "r")]


def test_l523_api_resume_goto_with_an_update_beside() -> None:
    from starlette.testclient import TestClient

    from pausegraph.web import app

    store = MemoryCheckpointer()
    runner = Runner(_bp_graph(), store)
    runner.run("r")
    assert isinstance(runner.resume("r", Resume("x")), Done)
    with TestClient(app([_bp_graph()], store, wait_s=5), base_url=LOCAL) as client:
        reply = client.post("/api/runs/api/r/resume", json={"goto": "a", "update": {"note": "n"}})
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["status"] == "paused"  # the finished run re-opened, a ran again, ask asks
        assert body["values"]["log"] == ["a", "x", "a"]
        assert body["values"]["note"] == "n"


# --- L527: --wait defaults to 10 seconds ---------------------------------------------------


def test_l527_serve_wait_defaults_to_ten_seconds(tmp_path: Path, monkeypatch) -> None:
    import uvicorn

    import pausegraph.web as web

    seen: dict[str, Any] = {}
    real_app = web.app

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.update(kwargs)
        return real_app(*args, **kwargs)

    class NoServer:
        def __init__(self, config: Any) -> None:
            pass

        def run(self, sockets: Any = None) -> None:
            for sock in sockets or ():
                sock.close()

    flow = tmp_path / "flowmod_l527.py"
    flow.write_text(
        "from pausegraph import Graph, Append\n"
        "graph = Graph('w', {'log': Append()}).step('a', lambda s: None)\n"
    )
    monkeypatch.setattr(web, "app", spy)
    monkeypatch.setattr(uvicorn, "Server", NoServer)
    code = cli_main(["--store", str(tmp_path / "s"), "serve", f"{flow}:graph", "--port", "0"])
    assert code == 0
    assert seen["wait_s"] == 10


# --- L564-567: CLI workflow spelling and default store ----------------------------------------


def _write_module(directory: Path, name: str) -> None:
    (directory / f"{name}.py").write_text(
        textwrap.dedent(
            """
            from pausegraph import Graph, Interrupt, LastWriteWins

            def ask(state):
                return {"answer": (yield Interrupt("ok?"))}

            graph = Graph("cliwf", {"answer": LastWriteWins()}).step("ask", ask)
            """
        )
    )


def test_l566_the_default_store_is_a_file_store_in_dot_pausegraph(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    name = f"wfmod_{uuid.uuid4().hex[:8]}"
    _write_module(tmp_path, name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert cli_main(["run", f"{name}:graph", "--run-id", "r1"]) == 0
    finally:
        sys.modules.pop(name, None)
    capsys.readouterr()
    assert (tmp_path / ".pausegraph").is_dir()
    store = FileCheckpointer(tmp_path / ".pausegraph")
    assert ("cliwf", "r1") in [tuple(x) for x in store.runs()]
    assert cli_main(["show", "r1", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["status"] == "paused"
    assert shown["workflow"] == "cliwf"


def test_l565_a_workflow_named_as_module_attribute(tmp_path: Path, monkeypatch, capsys) -> None:
    package = f"wfpkg_{uuid.uuid4().hex[:8]}"
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text("")
    _write_module(tmp_path / package, "flows")
    monkeypatch.chdir(tmp_path)
    store = str(tmp_path / "store")
    try:
        code = cli_main(
            ["--store", store, "run", f"{package}.flows:graph", "--run-id", "m1", "--json"]
        )
        out = json.loads(capsys.readouterr().out)
        assert code == 0
        assert out["status"] == "paused"
        assert out["workflow"] == "cliwf"
        code = cli_main(
            ["--store", store, "resume", f"{package}.flows:graph", "m1", "--value", '"yes"']
        )
        capsys.readouterr()
        assert code == 0
    finally:
        for mod in [m for m in sys.modules if m.startswith(package)]:
            sys.modules.pop(mod, None)
    assert Runner(_cli_graph(), FileCheckpointer(store)).state("m1").values == {"answer": "yes"}


def _cli_graph() -> Graph:
    def ask(state):
        return {"answer": (yield Interrupt("ok?"))}

    return Graph("cliwf", {"answer": LastWriteWins()}).step("ask", ask)


# --- L367-377: a Runner that lets a suspended generator go closes it -----------------------


def test_l369_a_runner_holding_too_many_pauses_closes_the_oldest_quietly(capsys) -> None:
    closed: list[str] = []
    released: list[str] = []

    def release(name: str) -> None:
        released.append(name)

    def ask(state):
        try:
            yield Interrupt("q")
        finally:
            closed.append("closed")
            yield Effect(release, "x")  # yielded while closing: not run, not saved

    graph = Graph("g", {"x": LastWriteWins()}).step("ask", ask)
    runner = Runner(graph)
    n = 0
    while not closed and n < 4000:
        assert isinstance(runner.run(f"r{n}"), Paused)
        n += 1
    assert closed, "a Runner kept every one of 4000 suspended generators"
    assert released == []
    assert capsys.readouterr().err == ""
    # the run whose generator was let go replays later
    assert runner.resume("r0", Resume(1)) == Done({"x": None}, 1)
    assert released == ["x"]


_AT_EXIT = """
from pausegraph import *
def release():
    print("release ran", flush=True)
def ask(state):
    try:
        yield Interrupt("q")
    finally:
        print("finally ran", flush=True)
        yield Effect(release)
graph = Graph("g", {"x": LastWriteWins()}).step("ask", ask)
runner = Runner(graph, MemoryCheckpointer())
runner.run("r")
print("end", flush=True)
"""


def test_l369_a_normal_interpreter_exit_closes_held_generators_quietly(tmp_path: Path) -> None:
    import subprocess

    script = tmp_path / "atexit_close.py"
    script.write_text(_AT_EXIT)
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["end", "finally ran"]
    assert done.stderr == ""


# --- L34: the clock defaults to the system clock (epoch milliseconds) -----------------------


def test_l34_the_default_clock_is_the_system_clock_in_epoch_ms() -> None:
    import time

    def ask(state):
        return {"log": (yield Interrupt("q", timeout=5))}

    graph = Graph("g", {"log": Append()}).step("ask", ask)
    store = MemoryCheckpointer()
    before = time.time_ns() // 1_000_000
    paused = Runner(graph, store).run("r")
    after = time.time_ns() // 1_000_000
    assert isinstance(paused, Paused)
    stamps = [m.timestamp_ms for m in Runner(graph, store).history("r")]
    assert all(before - 1000 <= t <= after + 1000 for t in stamps), (before, stamps, after)
    deadline = paused.interrupts[0].deadline_ms
    assert deadline is not None
    assert before + 5000 - 1000 <= deadline <= after + 5000 + 1000
    # a Worker without a clock reads the same system clock: nothing is due yet
    assert Worker(store, [graph]).poll() == 0
    assert Runner(graph, store).state("r").status == "paused"
