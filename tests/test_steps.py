"""Steps: plain and generator steps, sub-generators, bad yields and returns,
failures wrapped in StepError, and effects inside one process."""

from __future__ import annotations

import os
import sys
from typing import Any

import pytest

from pausegraph import (
    Append,
    Effect,
    EffectError,
    FileCheckpointer,
    Graph,
    Interrupt,
    LastWriteWins,
    MemoryCheckpointer,
    NondeterminismError,
    Resume,
    ResumeError,
    Runner,
    SerializationError,
    StepError,
)


def run_single(fn, channels=None, **kw):
    graph = Graph("g", channels or {"x": LastWriteWins()}).step("s", fn)
    runner = Runner(graph, **kw)
    return runner, runner.run("r")


def test_plain_step_returns_its_writes():
    _, outcome = run_single(lambda state: {"x": 1})
    assert outcome.state == {"x": 1}


def test_plain_step_may_return_none():
    _, outcome = run_single(lambda state: None)
    assert outcome.state == {"x": None}


@pytest.mark.parametrize("bad", [[("x", 1)], "x", 3])
def test_returning_anything_but_a_mapping_or_none_is_a_step_error(bad):
    with pytest.raises(StepError, match=r"step 's' returned"):
        run_single(lambda state: bad)


def test_generator_returning_anything_but_a_mapping_is_a_step_error():
    def gen(state):
        yield from ()
        return ["x"]

    with pytest.raises(StepError, match=r"step 's' returned list"):
        run_single(gen)


def test_generator_step_returns_its_writes():
    def gen(state):
        yield from ()
        return {"x": "gen"}

    _, outcome = run_single(gen)
    assert outcome.state == {"x": "gen"}


def test_callable_returning_a_generator_runs_as_a_generator_step():
    def inner(state):
        answer = yield Interrupt("q")
        return {"x": answer}

    class Step:
        def __call__(self, state):
            return inner(state)

    runner, outcome = run_single(Step())
    assert outcome.payload == "q"
    assert runner.resume("r", Resume("a")).state == {"x": "a"}


def test_sub_generator_return_value_is_sent_back():
    def double(n):
        yield from ()
        return n * 2

    def gen(state):
        value = yield double(21)
        return {"x": value}

    _, outcome = run_single(gen)
    assert outcome.state == {"x": 42}


def test_sub_generators_nest_deeper_than_the_recursion_limit():
    depth = sys.getrecursionlimit() + 500

    def nested(n):
        if n == 0:
            answer = yield Interrupt("bottom")
            return answer
        value = yield nested(n - 1)
        return value + 1

    def gen(state):
        value = yield nested(depth)
        return {"x": value}

    checkpointer = MemoryCheckpointer()
    graph = Graph("g", {"x": LastWriteWins()}).step("s", gen)
    runner = Runner(graph, checkpointer)
    assert runner.run("r").payload == "bottom"
    # a cold replay walks the whole stack again
    assert Runner(graph, checkpointer).resume("r", Resume(0)).state == {"x": depth}


def test_exception_in_sub_generator_is_thrown_into_its_caller():
    def failing():
        yield from ()
        raise KeyError("inner")

    def gen(state):
        try:
            yield failing()
        except KeyError:
            return {"x": "caught"}
        return {"x": "not caught"}

    _, outcome = run_single(gen)
    assert outcome.state == {"x": "caught"}


def test_sub_generator_may_interrupt_and_call_effects():
    def inner():
        answer = yield Interrupt("inner?")
        got = yield Effect(str.upper, answer)
        return got

    def gen(state):
        value = yield inner()
        return {"x": value}

    runner, outcome = run_single(gen)
    assert outcome.payload == "inner?"
    assert runner.resume("r", Resume("yes")).state == {"x": "YES"}


@pytest.mark.parametrize("bad", [42, "text", None, [Interrupt()]])
def test_yielding_something_that_is_not_an_instruction_is_a_step_error(bad):
    def gen(state):
        yield bad

    with pytest.raises(StepError, match=r"step 's' yielded .*not an instruction"):
        run_single(gen)


def test_yielding_a_generator_function_instead_of_calling_it_is_explained():
    def helper():
        yield from ()

    def gen(state):
        yield helper

    with pytest.raises(StepError, match=r"did you yield a generator function"):
        run_single(gen)


def test_step_exception_is_a_step_error_naming_the_step_and_chaining_it():
    def boom(state):
        raise ValueError("bad input")

    graph = Graph("g", {"x": LastWriteWins()}).step("boom", boom)
    with pytest.raises(StepError, match=r"^step 'boom' raised ValueError: bad input$") as info:
        Runner(graph).run("r")
    assert isinstance(info.value.__cause__, ValueError)


