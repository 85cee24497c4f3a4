"""One spelling for JSON output: --json on predict (JSON Lines) and --format on eval.

``predict --json`` is ``--format jsonl``; ``eval --format json`` is ``eval --json``.
Asking for two different formats at once is one ``error:`` line and exit 1,
like cnnkit's other options that contradict each other.
"""

from __future__ import annotations

import json

import pytest

from tests.helpers import cnnkit_in_process, make_checkpoint, make_image, make_image_folder


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("json")
    ckpt = make_checkpoint(root / "m.ckpt")
    make_image(root / "x.png", 16, 16, channels=1)
    make_image_folder(root / "data", ["a", "b", "c"], 2)
    return root, ckpt


def run(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    return cnnkit_in_process(monkeypatch, capsys, *args, "-q")


def test_predict_json_is_format_jsonl(files, monkeypatch, capsys) -> None:
    root, ckpt = files
    image = str(root / "x.png")
    code, by_json, err = run(monkeypatch, capsys, "predict", str(ckpt), image, "--json")
    assert code == 0, err
    code, by_format, _ = run(monkeypatch, capsys, "predict", str(ckpt), image, "--format", "jsonl")
    assert by_json == by_format
    (record,) = [json.loads(line) for line in by_json.splitlines()]
    assert record["path"] == image and record["label"] in ("a", "b", "c")
    code, both, _ = run(
        monkeypatch, capsys, "predict", str(ckpt), image, "--json", "--format", "jsonl"
    )
    assert (code, both) == (0, by_json)


@pytest.mark.parametrize(
    "command, conflict",
    [
        (["predict", "{ckpt}", "{root}/x.png"], ["--json", "--format", "csv"]),
        (["predict", "{ckpt}", "{root}/x.png"], ["--format", "table", "--json"]),
        (["eval", "{ckpt}", "--dataset", "{root}/data"], ["--json", "--format", "text"]),
    ],
)
def test_two_formats_at_once_are_one_error_line(
    files, monkeypatch, capsys, command: list[str], conflict: list[str]
) -> None:
    root, ckpt = files
    args = [a.format(root=root, ckpt=ckpt) for a in command] + conflict
    code, out, err = cnnkit_in_process(monkeypatch, capsys, *args)
    assert (code, out) == (1, "")
    assert err.startswith("error: --json and --format ") and err.count("\n") == 1
    assert "(hint: --json means --format json" in err


def test_eval_format_json_is_json_and_text_is_the_default(files, monkeypatch, capsys) -> None:
    root, ckpt = files
    base = ["eval", str(ckpt), "--dataset", str(root / "data")]
    code, by_json, err = run(monkeypatch, capsys, *base, "--json")
    assert code == 0, err
    code, by_format, _ = run(monkeypatch, capsys, *base, "--format", "json")
    assert by_format == by_json
    assert json.loads(by_format)["n"] == 6
    code, both, _ = run(monkeypatch, capsys, *base, "--format", "json", "--json")
    assert (code, both) == (0, by_json)
    code, text, _ = run(monkeypatch, capsys, *base, "--format", "text")
    code, default, _ = run(monkeypatch, capsys, *base)
    assert text == default and text.startswith("checkpoint  ")


@pytest.mark.parametrize(
    "command, phrase",
    [("predict", "The same as --format jsonl"), ("eval", "The same as --format json")],
)
def test_help_says_json_is_a_format(monkeypatch, capsys, command: str, phrase: str) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = cnnkit_in_process(monkeypatch, capsys, command, "--help")
    assert code == 0
    assert "--json" in out and "--format" in out and phrase in out
