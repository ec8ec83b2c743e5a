"""A store written only against the public storage protocol passes the whole suite.

``DictStore`` keeps each run as a list of bytes in a dict. It imports
nothing private: ``FrameInfo``, ``RunSummary``, ``Holder`` and the errors are
public, and ``StoreCheckpointer`` does the codec, snapshots and rebuilds.
docs/storage.md ("Writing a store") walks through it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pausegraph import Checkpointer, CheckpointError, ConflictError
from pausegraph.checkpointers import FrameInfo, Holder, RunSummary, StoreCheckpointer
from pausegraph.testing import CheckpointerConformance


class DictStore:
    """Runs in a dict of lists of bytes; a threading lock per run is its live lock."""

    def __init__(self) -> None:
        self.frames_of: dict[tuple[str, str], list[tuple[FrameInfo, bytes]]] = {}
        self.summary_of: dict[tuple[str, str], RunSummary] = {}
        self.live: dict[tuple[str, str], tuple[threading.Lock, list[Holder]]] = {}
        self.guard = threading.Lock()  # makes each method one atomic step

    def append(self, info: FrameInfo, frame: bytes, summary: RunSummary) -> None:
        key = (summary.workflow_id, summary.run_id)
        where = f"run {key[1]!r} of workflow {key[0]!r}"
        with self.guard:
            run = self.frames_of.setdefault(key, [])
            if info.seq <= len(run):  # the claim: one writer per seq
                msg = f"{where} already has checkpoint {info.seq}: another writer saved it first"
                raise ConflictError(msg)
            if info.seq != len(run) + 1:
                msg = f"{where} has {len(run)} checkpoints; the next must be seq {len(run) + 1}, not {info.seq}"  # noqa: E501
                raise CheckpointError(msg)
            run.append((info, bytes(frame)))
            self.summary_of[key] = summary

    def frames(self, workflow_id: str, run_id: str) -> list[FrameInfo]:
        with self.guard:
            return [info for info, _ in self.frames_of.get((workflow_id, run_id), [])]

    def read(self, workflow_id: str, run_id: str, first: int, last: int) -> list[bytes]:
        with self.guard:
            return [data for _, data in self.frames_of.get((workflow_id, run_id), [])][
                first - 1 : last
            ]

    def runs(
        self, *, workflow_id: str | None = None, status: str | None = None
    ) -> list[RunSummary]:
        with self.guard:
            return [
                s
                for s in self.summary_of.values()
                if workflow_id in (None, s.workflow_id) and status in (None, s.status)
            ]

    def delete(self, workflow_id: str, run_id: str) -> None:
        with self.guard:
            self.frames_of.pop((workflow_id, run_id), None)
            self.summary_of.pop((workflow_id, run_id), None)

    @contextmanager
    def lock(self, workflow_id: str, run_id: str) -> Iterator[None]:
        with self.guard:
            lock, holders = self.live.setdefault((workflow_id, run_id), (threading.Lock(), []))
        if not lock.acquire(blocking=False):
            who = holders[0].describe() if holders else "another thread"
            raise ConflictError(f"run {run_id!r} of workflow {workflow_id!r} is running: {who}")
        holders.append(Holder.here())
        try:
            yield
        finally:
            holders.clear()
            lock.release()

    def holder(self, workflow_id: str, run_id: str) -> Holder | None:
        with self.guard:
            _, holders = self.live.get((workflow_id, run_id), (None, []))
            return holders[0] if holders else None

    def sync(self) -> None:
        pass  # nothing outlives the process


class TestDictStore(CheckpointerConformance):
    durable = False

    def make_checkpointer(self, tmp_path: Path) -> Checkpointer:
        return StoreCheckpointer(DictStore())


SLOW_SUITE = """
import time
from hypothesis import settings
from pausegraph.checkpointers import StoreCheckpointer
from pausegraph.testing import CheckpointerConformance
from test_tiny_store import DictStore

settings.register_profile("user", max_examples=4)  # hypothesis's own deadline: 200 ms
settings.load_profile("user")


class SlowStore(DictStore):
    slow = True

    def append(self, info, frame, summary):
        if self.slow:  # once a store (each test has its own): past the 200 ms deadline
            self.slow = False
            time.sleep(0.25)  # a slow disk's fsync, a far server
        return super().append(info, frame, summary)


class TestSlowStore(CheckpointerConformance):
    durable = False

    def make_checkpointer(self, tmp_path):
        return StoreCheckpointer(SlowStore())
"""


def test_the_suite_sets_no_deadline_a_slow_correct_store_passes(tmp_path: Path) -> None:
    """A user's project has no profile that lifts hypothesis's 200 ms deadline: the
    suite's property tests must not fail a store whose appends take longer."""
    (tmp_path / "test_slow_store.py").write_text(SLOW_SUITE)
    here = Path(__file__).resolve().parent
    done = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir",
            str(tmp_path), "-c", os.devnull, "-k",
            "test_values_round_trip_exactly or test_deltas_rebuild_the_same_values_as_snapshots",
            str(tmp_path / "test_slow_store.py"),
        ],
        capture_output=True, text=True, check=False, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(here), "HYPOTHESIS_PROFILE": ""},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "2 passed" in done.stdout
