"""Internals of the generated workflows; not needed to test your own.

``graphs()`` draws a ``WorkflowPlan`` (plain data: channels, steps and what
each step does, edges) and builds it with ``GeneratedGraph``. This module
exposes those pieces for the toolkit's own tests and for anyone extending
it: ``plans()`` draws the plans, ``GeneratedGraph(plan, answer=fn)`` builds a
plan with its interrupts answered up front, and ``recording_effects()``
collects the calls of ``recorded_effect``, the one effect generated steps
call. To property-test your own workflow, ``pausegraph.testing`` is all you
need.
"""

from ._plans import (
    Action,
    Ask,
    Call,
    ChannelKind,
    ChannelPlan,
    Fan,
    GeneratedGraph,
    Nest,
    Read,
    StepPlan,
    When,
    WorkflowPlan,
    digest,
    recorded_effect,
    recording_effects,
)
from ._strategies import plans

__all__ = [
    "Action",
    "Ask",
    "Call",
    "ChannelKind",
    "ChannelPlan",
    "Fan",
    "GeneratedGraph",
    "Nest",
    "Read",
    "StepPlan",
    "When",
    "WorkflowPlan",
    "digest",
    "plans",
    "recorded_effect",
    "recording_effects",
]
