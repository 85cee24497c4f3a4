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

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnkit.errors import KernelError, close_match_hint

KERNEL_FILE_EXTENSIONS = (".txt", ".csv", ".npy")

# A kernel larger than this many weights is almost certainly a typo (box:5000),
# and building it would take the memory of a large image.
MAX_KERNEL_WEIGHTS = 1_000_000

# Results are computed and stored in float32: a weight (or a result) beyond this
# becomes inf, and inf - inf becomes NaN, in an output that otherwise looks fine.
FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class Kernel:
    """A convolution kernel: one weight array, or several combined per pixel.

    ``components`` holds one array for a plain kernel. Gradient kernels such as
    ``sobel`` hold two (the x and y derivatives) with ``combine="magnitude"``:
    the result is ``sqrt(gx² + gy²)`` of the two cross-correlations.
    """

    name: str
    components: tuple[np.ndarray, ...]
    combine: str | None = None
    description: str = ""

    @property
    def ndim(self) -> int:
        """2 for (kH, kW) kernels, 3 for (kT, kH, kW) kernels."""
        return self.components[0].ndim

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(n) for n in self.components[0].shape)

    @property
    def weights(self) -> np.ndarray:
        """The single weight array; for a magnitude kernel, its first component."""
        return self.components[0]

    @property
    def is_magnitude(self) -> bool:
        return self.combine == "magnitude"

    @property
    def nonnegative(self) -> bool:
        """True when every weight is >= 0 (smoothing kernels): results stay in range."""
        return all(bool((c >= 0).all()) for c in self.components)

    @property
    def slug(self) -> str:
        """A file-name friendly form of the name: ``gaussian:7,1.5`` -> ``gaussian-7-1.5``."""
        slug = re.sub(r"[^A-Za-z0-9.]+", "-", self.name).strip("-.")
        return slug or "kernel"

    def flipped(self) -> Kernel:
        """The kernel flipped on every axis: cross-correlation with it is true convolution."""
        flipped = tuple(np.ascontiguousarray(np.flip(c)) for c in self.components)
        return Kernel(f"{self.name} (flipped)", flipped, self.combine, self.description)

    def largest_result(self, peak: float) -> float:
        """The largest |result| possible for inputs with |value| <= ``peak``.

        For a magnitude kernel this is the largest sum of the squared
        components, the float32 intermediate sqrt(gx² + gy²) is taken of.
        """
        reach = [float(np.abs(c).sum()) * peak for c in self.components]
        if self.is_magnitude:
            return sum(r * r for r in reach)
        return max(reach)

    def check_float32_range(self, peak: float, what: str) -> None:
        """Refuse a kernel whose float32 result could overflow on inputs up to ``peak``.

        ``what`` names the input in the message ("16-bit input").
        """
        if self.largest_result(peak) <= FLOAT32_MAX:
            return
        total = sum(float(np.abs(c).sum()) for c in self.components)
        raise KernelError(
            f"kernel '{self.name}' would overflow float32 on {what}: the sum of |weights| "
            f"({total:.3g}) times the largest input value ({peak:g}) exceeds {FLOAT32_MAX:.3g}",
            hint="scale the kernel's weights down",
        )

    def value_bounds(self, low: float, high: float) -> tuple[float, float]:
        """The smallest and largest result possible for inputs in [low, high]."""
        if self.is_magnitude:
            spans = (max(abs(b) for b in _bounds(c, low, high)) for c in self.components)
            return 0.0, math.sqrt(sum(span**2 for span in spans))
        return _bounds(self.weights, low, high)


def _bounds(w: np.ndarray, low: float, high: float) -> tuple[float, float]:
    """The smallest and largest correlation of weights ``w`` with inputs in [low, high]."""
    pos, neg = float(w[w > 0].sum()), float(w[w < 0].sum())
    return pos * low + neg * high, pos * high + neg * low


