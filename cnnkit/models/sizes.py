"""Whether an input size fits a model, checked before any data is read.

Pooling and unpadded convolutions shrink their input; an input that is too
small (LeNet-5 at 4×4, a 3D network on 1-frame clips) fails deep inside the
network with a shape error. Here the model is run on torch's ``meta`` device,
which computes shapes and nothing else, so the check takes milliseconds even
for large models, and the smallest size that works is found by bisection.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from cnnkit.errors import ModelError

MAX_SIDE = 1024  # largest H = W tried when looking for the smallest size that works
MAX_FRAMES = 64  # largest T tried


def forward_error(name: str, shape: Sequence[int]) -> str | None:
    """None when model ``name`` takes one input of ``shape`` (C, H, W) or (C, T, H, W); else why."""
    import torch

    from cnnkit.models.registry import create_model

    shape = tuple(int(v) for v in shape)
    try:
        with torch.device("meta"):
            model = create_model(name, num_classes=2, in_channels=shape[0], input_size=shape)
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *shape, device="meta"))
    except (RuntimeError, ValueError) as exc:
        lines = str(exc).strip().splitlines()
        return lines[0] if lines else type(exc).__name__
    return None


def _smallest(works: Callable[[int], bool], low: int, high: int) -> int | None:
    """The smallest n in [low, high] with works(n), assuming works is monotone; None if none."""
    if not works(high):
        return None
    while low < high:
        mid = (low + high) // 2
        if works(mid):
            high = mid
        else:
            low = mid + 1
    return low


def check_input_fits(name: str, shape: Sequence[int], frames_flag: str = "--frames") -> None:
    """ModelError naming the smallest frames or pixels that work when ``shape`` is too small.

    ``frames_flag`` is the option the hint tells the user to raise for clips
    that are too short: train's ``--frames``, predict's ``--window``.
    """
    shape = tuple(int(v) for v in shape)
    reason = forward_error(name, shape)
    if reason is None:
        return
    size = "×".join(map(str, shape))
    if len(shape) == 4:
        c, t, h, w = shape
        if t < MAX_FRAMES and forward_error(name, (c, MAX_FRAMES, h, w)) is None:
            least = _smallest(
                lambda n: forward_error(name, (c, n, h, w)) is None, t + 1, MAX_FRAMES
            )
            raise ModelError(
                f"model '{name}' needs clips of at least {least} frames, got {t} (input {size})",
                hint=f"use {frames_flag} {least} or more",
            )
    h, w = shape[-2:]
    base = shape[:-2]
    side = max(h, w)
    if side < MAX_SIDE:
        least = _smallest(
            lambda n: forward_error(name, (*base, n, n)) is None, min(h, w) + 1, MAX_SIDE
        )
        if least is not None:
            raise ModelError(
                f"model '{name}' needs inputs of at least {least}×{least} pixels, got {h}×{w}",
                hint=f"use --img-size {least} or more",
            )
    raise ModelError(
        f"model '{name}' cannot take an input of size {size}: {reason}",
        hint=f"check --img-size and {frames_flag} against `cnnkit inspect {name}`",
    )
