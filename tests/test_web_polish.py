"""The web server's finish: skipped steps, JSON errors on every API path, messages in API terms."""

from __future__ import annotations

import re
import sys
import threading
import time
from collections.abc import Generator, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from _web_flows import approval
from starlette.testclient import TestClient

from pausegraph import (
    Effect,
    Graph,
    Interrupt,
    LastWriteWins,
    MemoryCheckpointer,
    Reducer,
    Runner,
)
from pausegraph.checkpointers import Checkpointer
from pausegraph.cli import main
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


# --- every /api path answers JSON -----------------------------------------------------


@pytest.mark.parametrize("path", ["/api/nope", "/api", "/api/runs/approval/r1/resume/x"])
def test_an_unknown_api_path_is_a_json_404(client: TestClient, path: str) -> None:
    reply = client.get(path)
    assert reply.status_code == 404
    assert reply.headers["content-type"] == "application/json"
    assert reply.json() == {
        "error": f"no API route {path}: the API serves /api/inbox, /api/runs, "
        "/api/runs/WORKFLOW/RUN_ID and /api/runs/WORKFLOW/RUN_ID/resume"
    }


def test_a_wrong_method_on_an_api_route_is_a_json_405_with_allow(client: TestClient) -> None:
    reply = client.get("/api/runs/approval/r1/resume")
    assert reply.status_code == 405
    assert reply.headers["allow"] == "POST"
    assert reply.json() == {
        "error": "GET is not allowed on /api/runs/approval/r1/resume (allowed: POST)"
    }
    assert client.delete("/api/inbox").json()["error"].startswith("DELETE is not allowed on")


def test_pages_keep_their_plain_404_and_405(client: TestClient) -> None:
    missing = client.get("/nope")
    assert (missing.status_code, missing.text) == (404, "Not Found")
    assert client.put("/").status_code == 405


# --- the answer form's hint -----------------------------------------------------------


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert match is not None
    return match.group(1)


def test_text_that_is_not_json_gets_a_hint_to_quote_it_and_quoted_text_is_taken(
    client: TestClient,
) -> None:
    client.post("/api/runs/approval/r1", json={"input": {"question": "q", "amount": 1}})
    csrf = csrf_of(client.get("/").text)
    interrupt = client.get("/api/inbox").json()[0]["id"]
    form = {"csrf": csrf, "interrupt_id": interrupt, "answer": "yes please"}
    reply = client.post("/runs/approval/r1/answer", data=form)
    assert reply.status_code == 400
    assert re.search(
        r'role="alert">not JSON: Expecting value: line 1 column 1 \(char 0\); to answer with '
        r"text, put it in double quotes: &#34;yes please&#34;</p>",
        reply.text,
    )
    form["answer"] = '"yes please"'
    taken = client.post("/runs/approval/r1/answer", data=form, follow_redirects=False)
    assert taken.status_code == 303
    assert client.get("/api/runs/approval/r1").json()["values"]["answer"] == "yes please"


# --- engine messages in the API's terms -----------------------------------------------


def asks_a(state: Mapping[str, Any]) -> Generator[Any, Any, dict[str, Any]]:
    return {"a": (yield Interrupt("a?"))}


def asks_b(state: Mapping[str, Any]) -> Generator[Any, Any, dict[str, Any]]:
    return {"b": (yield Interrupt("b?"))}


def two_questions() -> Graph:
    channels = {"a": LastWriteWins(), "b": LastWriteWins()}
    return Graph("two", channels).step("a", asks_a).step("b", asks_b)


PYTHON_CALL = re.compile(r"\b(Resume|Continue|Update|Goto|run|resume|state|history)\(")


