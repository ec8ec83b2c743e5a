"""All(*generators): branches side by side inside a step, hot and cold, memory and file stores."""

from __future__ import annotations

import contextlib
import gc
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from pausegraph import (
    All,
    Append,
    Done,
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
    ResumeError,
    Runner,
    StepError,
)

CALLED: list[object] = []


def fetch(x):
    CALLED.append(x)
    return x * 10


def boom(x):
    raise ValueError(f"no {x}")


@pytest.fixture(params=["memory", "file"])
def store_factory(request, tmp_path):
    if request.param == "memory":
        store = MemoryCheckpointer()
        return lambda: store
    return lambda: FileCheckpointer(tmp_path / "runs")


def again(runner, step, store_factory, hot, executor=None):
    """The runner to go on with: the same one (hot), or a new one on the store (cold)."""
    return runner if hot else Runner(one_step(step), store_factory(), executor=executor)


def one_step(fn, name="g"):
    return Graph(name, {"items": LastWriteWins(), "out": LastWriteWins(), "log": Append()}).step(
        "s", fn
    )


def ask(name):
    answer = yield Interrupt({"q": name})
    got = yield Effect(fetch, answer)
    return [name, got]


def fanout(state):
    results = yield All(*(ask(x) for x in state["items"]))
    return {"out": results}


@pytest.mark.parametrize("hot", [True, False])
def test_each_branch_pauses_alone_with_its_own_id_and_results_come_back_in_order(
    store_factory, hot
):
    CALLED.clear()
    runner = Runner(one_step(fanout), store_factory())
    paused = runner.run("r", {"items": ["a", "b", "c"]})
    assert isinstance(paused, Paused)
    ids = [i.id for i in paused.interrupts]
    assert [i.payload for i in paused.interrupts] == [{"q": "a"}, {"q": "b"}, {"q": "c"}]
    assert len(set(ids)) == 3
    assert all("=" not in i and " " not in i for i in ids)
    runner = again(runner, fanout, store_factory, hot)
    paused = runner.resume("r", Resume(answers={ids[1]: 2}))
    assert [i.id for i in paused.interrupts] == [ids[0], ids[2]]
    assert CALLED == [2]
    runner = again(runner, fanout, store_factory, hot)
    done = runner.resume("r", Resume(answers={ids[0]: 1, ids[2]: 3}))
    assert done == Done(
        {"items": ["a", "b", "c"], "out": [["a", 10], ["b", 20], ["c", 30]], "log": []}, 1
    )
    assert CALLED == [2, 1, 3]  # no effect was called twice


def nested(state):
    def inner(tag):
        pair = yield All(ask(tag + "1"), ask(tag + "2"))
        return pair

    outer = yield All(inner("x"), inner("y"))
    last = yield Interrupt("last")
    return {"out": [outer, last]}


@pytest.mark.parametrize("hot", [True, False])
def test_nested_all_ids_are_unique_and_replay(store_factory, hot):
    runner = Runner(one_step(nested), store_factory())
    paused = runner.run("r", {})
    ids = [i.id for i in paused.interrupts]
    assert len(ids) == 4 == len(set(ids))
    runner = again(runner, nested, store_factory, hot)
    paused = runner.resume("r", Resume(answers={i: n for n, i in enumerate(ids)}))
    assert [i.payload for i in paused.interrupts] == ["last"]
    assert paused.interrupts[0].id not in ids
    runner = again(runner, nested, store_factory, hot)
    done = runner.resume("r", Resume("end"))
    assert done.state["out"] == [
        [[["x1", 0], ["x2", 10]], [["y1", 20], ["y2", 30]]],
        "end",
    ]


def test_ids_are_deterministic_across_runners():
    a = Runner(one_step(nested)).run("r", {})
    b = Runner(one_step(nested)).run("r", {})
    assert [i.id for i in a.interrupts] == [i.id for i in b.interrupts]


def failing_branch(state):
    closed = []

    def slow():
        try:
            yield Interrupt("never answered")
        finally:
            closed.append("slow")

    def bad():
        yield Effect(boom, 1)

    try:
        yield All(slow(), bad())
    except EffectError as error:
        return {"out": [str(error), closed]}
    return {"out": "unreachable"}


