"""``cnnkit convolve`` on files: read an image or video, run ops.convolve, write the result.

Images are convolved in one go. Videos are streamed: a 2D kernel filters
frame by frame, a 3D kernel slides a window of frames over time
(ops.convolve_frames), so only the frames in use are in memory; ``.npy``
output is streamed to disk too, its header written last. A video's frame
count is what was read and written, never the container's claim.

Output by extension: ``.npy`` stores the raw float32 result (negative values
kept; H×W, H×W×C in RGB order, or T×H×W[×C]); image and video formats store
8-bit pixels according to ``scale`` (clip, abs, minmax or auto; see
:mod:`cnnkit.convolve_scale`).

Float images (32-bit TIFFs) hold 0-1 by convention: a float image with values
outside 0-1 (or NaN) is refused for 8-bit outputs, as every other command
refuses it; ``.npy`` keeps any values.

Alpha channels are dropped before filtering: a filtered alpha has no meaning.
GIFs are read (the first frame) but written as PNG. The output may not be the
input file unless ``overwrite_input`` is set. This module never imports torch.
"""

from __future__ import annotations

import sys
import time

from cnnkit import ops
from cnnkit.convolution.options import ConvolveOptions, ConvolveReport, _explain, _padding_text
from cnnkit.convolution.outputs import (
    _check_not_input,
    _drop_alpha,
    _input_kind,
    _kind_of_output,
    _save_npy,
    _to_gray,
    default_output,
)
from cnnkit.convolution.videos import _convolve_video
from cnnkit.convolve_scale import Stats, auto_scale, result_to_pixels, value_range
from cnnkit.errors import InputError, KernelError
from cnnkit.io.image import (
    check_float_pixels,
    encode_png,
    read_image,
    read_image_bytes,
)
from cnnkit.kernels import Kernel


def convolve_file(
    input: str,
    options: ConvolveOptions,
    output: str | None = None,
    write: bool = True,
    stdin: bytes | bytearray | None = None,
    want_stats: bool = True,
    overwrite_input: bool = False,
    codec: str | None = None,
) -> ConvolveReport:
    """Convolve an image or video file (or stdin image bytes) and write the result.

    ``output`` None means the default name; ``write=False`` only explains (the
    input is read for its shape, nothing is computed or written). Without
    ``want_stats`` the min/max/mean of an image or a video written as pixels
    are not computed (a few ms an image, a pass over each frame of a video).
    An output that is the input file is refused unless ``overwrite_input``
    (the input is then read whole, or streamed from the old file, before the
    result replaces it). ``codec`` (a name of ``cnnkit.io.video.CODECS``)
    chooses a video output's codec instead of its container's default.
    """
    start = time.perf_counter()
    kernel = options.kernel.flipped() if options.flip else options.kernel
    kind = _input_kind(input)
    if kernel.ndim == 3 and kind == "image":
        raise KernelError(
            f"'{options.kernel.name}' is a 3D kernel (time×height×width) and {input} is an image",
            hint="use a 2D kernel on images, or give a video",
        )
    target = output if output is not None else default_output(input, options.kernel)
    out_kind = _kind_of_output(target, kind) if write else None
    _check_not_input(input, target, out_kind, overwrite_input)
    if codec is not None and out_kind not in (None, "video"):
        raise InputError(
            f"--codec {codec} applies to video outputs, not to {target}",
            hint="write a video (.mp4, .avi, .mkv, .mov, .webm), or leave --codec out",
        )
    scale = auto_scale(kernel) if options.scale == "auto" else options.scale
    # BGR order is kept end to end for 8-bit outputs: OpenCV reads and writes it,
    # and per-channel filtering does not care. Only .npy wants RGB.
    rgb = out_kind == "npy"
    stored_size = None
    if kind == "image":
        explanation, stats, fps = _convolve_image(
            input, kernel, options, target, out_kind, scale, rgb, stdin, want_stats
        )
    else:
        explanation, stats, fps, stored_size = _convolve_video(
            input, kernel, options, target, out_kind, scale, rgb, codec, want_stats
        )
    report = ConvolveReport(
        input=input,
        output=target if write else None,
        kernel=kernel,
        explanation=explanation,
        stride=options.per_axis(options.stride),
        dilation=options.per_axis(options.dilation),
        padding=_padding_text(options.padding),
        padding_mode=options.padding_mode,
        scale=scale,
        gray=options.gray,
        flip=options.flip,
        stats=stats,
        fps=fps,
        is_video=kind == "video",
        stored_size=stored_size,
    )
    report.seconds = time.perf_counter() - start
    return report


def _convolve_image(
    input: str,
    kernel: Kernel,
    options: ConvolveOptions,
    target: str,
    out_kind: str | None,
    scale: str,
    rgb: bool,
    stdin: bytes | bytearray | None,
    want_stats: bool,
) -> tuple[ops.Explanation, Stats, None]:
    if input == "-":
        image = read_image_bytes(stdin if stdin is not None else b"", "-", rgb=rgb)
    else:
        image = read_image(input, rgb=rgb)
    image = _drop_alpha(image)
    if options.gray:
        image = _to_gray(image, rgb)
    explanation = _explain(image.shape, kernel, options)
    stats = Stats()
    if out_kind is None:
        return explanation, stats, None
    if out_kind != "npy":
        # 8-bit outputs read floats as 0-1, the rule of every command; .npy keeps any values.
        check_float_pixels(image, "stdin" if input == "-" else input)
    in_max = value_range(image.dtype)
    result = ops.convolve(
        image, kernel, options.stride, options.padding, options.padding_mode, options.dilation
    )
    del image  # only its value range is needed from here on: free it before the 8-bit copy
    if want_stats or out_kind == "npy":
        stats.add(result)
    if out_kind == "npy":
        _save_npy(target, result)
        return explanation, stats, None
    pixels = result_to_pixels(result, scale, in_max)
    del result
    if out_kind == "stdout":
        sys.stdout.buffer.write(encode_png(pixels, rgb=rgb))
        sys.stdout.flush()
    else:
        from cnnkit.io.image import write_image

        write_image(target, pixels, rgb=rgb)
    return explanation, stats, None
