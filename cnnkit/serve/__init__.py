"""``cnnkit serve``: a model behind HTTP, with images of concurrent requests batched together.

- ``batching``: the one thread that runs the model, gathering the images of
  concurrent requests into batches (numpy and threads only);
- ``service``: what a request asks for (classify, explain, describe), with no
  HTTP in it: decoding on a pool of threads, the model on its thread;
- ``bodies``: request bodies read within a size limit, multipart forms split;
- ``app``: the HTTP API (Starlette), ``openapi``: its description and docs page;
- ``runner``: the listening socket, the server (uvicorn) and its clean end.

The HTTP stack is the optional ``serve`` extra; importing this package needs
none of it (:func:`require_stack` imports it, or says how to install it).
"""

from __future__ import annotations

import importlib

from cnnkit.errors import InputError

# Import name -> the distribution the ``serve`` extra installs.
STACK = {"starlette": "starlette", "uvicorn": "uvicorn"}


def require_stack() -> None:
    """Import the HTTP stack, or raise the InputError that names the extra to install."""
    missing = []
    for name, dist in STACK.items():
        try:
            importlib.import_module(name)
        except ImportError:  # not installed, or broken: either way, the extra installs it
            missing.append(dist)
    if missing:
        raise InputError(
            f"cnnkit serve needs {', '.join(missing)}, which "
            f"{'is' if len(missing) == 1 else 'are'} not installed",
            hint="pip install 'cnnkit[serve]'",
        )
