"""Graph: the steps, their edges, validation, layers and a Mermaid picture."""

from __future__ import annotations

import graphlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ._channels import AnyReducer, Append, LastWriteWins, MergeMap, Reducer
from ._records import Structure
from ._values import shown, storable
from .errors import GraphError

StepFn = Callable[[Mapping[str, Any]], Any]

_REDUCER_TYPES = (LastWriteWins, MergeMap, Append, Reducer)


class Graph:
    """A workflow: named channels, steps, and edges between steps.

    Build it with chained calls; it is checked as it is built, and frozen once
    a ``Runner`` uses it::

        graph = (
            Graph("expenses", {"amount": LastWriteWins(), "log": Append()})
            .step("submit", submit)
            .step("approve", approve)
            .edge("submit", "approve")
        )

    Steps with no path between them run in the same layer (super-step), in
    the order they were added. A step runs after everything that has an edge
    into it, even indirectly: its layer is the length of the longest path to
    it from a step without predecessors.
    """

    def __init__(self, name: str, channels: Mapping[str, AnyReducer]) -> None:
        if not _storable_id(name):
            msg = f"a graph needs a non-empty string name with no lone surrogate, got {shown(name)}"
            raise GraphError(msg)
        if not isinstance(channels, Mapping):
            msg = (
                f"graph {shown(name)} needs its channels as a mapping of name to reducer, "
                f"e.g. {{'total': LastWriteWins()}}; "
                f"got {type(channels).__name__} {shown(channels)}"
            )
            raise GraphError(msg)
        for channel, reducer in channels.items():
            if not _storable_id(channel):
                msg = (
                    "channel names are non-empty strings with no lone surrogate, "
                    f"got {shown(channel)}"
                )
                raise GraphError(msg)
            if not isinstance(reducer, _REDUCER_TYPES):
                msg = (
                    f"channel {shown(channel)} needs a reducer (LastWriteWins(), MergeMap(), "
                    "Append() "
                    f"or Reducer(fn, default)), got {shown(reducer)}"
                )
                raise GraphError(msg)
            if isinstance(reducer, Reducer) and not callable(reducer.fn):
                msg = (
                    f"channel {shown(channel)}: Reducer(fn, default) needs a callable fn(current, "
                    f"incoming) -> new, got {shown(reducer.fn)}"
                )
                raise GraphError(msg)
            try:
                reducer.initial()
            except Exception as exc:
                msg = f"the default of channel {shown(channel)} cannot be stored: {exc}"
                raise GraphError(msg) from None
        self.name = name
        self.channels: Mapping[str, AnyReducer] = dict(channels)
        self._steps: dict[str, StepFn] = {}
        self._preds: dict[str, list[str]] = {}
        self._edges: list[tuple[str, str]] = []
        self.when: dict[tuple[str, str], Callable[[Mapping[str, Any]], Any]] = {}
        self._layers: tuple[tuple[str, ...], ...] | None = None
        self.step_index: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"<Graph {self.name!r}: {len(self._steps)} steps, {len(self._edges)} edges>"

    @property
    def steps(self) -> Mapping[str, StepFn]:
        """The step functions by id, in the order they were added."""
        return self._steps

    @property
    def edges(self) -> tuple[tuple[str, str], ...]:
        return tuple(self._edges)

    def _check_open(self, call: str) -> None:
        if self._layers is not None:
            msg = (
                f"graph {shown(self.name)} is frozen (a Runner uses it): "
                f"build a new Graph instead of calling {call}"
            )
            raise GraphError(msg)

    def step(self, step_id: str, fn: StepFn) -> Graph:
        """Add a step: ``fn(state)`` returns its writes, or is a generator function.

        Raises ``GraphError`` for an empty or duplicate id, a frozen graph,
        or an ``fn`` that is not callable. An ``async def`` function is a
        callable too, but what it returns is not writes: its run fails with a
        ``StepError`` saying so (SPEC, Steps).
        """
        self._check_open(f".step({shown(step_id)}, ...)")
        if not isinstance(step_id, str) or not step_id:
            msg = f"a step id is a non-empty string, got {shown(step_id)}"
            raise GraphError(msg)
        if not _storable_id(step_id):
            msg = f"step id {shown(step_id)} holds a lone surrogate, which no store can keep"
            raise GraphError(msg)
        if step_id in self._steps:
            msg = (
                f"duplicate step id {shown(step_id)}: every step of graph {shown(self.name)} "
                "needs its own id"
            )
            raise GraphError(msg)
        if not callable(fn):
            msg = f"step {shown(step_id)} needs a callable taking the state, got {shown(fn)}"
            raise GraphError(msg)
        self.step_index[step_id] = len(self._steps)
        self._steps[step_id] = fn
        self._preds[step_id] = []
        return self

    @property
    def preds(self) -> Mapping[str, list[str]]:
        """The steps with an edge into each step, in the order the edges were added."""
        return self._preds

    def edge(
        self,
        src: str,
        dst: str,
        *,
        when: Callable[[Mapping[str, Any]], Any] | None = None,
    ) -> Graph:
        """Make ``dst`` run in a later layer than ``src``.

        With ``when``, the edge is conditional: ``when(state) -> bool`` is
        asked on the state ``dst``'s layer reads, and ``dst`` runs only if
        some edge into it comes from a step that ran and has no ``when`` or
        a true one (see "Conditional edges" in the guide). An edge given
        again counts as one edge that holds if either does (one without
        ``when`` always holds).
        """
        self._check_open(f".edge({shown(src)}, {shown(dst)})")
        unknown = [s for s in (src, dst) if not isinstance(s, str) or s not in self._steps]
        if unknown:
            msg = (
                f"edge {shown(src)} -> {shown(dst)} names unknown step {shown(unknown[0])}: "
                f"add it with .step() first (known: {', '.join(map(repr, self._steps))})"
            )
            raise GraphError(msg)
        if src == dst:
            msg = f"self edge {shown(src)} -> {shown(dst)}: a step cannot wait for itself"
            raise GraphError(msg)
        if when is not None and not callable(when):
            msg = (
                f"edge {shown(src)} -> {shown(dst)} needs a callable when=predicate(state), "
                f"got {shown(when)}"
            )
            raise GraphError(msg)
        edge = (src, dst)
        if src not in self._preds[dst]:
            self._preds[dst].append(src)
            self._edges.append(edge)
            if when is not None:
                self.when[edge] = when
        elif edge in self.when:  # given again: it holds if either holds
            if when is None:
                del self.when[edge]
            elif when is not self.when[edge]:
                self.when[edge] = _AnyOf(self.when[edge], when)
        return self

    def layers(self) -> list[list[str]]:
        """The step ids grouped by layer; layer ``k`` runs as super-step ``k + 1``.

        Inside a layer, steps are in the order they were added. Raises
        ``GraphError`` for an empty graph or a cycle (naming its steps)::

            >>> g.layers()
            [['submit'], ['approve', 'notify'], ['pay']]
        """
        return [list(layer) for layer in self.freeze()] if self._layers else self._layering()

    def _layering(self) -> list[list[str]]:
        if not self._steps:
            msg = f"graph {shown(self.name)} has no steps: add one with .step(step_id, fn)"
            raise GraphError(msg)
        try:
            return layering(self._steps, self._preds)
        except graphlib.CycleError as exc:
            cycle = exc.args[1]
            msg = f"graph {shown(self.name)} has a cycle: {' -> '.join(map(repr, cycle))}"
            raise GraphError(msg) from None

    def freeze(self) -> tuple[tuple[str, ...], ...]:
        """Validate, compute the layers once, and refuse further changes."""
        if self._layers is None:
            self._layers = tuple(tuple(layer) for layer in self._layering())
        return self._layers

    def structure(self) -> Structure:
        conditional = tuple(e for e in self._edges if e in self.when)
        return Structure(tuple(self._steps), tuple(self._edges), conditional)

    def to_mermaid(self) -> str:
        """A Mermaid ``flowchart`` of the steps and edges, one subgraph-free line each.

        Raises ``GraphError`` for an empty graph or a cycle, as ``layers()`` does.
        """
        if self._layers is None:
            self._layering()
        ids = {step: f"s{i}" for i, step in enumerate(self._steps)}
        lines = ["flowchart TD"]
        for step, node in ids.items():
            lines.append(f'    {node}["{_mermaid_text(step)}"]')
        for src, dst in self._edges:
            when = self.when.get((src, dst))
            if when is None:
                lines.append(f"    {ids[src]} --> {ids[dst]}")
            else:
                name = getattr(when, "__name__", None) or type(when).__name__
                lines.append(f"    {ids[src]} -->|{_mermaid_text(name, edge=True)}| {ids[dst]}")
        return "\n".join(lines) + "\n"