@pytest.mark.parametrize("hot", [True, False])
def test_an_exception_in_a_branch_closes_the_others_and_is_raised_at_the_yield(store_factory, hot):
    runner = Runner(one_step(failing_branch), store_factory())
    done = runner.run("r", {})
    assert isinstance(done, Done)
    message, closed = done.state["out"]
    assert "ValueError: no 1" in message
    assert closed == ["slow"]


def test_zero_branches_give_an_empty_list():
    def step(state):
        results = yield All()
        return {"out": results}

    assert Runner(one_step(step)).run("r", {}).state["out"] == []


def test_a_changed_branch_count_on_replay_is_nondeterminism(store_factory):
    runner = Runner(one_step(fanout), store_factory())
    runner.run("r", {"items": ["a", "b"]})

    def fewer(state):
        results = yield All(ask("a"))
        return {"out": results}

    cold = Runner(one_step(fewer), store_factory())
    with pytest.raises(NondeterminismError, match="All"):
        cold.resume("r", Resume(answers={i.id: 1 for i in runner.state("r").interrupts}))


def test_all_refuses_a_generator_function():
    def gen():
        yield Interrupt(1)

    with pytest.raises(TypeError, match="generator objects"):
        All(gen)


def test_all_refuses_one_generator_object_given_twice():
    def ask(n):
        yield Interrupt(n)

    one = ask(1)
    with pytest.raises(ValueError, match=r"the same generator object as branches 0 and 2"):
        All(one, ask(2), one)
    one.close()


def answer_once(n):
    value = yield Interrupt(n)
    return value + n


def ten_thousand(state):
    results = yield All(*(answer_once(n) for n in range(state["items"])))
    return {"out": sum(results)}


@pytest.mark.parametrize("kind", ["memory", "file"])
def test_ten_thousand_branches_interrupt_once_and_resume_cold(tmp_path, kind):
    n = 10_000

    def store():
        return MemoryCheckpointer() if kind == "memory" else FileCheckpointer(tmp_path / "r")

    shared = store()
    runner = Runner(one_step(ten_thousand), shared)
    paused = runner.run("r", {"items": n})
    assert len(paused.interrupts) == n
    ids = [i.id for i in paused.interrupts]
    assert len(set(ids)) == n
    cold = Runner(one_step(ten_thousand), shared if kind == "memory" else store())
    done = cold.resume("r", Resume(answers=dict.fromkeys(ids, 1)))
    assert done.state["out"] == n + sum(range(n))


FLAKY = {"fail": True}


def flaky(x):
    CALLED.append(("flaky", x))
    if FLAKY["fail"]:
        raise RuntimeError("down")
    return x


def uncaught(state):
    def good():
        return (yield Effect(fetch, 7))

    def bad():
        return (yield Effect(flaky, 1))

    results = yield All(good(), bad())
    return {"out": results}


@pytest.mark.parametrize("hot", [True, False])
def test_an_uncaught_branch_error_fails_the_step_and_a_retry_calls_only_that_effect(
    store_factory, hot
):
    CALLED.clear()
    FLAKY["fail"] = True
    runner = Runner(one_step(uncaught), store_factory())
    with pytest.raises(EffectError):
        runner.run("r", {})
    info = runner.state("r")
    assert info.failure.step_id == "s"
    assert info.failure.error_type == "EffectError"
    FLAKY["fail"] = False
    runner = again(runner, uncaught, store_factory, hot)
    done = runner.run("r")
    assert done.state["out"] == [70, 1]
    assert CALLED == [7, ("flaky", 1), ("flaky", 1)]


def check(answer):
    CALLED.append(("check", answer))
    if answer == "bad":
        raise KeyError(answer)
    return answer


def reanswer_step(state):
    def asks(name):
        answer = yield Interrupt(name)
        return (yield Effect(check, answer))

    def side():
        return (yield Effect(fetch, 5))

    results = yield All(asks("a"), side())
    return {"out": results}


