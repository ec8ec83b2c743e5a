"""The examples run, from Python and from the command line, and draw as Mermaid."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from pausegraph import Graph

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
PG = Path(sys.executable).parent / "pausegraph"
NAMES = ["expense", "review", "interview", "escalation", "expense_conditional", "summaries"]


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FINAL: dict[str, dict[str, Any]] = {
    "expense": {"paid": 120, "approved": True},
    "review": {"verdict": "published"},
    "interview": {"summary": "ada is on pro, receipt ch-4242-25"},
    "escalation": {  # decisions by run
        "taxi": "approved by lead",
        "hotel": "approved by manager",
        "laptop": "rejected by the deadline (a week without an answer)",
    },
    "expense_conditional": {"paid": 4200, "approved": True},
    "summaries": {
        "report": "- Q3 report: Revenue grew 12%. (model)\n"
        "- Hiring plan: We hire four engineers. (model)\n"
        "- Incident 42: a stalled queue, fixed. (reviewer)"
    },
}


@pytest.mark.parametrize("name", NAMES)
def test_each_example_main_runs_to_the_end(
    name: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("INTERVIEW_CHARGES", raising=False)
    values = load(name).main()
    for channel, value in FINAL[name].items():
        assert values[channel] == value
    assert capsys.readouterr().out


def test_the_readme_demo_pauses_and_resumes_cold() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "demo.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "waiting for:" in out
    assert out.count("interrupt 2.") == 2
    assert "Done(state=" in out
    assert "'verdict': 'published'" in out


def test_the_escalation_example_escalates_after_a_day_and_rejects_after_a_week() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "escalation.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    assert out.count("   -> notice to manager: hotel waits for you since yesterday") == 1
    assert out.count("   -> notice to manager: laptop waits for you since yesterday") == 1
    assert "   hotel: now waits for manager" in out
    assert "day 3: tick -> nothing due" in out
    assert out[-1] == "laptop: rejected by the deadline (a week without an answer)"


_NODE = re.compile(r'^    (s\d+)\["([^"]*)"\]$')
_EDGE = re.compile(r"^    (s\d+) -->(?:\|[^|]*\|)? (s\d+)$")


@pytest.mark.parametrize("name", NAMES)
def test_pausegraph_graph_prints_mermaid_with_every_step_and_edge(name: str) -> None:
    done = subprocess.run(
        [str(PG), "graph", f"{EXAMPLES / name}.py:graph"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    first, *lines = done.stdout.splitlines()
    assert first == "flowchart TD"
    nodes: dict[str, str] = {}
    edges: list[tuple[str, str]] = []
    for line in lines:
        if node := _NODE.match(line):
            nodes[node[1]] = node[2]
        elif edge := _EDGE.match(line):
            assert edge[1] in nodes
            assert edge[2] in nodes
            edges.append((nodes[edge[1]], nodes[edge[2]]))
        else:
            pytest.fail(f"not a Mermaid node or edge line: {line!r}")
    graph: Graph = load(name).graph
    assert sorted(nodes.values()) == sorted(graph.steps)
    assert sorted(edges) == sorted(graph.edges)