def _storable_id(value: object) -> bool:
    """Whether ``value`` can name a graph, channel or step: non-empty text every store keeps."""
    return isinstance(value, str) and bool(value) and value == storable(value)


def layering(steps: Iterable[str], preds: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Group ``steps`` by the length of the longest path to them (``graphlib`` orders).

    Inside a layer, steps keep the order of ``steps``. Raises
    ``graphlib.CycleError`` for a cycle.
    """
    depth: dict[str, int] = {}
    for step in graphlib.TopologicalSorter(preds).static_order():
        depth[step] = max((depth[p] + 1 for p in preds.get(step, ())), default=0)
    buckets: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for step in steps:
        buckets[depth[step]].append(step)
    return buckets


def _mermaid_text(text: str, *, edge: bool = False) -> str:
    """Escape a label for a quoted Mermaid node (entity codes, as Mermaid expects).

    An ``edge`` label (``-->|label|``) is not quoted: Mermaid reads brackets there
    as a node's shape, so they are escaped too.
    """
    kept = " _-.:/@,;!?+*'" if edge else " _-.:/@()[]{},;!?+*'"
    out = []
    for ch in text:
        if ch.isalnum() or ch in kept:
            out.append(ch)
        else:
            out.append(f"#{ord(ch)};")
    return "".join(out)


class _AnyOf:
    """The ``when`` of an edge given more than once: true if any of its predicates is.

    Every predicate is asked, in the order given (none is skipped once one is
    true), so whether one that raises fails the run does not depend on that order.
    """

    __slots__ = ("__name__", "__qualname__", "predicates")
    predicates: tuple[Callable[[Mapping[str, Any]], Any], ...]

    def __init__(self, *predicates: Callable[[Mapping[str, Any]], Any]) -> None:
        flat: list[Callable[[Mapping[str, Any]], Any]] = []
        for p in predicates:
            flat.extend(p.predicates if isinstance(p, _AnyOf) else (p,))
        self.predicates = tuple(flat)
        self.__name__ = " or ".join(getattr(p, "__name__", None) or type(p).__name__ for p in flat)
        self.__qualname__ = " or ".join(
            getattr(p, "__qualname__", None) or type(p).__qualname__ for p in flat
        )

    def __call__(self, state: Mapping[str, Any]) -> bool:
        answers = [bool(p(state)) for p in self.predicates]  # each asked: no short cut
        return True in answers