def test_reanswering_a_branch_after_a_failure_keeps_the_other_branches_results():
    CALLED.clear()
    runner = Runner(one_step(reanswer_step))
    paused = runner.run("r", {})
    (pending,) = paused.interrupts
    assert CALLED == [5]
    with pytest.raises(EffectError):
        runner.resume("r", Resume("bad"))
    done = runner.resume("r", Resume(answers={pending.id: "good"}))
    assert done.state["out"] == ["good", 50]
    assert CALLED == [5, ("check", "bad"), ("check", "good")]


def test_deadlines_in_branches_time_out_or_wake_each_branch_alone():
    from pausegraph import InterruptTimeout, Sleep

    now = [1_000_000]

    def timed():
        try:
            return (yield Interrupt("late", timeout=10))
        except InterruptTimeout:
            return "timed out"

    def sleeper():
        yield Sleep(5)
        return "woke"

    def step(state):
        return {"out": (yield All(timed(), sleeper(), ask("z")))}

    runner = Runner(one_step(step), clock=lambda: now[0])
    paused = runner.run("r", {})
    assert len(paused.interrupts) == 3
    now[0] += 20_000
    moved = runner.tick()
    assert [i.step_id for i in moved["r"].interrupts] == ["s"]
    done = runner.resume("r", Resume(4))
    assert done.state["out"] == ["timed out", "woke", ["z", 40]]


class Crash(BaseException):
    """Stands for the process dying in the middle of an effect."""


CRASH = {"on": True}


def maybe_crash(x):
    CALLED.append(("crash?", x))
    if CRASH["on"]:
        raise Crash
    return x


def two_rounds(state):
    def one(n):
        first = yield Effect(fetch, n)
        second = yield Effect(maybe_crash, n)
        return [first, second]

    return {"out": (yield All(one(1), one(2)))}


def test_a_crash_in_a_later_round_keeps_the_saved_results_of_earlier_rounds(store_factory):
    CALLED.clear()
    CRASH["on"] = True
    runner = Runner(one_step(two_rounds), store_factory())
    with pytest.raises(Crash):
        runner.run("r", {})
    assert runner.state("r").status.value == "queued"
    CRASH["on"] = False
    done = Runner(one_step(two_rounds), store_factory()).run("r")
    assert done.state["out"] == [[10, 1], [20, 2]]
    assert CALLED == [1, 2, ("crash?", 1), ("crash?", 1), ("crash?", 2)]


def test_effects_that_wait_together_are_saved_together_so_recovery_meets_them_as_live():
    # saved one by one, a branch whose record was saved ran ahead of a sibling whose
    # effect the process died in, and called an effect the live run never calls
    store = MemoryCheckpointer()
    seen = []

    def look(name):
        seen.append((name, len(store.list("g", "r"))))
        return name

    def branch(name):
        return (yield Effect(look, name))

    def step(state):
        return {"x": (yield All(branch("a"), branch("b")))}

    Runner(Graph("g", {"x": LastWriteWins()}).step("s", step), store).run("r")
    (a, saved_before_a), (b, saved_before_b) = seen
    assert (a, b) == ("a", "b")
    assert saved_before_b == saved_before_a  # a's record waits for b's: one effect: save


# Two branches whose effects fail with the same message (the same function raising
# the same error): a retry must drop the error that failed the step, not the
# sibling's, whose branch caught it and finished.

TWINS: dict[str, int] = {}
TWIN_FAILS = {"a": True}


def twin(who, answer=None):
    TWINS[who] = TWINS.get(who, 0) + 1
    if who == "b" or TWIN_FAILS["a"] or answer == "bad":
        raise ValueError("boom")
    return f"{who}-ok"


def _caught_twin_b():
    try:
        return (yield Effect(twin, "b"))
    except EffectError:
        return "b-caught"


def twins_step(state):
    def a():
        return (yield Effect(twin, "a"))

    return {"out": (yield All(a(), _caught_twin_b()))}


