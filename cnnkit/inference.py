"""Predictor: load a checkpoint once, then classify images, frames and clips in batches.

Inputs go through ``cnnkit.data.preprocess`` exactly as in training (channels,
size, frames, then normalisation on the device). Results are produced batch by
batch as generators, so ``cnnkit predict`` can print each batch as soon as it is
ready. Image decoding runs ahead of inference on a small thread pool, and video
frames are decoded on a background thread (``cnnkit.io.readahead``), so the
model rarely waits for the disk. Video windows follow ``cnnkit.data.clips``.

This module never imports Lightning, torchvision datasets or torchmetrics.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from cnnkit import console
from cnnkit.data.clips import sliding_windows
from cnnkit.data.preprocess import (
    alpha_note,
    fit_size,
    flatten_alpha,
    normalize,
    prepare_clip,
    prepare_image,
)
from cnnkit.errors import CnnkitError, InputError
from cnnkit.evaluation.metrics import softmax
from cnnkit.io.pipeline import cpu_cores
from cnnkit.io.readahead import STALL, map_ahead
from cnnkit.spec import InputSpec

Record = dict[str, Any]

# On the CPU a batch goes through the model this many input values at a time. A
# torch op returns to Python, where SIGTERM and Ctrl-C are handled, only when it
# is done: one op on a batch of 256 224×224 images (resnet18, 2 cores) took
# 1.7 s, and one on the largest --batch-size minutes. Chunks of 2M values (13
# such images) bound that to about 0.1 s, and ran faster too (resnet18 on 256
# images: 6.4 s in chunks of 16, 16 s whole: the activations stay in cache).
CPU_CHUNK_VALUES = 2**21


class Predictor:
    """A model ready for inference: weights loaded, eval mode, on one device.

    ``logits(batch)`` takes uint8 batches prepared by ``prepare_image`` (N×C×H×W)
    or ``prepare_clip`` (N×C×T×H×W) and returns N×K float32 logits on the CPU.
    """

    def __init__(
        self,
        model: Any,
        classes: Sequence[str],
        input_spec: InputSpec,
        device: str = "cpu",
        batch_size: int = 64,
        name: str = "",
    ) -> None:
        self._setup(classes, input_spec, device, batch_size, name)
        self.model = model.to(device).eval()

    def _setup(
        self, classes: Sequence[str], input_spec: InputSpec, device: str, batch_size: int, name: str
    ) -> None:
        """Everything but the model (cnnkit.onnxmodel.OnnxPredictor shares it)."""
        if batch_size < 1:
            raise InputError(f"batch size must be at least 1, got {batch_size}")
        self.classes = list(classes)
        self.input = input_spec
        self.device = device
        self.batch_size = batch_size
        self.name = name
        # Conversions already noted on stderr; decoding runs on several threads.
        self._noted: set[str] = set()
        self._noted_lock = threading.Lock()
        self._windows_ok: set[int] = set()  # clip lengths check_window has accepted

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, device: str = "cpu", batch_size: int = 64
    ) -> Predictor:
        """Load ``path`` weights-only (no Lightning, no unpickling of code) and build the model."""
        from cnnkit.checkpoint import load_checkpoint

        return cls.from_loaded(load_checkpoint(path, map_location="cpu"), device, batch_size)

    @classmethod
    def from_loaded(cls, ckpt: Any, device: str = "cpu", batch_size: int = 64) -> Predictor:
        """Build the model of an already loaded ``LoadedCheckpoint``."""
        from cnnkit.checkpoint import build_model

        return cls(build_model(ckpt), ckpt.classes, ckpt.input, device, batch_size, ckpt.model_name)

    def set_background(self, colour: Sequence[int]) -> None:
        """Composite images drawn only in alpha over ``colour`` (RGB 0-255) instead."""
        r, g, b = (int(v) for v in colour)
        self.input = replace(self.input, background=(r, g, b))

    @property
    def is_video_model(self) -> bool:
        """True for 3D models, which take clips of ``input.frames`` frames."""
        return self.input.frames is not None

    def check_window(self, window: int) -> None:
        """Refuse windows of ``window`` frames too short for this 3D model (a ModelError).

        Its pooling would shrink time to nothing. Checked on torch's meta device
        (shapes only, milliseconds), so the error names the smallest window that
        works before any video is decoded, instead of a shape error per video.
        """
        if not self.is_video_model or window == self.input.frames or window in self._windows_ok:
            return
        if not self.name:  # a model built by hand, not from the registry: nothing to rebuild
            return
        from cnnkit.models.sizes import check_input_fits

        shape = (self.input.channels, window, *self.input.size)
        check_input_fits(self.name, shape, frames_flag="--window")
        self._windows_ok.add(window)

    def prepare_image(self, image: np.ndarray) -> np.ndarray:
        """Decoded H×W[×C] image -> C×H×W uint8 at the checkpoint's channels and size.

        Alpha is composited or dropped first (flatten_alpha), and said once.
        """
        image, how = flatten_alpha(image, self.input.background)
        if how is not None:
            self.note_once(how, alpha_note(how, self.input.background))
        self._note_channels(image)
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
        self._note_channels(frame)
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
        """T×H×W[×C] frames -> C×T×H×W uint8 at the checkpoint's channels and size."""
        if len(frames):
            # Frames stacked into one tall image: any coloured frame counts as colour.
            self._note_channels(frames.reshape(-1, *frames.shape[2:]))
        return prepare_clip(frames, self.input.channels, self.input.size)

    def cpu_threads(self) -> int:
        """The CPU threads the model computes with (0 on a GPU: the CPU is left to decoding)."""
        if self.device != "cpu":
            return 0
        import torch

        return torch.get_num_threads()

    def note_once(self, kind: str, message: str) -> None:
        """Say ``message`` on stderr the first time a conversion of ``kind`` happens.

        A colour photo given to a gray digit model still gets an answer; the
        user should know it was converted, once, not once per image.
        """
        with self._noted_lock:
            if kind in self._noted:
                return
            self._noted.add(kind)
        console.info(f"note: {message}")

    def _note_channels(self, image: np.ndarray) -> None:
        """Note how an H×W[×C] image's channels are converted to the model's (see fit_channels).

        Colour is noted only for images that have it (see ``has_colour``): a gray
        picture stored in three channels (a GIF, a video frame) converts to gray
        unchanged.
        """
        channels = 1 if image.ndim == 2 else image.shape[2] - (image.shape[2] in (2, 4))
        want = self.input.channels
        if channels >= 3 and want == 1:
            # One test (two passes over the pixels) per input until the note is given.
            if "gray" not in self._noted and has_colour(image):
                self.note_once(
                    "gray", "colour inputs are converted to gray for this 1-channel model"
                )
        elif channels < 3 and want == 3:
            self.note_once("colour", "gray inputs are repeated to 3 channels for this colour model")

    def logits(self, batch: Any) -> np.ndarray:
        """uint8 batch (numpy or torch, N×C×H×W or N×C×T×H×W) -> N×K float32 logits.

        On the CPU the model runs on chunks of the batch (see CPU_CHUNK_VALUES).
        """
        import torch

        x = torch.as_tensor(batch)
        if x.dtype != torch.uint8:
            raise TypeError(f"expected a uint8 batch, got {x.dtype}")
        with torch.inference_mode():
            x = x.to(self.device, non_blocking=True)
            step = len(x)
            if x.device.type == "cpu" and len(x) > 1:
                step = max(1, CPU_CHUNK_VALUES // max(1, x[0].numel()))
            outs = [
                self.model(normalize(x[i : i + step], self.input.mean, self.input.std))
                for i in range(0, len(x), step)
            ]
            out = outs[0] if len(outs) == 1 else torch.cat(outs)
        return out.float().cpu().numpy()

    def logits_in_batches(self, data: Any) -> Iterator[np.ndarray]:
        """Yield logits for ``data`` (N×C×... uint8) ``batch_size`` samples at a time."""
        for start in range(0, len(data), self.batch_size):
            yield self.logits(data[start : start + self.batch_size])

    def label_scores(self, probs: np.ndarray, top_k: int) -> list[Record]:
        """N×K probabilities -> one {"label", "score", "topk"} dict per row, class names."""
        k = max(1, min(top_k, probs.shape[1]))
        order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        # Python lists, not numpy scalars: indexing and float() per value cost more
        # than the rest of a record.
        scores = np.take_along_axis(probs, order, axis=1).astype(np.float64).tolist()
        names = self.classes
        out = []
        for idx, row in zip(order.tolist(), scores, strict=True):
            pairs = zip(idx, row, strict=True)
            topk = [{"label": names[i], "score": round(v, 6)} for i, v in pairs]
            out.append({"label": topk[0]["label"], "score": topk[0]["score"], "topk": topk})
        return out


# Lossy codecs store colour as chroma planes, so gray content decodes with its
# channels a level or two apart (measured: up to 2 of 255 for MJPG, MPEG-4 and
# VP8 videos of gray frames). Differences this small are not colour.
GRAY_TOLERANCE = 4 / 255  # of the dtype's full range


def has_colour(image: np.ndarray) -> bool:
    """Whether an H×W×C image shows colour: its first 3 channels differ somewhere.

    Channels within ``GRAY_TOLERANCE`` of each other everywhere (exactly equal in a
    gray PNG or GIF read as 3-4 channels, a level or two apart in a decoded
    gray video frame) count as gray. Images with fewer than 3 channels are gray.
    """
    if image.ndim != 3 or image.shape[2] < 3:
        return False
    full = np.iinfo(image.dtype).max if np.issubdtype(image.dtype, np.integer) else 1.0
    tolerance = GRAY_TOLERANCE * full
    red = image[:, :, 0]
    for other in (image[:, :, 1], image[:, :, 2]):
        # max - min: the absolute difference without leaving the image's dtype (no copy
        # into a wider type, and no wrap-around of unsigned values).
        if (np.maximum(red, other) - np.minimum(red, other)).max() > tolerance:
            return True
    return False


def open_predictor(
    checkpoint: str | Path, device: str = "auto", batch_size: int = 64, decoders: int = 0
) -> tuple[Predictor, Any]:
    """(predictor, what it was read from) for a .ckpt, a MODEL:DATA name or an exported .onnx.

    The one way predict and eval open their CHECKPOINT; the device chosen is said
    on stderr. An .onnx runs in ONNX Runtime and never imports torch. ``decoders``:
    threads that will decode inputs meanwhile; the model's CPU threads leave them
    their cores.
    """
    from cnnkit.onnxmodel import is_onnx_path

    if is_onnx_path(checkpoint):
        from cnnkit.onnxmodel import OnnxPredictor, decoder_threads_left, device_text, load_onnx

        threads = decoder_threads_left(decoders) if decoders else None
        model = load_onnx(checkpoint, device, threads=threads)
        console.info(f"device: {device_text(model)} (ONNX Runtime)")
        return OnnxPredictor(model, batch_size), model
    from cnnkit.checkpoint import open_checkpoint
    from cnnkit.device import resolve_device

    ckpt = open_checkpoint(checkpoint)
    choice = resolve_device(device)
    console.info(f"device: {choice.torch_device} ({choice.reason})")
    predictor = Predictor.from_loaded(ckpt, choice.torch_device, batch_size)
    if decoders and choice.torch_device == "cpu":
        share_cpu_with_decoders(decoders)
    return predictor, ckpt


# Frames up to this many pixels decode faster on one FFmpeg thread than on
# several competing with the model for the same cores; larger ones need them.
_SMALL_FRAME_PIXELS = 256 * 256


def decoder_threads(predictor: Predictor, width: int, height: int) -> int:
    """FFmpeg's threads for decoding a video of ``width``×``height`` while ``predictor`` runs.

    0 (FFmpeg's choice: as many as cores) for frames larger than 256×256;
    for smaller ones, the cores the model leaves. Measured on 2 cores with
    the model on one, 250 frames of 128×128: 27.8 ms on one decoder thread,
    30.1 ms on FFmpeg's choice; 300 frames of 640×480 and a 1-channel lenet5:
    604 ms on one thread, 406 ms on FFmpeg's choice.
    """
    if width * height > _SMALL_FRAME_PIXELS:
        return 0
    return max(1, cpu_cores() - predictor.cpu_threads())


def cores_left(workers: int) -> int:
    """The CPU cores this process may use that ``workers`` decode threads leave (at least 1)."""
    return max(1, cpu_cores() - workers)


def share_cpu_with_decoders(workers: int) -> int:
    """Give torch's CPU thread pool the cores that the ``workers`` decode threads leave free.

    Decoding and inference run at the same time, so letting torch take every
    core as well oversubscribes the CPU; OpenMP threads then spin waiting for
    each other and small models run several times slower (measured: 1,000
    28×28 images took 2.5 s instead of 0.3 s on two busy cores). An explicit
    OMP_NUM_THREADS or torch.set_num_threads by the user is left alone.
    Returns the thread count torch uses.
    """
    import os

    import torch

    if "OMP_NUM_THREADS" in os.environ:
        return torch.get_num_threads()
    threads = cores_left(workers)
    if threads < torch.get_num_threads():
        torch.set_num_threads(threads)
    return torch.get_num_threads()


# ---------------------------------------------------------------------------
# images
# ---------------------------------------------------------------------------


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, CnnkitError):
        return exc.message
    return f"{type(exc).__name__}: {exc}"


