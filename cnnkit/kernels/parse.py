"""The kernel-spec parser: names with parameters, inline rows, .txt/.csv/.npy files."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from cnnkit.errors import KernelError
from cnnkit.kernels.bank import named_kernel
from cnnkit.kernels.kernel import FLOAT32_MAX, KERNEL_FILE_EXTENSIONS, MAX_KERNEL_WEIGHTS, Kernel

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