@pytest.mark.parametrize("threads", [False, True])
@pytest.mark.parametrize("hot", [True, False])
def test_a_retry_drops_the_failing_branchs_error_when_a_sibling_failed_with_the_same_message(
    store_factory, hot, threads
):
    TWINS.clear()
    TWIN_FAILS["a"] = True
    pool = ThreadPoolExecutor(2) if threads else None
    runner = Runner(one_step(twins_step), store_factory(), executor=pool)
    with pytest.raises(EffectError):
        runner.run("r", {})
    assert TWINS == {"a": 1, "b": 1}
    TWIN_FAILS["a"] = False
    runner = again(runner, twins_step, store_factory, hot, executor=pool)
    done = runner.run("r")
    assert done.state["out"] == ["a-ok", "b-caught"]
    assert TWINS == {"a": 2, "b": 1}  # b's effect ran once: its recorded error stays


def twins_asking_step(state):
    def a():
        answer = yield Interrupt("a")
        return (yield Effect(twin, "a", answer))

    return {"out": (yield All(a(), _caught_twin_b()))}


@pytest.mark.parametrize("hot", [True, False])
def test_a_reanswer_that_drops_the_failing_error_keeps_a_siblings_error_with_the_same_message(
    store_factory, hot
):
    TWINS.clear()
    TWIN_FAILS["a"] = False
    runner = Runner(one_step(twins_asking_step), store_factory())
    paused = runner.run("r", {})
    assert TWINS == {"b": 1}
    with pytest.raises(EffectError):
        runner.resume("r", Resume("bad"))
    assert TWINS == {"a": 1, "b": 1}
    runner = again(runner, twins_asking_step, store_factory, hot)
    done = runner.resume("r", Resume(answers={paused.interrupts[0].id: "good"}))
    assert done.state["out"] == ["a-ok", "b-caught"]
    assert TWINS == {"a": 2, "b": 1}


def test_a_failure_saved_without_where_its_error_is_falls_back_to_the_last_error_with_its_message():
    from pausegraph._machine import _raised_at
    from pausegraph._records import Failed, Failure, Forked, Progress, Raised

    said = "effect twin in step 's' raised ValueError: boom"
    journal = (Forked(2), Raised("twin", said, "0-0"), Raised("twin", said, "0-1"))
    progress = Progress(0, 1, journals={"s": journal})
    failure = Failure("s", "EffectError", said)
    assert _raised_at(Failed(progress, failure)) == 2  # a record from before raised_at
    assert _raised_at(Failed(progress, failure, 1)) == 1
    refused = Raised("twin", said, "0-0", refused=True)
    kept = Progress(0, 1, journals={"s": (Forked(2), refused)})
    assert _raised_at(Failed(kept, failure, 1)) == 1  # a refused result is retried alike
    assert _raised_at(Failed(progress, Failure("s", "ValueError", said))) is None
    # a step that raised its own error from the effect's: where it is, whatever its type
    assert _raised_at(Failed(progress, Failure("s", "RuntimeError", "gave up"), 2)) == 2


# What a step's `except`/`finally` forked after the failing effect error goes with it: a
# retry that forks again at the same place must not replay the old branches' records.

ORDERED: dict[str, int] = {}
STOCK = {"out": True}


def _act(what):
    ORDERED[what] = ORDERED.get(what, 0) + 1
    if what == "reserve" and STOCK["out"]:
        raise ValueError("no stock")
    if what == "check bad":
        raise ValueError("bad amount")
    return what


def _do(what):
    return (yield Effect(_act, what))


def _order():
    try:
        yield Effect(_act, "reserve")
        return (yield All(_do("charge card"), _do("send mail")))
    except EffectError:
        yield All(_do("undo hold"), _do("notify ops"))  # compensate, then fail the step
        raise


def compensating_step(state):
    return {"out": (yield All(_do("audit"), _order()))}


@pytest.mark.parametrize("hot", [True, False])
def test_a_retry_drops_the_branches_an_except_forked_after_the_failing_error(store_factory, hot):
    ORDERED.clear()
    STOCK["out"] = True
    runner = Runner(one_step(compensating_step), store_factory())
    with pytest.raises(EffectError):
        runner.run("r", {})
    STOCK["out"] = False
    runner = again(runner, compensating_step, store_factory, hot)
    done = runner.run("r")
    assert done.state["out"] == ["audit", ["charge card", "send mail"]]
    assert ORDERED == {
        "audit": 1,  # a sibling's result, kept
        "reserve": 2,  # the failing effect, called again
        "undo hold": 1,
        "notify ops": 1,
        "charge card": 1,
        "send mail": 1,
    }


