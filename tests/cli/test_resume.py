"""`predict -o FILE` and `--resume`: records as they are made, one per input after any kills.

A run killed with SIGKILL at any point, then resumed (again and again), ends
with the file an uninterrupted run writes: each input's records once, no
part of a line, a video's frames once each and its whole-video record last.
"""

from __future__ import annotations

import csv
import errno
import fcntl
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.helpers import (
    cnnkit_in_process,
    make_checkpoint,
    make_image,
    make_video,
    run_cnnkit,
)

CLASSES = ["cat", "dog", "owl"]


@pytest.fixture
def ckpt(tmp_path) -> str:
    return str(make_checkpoint(tmp_path / "m.ckpt", "lenet5", CLASSES, 1, (16, 16)))


@pytest.fixture(scope="module")
def onnx(tmp_path_factory) -> str:
    """The model as .onnx, for runs in processes of their own: no torch to import (0.4 s, not 2)."""
    from cnnkit.onnxexport import export_onnx

    root = tmp_path_factory.mktemp("onnx")
    make_checkpoint(root / "m.ckpt", "lenet5", CLASSES, 1, (16, 16))
    export_onnx(str(root / "m.ckpt"), root / "m.onnx", verify=False)
    return str(root / "m.onnx")


@pytest.fixture
def photos(tmp_path) -> Path:
    """60 tiny images in two folders."""
    for i in range(60):
        path = tmp_path / "photos" / f"{'ab'[i % 2]}" / f"{i:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        make_image(path, channels=1, seed=i)
    return tmp_path / "photos"


@pytest.fixture
def many(tmp_path) -> Path:
    """240 tiny images in three folders: a run long enough (0.1 s) to be killed mid-way."""
    for i in range(240):
        path = tmp_path / "many" / f"{'abc'[i % 3]}" / f"{i:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        make_image(path, channels=1, seed=i)
    return tmp_path / "many"


@pytest.fixture
def clips(tmp_path) -> Path:
    """Images and two videos of 40 frames: a 2D model gives a record per frame."""
    folder = tmp_path / "clips"
    folder.mkdir()
    for i in range(3):
        make_image(folder / f"{i}.png", channels=1, seed=i)
    make_video(folder / "m.mp4", frames=40, seed=1)
    make_image(folder / "n.png", channels=1, seed=7)
    make_video(folder / "v.mp4", frames=40, seed=2)
    return folder


def _lines(path: Path) -> list[str]:
    data = path.read_bytes()
    assert data == b"" or data.endswith(b"\n"), data[-200:]  # whole lines only
    return data.decode().splitlines()


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in _lines(path)]


def _csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def _close(found: object, expected: object) -> bool:
    """Equal, floats to 1e-6 (a batch of other images may change a score's last bits)."""
    if isinstance(found, float) and isinstance(expected, float):
        return abs(found - expected) < 1e-6
    if isinstance(found, str) and isinstance(expected, str):
        try:
            return abs(float(found) - float(expected)) < 1e-6
        except ValueError:
            return found == expected
    if isinstance(found, dict) and isinstance(expected, dict):
        return found.keys() == expected.keys() and all(_close(found[k], expected[k]) for k in found)
    if isinstance(found, list) and isinstance(expected, list):
        return len(found) == len(expected) and all(map(_close, found, expected))
    return found == expected


def _reference(ckpt: str, folder: Path, fmt: str, cwd: Path, *extra: str) -> Path:
    """An uninterrupted run's file."""
    out = cwd / f"reference.{fmt}"
    result = run_cnnkit("predict", ckpt, str(folder), "-o", str(out), *extra, "-q", cwd=cwd)
    assert result.returncode == 0 and result.stdout == "", result.stderr
    return out


