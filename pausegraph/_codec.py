"""The checkpoint codec: engine records to msgpack bytes and back, via cattrs.

This is the one module that turns the records of ``_records`` into bytes.
Tagged unions (journal entries, stages) carry a short tag under ``"t"``.
Decoding refuses what a store could not have written: an unknown tag or a
missing field is a ``ValueError``/``cattrs`` error the store reports as a
corrupt record.
"""

from __future__ import annotations

import operator
from typing import Any, NoReturn

import cattrs
import msgpack
from cattrs.preconf.msgpack import make_converter
from cattrs.strategies import configure_tagged_union

from ._channels import Change, Op, slot_setters
from ._records import (
    Asked,
    AtAfter,
    AtBefore,
    AtInterrupt,
    Breakpoints,
    Cancelled,
    Checkpoint,
    Entry,
    Extension,
    Failed,
    Finished,
    Forked,
    Frame,
    InLayer,
    OwesAfter,
    Progress,
    Raised,
    Returned,
    Stage,
    Start,
    Structure,
    Value,
    progress_of,
    with_progress,
)
from ._values import NATIVE, pack
from .errors import SerializationError

_TAGS: dict[type, str] = {
    Asked: "ask",
    Returned: "ret",
    Raised: "err",
    Forked: "all",
    Start: "start",
    InLayer: "layer",
    OwesAfter: "owes-after",
    AtBefore: "before",
    AtAfter: "after",
    AtInterrupt: "interrupt",
    Failed: "failed",
    Finished: "done",
    Cancelled: "cancelled",
}

converter: cattrs.Converter = make_converter(detailed_validation=False, omit_if_default=True)
converter.register_unstructure_hook(Value, lambda v: v)
converter.register_structure_hook(Value, lambda v, _: v)
converter.register_unstructure_hook(Op, operator.attrgetter("_value_"))
configure_tagged_union(Entry, converter, tag_generator=_TAGS.__getitem__, tag_name="t")
_structure_entry = converter.get_structure_hook(Entry)


def _structure_journal(obj: Any, _: Any) -> tuple[Entry, ...]:
    """A journal as cattrs would structure it, but its plainest entries without cattrs.

    A snapshot of a layer that looped over a thousand interrupts holds a
    thousand ``Asked`` entries with nothing but an id and a payload: those
    are built here directly; any other entry goes through the tagged union.
    """
    entries: list[Entry] = []
    append = entries.append
    for o in obj:
        if type(o) is dict and _plain_ask(o):
            append(_asked(o["id"], o["payload"], o.get("asked_ms")))
        else:
            append(_structure_entry(o, Entry))
    return tuple(entries)


converter.register_structure_hook_func(lambda t: t == tuple[Entry, ...], _structure_journal)
# only now: configuring the stages generates Progress's hook, which takes the journal's then
configure_tagged_union(Stage, converter, tag_generator=_TAGS.__getitem__, tag_name="t")


# --- the fast path of a load: the delta of a layer under way ---------------------
#
# Loading a run paused deep in a loop decodes hundreds of deltas (one per
# claim, one per pause), each a Frame holding a stage holding a Progress
# holding a journal entry or an answer. cattrs builds those through a
# dispatch per field and attrs' frozen ``__init__`` (a ``__setattr__`` call
# per field): about 7 us a delta. ``_fast_delta`` builds the same records
# for that one shape, with exact types only, through the slots' own setters
# (as ``_instructions`` does); anything else, or anything odd (a key it does
# not know, a value of another type), returns ``None`` and cattrs decides,
# raising what it raises. ``tests/test_codec_fast.py`` checks that both give
# equal records, and that the fast one is never taken for a frame cattrs refuses.


_new = object.__new__
_ASKED = slot_setters(Asked)
_PROGRESS = slot_setters(Progress)
_FRAME = slot_setters(Frame)
_IN_LAYER = slot_setters(InLayer)[0]
_AT_INTERRUPT = slot_setters(AtInterrupt)[0]
_PLAIN_ASK = frozenset(("t", "id", "payload"))
_PLAIN_ASK_AT = frozenset(("t", "id", "payload", "asked_ms"))
_DELTA_KEYS = frozenset(
    ("seq", "super_step", "label", "timestamp_ms", "stage", "epoch_base", "extends", "changes")
)
_PROGRESS_KEYS = frozenset(("layer", "epoch", "journals", "answers", "claimed"))
_STAGE_KEYS = frozenset(("t", "progress"))


