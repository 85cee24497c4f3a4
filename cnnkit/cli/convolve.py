"""``cnnkit convolve``: apply a kernel the way a Conv2d/Conv3d layer would."""

from __future__ import annotations

import sys
from enum import Enum
from typing import Annotated

import typer

from cnnkit import console
from cnnkit.cli.app import JsonOpt, QuietOpt, app, print_json
from cnnkit.cli.output import show_messages
from cnnkit.cli.render import explain_text, shape_text, show_kernel_bank


class PaddingMode(str, Enum):
    zeros = "zeros"
    reflect = "reflect"
    replicate = "replicate"
    circular = "circular"


class Codec(str, Enum):
    mp4v = "mp4v"
    avc1 = "avc1"
    mjpg = "mjpg"
    xvid = "xvid"
    vp80 = "vp80"
    vp90 = "vp90"
    ffv1 = "ffv1"


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
    "  cnnkit convolve clip.mp4 -k sobel -o edges.mkv --codec ffv1\n\n"
    "  cat photo.png | cnnkit convolve - -k laplacian -o - > edges.png",
)
def convolve(
    input: Annotated[
        str | None,
        typer.Argument(help="Image, video, or '-' for an encoded image on stdin."),
    ] = None,
    kernel: Annotated[
        str | None,
        typer.Option(
            "--kernel",
            "-k",
            help="Kernel name (see --list-kernels), 'gaussian:7,1.5', inline rows "
            "'1,0,-1;2,0,-2;1,0,-1', 3D slices separated by '|', or a .txt/.csv/.npy file.",
        ),
    ] = None,
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            help="Output file (.npy keeps raw float32; image/video formats are 8-bit); "
            "'-' writes PNG to stdout. Default: <stem>-<kernel>.<ext> here (.png for a GIF).",
        ),
    ] = None,
    stride: Annotated[
        str, typer.Option(help="Stride: one int, or per axis 'SH,SW' / 'ST,SH,SW'.")
    ] = "1",
    padding: Annotated[
        str, typer.Option(help="'same' (size kept at stride 1), 'valid' (none), or N pixels.")
    ] = "same",
    padding_mode: Annotated[
        PaddingMode,
        typer.Option(help="How the border is filled: reflect mirrors without repeating the edge."),
    ] = PaddingMode.reflect,
    dilation: Annotated[str, typer.Option(help="Dilation: one int, or per axis.")] = "1",
    gray: Annotated[
        bool, typer.Option("--gray", help="Convert to one gray channel first.")
    ] = False,
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
    codec: Annotated[
        Codec | None,
        typer.Option(
            case_sensitive=False,
            help="Video output codec. Default by container: mp4v for .mp4/.mov/.mkv (MPEG-4 "
            "Part 2: the fastest encoder in OpenCV's FFmpeg, and VLC, QuickTime, Windows and "
            "ffplay play it), MJPEG for .avi, VP8 for .webm. avc1 (H.264, which browsers "
            "play) needs an OpenCV built with an H.264 encoder; the pip wheels have none. "
            "ffv1 is lossless.",
        ),
    ] = None,
    overwrite_input: Annotated[
        bool,
        typer.Option(
            "--overwrite-input",
            help="Allow -o to name the input file itself (refused otherwise); the input is "
            "read before the result replaces it.",
        ),
    ] = False,
    explain: Annotated[
        bool,
        typer.Option(
            "--explain",
            help="Print the kernel, the shapes and the output-size formula on stdout. Alone it "
            "writes no file; with -o FILE it writes the result too.",
        ),
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
    Float images (32-bit TIFF) must hold 0-1 for 8-bit outputs, where 1.0 is
    255; .npy outputs keep any values.
    """
    show_messages(quiet)
    # Only numpy/OpenCV work here: torch is never imported on this path.
    from cnnkit import convolution
    from cnnkit.errors import InputError
    from cnnkit.kernels import parse_kernel

    if list_kernels:
        show_kernel_bank(json_)
        return
    if input is None:
        raise InputError("no INPUT given", hint="give an image or video file, or '-' for stdin")
    if kernel is None:
        raise InputError("no --kernel given", hint="e.g. -k sobel; see --list-kernels")
    if output == "-" and (json_ or explain):
        raise InputError(
            "-o - writes PNG bytes to stdout, which --json/--explain also use",
            hint="write the image to a file with -o FILE",
        )
    options = convolution.ConvolveOptions(
        kernel=parse_kernel(kernel),
        stride=convolution.parse_axis_values(stride, "stride", 1),
        padding=convolution.parse_padding(padding),
        padding_mode=padding_mode.value,
        dilation=convolution.parse_axis_values(dilation, "dilation", 1),
        gray=gray,
        flip=flip,
        scale=scale.value,
    )
    stdin = None
    if input == "-":
        if sys.stdin is None:  # started with stdin closed (`<&-`)
            raise InputError("INPUT is '-' but stdin is closed", hint="cat img.png | cnnkit ...")
        if sys.stdin.isatty():
            raise InputError(
                "INPUT is '-' but nothing is piped in", hint="cat img.png | cnnkit ..."
            )
        from cnnkit.io.image import read_at_most

        # Bounded: `< /dev/zero` ends at the image byte limit, not at the end of memory.
        stdin = read_at_most(sys.stdin.buffer, "-")
    # --explain alone only describes; with -o it also writes the result.
    report = convolution.convolve_file(
        input,
        options,
        output,
        write=not explain or output is not None,
        stdin=stdin,
        want_stats=json_,
        overwrite_input=overwrite_input,
        codec=codec.value if codec is not None else None,
    )
    if json_:
        doc = report.to_dict()
        if explain:
            doc["explain"] = report.explanation.to_dict()
        print_json(doc)
        return
    if explain:
        typer.echo(explain_text(report.explanation, report))
        if output is None:
            console.info("no file written: --explain alone only describes (add -o FILE to write)")
    if report.output not in (None, "-"):
        console.info(f"wrote {report.output} ({shape_text(report.explanation.output_shape)})")
