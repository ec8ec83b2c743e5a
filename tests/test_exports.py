"""The public surface: ``pausegraph.__all__``, docstrings and value types."""

from __future__ import annotations

import copy
import inspect

import attrs
import pytest

import pausegraph
from pausegraph import (
    After,
    Append,
    Before,
    CheckpointMeta,
    Continue,
    Done,
    DynamicInterrupt,
    Effect,
    Goto,
    Interrupt,
    LastWriteWins,
    MergeMap,
    Paused,
    PendingInterrupt,
    Reducer,
    Resume,
    RunInfo,
    Status,
    Update,
)

SPEC_NAMES = {
    "Graph", "Interrupt", "Effect", "LastWriteWins", "MergeMap", "Append", "Reducer",
    "Runner", "Done", "Paused", "DynamicInterrupt", "Before", "After", "Continue",
    "Resume", "Update", "Goto", "MemoryCheckpointer", "PausegraphError", "GraphError",
    "StepError", "ResumeError", "SerializationError", "CheckpointError",
    "CorruptCheckpointError", "ConflictError", "NondeterminismError", "EffectError",
    "inbox", "Waiting", "open_checkpointer",
}  # fmt: skip


def test_all_is_sorted():
    assert list(pausegraph.__all__) == sorted(pausegraph.__all__)


def test_all_has_no_duplicates():
    assert len(set(pausegraph.__all__)) == len(pausegraph.__all__)


def test_every_name_in_all_is_importable():
    for name in pausegraph.__all__:
        assert getattr(pausegraph, name) is not None


def test_every_name_the_spec_lists_is_exported():
    assert set(pausegraph.__all__) >= SPEC_NAMES


def test_every_public_name_has_a_docstring():
    missing = [
        name
        for name in pausegraph.__all__
        if not (inspect.getdoc(getattr(pausegraph, name)) or "").strip()
    ]
    assert missing == []


def test_public_names_do_not_leak_private_module_names():
    # trio-style: ``pausegraph.Paused`` shows as ``pausegraph.Paused`` in reprs,
    # tracebacks and docs, not as ``pausegraph._commands.Paused``
    leaks = [
        f"{name} ({obj.__module__})"
        for name in pausegraph.__all__
        if isinstance(obj := getattr(pausegraph, name), type)
        and any(part.startswith("_") for part in obj.__module__.split("."))
    ]
    assert leaks == []


def test_no_private_module_name_is_exported():
    exported = set(pausegraph.__all__)
    assert not [name for name in exported if name.startswith("_")]


VALUES = [
    Interrupt({"q": 1}),
    Effect(len, [1]),
    LastWriteWins(),
    MergeMap(),
    Append(),
    Reducer(max, 0),
    Done({"x": 1}, 2),
    Paused(1, DynamicInterrupt("a"), "p", (PendingInterrupt("1.0.0", "a", "p"),)),
    DynamicInterrupt("a"),
    Before("a"),
    After("a"),
    PendingInterrupt("1.0.0", "a", "p"),
    Continue(),
    Resume(1),
    Resume(answers={"1.0.0": 1}, update={"x": 2}),
    Update({"x": 1}),
    Goto("a", update={"x": 1}),
    RunInfo({"x": 1}, Status.DONE, 1),
    CheckpointMeta(1, 0, "input", 0),
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_public_value_types_are_frozen_attrs_classes(value):
    cls = type(value)
    assert attrs.has(cls)
    fields = attrs.fields(cls)
    if fields:
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            setattr(value, fields[0].name, "changed")


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_public_value_types_have_a_readable_repr(value):
    text = repr(value)
    assert text.startswith(type(value).__name__ + "(")
    assert " object at 0x" not in text


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_public_value_types_compare_by_value(value):
    twin = copy.copy(value)
    assert twin is not value
    assert twin == value
    assert (twin != value) is False


# Interrupt and Effect are built here only to be compared: never yielded, they
# warn as they should (tests/test_unyielded.py), which is not what this pins
@pytest.mark.filterwarnings("ignore:.* was never yielded:RuntimeWarning")
def test_equal_commands_made_apart_are_equal():
    assert Resume(1) == Resume(1)
    assert Resume(1) != Resume(2)
    assert Resume(None) != Resume()
    assert Resume(answers={"a": 1}) == Resume(answers={"a": 1})
    assert Goto("a") == Goto("a")
    assert Update({"x": 1}) == Update({"x": 1})
    assert Continue() == Continue()
    assert Interrupt("p") == Interrupt("p")
    assert Effect(len, [1]) == Effect(len, [1])


def test_import_pausegraph_does_not_import_hypothesis():
    import subprocess
    import sys

    code = "import sys, pausegraph; print('hypothesis' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