def _plain_ask(o: dict[Any, Any]) -> bool:
    """An interrupt's entry with an id, a payload and maybe the time it was asked: no more."""
    n = len(o)
    if n == 4:
        if o.keys() != _PLAIN_ASK_AT or type(o["asked_ms"]) is not int:
            return False
    elif n != 3 or o.keys() != _PLAIN_ASK:
        return False
    return o["t"] == "ask" and type(o["id"]) is str


def _head(o: dict[Any, Any]) -> tuple[int, int, str, int, int] | None:
    """A frame's seq, super-step, label, timestamp and epoch base, if of exact types."""
    seq, super_step, timestamp_ms = o.get("seq"), o.get("super_step"), o.get("timestamp_ms")
    label, epoch_base = o.get("label"), o.get("epoch_base", 0)
    if type(seq) is not int or type(super_step) is not int or type(timestamp_ms) is not int:
        return None
    if type(label) is not str or type(epoch_base) is not int:
        return None
    return seq, super_step, label, timestamp_ms, epoch_base


def _frame(
    head: tuple[int, int, str, int, int],
    stage: Stage,
    extends: bool,
    changes: tuple[Change, ...] | None,
    values: dict[str, Any] | None = None,
    structure: Structure | None = None,
    breakpoints: Breakpoints | None = None,
    input: Any = None,
) -> Frame:
    """A ``Frame`` built through its slots (see ``slot_setters``)."""
    frame = _new(Frame)
    f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11 = _FRAME
    f0(frame, head[0])
    f1(frame, head[1])
    f2(frame, head[2])
    f3(frame, head[3])
    f4(frame, stage)
    f5(frame, head[4])
    f6(frame, extends)
    f7(frame, changes)
    f8(frame, values)
    f9(frame, structure)
    f10(frame, breakpoints)
    f11(frame, input)
    return frame


def _asked(entry_id: str, payload: Any, asked_ms: int | None) -> Asked:
    entry = _new(Asked)
    s = _ASKED
    s[0](entry, entry_id)
    s[1](entry, payload)
    s[2](entry, None)
    s[3](entry, False)
    s[4](entry, "")
    s[5](entry, asked_ms)
    return entry


def _delta_parts(o: Any) -> tuple[Any, ...] | None:
    """The checked parts of a layer's delta (journal entries, answers), or ``None``.

    For ``_fast_delta``, which builds its records, and ``extension_of``, which
    does not: both take exactly the same frames.
    """
    if type(o) is not dict or not o.keys() <= _DELTA_KEYS:
        return None
    stage = o.get("stage")
    if type(stage) is not dict or stage.keys() != _STAGE_KEYS:
        return None
    tag = stage["t"]
    if tag == "interrupt":
        set_stage = _AT_INTERRUPT
        stage_cls: type = AtInterrupt
    elif tag == "layer":
        set_stage, stage_cls = _IN_LAYER, InLayer
    else:
        return None
    p = stage["progress"]
    if type(p) is not dict or not p.keys() <= _PROGRESS_KEYS:
        return None
    layer, epoch = p.get("layer"), p.get("epoch")
    journals = p.get("journals", {})
    answers = p.get("answers", {})
    claimed = p.get("claimed", ())
    if type(layer) is not int or type(epoch) is not int or type(journals) is not dict:
        return None
    if type(answers) is not dict or type(claimed) not in (list, tuple):
        return None
    for key in answers:  # loops, not all(...): these hold one or two items
        if type(key) is not str:
            return None
    for c in claimed:
        if type(c) is not str:
            return None
    built: dict[str, tuple[Entry, ...]] = {}
    for step_id, raw in journals.items():
        if type(step_id) is not str or type(raw) is not list:
            return None
        for e in raw:
            if type(e) is not dict or not _plain_ask(e):
                return None
        built[step_id] = tuple([_asked(e["id"], e["payload"], e.get("asked_ms")) for e in raw])
    head = _head(o)
    extends, changes = o.get("extends", False), o.get("changes")
    if head is None or type(extends) is not bool:
        return None
    if changes is not None and changes != []:
        return None
    return (head, extends, changes, set_stage, stage_cls, layer, epoch, built, answers, claimed)


