"""Every text cnnkit writes holds any file or class name: bytes that are not UTF-8,
spreadsheet formulas, rich markup, terminal escapes; and narrow terminals keep numbers whole.

Names are made as bytes (``os.fsencode``), as a Latin-1 camera or a hostile
archive would leave them; the CLI runs in a subprocess where stdout's encoding
matters (``PYTHONIOENCODING=utf-8``, what a UTF-8 desktop sets: strict errors).
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from cnnkit.evaluation.files import (
    MAX_HEATMAP_CLASSES,
    most_confused,
    render_confusion,
    write_confusion,
    write_misclassified,
)
from cnnkit.records import CsvWriter, TableWriter
from cnnkit.textout import ERRORS, csv_cell, shown
from tests.helpers import make_checkpoint, make_image_folder, run_cnnkit

LATIN1 = b"caf\xe9"  # "café" in Latin-1: not UTF-8
STRICT = {"PYTHONIOENCODING": "utf-8", "COLUMNS": "200"}


def _run_bytes(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """run_cnnkit, with stdout and stderr kept as the bytes the process wrote."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore", **env}
    return subprocess.run(
        [sys.executable, "-m", "cnnkit", *args], cwd=cwd, env=env, capture_output=True, timeout=120
    )


def _bytes_folder(root: Path, classes: list[bytes], names: list[bytes]) -> None:
    """root/<class>/<name>.png for every class and name, all given as raw bytes."""
    ok, png = cv2.imencode(".png", np.full((16, 16, 3), 90, np.uint8))
    for c in classes:
        folder = os.path.join(os.fsencode(root), c)
        os.makedirs(folder, exist_ok=True)
        for name in names:
            with open(os.path.join(folder, name + b".png"), "wb") as f:
                f.write(png.tobytes())


# ---------------------------------------------------------------------------
# the three rules, as functions
# ---------------------------------------------------------------------------


def test_names_handler_writes_escaped_bytes_back_and_escapes_the_unencodable() -> None:
    name = os.fsdecode(LATIN1 + b".png")
    assert name.encode("utf-8", ERRORS) == LATIN1 + b".png"  # the file's own bytes
    assert "猫".encode("latin-1", ERRORS) == b"\\u732b"  # unencodable: an escape, no error
    assert (name + "猫").encode("ascii", ERRORS) == b"caf\xe9.png\\u732b"


def test_shown_escapes_bytes_and_controls_for_people() -> None:
    assert shown(os.fsdecode(LATIN1)) == "caf\\xe9"
    assert shown("a\x1b[31mred\n") == "a\\x1b[31mred\\x0a"
    assert shown("plain é 猫") == "plain é 猫"


@pytest.mark.parametrize("text", ["=1+1", "+cmd", "-2+3", "@SUM(1)", "\tx", "\rx"])
def test_csv_cell_neutralises_formula_starts(text) -> None:
    assert csv_cell(text) == "'" + text


def test_csv_cell_leaves_plain_text_and_numbers() -> None:
    assert [csv_cell(v) for v in ("cat", "a=b", -0.5, 3, None)] == ["cat", "a=b", -0.5, 3, None]


# ---------------------------------------------------------------------------
# predict's writers
# ---------------------------------------------------------------------------


def test_csv_writer_neutralises_paths_labels_and_topk() -> None:
    buf = io.StringIO()
    writer = CsvWriter(buf, ["path", "label", "score", "topk", "error"])
    top = [{"label": "=cmd", "score": 0.9}, {"label": "b", "score": 0.1}]
    writer.write([{"path": "@SUM(1).png", "label": "=cmd", "score": 0.9, "topk": top}])
    writer.write([{"path": "+x.png", "error": "-bad"}])
    rows = list(csv.reader(io.StringIO(buf.getvalue())))
    assert rows[1] == ["'@SUM(1).png", "'=cmd", "0.9", "'=cmd:0.9;b:0.1", ""]
    assert rows[2] == ["'+x.png", "", "", "", "'-bad"]


def test_table_writer_prints_markup_and_escapes_as_names() -> None:
    buf = io.StringIO()
    writer = TableWriter(buf)
    top = [{"label": "[/b]", "score": 0.75}, {"label": "[red]r", "score": 0.25}]
    writer.write([{"path": "x[/y].png", "label": "[/b]", "score": 0.75, "topk": top}])
    writer.write([{"path": "a\x1b[2Jb.png", "error": "[/i] broken"}])
    writer.close()
    out = buf.getvalue()
    assert "x[/y].png" in out and "[red]r 0.250" in out and "error: [/i] broken" in out
    assert "\x1b" not in out and "a\\x1b[2Jb.png" in out


