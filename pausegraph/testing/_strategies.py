"""hypothesis strategies: random workflow plans and graphs, answers, schedules."""

from __future__ import annotations

import copy
from typing import Any, Literal

import attrs
from hypothesis import strategies as st

from ._driver import Schedule
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
)

Shape = Literal["dag", "chain", "fanout"]

_KINDS: tuple[ChannelKind, ...] = ("last", "merge", "append", "custom")
_INT64 = 2**63


def answers() -> st.SearchStrategy[Any]:
    """Random msgpack-native answer values: what a person or a webhook might send.

    ``None``, booleans, 64-bit integers, floats (no NaN: it is not equal to
    itself, so two equal runs would look different), text, bytes, and lists
    and string-keyed dicts of those. Tuples are left out on purpose: an
    answer is normalised through msgpack and a tuple arrives as a list.
    """
    leaves = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-_INT64, _INT64 - 1),
        st.floats(allow_nan=False),
        st.text(max_size=8),
        st.binary(max_size=8),
    )
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3),
            st.dictionaries(st.text(max_size=4), inner, max_size=3),
        ),
        max_leaves=6,
    )


class AnswerFunction:
    """A drawn answer function: picks one of ``table`` by a digest of the payload.

    Deterministic (the same payload always gets the same answer, in every
    process), and every answer is a fresh copy, so a step that keeps and
    mutates one cannot change the next.
    """

    def __init__(self, table: tuple[Any, ...], *, echo: bool) -> None:
        self.table, self.echo = table, echo

    def __call__(self, payload: Any) -> Any:
        chosen = copy.deepcopy(self.table[digest(payload) % len(self.table)])
        return {"payload": payload, "answer": chosen} if self.echo else chosen

    def __repr__(self) -> str:
        how = "{'payload': payload, 'answer': " if self.echo else ""
        end = "}" if self.echo else ""
        return f"<answer {how}one of {list(self.table)!r} by the payload's digest{end}>"


@st.composite
def answer_functions(draw: st.DrawFn) -> AnswerFunction:
    """Random answer functions ``payload -> answer`` for ``drive`` and the properties.

    Each is deterministic (a function of the payload alone, the same in every
    process) and returns msgpack-native values from ``answers()``: it picks
    one of a few drawn answers by a digest of the payload, and sometimes
    wraps it with the payload itself, so different questions can get
    different answers::

        @given(graph=graphs(), answer=answer_functions(), schedule=schedules())
        def test_resumes_do_not_change_the_result(graph, answer, schedule):
            assert_path_independent(graph, answer=answer, schedule=schedule)
    """
    table = draw(st.lists(answers(), min_size=1, max_size=4))
    return AnswerFunction(tuple(table), echo=draw(st.booleans()))


@st.composite
def _actions(
    draw: st.DrawFn,
    channels: tuple[str, ...],
    *,
    max_actions: int,
    depth: int,
    interrupts: bool,
    effects: bool,
    fans: bool = True,
) -> tuple[Action, ...]:
    kinds = ["read"]
    if interrupts:
        kinds.append("ask")
    if effects:
        kinds += ["call", "fail"]
    if depth > 0:
        kinds.append("nest")
        if fans:
            kinds.append("fan")
    chosen = draw(st.lists(st.sampled_from(kinds), max_size=max_actions))
    out: list[Action] = []
    for kind in chosen:
        if kind == "ask":
            out.append(Ask(""))
        elif kind in ("call", "fail"):
            out.append(Call("", fails=kind == "fail"))
        elif kind == "read":
            out.append(Read(draw(st.sampled_from(channels))))
        else:
            inner = _actions(
                channels,
                max_actions=max(1, max_actions // 2),
                depth=depth - 1,
                interrupts=interrupts,
                effects=effects,
                fans=fans,
            )
            if kind == "nest":
                out.append(Nest(draw(inner)))
            else:
                out.append(Fan(tuple(draw(st.lists(inner, min_size=1, max_size=3)))))
    return tuple(out)


def _label(actions: tuple[Action, ...], counter: list[int]) -> tuple[Action, ...]:
    """Give every Ask and Call a label unique in its step, in traversal order."""
    out: list[Action] = []
    for action in actions:
        if type(action) is Nest:
            out.append(Nest(_label(action.actions, counter)))
        elif type(action) is Fan:
            out.append(Fan(tuple(_label(branch, counter) for branch in action.branches)))
        elif type(action) is Ask:
            counter[0] += 1
            out.append(Ask(f"ask{counter[0]}"))
        elif type(action) is Call:
            counter[0] += 1
            out.append(attrs.evolve(action, label=f"effect{counter[0]}"))
        else:
            out.append(action)
    return tuple(out)


@st.composite
def _edges(draw: st.DrawFn, n: int, shape: Shape) -> tuple[tuple[int, int], ...]:
    if n < 2:
        return ()
    if shape == "chain":
        return tuple((i, i + 1) for i in range(n - 1))
    if shape == "fanout":
        # one source, a fan of parallel steps, and (sometimes) one sink joining them
        join = n >= 3 and draw(st.booleans())
        last = n - 1 if join else n
        fan = [(0, i) for i in range(1, last)]
        return tuple(fan + ([(i, n - 1) for i in range(1, last)] if join else []))
    pairs = st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)).filter(lambda p: p[0] != p[1])
    drawn = draw(st.lists(pairs, max_size=2 * n))
    # orient every edge from the lower index to the higher: no cycle is possible
    return tuple(sorted({(min(a, b), max(a, b)) for a, b in drawn}))