def _fast_delta(o: Any) -> Frame | None:
    """The delta of a layer under way (journal entries, answers), or ``None``: ask cattrs."""
    parts = _delta_parts(o)
    if parts is None:
        return None
    head, extends, changes, set_stage, stage_cls, layer, epoch, built, answers, claimed = parts
    progress = _new(Progress)
    p0, p1, p2, p3, p4, p5, p6, p7, p8, p9, p10 = _PROGRESS
    p0(progress, layer)
    p1(progress, epoch)
    p2(progress, {})
    p3(progress, built)
    p4(progress, answers)
    p5(progress, ())
    p6(progress, tuple(claimed))
    p7(progress, ())
    p8(progress, ())
    p9(progress, True)
    p10(progress, ())
    stage_obj: Stage = _new(stage_cls)
    set_stage(stage_obj, progress)
    return _frame(head, stage_obj, extends, None if changes is None else ())


_EXTENDS = b"\xa7extends\xc3"  # "extends": true, as msgpack writes it


def extension_of(data: bytes, seq: int) -> Extension | None:
    """Frame ``seq`` as an ``Extension`` if it is a layer's plain delta that extends, else None.

    Loading a run paused deep in a loop folds hundreds of such deltas into one
    progress (``_log.rebuild``); an ``Extension`` holds just what the fold
    reads, with no ``Frame``, stage or ``Progress`` built. The frame must be
    exactly what ``_fast_delta`` takes, with ``extends`` set, no changes and
    ``seq`` as its own; anything else (or bytes that do not decode) is
    ``None``, and the caller decodes the frame as usual, which raises what it
    raises. A frame that does not hold ``"extends": true`` is not unpacked.
    """
    if _EXTENDS not in data:
        return None
    try:
        parts = _delta_parts(unpack_bounded(data))
    except Exception:  # bytes that do not decode: the caller's decode says why
        return None
    if parts is None:
        return None
    head, extends, changes, _, _, layer, epoch, built, answers, claimed = parts
    if head[0] != seq or extends is not True or changes:
        return None
    return Extension(seq, layer, epoch, built, answers, tuple(claimed))


def unpack_bounded(data: bytes, *, items: int | None = None) -> Any:
    """msgpack-decode ``data``, allocating at most a fixed multiple of its length.

    Every array or map takes at least a byte, so once ``skip()`` has shown
    that every item each container claims is really there, decoding builds
    at most one container (and preallocates at most one slot) per byte:
    about 64 bytes of Python objects per byte read, whatever the bytes say.
    Small ``data`` (a run summary, a meta) is first decoded in one call that
    refuses any container of more than 15 items: a header byte then
    preallocates at most 15 slots, about 180 bytes per byte read, and only
    what that call refuses pays for the ``skip()`` pre-pass.
    Raises ``ValueError`` at an extension type (timestamps included), at a
    container claiming items that are not there, and (given ``items``, for
    the small fixed-shape meta and header) at an array or map of more than
    ``items`` items. ``docs/storage.md`` ("Faults") says why each limit is
    there.
    """
    n = len(data)
    if n <= _SMALL:
        # one msgpack call, no pre-pass: with no container of more than 15
        # items, a header byte preallocates at most 15 slots (~180 bytes),
        # whatever follows; anything else (more items, an error) is decided
        # by the pre-pass below, so the value and the error are the same
        small = _FIXED if items is None or items > _FIXED else items
        try:
            return msgpack.unpackb(
                data, raw=False, strict_map_key=False, use_list=True,
                ext_hook=_refuse_ext, max_ext_len=0, max_str_len=n,
                max_bin_len=n, max_array_len=small, max_map_len=small,
            )  # fmt: skip
        except (ValueError, msgpack.UnpackException):
            pass
    limit = n if items is None else items
    try:
        if items is None:
            # every item a container claims is there, so the lists preallocated
            # at once never hold more slots than there are bytes; skip() builds nothing
            skipper = msgpack.Unpacker(
                None, max_buffer_size=max(n, 1), max_array_len=n, max_map_len=n, max_ext_len=0
            )
            skipper.feed(data)
            skipper.skip()
            if skipper.tell() != n:
                raise ValueError(f"{n - skipper.tell()} bytes follow the value")
        return msgpack.unpackb(
            data, raw=False, strict_map_key=False, use_list=True,
            ext_hook=_refuse_ext, max_ext_len=0, max_str_len=n,
            max_bin_len=n, max_array_len=limit, max_map_len=limit,
        )  # fmt: skip
    except msgpack.OutOfData:
        msg = "it ends inside a value, or a container claims more items than it holds"
        raise ValueError(msg) from None
    except msgpack.UnpackException as exc:
        raise ValueError(str(exc)) from None
    except ValueError as exc:
        if "max_ext_len" in str(exc):  # a timestamp, or another extension type with content
            raise ValueError(_EXT) from None
        raise