@pytest.fixture
def two() -> Iterator[TestClient]:
    with TestClient(app([two_questions()], MemoryCheckpointer()), base_url=LOCAL) as c:
        assert c.post("/api/runs/two/r1", json={"input": {}}).status_code == 201
        yield c


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (
            {"value": 1},
            "run 'r1' has 2 pending interrupts (2.0.0, 2.1.0): "
            'answer them by id with {"answers": {ID: VALUE}}',
        ),
        (
            {"continue": True},
            "run 'r1' waits for an answer to interrupt(s) 2.0.0, 2.1.0: "
            'use {"value": VALUE} or {"answers": {ID: VALUE}}',
        ),
        (
            {"goto": "nope"},
            "{\"goto\": \"nope\"}: graph 'two' has no such step; its steps are 'a', 'b'",
        ),
        (
            {"update": {"nope": 1}},
            "{\"update\": {CHANNEL: VALUE}} names undeclared channel 'nope'; "
            "the graph declares 'a', 'b'",
        ),
    ],
    ids=["value", "continue", "goto", "update"],
)
def test_a_refused_command_is_explained_with_the_bodies_the_api_takes(
    two: TestClient, body: dict[str, Any], error: str
) -> None:
    reply = two.post("/api/runs/two/r1/resume", json=body)
    assert reply.status_code == 400
    assert reply.json() == {"error": error}


def test_a_finished_run_and_a_changed_input_are_explained_in_api_terms(two: TestClient) -> None:
    two.post("/api/runs/two/r1/resume", json={"answers": {"2.0.0": 1, "2.1.0": 2}})
    again = two.post("/api/runs/two/r1/resume", json={"value": 1}).json()["error"]
    assert again == (
        "run 'r1' is finished: {\"value\": VALUE} has nothing to go on with; "
        '{"goto": STEP} re-opens it'
    )
    other = two.post("/api/runs/two/r1", json={"input": {"a": 5}}).json()["error"]
    assert other == (
        "run 'r1' already exists with input {}, not {'a': 5}; it is done: "
        "GET /api/runs/two/r1 shows its result, or use a new run id"
    )


def test_without_a_driver_the_api_names_a_worker_as_what_drives_a_queued_run() -> None:
    from pausegraph.web._views import api_terms

    queued = "run 'x' is queued: ...; run('x') drives it, then command it if it pauses"
    said = api_terms(queued, workflow="w", run_id="x", driving=False)
    assert (
        said
        == "run 'x' is queued: ...; a pausegraph worker drives it, then command it if it pauses"
    )
    going = api_terms("it is queued: run(run_id) without input goes on with it", workflow="w",
                      run_id="x", driving=False)  # fmt: skip
    assert going == "it is queued: a pausegraph worker goes on with it"


def test_api_terms_rewrites_every_call_the_engine_names() -> None:
    from pausegraph.web._views import api_terms

    messages = {
        "run 'x' failed and waits for no answer: retry it with Continue() or run(run_id), fix "
        "its state first with Update(edits), or Goto(step_id)": "run 'x' failed and waits for "
        'no answer: retry it with {"continue": true}, fix its state first with '
        '{"update": {CHANNEL: VALUE}}, or {"goto": STEP}',
        "run 'x' is paused (y): use resume(run_id, command) to go on": "run 'x' is paused (y): "
        'use POST /api/runs/w%2F1/a%20b/resume (with one of {"value": VALUE}, '
        '{"answers": {ID: VALUE}}, {"continue": true}, {"update": {...}} or {"goto": STEP}) '
        "to go on",
        "run 'x' is queued: ...; run('x') drives it, then command it if it pauses": "run 'x' is "
        "queued: ...; the server's driver (or a pausegraph worker) drives it, then command it "
        "if it pauses",
        "it is queued: run(run_id) without input goes on with it": "it is queued: the server's "
        "driver goes on with it",
        "it is failed: run(run_id) without input retries it": 'it is failed: {"continue": true} '
        "retries it",
        "no run 'x': start it with run(run_id, input)": "no run 'x': start it with "
        'POST /api/runs/w%2F1/a%20b with {"input": {CHANNEL: VALUE}}',
        "Resume(value=None, answers={'k': 'Goto(x)'}, update=None) is refused": '{"answers": '
        "{ID: VALUE}} is refused",
        "Resume(answers={'k': 'Goto(x)'}) is refused": '{"answers": {ID: VALUE}} is refused',
        "Resume(value=3) is refused": '{"value": VALUE} is refused',
        "Goto(step_id='s', update={'c': 1})": '{"goto": "s"}',
        "Goto(update=...) names undeclared channel 'q'": '{"update": {CHANNEL: VALUE}} names '
        "undeclared channel 'q'",
    }
    for message, expected in messages.items():
        said = api_terms(message, workflow="w/1", run_id="a b")
        assert said == expected
        assert not PYTHON_CALL.search(said)


