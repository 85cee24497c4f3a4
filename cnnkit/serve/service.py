"""What the HTTP API does, without HTTP: classify, explain and describe one loaded model.

Images are decoded by predict's own decode path (cnnkit.predict.decode: the
same pixel limit, conversions and bits), small ones on the event loop and
the others on a pool of ``workers`` threads, and classified on the model's
thread (cnnkit.serve.batching) together with the images of other requests;
records are built there as ``cnnkit predict`` builds them, a batch at a
time, so an image gets the same record from both.
"""

from __future__ import annotations

import asyncio
import base64
import re
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

from cnnkit.errors import CnnkitError, InputError, python_spelling
from cnnkit.serve.batching import ModelWorker
from cnnkit.serve.bodies import RequestError, Upload

if TYPE_CHECKING:
    from cnnkit.predict.classifier import Classifier

Record = dict[str, Any]

# Option names as the HTTP API spells them, for messages written for the command line.
QUERY_NAMES = {"top-k": "top_k", "class": "class", "layer": "layer", "method": "method"}


class Service:
    """One model, served: a decode pool of ``workers`` threads and the model's thread.

    ``max_batch``: images per model call at most; ``max_wait_s``: how long the
    first image of a batch waits for others.
    """

    def __init__(
        self, clf: Classifier, max_batch: int = 32, max_wait_s: float = 0.01, workers: int = 1
    ) -> None:
        from cnnkit.io.pipeline import torch_threads_here

        if clf.is_video_model:
            raise InputError(
                f"cnnkit serve classifies images; {clf.model_name} classifies clips of "
                f"{clf.input.frames} frames",
                hint="serve a 2D image model (cnnkit predict classifies videos)",
            )
        self.clf = clf
        self.predictor = clf.predictor
        self.workers = workers
        self.decoders = ThreadPoolExecutor(workers, thread_name_prefix="cnnkit-serve-decode")
        # The model's thread computes on the cores the decode threads leave (itself alone).
        self.worker = ModelWorker(
            self._records, max_batch, max_wait_s, lambda: torch_threads_here(workers)
        )
        self.started = time.monotonic()
        self.statuses: Counter[int] = Counter()  # answers by HTTP status, counted by the app
        self._description: dict[str, Any] | None = None
        self._describing = threading.Lock()

    def warm_up(self) -> None:
        """One model call now, so that the first request does not pay for lazy set-ups."""
        spec = self.predictor.input
        batch = np.zeros((1, spec.channels, *spec.size), np.uint8)
        self.worker.classify(batch, [("-", 1)]).result()

    def close(self) -> None:
        self.worker.close(timeout=10)
        self.decoders.shutdown(wait=False, cancel_futures=True)

    # -- classify -----------------------------------------------------------------------

    async def classify(self, uploads: list[Upload], top_k: int = 5) -> tuple[list[Record], int]:
        """(one record per image, as predict writes it; the largest model call they were in).

        An image that cannot be read gets predict's error record; a request
        none of whose images can be read is refused (RequestError 422).
        """
        from cnnkit.predict.decode import decode_chunk
        from cnnkit.predict.images import PredictInput

        loop = asyncio.get_running_loop()
        items = [PredictInput(u.name, data=u.data) for u in uploads]
        future = None
        with self.worker.expecting():  # the batch being gathered waits for these images
            if _small(uploads):  # sooner decoded than handed to a thread and back
                chunk = decode_chunk(self.predictor, items)
            else:
                chunk = await loop.run_in_executor(
                    self.decoders, decode_chunk, self.predictor, items
                )
            errors = chunk.errors
            tags = [(u.name, top_k) for u, e in zip(uploads, errors, strict=True) if e is None]
            if tags:
                future = self.worker.classify(chunk.batch, tags)
        if future is None:
            error = chunk.errors[0]
            raise _unreadable(error or ValueError("unreadable"), uploads[0].name)
        classified = await asyncio.wrap_future(future)
        records = iter(classified.answers)
        out = []
        for upload, error in zip(uploads, chunk.errors, strict=True):
            if error is None:
                out.append(next(records))
            else:
                out.append({"path": upload.name, "error": _message(error, upload.name)})
        return out, classified.batch

    def _records(self, batch: np.ndarray, tags: list[tuple[str, int]]) -> list[Record]:
        """predict's records of a batch (on the model's thread); ``tags``: (name, top-k) each."""
        from cnnkit.evaluation.metrics import softmax

        probs = softmax(self.predictor.logits(batch))
        names = [name for name, _ in tags]
        ks = {k for _, k in tags}
        if len(ks) == 1:  # the usual case: the whole batch in one pass
            return self.predictor.records(names, probs, ks.pop())
        out: list[Record] = [{}] * len(tags)
        for k in ks:
            rows = [i for i, (_, top_k) in enumerate(tags) if top_k == k]
            records = self.predictor.records([names[i] for i in rows], probs[rows], k)
            for i, record in zip(rows, records, strict=True):
                out[i] = record
        return out

    # -- explain ------------------------------------------------------------------------

    async def explain(
        self,
        upload: Upload,
        top_k: int = 5,
        method: str = "gradcam",
        class_: str | None = None,
        layer: str | None = None,
        alpha: float = 0.5,
        annotate: bool = True,
    ) -> Record:
        """predict's record of the image, and ``explanation``: explain's record and the PNG.

        ``explanation`` holds what ``cnnkit explain --json`` writes (label and
        score of the class explained, method, layer, peak) with the overlay's
        PNG as base64 in ``overlay_png`` in place of the file written.
        """
        from cnnkit.saliency import check_method

        onnx = self.clf.backend == "onnxruntime"
        if onnx and method in ("gradcam", "gradcam++"):
            raise RequestError(
                422,
                f"method={method} needs gradients, which an .onnx model does not give",
                hint="ask for ?method=occlusion, or serve the .ckpt the .onnx was exported from",
            )
        with python_spelling(QUERY_NAMES):
            check_method(method, onnx)
        loop = asyncio.get_running_loop()
        image, prepared = await loop.run_in_executor(self.decoders, self._decode_one, upload)
        predictor = self.predictor

        def on_model_thread() -> tuple[Record, Any]:
            from cnnkit.evaluation.metrics import softmax
            from cnnkit.saliency import check_request, explain_images

            # check_request finds the default layer by running the model: here, not
            # in a decode thread, while a batch may be running on the same model.
            with python_spelling(QUERY_NAMES):
                target, chosen = check_request(predictor, method, class_, None, layer)
            batch = prepared[None]
            record = predictor.records([upload.name], softmax(predictor.logits(batch)), top_k)[0]
            ((explained,),) = explain_images(
                predictor, [image], method, chosen, target, None, [upload.name], prepared=batch
            )
            return record, explained

        record, explained = await asyncio.wrap_future(self.worker.call(on_model_thread))
        png = await loop.run_in_executor(self.decoders, _overlay_png, explained, alpha, annotate)
        explanation = explained.record()
        del explanation["path"]
        explanation["overlay_png"] = base64.b64encode(png).decode("ascii")
        return {**record, "explanation": explanation}

    def _decode_one(self, upload: Upload) -> tuple[np.ndarray, np.ndarray]:
        from cnnkit.io.image import read_image_bytes

        try:
            image = read_image_bytes(upload.data, upload.name)
            return image, self.predictor.prepare_image(image)
        except Exception as exc:  # noqa: BLE001 - said to the client, as predict says it
            raise _unreadable(exc, upload.name) from None

    # -- describe -----------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """What ``cnnkit inspect MODEL --json`` prints for the model served (made once)."""
        with self._describing:
            if self._description is None:
                self._description = _inspect(self.clf.reference)
            return self._description

    def stats(self) -> dict[str, Any]:
        worker = self.worker.stats
        answered = sum(self.statuses.values())
        return {
            "uptime_s": round(time.monotonic() - self.started, 3),
            "requests": answered,
            "errors": sum(n for status, n in self.statuses.items() if status >= 400),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "model_calls": worker.calls,
            "images": worker.images,
            "largest_batch": worker.largest,
            "mean_batch": round(worker.images / worker.calls, 3) if worker.calls else None,
            "explanations": worker.jobs,
            "max_batch": self.worker.max_batch,
            "max_wait_ms": round(self.worker.max_wait_s * 1000, 3),
            "workers": self.workers,
        }


