"""Edges of effects and steps: a result that cannot be stored, ``__main__`` functions, misuse.

- An effect whose function returned what msgpack cannot encode *ran*: it is
  recorded as raising, the step gets an ``EffectError`` at its ``yield``,
  and no retry (hot or cold, with or without an executor) calls it again.
- A run started by ``python flow.py`` records its effects under the
  script's import name, so the command line (``flow.py:graph``) resumes it.
- ``yield {...}`` and ``async def`` steps fail with a message that
  says what to do instead.
"""

from __future__ import annotations

import datetime
import decimal
import functools
import gc
import subprocess
import sys
import types
import uuid
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from test_cli import pg

from pausegraph import (
    Continue,
    Effect,
    EffectError,
    FileCheckpointer,
    Graph,
    Interrupt,
    LastWriteWins,
    MemoryCheckpointer,
    NondeterminismError,
    Paused,
    Resume,
    Runner,
    SerializationError,
    StepError,
)
from pausegraph.cli import load_graph
from pausegraph.errors import EffectResultError

# --- an effect whose result cannot be stored ---------------------------------------


def _charging(calls: list[int], result: Callable[[], Any]) -> Graph:
    def charge(n: int) -> Any:
        calls.append(n)
        return result()

    def step(state: Any) -> Any:
        r = yield Effect(charge, 1)
        return {"out": str(r)}

    return Graph("charging", {"out": LastWriteWins()}).step("s", step)


@pytest.mark.parametrize("how", ["hot", "cold", "continue"])
def test_an_effect_whose_result_cannot_be_stored_fails_the_run_and_a_retry_calls_it_again(
    tmp_path: Path, how: str
) -> None:
    """SPEC, Failures: the effect error that failed the run is dropped and that effect is
    called again; an unstorable result is such an error (an ``EffectResultError``: an
    ``EffectError`` and a ``SerializationError``), so the retry after a fix goes on."""
    calls: list[int] = []
    fixed = {"now": False}

    def result() -> Any:
        return "2026-01-01" if fixed["now"] else {"at": datetime.datetime(2026, 1, 1), "n": 1}

    graph = _charging(calls, result)
    runner = Runner(graph, FileCheckpointer(tmp_path / "store"))
    for attempt in range(3):
        if how == "cold":
            runner = Runner(graph, FileCheckpointer(tmp_path / "store"))
        go = functools.partial(runner.run, "r1", {})
        if how == "continue" and attempt:
            go = functools.partial(runner.resume, "r1", Continue())
        with pytest.raises(EffectResultError, match="ran, but its result was not stored") as info:
            go()
        assert isinstance(info.value, EffectError)
        assert isinstance(info.value, SerializationError)
        assert isinstance(info.value.__cause__, SerializationError)
        assert calls == [1] * (attempt + 1)
        info_ = runner.state("r1")
        assert info_.status == "failed"
        assert info_.failure is not None
        assert info_.failure.error_type == "EffectError"
        assert "SerializationError" in info_.failure.message
    fixed["now"] = True
    if how == "cold":
        runner = Runner(graph, FileCheckpointer(tmp_path / "store"))
    assert runner.run("r1").state == {"out": "2026-01-01"}
    assert calls == [1, 1, 1, 1]


def test_an_unstorable_result_the_step_caught_replays_without_calling_the_effect(
    tmp_path: Path,
) -> None:
    calls: list[int] = []

    def charge() -> Any:
        calls.append(1)
        return {1, 2}  # a set: msgpack refuses it

    def step(state: Any) -> Any:
        try:
            yield Effect(charge)
        except SerializationError as exc:
            kind = type(exc).__name__
        answer = yield Interrupt("go on?")
        return {"out": f"{kind}:{answer}"}

    graph = Graph("caught", {"out": LastWriteWins()}).step("s", step)
    assert isinstance(Runner(graph, FileCheckpointer(tmp_path)).run("r", {}), Paused)
    done = Runner(graph, FileCheckpointer(tmp_path)).resume("r", Resume("yes"))  # a replay
    assert done.state == {"out": "EffectResultError:yes"}
    assert calls == [1]


