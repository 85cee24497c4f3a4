"""The Python API beside ``cnnkit.load``: train, evaluate, explain and export.

Each function does what its command does, with the same checks and the same
results, and returns them instead of printing: ``evaluate(...).to_dict()`` is
the document ``cnnkit eval --json`` prints, ``train(...).summary`` the one of
``cnnkit train --json``. Messages go to the ``cnnkit`` logger.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnkit.errors import InputError, python_names, python_spelling
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
    from cnnkit.training.options import BY_NAME, TrainConfig

    for name in options:
        option = BY_NAME.get(name)
        if option is None or not option.cli:
            known = [n for n, o in BY_NAME.items() if o.cli]
            raise InputError(
                f"train() has no option {name!r}", hint=close_match_hint(name, known, "option")
            )
    values = {k: (os.fspath(v) if isinstance(v, os.PathLike) else v) for k, v in options.items()}
    for name, value in values.items():  # devices=2 reads as naturally as devices="2"
        integral = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        if BY_NAME[name].type is str and integral:
            values[name] = str(value)
    for name, value in values.items():
        _check_type(name, value, BY_NAME[name])
    # Messages name options as the command line spells them (--img-size): here, img_size.
    names = {o.flag.lstrip("-"): n for n, o in BY_NAME.items() if o.cli}
    names.update({n.replace("_", "-"): n for n in names.values()})
    with python_spelling(names):
        cfg = TrainConfig(**values, command_line=["cnnkit.train", *options], explicit=list(options))
        with _process_state_kept():
            # Imported here: Lightning's imports add warning filters of their own.
            from cnnkit.training.fit import fit

            summary = fit(cfg)
    if summary is None:  # a DDP worker rank: the rank that started training reports
        raise InputError("this process is a DDP worker; rank 0 returns the result")
    run_dir = Path(summary["run_dir"])
    best = summary.get("best_checkpoint")
    return TrainResult(run_dir, Path(best) if best else None, dict(summary["metrics"]), summary)


def _check_type(name: str, value: Any, option: Any) -> None:
    """InputError unless ``value`` has the type the option table declares (None: default)."""
    if value is None:
        return
    kind = option.type
    ok = {
        int: isinstance(value, numbers.Integral) and not isinstance(value, bool),
        float: isinstance(value, numbers.Real) and not isinstance(value, bool),
        bool: isinstance(value, bool),
        str: isinstance(value, str),
        list: isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value),
    }.get(kind, True)
    if not ok:
        what = {int: "a whole number", float: "a number", bool: "True or False", str: "a str",
                list: "a list of str"}.get(kind, getattr(kind, "__name__", str(kind)))  # fmt: skip
        raise InputError(
            f"train() option {name}={value!r} is not {what}",
            hint=f"e.g. {name}={option.example or repr(option.default)}",
        )


@contextmanager
def _process_state_kept() -> Iterator[None]:
    """Give back what training sets for the whole process: seeds, determinism, warnings.

    Lightning seeds torch, numpy and ``random`` (and says so in environment
    variables), and training turns on torch's deterministic algorithms and
    filters warnings; a library call leaves the caller's process as it was.
    """
    import random
    import warnings

    with warnings.catch_warnings():  # first: importing torch's parts adds filters too
        import numpy as np
        import torch
        import torch.utils.deterministic

        names = ("PL_GLOBAL_SEED", "PL_SEED_WORKERS", "CUBLAS_WORKSPACE_CONFIG")
        env = {k: os.environ.get(k) for k in names}
        rng = (random.getstate(), np.random.get_state(), torch.get_rng_state())
        deterministic = torch.are_deterministic_algorithms_enabled()
        warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
        fill = torch.utils.deterministic.fill_uninitialized_memory
        threads = torch.get_num_threads()
        try:
            yield
        finally:
            random.setstate(rng[0])
            np.random.set_state(rng[1])
            torch.set_rng_state(rng[2])
            torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
            torch.utils.deterministic.fill_uninitialized_memory = fill
            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)
            for key, value in env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


@python_names()
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
    from cnnkit.predict.classifier import _whole

    for name, value in (("top_k", top_k), ("clips", clips), ("batch_size", batch_size)):
        _whole(name, value)
    if limit is not None:
        _whole("limit", limit)
    for name, value in (("dataset", dataset), ("split", split), ("data_dir", data_dir)):
        if value is not None and not isinstance(value, (str, os.PathLike)):
            raise InputError(f"{name} must be a name or a path, got {value!r}")
    dataset = os.fspath(dataset) if dataset is not None else None
    data_dir = os.fspath(data_dir) if data_dir is not None else None
    ref = _reference(ref)
    report, _ = measure(
        ref, dataset, data_dir, split, limit, top_k, clips, batch_size, device, background
    )
    return report


@python_names({"class": "target"})
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

    clf = model if isinstance(model, Classifier) else load(_reference(model))
    predictor = clf.predictor
    check_method(method, clf.backend == "onnxruntime")
    if predictor.is_video_model:
        raise InputError(
            "explain() takes images; a video model's maps are drawn by `cnnkit explain`",
            hint="cnnkit explain MODEL clip.mp4",
        )
    name = None
    if isinstance(target, bool):
        raise InputError(f"target must be a class name or index, got {target!r}")
    if isinstance(target, numbers.Integral):
        target = int(target)
        if not 0 <= target < len(predictor.classes):
            raise InputError(
                f"target {target} is not a class index (0-{len(predictor.classes) - 1})"
            )
        name = predictor.classes[target]
    elif target is not None:
        name = str(target)
    index, chosen_layer = check_request(predictor, method, name, None, layer)
    prepared = None
    if isinstance(x, np.ndarray):
        from cnnkit.predict.classifier import _images_of

        (image,) = _images_of(x, single=True)
        path = None
    elif not isinstance(x, (str, bytes, os.PathLike)):
        raise InputError(
            f"explain() takes one image: a path or an H×W×C uint8 array, not {type(x).__name__}",
            hint="call it once per image",
        )
    else:
        from cnnkit.saliency.files import read_for_explain

        path = os.fspath(x)
        image, one = read_for_explain(predictor, path)
        prepared = one[None]
    (explanations,) = explain_images(
        predictor, [image], method, chosen_layer, index, None, [path], prepared=prepared
    )
    return explanations[0]


def _reference(ref: Any) -> str:
    """A model reference as text: a path, MODEL:DATA, or a Classifier's own source."""
    from cnnkit.predict.classifier import Classifier

    if isinstance(ref, Classifier):
        ref = ref.reference
    if not isinstance(ref, (str, bytes, os.PathLike)):
        raise InputError(
            f"a model is a path, MODEL:DATA or a Classifier, not {type(ref).__name__}",
            hint='e.g. "runs/train/checkpoints/best.ckpt" or "resnet18:imagenet"',
        )
    return os.fsdecode(ref)


@python_names()
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
    from cnnkit.predict.classifier import _whole

    if batch is not None and _whole("batch", batch) > MAX_BATCH:
        raise InputError(f"batch must be from 1 to {MAX_BATCH}, got {batch}")
    if not 18 <= _whole("opset", opset) <= 23:
        raise InputError(f"opset must be from 18 to 23, got {opset}")
    text = _reference(ref)
    out = Path(path) if path is not None else default_output(text)
    return export_onnx(text, out, opset=opset, batch=batch, verify=verify).path