def _kill_rounds(
    args: list[str], out: Path, total: int, cwd: Path, rounds: int, seed: int
) -> list[bytes]:
    """Start ``cnnkit ARGS --resume`` ``rounds`` times, each killed (SIGKILL) at a random point.

    The kill comes once the file has grown by a random share (0.5-8%) of
    ``total`` bytes, after a random pause of up to 2 ms: mid-batch, between
    batches, mid-video. Returns the file's last line after each kill that
    came before the run ended; a run that ends by itself ends the rounds.
    """
    rng = random.Random(seed)
    ends = []
    for _ in range(rounds):
        before = out.stat().st_size if out.exists() else 0
        target = before + int(rng.uniform(0.005, 0.08) * total)
        proc = subprocess.Popen(
            [sys.executable, "-m", "cnnkit", *args, "--resume", "-q"],
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 120
            while proc.poll() is None and time.monotonic() < deadline:
                if out.exists() and out.stat().st_size >= target:
                    time.sleep(rng.uniform(0, 0.002))
                    break
                time.sleep(0.001)
            running = proc.poll() is None
        finally:
            proc.kill()
            proc.wait()
        if not running:
            break
        ends.append(out.read_bytes().rsplit(b"\n", 2)[-2] if out.exists() else b"")
    return ends


@pytest.mark.slow
def test_jsonl_after_sigkills_and_resumes_is_the_uninterrupted_file(onnx, many, tmp_path) -> None:
    reference = _reference(onnx, many, "jsonl", tmp_path, "--batch-size", "4")
    out = tmp_path / "out.jsonl"
    args = ["predict", onnx, str(many), "--batch-size", "4", "-o", str(out)]
    killed = _kill_rounds(args, out, reference.stat().st_size, tmp_path, rounds=6, seed=26)
    assert len(killed) >= 3  # the kills came mid-run
    result = run_cnnkit(*args, "--resume", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "resume: " in result.stderr and " to go" in result.stderr
    assert _close(_jsonl(out), _jsonl(reference))


@pytest.mark.slow
def test_csv_after_sigkills_and_resumes_has_one_header_and_each_row_once(
    onnx, many, tmp_path
) -> None:
    reference = _reference(onnx, many, "csv", tmp_path, "--batch-size", "4")
    out = tmp_path / "out.csv"
    args = ["predict", onnx, str(many), "--batch-size", "4", "-o", str(out)]
    killed = _kill_rounds(args, out, reference.stat().st_size, tmp_path, rounds=5, seed=5)
    assert len(killed) >= 3
    result = run_cnnkit(*args, "--resume", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert _lines(out)[0] == _lines(reference)[0] and _lines(out).count(_lines(out)[0]) == 1
    assert _close(_csv(out), _csv(reference))


@pytest.mark.slow
def test_a_video_killed_midway_is_redone_whole(onnx, clips, tmp_path) -> None:
    reference = _reference(onnx, clips, "jsonl", tmp_path, "--batch-size", "4")
    out = tmp_path / "out.jsonl"
    args = ["predict", onnx, str(clips), "--batch-size", "4", "-o", str(out)]
    killed = _kill_rounds(args, out, reference.stat().st_size, tmp_path, rounds=6, seed=3)
    assert len(killed) >= 3
    assert [end for end in killed if b'"frame": ' in end]  # a kill came mid-video
    assert run_cnnkit(*args, "--resume", cwd=tmp_path).returncode == 0
    records = _jsonl(out)
    keys = Counter((r["path"], r.get("frame"), r.get("window")) for r in records)
    assert set(keys.values()) == {1}  # each frame once, each whole-video record once
    assert _close(records, _jsonl(reference))


# ---------------------------------------------------------------------------
# a write cut anywhere (a kill inside write(), a power cut), then --resume
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_a_file_cut_at_any_byte_resumes_to_the_whole_file(
    ckpt, clips, tmp_path, monkeypatch, capsys, fmt
) -> None:
    reference = tmp_path / f"reference.{fmt}"
    code, _, err = cnnkit_in_process(
        monkeypatch, capsys, "predict", ckpt, str(clips), "--batch-size", "4", "-o", str(reference)
    )
    assert code == 0, err
    whole = reference.read_bytes()
    out = tmp_path / f"out.{fmt}"
    rng = random.Random(fmt)
    # Cuts inside the header, inside a line, at a line's end, inside a video's records.
    newlines = [i + 1 for i, byte in enumerate(whole) if byte == ord("\n")]
    cuts = [0, 5, len(whole) - 1, *rng.sample(range(len(whole)), 8), *rng.sample(newlines, 4)]
    for cut in cuts:
        out.write_bytes(whole[:cut])
        code, stdout, err = cnnkit_in_process(
            monkeypatch, capsys, "predict", ckpt, str(clips), "--batch-size", "4",
            "-o", str(out), "--resume",
        )  # fmt: skip
        assert (code, stdout) == (0, ""), (cut, err)
        if fmt == "jsonl":
            assert _close(_jsonl(out), _jsonl(reference)), cut
        else:
            assert _lines(out)[0] == _lines(reference)[0], cut
            assert _close(_csv(out), _csv(reference)), cut


def test_resume_says_what_it_found_and_redoes_nothing_done(
    ckpt, clips, tmp_path, monkeypatch, capsys
) -> None:
    out = tmp_path / "out.jsonl"
    args = ["predict", ckpt, str(clips), "--batch-size", "4", "-o", str(out)]
    assert cnnkit_in_process(monkeypatch, capsys, *args)[0] == 0
    whole = out.read_bytes()
    # Cut inside the second video's records: its frames so far come off, then it is redone.
    cut = whole.index(b'{"path": "' + str(clips / "v.mp4").encode() + b'", "frame": 5,')
    out.write_bytes(whole[: cut + 20])
    code, _, err = cnnkit_in_process(monkeypatch, capsys, *args, "--resume")
    assert code == 0, err
    assert "resume: dropped the part of a line" in err
    assert "resume: removed 5 records of a video left unfinished" in err
    assert "holds 5 of 6 inputs; 1 to go" in err
    assert out.read_bytes() == whole
    # A finished file: nothing to do, nothing changes.
    code, _, err = cnnkit_in_process(monkeypatch, capsys, *args, "--resume")
    assert code == 0 and "holds 6 of 6 inputs; 0 to go" in err
    assert out.read_bytes() == whole


# ---------------------------------------------------------------------------
# errors recorded, and --retry-errors
# ---------------------------------------------------------------------------


def test_errors_count_as_done_unless_retried(ckpt, photos, tmp_path, monkeypatch, capsys) -> None:
    broken = photos / "a" / "010.png"
    good = broken.read_bytes()
    broken.write_bytes(b"not an image")
    out = tmp_path / "out.jsonl"
    args = ["predict", ckpt, str(photos), "-o", str(out)]
    code, _, err = cnnkit_in_process(monkeypatch, capsys, *args)
    assert code == 1 and "1 of 60 inputs could not be classified" in err
    first = out.read_bytes()
    # Resumed: the error is a record like any other; nothing is redone.
    code, _, err = cnnkit_in_process(monkeypatch, capsys, *args, "--resume")
    assert code == 0, err
    assert "holds 60 of 60 inputs; 0 to go" in err and "1 of them are errors" in err
    assert out.read_bytes() == first
    # Fixed, and retried: the error record goes, the input's record comes at the end.
    broken.write_bytes(good)
    code, _, err = cnnkit_in_process(monkeypatch, capsys, *args, "--resume", "--retry-errors")
    assert code == 0, err
    assert "removed 1 error records" in err and "holds 59 of 60 inputs; 1 to go" in err
    records = _jsonl(out)
    assert not [r for r in records if "error" in r]
    assert records[-1]["path"] == str(broken) and records[-1]["label"] in CLASSES
    assert Counter(r["path"] for r in records) == Counter(str(p) for p in photos.rglob("*.png"))
    assert list(tmp_path.glob(".*")) == []  # the rewrite left no temporary file


def test_retry_errors_removes_a_failed_videos_records_too(
    ckpt, clips, tmp_path, monkeypatch, capsys
) -> None:
    out = tmp_path / "out.jsonl"
    args = ["predict", ckpt, str(clips), "--batch-size", "4", "-o", str(out)]
    assert cnnkit_in_process(monkeypatch, capsys, *args)[0] == 0
    reference = _jsonl(out)
    # As if m.mp4 failed after 12 frames: its frames, then an error record.
    lines = _lines(out)
    m = str(clips / "m.mp4")
    first = next(i for i, r in enumerate(reference) if r["path"] == m)
    last = next(i for i, r in enumerate(reference) if r.get("window") == "video" and r["path"] == m)
    error = json.dumps({"path": m, "error": "the video is cut short"})
    out.write_text("\n".join([*lines[: first + 12], error, *lines[last + 1 :]]) + "\n")
    code, _, err = cnnkit_in_process(monkeypatch, capsys, *args, "--resume", "--retry-errors")
    assert code == 0, err
    records = _jsonl(out)
    keys = Counter((r["path"], r.get("frame"), r.get("window")) for r in records)
    assert set(keys.values()) == {1} and not [r for r in records if "error" in r]
    assert sorted(map(json.dumps, records)) == sorted(map(json.dumps, reference))


# ---------------------------------------------------------------------------
# options, and files that are not what they should be
# ---------------------------------------------------------------------------


def _one_error(code: int, out: str, err: str) -> str:
    """The one ``error:`` line of a run that failed (run with -q: no notes)."""
    assert (code, out) == (1, ""), err
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "(hint: " in err, err
    return err


def test_o_writes_the_records_stdout_would_get(ckpt, photos, tmp_path, monkeypatch, capsys) -> None:
    code, printed, _ = cnnkit_in_process(
        monkeypatch, capsys, "predict", ckpt, str(photos), "--json"
    )
    for name, fmt in (
        ("a.jsonl", "jsonl"),
        ("b.ndjson", "jsonl"),
        ("c.csv", "csv"),
        ("d.txt", "jsonl"),
    ):
        extra = ["--format", fmt] if name.endswith(".txt") else []
        out = tmp_path / name
        code, stdout, err = cnnkit_in_process(
            monkeypatch, capsys, "predict", ckpt, str(photos), "-o", str(out), *extra
        )
        assert (code, stdout) == (0, ""), err
        if fmt == "jsonl":
            assert _close(_jsonl(out), [json.loads(line) for line in printed.splitlines()])
        else:
            assert len(_csv(out)) == 60 and _lines(out)[0].startswith('"path","label"')


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["-o", "x.txt"], "cannot tell the format of -o x.txt"),
        (["-o", "x.jsonl", "--format", "table"], "--format table is for a terminal"),
        (["--resume"], "--resume goes on with the file of -o"),
        (["-o", "x.jsonl", "--retry-errors"], "--retry-errors"),
        (["-o", "nowhere/x.jsonl"], "folder nowhere does not exist"),
    ],
)
def test_bad_output_options_are_one_error_line(ckpt, photos, monkeypatch, capsys, args, words):
    monkeypatch.chdir(photos.parent)
    err = _one_error(
        *cnnkit_in_process(monkeypatch, capsys, "predict", ckpt, "photos", *args, "-q")
    )
    assert words in err
    assert not (photos.parent / "x.jsonl").exists()