def test_the_message_names_the_effect_the_step_the_part_refused_and_what_to_do() -> None:
    calls: list[int] = []
    graph = _charging(calls, lambda: {"at": datetime.datetime(2026, 1, 1)})
    with pytest.raises(EffectError) as info:
        Runner(graph, MemoryCheckpointer()).run("r", {})
    text = str(info.value)
    assert text.startswith("effect ")
    assert ".charge in step 's' ran, but its result was not stored: SerializationError: " in text
    assert "(the datetime at result['at'])" in text
    assert "isoformat()" in text
    assert "msgpack-native" in text
    assert "a retry" not in text  # what a retry does depends on whether the step caught it


def test_a_part_deep_inside_the_result_is_named_by_its_path() -> None:
    graph = _charging([], lambda: [{"ok": 1}, {"amount": decimal.Decimal("1.50")}])
    with pytest.raises(EffectError, match=r"\(the Decimal at result\[1\]\['amount'\]\)"):
        Runner(graph, MemoryCheckpointer()).run("r", {})
    graph = _charging([], lambda: {datetime.date(2026, 1, 1): "x"})
    with pytest.raises(EffectError, match=r"\(a key of type date in result\)"):
        Runner(graph, MemoryCheckpointer()).run("r", {})
    graph = _charging([], lambda: decimal.Decimal("2"))
    with pytest.raises(EffectError, match=r"\(result itself, of type Decimal\)"):
        Runner(graph, MemoryCheckpointer()).run("r", {})


def test_a_step_that_catches_the_error_goes_on_and_replays_it_without_calling_again(
    tmp_path: Path,
) -> None:
    calls: list[int] = []

    def charge() -> Any:
        calls.append(1)
        return datetime.datetime(2026, 1, 1)

    def step(state: Any) -> Any:
        try:
            receipt = yield Effect(charge)
        except EffectError as exc:
            receipt = f"unknown: {exc}"
        ok = yield Interrupt("ship?")
        return {"out": receipt, "ok": ok}

    graph = Graph("caught", {"out": LastWriteWins(), "ok": LastWriteWins()}).step("s", step)
    paused = Runner(graph, FileCheckpointer(tmp_path / "store")).run("r", {})
    assert paused.interrupts
    # a cold resume replays the recorded error into the step's `except`
    done = Runner(graph, FileCheckpointer(tmp_path / "store")).resume("r", Resume(True))
    assert done.state["ok"] is True
    assert done.state["out"].startswith("unknown: effect ")
    assert "ran, but its result was not stored" in done.state["out"]
    assert calls == [1]


def test_with_an_executor_the_refused_result_and_its_neighbours_are_kept() -> None:
    good_calls: list[int] = []
    bad_calls: list[int] = []

    def good() -> int:
        good_calls.append(1)
        return 7

    def bad() -> Any:
        bad_calls.append(1)
        return {1, 2}  # a set: msgpack refuses it

    def a(state: Any) -> Any:
        return {"a": (yield Effect(good))}

    def b(state: Any) -> Any:
        return {"b": (yield Effect(bad))}

    graph = Graph("pair", {"a": LastWriteWins(), "b": LastWriteWins()})
    graph.step("a", a).step("b", b)
    checkpointer = MemoryCheckpointer()
    with ThreadPoolExecutor(2) as pool:
        runner = Runner(graph, checkpointer, executor=pool)
        for _ in range(3):
            with pytest.raises(EffectError, match=r"\(result itself, of type set\)"):
                runner.run("r", {})
    assert good_calls == [1]  # its neighbour's result was kept
    assert bad_calls == [1, 1, 1]  # the error that failed the run: called again
    failure = runner.state("r").failure
    assert failure is not None
    assert (failure.step_id, failure.error_type) == ("b", "EffectError")


