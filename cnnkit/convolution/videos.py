"""Videos through a 2D or 3D kernel: decode, filter and encode overlap, frames streamed."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from functools import partial

import numpy as np

from cnnkit import console, ops
from cnnkit.convolution.options import ConvolveOptions, _explain
from cnnkit.convolution.outputs import _npy_frame_writer, _to_gray
from cnnkit.convolve_scale import Stats, result_to_pixels
from cnnkit.io.pipeline import AHEAD_BYTES, WriteBehind, compute_in_order, frames_ahead
from cnnkit.io.video import iter_frames, probe_video
from cnnkit.io.video_writer import VideoWriter
from cnnkit.kernels import Kernel


def _frames(input: str, rgb: bool, gray: bool) -> Iterator[np.ndarray]:
    """The video's frames as convolve filters them; closing this closes the capture."""
    frames = iter_frames(input, rgb=rgb)
    try:
        for frame in frames:
            yield _to_gray(frame, rgb) if gray else frame
    finally:
        frames.close()


def _video_explanation(
    frames: int, frame_shape: tuple[int, ...], kernel: Kernel, options: ConvolveOptions
) -> ops.Explanation:
    """The explanation for ``frames`` frames of ``frame_shape`` (H×W or H×W×C)."""
    shape = (frames, *frame_shape)
    if kernel.ndim == 3:
        return _explain(shape, kernel, options)
    frame_expl = _explain(frame_shape, kernel, options)
    return ops.Explanation(
        kernel, shape, (frames, *frame_expl.output_shape), options.padding_mode, frame_expl.axes
    )


