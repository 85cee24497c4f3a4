"""What a model reference names, read from its text alone (a leaf: imports no cnnkit code).

A reference is what predict, eval, inspect, export, explain and
``cnnkit.load`` take: a ``.ckpt`` (or any torch file cnnkit wrote), an
exported ``.onnx``, or ``MODEL:DATA`` (torchvision's pretrained weights, e.g.
``resnet18:imagenet``). It is parsed once, here; cnnkit.sources opens it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_PRETRAINED = re.compile(r"^(?P<model>[A-Za-z0-9_]+):(?P<data>[A-Za-z0-9_]+)$")

KINDS = ("checkpoint", "onnx", "pretrained")


@dataclass(frozen=True)
class Reference:
    """A parsed model reference.

    ``kind``: "checkpoint", "onnx" or "pretrained"; ``model`` and ``data``
    (lowercase) for "pretrained" only.

    >>> parse("resnet18:imagenet")
    Reference(text='resnet18:imagenet', kind='pretrained', model='resnet18', data='imagenet')
    """

    text: str
    kind: str
    model: str | None = None
    data: str | None = None


def is_onnx_path(path: str | Path) -> bool:
    """Whether ``path`` names an exported model (by its extension, as every command reads it)."""
    return str(path).lower().endswith(".onnx")


def parse_pretrained(text: str | Path) -> tuple[str, str] | None:
    """("resnet50", "imagenet") for "resnet50:imagenet"; None for anything else.

    An existing file of that name is a file, not a reference.
    """
    found = _PRETRAINED.match(str(text))
    if found is None or Path(text).exists():
        return None
    return found.group("model").lower(), found.group("data").lower()


def parse(ref: str | Path) -> Reference:
    """Read a model reference's kind from its text (no file is opened)."""
    text = str(ref)
    if is_onnx_path(text):
        return Reference(text, "onnx")
    pretrained = parse_pretrained(text)
    if pretrained is not None:
        return Reference(text, "pretrained", *pretrained)
    return Reference(text, "checkpoint")
