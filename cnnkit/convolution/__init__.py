"""``cnnkit convolve`` on files: read an image or video, run ops.convolve, write the result.

- ``options``: sizes per axis, padding, the shapes a job produces, its report;
- ``outputs``: output kinds and names, .npy files (streamed for videos);
- ``files``: one image in one go, and the entry point ``convolve_file``;
- ``videos``: a 2D kernel frame by frame or a 3D one over time, streamed.

(``cnnkit.convolve`` itself is the function on arrays, cnnkit.ops.convolve.)
"""

from cnnkit.convolution.files import convolve_file
from cnnkit.convolution.options import (
    ConvolveOptions,
    ConvolveReport,
    parse_axis_values,
    parse_padding,
)
from cnnkit.convolution.outputs import default_output

__all__ = [
    "ConvolveOptions",
    "ConvolveReport",
    "convolve_file",
    "default_output",
    "parse_axis_values",
    "parse_padding",
]
