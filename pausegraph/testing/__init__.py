"""Property-test your workflows with hypothesis: ``pip install pausegraph[testing]``.

- strategies: ``graphs()`` (random valid workflows, built from ``plans()``),
  ``answers()`` (msgpack-native answer values), ``schedules()`` (how a run
  goes through its pauses: hot or cold resumes, answers one by one, process
  deaths between checkpoints);
- ``drive``: run a workflow to its end, answering every interrupt;
- ready-made properties to call inside your ``@given`` tests:
  ``assert_path_independent``, ``assert_store_independent``,
  ``assert_effects_run_once``, ``assert_same_as_answers_up_front``;
- ``WorkflowMachine``: a ``RuleBasedStateMachine`` to subclass;
- ``assert_paused_runs_replay``: the CI check before deploying new step code.

``import pausegraph`` never imports this module, nor hypothesis.
See docs/testing.md for a walk-through.
"""

from ._driver import CheckpointerFactory, Schedule, drive, memory_store
from ._machine import Answered, Edited, RunTrace, Went, WorkflowMachine
from ._plans import (
    Ask,
    Call,
    ChannelPlan,
    GeneratedGraph,
    Nest,
    Read,
    StepPlan,
    WorkflowPlan,
    recorded_effect,
    recording_effects,
)
from ._properties import (
    assert_effects_run_once,
    assert_path_independent,
    assert_same_as_answers_up_front,
    assert_store_independent,
    diff_states,
)
from ._replay import ReplayFailure, assert_paused_runs_replay, find_replay_failures
from ._strategies import answers, graphs, plans, schedules

__all__ = [
    "Answered",
    "Ask",
    "Call",
    "ChannelPlan",
    "CheckpointerFactory",
    "Edited",
    "GeneratedGraph",
    "Nest",
    "Read",
    "ReplayFailure",
    "RunTrace",
    "Schedule",
    "StepPlan",
    "Went",
    "WorkflowMachine",
    "WorkflowPlan",
    "answers",
    "assert_effects_run_once",
    "assert_path_independent",
    "assert_paused_runs_replay",
    "assert_same_as_answers_up_front",
    "assert_store_independent",
    "diff_states",
    "drive",
    "find_replay_failures",
    "graphs",
    "memory_store",
    "plans",
    "recorded_effect",
    "recording_effects",
    "schedules",
]
