"""Feature maps and kernels as pictures: PNG grids of tiles for ``cnnkit inspect``.

Each activation map (or filter) becomes one tile, scaled to 0-255 on its own;
small tiles are enlarged (nearest) so a 3×3 filter is still visible. torch is
imported lazily.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cnnkit.errors import ModelError
from cnnkit.summary.layers import is_conv

_GAP = 2  # pixels between tiles
_GAP_VALUE = 96  # mid-dark gray, so black and white tiles both stand out from the lines
_TILE_TARGET = 64  # small maps and kernels are enlarged (nearest) to at least this many pixels


def _stretch_to_pixels(maps: np.ndarray, symmetric: bool) -> np.ndarray:
    """Scale one map or filter to 0-255: min-max, or around 0 (0 -> mid gray) if symmetric."""
    maps = maps.astype(np.float64)
    if symmetric:
        peak = float(np.abs(maps).max())
        scaled = 127.5 + 127.5 * maps / peak if peak > 0 else np.full_like(maps, 127.5)
    else:
        lo, hi = float(maps.min()), float(maps.max())
        scaled = (maps - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(maps)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def tile_grid(tiles: Sequence[np.ndarray], columns: int, scale: int = 1) -> np.ndarray:
    """Lay out equal-sized H×W (or H×W×3) uint8 tiles row by row, enlarged ``scale`` times."""
    first = np.repeat(np.repeat(tiles[0], scale, axis=0), scale, axis=1)
    th, tw = first.shape[:2]
    rows = math.ceil(len(tiles) / columns)
    shape = (rows * (th + _GAP) + _GAP, columns * (tw + _GAP) + _GAP, *first.shape[2:])
    grid = np.full(shape, _GAP_VALUE, dtype=np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        y, x = _GAP + r * (th + _GAP), _GAP + c * (tw + _GAP)
        grid[y : y + th, x : x + tw] = np.repeat(np.repeat(tile, scale, axis=0), scale, axis=1)
    return grid


def _scale_for(size: int) -> int:
    return max(1, math.ceil(_TILE_TARGET / max(1, size)))


def _conv_layers(model: Any) -> list[tuple[str, Any]]:
    return [(n, m) for n, m in model.named_modules() if n and is_conv(m)]


def feature_map_grids(model: Any, image: Any, out_dir: str | Path) -> list[dict[str, Any]]:
    """Write one PNG grid of activations per convolution layer; return what was written.

    ``image``: a float tensor (1, C, H, W), or (1, C, T, H, W) for clip models.
    Each map is scaled to 0-255 on its own. 2D maps are tiled in a square-ish grid;
    3D maps (and frame-wise 2D maps in a clip model) get one row per channel and
    one column per frame. Files: ``01-features.0.png``, ``02-...`` in call order.
    """
    import torch

    from cnnkit.io.atomic import make_folder
    from cnnkit.io.image import write_image

    out_dir = make_folder(out_dir, "feature-map folder")
    captured: list[tuple[str, np.ndarray]] = []
    handles = [
        module.register_forward_hook(
            lambda _m, _a, out, name=name: captured.append((name, out.detach().float().numpy()))
        )
        for name, module in _conv_layers(model)
    ]
    model.eval()
    try:
        with torch.no_grad():
            model(image)
    finally:
        for handle in handles:
            handle.remove()

    written = []
    for index, (name, act) in enumerate(captured, 1):
        if act.ndim == 4 and act.shape[0] > 1:
            act = act.transpose(1, 0, 2, 3)[None]  # frames folded into the batch: (1, C, T, H, W)
        maps = act[0]
        if maps.ndim == 3:  # (C, H, W)
            tiles = [_stretch_to_pixels(m, symmetric=False) for m in maps]
            columns = math.ceil(math.sqrt(len(tiles)))
        else:  # (C, T, H, W): a row per channel, a column per frame
            tiles = [_stretch_to_pixels(m, symmetric=False) for channel in maps for m in channel]
            columns = maps.shape[1]
        grid = tile_grid(tiles, columns, _scale_for(max(maps.shape[-2:])))
        path = out_dir / f"{index:02d}-{name}.png"
        write_image(path, grid)
        written.append({"layer": name, "path": str(path), "shape": list(maps.shape)})
    return written


def kernel_grid(model: Any, path: str | Path) -> dict[str, Any]:
    """Write the first convolution's filters as one PNG grid; return what was written.

    Each filter is scaled around 0 on its own (0 mid gray, positive bright,
    negative dark). Filters over 3 channels are shown in colour; over 1 channel in
    gray; over other counts as the mean over channels. 2D: a square-ish grid of
    filters; 3D: one column per filter, one row per time slice.
    """
    from cnnkit.io.image import write_image

    convs = _conv_layers(model)
    if not convs:
        raise ModelError("this model has no convolution, so it has no kernels to draw")
    name, conv = convs[0]
    weight = conv.weight.detach().float().numpy()  # (out, in, [kt,] kh, kw)
    if weight.shape[1] != 3:
        weight = weight.mean(axis=1, keepdims=True)
    symmetric = [_stretch_to_pixels(f, symmetric=True) for f in weight]
    # channels last so colour filters are RGB tiles: (out, [kt,] kh, kw, C)
    filters = [np.moveaxis(f, 0, -1) if f.shape[0] == 3 else f[0] for f in symmetric]
    if weight.ndim == 4:
        tiles = filters
        columns = math.ceil(math.sqrt(len(tiles)))
    else:
        kt = weight.shape[2]
        tiles = [filters[o][t] for t in range(kt) for o in range(len(filters))]
        columns = len(filters)
    grid = tile_grid(tiles, columns, _scale_for(max(weight.shape[-2:])))
    write_image(path, grid)
    return {"layer": name, "path": str(path), "weight_shape": list(conv.weight.shape)}
