"""Edges across processes: a crash inside a second effect, a run held by a live process.

The workflows live in ``_edge_flows`` so that an effect has the same name in
every process; each process is a ``sys.executable -c`` script.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import _edge_flows
import pytest

from pausegraph import (
    ConflictError,
    Done,
    FileCheckpointer,
    Goto,
    Resume,
    Runner,
)

TESTS = Path(__file__).resolve().parent
SCRIPT = "import sys, _edge_flows; _edge_flows.main(sys.argv[1:])"


def _env(directory: Path) -> dict[str, str]:
    path = os.pathsep.join([str(TESTS), str(TESTS.parent), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "PG_EDGE_DIR": str(directory)}


def _command(root: Path, directory: Path, graph: str, run_id: str) -> list[str]:
    return [sys.executable, "-c", SCRIPT, str(root), str(directory), graph, run_id]


def _effects(directory: Path) -> list[str]:
    path = directory / "effects"
    return path.read_text().splitlines() if path.exists() else []


def test_a_crash_inside_a_second_effect_repeats_only_that_effect(tmp_path: Path) -> None:
    root, directory = tmp_path / "store", tmp_path / "d"
    directory.mkdir()
    crashed = subprocess.run(
        _command(root, directory, "two_effects", "r"),
        env=_env(directory),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert crashed.returncode == _edge_flows.CRASH, crashed.stderr
    assert _effects(directory) == ["first", "second"]

    recovered = subprocess.run(
        _command(root, directory, "two_effects", "r"),
        env=_env(directory),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert recovered.returncode == 0, recovered.stderr
    assert recovered.stdout.strip() == repr(Done({"a": "one", "b": "two"}, 1))
    # first was saved before second was called; second ran again (the crash window)
    assert _effects(directory) == ["first", "second", "second"]
    runner = Runner(_edge_flows.graphs()["two_effects"], FileCheckpointer(root))
    assert runner.state("r").status == "done"
    assert runner.state("r").values == {"a": "one", "b": "two"}


def _wait_for(predicate: object, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_commands_on_a_live_run_are_refused_naming_the_holder_until_it_dies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, directory = tmp_path / "store", tmp_path / "d"
    directory.mkdir()
    monkeypatch.setenv("PG_EDGE_DIR", str(directory))
    holder = subprocess.Popen(
        _command(root, directory, "hold", "r"),
        env=_env(directory),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(lambda: _effects(directory) == ["wait"], "the held effect to start")
        runner = Runner(_edge_flows.graphs()["hold"], FileCheckpointer(root))
        assert runner.state("r").status == "running"
        before = runner.history("r")
        refusals = [
            lambda: runner.run("r"),
            lambda: runner.resume("r", Goto("hold")),
            lambda: runner.resume("r", Resume(1)),
            lambda: runner.cancel("r"),
            lambda: runner.delete("r"),
        ]
        for refused in refusals:
            with pytest.raises(ConflictError) as caught:
                refused()
            assert f"process {holder.pid}" in str(caught.value)
        assert runner.history("r") == before
        assert _effects(directory) == ["wait"]
        assert holder.poll() is None
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    assert holder.returncode == -signal.SIGKILL

    runner = Runner(_edge_flows.graphs()["hold"], FileCheckpointer(root))
    assert runner.state("r").status == "queued"
    (directory / "go").write_text("")
    assert runner.run("r") == Done({"got": "went"}, 1)
    # the killed process never saved the effect's result: recovery calls it again
    assert _effects(directory) == ["wait", "wait"]
    assert runner.state("r").status == "done"
