"""The web inbox and JSON API (``pausegraph serve``): every route, every refusal, escaping."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from _web_flows import GO, approval, napping_graph, waiting
from starlette.testclient import TestClient

from pausegraph import MemoryCheckpointer, Runner, open_checkpointer
from pausegraph.checkpointers import Checkpointer
from pausegraph.web import app

LOCAL = "http://127.0.0.1"
JSON_HEADERS = {"Content-Type": "application/json"}
XSS = "<script>alert('pwned')</script>"


@pytest.fixture
def store() -> Checkpointer:
    return MemoryCheckpointer()


@pytest.fixture
def client(store: Checkpointer) -> Iterator[TestClient]:
    with TestClient(app([approval(), waiting()], store, wait_s=5), base_url=LOCAL) as c:
        yield c


def start(client: TestClient, run_id: str, question: str = "ok?", amount: int = 5) -> Any:
    body = {"input": {"question": question, "amount": amount}}
    return client.post(f"/api/runs/approval/{run_id}", json=body)


def history(store: Checkpointer, run_id: str, workflow: str = "approval") -> Any:
    return store.list(workflow, run_id)


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert match is not None
    return match.group(1)


# --- JSON API -------------------------------------------------------------------


def test_import_pausegraph_imports_no_web_package() -> None:
    code = (
        "import sys, pausegraph; "
        "print(sorted(m for m in ('starlette', 'jinja2', 'uvicorn') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_post_run_starts_it_drives_it_and_replies_201_at_its_pause(client: TestClient) -> None:
    reply = start(client, "r1")
    assert reply.status_code == 201
    obj = reply.json()
    assert obj["status"] == "paused"
    assert obj["interrupts"][0]["payload"] == {"question": "ok?", "amount": 5}
    assert set(obj) >= {"workflow", "run_id", "status", "super_step", "values", "interrupts"}
    again = start(client, "r1")
    assert again.status_code == 200
    assert start(client, "r1", amount=6).status_code == 400  # a different input


def test_post_run_without_input_leaves_an_existing_run_as_it_is(
    client: TestClient, store: Checkpointer
) -> None:
    start(client, "r1")
    before = history(store, "r1")
    reply = client.post("/api/runs/approval/r1", json={})
    assert reply.status_code == 200
    assert reply.json()["status"] == "paused"
    assert history(store, "r1") == before
    assert client.post("/api/runs/approval/r2", json={}).status_code == 201  # a new run


def test_a_wrong_method_is_405_naming_every_method_the_path_takes(client: TestClient) -> None:
    for path in ("/api/runs/approval/r1", "/login"):
        reply = client.put(path, json={})
        assert reply.status_code == 405
        assert reply.headers["allow"] == "GET, HEAD, POST"  # every method, in one order


def test_inbox_lists_each_waiting_interrupt_oldest_first(client: TestClient) -> None:
    start(client, "a")
    start(client, "b")
    items = client.get("/api/inbox").json()
    assert [i["run_id"] for i in items] == ["a", "b"]
    assert set(items[0]) == {
        "workflow", "run_id", "id", "step_id", "payload", "since_ms", "deadline_ms"
    }  # fmt: skip
    assert client.get("/api/inbox?workflow=approval").json() == items
    assert client.get("/api/inbox?workflow=waiting").json() == []
    missing = client.get("/api/inbox?workflow=nope")
    assert missing.status_code == 404
    assert "nope" in missing.json()["error"]


def test_runs_lists_and_filters_by_status_and_workflow(client: TestClient) -> None:
    start(client, "a")
    start(client, "b")
    client.post("/api/runs/approval/b/resume", json={"value": 1})
    runs = client.get("/api/runs").json()
    assert sorted((r["run_id"], r["status"]) for r in runs) == [("a", "paused"), ("b", "done")]
    assert [r["run_id"] for r in client.get("/api/runs?status=done").json()] == ["b"]
    assert client.get("/api/runs?workflow=waiting").json() == []
    assert client.get("/api/runs?status=sleepy").status_code == 400
    assert client.get("/api/runs?workflow=nope").status_code == 404


def test_runs_by_status_reads_only_those_runs_from_the_store(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pausegraph.web import _app

    start(client, "a")
    start(client, "b")
    client.post("/api/runs/approval/b/resume", json={"value": 1})
    asked: list[str | None] = []
    listed = _app.run_summaries

    def spied(store: Any, **how: Any) -> Any:
        asked.append(how.get("status"))
        return listed(store, **how)

    monkeypatch.setattr(_app, "run_summaries", spied)
    assert [r["run_id"] for r in client.get("/api/runs?status=paused").json()] == ["a"]
    assert client.get("/api/runs?status=running").json() == []
    assert client.get("/api/runs?status=queued").json() == []
    assert set(asked) == {"paused", "queued"}  # the store's index picks the rows


def test_run_detail_is_show_json_plus_history(client: TestClient, store: Checkpointer) -> None:
    start(client, "r1")
    client.post("/api/runs/approval/r1/resume", json={"value": "yes"})
    obj = client.get("/api/runs/approval/r1").json()
    assert obj["status"] == "done"
    assert obj["values"]["booked"] == "booked after 'yes'"
    labels = [h["label"] for h in obj["history"]]
    assert labels == [m.label for m in history(store, "r1")]
    assert "resume" in labels
    recorded = [h["recorded"] for h in obj["history"] if h["recorded"] is not None]
    assert recorded
    assert all(list(r["answers"].values()) == ["yes"] for r in recorded), recorded
    assert set(obj["history"][0]) >= {"seq", "super_step", "label", "timestamp_ms"}
    assert client.get("/api/runs/approval/nope").status_code == 404
    assert client.get("/api/runs/nope/r1").status_code == 404


def test_resume_with_answers_and_an_update_beside(client: TestClient) -> None:
    interrupt = start(client, "r1").json()["interrupts"][0]["id"]
    body = {"answers": {interrupt: "fine"}, "update": {"amount": 7}}
    obj = client.post("/api/runs/approval/r1/resume", json=body).json()
    assert obj["status"] == "done"
    assert obj["values"]["amount"] == 7
    assert obj["values"]["answer"] == "fine"


@pytest.mark.parametrize(
    "body",
    [
        {"value": 1, "goto": "ask"},
        {"value": 1, "continue": True},
        {},
        {"continue": False},
        {"continue": True, "update": {"amount": 1}},
        {"answers": []},
        {"goto": 3},
        {"update": [1]},
        {"valu": 1},
        [1],
    ],
)
def test_resume_refuses_a_body_that_is_not_exactly_one_command(
    client: TestClient, store: Checkpointer, body: Any
) -> None:
    start(client, "r1")
    before = history(store, "r1")
    reply = client.post("/api/runs/approval/r1/resume", json=body)
    assert reply.status_code == 400
    assert reply.json()["error"]
    assert history(store, "r1") == before


def test_resume_refusals_change_nothing(client: TestClient, store: Checkpointer) -> None:
    start(client, "r1")
    before = history(store, "r1")
    url = "/api/runs/approval/r1/resume"
    bad_json = client.post(url, content=b"{nope", headers=JSON_HEADERS)
    assert bad_json.status_code == 400
    unknown_id = client.post(url, json={"answers": {"x.y.z": 1}})
    assert unknown_id.status_code == 400
    assert "x.y.z" in unknown_id.json()["error"]
    plain = client.post(url, content=b'{"value": 1}', headers={"Content-Type": "text/plain"})
    assert plain.status_code == 400  # SPEC: errors are 400 for bad input (HTTP would say 415)
    assert "Content-Type: application/json" in plain.json()["error"]
    form = client.post(url, data={"value": "1"})
    assert form.status_code == 400
    assert client.post("/api/runs/approval/nope/resume", json={"value": 1}).status_code == 404
    assert client.post("/api/runs/nope/r1/resume", json={"value": 1}).status_code == 404
    assert history(store, "r1") == before


def test_a_run_held_by_another_driver_is_409(client: TestClient, store: Checkpointer) -> None:
    start(client, "r1")
    before = history(store, "r1")
    with store.lock("approval", "r1"):
        reply = client.post("/api/runs/approval/r1/resume", json={"value": 1})
    assert reply.status_code == 409
    assert reply.json()["error"]
    assert history(store, "r1") == before


def test_without_driving_an_answer_is_claimed_and_a_second_one_is_409(store: Checkpointer) -> None:
    Runner(approval(), store).run("r1", {"question": "q", "amount": 1})
    with TestClient(app([approval()], store, drive=False), base_url=LOCAL) as client:
        first = client.post("/api/runs/approval/r1/resume", json={"value": 1})
        assert first.status_code == 200
        assert first.json()["status"] == "queued"
        second = client.post("/api/runs/approval/r1/resume", json={"value": 2})
        assert second.status_code == 409


def test_the_reply_comes_after_wait_s_when_the_run_is_still_running(store: Checkpointer) -> None:
    GO.clear()
    try:
        with TestClient(app([waiting()], store, wait_s=0.3), base_url=LOCAL) as client:
            reply = client.post("/api/runs/waiting/w1", json={"input": {}})
            assert reply.status_code == 201
            assert reply.json()["status"] in ("queued", "running")
            GO.set()
    finally:
        GO.set()


# --- who may ask ------------------------------------------------------------------


def test_without_a_token_a_foreign_host_or_origin_is_refused(
    client: TestClient, store: Checkpointer
) -> None:
    start(client, "r1")
    before = history(store, "r1")
    evil = {"Host": "evil.example"}
    assert client.get("/api/inbox", headers=evil).status_code == 403
    assert client.get("/", headers=evil).status_code == 403
    assert client.get("/login", headers=evil).status_code == 403
    assert client.get("/login", headers={"Origin": "http://evil.example"}).status_code == 403
    assert client.post("/login", headers=evil, data={"token": "x"}).status_code == 403
    assert client.get("/login").status_code == 200
    reply = client.post(
        "/api/runs/approval/r1/resume",
        json={"value": 1},
        headers={"Origin": "http://evil.example"},
    )
    assert reply.status_code == 403
    own = client.get("/api/inbox", headers={"Origin": LOCAL})
    assert own.status_code == 200
    assert client.get("/api/inbox", headers={"Host": "localhost:8000"}).status_code == 200
    assert history(store, "r1") == before


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1.evil.example:8000",  # DNS may point it at 127.0.0.1: a rebinding page
        "127.evil.example",
        "localhost.evil.example",
        "0x7f.0.0.1",
        "127.1",
        "[::2]",
        "10.0.0.1",
    ],
)
def test_without_a_token_a_name_that_only_looks_like_loopback_is_refused(
    client: TestClient, store: Checkpointer, host: str
) -> None:
    start(client, "r1")
    before = history(store, "r1")
    origin = {"Host": host, "Origin": f"http://{host}"}  # the page's own origin, matching
    assert client.get("/api/inbox", headers=origin).status_code == 403
    reply = client.post("/api/runs/approval/r1/resume", json={"value": 1}, headers=origin)
    assert reply.status_code == 403
    assert history(store, "r1") == before


@pytest.mark.parametrize(
    "host", ["127.0.0.1:8000", "127.0.0.2", "localhost", "LOCALHOST:1", "[::1]:8000",
             "[::ffff:127.0.0.1]"],
)  # fmt: skip
def test_without_a_token_loopback_addresses_and_localhost_are_served(
    client: TestClient, host: str
) -> None:
    assert client.get("/api/inbox", headers={"Host": host}).status_code == 200


def test_with_a_token_every_request_needs_it(store: Checkpointer) -> None:
    Runner(approval(), store).run("r1", {"question": "q", "amount": 1})
    before = history(store, "r1")
    served = app([approval()], store, token="s3cret")
    with TestClient(served, base_url="http://pausegraph.example.com") as client:
        assert client.get("/api/inbox").status_code == 401
        bad = {"Authorization": "Bearer wrong"}
        assert client.get("/api/inbox", headers=bad).status_code == 401
        refused = client.post("/api/runs/approval/r1/resume", json={"value": 1}, headers=bad)
        assert refused.status_code == 401
        assert refused.json() == {"error": "this server needs Authorization: Bearer TOKEN"}
        assert history(store, "r1") == before
        page = client.get("/")
        assert page.status_code == 401
        assert 'name="token"' in page.text
        good = {"Authorization": "Bearer s3cret"}
        assert client.get("/api/inbox", headers=good).status_code == 200
        assert client.get("/", headers=good).status_code == 200


def test_the_login_form_sets_an_httponly_strict_cookie_for_pages_only(store: Checkpointer) -> None:
    Runner(approval(), store).run("r1", {"question": "q", "amount": 1})
    with TestClient(app([approval()], store, token="s3cret"), base_url=LOCAL) as client:
        login = client.get("/login")
        csrf = csrf_of(login.text)
        wrong = client.post("/login", data={"csrf": csrf, "token": "nope"})
        assert wrong.status_code == 401
        no_csrf = client.post("/login", data={"token": "s3cret"}, follow_redirects=False)
        assert no_csrf.status_code == 403
        ok = client.post("/login", data={"csrf": csrf, "token": "s3cret"}, follow_redirects=False)
        assert ok.status_code == 303
        cookie = ok.headers["set-cookie"]
        assert "; HttpOnly" in cookie
        assert "; SameSite=Strict" in cookie  # as the SPEC spells it
        assert "; Path=/" in cookie
        assert client.get("/").status_code == 200
        assert client.get("/runs/approval/r1").status_code == 200
        assert client.get("/api/inbox").status_code == 401  # the API takes the bearer only


# --- pages --------------------------------------------------------------------------


def test_the_inbox_page_answers_with_the_form_and_redirects_to_the_finished_run(
    client: TestClient,
) -> None:
    start(client, "r1")
    page = client.get("/")
    assert page.status_code == 200
    interrupt = client.get("/api/inbox").json()[0]["id"]
    form = {"csrf": csrf_of(page.text), "interrupt_id": interrupt, "answer": '"sure"'}
    reply = client.post("/runs/approval/r1/answer", data=form, follow_redirects=False)
    assert reply.status_code == 303
    assert reply.headers["location"] == "/runs/approval/r1"
    run = client.get("/runs/approval/r1")
    assert re.search(r'id="status"[^>]*>done<', run.text)
    assert "booked after &#39;sure&#39;" in run.text


@pytest.mark.parametrize("run_id", ["a/b", "x/y%2Fz/", "/lead"])
def test_a_run_id_holding_a_slash_is_started_shown_and_answered_by_api_and_form(
    client: TestClient, store: Checkpointer, run_id: str
) -> None:
    path = "/api/runs/approval/" + quote(run_id, safe="")
    body = {"input": {"question": "ok?", "amount": 5}}
    assert client.post(path, json=body).status_code == 201
    shown = client.get(path).json()
    assert (shown["run_id"], shown["status"]) == (run_id, "paused")
    page = client.get("/")
    link = "/runs/approval/" + quote(run_id, safe="")
    assert f'href="{link}"' in page.text
    assert client.get(link).status_code == 200
    interrupt = shown["interrupts"][0]["id"]
    form = {"csrf": csrf_of(page.text), "interrupt_id": interrupt, "answer": '"sure"'}
    reply = client.post(f"{link}/answer", data=form, follow_redirects=False)
    assert (reply.status_code, reply.headers["location"]) == (303, link)
    assert Runner(approval(), store).state(run_id).values["answer"] == "sure"
    other = run_id + "-2"
    client.post("/api/runs/approval/" + quote(other, safe=""), json=body)
    done = client.post(f"/api/runs/approval/{quote(other, safe='')}/resume", json={"value": 1})
    assert (done.status_code, done.json()["run_id"], done.json()["status"]) == (200, other, "done")


def test_a_form_post_without_the_csrf_token_is_403_and_changes_nothing(
    client: TestClient, store: Checkpointer
) -> None:
    start(client, "r1")
    before = history(store, "r1")
    interrupt = client.get("/api/inbox").json()[0]["id"]
    for csrf in ("", "0" * 64):
        form = {"csrf": csrf, "interrupt_id": interrupt, "answer": "1"}
        reply = client.post("/runs/approval/r1/answer", data=form)
        assert reply.status_code == 403
    assert history(store, "r1") == before


def test_a_wrong_answer_shows_its_error_next_to_the_field(
    client: TestClient, store: Checkpointer
) -> None:
    start(client, "r1")
    before = history(store, "r1")
    csrf = csrf_of(client.get("/").text)
    interrupt = client.get("/api/inbox").json()[0]["id"]
    form = {"csrf": csrf, "interrupt_id": interrupt, "answer": "{not json"}
    reply = client.post("/runs/approval/r1/answer", data=form)
    assert reply.status_code == 400
    assert re.search(r"</textarea>\s*<p class=\"error\" role=\"alert\">not JSON", reply.text)
    assert "{not json</textarea>" in reply.text
    form = {"csrf": csrf, "interrupt_id": "x.y.z", "answer": "1"}
    refused = client.post("/runs/approval/r1/answer", data=form)
    assert refused.status_code == 400
    assert history(store, "r1") == before


def test_everything_from_a_run_is_escaped(client: TestClient) -> None:
    run_id = "r<b>1"
    reply = client.post(
        f"/api/runs/approval/{run_id}", json={"input": {"question": XSS, "amount": 1}}
    )
    assert reply.status_code == 201
    for url in ("/", "/runs/approval/r%3Cb%3E1"):
        page = client.get(url)
        assert page.status_code == 200
        assert XSS not in page.text
        assert "<b>1" not in page.text
        assert "&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt;" in page.text


def test_the_run_page_shows_the_graph_with_step_states_and_the_history(client: TestClient) -> None:
    start(client, "r1")
    page = client.get("/runs/approval/r1").text
    assert '<pre class="mermaid">' in page
    assert "class s0 paused" in page
    assert "class s1" not in page  # not reached yet
    client.post("/api/runs/approval/r1/resume", json={"value": 1})
    page = client.get("/runs/approval/r1").text
    assert "class s0 done" in page
    assert "class s1 done" in page
    assert "answered " in page
    assert client.get("/runs/approval/nope").status_code == 404


def test_the_run_page_of_a_failed_layer_shows_each_step_of_it(store: Checkpointer) -> None:
    """The failing step failed, a finished sibling done, one waiting at an interrupt paused."""
    from pausegraph import Graph, Interrupt, LastWriteWins, StepError

    def waits(state: Any) -> Any:
        return {"w": (yield Interrupt("w"))}

    def fails(state: Any) -> Any:
        raise ValueError("no")

    graph = (
        Graph("layer", {"ok": LastWriteWins(), "w": LastWriteWins()})
        .step("ok", lambda s: {"ok": 1})
        .step("waits", waits)
        .step("fails", fails)
        .step("later", lambda s: None)
        .edge("ok", "later")
    )
    with pytest.raises(StepError):
        Runner(graph, store).run("r")
    with TestClient(app([graph], store), base_url=LOCAL) as client:
        page = client.get("/runs/layer/r").text
    assert "class s0 done" in page
    assert "class s1 paused" in page
    assert "class s2 failed" in page
    assert "class s3" not in page  # not reached


def test_a_breakpoint_gets_a_continue_button(store: Checkpointer) -> None:
    Runner(approval(), store, interrupt_before={"ask"}).run("r1", {"question": "q", "amount": 1})
    with TestClient(app([approval()], store), base_url=LOCAL) as client:
        page = client.get("/")
        assert "Continue</button>" in page.text
        form = {"csrf": csrf_of(page.text), "continue": "1"}
        reply = client.post("/runs/approval/r1/answer", data=form, follow_redirects=False)
        assert reply.status_code == 303
        assert client.get("/api/runs/approval/r1").json()["interrupts"][0]["step_id"] == "ask"


# --- pausegraph serve ----------------------------------------------------------------


def _serve(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    flows = Path(__file__).with_name("_web_flows.py")
    script = str(Path(sys.executable).with_name("pausegraph"))
    command = [script, "--store", str(tmp_path / "s"), "serve"]
    return subprocess.Popen(
        [*command, f"{flows}:approval_graph", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def test_sigterm_stops_serve_after_its_driver_takes_the_run_in_hand_to_its_pause(
    tmp_path: Path,
) -> None:
    import httpx

    flows = Path(__file__).with_name("_web_flows.py")
    script = str(Path(sys.executable).with_name("pausegraph"))
    store = str(tmp_path / "s")
    command = [script, "--store", store, "serve", f"{flows}:napping_graph", "--port", "0"]
    server = subprocess.Popen([*command, "--wait", "0"], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        url = server.stdout.readline().split()[-1]
        body = json.dumps({"input": {"question": "q", "amount": 1}})
        reply = httpx.post(f"{url}/api/runs/napping/n1", content=body, headers=JSON_HEADERS)
        assert reply.json().get("status") in ("queued", "running"), reply.text  # napping
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == -signal.SIGTERM  # uvicorn's exit: by the signal
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        server.stdout.close()
    runner = Runner(napping_graph, open_checkpointer(store))
    info = runner.state("n1")
    assert (info.status, info.values["booked"]) == ("paused", "after a nap")


def test_serve_prints_where_it_listens_and_refuses_a_public_host_without_a_token(
    tmp_path: Path,
) -> None:
    import httpx

    refused = _serve(tmp_path, "--host", "0.0.0.0")
    _, err = refused.communicate(timeout=30)
    assert refused.returncode == 2
    assert "not a loopback address" in err
    server = _serve(tmp_path, "--port", "0", env={"PAUSEGRAPH_TOKEN": "t0k"})
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        match = re.fullmatch(r"serving on (http://127\.0\.0\.1:(\d+))\n", line)
        assert match, line
        url = match.group(1)
        assert int(match.group(2)) > 0
        assert httpx.get(f"{url}/api/runs").status_code == 401
        good = {"Authorization": "Bearer t0k"}
        created = httpx.post(
            f"{url}/api/runs/approval/c1",
            content=json.dumps({"input": {"question": "q", "amount": 1}}),
            headers={**good, **JSON_HEADERS},
        )
        assert created.status_code == 201
        assert created.json()["status"] == "paused"
    finally:
        server.terminate()
        server.communicate(timeout=30)


def test_the_inbox_page_shows_a_hundred_interrupts_a_page_oldest_first(
    store: Checkpointer,
) -> None:
    from pausegraph import Runner

    runner = Runner(approval(), store)
    for n in range(150):
        runner.run(f"r{n:03d}", {"question": f"q{n}", "amount": n})
    with TestClient(app([approval()], store, drive=False), base_url=LOCAL) as client:
        first = client.get("/")
        second = client.get("/?page=2")
        beyond = client.get("/?page=9")  # past the end: the last page
        bad = client.get("/?page=two")
    assert first.text.count('class="card interrupt"') == 100
    assert "150 interrupts wait, oldest first; page 1 of 2" in first.text
    assert second.text.count('class="card interrupt"') == 50
    assert 'data-run="r149"' in second.text
    assert 'data-run="r149"' not in first.text
    assert beyond.text.count('class="card interrupt"') == 50
    assert bad.status_code == 400


def test_a_store_failure_is_503_with_a_json_error(store: Checkpointer) -> None:
    from pausegraph.errors import CheckpointError

    Runner(approval(), store).run("r1", {"question": "q", "amount": 1})

    class Failing(MemoryCheckpointer):
        def lock(self, workflow_id: str, run_id: str) -> Any:
            raise CheckpointError("the connection to the store dropped")

    failing = Failing()
    failing.__dict__.update(store.__dict__)  # the same runs, a store that now fails
    with TestClient(app([approval()], failing, drive=False), base_url=LOCAL) as client:
        reply = client.post("/api/runs/approval/r1/resume", json={"value": 1})
    assert reply.status_code == 503
    assert "the connection to the store dropped" in reply.json()["error"]


def test_a_damaged_run_is_a_500_with_a_json_error_on_every_route(tmp_path: Path) -> None:
    from pausegraph import FileCheckpointer

    store = FileCheckpointer(tmp_path)
    Runner(approval(), store).run("r1", {"question": "q", "amount": 1})
    [log] = (tmp_path / "runs").glob("*.log")
    damaged = bytearray(log.read_bytes())
    damaged[-20] ^= 0x55  # inside the last record's frame: its checksum fails
    log.write_bytes(bytes(damaged))
    served = app([approval()], FileCheckpointer(tmp_path), drive=False)
    with TestClient(served, base_url=LOCAL, raise_server_exceptions=False) as client:
        for reply in (
            client.get("/api/runs/approval/r1"),
            client.post("/api/runs/approval/r1/resume", json={"value": 1}),
            client.post("/api/runs/approval/r1", json={"input": {"question": "q", "amount": 1}}),
        ):
            assert reply.status_code == 500
            assert "damaged records" in reply.json()["error"]
            assert "fails its checksum" in reply.json()["error"]
        page = client.get("/runs/approval/r1")
        assert page.status_code == 500
        assert "fails its checksum" in page.text


def test_an_answer_by_id_to_a_run_another_process_drives_is_409_at_once(tmp_path: Path) -> None:
    # SPEC Run status: every command on a running run is a ConflictError naming the
    # holder; the server waits only for a run its own driver has (it waited out wait_s,
    # then said the interrupt was "no longer pending", which was false)
    store = open_checkpointer(str(tmp_path / "s"))
    with TestClient(app([approval()], store, wait_s=5), base_url=LOCAL) as client:
        pending = start(client, "r1").json()["interrupts"][0]["id"]
        holder = subprocess.Popen(
            [sys.executable, "-c", (
                "import sys; from pausegraph import FileCheckpointer\n"
                f"with FileCheckpointer({str(tmp_path / 's')!r}).lock('approval', 'r1'):\n"
                "    print('held', flush=True); sys.stdin.readline()\n"
            )],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline() == "held\n"
            began = time.monotonic()
            reply = client.post("/api/runs/approval/r1/resume", json={"answers": {pending: True}})
            took = time.monotonic() - began
        finally:
            holder.communicate("\n", timeout=10)
        assert reply.status_code == 409
        assert f"is running: process {holder.pid} on host" in reply.json()["error"]
        assert took < 3  # not the 5 s wait
        assert client.get("/api/runs/approval/r1").json()["interrupts"][0]["id"] == pending


@pytest.mark.parametrize("kind", ["file", "sqlite"])
def test_a_reply_reports_a_pause_only_once_the_driver_synced_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """SPEC, Durability: nothing outside the process sees a checkpoint before it is on
    disk. The driver saves the next pause, then syncs it, and that sync fails (the pause
    is taken back): the reply waits for the driver's call to end and reports the pause
    the driver then saves again, durably, whose interrupt can be answered."""
    import errno
    import threading

    from pausegraph import FileCheckpointer, Graph, Interrupt, LastWriteWins, SqliteCheckpointer

    def step(state: Any) -> Any:
        first = yield Interrupt(0)
        second = yield Interrupt(1)
        return {"x": [first, second]}

    def opened() -> Checkpointer:
        if kind == "file":
            return FileCheckpointer(tmp_path / "store")
        return SqliteCheckpointer(tmp_path / "runs.db")

    graph = Graph("g", {"x": LastWriteWins()}).step("s", step)
    store = opened()
    armed = [False]
    failed: list[str] = []
    name = "fsync" if kind == "file" else "fdatasync"
    real_sync = getattr(os, name)

    def sync(fd: int) -> None:
        if armed[0] and threading.current_thread().name == "pausegraph-web-driver":
            armed[0] = False
            time.sleep(0.5)  # a slow disk, and then it fails
            failed.append(Runner(graph, opened()).state("r").status)
            failed.append("sync failed")
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_sync(fd)

    monkeypatch.setattr(os, name, sync)
    with TestClient(app([graph], store, wait_s=5), base_url="http://127.0.0.1") as client:
        assert client.post("/api/runs/g/r", json={"input": {}}).json()["status"] == "paused"
        armed[0] = True
        reply = client.post("/api/runs/g/r/resume", json={"value": "A"}).json()
        # the pause was saved, not yet synced, when the sync failed: the reply came after
        assert failed == ["paused", "sync failed"]
        assert reply["status"] == "paused"
        (pending,) = reply["interrupts"]
        answered = client.post("/api/runs/g/r/resume", json={"answers": {pending["id"]: "B"}})
        assert answered.status_code == 200
        assert answered.json()["status"] == "done"


def test_a_reply_whose_wait_runs_out_while_the_driver_syncs_says_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The driver saved the next pause and is still syncing it when the request's wait
    runs out: the reply says the run is running, not the pause (which the failing sync
    then takes back)."""
    import errno
    import threading

    from pausegraph import Graph, Interrupt, LastWriteWins, SqliteCheckpointer

    def step(state: Any) -> Any:
        first = yield Interrupt(0)
        second = yield Interrupt(1)
        return {"x": [first, second]}

    graph = Graph("g", {"x": LastWriteWins()}).step("s", step)
    armed = [False]
    real_sync = os.fdatasync

    def sync(fd: int) -> None:
        if armed[0] and threading.current_thread().name == "pausegraph-web-driver":
            armed[0] = False
            time.sleep(1.5)
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_sync(fd)

    monkeypatch.setattr(os, "fdatasync", sync)
    store = SqliteCheckpointer(tmp_path / "runs.db")
    with TestClient(app([graph], store, wait_s=0.5), base_url="http://127.0.0.1") as client:
        assert client.post("/api/runs/g/r", json={"input": {}}).json()["status"] == "paused"
        armed[0] = True
        reply = client.post("/api/runs/g/r/resume", json={"value": "A"}).json()
        assert reply["status"] in ("running", "queued")
        assert reply["interrupts"] == []


