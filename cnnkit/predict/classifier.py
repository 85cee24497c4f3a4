"""The Python API's model: ``cnnkit.load(ref)`` -> ``Classifier``, and its ``Prediction``s.

A Classifier runs the code ``cnnkit predict`` runs (the same preprocessing,
batches and records), so an image gives the same label and score from
either, and ``Prediction.to_dict()`` is the record the CLI prints as JSON.
It prints nothing: notes go to the ``cnnkit`` logger.
"""

from __future__ import annotations

import copy
import numbers
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cnnkit.errors import InputError, python_names
from cnnkit.io.pipeline import torch_threads_here
from cnnkit.predict.images import NAMED_CHUNK, PredictInput, predict_inputs
from cnnkit.predict.predictor import Predictor
from cnnkit.spec import InputSpec


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs 3x, per input
class Prediction:
    """One answer: the best class and its score, the ``topk`` (label, score) pairs.

    ``path`` is the input's path (None for an array); ``error`` says why an
    input could not be classified (then ``label`` and ``score`` are None).
    Video records (``Classifier.predict_video``) carry their frames and times
    in ``to_dict()``. Scores are rounded to 6 decimal places, as in the
    command line's records, so that the two agree exactly.
    """

    label: str | None
    score: float | None
    topk: list[tuple[str, float]]
    path: str | None
    error: str | None = None
    record: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Prediction:
        get = record.get
        topk = [(t["label"], t["score"]) for t in get("topk", ())]
        return cls(get("label"), get("score"), topk, get("path"), get("error"), record)

    @property
    def ok(self) -> bool:
        """Whether the input was classified."""
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """The record ``cnnkit predict`` prints for this input (JSON Lines)."""
        return copy.deepcopy(self.record)