# --- pausegraph serve --port -----------------------------------------------------------


@pytest.mark.parametrize(
    ("port", "error"),
    [
        ("99999", "99999 is not a port number: a port is 0 to 65535 (0 picks a free one)"),
        ("-1", "-1 is not a port number: a port is 0 to 65535 (0 picks a free one)"),
        ("eighty", "'eighty' is not a port number (0 to 65535)"),
    ],
)
def test_serve_refuses_a_port_out_of_range_as_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, port: str, error: str
) -> None:
    flows = Path(__file__).with_name("_web_flows.py")
    argv = ["--store", str(tmp_path / "s"), "serve", f"{flows}:approval_graph", f"--port={port}"]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"pausegraph: error: argument --port: {error} (see 'pausegraph serve --help')\n"


@pytest.mark.parametrize(
    ("option", "error"),
    [
        (["--wait", "nan"], "--wait takes seconds >= 0, got nan"),
        (["--wait", "-1"], "--wait takes seconds >= 0, got -1.0"),
        (["--token", ""], "--token is empty: give the token, or leave --token out"),
        ([], "are both workflow 'approval': give each once"),
    ],
)
def test_serve_refuses_a_bad_wait_an_empty_token_and_a_workflow_given_twice(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, option: list[str], error: str
) -> None:
    flows = Path(__file__).with_name("_web_flows.py")
    workflows = [f"{flows}:approval_graph"] * (1 if option else 2)
    argv = ["--store", str(tmp_path / "s"), "serve", *workflows, *option]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert error in err
    assert err.startswith("pausegraph: error: ")


# --- answers the run no longer waits for; JSON without NaN ------------------------------


def test_a_stale_form_answer_is_said_at_the_top_of_the_inbox_with_what_was_written(
    two: TestClient,
) -> None:
    csrf = csrf_of(two.get("/").text)
    assert two.post("/api/runs/two/r1/resume", json={"answers": {"2.0.0": "api"}}).status_code
    form = {"csrf": csrf, "interrupt_id": "2.0.0", "answer": '"from the page"'}
    reply = two.post("/runs/two/r1/answer", data=form)
    assert reply.status_code == 400
    notice = re.search(
        r'<section class="card notice" id="notice" role="alert">(.*?)</section>', reply.text, re.S
    )
    assert notice is not None, reply.text
    assert "Your answer to interrupt <code>2.0.0</code>" in notice.group(1)
    assert "was not taken: interrupt id &#39;2.0.0&#39;" in notice.group(1)
    assert "&#34;from the page&#34;" in notice.group(1)
    # the interrupt still waiting keeps its own form, with no error under it
    assert 'data-interrupt="2.1.0"' in reply.text
    assert reply.text.count('class="error"') == 1
    assert [i["id"] for i in two.get("/api/runs/two/r1").json()["interrupts"]] == ["2.1.0"]
    done = two.post("/api/runs/two/r1/resume", json={"answers": {"2.1.0": "b"}}).json()
    assert done["values"] == {"a": "api", "b": "b"}  # the page's answer was not taken