# ---------------------------------------------------------------------------
# the bank
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class KernelDef:
    """A named kernel: how to build it, and which parameters it takes."""

    name: str
    dims: int
    description: str
    build: Callable[..., tuple[tuple[np.ndarray, ...], str | None]]
    params: tuple[str, ...] = ()
    defaults: tuple[float, ...] = ()


_BANK: dict[str, KernelDef] = {}


def _register(name: str, dims: int, description: str, params=(), defaults=()):
    def wrap(build):
        if name in _BANK:
            raise ValueError(f"kernel {name!r} registered twice")
        _BANK[name] = KernelDef(name, dims, description, build, tuple(params), tuple(defaults))
        return build

    return wrap


def _fixed(name: str, description: str, rows: Sequence[Sequence[float]]) -> None:
    weights = np.array(rows, dtype=np.float64)
    _register(name, 2, description)(lambda: ((weights.copy(),), None))


def _gradient(name: str, description: str, gx_rows: Sequence[Sequence[float]]) -> None:
    gx = np.array(gx_rows, dtype=np.float64)
    # The y derivative is the transpose: it responds to values growing downwards.
    _fixed(f"{name}-x", f"{description}, x derivative (left to right)", gx)
    _fixed(f"{name}-y", f"{description}, y derivative (top to bottom)", gx.T)
    _register(name, 2, f"{description}, gradient magnitude sqrt(gx² + gy²)")(
        lambda: ((gx.copy(), np.ascontiguousarray(gx.T)), "magnitude")
    )


_fixed("identity", "copies the input (a single 1 in the centre)", [[0, 0, 0], [0, 1, 0], [0, 0, 0]])
_fixed(
    "sharpen", "boosts the centre against its 4 neighbours", [[0, -1, 0], [-1, 5, -1], [0, -1, 0]]
)
_fixed("laplacian", "second derivative, 4-neighbour", [[0, 1, 0], [1, -4, 1], [0, 1, 0]])
_fixed("emboss", "relief lit from the top left", [[-2, -1, 0], [-1, 1, 1], [0, 1, 2]])
_fixed(
    "outline", "edges in every direction, 8-neighbour", [[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]]
)
_gradient("sobel", "Sobel", [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]])
_gradient("scharr", "Scharr", [[-3, 0, 3], [-10, 0, 10], [-3, 0, 3]])
_gradient("prewitt", "Prewitt", [[-1, 0, 1], [-1, 0, 1], [-1, 0, 1]])


# Checked before the weights are built: box:100001 would ask for 80 GB before the
# MAX_KERNEL_WEIGHTS check could see it. N×N and N×N×N stay within that budget.
_MAX_SIZE_2D = 1000
_MAX_SIZE_3D = 100


def _size(value: float, what: str = "size", limit: int = _MAX_SIZE_2D) -> int:
    if value != int(value) or value < 1:
        raise KernelError(
            f"kernel {what} must be a whole number >= 1, got {value:g}",
            hint="e.g. box:5 or gaussian:7,1.5",
        )
    if value > limit:
        raise KernelError(
            f"kernel {what} {value:g} is too large (at most {limit})",
            hint=f"kernels hold at most {MAX_KERNEL_WEIGHTS:,} weights",
        )
    return int(value)


def _sigma(value: float, size: int) -> float:
    if value < 0:
        raise KernelError(
            f"gaussian sigma must be >= 0, got {value:g}", hint="0 picks it from the size"
        )
    # sigma 0 means "pick from the size", with OpenCV's getGaussianKernel rule.
    return value if value > 0 else 0.3 * ((size - 1) * 0.5 - 1) + 0.8


def _gauss1d(size: int, sigma: float) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


@_register("box", 2, "mean of an N×N window", params=("size",), defaults=(3,))
def _box(size: float = 3):
    n = _size(size)
    return (np.full((n, n), 1.0 / (n * n)),), None


@_register(
    "gaussian",
    2,
    "Gaussian blur, weights sum to 1 (sigma 0: from size)",
    ("size", "sigma"),
    (5, 1.0),
)
def _gaussian(size: float = 5, sigma: float = 1.0):
    n = _size(size)
    g = _gauss1d(n, _sigma(sigma, n))
    return (np.outer(g, g),), None


