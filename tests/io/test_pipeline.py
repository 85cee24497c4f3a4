"""The threaded video pipeline (cnnkit.io.pipeline) and what convolve computes with it.

The pipeline decodes, computes and encodes on threads of their own; its
results must be those of the sequential code it replaced, bit for bit: the
reference here decodes with a plain cv2.VideoCapture loop, filters frame by
frame with ops.convolve on the plain cv2.filter2D path (``exact_factors``
forced to None), and writes sequentially.
"""

from __future__ import annotations

import threading
import time
import tracemalloc
from pathlib import Path

import cv2
import numpy as np
import pytest

from cnnkit import ops
from cnnkit.convolution import ConvolveOptions, convolve_file, outputs, videos
from cnnkit.convolve_scale import auto_scale, result_to_pixels
from cnnkit.errors import InputError
from cnnkit.io import video as video_io
from cnnkit.io.pipeline import (
    AHEAD_BYTES,
    WriteBehind,
    compute_in_order,
    frames_ahead,
)
from cnnkit.io.video import iter_frames
from cnnkit.io.video_writer import VideoWriter
from cnnkit.kernels import parse_kernel
from cnnkit.ops import conv2d
from tests.helpers import write_video

# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def _textured_frames(count: int, h: int, w: int, seed: int = 0) -> list[np.ndarray]:
    """BGR frames of random noise over moving gradients: every pixel differs from its neighbours."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    frames = []
    for t in range(count):
        ramp = np.stack(
            [(xx * 3 + t * 7) % 256, (yy * 4 + t * 11) % 256, (xx + yy + t * 5) % 256], axis=-1
        )
        noise = rng.integers(0, 256, size=(h, w, 3)).astype(np.float32)
        frames.append(np.clip(0.5 * ramp + 0.5 * noise, 0, 255).astype(np.uint8))
    return frames


def _decode(path: Path, rgb: bool = False) -> list[np.ndarray]:
    """Every frame of ``path`` by a plain cv2.VideoCapture loop (BGR, or RGB)."""
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    frames = []
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) if rgb else frame)
    finally:
        capture.release()
    return frames


def _new_threads(before: set[threading.Thread], *prefixes: str) -> list[threading.Thread]:
    return [
        t
        for t in threading.enumerate()
        if t not in before and t.is_alive() and t.name.startswith(prefixes)
    ]


def _wait_threads_gone(before: set[threading.Thread], *prefixes: str, timeout: float = 2.5):
    deadline = time.monotonic() + timeout
    alive = _new_threads(before, *prefixes)
    while alive and time.monotonic() < deadline:
        time.sleep(0.02)
        alive = _new_threads(before, *prefixes)
    return alive


@pytest.fixture(scope="module")
def small_video(tmp_path_factory) -> Path:
    """64×48, 12 colour frames of noise and gradients, mp4v."""
    path = tmp_path_factory.mktemp("pipeline") / "v.mp4"
    write_video(path, _textured_frames(12, 48, 64), bgr=True)
    assert len(_decode(path)) == 12
    return path


# ---------------------------------------------------------------------------
# compute_in_order
# ---------------------------------------------------------------------------


def test_compute_in_order_yields_input_order_when_later_items_finish_first():
    running, most = [0], [0]
    lock = threading.Lock()

    def slow_first(i: int) -> tuple[int, str]:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.01 * (12 - i % 6))  # within each run of items, later ones finish first
        with lock:
            running[0] -= 1
        return i * i, threading.current_thread().name

    results = list(compute_in_order(slow_first, range(24), workers=4, ahead=8))
    assert [r for r, _ in results] == [i * i for i in range(24)]
    assert most[0] > 1, "the items were not computed on several threads at once"
    assert all(name.startswith("decode") for _, name in results)


def test_compute_in_order_reraises_fn_errors_at_their_item():
    def fn(i: int) -> int:
        if i == 5:
            raise ValueError("bad item 5")
        time.sleep(0.002)
        return i

    got = []
    with pytest.raises(ValueError, match="bad item 5"):
        for value in compute_in_order(fn, range(20), workers=3):
            got.append(value)
    assert got == [0, 1, 2, 3, 4]


def test_compute_in_order_reraises_errors_of_the_items_iterator():
    class Broken(Exception):
        pass

    def items():
        yield from range(7)
        raise Broken("the source failed")

    got = []
    with pytest.raises(Broken, match="the source failed"):
        for value in compute_in_order(lambda i: i + 100, items(), workers=2):
            got.append(value)
    assert got == [100 + i for i in range(7)]


def test_closing_compute_in_order_early_stops_its_threads_and_reading():
    before = set(threading.enumerate())
    read = [0]

    def endless():
        i = 0
        while True:
            read[0] += 1
            yield i
            i += 1

    def fn(i: int) -> int:
        time.sleep(0.005)
        return i

    results = compute_in_order(fn, endless(), workers=3, ahead=6)
    assert [next(results) for _ in range(5)] == [0, 1, 2, 3, 4]
    assert _new_threads(before, "decode", "feed"), "no pool or feeder thread was running"
    results.close()
    alive = _wait_threads_gone(before, "decode", "feed")
    assert not alive, f"still running after close: {[t.name for t in alive]}"
    count = read[0]
    time.sleep(0.3)
    assert read[0] == count, "the items were still read after close"
    assert count < 40  # bounded read-ahead: not read far past the 5 consumed


# ---------------------------------------------------------------------------
# WriteBehind
# ---------------------------------------------------------------------------


def test_write_behind_writes_everything_in_order():
    written, threads = [], set()

    def write(item):
        threads.add(threading.current_thread().name)
        if item % 7 == 0:
            time.sleep(0.002)  # the producer runs ahead of the writer now and then
        written.append(item)

    with WriteBehind(write, depth=3) as sink:
        for i in range(50):
            sink.put(i)
    assert written == list(range(50))
    assert sink.written == 50
    assert threads == {"encode"}


def test_write_behind_error_is_reraised_by_a_later_put():
    def write(item):
        if item == 3:
            raise OSError(28, "No space left on device")

    with WriteBehind(write, depth=2) as sink:
        with pytest.raises(OSError, match="No space left"):
            for i in range(1000):
                sink.put(i)
                time.sleep(0.002)
        assert i < 1000 - 1, "put() never raised the writer's error"
    # raised once: leaving the block afterwards did not raise it again
    assert sink.written == 3


def test_write_behind_error_is_reraised_on_leaving_the_block():
    def write(item):
        if item == 2:
            raise OSError(5, "Input/output error")

    with pytest.raises(OSError, match="Input/output error"):
        with WriteBehind(write, depth=4) as sink:
            for i in range(3):  # the failing item is the last: no put() comes after it
                sink.put(i)
    assert sink.written == 2


def test_leaving_write_behind_by_an_exception_stops_after_the_write_in_progress():
    started = threading.Event()
    written = []

    def write(item):
        if item == 0:
            started.set()
            time.sleep(0.3)  # the producer raises while this write is in progress
        written.append(item)

    class Stop(Exception):
        pass

    with pytest.raises(Stop):
        with WriteBehind(write, depth=4) as sink:
            for i in range(5):  # 0 in progress, 1-4 queued
                sink.put(i)
            assert started.wait(5)
            raise Stop
    assert written == [0], "queued items were written after the block was left"
    assert sink.written == 1
    assert not sink._thread.is_alive()


def test_an_interrupt_while_waiting_for_the_last_writes_stops_the_writer_first():
    # Ctrl-C arriving while the block waits for the last writes: the encode thread
    # must be stopped and joined before the exception reaches the file's owner,
    # which releases the writer (releasing it mid-write crashed the process).
    writing = threading.Event()
    done = []

    def slow(item):
        writing.set()
        time.sleep(0.2)
        done.append(item)

    sink = WriteBehind(slow, depth=8)
    real_join = sink._thread.join
    calls = []

    def interrupted_join(timeout=None):
        calls.append(timeout)
        if len(calls) == 1:
            writing.wait(5)
            raise KeyboardInterrupt
        return real_join(timeout)

    sink._thread.join = interrupted_join
    with pytest.raises(KeyboardInterrupt):
        with sink:
            for i in range(5):
                sink.put(i)
    assert not sink._thread.is_alive()
    assert done == [0]  # the write in progress ended; the queued ones were dropped


def test_write_behind_put_after_its_error_was_raised_is_refused():
    def write(item):
        raise OSError(28, "No space left on device")

    with WriteBehind(write, depth=1) as sink:
        sink.put(0)
        sink._thread.join(5)  # the writer met the error and stopped
        with pytest.raises(OSError):
            sink.put(1)
        with pytest.raises(RuntimeError, match="after the writer stopped"):
            sink.put(2)  # the error is raised once; later puts are refused, never lost
    assert sink.written == 0


# ---------------------------------------------------------------------------
# the decode stage: a generator decoding the video, read and closed on a thread
# ---------------------------------------------------------------------------


class _RecordingCapture:
    """A cv2.VideoCapture that records the threads its release() ran on."""

    def __init__(self, capture, releases: list[str]):
        self._capture, self._releases = capture, releases

    def read(self):
        return self._capture.read()

    def release(self):
        self._releases.append(threading.current_thread().name)
        self._capture.release()

    def __getattr__(self, name):
        return getattr(self._capture, name)


@pytest.fixture
def releases(monkeypatch) -> list[str]:
    """The names of the threads that released each capture iter_frames opened."""
    names: list[str] = []
    opener = video_io._open_capture
    monkeypatch.setattr(
        video_io,
        "_open_capture",
        lambda path, threads=0: _RecordingCapture(opener(path, threads), names),
    )
    return names


def _gray_frames(path: Path):
    """What convolve's decode stage is: frames converted on the decoding thread."""
    frames = iter_frames(path, rgb=False)
    try:
        for frame in frames:
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), threading.current_thread().name
    finally:
        frames.close()


