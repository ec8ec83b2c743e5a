"""The pauses a Runner holds: the live generators of its suspended steps.

Resuming a run in the process that paused it just sends the answer into the
live generator. A ``Runner`` keeps, per run, the pause checkpoint it saved
and the trampolines of the steps suspended there. It uses them only while
the store's history still ends with that checkpoint (``list``, which reads
no values); otherwise another process moved the run on, and the held
generators are closed.

Generators are closed deliberately, never left to the garbage collector:
when the cache is full (the pause held longest goes), when a pause is let
go (``Goto``, ``cancel``, ``delete``, a failure), when the ``Runner`` is
collected and when the interpreter exits (``weakref.finalize``). Closing
runs the steps' ``finally`` blocks, quietly (see ``close_quietly``).
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import attrs

from ._records import Checkpoint
from ._trampoline import Trampoline

MAX_HELD = 1024  # paused runs whose live generators a Runner keeps


class Deletions:
    """The runs deleted through the Runners of this process on one checkpointer object.

    A pause held from before its run was deleted is not that run's any more,
    even if the run was started again and reached a checkpoint of the same
    seq, label and time (which the store's list of checkpoints cannot tell
    apart under a fixed clock). Each deletion takes the next ``tick``; a
    held pause records the tick it was held at (``now``) and is gone if its
    run was deleted after that (``since``). Bounded: past ``limit`` runs the
    record is emptied and ``floor`` set, and every pause held before the
    floor counts as gone (let go, never used wrongly).
    """

    def __init__(self, limit: int = 100_000) -> None:
        # re-entrant: a collection that runs inside it may close a dead Runner's generators,
        # whose finally blocks may make or use Runners on this checkpointer
        self._lock = threading.RLock()
        self._limit = limit
        self._tick = 0
        self._floor = 0
        self._last: dict[tuple[str, str], int] = {}
        # the held pauses of the Runners on this checkpointer object, by id, to let go at
        # once of a run another of them moves on (``moved``); each goes with its Runner
        self._holders: dict[int, weakref.ref[HeldPauses]] = {}

    def register(self, holder: HeldPauses) -> None:
        key = id(holder)
        holders = self._holders

        def gone(_: object, key: int = key) -> None:
            holders.pop(key, None)

        with self._lock:
            holders[key] = weakref.ref(holder, gone)

    def moved(self, workflow_id: str, run_id: str, by: HeldPauses) -> None:
        """The run was moved on (claimed, cancelled, deleted) by the Runner holding ``by``:
        the other Runners close what they hold of it now (SPEC: its ``finally`` runs then)."""
        with self._lock:
            refs = list(self._holders.values())  # one copy in C: no iteration to disturb
        pending: BaseException | None = None
        for ref in refs:
            holder = ref()
            if holder is not None and holder is not by:
                try:
                    holder.let_go(workflow_id, run_id)
                except BaseException as exc:  # KeyboardInterrupt in a finally: close the rest
                    pending = pending or exc
        if pending is not None:
            raise pending

    def now(self) -> int:
        return self._tick

    def deleted(self, workflow_id: str, run_id: str) -> None:
        with self._lock:
            if len(self._last) >= self._limit:
                self._last.clear()
                self._floor = self._tick
            self._tick += 1
            self._last[(workflow_id, run_id)] = self._tick

    def since(self, workflow_id: str, run_id: str, held_at: int) -> bool:
        """Whether the run may have been deleted after ``held_at`` (a tick from ``now``)."""
        with self._lock:
            return self._last.get((workflow_id, run_id), self._floor) > held_at


_DELETIONS: weakref.WeakKeyDictionary[Any, Deletions] = weakref.WeakKeyDictionary()
_DELETIONS_LOCK = threading.RLock()  # re-entrant: see Deletions._lock
# checkpointers that cannot be weak keys, by id: (a reference to it, its deletions)
_BY_ID: dict[int, tuple[Callable[[], object], Deletions]] = {}


def deletions(checkpointer: object) -> Deletions:
    """The deletions the Runners of this process share for ``checkpointer``.

    Kept by the checkpointer object (weakly, or by its id for one that cannot
    be hashed, such as a ``@dataclass``), so that every Runner on it sees the
    others' deletions and cancels.
    """
    with _DELETIONS_LOCK:  # re-entrant: a collection set off in here may come back in
        try:
            found = _DELETIONS.get(checkpointer)
            if found is not None:
                return found
            return _DELETIONS.setdefault(checkpointer, Deletions())
        except TypeError:  # unhashable (or not weakly referable): kept by its id
            fresh = Deletions()
            key = id(checkpointer)
            known = _BY_ID.get(key)
            if known is not None and known[0]() is checkpointer:
                return known[1]

            def forget(_: object, key: int = key) -> None:
                _BY_ID.pop(key, None)

            try:
                ref: Callable[[], object] = weakref.ref(checkpointer, forget)
            except TypeError:  # not weakly referable: kept for as long as the process runs
                ref = _strong(checkpointer)
            _BY_ID[key] = (ref, fresh)
            return fresh


def _strong(obj: object) -> Callable[[], object]:
    return lambda: obj


@attrs.frozen
class Held:
    """A pause this Runner saved, the live generators of its suspended steps, and
    the ``Deletions`` tick it was held at."""

    checkpoint: Checkpoint
    live: dict[str, Trampoline]
    held_at: int = 0


def _close_all(pauses: OrderedDict[str, Held], lock: threading.Lock) -> None:
    with lock:
        held = list(pauses.values())
        pauses.clear()
    for pause in held:
        close(pause.live)


def close(live: dict[str, Trampoline]) -> None:
    """Let live generators go: close each quietly, every one even if a ``finally`` raises
    a ``BaseException`` (``KeyboardInterrupt``), which is raised once all are closed."""
    pending: BaseException | None = None
    for trampoline in live.values():
        try:
            trampoline.close()
        except BaseException as exc:
            pending = pending or exc
    if pending is not None:
        raise pending


class HeldPauses:
    """A bounded map of run id to the pause held for it."""

    def __init__(
        self,
        owner: object,
        deleted: Deletions | None = None,
        limit: int = MAX_HELD,
    ) -> None:
        self._pauses: OrderedDict[str, Held] = OrderedDict()
        self._deleted = Deletions() if deleted is None else deleted
        self._deleted.register(self)
        self._lock = threading.Lock()
        self._limit = limit
        # the finalizer is registered with the first pause held: a Runner made
        # for one call that never pauses (a cold resume) costs no finalizer
        self._owner: weakref.ref[object] | None = weakref.ref(owner)

    def __len__(self) -> int:
        return len(self._pauses)

    def peek(self, run_id: str) -> Held | None:
        """The pause held for ``run_id``, left in place (a refused command keeps it).

        A pause of a run deleted since is let go, and ``None`` returned.
        """
        held = self._pauses.get(run_id)
        if held is not None and self._gone(held):
            self.drop(run_id)
            return None
        return held

    def take(self, run_id: str) -> dict[str, Trampoline]:
        """Remove the pause held for ``run_id`` and hand over its live generators.

        Those of a run deleted since are closed instead (``{}``).
        """
        with self._lock:
            held = self._pauses.pop(run_id, None)
        if held is not None and self._gone(held):
            close(held.live)
            return {}
        return {} if held is None else held.live

    def _gone(self, held: Held) -> bool:
        checkpoint = held.checkpoint
        return self._deleted.since(checkpoint.workflow_id, checkpoint.run_id, held.held_at)

    def drop(self, run_id: str) -> None:
        """Let the pause held for ``run_id`` go, closing its generators."""
        close(self.take(run_id))

    def let_go(self, workflow_id: str, run_id: str) -> None:
        """Close what is held of run ``run_id`` of ``workflow_id``, if anything."""
        with self._lock:
            held = self._pauses.get(run_id)
            if held is None or held.checkpoint.workflow_id != workflow_id:
                return
            del self._pauses[run_id]
        close(held.live)

    def hold(self, checkpoint: Checkpoint, live: dict[str, Trampoline]) -> None:
        """Keep a pause just saved (replacing any older one of the run)."""
        evicted: list[Held] = []
        owner = self._owner
        if owner is not None:
            self._owner = None
            alive = owner()
            if alive is not None:
                weakref.finalize(alive, _close_all, self._pauses, self._lock)
        with self._lock:
            old = self._pauses.pop(checkpoint.run_id, None)
            if old is not None:
                evicted.append(old)
            while len(self._pauses) >= self._limit:
                evicted.append(self._pauses.popitem(last=False)[1])
            self._pauses[checkpoint.run_id] = Held(checkpoint, live, self._deleted.now())
        for pause in evicted:
            if pause.live is not live:
                close({s: t for s, t in pause.live.items() if live.get(s) is not t})
