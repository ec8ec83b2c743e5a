"""The error hierarchy: one class per kind of mistake, each a builtin too."""

from __future__ import annotations

import pytest

import pausegraph
from pausegraph import (
    CheckpointError,
    ConflictError,
    CorruptCheckpointError,
    EffectError,
    GraphError,
    InterruptTimeout,
    NondeterminismError,
    PausegraphError,
    ResumeError,
    SerializationError,
    StepError,
)

ERRORS = [
    GraphError,
    StepError,
    ResumeError,
    SerializationError,
    CheckpointError,
    CorruptCheckpointError,
    ConflictError,
    NondeterminismError,
    EffectError,
    InterruptTimeout,
]


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: e.__name__)
def test_every_error_is_a_pausegraph_error(error):
    assert issubclass(error, PausegraphError)


@pytest.mark.parametrize(
    ("error", "builtin"),
    [
        (GraphError, ValueError),
        (StepError, RuntimeError),
        (ResumeError, ValueError),
        (SerializationError, TypeError),
        (NondeterminismError, RuntimeError),
        (CheckpointError, OSError),
        (InterruptTimeout, TimeoutError),
    ],
    ids=lambda x: x.__name__,
)
def test_each_error_also_subclasses_the_matching_builtin(error, builtin):
    assert issubclass(error, builtin)
    with pytest.raises(builtin):
        raise error("message")


def test_pausegraph_error_is_an_exception():
    assert issubclass(PausegraphError, Exception)


def test_effect_error_is_a_step_error():
    assert issubclass(EffectError, StepError)


def test_a_replay_that_strays_is_a_step_error_of_the_layer():
    # SPEC, Failures: "Any StepError of a layer (... replayed nondeterministically)"
    assert issubclass(NondeterminismError, StepError)
    asked = []

    def strays(state):
        asked.append(1)
        yield pausegraph.Interrupt(f"question {len(asked)}")  # another payload on replay
        return {}

    graph = pausegraph.Graph("g", {"x": pausegraph.LastWriteWins()}).step("s", strays)
    store = pausegraph.MemoryCheckpointer()
    pausegraph.Runner(graph, store).run("r")
    with pytest.raises(StepError) as info:  # a cold Runner replays the step
        pausegraph.Runner(graph, store).resume("r", pausegraph.Resume(1))
    assert type(info.value) is NondeterminismError
    assert pausegraph.Runner(graph, store).state("r").failure.error_type == "NondeterminismError"


class _Mine(StepError):
    pass


def _raising(make):
    def step(state):
        raise make()

    return step


def _chained(outer, inner):
    try:
        raise inner
    except Exception as exc:
        try:
            raise outer from exc
        except Exception as chained:
            return chained


def _looped():
    a, b = StepError("a"), StepError("b")
    a.__cause__, b.__cause__ = b, a
    return a


@pytest.mark.parametrize(
    ("make", "error_type", "message"),
    [
        (lambda: ValueError("bad"), "ValueError", "bad"),
        (lambda: StepError("plain"), "StepError", "plain"),
        (lambda: _chained(StepError("wrapped"), KeyError("k")), "KeyError", "wrapped"),
        (lambda: _chained(_Mine("mine"), OSError("disk")), "OSError", "mine"),
        (
            lambda: _chained(StepError("outer"), _chained(StepError("inner"), TypeError("t"))),
            "TypeError",
            "outer",
        ),
        (
            lambda: _chained(StepError("gave up"), EffectError("effect f raised")),
            "EffectError",
            "gave up",
        ),
        (
            lambda: _chained(ValueError("not a step error"), KeyError("k")),
            "ValueError",
            "not a step error",
        ),
        (_looped, "StepError", "a"),
        (lambda: _chained(StepError(), KeyError("sku")), "KeyError", "'sku'"),
    ],
    ids=["plain", "step-error", "chained", "subclass", "twice", "effect", "other", "loop", "mute"],
)
def test_failure_error_type_is_the_cause_of_a_step_error_that_chains_one(make, error_type, message):
    """SPEC, Failures: ``error_type`` is the class name of the exception the step raised
    (of the cause, for a StepError that chains one; "EffectError" for an effect error).
    ``message`` is what the step raised says: its own words are kept."""
    graph = pausegraph.Graph("g", {"x": pausegraph.LastWriteWins()}).step("s", _raising(make))
    runner = pausegraph.Runner(graph)
    with pytest.raises(StepError):
        runner.run("r")
    failure = runner.state("r").failure
    assert (failure.step_id, failure.error_type, failure.message) == ("s", error_type, message)


@pytest.mark.parametrize("error", [ConflictError, CorruptCheckpointError], ids=lambda e: e.__name__)
def test_store_errors_are_checkpoint_errors(error):
    assert issubclass(error, CheckpointError)


def test_every_exported_exception_is_in_the_hierarchy():
    exported = [
        obj
        for name in pausegraph.__all__
        if isinstance(obj := getattr(pausegraph, name), type) and issubclass(obj, BaseException)
    ]
    assert set(exported) == {PausegraphError, *ERRORS}


def test_errors_keep_their_message():
    assert str(ResumeError("run 'r' is finished")) == "run 'r' is finished"