def test_generator_step_exception_is_a_step_error_chaining_it():
    def boom(state):
        yield from ()
        raise LookupError("gone")

    with pytest.raises(StepError, match=r"'s'.*LookupError: gone") as info:
        run_single(boom)
    assert isinstance(info.value.__cause__, LookupError)


@pytest.mark.parametrize(
    "kind", [StepError, EffectError, NondeterminismError, SerializationError, ResumeError]
)
@pytest.mark.parametrize("generator", [False, True])
def test_a_pausegraph_error_a_step_raises_itself_is_a_step_error_naming_the_step(
    kind: type[Exception], generator: bool
) -> None:
    def plain(state):
        raise kind("its own")

    def gen(state):
        yield from ()
        raise kind("its own")

    graph = Graph("g", {"x": LastWriteWins()}).step("mine", gen if generator else plain)
    runner = Runner(graph)
    pattern = rf"^step 'mine' raised {kind.__name__}: its own$"
    with pytest.raises(StepError, match=pattern) as info:
        runner.run("r")
    assert type(info.value) is StepError
    assert type(info.value.__cause__) is kind
    failure = runner.state("r").failure
    assert failure is not None
    assert (failure.step_id, failure.error_type) == ("mine", kind.__name__)


def test_failed_step_leaves_the_run_at_its_last_checkpoint_and_run_retries_the_layer():
    attempts = []

    def flaky(state):
        attempts.append(state["x"])
        if len(attempts) == 1:
            raise RuntimeError("transient")
        return {"x": state["x"] + 10}

    graph = Graph("g", {"x": LastWriteWins(), "log": Append()})
    graph.step("first", lambda s: {"x": 1, "log": "first"}).step("flaky", flaky)
    graph.step("sibling", lambda s: {"log": "sibling"}).edge("first", "flaky")
    graph.edge("first", "sibling")
    runner = Runner(graph)
    with pytest.raises(StepError, match=r"'flaky'"):
        runner.run("r")
    assert runner.state("r").values == {"x": 1, "log": ["first"]}
    assert runner.state("r").status == "failed"
    assert runner.run("r").state == {"x": 11, "log": ["first", "sibling"]}
    assert attempts == [1, 1]


def test_effect_result_is_sent_back_and_fn_called_once():
    calls = []

    def fetch(a, b=0):
        calls.append((a, b))
        return a + b

    def gen(state):
        total = yield Effect(fetch, 1, b=2)
        answer = yield Interrupt("ok?")
        return {"x": [total, answer]}

    runner, _ = run_single(gen)
    assert runner.resume("r", Resume("yes")).state == {"x": [3, "yes"]}
    assert calls == [(1, 2)]


def test_effect_result_is_normalised_through_msgpack():
    def gen(state):
        value = yield Effect(tuple, [1, 2])
        return {"x": value}

    _, outcome = run_single(gen)
    assert outcome.state == {"x": [1, 2]}


def failing_effect():
    raise ConnectionError("host down")


def test_effect_error_is_thrown_into_the_step_and_can_be_caught():
    caught = []

    def gen(state):
        try:
            yield Effect(failing_effect)
        except EffectError as exc:
            caught.append(exc)
            return {"x": "recovered"}
        return {"x": "unreachable"}

    _, outcome = run_single(gen)
    assert outcome.state == {"x": "recovered"}
    (error,) = caught
    assert "ConnectionError" in str(error)
    assert "host down" in str(error)
    assert isinstance(error.__cause__, ConnectionError)


def test_uncaught_effect_error_ends_the_run_as_it_is():
    def gen(state):
        yield Effect(failing_effect)
        return {"x": "unreachable"}

    runner = Runner(Graph("g", {"x": LastWriteWins()}).step("s", gen))
    with pytest.raises(EffectError, match=r"ConnectionError: host down") as info:
        runner.run("r")
    assert isinstance(info.value, StepError)
    assert isinstance(info.value.__cause__, ConnectionError)
    assert runner.state("r").values == {"x": None}


def test_effect_error_is_replayed_without_calling_fn():
    calls = []

    def flaky():
        calls.append(1)
        raise TimeoutError("slow")

    def gen(state):
        try:
            yield Effect(flaky)
        except EffectError as exc:
            message = str(exc)
        answer = yield Interrupt("retry?")
        return {"x": [message, answer]}

    checkpointer = MemoryCheckpointer()
    graph = Graph("g", {"x": LastWriteWins()}).step("s", gen)
    Runner(graph, checkpointer).run("r")
    outcome = Runner(graph, checkpointer).resume("r", Resume("no"))
    assert calls == [1]
    message, answer = outcome.state["x"]
    assert "TimeoutError" in message
    assert "slow" in message
    assert answer == "no"


def test_effect_needs_a_callable():
    with pytest.raises(TypeError, match=r"callable"):
        Effect(3)  # type: ignore[arg-type]


def _refuse_file(name: str) -> None:
    raise OSError(f"cannot read {name}")