def predict_images(
    predictor: Predictor,
    paths: Iterable[str | PredictInput],
    top_k: int = 5,
    workers: int = 2,
    chunk: int = 1,
) -> Iterator[list[Record]]:
    """Classify image files; yield one list of records per batch, in input order.

    ``chunk``: images each decode thread takes at a time (see map_ahead); more
    than 1 only when ``paths`` are all known (not a pipe that answers as it goes).

    A record is ``{"path", "label", "score", "topk": [{"label", "score"}]}``, or
    ``{"path", "error"}`` for a file that cannot be read (or a PredictInput that
    arrives with an error already, such as a missing path).
    """
    from cnnkit.io.image import read_image, read_image_bytes

    def load(item: str | PredictInput) -> np.ndarray:
        if isinstance(item, PredictInput):
            if item.error:
                raise InputError(item.error)
            if item.data is not None:
                return predictor.prepare_image(read_image_bytes(item.data, item.path))
            item = item.path
        return predictor.prepare_image(read_image(item))

    ahead = max(2 * predictor.batch_size, 8)
    loaded = map_ahead(load, paths, workers=workers, ahead=ahead, stalls=True, chunk=chunk)
    try:
        yield from _image_batches(predictor, loaded, top_k)
    finally:
        # Stop the decode threads now, not when the generator is collected (see map_ahead).
        loaded.close()