def test_an_existing_file_is_never_overwritten(ckpt, photos, tmp_path, monkeypatch, capsys) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text("precious\n")
    err = _one_error(
        *cnnkit_in_process(monkeypatch, capsys, "predict", ckpt, str(photos), "-o", str(out), "-q")
    )
    assert f"error: {out} exists (hint: add --resume" in err
    assert out.read_text() == "precious\n"


RECORD = '{"path": "a.png", "label": "cat", "score": 1.0, "topk": []}'
HEADER = '"path","label","score","topk","error"'


@pytest.mark.parametrize(
    ("name", "content", "fmt", "words"),
    [
        ("out.jsonl", f"{RECORD}\nhello\n", "jsonl", "line 2 of "),
        ("out.jsonl", f"{HEADER}\n", "jsonl", "holds CSV, not JSON Lines"),
        ("out.csv", '{"path": "a.png", "error": "x"}\n', "csv", "holds JSON Lines, not CSV"),
        ("out.csv", '"path","label"\n', "csv", "the CSV header of "),
        ("out.csv", f'{HEADER}\n"a.png","cat"\n', "csv", "line 2 of "),
        ("out.jsonl", "[" * 100_000 + "\n", "jsonl", "line 1 of "),
        ("out.jsonl", "x" * 3_000_000, "jsonl", "longer than"),
    ],
)  # fmt: skip
def test_a_file_that_is_not_predicts_is_refused_and_left_alone(
    ckpt, photos, tmp_path, monkeypatch, capsys, name, content, fmt, words
) -> None:
    out = tmp_path / name
    out.write_text(content)
    err = _one_error(
        *cnnkit_in_process(
            monkeypatch, capsys, "predict", ckpt, str(photos), "-o", str(out), "--resume",
            "--format", fmt, "-q",
        )
    )  # fmt: skip
    assert words in err
    assert out.read_text() == content


