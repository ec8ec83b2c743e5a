"""The per-row fast paths of ``pausegraph runs`` and ``inbox``: same answers as the slow ones."""

from __future__ import annotations

import gc
import json
import random
import tracemalloc
from typing import Any

import msgpack
import pytest

from pausegraph import Graph, Interrupt, LastWriteWins, Runner, cli, open_checkpointer
from pausegraph import _cli_render as render
from pausegraph._codec import unpack_bounded
from pausegraph._commands import Status
from pausegraph._inbox import listed_status
from pausegraph._values import pack
from pausegraph.checkpointers import MemoryCheckpointer, RunSummary
from pausegraph.checkpointers._checkpointer import SummaryData, summary_data, summary_fields
from pausegraph.errors import CorruptCheckpointError


def _summary(data: bytes, status: str = "paused") -> RunSummary:
    return RunSummary("wf", "r1", 1, status, 0, None, data)


def test_a_container_of_more_than_15_items_still_decodes() -> None:
    value = [list(range(40)), {str(n): n for n in range(40)}, "x" * 300]
    assert unpack_bounded(pack(value)) == value


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (pack([1, 2]) + b"\x00", "1 bytes follow the value"),
        (b"\xdc\x00\x20\x01", "a container claims more items"),
        (pack({"a": 1})[:-1], "a container claims more items"),
        (msgpack.packb(msgpack.ExtType(5, b"xy")), "extension type"),
        (b"", "ends inside a value"),
    ],
)
def test_small_bytes_are_refused_with_the_pre_pass_message(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        unpack_bounded(data)


def test_the_items_limit_still_holds_for_small_bytes() -> None:
    assert unpack_bounded(pack([1, 2, 3]), items=3) == [1, 2, 3]
    with pytest.raises(ValueError, match="max_array_len"):
        unpack_bounded(pack([1, 2, 3, 4]), items=3)


@pytest.mark.parametrize("header", [b"\xdc\x0f\xa0", b"\x9f", b"\xde\x0f\xa0", b"\x8f"])
def test_nested_headers_cannot_make_a_small_read_allocate_much(header: bytes) -> None:
    # each header claims many items that are not there: a decoder that
    # preallocated each claim would allocate about 4000 * 8 bytes per header
    data = header * 1000
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="ends inside a value"):
            unpack_bounded(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 200 * len(data) + 100_000


def _engine_summary() -> bytes:
    payload = {"question": "approve?", "amount": 3}
    return pack([2, "interrupt:ask", [["1.0.0", "ask", payload, None], ["1.0.1", "ask", 1, 7]]])


@pytest.mark.parametrize(
    "data",
    [
        _engine_summary(),
        pack([1, "layer:1", []]),
        pack([True, "x", []]),  # not what the engine writes: converted as before
        pack([1, "x", [[5, "s", None, True]]]),
        pack(["3", "x", [("i", "s", None, "9")]]),
    ],
)
def test_summary_fields_agree_with_summary_data(data: bytes) -> None:
    summary = _summary(data)
    fields = summary_fields(summary)
    assert SummaryData(*fields) == summary_data(summary)
    assert type(fields[0]) is int
    assert all(type(i) is tuple for i in fields[2])


@pytest.mark.parametrize("value", [[1, "x"], [1, "x", [[1, 2]]], ["a", "x", []], [1, "x", 3]])
def test_a_summary_no_engine_wrote_is_corrupt(value: Any) -> None:
    with pytest.raises(CorruptCheckpointError):
        summary_fields(_summary(pack(value)))


def test_listed_status_reads_every_status_and_refuses_others() -> None:
    store = MemoryCheckpointer()
    for status in ("paused", "failed", "cancelled", "done", "queued"):
        assert listed_status(_summary(b"", status), store) is Status(status)
    with pytest.raises(ValueError, match="bogus"):
        listed_status(_summary(b"", "bogus"), store)


@pytest.mark.parametrize(
    "ms",
    [0, 999, 1000, 1_700_000_000_001, 1_700_000_000_999, -1, -999, -1001, 253_402_300_799_999],
)
def test_times_format_as_time_does(ms: int) -> None:
    times = cli._Times()
    assert times(ms) == cli._time(ms)
    assert times(ms) == cli._time(ms)  # and from its cache


def test_table_is_unchanged_by_non_printing_cells() -> None:
    text = render.table(("A", "B"), [("x\ny", 1), ("ok", "z  ")])
    assert text == "A       B\n'x\\ny'  1\nok      z\n"


def test_times_agree_with_time_on_random_moments() -> None:
    rng = random.Random(7)
    times = cli._Times()
    for _ in range(20_000):
        ms = rng.randrange(-(2**32) * 1000, 2**32 * 1000)
        assert times(ms) == cli._time(ms), ms


def _asks(state: Any) -> Any:
    yield Interrupt(state["payload"])
    return {}


@pytest.mark.parametrize(
    "payload",
    [
        {"question": "approve?", "amount": 3, "items": [1, 2.5, None, True]},
        {"blob": b"\x00\x01", "nested": [b"a"]},
        {b"key": 1, 2: "two"},
    ],
)
def test_inbox_json_prints_payloads_as_jsonable_does(
    tmp_path: Any, capsys: pytest.CaptureFixture[str], payload: Any
) -> None:
    graph = Graph("asks", {"payload": LastWriteWins()}).step("ask", _asks)
    store = f"file:{tmp_path}/runs"
    Runner(graph, open_checkpointer(store)).run("r1", {"payload": payload})
    assert cli.main(["--store", store, "inbox", "--json"]) == 0
    (printed,) = json.loads(capsys.readouterr().out)
    assert printed["payload"] == json.loads(json.dumps(render.jsonable(payload)))


def test_listings_run_without_the_cycle_collector_and_restore_it(
    tmp_path: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    graph = Graph("asks", {"payload": LastWriteWins()}).step("ask", _asks)
    store = f"file:{tmp_path}/runs"
    Runner(graph, open_checkpointer(store)).run("r1", {"payload": 1})
    seen: list[bool] = []

    def fields(summary: RunSummary) -> Any:
        seen.append(gc.isenabled())
        return summary_fields(summary)

    monkeypatch.setattr(cli, "summary_fields", fields)
    assert gc.isenabled()
    assert cli.main(["--store", store, "runs"]) == 0
    assert seen == [False]
    assert gc.isenabled()
    for words in (["inbox"], ["show", "r1"], ["history", "r1"]):
        assert cli.main(["--store", store, *words]) == 0
        assert gc.isenabled()
    gc.disable()
    try:
        assert cli.main(["--store", store, "runs"]) == 0
        assert not gc.isenabled()  # left as it was found
    finally:
        gc.enable()
    assert "r1" in capsys.readouterr().out
