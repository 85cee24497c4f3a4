"""The named kernel bank and the kernel-spec parser (2D and 3D).

A kernel spec is one of:

- a name from the bank (``sobel-x``, ``laplacian``, ``temporal-diff``), optionally
  with parameters after a colon: ``gaussian:7,1.5`` (size, sigma), ``box:5``,
  ``log:9,1.4``, ``box3d:3``, ``gaussian3d:3,1.0``;
- inline rows: rows separated by ``;``, values by ``,`` or spaces
  (``"1,0,-1;2,0,-2;1,0,-1"``); a value may be a fraction (``1/16``);
  a 3D kernel is 2D slices separated by ``|``, time first
  (``"0,0,0;0,-1,0;0,0,0 | 0,0,0;0,1,0;0,0,0"``);
- a ``.txt`` or ``.csv`` file: one row per line, values separated by commas or
  spaces, ``#`` starts a comment; a blank line (or a line holding only ``|``)
  starts the next time slice of a 3D kernel;
- a ``.npy`` file holding a 2D (H×W) or 3D (T×H×W) numeric array.

Weights are numpy float64 arrays indexed like torch's Conv2d/Conv3d weight
without its channel axes: ``(kH, kW)`` or ``(kT, kH, kW)``. They are applied as
cross-correlation, exactly as a convolution layer does. This module never
imports torch.
"""

from cnnkit.kernels.bank import KernelDef, kernel_defs, kernel_names, kernel_usage, named_kernel
from cnnkit.kernels.kernel import FLOAT32_MAX, KERNEL_FILE_EXTENSIONS, MAX_KERNEL_WEIGHTS, Kernel
from cnnkit.kernels.parse import kernel_from_array, load_kernel_file, parse_kernel
from cnnkit.kernels.text import format_kernel, format_matrix

__all__ = [
    "FLOAT32_MAX",
    "KERNEL_FILE_EXTENSIONS",
    "Kernel",
    "KernelDef",
    "MAX_KERNEL_WEIGHTS",
    "format_kernel",
    "format_matrix",
    "kernel_defs",
    "kernel_from_array",
    "kernel_names",
    "kernel_usage",
    "load_kernel_file",
    "named_kernel",
    "parse_kernel",
]
