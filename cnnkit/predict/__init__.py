"""Prediction: ``load`` a model as a ``Classifier``, then classify images, folders and videos.

- ``classifier``: the Python API (``Classifier``, ``Prediction``, ``load``);
- ``predictor``: the engine (a backend, the preprocessing, batching);
- ``images``: image files and mixed inputs, decoded ahead of the model;
- ``decode``: a chunk of images read, decoded and prepared at once;
- ``processes``: decode processes, for processes that decode many images;
- ``videos``: windows or frames of a video over time.

The names below load on first use: a decode process imports
``cnnkit.predict.decode`` and ``cnnkit.predict.predictor`` alone, and starts
sooner without the rest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "Classifier",
    "PredictInput",
    "Prediction",
    "Predictor",
    "load",
    "open_predictor",
    "predict_images",
    "predict_inputs",
    "predict_video",
]

_LAZY = {
    "Classifier": "cnnkit.predict.classifier",
    "Prediction": "cnnkit.predict.classifier",
    "load": "cnnkit.predict.classifier",
    "open_predictor": "cnnkit.predict.classifier",
    "PredictInput": "cnnkit.predict.images",
    "predict_images": "cnnkit.predict.images",
    "predict_inputs": "cnnkit.predict.images",
    "Predictor": "cnnkit.predict.predictor",
    "predict_video": "cnnkit.predict.videos",
}

if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names load on first use
    from cnnkit.predict.classifier import Classifier, Prediction, load, open_predictor
    from cnnkit.predict.images import PredictInput, predict_images, predict_inputs
    from cnnkit.predict.predictor import Predictor
    from cnnkit.predict.videos import predict_video


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # looked up once
        return value
    raise AttributeError(f"module 'cnnkit.predict' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(__all__) | {n for n in globals() if n.startswith("__")})