@_register(
    "log", 2, "Laplacian of Gaussian (blob/edge detector), weights sum to 0", ("size", "sigma"),
    (5, 1.0),
)  # fmt: skip
def _log(size: float = 5, sigma: float = 1.0):
    n = _size(size)
    s = _sigma(sigma, n)
    x = np.arange(n, dtype=np.float64) - (n - 1) / 2
    r2 = x[:, None] ** 2 + x[None, :] ** 2
    w = (r2 - 2 * s**2) / s**4 * np.exp(-r2 / (2 * s**2))
    # Remove the truncation leftover so a flat region gives exactly 0.
    return (w - w.mean(),), None


@_register(
    "temporal-diff", 3, "frame difference: next frame minus this frame (2×1×1)"
)  # fmt: skip
def _temporal_diff():
    return (np.array([-1.0, 1.0]).reshape(2, 1, 1),), None


@_register("box3d", 3, "mean of an N×N×N space-time window", params=("size",), defaults=(3,))
def _box3d(size: float = 3):
    n = _size(size, limit=_MAX_SIZE_3D)
    return (np.full((n, n, n), 1.0 / n**3),), None


@_register(
    "gaussian3d", 3, "Gaussian blur over time and space, weights sum to 1", ("size", "sigma"),
    (3, 1.0),
)  # fmt: skip
def _gaussian3d(size: float = 3, sigma: float = 1.0):
    n = _size(size, limit=_MAX_SIZE_3D)
    g = _gauss1d(n, _sigma(sigma, n))
    return (np.einsum("i,j,k->ijk", g, g, g),), None


def _sobel3d(axis: int) -> np.ndarray:
    d, s = np.array([-1.0, 0.0, 1.0]), np.array([1.0, 2.0, 1.0])
    parts = [s, s, s]
    parts[axis] = d
    return np.einsum("i,j,k->ijk", *parts)


_register("sobel3d-t", 3, "3×3×3 Sobel derivative over time (motion), smoothed in space")(
    lambda: ((_sobel3d(0),), None)
)
_register("sobel3d-x", 3, "3×3×3 Sobel x derivative, smoothed over time and y")(
    lambda: ((_sobel3d(2),), None)
)
_register("sobel3d-y", 3, "3×3×3 Sobel y derivative, smoothed over time and x")(
    lambda: ((_sobel3d(1),), None)
)


def kernel_names() -> list[str]:
    """The names in the bank, in registration order."""
    return list(_BANK)


def kernel_defs() -> list[KernelDef]:
    return list(_BANK.values())


def named_kernel(name: str, params: Sequence[float] = ()) -> Kernel:
    """Build a kernel from the bank; unknown names get a "did you mean" hint."""
    kdef = _BANK.get(name.lower())
    if kdef is None:
        raise KernelError(
            f"unknown kernel '{name}'",
            hint=close_match_hint(name, _BANK, "kernel") + " (see --list-kernels)",
        )
    if len(params) > len(kdef.params):
        usage = _usage(kdef)
        raise KernelError(
            f"kernel '{kdef.name}' takes {len(kdef.params)} parameter(s), got {len(params)}",
            hint=f"write it as {usage}",
        )
    components, combine = kdef.build(*params)
    if sum(c.size for c in components) > MAX_KERNEL_WEIGHTS:
        raise KernelError(
            f"kernel '{name}' would have {components[0].size} weights",
            hint="use a smaller size",
        )
    return Kernel(_spec_text(kdef.name, params), tuple(components), combine, kdef.description)


def _spec_text(name: str, params: Sequence[float]) -> str:
    """A bank kernel with its parameter values as a spec: ``gaussian:7,1.5``."""
    return name + (":" + ",".join(f"{p:g}" for p in params) if params else "")


def _usage(kdef: KernelDef) -> str:
    if not kdef.params:
        return f"'{kdef.name}'"
    return f"'{kernel_usage(kdef)}' (e.g. '{_spec_text(kdef.name, kdef.defaults)}')"