@pytest.mark.parametrize("columns", [20, 30, 60])
def test_table_keeps_scores_whole_in_narrow_terminals(tmp_path, columns) -> None:
    make_image_folder(tmp_path / "d", ["k"], 2)
    ckpt = make_checkpoint(tmp_path / "m.ckpt", classes=["first-class", "second-class"])
    env = {"COLUMNS": str(columns)}
    run = run_cnnkit("predict", str(ckpt), "d", "--format", "table", cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stderr
    jsonl = run_cnnkit("predict", str(ckpt), "d", "--format", "jsonl", cwd=tmp_path)
    for record in map(json.loads, jsonl.stdout.splitlines()):
        assert f"{record['score']:.3f}" in run.stdout  # never "0.…"
    assert "…" not in run.stdout


def test_predict_csv_and_table_hold_non_utf8_names_in_a_strict_locale(tmp_path) -> None:
    _bytes_folder(tmp_path / "d", [b"x"], [b"a", LATIN1, b"z"])
    ckpt = make_checkpoint(tmp_path / "m.ckpt", channels=3, classes=["cat", "dog"])
    run = _run_bytes("predict", str(ckpt), "d", "--format", "csv", cwd=tmp_path, env=STRICT)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert [line.split(b",")[0] for line in lines] == [
        b'"path"', b'"d/x/a.png"', b'"d/x/' + LATIN1 + b'.png"', b'"d/x/z.png"'
    ]  # fmt: skip
    table = run_cnnkit("predict", str(ckpt), "d", "--format", "table", cwd=tmp_path, env=STRICT)
    assert table.returncode == 0, table.stderr
    assert "d/x/caf\\xe9.png" in table.stdout and "d/x/z.png" in table.stdout


# ---------------------------------------------------------------------------
# eval's files and report
# ---------------------------------------------------------------------------


def test_eval_files_hold_non_utf8_names_and_neutralise_formulas(tmp_path) -> None:
    classes = [b"=cmd|calc!A1", b"b", LATIN1]
    _bytes_folder(tmp_path / "ds", classes, [b"@SUM(1)", LATIN1])
    names = [os.fsdecode(c) for c in classes]
    ckpt = make_checkpoint(tmp_path / "m.ckpt", channels=3, classes=names)
    run = _run_bytes(
        "eval", str(ckpt), "--dataset", "ds", "--misclassified", "wrong.csv",
        "--confusion", "cm.csv", cwd=tmp_path, env=STRICT,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert b"accuracy" in run.stdout and b"caf\\xe9" in run.stdout  # the report is not lost
    confusion = (tmp_path / "cm.csv").read_bytes().splitlines()
    # Text cells quoted (a ";" in a name splits no cell where ";" separates), counts not.
    assert confusion[0] == b'"true\\predicted","\'=cmd|calc!A1","b","' + LATIN1 + b'"'
    assert [row.split(b",")[0] for row in confusion[1:]] == [
        b'"\'=cmd|calc!A1"', b'"b"', b'"' + LATIN1 + b'"'
    ]  # fmt: skip
    assert all(cell.isdigit() for cell in confusion[1].split(b",")[1:])
    wrong = (tmp_path / "wrong.csv").read_bytes()
    assert b'"ds/' + LATIN1 + b"/" + LATIN1 + b'.png","' + LATIN1 + b'",' in wrong
    assert b',"\'=cmd|calc!A1",' in wrong


def test_write_misclassified_neutralises_class_and_path_cells(tmp_path) -> None:
    n = write_misclassified(
        tmp_path / "w.csv", ["-rm.png", "ok.png"], np.array([0, 1]), np.array([1, 1]),
        np.array([0.7, 0.9]), ["+a", "@b"],
    )  # fmt: skip
    assert n == 1
    rows = list(csv.reader((tmp_path / "w.csv").open()))
    assert rows == [["path", "true", "predicted", "score"], ["'-rm.png", "'+a", "'@b", "0.700000"]]


def test_eval_report_prints_markup_in_paths_as_text(tmp_path) -> None:
    make_image_folder(tmp_path / "ds", ["a", "b"], 2)
    folder = tmp_path / "a["
    folder.mkdir()
    ckpt = make_checkpoint(folder / "x].ckpt", channels=3, classes=["a", "b"])
    run = run_cnnkit("eval", str(ckpt.relative_to(tmp_path)), "--dataset", "ds", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "checkpoint  a[/x].ckpt" in run.stdout


# ---------------------------------------------------------------------------
# confusion pictures of many classes
# ---------------------------------------------------------------------------


def test_most_confused_ranks_classes_by_mistakes_made_and_suffered() -> None:
    cm = np.diag([50, 50, 50, 50, 50])
    cm[1, 3] = 4  # class 1 mistaken for 3: both count 4
    cm[4, 0] = 1
    cm[2, 2] = 500  # many right answers, no mistakes
    assert most_confused(cm, 2).tolist() == [1, 3]
    assert most_confused(cm, 4).tolist() == [0, 1, 3, 4]


def test_confusion_png_of_1000_classes_shows_the_most_confused(tmp_path, caplog) -> None:
    import logging

    caplog.set_level(logging.INFO, logger="cnnkit")
    k = 1000
    rng = np.random.default_rng(0)
    cm = np.diag(rng.integers(5, 20, k))
    cm[7, 900] = 30  # the worst pair: both must be drawn
    classes = [f"class-{i}" for i in range(k)]
    write_confusion(tmp_path / "cm.png", cm, classes)
    image = cv2.imread(str(tmp_path / "cm.png"))
    full = render_confusion(cm[:MAX_HEATMAP_CLASSES, :MAX_HEATMAP_CLASSES], classes[:50])
    assert image.shape[0] <= full.shape[0] + 40 and image.shape[1] <= full.shape[1] + 400
    assert "50 of 1000 classes" in caplog.text  # a note of the library's logger
    assert 7 in most_confused(cm) and 900 in most_confused(cm)


def test_confusion_png_of_few_classes_is_unchanged(tmp_path) -> None:
    cm = np.array([[3, 1], [0, 4]])
    write_confusion(tmp_path / "cm.png", cm, ["cat", "dog"])
    assert cv2.imread(str(tmp_path / "cm.png")).shape == render_confusion(cm, ["cat", "dog"]).shape


def test_confusion_png_draws_undecodable_class_names_as_their_escapes() -> None:
    cm = np.array([[1, 0], [0, 1]])
    drawn = render_confusion(cm, [os.fsdecode(LATIN1), "b"])
    assert np.array_equal(drawn, render_confusion(cm, ["caf\\xe9", "b"]))


def test_stderr_lines_show_names_escaped_and_stay_one_line(tmp_path) -> None:
    ckpt = make_checkpoint(tmp_path / "m.ckpt", channels=3, classes=["cat", "dog"])
    name = "gone\x1b[2J\nx" + os.fsdecode(LATIN1) + ".png"
    run = _run_bytes("predict", str(ckpt), name, cwd=tmp_path, env=STRICT)
    assert run.returncode == 1
    assert b"\x1b" not in run.stderr
    assert b"error: gone\\x1b[2J\\x0axcaf\\xe9.png: " in run.stderr
    missing = _run_bytes("eval", "m\x1b.ckpt", cwd=tmp_path, env=STRICT)
    assert missing.returncode == 1 and missing.stderr.count(b"\n") == 1
    assert b"m\\x1b.ckpt" in missing.stderr


@pytest.mark.parametrize(
    "text",
    [" =2+2", "\uff1dcmd|' -c calc'!A1", "|calc", "%0A", "\n=3+3", "\x00=1", "\u3000=1"],
)
def test_csv_cells_that_spreadsheets_read_as_formulas_are_neutralised(text) -> None:
    assert csv_cell(text) == "'" + text


def test_csv_text_cells_are_quoted_so_a_semicolon_splits_nothing() -> None:
    """Where ";" separates cells (spreadsheets in many locales), "a;=1+1.png" unquoted
    would give a cell "=1+1.png"; quoted, the name stays one cell."""
    out = io.StringIO()
    writer = CsvWriter(out, ["path", "label", "score"])
    writer.write([{"path": "p/a;=1+1.png", "label": "cat", "score": 0.5}])
    header, row = out.getvalue().splitlines()
    assert header == '"path","label","score"'
    assert row == '"p/a;=1+1.png","cat",0.5'
    for separator in (",", ";"):
        cells = next(csv.reader([row], delimiter=separator))
        assert not any(cell.lstrip().startswith("=") for cell in cells), cells


def test_csv_on_a_terminal_shows_control_characters_escaped() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    name = "\x1b]0;pwn\x07.png"
    for stream, expect in ((Terminal(), "\\x1b]0;pwn\\x07.png"), (io.StringIO(), name)):
        CsvWriter(stream, ["path"]).write([{"path": name}])
        assert stream.getvalue().splitlines()[1] == f'"{expect}"'


@pytest.mark.parametrize("mark", ["\u202e", "\u2066", "\u200f", "\u200b", "\ufeff"])
def test_invisible_marks_that_reorder_a_name_are_shown_escaped(mark) -> None:
    assert shown(f"{mark}gnp.exe") == f"\\u{ord(mark):04x}gnp.exe"
