"""The cnnkit command line: parse, call one core function, render.

This is the only module that imports typer. Heavy imports (torch, lightning)
happen inside command bodies so that ``cnnkit --help`` and ``cnnkit convolve``
on images stay fast.
"""

from __future__ import annotations

import json
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from cnnkit import __version__, console
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
    """Write one JSON document to stdout."""
    sys.stdout.write(json.dumps(obj, indent=2, default=_json_default) + "\n")
    sys.stdout.flush()


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def not_implemented(command: str) -> None:
    raise CnnkitError(
        f"'cnnkit {command}' is not implemented yet",
        hint="see `cnnkit --help` for the commands available in this version",
    )


# ---------------------------------------------------------------------------
# convolve
# ---------------------------------------------------------------------------


class PaddingMode(str, Enum):
    zeros = "zeros"
    reflect = "reflect"
    replicate = "replicate"
    circular = "circular"


class Scale(str, Enum):
    auto = "auto"
    abs = "abs"
    clip = "clip"
    minmax = "minmax"


@app.command(
    epilog="Examples:\n\n"
    "  cnnkit convolve photo.jpg -k sobel\n\n"
    "  cnnkit convolve photo.jpg -k gaussian:7,1.5 -o blur.png\n\n"
    '  cnnkit convolve digit.png -k "1,0,-1;2,0,-2;1,0,-1" --stride 2 --explain\n\n'
    "  cnnkit convolve clip.mp4 -k temporal-diff -o motion.mp4\n\n"
    "  cat photo.png | cnnkit convolve - -k laplacian -o - > edges.png",
)
def convolve(
    input: Annotated[
        Optional[str],
        typer.Argument(help="Image, video, or '-' for an encoded image on stdin."),
    ] = None,
    kernel: Annotated[
        Optional[str],
        typer.Option(
            "--kernel",
            "-k",
            help="Kernel name (see --list-kernels), 'gaussian:7,1.5', inline rows "
            "'1,0,-1;2,0,-2;1,0,-1', 3D slices separated by '|', or a .txt/.csv/.npy file.",
        ),
    ] = None,
    output: Annotated[
        Optional[str],
        typer.Option(
            "--output",
            "-o",
            help="Output file (.npy keeps raw float32; image/video formats are 8-bit); "
            "'-' writes PNG to stdout. Default: <stem>-<kernel>.<ext> here.",
        ),
    ] = None,
    stride: Annotated[str, typer.Option(help="Stride: one int, or per axis 'SH,SW' / 'ST,SH,SW'.")] = "1",
    padding: Annotated[
        str, typer.Option(help="'same' (size kept at stride 1), 'valid' (none), or N pixels.")
    ] = "same",
    padding_mode: Annotated[
        PaddingMode, typer.Option(help="How the border is filled: reflect mirrors without repeating the edge.")
    ] = PaddingMode.reflect,
    dilation: Annotated[str, typer.Option(help="Dilation: one int, or per axis.")] = "1",
    gray: Annotated[bool, typer.Option("--gray", help="Convert to one gray channel first.")] = False,
    flip: Annotated[
        bool, typer.Option("--flip", help="Flip the kernel on every axis: true convolution.")
    ] = False,
    scale: Annotated[
        Scale,
        typer.Option(
            help="How float results become 8-bit pixels: auto (clip smoothing kernels, "
            "min-max signed ones), abs, clip, minmax."
        ),
    ] = Scale.auto,
    explain: Annotated[
        bool, typer.Option("--explain", help="Show the kernel, shapes and output-size formula.")
    ] = False,
    list_kernels: Annotated[
        bool, typer.Option("--list-kernels", help="List the named kernels as matrices and exit.")
    ] = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Apply a kernel the way a Conv2d/Conv3d layer would: stride, padding, dilation.

    2D kernels filter images (and videos frame by frame); 3D kernels also slide
    over time on videos. Values are computed on the pixels as stored (0-255).
    """
    console.set_quiet(quiet)
    not_implemented("convolve")


# ---------------------------------------------------------------------------
# train / eval / predict / inspect: filled in by their own issues
# ---------------------------------------------------------------------------


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def train(ctx: typer.Context) -> None:
    """Train a 2D or 3D CNN with Lightning."""
    not_implemented("train")


@app.command(name="eval", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def eval_(ctx: typer.Context) -> None:
    """Measure a trained checkpoint on a dataset split."""
    not_implemented("eval")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def predict(ctx: typer.Context) -> None:
    """Classify images, folders and videos with a trained checkpoint."""
    not_implemented("predict")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def inspect(ctx: typer.Context) -> None:
    """Show what is inside an image, video, dataset, model or checkpoint."""
    not_implemented("inspect")


# ---------------------------------------------------------------------------
# entry point: the single error path
# ---------------------------------------------------------------------------


def main() -> None:
    """Console-script entry: run the app, turning CnnkitError into ``error:`` + exit 1."""
    try:
        app()
    except CnnkitError as exc:
        if os.environ.get("CNNKIT_DEBUG"):
            raise
        sys.stdout.flush()
        line = f"error: {exc.message}"
        if exc.hint:
            line += f" (hint: {exc.hint})"
        sys.stderr.write(line + "\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
