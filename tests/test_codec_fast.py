"""The codec's fast path for a layer's deltas builds exactly what cattrs builds.

``_codec._fast_delta`` decodes the commonest frame of a long pause/resume
loop (a delta whose stage carries a progress of plain interrupts, answers
and a claim) without cattrs; for anything else it answers ``None`` and cattrs
decides. The rule pinned here: whenever the fast path answers, cattrs
accepts the same frame and builds an equal one (equal by encoding too, so
``1`` never passes for ``True``); a frame cattrs refuses never gets through
the fast path. The journal hook is checked the same way against the tagged
union it shortcuts.
"""

from __future__ import annotations

from typing import Any

import attrs
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pausegraph import Graph, Interrupt, LastWriteWins, MemoryCheckpointer, Resume, Runner
from pausegraph._channels import Change, Op
from pausegraph._codec import (
    _fast_delta,
    _fast_frame,
    _fast_plain,
    _structure_entry,
    converter,
    decode_frame,
    encode_frame,
    extension_of,
    frame_of,
    structure_frame,
)
from pausegraph._records import (
    Asked,
    AtAfter,
    AtBefore,
    AtInterrupt,
    Breakpoints,
    Cancelled,
    Checkpoint,
    Entry,
    Failed,
    Failure,
    Finished,
    Forked,
    Frame,
    InLayer,
    OwesAfter,
    Progress,
    ProgressBuilder,
    Raised,
    Returned,
    Start,
    Structure,
    progress_of,
)
from pausegraph._values import pack

odd = st.sampled_from([None, 1, True, 1.5, "1", b"1", [], {}, [1], {"k": 1}])
ids = st.text(max_size=6)
payloads = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)  # NaN != NaN: records holding it never compare equal
    | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=2), inner),
    max_leaves=4,
)


@st.composite
def raw_entries(draw: st.DrawFn) -> Any:
    entry: dict[Any, Any] = {"t": "ask", "id": draw(ids), "payload": draw(payloads)}
    choice = draw(st.integers(0, 9))
    if choice == 0:
        entry["id"] = draw(odd)
    elif choice == 1:
        entry[draw(st.sampled_from(["deadline_ms", "sleep", "branch", "asked_ms", "x"]))] = draw(
            st.integers(0, 5) | st.booleans() | st.text(max_size=2)
        )
    elif choice == 2:
        entry = {"t": "ret", "effect": draw(ids), "value": draw(payloads)}
    elif choice == 3:
        entry = {"t": "all", "count": draw(st.integers(0, 3))}
    elif choice == 4:
        del entry[draw(st.sampled_from(["t", "id", "payload"]))]
    elif choice == 5:
        entry = draw(odd)
    return entry


@st.composite
def raw_deltas(draw: st.DrawFn) -> Any:
    progress: dict[Any, Any] = {
        "layer": draw(st.integers(0, 3)),
        "epoch": draw(st.integers(0, 3)),
        "journals": draw(st.dictionaries(ids, st.lists(raw_entries(), max_size=3), max_size=2)),
        "answers": draw(st.dictionaries(ids, payloads, max_size=2)),
        "claimed": draw(st.lists(ids, max_size=2)),
    }
    stage: dict[Any, Any] = {
        "t": draw(st.sampled_from(["interrupt", "layer"])),
        "progress": progress,
    }
    frame: dict[Any, Any] = {
        "seq": draw(st.integers(1, 2**40)),
        "super_step": draw(st.integers(0, 5)),
        "label": draw(st.text(max_size=8)),
        "timestamp_ms": draw(st.integers(0, 2**45)),
        "stage": stage,
        "extends": draw(st.booleans()),
        "changes": [],
        "epoch_base": draw(st.integers(0, 3)),
    }
    for _ in range(draw(st.integers(0, 2))):
        where = draw(st.sampled_from([frame, progress, stage]))
        key = draw(st.sampled_from([*sorted(where, key=str), "stray", "values", "timeouts"]))
        action = draw(st.integers(0, 2))
        if action == 0 and key in where:
            del where[key]
        else:
            where[key] = draw(odd | st.integers() | st.text(max_size=2))
    return frame


