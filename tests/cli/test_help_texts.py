"""Help that is true: every command described, brackets kept, models listed where help points.

Help texts are rich markup, so "[onnx]" in `pip install 'cnnkit[onnx]'` was
read as a style tag and vanished. Every help text is rendered here as a
person sees it, and compared with what was written.
"""

from __future__ import annotations

import json
import re

import pytest
import typer

from cnnkit.cli import app
from tests.helpers import cnnkit_in_process, make_image

COMMAND = typer.main.get_command(app)
COMMANDS = sorted(COMMAND.commands)  # type: ignore[attr-defined]


def render_help(monkeypatch, capsys, *command: str) -> str:
    """``cnnkit COMMAND --help`` as printed on a wide terminal, one line per paragraph line."""
    monkeypatch.setenv("COLUMNS", "200")
    code, out, err = cnnkit_in_process(monkeypatch, capsys, *command, "--help")
    assert code == 0, err
    # Strip the panels' borders and the padding, so that a wrapped text reads as one.
    return " ".join(line.strip(" │╭╮╰╯─") for line in out.splitlines())


def written_texts(command: str | None) -> list[str]:
    """Every help text of ``command`` (None: the top level) as written in the source."""
    cmd = COMMAND if command is None else COMMAND.commands[command]  # type: ignore[attr-defined]
    texts = [cmd.help or "", cmd.epilog or ""]
    texts += [getattr(p, "help", None) or "" for p in cmd.params]
    return texts


def test_square_brackets_in_every_help_text_are_shown(monkeypatch, capsys) -> None:
    checked, lost = [], []
    for command in [None, *COMMANDS]:
        shown = render_help(monkeypatch, capsys, *([command] if command else []))
        # Rich markup: '\[' is a literal '['; what is between the brackets must be shown.
        for text in written_texts(command):
            for segment in re.findall(r"\[[^\]\[]*\]", text.replace("\\[", "[")):
                checked.append(segment)
                if segment not in shown:
                    lost.append((command, segment))
    assert "[onnx]" in checked
    assert lost == []


def test_export_help_names_the_onnx_extra(monkeypatch, capsys) -> None:
    assert "pip install 'cnnkit[onnx]'" in render_help(monkeypatch, capsys, "export")


def test_top_level_help_names_every_command_and_where_models_are_listed(
    monkeypatch, capsys
) -> None:
    shown = render_help(monkeypatch, capsys)
    assert set(COMMANDS) >= {"convolve", "train", "eval", "predict", "inspect", "export"}
    for name in COMMANDS:
        assert re.search(rf"(^|\s){name}\s", shown), name
    assert "`cnnkit inspect` alone lists the models" in shown


@pytest.mark.parametrize(
    "command, stale",
    [
        ("export", "pip install 'cnnkit'"),
        ("train", "Registered model (see `cnnkit inspect`)"),
    ],
)
def test_no_stale_phrase(monkeypatch, capsys, command: str, stale: str) -> None:
    assert stale not in render_help(monkeypatch, capsys, command)


def test_train_model_help_points_to_the_model_list(monkeypatch, capsys) -> None:
    shown = render_help(monkeypatch, capsys, "train")
    assert "`cnnkit inspect` with no target lists them" in shown


def test_inspect_without_target_lists_models_and_datasets(monkeypatch, capsys) -> None:
    from cnnkit.data.registry import list_datasets
    from cnnkit.models.registry import get_model_spec, list_models

    code, out, err = cnnkit_in_process(monkeypatch, capsys, "inspect")
    assert code == 0, err
    for name in [*list_models(), *list_datasets()]:
        assert re.search(rf"(^|\s){re.escape(name)}\s", out), name
    lenet5 = next(line for line in out.splitlines() if line.startswith("lenet5 "))
    resnet18 = next(line for line in out.splitlines() if line.startswith("resnet18 "))
    assert "2D" in lenet5 and "1×28×28" in lenet5 and "imagenet" not in lenet5
    assert "2D" in resnet18 and "3×224×224" in resnet18 and "imagenet" in resnet18

    code, out, err = cnnkit_in_process(monkeypatch, capsys, "inspect", "--json")
    assert code == 0, err
    listing = json.loads(out)
    assert [m["name"] for m in listing["models"]] == list_models()
    assert [d["name"] for d in listing["datasets"]] == list_datasets()
    for entry in listing["models"]:
        spec = get_model_spec(entry["name"])
        assert entry["dims"] == spec.dims
        assert entry["input_size"] == list(spec.default_input_size)
        assert (entry["pretrained"] is not None) == (spec.weights is not None)
    r3d = next(m for m in listing["models"] if m["name"] == "r3d_18")
    assert (r3d["dims"], r3d["pretrained"]) == (3, "kinetics400")


def test_inspect_without_target_refuses_model_options(monkeypatch, capsys) -> None:
    code, out, err = cnnkit_in_process(monkeypatch, capsys, "inspect", "--input-size", "1x8x8")
    assert code == 1 and out == ""
    assert err.startswith("error: --input-size needs a TARGET") and err.count("\n") == 1


def test_convolve_explain_alone_says_it_writes_nothing(tmp_path, monkeypatch, capsys) -> None:
    assert "Alone it writes no file" in render_help(monkeypatch, capsys, "convolve")
    make_image(tmp_path / "digit.png", 12, 12, channels=1)
    monkeypatch.chdir(tmp_path)
    code, out, err = cnnkit_in_process(
        monkeypatch, capsys, "convolve", "digit.png", "-k", "sobel", "--explain"
    )
    assert code == 0, err
    assert "output  H×W = 12×12" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["digit.png"]
    assert "no file written" in err and "-o FILE" in err


def test_train_datasets_help_names_every_built_in_dataset():
    from cnnkit.data.registry import list_datasets
    from cnnkit.training.options import BY_NAME

    text = BY_NAME["dataset"].help
    assert all(name in text for name in list_datasets()), text