@st.composite
def plans(
    draw: st.DrawFn,
    *,
    max_steps: int = 4,
    max_actions: int = 4,
    max_depth: int = 2,
    interrupts: bool = True,
    effects: bool = True,
    shape: Shape = "dag",
    fans: bool = True,
    conditions: bool = True,
) -> WorkflowPlan:
    """Random ``WorkflowPlan``s: the data ``GeneratedGraph`` builds a workflow from.

    ``max_steps`` bounds the number of steps; ``shape`` is ``"dag"`` (any
    acyclic edges), ``"chain"`` (each step after the previous one) or
    ``"fanout"`` (one step, then the others in parallel, sometimes joined by
    a last step). Every plan declares one channel of each reducer kind
    (``LastWriteWins``, ``MergeMap``, ``Append`` and a custom ``Reducer``)
    and maybe more. Steps read channels, interrupt (``interrupts=False``
    leaves that out), call effects that succeed or raise (``effects``),
    nest sub-generators up to ``max_depth`` deep and fan out with ``All``
    over one to three sub-generators that do the same (``fans=False`` leaves
    that out). Some edges are conditional (``conditions=False`` leaves that
    out): their ``When`` predicate is the parity of a digest of a channel's
    value, so which steps run depends on the state, and so on the answers.
    """
    extra = draw(st.lists(st.sampled_from(_KINDS), max_size=2))
    kinds = (*_KINDS, *extra)
    channels = tuple(ChannelPlan(f"{kind}{i}", kind) for i, kind in enumerate(kinds))
    names = tuple(c.name for c in channels)
    n = draw(st.integers(1, max_steps))
    steps = []
    for i in range(n):
        actions = draw(
            _actions(
                names,
                max_actions=max_actions,
                depth=max_depth,
                interrupts=interrupts,
                effects=effects,
                fans=fans,
            )
        )
        writes = draw(st.lists(st.sampled_from(names), unique=True, max_size=3))
        plain = draw(st.booleans())
        steps.append(StepPlan(f"s{i}", _label(actions, [0]), tuple(writes), plain))
    edges = tuple((f"s{a}", f"s{b}") for a, b in draw(_edges(n, shape)))
    when: list[tuple[str, str, When]] = []
    if conditions:
        predicates = st.none() | st.builds(When, st.sampled_from(names), st.booleans())
        for src, dst in edges:
            predicate = draw(predicates)
            if predicate is not None:
                when.append((src, dst, predicate))
    return WorkflowPlan("generated", channels, tuple(steps), edges, tuple(when))


def graphs(
    *,
    max_steps: int = 4,
    max_actions: int = 4,
    max_depth: int = 2,
    interrupts: bool = True,
    effects: bool = True,
    shape: Shape = "dag",
    fans: bool = True,
    conditions: bool = True,
) -> st.SearchStrategy[GeneratedGraph]:
    """Random valid workflows, ready to run: ``plans(...)`` built by ``GeneratedGraph``.

    ::

        @given(graph=graphs(max_steps=5), schedule=schedules())
        def test_resumes_do_not_change_the_result(graph, schedule):
            assert_path_independent(graph, answer=repr, schedule=schedule)

    The keywords are those of ``plans()``: by default some steps fan out
    with ``All`` and some edges are conditional. Each drawn graph is a
    fresh object, so a ``Runner`` freezing it does not affect other
    examples; ``graph.plan`` is the plan it was built from.
    """
    return plans(
        max_steps=max_steps,
        max_actions=max_actions,
        max_depth=max_depth,
        interrupts=interrupts,
        effects=effects,
        shape=shape,
        fans=fans,
        conditions=conditions,
    ).map(GeneratedGraph)


def schedules(
    *, max_pauses: int = 6, crashes: bool = True, max_saves: int = 20
) -> st.SearchStrategy[Schedule]:
    """Random ways to go through a run's pauses.

    For each of the first ``max_pauses`` pauses: resume hot (the same
    ``Runner``) or cold (a new ``Runner`` and a new checkpointer handle), and
    answer every pending interrupt at once or only the first; sometimes
    every pause is resumed cold (``cold=True``). With
    ``crashes``, also some save numbers (up to ``max_saves``) at which the
    process dies just before saving. Pauses past the drawn ones resume hot
    with every answer at once.
    """
    flags = st.lists(st.booleans(), max_size=max_pauses).map(tuple)
    cold: st.SearchStrategy[bool | tuple[bool, ...]] = st.one_of(flags, st.just(True))
    deaths = (
        st.frozensets(st.integers(1, max_saves), max_size=3) if crashes else st.just(frozenset())
    )
    return st.builds(Schedule, cold=cold, one_by_one=flags, crashes=deaths)
