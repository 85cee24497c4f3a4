"""``cnnkit explain`` as a library function: maps for files, written as PNGs and MP4s.

:func:`check_request` makes every refusal the options can cause before any
input is read; :func:`explain_sources` then explains images in batches and
videos one by one, in input order, writing one overlay per map and yielding
its record (or ``{"path", "error"}`` for an input that cannot be explained).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from cnnkit.errors import CnnkitError, InputError
from cnnkit.predict.predictor import Predictor
from cnnkit.saliency.images import explain_images
from cnnkit.saliency.methods import check_map_layer, default_layer
from cnnkit.saliency.videos import explain_video


def check_request(
    predictor: Predictor,
    method: str,
    class_: str | None = None,
    top_k: int | None = None,
    layer: str | None = None,
    stride: int | None = None,
) -> tuple[int | None, str | None]:
    """(class index explained or None, Grad-CAM layer or None), or the InputError to say."""
    video = predictor.is_video_model
    if video and method == "occlusion":
        raise InputError(
            "--method occlusion draws maps for image models; this is a video model",
            hint="use --method gradcam (maps over time)",
        )
    if top_k is not None and video:
        raise InputError(
            "--top-k is for image models; a video model's windows are explained for one class",
            hint="give --class LABEL, or leave both out for each window's prediction",
        )
    if stride is not None and video:
        raise InputError(
            f"--stride is for 2D models on videos; this model explains windows of "
            f"{predictor.input.frames} frames one after another",
            hint="drop --stride",
        )
    if class_ is not None and top_k is not None:
        raise InputError("--class and --top-k both choose the classes", hint="give one of them")
    target = None
    if class_ is not None:
        if class_ not in predictor.classes:
            from cnnkit.errors import close_match_hint

            raise InputError(
                f"--class {class_!r} is not one of the model's classes",
                hint=close_match_hint(class_, predictor.classes, "class"),
            )
        target = predictor.classes.index(class_)
    if method == "occlusion":
        if layer is not None:
            raise InputError("--layer is for gradcam and gradcam++", hint="drop --layer")
        return target, None
    shape = predictor.input.shape()
    if layer is not None and not layer.strip():
        raise InputError("--layer '' names no layer", hint="leave --layer out for the default")
    # The model is not moved: other threads may be running it (a shared Classifier).
    if layer is None:
        layer = default_layer(predictor.model, shape)
    else:
        check_map_layer(predictor.model, shape, layer)
    return target, layer


def read_for_explain(
    predictor: Predictor, path: str, data: bytes | bytearray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(an image file or ``data`` decoded in full, for its overlay; it prepared for the model).

    The model's input is what predict gives it: a large JPEG is decoded a
    second time for it, at a reduced scale and resized to the model's size
    (cnnkit.io.image).
    """
    from cnnkit.io.image import read_image_bytes, read_image_file, reduced_decode_factor

    if data is None:
        data = read_image_file(path)
    image = read_image_bytes(data, path)
    size = predictor.input.size
    reduced = reduced_decode_factor(data, size) > 1
    model_image = read_image_bytes(data, path, target=size) if reduced else image
    return image, predictor.prepare_image(model_image)


def explain_sources(
    predictor: Predictor,
    sources: Iterable[Any],
    out_dir: Path,
    method: str = "gradcam",
    layer: str | None = None,
    target: int | None = None,
    top_k: int | None = None,
    alpha: float = 0.5,
    batch_size: int = 16,
    stride: int = 1,
) -> Iterator[dict[str, Any]]:
    """Explain ``sources`` (cnnkit.io.sources.Source) into ``out_dir``, records in input order.

    Images go ``batch_size`` at a time; each map is an overlay PNG named
    ``STEM-METHOD[-topK].png`` (``-2``, ``-3``... when names repeat), a video
    one MP4. Maps an earlier run wrote into ``out_dir`` are not inputs.
    """
    from cnnkit.io.image import write_image

    inside = out_dir.resolve()
    used: set[str] = set()
    pending: list[tuple[str, Any, Any]] = []

    def flush() -> Iterator[dict[str, Any]]:
        paths = [path for path, _, _ in pending]
        images = [image for _, image, _ in pending]
        prepared = np.stack([p for _, _, p in pending])
        per_image = explain_images(
            predictor, images, method, layer, target, top_k, paths, prepared=prepared
        )
        pending.clear()
        for path, explanations in zip(paths, per_image, strict=True):
            for e in explanations:
                tag = method if e.rank is None else f"{method}-top{e.rank}"
                out = unique_output(out_dir, path, tag, used, ".png")
                write_image(out, e.overlay(alpha))
                yield e.record(output=str(out))

    for source in sources:
        if _earlier_map(source.path, inside):
            continue
        try:
            if source.error:
                raise InputError(source.error)
            if source.kind == "video" and method != "occlusion":
                if top_k is not None:
                    raise InputError("--top-k is for images; a video is explained for one class")
                if pending:
                    yield from flush()  # the images before it first: records in input order
                out = unique_output(out_dir, source.path, method, used, ".mp4")
                yield from explain_video(
                    predictor, source.path, out, method, layer, target, alpha, stride
                )
                continue
            if source.kind != "image" or predictor.is_video_model:
                raise InputError(
                    "a video model explains videos, not images"
                    if predictor.is_video_model
                    else "--method occlusion draws maps for images, not videos"
                )
            # source.data: an encoded image on stdin
            image, prepared = read_for_explain(predictor, source.path, source.data)
            pending.append((source.path, image, prepared))
        except CnnkitError as exc:
            yield {"path": source.path, "error": exc.message}
            continue
        if len(pending) >= batch_size:
            yield from flush()
    if pending:
        yield from flush()


def _earlier_map(path: str, out_dir: Path) -> bool:
    """Whether ``path`` is a map this command writes (name and folder), not an input."""
    if path == "-" or Path(path).resolve().parent != out_dir:
        return False
    return bool(re.search(r"-(gradcam|gradcampp|occlusion)(-top\d+)?(-\d+)?\.(png|mp4)$", path))


def unique_output(out_dir: Path, path: str, method: str, used: set[str], ext: str) -> Path:
    """``out_dir/STEM-METHOD.ext``, numbered when the name was already used in this run."""
    stem = "stdin" if path == "-" else Path(path).stem
    name = f"{stem}-{method.replace('+', 'p')}"
    stem, n = name, 2
    while stem in used:
        stem, n = f"{name}-{n}", n + 1
    used.add(stem)
    return out_dir / f"{stem}{ext}"
