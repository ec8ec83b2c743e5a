"""The ``pausegraph`` command: run, resume and inspect workflows from a shell.

::

    pausegraph run examples/expense.py:graph --input '{"amount": 120}'
    pausegraph resume examples/expense.py:graph RUN_ID --value '{"approved": true}'
    pausegraph runs --status paused
    pausegraph inbox
    pausegraph tick examples/expense.py:graph
    pausegraph serve examples/expense.py:graph --port 8000
    pausegraph show RUN_ID
    pausegraph history RUN_ID
    pausegraph cancel RUN_ID --reason "duplicate"
    pausegraph delete RUN_ID
    pausegraph prune --finished-before 30
    pausegraph graph examples/expense.py:graph

A WORKFLOW is ``module:attribute`` or ``path/to/file.py:attribute`` naming a
``Graph``. Runs live in a ``FileCheckpointer`` store, ``./.pausegraph`` unless
``--store URL`` names another (any ``open_checkpointer`` URL: a directory,
``file:PATH``, ``sqlite:PATH``, ``postgresql://...``, ``memory:``). Values on the command line are
JSON. The commands that need no WORKFLOW (``runs``, ``inbox``, ``show``,
``history``, ``cancel``, ``delete``, ``prune``) read the store alone: the
stores' run summaries for listings, one run's checkpoints otherwise.

Every mistake (bad JSON, an unknown run, a workflow that cannot be imported,
any ``PausegraphError``) prints one line, ``pausegraph: error: ...``, on
standard error and exits 2 for a malformed command line or 1 otherwise. The
command checks everything it can before it acts, and the engine checks a
command before it saves, so a mistake never changes the store. Engine
messages are reworded into command-line terms (``render.cli_terms``). A
closed standard output ends the command quietly with ``PIPE_CLOSED`` (141).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import importlib
import importlib.util
import io
import json
import logging
import operator
import os
import signal
import socket
import sys
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

from . import __version__
from . import _cli_render as render
from ._admin import cancel_run, delete_run, prune
from ._channels import Channels, accept_writes
from ._commands import (
    Before,
    Command,
    Continue,
    Done,
    DynamicInterrupt,
    Goto,
    Outcome,
    Paused,
    PendingInterrupt,
    Resume,
    RunInfo,
    Status,
    Update,
)
from ._graph import Graph
from ._inbox import listed_status, run_summaries, running_among, waiting
from ._records import Asked, Checkpoint, Raised, Returned, progress_of
from ._runner import Runner, check_run_id, system_clock
from ._worker import Worker
from .checkpointers import Checkpointer, RunSummary
from .checkpointers._checkpointer import summary_fields
from .checkpointers._open import (
    describe_url,
    has_password,
    is_sqlite_file,
    open_checkpointer,
    parse_store_url,
    redact_url,
)
from .errors import (
    CheckpointError,
    CorruptCheckpointError,
    GraphError,
    NondeterminismError,
    PausegraphError,
    ResumeError,
    SerializationError,
    StepError,
)

__all__ = ["main"]

DEFAULT_STORE = ".pausegraph"
_PROG = render.PROG
# The exit status when standard output is closed early (``pausegraph runs | head``):
# 128 + SIGPIPE, what a shell reports for a program that a closed pipe ended.
PIPE_CLOSED = 141
_LOG = logging.getLogger("pausegraph.cli")
_HANDLER_NAME = "pausegraph-cli"


class _Failure(Exception):
    """A mistake to report in one line; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit 2), not the usage text."""

    def error(self, message: str) -> NoReturn:
        hint = f"see '{self.prog} --help'"
        raise _Failure(f"{message} ({hint})", 2)


class _Version(argparse.Action):
    """``--version``: argparse's own action would swallow a closed pipe, this one does not."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        print(f"{_PROG} {__version__}")
        parser.exit()


def _usage(message: str) -> _Failure:
    return _Failure(message, 2)


def _served_graphs(args: argparse.Namespace) -> list[Graph]:
    """The WORKFLOW... of ``serve`` and ``worker``, each once (a usage error if given twice)."""
    graphs: dict[str, tuple[str, Graph]] = {}
    for spec in args.workflows:
        graph = load_graph(spec)
        if graph.name in graphs:
            first = graphs[graph.name][0]
            raise _usage(f"{spec} and {first} are both workflow {graph.name!r}: give each once")
        graphs[graph.name] = (spec, graph)
    return [graph for _, graph in graphs.values()]