def test_an_effect_that_raised_is_still_called_again_on_a_retry() -> None:
    """An effect's own error that failed the run is retried, as a refused result is."""
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("host down")
        return "ok"

    def step(state: Any) -> Any:
        return {"out": (yield Effect(flaky))}

    graph = Graph("flaky", {"out": LastWriteWins()}).step("s", step)
    runner = Runner(graph, MemoryCheckpointer())
    with pytest.raises(EffectError, match="host down"):
        runner.run("r", {})
    assert runner.run("r").state == {"out": "ok"}
    assert calls == [1, 1]


# --- __main__ functions --------------------------------------------------------------

FLOW = """\
from pausegraph import Effect, FileCheckpointer, Graph, Interrupt, LastWriteWins, Runner


def lookup(x):
    return x * 2


def other(x):
    return x * 3


WHICH = lookup


def step(state):
    v = yield Effect(WHICH, 21)
    ok = yield Interrupt({"v": v})
    return {"out": [v, ok]}


graph = Graph("mainflow", {"out": LastWriteWins()}).step("s", step)

if __name__ == "__main__":
    import sys

    Runner(graph, FileCheckpointer(sys.argv[1])).run("m1", {})
"""


@pytest.fixture
def script(tmp_path: Path) -> Iterator[Path]:
    """The flow as a file with a name no other test imports; forgotten afterwards."""
    path = tmp_path / f"mainflow_{uuid.uuid4().hex[:8]}.py"
    path.write_text(FLOW)
    yield path
    sys.modules.pop(path.stem, None)


def _run_as_main(path: Path, store: Path, *, exec_source: bool = False) -> None:
    if exec_source:  # a __main__ with no file: recorded under the name "__main__"
        code = (
            f"import sys; sys.argv[1:] = [{str(store)!r}]; "
            f"exec(compile(open({str(path)!r}).read(), {str(path)!r}, 'exec'))"
        )
        words = [sys.executable, "-c", code]
    else:
        words = [sys.executable, str(path), str(store)]
    done = subprocess.run(words, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr


def test_a_run_started_as_a_script_resumes_from_the_command_line(
    tmp_path: Path, script: Path
) -> None:
    store = tmp_path / "store"
    _run_as_main(script, store)
    done = pg("resume", f"{script}:graph", "m1", "--value", "true", store=store)
    assert done.returncode == 0, done.stderr
    assert '"out": [\n    42,\n    true\n  ]' in done.stdout


@pytest.mark.parametrize("exec_source", [False, True], ids=["file", "no-file"])
def test_a_run_started_as_a_script_resumes_through_load_graph(
    tmp_path: Path, script: Path, exec_source: bool
) -> None:
    store = tmp_path / "store"
    _run_as_main(script, store, exec_source=exec_source)
    graph = load_graph(f"{script}:graph")
    done = Runner(graph, FileCheckpointer(store)).resume("m1", Resume(True))
    assert done.state == {"out": [42, True]}


@pytest.mark.parametrize("exec_source", [False, True], ids=["file", "no-file"])
def test_a_different_function_of_the_script_is_still_refused(
    tmp_path: Path, script: Path, exec_source: bool
) -> None:
    store = tmp_path / "store"
    _run_as_main(script, store, exec_source=exec_source)
    graph = load_graph(f"{script}:graph")
    module = sys.modules[script.stem]
    module.WHICH = module.other  # type: ignore[attr-defined]
    with pytest.raises(NondeterminismError, match=r"yielded Effect\(.*\.other\)") as info:
        Runner(graph, FileCheckpointer(store)).resume("m1", Resume(True))
    assert "module-name difference" not in str(info.value)


def _named(fn: Callable[..., Any], module: str, qualname: str) -> Callable[..., Any]:
    copy = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__)
    copy.__module__ = module
    copy.__qualname__ = qualname
    return copy


def _looking_up(fn: Callable[..., Any]) -> Graph:
    def step(state: Any) -> Any:
        v = yield Effect(fn, 1)
        ok = yield Interrupt("ok?")
        return {"out": [v, ok]}

    return Graph("lookups", {"out": LastWriteWins()}).step("s", step)