def _cattrs(obj: Any) -> Frame | Exception:
    try:
        return converter.structure(obj, Frame)
    except Exception as exc:  # cattrs refuses bad input with many kinds
        return exc


def _assert_built_as_cattrs_builds(fast: Frame, raw: Any) -> Frame:
    """``fast`` is the frame cattrs builds of ``raw``: equal, by encoding too, field types alike."""
    slow = _cattrs(raw)
    assert not isinstance(slow, Exception), slow
    assert fast == slow
    assert pack(converter.unstructure(fast, Frame)) == pack(converter.unstructure(slow, Frame))
    for mine, theirs in zip(
        attrs.astuple(fast, recurse=False), attrs.astuple(slow, recurse=False), strict=True
    ):
        assert type(mine) is type(theirs)
    return slow


@given(raw_deltas())
@example(
    {
        "seq": 2,
        "super_step": 1,
        "label": "interrupt:s",
        "timestamp_ms": 5,
        "stage": {"t": "interrupt", "progress": {"layer": 0, "epoch": 1, "claimed": [True]}},
        "extends": True,
        "changes": [],
    }
)
def test_the_fast_delta_is_what_cattrs_builds_or_nothing(raw: Any) -> None:
    fast = _fast_delta(raw)
    if fast is not None:
        _assert_built_as_cattrs_builds(fast, raw)


def test_the_fast_path_takes_the_deltas_of_a_loop() -> None:
    progress = Progress(0, 1, journals={"s": (Asked("1.0.7", {"round": 7}),)}, claimed=("1.0.6",))
    checkpoint = Checkpoint(
        "w", "r", 9, 1, "interrupt:s", 5, {}, AtInterrupt(progress), Structure(("s",), ()),
        changes=(), added=progress,
    )  # fmt: skip
    data = encode_frame(checkpoint, snapshot=False)
    frame = decode_frame(data)
    assert _fast_delta(converter.loads(data, dict)) is not None  # type: ignore[attr-defined]
    assert frame == converter.structure(converter.loads(data, dict), Frame)  # type: ignore[attr-defined]
    assert frame.stage == AtInterrupt(progress)
    assert frame.extends
    answered = Progress(0, 1, answers={"1.0.7": [1, {"x": None}]}, claimed=("1.0.7",))
    frame = structure_frame(
        converter.unstructure(Frame(10, 0, "resume", 6, InLayer(answered), extends=True,
                                    changes=()), Frame)
    )  # fmt: skip
    assert frame.stage == InLayer(answered)


@given(st.lists(raw_entries(), max_size=5))
@example([{"t": "ask", "id": 5, "payload": 1}])
def test_the_journal_hook_structures_each_entry_as_the_tagged_union_does(raw: Any) -> None:
    try:
        expected: Any = tuple(_structure_entry(e, Entry) for e in raw)
    except Exception as exc:
        expected = type(exc)
    try:
        got: Any = converter.structure(raw, tuple[Entry, ...])
    except Exception as exc:
        got = type(exc)
    assert got == expected
    if isinstance(got, tuple):
        assert [type(e) for e in got] == [type(e) for e in expected]
        assert all(type(e) in (Asked, Returned, Raised, Forked) for e in got)


def test_a_snapshots_plain_entries_take_the_journal_hook(monkeypatch: Any) -> None:
    # the hook must be registered before the stages' hooks are generated, or a
    # snapshot's journal silently goes through the tagged union entry by entry
    from pausegraph import _codec

    built: list[str] = []
    asked = _codec._asked

    def counting(entry_id: str, payload: Any, asked_ms: int | None) -> Asked:
        built.append(entry_id)
        return asked(entry_id, payload, asked_ms)

    monkeypatch.setattr(_codec, "_asked", counting)
    journal = (Asked("1.0.0", 1), Asked("1.0.1", [2], asked_ms=1_700_000_000_000))
    progress = Progress(0, 1, journals={"s": journal})
    snapshot = Frame(3, 1, "interrupt:s", 5, AtInterrupt(progress), values={})
    raw = converter.unstructure(snapshot, Frame)
    assert _fast_delta(raw) is None  # a snapshot: not the delta fast path
    assert structure_frame(raw) == snapshot
    assert built == ["1.0.0", "1.0.1"]


