"""JSON text that every JSON reader accepts: no NaN, no Infinity, numpy values as numbers.

Python's ``json`` writes ``NaN`` and ``Infinity`` for non-finite floats, which
is not JSON (``jq`` and most parsers refuse the whole document). cnnkit's
documents (``--json``, ``summary.json``, predict's JSON Lines) write ``null``
for a number that does not exist, such as the accuracy of an empty split.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def finite(obj: Any) -> Any:
    """``obj`` with every non-finite float (in dicts, lists and tuples) replaced by None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):
        return finite(obj.tolist())  # numpy arrays and scalars, torch tensors
    return obj


def _default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def dumps(obj: Any, indent: int | None = None) -> str:
    """JSON text of ``obj``; non-finite floats become null (see the module docstring)."""
    return json.dumps(finite(obj), indent=indent, default=_default, allow_nan=False)
