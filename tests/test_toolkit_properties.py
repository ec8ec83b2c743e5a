"""The ready-made properties, as a user calls them from ``@given`` tests."""

from __future__ import annotations

from collections.abc import Generator, Mapping
from typing import Any

import pytest
from hypothesis import given, settings

from pausegraph import Effect, Graph, Interrupt, LastWriteWins
from pausegraph.testing import Schedule, assert_effects_run_once, schedules

# --- assert_effects_run_once with a log shared by every example ------------------------

sent: list[str] = []  # never cleared: as in docs/testing.md


def send_mail(to: str) -> str:
    sent.append(to)
    return "sent"


def mail_then_ask(state: Mapping[str, Any]) -> Generator[Any, Any, dict[str, Any]]:
    receipt = yield Effect(send_mail, "client")
    ok = yield Interrupt("send more?")
    return {"x": [receipt, ok]}


MAIL = Graph("mail", {"x": LastWriteWins()}).step("s", mail_then_ask)


@settings(max_examples=15)
@given(schedule=schedules())
def test_a_log_shared_across_examples_only_counts_the_calls_of_each_check(
    schedule: Schedule,
) -> None:
    assert_effects_run_once(MAIL, schedule=schedule, answer=str, log=sent, expected=["client"])


def test_a_check_still_fails_on_a_rerun_after_earlier_calls_in_the_log() -> None:
    def mails_outside(state: Mapping[str, Any]) -> Generator[Any, Any, dict[str, Any]]:
        send_mail("boss")  # a bug: runs again on every replay
        ok = yield Interrupt("?")
        return {"x": ok}

    sent[:] = ["boss", "boss", "client"]  # what earlier checks left
    graph = Graph("mail", {"x": LastWriteWins()}).step("s", mails_outside)
    with pytest.raises(
        AssertionError,
        match=r"^effects did not run exactly once:\n  'boss' ran again \(calls #1 and #2\)",
    ):
        assert_effects_run_once(graph, schedule=Schedule(cold=True), log=sent)
