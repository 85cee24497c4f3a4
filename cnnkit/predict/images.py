"""Classify image files and mixed inputs (images and videos), batch by batch.

Decoding runs ahead of the model on a small thread pool (cnnkit.io.readahead),
so the model rarely waits for the disk; records come out in input order, a
batch at a time, so ``cnnkit predict`` prints each as soon as it is ready.
"""

from __future__ import annotations

import itertools
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cnnkit.errors import CnnkitError, InputError
from cnnkit.evaluation.metrics import softmax
from cnnkit.io.readahead import STALL, map_ahead
from cnnkit.predict.predictor import Predictor, Record
from cnnkit.predict.videos import predict_video


@dataclass(slots=True)  # one per input: a frozen dataclass's __init__ costs 3x
class PredictInput:
    """One input as predict sees it: a path, whether it is a video, and an error if known.

    ``data`` holds an encoded image read from stdin (``path`` is then "-");
    ``image`` a decoded H×W[×C] RGB array given by a Python caller (``path``
    is then None, and so is the record's).
    """

    path: str | None
    is_video: bool = False
    error: str | None = None
    data: bytes | bytearray | None = field(default=None, repr=False)
    image: Any = field(default=None, repr=False)


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
            if item.image is not None:
                return predictor.prepare_image(item.image)
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
        shown = None if path is None else str(path)
        if isinstance(result, BaseException):
            out.append({"path": shown, "error": _error_text(result)})
            continue
        record: Record = {"path": shown}
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
