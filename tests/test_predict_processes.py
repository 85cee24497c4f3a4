"""Decode processes: started only once a process has decoded many named images, giving the
records the threads give, and given up (the process decoding itself) when they fail."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest

from cnnkit.predict import PredictInput, Predictor, predict_images, processes
from tests.helpers import make_checkpoint, make_image, write_array

pytestmark = pytest.mark.skipif(os.name != "posix", reason="decode processes are POSIX only")


@pytest.fixture
def fresh(monkeypatch):
    """This process as if it had decoded nothing yet; its decode processes closed afterwards."""
    monkeypatch.setitem(processes._STATE, "pool", None)
    monkeypatch.setitem(processes._STATE, "decoded", 0)
    monkeypatch.setenv("CNNKIT_THREADS", "2")  # a core for them beside the model
    yield processes._STATE
    pool = processes._STATE["pool"]
    if pool:
        pool.close()


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("procs")
    paths = []
    for i in range(40):
        p = root / f"{i:02d}.png"
        make_image(p, 20, 20, 3, seed=i)
        paths.append(str(p))
    paths[5] = str(root / "bad.png")
    (root / "bad.png").write_bytes(b"not an image")
    grey = np.repeat(np.random.default_rng(1).integers(0, 256, (20, 20, 1), np.uint8), 3, 2)
    write_array(root / "grey.png", grey)
    paths[9] = str(root / "grey.png")
    make_image(root / "rgba.png", 24, 18, 4, seed=50)
    paths[17] = str(root / "rgba.png")
    ckpt = make_checkpoint(root / "m.ckpt", channels=1, size=(16, 16), classes=list("abcde"))
    return root, paths, ckpt


def _ready(timeout: float = 60.0) -> processes.Pool:
    pool = processes._STATE["pool"]
    assert pool, "no decode processes were started"
    assert pool.ready.wait(timeout) and not pool.broken
    return pool


def _records(pred: Predictor, inputs, **options) -> list[dict]:
    return [
        r for batch in predict_images(pred, inputs, top_k=3, chunk=16, **options) for r in batch
    ]


def test_a_few_images_start_no_process(media, fresh):
    _, paths, ckpt = media
    pred = Predictor.from_checkpoint(ckpt, "cpu", batch_size=8)
    _records(pred, paths)
    assert fresh["pool"] is None and fresh["decoded"] == len(paths)


def test_past_the_threshold_processes_give_the_records_threads_give(media, fresh, monkeypatch):
    _, paths, ckpt = media
    pred = Predictor.from_checkpoint(ckpt, "cpu", batch_size=8)
    inputs = [PredictInput(p) for p in paths]
    inputs[3] = PredictInput(paths[3], error="no such file or folder")  # decoded here
    by_threads = _records(pred, inputs)
    monkeypatch.setattr(processes, "START_AFTER", len(paths))
    _records(pred, inputs)  # the count passes the threshold: they start
    pool = _ready()
    children = [c.process.pid for c in pool.children]
    decoded = fresh["decoded"]
    assert _records(pred, inputs) == by_threads
    assert _records(pred, paths, workers=2) == _records(pred, paths, workers=1)
    assert fresh["decoded"] == decoded  # nothing more decoded here: the children did it
    assert [c.process.pid for c in pool.children] == children  # the same, kept between jobs


def test_a_job_switches_to_the_processes_once_they_are_ready(media, fresh, monkeypatch):
    _, paths, ckpt = media
    pred = Predictor.from_checkpoint(ckpt, "cpu", batch_size=16)
    many = paths * 8
    want = _records(pred, many)
    monkeypatch.setattr(processes, "START_AFTER", 1)
    fresh["decoded"] = 0
    got: list[dict] = []
    for batch in predict_images(pred, many, top_k=3, chunk=16):
        got.extend(batch)
        if len(got) >= 32 and not processes.started():
            _ready()  # ready mid-job: the rest goes to them
    assert got == want
    assert fresh["decoded"] < len(many)


def test_notes_given_in_a_child_are_given_here_once(media, fresh, monkeypatch, caplog):
    import logging

    _, paths, ckpt = media
    monkeypatch.setattr(processes, "START_AFTER", 1)
    pred = Predictor.from_checkpoint(ckpt, "cpu", batch_size=8)
    _records(pred, paths[:2])
    _ready()
    pred = Predictor.from_checkpoint(ckpt, "cpu", batch_size=8)  # nothing noted yet
    with caplog.at_level(logging.INFO, logger="cnnkit"):
        _records(pred, paths)
        _records(pred, paths)
    notes = [r.getMessage() for r in caplog.records if r.getMessage().startswith("note:")]
    assert sum("converted to gray" in n for n in notes) == 1
    assert sum("alpha channel" in n for n in notes) == 1
    assert fresh["decoded"] == 2


def test_a_child_that_dies_is_given_up_and_its_chunks_decoded_here(media, fresh, monkeypatch):
    _, paths, ckpt = media
    pred = Predictor.from_checkpoint(ckpt, "cpu", batch_size=8)
    want = _records(pred, paths * 12)
    monkeypatch.setattr(processes, "START_AFTER", 1)
    fresh["decoded"] = 0
    _records(pred, paths[:1])
    pool = _ready()
    got: list[dict] = []
    for batch in predict_images(pred, paths * 12, top_k=3, chunk=16):
        if not got:
            for child in pool.children:
                child.process.kill()  # an out-of-memory kill, a crash
        got.extend(batch)
    assert got == want
    assert pool.broken and not processes.started()
    assert _records(pred, paths) == want[: len(paths)]  # threads from now on


def test_ending_a_job_early_leaves_the_processes_ready_for_the_next(media, fresh, monkeypatch):
    _, paths, ckpt = media
    monkeypatch.setattr(processes, "START_AFTER", 1)
    pred = Predictor.from_checkpoint(ckpt, "cpu", batch_size=4)
    want = _records(pred, paths * 4)
    _ready()
    batches = predict_images(pred, paths * 4, top_k=3, chunk=16)
    next(batches)
    batches.close()  # `| head -1`
    assert processes.started()
    assert _records(pred, paths * 4) == want


def test_children_end_with_their_process_and_never_import_torch(tmp_path, media):
    _, paths, _ = media
    code = """
import os, sys
os.environ["CNNKIT_THREADS"] = "2"
from cnnkit.predict import processes
processes.START_AFTER = 1
processes.count(1)
pool = processes._STATE["pool"]
assert pool.ready.wait(60) and not pool.broken
print(pool.children[0].process.pid, flush=True)
os._exit(0)  # no atexit handler, nothing closed: the child sees its socket close
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    pid = int(out.stdout.split()[0])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    assert not _alive(pid)
    check = (
        "import sys, cnnkit.predict.processes, cnnkit.predict.decode, cnnkit.predict.predictor; "
        "sys.exit('torch' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", check], timeout=120).returncode == 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (not reaped by its parent, which has exited: init reaps it) counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("variable", ["CNNKIT_THREADS", "CNNKIT_DECODE_PROCESSES"])
def test_no_processes_on_one_core_or_when_turned_off(fresh, monkeypatch, variable):
    monkeypatch.setenv(variable, "1" if variable == "CNNKIT_THREADS" else "0")
    monkeypatch.setattr(processes, "START_AFTER", 1)
    processes.count(10)
    assert fresh["pool"] is False and processes.claim() is None