@pytest.mark.parametrize("word", ["NaN", "Infinity", "-Infinity", "1e400", "-1E+309"])
def test_the_api_and_the_form_refuse_nan_and_infinities_and_save_nothing(
    two: TestClient, word: str
) -> None:
    body = '{"answers": {"2.0.0": ' + word + "}}"
    reply = two.post(
        "/api/runs/two/r1/resume", content=body, headers={"content-type": "application/json"}
    )
    assert reply.status_code == 400
    assert word in reply.json()["error"]
    assert "JSON number" in reply.json()["error"]
    form = {"csrf": csrf_of(two.get("/").text), "interrupt_id": "2.0.0", "answer": word}
    page = two.post("/runs/two/r1/answer", data=form)
    assert page.status_code == 400
    assert "JSON number" in page.text
    assert two.get("/api/runs/two/r1").json()["interrupts"][0]["id"] == "2.0.0"


def test_a_nan_given_in_python_is_shown_by_the_api_as_a_marker(tmp_path: Path) -> None:
    from pausegraph import Resume, Runner

    store = MemoryCheckpointer()
    runner = Runner(two_questions(), store)
    a, b = (i.id for i in runner.run("r1", {}).interrupts)
    runner.resume("r1", Resume(answers={a: float("nan"), b: [float("-inf")]}))
    with TestClient(app([two_questions()], store), base_url=LOCAL) as c:
        reply = c.get("/api/runs/two/r1")
        assert reply.status_code == 200, reply.text
        assert reply.json()["values"] == {"a": "<float nan>", "b": ["<float -inf>"]}
        assert c.get("/runs/two/r1").status_code == 200


# --- two people answering two interrupts of one run at once ----------------------------


def _until_moving(client: TestClient, path: str) -> None:
    """Wait (at most 5 s) until the run at ``path`` is queued or running: an answer is in hand."""
    deadline = time.monotonic() + 5
    while client.get(path).json()["status"] not in ("queued", "running"):
        assert time.monotonic() < deadline
        time.sleep(0.01)


def slow_a(state: Mapping[str, Any]) -> Generator[Any, Any, dict[str, Any]]:
    answer = yield Interrupt("a?")
    time.sleep(0.4)  # the driver is busy with this answer for a while
    return {"a": answer}


def slow_two() -> Graph:
    channels = {"a": LastWriteWins(), "b": LastWriteWins()}
    return Graph("slow", channels).step("a", slow_a).step("b", asks_b)


def test_an_answer_by_id_meeting_the_run_moving_waits_for_it_and_is_taken() -> None:
    with TestClient(app([slow_two()], MemoryCheckpointer(), wait_s=5), base_url=LOCAL) as c:
        first, second = (
            i["id"] for i in c.post("/api/runs/slow/r1", json={"input": {}}).json()["interrupts"]
        )
        replies: dict[str, Any] = {}

        def answer_a() -> None:
            replies["a"] = c.post("/api/runs/slow/r1/resume", json={"answers": {first: "A"}})

        thread = threading.Thread(target=answer_a)
        thread.start()
        _until_moving(c, "/api/runs/slow/r1")
        by_value = c.post("/api/runs/slow/r1/resume", json={"value": "B"})  # no id: no wait
        assert by_value.status_code == 409, by_value.text
        by_id = c.post("/api/runs/slow/r1/resume", json={"answers": {second: "B"}})
        thread.join()
        assert replies["a"].status_code == 200, replies["a"].text
        assert by_id.status_code == 200, by_id.text
        assert by_id.json()["status"] == "done"
        assert by_id.json()["values"] == {"a": "A", "b": "B"}


def test_json_nested_too_deeply_to_parse_is_a_400_and_saves_nothing(two: TestClient) -> None:
    body = '{"answers": {"2.0.0": ' + "[" * 100_000 + "]" * 100_000 + "}}"
    reply = two.post(
        "/api/runs/two/r1/resume", content=body, headers={"content-type": "application/json"}
    )
    assert reply.status_code == 400
    assert "nested too deeply" in reply.json()["error"]
    assert [i["id"] for i in two.get("/api/runs/two/r1").json()["interrupts"]] == ["2.0.0", "2.1.0"]


