"""Tables on a narrow terminal: every layer name and every number is printed whole.

rich squeezes a table into the terminal by cutting cells with "…" as a last
resort; `cnnkit inspect` on an 80-column terminal cut layer names (the ones
`explain --layer` asks for) and parameter counts. Here stdout is made a
terminal of COLUMNS columns (in process, and once through a real
pseudo-terminal), and the output is searched for every name and number.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.helpers import cnnkit_in_process, make_checkpoint

_STYLE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # rich's colours and bold on a terminal


def on_terminal(monkeypatch, capsys, columns: int, *args: str) -> tuple[int, str, str]:
    """``cnnkit ARGS`` in process with stdout a terminal of ``columns`` columns."""
    monkeypatch.setenv("COLUMNS", str(columns))
    for name in ("TTY_COMPATIBLE", "FORCE_COLOR", "NO_COLOR", "TERM"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    code, out, err = cnnkit_in_process(monkeypatch, capsys, *args)
    return code, _STYLE.sub("", out), err


def appears_whole(text: str, token: str) -> bool:
    """``token`` in ``text`` with no digit, letter, '.', ',' or '×' glued to either side."""
    edge = r"[\w.,×]"
    return re.search(rf"(?<!{edge}){re.escape(token)}(?!{edge})", text) is not None


def shape(values) -> str:
    if values is None:
        return "-"
    return "×".join(map(str, values)) if isinstance(values, list) else str(values)


def field(rf) -> str:
    if rf is None:
        return "whole input"
    return f"{rf}×{rf}" if isinstance(rf, int) else shape(rf)


def expected_tokens(path: Path) -> tuple[list[str], list[str]]:
    """(layer names, numbers) the layer table of checkpoint ``path`` must show."""
    from cnnkit.summary import inspect_checkpoint

    inspected = inspect_checkpoint(path)
    summary = inspected.summary
    names = [layer["name"] for layer in summary["layers"]]
    modules = dict(inspected.model.named_modules())
    assert names and all(name in modules for name in names)
    numbers = [f"{summary['params']:,}", f"{summary['macs']:,}"]
    for layer in summary["layers"]:
        numbers += [f"{layer['params']:,}", f"{layer['macs']:,}", shape(layer["output_shape"])]
        numbers += [shape(layer[key]) for key in ("kernel_size", "stride", "padding")]
        numbers.append(field(layer["receptive_field"]))
    return names, numbers


CHECKPOINTS = {
    "resnet18": dict(model="resnet18", channels=3, size=(32, 32)),
    "lenet5": dict(model="lenet5"),
}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ckpt")
    return {name: make_checkpoint(root / f"{name}.ckpt", **kw) for name, kw in CHECKPOINTS.items()}


@pytest.mark.parametrize("columns", [60, 80, 100])
@pytest.mark.parametrize("model", list(CHECKPOINTS))
def test_layer_table_holds_every_name_and_number_whole(
    checkpoints, monkeypatch, capsys, model: str, columns: int
) -> None:
    path = checkpoints[model]
    names, numbers = expected_tokens(path)
    code, out, err = on_terminal(monkeypatch, capsys, columns, "inspect", str(path))
    assert code == 0, err
    assert "…" not in out
    assert [n for n in names if not appears_whole(out, n)] == []
    assert [n for n in numbers if not appears_whole(out, n)] == []
    if columns >= 80:
        # Both tables fit: where the whole one is too wide it is split in two,
        # rather than printed wider than the terminal.
        assert max(len(line.rstrip()) for line in out.splitlines()) <= columns


def test_pixel_values_of_a_16_bit_image_are_whole_at_60_columns(
    tmp_path, monkeypatch, capsys
) -> None:
    pixels = np.random.default_rng(0).integers(10_000, 65_536, (16, 16, 3), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "deep.png"), pixels)
    code, out, err = on_terminal(monkeypatch, capsys, 60, "inspect", str(tmp_path / "deep.png"))
    assert code == 0, err
    assert "…" not in out
    centre = pixels[4:12, 4:12]  # the 8×8 block inspect shows (BGR on disk, any order here)
    assert all(appears_whole(out, str(v)) for v in centre.ravel())


def test_kernel_list_cuts_no_weight_at_60_columns(monkeypatch, capsys) -> None:
    code, out, err = on_terminal(monkeypatch, capsys, 60, "convolve", "--list-kernels")
    assert code == 0, err
    assert "…" not in out


def test_real_terminal_of_80_columns(checkpoints) -> None:
    """Through a pseudo-terminal, as a person runs it: nothing is cut."""
    import pty

    path = checkpoints["lenet5"]
    names, numbers = expected_tokens(path)
    controller, terminal = pty.openpty()
    env = {**os.environ, "COLUMNS": "80", "PYTHONWARNINGS": "ignore"}
    for name in ("TTY_COMPATIBLE", "FORCE_COLOR"):
        env.pop(name, None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "cnnkit", "inspect", str(path)],
        stdout=terminal,
        stderr=subprocess.PIPE,
        env=env,
    )
    os.close(terminal)
    chunks = []
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the terminal's other end is closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(controller)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    out = _STYLE.sub("", b"".join(chunks).decode()).replace("\r", "")
    assert "…" not in out
    assert [n for n in names + numbers if not appears_whole(out, n)] == []
