"""Predictor: one model ready for inference, whatever runs it.

It holds a backend (cnnkit.backends: torch or ONNX Runtime) and the model's
classes and input spec, and prepares inputs exactly as training did
(cnnkit.data.preprocess: alpha, channels, size; the backend normalises).
Conversions are said once, through the ``cnnkit`` logger.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from cnnkit import console
from cnnkit.backends import Backend
from cnnkit.data.preprocess import (
    alpha_note,
    fit_size,
    flatten_alpha,
    has_colour,
    prepare_clip,
    prepare_image,
)
from cnnkit.errors import InputError
from cnnkit.spec import InputSpec

Record = dict[str, Any]


class Predictor:
    """A model ready for inference: classes, input spec and a backend for its logits.

    ``logits(batch)`` takes uint8 batches prepared by ``prepare_image`` (N×C×H×W)
    or ``prepare_clip`` (N×C×T×H×W) and returns N×K float32 logits on the CPU.
    """

    def __init__(
        self,
        backend: Backend,
        classes: Sequence[str],
        input_spec: InputSpec,
        batch_size: int = 64,
        name: str = "",
    ) -> None:
        if batch_size < 1:
            raise InputError(f"batch size must be at least 1, got {batch_size}")
        self.backend = backend
        self.classes = list(classes)
        self.input = input_spec
        self.batch_size = batch_size
        self.name = name
        # Conversions already noted; decoding runs on several threads.
        self._noted: set[str] = set()
        self._noted_lock = threading.Lock()

    @classmethod
    def from_model(
        cls,
        model: Any,
        classes: Sequence[str],
        input_spec: InputSpec,
        device: str = "cpu",
        batch_size: int = 64,
        name: str = "",
        compute: Any = None,
    ) -> Predictor:
        """A Predictor for an ``nn.Module`` (the torch backend).

        ``compute``: how it computes (cnnkit.precision.Compute; None: float32,
        contiguous).
        """
        from cnnkit.backends.torch import TorchBackend

        backend = TorchBackend(model, input_spec, device, name, compute=compute)
        return cls(backend, classes, input_spec, batch_size, name)

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, device: str = "cpu", batch_size: int = 64
    ) -> Predictor:
        """Load a ``.ckpt`` weights-only (no Lightning, no unpickling of code), build its model."""
        from cnnkit.checkpoint import load_checkpoint

        return cls.from_loaded(load_checkpoint(path), device, batch_size)

    @classmethod
    def from_loaded(cls, ckpt: Any, device: str = "cpu", batch_size: int = 64) -> Predictor:
        """Build the model of a loaded ``LoadedCheckpoint``, computing as it was trained."""
        from cnnkit.checkpoint import build_model
        from cnnkit.precision import for_checkpoint

        model = build_model(ckpt)
        compute = for_checkpoint("auto", device, model, ckpt)
        return cls.from_model(
            model, ckpt.classes, ckpt.input, device, batch_size, ckpt.model_name, compute
        )

    @property
    def device(self) -> str:
        return self.backend.device

    @property
    def model(self) -> Any:
        """The torch model (torch backend only: explain's gradients need it)."""
        model = getattr(self.backend, "model", None)
        if model is None:
            raise InputError(
                "this needs the torch model; an .onnx runs in ONNX Runtime",
                hint="use the .ckpt the .onnx was exported from",
            )
        return model

    def set_background(self, colour: Sequence[int]) -> None:
        """Composite images drawn only in alpha over ``colour`` (RGB 0-255) instead."""
        r, g, b = (int(v) for v in colour)
        self.input = replace(self.input, background=(r, g, b))

    @property
    def is_video_model(self) -> bool:
        """True for 3D models, which take clips of ``input.frames`` frames."""
        return self.input.frames is not None

    def check_window(self, window: int) -> None:
        """Refuse windows of ``window`` frames this 3D model cannot take, before decoding."""
        if self.is_video_model:
            self.backend.check_window(window)

    def cpu_threads(self) -> int:
        """The CPU threads the model computes with (0 on a GPU: the CPU is left to decoding)."""
        return self.backend.cpu_threads()

    def logits(self, batch: Any) -> np.ndarray:
        """uint8 batch (N×C×H×W or N×C×T×H×W) -> N×K float32 logits."""
        return self.backend.logits(batch)

    def logits_in_batches(self, data: Any) -> Any:
        """Yield logits for ``data`` (N×C×... uint8) ``batch_size`` samples at a time."""
        for start in range(0, len(data), self.batch_size):
            yield self.logits(data[start : start + self.batch_size])

    def prepare_image(self, image: np.ndarray) -> np.ndarray:
        """Decoded H×W[×C] RGB image -> C×H×W uint8 at the model's channels and size.

        Alpha is composited or dropped first (flatten_alpha), and said once.
        """
        image, how = flatten_alpha(image, self.input.background)
        if how is not None:
            self.note_once(how, alpha_note(how, self.input.background))
        self.note_channels(image)
        return prepare_image(image, self.input.channels, self.input.size)

    def prepare_frame(self, frame: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """A decoded BGR video frame (H×W×3 uint8) -> C×H×W uint8, into ``out`` if given.

        The same bits as ``prepare_image`` on the frame in RGB order, without
        converting it first: the gray conversion weighs each channel by its
        role, the resize treats channels alike, and the channels are put in
        RGB order by the one copy into C×H×W.
        """
        channels = self.input.channels
        plain = frame.ndim == 3 and frame.shape[2] == 3 and frame.dtype == np.uint8
        if not plain or channels not in (1, 3):
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) if frame.ndim == 3 else frame
            prepared = self.prepare_image(rgb)
            if out is None:
                return prepared
            out[...] = prepared
            return out
        self.note_channels(frame)
        image = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)[:, :, None] if channels == 1 else frame
        image = fit_size(image, self.input.size)
        if out is None:
            out = np.empty((channels, *image.shape[:2]), np.uint8)
        if channels == 3:
            out[...] = image[:, :, ::-1].transpose(2, 0, 1)
        else:
            out[0] = image[:, :, 0]
        return out

    def prepare_clip(self, frames: np.ndarray) -> np.ndarray:
        """T×H×W[×C] frames -> C×T×H×W uint8 at the model's channels and size."""
        if len(frames):
            # Frames stacked into one tall image: any coloured frame counts as colour.
            self.note_channels(frames.reshape(-1, *frames.shape[2:]))
        return prepare_clip(frames, self.input.channels, self.input.size)

    def note_once(self, kind: str, message: str) -> None:
        """Say ``message`` the first time a conversion of ``kind`` happens.

        A colour photo given to a gray digit model still gets an answer; the
        user should know it was converted, once, not once per image.
        """
        with self._noted_lock:
            if kind in self._noted:
                return
            self._noted.add(kind)
        console.info(f"note: {message}")

    def note_channels(self, image: np.ndarray) -> None:
        """Note how an H×W[×C] image's channels are converted to the model's (see fit_channels).

        Colour is noted only for images that have it (see ``has_colour``): a gray
        picture stored in three channels (a GIF, a video frame) converts to gray
        unchanged. A stack of images alike (N×H×W×C) is noted as one.
        """
        last = image.shape[-1]
        channels = 1 if image.ndim == 2 else last - (last in (2, 4))
        want = self.input.channels
        if channels >= 3 and want == 1:
            # One test (two passes over the pixels) per input until the note is given.
            if "gray" not in self._noted and has_colour(image):
                self.note_once(
                    "gray", "colour inputs are converted to gray for this 1-channel model"
                )
        elif channels < 3 and want == 3:
            self.note_once("colour", "gray inputs are repeated to 3 channels for this colour model")

    def label_scores(self, probs: np.ndarray, top_k: int) -> list[Record]:
        """N×K probabilities -> one {"label", "score", "topk"} dict per row, class names."""
        return self.records(None, probs, top_k)

    def records(
        self, paths: Sequence[str | None] | None, probs: np.ndarray, top_k: int
    ) -> list[Record]:
        """One {"path", "label", "score", "topk"} record per row of N×K ``probs``.

        ``paths``: the inputs' paths, first in each record; None: records without one
        (see label_scores).
        """
        k = max(1, min(top_k, probs.shape[1]))
        order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        # Python lists, not numpy scalars: indexing and float() per value cost more
        # than the rest of a record; the labels are taken by numpy too.
        scores = rounded(np.take_along_axis(probs, order, axis=1).astype(np.float64))
        labels = np.array(self.classes, dtype=object)[order].tolist()
        out = []
        rows = zip(paths or [None] * len(probs), labels, scores, strict=True)
        for path, names, row in rows:
            topk = [{"label": name, "score": v} for name, v in zip(names, row, strict=True)]
            if paths is None:
                out.append({"label": names[0], "score": row[0], "topk": topk})
            else:
                out.append({"path": path, "label": names[0], "score": row[0], "topk": topk})
        return out


def rounded(values: np.ndarray, digits: int = 6) -> list[Any]:
    """``values`` (float64, any shape) as nested lists of ``round(v, digits)``, bit for bit.

    Python's round per value costs more than the rest of a record. Here the
    array is rounded in numpy: ``rint(v * 10**digits) / 10**digits`` is the
    float nearest the same decimal as Python's round (a correctly rounded
    division of two exact numbers) wherever the product picks the same whole
    number, that is unless it lies within rounding error of a half; those few
    values, and any array too large for that argument, are rounded by Python.
    """
    scale = 10.0**digits
    if values.size == 0 or not np.all(np.abs(values) < 2.0**40 / scale):
        return np.vectorize(lambda v: round(float(v), digits), otypes=[object])(values).tolist()
    scaled = values * scale
    out = (np.rint(scaled) / scale).tolist()
    near_half = np.abs(scaled - np.floor(scaled) - 0.5) < 1e-6
    for at in zip(*np.nonzero(near_half), strict=True):
        inner = out
        for i in at[:-1]:
            inner = inner[i]
        inner[at[-1]] = round(float(values[at]), digits)
    return out