def kernel_usage(kdef: KernelDef) -> str:
    """How to write a bank kernel with its parameters, e.g. ``gaussian:size,sigma``."""
    return kdef.name + (":" + ",".join(kdef.params) if kdef.params else "")


# ---------------------------------------------------------------------------
# the spec parser
# ---------------------------------------------------------------------------

_NAME = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_-]*)\s*(?::(.*))?$")


def parse_kernel(spec: str) -> Kernel:
    """Turn a ``--kernel`` spec (name, ``name:params``, inline rows or a file) into a Kernel."""
    if spec is None or not str(spec).strip():
        raise KernelError("empty kernel spec", hint="give a name such as 'sobel' or rows '1,0,-1'")
    spec = str(spec).strip()
    if spec.lower().endswith(KERNEL_FILE_EXTENSIONS) or _is_file(spec):
        return load_kernel_file(spec)
    match = _NAME.match(spec)
    if match:
        name, params = match.group(1), match.group(2)
        values = _numbers(params, f"parameters of '{name}'") if params is not None else []
        return named_kernel(name, values)
    slices = [_parse_rows(part, spec) for part in spec.split("|")]
    return _from_slices(slices, "custom", spec)


def _is_file(spec: str) -> bool:
    """Whether ``spec`` names an existing file; a long inline kernel is no file name."""
    try:
        return Path(spec).is_file()
    except OSError:  # ENAMETOOLONG: is_file() only swallows "does not exist" errors
        return False


def _parse_number(token: str, where: str, weight: bool = False) -> float:
    # Fractions such as 1/16 make normalised kernels easy to type; no eval involved.
    try:
        if "/" in token:
            num, den = token.split("/", 1)
            value = float(num) / float(den)
        else:
            value = float(token)
    except (ValueError, ZeroDivisionError):
        raise KernelError(
            f"'{token}' in {where} is not a number",
            hint="separate values with ',' or spaces and rows with ';'",
        ) from None
    if not math.isfinite(value):
        raise KernelError(f"{where} contains '{token}' (not finite)", hint="use finite numbers")
    if weight and abs(value) > FLOAT32_MAX:
        raise KernelError(
            f"{where} contains '{token}' (not finite in float32, the precision used)",
            hint=f"use weights within ±{FLOAT32_MAX:.3g}",
        )
    return value


def _numbers(text: str, where: str, weights: bool = False) -> list[float]:
    tokens = [t for t in re.split(r"[,\s]+", text.strip()) if t]
    if not tokens:
        raise KernelError(f"{where} are empty", hint="give numbers after the ':'")
    return [_parse_number(t, where, weights) for t in tokens]


def _parse_rows(text: str, where: str) -> list[list[float]]:
    rows = text.strip().rstrip(";").split(";")
    return [_numbers(row, f"kernel '{where}'", True) if row.strip() else [] for row in rows]


def _from_slices(slices: list[list[list[float]]], name: str, where: str) -> Kernel:
    """Check a list of 2D slices (rows of numbers) and build a 2D or 3D kernel."""
    for rows in slices:
        if not rows or any(not row for row in rows):
            raise KernelError(
                f"kernel '{where}' has an empty row or slice",
                hint="rows are separated by ';' (or lines), slices by '|' (or blank lines)",
            )
        widths = {len(row) for row in rows}
        if len(widths) > 1:
            raise KernelError(
                f"kernel '{where}' is ragged: rows have {sorted(widths)} values",
                hint="every row needs the same number of values",
            )
    shapes = {(len(rows), len(rows[0])) for rows in slices}
    if len(shapes) > 1:
        raise KernelError(
            f"kernel '{where}' has slices of different shapes {sorted(shapes)}",
            hint="every time slice of a 3D kernel needs the same rows and columns",
        )
    array = np.array(slices, dtype=np.float64)
    return kernel_from_array(array[0] if len(slices) == 1 else array, name)


