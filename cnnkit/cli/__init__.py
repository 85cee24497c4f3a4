"""The cnnkit command line: the only package that imports typer.

``app`` is the Typer application and ``main`` the console-script entry with
the single error path (cnnkit.cli.app). Each command is a module of its own,
imported here so that it registers itself on ``app``.
"""

from cnnkit.cli import (  # noqa: F401 (registration)
    convolve,
    eval,
    explain,
    export,
    inspect,
    predict,
    train,
)
from cnnkit.cli.app import app, main

__all__ = ["app", "main"]
