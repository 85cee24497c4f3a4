"""What a Conv2d/Conv3d layer computes, on numpy arrays, without torch.

- :mod:`~cnnkit.ops.geometry`: per-axis sizes, padding and the output-size formula;
- :mod:`~cnnkit.ops.conv2d`: 2D on one frame, by OpenCV or numpy;
- :mod:`~cnnkit.ops.conv3d`: 3D over a stream of frames;
- :mod:`~cnnkit.ops.limits`: the up-front checks (memory, float32 range of results);
- :mod:`~cnnkit.ops.convolution`: :func:`convolve` and :func:`explain`, the entry points.
"""

from cnnkit.ops.conv3d import convolve_frames, frame_tasks
from cnnkit.ops.convolution import Explanation, as_kernel, convolve, explain
from cnnkit.ops.geometry import PADDING_MODES, AxisGeometry, Padding, output_shape, resolve_geometry
from cnnkit.ops.limits import (
    available_memory,
    check_convolution_memory,
    check_memory,
    check_result_range,
    input_peak,
)

__all__ = [
    "PADDING_MODES",
    "AxisGeometry",
    "Explanation",
    "Padding",
    "as_kernel",
    "available_memory",
    "check_convolution_memory",
    "check_memory",
    "check_result_range",
    "convolve",
    "convolve_frames",
    "explain",
    "frame_tasks",
    "input_peak",
    "output_shape",
    "resolve_geometry",
]