def wrapping_step(state):
    for _ in range(2):
        try:
            got = yield Effect(_act, "reserve")
            break
        except EffectError as e:
            last = e
    else:
        raise RuntimeError(f"gave up after 2 attempts: {last}") from last
    return {"out": got}


@pytest.mark.parametrize("hot", [True, False])
def test_a_step_that_raises_its_own_error_from_an_effects_retries_that_effect(store_factory, hot):
    ORDERED.clear()
    STOCK["out"] = True
    runner = Runner(one_step(wrapping_step), store_factory())
    with pytest.raises(StepError, match="gave up"):
        runner.run("r", {})
    assert runner.state("r").failure.error_type == "RuntimeError"
    assert ORDERED == {"reserve": 2}
    STOCK["out"] = False
    runner = again(runner, wrapping_step, store_factory, hot)
    assert runner.run("r").state["out"] == "reserve"
    assert ORDERED == {"reserve": 3}  # the first attempt's error replayed, the second retried


def _ask_and_check():
    answer = yield Interrupt("amount")
    return (yield Effect(_act, f"check {answer}"))


def reanswered_step(state):
    try:
        yield All(_ask_and_check(), _do("side"))
        return {"out": (yield All(_do("charge card"), _do("send mail")))}
    except EffectError:
        yield All(_do("undo hold"), _do("notify ops"))
        raise


@pytest.mark.parametrize("hot", [True, False])
def test_a_reanswer_drops_the_branches_forked_after_the_failing_error_too(store_factory, hot):
    ORDERED.clear()
    runner = Runner(one_step(reanswered_step), store_factory())
    (pending,) = runner.run("r", {}).interrupts
    with pytest.raises(EffectError):
        runner.resume("r", Resume("bad"))
    runner = again(runner, reanswered_step, store_factory, hot)
    done = runner.resume("r", Resume(answers={pending.id: "good"}))
    assert done.state["out"] == ["charge card", "send mail"]
    assert ORDERED == {
        "side": 1,
        "check bad": 1,
        "undo hold": 1,
        "notify ops": 1,
        "check good": 1,
        "charge card": 1,
        "send mail": 1,
    }


def asking_compensation_step(state):
    try:
        charged = yield Effect(_act, "reserve")
    except EffectError:
        yield Interrupt("refund reason?")  # the compensation asks a person, then fails
        raise
    ship = yield Interrupt("ship to which address?")
    return {"out": [charged, ship]}


@pytest.mark.parametrize("hot", [True, False])
def test_a_retry_asks_again_what_it_asks_and_never_reuses_an_answer_given_after_the_error(
    store_factory, hot
):
    ORDERED.clear()
    STOCK["out"] = True
    runner = Runner(one_step(asking_compensation_step), store_factory())
    (why,) = runner.run("r", {}).interrupts
    assert why.payload == "refund reason?"
    with pytest.raises(EffectError):
        runner.resume("r", Resume("customer cancelled"))
    STOCK["out"] = False
    runner = again(runner, asking_compensation_step, store_factory, hot)
    paused = runner.run("r")  # the retry: the effect again, then the next question
    assert isinstance(paused, Paused)
    (where,) = paused.interrupts
    assert where.payload == "ship to which address?"
    assert where.id != why.id
    done = runner.resume("r", Resume("Main St"))
    assert done.state["out"] == ["reserve", "Main St"]
    assert ORDERED == {"reserve": 2}


class PaymentFailed(Exception):
    pass


def converting_step(state):
    try:
        got = yield Effect(_act, "reserve")
    except EffectError:
        raise PaymentFailed("could not reserve")  # noqa: B904 - the usual idiom, no `from`
    return {"out": got}


def disowning_step(state):
    try:
        got = yield Effect(_act, "reserve")
    except EffectError:
        raise PaymentFailed("could not reserve") from None  # said: not because of it
    return {"out": got}