def test_a_reply_does_not_take_its_own_brief_lock_for_a_driver(tmp_path: Path) -> None:
    """A run another answer just claimed (queued) reads as running under the lock the
    reply takes to read it: that is no driver's, and the reply waits for the next pause
    rather than saying running."""
    from pausegraph import FileCheckpointer, Graph, Interrupt, LastWriteWins, Resume
    from pausegraph.web._app import _Server

    def ask(state: Any) -> Any:
        return {"x": (yield Interrupt("q"))}

    graph = Graph("g", {"x": LastWriteWins()}).step("s", ask)
    store = FileCheckpointer(tmp_path / "store")
    runner = Runner(graph, store)
    runner.run("r")
    server = _Server([graph], store, token=None, drive=False, wait_s=1.0)
    settled = server._settled("g", "r")
    assert settled is not None
    assert settled["status"] == "paused"
    runner.submit("r", Resume(1))  # queued: claimed, and no one drives it yet
    assert server._settled("g", "r") is None


def test_pages_show_odd_run_ids_quoted_and_link_dots_safely(tmp_path: Path) -> None:
    """Ids a page cannot show as they are (a tab, a no-break space) are shown as their
    repr, so no two look alike; ``.`` and ``..`` are linked as ``%2E`` segments, which a
    browser does not resolve away."""
    from pausegraph import FileCheckpointer, Graph, Interrupt, LastWriteWins

    def ask(state: Any) -> Any:
        return {"x": (yield Interrupt("q"))}

    graph = Graph("g", {"x": LastWriteWins()}).step("s", ask)
    store = FileCheckpointer(tmp_path / "store")
    runner = Runner(graph, store)
    odd = ["a\tb", "a\u00a0b", "a b", ".", ".."]
    for run_id in odd:
        runner.run(run_id)
    with TestClient(app([graph], store, drive=False), base_url="http://127.0.0.1") as client:
        page = client.get("/").text
        assert "<code>&#39;a\\tb&#39;</code>" in page
        assert "<code>&#39;a\\xa0b&#39;</code>" in page
        assert "<code>a b</code>" in page
        assert 'href="/runs/g/%2E%2E"' in page
        assert 'action="/runs/g/%2E/answer"' in page
        assert client.get("/runs/g/%2E%2E").status_code == 200
        shown = client.get("/runs/g/a%09b").text
        assert "<h1>Run <code>&#39;a\\tb&#39;</code></h1>" in shown


