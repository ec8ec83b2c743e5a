"""What the ``pausegraph`` command prints, and what it reads from a store alone.

``runs``, ``show`` and ``history`` get no WORKFLOW, so they cannot build a
``Runner``: they read checkpoints directly. This module turns a checkpoint
into a status, its pending interrupts and JSON-ready values, and lays out
the human tables. It never writes to a store.
"""

from __future__ import annotations

import base64
import datetime
import json
import math
import re
import shlex
from collections.abc import Iterable, Sequence
from typing import Any

from ._commands import After, Before, DynamicInterrupt, Paused, PendingInterrupt, RunInfo, Status
from ._machine import driven
from ._machine import info_of as _info_of
from ._machine import pending_of as _pending_of
from ._machine import status_of as _status_of
from ._records import (
    AtAfter,
    AtBefore,
    Cancelled,
    Checkpoint,
    CheckpointMeta,
    Raised,
    Returned,
    progress_of,
)
from ._values import same
from .checkpointers import Checkpointer
from .checkpointers._checkpointer import StoreCheckpointer

BYTES_MARKER = "base64:"
PROG = "pausegraph"


def jsonable(value: Any) -> Any:
    """Turn a msgpack-native value into something ``json.dumps`` prints faithfully.

    JSON has no bytes and no NaN or infinities: ``bytes`` become the string
    ``"<bytes base64:...>"`` and a float that is not finite ``"<float nan>"``,
    ``"<float inf>"`` or ``"<float -inf>"``, markers meant for reading, not for
    parsing back. Dict keys that are not strings are printed with
    ``json.dumps`` rules (``1`` becomes ``"1"``).
    """
    if isinstance(value, (bytes, bytearray)):
        return f"<bytes {BYTES_MARKER}{base64.b64encode(bytes(value)).decode('ascii')}>"
    if isinstance(value, dict):
        return {_key(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return f"<float {value!r}>"
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)  # msgpack ExtType and the like: shown, not parsed


def loads(text: str | bytes) -> Any:
    """Parse standard JSON: ``NaN``, ``Infinity``, ``-Infinity`` and ``1e400`` are refused.

    Raises ``ValueError`` (``json.JSONDecodeError`` for text that is not JSON,
    and for arrays or objects nested deeper than Python's recursion limit).
    Python's ``json`` takes those three words by default, but no other JSON
    parser does, and a value holding one could not be shown back as JSON.
    """
    try:
        return json.loads(text, parse_constant=_not_a_number, parse_float=_finite)
    except RecursionError:
        msg = "arrays or objects nested too deeply to parse"
        raise ValueError(msg) from None


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400: too big for a float, read as an infinity
        msg = f"{text} is too big for a JSON number here (a float goes up to about 1.8e308)"
        raise ValueError(msg)
    return value


def _not_a_number(word: str) -> Any:
    msg = f"{word} is not a JSON number (JSON has no NaN or infinities)"
    raise ValueError(msg)


def _key(key: Any) -> Any:
    if isinstance(key, float) and not math.isfinite(key):
        return f"<float {key!r}>"
    if isinstance(key, (str, int, float, bool)) or key is None:
        return key
    return json.dumps(jsonable(key))


def dumps(value: Any, *, indent: int | None = None) -> str:
    """``value`` as JSON, through ``jsonable``.

    A value ``json`` takes as it is (no bytes, no key it refuses, no NaN:
    most payloads) prints the same without the ``jsonable`` copy, so it is
    tried first; ``json`` raises ``TypeError`` or ``ValueError`` at anything
    else.
    """
    encoder = _ENCODERS.get(indent)
    if encoder is None:
        encoder = _encoder(indent)
    try:
        return encoder.encode(value)
    except (TypeError, ValueError):
        return encoder.encode(jsonable(value))


def _encoder(indent: int | None) -> json.JSONEncoder:
    return json.JSONEncoder(indent=indent, ensure_ascii=False, allow_nan=False)


# what ``json.dumps(value, indent=indent, ensure_ascii=False)`` builds at each call
_ENCODERS = {indent: _encoder(indent) for indent in (None, 2)}


def status_of(checkpoint: Checkpoint, store: Checkpointer | None = None) -> Status:
    """The status of a run from its latest checkpoint and its store's live lock.

    The same rule as ``Runner.state`` (``_machine.status_of``): without a
    ``store`` a run with work to do counts as queued.
    """
    running = store is not None and driven(checkpoint, store.holder)
    return _status_of(checkpoint.stage, running=running)


def pending_of(checkpoint: Checkpoint) -> tuple[PendingInterrupt, ...]:
    """The interrupts a paused or failed run waits on, in step order (none at a breakpoint)."""
    return _pending_of(checkpoint.stage)


def info_of(checkpoint: Checkpoint, store: Checkpointer | None = None) -> RunInfo:
    """What ``Runner.state`` tells about the run (``_machine.info_of``), from the store alone."""
    running = store is not None and driven(checkpoint, store.holder)
    return _info_of(checkpoint, running=running)


def cancel_reason_of(checkpoint: Checkpoint) -> str | None:
    """The reason a cancelled run was given (``""`` when none), ``None`` if not cancelled."""
    stage = checkpoint.stage
    return stage.reason if type(stage) is Cancelled else None


def deadline_text(deadline_ms: int | None, now_ms: int, zone: str = "") -> str:
    """An interrupt's deadline as a UTC time, ``(passed)`` once the clock is at or past it.

    Written as the other times of the command line are (``SINCE``, ``history``,
    whose column headers say UTC), then ``zone`` (the web pages' ``"Z"``).
    """
    if deadline_ms is None:
        return ""
    moment = datetime.datetime.fromtimestamp(deadline_ms / 1000, tz=datetime.timezone.utc)
    text = moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + zone
    return f"{text} (passed)" if deadline_ms <= now_ms else text


def breakpoint_of(checkpoint: Checkpoint) -> tuple[str, str] | None:
    """``("before"|"after", step_id)`` when the run is paused at a breakpoint."""
    stage = checkpoint.stage
    if type(stage) is AtBefore:
        return "before", stage.step_ids[0]
    if type(stage) is AtAfter:
        return "after", stage.step_ids[0]
    return None


def reason_of(outcome: Paused) -> dict[str, str]:
    reason = outcome.reason
    kind = {DynamicInterrupt: "interrupt", Before: "before", After: "after"}[type(reason)]
    return {"kind": kind, "step_id": reason.step_id}


def run_object(
    workflow: str, run_id: str, info: RunInfo, *, cancelled: str | None = None
) -> dict[str, Any]:
    """The JSON object ``show --json`` prints.

    ``failure`` is why a failed run failed (else ``null``), ``edits`` the
    ``Update`` edits kept at a dynamic pause, ``reason`` why a cancelled run
    was cancelled (else ``null``). ``run``/``resume`` replace ``reason`` with
    where the run paused.
    """
    failure = info.failure
    return {
        "workflow": workflow,
        "run_id": run_id,
        "status": str(info.status),
        "super_step": info.super_step,
        "values": jsonable(info.values),
        "interrupts": [
            {
                "id": i.id,
                "step_id": i.step_id,
                "payload": jsonable(i.payload),
                "deadline_ms": i.deadline_ms,
            }
            for i in info.interrupts
        ],
        "failure": None
        if failure is None
        else {
            "step_id": failure.step_id,
            "error_type": failure.error_type,
            "message": failure.message,
        },
        "edits": [jsonable(e) for e in info.edits],
        "reason": cancelled,
    }


def recorded_of(checkpoint: Checkpoint) -> dict[str, Any] | None:
    """What a checkpoint recorded: the answers a ``resume`` carried, an effect's result.

    From the checkpoint's own stage: a ``resume`` claim lists the interrupt
    ids it answered (``Progress.claimed``); an ``effect:<step>`` checkpoint
    ends that step's journal with the effect's ``Returned`` or ``Raised``.
    """
    progress = progress_of(checkpoint.stage)
    if progress is None:
        return None
    lasts = {s: j[-1] for s, j in progress.journals.items() if j}
    return _recorded(checkpoint.label, progress.claimed, progress.answers, lasts)


def history_of(
    store: Checkpointer, workflow: str, run_id: str
) -> list[tuple[CheckpointMeta, dict[str, Any] | None]]:
    """Each checkpoint's meta and what it recorded (``recorded_of``), oldest first.

    On a ``StoreCheckpointer`` the run's frames are read and decoded once,
    oldest first, following what ``recorded_of`` reads of a rebuilt
    checkpoint as ``rebuild`` would fold it (the layer's answers so far,
    each step's last journal entry, the latest claim), so no checkpoint is
    rebuilt: a run of n checkpoints costs O(n), where loading each one
    cost up to a snapshot's deltas apiece (quadratic in a long loop).
    An answer is said once, at the claim that gave it: a driver that takes
    up a queued claim (a worker, a recovery) claims again with the same
    answers in the same epoch, and that claim records nothing new (a
    re-answer of a failed step starts a new epoch, and is said).
    Raises ``CorruptCheckpointError`` for a frame that does not decode.
    """
    if isinstance(store, StoreCheckpointer):
        infos = store.store.frames(workflow, run_id)
        metas = [CheckpointMeta(i.seq, i.super_step, i.label, i.timestamp_ms) for i in infos]
    else:
        metas = store.list(workflow, run_id)
    if isinstance(store, StoreCheckpointer) and metas:
        datas = store.store.read(workflow, run_id, 1, len(metas))
        if len(datas) == len(metas):
            history: list[tuple[CheckpointMeta, dict[str, Any] | None]] = []
            answers: dict[str, Any] = {}
            lasts: dict[str, Any] = {}
            epoch = -1
            for info, meta, data in zip(infos, metas, datas, strict=True):
                frame = store._decoded(workflow, run_id, info, data)
                progress = progress_of(frame.stage)
                if progress is None:
                    answers, lasts, epoch = {}, {}, -1
                    history.append((meta, None))
                    continue
                previous = answers  # what the run had answered up to the frame before
                previous_epoch, epoch = epoch, progress.epoch
                if not frame.extends:  # the frame holds the layer's whole progress
                    answers, lasts = {}, {}
                for step_id in progress.finished:  # as ProgressBuilder.add drops them
                    lasts.pop(step_id, None)
                for step_id, entries in progress.journals.items():
                    if entries:
                        lasts[step_id] = entries[-1]
                claimed = progress.claimed
                if claimed and meta.label == "resume" and epoch == previous_epoch:
                    # a driver taking up a queued claim (a worker, a recovery) claims again
                    # with the same answers, in the same epoch (a re-answer of a failed
                    # step starts a new one, and is said even with the same value)
                    given = progress.answers
                    claimed = tuple(
                        i
                        for i in claimed
                        if i in given and not (i in previous and same(previous[i], given[i]))
                    )
                answers.update(progress.answers)
                history.append((meta, _recorded(meta.label, claimed, answers, lasts)))
            return history
    loaded: list[tuple[CheckpointMeta, dict[str, Any] | None]] = []
    said: tuple[int, dict[str, Any]] | None = None  # the last claim's epoch and answers
    for meta in metas:
        recorded = None
        if meta.label == "resume" or meta.label.startswith("effect:"):
            checkpoint = store.load(workflow, run_id, meta.seq)
            recorded = None if checkpoint is None else recorded_of(checkpoint)
            progress = None if checkpoint is None else progress_of(checkpoint.stage)
            if recorded is not None and "answers" in recorded and progress is not None:
                if said is not None and said[0] == progress.epoch and same(recorded, said[1]):
                    recorded = None  # a driver taking up the claim before it
                else:
                    said = (progress.epoch, recorded)
        loaded.append((meta, recorded))
    return loaded


def _recorded(
    label: str, claimed: tuple[str, ...], answers: dict[str, Any], lasts: dict[str, Any]
) -> dict[str, Any] | None:
    """What ``recorded_of`` says, from a layer's claim, answers and steps' last entries."""
    if label == "resume" and claimed:
        return {"answers": {i: jsonable(answers[i]) for i in claimed if i in answers}}
    if label.startswith("effect:"):
        last = lasts.get(label.removeprefix("effect:"))
        if type(last) is Returned:
            return {"effect": last.effect, "result": jsonable(last.value)}
        if type(last) is Raised:
            return {"effect": last.effect, "error": last.error}
    return None


def recorded_text(recorded: dict[str, Any] | None) -> str:
    """What a checkpoint recorded (``recorded_of``), in one line of ``pausegraph history``."""
    if recorded is None:
        return ""
    if "answers" in recorded:
        return "answered " + ", ".join(f"{i}={dumps(v)}" for i, v in recorded["answers"].items())
    if "result" in recorded:
        return f"{recorded['effect']} returned {dumps(recorded['result'])}"
    return f"{recorded['effect']} raised {recorded['error']}"


def shown(text: str) -> str:
    """``text`` as is when every character prints, else its ``repr``.

    A run id (or a workflow name, a label) may hold a newline, a tab or a lone
    surrogate: printed raw it would split a table row or fail to encode. The
    ``repr`` keeps it on one line, in quotes, so it cannot be mistaken for an
    id that really is spelled with a backslash.
    """
    return text if text.isprintable() else repr(text)


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Left-aligned columns separated by two spaces; no trailing blanks.

    Cells go through ``shown``, so no cell can break its row.
    """
    cells = [list(header)]
    for row in rows:
        texts = [str(c) for c in row]
        # one check for the row: a joined string prints when every cell does
        cells.append(texts if "".join(texts).isprintable() else [shown(t) for t in texts])
    widths = [max(map(len, column)) for column in zip(*cells, strict=False)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(line.format(*row).rstrip() for row in cells) + "\n"


# --- command lines printed for the user to run ---------------------------------------


def shell_word(word: str) -> str:
    """``word`` quoted for a POSIX shell, on one line whatever it holds.

    ``shlex.quote`` keeps a newline inside single quotes, which works but
    splits the printed line; a word with a character that does not print is
    written in ANSI-C quotes (``$'a\\nb'``: bash, zsh, ksh, POSIX.1-2024 sh)
    instead. A lone surrogate that stands for an undecodable byte of the
    command line (``surrogateescape``) is written as that byte, so the
    command gives the same id back.
    """
    if word.isprintable():
        return shlex.quote(word)
    return "$'" + "".join(_ansi_c(ch) for ch in word) + "'"


def _ansi_c(ch: str) -> str:
    if ch in "\\'":
        return "\\" + ch
    if ch.isprintable():
        return ch
    code = ord(ch)
    if code < 0x80:
        return f"\\x{code:02x}"
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape: the byte the shell gave
        return f"\\x{code - 0xDC00:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def shell_join(words: Iterable[str]) -> str:
    return " ".join(shell_word(w) for w in words)


def option(flag: str, value: str) -> list[str]:
    """``[flag, value]``, or ``[flag=value]`` when ``value`` would read as an option."""
    return [f"{flag}={value}"] if value.startswith("-") else [flag, value]


def with_positionals(
    words: Sequence[str], options: Sequence[str], positionals: Sequence[str]
) -> list[str]:
    """``words``, positionals, options; or options, ``--``, positionals if one starts with ``-``."""
    if any(p.startswith("-") for p in positionals):
        return [*words, *options, "--", *positionals]
    return [*words, *positionals, *options]


# --- engine messages in command-line terms -----------------------------------------

# The engine's messages name Python calls (``Resume(answers=...)``, ``run(run_id)``,
# ``Goto(step_id)``, and reprs such as ``Continue()``). ``cli_terms`` rewrites every
# such call, found by name and balanced brackets, into the option or command that
# does the same from a shell, so it still works when a message is reworded.
_CALL = re.compile(
    r"\b(Resume|Continue|Update|Goto|Before|After|run|resume|state|history|open_checkpointer)\("
)
_CLOSE = {"(": ")", "[": "]", "{": "}"}


def _call_end(text: str, start: int) -> int:
    """The index just past the bracket closing the one before ``start``, or -1."""
    stack = [")"]
    i, quote = start, ""
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in _CLOSE:
            stack.append(_CLOSE[ch])
        elif ch == stack[-1]:
            stack.pop()
            if not stack:
                return i + 1
        i += 1
    return -1


def cli_terms(message: str, *, workflow: str | None, run_id: str | None) -> str:
    """``message`` with each Python call it names replaced by its command-line form.

    ``workflow`` (the WORKFLOW spec) and ``run_id`` fill in the commands when
    known; otherwise they read ``WORKFLOW`` and ``ID``.
    """
    out: list[str] = []
    pos = 0
    for match in _CALL.finditer(message):
        if match.start() < pos:
            continue  # inside a call already replaced
        end = _call_end(message, match.end())
        if end < 0:
            break
        name, inner = match.group(1), message[match.end() : end - 1]
        out.append(message[pos : match.start()])
        out.append(_term(name, inner, workflow, run_id))
        pos = end
    out.append(message[pos:])
    text = "".join(out)
    return re.sub(r"\bcall (?=`)", "use ", text)


def resume_answers(inner: str) -> bool:
    """Whether ``Resume(...)``'s printed arguments give answers by id (not a value).

    A ``Resume`` prints what was given, a value first (``Resume(value=...)``);
    so answers are given when the text starts with them (or, printed the old
    way, after ``value=None``), whatever a value's text holds.
    """
    return inner.startswith(("answers=", "value=None, answers={"))


def _term(name: str, inner: str, workflow: str | None, run_id: str | None) -> str:
    bare = inner.strip()
    if name == "open_checkpointer":
        return "--store"
    if bare.startswith("update="):
        return "--update JSON"
    if name == "Continue":
        return "--continue"
    if name == "Update":
        return "--update JSON"
    if name == "Resume":
        return "--answer ID=JSON" if resume_answers(bare) else "--value JSON"
    if name == "Goto":
        literal = re.match(r"(?:step_id=)?('[^']*'|\"[^\"]*\")", bare)
        return f"--goto {literal.group(1) if literal else 'STEP'}"
    if name in ("Before", "After"):
        return f"{name.lower()} step {bare.removeprefix('step_id=')}"
    ids = [run_id] if run_id is not None else ["ID"]
    if name == "state":
        return f"`{shell_join([PROG, 'show', *ids])}`"
    if name == "history":
        return f"`{shell_join([PROG, 'history', *ids])}`"
    spec = workflow if workflow is not None else "WORKFLOW"
    if name == "run":
        options = option("--run-id", ids[0]) + (["--input", "JSON"] if "input" in bare else [])
        return f"`{shell_join(with_positionals([PROG, 'run'], options, [spec]))}`"
    words = shell_join(with_positionals([PROG, "resume"], ["OPTION"], [spec, ids[0]]))
    return (
        f"`{words}` (OPTION: --value JSON, --answer ID=JSON, --continue, --update JSON "
        "or --goto STEP)"
    )
