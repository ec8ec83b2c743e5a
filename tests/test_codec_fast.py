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
from hypothesis import example, given
from hypothesis import strategies as st

from pausegraph._codec import (
    _fast_delta,
    _structure_entry,
    converter,
    decode_frame,
    encode_frame,
    extension_of,
    structure_frame,
)
from pausegraph._records import (
    Asked,
    AtInterrupt,
    Checkpoint,
    Entry,
    Forked,
    Frame,
    InLayer,
    Progress,
    ProgressBuilder,
    Raised,
    Returned,
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
    | st.floats()
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
        entry[draw(st.sampled_from(["deadline_ms", "sleep", "branch", "x"]))] = draw(
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
    slow = _cattrs(raw)
    if fast is None:
        return
    assert not isinstance(slow, Exception), slow
    assert fast == slow
    assert pack(converter.unstructure(fast, Frame)) == pack(converter.unstructure(slow, Frame))
    mine_fields = attrs.astuple(fast, recurse=False)
    for mine, theirs in zip(mine_fields, attrs.astuple(slow, recurse=False), strict=True):
        assert type(mine) is type(theirs)


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

    def counting(entry_id: str, payload: Any) -> Asked:
        built.append(entry_id)
        return asked(entry_id, payload)

    monkeypatch.setattr(_codec, "_asked", counting)
    progress = Progress(0, 1, journals={"s": (Asked("1.0.0", 1), Asked("1.0.1", [2]))})
    snapshot = Frame(3, 1, "interrupt:s", 5, AtInterrupt(progress), values={})
    raw = converter.unstructure(snapshot, Frame)
    assert _fast_delta(raw) is None  # a snapshot: not the delta fast path
    assert structure_frame(raw) == snapshot
    assert built == ["1.0.0", "1.0.1"]


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
