"""Decode a chunk of image inputs into one batch-ready array, with little Python per image.

Predict's decode threads share the interpreter's lock with the thread that
runs the model and builds the records: every line of Python they run per
image is time the others wait. So a chunk of inputs is read and decoded one
by one (reading and OpenCV's decoder release the lock), and what can be done
for the whole chunk at once is: images of one shape are stacked, converted to
the model's channels by one colour conversion over the stack, resized one by
one into a preallocated array, and put in C×H×W order by one copy. The result
is the same bits as ``Predictor.prepare_image`` on each image (the tests hold
them side by side); anything else (alpha, 16-bit or float pixels, odd
channel counts) takes that per-image path.

Files are decoded in OpenCV's BGR order and never converted to RGB: the gray
conversion weighs each channel by its role, the resize treats channels alike,
and the channels are put in RGB order by the one copy into C×H×W.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from cnnkit.errors import CnnkitError, InputError
from cnnkit.io._opencv import cv2
from cnnkit.io.headers import max_image_pixels
from cnnkit.io.image import read_image, read_image_bytes

if TYPE_CHECKING:
    from cnnkit.predict.predictor import Predictor


def error_text(exc: BaseException) -> str:
    """An input's error as its record says it: a CnnkitError's message, else type and text."""
    if isinstance(exc, CnnkitError):
        return exc.message
    return f"{type(exc).__name__}: {exc}"


class StoppedError(Exception):
    """An input given up because the consumer of the chunk has gone."""


@dataclass(slots=True)
class DecodedChunk:
    """A chunk's images, prepared: ``batch`` holds the good ones (N×C×H×W uint8, in
    input order); ``errors`` has one entry per input, None for those in ``batch``."""

    batch: np.ndarray
    errors: list[BaseException | None]


def decode_chunk(
    predictor: Predictor,
    items: list[Any],
    stopped: Callable[[], bool] | None = None,
    max_pixels: int | None = None,
) -> DecodedChunk:
    """Read, decode and prepare ``items`` (paths or PredictInputs) for ``predictor``.

    An input that cannot be read or prepared gets its exception in ``errors``;
    the others go on. Once ``stopped()`` is true (the consumer has gone) the
    inputs not yet read are given up, each with a StoppedError. Decoded
    images wait to be prepared together only up to RUN_BYTES: a chunk of
    large photos is prepared one by one, as each is decoded. ``max_pixels``:
    the pixel limit as the caller read it (a decode process gets its parent's).
    """
    limit = max_pixels or max_image_pixels()  # read once for the chunk
    n = len(items)
    spec = predictor.input
    size = spec.size  # a large JPEG decodes at a reduced scale to it, as in training
    out = np.empty((n, spec.channels, *spec.size), np.uint8)
    errors: list[BaseException | None] = [None] * n
    run: list[tuple[int, np.ndarray]] = []  # decoded, alike, not yet prepared
    run_key: tuple | None = None
    run_bytes = 0
    for i, item in enumerate(items):
        if stopped is not None and stopped():
            for j in range(i, n):
                errors[j] = StoppedError("stopped before this input was read")
            break
        bgr = True  # decoded from a file: OpenCV's order, never swapped
        try:
            if isinstance(item, str):
                image = read_image(item, False, limit, size)
            elif item.error:
                raise InputError(item.error)
            elif item.image is not None:  # an RGB array given by a Python caller
                image, bgr = item.image, False
            elif item.data is not None:
                image = read_image_bytes(item.data, item.path, False, limit, size)
            else:
                image = read_image(item.path, False, limit, size)
        except Exception as exc:  # reported per input, the others go on
            errors[i] = exc
            continue
        key = _plain_key(image, bgr)
        if run and (key != run_key or run_bytes + image.nbytes > RUN_BYTES):
            _prepare_together(predictor, run, run_key, out, errors)
            run, run_bytes = [], 0
        if key is None:
            _prepare_one(predictor, i, image, bgr, out, errors)
            continue
        run.append((i, image))
        run_key = key
        run_bytes += image.nbytes
    if run:
        _prepare_together(predictor, run, run_key, out, errors)
    if any(errors):
        out = out[[i for i in range(n) if errors[i] is None]]
    return DecodedChunk(out, errors)


# Decoded images a decode thread holds at most before preparing them together:
# small images gain from it, large ones take far longer to decode than their
# few calls cost, and each thread must hold about one of them, not a chunk.
RUN_BYTES = 4 * 2**20


def _prepare_together(
    predictor: Predictor,
    run: list[tuple[int, np.ndarray]],
    key: tuple | None,
    out: np.ndarray,
    errors: list[BaseException | None],
) -> None:
    """Prepare a run of alike images into their rows of ``out`` (image by image if that fails)."""
    first, last = run[0][0], run[-1][0]
    bgr = bool(key and key[1])
    if len(run) == 1:  # the image-by-image path costs less for one
        _prepare_one(predictor, first, run[0][1], bgr, out, errors)
        return
    rows = [i for i, _ in run]
    try:
        if last - first + 1 == len(run):  # consecutive rows: written in place
            _prepare_plain(predictor, [image for _, image in run], bgr, out[first : last + 1])
        else:  # inputs that failed in between
            into = np.empty((len(run), *out.shape[1:]), np.uint8)
            _prepare_plain(predictor, [image for _, image in run], bgr, into)
            out[rows] = into
        return
    except Exception:  # noqa: BLE001 - image by image then, each with its own error
        pass
    for i, image in run:
        _prepare_one(predictor, i, image, bgr, out, errors)


def _prepare_one(
    predictor: Predictor,
    i: int,
    image: np.ndarray,
    bgr: bool,
    out: np.ndarray,
    errors: list[BaseException | None],
) -> None:
    try:
        out[i] = predictor.prepare_image(_to_rgb(image) if bgr else image)
    except Exception as exc:  # a float image outside 0-1, a 32-bit TIFF...
        errors[i] = exc


_UINT8 = np.dtype(np.uint8)


def _plain_key(image: Any, bgr: bool) -> tuple | None:
    """What makes images preparable together: 8-bit gray or 3-channel colour, one shape."""
    shape = image.shape
    if image.dtype != _UINT8 or not (len(shape) == 2 or shape[2] == 3):
        return None
    return shape, bgr


def _to_rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
    return image


def _prepare_plain(
    predictor: Predictor, images: list[np.ndarray], bgr: bool, out: np.ndarray
) -> None:
    """Write ``images`` (uint8, all H×W or all H×W×3, one shape) into ``out`` (N×C×h×w)."""
    n = len(images)
    channels = out.shape[1]
    h, w = out.shape[2:]
    # np.array of equal shapes: one copy in C (np.stack goes through Python per image).
    stack = images[0][None] if n == 1 else np.array(images)
    height, width = stack.shape[1:3]
    colour = stack.ndim == 4
    if colour:
        # The note (and its test) as Predictor.note_channels gives it, in RGB order.
        predictor.note_channels(stack[..., ::-1] if bgr else stack)
        if channels == 1:
            # One conversion over the stack: per pixel, the same as image by image.
            code = cv2.COLOR_BGR2GRAY if bgr else cv2.COLOR_RGB2GRAY
            stack = cv2.cvtColor(stack.reshape(n * height, width, 3), code)
            stack = stack.reshape(n, height, width)
            colour = False
    else:
        predictor.note_channels(stack[0])
    if not colour and channels == 3:
        # Gray repeated to three channels before the resize, as fit_channels does.
        stack, colour, bgr = np.repeat(stack[..., None], 3, axis=3), True, False
    if (height, width) != (h, w):
        interp = cv2.INTER_AREA if height * width > h * w else cv2.INTER_LINEAR
        resized = np.empty((n, h, w, 3) if colour else (n, h, w), np.uint8)
        for i in range(n):
            cv2.resize(stack[i], (w, h), dst=resized[i], interpolation=interp)
        stack = resized
    if colour:
        out[...] = (stack[..., ::-1] if bgr else stack).transpose(0, 3, 1, 2)
    else:
        out[:, 0] = stack