@pytest.mark.parametrize("chunk", [1, 3, 8])
@pytest.mark.parametrize("rgb", [False, True])
def test_decode_stage_matches_a_plain_capture_loop(small_video, releases, rgb, chunk):
    kwargs = {"chunk": chunk} if chunk > 1 else {}
    got = list(compute_in_order(lambda f: f, iter_frames(small_video, rgb=rgb), workers=2,
                                **kwargs))  # fmt: skip
    expected = _decode(small_video, rgb=rgb)
    assert len(got) == len(expected) == 12
    for a, b in zip(got, expected, strict=True):
        assert a.dtype == np.uint8 and np.array_equal(a, b)
    assert len(releases) == 1  # the capture is released once, at the end


def test_decode_stage_transforms_on_the_reading_thread(small_video, releases):
    got = list(compute_in_order(lambda item: item, _gray_frames(small_video), workers=2))
    expected = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in _decode(small_video)]
    assert len(got) == len(expected)
    assert all(np.array_equal(a, b) for (a, _), b in zip(got, expected, strict=True))
    assert {name for _, name in got} == {"feed"}
    assert releases == ["feed"]


@pytest.mark.parametrize("gray", [False, True])
def test_closing_the_decode_stage_early_releases_the_capture_on_its_thread(
    small_video, releases, gray
):
    before = set(threading.enumerate())
    source = _gray_frames(small_video) if gray else iter_frames(small_video, rgb=False)
    results = compute_in_order(lambda f: f, source, workers=2, ahead=2)
    next(results)
    assert _new_threads(before, "feed")
    results.close()
    alive = _wait_threads_gone(before, "feed", "decode")
    assert not alive, f"still running after close: {[t.name for t in alive]}"
    assert releases == ["feed"], f"capture released on {releases}, not once by the reader"