_EXT = "it holds a msgpack extension type, which pausegraph never stores"
_SMALL = 4096  # bytes: up to this, ``unpack_bounded`` tries one call with fix-size limits
_FIXED = 15  # the most items of a msgpack fixarray or fixmap (a one-byte header)


def _refuse_ext(code: int, data: bytes) -> NoReturn:
    raise ValueError(_EXT)


def frame_of(checkpoint: Checkpoint, *, snapshot: bool) -> Frame:
    """The frame a store keeps for ``checkpoint``: a snapshot or a delta."""
    c = checkpoint
    first = c.seq == 1
    if snapshot or first or c.changes is None:
        return Frame(
            c.seq, c.super_step, c.label, c.timestamp_ms, c.stage, c.epoch_base,
            values=c.values,
            structure=c.structure if first else None,
            breakpoints=c.breakpoints if first else None,
            input=c.input if first else None,
        )  # fmt: skip
    stage, extends = c.stage, False
    if c.added is not None:
        stage, extends = with_progress(stage, c.added), True
    return Frame(
        c.seq, c.super_step, c.label, c.timestamp_ms, stage, c.epoch_base, extends,
        changes=c.changes,
    )  # fmt: skip


def encode_frame(checkpoint: Checkpoint, *, snapshot: bool) -> bytes:
    """Encode the frame a store keeps for ``checkpoint``: a snapshot or a delta.

    Raises ``SerializationError`` naming the value msgpack refused.
    """
    c = checkpoint
    try:
        plain = _fast_frame(c, snapshot)
        if plain is not None:
            return pack(plain)
        frame = frame_of(c, snapshot=snapshot)
        return pack(converter.unstructure(frame, Frame))
    except (TypeError, ValueError, OverflowError):
        raise SerializationError(_diagnose(frame_of(c, snapshot=snapshot))) from None


# --- the fast path of a save: a frame's plain data without cattrs ----------------
#
# Every checkpoint is encoded as it is saved, and cattrs' generated hooks (a
# dispatch per field, a tagged union per stage and journal entry) cost 4-14 us
# a frame: a fifth of a memory-store pause/resume cycle. ``_fast_frame``
# builds the very dict cattrs would (same keys, same order, defaults left out
# by the same ``!=`` test, tags last) for the stages and entries a run saves
# at nearly every checkpoint, and ``None`` for anything else, which cattrs
# then encodes. Tuples are left as tuples: msgpack writes them as the arrays
# cattrs' lists become. ``tests/test_codec_fast.py`` checks byte equality
# with cattrs on generated checkpoints.


