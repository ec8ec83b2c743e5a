"""An Interrupt or Effect made and never yielded warns, like a coroutine never awaited.

Without the ``yield``, ``Interrupt(...)`` alone on a line is a valid statement
that does nothing: the step goes on and nobody is asked. So an instruction
that is garbage-collected without the trampoline having taken it warns
(``RuntimeWarning``), naming the file and line that made it. Every
instruction a step does yield, live or on a replay, never warns.
"""

from __future__ import annotations

import copy
import subprocess
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from pausegraph import (
    Done,
    Effect,
    FileCheckpointer,
    Graph,
    Interrupt,
    LastWriteWins,
    Paused,
    Resume,
    Runner,
)
from pausegraph._instructions import consumed


def _line_below() -> int:
    """The line number after the caller's line."""
    return sys._getframe(1).f_lineno + 1


def _single(fn: Any) -> Graph:
    return Graph("g", {"x": LastWriteWins()}).step("s", fn)


@contextmanager
def no_warnings() -> Iterator[None]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    assert [str(w.message) for w in caught] == []


def test_an_interrupt_never_yielded_warns_naming_the_line_that_made_it() -> None:
    lines = []

    def step(state):
        lines.append(_line_below())
        Interrupt({"q": 1})  # the mistake: no yield
        return {"x": "went on"}

    with pytest.warns(RuntimeWarning) as caught:
        outcome = Runner(_single(step)).run("r")
    assert outcome == Done({"x": "went on"}, 1)  # nobody was asked: hence the warning
    [warning] = caught
    assert str(warning.message) == (
        f"Interrupt({{'q': 1}}) created at {__file__}:{lines[0]} was never yielded: "
        "write 'answer = yield Interrupt(...)'"
    )


def test_an_effect_never_yielded_warns_naming_the_line_and_calls_nothing() -> None:
    calls = []
    lines = []

    def step(state):
        lines.append(_line_below())
        Effect(calls.append, "charged")  # the mistake: no yield
        answer = yield Interrupt("next?")
        return {"x": answer}

    with pytest.warns(RuntimeWarning) as caught:
        assert isinstance(Runner(_single(step)).run("r"), Paused)
    [warning] = caught
    assert str(warning.message) == (
        f"Effect(builtins.list.append) created at {__file__}:{lines[0]} was never yielded: "
        "write 'result = yield Effect(...)'"
    )
    assert calls == []


def _asking(calls: list[str]) -> Graph:
    def helper(question: str) -> Any:
        answer = yield Interrupt(question)
        return answer

    def record(what: str) -> str:
        calls.append(what)
        return what

    again = Interrupt("again?")  # made once, yielded twice

    def step(state):
        first = yield helper("first?")
        done = yield Effect(record, first)
        second = yield again
        third = yield again
        return {"x": [first, done, second, third]}

    return _single(step)


@pytest.mark.parametrize("cold", [False, True], ids=["hot", "cold"])
def test_instructions_that_are_yielded_live_or_replayed_never_warn(
    tmp_path: Path, cold: bool
) -> None:
    calls: list[str] = []
    with no_warnings():
        graph = _asking(calls)
        runner = Runner(graph, FileCheckpointer(tmp_path))
        assert isinstance(runner.run("r"), Paused)
        for answer in ("a", "b", "c"):
            if cold:  # a new Runner replays the step: it yields every instruction again
                runner = Runner(graph, FileCheckpointer(tmp_path))
            outcome = runner.resume("r", Resume(answer))
        assert outcome.state == {"x": ["a", "a", "b", "c"]}
        assert calls == ["a"]
        del graph, runner, outcome


def test_equality_hash_and_repr_ignore_the_bookkeeping_and_copies_never_warn() -> None:
    with no_warnings():
        taken, fresh = Interrupt(("q", 1)), Interrupt(("q", 1))
        consumed(taken)  # as the trampoline does when a step yields it
        assert taken == fresh
        assert hash(taken) == hash(fresh)
        assert repr(taken) == repr(fresh) == "Interrupt(payload=('q', 1))"
        effect = Effect(len, [1])
        copies = [copy.copy(fresh), copy.deepcopy(fresh), copy.copy(effect)]
        assert copies == [fresh, fresh, effect]
        consumed(fresh)
        consumed(effect)
        del taken, fresh, effect, copies  # the copies were made by no step: they never warn


def test_an_instruction_alive_at_interpreter_exit_does_not_warn() -> None:
    code = "import pausegraph\nkept = pausegraph.Interrupt('q')\n"
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, check=False
    )
    assert (done.returncode, done.stderr) == (0, "")


def test_as_an_error_the_warning_is_reported_and_the_step_goes_on() -> None:
    code = (
        "import pausegraph\n"
        "def step(state):\n"
        "    pausegraph.Interrupt('q')\n"
        "    return {'x': 1}\n"
        "g = pausegraph.Graph('g', {'x': pausegraph.LastWriteWins()}).step('s', step)\n"
        "print(pausegraph.Runner(g).run('r').state)\n"
    )
    done = subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", "-c", code],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0
    assert done.stdout == "{'x': 1}\n"
    assert "RuntimeWarning: Interrupt('q') created at <string>:3 was never yielded" in done.stderr