def test_records_of_other_inputs_stay_and_are_said(ckpt, photos, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out.jsonl"
    other = '{"path": "elsewhere.png", "label": "cat", "score": 1.0, "topk": []}\n'
    out.write_text(other)
    code, _, err = cnnkit_in_process(
        monkeypatch, capsys, "predict", ckpt, str(photos / "a"), "-o", str(out), "--resume"
    )
    assert code == 0 and "holds 1 records of inputs that are not this run's" in err
    assert out.read_text().startswith(other) and len(_lines(out)) == 31


def test_a_file_another_run_writes_is_refused(ckpt, photos, tmp_path, monkeypatch, capsys) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text("")
    with open(out, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        err = _one_error(
            *cnnkit_in_process(
                monkeypatch, capsys, "predict", ckpt, str(photos), "-o", str(out), "--resume", "-q"
            )
        )
    assert "is being written by another process" in err
    assert out.read_text() == ""


# ---------------------------------------------------------------------------
# faults: a disk that fills up, a read-only folder, a closed stdout
# ---------------------------------------------------------------------------


def test_a_file_size_limit_ends_on_a_whole_line_and_resumes(ckpt, photos, tmp_path) -> None:
    reference = _reference(ckpt, photos, "jsonl", tmp_path, "--batch-size", "4")

    def limit() -> None:
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write fails (EFBIG), no kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (3000, 3000))

    out = tmp_path / "out.jsonl"
    args = [sys.executable, "-m", "cnnkit", "predict", ckpt, str(photos), "--batch-size", "4"]
    proc = subprocess.run(
        [*args, "-o", str(out), "-q"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        preexec_fn=limit,
    )
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith(f"error: cannot write {out}: {os.strerror(errno.EFBIG)} (hint:")
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    assert 0 < out.stat().st_size <= 3000 and _jsonl(out)  # whole lines, nothing torn
    result = run_cnnkit(*args[3:], "-o", str(out), "--resume", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert _close(_jsonl(out), _jsonl(reference))


def test_a_full_disk_is_one_error_line_and_whole_lines(
    ckpt, photos, tmp_path, monkeypatch, capsys
) -> None:
    from cnnkit.predict import records_file

    real = os.write
    calls = []

    def filling(fd: int, data: bytes) -> int:
        calls.append(fd)
        if len(calls) == 3:
            real(fd, bytes(data)[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data)

    monkeypatch.setattr(records_file.os, "write", filling)
    out = tmp_path / "out.jsonl"
    err = _one_error(
        *cnnkit_in_process(
            monkeypatch,
            capsys,
            "predict",
            ckpt,
            str(photos),
            "--batch-size",
            "4",
            "-o",
            str(out),
            "-q",
        )
    )
    assert err.startswith(f"error: cannot write {out}: {os.strerror(errno.ENOSPC)} (hint: free")
    assert len(_jsonl(out)) == 8  # two batches of four, and nothing of the third


def test_a_read_only_folder_is_one_error_line(ckpt, photos, tmp_path, monkeypatch, capsys) -> None:
    from cnnkit.predict import records_file

    real = os.open
    readonly = tmp_path / "ro"
    readonly.mkdir()

    def refusing(path, flags, *args, **kwargs):
        if Path(path).parent == readonly and flags & (os.O_WRONLY | os.O_RDWR):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real(path, flags, *args, **kwargs)

    monkeypatch.setattr(records_file.os, "open", refusing)
    out = readonly / "out.jsonl"
    for extra in ([], ["--resume"]):
        err = _one_error(
            *cnnkit_in_process(
                monkeypatch, capsys, "predict", ckpt, str(photos), "-o", str(out), *extra, "-q"
            )
        )
        assert err.startswith(f"error: cannot write {out}: {os.strerror(errno.EROFS)} (hint:")
    assert list(readonly.iterdir()) == []


def test_a_closed_stdout_does_not_matter_with_o(ckpt, photos, tmp_path) -> None:
    out = tmp_path / "out.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "cnnkit", "predict", ckpt, str(photos), "-o", str(out), "-q"],
        cwd=tmp_path, capture_output=False, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: os.close(1),
    )  # fmt: skip
    assert (proc.returncode, proc.stderr) == (0, "")
    assert len(_jsonl(out)) == 60


def test_interrupted_runs_leave_whole_lines(ckpt, photos, tmp_path) -> None:
    out = tmp_path / "out.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cnnkit", "predict", ckpt, str(photos), "--batch-size", "1",
         "-o", str(out)],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not (out.exists() and out.stat().st_size) and time.monotonic() < deadline:
        time.sleep(0.001)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode in (0, 143), err
    assert _jsonl(out)  # whole lines, each a record


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_odd_names_resume_by_the_name_as_recorded(ckpt, tmp_path, monkeypatch, capsys, fmt) -> None:
    # A formula-like name (written '=x.png in CSV), a newline inside a quoted cell,
    # a quote, and a Latin-1 byte that is not UTF-8 (written back as that byte).
    folder = tmp_path / "odd"
    folder.mkdir()
    names = [b"=x.png", b"new\nline.png", b'say "hi".png', b"caf\xe9.png", b"plain.png"]
    for i, name in enumerate(names):
        make_image(os.fsdecode(os.fsencode(folder) + b"/" + name), channels=1, seed=i)
    out = tmp_path / f"out.{fmt}"
    monkeypatch.chdir(folder)  # relative names: "=x.png" starts the cell
    inputs = [os.fsdecode(name) for name in names]
    args = ["predict", ckpt, *inputs, "--batch-size", "2", "-o", str(out)]
    assert cnnkit_in_process(monkeypatch, capsys, *args)[0] == 0
    whole = out.read_bytes()
    reference = tmp_path / f"reference.{fmt}"
    reference.write_bytes(whole)
    assert len(_parsed(reference, fmt)) == 5 + (fmt == "csv")
    assert (b"'=x.png" in whole) == (fmt == "csv")  # neutralised in CSV only
    assert (b"caf\xe9.png" if fmt == "csv" else b"caf\\udce9.png") in whole  # the byte, escaped
    newlines = [i + 1 for i, byte in enumerate(whole) if byte == ord("\n")]
    for cut in newlines[:-1]:  # after each record (and inside the cell holding a newline)
        out.write_bytes(whole[:cut])
        code, _, err = cnnkit_in_process(monkeypatch, capsys, *args, "--resume")
        assert code == 0, err
        assert "not this run's" not in err and "holds 5 of 5" not in err
        assert _close(_parsed(out, fmt), _parsed(reference, fmt)), cut


def _parsed(path: Path, fmt: str) -> list:
    if fmt == "jsonl":
        return _jsonl(path)
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as file:
        return list(csv.reader(file))
