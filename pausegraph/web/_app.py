"""The Starlette app: the inbox and run pages, the JSON API, and the thread that drives runs.

A request never runs step code. It checks a command and claims it with
``Runner.submit`` (or records a run with ``Runner.start``), wakes the
server's driver thread, which runs ``Worker.poll()``, and waits until the
run reaches its next pause or end, or ``wait_s`` passes; the reply is the
run as it is then. So a slow step cannot hold a request past ``wait_s``,
and a crash while driving leaves the run ``"queued"`` for any worker.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote, unquote_to_bytes

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Route

from .. import _cli_render as render
from .._commands import Command, Continue, Resume, RunInfo, Status
from .._graph import Graph
from .._inbox import inbox, listed_status, run_summaries, running_among
from .._runner import Runner, system_clock
from .._worker import IDLE_WAIT_S, Retries, Worker, runners_for
from ..checkpointers import Checkpointer, Holder, RunSummary
from ..checkpointers._checkpointer import SummaryData, summary_data
from ..errors import (
    CheckpointError,
    ConflictError,
    CorruptCheckpointError,
    GraphError,
    ResumeError,
    SerializationError,
    StepError,
)
from . import _views as views
from ._guard import SESSION_COOKIE, Guard, host_name, is_loopback
from ._views import segment

logger = logging.getLogger("pausegraph.web")

#: The largest request body read, in bytes; a bigger one is refused (413).
MAX_BODY = 1 << 20
_MOVING = (Status.QUEUED, Status.RUNNING)
_T = TypeVar("_T")


class _Refused(Exception):
    """A request refused before it changed anything: status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Driver:
    """One background thread that runs ``Worker.poll()`` when woken (and every idle wait)."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._moved = threading.Condition()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def wake(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="pausegraph-web-driver", daemon=True
                )
                self._thread.start()
        self._wake.set()

    def _loop(self) -> None:
        retries = Retries("the driver thread")
        wait = IDLE_WAIT_S
        while not self._stop.is_set():
            self._wake.wait(wait)  # an answer wakes it, a failing store's wait included
            self._wake.clear()
            if self._stop.is_set():
                break
            wait = IDLE_WAIT_S
            try:
                self.worker.poll()
            except CheckpointError as error:  # the store cannot be listed: later, and later
                wait = retries.failed(error)
            except BaseException:  # a dead driver thread would leave every answer queued:
                # step code raising KeyboardInterrupt (signals go to the main thread; the run
                # is left queued and the worker skips it until changed)
                logger.exception("the driver thread could not poll the store")
            else:
                retries.succeeded()
            with self._moved:
                self._moved.notify_all()

    def wait_moved(self, timeout: float) -> None:
        with self._moved:
            self._moved.wait(timeout)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()


class _Server:
    """What the handlers share: graphs, store, runners (never driving), guard, driver."""

    def __init__(
        self,
        graphs: Iterable[Graph],
        checkpointer: Checkpointer,
        *,
        token: str | None,
        drive: bool,
        wait_s: float,
    ) -> None:
        graphs = list(graphs)
        self.store = checkpointer
        self.runners = runners_for(checkpointer, graphs, "app(graphs, checkpointer)")
        self.guard = Guard(token)
        self.driver = _Driver(Worker(checkpointer, graphs)) if drive else None
        self.wait_s = wait_s
        self.templates = jinja2.Environment(
            loader=jinja2.PackageLoader("pausegraph.web", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.templates.filters["path"] = segment
        self.templates.filters["shown"] = render.shown  # an id a line cannot show: its repr
        # each paused run's decoded summary data, from the last page: a summary (seq and
        # data included) that has not changed is not decoded again
        self._decoded: dict[RunSummary, SummaryData] = {}
        # what answers that waited for their run hold while they check it and claim
        self._turns = threading.Lock()

    # --- reading ----------------------------------------------------------------

    def runner(self, workflow: str) -> Runner:
        runner = self.runners.get(workflow)
        if runner is None:
            served = ", ".join(map(repr, self.runners))
            raise _Refused(404, f"no workflow {workflow!r} is served here (served: {served})")
        return runner

    def detail(self, workflow: str, run_id: str, *, history: bool) -> dict[str, Any]:
        self.runner(workflow)
        latest = self.store.latest(workflow, run_id)
        if latest is None:
            raise _Refused(404, f"no run {run_id!r} of workflow {workflow!r}")
        if history:
            return views.run_detail(workflow, run_id, self.store, latest)
        return views.run_object(workflow, run_id, self.store, latest)

    def waiting(self, workflow: str | None) -> list[dict[str, Any]]:
        if workflow is not None:
            self.runner(workflow)
        return [
            {
                "workflow": w.workflow_id,
                "run_id": w.run_id,
                "id": w.interrupt.id,
                "step_id": w.interrupt.step_id,
                "payload": render.jsonable(w.interrupt.payload),
                "since_ms": w.since_ms,
                "deadline_ms": w.interrupt.deadline_ms,
            }
            for w in inbox(self.store, workflow=workflow)
            if w.workflow_id in self.runners
        ]

    def paused(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """From one listing of the store: the waiting interrupts and the runs at a breakpoint.

        Both oldest first, in the order ``inbox()`` and ``breakpoints`` give.
        """
        waiting: list[tuple[Any, ...]] = []
        stops = []
        decoded, fresh = self._decoded, {}
        for summary in run_summaries(self.store, status="paused"):
            name = summary.workflow_id
            if name not in self.runners:
                continue
            data = decoded.get(summary)
            if data is None:
                data = summary_data(summary)
            fresh[summary] = data
            for n, fields in enumerate(data.interrupts):
                interrupt_id, step_id, payload, deadline_ms, asked_ms = fields
                since = summary.updated_ms if asked_ms is None else asked_ms  # as inbox() says
                item = {
                    "workflow": name,
                    "run_id": summary.run_id,
                    "id": interrupt_id,
                    "step_id": step_id,
                    "payload": payload,  # made JSON-ready for the page shown only
                    "since_ms": since,
                    "deadline_ms": deadline_ms,
                }
                waiting.append((since, summary.run_id, name, n, item))
            if not data.interrupts:
                stops.append(
                    {
                        "workflow": name,
                        "run_id": summary.run_id,
                        "label": data.label,
                        "since_ms": summary.updated_ms,
                    }
                )
        self._decoded = fresh  # only the runs paused now: it never outgrows the store
        waiting.sort(key=lambda w: w[:4])
        stops.sort(key=lambda b: (b["since_ms"], b["run_id"], b["workflow"]))
        return [w[4] for w in waiting], stops

    def runs(self, workflow: str | None, status: str | None) -> list[dict[str, Any]]:
        if status is not None and status not in {s.value for s in Status}:
            raise _Refused(400, f"unknown status {status!r}: one of {[s.value for s in Status]}")
        names = [workflow] if workflow is not None else list(self.runners)
        # a running run is stored queued (its live lock says running): the store's
        # index picks the rows, the lock sorts queued from running
        stored = Status.QUEUED.value if status == Status.RUNNING.value else status
        found = []
        for name in names:
            self.runner(name)
            summaries = run_summaries(self.store, workflow_id=name, status=stored)
            running = running_among(self.store, summaries)
            for summary in summaries:
                listed = listed_status(summary, self.store, running)
                if status is None or listed.value == status:
                    found.append(
                        {
                            "workflow": name,
                            "run_id": summary.run_id,
                            "status": listed.value,
                            "super_step": summary_data(summary).super_step,
                        }
                    )
        return found

    # --- changing ---------------------------------------------------------------

    def start(
        self, workflow: str, run_id: str, given: Mapping[str, Any] | None
    ) -> tuple[bool, Any]:
        runner = self.runner(workflow)
        # made by this call, not found made: of webhooks racing to start one run, one is told 201
        _, created = self._engine(lambda: runner._start(run_id, given), workflow, run_id)
        return created, self._drive(workflow, run_id)

    def submit(self, workflow: str, run_id: str, command: Command) -> dict[str, Any]:
        """Save ``command``'s claim and drive the run (see ``_drive``).

        An answer by interrupt id that meets the run moving (this server's
        driver is on another answer: two people answering two interrupts of
        one run at once) waits for the run to pause again, at most
        ``wait_s``, and is tried once more: it either still answers a
        pending interrupt of the paused run or is refused (409: a duplicate
        answer never becomes a re-answer of a step that failed meanwhile).
        An answer without an id, or another command, is refused at once
        (409), since after the wait it could land on a pause its sender
        never saw.
        """
        runner = self.runner(workflow)
        self.detail(workflow, run_id, history=False)  # 404 for an unknown run
        deadline = time.monotonic() + self.wait_s  # one wait in all, whatever happens
        try:
            self._engine(lambda: runner.submit(run_id, command), workflow, run_id)
        except _Refused as refused:
            answers = command.answers if isinstance(command, Resume) else None
            if refused.status != 409 or answers is None or self.driver is None:
                raise
            if self._held_elsewhere(workflow, run_id):
                raise  # another process drives it: refused at once, naming it (SPEC)
            while True:
                self._drive(workflow, run_id, deadline)
                # answers that waited take turns: a claim leaves the run queued again, so
                # the next one waits for the pause after it, and a copy of an answer finds
                # its interrupt no longer pending (one lock for all runs: such turns are
                # rare and short, a state read and a claim)
                with self._turns:
                    info = self._engine(lambda: runner.state(run_id), workflow, run_id)
                    moving = info.status in _MOVING
                    if not moving or time.monotonic() >= deadline:
                        self._answer_if_pending(workflow, run_id, answers, info)
                        self._engine(lambda: runner.submit(run_id, command), workflow, run_id)
                        break
        return self._drive(workflow, run_id, deadline)

    def _settled(self, workflow: str, run_id: str) -> dict[str, Any] | None:
        """The run as it is once no call holds it; ``None`` while one does.

        Read under the run's live lock, taken for a moment: every call that
        saved to the run let go of it after its sync, so what this says is on
        disk (SPEC, Durability). A pause whose driver is still in the call
        that saved it (syncing it, and maybe failing to) is not said.
        """
        try:
            with self.store.lock(workflow, run_id):
                obj = self.detail(workflow, run_id, history=False)
        except ConflictError:
            return None
        except CheckpointError as exc:
            raise _store_failed(exc) from None
        # moved on meanwhile (another answer's claim): it reads as running under this very
        # lock, which is no driver's; wait for its next pause
        return None if Status(obj["status"]) in _MOVING else obj

    def _held_elsewhere(self, workflow: str, run_id: str) -> bool:
        """Whether another process than this server holds the run's live lock."""
        try:
            holder = self.store.holder(workflow, run_id)
        except CheckpointError as exc:
            raise _store_failed(exc) from None
        if holder is None or not holder.pid:  # no note of the holder yet: maybe our driver
            return False
        here = Holder.here()
        return (holder.pid, holder.host) != (here.pid, here.host)

    @staticmethod
    def _answer_if_pending(
        workflow: str, run_id: str, answers: Mapping[str, Any], info: RunInfo
    ) -> None:
        """Refuse (409) answers to interrupts not pending on the run, paused as ``info`` says."""
        paused = info.status is Status.PAUSED
        pending = {i.id for i in info.interrupts} if paused else set()
        gone = sorted(i for i in answers if i not in pending)
        if gone:  # answered meanwhile (a duplicate), or the run failed, moved on or still moves
            msg = (
                f"run {run_id!r} moved on while this answer waited for it: "
                f"interrupt(s) {', '.join(gone)} no longer pending (it is "
                f"{info.status}); GET /api/runs/{segment(workflow)}/"
                f"{segment(run_id)} shows where it is"
            )
            raise _Refused(409, msg)

    def _engine(self, call: Callable[[], _T], workflow: str, run_id: str) -> _T:
        """``call()``, its refusals as 409 or 400 with the engine's Python terms made the API's."""
        try:
            return call()
        except (ConflictError, ResumeError, GraphError, SerializationError, StepError) as exc:
            # a StepError here is a reducer refusing the input or an edit
            status = 409 if isinstance(exc, ConflictError) else 400
            message = views.api_terms(
                str(exc), workflow=workflow, run_id=run_id, driving=self.driver is not None
            )
            raise _Refused(status, message) from None
        except CheckpointError as exc:
            raise _store_failed(exc) from None

    def _drive(self, workflow: str, run_id: str, deadline: float | None = None) -> dict[str, Any]:
        """Wake the driver and wait for the run's next pause or end, at most ``wait_s``.

        ``deadline`` (``time.monotonic()`` seconds) ends the wait sooner.
        """
        if self.driver is not None:
            self.driver.wake()
            if deadline is None:
                deadline = time.monotonic() + self.wait_s
            while True:
                obj = self.detail(workflow, run_id, history=False)
                moving = Status(obj["status"]) in _MOVING
                if not moving:
                    settled = self._settled(workflow, run_id)
                    if settled is not None:
                        return settled
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    if not moving:  # saved by a call not yet over: not said before its sync
                        obj = {**obj, "status": Status.RUNNING.value, "interrupts": []}
                    return obj
                self.driver.wait_moved(min(remaining, 0.1))
        return self.detail(workflow, run_id, history=False)

    # --- checks -----------------------------------------------------------------

    def check(self, request: Request, *, html: bool) -> str:
        """Refuse a request the rules forbid; return its session (``""`` without a cookie)."""
        if self.guard.token is None:
            host = request.headers.get("host", "")
            if not is_loopback(host_name(host)):
                msg = f"Host {host!r} is not a loopback name: without a token only this machine may"
                raise _Refused(403, msg + " connect (start serve with --token to allow others)")
            origin = request.headers.get("origin")
            own = f"{request.url.scheme}://{host}"
            if origin is not None and origin != own:
                raise _Refused(403, f"Origin {origin!r} is not this server's ({own!r})")
            return ""
        session = self.guard.session_of(request.cookies.get(SESSION_COOKIE)) if html else None
        if session is not None:
            return session
        if not self.guard.token_ok(request.headers.get("authorization")):
            raise _Refused(401, "this server needs Authorization: Bearer TOKEN")
        return ""

    def page(self, name: str, code: int = 200, /, **context: Any) -> HTMLResponse:
        text = self.templates.get_template(name).render(**context)
        return HTMLResponse(text, status_code=code)