class Classifier:
    """A model loaded for inference; make one with :func:`cnnkit.load`.

    >>> clf = cnnkit.load("runs/train/checkpoints/best.ckpt")  # doctest: +SKIP
    >>> clf.predict("digit.png")[0].label  # doctest: +SKIP
    '7'
    """

    def __init__(
        self, predictor: Predictor, source: Any, workers: int | None = None, reference: str = ""
    ) -> None:
        from cnnkit.io.pipeline import decode_workers

        self._predictor = predictor
        self._source = source
        self._workers = workers or decode_workers()
        self.reference = reference  # what it was loaded from: a path or MODEL:DATA
        # How it was loaded (device as asked, threads), so that a copy loads the same way.
        self._loaded_with: dict[str, Any] = {"device": "auto", "threads": None, "precision": "auto"}

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """Pickled as its reference, loaded again where it is unpickled (Ray, Spark,
        multiprocessing): the model file must be readable there too."""
        if not self.reference:
            raise TypeError("a Classifier built by hand (no reference) cannot be pickled")
        options = (
            self._loaded_with["device"],
            self._predictor.batch_size,
            self._workers,
            self._loaded_with["threads"],
            self._predictor.input.background,
            self._loaded_with.get("precision", "auto"),
        )
        return (_reloaded, (self.reference, *options))

    @property
    def classes(self) -> list[str]:
        """The class names, in the order of the model's outputs."""
        return list(self._predictor.classes)

    @property
    def input(self) -> InputSpec:
        """The input spec: channels, size, frames (clip models), mean, std, background."""
        return self._predictor.input

    @property
    def backend(self) -> str:
        """What runs the model: "torch" or "onnxruntime"."""
        return self._predictor.backend.name

    @property
    def device(self) -> str:
        """The device the model runs on ("cpu", "cuda:0", ...)."""
        return self._predictor.device

    @property
    def model_name(self) -> str:
        return self._predictor.name

    @property
    def is_video_model(self) -> bool:
        """True for 3D models, which classify clips of ``input.frames`` frames."""
        return self._predictor.is_video_model

    @property
    def predictor(self) -> Predictor:
        """The engine underneath (backend, preprocessing, batching)."""
        return self._predictor

    @property
    def source(self) -> Any:
        """What the model was read from: a LoadedCheckpoint or an OnnxModel."""
        return self._source

    def __repr__(self) -> str:
        return (
            f"Classifier(model={self.model_name!r}, classes={len(self.classes)}, "
            f"backend={self.backend!r}, device={self.device!r})"
        )

    @python_names()
    def predict(
        self,
        x: Any,
        top_k: int = 5,
        batch_size: int | None = None,
        workers: int | None = None,
    ) -> list[Prediction]:
        """Classify images: one Prediction per image, in input order.

        ``x``: a path, a folder (recursive, sorted), a glob, a list of those;
        an H×W×C uint8 RGB(A) array or an H×W gray one; a list of arrays; or an
        N×H×W×C array. Arrays give exactly the scores their PNG files give. A
        video among the paths gives its window (or frame) records and then
        the whole-video one, as ``cnnkit predict`` does. An unreadable input
        is a Prediction with ``error`` set; the others go on.

        >>> [p.label for p in clf.predict(["a.png", "b.png"])]  # doctest: +SKIP
        ['cat', 'dog']
        """
        _whole("top_k", top_k)
        if workers is not None:
            _whole("workers", workers)
        predictor = self._with_batch(batch_size)
        items = _inputs(x)
        workers = self._workers if workers is None else workers
        with torch_threads_here(workers):  # this thread only: the caller's others keep theirs
            records = list(self._run(predictor, items, top_k, workers))
        return [Prediction.from_record(r) for r in records]

    @python_names()
    def predict_video(
        self,
        path: str | os.PathLike[str],
        window: int | None = None,
        stride: int | None = None,
        top_k: int = 5,
        batch_size: int | None = None,
    ) -> Iterator[Prediction]:
        """A lazy iterator over a video: each window (3D model) or frame (2D model), then the whole.

        ``window``: frames per window (3D models; default the model's);
        ``stride``: frames between window starts (default: the window) or
        between classified frames (2D, default 1). The last Prediction's
        ``to_dict()["window"]`` is "video": the mean of the others' scores.
        The arguments and the file are checked now, before the first frame.
        """
        _whole("top_k", top_k)
        predictor = self._with_batch(batch_size)
        if window is not None:
            _whole("window", window)
            if not predictor.is_video_model:
                raise InputError(
                    "window is for 3D models; this model classifies frames",
                    hint="leave window out (stride chooses the frames)",
                )
            predictor.check_window(window)
        if stride is not None:
            _whole("stride", stride)
        text = os.fsdecode(path)
        if not Path(text).is_file():
            raise InputError(f"{text}: no such video file", hint="give the path of a video")
        return self._video(predictor, text, top_k, window, stride)

    def _video(
        self, predictor: Predictor, path: str, top_k: int, window: int | None, stride: int | None
    ) -> Iterator[Prediction]:
        from cnnkit.predict.videos import predict_video

        batches = predict_video(predictor, path, top_k, window, stride)
        try:
            while True:
                # Lowered while a batch is computed, in the thread that asks for it;
                # between two Predictions the caller's code runs at full strength.
                with torch_threads_here(1):
                    records = next(batches, None)
                if records is None:
                    return
                for record in records:
                    yield Prediction.from_record(record)
        finally:
            batches.close()

    def logits(self, batch: Any) -> np.ndarray:
        """Raw logits of a prepared uint8 batch (N×C×H×W, or N×C×T×H×W for clip models)."""
        return self._predictor.logits(batch)

    def _with_batch(self, batch_size: int | None) -> Predictor:
        if batch_size is None or batch_size == self._predictor.batch_size:
            return self._predictor
        _whole("batch_size", batch_size)
        # A shallow copy shares the backend and the notes already given.
        predictor = copy.copy(self._predictor)
        predictor.batch_size = batch_size
        return predictor

    def _run(
        self, predictor: Predictor, items: list[PredictInput], top_k: int, workers: int
    ) -> Iterator[dict[str, Any]]:
        results = predict_inputs(predictor, items, top_k, workers=workers, chunk=NAMED_CHUNK)
        try:
            for records in results:
                yield from records
        finally:
            results.close()