def test_a_host_header_that_is_no_host_is_403_not_a_crash(client: TestClient) -> None:
    # urlsplit raised ValueError on an unclosed '[': a 500 with a traceback (an attack)
    for host in ("[::1", "[", "a]b", "[127.0.0.1]", "evil.example@localhost", "[::1]x",
                 "localhost:99999", "localhost:", "localhost/x"):  # fmt: skip
        reply = client.get("/api/inbox", headers={"Host": host})
        assert reply.status_code == 403, host
        assert "error" in reply.json()
        assert client.get("/", headers={"Host": host}).status_code == 403


def test_a_session_cookie_that_is_not_ascii_is_no_session_not_a_crash(store: Checkpointer) -> None:
    # hmac.compare_digest refused non-ASCII str: a 500 (an attack)
    with TestClient(app([approval()], store, token="s3cret"), base_url=LOCAL) as client:
        page = client.get("/", headers={"Cookie": b"pausegraph_session=a.\xc3\xa9"})
        assert page.status_code == 401
        assert 'name="token"' in page.text


def test_of_posts_racing_to_start_one_run_only_the_one_that_made_it_gets_201(
    client: TestClient, store: Checkpointer
) -> None:
    # each decided "created" by reading before starting: all four were told 201 (an attack).
    # A slow read of a run not there yet lets every post read before any one starts it
    replies: list[int] = []
    body = {"input": {"question": "q", "amount": 1}}
    latest = store.latest

    def slow_latest(workflow_id: str, run_id: str) -> Any:
        found = latest(workflow_id, run_id)
        if found is None:
            time.sleep(0.1)
        return found

    store.latest = slow_latest  # type: ignore[method-assign]

    def post() -> None:
        replies.append(client.post("/api/runs/approval/raced", json=body).status_code)

    threads = [threading.Thread(target=post) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert replies.count(201) == 1, replies
    assert set(replies) <= {200, 201, 409}, replies
    assert [m.label for m in history(store, "raced")].count("input") == 1
    assert client.post("/api/runs/approval/raced", json=body).status_code == 200


@pytest.mark.parametrize("missing", ["jinja2", "starlette"])
def test_importing_the_web_package_without_its_extra_says_what_to_install(missing: str) -> None:
    code = textwrap.dedent(
        f"""
        import sys
        sys.modules[{missing!r}] = None  # as if it were not installed
        try:
            import pausegraph.web
        except ImportError as exc:
            print(exc)
        else:
            raise SystemExit("imported without {missing}")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    assert out == (
        f"pausegraph.web needs {missing}, which is not installed: pip install 'pausegraph[web]'\n"
    )
