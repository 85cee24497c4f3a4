"""The named kernel bank: fixed kernels, gradients, and parametrised ones (size, sigma)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from cnnkit.errors import KernelError, close_match_hint
from cnnkit.kernels.kernel import MAX_KERNEL_WEIGHTS, Kernel

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