def _fast_entry(e: Entry) -> dict[str, Any] | None:
    kind = type(e)
    if kind is Asked:
        d: dict[str, Any] = {"id": e.id, "payload": e.payload}  # type: ignore[union-attr]
        if e.deadline_ms != None:  # type: ignore[union-attr]  # noqa: E711 (cattrs' own test)
            d["deadline_ms"] = e.deadline_ms  # type: ignore[union-attr]
        if e.sleep != False:  # type: ignore[union-attr]  # noqa: E712
            d["sleep"] = e.sleep  # type: ignore[union-attr]
        if e.branch != "":
            d["branch"] = e.branch
        if e.asked_ms != None:  # type: ignore[union-attr]  # noqa: E711
            d["asked_ms"] = e.asked_ms  # type: ignore[union-attr]
        d["t"] = "ask"
        return d
    if kind is Returned:
        d = {"effect": e.effect, "value": e.value}  # type: ignore[union-attr]
        if e.branch != "":
            d["branch"] = e.branch
        d["t"] = "ret"
        return d
    return None


def _fast_progress(p: Progress) -> dict[str, Any] | None:
    d: dict[str, Any] = {"layer": p.layer, "epoch": p.epoch}
    if p.finished != {}:
        d["finished"] = p.finished
    if p.journals != {}:
        journals = {}
        for step_id, journal in p.journals.items():
            entries = []
            for e in journal:
                o = _fast_entry(e)
                if o is None:
                    return None
                entries.append(o)
            journals[step_id] = entries
        d["journals"] = journals
    if p.answers != {}:
        d["answers"] = p.answers
    if p.edits != ():
        d["edits"] = p.edits
    if p.claimed != ():
        d["claimed"] = p.claimed
    if p.timeouts != ():
        d["timeouts"] = p.timeouts
    if p.skipped != ():
        d["skipped"] = p.skipped
    if p.decided != True:  # noqa: E712 (cattrs' own test)
        d["decided"] = p.decided
    if p.forced != ():
        d["forced"] = p.forced
    return d


def _fast_stage(stage: Stage) -> dict[str, Any] | None:
    kind = type(stage)
    if kind is Start:
        s: Any = stage
        d: dict[str, Any] = {"layer": s.layer}
        if s.past_before != False:  # noqa: E712 (cattrs' own test)
            d["past_before"] = s.past_before
        if s.skipped != ():
            d["skipped"] = s.skipped
        if s.forced != ():
            d["forced"] = s.forced
        d["t"] = "start"
        return d
    if kind is Finished:
        skipped = stage.skipped  # type: ignore[union-attr]
        return {"skipped": skipped, "t": "done"} if skipped != () else {"t": "done"}
    if kind is InLayer or kind is AtInterrupt:
        return _progress_stage(kind, stage.progress)  # type: ignore[union-attr]
    return None


def _progress_stage(kind: type, progress: Progress) -> dict[str, Any] | None:
    """The dict of an ``InLayer`` or ``AtInterrupt`` (``kind``) holding ``progress``."""
    d = _fast_progress(progress)
    return None if d is None else {"progress": d, "t": _TAGS[kind]}


def _fast_frame(c: Checkpoint, snapshot: bool) -> dict[str, Any] | None:
    """The dict cattrs makes of ``frame_of(c, snapshot=snapshot)``, or ``None``: ask cattrs."""
    whole = snapshot or c.seq == 1 or c.changes is None
    extends = not whole and c.added is not None
    if extends:  # the stage's progress holds only what was added since the last frame
        kind = type(c.stage)
        if kind is not InLayer and kind is not AtInterrupt:
            return None
        s = _progress_stage(kind, c.added)  # type: ignore[arg-type]
    else:
        s = _fast_stage(c.stage)
    if s is None:
        return None
    d: dict[str, Any] = {
        "seq": c.seq,
        "super_step": c.super_step,
        "label": c.label,
        "timestamp_ms": c.timestamp_ms,
        "stage": s,
    }
    if c.epoch_base != 0:
        d["epoch_base"] = c.epoch_base
    if not whole:
        if extends:
            d["extends"] = True
        d["changes"] = [
            {"channel": change.channel, "op": change.op._value_, "value": change.value}
            for change in c.changes  # type: ignore[union-attr]
        ]
        return d
    if c.values is not None:
        d["values"] = c.values
    if c.seq == 1:
        d["structure"] = _structure_dict(c.structure)
        if c.breakpoints is not None:
            d["breakpoints"] = _breakpoints_dict(c.breakpoints)
        if c.input is not None:
            d["input"] = c.input
    return d


