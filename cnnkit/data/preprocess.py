"""The one preprocessing path shared by training, eval and predict.

Every image or clip, whether it comes from torchvision's IDX files, a PNG on
disk or a video frame, goes through these functions, so a model sees the same
numbers at training and at inference time. Pixels stay uint8 until the batch
is on the device; ``normalize`` turns a batch into floats there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Bring 16-bit or float pixels to uint8 (same shape).

    16-bit keeps its high byte. Float pixels must be finite and within 0-1 (the
    convention of float TIFFs): they are scaled by 255 and rounded; anything
    else is a ReadError, as in every command (cnnkit.io.image.check_float_pixels).
    Other integer types (signed 16-bit TIFFs, 32-bit) have no agreed range and
    are refused rather than clipped.
    """
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return (image >> 8).astype(np.uint8)
    if np.issubdtype(image.dtype, np.floating):
        from cnnkit.io.image import check_float_pixels

        check_float_pixels(image)
        # Scaled in float32 (exact enough for 256 levels), and rounded in place.
        scaled = np.multiply(image, np.float32(255.0), dtype=np.float32)
        return np.rint(scaled, out=scaled).astype(np.uint8)
    from cnnkit.errors import ReadError

    raise ReadError(
        f"pixels stored as {image.dtype} have no agreed 0-255 range",
        hint="save the image as 8- or 16-bit unsigned, or as float 0-1",
    )


def fit_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """H×W or H×W×C (RGB/RGBA order) -> H×W×``channels``.

    Alpha is dropped; colour becomes gray with OpenCV's BT.601 weights; gray is
    repeated to three channels.
    """
    if image.ndim == 2:
        image = image[:, :, None]
    c = image.shape[2]
    if c == 4:
        image = image[:, :, :3]
        c = 3
    elif c == 2:  # gray + alpha
        image = image[:, :, :1]
        c = 1
    if c == channels:
        return image
    if channels == 1 and c == 3:
        return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)[:, :, None]
    if channels == 3 and c == 1:
        return np.repeat(image, 3, axis=2)
    raise ValueError(f"cannot convert {c} channels to {channels}")


def fit_size(image: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Resize H×W×C to ``size`` = (H, W): area averaging to shrink, bilinear to grow."""
    h, w = int(size[0]), int(size[1])
    if image.shape[0] == h and image.shape[1] == w:
        return image
    shrinking = image.shape[0] * image.shape[1] > h * w
    interp = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    out = cv2.resize(np.ascontiguousarray(image), (w, h), interpolation=interp)
    if out.ndim == 2:
        out = out[:, :, None]
    return out


def prepare_image(image: np.ndarray, channels: int, size: Sequence[int]) -> np.ndarray:
    """Any decoded image -> C×H×W uint8, ready to stack into a batch."""
    image = fit_channels(to_uint8(image), channels)
    image = fit_size(image, size)
    return np.ascontiguousarray(image.transpose(2, 0, 1))


def prepare_clip(frames: np.ndarray, channels: int, size: Sequence[int]) -> np.ndarray:
    """T×H×W[×C] frames -> C×T×H×W uint8."""
    out = np.stack([prepare_image(f, channels, size) for f in frames], axis=1)
    return np.ascontiguousarray(out)


def normalize(batch: Any, mean: Sequence[float], std: Sequence[float]) -> Any:
    """uint8 batch (N, C, H, W) or (N, C, T, H, W) -> float32 ((x/255) - mean) / std.

    Works on any device; mean and std are per channel.
    """
    import torch

    shape = [1, len(mean)] + [1] * (batch.dim() - 2)
    m = torch.tensor(mean, dtype=torch.float32, device=batch.device).view(shape)
    s = torch.tensor(std, dtype=torch.float32, device=batch.device).view(shape)
    return (batch.float().div_(255.0) - m) / s