# --- the save side: ``_fast_frame`` writes the bytes cattrs writes -------------

maybe_odd = st.sampled_from([0, 1, True, False, "", "b", None, ()])
names = st.lists(st.text(max_size=3), max_size=2).map(tuple)


@st.composite
def entries(draw: st.DrawFn) -> Entry:
    branch = draw(st.sampled_from(["", "", "0", "1.2"]))
    kind = draw(st.sampled_from([0, 0, 0, 1, 1, 2, 3]))  # the fast path's own, mostly
    if kind == 0:
        return Asked(
            draw(ids), draw(payloads), draw(st.none() | st.integers(0, 2**45)),
            draw(st.booleans()), branch, draw(st.none() | st.integers(0, 2**45)),
        )  # fmt: skip
    if kind == 1:
        return Returned(draw(ids), draw(payloads), branch)
    if kind == 2:
        return Raised(draw(ids), draw(st.text(max_size=4)), branch, draw(st.booleans()))
    return Forked(draw(st.integers(0, 3)), branch)


@st.composite
def progresses(draw: st.DrawFn) -> Progress:
    return Progress(
        draw(st.integers(0, 3)),
        draw(st.integers(0, 3)),
        finished=draw(st.dictionaries(ids, st.dictionaries(ids, payloads, max_size=2), max_size=2)),
        journals=draw(st.dictionaries(ids, st.lists(entries(), max_size=3).map(tuple), max_size=2)),
        answers=draw(st.dictionaries(ids, payloads, max_size=2)),
        edits=draw(st.lists(st.dictionaries(ids, payloads, max_size=2), max_size=2).map(tuple)),
        claimed=draw(names),
        timeouts=draw(names),
        skipped=draw(names),
        decided=draw(st.booleans()),
        forced=draw(names),
    )


@st.composite
def stages(draw: st.DrawFn) -> Any:
    kind = draw(st.sampled_from([0, 1, 2, 2, 3, 3, 4, 5, 6, 7, 8]))
    if kind == 0:
        return Start(draw(st.integers(0, 3)), draw(st.booleans()), draw(names), draw(names))
    if kind == 1:
        return Finished(draw(names))
    if kind == 2:
        return InLayer(draw(progresses()))
    if kind == 3:
        return AtInterrupt(draw(progresses()))
    if kind == 4:
        return OwesAfter(draw(st.integers(0, 3)), draw(names))
    if kind == 5:
        return AtBefore(draw(st.integers(0, 3)), draw(names), draw(names), draw(names))
    if kind == 6:
        return AtAfter(draw(st.integers(0, 3)), draw(names), draw(names))
    if kind == 7:
        return Cancelled(draw(st.text(max_size=3)), draw(names))
    failure = Failure("s", "EffectError", draw(st.text(max_size=3)))
    return Failed(draw(progresses()), failure, draw(st.none() | st.integers(0, 5)))


@st.composite
def checkpoints(draw: st.DrawFn, *, plain: bool = False) -> tuple[Checkpoint, bool]:
    if plain:  # a layer's end or a run's start: no progress
        stage = draw(
            st.builds(Start, st.integers(0, 3), st.booleans(), names, names)
            | st.builds(Finished, names)
        )
    else:
        stage = draw(stages())
    changes = draw(
        st.none()
        | st.lists(st.builds(Change, ids, st.sampled_from(list(Op)), payloads), max_size=3).map(
            tuple
        )
    )
    added = None
    if type(stage) in (InLayer, AtInterrupt, *()) and draw(st.booleans()):
        added = draw(progresses())
    checkpoint = Checkpoint(
        "w", "r",
        draw(st.integers(1, 2) | st.integers(1, 2**40)),
        draw(st.integers(0, 5)),
        draw(st.text(max_size=8)),
        draw(st.integers(0, 2**45)),
        draw(st.dictionaries(ids, payloads, max_size=3)),
        stage,
        Structure(
            draw(names), draw(st.lists(st.tuples(ids, ids), max_size=2).map(tuple)),
            draw(st.lists(st.tuples(ids, ids), max_size=2).map(tuple)),
        ),
        Breakpoints(draw(names), draw(names)),
        changes,
        added,
        draw(st.none() | maybe_odd | payloads),
        draw(st.integers(0, 3)),
    )  # fmt: skip
    return checkpoint, draw(st.booleans())


