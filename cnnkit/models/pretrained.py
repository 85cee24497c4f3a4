"""torchvision's pretrained weights: which exist, where they are cached, and loading them.

``--pretrained`` (train) and the ``MODEL:imagenet`` / ``MODEL:kinetics400``
references (predict, eval, inspect) both come here. The weights are
torchvision's own (``ResNet18_Weights.DEFAULT`` and friends, see the
``weights=`` of each registered model): fetched once into torch's hub cache
(``$TORCH_HOME/hub/checkpoints/``, default ``~/.cache/torch/hub/checkpoints/``)
with torch.hub's download and hash check, then read from there, offline.
``CNNKIT_OFFLINE=1`` forbids the download. Files are always loaded with
``weights_only=True``.

Preprocessing follows the weights: their mean/std, their crop size (224 for
ImageNet, 112 for Kinetics-400) and, for video, the 16-frame clips they were
trained on.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from cnnkit import console
from cnnkit.errors import CheckpointError, ModelError
from cnnkit.refs import parse_pretrained

# What the weights of a 2D and a 3D torchvision model were trained on: the word
# that names them after the model in MODEL:DATA references.
WEIGHTS_DATA = {2: "imagenet", 3: "kinetics400"}
# Seconds a download may wait on the network before it is given up.
DOWNLOAD_TIMEOUT_S = 30.0
# Set (to anything but 0): never download; weights must be in the cache already.
OFFLINE_ENV = "CNNKIT_OFFLINE"


@dataclass(frozen=True)
class PretrainedWeights:
    """One model's default torchvision weights and the preprocessing they expect."""

    model: str
    weights: str  # "ResNet18_Weights.IMAGENET1K_V1"
    data: str  # "imagenet" or "kinetics400"
    url: str
    categories: tuple[str, ...]
    size: tuple[int, int]  # (H, W) the weights were trained at (the crop size)
    frames: int | None  # clip length for video weights
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def file(self) -> Path:
        """Where torch.hub keeps the file: $TORCH_HOME/hub/checkpoints/<the URL's file name>."""
        import torch.hub

        name = os.path.basename(urlparse(self.url).path)
        return Path(torch.hub.get_dir()) / "checkpoints" / name

    def record(self) -> dict[str, Any]:
        """What a checkpoint and config.yaml keep of the starting point (plain types)."""
        return {"kind": "pretrained", "weights": self.weights, "data": self.data, "url": self.url}


def no_weights_error(model: str) -> ModelError:
    from cnnkit.models.registry import models_with_weights

    return ModelError(
        f"model '{model}' has no pretrained weights",
        hint=f"models with weights: {', '.join(models_with_weights())}",
    )


def pretrained_weights(model: str) -> PretrainedWeights:
    """The default weights of ``model``; ModelError for models that have none."""
    from cnnkit.models.registry import get_model_spec

    spec = get_model_spec(model)
    if not spec.weights:
        raise no_weights_error(model)
    from torchvision.models import get_weight

    w = get_weight(f"{spec.weights}.DEFAULT")
    t = w.transforms()
    crop = [int(v) for v in t.crop_size]
    size = (crop[0], crop[-1])
    return PretrainedWeights(
        model=model,
        weights=f"{spec.weights}.{w.name}",
        data=WEIGHTS_DATA[spec.dims],
        url=w.url,
        categories=tuple(str(c) for c in w.meta["categories"]),
        size=size,
        frames=int(spec.default_input_size[1]) if spec.dims == 3 else None,
        mean=tuple(float(v) for v in t.mean),
        std=tuple(float(v) for v in t.std),
    )


def load_pretrained_state(w: PretrainedWeights) -> dict[str, Any]:
    """The weights' state dict: from torch's hub cache, else downloaded into it once.

    Offline without the file: a ModelError naming the file and the URL, so
    the file can be copied in by hand. A damaged cached file: a ModelError
    saying to delete it.
    """
    import torch
    import torch.hub

    path = w.file
    if not path.is_file():
        _download(w, path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as exc:
        raise ModelError(f"cannot read {path}: {exc.strerror or exc}") from None
    except Exception as exc:  # noqa: BLE001 - torch.load's zoo of errors on a damaged file
        raise ModelError(
            f"{path} is not a readable weights file ({type(exc).__name__})",
            hint=f"delete it and run again to fetch it from {w.url}",
        ) from None
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise ModelError(
            f"{path} does not hold a state dict", hint=f"delete it and fetch {w.url} again"
        )
    return state


def _download(w: PretrainedWeights, path: Path) -> None:
    """torch.hub's download (with its hash check) into ``path``'s folder, bounded in time."""
    import urllib.error

    import torch.hub

    if os.environ.get(OFFLINE_ENV, "") not in ("", "0"):
        raise _fetch_error(w, path, f"{OFFLINE_ENV} is set")
    console.info(f"downloading {w.weights} from {w.url} to {path}")
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # a dead network fails instead of hanging
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(w.url, str(path), hash_prefix=_hash_prefix(w.url),
                                       progress=console.progress_enabled())  # fmt: skip
    except (urllib.error.URLError, OSError, RuntimeError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc
        raise _fetch_error(w, path, str(reason)) from None
    finally:
        socket.setdefaulttimeout(old)


def _fetch_error(w: PretrainedWeights, path: Path, reason: str) -> ModelError:
    return ModelError(
        f"cannot fetch the pretrained weights of {w.model} ({reason}): looked for {path}",
        hint=f"on a machine with internet, download {w.url} and copy it to {path}",
    )


def _hash_prefix(url: str) -> str | None:
    """The sha256 prefix torchvision puts in its file names ("resnet18-f37072fd.pth")."""
    found = re.search(r"-([a-f0-9]{6,})\.", os.path.basename(urlparse(url).path))
    return found.group(1) if found else None


# ---------------------------------------------------------------------------
# MODEL:DATA references: a pretrained model used as it is, with no training
# ---------------------------------------------------------------------------


def check_reference(text: str) -> str:
    """The model of a MODEL:DATA reference, once it is known to name existing weights."""
    from cnnkit.models.registry import get_model_spec

    parsed = parse_pretrained(text)
    if parsed is None:
        raise CheckpointError(f"{text} is not a MODEL:DATA reference")
    model, data = parsed
    spec = get_model_spec(model)
    if not spec.weights:
        raise no_weights_error(model)
    expected = WEIGHTS_DATA[spec.dims]
    if data != expected:
        raise ModelError(
            f"'{text}': {model}'s weights are {expected} weights",
            hint=f"use {model}:{expected}",
        )
    return model


def reference_checkpoint(text: str) -> Any:
    """A LoadedCheckpoint for "MODEL:DATA": torchvision's weights with their classes.

    The classes are the weights' category names (ImageNet's 1,000,
    Kinetics-400's actions); the input spec is the weights' preprocessing.
    """
    from cnnkit.checkpoint import LoadedCheckpoint
    from cnnkit.spec import CheckpointMeta, InputSpec

    model = check_reference(text)
    w = pretrained_weights(model)
    meta = CheckpointMeta(
        model_name=model,
        classes=list(w.categories),
        input=InputSpec(3, w.size, w.frames, w.mean, w.std),
        dataset=w.data,
        data_kind="video" if w.frames else "image",
        start=w.record(),
    )
    return LoadedCheckpoint(
        path=Path(text),
        meta=meta,
        state_dict=load_pretrained_state(w),
        reference=True,
        weights_source=(str(w.file), w.url),
    )
