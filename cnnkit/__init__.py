"""cnnkit: image and video classification with CNNs, from the command line and from Python.

>>> import cnnkit
>>> clf = cnnkit.load("runs/train/checkpoints/best.ckpt")   # doctest: +SKIP
>>> clf.predict("digit.png")[0].label                       # doctest: +SKIP
'7'

The public API is imported lazily, so that ``import cnnkit`` (and the CLI's
``--help``) never pays for torch. The library prints nothing: messages go to
the ``logging`` logger ``cnnkit`` (silent unless logging is configured; the
CLI shows them on stderr), results are return values, and errors are
:class:`CnnkitError` subclasses with a ``hint``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from cnnkit.errors import CnnkitError

__version__ = "0.1.0"

# A library's logger has a NullHandler: without configured logging, nothing is
# printed (not even Python's last-resort warnings on stderr).
logging.getLogger("cnnkit").addHandler(logging.NullHandler())

__all__ = [
    "Classifier",
    "CnnkitError",
    "EvalReport",
    "Explanation",
    "Prediction",
    "TrainResult",
    "TrainingInterrupted",
    "__version__",
    "convolve",
    "create_model",
    "evaluate",
    "explain",
    "export",
    "list_models",
    "load",
    "load_checkpoint",
    "train",
]

_LAZY = {
    "Classifier": ("cnnkit.predict.classifier", "Classifier"),
    "Prediction": ("cnnkit.predict.classifier", "Prediction"),
    "load": ("cnnkit.predict.classifier", "load"),
    "EvalReport": ("cnnkit.api", "EvalReport"),
    "evaluate": ("cnnkit.api", "evaluate"),
    "Explanation": ("cnnkit.api", "Explanation"),
    "explain": ("cnnkit.api", "explain"),
    "export": ("cnnkit.api", "export"),
    "TrainResult": ("cnnkit.api", "TrainResult"),
    "TrainingInterrupted": ("cnnkit.training.fit", "TrainingInterrupted"),
    "train": ("cnnkit.api", "train"),
    "convolve": ("cnnkit.ops", "convolve"),
    "create_model": ("cnnkit.models.registry", "create_model"),
    "list_models": ("cnnkit.models.registry", "list_models"),
    "load_checkpoint": ("cnnkit.checkpoint", "load_checkpoint"),
}

if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names load on first use
    from cnnkit.api import EvalReport, Explanation, TrainResult, evaluate, explain, export, train
    from cnnkit.checkpoint import load_checkpoint
    from cnnkit.models.registry import create_model, list_models
    from cnnkit.ops import convolve
    from cnnkit.predict.classifier import Classifier, Prediction, load
    from cnnkit.training.fit import TrainingInterrupted


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module_name, attr = _LAZY[name]
        value = getattr(importlib.import_module(module_name), attr)
        globals()[name] = value  # looked up once
        return value
    raise AttributeError(f"module 'cnnkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(__all__) | {n for n in globals() if n.startswith("__")})
