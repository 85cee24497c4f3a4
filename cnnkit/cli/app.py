"""The Typer app, the options every command shares, and the single error/signal/exit path.

Commands live in their own modules (``cnnkit.cli.convolve``, ...) and register
themselves on ``app`` when ``cnnkit.cli`` imports them; renderers live in
``cnnkit.cli.render``. Heavy imports (torch, lightning) happen inside command
bodies so that ``cnnkit --help`` and ``cnnkit convolve`` on images stay fast.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from cnnkit import __version__
from cnnkit.errors import CnnkitError

app = typer.Typer(
    name="cnnkit",
    help="Image and video classification with convolutional networks: "
    "convolve, train, eval, predict, inspect.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"cnnkit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Image and video classification with convolutional networks."""


QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or info on stderr.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]


def print_json(obj: Any) -> None:
    """Write one JSON document to stdout (non-finite numbers as null: see cnnkit.jsontext)."""
    from cnnkit.jsontext import dumps

    sys.stdout.write(dumps(obj, indent=2) + "\n")
    sys.stdout.flush()


CheckpointArg = Annotated[
    Path,
    typer.Argument(
        exists=True, dir_okay=False, readable=True, help="A .ckpt written by cnnkit train."
    ),
]
DeviceOpt = Annotated[
    str, typer.Option("--device", help="auto (CUDA, else MPS, else CPU), cpu, cuda, cuda:N, mps.")
]
TopKOpt = Annotated[int, typer.Option("--top-k", min=1, help="How many best classes to report.")]


# ---------------------------------------------------------------------------
# entry point: the single error path
# ---------------------------------------------------------------------------


class Terminated(KeyboardInterrupt):
    """Raised in the main thread on SIGTERM.

    A KeyboardInterrupt, so that everything that cleans up on Ctrl-C (atomic
    outputs remove their temporary file, Lightning shuts down, generators
    close) does the same on ``kill``; main() then exits 143 instead of 130.
    """


_received: dict[str, int | None] = {"signal": None}


def _on_sigterm(signum: int, frame: Any) -> None:
    _received["signal"] = signum
    raise Terminated


def _flush_stdout() -> None:
    """Push out what was already printed; a reader that went away is not an error here."""
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        pass  # closed pipe or closed stream: nothing left to deliver it to


class Stopped(SystemExit):
    """The exit of an interruption already reported on stderr (main() adds nothing)."""


def _stopped(code: int, note: str | None = None) -> None:
    """Report an interruption on stderr and exit 130 (SIGINT) or 143 (SIGTERM).

    ``note`` replaces the one word (train says where its checkpoint is).
    """
    _flush_stdout()
    if _received["signal"] == signal.SIGTERM:
        code = 128 + signal.SIGTERM
    word = "terminated" if code == 128 + signal.SIGTERM else "interrupted"
    try:
        sys.stderr.write(f"{note or word}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass  # stderr is gone too: the exit status still tells
    raise Stopped(code)


def main() -> None:
    """Console-script entry: run the app, turning CnnkitError into ``error:`` + exit 1.

    Ctrl-C exits 130 and SIGTERM 143 (128 + signal number, as shells report a
    killed job) with one word on stderr instead of a traceback.
    """
    try:
        _run_app()
    except Stopped as stop:
        # An interrupted predict can leave a daemon thread blocked reading
        # stdin; interpreter shutdown around such a thread has been seen to
        # abort ("terminate called without an active exception", status -6)
        # instead of exiting 130. Everything was flushed and reported, and
        # outputs were cleaned up while unwinding, so leave at once.
        if threading.active_count() > 1 and threading.current_thread() is threading.main_thread():
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except (OSError, ValueError):
                    pass  # the reader went away: the status still tells
            os._exit(int(stop.code))
        raise


def _run_app() -> None:
    _received["signal"] = None
    previous = signal.getsignal(signal.SIGTERM)
    handler_set = False
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)
        handler_set = True
    try:
        app(prog_name="cnnkit")  # not "python -m ...": usage lines name the command
    except CnnkitError as exc:
        if os.environ.get("CNNKIT_DEBUG"):
            raise
        _flush_stdout()
        line = f"error: {exc.message}"
        if exc.hint:
            line += f" (hint: {exc.hint})"
        sys.stderr.write(line + "\n")
        sys.exit(1)
    except KeyboardInterrupt:
        # Typer turns Ctrl-C inside a command into exit 130; this is Ctrl-C outside one.
        _stopped(130)
    except SystemExit as exc:
        if exc.code == 130 and not isinstance(exc, Stopped):
            _stopped(130)
        raise
    finally:
        if handler_set:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    main()
