"""The Typer app, the options every command shares, and the single error/signal/exit path.

Commands live in their own modules (``cnnkit.cli.convolve``, ...) and register
themselves on ``app`` when ``cnnkit.cli`` imports them; renderers live in
``cnnkit.cli.render``. Heavy imports (torch, lightning) happen inside command
bodies so that ``cnnkit --help`` and ``cnnkit convolve`` on images stay fast.
"""

from __future__ import annotations

import errno
import io
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from cnnkit import __version__
from cnnkit.cli import memory
from cnnkit.cli.signals import watch_signals
from cnnkit.errors import CnnkitError
from cnnkit.textout import ERRORS, shown
from cnnkit.training.options import MAX_TOP_K

# The "Commands" panel lists every registered command with what it does; the
# description does not repeat them, so there is no second list to fall behind.
app = typer.Typer(
    name="cnnkit",
    help="Image and video classification with convolutional networks. "
    "`cnnkit COMMAND --help` shows a command's options and examples; "
    "`cnnkit inspect` alone lists the models and datasets cnnkit knows by name.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Help texts are rich markup: a literal '[' is written '\\[' ('cnnkit\\[onnx]').
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
        help="A .ckpt written by cnnkit train, an .onnx written by cnnkit export (run with "
        "ONNX Runtime, without torch), or MODEL:DATA for a torchvision model with its "
        "pretrained weights, used as it is (resnet50:imagenet, r3d_18:kinetics400; fetched once "
        "into $TORCH_HOME, the classes are the weights' category names).",
        show_default=False,
    ),
]
DeviceOpt = Annotated[
    str, typer.Option("--device", help="auto (CUDA, else MPS, else CPU), cpu, cuda, cuda:N, mps.")
]
PrecisionOpt = Annotated[
    str,
    typer.Option(
        "--precision",
        help="auto: as the checkpoint was trained (bf16 autocast or float32), where the device "
        "computes that natively, else float32; 32 or bf16 choose. An .onnx computes in float32.",
    ),
]
TopKOpt = Annotated[
    int, typer.Option("--top-k", min=1, max=MAX_TOP_K, help="How many best classes to report.")
]
BackgroundOpt = Annotated[
    str | None,
    typer.Option(
        "--background",
        help="Colour that images drawn only in their alpha channel (strokes on a transparent "
        "canvas) are composited over: white, black, gray, #RRGGBB or R,G,B. Default: the "
        "checkpoint's (white unless it was trained with --background). Other images with "
        "alpha have it dropped.",
        show_default=False,
    ),
]


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


# ---------------------------------------------------------------------------
# standard output: a reader that goes away, a disk that fills up
# ---------------------------------------------------------------------------


_stdout_failure: dict[str, OSError | None] = {"error": None}


class _StdoutFile(io.FileIO):
    """File descriptor 1 that remembers a failed write and never writes part of its data.

    A failed write() raises an OSError without a file name, so without this
    the error path could not tell "standard output is on a full disk" from
    any other OSError escaping a command. Under PYTHONUNBUFFERED there is no
    BufferedWriter above to retry a short write to a pipe, and callers (PNG
    bytes for `convolve -o -`) do not check the count: the rest is written here.
    """

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        done = 0
        try:
            while done < len(view):
                done += super().write(view[done:]) or 0
        except OSError as exc:
            _stdout_failure["error"] = exc
            raise
        return done


class _ClosedStdout(io.RawIOBase):
    """Standard output when fd 1 is closed (``cnnkit ... >&-``): every write is a closed pipe."""

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        raise BrokenPipeError(errno.EPIPE, "standard output is closed")


def _watch_stdout() -> None:
    """Put the real sys.stdout on a _StdoutFile, buffered as it was; a test's capture is left.

    A closed fd 1 (Python's sys.stdout is then None) reads as a reader that
    went away: the command ends quietly at its first output, as under `| head -0`.
    """
    _stdout_failure["error"] = None
    if sys.stdout is None and sys.__stdout__ is None:
        sys.stdout = io.TextIOWrapper(io.BufferedWriter(_ClosedStdout()), encoding="utf-8")
        return
    out = sys.stdout
    if out is None or out is not sys.__stdout__ or not isinstance(out, io.TextIOWrapper):
        return
    try:
        out.flush()
        fd = out.fileno()
    except (OSError, ValueError):
        return  # already unusable: the first write will say so
    raw = _StdoutFile(fd, "w", closefd=False)
    unbuffered = isinstance(out.buffer, io.FileIO)  # python -u, PYTHONUNBUFFERED
    sys.stdout = io.TextIOWrapper(
        raw if unbuffered else io.BufferedWriter(raw),
        encoding=out.encoding,
        # File and class names that are not UTF-8 go out as the bytes they are
        # (cnnkit.textout), instead of failing mid-output in a strict locale.
        errors=ERRORS,
        newline=None if os.name == "nt" else "\n",  # what Python gives its own sys.stdout
        line_buffering=out.line_buffering,
        write_through=out.write_through,
    )