def _port(text: str) -> int:
    """``serve --port``: a TCP port number, 0 to 65535 (0 picks a free one)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0 to 65535)") from None
    if not 0 <= port <= 65535:
        msg = f"{port} is not a port number: a port is 0 to 65535 (0 picks a free one)"
        raise argparse.ArgumentTypeError(msg)
    return port


# --- the command line ----------------------------------------------------------


def _parser() -> _Parser:
    store_help = (
        "the store: a directory, file:PATH, sqlite:PATH, postgresql://USER@HOST/DB "
        f"or memory: (default: ./{DEFAULT_STORE}); a PostgreSQL password is best left "
        "to PGPASSWORD or ~/.pgpass"
    )
    # --store is accepted before or after the command; the command's copy wins.
    store = _Parser(add_help=False)
    store.add_argument("--store", metavar="URL", default=argparse.SUPPRESS, help=store_help)
    # -v/-q are accepted before or after the command too; the counts add up.
    loudness = _Parser(add_help=False)
    loudness.add_argument(
        "-v", dest="more_verbose", action="count", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    loudness.add_argument(
        "-q", dest="more_quiet", action="count", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    json_flag = _Parser(add_help=False)
    json_flag.add_argument("--json", action="store_true", help="print JSON instead of text")
    breakpoints = _Parser(add_help=False)
    breakpoints.add_argument(
        "--interrupt-before",
        metavar="STEP",
        action="append",
        default=[],
        help="pause before the layer holding STEP runs (repeatable)",
    )
    breakpoints.add_argument(
        "--interrupt-after",
        metavar="STEP",
        action="append",
        default=[],
        help="pause after the layer holding STEP is applied (repeatable)",
    )

    parser = _Parser(
        prog=_PROG,
        description="Run, resume and inspect pausegraph workflows.",
    )
    parser.add_argument("--store", metavar="URL", default=DEFAULT_STORE, help=store_help)
    parser.add_argument("--version", action=_Version, help="print the version and exit")
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log more: -v info and the traceback of any error, -vv debug",
    )
    parser.add_argument(
        "-q", "--quiet", action="count", default=0, help="log errors only, no warnings"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run",
        parents=[store, loudness, json_flag, breakpoints],
        help="start a run (or recover one whose process died)",
        description="Start a run and print where it paused, or its final state.",
    )
    run.add_argument("workflow", metavar="WORKFLOW", help="module:attribute or file.py:attribute")
    run.add_argument("--input", metavar="JSON", help="the run's input: a JSON object of channels")
    run.add_argument("--run-id", metavar="ID", help="the run id (default: a new random one)")
    run.add_argument(
        "--interactive",
        action="store_true",
        help="read each answer as one JSON line from stdin until the run ends or stdin does",
    )

    resume = commands.add_parser(
        "resume",
        parents=[store, loudness, json_flag, breakpoints],
        help="answer or go on with a paused run",
        description="Give a paused run one command and print where it paused, or its final state.",
    )
    resume.add_argument(
        "workflow", metavar="WORKFLOW", help="module:attribute or file.py:attribute"
    )
    resume.add_argument("run_id", metavar="RUN_ID")
    how = resume.add_mutually_exclusive_group()
    how.add_argument("--value", metavar="JSON", help="answer the only pending interrupt")
    how.add_argument(
        "--answer",
        metavar="ID=JSON",
        action="append",
        help="answer interrupt ID (repeatable; the others stay pending)",
    )
    how.add_argument("--continue", dest="go_on", action="store_true", help="go past a breakpoint")
    how.add_argument("--goto", metavar="STEP", help="run again from the layer holding STEP")
    resume.add_argument(
        "--update",
        metavar="JSON",
        help="write a JSON object of channel values: alone, or with --value, --answer or --goto",
    )

    ticking = commands.add_parser(
        "tick",
        parents=[store, loudness, json_flag],
        help="go on with every run whose deadline has passed",
        description=(
            "Go on with every paused run of the given workflows whose deadline has passed "
            "(a timed-out interrupt or a finished sleep), and print where each moved run "
            "paused or that it is done. A run whose step fails is logged and left failed."
        ),
    )
    ticking.add_argument(
        "workflows", metavar="WORKFLOW", nargs="+", help="module:attribute or file.py:attribute"
    )

    working = commands.add_parser(
        "worker",
        parents=[store, loudness],
        help="drive queued runs and passed deadlines until interrupted",
        description=(
            "Serve the given workflows from the store: drive every queued run (started, "
            "submitted, or left by a process that died) to its next pause or end, and go on "
            "with runs whose deadline passed, until SIGINT or SIGTERM. The run in hand "
            "finishes first. Any number of workers may serve one store."
        ),
    )
    working.add_argument(
        "workflows", metavar="WORKFLOW", nargs="+", help="module:attribute or file.py:attribute"
    )

    serving = commands.add_parser(
        "serve",
        parents=[store, loudness],
        help="serve the web inbox and HTTP API (the web extra)",
        description=(
            "Serve the web inbox (answer interrupts in a browser) and the JSON API (answer "
            "them from webhooks) for the given workflows, and drive answered runs to their "
            "next pause. Without a token it binds loopback only and refuses other Host and "
            "Origin headers; with --token (or PAUSEGRAPH_TOKEN) every request needs "
            "Authorization: Bearer TOKEN. Needs: pip install 'pausegraph[web]'."
        ),
    )
    serving.add_argument(
        "workflows", metavar="WORKFLOW", nargs="+", help="module:attribute or file.py:attribute"
    )
    serving.add_argument(
        "--host", default="127.0.0.1", help="the address to bind (default: 127.0.0.1)"
    )
    serving.add_argument(
        "--port",
        type=_port,
        default=8000,
        help="the port to bind; 0 picks a free one (default: 8000)",
    )
    serving.add_argument(
        "--token",
        default=argparse.SUPPRESS,
        help="require Authorization: Bearer TOKEN (default: $PAUSEGRAPH_TOKEN, else none)",
    )
    serving.add_argument(
        "--wait",
        metavar="S",
        type=float,
        default=10.0,
        help="seconds a request waits for the run's next pause before replying (default: 10)",
    )
    serving.add_argument(
        "--no-drive",
        dest="drive",
        action="store_false",
        help="only claim answers; leave driving runs to a separate pausegraph worker",
    )

    runs = commands.add_parser(
        "runs",
        parents=[store, loudness, json_flag],
        help="list every run in the store with its status",
        description="List every run in the store with its status.",
    )
    runs.add_argument(
        "--status", choices=[s.value for s in Status], help="only the runs with this status"
    )
    runs.add_argument("--workflow", metavar="NAME", help="only the runs of this graph")
    waiting = commands.add_parser(
        "inbox",
        parents=[store, loudness, json_flag],
        help="list every interrupt waiting for an answer, oldest first",
        description="List every pending interrupt of every paused run, oldest first.",
    )
    waiting.add_argument("--workflow", metavar="NAME", help="only the runs of this graph")
    for name, what in (
        ("show", "the state, pending interrupts and journal"),
        ("history", "the checkpoints, with what each recorded,"),
    ):
        sub = commands.add_parser(
            name,
            parents=[store, loudness, json_flag],
            help=f"print {what} of a run",
            description=f"Print {what} of a run, found in any workflow of the store.",
        )
        sub.add_argument("run_id", metavar="RUN_ID")
        sub.add_argument(
            "--workflow", metavar="NAME", help="the graph name, when several share RUN_ID"
        )
    cancel = commands.add_parser(
        "cancel",
        parents=[store, loudness],
        help="end a paused, failed or new run for good",
        description=(
            "End a paused or failed run, or a queued one that holds only its input (started, "
            "never driven), for good (checkpoint 'cancelled'); needs no WORKFLOW. "
            "A later 'pausegraph resume WORKFLOW RUN_ID --goto STEP' re-opens it."
        ),
    )
    cancel.add_argument("run_id", metavar="RUN_ID")
    cancel.add_argument(
        "--workflow", metavar="NAME", help="the graph name, when several share RUN_ID"
    )
    cancel.add_argument("--reason", metavar="TEXT", default="", help="why, kept with the run")
    delete = commands.add_parser(
        "delete",
        parents=[store, loudness],
        help="remove every checkpoint of a run",
        description="Remove every checkpoint of a run that no live process drives.",
    )
    delete.add_argument("run_id", metavar="RUN_ID")
    delete.add_argument(
        "--workflow", metavar="NAME", help="the graph name, when several share RUN_ID"
    )
    pruning = commands.add_parser(
        "prune",
        parents=[store, loudness],
        help="delete done and cancelled runs older than DAYS",
        description=(
            "Delete every done or cancelled run whose latest checkpoint is older than DAYS "
            "days, each holding its live lock; print how many."
        ),
    )
    pruning.add_argument(
        "--finished-before", metavar="DAYS", type=float, required=True, help="age in days"
    )
    pruning.add_argument("--workflow", metavar="NAME", help="only the runs of this graph")

    graph = commands.add_parser(
        "graph",
        parents=[store, loudness],  # --store is taken (and not opened), as by every command
        help="print a workflow as a Mermaid flowchart",
        description="Print a workflow as a Mermaid flowchart.",
    )
    graph.add_argument("workflow", metavar="WORKFLOW", help="module:attribute or file.py:attribute")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``pausegraph`` command; return its exit status.

    A closed standard output (``pausegraph runs | head -1``) ends the command
    quietly with ``PIPE_CLOSED`` (141): the reader has all it wanted. Text
    that cannot be encoded (a run id holding a lone surrogate) is printed
    with backslash escapes rather than ending the command.
    """
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
    try:
        code = _main(argv)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except BrokenPipeError:
        _stdout_to_devnull()
        return PIPE_CLOSED