@pytest.mark.parametrize("hot", [True, False])
def test_an_error_raised_while_handling_an_effects_error_retries_that_effect(store_factory, hot):
    ORDERED.clear()
    STOCK["out"] = True
    runner = Runner(one_step(converting_step), store_factory())
    with pytest.raises(StepError, match="could not reserve"):
        runner.run("r", {})
    STOCK["out"] = False
    runner = again(runner, converting_step, store_factory, hot)
    assert runner.run("r").state["out"] == "reserve"
    assert ORDERED == {"reserve": 2}


def test_raise_from_none_says_the_failure_is_not_the_effects_and_a_retry_replays_it():
    ORDERED.clear()
    STOCK["out"] = True
    runner = Runner(one_step(disowning_step))
    with pytest.raises(StepError):
        runner.run("r", {})
    STOCK["out"] = False
    with pytest.raises(StepError):  # the recorded error is replayed: the step fails alike
        runner.run("r")
    assert ORDERED == {"reserve": 1}


def closing_fork_step(state):
    try:
        yield Interrupt("wait")
    finally:
        yield All(_do("undo hold"))  # dropped, unrun, when the step is closed


def test_an_all_yielded_while_a_step_is_closed_is_dropped_without_a_warning(recwarn):
    ORDERED.clear()
    runner = Runner(one_step(closing_fork_step))
    runner.run("r", {})
    runner.cancel("r")
    gc.collect()
    assert [str(w.message) for w in recwarn if "never yielded" in str(w.message)] == []
    assert ORDERED == {}


def refund_step(state):
    try:
        yield Effect(_act, "reserve")
    except EffectError:
        how = yield Interrupt("reserve failed: refund how?")
        if how != "manual":
            raise RuntimeError(f"cannot refund by {how!r}")  # noqa: B904 - chained on purpose
        return {"out": how}
    return {"out": "reserved"}


@pytest.mark.parametrize("hot", [True, False])
def test_a_reanswer_of_what_an_except_asked_answers_the_failure_and_runs_only_what_followed(
    store_factory, hot
):
    ORDERED.clear()
    STOCK["out"] = True
    runner = Runner(one_step(refund_step), store_factory())
    (asked,) = runner.run("r", {}).interrupts
    with pytest.raises(StepError, match="cannot refund by 'card'"):
        runner.resume("r", Resume("card"))
    runner = again(runner, refund_step, store_factory, hot)
    done = runner.resume("r", Resume(answers={asked.id: "manual"}))
    assert done.state["out"] == "manual"
    assert ORDERED == {"reserve": 1}  # the effect before the interrupt is not called again


def _asks_in_except():
    try:
        yield Effect(_act, "reserve")
    except EffectError:
        how = yield Interrupt("QA")
        raise RuntimeError(f"gave up ({how})")  # noqa: B904 - chained on purpose
    return "reserved"


def _asks_after_an_effect():
    yield Effect(_act, "side")
    return (yield Interrupt("QB"))


def sibling_question_step(state):
    return {"out": (yield All(_asks_in_except(), _asks_after_an_effect()))}


@pytest.mark.parametrize("hot", [True, False])
def test_a_reanswer_of_another_branchs_later_question_retries_the_failing_effect(
    store_factory, hot
):
    ORDERED.clear()
    STOCK["out"] = True
    runner = Runner(one_step(sibling_question_step), store_factory())
    ids = {i.payload: i.id for i in runner.run("r", {}).interrupts}
    with pytest.raises(StepError):
        runner.resume("r", Resume(answers={ids["QA"]: "a1", ids["QB"]: "b1"}))
    STOCK["out"] = False
    runner = again(runner, sibling_question_step, store_factory, hot)
    done = runner.resume("r", Resume(answers={ids["QB"]: "b2"}))  # QB is not A's handling
    assert done.state["out"] == ["reserved", "b2"]
    assert ORDERED == {"reserve": 2, "side": 1}


def test_a_refused_reanswer_on_a_failed_run_says_what_may_be_answered_again():
    CALLED.clear()
    runner = Runner(one_step(reanswer_step))
    (pending,) = runner.run("r", {}).interrupts
    with pytest.raises(EffectError):
        runner.resume("r", Resume("bad"))
    with pytest.raises(ResumeError) as refused:
        runner.resume("r", Resume(answers={"nope": 1}))
    assert f"answerable again, as the claim that failed answered them: {pending.id}" in str(
        refused.value
    )
    assert "pending: nothing" in str(refused.value)


