"""The web server's finish: skipped steps, JSON errors on every API path, messages in API terms."""

from __future__ import annotations

import re
from collections.abc import Generator, Iterator, Mapping
from typing import Any

import pytest
from _web_flows import approval
from starlette.testclient import TestClient

from pausegraph import Graph, Interrupt, LastWriteWins, MemoryCheckpointer
from pausegraph.checkpointers import Checkpointer
from pausegraph.web import app

LOCAL = "http://127.0.0.1"


def ask(state: Mapping[str, Any]) -> Generator[Any, Any, dict[str, Any]]:
    amount = yield Interrupt("amount?")
    return {"amount": amount}


def is_big(state: Mapping[str, Any]) -> bool:
    return bool(state["amount"] > 100)


def escalate(state: Mapping[str, Any]) -> dict[str, Any]:
    return {"log": "escalated"}


def check(state: Mapping[str, Any]) -> Generator[Any, Any, dict[str, Any]]:
    ok = yield Interrupt("ok?")
    return {"log": f"checked {ok}"}


def branchy() -> Graph:
    """ask, then escalate (only when the amount is big) beside check, which asks again."""
    channels = {"amount": LastWriteWins(), "log": LastWriteWins()}
    return (
        Graph("branchy", channels)
        .step("ask", ask)
        .step("escalate", escalate)
        .step("check", check)
        .edge("ask", "escalate", when=is_big)
        .edge("ask", "check")
    )


@pytest.fixture
def store() -> Checkpointer:
    return MemoryCheckpointer()


@pytest.fixture
def client(store: Checkpointer) -> Iterator[TestClient]:
    with TestClient(app([branchy(), approval()], store, wait_s=5), base_url=LOCAL) as c:
        yield c


def step_states(page: str) -> dict[str, str]:
    rows = re.findall(r'<tr data-step="([^"]+)"><td>.*?</td><td class="state-(\w+)">', page)
    return dict(rows)


def mermaid_classes(page: str) -> dict[str, str]:
    return dict(re.findall(r"^    class (s\d+) (\w+)$", page, re.MULTILINE))


def answer_the_one_waiting(client: TestClient, run_id: str, value: Any) -> dict[str, Any]:
    reply = client.post(f"/api/runs/branchy/{run_id}/resume", json={"value": value})
    assert reply.status_code == 200, reply.text
    result: dict[str, Any] = reply.json()
    return result


# --- skipped steps --------------------------------------------------------------------


def test_a_step_a_false_conditional_edge_left_out_is_skipped_while_paused_and_when_done(
    client: TestClient,
) -> None:
    assert client.post("/api/runs/branchy/r1", json={"input": {}}).status_code == 201
    answer_the_one_waiting(client, "r1", 5)  # not big: escalate is skipped, check asks
    page = client.get("/runs/branchy/r1").text
    assert step_states(page) == {"ask": "done", "escalate": "skipped", "check": "paused"}
    assert mermaid_classes(page) == {"s0": "done", "s1": "skipped", "s2": "paused"}
    assert "    classDef skipped fill:#eeeeee" in page
    assert answer_the_one_waiting(client, "r1", True)["status"] == "done"
    page = client.get("/runs/branchy/r1").text
    assert step_states(page) == {"ask": "done", "escalate": "skipped", "check": "done"}
    assert mermaid_classes(page) == {"s0": "done", "s1": "skipped", "s2": "done"}


def test_a_step_a_true_conditional_edge_chose_is_done(client: TestClient) -> None:
    client.post("/api/runs/branchy/r1", json={"input": {}})
    answer_the_one_waiting(client, "r1", 500)
    answer_the_one_waiting(client, "r1", True)
    page = client.get("/runs/branchy/r1").text
    assert step_states(page) == {"ask": "done", "escalate": "done", "check": "done"}
    assert "skipped" not in mermaid_classes(page).values()
