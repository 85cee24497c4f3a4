"""Classify image files and mixed inputs (images and videos), batch by batch.

Decoding runs ahead of the model: on one decode thread that takes named
inputs 64 at a time, on a pool of threads (cnnkit.io.readahead) for paths
streamed from stdin or more decode threads, and in decode processes once a
process has decoded many images (cnnkit.predict.processes); records come
out in input order, a batch at a time, so ``cnnkit predict`` prints each as
soon as it is ready.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cnnkit.errors import CnnkitError
from cnnkit.evaluation.metrics import softmax
from cnnkit.io.readahead import STALL, map_ahead
from cnnkit.predict.decode import error_text
from cnnkit.predict.predictor import Predictor, Record
from cnnkit.predict.videos import predict_video

# Inputs a decode thread takes at a time when all are known (named files, a
# Python list): each hand-over between threads costs as much as decoding a
# small image, and a chunk is prepared as one (see cnnkit.predict.decode).
NAMED_CHUNK = 16
# A single decode thread takes more (see _decoded_ahead): each hand-over wakes
# the thread running the model. 64 small images at a time measured 0.51x the
# slower of decoding and the model alone, 16 at a time 0.40x (1,000 PNGs, an
# .onnx, 2 cores); a chunk's prepared inputs stay within ONE_THREAD_BYTES.
ONE_THREAD_CHUNK = 64
ONE_THREAD_BYTES = 16 * 2**20


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


def _error_text(exc: BaseException | str) -> str:
    """An input's error as its record says it (a decode process sends it as text)."""
    return exc if isinstance(exc, str) else error_text(exc)


def predict_images(
    predictor: Predictor,
    paths: Iterable[str | PredictInput],
    top_k: int = 5,
    workers: int | None = None,
    chunk: int = 1,
) -> Iterator[list[Record]]:
    """Classify image files; yield one list of records per batch, in input order.

    ``chunk``: images each decode thread takes at a time (see map_ahead); more
    than 1 only when ``paths`` are all known (not a pipe that answers as it goes).
    A chunk is decoded and prepared as one (cnnkit.predict.decode), so its
    images cost little Python each. ``workers``: threads decoding (default:
    cnnkit.io.pipeline.decode_workers); one decodes larger chunks in order on
    a thread of its own (see _decoded_ahead).

    A record is ``{"path", "label", "score", "topk": [{"label", "score"}]}``, or
    ``{"path", "error"}`` for a file that cannot be read (or a PredictInput that
    arrives with an error already, such as a missing path).
    """
    from cnnkit.io.pipeline import decode_workers

    workers = workers or decode_workers()
    if chunk > 1:
        loaded = _named_chunks(predictor, paths, workers, chunk)
    else:
        loaded = map_ahead(
            _decode_group(predictor),
            paths,
            workers=workers,
            ahead=_ahead(predictor),
            stalls=True,
            batched=True,
        )
    try:
        yield from _image_batches(predictor, loaded, top_k)
    finally:
        # Stop the decode threads now, not when the generator is collected (see map_ahead).
        loaded.close()


def _ahead(predictor: Predictor) -> int:
    """Inputs decoded ahead of the model: two batches."""
    return max(2 * predictor.batch_size, 8)


def _decode_group(predictor: Predictor, counted: bool = False) -> Any:
    """map_ahead's batched function: a chunk of inputs decoded for ``predictor``."""
    from cnnkit.predict import processes
    from cnnkit.predict.decode import decode_chunk

    def load(group: list[str | PredictInput], stopped: Any) -> Any:
        if counted:
            processes.count(len(group))
        return decode_chunk(predictor, group, stopped)

    return load


