"""``cnnkit eval`` as one library function: open a model, choose the data, measure."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from cnnkit import console
from cnnkit.evaluation.metrics import EvalReport
from cnnkit.evaluation.runner import evaluate
from cnnkit.evaluation.selection import EvalData, load_eval_data


def measure(
    ref: str | os.PathLike[str],
    dataset: str | None = None,
    data_dir: str | None = None,
    split: str | None = None,
    limit: int | None = None,
    top_k: int = 5,
    clips: int = 1,
    batch_size: int = 256,
    device: str = "auto",
    background: str | Sequence[int] | None = None,
    precision: str = "auto",
) -> tuple[EvalReport, EvalData]:
    """Measure a model (.ckpt, .onnx or MODEL:DATA) on a dataset split: (report, data).

    The data is chosen as ``cnnkit eval`` chooses it (cnnkit.evaluation.selection):
    the checkpoint's own test split (else val) when ``dataset`` is None.
    """
    from cnnkit.data.preprocess import parse_colour
    from cnnkit.predict import open_predictor
    from cnnkit.refs import is_onnx_path

    ref = os.fspath(ref)
    predictor, ckpt = open_predictor(ref, device, batch_size, precision=precision)
    if background is not None:
        colour = parse_colour(background) if isinstance(background, str) else background
        predictor.set_background(colour)
        ckpt.meta.input = predictor.input  # the dataset is decoded with it too
    # An .onnx is measured without torch: folder datasets are read with numpy and OpenCV.
    data = load_eval_data(ckpt, dataset, data_dir, split, limit, numpy=is_onnx_path(ref))
    console.info(f"evaluating on {data.dataset} ({data.split}, {len(data.data)} samples)")
    _check_batch_memory(predictor, batch_size, len(data.data) * clips)
    report = evaluate(predictor, data.data, top_k=top_k, clips=clips, label_map=data.label_map)
    report.about = {"checkpoint": ref, "dataset": data.dataset, "split": data.split}
    return report, data


def _check_batch_memory(predictor: Any, batch_size: int, samples: int) -> None:
    """Refuse before running a batch that would not fit in memory (a clear line, not numpy's)."""
    from cnnkit.ops.limits import check_batch_memory

    spec = predictor.input
    sample = (spec.channels, *([spec.frames] if spec.frames else []), *spec.size)
    what = "clips" if spec.frames else "samples"
    options = f"--batch-size {batch_size}"
    check_batch_memory(min(batch_size, samples), sample, what, options)
