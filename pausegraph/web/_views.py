"""What the pages and the JSON API show, from a store and the served graphs (no I/O of its own).

Everything here is plain data; the templates escape it (Jinja autoescape,
``|tojson`` in attributes) and the Mermaid source is built from node ids the
server makes up (``s0``, ``s1``...), with step ids only inside quoted labels,
entity-escaped by ``Graph.to_mermaid``.
"""

from __future__ import annotations

import datetime
import json
import re
from typing import Any
from urllib.parse import quote

import attrs

from .. import _cli_render as render
from .._commands import Command, Continue, Goto, Resume, RunInfo, Status, Update
from .._graph import Graph
from .._records import Checkpoint, progress_of, skipped_of
from ..checkpointers import Checkpointer


def segment(text: object) -> str:
    """``text`` as one URL path segment: percent-encoded, ``.`` and ``..`` too (a browser
    would resolve those away, so a run named ``..`` gets ``%2E%2E``)."""
    quoted = quote(str(text), safe="")
    return quoted.replace(".", "%2E") if quoted in (".", "..") else quoted


#: The state of a step on the run page; a step not reached yet has none.
STEP_STATES = ("done", "running", "paused", "failed", "skipped")
_STYLES = {
    "done": "fill:#d4edda,stroke:#2e7d32",
    "running": "fill:#fff3cd,stroke:#b8860b",
    "paused": "fill:#cfe2ff,stroke:#1d4ed8",
    "failed": "fill:#f8d7da,stroke:#b91c1c",
    "skipped": "fill:#eeeeee,stroke:#888888,stroke-dasharray:4",
}


class BadRequest(ValueError):
    """A request body that does not say what to do (400)."""


def run_detail(
    workflow: str, run_id: str, store: Checkpointer, latest: Checkpoint
) -> dict[str, Any]:
    """``show --json``'s object plus ``history`` (each checkpoint and what it recorded)."""
    obj = run_object(workflow, run_id, store, latest)
    history = [
        {
            "seq": meta.seq,
            "super_step": meta.super_step,
            "label": meta.label,
            "timestamp_ms": meta.timestamp_ms,
            "recorded": recorded,
        }
        for meta, recorded in render.history_of(store, workflow, run_id)
    ]
    obj["history"] = history
    return obj


def run_object(
    workflow: str, run_id: str, store: Checkpointer, latest: Checkpoint
) -> dict[str, Any]:
    """The object ``pausegraph show --json`` prints, from the run's latest checkpoint."""
    info = render.info_of(latest, store)
    return render.run_object(workflow, run_id, info, cancelled=render.cancel_reason_of(latest))


def command_of(body: Any) -> Command:
    """The command a resume body asks for: exactly one of value, answers, continue, update, goto.

    ``update`` may ride beside ``value``, ``answers`` or ``goto``; alone it is ``Update``.
    """
    if not isinstance(body, dict):
        raise BadRequest('the body must be a JSON object such as {"value": ...}')
    known = {"value", "answers", "continue", "update", "goto"}
    unknown = sorted(set(body) - known)
    if unknown:
        msg = f"unknown field(s) {', '.join(map(repr, unknown))}: give one of {sorted(known)}"
        raise BadRequest(msg)
    update = body.get("update")
    if update is not None and not isinstance(update, dict):
        raise BadRequest(f"'update' must be an object of channel: value, got {update!r}")
    main = sorted(set(body) - {"update"})
    if len(main) > 1:
        raise BadRequest(f"give exactly one of value, answers, continue, goto; got {main}")
    if not main:
        if update is None:
            raise BadRequest("give one of value, answers, continue, update, goto")
        return Update(update)
    kind = main[0]
    if kind == "value":
        return Resume(body["value"], update=update)
    if kind == "answers":
        answers = body["answers"]
        if not isinstance(answers, dict) or not answers:
            raise BadRequest(
                f"'answers' must be an object of interrupt id: answer, got {answers!r}"
            )
        return Resume(answers=answers, update=update)
    if kind == "goto":
        if not isinstance(body["goto"], str):
            raise BadRequest(f"'goto' must be a step id, got {body['goto']!r}")
        return Goto(body["goto"], update=update)
    if body["continue"] is not True or update is not None:
        raise BadRequest(
            "'continue' must be true, alone (an update alone goes on past a breakpoint)"
        )
    return Continue()


@attrs.frozen
class StepView:
    step_id: str
    node: str
    state: str | None