def _named_chunks(
    predictor: Predictor, paths: Iterable[str | PredictInput], workers: int, chunk: int
) -> Iterator[Any]:
    """(chunk of inputs, DecodedChunk) in order for inputs that are all known.

    By this process's decode processes once it has them (see
    cnnkit.predict.processes; from the next chunk on, mid-job too), else by
    one decode thread (see _decoded_ahead), else by ``workers`` threads.
    """
    from cnnkit.predict import processes

    spec = predictor.input
    sample = spec.channels * spec.size[0] * spec.size[1]
    big = max(chunk, min(ONE_THREAD_CHUNK, ONE_THREAD_BYTES // sample))
    depth = max(2, _ahead(predictor) // big)
    iterator = iter(paths)
    stop = threading.Event()
    mine = True  # whether this thread may close ``iterator`` (no decode thread holds it)
    try:
        while True:
            pool = processes.claim()
            if pool is not None:
                try:
                    yield from processes.decode(pool, predictor, iterator, big, depth, stop)
                finally:
                    processes.release(pool)
                if not pool.broken:
                    return
                continue  # the processes failed: the rest is decoded here
            if workers > 1:
                mine = False  # map_ahead's feeder closes it
                yield from map_ahead(
                    _decode_group(predictor, counted=True),
                    iterator,
                    workers=workers,
                    ahead=_ahead(predictor),
                    stalls=True,
                    chunk=chunk,
                    batched=True,
                )
                return
            ended: list[bool] = []
            mine = False
            yield from _decoded_ahead(predictor, iterator, big, depth, ended)
            if ended != [False]:
                return  # every input (or the decoding failed): not handed over
            mine = True  # the decode thread stopped for the processes, and gave it back
    finally:
        stop.set()
        close = getattr(iterator, "close", None)
        if mine and close is not None:
            close()


def _decoded_ahead(
    predictor: Predictor,
    iterator: Iterator[str | PredictInput],
    chunk: int,
    depth: int,
    ended: list[bool],
) -> Iterator[Any]:
    """(chunk of inputs, DecodedChunk) in order, decoded ``depth`` chunks ahead on one thread.

    Inputs that are all known (named files, a Python list), for one decode
    thread: that thread reads them too, with no feeder thread and no pool
    between it and the consumer. Every hand-over between Python threads takes
    the interpreter lock from the thread running the model; with 2 cores, a
    feeder and a pool's futures cost a third of predict's speed (measured).
    The thread stops taking inputs once this process's decode processes are
    free to use (``ended`` is then [False], and ``iterator`` is the caller's
    again); [True] when the inputs ran out.
    """
    from cnnkit.io.pipeline import produce_ahead
    from cnnkit.predict import processes
    from cnnkit.predict.decode import decode_chunk

    stop = threading.Event()

    def decoded() -> Iterator[Any]:
        try:
            while not processes.claimable():
                group = list(itertools.islice(iterator, chunk))
                if not group:
                    ended.append(True)
                    return
                try:
                    result: Any = decode_chunk(predictor, group, stop.is_set)
                except Exception as exc:  # the consumer says it for each input
                    result = exc
                processes.count(len(group))
                yield group, result
            ended.append(False)
        finally:
            close = getattr(iterator, "close", None)
            if stop.is_set() and close is not None:
                close()  # a generator source is closed by the thread that runs it

    chunks = produce_ahead(decoded(), depth)
    try:
        yield from chunks
    finally:
        stop.set()  # the chunk being decoded stops at its next input
        chunks.close()


class _Batch:
    """The records of one batch in input order, and the prepared images still to classify.

    ``records`` holds error records as they come and None where an image's
    record will be; ``places`` says which, ``paths`` their paths and
    ``arrays`` their pixels (slices of decoded chunks, in order).
    """

    __slots__ = ("arrays", "paths", "places", "records")

    def __init__(self) -> None:
        self.records: list[Record | None] = []
        self.places: list[int] = []
        self.paths: list[str | None] = []
        self.arrays: list[np.ndarray] = []

    def finish(self, predictor: Predictor, top_k: int) -> list[Record]:
        """Run the model on the images, put their records in place; the batch's records."""
        if self.paths:
            stacked = self.arrays[0] if len(self.arrays) == 1 else np.concatenate(self.arrays)
            probs = softmax(predictor.logits(stacked))
            records = predictor.records(self.paths, probs, top_k)
            if len(self.places) == len(self.records):  # no errors among them: in place already
                return records
            for place, record in zip(self.places, records, strict=True):
                self.records[place] = record
        return self.records  # type: ignore[return-value]


def _shown(item: str | PredictInput) -> str | None:
    path = item.path if isinstance(item, PredictInput) else item
    return path if path is None or type(path) is str else str(path)


def _image_batches(
    predictor: Predictor, loaded: Iterator[Any], top_k: int
) -> Iterator[list[Record]]:
    """Records for map_ahead's (chunk of inputs, DecodedChunk) pairs, one list per batch."""
    from cnnkit.predict.decode import DecodedChunk

    size = predictor.batch_size
    batch = _Batch()
    for entry in loaded:
        if entry is STALL:
            # Nothing more to decode right now (a pipe feeding paths slowly):
            # answer what is here rather than wait for a full batch.
            if batch.records:
                yield batch.finish(predictor, top_k)
                batch = _Batch()
            continue
        group, result = entry
        if isinstance(result, BaseException):  # the chunk's decoding itself failed
            result = DecodedChunk(np.empty((0,)), [result] * len(group))
        images = result.batch
        taken = 0  # images of this chunk already in a batch
        clean = all(error is None for error in result.errors)
        if clean and len(batch.paths) + len(group) <= size:
            # The common case: a chunk of good images that fits in the batch.
            first = len(batch.records)
            batch.places.extend(range(first, first + len(group)))
            batch.paths.extend([_shown(item) for item in group])
            batch.records.extend([None] * len(group))
            batch.arrays.append(images)
            taken = len(group)
        else:
            done = 0  # images of this chunk placed so far
            for item, error in zip(group, result.errors, strict=True):
                if error is not None:
                    batch.records.append({"path": _shown(item), "error": _error_text(error)})
                    continue
                batch.places.append(len(batch.records))
                batch.paths.append(_shown(item))
                batch.records.append(None)
                done += 1
                if len(batch.paths) == size:
                    batch.arrays.append(images[taken:done])
                    taken = done
                    yield batch.finish(predictor, top_k)
                    batch = _Batch()
            if taken < len(images):
                batch.arrays.append(images[taken:])
        if len(batch.paths) == size:
            yield batch.finish(predictor, top_k)
            batch = _Batch()
    if batch.records:
        yield batch.finish(predictor, top_k)


def predict_inputs(
    predictor: Predictor,
    inputs: Iterable[PredictInput],
    top_k: int = 5,
    window: int | None = None,
    stride: int | None = None,
    workers: int | None = None,
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
    predictor: Predictor,
    items: Iterable[PredictInput],
    top_k: int,
    workers: int | None,
    chunk: int,
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
