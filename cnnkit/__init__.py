"""cnnkit: a command-line toolkit for image and video classification with CNNs.

The public API is small and imported lazily, so that ``import cnnkit`` (and the
CLI's ``--help``) never pays for torch.
"""

from __future__ import annotations

from typing import Any

from cnnkit.io.headers import set_opencv_pixel_limit

# OpenCV reads its decode pixel limit once, when cv2 is first imported, and
# several modules import cv2: set it before any of them can.
set_opencv_pixel_limit()

__version__ = "0.1.0"

__all__ = ["__version__", "convolve", "create_model", "list_models", "load_checkpoint"]

_LAZY = {
    "convolve": ("cnnkit.ops", "convolve"),
    "create_model": ("cnnkit.models.registry", "create_model"),
    "list_models": ("cnnkit.models.registry", "list_models"),
    "load_checkpoint": ("cnnkit.checkpoint", "load_checkpoint"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module_name, attr = _LAZY[name]
        return getattr(importlib.import_module(module_name), attr)
    raise AttributeError(f"module 'cnnkit' has no attribute {name!r}")