def _image_batches(
    predictor: Predictor, loaded: Iterator[Any], top_k: int
) -> Iterator[list[Record]]:
    """Records for map_ahead's (input, decoded image or error) pairs, one list per batch."""
    batch: list[tuple[Record, np.ndarray]] = []
    out: list[Record] = []
    for entry in loaded:
        if entry is STALL:
            # Nothing more to decode right now (a pipe feeding paths slowly):
            # answer what is here rather than wait for a full batch.
            if out:
                if batch:
                    _fill(predictor, batch, top_k)
                yield out
                batch, out = [], []
            continue
        item, result = entry
        path = item.path if isinstance(item, PredictInput) else item
        if isinstance(result, BaseException):
            out.append({"path": str(path), "error": _error_text(result)})
            continue
        record: Record = {"path": str(path)}
        out.append(record)
        batch.append((record, result))
        if len(batch) == predictor.batch_size:
            _fill(predictor, batch, top_k)
            yield out
            batch, out = [], []
    if batch:
        _fill(predictor, batch, top_k)
    if out:
        yield out


def _fill(predictor: Predictor, batch: list[tuple[Record, np.ndarray]], top_k: int) -> np.ndarray:
    """Run one batch, write label/score/topk into its records; return the summed probabilities."""
    stacked = np.stack([x for _, x in batch])
    probs = softmax(predictor.logits(stacked))
    for (record, _), result in zip(batch, predictor.label_scores(probs, top_k), strict=True):
        record.update(result)
    return probs.sum(axis=0)