def _is_stdout_error(exc: OSError) -> bool:
    seen = _stdout_failure["error"]
    return seen is not None and (exc is seen or (exc.filename is None and exc.errno == seen.errno))


def _silence_stdout() -> None:
    """Point fd 1 at /dev/null, so that what is still buffered goes nowhere without an error.

    Otherwise the interpreter's last flush at exit fails again and prints
    "Exception ignored ... stdout" after the one line already reported.
    """
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return  # not a real file (a test's capture): nothing flushes it at exit
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def _flush_stdout() -> None:
    """Push out what was already printed; a reader that went away is not an error here."""
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        _silence_stdout()  # closed pipe or full disk: nothing left to deliver it to


def _write_stderr(line: str) -> None:
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass  # stderr is gone too: the exit status still tells


class Stopped(SystemExit):
    """An exit already reported on stderr (main() adds nothing, and leaves at once).

    Interruptions (130, 143), a reader that went away (0) and a standard
    output that cannot be written (1).
    """


class _ReaderGone(Stopped):
    """stdout's reader went away (`| head -1`): a quiet, successful end, as for other filters."""


def _reader_gone() -> None:
    _silence_stdout()
    raise _ReaderGone(0)


def _stdout_failed(exc: OSError) -> None:
    """Report a standard output that cannot be written (full disk, I/O error) and exit 1."""
    if os.environ.get("CNNKIT_DEBUG"):
        raise exc
    _silence_stdout()
    _write_stderr(
        f"error: cannot write to standard output: {exc.strerror or exc} "
        "(hint: free some space, or send the output elsewhere)"
    )
    raise Stopped(1)


def _os_error_line(exc: OSError) -> str:
    """One line for an OSError no command turned into a CnnkitError: reason and file names."""
    line = f"error: {exc.strerror or str(exc) or type(exc).__name__}"
    names = [os.fsdecode(n) for n in (exc.filename, exc.filename2) if n is not None]
    if names:
        line += ": " + " -> ".join(names)
    return line + " (hint: CNNKIT_DEBUG=1 shows where it happened)"


def _final_flush() -> None:
    """Flush stdout before the interpreter does, so that a failure is reported like any other."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _reader_gone()
    except OSError as exc:
        _stdout_failed(exc)
    except ValueError:
        pass  # closed by the command: nothing buffered


def _stopped(code: int, note: str | None = None) -> None:
    """Report an interruption on stderr and exit 130 (SIGINT) or 143 (SIGTERM).

    ``note`` replaces the one word (train says where its checkpoint is).
    """
    _flush_stdout()
    if _received["signal"] == signal.SIGTERM:
        code = 128 + signal.SIGTERM
    word = "terminated" if code == 128 + signal.SIGTERM else "interrupted"
    _write_stderr(note or word)
    raise Stopped(code)


def main() -> None:
    """Console-script entry: run the app, turning CnnkitError into ``error:`` + exit 1.

    Ctrl-C exits 130 and SIGTERM 143 (128 + the signal number, as shells
    report a killed job) with one word on stderr instead of a traceback; a
    closed stdout pipe exits 0 quietly; a stdout that cannot be written
    (full disk) is one ``error:`` line and exit 1.
    """
    from cnnkit.cli.native_stderr import quiet_native_warnings
    from cnnkit.io import cpuload
    from cnnkit.io.cpu import process_follows_budget

    cpuload.mark_start()  # the start-up is the first measure of other processes' load
    process_follows_budget()  # this process is the command's: torch computes on its budget
    # libjpeg's and libpng's warnings go to C's stderr, not to the user (not under
    # CNNKIT_DEBUG=1); crash tracebacks still reach fd 2 (cnnkit.cli.native_stderr).
    loud_again = quiet_native_warnings()
    try:
        _run_app()
    except SystemExit as exc:
        if exc.code not in (0, None) and not isinstance(exc, Stopped) and _pipeline_running():
            # An error ended a video job while its decode thread is still inside
            # OpenCV (a frame of 8K, a video read whole for circular padding):
            # the error is reported and the output removed; leave as Stopped does.
            _leave_now(exc.code)
        if isinstance(exc, Stopped):
            _exit_stopped(exc)
        raise
    finally:
        # A command run inside a Python process (a test, a notebook's
        # cnnkit.cli.main()) leaves the library's logger as it found it.
        output = sys.modules.get("cnnkit.cli.output")
        if output is not None:
            output.stop_showing_messages()
        process_follows_budget(False)
        cpuload.forget_start()
        loud_again()


def _pipeline_running() -> bool:
    """Whether one of cnnkit's decode, compute or encode threads is still busy after a while.

    Threads that were told to stop end within milliseconds, and are waited
    for up to JOIN_TIMEOUT_S; one still inside OpenCV after that (a frame of
    8K, a video read whole for circular padding) is what makes interpreter
    shutdown abort. Only cnnkit's own threads count (see
    cnnkit.io.readahead.worker_threads), never a caller's.
    """
    import time

    readahead = sys.modules.get("cnnkit.io.readahead")
    if readahead is None:  # never loaded, so no thread of its: nothing to import now,
        return False  # when memory may have run out
    deadline = time.monotonic() + readahead.JOIN_TIMEOUT_S
    worker_threads = readahead.worker_threads
    for thread in worker_threads():
        if thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
    return bool(worker_threads())


def _leave_now(code: Any) -> None:
    """Flush what can be flushed and exit with ``code``, without interpreter shutdown."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass  # the reader went away: the status still tells
    os._exit(code if isinstance(code, int) else 1)