async def _body(request: Request) -> bytes:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise _Refused(413, f"the request body is over {MAX_BODY} bytes")
    return body


async def _json_body(request: Request) -> Any:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        # bad input (the SPEC's 400), though HTTP has 415 for it: the API keeps to the SPEC's codes
        raise _Refused(400, "send the body as JSON with Content-Type: application/json")
    try:
        return render.loads(await _body(request))
    except ValueError as exc:
        raise _Refused(400, f"the body is not valid JSON: {exc}") from None


async def _form(request: Request) -> dict[str, str]:
    text = (await _body(request)).decode("utf-8", "replace")
    return {k: v[0] for k, v in parse_qs(text, keep_blank_values=True).items()}


Handler = Callable[[_Server, Request, str], Awaitable[Response]]


def app(
    graphs: Iterable[Graph],
    checkpointer: Checkpointer,
    *,
    token: str | None = None,
    drive: bool = True,
    wait_s: float = 10.0,
) -> Starlette:
    """The web inbox and JSON API for ``graphs`` over ``checkpointer``, as an ASGI app.

    ::

        import uvicorn
        from pausegraph import open_checkpointer
        from pausegraph.web import app
        uvicorn.run(app([expense.graph], open_checkpointer("runs")), host="127.0.0.1")

    ``token``: every request must carry ``Authorization: Bearer TOKEN`` (the
    pages also take it once through ``/login``). Without it the app refuses
    requests whose ``Host`` is not a loopback name: serve it on loopback
    only. ``drive``: run a driver thread that takes answered runs to their
    next pause (``False``: answers are only claimed, for a separate
    ``pausegraph worker``). ``wait_s``: how long a request waits for that.
    """
    if token is not None and (not isinstance(token, str) or not token):
        msg = f"app(token=...) takes a non-empty str (or None: no token), got {token!r:.80}"
        raise GraphError(msg)
    if not isinstance(wait_s, (int, float)) or isinstance(wait_s, bool) or not wait_s >= 0:
        msg = f"app(wait_s=...) takes seconds, a number >= 0 (inf: no limit), got {wait_s!r:.80}"
        raise GraphError(msg)
    server = _Server(graphs, checkpointer, token=token, drive=drive, wait_s=wait_s)

    def guarded(handler: Handler, *, html: bool) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                try:
                    session = await run_in_threadpool(server.check, request, html=html)
                    return await handler(server, request, session)
                except CheckpointError as exc:  # wherever the store was read
                    raise _store_failed(exc) from None
            except _Refused as refused:
                if html and refused.status == 401:
                    return _login_page(server, "", status=401)
                if html:
                    return server.page(
                        "error.html", refused.status, status=refused.status, message=refused.message
                    )
                return JSONResponse({"error": refused.message}, status_code=refused.status)

        return endpoint

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        if server.driver is not None:  # from the start: runs a dead server left queued, and
            server.driver.wake()  # deadlines that passed while it was down, need no request
        yield
        if server.driver is not None:
            await run_in_threadpool(server.driver.stop)

    def by_method(
        get: Callable[[Request], Awaitable[Response]],
        post: Callable[[Request], Awaitable[Response]],
    ) -> Callable[[Request], Awaitable[Response]]:
        """One endpoint for a path that takes GET and POST, so a 405 names both in Allow."""

        async def endpoint(request: Request) -> Response:
            return await (post if request.method == "POST" else get)(request)

        return endpoint

    def local(
        endpoint: Callable[[Request], Awaitable[Response]],
    ) -> Callable[[Request], Awaitable[Response]]:
        """``endpoint`` behind the Host and Origin rule of a server without a token."""

        async def checked(request: Request) -> Response:
            if server.guard.token is None:  # with one, the login page is what asks for it
                try:
                    server.check(request, html=True)
                except _Refused as refused:
                    return server.page(
                        "error.html", refused.status, status=refused.status, message=refused.message
                    )
            return await endpoint(request)

        return checked

    routes = [
        Route("/", guarded(_inbox_page, html=True), methods=["GET"]),
        Route(
            "/login",
            local(by_method(_login_get(server), _login_post(server))),
            methods=["GET", "POST"],
        ),
        Route("/runs/{workflow}/{run_id}", guarded(_run_page, html=True), methods=["GET"]),
        Route(
            "/runs/{workflow}/{run_id}/answer", guarded(_answer_form, html=True), methods=["POST"]
        ),
        Route("/api/inbox", guarded(_api_inbox, html=False), methods=["GET"]),
        Route("/api/runs", guarded(_api_runs, html=False), methods=["GET"]),
        Route(
            "/api/runs/{workflow}/{run_id}",
            by_method(guarded(_api_run, html=False), guarded(_api_start, html=False)),
            methods=["GET", "POST"],
        ),
        Route(
            "/api/runs/{workflow}/{run_id}/resume",
            guarded(_api_resume, html=False),
            methods=["POST"],
        ),
    ]
    handlers = {404: _no_route, 405: _no_route}
    middleware = [Middleware(_EscapedSlashes)]
    return Starlette(
        routes=routes, lifespan=lifespan, exception_handlers=handlers, middleware=middleware
    )