def _whole(name: str, value: Any, low: int = 1) -> int:
    """``value`` if it is a whole number of at least ``low`` (not a bool), else an InputError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise InputError(
            f"{name} must be a whole number of at least {low}, got {value!r}",
            hint=f"e.g. {name}={max(low, 1)}",
        )
    return int(value)


def _inputs(x: Any) -> list[PredictInput]:
    """What predict takes, as PredictInputs in order (paths expanded, arrays split)."""
    if isinstance(x, np.ndarray):
        return [PredictInput(None, image=image) for image in _images_of(x)]
    if isinstance(x, (str, bytes, os.PathLike)):
        x = [x]
    if isinstance(x, dict) or not isinstance(x, Iterable):
        raise InputError(
            f"cannot classify a {type(x).__name__}",
            hint="give paths, folders, globs, or uint8 numpy arrays (H×W×C RGB)",
        )
    from cnnkit.io.sources import expand_sources

    items: list[PredictInput] = []
    paths: list[str] = []

    def flush() -> None:
        for s in expand_sources(paths):
            items.append(PredictInput(s.path, s.kind == "video", s.error))
        paths.clear()

    for entry in x:
        if isinstance(entry, np.ndarray):
            flush()
            items.extend(
                PredictInput(None, image=image) for image in _images_of(entry, single=True)
            )
        elif isinstance(entry, (str, bytes, os.PathLike)):
            paths.append(os.fsdecode(entry))
        else:
            raise InputError(
                f"cannot classify a {type(entry).__name__} in the list",
                hint="give paths, folders, globs, or uint8 numpy arrays (H×W×C RGB)",
            )
    flush()
    return items


def _images_of(array: np.ndarray, single: bool = False) -> Sequence[np.ndarray]:
    """An array as the images it holds: H×W, H×W×C (C 1, 3 or 4) or N×H×W×C."""
    if array.dtype not in (np.uint8, np.uint16):
        raise InputError(
            f"an array of {array.dtype} is not an image",
            hint="give uint8 pixels 0-255 (e.g. (x * 255).round().astype(np.uint8))",
        )
    if array.ndim == 4 and not single:
        return [_checked(image) for image in array]
    return [_checked(array)]


def _checked(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3, 4)):
        if min(image.shape[:2]) < 1:
            raise InputError(f"an image array of shape {image.shape} holds no pixels")
        return image
    raise InputError(
        f"an array of shape {tuple(image.shape)} is not an image",
        hint="give H×W (gray), H×W×C with C 1, 3 (RGB) or 4 (RGBA), or N×H×W×C",
    )


@python_names()
def load(
    ref: str | os.PathLike[str],
    device: str = "auto",
    batch_size: int = 32,
    workers: int | None = None,
    threads: int | None = None,
    precision: str = "auto",
) -> Classifier:
    """Load a model for inference: a ``.ckpt``, an exported ``.onnx``, or ``MODEL:DATA``.

    ``device``: auto (CUDA, else MPS, else CPU), cpu, cuda, cuda:N, mps (an
    ``.onnx``: auto, cpu or cuda). ``workers``: threads decoding images ahead
    of the model (None: half the cores of the process's CPU budget, 1 to 4;
    see cnnkit.io.cpu). ``threads``: the CPU threads the model computes with (for
    a ``.ckpt`` this sets torch's count for the whole process, as
    ``torch.set_num_threads`` does); None leaves the process's count as it
    is, and lowers it during a call for the calling thread alone, to the
    cores the decode threads leave. ``precision``: auto (as the checkpoint
    was trained: bf16 autocast or float32, where the device computes that
    natively), 32 or bf16. An ``.onnx`` loads where torch is not installed,
    and computes in float32.

    >>> import cnnkit
    >>> clf = cnnkit.load("resnet18:imagenet")  # doctest: +SKIP
    >>> clf.backend, len(clf.classes)  # doctest: +SKIP
    ('torch', 1000)
    """
    if threads is not None:
        _whole("threads", threads)
    _whole("batch_size", batch_size)
    if workers is None:
        from cnnkit.io.pipeline import decode_workers

        workers = decode_workers()
    _whole("workers", workers)
    predictor, source = open_predictor(
        ref, device, batch_size, decoders=workers, threads=threads, precision=precision
    )
    if threads is not None and predictor.backend.name == "torch":
        import torch

        torch.set_num_threads(threads)  # asked for: the process's torch changes
    clf = Classifier(predictor, source, workers, os.fsdecode(ref))
    clf._loaded_with = {"device": device, "threads": threads, "precision": precision}
    return clf


def _reloaded(
    ref: str,
    device: str,
    batch_size: int,
    workers: int,
    threads: int | None,
    background: Any,
    precision: str = "auto",
) -> Classifier:
    """A pickled Classifier, loaded again (see Classifier.__reduce__)."""
    clf = load(ref, device, batch_size, workers, threads, precision)
    if tuple(background) != tuple(clf.input.background):
        clf.predictor.set_background(background)
    return clf


def open_predictor(
    ref: str | os.PathLike[str],
    device: str = "auto",
    batch_size: int = 64,
    decoders: int = 0,
    threads: int | None = None,
    precision: str = "auto",
) -> tuple[Predictor, Any]:
    """(predictor, what it was read from) for a .ckpt, a MODEL:DATA name or an .onnx.

    The device chosen is said through the ``cnnkit`` logger. ``decoders``:
    threads that will decode inputs meanwhile; an .onnx session's threads
    are the cores of the CPU budget they leave (or ``threads``). Changes no
    process state.
    """
    from cnnkit import console
    from cnnkit.refs import parse
    from cnnkit.sources import open_model

    onnx_threads = None
    if parse(ref).kind == "onnx":
        from cnnkit.onnxmodel import decoder_threads_left

        onnx_threads = threads or decoder_threads_left(decoders)
    opened = open_model(ref, device, threads=onnx_threads, precision=precision)
    console.info(f"device: {opened.device}")
    from cnnkit.io.image import reduced_decode_note

    console.detail(reduced_decode_note())
    compute = opened.compute
    if compute is not None and compute.precision != "32":  # float32 is what it always was
        (console.warn if compute.emulated else console.info)(compute.line())
    src = opened.source
    predictor = Predictor(opened.backend, src.classes, src.input, batch_size, src.model_name)
    return predictor, src