# ---------------------------------------------------------------------------
# videos
# ---------------------------------------------------------------------------


def predict_video(
    predictor: Predictor,
    path: str,
    top_k: int = 5,
    window: int | None = None,
    stride: int | None = None,
) -> Iterator[list[Record]]:
    """Classify a video over time; yield lists of records as batches finish.

    3D model: one record per window of ``window`` frames (default the
    checkpoint's T) every ``stride`` frames (default: the window, so windows do
    not overlap), with ``start_frame``, ``end_frame`` (inclusive), ``start_s``
    and ``end_s``; 2D model: one record per frame every ``stride`` frames
    (default 1) with ``frame`` and ``time_s``. Both end with a whole-video record,
    ``"window": "video"``, whose scores are the mean of the window/frame scores.

    Decoding runs ahead on a thread of its own (cnnkit.io.pipeline): it
    decodes, prepares and stacks the next batch of frames or windows while the
    model runs on this one, so the two overlap; a batch or two is in memory,
    whatever the video's length.
    """
    from cnnkit.io.video import probe_video

    info = probe_video(path, check=False)  # only its frame rate is used
    fps = info.fps if info.fps and info.fps > 0 else 0.0
    if predictor.is_video_model:
        window = window or predictor.input.frames
        stride = stride or window
    else:
        window, stride = 1, stride or 1
    if window < 1 or stride < 1:
        raise InputError(f"--window and --stride must be at least 1 (got {window}, {stride})")
    predictor.check_window(window)
    from cnnkit.io.pipeline import produce_ahead

    # decode and prepare (a thread) -> model and records (here). The model stays on
    # the caller's thread: in a thread started for the video, torch ran the same
    # batches 25-35% slower (per-thread caches warming up again for every video).
    threads = decoder_threads(predictor, info.width, info.height)
    batches = produce_ahead(_video_batches(predictor, path, window, stride, threads))
    try:
        yield from _video_records(predictor, path, batches, fps, window, top_k)
    finally:
        # Stop the decode thread now rather than when the generator is collected:
        # a consumer that stops early (`| head -1`) must not exit under a running decoder.
        batches.close()