def _stdout_to_devnull() -> None:
    """Point stdout at devnull, so that the flush at exit does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # not a real file (main() called in process)
        pass
    finally:
        os.close(devnull)


def _main(argv: Sequence[str] | None) -> int:
    args: argparse.Namespace | None = None
    try:
        try:
            args = _parser().parse_args(argv)
        except SystemExit as exit_:  # --help and --version printed what they print
            return exit_.code if isinstance(exit_.code, int) else 0
        _log_to_stderr(args)
        return int(_COMMANDS[args.command](args))
    except _Failure as exc:
        _traceback(exc)
        return _fail(str(exc), exc.code)
    except PausegraphError as exc:
        _traceback(exc)
        return _fail(f"{type(exc).__name__}: {_cli_terms(args, str(exc))}", 1)
    except BrokenPipeError:
        raise
    except OSError as exc:
        _traceback(exc)
        return _fail(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), 1)
    except KeyboardInterrupt as exc:
        _traceback(exc)
        return _fail("interrupted", 130)
    except Exception as exc:
        if os.environ.get("PAUSEGRAPH_TRACEBACK"):
            raise
        _traceback(exc)
        return _fail(
            f"unexpected {type(exc).__name__}: {exc} "
            "(a bug: set PAUSEGRAPH_TRACEBACK=1 to see where)",
            1,
        )


def _traceback(exc: BaseException) -> None:
    """With ``-v``, the traceback of the error about to be printed (and of its cause).

    A one-line failure made from another error (a step's ``StepError``) shows
    that error's traceback: the CLI's own wrapper adds nothing to it.
    """
    cause = exc.__cause__
    _LOG.info("traceback:", exc_info=cause if type(exc) is _Failure and cause else exc)


def _fail(message: str, code: int) -> int:
    print(f"{_PROG}: error: {' '.join(message.split())}", file=sys.stderr)
    return code


def _cli_terms(args: argparse.Namespace | None, message: str) -> str:
    """An engine message with its Python calls spelled as options and commands.

    A store is named as ``--store`` gave it (a password as ``***``), not by
    the Python object's repr.
    """
    driving = args is not None and args.command in ("run", "resume")
    opened = getattr(args, "opened", None)  # the store the command opened (see _opening)
    if args is not None and opened is not None:
        message = message.replace(repr(opened), repr(_shown_store(args)))
    return render.cli_terms(
        message,
        workflow=args.workflow if driving and args is not None else None,
        run_id=getattr(args, "run_id", None),
    )


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{_PROG}: {record.levelname.lower()}: {super().format(record)}"


def _log_to_stderr(args: argparse.Namespace) -> None:
    """Install the one stderr handler on the ``pausegraph`` logger, at the level asked.

    The library logs to ``logging.getLogger("pausegraph")`` and installs no
    handler; the command does: WARNING by default, ``-v`` INFO (with the
    traceback of an error), ``-vv`` DEBUG, ``-q`` ERROR. Called again (``main``
    run twice in one process), it replaces its handler rather than adding one.
    """
    loudness = (
        args.verbose
        + getattr(args, "more_verbose", 0)
        - args.quiet
        - getattr(args, "more_quiet", 0)
    )
    if loudness < 0:
        level = logging.ERROR
    elif loudness == 0:
        level = logging.WARNING
    elif loudness == 1:
        level = logging.INFO
    else:
        level = logging.DEBUG
    logger = logging.getLogger(_PROG)
    for old in [h for h in logger.handlers if h.get_name() == _HANDLER_NAME]:
        logger.removeHandler(old)
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(_Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)


# --- loading workflows and stores ------------------------------------------------


def load_graph(spec: str) -> Graph:
    """Import the ``Graph`` named by ``module:attribute`` or ``file.py:attribute``.

    A file is imported as a module named after its stem, with its directory
    first on ``sys.path`` (as ``python file.py`` would have it); a module
    name is looked up from the current directory too. Use one spelling per
    workflow: an ``Effect``'s function is recorded by its module's name.
    """
    where, sep, attribute = spec.rpartition(":")
    if not sep or not where or not attribute:
        raise _usage(f"workflow {spec!r} must be 'module:attribute' or 'path/to/file.py:attribute'")
    if where.endswith(".py") or "/" in where or os.sep in where:
        module = _import_file(Path(where))
    else:
        sys.path.insert(0, os.getcwd())
        try:
            module = importlib.import_module(where)
        except (Exception, SystemExit) as exc:
            raise _Failure(f"cannot import workflow module {where!r}: {_why(exc)}") from None
    try:
        graph = getattr(module, attribute)
    except AttributeError:
        raise _Failure(f"workflow {where!r} has no attribute {attribute!r}") from None
    if not isinstance(graph, Graph):
        raise _Failure(
            f"{spec!r} is {type(graph).__name__} {graph!r}, not a pausegraph Graph: "
            "name the module attribute that holds the Graph"
        )
    return graph


def _import_file(path: Path) -> Any:
    if not path.is_file():
        raise _Failure(f"workflow file {str(path)!r} does not exist")
    name = path.stem
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise _Failure(f"workflow file {str(path)!r} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.resolve().parent))
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        del sys.modules[name]
        raise _Failure(f"cannot import workflow file {str(path)!r}: {_why(exc)}") from None
    return module


def _why(exc: BaseException) -> str:
    """Why importing a workflow failed, in words: its error, or the exit it asked for."""
    if isinstance(exc, SystemExit):  # a module that ends the process as it is imported
        return f"it called sys.exit({exc.code!r}) while being imported"
    return f"{type(exc).__name__}: {exc}"


def _store(args: argparse.Namespace) -> Checkpointer:
    """Open (creating if need be) the store: for commands that may start a run."""
    _check_not_a_file(args)
    return _opening(args)


def _opening(args: argparse.Namespace) -> Checkpointer:
    """Open ``--store``, kept as ``args.opened``: messages naming it get its ``--store`` form."""
    opened = args.opened = open_checkpointer(args.store)
    return opened


def _check_not_a_file(args: argparse.Namespace) -> None:
    """Refuse ``--store FILE`` (a store directory's path naming a regular file).

    A SQLite database there most likely lost its ``sqlite:``: say so.
    """
    parsed = parse_store_url(args.store)
    if parsed.kind != "file" or not os.path.isfile(parsed.target):
        return
    if is_sqlite_file(parsed.target):
        raise _Failure(
            f"--store {args.store!r} is a SQLite database, not a store directory: "
            f"write --store {render.shell_join(['sqlite:' + parsed.target])}"
        )
    raise _Failure(
        f"--store {args.store!r} is a file, not a store directory: give a directory "
        "(it is created if need be), or sqlite:PATH for a SQLite database"
    )


def _existing_store(args: argparse.Namespace) -> Checkpointer | None:
    """Open the store for reading; ``None`` if there is none yet (nothing is created)."""
    _check_not_a_file(args)
    parsed = parse_store_url(args.store)
    if parsed.kind in ("file", "sqlite"):
        where = Path(parsed.target)
        if not where.exists() or (where.is_dir() and not any(where.iterdir())):
            return None
    return _opening(args)


def _parse_json(text: str, what: str) -> Any:
    try:
        return render.loads(text)
    except ValueError as exc:
        why = str(exc)
        if "int_max_str_digits" in why:  # Python's own limit on reading long integers
            limit = sys.get_int_max_str_digits()
            why = f"it holds an integer of more than {limit:,} digits, which Python will not read"
        raise _usage(f"{what} is not valid JSON ({why}): {_shown(text)}") from None


def _shown(text: str, limit: int = 200) -> str:
    """``text`` as a Python literal for a message, cut to ``limit`` characters."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


def _parse_object(text: str, what: str) -> dict[str, Any]:
    value = _parse_json(text, what)
    if not isinstance(value, dict):
        raise _usage(f"{what} must be a JSON object of channel values, got {_shown(text)}")
    return value


def _parse_answer(text: str) -> tuple[str, Any]:
    interrupt_id, sep, value = text.partition("=")
    if not sep or not interrupt_id:
        raise _usage(f"--answer takes ID=JSON, got {text!r}")
    return interrupt_id, _parse_json(value, f"the answer to {interrupt_id!r}")


# --- run and resume -----------------------------------------------------------


def _check_breakpoints(args: argparse.Namespace, graph: Graph) -> None:
    """Refuse unknown breakpoint steps before the store is opened (and maybe created)."""
    for flag, steps in (
        ("--interrupt-before", args.interrupt_before),
        ("--interrupt-after", args.interrupt_after),
    ):
        for step in steps:
            if step not in graph.steps:
                known = ", ".join(map(repr, graph.steps))
                raise _Failure(
                    f"{flag} {step!r}: graph {graph.name!r} has no such step; its steps are {known}"
                )


def _runner(args: argparse.Namespace, graph: Graph, store: Checkpointer) -> Runner:
    return Runner(
        graph,
        store,
        interrupt_before=args.interrupt_before,
        interrupt_after=args.interrupt_after,
    )


@contextlib.contextmanager
def _naming_the_run(args: argparse.Namespace, runner: Runner, run_id: str) -> Iterator[None]:
    """Turn a step's failure into one line naming the run, the step and the error.

    The engine's message names the step; this adds the run and the command
    that retries it. ``-v`` logs the traceback first.
    """
    try:
        yield
    except (StepError, NondeterminismError, SerializationError) as exc:
        info = None
        with contextlib.suppress(PausegraphError):  # the step's error is the one to report
            info = runner.state(run_id)
        if info is not None and info.status is not Status.FAILED:
            # refused before anything was saved (an answer or an edit no store can keep)
            said = _cli_terms(args, str(exc)).rstrip(".")
            raise _Failure(
                f"{type(exc).__name__}: {said}; nothing was saved (run {run_id!r} is {info.status})"
            ) from exc
        if args.json and info is not None:  # what the run is now, as `show --json` prints it
            _print_json(render.run_object(runner.graph.name, run_id, info))
        retry = render.with_positionals(
            [*_prefix(args, note=False), "run"],
            [*render.option("--run-id", run_id), *_breakpoint_options(args)],
            [args.workflow],
        )
        raise _Failure(
            f"run {run_id!r} of workflow {runner.graph.name!r} failed: "
            f"{type(exc).__name__}: {_cli_terms(args, str(exc))} "
            f"(`{render.shell_join(retry)}` retries it{_password_left_out(args)})"
        ) from exc


def _cmd_run(args: argparse.Namespace) -> int:
    given = None if args.input is None else _parse_object(args.input, "--input")
    if args.run_id is None:
        args.run_id = uuid.uuid4().hex[:12]
    run_id: str = args.run_id
    graph = load_graph(args.workflow)
    _check_breakpoints(args, graph)
    # what the engine would refuse, refused before the store is opened (and so made)
    check_run_id(run_id)
    if given is not None:
        accepted = accept_writes(graph.channels, given, "the input", GraphError, verb="names")
        Channels.fresh(graph.channels).apply([accepted])  # a reducer that refuses it
    runner = _runner(args, graph, _store(args))
    with _naming_the_run(args, runner, run_id):
        try:
            outcome = runner.run(run_id, given)
        except ResumeError as exc:
            paused = _paused_already(args, runner, run_id)
            if paused is None:
                raise
            raise paused from exc
    if args.interactive:
        outcome, shown = _interact(args, runner, run_id, outcome)
        _report(args, runner, run_id, outcome, shown=shown)
    else:
        _report(args, runner, run_id, outcome)
    return 0


def _paused_already(args: argparse.Namespace, runner: Runner, run_id: str) -> _Failure | None:
    """For ``run`` of a paused run: the error giving the ``resume`` command that goes on.

    ``None`` when the run is not paused (the engine's own message stands).
    """
    latest = runner.checkpointer.latest(runner.graph.name, run_id)
    if latest is None or render.status_of(latest) is not Status.PAUSED:
        return None
    pending = render.pending_of(latest)
    how = [a for i in pending for a in ("--answer", f"{i.id}=JSON")] or ["--continue"]
    words = render.with_positionals(
        [*_prefix(args, note=False), "resume"],
        [*_breakpoint_options(args), *how],
        [args.workflow, run_id],
    )
    waits = (
        f"interrupts pending: {', '.join(i.id for i in pending)}" if pending else "at a breakpoint"
    )
    return _Failure(
        f"run {run_id!r} of workflow {runner.graph.name!r} is paused ({waits}): "
        f"go on with `{render.shell_join(words)}`{_password_left_out(args)}"
    )


def _cmd_resume(args: argparse.Namespace) -> int:
    command = _command(args)
    graph = load_graph(args.workflow)
    _check_breakpoints(args, graph)
    store = _existing_store(args)
    if store is None:
        raise _Failure(f"no run {args.run_id!r}: the store {_shown_store(args)!r} has no runs yet")
    runner = _runner(args, graph, store)
    with _naming_the_run(args, runner, args.run_id):
        outcome = runner.resume(args.run_id, command)
    _report(args, runner, args.run_id, outcome)
    return 0


def _command(args: argparse.Namespace) -> Command:
    """The command the options ask for; ``--update`` rides along with the others."""
    update = None if args.update is None else _parse_object(args.update, "--update")
    if args.value is not None:
        return Resume(_parse_json(args.value, "--value"), update=update)
    if args.answer is not None:
        answers: dict[str, Any] = {}
        for text in args.answer:
            interrupt_id, value = _parse_answer(text)
            if interrupt_id in answers:
                raise _usage(f"--answer gives interrupt {interrupt_id!r} twice")
            answers[interrupt_id] = value
        return Resume(answers=answers, update=update)
    if args.goto is not None:
        return Goto(args.goto, update=update)
    if args.go_on:
        if update is not None:
            raise _usage(
                "--continue takes no --update: --update JSON alone writes the edits "
                "and goes on past a breakpoint"
            )
        return Continue()
    if update is not None:
        return Update(update)
    raise _usage(
        "resume needs one of --value JSON, --answer ID=JSON, --continue, --update JSON "
        "or --goto STEP"
    )


def _interact(
    args: argparse.Namespace, runner: Runner, run_id: str, outcome: Outcome
) -> tuple[Outcome, bool]:
    """Answer pauses from stdin, one JSON line per pending interrupt, until done or EOF.

    At a breakpoint an empty line continues and a JSON object is written as
    ``Update`` edits. At the end of input the run stays paused; answers read
    before it are sent, so nothing typed is lost. Also says whether the
    pause it returns was printed already.

    At a terminal a line that is not JSON (or not an object, for edits) is
    reported and asked for again; from a pipe or a file it ends the command
    with that one line, and with the run as the last sent command left it.
    """
    prompt = sys.stdin.isatty()
    while isinstance(outcome, Paused):
        if not args.json:
            _print_paused(args, runner, run_id, outcome, sys.stdout, hint=False)
        if isinstance(outcome.reason, DynamicInterrupt):
            answers: dict[str, Any] = {}
            for pending in outcome.interrupts:
                what = f"the answer to {pending.id!r}"
                got = _ask(
                    prompt,
                    f"answer {pending.id} (step {pending.step_id!r}) as JSON: ",
                    lambda line, what=what: _parse_json(line, what),  # type: ignore[misc]
                )
                if got is None:
                    break
                answers[pending.id] = got[0]
            if not answers:
                return outcome, True
            command: Command = Resume(answers=answers)
            if len(answers) < len(outcome.interrupts):  # input ended: send what was read
                with _naming_the_run(args, runner, run_id):
                    return runner.resume(run_id, command), False
        else:
            got = _ask(
                prompt,
                "empty line to continue, or a JSON object of edits: ",
                lambda line: _parse_object(line, "the edits") if line.strip() else None,
            )
            if got is None:
                return outcome, True
            command = Continue() if got[0] is None else Update(got[0])
        with _naming_the_run(args, runner, run_id):
            outcome = runner.resume(run_id, command)
    return outcome, False


def _ask(prompt: bool, text: str, parse: Callable[[str], Any]) -> tuple[Any] | None:
    """The next line of stdin parsed, in a 1-tuple (JSON ``null`` is an answer); ``None`` at EOF.

    At a terminal (``prompt``) a line ``parse`` refuses is reported on stderr
    and asked for again, so one typo does not end the session.
    """
    while True:
        if prompt:
            print(text, end="", file=sys.stderr, flush=True)
        line = sys.stdin.readline()
        if not line:
            return None
        try:
            return (parse(line.rstrip("\n")),)
        except _Failure as exc:
            if not prompt:
                raise
            print(f"{_PROG}: error: {exc}; try again", file=sys.stderr)


def _report(
    args: argparse.Namespace, runner: Runner, run_id: str, outcome: Outcome, *, shown: bool = False
) -> None:
    """Print the outcome; ``shown``: the pause was printed already, add the hint only."""
    if args.json:
        obj = render.run_object(runner.graph.name, run_id, runner.state(run_id))
        obj["reason"] = render.reason_of(outcome) if isinstance(outcome, Paused) else None
        _print_json(obj)
    elif isinstance(outcome, Done):
        print(
            f"run {render.shown(run_id)} of workflow {runner.graph.name!r} is done "
            f"(super-step {outcome.super_step})"
        )
        _emit(render.dumps(outcome.state, indent=2) + "\n")
    elif shown:
        print(f"end of input: the run stays paused; {_hint_line(args, run_id, outcome)}")
    else:
        _print_paused(args, runner, run_id, outcome, sys.stdout, hint=True)


def _print_paused(
    args: argparse.Namespace,
    runner: Runner,
    run_id: str,
    outcome: Paused,
    out: TextIO,
    *,
    hint: bool,
) -> None:
    reason = outcome.reason
    where = (
        f"run {render.shown(run_id)} of workflow {runner.graph.name!r} "
        f"paused at super-step {outcome.super_step}"
    )
    if isinstance(reason, DynamicInterrupt):
        print(f"{where}: {len(outcome.interrupts)} interrupt(s) wait for an answer", file=out)
        _emit(_indent(_interrupt_table(outcome.interrupts)), out)
        _print_edits(runner.state(run_id).edits, out)
    else:
        side = "before" if isinstance(reason, Before) else "after"
        print(f"{where}: breakpoint {side} step {reason.step_id!r}", file=out)
    if hint:
        print(_hint_line(args, run_id, outcome), file=out)


def _interrupt_table(interrupts: Sequence[PendingInterrupt]) -> str:
    """The pending interrupts, with a DEADLINE column when one of them has a deadline."""
    if all(i.deadline_ms is None for i in interrupts):
        rows = [(i.id, i.step_id, render.dumps(i.payload)) for i in interrupts]
        return render.table(("INTERRUPT", "STEP", "PAYLOAD"), rows)
    now = system_clock()
    timed = [
        (i.id, i.step_id, render.deadline_text(i.deadline_ms, now), render.dumps(i.payload))
        for i in interrupts
    ]
    return render.table(("INTERRUPT", "STEP", "DEADLINE (UTC)", "PAYLOAD"), timed)


def _print_edits(edits: Sequence[dict[str, Any]], out: TextIO) -> None:
    """The ``Update`` edits kept at this pause, applied when the interrupted layer ends."""
    if edits:
        print("edits kept for the end of the layer:", file=out)
        _emit(_indent("".join(render.dumps(e) + "\n" for e in edits)), out)


def _how(outcome: Paused) -> list[str]:
    """The ``resume`` options that answer this pause, with ``JSON`` for the values."""
    if not isinstance(outcome.reason, DynamicInterrupt):
        return ["--continue"]
    return _answer_options(outcome.interrupts)


def _answer_options(interrupts: Sequence[PendingInterrupt]) -> list[str]:
    """``--value JSON`` for the only pending interrupt, else ``--answer ID=JSON`` for each."""
    if len(interrupts) == 1:
        return ["--value", "JSON"]
    return [a for i in interrupts for a in ("--answer", f"{i.id}=JSON")]


def _hint_line(args: argparse.Namespace, run_id: str, outcome: Paused) -> str:
    """``go on with: pausegraph resume ...``, the exact command that goes on.

    It is a working shell command whatever the run id: one starting with
    ``-`` comes after ``--``, one with a control character is ANSI-C quoted.
    """
    words = render.with_positionals(
        [*_prefix(args), "resume"],
        [*_breakpoint_options(args), *_how(outcome)],
        [args.workflow, run_id],
    )
    return f"go on with: {render.shell_join(words)}"


def _prefix(args: argparse.Namespace, *, note: bool = True) -> list[str]:
    """``pausegraph`` and the ``--store`` this command was given, if not the default.

    A password in the URL is left out, and said once on stderr, unless
    ``note`` is false: an error's one line says it itself (``_password_left_out``).
    """
    store: str = args.store
    if store == DEFAULT_STORE:
        return [_PROG]
    if note and has_password(store) and not getattr(args, "password_noted", False):
        args.password_noted = True
        print(
            f"{_PROG}: note: the commands shown leave the store's password out: "
            "set PGPASSWORD or put it in ~/.pgpass (libpq reads both) before running them",
            file=sys.stderr,
        )
    return [_PROG, *render.option("--store", describe_url(store))]


def _password_left_out(args: argparse.Namespace) -> str:
    """What an error line adds after a command it shows, if the store's password was left out."""
    if args.store == DEFAULT_STORE or not has_password(args.store):
        return ""
    return "; it leaves the store's password out: set PGPASSWORD or put it in ~/.pgpass"


def _shown_store(args: argparse.Namespace) -> str:
    """The ``--store`` URL to print: a PostgreSQL password as ``***``."""
    return redact_url(args.store)


def _breakpoint_options(args: argparse.Namespace) -> list[str]:
    words: list[str] = []
    for step in args.interrupt_before:
        words += render.option("--interrupt-before", step)
    for step in args.interrupt_after:
        words += render.option("--interrupt-after", step)
    return words


def _print_json(value: Any) -> None:
    """Print ``value`` as JSON, readable where stdout can encode it, else all ``\\u`` escapes.

    A lone surrogate (a run id from an undecodable command line) or a
    character the stream's encoding lacks would otherwise come out as a
    backslash escape that is not valid JSON.
    """
    try:  # most values print as JSON as they are: no jsonable copy
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):  # bytes, a key JSON refuses, a NaN: shown as markers
        value = render.jsonable(value)
        text = json.dumps(value, ensure_ascii=False)
    try:
        text.encode(sys.stdout.encoding or "utf-8")
    except (UnicodeEncodeError, LookupError):
        text = json.dumps(value)
    _emit(text + "\n")


def _emit(text: str, out: TextIO | None = None) -> None:
    """Write ``text`` to ``out`` (stdout), all of it or a ``BrokenPipeError``.

    CPython's buffered stdout counts a large write to a pipe as done when the
    OS took only part of it and the reader then went away: the rest is
    dropped with no error, and ``pausegraph runs | head -1`` on a big store
    would exit 0. On a real file descriptor the bytes go out with
    ``os.write`` until all are taken, so the write after a closed pipe
    fails with ``EPIPE`` like any other.
    """
    out = sys.stdout if out is None else out
    try:
        fd = out.fileno()
    except (OSError, ValueError, AttributeError):  # a StringIO, pytest's capture
        out.write(text)
        return
    out.flush()
    data = memoryview(text.encode(out.encoding or "utf-8", out.errors or "strict"))
    while data:
        data = data[os.write(fd, data) :]


def _indent(text: str) -> str:
    return "".join(f"  {line}\n" for line in text.splitlines())


# --- inspection -----------------------------------------------------------------


def _unreadable(counter: list[int]) -> Callable[[str, str, PausegraphError], None]:
    """Log a run that cannot be read (one damaged run does not hide the others)."""

    def log(workflow: str, run_id: str, exc: PausegraphError) -> None:
        counter.append(1)
        _LOG.error(
            "run %r of workflow %r cannot be read: %s: %s",
            run_id,
            workflow,
            type(exc).__name__,
            exc,
        )

    return log


_BY_RUN = operator.attrgetter("workflow_id", "run_id")


def _summaries(
    args: argparse.Namespace, store: Checkpointer, *, status: str | None = None
) -> tuple[list[RunSummary], int]:
    """The run summaries the command lists (sorted), and how many runs could not be read."""
    bad: list[int] = []
    found = run_summaries(
        store, workflow_id=args.workflow, status=status, on_error=_unreadable(bad)
    )
    found.sort(key=_BY_RUN)
    damaged = getattr(store, "damaged", None)  # the file store lists what it skipped
    for name, why in damaged() if damaged is not None else ():
        print(f"{_PROG}: error: the log {name} cannot be read: {why}", file=sys.stderr)
        bad.append(1)
    return found, len(bad)


@contextlib.contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """Turn the cyclic garbage collector off for a listing, back on after.

    A listing of 10,000 runs builds tens of thousands of tuples and strings,
    none in a cycle (reference counts free them); each batch of allocations
    would start a collection that walks every object still alive, about a
    third of the listing's time. Cycles made meanwhile are collected later.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _which_runs(args: argparse.Namespace) -> str:
    """``runs``, ``queued runs``, ``paused runs of workflow 'W'``: what the listing looked for."""
    status: str | None = args.status
    which = "runs" if status is None else f"{status} runs"
    return which if args.workflow is None else f"{which} of workflow {args.workflow!r}"


#: each status's text, read once per row of a listing (``Status.value`` is a property call)
_STATUS_TEXT = {status: status.value for status in Status}


@_no_cycle_collection()
def _cmd_runs(args: argparse.Namespace) -> int:
    store = _existing_store(args)
    wanted: str | None = args.status
    stored = Status.QUEUED.value if wanted == Status.RUNNING.value else wanted
    found, unreadable = ([], 0) if store is None else _summaries(args, store, status=stored)
    # (workflow, run id, status, (super_step, label, interrupts)): plain tuples, one per run
    rows = []
    running = set() if store is None else running_among(store, found)
    for summary in found:
        assert store is not None
        status = listed_status(summary, store, running)
        if wanted is not None and _STATUS_TEXT[status] != wanted:
            continue
        rows.append((summary.workflow_id, summary.run_id, status, summary_fields(summary)))
    if args.json:
        objs = [
            {
                "workflow": workflow,
                "run_id": run_id,
                "status": _STATUS_TEXT[status],
                "super_step": super_step,
                "label": label,
                "interrupts": len(interrupts),
            }
            for workflow, run_id, status, (super_step, label, interrupts) in rows
        ]
        _print_json(objs)
    elif not rows:
        print(f"no {_which_runs(args)} in {_shown_store(args)}", file=sys.stderr)
    else:
        table = [
            (
                workflow,
                run_id,
                _STATUS_TEXT[status],
                str(super_step),
                label,
                _waits_for(status, label, interrupts),
            )
            for workflow, run_id, status, (super_step, label, interrupts) in rows
        ]
        header = ("WORKFLOW", "RUN", "STATUS", "SUPER-STEP", "LAST CHECKPOINT", "WAITS FOR")
        _emit(render.table(header, table))
    return 1 if unreadable else 0


def _waits_for(status: Status, label: str, interrupts: Sequence[tuple[Any, ...]]) -> str:
    """What a listed run waits for: interrupt ids, ``--continue``, a retry or a driver."""
    if status is Status.PAUSED:
        return ", ".join(i[0] for i in interrupts) or "--continue"
    if status is Status.FAILED:
        step = label.removeprefix("failed:")
        return f"retry (step {step!r} failed)" if step != label else "retry"
    if status is Status.QUEUED:
        return "a driver"
    return ""


@_no_cycle_collection()
def _cmd_inbox(args: argparse.Namespace) -> int:
    store = _existing_store(args)
    found = [] if store is None else waiting(store, workflow=args.workflow)
    if args.json:
        objs = [
            {
                "workflow": workflow_id,
                "run_id": run_id,
                "id": interrupt_id,
                "step_id": step_id,
                "payload": payload,
                "since_ms": since,
                "deadline_ms": deadline,
            }
            for since, run_id, workflow_id, _, interrupt in found
            for interrupt_id, step_id, payload, deadline, _ in (interrupt,)
        ]
        _print_json(objs)
    elif not found:
        print(f"nothing waits for an answer in {_shown_store(args)}", file=sys.stderr)
    else:
        now = system_clock()
        time_of = _Times()
        dumps = render.dumps
        rows = [
            (
                time_of(since),
                workflow_id,
                run_id,
                interrupt_id,
                step_id,
                "-" if deadline is None else render.deadline_text(deadline, now) or "-",
                dumps(payload),
            )
            for since, run_id, workflow_id, _, (
                interrupt_id,
                step_id,
                payload,
                deadline,
                _,
            ) in found
        ]
        header = (
            "SINCE (UTC)",
            "WORKFLOW",
            "RUN",
            "INTERRUPT",
            "STEP",
            "DEADLINE (UTC)",
            "PAYLOAD",
        )
        _emit(render.table(header, rows))
    return 0


def _find(args: argparse.Namespace, *, damaged_ok: bool = False) -> tuple[Checkpointer, str]:
    """The store and workflow holding ``args.run_id``, or a one-line error.

    One listing of the store's runs (their summaries), not a read of each;
    none at all when ``--workflow`` names the run's workflow. A run whose
    checkpoints cannot be read is its ``CorruptCheckpointError``, unless
    ``damaged_ok`` (``delete``: removing it is the way out).
    """
    run_id: str = args.run_id
    store = _existing_store(args)
    if store is not None and args.workflow is not None:
        try:
            if store.list(args.workflow, run_id):
                return store, args.workflow  # named exactly: no listing needed
        except CorruptCheckpointError:
            if not damaged_ok:
                raise
            return store, args.workflow
    workflows = [] if store is None else sorted(w for w, r in store.runs() if r == run_id)
    if args.workflow is not None:
        if args.workflow not in workflows:
            raise _Failure(
                f"no run {run_id!r} of workflow {args.workflow!r} in {_shown_store(args)!r}"
                + (f"; it exists in {', '.join(map(repr, workflows))}" if workflows else "")
            )
        workflows = [args.workflow]
    damaged = 0
    if not workflows and store is not None:
        damaged, workflow = _if_damaged(store, run_id, damaged_ok)
        if workflow is not None:
            return store, workflow
    if not workflows or store is None:
        raise _Failure(
            f"no run {run_id!r} in {_shown_store(args)!r}: 'pausegraph runs' lists the runs"
            + (
                f"; {damaged} damaged log(s) it cannot read are left out (it names them): "
                "if the run is in one, --workflow NAME says what is wrong with it"
                if damaged
                else ""
            )
        )
    if len(workflows) > 1:
        raise _Failure(
            f"run {run_id!r} exists in workflows {', '.join(map(repr, workflows))}: "
            "choose one with --workflow NAME"
        )
    return store, workflows[0]


def _if_damaged(store: Checkpointer, run_id: str, damaged_ok: bool) -> tuple[int, str | None]:
    """Raise the store's error if ``run_id`` is a run of a known workflow it cannot read.

    A store that lists damaged runs apart (the file store's ``damaged()``)
    leaves them out of ``runs()``, so a run found nowhere may be one of
    them: each workflow the store holds is asked for it, and the first that
    has it raises its ``CorruptCheckpointError`` naming the file (with
    ``damaged_ok``, that workflow is returned instead). Returns how many
    damaged runs there are (the run may be one of another workflow).
    """
    damaged = getattr(store, "damaged", None)
    count = len(damaged()) if damaged is not None else 0
    if count:
        for workflow in sorted({w for w, _ in store.runs()}):
            try:
                store.list(workflow, run_id)
            except CorruptCheckpointError:
                if not damaged_ok:
                    raise
                return count, workflow
    return count, None


def _journal_rows(checkpoint: Checkpoint) -> list[tuple[str, str, str, str]]:
    """``(step, kind, what, result)`` of the journal of the layer under way, in order.

    ``kind`` is ``interrupt`` (what: its id and payload; result: the answer,
    ``(timed out)`` or ``(pending)``), ``effect`` (what: the effect; result:
    what it returned) or ``effect error`` (result: the message).
    """
    progress = progress_of(checkpoint.stage)
    if progress is None:
        return []
    rows = []
    timeouts = set(progress.timeouts)
    for step_id, journal in progress.journals.items():
        for entry in journal:
            if type(entry) is Asked:
                if entry.id in progress.answers:
                    answer = render.dumps(progress.answers[entry.id])
                else:
                    answer = "(timed out)" if entry.id in timeouts else "(pending)"
                rows.append(
                    (step_id, "interrupt", f"{entry.id} {render.dumps(entry.payload)}", answer)
                )
            elif type(entry) is Returned:
                rows.append((step_id, "effect", entry.effect, render.dumps(entry.value)))
            elif type(entry) is Raised:
                rows.append((step_id, "effect error", entry.effect, entry.error))
    return rows


@_no_cycle_collection()
def _cmd_show(args: argparse.Namespace) -> int:
    store, workflow = _find(args)
    latest = store.latest(workflow, args.run_id)
    if latest is None:
        raise _Failure(f"run {args.run_id!r} has no checkpoint yet")
    info = render.info_of(latest, store)
    cancelled = render.cancel_reason_of(latest)
    if args.json:
        _print_json(render.run_object(workflow, args.run_id, info, cancelled=cancelled))
        return 0
    rows = [
        ("workflow", render.shown(workflow)),
        ("run", render.shown(args.run_id)),
        ("status", str(info.status)),
        ("super-step", info.super_step),
        ("checkpoint", f"{latest.seq} ({latest.label})"),
    ]
    if info.failure is not None:
        failure = info.failure
        rows.append(
            ("failure", f"step {failure.step_id!r} failed: {failure.error_type}: {failure.message}")
        )
    if cancelled is not None:
        rows.append(("reason", cancelled or "(none given)"))
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        print(f"{key.ljust(width)}  {value}")
    print("values:")
    values = [(name, render.dumps(value)) for name, value in info.values.items()]
    _emit(_indent(render.table(("CHANNEL", "VALUE"), values)))
    journal = _journal_rows(latest)
    if journal:
        print("journal of the layer under way (who answered what, what effects returned):")
        _emit(_indent(render.table(("STEP", "KIND", "WHAT", "RESULT"), journal)))
    if info.interrupts:
        print("interrupts:")
        _emit(_indent(_interrupt_table(info.interrupts)))
    _print_edits(info.edits, sys.stdout)
    point = render.breakpoint_of(latest)
    if point is not None:
        print(f"paused at a breakpoint {point[0]} step {point[1]!r}")
    for n, (words, what) in enumerate(_show_hints(args, latest, info)):
        lead = "go on with:" if n == 0 else "        or:"
        print(f"{lead} {render.shell_join(words)}" + (f"  ({what})" if what else ""))
    return 0


def _show_hints(
    args: argparse.Namespace, latest: Checkpoint, info: RunInfo
) -> list[tuple[list[str], str]]:
    """The commands that go on with the run ``show`` printed, each with what it does.

    ``WORKFLOW`` stands for the spec, which the store does not know.
    """
    run_id: str = args.run_id
    resume = [*_prefix(args), "resume"]
    rerun = render.with_positionals(
        [*_prefix(args), "run"], render.option("--run-id", run_id), ["WORKFLOW"]
    )
    if info.status is Status.FAILED:
        hints = [
            (rerun, "retries it"),
            (render.with_positionals(resume, ["--update", "JSON"], ["WORKFLOW", run_id]),
             "edits the values, then retries"),
        ]  # fmt: skip
        ids = [i.id for i in info.interrupts]
        progress = progress_of(latest.stage)
        ids += [i for i in (progress.claimed if progress else ()) if i not in ids]
        if ids:
            how = [a for i in ids for a in ("--answer", f"{i}=JSON")]
            hints.append((render.with_positionals(resume, how, ["WORKFLOW", run_id]), "re-answers"))
        return hints
    if info.status is Status.QUEUED:
        return [(rerun, "drives it")]
    if info.status is not Status.PAUSED:
        return []
    if info.interrupts:
        how = _answer_options(info.interrupts)
    elif render.breakpoint_of(latest) is not None:
        how = ["--continue"]
    else:
        return []
    return [(render.with_positionals(resume, how, ["WORKFLOW", run_id]), "")]


@_no_cycle_collection()
def _cmd_history(args: argparse.Namespace) -> int:
    store, workflow = _find(args)
    history = render.history_of(store, workflow, args.run_id)
    metas = [m for m, _ in history]
    recorded = [r for _, r in history]
    if args.json:
        objs = [
            {
                "seq": m.seq,
                "super_step": m.super_step,
                "label": m.label,
                "timestamp_ms": m.timestamp_ms,
                "recorded": r,
            }
            for m, r in zip(metas, recorded, strict=True)
        ]
        _print_json(objs)
        return 0
    time_of = _Times()
    rows = [
        (m.seq, m.super_step, m.label, time_of(m.timestamp_ms), render.recorded_text(r))
        for m, r in zip(metas, recorded, strict=True)
    ]
    _emit(render.table(("SEQ", "SUPER-STEP", "LABEL", "TIME (UTC)", "RECORDED"), rows))
    return 0


def _cmd_cancel(args: argparse.Namespace) -> int:
    store, workflow = _find(args)
    cancel_run(store, workflow, args.run_id, args.reason, clock=system_clock)
    print(f"run {render.shown(args.run_id)} of workflow {workflow!r} is cancelled")
    return 0


def _cmd_delete(args: argparse.Namespace) -> int:
    store, workflow = _find(args, damaged_ok=True)
    delete_run(store, workflow, args.run_id)
    print(f"run {render.shown(args.run_id)} of workflow {workflow!r} is deleted")
    return 0


_MAX_PRUNE_DAYS = 36_525


def _cmd_prune(args: argparse.Namespace) -> int:
    days: float = args.finished_before
    if not 0 <= days <= _MAX_PRUNE_DAYS:  # NaN too; a cutoff before year 1 has no date
        raise _usage(
            f"--finished-before takes a number of days from 0 to {_MAX_PRUNE_DAYS} "
            f"(100 years), got {days!r}"
        )
    store = _existing_store(args)
    before_ms = system_clock() - int(days * 86_400_000)
    deleted = [] if store is None else prune(store, before_ms=before_ms, workflow_id=args.workflow)
    print(f"deleted {len(deleted)} run(s) finished before {_time(before_ms)} UTC")
    return 0


def _time(timestamp_ms: int) -> str:
    moment = datetime.datetime.fromtimestamp(timestamp_ms / 1000, tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


_EXACT_S = 2**32  # seconds: below, a float holds ms / 1000 to well within half a microsecond


class _Times:
    """``_time`` for many timestamps: each distinct second is formatted once."""

    def __init__(self) -> None:
        self._seconds: dict[int, str] = {}

    def __call__(self, timestamp_ms: int) -> str:
        second, ms = divmod(timestamp_ms, 1000)
        if not -_EXACT_S < second < _EXACT_S:  # ms / 1000 may be off by a microsecond there
            return _time(timestamp_ms)
        text = self._seconds.get(second)
        if text is None:
            text = self._seconds[second] = _time(second * 1000)[:-3]  # "...:SS."
        return f"{text}{ms:03d}"


def _cmd_tick(args: argparse.Namespace) -> int:
    """``Runner(graph, store).tick()`` for each WORKFLOW; one line (or object) per moved run.

    A run whose step fails is left ``failed`` and said in one error line on
    stderr, naming the run, the step and the error (with ``--json``, its
    object says ``"failed"`` and its ``failure``); the others go on, and the
    command then exits 1.
    """
    graphs = [(spec, load_graph(spec)) for spec in args.workflows]  # all import, or none runs
    store = _existing_store(args)
    moved: list[tuple[str, Runner, str, Outcome]] = []
    failed: list[tuple[Runner, str, PausegraphError]] = []
    for spec, graph in graphs if store is not None else ():
        assert store is not None
        runner = Runner(graph, store)
        errors: dict[str, PausegraphError] = {}
        moved += [(spec, runner, r, o) for r, o in sorted(runner._tick(errors).items())]
        failed += [(runner, r, e) for r, e in sorted(errors.items())]
    if args.json:
        objs = []
        listed = [
            *((r, i, o) for _, r, i, o in moved),
            # a run whose checkpoints cannot be read has no object: its error line says why
            *((r, i, None) for r, i, e in failed if not isinstance(e, CheckpointError)),
        ]
        for runner, run_id, outcome in listed:
            obj = render.run_object(runner.graph.name, run_id, runner.state(run_id))
            obj["reason"] = render.reason_of(outcome) if isinstance(outcome, Paused) else None
            objs.append(obj)
        _print_json(objs)
    elif not moved and not failed:
        print(f"no run's deadline has passed in {_shown_store(args)}", file=sys.stderr)
    for spec, runner, run_id, outcome in moved if not args.json else ():
        print(_tick_line(args, spec, runner.graph, run_id, outcome))
    for runner, run_id, error in failed:
        how = "was left as it was" if isinstance(error, CheckpointError) else "failed"
        head = f"run {run_id!r} of workflow {runner.graph.name!r} {how} after its deadline"
        _traceback(error)  # with -v, as for run and resume
        _fail(f"{head}: {type(error).__name__}: {_cli_terms(args, str(error))}", 1)
    return 1 if failed else 0


def _cmd_worker(args: argparse.Namespace) -> int:
    """``Worker(store, graphs).serve()`` until SIGINT or SIGTERM; the run in hand finishes.

    The first signal says on stderr which run it waits for and sets the
    stop; a second one exits at once with 128 + its number (130 for
    SIGINT, 143 for SIGTERM), leaving the run in hand queued: its live lock
    dies with the process.
    """
    graphs = _served_graphs(args)
    worker = Worker(_store(args), graphs)
    stop = threading.Event()
    signalled: list[int] = []
    forced: list[int] = []

    def stop_serving(signum: int, frame: object) -> None:
        if signalled:
            forced.append(signum)
            raise KeyboardInterrupt(f"a second {signal.Signals(signum).name}")
        signalled.append(signum)
        # set from another thread: this handler runs between two bytecodes of the main
        # thread, which may hold the event's own lock then (inside stop.wait), and
        # Event.set takes that lock: set here, it could wait for itself for ever
        threading.Thread(target=stop.set, name="pausegraph-stop", daemon=True).start()
        in_hand = worker._in_hand
        if in_hand is None:
            _say_in_handler("stopping: no run in hand")
            return
        _say_in_handler(
            f"stopping: finishing run {render.shown(in_hand[1])} of workflow {in_hand[0]!r} "
            f"first; {signal.Signals(signum).name} again exits at once, leaving it queued"
        )

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop_serving)
    names = ", ".join(repr(g.name) for g in graphs)
    print(f"serving {names} from {_shown_store(args)}; SIGINT or SIGTERM stops", file=sys.stderr)
    try:
        worker.serve(stop)
    except KeyboardInterrupt:
        if not forced:
            raise
        name = signal.Signals(forced[0]).name
        print(f"stopped at once by a second {name}: the run in hand stays queued", file=sys.stderr)
        return 128 + forced[0]
    return 128 + forced[0] if forced else 0  # a step that swallowed the KeyboardInterrupt


def _say_in_handler(line: str) -> None:
    """Print ``line`` on stderr from a signal handler, dropping it if stderr is busy or closed.

    The handler runs between two bytecodes of the main thread, which may be
    inside a write to stderr itself (a log line): writing again there raises.
    """
    with contextlib.suppress(RuntimeError, OSError, ValueError):
        print(line, file=sys.stderr, flush=True)


def _cmd_serve(args: argparse.Namespace) -> int:
    """Serve ``pausegraph.web.app`` with uvicorn on a socket bound here (so ``--port 0`` works).

    The first line on stdout is ``serving on http://HOST:PORT``, with the
    port the system gave.
    """
    token = getattr(args, "token", None) or os.environ.get("PAUSEGRAPH_TOKEN") or None
    if not args.wait >= 0:  # NaN too; inf waits with no limit
        raise _usage(f"--wait takes seconds >= 0, got {args.wait!r}")
    if getattr(args, "token", None) == "":
        raise _usage("--token is empty: give the token, or leave --token out")
    try:
        import uvicorn

        from .web import app
        from .web._guard import is_loopback
    except ImportError as exc:
        raise _Failure(
            f"pausegraph serve needs the web extra ({exc.name} is missing): "
            "pip install 'pausegraph[web]'"
        ) from None
    if token is None and not is_loopback(args.host):
        raise _usage(
            f"--host {args.host} is not a loopback address: without a token only this machine "
            "may connect; give --token TOKEN (or set PAUSEGRAPH_TOKEN) to serve others"
        )
    graphs = _served_graphs(args)
    asgi = app(graphs, _store(args), token=token, drive=args.drive, wait_s=args.wait)
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as exc:
        sock.close()
        raise _Failure(f"cannot bind {args.host}:{args.port}: {exc.strerror or exc}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    host, port = sock.getsockname()[:2]
    shown_host = f"[{host}]" if ":" in host else host
    print(f"serving on http://{shown_host}:{port}", flush=True)
    config = uvicorn.Config(asgi, log_level="warning", access_log=False, lifespan="on")
    uvicorn.Server(config).run(sockets=[sock])
    return 0


def _tick_line(
    args: argparse.Namespace, spec: str, graph: Graph, run_id: str, outcome: Outcome
) -> str:
    """``run ID of workflow NAME ...``: done, or where it paused and the command that goes on."""
    head = f"run {render.shown(run_id)} of workflow {graph.name!r}"
    if isinstance(outcome, Done):
        return f"{head} is done (super-step {outcome.super_step})"
    reason = outcome.reason
    if isinstance(reason, DynamicInterrupt):
        where = "interrupt(s) " + ", ".join(i.id for i in outcome.interrupts) + " wait"
    else:
        side = "before" if isinstance(reason, Before) else "after"
        where = f"breakpoint {side} step {reason.step_id!r}"
    words = render.with_positionals([*_prefix(args), "resume"], _how(outcome), [spec, run_id])
    return (
        f"{head} paused at super-step {outcome.super_step}: {where}; "
        f"go on with: {render.shell_join(words)}"
    )


def _cmd_graph(args: argparse.Namespace) -> int:
    graph = load_graph(args.workflow)
    graph.layers()  # a cycle or an empty graph is a GraphError, not a picture
    _emit(graph.to_mermaid())
    return 0


_COMMANDS = {
    "run": _cmd_run,
    "resume": _cmd_resume,
    "runs": _cmd_runs,
    "show": _cmd_show,
    "history": _cmd_history,
    "inbox": _cmd_inbox,
    "tick": _cmd_tick,
    "worker": _cmd_worker,
    "serve": _cmd_serve,
    "cancel": _cmd_cancel,
    "delete": _cmd_delete,
    "prune": _cmd_prune,
    "graph": _cmd_graph,
}


if __name__ == "__main__":  # python -m pausegraph.cli
    sys.exit(main())