@settings(max_examples=400)  # cheap; and each shape must come up
@given(checkpoints())
def test_the_fast_frame_encodes_the_bytes_cattrs_encodes(drawn: tuple[Checkpoint, bool]) -> None:
    checkpoint, snapshot = drawn
    expected = pack(converter.unstructure(frame_of(checkpoint, snapshot=snapshot), Frame))
    assert encode_frame(checkpoint, snapshot=snapshot) == expected
    fast = _fast_frame(checkpoint, snapshot)
    if fast is not None:
        assert pack(fast) == expected


def test_the_fast_frame_takes_every_frame_of_a_pause_resume_cycle() -> None:
    def ask(state: Any) -> Any:
        answer = yield Interrupt({"n": state["n"]})
        return {"n": answer}

    graph = Graph("g", {"n": LastWriteWins()}).step("ask", ask).step("end", lambda s: {"n": 0})
    graph = graph.edge("ask", "end")
    saved: list[Checkpoint] = []

    class Watched(MemoryCheckpointer):
        def save(self, checkpoint: Checkpoint) -> None:
            saved.append(checkpoint)
            super().save(checkpoint)

    runner = Runner(graph, Watched())
    runner.run("r", {"n": 1})
    runner.resume("r", Resume(2))
    assert [c.label for c in saved] == [
        "input", "interrupt:ask", "resume", "layer:1", "layer:2",
    ]  # fmt: skip
    assert [c.added is not None for c in saved] == [False, False, True, False, False]
    for c in saved:
        assert _fast_frame(c, c.seq == 1) is not None, c.label


@settings(max_examples=400)  # cheap; and each shape must come up
@given(checkpoints(plain=True), st.data())
def test_the_fast_plain_frame_is_what_cattrs_builds_or_nothing(
    drawn: tuple[Checkpoint, bool], data: st.DataObject
) -> None:
    checkpoint, snapshot = drawn
    raw = converter.loads(encode_frame(checkpoint, snapshot=snapshot), dict)  # type: ignore[attr-defined]
    for _ in range(data.draw(st.integers(0, 2))):  # now and then, something cattrs may refuse
        where = raw
        for key in data.draw(st.lists(st.sampled_from(["stage", "structure", "breakpoints"]))):
            if type(where.get(key)) is dict:
                where = where[key]
        if type(where.get("changes")) is list and where["changes"] and data.draw(st.booleans()):
            where = where["changes"][0]
        if type(where.get("edges")) is list and where["edges"] and data.draw(st.booleans()):
            where["edges"][0] = data.draw(st.just(["a"]) | st.just(["a", 1]) | st.just("ab"))
            continue
        keys = [*sorted(where, key=str), "stray", "changes", "layer", "past_before"]
        key = data.draw(st.sampled_from(keys))
        if data.draw(st.booleans()) and key in where:
            del where[key]
        else:
            where[key] = data.draw(odd | st.integers() | st.sampled_from(["set", "merge", "x"]))
    fast = _fast_plain(raw)
    if fast is None:
        return
    slow = _assert_built_as_cattrs_builds(fast, raw)
    for mine, theirs in zip(
        attrs.astuple(fast.stage, recurse=False), attrs.astuple(slow.stage, recurse=False),
        strict=True,
    ):  # fmt: skip
        assert type(mine) is type(theirs)
    for mine_change, their_change in zip(fast.changes or (), slow.changes or (), strict=True):
        assert [type(x) for x in attrs.astuple(mine_change, recurse=False)] == [
            type(x) for x in attrs.astuple(their_change, recurse=False)
        ]


