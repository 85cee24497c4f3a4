"""The Python API beside ``cnnkit.load``: train, evaluate, explain and export.

Each function does what its command does, with the same checks and the same
results, and returns them instead of printing: ``evaluate(...).to_dict()`` is
the document ``cnnkit eval --json`` prints, ``train(...).summary`` the one of
``cnnkit train --json``. Messages go to the ``cnnkit`` logger.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnkit.errors import InputError
from cnnkit.evaluation.metrics import EvalReport
from cnnkit.saliency.images import Explanation

__all__ = ["EvalReport", "Explanation", "TrainResult", "evaluate", "explain", "export", "train"]


@dataclass(frozen=True)
class TrainResult:
    """What a training run left: its folder, its best checkpoint and its measured numbers.

    ``metrics``: val_acc, test_acc... (None where a split is missing);
    ``summary``: the whole ``cnnkit train --json`` document.
    """

    run_dir: Path
    best_checkpoint: Path | None
    metrics: dict[str, Any]
    summary: dict[str, Any] = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.summary)


def train(**options: Any) -> TrainResult:
    """Train a model, with ``cnnkit train``'s options by their Python names.

    >>> res = cnnkit.train(dataset="shapes", model="lenet5", epochs=1)  # doctest: +SKIP
    >>> res.best_checkpoint  # doctest: +SKIP
    PosixPath('runs/shapes-lenet5/checkpoints/best.ckpt')

    Options are checked by the same table and messages as the command line
    (an unknown name or a value out of range is an InputError). Ctrl-C saves
    ``last.ckpt`` and raises ``cnnkit.training.fit.TrainingInterrupted``.
    """
    from cnnkit.errors import close_match_hint
    from cnnkit.training.fit import fit
    from cnnkit.training.options import BY_NAME, TrainConfig

    for name in options:
        option = BY_NAME.get(name)
        if option is None or not option.cli:
            known = [n for n, o in BY_NAME.items() if o.cli]
            raise InputError(
                f"train() has no option {name!r}", hint=close_match_hint(name, known, "option")
            )
    values = {k: (os.fspath(v) if isinstance(v, os.PathLike) else v) for k, v in options.items()}
    cfg = TrainConfig(**values, command_line=["cnnkit.train", *options], explicit=list(options))
    summary = fit(cfg)
    if summary is None:  # a DDP worker rank: the rank that started training reports
        raise InputError("this process is a DDP worker; rank 0 returns the result")
    run_dir = Path(summary["run_dir"])
    best = summary.get("best_checkpoint")
    return TrainResult(run_dir, Path(best) if best else None, dict(summary["metrics"]), summary)


def evaluate(
    ref: str | os.PathLike[str],
    dataset: str | None = None,
    split: str | None = None,
    *,
    data_dir: str | None = None,
    limit: int | None = None,
    top_k: int = 5,
    clips: int = 1,
    batch_size: int = 256,
    device: str = "auto",
    background: str | Sequence[int] | None = None,
) -> EvalReport:
    """Measure a model on a dataset split, as ``cnnkit eval`` does.

    ``ref``: a .ckpt, an .onnx or MODEL:DATA; ``dataset``: a folder or a
    dataset name (default: the checkpoint's own, its test split, else val).

    >>> rep = cnnkit.evaluate("best.ckpt", "digits/")  # doctest: +SKIP
    >>> rep.accuracy, rep.to_dict()["per_class"]["7"]["recall"]  # doctest: +SKIP
    (0.9875, 1.0)
    """
    from cnnkit.evaluation.measure import measure

    for name, value, low in (
        ("top_k", top_k, 1),
        ("clips", clips, 1),
        ("batch_size", batch_size, 1),
    ):
        if value < low:
            raise InputError(f"{name} must be at least {low}, got {value}")
    report, _ = measure(
        ref, dataset, data_dir, split, limit, top_k, clips, batch_size, device, background
    )
    return report


def explain(
    model: Any,
    x: Any,
    method: str = "gradcam",
    target: str | int | None = None,
    layer: str | None = None,
) -> Explanation:
    """Where the network looked in one image, for one class.

    ``model``: a Classifier (``cnnkit.load``) or a reference to load; ``x``: an
    image path or an H×W[×C] uint8 RGB array; ``target``: the class (name or
    index; default the prediction); ``method``: gradcam, gradcam++ or
    occlusion (the only one for an .onnx).

    >>> ex = cnnkit.explain(clf, "digit.png")  # doctest: +SKIP
    >>> ex.label, ex.peak, ex.heatmap.shape  # doctest: +SKIP
    ('7', (14, 9), (28, 28))
    """
    import numpy as np

    from cnnkit.predict.classifier import Classifier, load
    from cnnkit.saliency.files import check_request
    from cnnkit.saliency.images import explain_images
    from cnnkit.saliency.methods import check_method

    clf = model if isinstance(model, Classifier) else load(model)
    predictor = clf.predictor
    check_method(method, clf.backend == "onnxruntime")
    if predictor.is_video_model:
        raise InputError(
            "explain() takes images; a video model's maps are drawn by `cnnkit explain`",
            hint="cnnkit explain MODEL clip.mp4",
        )
    name = None
    if isinstance(target, int):
        if not 0 <= target < len(predictor.classes):
            raise InputError(
                f"target {target} is not a class index (0-{len(predictor.classes) - 1})"
            )
        name = predictor.classes[target]
    elif target is not None:
        name = str(target)
    index, chosen_layer = check_request(predictor, method, name, None, layer)
    if isinstance(x, np.ndarray):
        from cnnkit.predict.classifier import _images_of

        (image,) = _images_of(x, single=True)
        path = None
    else:
        from cnnkit.io.image import read_image

        path = os.fspath(x)
        image = read_image(path)
    (explanations,) = explain_images(predictor, [image], method, chosen_layer, index, None, [path])
    return explanations[0]


def export(
    ref: str | os.PathLike[str],
    path: str | os.PathLike[str] | None = None,
    *,
    opset: int = 18,
    batch: int | None = None,
    verify: bool = True,
) -> Path:
    """Export a .ckpt or MODEL:DATA to ONNX (uint8 pixels in, logits out); the file written.

    Default ``path``: the checkpoint's name with .onnx. ``batch``: a fixed batch
    size (None: any). ``verify``: check ONNX Runtime's logits against torch's.

    >>> cnnkit.export("best.ckpt")  # doctest: +SKIP
    PosixPath('best.onnx')
    """
    from cnnkit.onnxexport import MAX_BATCH, default_output, export_onnx

    if batch is not None and not 1 <= batch <= MAX_BATCH:
        raise InputError(f"batch must be from 1 to {MAX_BATCH}, got {batch}")
    if not 18 <= opset <= 23:
        raise InputError(f"opset must be from 18 to 23, got {opset}")
    text = os.fspath(ref)
    out = Path(path) if path is not None else default_output(text)
    return export_onnx(text, out, opset=opset, batch=batch, verify=verify).path