def _exit_stopped(stop: Stopped) -> None:
    """Leave at once after Ctrl-C or SIGTERM when other threads are alive.

    An interrupted predict can leave a daemon thread blocked reading stdin,
    and one whose reader went away a thread still inside OpenCV's C++
    decoder; interpreter shutdown around such a thread aborts ("terminate
    called without an active exception", status 134) instead of exiting.
    Everything was flushed and reported, and outputs were cleaned up while
    unwinding.
    """
    if threading.active_count() > 1 and threading.current_thread() is threading.main_thread():
        _leave_now(int(stop.code or 0))


# ---------------------------------------------------------------------------
# allocations that fail
# ---------------------------------------------------------------------------


def _out_of_memory(exc: BaseException) -> None:
    """Report a failed allocation in one line and exit 1.

    A process at its address-space limit leaves without interpreter shutdown,
    which needs memory too (it printed "Exception ignored" lines, one per
    finalizer that could not allocate); outputs were removed while unwinding.
    Every step may itself run out of memory, hence the fallbacks.
    """
    try:
        line = memory.out_of_memory_line(exc)
    except MemoryError:
        line = memory.OUT_OF_MEMORY
    try:
        _flush_stdout()
        _write_stderr(line)
        at_limit = memory.reached_address_space_limit()
    except MemoryError:
        at_limit = True
    if at_limit:
        try:
            _leave_now(1)
        except MemoryError:
            os._exit(1)
    sys.exit(1)


def _run_app() -> None:
    _received["signal"] = None
    previous = signal.getsignal(signal.SIGTERM)
    handler_set = False
    stop_watching = None
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)
        handler_set = True
        stop_watching = watch_signals()
    _watch_stdout()
    from cnnkit.cli.output import show_messages

    show_messages(quiet=False)  # each command's --quiet may silence them
    debug = bool(os.environ.get("CNNKIT_DEBUG"))
    try:
        if len(sys.argv) > 1 and not {"-h", "--help"} & set(sys.argv[1:]):
            from cnnkit.io.cpu import cpu_budget

            cpu_budget()  # a CNNKIT_THREADS that makes no sense is said before any work
        memory.load_native_libraries(sys.argv[1:])
        app(prog_name="cnnkit")  # not "python -m ...": usage lines name the command
    except CnnkitError as exc:
        if debug:
            raise
        _flush_stdout()
        # One line whatever a name in it holds (newlines, escapes, undecodable bytes).
        line = f"error: {shown(exc.message)}"
        if exc.hint:
            line += f" (hint: {shown(exc.hint)})"
        sys.stderr.write(line + "\n")
        sys.exit(1)
    except BrokenPipeError:
        _reader_gone()
    except OSError as exc:
        if _is_stdout_error(exc):
            _stdout_failed(exc)
        if debug:
            raise
        failed = memory.allocation_failure(exc)
        if failed is not None:
            _out_of_memory(failed)
        # Last resort: commands turn the OSErrors they expect into CnnkitErrors.
        _flush_stdout()
        _write_stderr(_os_error_line(exc))
        sys.exit(1)
    except KeyboardInterrupt:
        # Typer turns Ctrl-C inside a command into exit 130; this is Ctrl-C outside one.
        _stopped(130)
    except Exception as exc:
        # An allocation that no up-front check refused (cnnkit.ops.limits checks the
        # large ones it can size): one line, not numpy's, OpenCV's or torch's traceback.
        failed = memory.allocation_failure(exc)
        if failed is None or debug:
            raise
        _out_of_memory(failed)
    except SystemExit as exc:
        if exc.code == 130 and not isinstance(exc, Stopped):
            _stopped(130)
        if isinstance(exc.__context__, BrokenPipeError):
            # Typer answers a broken pipe with exit 1; for a filter it is a normal end.
            _reader_gone()
        if not isinstance(exc, Stopped):
            _final_flush()
        raise
    finally:
        if stop_watching is not None:
            stop_watching()
        if handler_set:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    main()
