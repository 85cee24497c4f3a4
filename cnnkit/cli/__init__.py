"""The cnnkit command line: the only package that imports typer.

``app`` is the Typer application and ``main`` the console-script entry with
the single error path (cnnkit.cli.app). Each command is a module of its own,
imported here so that it registers itself on ``app``.
"""

from cnnkit.cli import convolve, eval, export, inspect, predict, train  # noqa: F401 (registration)
from cnnkit.cli.app import app, main

__all__ = ["app", "main"]
