"""Prediction: ``load`` a model as a ``Classifier``, then classify images, folders and videos.

- ``classifier``: the Python API (``Classifier``, ``Prediction``, ``load``);
- ``predictor``: the engine (a backend, the preprocessing, batching);
- ``images``: image files and mixed inputs, decoded ahead of the model;
- ``videos``: windows or frames of a video over time.
"""

from cnnkit.predict.classifier import Classifier, Prediction, load, open_predictor
from cnnkit.predict.images import PredictInput, predict_images, predict_inputs
from cnnkit.predict.predictor import Predictor
from cnnkit.predict.videos import predict_video

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
