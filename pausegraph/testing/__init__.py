"""Property-test your workflows with hypothesis: ``pip install 'pausegraph[testing]'``.

- strategies: ``graphs()`` (random valid workflows), ``answers()``
  (msgpack-native answer values), ``answer_functions()`` (deterministic
  ``payload -> answer`` functions), ``schedules()`` (how a run goes through
  its pauses: hot or cold resumes, answers one by one, process deaths
  between checkpoints);
- ``drive`` runs a workflow to its end, answering every interrupt, as a
  ``Schedule`` says; ``memory_store()`` is a checkpointer factory for it;
  ``FakeClock`` is the time its runners read, and an answer of ``TIMEOUT``
  lets a deadline pass instead (the driver moves the clock and ticks);
- ready-made properties to call inside your ``@given`` tests:
  ``assert_path_independent``, ``assert_store_independent``,
  ``assert_effects_run_once``, ``assert_same_as_answers_up_front``;
- ``WorkflowMachine``: a ``RuleBasedStateMachine`` to subclass, whose model
  reads a ``RunTrace`` of ``Answered``, ``Edited`` and ``Went`` events;
- ``assert_paused_runs_replay``: the CI check before deploying new step code;
- ``CheckpointerConformance``: the tests every checkpointer must pass, to
  subclass for your own store.

The plans and step factories behind ``graphs()`` live in
``pausegraph.testing.generated``; testing your own workflow never needs them.
``import pausegraph`` never imports this module, nor hypothesis.
See docs/testing.md for a walk-through.
"""

import importlib

try:
    import hypothesis  # noqa: F401
except ImportError as exc:
    msg = (
        "pausegraph.testing needs hypothesis, which is not installed: "
        "pip install 'pausegraph[testing]'"
    )
    raise ImportError(msg, name=__name__) from exc

from ._clock import TIMEOUT, FakeClock
from ._conformance import CheckpointerConformance
from ._driver import Schedule, drive, memory_store
from ._machine import Answered, Edited, RunTrace, Went, WorkflowMachine
from ._properties import (
    assert_effects_run_once,
    assert_path_independent,
    assert_same_as_answers_up_front,
    assert_store_independent,
)
from ._replay import assert_paused_runs_replay
from ._strategies import answer_functions, answers, graphs, schedules

# Names that were public here before the plans moved to ``generated``: still
# importable from here, so existing imports keep working, but not advertised.
_MOVED = {
    "Ask": "generated",
    "Call": "generated",
    "ChannelPlan": "generated",
    "GeneratedGraph": "generated",
    "Nest": "generated",
    "Read": "generated",
    "StepPlan": "generated",
    "WorkflowPlan": "generated",
    "plans": "generated",
    "recorded_effect": "generated",
    "recording_effects": "generated",
    "CheckpointerFactory": "_driver",
    "diff_states": "_properties",
    "ReplayFailure": "_replay",
    "find_replay_failures": "_replay",
}


def __getattr__(name: str) -> object:
    home = _MOVED.get(name)
    if home is None:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg, name=name, obj=None)
    module = importlib.import_module(f"{__name__}.{home}")
    return getattr(module, name)


__all__ = [
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