_Span = tuple[int, int]  # a window's first and last frame (inclusive)


def _video_batches(
    predictor: Predictor, path: str, window: int, stride: int, threads: int = 0
) -> Iterator[tuple[list[_Span], np.ndarray]]:
    """(spans, uint8 batch) of up to batch_size windows: N×C×H×W frames or N×C×T×H×W clips.

    Runs on the decode thread. A 2D model's frames between strides are
    decoded but never converted or resized; a 3D model's windows are stacked
    straight into the batch from the last ``window`` prepared frames.
    ``threads``: FFmpeg's decoding threads (see decoder_threads).
    """
    from cnnkit.io.video import iter_frames

    clips = predictor.is_video_model
    size = tuple(predictor.input.size)
    channels = predictor.input.channels
    sample = (channels, window, *size) if clips else (channels, *size)
    limit = predictor.batch_size
    batch = np.empty((limit, *sample), np.uint8)
    spans: list[_Span] = []
    if clips:
        decoded = iter_frames(path, rgb=False, threads=threads)
        frames = (predictor.prepare_frame(f) for f in decoded)
        for start, end, taken in sliding_windows(frames, window, stride):
            np.stack(taken, axis=1, out=batch[len(spans)])
            spans.append((start, end))
            if len(spans) == limit:
                yield spans, batch
                batch, spans = np.empty_like(batch), []
    elif channels not in (1, 3):  # not a model cnnkit trains: the general path
        for index, frame in enumerate(iter_frames(path, rgb=False, every=stride, threads=threads)):
            predictor.prepare_frame(frame, out=batch[len(spans)])
            spans.append((index * stride, index * stride))
            if len(spans) == limit:
                yield spans, batch
                batch, spans = np.empty_like(batch), []
    else:
        yield from _frame_batches(predictor, path, stride, threads)
        return
    if spans:
        yield spans, batch[: len(spans)]


def _frame_batches(
    predictor: Predictor, path: str, stride: int, threads: int = 0
) -> Iterator[tuple[list[_Span], np.ndarray]]:
    """_video_batches for a 2D model of 1 or 3 channels: the per-frame work is two C calls.

    Each frame is resized straight into an H×W×C batch (OpenCV releases the
    GIL there), which becomes the N×C×H×W batch in RGB order by one copy: the
    same bits as Predictor.prepare_frame frame by frame, with little Python
    per frame to hold the GIL while the model runs on the other thread.
    """
    from cnnkit.io.video import iter_frames

    channels = predictor.input.channels
    height, width = (int(n) for n in predictor.input.size)
    limit = predictor.batch_size
    hwc = np.empty((limit, height, width, 3) if channels == 3 else (limit, height, width), np.uint8)
    spans: list[_Span] = []
    for index, frame in enumerate(iter_frames(path, rgb=False, every=stride, threads=threads)):
        if channels == 1:
            predictor._note_channels(frame)
            frame = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        _resize_into(frame, hwc[len(spans)])
        spans.append((index * stride, index * stride))
        if len(spans) == limit:
            yield spans, _to_nchw(hwc, channels)
            spans = []
    if spans:
        yield spans, _to_nchw(hwc[: len(spans)], channels)


def _resize_into(image: np.ndarray, out: np.ndarray) -> None:
    """preprocess.fit_size into ``out``: area averaging to shrink, bilinear to grow."""
    h, w = out.shape[:2]
    if image.shape[:2] == (h, w):
        out[...] = image
        return
    shrinking = image.shape[0] * image.shape[1] > h * w
    interp = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    cv2.resize(image, (w, h), dst=out, interpolation=interp)


