"""The Python API: cnnkit.load / Classifier.predict / predict_video, evaluate, explain, export,
train; the same answers as the command line, no output, no global state changed."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import cnnkit
from cnnkit import console
from tests.cli.test_export import BLOCK_TORCH, NOT_INSTALLED
from tests.helpers import (
    cnnkit_in_process,
    make_checkpoint,
    make_image,
    make_image_folder,
    make_video,
    tiny_config,
)

TOLERANCE = 1e-6


@pytest.fixture
def silent_library():
    """The cnnkit logger as a library user finds it: no handler but the NullHandler.

    (Earlier CLI runs in this process gave it the command line's stderr handler.)
    """
    logger = logging.getLogger("cnnkit")
    saved = (list(logger.handlers), logger.level, logger.propagate, console._progress["track"])
    logger.handlers = [h for h in logger.handlers if isinstance(h, logging.NullHandler)]
    logger.setLevel(logging.NOTSET)
    logger.propagate = True
    console.set_progress(None)
    yield logger
    logger.handlers, logger.level, logger.propagate = saved[0], saved[1], saved[2]
    console.set_progress(saved[3])


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("api")
    ckpt = make_checkpoint(root / "m.ckpt", "lenet5", ["a", "b", "c"], 3, (16, 16), seed=5)
    clip = make_checkpoint(
        root / "clip.ckpt", "c3d_small", ["l", "r"], 3, (16, 16), frames=4, seed=2
    )
    from cnnkit.onnxexport import export_onnx

    export_onnx(str(ckpt), root / "m.onnx")
    make_image_folder(root / "pics", ["a", "b", "c"], 2, 20, 24)
    make_video(root / "v.mp4", frames=10, h=32, w=32)
    return {"root": root, "ckpt": ckpt, "onnx": root / "m.onnx", "clip": clip}


def cli_records(monkeypatch, capsys, *args: str) -> list[dict]:
    code, out, err = cnnkit_in_process(monkeypatch, capsys, "predict", *args, "--format", "jsonl")
    assert code == 0, err
    return [json.loads(line) for line in out.splitlines()]


def assert_same(api: list[dict], cli: list[dict]) -> None:
    assert len(api) == len(cli)
    for a, c in zip(api, cli, strict=True):
        assert a.keys() == c.keys() and a["path"] == c["path"] and a["label"] == c["label"]
        assert abs(a["score"] - c["score"]) <= TOLERANCE
        for x, y in zip(a["topk"], c["topk"], strict=True):
            assert x["label"] == y["label"] and abs(x["score"] - y["score"]) <= TOLERANCE


@pytest.mark.parametrize("kind", ["ckpt", "onnx"])
def test_predict_gives_the_clis_records_for_paths_a_folder_and_a_video(
    media, monkeypatch, capsys, kind
) -> None:
    monkeypatch.chdir(media["root"])
    model = str(media[kind])
    clf = cnnkit.load(model, device="cpu")
    assert clf.backend == ("torch" if kind == "ckpt" else "onnxruntime")
    assert clf.classes == ["a", "b", "c"] and clf.input.size == (16, 16)
    api = [p.to_dict() for p in clf.predict(["pics", "v.mp4"])]
    assert_same(api, cli_records(monkeypatch, capsys, model, "pics", "v.mp4"))
    assert api[-1]["window"] == "video"
    one = clf.predict("pics/a/img_000.png")
    assert len(one) == 1 and one[0].path == "pics/a/img_000.png" and one[0].ok
    assert one[0].topk[0] == (one[0].label, one[0].score)


@pytest.mark.parametrize("kind", ["ckpt", "onnx"])
def test_arrays_give_exactly_the_scores_of_their_png_files(media, kind) -> None:
    clf = cnnkit.load(media[kind], device="cpu")
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (20, 24, 3), dtype=np.uint8) for _ in range(3)]
    paths = []
    for i, image in enumerate(images):
        paths.append(media["root"] / f"arr{i}.png")
        cv2.imwrite(str(paths[-1]), image[:, :, ::-1])  # RGB array -> BGR for OpenCV
    from_files = clf.predict(paths)
    for got in (clf.predict(images), clf.predict(np.stack(images)), clf.predict(images[:2])):
        for a, f in zip(got, from_files, strict=False):
            assert a.path is None and a.label == f.label and a.score == f.score
            assert a.topk == f.topk
    gray = rng.integers(0, 256, (20, 24), dtype=np.uint8)
    cv2.imwrite(str(media["root"] / "gray.png"), gray)
    assert clf.predict(gray)[0].score == clf.predict(media["root"] / "gray.png")[0].score


def test_predict_video_is_lazy_and_ends_with_the_whole_video(media, monkeypatch, capsys) -> None:
    monkeypatch.chdir(media["root"])
    clf = cnnkit.load(media["clip"], device="cpu")
    assert clf.is_video_model
    stream = clf.predict_video("v.mp4", window=4, stride=2)
    first = next(stream)
    assert first.to_dict()["start_frame"] == 0
    api = [first.to_dict(), *(p.to_dict() for p in stream)]
    cli = cli_records(monkeypatch, capsys, str(media["clip"]), "v.mp4", "--window", "4",
                      "--stride", "2")  # fmt: skip
    assert_same(api, cli)
    assert api[-1]["window"] == "video"


def test_an_unreadable_input_is_a_prediction_with_its_error(media, tmp_path) -> None:
    (tmp_path / "bad.png").write_bytes(b"not an image")
    make_image(tmp_path / "ok.png", 16, 16)
    clf = cnnkit.load(media["ckpt"], device="cpu")
    bad, missing, ok = clf.predict(
        [tmp_path / "bad.png", tmp_path / "nope.png", tmp_path / "ok.png"]
    )
    assert not bad.ok and "not a readable image" in bad.error and bad.label is None
    assert not missing.ok and "no such file" in missing.error
    assert ok.ok and ok.label in clf.classes


@pytest.mark.parametrize(
    "x, phrase",
    [
        (np.zeros((4, 4, 3), np.float32), "an array of float32 is not an image"),
        (np.zeros((4, 4, 5), np.uint8), "an array of shape (4, 4, 5) is not an image"),
        (42, "cannot classify a int"),
    ],
)
def test_what_is_no_image_is_a_clear_error(media, x, phrase) -> None:
    clf = cnnkit.load(media["ckpt"], device="cpu")
    with pytest.raises(cnnkit.CnnkitError) as info:
        clf.predict(x)
    assert phrase in info.value.message and info.value.hint


def test_the_library_prints_nothing_and_leaves_torch_threads_alone(
    media, capfd, silent_library
) -> None:
    threads = torch.get_num_threads()
    clf = cnnkit.load(media["ckpt"])  # device auto: said, but only to the logger
    clf.predict([media["root"] / "pics"], workers=2)
    list(clf.predict_video(media["root"] / "v.mp4"))
    cnnkit.evaluate(media["ckpt"], str(media["root"] / "pics"), device="cpu")
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    assert torch.get_num_threads() == threads


def test_messages_reach_a_configured_logger(media, caplog, silent_library) -> None:
    with caplog.at_level(logging.INFO, logger="cnnkit"):
        cnnkit.load(media["ckpt"], device="cpu")
    assert any(r.getMessage().startswith("device: cpu") for r in caplog.records)


def test_evaluate_is_evals_json_document(media, monkeypatch, capsys) -> None:
    pics = str(media["root"] / "pics")
    rep = cnnkit.evaluate(media["ckpt"], pics, device="cpu")
    code, out, err = cnnkit_in_process(monkeypatch, capsys, "eval", str(media["ckpt"]),
                                       "--dataset", pics, "--json")  # fmt: skip
    assert code == 0, err
    assert rep.to_dict() == json.loads(out)
    assert rep.accuracy == json.loads(out)["accuracy"]
    assert rep.confusion_matrix.tolist() == json.loads(out)["confusion_matrix"]


def test_explain_gives_a_map_at_the_images_size(media) -> None:
    clf = cnnkit.load(media["ckpt"], device="cpu")
    image = np.random.default_rng(1).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    ex = cnnkit.explain(clf, image)
    assert ex.heatmap.shape == (20, 24) and ex.heatmap.dtype == np.float32
    assert 0 <= ex.heatmap.min() and ex.heatmap.max() <= 1
    assert ex.label == clf.predict(image)[0].label
    plain = ex.overlay(annotate=False)  # pixel for pixel with the heat map
    assert plain.shape == (20, 24, 3) and plain.dtype == np.uint8
    # The picture explain writes: 12 times larger (224 pixels at least), the label above.
    assert ex.overlay().shape[1:] == (288, 3) and ex.overlay().shape[0] > 240
    x, y = ex.peak
    assert 0 <= x < 24 and 0 <= y < 20
    chosen = cnnkit.explain(media["ckpt"], image, target="c", method="occlusion")
    assert chosen.label == "c" and chosen.method == "occlusion"
    with pytest.raises(cnnkit.CnnkitError, match="needs gradients"):
        cnnkit.explain(str(media["onnx"]), image)


def test_export_writes_a_model_load_runs(media, tmp_path) -> None:
    path = cnnkit.export(media["ckpt"], tmp_path / "e.onnx", verify=False)
    assert path == tmp_path / "e.onnx" and path.is_file()
    image = np.full((16, 16, 3), 90, np.uint8)
    a = cnnkit.load(path).predict(image)[0]
    b = cnnkit.load(media["ckpt"], device="cpu").predict(image)[0]
    assert a.label == b.label and abs(a.score - b.score) < 1e-4


def test_train_takes_the_options_by_name_and_checks_them(tmp_path) -> None:
    options = {k: v for k, v in vars(tiny_config(tmp_path)).items() if v is not None}
    options = {k: options[k] for k in ("dataset", "model", "epochs", "batch_size", "limit",
                                       "img_size", "device", "out", "seed")}  # fmt: skip
    res = cnnkit.train(**options)
    assert res.run_dir.is_dir() and res.best_checkpoint is not None
    assert res.best_checkpoint.is_file() and "val_acc" in res.metrics
    assert res.to_dict()["run_dir"] == str(res.run_dir)
    with pytest.raises(cnnkit.CnnkitError, match="no option 'epoch'"):
        cnnkit.train(dataset="shapes", epoch=3)
    with pytest.raises(cnnkit.CnnkitError, match="^epochs=0 must be"):
        cnnkit.train(dataset="shapes", epochs=0, out=str(tmp_path / "runs"))


def test_an_onnx_loads_and_predicts_where_torch_cannot_be_imported(media) -> None:
    code = BLOCK_TORCH.replace(
        "from cnnkit.cli import main\nmain()",
        "import cnnkit\nclf = cnnkit.load(sys.argv[1])\n"
        "print(clf.backend, clf.predict(sys.argv[2])[0].label)\n"
        "assert 'torch' not in sys.modules",
    )
    image = media["root"] / "pics" / "a" / "img_000.png"
    done = subprocess.run(
        [sys.executable, "-c", code, str(media["onnx"]), str(image)],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "BLOCKED": NOT_INSTALLED, "PYTHONWARNINGS": "ignore"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    label = cnnkit.load(media["onnx"]).predict(image)[0].label
    assert done.stdout.split() == ["onnxruntime", label]


def test_import_cnnkit_imports_no_torch_and_changes_no_environment() -> None:
    code = (
        "import os, sys; before = dict(os.environ); import cnnkit; "
        "assert 'torch' not in sys.modules and 'cv2' not in sys.modules, sorted(sys.modules); "
        "assert dict(os.environ) == before; print(sorted(cnnkit.__all__))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    for name in ("load", "train", "evaluate", "explain", "export", "Classifier"):
        assert name in done.stdout


def test_the_readmes_python_examples_run(tmp_path, monkeypatch, silent_library) -> None:
    """Every ```python block of the README's "Python" section, in order, in one namespace."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme.split("\n## Python\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert blocks, "the README has no Python examples"
    monkeypatch.chdir(tmp_path)
    make_image(tmp_path / "a.png", 24, 24)
    make_image(tmp_path / "b.png", 32, 32)
    make_video(tmp_path / "clip.mp4", frames=6, h=32, w=32)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102


def test_a_pretrained_reference_gives_the_clis_records(tmp_path, monkeypatch, capsys) -> None:
    from tests.training.test_transfer import _fake_resnet18, _no_download, _put_weights, _torch_home

    _put_weights(_torch_home(tmp_path, monkeypatch), "resnet18", _fake_resnet18())
    _no_download(monkeypatch)
    monkeypatch.chdir(tmp_path)
    make_image(tmp_path / "x.png", 40, 48)
    clf = cnnkit.load("resnet18:imagenet", device="cpu")
    assert len(clf.classes) == 1000 and clf.backend == "torch"
    api = [p.to_dict() for p in clf.predict("x.png", top_k=3)]
    assert_same(api, cli_records(monkeypatch, capsys, "resnet18:imagenet", "x.png", "--top-k",
                                 "3", "--device", "cpu"))  # fmt: skip


def test_explain_and_predict_on_one_classifier_from_several_threads(media) -> None:
    """Grad-CAM hooks the shared model: other threads' passes must neither break it nor
    be broken by it."""
    import threading

    clf = cnnkit.load(media["ckpt"], device="cpu")
    image = np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    want_map = cnnkit.explain(clf, image).heatmap
    want_score = clf.predict(image)[0].score
    problems: list[str] = []

    def explain() -> None:
        for _ in range(6):
            try:
                if not np.allclose(cnnkit.explain(clf, image).heatmap, want_map, atol=1e-5):
                    problems.append("another map")
            except Exception as exc:  # noqa: BLE001 - any failure is the finding
                problems.append(f"explain: {exc!r}")

    def predict() -> None:
        for _ in range(12):
            try:
                if abs(clf.predict(image)[0].score - want_score) > TOLERANCE:
                    problems.append("another score")
            except Exception as exc:  # noqa: BLE001
                problems.append(f"predict: {exc!r}")

    threads = [threading.Thread(target=f) for f in (explain, explain, predict, predict)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert problems == []


def test_calls_neither_move_the_shared_model_nor_set_torchs_threads(media, monkeypatch) -> None:
    """Other threads may be running the same model or torch: moving the model
    (``.cpu()``/``.to()``) or resizing torch's pools under them crashed the process."""
    clf = cnnkit.load(media["ckpt"], device="cpu")
    calls: list[str] = []
    model = clf.predictor.model
    monkeypatch.setattr(model, "cpu", lambda *a, **k: calls.append("cpu") or model)
    monkeypatch.setattr(model, "to", lambda *a, **k: calls.append("to") or model)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: calls.append(f"threads={n}"))
    image = np.random.default_rng(1).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    cnnkit.explain(clf, image)
    cnnkit.explain(clf, image, layer="features.0")
    clf.predict([image, image], top_k=2)
    list(clf.predict_video(media["root"] / "v.mp4"))
    assert calls == []


def test_interleaved_video_iterators_leave_torch_threads_as_they_were(media) -> None:
    clf = cnnkit.load(media["ckpt"], device="cpu")
    threads = torch.get_num_threads()
    a = clf.predict_video(media["root"] / "v.mp4")
    b = clf.predict_video(media["root"] / "v.mp4")
    next(a)
    assert torch.get_num_threads() == threads  # the caller's code runs at full strength
    next(b)
    a.close()
    b.close()
    assert torch.get_num_threads() == threads


def test_train_gives_back_the_seeds_determinism_and_warnings_it_sets(tmp_path) -> None:
    import random
    import warnings

    import lightning  # noqa: F401  (what importing adds is not what training sets)

    import cnnkit.api  # noqa: F401

    np.random.seed(123)
    random.seed(123)
    torch.manual_seed(123)
    expect = (np.random.rand(), random.random(), torch.rand(1).item())
    np.random.seed(123)
    random.seed(123)
    torch.manual_seed(123)
    filters = list(warnings.filters)
    env = {k: os.environ.get(k) for k in ("PL_GLOBAL_SEED", "PL_SEED_WORKERS")}
    # (fit() called directly by earlier tests in this process leaves it on; the API may not.)
    torch.use_deterministic_algorithms(False)
    cnnkit.train(dataset="shapes", model="lenet5", epochs=1, limit=24, img_size=16,
                 batch_size=16, device="cpu", out=str(tmp_path / "runs"))  # fmt: skip
    assert (np.random.rand(), random.random(), torch.rand(1).item()) == expect
    assert not torch.are_deterministic_algorithms_enabled()
    assert warnings.filters == filters
    assert {k: os.environ.get(k) for k in env} == env


@pytest.mark.parametrize(
    "call, phrase",
    [
        (lambda clf: clf.predict("x.png", top_k=0), "top_k must be a whole number of at least 1"),
        (lambda clf: clf.predict("x.png", top_k=2.5), "top_k must be a whole number"),
        (lambda clf: clf.predict("x.png", batch_size="2"), "batch_size must be a whole number"),
        (lambda clf: clf.predict_video("nope.mp4"), "no such video file"),
        (lambda clf: clf.predict_video("v.mp4", window=4), "window is for 3D models"),
        (lambda clf: clf.predict_video("v.mp4", stride=0), "stride must be a whole number"),
        (lambda clf: cnnkit.load(clf.reference, threads=True), "threads must be a whole number"),
        (lambda clf: cnnkit.evaluate(clf, "pics", limit=-1), "limit must be a whole number"),
        (lambda clf: cnnkit.evaluate(3), "a model is a path, MODEL:DATA or a Classifier"),
        (lambda clf: cnnkit.export(clf, opset="18"), "opset must be a whole number"),
        (lambda clf: cnnkit.explain(clf, ["x.png"]), "explain() takes one image"),
        (
            lambda clf: cnnkit.train(dataset="shapes", epochs="1"),
            "epochs='1' is not a whole number",
        ),
        (lambda clf: cnnkit.train(dataset="shapes", device=["cpu"]), "is not a str"),
        (lambda clf: cnnkit.train(dataset="shapes", devices=0), "devices"),
    ],
)
def test_wrong_values_and_types_are_cnnkit_errors(media, monkeypatch, call, phrase) -> None:
    monkeypatch.chdir(media["root"])
    make_image(media["root"] / "x.png", 16, 16)
    clf = cnnkit.load(media["ckpt"], device="cpu")
    with pytest.raises(cnnkit.CnnkitError) as info:
        call(clf)  # raised at the call, not at the first next()
    assert phrase in info.value.message


def test_targets_from_numpy_and_paths_as_bytes(media) -> None:
    clf = cnnkit.load(media["ckpt"], device="cpu")
    image = np.full((16, 16, 3), 120, np.uint8)
    assert cnnkit.explain(clf, image, target=np.int64(2)).label == "c"
    path = media["root"] / "pics" / "a" / "img_000.png"
    assert clf.predict(os.fsencode(path))[0].score == clf.predict(path)[0].score
    assert clf.reference == str(media["ckpt"])


def test_training_interrupted_is_a_keyboard_interrupt() -> None:
    stop = cnnkit.TrainingInterrupted(Path("last.ckpt"), 2, 30, "cnnkit train --resume last.ckpt")
    assert isinstance(stop, KeyboardInterrupt) and not isinstance(stop, Exception)
    assert "saved last.ckpt" in str(stop)


def test_dir_shows_the_api_only() -> None:
    names = [n for n in dir(cnnkit) if not n.startswith("__") or n == "__version__"]
    assert sorted(names) == sorted(cnnkit.__all__)


@pytest.mark.parametrize("kind", ["ckpt", "onnx"])
def test_a_classifier_pickles_as_its_reference(media, kind) -> None:
    """Ray, Spark and multiprocessing send a Classifier to other processes."""
    import pickle

    clf = cnnkit.load(media[kind], device="cpu", batch_size=7)
    clf.predictor.set_background((0, 0, 0))
    copy = pickle.loads(pickle.dumps(clf))
    assert copy.reference == clf.reference and copy.predictor.batch_size == 7
    assert copy.input.background == (0, 0, 0) and copy.backend == clf.backend
    image = np.random.default_rng(3).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    assert copy.predict(image)[0].score == clf.predict(image)[0].score


def test_errors_name_the_python_parameters_not_the_cli_options(media) -> None:
    clf = cnnkit.load(media["ckpt"], device="cpu")
    image = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(cnnkit.CnnkitError) as info:
        cnnkit.explain(clf, image, target="zebra")
    assert str(info.value).startswith("target 'zebra' is not one of the model's classes")
    with pytest.raises(cnnkit.CnnkitError) as info:
        cnnkit.explain(clf, image, layer="nope")
    assert str(info.value).startswith("layer 'nope' is not a layer")
    assert "`cnnkit inspect CHECKPOINT`" in str(info.value)  # a command stays a command
    with pytest.raises(cnnkit.CnnkitError) as info:
        cnnkit.train(dataset="shapes", patience=2, val_split=0.0)
    text = str(info.value)
    assert "patience" in text and "val_split=0 " in text and "--" not in text


def test_a_command_run_in_process_gives_the_logger_back(media, monkeypatch, capsys) -> None:
    import logging

    from cnnkit.cli import main

    log = logging.getLogger("cnnkit")
    for propagate, level in ((True, logging.NOTSET), (False, logging.WARNING)):
        monkeypatch.setattr(log, "propagate", propagate)
        monkeypatch.setattr(log, "level", level)
        handlers = list(log.handlers)
        monkeypatch.setattr("sys.argv", ["cnnkit", "inspect", str(media["ckpt"])])
        with contextlib.suppress(SystemExit):
            main()
        capsys.readouterr()
        assert (list(log.handlers), log.propagate, log.level) == (handlers, propagate, level)


def test_a_call_lowers_torchs_threads_in_its_own_thread_only(media, monkeypatch) -> None:
    """Decoders and the model share the cores during a call: torch computes on the ones the
    decode threads leave, in the calling thread alone; a thread that starts computing
    meanwhile, and the caller afterwards, get the counts they would have had."""
    import threading

    from cnnkit.io.pipeline import cores_left

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    clf = cnnkit.load(media["ckpt"], device="cpu")

    def fresh_threads_count() -> int:
        counts: list[int] = []
        t = threading.Thread(target=lambda: counts.append(torch.get_num_threads()))
        t.start()
        t.join()
        return counts[0]

    before, fresh_before = torch.get_num_threads(), fresh_threads_count()
    seen: dict[str, int] = {}
    real = clf.predictor.logits

    def logits(batch):
        seen.setdefault("call", torch.get_num_threads())
        seen.setdefault("fresh", fresh_threads_count())  # a thread torch first meets now
        return real(batch)

    monkeypatch.setattr(clf.predictor, "logits", logits)
    clf.predict(np.zeros((16, 16, 3), np.uint8), workers=2)
    assert seen["call"] == min(before, cores_left(2))
    assert seen["fresh"] == fresh_before and torch.get_num_threads() == before
