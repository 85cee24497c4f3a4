"""The Lightning internals cnnkit.training.fastpath relies on are where it expects them.

pyproject.toml pins Lightning to the series these were checked against; an
upgrade that moves one of them fails here, by name, instead of slowing down
or breaking training for everyone who installs fresh.
"""

from __future__ import annotations

import re
from pathlib import Path

import lightning

from cnnkit.training.fastpath import check_internals


def test_the_lightning_internals_fastpath_uses_are_there():
    missing = check_internals()
    assert not missing, (
        f"Lightning {lightning.__version__} lacks what cnnkit.training.fastpath relies on: "
        + ", ".join(missing)
        + ". Update fastpath.py for this release, or keep the pin in pyproject.toml."
    )


def test_the_installed_lightning_is_in_the_pinned_range():
    text = (Path(__file__).parents[2] / "pyproject.toml").read_text()
    assert re.findall(r'"(lightning[^"]*)"', text) == ["lightning>=2.6,<2.7"]
    major, minor = (int(v) for v in lightning.__version__.split(".")[:2])
    assert (major, minor) == (2, 6), f"tested with 2.6.x, installed {lightning.__version__}"


def test_a_missing_internal_is_named(monkeypatch):
    from lightning.pytorch.callbacks import RichProgressBar

    monkeypatch.delattr(RichProgressBar, "_update")
    assert check_internals() == ["RichProgressBar._update"]