def test_a_module_name_difference_is_named_as_such() -> None:
    def lookup(x: int) -> int:
        return x

    checkpointer = MemoryCheckpointer()
    Runner(_looking_up(_named(lookup, "flows", "lookup")), checkpointer).run("r", {})
    moved = _looking_up(_named(lookup, "app.flows", "lookup"))
    with pytest.raises(NondeterminismError) as info:
        Runner(moved, checkpointer).resume("r", Resume(True))
    text = str(info.value)
    assert "recorded under module 'flows' and is under module 'app.flows' now" in text
    assert "module-name difference" in text


def _fileless_main(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``__main__`` a module with no file or spec (``python -c``, a notebook)."""
    fake = types.ModuleType("__main__")
    fake.__spec__ = None
    monkeypatch.setitem(sys.modules, "__main__", fake)


def test_a_main_record_matches_the_same_qualname_only(monkeypatch: pytest.MonkeyPatch) -> None:
    def lookup(x: int) -> int:
        return x

    in_main = _named(lookup, "__main__", "lookup")
    with monkeypatch.context() as patch:
        _fileless_main(patch)
        checkpointer = MemoryCheckpointer()
        Runner(_looking_up(in_main), checkpointer).run("r", {})  # records "__main__.lookup"
        again = MemoryCheckpointer()
        Runner(_looking_up(in_main), again).run("r", {})
    wrong = _looking_up(_named(lookup, "flows", "lookup2"))
    with pytest.raises(NondeterminismError, match=r"recorded Effect\(__main__\.lookup\)"):
        Runner(wrong, checkpointer).resume("r", Resume(True))
    same = _looking_up(_named(lookup, "flows", "lookup"))
    assert Runner(same, again).resume("r", Resume(True)).state == {"out": [1, True]}


def test_a_fileless_main_replays_a_record_of_its_module(monkeypatch: pytest.MonkeyPatch) -> None:
    def lookup(x: int) -> int:
        return x

    checkpointer = MemoryCheckpointer()
    Runner(_looking_up(_named(lookup, "flows", "lookup")), checkpointer).run("r", {})
    _fileless_main(monkeypatch)
    same = _looking_up(_named(lookup, "__main__", "lookup"))
    assert Runner(same, checkpointer).resume("r", Resume(True)).state == {"out": [1, True]}


def test_main_name_is_the_spec_name_else_the_file_stem_else_main(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pausegraph._instructions import main_name

    fake = types.ModuleType("__main__")
    fake.__spec__ = types.SimpleNamespace(name="pkg.flow")  # type: ignore[assignment]
    fake.__file__ = "/somewhere/pkg/flow.py"
    monkeypatch.setitem(sys.modules, "__main__", fake)
    assert main_name() == "pkg.flow"
    fake = types.ModuleType("__main__")
    fake.__spec__ = None
    fake.__file__ = "/somewhere/my-flow.py"
    monkeypatch.setitem(sys.modules, "__main__", fake)
    assert main_name() == "my-flow"
    fake = types.ModuleType("__main__")
    fake.__spec__ = None
    monkeypatch.setitem(sys.modules, "__main__", fake)
    assert main_name() == "__main__"


# --- misuse: yielding writes, async steps --------------------------------------------


def test_yielding_a_dict_says_to_return_it() -> None:
    def step(state: Any) -> Any:
        yield {"a": 1}

    graph = Graph("writes", {"a": LastWriteWins()}).step("s", step)
    with pytest.raises(StepError, match=r"to write channels, `return \{\.\.\.\}` from the step"):
        Runner(graph, MemoryCheckpointer()).run("r", {})


def test_yielding_something_else_gives_no_such_hint() -> None:
    def step(state: Any) -> Any:
        yield 5

    graph = Graph("five", {"a": LastWriteWins()}).step("s", step)
    with pytest.raises(StepError, match="which is not an instruction") as info:
        Runner(graph, MemoryCheckpointer()).run("r", {})
    assert "to write channels" not in str(info.value)


async def _async_step(state: Any) -> Any:
    return {"a": 1}


async def _async_gen_step(state: Any) -> Any:
    yield {"a": 1}


class _AsyncCall:
    async def __call__(self, state: Any) -> Any:
        return {"a": 1}


@pytest.mark.parametrize("fn", [_async_step, _async_gen_step, _AsyncCall()])
def test_async_steps_fail_their_run_with_a_step_error(fn: Any) -> None:
    """SPEC, Steps: a step is a callable; what it returns that is not writes (here a
    coroutine or an async generator) is a ``StepError``, and the run is failed."""
    graph = Graph("async", {"a": LastWriteWins()}).step("s", fn)
    runner = Runner(graph, MemoryCheckpointer())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the coroutine is closed: no "never awaited"
        with pytest.raises(StepError, match=r"async def step is not run") as info:
            runner.run("r", {})
        gc.collect()
    assert "def, not async def" in str(info.value)
    info_ = runner.state("r")
    assert info_.status == "failed"
    assert info_.failure is not None
    assert info_.failure.step_id == "s"
    assert info_.failure.error_type == "StepError"


def test_a_paused_step_redeployed_as_async_fails_its_replay_quietly() -> None:
    def step(state: Any) -> Any:
        answer = yield Interrupt("ok?")
        return {"a": answer}

    store = MemoryCheckpointer()
    Runner(Graph("async", {"a": LastWriteWins()}).step("s", step), store).run("r", {})
    later = Graph("async", {"a": LastWriteWins()}).step("s", _async_step)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # its coroutine is closed: no "never awaited"
        with pytest.raises(NondeterminismError, match="an async def step is not run"):
            Runner(later, store).resume("r", Resume(1))
        gc.collect()


async def _async_effect() -> int:
    return 1


def test_an_async_effect_function_is_its_error_not_a_refused_result() -> None:
    """Its body never ran: an ``EffectError`` saying so (no "never awaited" warning), which
    a retry may call again, not a result that could not be stored."""

    def step(state: Any) -> Any:
        return {"a": (yield Effect(_async_effect))}

    runner = Runner(Graph("async", {"a": LastWriteWins()}).step("s", step), MemoryCheckpointer())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(2):
            with pytest.raises(EffectError, match="raised TypeError: it returned coroutine unrun"):
                runner.run("r", {})
            gc.collect()
    with pytest.raises(EffectError) as info:
        runner.run("r")
    assert not isinstance(info.value, EffectResultError)


def test_plain_and_generator_steps_and_callables_are_still_accepted() -> None:
    class Call:
        def __call__(self, state: Any) -> Any:
            return {"a": 1}

    def gen(state: Any) -> Any:
        yield from ()
        return {"a": 2}

    graph = Graph("fine", {"a": LastWriteWins()})
    graph.step("p", lambda state: {"a": 0}).step("g", gen).step("c", Call())
    assert list(graph.steps) == ["p", "g", "c"]


class _ListThatBreaks(list):  # type: ignore[type-arg]
    """A value whose own methods raise something other than TypeError or ValueError."""

    def __iter__(self) -> Any:
        raise RuntimeError("boom in __iter__")


odd_calls: list[str] = []


def _odd_result() -> Any:
    odd_calls.append("called")
    return _ListThatBreaks([1])


@pytest.mark.parametrize("where", ["effect result", "step write", "payload"])
def test_a_value_whose_methods_raise_fails_the_run_and_only_the_failing_effect_is_called_again(
    tmp_path: Path, where: str
) -> None:
    odd_calls.clear()

    def step(state: Any) -> Any:
        if where == "effect result":
            yield Effect(_odd_result)
        if where == "payload":
            yield Interrupt(_ListThatBreaks([1]))
        return {"x": _ListThatBreaks([1])}

    graph = Graph("g", {"x": LastWriteWins()}).step("s", step)
    for _ in range(3):  # each a retry, from a new process as far as the store knows
        runner = Runner(graph, FileCheckpointer(tmp_path))
        with pytest.raises((EffectError, SerializationError, StepError)):
            runner.run("r", {}) if not (tmp_path / "started").exists() else runner.run("r")
        (tmp_path / "started").touch()
        assert runner.state("r").status == "failed"
    expected = ["called"] * 3 if where == "effect result" else []  # the error that failed it
    assert odd_calls == expected
