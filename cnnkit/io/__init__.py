"""Image and video I/O (OpenCV), atomic output files, and input expansion.

Names are re-exported lazily so that importing one light submodule (say
``cnnkit.io.atomic``) does not pay for OpenCV; nothing here imports torch.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "atomic_output": "cnnkit.io.atomic",
    "atomic_write_bytes": "cnnkit.io.atomic",
    "atomic_write_text": "cnnkit.io.atomic",
    "IMAGE_EXTENSIONS": "cnnkit.io.image",
    "is_image_path": "cnnkit.io.image",
    "read_image": "cnnkit.io.image",
    "read_image_bytes": "cnnkit.io.image",
    "write_image": "cnnkit.io.image",
    "encode_image": "cnnkit.io.image",
    "encode_png": "cnnkit.io.image",
    "VIDEO_EXTENSIONS": "cnnkit.io.video",
    "is_video_path": "cnnkit.io.video",
    "VideoInfo": "cnnkit.io.video",
    "probe_video": "cnnkit.io.video",
    "iter_frames": "cnnkit.io.video",
    "read_video": "cnnkit.io.video",
    "read_video_clip": "cnnkit.io.video",
    "VideoWriter": "cnnkit.io.video_writer",
    "Source": "cnnkit.io.sources",
    "expand_sources": "cnnkit.io.sources",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cnnkit.io' has no attribute {name!r}")