# Images a request may hold to be decoded on the event loop's own thread, in pixels
# their headers declare all together: a few small images (32×32 PNGs decode in
# tens of microseconds) cost less to decode there than the hand-over to a decode
# thread and back, which took a fifth of the loop's time; anything larger, or
# whose size its header does not say, is decoded on the decode threads.
INLINE_PIXELS = 64 * 1024


def _small(uploads: list[Upload]) -> bool:
    from cnnkit.io.headers import image_size

    total = 0
    for upload in uploads:
        size = image_size(upload.data)
        if size is None:
            return False
        total += size[0] * size[1]
    return total <= INLINE_PIXELS


def _inspect(reference: str) -> dict[str, Any]:
    from cnnkit.refs import parse

    if parse(reference).kind == "onnx":
        from cnnkit.onnxmodel import summarize_onnx

        return summarize_onnx(reference)
    from cnnkit.summary.targets import inspect_checkpoint

    return inspect_checkpoint(reference).summary


def _overlay_png(explained: Any, alpha: float, annotate: bool) -> bytes:
    from cnnkit.io.image import encode_png

    return encode_png(explained.overlay(alpha, annotate=annotate))


def _message(exc: BaseException, name: str) -> str:
    """An image's error as predict's record says it; the raw body is "the request body"."""
    from cnnkit.predict.decode import error_text

    text = error_text(exc)
    return re.sub(r"^stdin\b", "the request body", text) if name == "-" else text


def _unreadable(exc: BaseException, name: str) -> RequestError:
    """The refusal of a request none of whose images can be read, with a hint for its client."""
    from cnnkit.io.headers import PIXELS_VARIABLE, max_image_pixels

    hint = exc.hint if isinstance(exc, CnnkitError) else None
    if hint and PIXELS_VARIABLE in hint:  # a limit the client cannot change, but can stay under
        hint = (
            f"send a smaller image: this server reads at most {max_image_pixels():,} pixels "
            f"an image (its {PIXELS_VARIABLE})"
        )
    hint = hint or "send a PNG, JPEG, GIF, BMP, TIFF or WebP image"
    return RequestError(422, _message(exc, name), hint)
