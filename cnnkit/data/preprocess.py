"""The one preprocessing path shared by training, eval and predict.

Every image or clip, whether it comes from torchvision's IDX files, a PNG on
disk or a video frame, goes through these functions, so a model sees the same
numbers at training and at inference time. Pixels stay uint8 until the batch
is on the device; ``normalize`` turns a batch into floats there.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from cnnkit.errors import InputError
from cnnkit.spec import WHITE

Colour = tuple[int, int, int]


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


def drawn_in_alpha(image: np.ndarray) -> bool:
    """Whether an image with alpha (H×W×2 or H×W×4) holds its picture in the alpha channel only.

    Drawing apps and web canvases save strokes on a transparent canvas this
    way: every pixel that shows has the same colour (often black, RGB 0) and
    only alpha varies. Dropping alpha leaves a blank image. Fully transparent
    pixels show nothing, so their colour does not count.
    """
    if image.ndim != 3 or image.shape[2] not in (2, 4) or image.size == 0:
        return False
    alpha = image[:, :, -1]
    if alpha.min() == alpha.max():
        return False
    visible = image[:, :, :-1][alpha > 0]  # N×C: the colours of the pixels that show
    return bool((visible == visible[0]).all())


def flatten_alpha(image: np.ndarray, background: Colour = WHITE) -> tuple[np.ndarray, str | None]:
    """An image without its alpha channel, and what was done: "composited", "dropped" or None.

    An image drawn only in alpha (see drawn_in_alpha) is composited over
    ``background`` (RGB, 0-255 whatever the dtype); any other alpha is dropped,
    as viewers that ignore transparency show it. Images without alpha are
    returned as they are, with None.
    """
    if image.ndim != 3 or image.shape[2] not in (2, 4):
        return image, None
    if not drawn_in_alpha(image):
        return image[:, :, :-1], "dropped"
    full = float(np.iinfo(image.dtype).max) if np.issubdtype(image.dtype, np.integer) else 1.0
    if image.shape[2] == 2:  # gray + alpha: the background's own gray (BT.601, as cvtColor)
        red, green, blue = background
        back = np.array([0.299 * red + 0.587 * green + 0.114 * blue], np.float32)
    else:
        back = np.asarray(background, np.float32)
    back *= full / 255.0
    alpha = image[:, :, -1:].astype(np.float32) / full
    out = image[:, :, :-1] * alpha + back * (1.0 - alpha)
    if np.issubdtype(image.dtype, np.integer):
        out = np.clip(np.rint(out), 0, full)
    return out.astype(image.dtype), "composited"


def parse_colour(text: str) -> Colour:
    """A --background colour: white, black, gray, #RRGGBB or R,G,B (0-255 each)."""
    named = {"white": WHITE, "black": (0, 0, 0), "gray": (128, 128, 128), "grey": (128, 128, 128)}
    value = text.strip().lower()
    if value in named:
        return named[value]
    # Plain digits only: int() would also take signs, spaces and underscores ("1_0").
    if re.fullmatch(r"#[0-9a-f]{6}", value):
        parts = [int(value[i : i + 2], 16) for i in (1, 3, 5)]
    elif re.fullmatch(r"\d{1,3}, *\d{1,3}, *\d{1,3}", value):
        parts = [int(v) for v in value.split(",")]
    else:
        parts = []
    if len(parts) != 3 or not all(0 <= v <= 255 for v in parts):
        raise InputError(
            f"--background {text!r} is not a colour",
            hint="use white, black, gray, #RRGGBB or R,G,B with values 0-255",
        )
    return parts[0], parts[1], parts[2]


def colour_text(colour: Colour) -> str:
    """white, black, gray or #RRGGBB: a --background colour as the user would write it."""
    names = {WHITE: "white", (0, 0, 0): "black", (128, 128, 128): "gray"}
    return names.get(tuple(colour), "#{:02x}{:02x}{:02x}".format(*colour))


def alpha_note(how: str, background: Colour) -> str:
    """What flatten_alpha did, in words for stderr and a run's decisions."""
    if how == "composited":
        return (
            f"images drawn only in their alpha channel (a transparent canvas) are composited "
            f"over {colour_text(background)}; --background changes the colour"
        )
    return "the alpha channel of images is dropped (their colour is used as it is)"


def fit_channels(image: np.ndarray, channels: int, background: Colour = WHITE) -> np.ndarray:
    """H×W or H×W×C (RGB/RGBA order) -> H×W×``channels``.

    Alpha is dropped, or composited over ``background`` for images drawn only
    in alpha (flatten_alpha); colour becomes gray with OpenCV's BT.601
    weights; gray is repeated to three channels.
    """
    if image.ndim == 2:
        image = image[:, :, None]
    image, _ = flatten_alpha(image, background)
    c = image.shape[2]
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


def prepare_image(
    image: np.ndarray, channels: int, size: Sequence[int], background: Colour = WHITE
) -> np.ndarray:
    """Any decoded image -> C×H×W uint8, ready to stack into a batch.

    ``background``: what an image drawn only in its alpha channel is put on.
    """
    image = fit_channels(to_uint8(image), channels, background)
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


# Lossy codecs store colour as chroma planes, so gray content decodes with its
# channels a level or two apart (measured: up to 2 of 255 for MJPG, MPEG-4 and
# VP8 videos of gray frames). Differences this small are not colour.
GRAY_TOLERANCE = 4 / 255  # of the dtype's full range


def has_colour(image: np.ndarray) -> bool:
    """Whether an H×W×C image (or a stack of them, N×H×W×C) shows colour: its first 3
    channels differ somewhere.

    Channels within ``GRAY_TOLERANCE`` of each other everywhere (exactly equal in a
    gray PNG or GIF read as 3-4 channels, a level or two apart in a decoded
    gray video frame) count as gray. Images with fewer than 3 channels are gray.
    """
    if image.ndim < 3 or image.shape[-1] < 3:
        return False
    full = np.iinfo(image.dtype).max if np.issubdtype(image.dtype, np.integer) else 1.0
    tolerance = GRAY_TOLERANCE * full
    red = image[..., 0]
    for other in (image[..., 1], image[..., 2]):
        # max - min: the absolute difference without leaving the image's dtype (no copy
        # into a wider type, and no wrap-around of unsigned values).
        if (np.maximum(red, other) - np.minimum(red, other)).max() > tolerance:
            return True
    return False