def _breakpoints_dict(b: Breakpoints) -> dict[str, Any]:
    d: dict[str, Any] = {}
    if b.before != ():
        d["before"] = b.before
    if b.after != ():
        d["after"] = b.after
    return d


def _structure_dict(structure: Any) -> dict[str, Any]:
    d = {"steps": structure.steps, "edges": structure.edges}
    if structure.conditional != ():
        d["conditional"] = structure.conditional
    return d


def decode_frame(data: bytes) -> Frame:
    """Decode a frame from bytes, allocating at most a fixed multiple of their length.

    Raises ``ValueError`` (or a cattrs error) for bytes no store wrote: the
    caller reports them as a corrupt record.
    """
    return structure_frame(unpack_bounded(data))


def structure_frame(obj: Any) -> Frame:
    """A decoded frame's records: the fast paths for the common frames, else cattrs."""
    return _fast_delta(obj) or _fast_plain(obj) or converter.structure(obj, Frame)


# --- the fast path of a load: a frame between layers ------------------------------
#
# The frames a layer's end saves (a delta of channel changes, or a snapshot
# of the values, with the run's first frame also holding its structure,
# breakpoints and input) have a stage with no progress: ``Start`` or
# ``Finished``. ``_fast_plain`` builds those with exact types only, as
# ``_fast_delta`` does, and returns ``None`` for anything else.

_PLAIN_KEYS = frozenset(
    (
        "seq", "super_step", "label", "timestamp_ms", "stage", "epoch_base", "changes",
        "values", "structure", "breakpoints", "input",
    )
)  # fmt: skip
_START_KEYS = frozenset(("t", "layer", "past_before", "skipped", "forced"))
_DONE_KEYS = frozenset(("t", "skipped"))
_CHANGE_KEYS = frozenset(("channel", "op", "value"))
_STRUCTURE_KEYS = frozenset(("steps", "edges", "conditional"))
_BREAKPOINT_KEYS = frozenset(("before", "after"))
_OPS = {op.value: op for op in Op}
_START = slot_setters(Start)
_FINISHED = slot_setters(Finished)[0]
_CHANGE = slot_setters(Change)
_STRUCTURE = slot_setters(Structure)
_BREAKPOINTS = slot_setters(Breakpoints)


def _names(o: Any) -> tuple[str, ...] | None:
    if type(o) is not list or not all(type(x) is str for x in o):
        return None
    return tuple(o)


def _pairs(o: Any) -> tuple[tuple[str, str], ...] | None:
    if type(o) is not list:
        return None
    for pair in o:
        if type(pair) is not list or len(pair) != 2:
            return None
        if type(pair[0]) is not str or type(pair[1]) is not str:
            return None
    return tuple([(a, b) for a, b in o])


def _plain_stage(o: Any) -> Stage | None:
    if type(o) is not dict:
        return None
    tag = o.get("t")
    if tag == "start" and o.keys() <= _START_KEYS:
        layer, past_before = o.get("layer"), o.get("past_before", False)
        skipped, forced = _names(o.get("skipped", [])), _names(o.get("forced", []))
        if type(layer) is not int or type(past_before) is not bool:
            return None
        if skipped is None or forced is None:
            return None
        start = _new(Start)
        s0, s1, s2, s3 = _START
        s0(start, layer)
        s1(start, past_before)
        s2(start, skipped)
        s3(start, forced)
        return start
    if tag == "done" and o.keys() <= _DONE_KEYS:
        skipped = _names(o.get("skipped", []))
        if skipped is None:
            return None
        done = _new(Finished)
        _FINISHED(done, skipped)
        return done
    return None