def _store_failed(exc: CheckpointError) -> _Refused:
    """The reply for a store that failed: 503 (try again), or 500 for damaged records."""
    if isinstance(exc, CorruptCheckpointError):  # not passing: say what is damaged, and where
        logger.error("the store holds damaged records: %s", exc)
        return _Refused(500, f"the store holds damaged records: {exc}")
    logger.warning("the store failed: %s", exc)  # a dropped connection, a full disk
    return _Refused(503, f"the store failed, try again: {exc}")


_ESCAPED = "pausegraph.escaped"  # the scope key: path parameters are still %-escaped


class _EscapedSlashes:
    """Route a URL whose ids hold an escaped ``/`` (``%2F``) by its escaped path.

    The server decodes the path before routing, so ``/runs/w/a%2Fb`` would
    have three segments and match no route. For such a URL the router sees
    the path as sent, each id one segment, and ``_path`` unescapes the ids
    once. Other URLs are routed as they are, and so is every URL of an app
    mounted under a ``root_path`` (servers differ on whether ``raw_path``
    then holds the prefix, so the path as sent cannot be trusted there).
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        raw = scope.get("raw_path") if scope["type"] == "http" else None
        if raw and b"%2f" in raw.lower() and not scope.get("root_path"):
            try:
                path = raw.decode("ascii")
            except UnicodeDecodeError:
                path = None  # not as HTTP sends it: leave it to the server's decoding
            if path is not None:
                scope = {**scope, "path": path, _ESCAPED: True}
        await self.app(scope, receive, send)


def _is_api(request: Request) -> bool:
    return request.url.path == "/api" or request.url.path.startswith("/api/")


async def _no_route(request: Request, exc: Exception) -> Response:
    """A path no route takes (404) or a method its route does not (405): JSON under ``/api``."""
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    if "Allow" in headers:  # in one order, whatever order the route's set of methods has
        headers["Allow"] = ", ".join(sorted(m.strip() for m in headers["Allow"].split(",")))
    if not _is_api(request):
        return PlainTextResponse(exc.detail, status_code=exc.status_code, headers=headers)
    path = request.url.path
    if exc.status_code == 405:
        allowed = headers.get("Allow", "")
        message = f"{request.method} is not allowed on {path} (allowed: {allowed})"
    else:
        message = (
            f"no API route {path}: the API serves /api/inbox, /api/runs, "
            "/api/runs/WORKFLOW/RUN_ID and /api/runs/WORKFLOW/RUN_ID/resume"
        )
    return JSONResponse({"error": message}, status_code=exc.status_code, headers=headers)


# --- JSON API ---------------------------------------------------------------------


def _path(request: Request) -> tuple[str, str]:
    """The workflow and run id of the URL; 400 if its escapes are not UTF-8.

    The server decodes a path's ``%xx`` escapes leniently (a byte that is
    not UTF-8 becomes U+FFFD), so two different URLs would name one run.
    """
    raw = request.scope.get("raw_path")
    if raw is not None:
        try:
            unquote_to_bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            msg = "the URL's path is not UTF-8: percent-escape the UTF-8 bytes of each id"
            raise _Refused(400, msg) from None
    workflow, run_id = request.path_params["workflow"], request.path_params["run_id"]
    if request.scope.get(_ESCAPED):
        return unquote(workflow, errors="strict"), unquote(run_id, errors="strict")
    return workflow, run_id


async def _api_inbox(server: _Server, request: Request, _: str) -> Response:
    workflow = request.query_params.get("workflow")
    return JSONResponse(await run_in_threadpool(server.waiting, workflow))


async def _api_runs(server: _Server, request: Request, _: str) -> Response:
    params = request.query_params
    found = await run_in_threadpool(server.runs, params.get("workflow"), params.get("status"))
    return JSONResponse(found)


async def _api_run(server: _Server, request: Request, _: str) -> Response:
    workflow, run_id = _path(request)
    return JSONResponse(await run_in_threadpool(server.detail, workflow, run_id, history=True))


async def _api_start(server: _Server, request: Request, _: str) -> Response:
    workflow, run_id = _path(request)
    body = await _json_body(request)
    if not isinstance(body, dict) or set(body) - {"input"}:
        raise _Refused(400, 'the body must be {"input": {...}}')
    given = body.get("input")  # none given: a new run starts empty, an existing one stays
    if given is not None and not isinstance(given, dict):
        raise _Refused(400, f"'input' must be an object of channel: value, got {given!r}")
    created, obj = await run_in_threadpool(server.start, workflow, run_id, given)
    return JSONResponse(obj, status_code=201 if created else 200)


async def _api_resume(server: _Server, request: Request, _: str) -> Response:
    workflow, run_id = _path(request)
    body = await _json_body(request)
    try:
        command = views.command_of(body)
    except views.BadRequest as exc:
        raise _Refused(400, str(exc)) from None
    return JSONResponse(await run_in_threadpool(server.submit, workflow, run_id, command))


# --- HTML pages -------------------------------------------------------------------


#: Waiting interrupts shown on one page of the inbox (oldest first); ``?page=N`` for more.
PAGE_SIZE = 100


def _inbox_context(
    server: _Server, session: str, page: int = 1, focus: tuple[str, str, str] | None = None
) -> dict[str, Any]:
    """The inbox page's context: one listing of the store, one page of it rendered.

    ``focus`` (workflow, run id, interrupt id) picks the page that shows it.
    """
    now = system_clock()
    everything, stops = server.paused()
    pages = max(1, -(-len(everything) // PAGE_SIZE))
    if focus is not None:
        keys = [(i["workflow"], i["run_id"], i["id"]) for i in everything]
        page = keys.index(focus) // PAGE_SIZE + 1 if focus in keys else 1
    page = min(max(page, 1), pages)
    items = everything[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    for item in items:
        item["payload_text"] = render.dumps(item["payload"], indent=2)
        item["age"] = views.age_text(item["since_ms"], now)
        item["deadline"] = render.deadline_text(item["deadline_ms"], now, "Z")
    stops = stops if page == 1 else []
    for stop in stops:
        stop["age"] = views.age_text(stop["since_ms"], now)
    return {
        "items": items,
        "total": len(everything),
        "page": page,
        "pages": pages,
        "stops": stops,
        "csrf": server.guard.csrf_token(session),
        "errors": {},
        "given": {},
        "notice": None,
        "workflows": list(server.runners),
    }


async def _inbox_page(server: _Server, request: Request, session: str) -> Response:
    try:
        page = int(request.query_params.get("page", "1"))
    except ValueError:
        raise _Refused(400, "page must be a whole number (?page=2)") from None
    context = await run_in_threadpool(_inbox_context, server, session, page)
    return server.page("inbox.html", **context)


def _run_context(server: _Server, workflow: str, run_id: str) -> dict[str, Any]:
    obj = server.detail(workflow, run_id, history=True)
    graph = server.runners[workflow].graph
    latest = server.store.latest(workflow, run_id)
    assert latest is not None
    info = render.info_of(latest, server.store)
    steps = views.step_views(graph, info, latest)
    for entry in obj["history"]:
        entry["time"] = views.time_text(entry["timestamp_ms"])
        entry["recorded_text"] = render.recorded_text(entry["recorded"])
    return {
        "run": obj,
        "values": [(k, render.dumps(v, indent=2)) for k, v in obj["values"].items()],
        "steps": steps,
        "mermaid": views.mermaid(graph, steps),
        "payloads": [render.dumps(i["payload"], indent=2) for i in obj["interrupts"]],
    }


async def _run_page(server: _Server, request: Request, session: str) -> Response:
    workflow, run_id = _path(request)
    context = await run_in_threadpool(_run_context, server, workflow, run_id)
    return server.page("run.html", **context)


async def _answer_form(server: _Server, request: Request, session: str) -> Response:
    workflow, run_id = _path(request)
    form = await _form(request)
    if not server.guard.csrf_ok(session, form.get("csrf", "")):
        raise _Refused(403, "the form's CSRF token is missing or stale: reload the page")
    interrupt_id = form.get("interrupt_id", "")
    command: Command
    if "continue" in form:
        command = Continue()
    else:
        try:
            value = render.loads(form.get("answer", ""))
        except ValueError as exc:
            return await _inbox_with_error(
                server, session, (workflow, run_id, interrupt_id), form, _not_json(exc), 400
            )
        command = Resume(answers={interrupt_id: value})
    try:
        await run_in_threadpool(server.submit, workflow, run_id, command)
    except _Refused as refused:
        if refused.status == 404:
            raise
        key = (workflow, run_id, interrupt_id)
        return await _inbox_with_error(server, session, key, form, refused.message, refused.status)
    target = f"/runs/{segment(workflow)}/{segment(run_id)}"
    return RedirectResponse(target, status_code=303)


def _not_json(exc: ValueError) -> str:
    """The answer field's error for text that is not JSON, with how to send text."""
    return f'not JSON: {exc}; to answer with text, put it in double quotes: "yes please"'


