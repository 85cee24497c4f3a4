"""3D convolution over a stream of frames: frames in, frames out.

3D kernels slide over time as well: each output frame is the sum, over the
kernel's time slices, of 2D correlations of the matching (padded) input
frames. :func:`convolve_frames` does that on a stream of frames, keeping only
the frames still needed, so videos need not be held in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial

import numpy as np

from cnnkit.errors import InputError
from cnnkit.kernels import Kernel
from cnnkit.ops.conv2d import correlate2d
from cnnkit.ops.geometry import AxisGeometry, check_padding_fits
from cnnkit.ops.limits import check_convolution_memory, check_result_range


def _source_frame(position: int, n: int, pad_before: int, mode: str) -> int | None:
    """Which input frame sits at a padded time position (None: a zero frame)."""
    i = position - pad_before
    if 0 <= i < n:
        return i
    if mode == "zeros":
        return None
    if mode == "replicate":
        return min(max(i, 0), n - 1)
    if mode == "circular":
        return i % n
    return -i if i < 0 else 2 * (n - 1) - i  # reflect, pad < n checked before


def _magnitude(results: list[np.ndarray]) -> np.ndarray:
    """sqrt(Σ r²) of fresh float32 arrays, computed in the first one (the others are spent)."""
    total = np.square(results[0], out=results[0])
    for r in results[1:]:
        total += np.square(r, out=r)
    return np.sqrt(total, out=total)


def convolve_frames(
    frames: Iterable[np.ndarray],
    num_frames: int,
    kernel: Kernel,
    axes: Sequence[AxisGeometry],
    padding_mode: str = "reflect",
    method: str = "auto",
) -> Iterator[np.ndarray]:
    """Slide a 3D kernel over a stream of ``num_frames`` frames (each H×W or H×W×C).

    ``axes`` comes from :func:`resolve_geometry` on (T, H, W). Yields the output
    frames (H'×W'[×C] float32) in order while reading the input once; only the
    frames a later output still needs are kept (circular time padding needs the
    last frames first, so there it keeps the whole video).
    """
    for task in frame_tasks(frames, num_frames, kernel, axes, padding_mode, method):
        yield task()


def frame_tasks(
    frames: Iterable[np.ndarray],
    num_frames: int,
    kernel: Kernel,
    axes: Sequence[AxisGeometry],
    padding_mode: str = "reflect",
    method: str = "auto",
) -> Iterator[Callable[[], np.ndarray]]:
    """:func:`convolve_frames` as work to hand out: one callable per output frame, in order.

    Each callable computes its output frame from the input frames it holds, so
    several can run at once on other threads (the video pipeline does). The
    stream is read as the callables are taken; a frame is held by this
    generator only until the last output that needs it has its callable.
    """
    gt, gh, gw = axes
    check_padding_fits(axes, padding_mode)
    taps = [
        [
            _source_frame(t * gt.stride + i * gt.dilation, num_frames, gt.pad_before, padding_mode)
            for i in range(gt.kernel)
        ]
        for t in range(gt.out)
    ]
    last_use: dict[int, int] = {}
    for t, sources in enumerate(taps):
        for src in sources:
            if src is not None:
                last_use[src] = t
    cache: dict[int, np.ndarray] = {}  # the frames a later output still needs, by index
    stream = iter(frames)
    read = -1
    tail: tuple[int, ...] = ()  # colour axes of the frames, known after the first
    try:
        for t, sources in enumerate(taps):
            # Read at least one frame first: an all-padding output still needs the colour axes.
            needed = max((s for s in sources if s is not None), default=0)
            while read < needed:
                frame = next(stream, None)
                if frame is None:
                    raise InputError(
                        f"the video ended after {read + 1} frames, but {num_frames} were expected",
                        hint="the file may be truncated; re-encode it",
                    )
                read += 1
                if read == 0:  # the first frame: its dtype, values and channels are known now
                    check_result_range(kernel, frame)
                    check_convolution_memory(
                        frame.shape, frame.dtype, kernel, axes, padding_mode, method, num_frames
                    )
                tail = frame.shape[2:]
                if read in last_use:
                    cache[read] = frame
            inputs = [None if src is None else cache[src] for src in sources]
            yield partial(_output_frame, inputs, kernel, gh, gw, padding_mode, method, tail)
            for src in set(sources):
                if src is not None and last_use[src] == t:
                    del cache[src]
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()  # a video being decoded: its capture is released by this thread


def _output_frame(
    inputs: list[np.ndarray | None],
    kernel: Kernel,
    gh: AxisGeometry,
    gw: AxisGeometry,
    padding_mode: str,
    method: str,
    tail: tuple[int, ...],
) -> np.ndarray:
    """One output frame: per component, the sum over time slices of 2D correlations."""
    results = []
    for w in kernel.components:
        acc = None
        for i, frame in enumerate(inputs):
            if frame is None or not w[i].any():
                continue  # zero padding or an all-zero slice adds nothing
            part = correlate2d(frame, w[i], gh, gw, padding_mode, method)
            acc = part if acc is None else np.add(acc, part, out=acc)
        if acc is None:
            acc = np.zeros((gh.out, gw.out) + tail, dtype=np.float32)
        results.append(acc)
    return _magnitude(results) if kernel.combine else results[0]