@pytest.mark.parametrize("escaped", ["%ff", "%C0%AF", "r%80"])
def test_a_url_whose_escapes_are_not_utf8_is_a_400(two: TestClient, escaped: str) -> None:
    for reply in (
        two.get(f"/api/runs/two/{escaped}"),
        two.post(f"/api/runs/two/{escaped}", json={"input": {}}),
        two.get(f"/runs/two/{escaped}"),
    ):
        assert reply.status_code == 400, reply.text
    assert [r["run_id"] for r in two.get("/api/runs").json()] == ["r1"]
    assert two.get("/api/runs/two/%C3%A9").status_code == 404  # "é": UTF-8, and no such run


def slower_a(state: Mapping[str, Any]) -> Generator[Any, Any, dict[str, Any]]:
    answer = yield Interrupt("a?")
    time.sleep(1.5)
    return {"a": answer}


def test_an_answer_by_id_waits_at_most_wait_in_all_then_is_a_409() -> None:
    graph = Graph("slower", {"a": LastWriteWins(), "b": LastWriteWins()})
    graph.step("a", slower_a).step("b", asks_b)
    with TestClient(app([graph], MemoryCheckpointer(), wait_s=0.3), base_url=LOCAL) as c:
        first, second = (
            i["id"] for i in c.post("/api/runs/slower/r1", json={"input": {}}).json()["interrupts"]
        )
        moving = c.post("/api/runs/slower/r1/resume", json={"answers": {first: "A"}}).json()
        assert moving["status"] in ("queued", "running")  # the reply did not wait past 0.3 s
        started = time.monotonic()
        reply = c.post("/api/runs/slower/r1/resume", json={"answers": {second: "B"}})
        assert time.monotonic() - started < 1.0
        assert reply.status_code == 409, reply.text


CHARGES: list[Any] = []


def _charge(value: Any) -> str:
    CHARGES.append(value)
    return "charged"


def charge_then_fail(state: Mapping[str, Any]) -> Generator[Any, Any, dict[str, Any]]:
    answer = yield Interrupt("charge?")
    yield Effect(_charge, answer)
    time.sleep(0.4)
    raise RuntimeError("the printer is on fire")


def test_a_duplicate_answer_meeting_the_run_moving_never_re_answers_a_step_that_failed() -> None:
    # a webhook delivered twice: the copy waits, finds the run failed, and is refused;
    # taking it as a re-answer of the failed step would charge again
    CHARGES.clear()
    graph = Graph("charge", {"x": LastWriteWins()}).step("c", charge_then_fail)
    with TestClient(app([graph], MemoryCheckpointer(), wait_s=5), base_url=LOCAL) as c:
        (asked,) = c.post("/api/runs/charge/r1", json={"input": {}}).json()["interrupts"]
        body = {"answers": {asked["id"]: "yes"}}
        replies: list[Any] = []
        first = threading.Thread(
            target=lambda: replies.append(c.post("/api/runs/charge/r1/resume", json=body))
        )
        first.start()
        _until_moving(c, "/api/runs/charge/r1")
        copy = c.post("/api/runs/charge/r1/resume", json=body)
        first.join()
        assert replies[0].status_code == 200, replies[0].text
        assert replies[0].json()["status"] == "failed"
        assert copy.status_code == 409, copy.text
        assert "no longer pending (it is failed)" in copy.json()["error"]
        assert CHARGES == ["yes"]


def interrupts_the_driver(state: Mapping[str, Any]) -> dict[str, Any]:
    if state["a"] == "bad":
        raise KeyboardInterrupt  # step code: signals go to the main thread, not the driver's
    return {"b": "ok"}


def test_the_driver_thread_outlives_a_step_raising_keyboard_interrupt() -> None:
    graph = Graph("kb", {"a": LastWriteWins(), "b": LastWriteWins()})
    graph.step("s", interrupts_the_driver)
    with TestClient(app([graph], MemoryCheckpointer(), wait_s=2), base_url=LOCAL) as c:
        bad = c.post("/api/runs/kb/bad", json={"input": {"a": "bad"}})
        assert bad.status_code == 201
        assert bad.json()["status"] == "queued"  # left for a person: logged, not retried
        good = c.post("/api/runs/kb/good", json={"input": {"a": "fine"}})
        assert good.status_code == 201
        assert good.json()["status"] == "done", good.text


