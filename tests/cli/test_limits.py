"""Limits: a process memory limit (``ulimit -v``) and caps on the sizes given on the command line.

Under an address-space limit every command runs or says why in one ``error:``
line naming the limit: no segmentation fault, no traceback. A size on the
command line past its cap is a usage error (exit 2), never an allocation of
terabytes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import cnnkit_in_process, make_checkpoint, make_image, make_image_folder


def _address_space(limit: int):
    """A preexec_fn: this process may map at most ``limit`` bytes (``ulimit -v``)."""

    def apply() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return apply


def _run(*args: str, cwd: Path, limit: int | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "cnnkit", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        preexec_fn=_address_space(limit) if limit else None,
    )


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


# ---------------------------------------------------------------------------
# ulimit -v
# ---------------------------------------------------------------------------


def test_a_convolution_past_ulimit_v_is_refused_up_front_naming_the_limit(tmp_path) -> None:
    # Zero padding of 12000 around 64×64: a 24064×24064 padded input and its
    # float32 result, 2.9 GB, where the machine may have much more free but this
    # process may map 2.5 GB (OpenCV's "Insufficient memory" traceback before).
    make_image(tmp_path / "x.png", 64, 64, channels=1)
    args = ("convolve", "x.png", "-k", "box:3", "--padding", "12000", "--padding-mode", "zeros")
    done = _run(*args, "-o", "p.npy", cwd=tmp_path, limit=2_500_000_000)
    assert done.returncode == 1, done.stderr
    line = _one_error_line(done.stderr)
    assert "ulimit -v" in line and "needs 2.9 GB of memory" in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.png"]  # no output, no temp


def test_training_under_ulimit_v_4000000_runs_or_says_why(tmp_path) -> None:
    # Torch's CUDA build maps 3.1 GB at import and Lightning 0.5 GB more: OpenCV
    # imported after them could not map its OpenBLAS buffers and the run was a
    # segmentation fault (exit 139) with no message.
    make_image_folder(tmp_path / "digits", [str(i) for i in range(4)], 8)
    args = ("train", "--dataset", "digits", "--epochs", "1", "--limit", "32", "--device", "cpu")
    done = _run(*args, "--out", "runs", "-q", cwd=tmp_path, limit=4_000_000 * 1024)
    if done.returncode == 0:
        assert (tmp_path / "runs/train/checkpoints/best.ckpt").is_file()
        assert done.stderr == ""  # -q: not even a note from a library about what is left out
    else:
        assert done.returncode == 1, (done.returncode, done.stderr)
        assert "ulimit -v" in _one_error_line(done.stderr)


def test_torch_commands_under_a_limit_too_small_for_torch_say_so(tmp_path) -> None:
    # 1 GB: room for Python, numpy and OpenCV; torch's libraries cannot all be
    # mapped (an ImportError traceback before).
    ckpt = make_checkpoint(tmp_path / "m.ckpt")
    make_image(tmp_path / "x.png", 16, 16)
    done = _run("predict", str(ckpt), "x.png", cwd=tmp_path, limit=10**9)
    if done.returncode != 0:  # a torch build small enough to fit runs
        assert done.returncode == 1, (done.returncode, done.stderr)
        line = _one_error_line(done.stderr)
        assert line.startswith("error: out of memory") and "ulimit -v" in line, line


def test_a_video_batch_past_ulimit_v_is_refused_naming_the_options(tmp_path) -> None:
    # 65536 windows of 4096 frames: a 206 GB batch, allocated whole before the first
    # frame is read (numpy's ArrayMemoryError traceback before).
    from tests.helpers import make_video

    ckpt = make_checkpoint(tmp_path / "c3d.ckpt", "c3d_small", channels=3, frames=8)
    make_video(tmp_path / "clip.mp4", frames=8)
    args = ("predict", str(ckpt), "clip.mp4", "--window", "4096", "--batch-size", "65536")
    done = _run(*args, cwd=tmp_path, limit=8 * 10**9)
    assert done.returncode == 1, done.stderr
    line = _one_error_line(done.stderr.replace("device: cpu", "").split("\n", 1)[-1])
    assert "--batch-size 65536, --window 4096" in line and "206.2 GB" in line, line
    assert "hint: use a smaller --batch-size or --window" in line, line


def test_an_allocation_that_fails_anyway_is_one_error_line(tmp_path, monkeypatch, capsys) -> None:
    import numpy as np

    from cnnkit.predict import Predictor

    def too_big(self, batch):
        np.empty(2**62, np.uint8)  # numpy's ArrayMemoryError, a MemoryError

    monkeypatch.setattr(Predictor, "logits", too_big)
    ckpt = make_checkpoint(tmp_path / "m.ckpt")
    make_image(tmp_path / "x.png", 16, 16)
    monkeypatch.chdir(tmp_path)
    code, out, err = cnnkit_in_process(monkeypatch, capsys, "predict", str(ckpt), "x.png", "-q")
    assert (code, out) == (1, "")
    line = _one_error_line(err)
    assert line.startswith("error: out of memory: Unable to allocate 4.00 EiB"), line


def test_export_reports_memory_as_memory_not_as_the_models_fault(
    tmp_path, monkeypatch, capsys
) -> None:
    pytest.importorskip("onnxscript")
    import torch

    def no_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(torch.onnx, "export", no_memory)
    ckpt = make_checkpoint(tmp_path / "m.ckpt")
    code, _, err = cnnkit_in_process(monkeypatch, capsys, "export", str(ckpt), "-q")
    assert code == 1
    assert _one_error_line(err).startswith("error: out of memory"), err
    assert not list(tmp_path.glob("*.onnx"))


# ---------------------------------------------------------------------------
# caps on command-line sizes
# ---------------------------------------------------------------------------

BIG = "100000000"

# (command line, the option Typer names); files need not exist: usage errors come first.
CAPPED = [
    (f"predict c3d.ckpt clip.mp4 --window {BIG}", "--window"),
    (f"predict m.onnx clip.mp4 --batch-size {BIG}", "--batch-size"),
    (f"predict m.ckpt clip.mp4 --stride {BIG}", "--stride"),
    (f"predict m.ckpt x.png --workers {BIG}", "--workers"),
    (f"predict m.ckpt x.png --top-k {BIG}", "--top-k"),
    (f"eval m.ckpt --batch-size {BIG}", "--batch-size"),
    (f"eval m.ckpt --clips {BIG}", "--clips"),
    ("eval m.ckpt --limit 10000000000", "--limit"),
    (f"eval m.ckpt --top-k {BIG}", "--top-k"),
    (f"explain m.ckpt x.png --batch-size {BIG}", "--batch-size"),
    (f"explain m.ckpt clip.mp4 --stride {BIG}", "--stride"),
    (f"explain m.ckpt x.png --top-k {BIG}", "--top-k"),
    (f"inspect lenet5 --num-classes {BIG}", "--num-classes"),
    (f"train --dataset none --batch-size {BIG}", "--batch-size"),
    (f"train --dataset none --frames {BIG}", "--frames"),
    (f"train --dataset none --workers {BIG}", "--workers"),
    ("train --dataset none --limit 10000000000", "--limit"),
    (f"train --dataset none --epochs {BIG}", "--epochs"),
    ("train --dataset none --seed 100000000000000000000", "--seed"),
    ("train --dataset none --seed -1", "--seed"),
]


@pytest.mark.parametrize(("line", "option"), CAPPED)
def test_a_size_past_its_cap_is_a_usage_error(line, option, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")  # Typer's box would wrap the message
    code, out, err = cnnkit_in_process(monkeypatch, capsys, *line.split())
    assert (code, out) == (2, ""), err
    assert f"Invalid value for '{option}'" in err and "Traceback" not in err, err


@pytest.mark.parametrize("option", ["--padding", "--stride", "--dilation"])
def test_convolve_refuses_a_huge_axis_value_by_name(option, tmp_path, monkeypatch, capsys) -> None:
    # Parsed by cnnkit (one value or one per axis), like their lower bounds: exit 1.
    make_image(tmp_path / "x.png", 16, 16)
    monkeypatch.chdir(tmp_path)
    args = ("convolve", "x.png", "-k", "box", option, "99999999999999999999", "-o", "o.npy")
    code, _, err = cnnkit_in_process(monkeypatch, capsys, *args, "--padding-mode", "zeros")
    assert code == 1
    line = _one_error_line(err)
    assert f"{option[2:]} 99999999999999999999 is too large (at most 1,000,000)" in line, line


def test_train_refuses_more_devices_than_a_machine_has() -> None:
    # On the CPU a count of devices is a count of processes to start.
    from cnnkit.errors import InputError
    from cnnkit.training.plan import parse_devices

    assert parse_devices("256") == 256
    with pytest.raises(InputError, match="--devices 100000000 is too many"):
        parse_devices(BIG)


# ---------------------------------------------------------------------------
# SIGTERM and Ctrl-C during long native calls (torch)
# ---------------------------------------------------------------------------


def test_a_cpu_batch_goes_through_the_model_in_chunks_that_return_often() -> None:
    # A torch op returns to Python (where signal handlers run) only when it is done:
    # the model sees chunks of at most 2M input values, whatever --batch-size says.
    import numpy as np
    import torch

    from cnnkit.data.preprocess import normalize
    from cnnkit.models.registry import create_model
    from cnnkit.predict import Predictor
    from cnnkit.spec import InputSpec

    net = create_model("lenet5", 3, 1, input_size=(1, 256, 256)).eval()
    seen: list[int] = []
    net.register_forward_pre_hook(lambda module, args: seen.append(args[0].numel()))
    spec = InputSpec(1, (256, 256), None, [0.5], [0.25])
    predictor = Predictor.from_model(net, ["a", "b", "c"], spec, "cpu", 100)
    batch = np.random.default_rng(0).integers(0, 256, (100, 1, 256, 256), dtype=np.uint8)
    logits = predictor.logits(batch)
    assert len(seen) > 1 and max(seen) <= 2**21 and sum(seen) == batch.size, seen
    with torch.inference_mode():
        whole = net(normalize(torch.from_numpy(batch), [0.5], [0.25])).numpy()
    np.testing.assert_allclose(logits, whole, rtol=1e-4, atol=1e-5)


def test_a_large_cpu_training_batch_lets_signals_in_during_backward(monkeypatch) -> None:
    # backward() runs the whole graph in C++: a gradient hook per layer runs Python
    # there, so that SIGTERM's handler can raise before backward ends.
    import torch

    from cnnkit.models.registry import create_model
    from cnnkit.training import module as module_mod

    ran: list[tuple[int, ...]] = []
    monkeypatch.setattr(module_mod, "_return_to_python", lambda p: ran.append(tuple(p.shape)))
    recipe = dict(lr=3e-3, optimizer="adamw", weight_decay=0.05, schedule="cosine")

    def backward_of(size: int, batch: int) -> list[tuple[int, ...]]:
        ran.clear()
        net = create_model("lenet5", 3, 1, input_size=(1, size, size))
        mod = module_mod.ClassifierModule(
            net, num_classes=3, mean=[0.5], std=[0.25], label_smoothing=0.0, **recipe
        )
        x = torch.zeros(batch, 1, size, size)
        mod._listen_during_backward(x)
        net(x).sum().backward()
        return list(ran)

    weights = [tuple(p.shape) for p in create_model("lenet5", 3, 1).parameters() if p.dim() > 1]
    large = backward_of(256, 32)  # 2M input values: a backward of seconds on large models
    assert len(large) == len(weights) > 0, large
    assert backward_of(16, 8) == []  # milliseconds: no hooks, no cost