@pytest.mark.parametrize("where", ["step", "effect"])
def test_an_error_whose_message_no_store_can_encode_still_fails_the_run(
    tmp_path: Any, where: str
) -> None:
    # a file name from os.listdir that is not UTF-8 arrives as a lone surrogate: the
    # failure recording it must still be saved, or the run stays queued, driven forever
    name = os.fsdecode(b"report-\xff.csv")

    def read(state: Any) -> Any:
        if where == "effect":
            yield Effect(_refuse_file, name)
        raise ValueError(f"cannot parse {name}")

    runner = Runner(
        Graph("g", {"x": LastWriteWins()}).step("read", read), FileCheckpointer(tmp_path)
    )
    with pytest.raises(StepError):
        runner.run("r")
    cold = Runner(Graph("g", {"x": LastWriteWins()}).step("read", read), FileCheckpointer(tmp_path))
    info = cold.state("r")
    assert info.status == "failed"
    assert info.failure is not None
    assert "report-\\udcff.csv" in info.failure.message


def _exit_effect() -> None:
    sys.exit(5)


@pytest.mark.parametrize("how", ["plain", "generator", "effect"])
def test_sys_exit_in_a_step_fails_the_run_instead_of_leaving_it_queued(
    tmp_path: Any, how: str
) -> None:
    # a worker or the web server's driver would otherwise die on the run, again and again
    def plain(state: Any) -> None:
        sys.exit(3)

    def generator(state: Any) -> Any:
        yield Interrupt("go?")
        sys.exit(4)

    def effect(state: Any) -> Any:
        yield Effect(_exit_effect)

    step = {"plain": plain, "generator": generator, "effect": effect}[how]
    graph = Graph("g", {"x": LastWriteWins()}).step("s", step)
    runner = Runner(graph, FileCheckpointer(tmp_path))
    if how == "generator":
        paused = runner.run("r")
        with pytest.raises(StepError, match=r"SystemExit"):
            runner.resume("r", Resume(answers={paused.interrupts[0].id: 1}))  # type: ignore[union-attr]
    else:
        with pytest.raises(StepError, match=r"SystemExit"):
            runner.run("r")
    info = Runner(graph, FileCheckpointer(tmp_path)).state("r")
    assert info.status == "failed"
    assert info.failure is not None
    assert info.failure.error_type == ("EffectError" if how == "effect" else "SystemExit")


def test_sys_exit_in_a_finally_run_while_closing_a_step_is_dropped_like_any_error(
    tmp_path: Any,
) -> None:
    def exits_on_close(state: Any) -> Any:
        try:
            yield Interrupt("go?")
        finally:
            sys.exit(7)

    def fails(state: Any) -> Any:
        yield Interrupt("go?")
        raise RuntimeError("the sibling fails")

    graph = Graph("g", {"x": LastWriteWins()}).step("a", exits_on_close).step("b", fails)
    runner = Runner(graph, FileCheckpointer(tmp_path))
    paused = runner.run("r")
    b_id = paused.interrupts[1].id  # type: ignore[union-attr]
    with pytest.raises(StepError, match=r"the sibling fails"):  # a is closed: its finally exits
        runner.resume("r", Resume(answers={b_id: 1}))
    assert runner.state("r").status == "failed"
    runner.cancel("r")  # closes what it holds again: no SystemExit escapes
    assert runner.state("r").status == "cancelled"


def _boom_inside() -> None:
    raise ValueError("inner boom")


def test_an_effect_error_from_a_runner_inside_a_step_is_that_steps_step_error() -> None:
    def inner_step(state):
        yield Effect(_boom_inside)
        return {}

    inner = Graph("inner", {"x": LastWriteWins()}).step("pay", inner_step)
    calls = []

    def outer(state):
        calls.append(1)
        yield from ()
        Runner(inner).run(f"inner-{len(calls)}")  # its EffectError escapes this step
        return {}

    runner = Runner(Graph("outer", {"x": LastWriteWins()}).step("pay", outer))
    with pytest.raises(StepError, match=r"^step 'pay' raised EffectError: effect ") as info:
        runner.run("r")
    assert type(info.value) is StepError
    assert type(info.value.__cause__) is EffectError


def test_an_effect_error_a_step_raises_of_its_own_from_none_is_not_that_effects_failure() -> None:
    # guide §3: `raise ... from None` says the failure is not the effect's, so a retry
    # replays the recorded error, even when the new error reads the same
    calls = []

    def charge():
        calls.append(1)
        raise ValueError("declined")

    def pay(state):
        try:
            yield Effect(charge)
        except EffectError as error:
            raise EffectError(str(error)) from None
        return {}

    runner = Runner(Graph("g", {"x": LastWriteWins()}).step("pay", pay))
    for _ in range(3):
        with pytest.raises(StepError, match="declined"):
            runner.run("r")
    assert len(calls) == 1