def test_an_error_in_the_compute_stage_releases_the_capture(small_video, releases):
    before = set(threading.enumerate())

    def fn(frame):
        fn.calls += 1
        if fn.calls == 4:
            raise ArithmeticError("frame 3")
        return frame

    fn.calls = 0
    with pytest.raises(ArithmeticError, match="frame 3"):
        for _ in compute_in_order(fn, iter_frames(small_video), workers=1):
            pass
    assert not _wait_threads_gone(before, "feed", "decode")
    assert releases == ["feed"]


def test_decode_stage_of_a_missing_file_fails_before_any_thread(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        iter_frames(tmp_path / "missing.mp4")


def test_frames_ahead_bounds():
    assert frames_ahead(1) == 64
    assert frames_ahead(0) == 64
    assert frames_ahead(AHEAD_BYTES) == 2
    assert frames_ahead(10 * AHEAD_BYTES) == 2
    assert frames_ahead(AHEAD_BYTES // 10) == 10
    assert frames_ahead(100, budget=1000) == 10
    assert frames_ahead(1280 * 720 * 3) == 9  # the 720p case the module's comment sizes for


# ---------------------------------------------------------------------------
# bit-identity with the sequential path
# ---------------------------------------------------------------------------


def _reference(
    video: Path,
    out_kind: str,
    kernel,
    stride,
    padding,
    mode,
    dilation,
    gray: bool,
    monkeypatch,
) -> list[np.ndarray]:
    """What the sequential code computed: float32 result frames, in cnnkit's channel order."""
    rgb = out_kind == "npy"
    frames = _decode(video, rgb=rgb)
    if gray:
        code = cv2.COLOR_RGB2GRAY if rgb else cv2.COLOR_BGR2GRAY
        frames = [cv2.cvtColor(f, code) for f in frames]
    with monkeypatch.context() as m:
        # The plain cv2.filter2D path, as before the sepFilter2D shortcut existed.
        m.setattr(conv2d, "exact_factors", lambda w32, peak: None)
        if kernel.ndim == 2:
            return [
                np.array(ops.convolve(f, kernel, stride, padding, mode, dilation)) for f in frames
            ]
        stacked = ops.convolve(np.stack(frames), kernel, stride, padding, mode, dilation)
        return [np.array(r) for r in stacked]


def _pixels(kernel, results: list[np.ndarray]) -> list[np.ndarray]:
    scale = auto_scale(kernel)
    bounds = kernel.value_bounds(0.0, 255.0) if scale == "minmax" else None
    return [result_to_pixels(r.copy(), scale, 255.0, bounds) for r in results]


_CASES_2D = [
    # spec, stride, padding, padding mode, dilation, gray
    ("sobel", 1, "same", "reflect", 1, False),
    ("scharr", 1, "same", "reflect", 1, False),
    ("prewitt", 1, "same", "reflect", 1, False),
    ("laplacian", 1, "same", "reflect", 1, False),
    ("gaussian:5,1.2", 1, "same", "reflect", 1, False),
    ("sobel-x", 1, "same", "reflect", 1, False),
    ("1,2,1;2,4,2;1,2,1", 1, "same", "reflect", 1, False),
    ("1,3,3,1;3,9,9,3;3,9,9,3;1,3,3,1", 1, "same", "reflect", 1, False),
    ("sobel", 1, "valid", "reflect", 1, False),
    ("sobel-x", 1, 2, "reflect", 1, False),
    ("sobel", 2, "same", "reflect", 1, False),
    ("sobel", (1, 2), "same", "reflect", 1, False),
    ("sobel", 1, "same", "reflect", 2, False),
    ("sobel", 1, "same", "zeros", 1, False),
    ("sobel", 1, "same", "replicate", 1, False),
    ("sobel", 1, "same", "circular", 1, False),
    ("scharr", 1, 1, "zeros", 1, False),
    ("sobel", 1, "same", "reflect", 1, True),
    ("laplacian", 1, "same", "replicate", 1, True),
]

_CASES_3D = [
    ("temporal-diff", 1, "same", "reflect", 1, False),
    ("sobel3d-t", 1, "same", "reflect", 1, False),
    ("sobel3d-x", 1, "same", "replicate", 1, False),
    ("1,2,1;2,4,2;1,2,1|0,0,0;0,0,0;0,0,0|-1,-2,-1;-2,-4,-2;-1,-2,-1", 1, "same", "zeros", 1,
     False),
    ("1,1;1,1|-1,-1;-1,-1", 1, "same", "reflect", 1, False),
    ("sobel3d-t", (2, 1, 1), "same", "reflect", 1, False),
    ("sobel3d-t", (3, 2, 2), "valid", "reflect", 1, False),
    ("temporal-diff", 1, 1, "zeros", 1, False),
    ("sobel3d-t", 1, (2, 1, 1), "circular", 1, False),
    ("sobel3d-t", 1, "same", "circular", 1, False),
    ("sobel3d-t", 1, "same", "reflect", (2, 1, 1), False),
    ("gaussian3d", 1, "same", "reflect", 1, False),
    ("sobel3d-t", 1, "same", "replicate", 1, True),
]  # fmt: skip


def _case_id(case) -> str:
    spec, stride, padding, mode, dilation, gray = case
    spec = spec if len(spec) < 16 else spec[:13] + "..."
    return f"{spec}-s{stride}-p{padding}-{mode}-d{dilation}{'-gray' if gray else ''}"


@pytest.mark.parametrize("out_kind", ["npy", "mp4", "ffv1"])
@pytest.mark.parametrize("case", _CASES_2D + _CASES_3D, ids=_case_id)
def test_pipeline_is_bit_identical_to_the_sequential_path(
    small_video, tmp_path, monkeypatch, case, out_kind
):
    spec, stride, padding, mode, dilation, gray = case
    kernel = parse_kernel(spec)
    options = ConvolveOptions(
        kernel=kernel, stride=stride, padding=padding, padding_mode=mode, dilation=dilation,
        gray=gray,
    )  # fmt: skip
    ext, codec = {"npy": (".npy", None), "mp4": (".mp4", None), "ffv1": (".mkv", "ffv1")}[out_kind]
    out = tmp_path / f"out{ext}"
    report = convolve_file(str(small_video), options, output=str(out), codec=codec)
    expected = _reference(
        small_video, out_kind, kernel, stride, padding, mode, dilation, gray, monkeypatch
    )
    assert list(report.explanation.output_shape) == [len(expected), *expected[0].shape]

    if out_kind == "npy":
        got = np.load(out)
        want = np.stack(expected).astype(np.float32)
        assert got.dtype == np.float32 and got.shape == want.shape
        differ = np.count_nonzero(got != want)
        assert differ == 0, f"{differ} values differ, max |diff| {np.abs(got - want).max()}"
        return

    pixels = _pixels(kernel, expected)
    got_frames = _decode(out)
    assert len(got_frames) == len(pixels)
    if out_kind == "ffv1":  # lossless: the decoded frames are the pixels themselves
        for t, (a, p) in enumerate(zip(got_frames, pixels, strict=True)):
            b = p if p.ndim == 3 else np.repeat(p[:, :, None], 3, axis=2)
            h, w = b.shape[:2]
            assert np.array_equal(a[:h, :w], b), f"frame {t} differs"
        return

    # mp4v is lossy: the sequential writer's file, decoded, is the reference.
    ref = tmp_path / "ref.mp4"
    h, w = pixels[0].shape[:2]
    fps = cv2.VideoCapture(str(small_video), cv2.CAP_FFMPEG).get(cv2.CAP_PROP_FPS)
    with VideoWriter(ref, fps, w, h, is_color=pixels[0].ndim == 3, rgb=False) as writer:
        for p in pixels:
            writer.write(p)
    ref_frames = _decode(ref)
    assert len(ref_frames) == len(got_frames)
    for t, (a, b) in enumerate(zip(got_frames, ref_frames, strict=True)):
        assert np.array_equal(a, b), f"frame {t} differs from the sequential writer's"


@pytest.mark.parametrize("spec", ["sobel", "gaussian:5,1.2", "gaussian:9,2", "box:11", "log:9,1.4"])
def test_frames_in_many_bands_are_bit_identical_to_whole_frames(
    small_video, tmp_path, monkeypatch, spec
):
    # 8-row bands on the 48-row frames. Kernels of 50 taps or more go through
    # filter2D's DFT, whose rounding depends on the size filtered: those frames
    # must be filtered whole (a band at a time, 3.7M of 4.6M values differed).
    monkeypatch.setattr(conv2d, "_CACHE_BAND_VALUES", 8 * 64 * 3)
    kernel = parse_kernel(spec)
    out = tmp_path / "out.npy"
    convolve_file(str(small_video), ConvolveOptions(kernel=kernel), output=str(out))
    expected = _reference(small_video, "npy", kernel, 1, "same", "reflect", 1, False, monkeypatch)
    assert np.array_equal(np.load(out), np.stack(expected))


@pytest.mark.parametrize("where", ["decode", "compute", "write"])
@pytest.mark.parametrize("ext", [".mp4", ".npy"])
def test_an_error_mid_video_stops_every_stage_and_leaves_no_file(
    small_video, tmp_path, monkeypatch, where, ext
):
    calls = [0]

    def fifth(what: str):
        calls[0] += 1
        if calls[0] == 5:
            raise OSError(28, f"No space left on device ({what})")

    if where == "decode":
        read = video_io._frames

        def frames(*args):
            for frame in read(*args):
                fifth("decode")
                yield frame

        monkeypatch.setattr(video_io, "_frames", frames)
    elif where == "compute":
        finish = videos._FrameFinisher.frame

        def frame(self, *args):
            fifth("compute")
            return finish(self, *args)

        monkeypatch.setattr(videos._FrameFinisher, "frame", frame)
    else:
        cls = VideoWriter if ext == ".mp4" else outputs._NpyFrames
        write = cls.write

        def failing_write(self, frame):
            fifth("write")
            write(self, frame)

        monkeypatch.setattr(cls, "write", failing_write)
    before = set(threading.enumerate())
    out = tmp_path / f"out{ext}"
    options = ConvolveOptions(kernel=parse_kernel("sobel"))
    with pytest.raises((OSError, InputError), match=f"No space left on device \\({where}\\)"):
        convolve_file(str(small_video), options, output=str(out))
    # Decoding and writing stop at the failing frame; compute threads may have
    # finished frames after it (all 12 are handed out at once).
    assert calls[0] == 5 if where != "compute" else calls[0] >= 5
    alive = _wait_threads_gone(before, "feed", "decode", "encode", "prefetch")
    assert not alive, f"still running: {[t.name for t in alive]}"
    assert list(tmp_path.iterdir()) == []  # no output, no temporary file


# ---------------------------------------------------------------------------
# memory
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def qvga_videos(tmp_path_factory) -> dict[int, Path]:
    """320×240 videos of 30, 200, 300 and 400 frames (4 frames repeated: quick to write)."""
    folder = tmp_path_factory.mktemp("memory")
    base = _textured_frames(4, 240, 320, seed=3)
    videos = {}
    for n in (30, 200, 300, 400):
        videos[n] = folder / f"v{n}.mp4"
        write_video(videos[n], [base[i % 4] for i in range(n)], fps=25.0, bgr=True)
    return videos


@pytest.fixture
def slow_writers(monkeypatch) -> None:
    """Writers 2 ms slower a frame: every queue before them fills, whatever the timing.

    Without it the peak depends on which stage happened to be ahead when, and
    the measurement on how busy the machine is.
    """
    write_video, write_npy = VideoWriter.write, outputs._NpyFrames.write

    def slow_video(self, frame):
        time.sleep(0.002)
        write_video(self, frame)

    def slow_npy(self, frame):
        time.sleep(0.002)
        write_npy(self, frame)

    monkeypatch.setattr(VideoWriter, "write", slow_video)
    monkeypatch.setattr(outputs._NpyFrames, "write", slow_npy)


def _peak(video: Path, spec: str, out: Path) -> int:
    options = ConvolveOptions(kernel=parse_kernel(spec))
    tracemalloc.start()
    try:
        convolve_file(str(video), options, output=str(out))
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


_MEMORY_CASES = [("sobel", ".mp4"), ("sobel3d-t", ".npy")]


@pytest.mark.parametrize("spec, ext", _MEMORY_CASES)
def test_peak_memory_does_not_grow_with_the_video_length(
    qvga_videos, tmp_path, slow_writers, spec, ext
):
    # The queues hold up to 64 frames (and their results), more than a 30-frame
    # video has: its peak is lower by design. By 200 frames every queue is full
    # (measured: from about 150), so the peak must stay where it is at twice that.
    _peak(qvga_videos[30], spec, tmp_path / f"warm{ext}")  # lazy imports, caches
    short = _peak(qvga_videos[200], spec, tmp_path / f"short{ext}")
    long = _peak(qvga_videos[400], spec, tmp_path / f"long{ext}")
    assert long <= short * 1.1 + 2**20, f"peak {short / 2**20:.1f} MB -> {long / 2**20:.1f} MB"


@pytest.mark.parametrize("spec, ext", _MEMORY_CASES)
def test_peak_memory_grows_by_no_more_than_the_read_ahead(
    qvga_videos, tmp_path, slow_writers, spec, ext
):
    _peak(qvga_videos[30], spec, tmp_path / f"warm{ext}")
    short = _peak(qvga_videos[30], spec, tmp_path / f"short{ext}")
    long = _peak(qvga_videos[300], spec, tmp_path / f"long{ext}")
    frame = 320 * 240 * 3
    out_frame = frame * (4 if ext == ".npy" else 1)
    # From 30 to 300 frames only the bounded queues fill up: the frames in flight
    # between decoding and encoding, each with its result (within AHEAD_BYTES),
    # and the encode queue's 4 results. Holding the video would add 59 MB
    # (uint8) or 237 MB (float32 results).
    allowed = AHEAD_BYTES + 4 * out_frame + 2 * (frame + out_frame) + 2**20
    assert long - short <= allowed, (
        f"peak {short / 2**20:.1f} MB -> {long / 2**20:.1f} MB (allowed +{allowed / 2**20:.1f})"
    )