def step_views(graph: Graph, info: RunInfo, latest: Checkpoint) -> list[StepView]:
    """Each step of the graph, in the graph's order, with its state in this run.

    A step a conditional edge left out (the stage's ``skipped``, in any
    layer decided so far) is skipped. Of the others, layers before the one
    under way are done. At an interrupt the steps waiting are paused and the
    rest of their layer done; at a breakpoint before a layer its steps are
    paused; a failed layer's failing step is failed, the steps of it that
    finished done and those waiting at an interrupt paused; a queued or running
    run's next layer is running; once a run is over, the layers it never ran
    are skipped.
    """
    status = info.status
    stop = render.breakpoint_of(latest)
    if status is Status.PAUSED and (info.interrupts or (stop is not None and stop[0] == "before")):
        finished, current = info.super_step - 1, info.super_step - 1
    else:
        finished, current = info.super_step, info.super_step
    waiting = {i.step_id for i in info.interrupts}
    failed = info.failure.step_id if info.failure is not None else None
    over = status in (Status.DONE, Status.CANCELLED)
    skipped = set(skipped_of(latest.stage))
    progress = progress_of(latest.stage)  # a failed layer's: which steps finished
    finished_here = set(progress.finished) if progress is not None else set()
    layer_of = {step: k for k, layer in enumerate(graph.layers()) for step in layer}
    views = []
    for n, step in enumerate(graph.steps):
        k = layer_of[step]
        state: str | None = None
        if step in skipped:
            state = "skipped"
        elif k < finished:
            state = "done"
        elif over:
            state = "skipped"
        elif k == current:
            if status in (Status.QUEUED, Status.RUNNING):
                state = "running"
            elif status is Status.FAILED:
                if step == failed:
                    state = "failed"
                elif step in finished_here:
                    state = "done"
                elif step in waiting:
                    state = "paused"
            elif status is Status.PAUSED:
                state = "paused" if step in waiting or not info.interrupts else "done"
        views.append(StepView(step, f"s{n}", state))
    return views


def mermaid(graph: Graph, steps: list[StepView]) -> str:
    """``graph.to_mermaid()`` with a class per step state (``class s0 done``)."""
    lines = [graph.to_mermaid().rstrip("\n")]
    used = sorted({s.state for s in steps if s.state is not None})
    lines += [f"    classDef {state} {_STYLES[state]}" for state in used]
    lines += [f"    class {s.node} {s.state}" for s in steps if s.state is not None]
    return "\n".join(lines) + "\n"


def age_text(since_ms: int, now_ms: int) -> str:
    """How long ago, roughly: ``45s``, ``12m 3s``, ``5h 2m``, ``3d 4h``."""
    seconds = max(0, (now_ms - since_ms) // 1000)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def time_text(timestamp_ms: int) -> str:
    moment = datetime.datetime.fromtimestamp(timestamp_ms / 1000, tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


# --- engine messages in the API's terms ------------------------------------------

# The engine's messages name Python calls (``Resume(answers={id: value, ...})``,
# ``Goto('nope')``, ``Update(edits)``, ``run(run_id)``); ``pausegraph`` rewrites them
# into its options (``render.cli_terms``). The API rewrites them the same way, found
# by the same scan (name and balanced brackets), into the JSON bodies and requests it
# takes. A few phrases about ``run(run_id)`` mean something else over HTTP, where
# the server's driver does what ``run`` does: they are reworded first, whole.
_PHRASES = {
    "retry it with Continue() or run(run_id)": "retry it with Continue()",
    "run(run_id) without input goes on with it": "the server's driver goes on with it",
    "run(run_id) without input retries it": "Continue() retries it",
    "run(run_id) without input returns its result": "state(run_id) shows its result",
}
_STEP_LITERAL = re.compile(r"(?:step_id=)?'([^'\\]*)'")


def api_terms(message: str, *, workflow: str, run_id: str, driving: bool = True) -> str:
    """``message`` with each Python call it names replaced by the request or body that does it.

    ``driving`` says whether the server drives runs itself (not ``--no-drive``):
    ``run(run_id)`` reads as its driver, or a worker's, else a worker's alone.

    ``Resume(answers=...)`` reads ``{"answers": {ID: VALUE}}``, ``Goto('x')``
    ``{"goto": "x"}``, ``resume(run_id, command)`` ``POST
    /api/runs/WORKFLOW/RUN_ID/resume``, and so on, for the run the request named.
    """
    for phrase, reworded in _PHRASES.items():
        if not driving:
            reworded = reworded.replace("the server's driver", "a pausegraph worker")
        message = message.replace(phrase, reworded)
    run = f"/api/runs/{segment(workflow)}/{segment(run_id)}"
    out: list[str] = []
    pos = 0
    for match in render._CALL.finditer(message):
        if match.start() < pos:
            continue  # inside a call already replaced
        end = render._call_end(message, match.end())
        if end < 0:
            break
        name, inner = match.group(1), message[match.end() : end - 1].strip()
        out.append(message[pos : match.start()])
        out.append(_api_term(name, inner, run, driving))
        pos = end
    out.append(message[pos:])
    return re.sub(r"\bcall (?=(GET|POST) )", "send ", "".join(out))


def _api_term(name: str, inner: str, run: str, driving: bool) -> str:
    if inner.startswith("update=") or name == "Update":
        return '{"update": {CHANNEL: VALUE}}'
    if name == "Continue":
        return '{"continue": true}'
    if name == "Resume":
        answered = render.resume_answers(inner.strip())
        return '{"answers": {ID: VALUE}}' if answered else '{"value": VALUE}'
    if name == "Goto":
        literal = _STEP_LITERAL.match(inner)
        return f'{{"goto": {json.dumps(literal.group(1)) if literal else "STEP"}}}'
    if name in ("Before", "After"):
        return f"{name.lower()} step {inner.removeprefix('step_id=')}"
    if name in ("state", "history"):
        return f"GET {run}"
    if name == "run":
        if "input" in inner:
            return f'POST {run} with {{"input": {{CHANNEL: VALUE}}}}'
        return "the server's driver (or a pausegraph worker)" if driving else "a pausegraph worker"
    return (
        f'POST {run}/resume (with one of {{"value": VALUE}}, {{"answers": {{ID: VALUE}}}}, '
        '{"continue": true}, {"update": {...}} or {"goto": STEP})'
    )
