"""When a store writes a full snapshot instead of just a super-step's changes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pausegraph import Append, Graph, LastWriteWins, MemoryCheckpointer, Runner
from pausegraph.checkpointers._log import SNAPSHOT_CAP, SNAPSHOT_EVERY, SnapshotPolicy
from pausegraph.checkpointers._store import FrameInfo


def _frames(graph: Graph, input: dict[str, object]) -> list[tuple[int, bool]]:
    """(size, is_snapshot) of every frame the policy chose for a run of ``graph``."""
    store = MemoryCheckpointer()
    policy = SnapshotPolicy()
    chosen: list[tuple[int, bool]] = []
    real_save = store.save

    def save(checkpoint):  # watch the policy decide, frame by frame
        data, snapshot = policy.encode(checkpoint)
        policy.saved(len(data), snapshot)
        chosen.append((len(data), snapshot))
        real_save(checkpoint)

    store.save = save  # type: ignore[method-assign]
    Runner(graph, store).run("r", input)
    return chosen


def _chain(n: int, channels, fn) -> Graph:
    g = Graph("g", channels)
    for i in range(n):
        g.step(f"s{i}", fn)
        if i:
            g.edge(f"s{i - 1}", f"s{i}")
    return g


@given(n=st.integers(20, 300), size=st.integers(100, 2000))
def test_an_appended_state_is_not_snapshotted_again_and_again(n: int, size: int) -> None:
    """Snapshots of a growing state grow geometrically: together a small multiple of the writes."""
    frames = _frames(_chain(n, {"log": Append()}, lambda s: {"log": "x" * size}), {})
    _first, *rest = frames
    snapshots = sum(b for b, snap in rest if snap)
    deltas = sum(b for b, snap in rest if not snap)
    assert snapshots <= 1.5 * deltas


@given(n=st.integers(2, 300), size=st.integers(1, 2000), grows=st.booleans())
def test_loading_reads_a_snapshot_and_a_bounded_multiple_of_it(
    n: int, size: int, grows: bool
) -> None:
    """SPEC, Checkpoints (Size): one snapshot plus records totalling a constant multiple of it."""
    channels = {"log": Append()} if grows else {"log": LastWriteWins()}
    frames = _frames(_chain(n, channels, lambda s: {"log": "x" * size}), {})
    biggest = max(b for b, _ in frames)
    last = 0
    for i, (_, snapshot) in enumerate(frames):
        if snapshot:
            last = i
        read = sum(b for b, _ in frames[last : i + 1])
        assert read <= (SNAPSHOT_CAP + 1) * frames[last][0] + biggest


def test_a_small_overwritten_state_is_snapshotted_long_before_the_hard_bound() -> None:
    frames = _frames(_chain(300, {"n": LastWriteWins()}, lambda s: {"n": s["n"] + 1}), {"n": 0})
    longest, run = 0, 0
    for _, snapshot in frames:
        run = 0 if snapshot else run + 1
        longest = max(longest, run)
    assert sum(snap for _, snap in frames) > 10
    assert longest < SNAPSHOT_EVERY // 5


@given(
    before=st.lists(st.tuples(st.integers(0, 5000), st.booleans()), max_size=20),
    frames=st.lists(st.tuples(st.integers(0, 5000), st.booleans()), max_size=60),
)
def test_learning_a_runs_frames_at_once_is_saving_them_one_by_one(
    before: list[tuple[int, bool]], frames: list[tuple[int, bool]]
) -> None:
    one_by_one, at_once = SnapshotPolicy(), SnapshotPolicy()
    for size, snapshot in before:  # a policy that already saw frames
        one_by_one.saved(size, snapshot)
        at_once.saved(size, snapshot)
    one_by_one.refused_bytes = at_once.refused_bytes = 77
    infos = [FrameInfo(n, 0, "", 0, snap, size) for n, (size, snap) in enumerate(frames, 1)]
    for size, snapshot in frames:
        one_by_one.saved(size, snapshot)
    assert at_once.learn(infos) == len(frames)
    assert [getattr(at_once, name) for name in SnapshotPolicy.__slots__] == [
        getattr(one_by_one, name) for name in SnapshotPolicy.__slots__
    ]
