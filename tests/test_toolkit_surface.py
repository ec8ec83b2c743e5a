"""pausegraph.testing's public surface: its names, its import, its new helpers."""

from __future__ import annotations

import inspect
import subprocess
import sys
import textwrap
from collections.abc import Generator, Mapping
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

import pausegraph.testing
import pausegraph.testing.generated
from pausegraph import Graph, Interrupt, LastWriteWins
from pausegraph._values import normalize
from pausegraph.testing import Schedule, answer_functions, drive, graphs, schedules

PUBLIC = [
    "TIMEOUT",
    "Answered",
    "CheckpointerConformance",
    "Edited",
    "FakeClock",
    "RunTrace",
    "Schedule",
    "Went",
    "WorkflowMachine",
    "answer_functions",
    "answers",
    "assert_effects_run_once",
    "assert_path_independent",
    "assert_paused_runs_replay",
    "assert_same_as_answers_up_front",
    "assert_store_independent",
    "drive",
    "graphs",
    "memory_store",
    "schedules",
]


def test_the_toolkit_exports_only_what_a_user_needs_sorted() -> None:
    assert pausegraph.testing.__all__ == PUBLIC


def test_every_public_name_of_the_toolkit_has_a_docstring() -> None:
    for module in (pausegraph.testing, pausegraph.testing.generated):
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                assert inspect.getdoc(obj), name


def test_the_generated_workflow_internals_live_in_their_own_module() -> None:
    generated = pausegraph.testing.generated
    assert generated.__all__ == sorted(generated.__all__)
    assert {"GeneratedGraph", "WorkflowPlan", "StepPlan", "plans", "recording_effects"} <= set(
        generated.__all__
    )
    assert "not needed to test your own" in (generated.__doc__ or "")
    assert not set(generated.__all__) & set(pausegraph.testing.__all__)


def test_names_that_moved_to_generated_still_import_from_the_toolkit() -> None:
    from pausegraph.testing import GeneratedGraph, plans

    assert GeneratedGraph is pausegraph.testing.generated.GeneratedGraph
    assert plans is pausegraph.testing.generated.plans


def test_an_unknown_name_of_the_toolkit_is_an_attribute_error() -> None:
    assert not hasattr(pausegraph.testing, "no_such_thing")


def test_importing_the_toolkit_without_hypothesis_says_what_to_install() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["hypothesis"] = None  # as if it were not installed
        try:
            import pausegraph.testing
        except ImportError as exc:
            print(exc)
        else:
            raise SystemExit("imported without hypothesis")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    assert out == (
        "pausegraph.testing needs hypothesis, which is not installed: "
        "pip install 'pausegraph[testing]'\n"
    )


# --- answer_functions() --------------------------------------------------------------


@given(
    answer=answer_functions(),
    payloads=st.lists(st.text(max_size=3) | st.integers(-(2**63), 2**64 - 1)),
)
def test_answer_functions_are_deterministic_and_msgpack_native(
    answer: Any, payloads: list[Any]
) -> None:
    for payload in payloads:
        first = answer(payload)
        assert answer(payload) == first
        assert normalize(first, lambda: "an answer") == first


@given(answer=answer_functions())
def test_answer_functions_hand_out_fresh_copies(answer: Any) -> None:
    first = answer("q")
    if isinstance(first, (list, dict)):
        first.clear()
        assert answer("q") == answer("q")


@given(graph=graphs(max_steps=3), answer=answer_functions(), schedule=schedules())
def test_a_drawn_answer_function_drives_a_run_to_the_same_end_every_time(
    graph: Any, answer: Any, schedule: Schedule
) -> None:
    assert drive(graph, answer=answer) == drive(graph, answer=answer, schedule=schedule)


# --- Schedule(cold=True) ---------------------------------------------------------------

calls: list[str] = []


def three_questions(state: Mapping[str, Any]) -> Generator[Any, Any, dict[str, Any]]:
    calls.append("called")
    got = []
    for question in ("a", "b", "c"):
        got.append((yield Interrupt(question)))
    return {"x": got}


def test_a_schedule_cold_true_resumes_every_pause_with_a_new_runner() -> None:
    graph = Graph("three", {"x": LastWriteWins()}).step("s", three_questions)
    calls.clear()
    assert drive(graph, answer=str, schedule=Schedule(cold=True)).state == {"x": ["a", "b", "c"]}
    assert len(calls) == 4  # the first call, then one replay per cold resume
    calls.clear()
    drive(graph, answer=str, schedule=Schedule(cold=(True,)))
    assert len(calls) == 2
    assert Schedule(cold=True).is_cold(10**9)
