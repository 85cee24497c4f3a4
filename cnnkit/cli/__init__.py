"""The cnnkit command line: the only package that imports typer.

``app`` is the Typer application and ``main`` the console-script entry with
the single error path (cnnkit.cli.app). Each command is a module of its own,
imported here so that it registers itself on ``app``.
"""

from cnnkit.io.headers import set_opencv_pixel_limit

# OpenCV reads its decode pixel limit once, when cv2 is first imported; the
# command line sets it before any command can import cv2. (The library checks
# every image header against the same limit itself, and leaves the
# environment alone.)
set_opencv_pixel_limit()

from cnnkit.cli import (  # noqa: E402, F401 (registration)
    convolve,
    eval,
    explain,
    export,
    inspect,
    predict,
    serve,
    train,
)
from cnnkit.cli.app import app, main  # noqa: E402

__all__ = ["app", "main"]