_PLAIN = {
    "seq": 1, "super_step": 0, "label": "input", "timestamp_ms": 5,
    "stage": {"layer": 0, "t": "start"},
    "values": {"n": 1},
    "structure": {"steps": ["a", "b"], "edges": [["a", "b"]]},
    "breakpoints": {},
    "input": {"n": 0},
}  # fmt: skip
_ODD_PLAIN: list[tuple[tuple[str, ...], Any]] = [
    (("stage", "layer"), "1"),
    (("stage", "layer"), True),
    (("stage", "past_before"), 1),
    (("stage", "skipped"), ["a", 1]),
    (("stage", "forced"), "ab"),
    (("stage", "t"), "owes-after"),
    (("stage", "stray"), 1),
    (("structure", "edges"), [["a"]]),
    (("structure", "edges"), [["a", 1]]),
    (("structure", "edges"), [("a", "b", "c")]),
    (("structure", "steps"), "ab"),
    (("structure", "conditional"), [["a", "b", "c"]]),
    (("breakpoints", "before"), [1]),
    (("breakpoints", "stray"), []),
    (("values",), {1: 2}),
    (("values",), [1]),
    (("seq",), True),
    (("seq",), 1.0),
    (("label",), 1),
    (("timestamp_ms",), "5"),
    (("epoch_base",), None),
    (("changes",), [{"channel": 1, "op": "set", "value": 1}]),
    (("changes",), [{"channel": "n", "op": "SET", "value": 1}]),
    (("changes",), [{"channel": "n", "op": "set"}]),
    (("changes",), [["n", "set", 1]]),
    (("changes",), {}),
    (("extends",), True),
    (("input",), 0),
    (("input",), ""),
    (("stray",), 1),
]


def test_odd_plain_frames_are_built_as_cattrs_builds_them_or_left_to_it() -> None:
    for path, value in _ODD_PLAIN:
        raw: Any = {k: (dict(v) if type(v) is dict else v) for k, v in _PLAIN.items()}
        where = raw
        for key in path[:-1]:
            where = where[key]
        where[path[-1]] = value
        fast = _fast_plain(raw)
        slow = _cattrs(raw)
        if fast is None:
            continue
        assert not isinstance(slow, Exception), (path, value, slow)
        assert fast == slow, (path, value)
        assert pack(converter.unstructure(fast, Frame)) == pack(
            converter.unstructure(slow, Frame)
        ), (path, value)
    assert _fast_plain(_PLAIN) == _cattrs(_PLAIN)


# --- a layer's plain delta folded without its records (extension_of) ------------------


@given(raw_deltas(), st.integers(0, 2))
@example(
    {
        "seq": 2,
        "super_step": 1,
        "label": "interrupt:s",
        "timestamp_ms": 5,
        "stage": {"t": "layer", "progress": {"layer": 0, "epoch": 1, "answers": {"a": 1}}},
        "extends": True,
    },
    0,
)
def test_an_extension_is_folded_as_its_frame_is_added_or_not_taken(raw: Any, off: int) -> None:
    try:
        data = pack(raw)
    except (TypeError, ValueError, OverflowError):
        return  # msgpack cannot write it: no store holds it
    seq = raw.get("seq") if type(raw) is dict and type(raw.get("seq")) is int else 7
    extension = extension_of(data, seq + off)
    frame = _fast_delta(raw)
    if frame is None or not frame.extends or frame.changes or off:
        assert extension is None
        return
    assert extension is not None
    before = Progress(3, 0, {"done": {"c": 1}}, {"s": (Asked("0", 1),)}, {"0": 2}, claimed=("0",))
    added, folded = ProgressBuilder(before), ProgressBuilder(before)
    progress = progress_of(frame.stage)
    assert progress is not None
    added.add(progress)
    folded.extend(extension)
    assert folded.build() == added.build()
    assert pack(converter.unstructure(folded.build(), Progress)) == pack(
        converter.unstructure(added.build(), Progress)
    )


def test_a_frame_that_does_not_decode_is_not_an_extension() -> None:
    assert extension_of(b"\xa7extends\xc3", 1) is None
    assert extension_of(b"\xdd\xff\xff\xff\xff" + b"\xa7extends\xc3", 1) is None