def _plain_changes(o: Any) -> tuple[Change, ...] | None:
    if type(o) is not list:
        return None
    built = []
    c0, c1, c2 = _CHANGE
    for raw in o:
        if type(raw) is not dict or raw.keys() != _CHANGE_KEYS:
            return None
        channel, op = raw["channel"], _OPS.get(raw["op"]) if type(raw["op"]) is str else None
        if type(channel) is not str or op is None:
            return None
        change = _new(Change)
        c0(change, channel)
        c1(change, op)
        c2(change, raw["value"])
        built.append(change)
    return tuple(built)


def _plain_structure(o: Any) -> Structure | None:
    if type(o) is not dict or not o.keys() <= _STRUCTURE_KEYS or "steps" not in o:
        return None
    if "edges" not in o:
        return None
    steps, edges = _names(o["steps"]), _pairs(o["edges"])
    conditional = _pairs(o.get("conditional", []))
    if steps is None or edges is None or conditional is None:
        return None
    structure = _new(Structure)
    s0, s1, s2 = _STRUCTURE
    s0(structure, steps)
    s1(structure, edges)
    s2(structure, conditional)
    return structure


def _plain_breakpoints(o: Any) -> Breakpoints | None:
    if type(o) is not dict or not o.keys() <= _BREAKPOINT_KEYS:
        return None
    before, after = _names(o.get("before", [])), _names(o.get("after", []))
    if before is None or after is None:
        return None
    breakpoints = _new(Breakpoints)
    _BREAKPOINTS[0](breakpoints, before)
    _BREAKPOINTS[1](breakpoints, after)
    return breakpoints


def _fast_plain(o: Any) -> Frame | None:
    """A frame whose stage has no progress (a layer's end, a run's start), or ``None``."""
    if type(o) is not dict or not o.keys() <= _PLAIN_KEYS:
        return None
    stage = _plain_stage(o.get("stage"))
    if stage is None:
        return None
    head = _head(o)
    if head is None:
        return None
    changes: tuple[Change, ...] | None = None
    if "changes" in o:
        changes = _plain_changes(o["changes"])
        if changes is None:
            return None
    values = o.get("values")
    if values is not None:
        if type(values) is not dict or not all(type(k) is str for k in values):
            return None
        values = dict(values)
    structure: Structure | None = None
    if "structure" in o:
        structure = _plain_structure(o["structure"])
        if structure is None:
            return None
    breakpoints: Breakpoints | None = None
    if "breakpoints" in o:
        breakpoints = _plain_breakpoints(o["breakpoints"])
        if breakpoints is None:
            return None
    return _frame(head, stage, False, changes, values, structure, breakpoints, o.get("input"))


def _why_not_encodable(value: Any) -> str | None:
    try:
        pack(value)
    except (TypeError, ValueError, OverflowError) as exc:
        return str(exc)
    return None


def _diagnose(frame: Frame) -> str:
    """Find which value of a frame msgpack refused, for the error message."""
    suspects: list[tuple[str, Any]] = []
    for name, value in (frame.values or {}).items():
        suspects.append((f"channel {name!r}", value))
    for change in frame.changes or ():
        suspects.append((f"channel {change.channel!r}", change.value))
    progress = progress_of(frame.stage)
    if progress is not None:
        for step_id, writes in progress.finished.items():
            for channel, value in writes.items():
                suspects.append((f"channel {channel!r} (write of step {step_id!r})", value))
        for step_id, journal in progress.journals.items():
            for entry in journal:
                if type(entry) is Asked:
                    suspects.append((f"interrupt payload of step {step_id!r}", entry.payload))
                elif type(entry) is Returned:
                    suspects.append((f"effect result of step {step_id!r}", entry.value))
        for key, value in progress.answers.items():
            suspects.append((f"the answer to interrupt {key!r}", value))
        for edits in progress.edits:
            for channel, value in edits.items():
                suspects.append((f"channel {channel!r} (update)", value))
    suspects.append(("the run's input", frame.input))
    for what, value in suspects:
        why = _why_not_encodable(value)
        if why is not None:
            return f"{what} cannot be stored: {why}. {NATIVE}"
    return "the checkpoint cannot be encoded by msgpack"  # pragma: no cover - a bug in pausegraph
