"""Maps for batches of images: one :class:`Explanation` per image and class explained.

The one place a batch is normalised and handed to Grad-CAM (or occlusion):
images here, video windows and frames in cnnkit.saliency.videos.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cnnkit.evaluation.metrics import softmax
from cnnkit.predict.predictor import Predictor
from cnnkit.saliency.methods import blend, gradcam, occlusion, overlay, peak


@dataclass
class Explanation:
    """Where the network looked for one class in one image.

    ``heatmap``: float32 H×W in 0-1 at the image's own resolution; ``peak``:
    (x, y) of its maximum in the image's pixels; ``label`` and ``score``: the
    class explained and its probability; ``rank``: its place among the
    image's most likely classes (with top-k), else None.
    """

    label: str
    score: float
    heatmap: np.ndarray = field(repr=False)
    peak: tuple[int, int]
    method: str
    layer: str | None
    path: str | None = None
    rank: int | None = None
    image: np.ndarray | None = field(default=None, repr=False)
    background: tuple[int, int, int] = (255, 255, 255)

    def overlay(
        self, alpha: float = 0.5, text: str | None = None, annotate: bool = True
    ) -> np.ndarray:
        """The heat map over the image, uint8 RGB: the picture ``cnnkit explain`` writes.

        With ``annotate`` (the default), an image under 224 pixels on its shorter
        side is enlarged by a whole factor (nearest neighbours: its pixels stay
        visible; the heat map bilinear) and ``text`` (default: "LABEL SCORE") is
        written in a band above it, outside the image's pixels; the picture is
        then larger than the image. ``annotate=False``: the plain overlay at the
        image's own size, no text, pixel for pixel with ``heatmap`` and ``peak``.
        """
        if self.image is None:
            raise ValueError("this explanation holds no image to draw on")
        if not annotate:
            return blend(self.image, self.heatmap, alpha, self.background)
        words = f"{self.label} {self.score:.2f}" if text is None else text
        return overlay(self.image, self.heatmap, alpha, words, self.background)

    def record(self, output: str | None = None) -> dict[str, Any]:
        """The JSON record ``cnnkit explain --json`` prints; ``output``: the file written."""
        out: dict[str, Any] = {
            "path": self.path,
            "label": self.label,
            "score": round(self.score, 6),
            "method": self.method,
            "layer": self.layer,
        }
        if output is not None:
            out["output"] = output
        out["peak"] = list(self.peak)
        if self.rank is not None:
            out["rank"] = self.rank
        return out


def batch_maps(
    predictor: Predictor,
    batch: np.ndarray,
    method: str,
    layer: str | None,
    targets: Sequence[int] | None,
) -> tuple[np.ndarray, np.ndarray]:
    """(maps at the model's input size in 0-1, probabilities) of a prepared uint8 batch.

    ``targets``: the class explained for each input (None: its prediction).
    Grad-CAM needs the torch model; occlusion needs only logits.
    """
    if method == "occlusion":
        maps, logits = occlusion(predictor.logits, batch, targets, predictor.input.mean)
    else:
        import torch

        from cnnkit.data.preprocess import normalize

        spec = predictor.input
        x = normalize(torch.from_numpy(batch).to(predictor.device), spec.mean, spec.std)
        assert layer is not None, "gradcam needs a layer"
        compute = getattr(predictor.backend, "compute", None)
        maps, logits = gradcam(
            predictor.model, x, layer, targets, plus=method == "gradcam++", compute=compute
        )
    return maps, softmax(logits)


def explain_images(
    predictor: Predictor,
    images: Sequence[np.ndarray],
    method: str,
    layer: str | None,
    target: int | None = None,
    top_k: int | None = None,
    paths: Sequence[str | None] | None = None,
    prepared: np.ndarray | None = None,
) -> list[list[Explanation]]:
    """Explanations of decoded images (H×W[×C] RGB): per image, one per class explained.

    One class each (``target``, else the prediction), or with ``top_k`` the K
    most likely, ranked. ``paths`` name the images in the records; ``prepared``:
    the images already prepared for the model (N×C×H×W uint8), if they are.
    """
    if prepared is None:
        prepared = np.stack([predictor.prepare_image(image) for image in images])
    names = list(paths) if paths is not None else [None] * len(images)
    if top_k is None:
        targets = None if target is None else [target] * len(images)
        return [[e] for e in _explained(predictor, images, prepared, method, layer, targets, names)]
    probs = softmax(predictor.logits(prepared))
    order = np.argsort(-probs, axis=1, kind="stable")[:, : min(top_k, probs.shape[1])]
    out: list[list[Explanation]] = [[] for _ in images]
    for rank in range(order.shape[1]):
        targets = [int(v) for v in order[:, rank]]
        ranked = _explained(predictor, images, prepared, method, layer, targets, names, rank + 1)
        for i, explanation in enumerate(ranked):
            out[i].append(explanation)
    return out


def _explained(
    predictor: Predictor,
    images: Sequence[np.ndarray],
    prepared: np.ndarray,
    method: str,
    layer: str | None,
    targets: Sequence[int] | None,
    paths: Sequence[str | None],
    rank: int | None = None,
) -> list[Explanation]:
    import cv2

    maps, probs = batch_maps(predictor, prepared, method, layer, targets)
    out = []
    for i, image in enumerate(images):
        k = int(probs[i].argmax()) if targets is None else targets[i]
        h, w = image.shape[:2]
        x, y = peak(maps[i], w, h)
        heat = cv2.resize(maps[i].astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
        out.append(
            Explanation(
                label=predictor.classes[k],
                score=float(probs[i, k]),
                heatmap=np.clip(heat, 0.0, 1.0),
                peak=(x, y),
                method=method,
                layer=layer,
                path=paths[i],
                rank=rank,
                image=image,
                background=predictor.input.background,
            )
        )
    return out
