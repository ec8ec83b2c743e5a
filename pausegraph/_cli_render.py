"""What the ``pausegraph`` command prints, and what it reads from a store alone.

``runs``, ``show`` and ``history`` get no WORKFLOW, so they cannot build a
``Runner``: they read checkpoints directly. This module turns a checkpoint
into a status, its pending interrupts and JSON-ready values, and lays out
the human tables. It never writes to a store.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Sequence
from typing import Any

from ._commands import After, Before, DynamicInterrupt, Paused, PendingInterrupt, Status
from ._machine import pending_of as _pending_of
from ._machine import status_of as _status_of
from ._records import AtAfter, AtBefore, Checkpoint

BYTES_MARKER = "base64:"


def jsonable(value: Any) -> Any:
    """Turn a msgpack-native value into something ``json.dumps`` prints faithfully.

    JSON has no bytes: ``bytes`` become the string ``"<bytes base64:...>"``, a
    marker meant for reading, not for parsing back. Dict keys that are not
    strings are printed with ``json.dumps`` rules (``1`` becomes ``"1"``).
    """
    if isinstance(value, (bytes, bytearray)):
        return f"<bytes {BYTES_MARKER}{base64.b64encode(bytes(value)).decode('ascii')}>"
    if isinstance(value, dict):
        return {_key(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)  # msgpack ExtType and the like: shown, not parsed


def _key(key: Any) -> Any:
    if isinstance(key, (str, int, float, bool)) or key is None:
        return key
    return json.dumps(jsonable(key))


def dumps(value: Any, *, indent: int | None = None) -> str:
    return json.dumps(jsonable(value), indent=indent, ensure_ascii=False)


def status_of(checkpoint: Checkpoint, running: bool = False) -> Status:
    """The status of a run from its latest checkpoint (and whether a live process holds it)."""
    return _status_of(checkpoint.stage, running=running)


def pending_of(checkpoint: Checkpoint) -> tuple[PendingInterrupt, ...]:
    """The interrupts a paused or failed run waits on, in step order (none at a breakpoint)."""
    return _pending_of(checkpoint.stage)


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
    workflow: str,
    run_id: str,
    status: Status,
    super_step: int,
    values: dict[str, Any],
    interrupts: Iterable[PendingInterrupt],
) -> dict[str, Any]:
    """The JSON object ``show --json`` prints (``run``/``resume`` add ``reason``)."""
    return {
        "workflow": workflow,
        "run_id": run_id,
        "status": status.value,
        "super_step": super_step,
        "values": jsonable(values),
        "interrupts": [
            {"id": i.id, "step_id": i.step_id, "payload": jsonable(i.payload)} for i in interrupts
        ],
    }


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Left-aligned columns separated by two spaces; no trailing blanks."""
    cells = [list(header), *([str(c) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)).rstrip() for row in cells
    ]
    return "\n".join(lines) + "\n"