def _convolve_video(
    input: str,
    kernel: Kernel,
    options: ConvolveOptions,
    target: str,
    out_kind: str | None,
    scale: str,
    rgb: bool,
    codec: str | None,
    want_stats: bool,
) -> tuple[ops.Explanation, Stats, float, tuple[int, int] | None]:
    """Explanation, stats, frame rate and the stored H×W of a written video file (else None)."""
    # Container headers can state any frame count (a truncated file keeps the
    # original's). A 3D kernel's output length and its padding at the end need
    # the true count up front, and --explain alone reports it: both count the
    # frames by decoding them. A 2D run counts the frames it reads instead (the
    # stated count only sizes the progress bar, so it is not even checked).
    info = probe_video(input, exact=kernel.ndim == 3 or out_kind is None, check=False)
    channels = () if options.gray else (3,)
    frame_shape = (info.height, info.width, *channels)
    explanation = _video_explanation(info.frames, frame_shape, kernel, options)
    stats = Stats()
    if out_kind is None:
        return explanation, stats, info.fps, None
    # Refused before any writer opens (FFmpeg would allocate frames of the padded size).
    kernel.check_float32_range(255.0, "8-bit input")  # decoded frames are uint8
    ops.check_convolution_memory(
        frame_shape,
        np.uint8,
        kernel,
        explanation.axes,
        options.padding_mode,
        num_frames=info.frames,
    )
    bounds = kernel.value_bounds(0.0, 255.0) if scale == "minmax" else None
    finish = _FrameFinisher(out_kind == "npy", scale, bounds, want_stats or out_kind == "npy")
    frames = _frames(input, rgb, options.gray)
    if kernel.ndim == 2:
        gh, gw = explanation.axes
        work: Iterator = frames
        compute: Callable = partial(finish.frame, kernel, gh, gw, options.padding_mode)
    else:
        work = ops.frame_tasks(frames, info.frames, kernel, explanation.axes, options.padding_mode)
        compute = finish.task
    # decode (a thread) -> compute (a pool, in frame order) -> encode (a thread):
    # see cnnkit.io.pipeline. Memory holds a fixed number of frames at any length.
    # Each frame in flight holds its decoded frame and its result (float32 for .npy):
    # together within the pipeline's AHEAD_BYTES.
    frame_bytes = info.width * info.height * (1 if options.gray else 3)
    result_bytes = math.prod(explanation.output_shape[1:]) * (4 if out_kind == "npy" else 1)
    item_bytes = frame_bytes + result_bytes
    chunk = max(1, min(8, 2**20 // max(1, item_bytes)))  # small frames: fewer hand-overs
    ahead = max(frames_ahead(item_bytes), 2 * chunk)
    computed = compute_in_order(compute, work, ahead=ahead, chunk=chunk)
    try:
        results = console.track(computed, total=info.frames, description="convolve")
        if out_kind == "npy":
            depth = _write_depth(result_bytes)
            with _npy_frame_writer(target) as npy, WriteBehind(npy.write, depth) as sink:
                for parts, r in results:
                    stats.add_parts(*parts)  # .npy outputs always have their stats
                    sink.put(r)
            written, stored_size = npy.count, None
        else:
            written, stored_size = _write_video_frames(
                input,
                target,
                results,
                stats,
                info.fps,
                explanation,
                rgb,
                codec,
                _write_depth(result_bytes),
            )
    finally:
        computed.close()  # stops the decode and compute threads now, whatever happened
    if kernel.ndim == 2:  # one output frame per frame read: the count is now known
        explanation = _video_explanation(written, frame_shape, kernel, options)
    return explanation, stats, info.fps, stored_size


# A frame's (min, max, sum, count), see Stats.parts; None when no stats are wanted.
_Parts = tuple[float, float, float, int] | None


class _FrameFinisher:
    """The compute stage's work on one frame: convolve, the frame's stats, its output form.

    Runs on the pipeline's compute threads; returns (stats parts, frame) with
    the float32 result for .npy, or its 8-bit pixels per ``scale``. Where
    ops.conv2d.bands_apply (stride 1, dilation 1, 'same' padding, kernels
    filter2D computes directly) a 2D frame is computed and converted a band
    of rows at a time (correlate_bands): the same bits, each pass over memory
    still in cache. A frame's sum is then the sum of its bands' float64 sums.
    """

    def __init__(
        self, raw: bool, scale: str, bounds: tuple[float, float] | None, stats: bool
    ) -> None:
        self.raw, self.scale, self.bounds, self.stats = raw, scale, bounds, stats

    def frame(
        self, kernel: Kernel, gh: ops.AxisGeometry, gw: ops.AxisGeometry, mode: str, x: np.ndarray
    ) -> tuple[_Parts, np.ndarray]:
        from cnnkit.ops.conv2d import bands_apply, correlate_bands, correlate_kernel

        if not bands_apply(kernel, gh, gw, mode):
            return self.finish(correlate_kernel(x, kernel, gh, gw, mode, "auto"))
        out = np.empty((gh.out, gw.out, *x.shape[2:]), np.float32 if self.raw else np.uint8)
        stats = Stats()
        for r0, r1, band in correlate_bands(x, kernel, gh, gw, mode):
            if self.stats:
                stats.add(band)
            out[r0:r1] = band if self.raw else self._pixels(band)
        return (self._parts(stats) if self.stats else None), out

    def task(self, task: Callable[[], np.ndarray]) -> tuple[_Parts, np.ndarray]:
        return self.finish(task())

    def finish(self, r: np.ndarray) -> tuple[_Parts, np.ndarray]:
        parts = Stats.parts(r) if self.stats else None
        if self.raw:
            return parts, np.ascontiguousarray(r, dtype=np.float32)
        return parts, self._pixels(r)

    def _pixels(self, r: np.ndarray) -> np.ndarray:
        return result_to_pixels(r, self.scale, 255.0, self.bounds)

    @staticmethod
    def _parts(stats: Stats) -> tuple[float, float, float, int]:
        return stats.min, stats.max, stats.total, stats.count


def _write_depth(result_bytes: int) -> int:
    """Results waiting for the encode thread: 4, fewer when they are large (2 at 4K float32)."""
    return max(2, min(4, AHEAD_BYTES // max(1, result_bytes)))


def _write_video_frames(
    input: str,
    target: str,
    results: Iterable[tuple[_Parts, np.ndarray]],
    stats: Stats,
    fps: float,
    explanation: ops.Explanation,
    rgb: bool,
    codec: str | None,
    depth: int = 4,
) -> tuple[int, tuple[int, int]]:
    """Write the pipeline's 8-bit frames to a video: (frames written, stored H×W)."""
    colour = len(explanation.output_shape) == 4
    out_h, out_w = explanation.output_shape[1:3]
    if fps <= 0:
        console.warn(f"{input} states no frame rate; writing 25 fps")
    rate = fps if fps > 0 else 25.0
    with (
        VideoWriter(target, rate, out_w, out_h, colour, rgb, codec=codec) as writer,
        WriteBehind(writer.write, depth) as sink,
    ):
        for parts, pixels in results:
            if parts is not None:
                stats.add_parts(*parts)
            sink.put(pixels)
    stored_w, stored_h = writer.frame_size
    if (stored_h, stored_w) != (out_h, out_w):
        edges = [e for e, odd in (("row", stored_h > out_h), ("column", stored_w > out_w)) if odd]
        console.info(
            f"note: {target} stores the {out_h}×{out_w} frames as {stored_h}×{stored_w}, "
            f"their last {' and '.join(edges)} repeated: the video codec needs even sizes"
        )
    return writer.frames_written, (stored_h, stored_w)
