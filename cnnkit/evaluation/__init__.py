"""Measuring a trained classifier: ``cnnkit eval`` and training's final numbers.

- ``metrics``: accuracy, top-k, loss, per-class report on numpy arrays;
- ``files``: the confusion matrix (PNG/CSV) and misclassified (CSV) files;
- ``runner``: a model run over a dataset split (``evaluate``);
- ``selection``: which split of which dataset eval measures.
"""

from cnnkit.evaluation.files import render_confusion, write_confusion, write_misclassified
from cnnkit.evaluation.metrics import (
    EvalReport,
    compute_report,
    confusion_matrix,
    cross_entropy,
    softmax,
    top_k_accuracy,
    video_level_accuracy,
)
from cnnkit.evaluation.runner import evaluate
from cnnkit.evaluation.selection import load_eval_data

__all__ = [
    "EvalReport",
    "compute_report",
    "confusion_matrix",
    "cross_entropy",
    "evaluate",
    "load_eval_data",
    "render_confusion",
    "softmax",
    "top_k_accuracy",
    "video_level_accuracy",
    "write_confusion",
    "write_misclassified",
]
