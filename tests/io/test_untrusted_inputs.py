"""Images, path lists and folders are untrusted: bounded reads, regular files only, bytes paths.

Crafted inputs are made here, small: PNG headers that declare huge sizes,
FIFOs (os.mkfifo), symlinks to devices, file names that are not UTF-8, and
endless streams served by a counting reader (nothing is held in memory). A
test that could hang on a FIFO runs in a thread with a deadline, and on
expiry opens the FIFO for writing so that the blocked reader wakes up.
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import threading
import tracemalloc
import zlib
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from tests.helpers import cnnkit_in_process, make_checkpoint, make_image, make_video

# A name that is not UTF-8 (Latin-1 "café.png"), as a str that os.fsencode turns back into it.
LATIN1_NAME = os.fsdecode(b"caf\xe9.png")


@pytest.fixture
def ckpt(tmp_path: Path) -> str:
    return str(make_checkpoint(tmp_path / "m.ckpt", "lenet5", ["a", "b", "c"], 1, (16, 16)))


class _Endless(io.RawIOBase):
    """``prefix``, then ``filler`` up to ``total`` bytes, made on demand; ``served`` counts them."""

    def __init__(self, prefix: bytes, total: int, filler: bytes = b"\x00") -> None:
        self.prefix, self.total, self.filler, self.served = prefix, total, filler, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self.total - self.served)
        if n <= 0:
            return 0
        start = self.served
        head = self.prefix[start : start + n]
        buffer[: len(head)] = head
        buffer[len(head) : n] = self.filler * (n - len(head))
        self.served += n
        return n


def _stdin(monkeypatch: pytest.MonkeyPatch, stream: Any) -> None:
    raw = stream if isinstance(stream, io.RawIOBase) else io.BytesIO(stream)
    buffered = io.BufferedReader(raw) if isinstance(raw, io.RawIOBase) else raw
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(buffered))


def _records(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines()]


def _png(width: int, height: int, rows: int = 1) -> bytes:
    """An RGB PNG whose header says width×height, holding only ``rows`` rows of zeros."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = zlib.compress((b"\x00" + b"\x00" * 3 * width) * rows, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def _finishes(work: Any, fifos: list[Path], seconds: float = 15.0) -> Any:
    """``work()``'s result; fails if it is still blocked (on a FIFO) after ``seconds``."""
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = work()
        except BaseException as exc:  # handed to the test below
            result["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    hung = thread.is_alive()
    for _ in range(20):  # wake every reader still waiting, so the thread ends
        if not thread.is_alive():
            break
        for fifo in fifos:
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
        thread.join(0.5)
    assert not hung, f"still blocked after {seconds} s (opened a FIFO?)"
    if "error" in result:
        raise result["error"]
    return result.get("value")


# ---------------------------------------------------------------------------
# path lists on stdin are bytes
# ---------------------------------------------------------------------------


def test_a_path_list_is_bytes_and_every_line_is_predicted_in_order(
    tmp_path, monkeypatch, capsys, ckpt
) -> None:
    make_image(tmp_path / "ok.png", 16, 16, channels=1)
    make_image(tmp_path / LATIN1_NAME, 16, 16, channels=1, seed=1)
    monkeypatch.chdir(tmp_path)
    piped = b"ok.png\ncaf\xe9.png\na\x00b.png\n" + b"x" * 5000 + b"\nok.png\n"
    _stdin(monkeypatch, piped)
    status, out, err = cnnkit_in_process(monkeypatch, capsys, "predict", ckpt, "-", "-q")
    records = _records(out)
    assert [r["path"] for r in records] == [
        "ok.png",
        LATIN1_NAME,  # the fsdecoded name: os.fsencode gives the file's bytes back
        "stdin line 3",
        "stdin line 4",
        "ok.png",
    ]
    assert "label" in records[0] and "label" in records[1] and "label" in records[4]
    assert "NUL" in records[2]["error"] and "4096" in records[3]["error"]
    assert status == 1 and err.count("error:") == 3, err


def test_a_long_line_is_skipped_without_being_held(monkeypatch) -> None:
    from cnnkit.io.sources import iter_sources

    long_line = _Endless(b"a.png\n", 64 << 20, filler=b"x")  # line 2: 64 MB, no newline
    _stdin(monkeypatch, long_line)
    tracemalloc.start()
    try:
        sources = list(iter_sources(["-"]))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [s.path for s in sources] == ["a.png", "stdin line 2"]
    assert peak < 4 << 20, f"{peak:,} bytes held for one line"


def test_a_path_list_that_starts_like_a_gif_stays_a_path_list(
    tmp_path, monkeypatch, capsys, ckpt
) -> None:
    from cnnkit.io.sources import looks_like_image

    for name in ("GIF89a_logo.png", "plain.png"):
        make_image(tmp_path / name, 16, 16, channels=1)
    monkeypatch.chdir(tmp_path)
    _stdin(monkeypatch, b"GIF89a_logo.png\nplain.png\n")
    status, out, err = cnnkit_in_process(monkeypatch, capsys, "predict", ckpt, "-", "-q")
    assert status == 0, err
    assert [r["path"] for r in _records(out)] == ["GIF89a_logo.png", "plain.png"]
    assert err == ""  # nor any OpenCV line
    # Real encoded images on stdin are still taken for images.
    for ext in (".png", ".jpg", ".gif", ".bmp", ".tif", ".webp"):
        image = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
        assert looks_like_image(cv2.imencode(ext, image)[1].tobytes()), ext


# ---------------------------------------------------------------------------
# bounded reads
# ---------------------------------------------------------------------------


def test_a_path_list_of_zeros_is_refused_after_one_line(monkeypatch, capsys, ckpt) -> None:
    zeros = _Endless(b"", 64 << 20)  # what `< /dev/zero` gives, cut at 64 MB
    _stdin(monkeypatch, zeros)
    status, out, err = cnnkit_in_process(monkeypatch, capsys, "predict", ckpt, "-", "-q")
    assert status == 1 and out == ""
    assert err.startswith("error: stdin is neither an image nor a list of paths"), err
    assert zeros.served <= 64 << 10, f"read {zeros.served:,} bytes"


def test_an_endless_image_on_stdin_stops_at_the_byte_limit(monkeypatch, capsys, ckpt) -> None:
    monkeypatch.setenv("CNNKIT_MAX_IMAGE_PIXELS", "10000")  # 80,000 bytes at most
    endless = _Endless(_png(10, 10), 64 << 20)
    _stdin(monkeypatch, endless)
    status, out, _ = cnnkit_in_process(monkeypatch, capsys, "predict", ckpt, "-", "-q")
    (record,) = _records(out)
    assert status == 1 and record["path"] == "-"
    assert "80,000 bytes" in record["error"] and "CNNKIT_MAX_IMAGE_PIXELS" in record["error"]
    assert endless.served <= 2 << 20, f"read {endless.served:,} bytes"


def test_convolve_reads_stdin_no_further_than_the_byte_limit(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("CNNKIT_MAX_IMAGE_PIXELS", "10000")
    monkeypatch.chdir(tmp_path)
    # A PNG that goes on: data that starts no image is refused at its first bytes.
    endless = _Endless(_png(10, 10), 64 << 20)
    _stdin(monkeypatch, endless)
    status, _, err = cnnkit_in_process(
        monkeypatch, capsys, "convolve", "-", "-k", "sobel", "-o", "o.png"
    )
    assert status == 1 and err.count("\n") == 1
    assert err.startswith("error: stdin holds more than 80,000 bytes"), err
    assert endless.served <= 2 << 20 and not (tmp_path / "o.png").exists()


# ---------------------------------------------------------------------------
# only regular files
# ---------------------------------------------------------------------------


@pytest.fixture
def hostile_folder(tmp_path: Path) -> tuple[Path, list[Path]]:
    """root/<class>/ with good images, a FIFO and a symlink to a device, named like images."""
    root = tmp_path / "ds"
    for label in ("0", "1"):
        (root / label).mkdir(parents=True)
        for i in range(2):
            make_image(root / label / f"img_{i}.png", 16, 16, channels=1, seed=i)
    fifo = root / "1" / "p.png"
    os.mkfifo(fifo)
    # /dev/null rather than /dev/zero: the same "not a regular file" case, and
    # today's code cannot be made to read it without end while the test runs.
    (root / "0" / "z.png").symlink_to(os.devnull)
    return root, [fifo]


def test_predict_on_a_folder_with_a_fifo_and_a_device_link(
    hostile_folder, monkeypatch, capsys, ckpt
) -> None:
    root, fifos = hostile_folder
    status, out, _ = _finishes(
        lambda: cnnkit_in_process(monkeypatch, capsys, "predict", ckpt, str(root), "-q"), fifos
    )
    by_path = {Path(r["path"]).relative_to(root).as_posix(): r for r in _records(out)}
    assert status == 1 and len(by_path) == 6
    assert "FIFO" in by_path["1/p.png"]["error"] and "device" in by_path["0/z.png"]["error"]
    assert all("label" in by_path[f"{c}/img_{i}.png"] for c in "01" for i in range(2))


def test_inspect_and_train_list_a_fifo_as_unreadable(hostile_folder) -> None:
    from cnnkit.data.describe import describe_dataset
    from cnnkit.data.registry import DatasetRequest, load_dataset

    root, fifos = hostile_folder
    report = _finishes(lambda: describe_dataset(root), fifos)
    assert sorted(Path(p).name for p in report["unreadable"]) == ["p.png", "z.png"]
    request = DatasetRequest(name=str(root), numpy=True, whole=True)  # train's folder loader
    data = _finishes(lambda: load_dataset(request), fifos)
    skipped = [w for w in data.warnings if w.startswith("skipping unreadable file")]
    assert len(skipped) == 2 and any("FIFO" in w for w in skipped), data.warnings


def test_a_fifo_named_directly_and_a_fifo_video_are_refused(tmp_path) -> None:
    from cnnkit.errors import ReadError
    from cnnkit.io.image import read_image
    from cnnkit.io.video import probe_video

    fifos = [tmp_path / "f.png", tmp_path / "f.mp4"]
    for fifo in fifos:
        os.mkfifo(fifo)

    def read_both() -> list[str]:
        messages = []
        for reader, fifo in ((read_image, fifos[0]), (probe_video, fifos[1])):
            with pytest.raises(ReadError) as info:
                reader(fifo)
            messages.append(str(info.value))
        return messages

    image_error, video_error = _finishes(read_both, fifos)
    assert "FIFO" in image_error and "not a regular file" in video_error
    from cnnkit.errors import InputError
    from cnnkit.summary.targets import detect_target

    with pytest.raises(InputError, match="not a regular file or folder"):
        detect_target(str(fifos[0]))  # `cnnkit inspect f.png`: not "no such file"


_READ_DEV_ZERO = """
import sys
from cnnkit.errors import ReadError
from cnnkit.io.image import read_image
try:
    read_image(sys.argv[1])
except ReadError as exc:
    print(exc)
"""


def test_a_symlink_to_dev_zero_is_refused_without_reading_it(tmp_path) -> None:
    link = tmp_path / "z.png"
    link.symlink_to("/dev/zero")
    # A 1.5 GB address-space cap: were /dev/zero read, this child would end with
    # a MemoryError instead of the machine running out.
    cap = "import resource; resource.setrlimit(resource.RLIMIT_AS, (3 << 29, 3 << 29))\n"
    done = subprocess.run(
        [sys.executable, "-c", cap + _READ_DEV_ZERO, str(link)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{link} is a device"), done.stdout


# ---------------------------------------------------------------------------
# the decode pixel limit
# ---------------------------------------------------------------------------


def _encoded(ext: str, width: int, height: int, params: tuple[int, ...] = ()) -> bytes:
    channels = 4 if ext == ".webp-alpha" else 3
    image = np.random.default_rng(1).integers(0, 256, (height, width, channels), dtype=np.uint8)
    ok, data = cv2.imencode(ext.replace("-alpha", ""), image, list(params))
    assert ok
    return data.tobytes()


FORMATS = {
    "png": (".png", ()),
    "jpeg": (".jpg", ()),
    "jpeg-progressive": (".jpg", (cv2.IMWRITE_JPEG_PROGRESSIVE, 1)),
    "gif": (".gif", ()),
    "bmp": (".bmp", ()),
    "tiff": (".tif", ()),
    "webp-lossy": (".webp", (cv2.IMWRITE_WEBP_QUALITY, 80)),
    "webp-lossless": (".webp", (cv2.IMWRITE_WEBP_QUALITY, 101)),
    "webp-extended": (".webp-alpha", (cv2.IMWRITE_WEBP_QUALITY, 80)),
}


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_image_size_is_read_from_the_header(fmt) -> None:
    from cnnkit.io.headers import image_size

    ext, params = FORMATS[fmt]
    assert image_size(_encoded(ext, 24, 14, params)) == (24, 14)


def test_image_size_of_handmade_headers() -> None:
    from cnnkit.io.headers import image_size

    assert image_size(_png(30000, 30000, rows=0)) == (30000, 30000)
    # Big-endian TIFF, one IFD: ImageWidth as SHORT, ImageLength as LONG.
    ifd = struct.pack(">H", 2) + struct.pack(">HHIHH", 256, 3, 1, 5000, 0)
    ifd += struct.pack(">HHII", 257, 4, 1, 70000) + struct.pack(">I", 0)
    assert image_size(b"MM\x00*" + struct.pack(">I", 8) + ifd) == (5000, 70000)
    # BigTIFF, little-endian: 64-bit offsets, LONG8 fields.
    ifd = struct.pack("<Q", 2) + struct.pack("<HHQQ", 256, 16, 1, 40000)
    ifd += struct.pack("<HHQQ", 257, 16, 1, 30000) + struct.pack("<Q", 0)
    assert image_size(b"II+\x00" + struct.pack("<HHQ", 8, 0, 16) + ifd) == (40000, 30000)
    # A top-down BMP states a negative height.
    bmp = b"BM" + bytes(12) + struct.pack("<Iii", 40, 640, -480) + bytes(28)
    assert image_size(bmp) == (640, 480)
    for damaged in (b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0\x00", b"BM" + bytes(30), b"II*"):
        assert image_size(damaged) is None


def test_a_png_declaring_100000x100000_is_refused_for_its_size(
    tmp_path, monkeypatch, capsys, ckpt
) -> None:
    (tmp_path / "bomb.png").write_bytes(_png(100_000, 100_000))
    status, out, err = cnnkit_in_process(
        monkeypatch, capsys, "predict", ckpt, str(tmp_path / "bomb.png"), "-q"
    )
    (record,) = _records(out)
    assert status == 1
    assert "100000×100000" in record["error"] and "180,000,000 pixels" in record["error"]
    assert "CNNKIT_MAX_IMAGE_PIXELS" in record["error"]
    status, _, err = cnnkit_in_process(monkeypatch, capsys, "inspect", str(tmp_path / "bomb.png"))
    assert status == 1 and "over the decode limit" in err and err.count("\n") == 1


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_every_format_is_held_to_the_pixel_limit(tmp_path, monkeypatch, fmt) -> None:
    from cnnkit.errors import ReadError
    from cnnkit.io.image import read_image

    ext, params = FORMATS[fmt]
    path = tmp_path / f"x{ext.replace('-alpha', '')}"
    path.write_bytes(_encoded(ext, 24, 14, params))
    monkeypatch.setenv("CNNKIT_MAX_IMAGE_PIXELS", "300")
    with pytest.raises(ReadError, match="24×14 .336 pixels., over the decode limit of 300"):
        read_image(path)
    monkeypatch.setenv("CNNKIT_MAX_IMAGE_PIXELS", "336")
    assert read_image(path).shape[:2] == (14, 24)


def test_video_frames_are_held_to_the_pixel_limit(tmp_path, monkeypatch) -> None:
    from cnnkit.errors import ReadError
    from cnnkit.io.video import probe_video

    make_video(tmp_path / "v.mp4", frames=2, h=16, w=16)
    monkeypatch.setenv("CNNKIT_MAX_IMAGE_PIXELS", "255")
    with pytest.raises(ReadError, match="16×16 .256 pixels., over the decode limit of 255"):
        probe_video(tmp_path / "v.mp4")


@pytest.mark.parametrize(
    "data",
    [
        # PNM: OpenCV decodes it whatever the file is named; cnnkit reads no header of it.
        b"P6\n20 20\n255\n" + bytes(20 * 20 * 3),
        # Radiance HDR, run-length encoded: 27 bytes a pixel once decoded as float32.
        b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 4000 +X 4000\n" + bytes(64),
    ],
    ids=["ppm", "hdr"],
)
def test_contents_in_formats_cnnkit_does_not_read_are_refused(tmp_path, data) -> None:
    from cnnkit.errors import ReadError
    from cnnkit.io.image import read_image

    path = tmp_path / "x.png"  # the name says PNG; the bytes decide
    path.write_bytes(data)
    with pytest.raises(ReadError, match="not PNG, JPEG, GIF, BMP, TIFF or WebP"):
        read_image(path)


def test_a_tiff_tile_counts_at_its_own_size(tmp_path, monkeypatch) -> None:
    """A 16×16 TIFF of one 16000×16000 tile: libtiff would allocate the whole tile."""
    import struct

    from cnnkit.errors import ReadError
    from cnnkit.io.headers import image_size
    from cnnkit.io.image import read_image

    tags = [(256, 3, 1, 16), (257, 3, 1, 16), (258, 3, 1, 8), (259, 3, 1, 8), (262, 3, 1, 2),
            (277, 3, 1, 3), (322, 4, 1, 16000), (323, 4, 1, 16000)]  # fmt: skip
    ifd = struct.pack("<H", len(tags))
    for tag, kind, count, value in tags:
        ifd += struct.pack("<HHI", tag, kind, count) + struct.pack("<I", value)
    data = b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0)
    assert image_size(data) == (16000, 16000)
    path = tmp_path / "tiles.tif"
    path.write_bytes(data)
    with pytest.raises(ReadError, match="16000×16000"):
        read_image(path)


def test_a_bad_pixel_limit_is_one_clear_error(tmp_path, monkeypatch) -> None:
    from cnnkit.errors import InputError
    from cnnkit.io.image import read_image

    make_image(tmp_path / "x.png", 8, 8)
    monkeypatch.setenv("CNNKIT_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(InputError, match="CNNKIT_MAX_IMAGE_PIXELS='lots' is not a positive"):
        read_image(tmp_path / "x.png")


# ---------------------------------------------------------------------------
# smaller things: OpenCV's own lines, PATH_MAX, empty and closed stdin
# ---------------------------------------------------------------------------

_READ_DAMAGED = """
import sys
from cnnkit.errors import ReadError
from cnnkit.io.image import read_image
for path in sys.argv[1:]:
    try:
        read_image(path)
    except ReadError as exc:
        print(exc.message)
"""


def test_damaged_files_print_no_opencv_or_libpng_lines(tmp_path) -> None:
    paths = []
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    for ext in (".gif", ".png", ".tif"):
        data = cv2.imencode(ext, image)[1].tobytes()
        for cut in (0.5, 0.9):
            paths.append(tmp_path / f"cut{int(cut * 10)}{ext}")
            paths[-1].write_bytes(data[: int(len(data) * cut)])
    done = subprocess.run(
        [sys.executable, "-c", _READ_DAMAGED, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0
    assert done.stdout.count("is not a readable image") == len(paths), done.stdout
    assert done.stderr == ""


def test_a_path_over_path_max_says_so(tmp_path, monkeypatch) -> None:
    from cnnkit.data.folders import scan_folder
    from cnnkit.errors import DatasetError
    from cnnkit.io.sources import expand_sources

    # ds/<class>/ddd.../ddd.../x.png, the image's path over 4096 bytes; made a
    # step at a time, since no single call may name a path that long.
    monkeypatch.chdir(tmp_path)
    os.makedirs("ds/a")
    os.chdir("ds/a")
    for _ in range(21):
        os.mkdir("d" * 200)
        os.chdir("d" * 200)
    make_image("x.png", 8, 8)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetError, match="File name too long"):
        scan_folder("ds")
    deep = "ds/a/" + "/".join(["d" * 200] * 21) + "/x.png"
    (source,) = expand_sources([deep])
    assert "File name too long" in source.error and "4096" in source.error


def test_predict_with_an_empty_stdin_notes_it_and_a_closed_one_is_an_error(
    monkeypatch, capsys, ckpt
) -> None:
    _stdin(monkeypatch, b"")
    status, out, err = cnnkit_in_process(monkeypatch, capsys, "predict", ckpt, "-")
    assert (status, out) == (0, "")
    assert "note: no inputs" in err
    monkeypatch.setattr(sys, "stdin", None)
    status, out, err = cnnkit_in_process(monkeypatch, capsys, "predict", ckpt, "-")
    assert (status, out) == (1, "")
    assert err.startswith("error: INPUT is '-' but stdin is closed") and err.count("\n") == 1


def test_convolve_with_a_closed_stdin_is_one_error_line(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "stdin", None)
    status, _, err = cnnkit_in_process(
        monkeypatch, capsys, "convolve", "-", "-k", "sobel", "-o", "x.png"
    )
    assert status == 1
    assert err.startswith("error: INPUT is '-' but stdin is closed") and err.count("\n") == 1