def _works() -> int:
    return 1


@pytest.mark.parametrize("question", ["interrupt", "sleep"])
@pytest.mark.parametrize("cold", [False, True])
def test_a_branch_closed_by_a_siblings_error_asks_nothing_once_the_step_goes_on(
    question: str, cold: bool
) -> None:
    # b1 waits at its question when b0 raises: the All closes b1 and raises at its yield;
    # the step catches it and asks its next question inside another All
    from pausegraph import Sleep
    from pausegraph.testing import FakeClock

    def b0() -> Any:
        yield Effect(_works)
        raise ValueError("b0 broke")

    def b1() -> Any:
        return (yield Interrupt("b1?") if question == "interrupt" else Sleep(5))

    def ask() -> Any:
        return (yield Interrupt("next?"))

    def step(state: Any) -> Any:
        with contextlib.suppress(ValueError):
            yield All(b0(), b1())
        [answer] = yield All(ask())
        return {"x": answer}

    graph = Graph("g", {"x": LastWriteWins()}).step("s", step)
    clock, store = FakeClock(), MemoryCheckpointer()
    first = Runner(graph, store, clock=clock)
    paused = first.run("r")
    assert [i.payload for i in paused.interrupts] == ["next?"]
    runner = Runner(graph, store, clock=clock) if cold else first
    assert [i.payload for i in runner.state("r").interrupts] == ["next?"]
    clock.advance(10)
    assert runner.tick() == {}  # the closed branch's Sleep has no deadline left to pass
    done = runner.resume("r", Resume("ok"))  # the one question asked
    assert done == Done({"x": "ok"}, 1)


@pytest.mark.parametrize("cold", [False, True])
def test_answering_a_branch_a_sibling_closed_says_so(cold: bool) -> None:
    def branch(name: str) -> Any:
        answer = yield Interrupt(name)
        if answer == "raise":
            raise RuntimeError(name)
        return answer

    def step(state: Any) -> Any:
        try:
            got = yield All(branch("i0"), branch("i1"))
        except RuntimeError as exc:
            got = ["caught", str(exc)]
        last = yield Interrupt("after")
        return {"out": [got, last]}

    store = MemoryCheckpointer()
    graph = Graph("g", {"out": LastWriteWins()}).step("s", step)
    runner = Runner(graph, store)
    first, second = (i.id for i in runner.run("r").interrupts)
    runner.resume("r", Resume(answers={second: "raise"}))
    if cold:
        runner = Runner(graph, store)
    with pytest.raises(ResumeError, match="no longer waits: its branch was closed when a sibling"):
        runner.resume("r", Resume(answers={first: "late"}))
    assert runner.resume("r", Resume("z")).state == {"out": [["caught", "i1"], "z"]}


@pytest.mark.parametrize("hot", [True, False])
def test_all_nests_deeper_than_the_recursion_limit(store_factory, hot):
    """Branches may yield ``All`` too, to any depth (SPEC: sub-calls nest deeper than the
    recursion limit, and a branch may yield anything a step may)."""
    depth = sys.getrecursionlimit() + 200

    def nested(n):
        if n == 0:
            answer = yield Interrupt("bottom")
            got = yield Effect(fetch, answer)
            return got
        (value, other) = yield All(nested(n - 1), leaf(n))
        return value + other

    def leaf(n):
        yield from ()
        return n % 2

    def step(state):
        return {"out": (yield nested(depth))}

    CALLED.clear()
    runner = Runner(one_step(step), store_factory())
    paused = runner.run("r", {})
    assert isinstance(paused, Paused)
    assert paused.payload == "bottom"
    done = again(runner, step, store_factory, hot).resume("r", Resume(1))
    assert done == Done({"items": None, "out": 10 + sum(n % 2 for n in range(1, depth + 1)),
                         "log": []}, 1)  # fmt: skip
    assert CALLED == [1]