def asks_c(state: Mapping[str, Any]) -> Generator[Any, Any, dict[str, Any]]:
    return {"c": (yield Interrupt("c?"))}


def test_answers_that_wait_together_take_turns_and_copies_are_taken_once() -> None:
    CHARGES.clear()

    def charges_c(state: Mapping[str, Any]) -> Generator[Any, Any, dict[str, Any]]:
        answer = yield Interrupt("c?")
        yield Effect(_charge, answer)
        return {"c": answer}

    channels = {"a": LastWriteWins(), "b": LastWriteWins(), "c": LastWriteWins()}
    graph = Graph("three", channels).step("a", slow_a).step("b", asks_b).step("c", charges_c)
    with TestClient(app([graph], MemoryCheckpointer(), wait_s=10), base_url=LOCAL) as c:
        ids = [
            i["id"] for i in c.post("/api/runs/three/r1", json={"input": {}}).json()["interrupts"]
        ]
        replies: list[Any] = []

        def answer(interrupt_id: str, value: str) -> None:
            body = {"answers": {interrupt_id: value}}
            replies.append((value, c.post("/api/runs/three/r1/resume", json=body)))

        first = threading.Thread(target=answer, args=(ids[0], "A"))
        first.start()
        _until_moving(c, "/api/runs/three/r1")
        others = [threading.Thread(target=answer, args=(ids[1], "B"))]
        others += [threading.Thread(target=answer, args=(ids[2], "C")) for _ in range(5)]
        for thread in others:
            thread.start()
        for thread in [first, *others]:
            thread.join()
        codes = sorted((value, reply.status_code) for value, reply in replies)
        assert codes == [("A", 200), ("B", 200), *[("C", 200)], *[("C", 409)] * 4], codes
        assert c.get("/api/runs/three/r1").json()["values"] == {"a": "A", "b": "B", "c": "C"}
        assert CHARGES == ["C"]


def _strict_fold(total: Any, value: Any) -> Any:
    if value == "exit":
        sys.exit(4)
    if not isinstance(value, int):
        raise ValueError(f"not a number: {value!r}")
    return total + value


@pytest.mark.parametrize("given", ["bad", "exit"])
def test_an_input_a_reducer_refuses_is_a_400_and_saves_nothing(given: str) -> None:
    graph = Graph("sum", {"total": Reducer(_strict_fold, 0)}).step("s", lambda state: None)
    with TestClient(app([graph], MemoryCheckpointer()), base_url=LOCAL) as c:
        reply = c.post("/api/runs/sum/r1", json={"input": {"total": given}})
        assert reply.status_code == 400, reply.text
        assert "the reducer of channel 'total' raised" in reply.json()["error"]
        assert c.get("/api/runs").json() == []


def test_a_server_started_again_drives_what_was_left_queued_without_a_request() -> None:
    store = MemoryCheckpointer()
    graph = Graph("kb", {"a": LastWriteWins(), "b": LastWriteWins()})
    graph.step("s", interrupts_the_driver)
    Runner(graph, store).start("left", {"a": "fine"})  # as a server killed mid-answer leaves it
    with TestClient(app([graph], store, wait_s=2), base_url=LOCAL) as c:
        deadline = time.monotonic() + 5
        while c.get("/api/runs/kb/left").json()["status"] != "done":  # a GET wakes nothing
            assert time.monotonic() < deadline, "the driver never took the queued run"
            time.sleep(0.05)


def test_a_409_for_an_answer_that_waited_names_the_run_url_escaped() -> None:
    from pausegraph.web._app import _Refused, _Server

    class Done:  # what the check reads of a RunInfo
        status = "done"
        interrupts = ()

    with pytest.raises(_Refused) as info:
        _Server._answer_if_pending("approval", "a/b c", {"2.0.0": 1}, Done())  # type: ignore[arg-type]
    assert info.value.status == 409
    assert "GET /api/runs/approval/a%2Fb%20c shows where it is" in info.value.message