def _to_nchw(hwc: np.ndarray, channels: int) -> np.ndarray:
    """N×H×W×3 BGR (or N×H×W gray) -> a new N×C×H×W array, RGB order.

    Always a copy (``hwc`` is refilled for the next batch while this one is in use).
    """
    if channels == 1:
        return hwc[:, None].copy()
    return hwc[..., ::-1].transpose(0, 3, 1, 2).copy(order="C")


def _video_records(
    predictor: Predictor,
    path: str,
    batches: Iterator[tuple[list[_Span], np.ndarray]],
    fps: float,
    window: int,
    top_k: int,
) -> Iterator[list[Record]]:
    """predict_video's records from prepared batches, a batch at a time, then the summary."""
    clips = predictor.is_video_model
    total = np.zeros(len(predictor.classes))
    count = 0
    last_frame = -1
    for spans, batch in batches:
        for start, end in spans:
            if clips and end - start + 1 < window:
                predictor.note_once(
                    "padded",
                    f"videos shorter than the {window}-frame window are padded by repeating "
                    f"their last frame ({path}: {end - start + 1} frames)",
                )
        probs = softmax(predictor.logits(batch))
        records = [_time_fields(path, start, end, fps, clips) for start, end in spans]
        for record, result in zip(records, predictor.label_scores(probs, top_k), strict=True):
            record.update(result)
        total += probs.sum(axis=0)
        count += len(spans)
        last_frame = max(last_frame, max(end for _, end in spans))
        yield records
    if count == 0:
        raise InputError(f"{path}: the video has no frames that could be decoded")
    summary: Record = {"path": str(path), "window": "video", "start_frame": 0}
    summary["end_frame"] = last_frame
    summary["start_s"] = 0.0
    summary["end_s"] = round((last_frame + 1) / fps, 4) if fps else None
    summary["windows"] = count
    summary.update(predictor.label_scores((total / count)[None, :], top_k)[0])
    yield [summary]


def _time_fields(path: str, start: int, end: int, fps: float, clips: bool) -> Record:
    def sec(frame: int) -> float | None:
        return round(frame / fps, 4) if fps else None

    if clips:
        return {
            "path": str(path),
            "start_frame": start,
            "end_frame": end,
            "start_s": sec(start),
            "end_s": sec(end + 1),
        }
    return {"path": str(path), "frame": start, "time_s": sec(start)}


# ---------------------------------------------------------------------------
# mixed inputs
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PredictInput:
    """One input as predict sees it: a path, whether it is a video, and an error if known.

    ``data`` holds an encoded image read from stdin (``path`` is then "-").
    """

    path: str
    is_video: bool = False
    error: str | None = None
    data: bytes | None = None


def predict_inputs(
    predictor: Predictor,
    inputs: Iterable[PredictInput],
    top_k: int = 5,
    window: int | None = None,
    stride: int | None = None,
    workers: int = 2,
    chunk: int = 1,
) -> Generator[list[Record], None, None]:
    """Classify images and videos in input order, yielding record lists as they are ready.

    Runs of consecutive images share batches and the decode-ahead pool; each
    video is classified on its own. Inputs that fail become ``{"path", "error"}``.
    """
    # groupby's groups are consumed as they come: ``inputs`` may be a lazy stream
    # (paths read from a pipe), never listed in full.
    for is_video, group in itertools.groupby(inputs, key=lambda s: s.is_video and not s.error):
        if not is_video:
            yield from _predict_image_group(predictor, group, top_k, workers, chunk)
            continue
        for item in group:
            try:
                yield from predict_video(predictor, item.path, top_k, window, stride)
            except CnnkitError as exc:
                yield [{"path": item.path, "error": exc.message}]


def _predict_image_group(
    predictor: Predictor, items: Iterable[PredictInput], top_k: int, workers: int, chunk: int
) -> Iterator[list[Record]]:
    if predictor.is_video_model:
        # A 3D model needs T frames; an image is one. Refuse per input rather than guess.
        for item in items:
            error = item.error or (
                f"model '{predictor.name}' classifies video clips of {predictor.input.frames} "
                "frames, not single images"
            )
            yield [{"path": item.path, "error": error}]
        return
    yield from predict_images(predictor, items, top_k, workers, chunk)
