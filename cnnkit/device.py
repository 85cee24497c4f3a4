"""Automatic device choice, with the reason said out loud.

``auto`` picks CUDA, else MPS (only when a tiny forward pass works there,
because some macOS/torch combinations report MPS as available and then fail
on the first convolution), else the CPU. An explicit device that this machine
does not have is a DeviceError, never a silent fallback. This module does not
import Lightning, so eval and predict can use it.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from cnnkit.errors import DeviceError

_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(?::(\d+))?)$")


@dataclass(frozen=True)
class DeviceChoice:
    """A resolved device.

    ``accelerator`` is Lightning's name ("cpu", "cuda" or "mps"); ``index`` the
    CUDA device number when one was named; ``torch_device`` what ``torch.device``
    takes ("cuda:1", "cpu"); ``reason`` one human sentence.
    """

    accelerator: str
    index: int | None
    torch_device: str
    reason: str


def _mps_works() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    if backend is None or not backend.is_available():
        return False
    try:
        x = torch.ones(1, 1, 4, 4, device="mps")
        w = torch.ones(1, 1, 3, 3, device="mps")
        y = torch.nn.functional.conv2d(x, w)
        return bool(torch.isfinite(y.cpu()).all())
    except (RuntimeError, NotImplementedError):  # the reason auto must not pick it
        return False


def resolve_device(requested: str = "auto") -> DeviceChoice:
    """Turn ``auto|cpu|cuda|cuda:N|mps`` into a DeviceChoice (DeviceError if unavailable)."""
    import torch

    name = (requested or "auto").strip().lower()
    match = _DEVICE_RE.match(name)
    if not match:
        close = difflib.get_close_matches(name, ["auto", "cpu", "cuda", "mps"], n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise DeviceError(
            f"unknown device '{requested}'", hint=hint + "use auto, cpu, cuda, cuda:N or mps"
        )
    if name == "auto":
        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
            return DeviceChoice("cuda", None, "cuda", f"CUDA is available ({gpu})")
        if _mps_works():
            return DeviceChoice("mps", None, "mps", "Apple MPS is available and works")
        return DeviceChoice("cpu", None, "cpu", "no CUDA or working MPS device found")
    if name == "cpu":
        return DeviceChoice("cpu", None, "cpu", "asked for with --device cpu")
    if name == "mps":
        if not _mps_works():
            raise DeviceError(
                "--device mps was asked for, but MPS is not available or fails a test forward",
                hint="use --device auto or --device cpu",
            )
        return DeviceChoice("mps", None, "mps", "asked for with --device mps")
    # cuda or cuda:N
    if not torch.cuda.is_available():
        raise DeviceError(
            f"--device {name} was asked for, but torch sees no CUDA GPU",
            hint="use --device auto (falls back to the CPU) or --device cpu",
        )
    count = torch.cuda.device_count()
    index = int(match.group(2)) if match.group(2) is not None else None
    if index is not None and index >= count:
        raise DeviceError(
            f"--device {name}: this machine has {count} CUDA device(s)",
            hint=f"use cuda:0 .. cuda:{count - 1}",
        )
    torch_device = f"cuda:{index}" if index is not None else "cuda"
    gpu = torch.cuda.get_device_name(index or 0)
    return DeviceChoice("cuda", index, torch_device, f"asked for with --device {name} ({gpu})")