async def _inbox_with_error(
    server: _Server,
    session: str,
    key: tuple[str, str, str],
    form: Mapping[str, str],
    message: str,
    status: int,
) -> Response:
    context = await run_in_threadpool(_inbox_context, server, session, 1, key)
    shown = {(i["workflow"], i["run_id"], i["id"]) for i in context["items"]}
    shown.update((s["workflow"], s["run_id"], "") for s in context["stops"])
    if key in shown:  # under its field, the answer kept there
        context["errors"] = {key: message}
        context["given"] = {key: form.get("answer", "")}
    else:  # answered meanwhile, or the run moved on: said at the top, with what was given
        workflow, run_id, interrupt_id = key
        context["notice"] = {
            "workflow": workflow,
            "run_id": run_id,
            "interrupt_id": interrupt_id,
            "message": message,
            "given": form.get("answer", ""),
        }
    return server.page("inbox.html", status, **context)


def _login_page(server: _Server, error: str, *, status: int = 200) -> HTMLResponse:
    return server.page("login.html", status, error=error, csrf=server.guard.csrf_token(""))


def _login_get(server: _Server) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        return _login_page(server, "")

    return endpoint


def _login_post(server: _Server) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            form = await _form(request)
        except _Refused as refused:
            return server.page(
                "error.html", refused.status, status=refused.status, message=refused.message
            )
        if not server.guard.csrf_ok("", form.get("csrf", "")):
            return server.page(
                "error.html", 403, status=403, message="the login form's CSRF token is missing"
            )
        if not server.guard.login_ok(form.get("token", "")):
            return _login_page(server, "that is not the token", status=401)
        response = RedirectResponse("/", status_code=303)
        # written out: Starlette's set_cookie spells the attribute "SameSite=strict"
        cookie = f"{SESSION_COOKIE}={server.guard.new_session()}; HttpOnly; Path=/; SameSite=Strict"
        if request.url.scheme == "https":
            cookie += "; Secure"
        response.headers.append("set-cookie", cookie)
        return response

    return endpoint