def kernel_from_array(array: np.ndarray, name: str = "custom") -> Kernel:
    """Wrap a 2D (kH×kW) or 3D (kT×kH×kW) numeric array, refusing NaN/inf and empty arrays."""
    array = np.asarray(array)
    if array.dtype.kind not in "biuf":
        raise KernelError(f"kernel '{name}' holds {array.dtype} values", hint="use a numeric array")
    if array.ndim not in (2, 3):
        raise KernelError(
            f"kernel '{name}' has {array.ndim} dimension(s), shape {array.shape}",
            hint="a kernel is 2D (rows×cols) or 3D (time×rows×cols)",
        )
    if array.size == 0:
        raise KernelError(f"kernel '{name}' is empty (shape {array.shape})", hint="give weights")
    if array.size > MAX_KERNEL_WEIGHTS:
        raise KernelError(f"kernel '{name}' has {array.size} weights", hint="use a smaller kernel")
    weights = array.astype(np.float64)
    if not np.isfinite(weights).all():
        raise KernelError(f"kernel '{name}' contains NaN or infinite values", hint="fix them")
    largest = float(np.abs(weights).max())
    if largest > FLOAT32_MAX:
        raise KernelError(
            f"kernel '{name}' contains values not finite in float32, the precision used "
            f"(largest |value| {largest:.3g})",
            hint=f"use weights within ±{FLOAT32_MAX:.3g}",
        )
    return Kernel(name, (np.ascontiguousarray(weights),), None, "")


def load_kernel_file(path: str | Path) -> Kernel:
    """Read a kernel from .txt/.csv (rows; blank line or '|' between time slices) or .npy."""
    path = Path(path)
    if not path.is_file():
        raise KernelError(
            f"kernel file not found: {path}",
            hint="give an existing .txt/.csv/.npy file, or a kernel name (see --list-kernels)",
        )
    name = path.stem
    if path.suffix.lower() == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise KernelError(
                f"cannot read kernel file {path}: {exc}",
                hint="save it with numpy.save as a plain numeric array",
            ) from None
        return kernel_from_array(array, name)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise KernelError(f"cannot read kernel file {path}: {exc}", hint="check the file") from None
    slices: list[list[list[float]]] = [[]]
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line == "|":
            if slices[-1]:
                slices.append([])
            continue
        slices[-1].extend(_parse_rows(line, str(path)))
    if not slices[-1]:
        slices.pop()
    if not slices:
        raise KernelError(f"kernel file {path} holds no values", hint="write one row per line")
    return _from_slices(slices, name, str(path))


# ---------------------------------------------------------------------------
# text form, for --explain and --list-kernels
# ---------------------------------------------------------------------------


def _format_value(value: float, integers: bool) -> str:
    if integers:
        return str(int(value))
    text = f"{value:.4g}"
    return "0" if text in ("0", "-0") else text


def format_matrix(weights: np.ndarray) -> str:
    """A 2D or 3D weight array as right-aligned rows; 3D slice by slice (``t=0:`` ...)."""
    integers = bool(np.all(weights == np.round(weights)))
    cells = np.vectorize(lambda v: _format_value(v, integers), otypes=[object])(weights)
    width = max(len(c) for c in cells.ravel())

    def rows(plane: np.ndarray) -> list[str]:
        return ["  ".join(c.rjust(width) for c in row) for row in plane]

    if weights.ndim == 2:
        return "\n".join(rows(cells))
    lines = []
    for t, plane in enumerate(cells):
        lines.append(f"t={t}:")
        lines.extend("  " + r for r in rows(plane))
    return "\n".join(lines)


def format_kernel(kernel: Kernel) -> str:
    """The kernel's matrix, or for a magnitude kernel both components and the rule."""
    if not kernel.is_magnitude:
        return format_matrix(kernel.weights)
    parts = [
        f"g{axis}:\n{format_matrix(c)}" for axis, c in zip("xy", kernel.components, strict=False)
    ]
    return "\n".join(parts) + "\nresult = sqrt(gx² + gy²)"
