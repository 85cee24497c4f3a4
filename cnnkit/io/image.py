"""Reading and writing still images with OpenCV.

Arrays are H×W (gray) or H×W×C with C = 3 (RGB) or 4 (RGBA), in the dtype the
file stores (uint8, uint16; float32 for float TIFFs). OpenCV's own BGR order
stays inside this module unless a caller asks for it with ``rgb=False`` (the
convolve fast path does, to save two colour conversions per image).

GIFs are read, not written: an animated GIF reads as its first frame (OpenCV
decodes it as RGBA). OpenCV's GIF encoder maps colours to a dithered 256-colour
palette and refuses gray images, so no output is ever a GIF.

Float pixels follow one rule everywhere they become 8-bit (predict, train,
eval, convolve's image outputs): values in 0-1 are scaled by 255; values
outside 0-1, NaN or infinity are refused (:func:`check_float_pixels`).

OpenCV answers a file it cannot decode with a silent ``None``; here that
always becomes a ReadError naming the file.

A caller that will shrink the image to a known size (training, eval,
predict, explain: the model's input) passes it as ``target``: a JPEG at
least twice that size in each dimension is then decoded at 1/2, 1/4 or 1/8
scale by the JPEG decoder itself (libjpeg's DCT scaling, OpenCV's
``IMREAD_REDUCED_*``), never below twice the target (:func:`reduced_factor`),
and area-resized to the target here, so that each output pixel still
averages at least 2×2 decoded pixels (the caller's own resize then has
nothing left to do). The pixels differ slightly from a full decode and the
same resize (``tests/io/test_reduced_decode.py`` bounds it);
``CNNKIT_FULL_DECODE=1`` turns it off.
"""

from __future__ import annotations

import math
import os
import stat
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO, NamedTuple

import numpy as np

from cnnkit.errors import CnnkitError, InputError, ReadError
from cnnkit.io._opencv import cv2
from cnnkit.io.atomic import atomic_write_bytes
from cnnkit.io.headers import (
    BYTES_PER_PIXEL,
    SIGNATURE_BYTES,
    JpegFrame,
    check_pixels,
    known_format,
    max_image_bytes,
    max_image_pixels,
    png_problem,
    sniff_frame,
    too_large,
    too_many_pixels,
)

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif"})
# What cnnkit writes: everything it reads except GIF (see the module docstring).
WRITABLE_IMAGE_EXTENSIONS = IMAGE_EXTENSIONS - {".gif"}

# Formats that store more than 8 bits per channel; others get the high byte of
# 16-bit pixels (OpenCV would otherwise saturate 16-bit values to 255).
_SIXTEEN_BIT_EXTENSIONS = frozenset({".png", ".tif", ".tiff"})

_EXIF_ORIENTATION_TAG = 0x0112

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Set (to anything but 0): every JPEG is decoded at full size before it is resized.
FULL_DECODE_VARIABLE = "CNNKIT_FULL_DECODE"
# The scales libjpeg decodes at directly, largest first (OpenCV's IMREAD_REDUCED_*).
REDUCED_FACTORS = (8, 4, 2)
# A reduced decode stays at least this many times the target each way. The
# difference from a full decode grows as it nears the target (measured on a
# detailed 720×477 photo, mean levels: 1.2-1.6 at 2-2.5 times for 1/2 and 1/4,
# 2.0 for 1/8; 1.0-1.2 at 3.8 times; 0.3-0.4 at 7.5), on textured pictures 0.2-0.4.
REDUCED_MARGIN = 2
# (components, factor) -> flags. IGNORE_ORIENTATION: the EXIF orientation is
# applied here, as after a full decode (the reduced flags would apply it otherwise).
_REDUCED_FLAGS = {
    (components, factor): flag | cv2.IMREAD_IGNORE_ORIENTATION
    for components, flags in (
        (1, (cv2.IMREAD_REDUCED_GRAYSCALE_2, cv2.IMREAD_REDUCED_GRAYSCALE_4,
             cv2.IMREAD_REDUCED_GRAYSCALE_8)),
        (3, (cv2.IMREAD_REDUCED_COLOR_2, cv2.IMREAD_REDUCED_COLOR_4, cv2.IMREAD_REDUCED_COLOR_8)),
    )
    for factor, flag in zip((2, 4, 8), flags, strict=True)
}  # fmt: skip
# Frames libjpeg scales as it decodes: Huffman-coded DCT (baseline, extended,
# progressive), 8 bits. Others (lossless, arithmetic-coded, 12-bit) decode in full.
_SCALABLE_JPEG = frozenset({0xC0, 0xC1, 0xC2})


def is_image_path(path: str | Path) -> bool:
    """Whether ``path`` has an image extension cnnkit reads (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def _supported(extensions: frozenset[str] = IMAGE_EXTENSIONS) -> str:
    return ", ".join(sorted(extensions))


def check_float_pixels(image: np.ndarray, name: str | None = None) -> None:
    """Refuse float pixels that are not all finite and within 0-1 (ReadError).

    Float images (32-bit TIFFs from scientific tools) hold 0-1 by convention;
    anything else has no single 8-bit meaning, and casting it would give an
    almost black (or white) image without a word. ``name`` prefixes the message.
    Integer images pass unchecked.
    """
    if not np.issubdtype(image.dtype, np.floating) or image.size == 0:
        return
    low, high = float(image.min()), float(image.max())  # NaN anywhere makes both NaN
    if 0.0 <= low and high <= 1.0:
        return
    if math.isnan(low) or math.isnan(high):
        values = "it holds NaN"
    else:
        values = f"min {low:.6g}, max {high:.6g}"
    raise ReadError(
        f"{name + ': ' if name else ''}float image with values outside 0-1 ({values})",
        hint="save it as 8- or 16-bit, or scale it to 0-1",
    )


def read_image(
    path: str | Path,
    rgb: bool = True,
    max_pixels: int | None = None,
    target: Sequence[int] | None = None,
) -> np.ndarray:
    """Read an image file as H×W or H×W×C (RGB/RGBA, or BGR/BGRA with ``rgb=False``).

    Bit depth, gray and alpha are kept as stored; the EXIF orientation is
    applied, so a portrait photo taken sideways comes out upright. Only a
    regular file is read (ReadError for a FIFO, a device or a socket, named
    or reached through a symlink), no further than ``max_image_bytes()``, and
    an image whose header declares more pixels than the limit is refused
    before it is decoded. ``max_pixels``: that limit (``max_image_pixels()``)
    as read already, for a caller that reads many images at once.
    ``target``: the (height, width) the caller shrinks the image to; a large
    JPEG then decodes at a reduced scale and comes back at that size,
    area-resized (see the module docstring); other images come back as stored.
    """
    name = os.fspath(path)
    limit = max_pixels or max_image_pixels()
    buf = np.frombuffer(read_image_file(name, limit), dtype=np.uint8)
    return _decode(buf, name, rgb, limit, target)


# Opening a FIFO for reading waits for a writer, forever if none comes;
# O_NONBLOCK makes the open return at once, and the fstat after it refuses it.
# It changes nothing for a regular file's reads.
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)


def _file_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def read_image_file(path: str | Path, max_pixels: int | None = None) -> bytes | bytearray:
    """The bytes of an image file: a regular file of at most ``max_image_bytes()`` (else ReadError).

    The file is checked once opened (fstat), so a name swapped for a FIFO or
    a symlink to /dev/zero between a folder walk and the read is refused too.
    ``max_pixels``: ``max_image_pixels()`` as read already.
    """
    name = os.fspath(path)
    # os.open + os.read rather than imread: it reads any file name the OS accepts
    # (imread mangles non-ASCII names on Windows), the open call's own errors say
    # what is wrong without a stat of the path first, and one unbuffered read of
    # the known size is the least Python per image (decode threads share the GIL).
    try:
        fd = os.open(name, _READ_FLAGS)
    except FileNotFoundError:
        raise InputError(f"no such file: {name}", hint="check the path and its spelling") from None
    except (IsADirectoryError, PermissionError) as exc:
        if os.path.isdir(name):
            raise InputError(
                f"{name} is a folder, not an image", hint="give an image file"
            ) from None
        raise ReadError(f"cannot read {name}: {exc.strerror}") from None
    except OSError as exc:
        raise ReadError(f"cannot read {name}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise InputError(f"{name} is a folder, not an image", hint="give an image file")
        if not stat.S_ISREG(info.st_mode):
            raise ReadError(
                f"{name} is {_file_kind(info.st_mode)}, not an image file",
                hint="only regular files are read as images",
            )
        if info.st_size > BYTES_PER_PIXEL * (max_pixels or max_image_pixels()):
            raise too_large(name)
        # One byte more than the size: a file that grew since (or a /proc file,
        # which states 0) is read on, still bounded.
        data = os.read(fd, info.st_size + 1)
        if len(data) > info.st_size or (0 < len(data) < info.st_size):
            with os.fdopen(os.dup(fd), "rb") as rest:
                data = read_at_most(rest, name, data)
    except OSError as exc:
        raise ReadError(f"cannot read {name}: {exc.strerror}") from None
    finally:
        os.close(fd)
    return data


_READ_CHUNK = 1 << 20


def read_at_most(stream: BinaryIO, name: str, start: bytes = b"") -> bytes | bytearray:
    """``start`` and the rest of ``stream``, refused (ReadError) past ``max_image_bytes()``.

    For pipes, where no size is known in advance (``cnnkit ... - < /dev/zero``
    ends at the limit instead of at the end of memory). Data whose first
    bytes start no format cnnkit decodes is refused as soon as they are in,
    not after the limit. ``name`` is for the message ("-" is stdin).
    """
    shown = "stdin" if name == "-" else name
    limit = max_image_bytes()
    read = getattr(stream, "read1", stream.read)
    # A bytearray grows in place (realloc), where joining chunks would hold
    # the data twice at the end.
    data = bytearray(start)
    sniffed = False
    while True:
        if not sniffed and len(data) >= SIGNATURE_BYTES:
            if not known_format(data):
                raise _unknown_format(shown)
            sniffed = True
        if len(data) > limit:
            raise too_large(shown)
        chunk = read(_READ_CHUNK)
        if not chunk:
            return data  # shorter than a signature: the decoder says why
        data += chunk


def _unknown_format(shown: str) -> ReadError:
    return ReadError(
        f"{shown} is not a readable image: its contents are not PNG, JPEG, GIF, BMP, TIFF or WebP",
        hint="convert it to PNG or JPEG",
    )


def read_image_bytes(
    data: bytes | bytearray,
    name: str = "-",
    rgb: bool = True,
    max_pixels: int | None = None,
    target: Sequence[int] | None = None,
) -> np.ndarray:
    """Decode an encoded image held in memory (e.g. read from stdin); ``name`` is for messages.

    ``target``: as for :func:`read_image`.
    """
    return _decode(np.frombuffer(data, dtype=np.uint8), name, rgb, max_pixels, target)


def full_decode_forced() -> bool:
    """Whether ``CNNKIT_FULL_DECODE`` asks for every JPEG to be decoded at full size."""
    return os.environ.get(FULL_DECODE_VARIABLE, "").strip() not in ("", "0")


def reduced_decode_note() -> str:
    """How JPEGs are decoded for a model in this process, in words (for notes and records)."""
    if full_decode_forced():
        return f"JPEGs are decoded at full size before they are resized ({FULL_DECODE_VARIABLE})"
    return (
        "JPEGs at least twice the model's input size are decoded at 1/2, 1/4 or 1/8 scale "
        f"by the JPEG decoder, then resized ({FULL_DECODE_VARIABLE}=1: full size)"
    )


def reduced_factor(width: int, height: int, target: Sequence[int]) -> int:
    """The scale (8, 4 or 2) to decode a ``width``×``height`` JPEG at for ``target``, else 1.

    The largest whose decoded size, ceil(width/f) × ceil(height/f) as libjpeg
    rounds it, is still at least twice ``target`` (height, width) in both
    dimensions: the area resize after it then averages at least 2×2 decoded
    pixels per output pixel. ``width`` and ``height`` are as shown, after the
    EXIF orientation. The decoded size resized by the full image's scale
    must also come to ``target`` exactly (see ``_shrink``), which only
    targets under 4 pixels can miss.
    """
    target_h, target_w = int(target[0]), int(target[1])
    if target_h < 1 or target_w < 1:
        return 1
    for f in REDUCED_FACTORS:
        cols, rows = -(-width // f), -(-height // f)
        if (
            cols >= REDUCED_MARGIN * target_w
            and rows >= REDUCED_MARGIN * target_h
            and round(cols * (target_w * f / width)) == target_w
            and round(rows * (target_h * f / height)) == target_h
        ):
            return f
    return 1


class _Reduction(NamedTuple):
    flags: int
    factor: int
    width: int  # as stored, before the EXIF orientation
    height: int


def _reduction(
    data: bytes | bytearray | memoryview, target: Sequence[int], frame: JpegFrame | None
) -> _Reduction | None:
    """How to decode the encoded image ``data`` for ``target`` at a reduced scale; None: in full.

    Only an 8-bit gray or YCbCr/RGB JPEG (not CMYK) that :func:`reduced_factor`
    shrinks, while ``CNNKIT_FULL_DECODE`` is unset. ``frame``: its frame
    header, as ``sniff_frame`` read it.
    """
    if bytes(data[:3]) != b"\xff\xd8\xff" or full_decode_forced():
        return None
    if (
        frame is None
        or frame.marker not in _SCALABLE_JPEG
        or frame.precision != 8
        or frame.components not in (1, 3)
        or not frame.width
        or not frame.height
    ):
        return None
    width, height = frame.width, frame.height
    if int(target[0]) != int(target[1]) and frame.exif is not None:
        # A quarter turn shows the stored width as the height.
        if exif_orientation(bytes(data[frame.exif[0] : frame.exif[1]])) >= 5:
            width, height = height, width
    factor = reduced_factor(width, height, target)
    if factor == 1:
        return None
    return _Reduction(_REDUCED_FLAGS[frame.components, factor], factor, frame.width, frame.height)


def reduced_decode_factor(data: bytes | bytearray | memoryview, target: Sequence[int]) -> int:
    """The scale (2, 4 or 8) the encoded image ``data`` is decoded at for ``target``; 1: in full."""
    plan = _reduction(data, target, sniff_frame(data)[2])
    return 1 if plan is None else plan.factor


def _decode(
    buf: np.ndarray,
    name: str,
    rgb: bool,
    max_pixels: int | None = None,
    target: Sequence[int] | None = None,
) -> np.ndarray:
    shown = "stdin" if name == "-" else name
    data = buf.data
    known, size, frame = sniff_frame(data)
    if buf.size and not known:
        raise _unknown_format(shown)
    if size is not None:
        check_pixels(shown, *size, max_pixels)
    if data[:8] == _PNG_SIGNATURE:
        problem = png_problem(data)
        if problem is not None:
            raise ReadError(
                f"{shown} is not a readable image: PNG {problem}",
                hint="the file is damaged; read it again from its source",
            )
    image = None
    if target is not None and frame is not None:
        image = _reduced_decode(buf, target, frame)
    if image is None:
        image = _full_decode(buf, shown)
    if rgb:
        image = _swap_red_blue(image)
    return image


def _reduced_decode(buf: np.ndarray, target: Sequence[int], frame: JpegFrame) -> np.ndarray | None:
    """A large JPEG decoded at a reduced scale, upright, area-resized to ``target`` (BGR).

    None when it is not such a JPEG, or the reduced decode fails or gives an
    unexpected size: the caller then decodes it in full, as always.
    """
    plan = _reduction(buf.data, target, frame)
    if plan is None:
        return None
    try:
        image, exif = _imdecode_with_exif(buf, plan.flags)
    except cv2.error:
        return None
    rows, cols = -(-plan.height // plan.factor), -(-plan.width // plan.factor)
    if image is None or image.shape[:2] != (rows, cols):
        return None
    width, height = plan.width, plan.height
    if exif:
        orientation = exif_orientation(exif)
        image = apply_exif_orientation(image, orientation)
        if orientation >= 5:
            width, height = height, width
    return _shrink(image, plan.factor, width, height, target)


def _shrink(
    image: np.ndarray, factor: int, width: int, height: int, target: Sequence[int]
) -> np.ndarray | None:
    """A ``width``×``height`` picture decoded at 1/``factor`` scale, area-resized to ``target``.

    libjpeg rounds the decoded size up: where ``factor`` does not divide a
    side, the last decoded row or column stands for fewer stored ones.
    Resized by the full picture's scale (fx, fy) rather than to a size, each
    output pixel averages the part of the picture it would after a full
    decode; resized to a size, the picture would be stretched by up to half
    an output pixel (measured on a 720×477 photo to 32×32: a mean difference
    of 3.9 levels from the full decode, against 1.0 so). None if the scale
    does not come to ``target`` (an orientation the header did not tell).
    """
    target_h, target_w = int(target[0]), int(target[1])
    fx, fy = target_w * factor / width, target_h * factor / height
    out = cv2.resize(image, None, fx=fx, fy=fy, interpolation=cv2.INTER_AREA)
    return out if out.shape[:2] == (target_h, target_w) else None


def _full_decode(buf: np.ndarray, shown: str) -> np.ndarray:
    """``buf`` decoded as stored (depth, gray, alpha), upright (ReadError if it cannot be)."""
    image = None
    exif = b""
    if buf.size:
        try:
            image, exif = _imdecode_with_exif(buf)
        except cv2.error as exc:
            # OpenCV's own pixel limit (the same number, see cnnkit.io.headers)
            # stops formats whose header is not read here, and headers that lie.
            if "CV_IO_MAX_IMAGE" in str(exc):
                raise too_many_pixels(shown) from None
            image = None
    if image is None or image.size == 0:
        raise ReadError(
            f"{shown} is not a readable image",
            hint=f"supported formats: {_supported()}; the file may be damaged or empty",
        )
    if exif:
        image = apply_exif_orientation(image, exif_orientation(exif))
    return image


_WITH_METADATA = hasattr(cv2, "imdecodeWithMetadata")


def _imdecode_with_exif(
    buf: np.ndarray, flags: int = cv2.IMREAD_UNCHANGED
) -> tuple[np.ndarray | None, bytes]:
    """Decode ``buf`` unchanged (depth, gray, alpha) and return it with its raw EXIF block.

    IMREAD_UNCHANGED skips OpenCV's own orientation handling (the flags that
    apply it also drop alpha or depth), so the orientation is applied here.
    ``flags``: a reduced JPEG decode instead (see _reduction), without
    OpenCV's orientation handling too.
    """
    if _WITH_METADATA:  # OpenCV >= 4.12
        image, types, blocks = cv2.imdecodeWithMetadata(buf, flags)
        if not len(blocks):  # most files: no metadata at all
            return image, b""
        for kind, block in zip(np.asarray(types).ravel(), blocks, strict=False):
            if int(kind) == cv2.IMAGE_METADATA_EXIF:
                return image, np.asarray(block).tobytes()
        return image, b""
    return cv2.imdecode(buf, flags), _jpeg_exif_block(buf.tobytes())


def _jpeg_exif_block(data: bytes) -> bytes:
    """The TIFF-structured EXIF block of a JPEG's APP1 segment, or b"" (older OpenCV only)."""
    if data[:2] != b"\xff\xd8":
        return b""
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        segment = data[pos + 4 : pos + 2 + length]
        if marker == 0xE1 and segment.startswith(b"Exif\x00\x00"):
            return segment[6:]
        if marker == 0xDA:  # start of scan: no more metadata segments
            break
        pos += 2 + length
    return b""


def exif_orientation(block: bytes) -> int:
    """The EXIF orientation (1-8) in a TIFF-structured EXIF block; 1 when absent or damaged."""
    if block.startswith(b"Exif\x00\x00"):
        block = block[6:]
    if len(block) < 8 or block[:2] not in (b"II", b"MM"):
        return 1
    order = "<" if block[:2] == b"II" else ">"
    try:
        (ifd,) = struct.unpack_from(order + "I", block, 4)
        (count,) = struct.unpack_from(order + "H", block, ifd)
        for i in range(count):
            tag, _type, _n, value = struct.unpack_from(order + "HHIH", block, ifd + 2 + 12 * i)
            if tag == _EXIF_ORIENTATION_TAG:
                return value if 1 <= value <= 8 else 1
    except struct.error:  # truncated block: treat as no orientation rather than fail the read
        return 1
    return 1


def apply_exif_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """Turn an image stored with EXIF ``orientation`` (1-8) upright, as OpenCV's IMREAD_COLOR does.

    Works for any channel count and dtype: the first two axes are flipped or
    transposed.
    """
    if orientation <= 1 or orientation > 8:
        return image
    if orientation >= 5:  # 5-8 swap rows and columns
        image = image.swapaxes(0, 1)
    flips = {2: (1,), 3: (0, 1), 4: (0,), 5: (), 6: (1,), 7: (0, 1), 8: (0,)}[orientation]
    if flips:
        image = np.flip(image, axis=flips)
    return np.ascontiguousarray(image)


def _swap_red_blue(image: np.ndarray) -> np.ndarray:
    """BGR(A) <-> RGB(A); gray is returned as is."""
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
    return image


def _encodable(image: np.ndarray, ext: str, rgb: bool) -> np.ndarray:
    """Bring ``image`` to what cv2.imencode accepts for ``ext``: 1, 3 or 4 channels in BGR order."""
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or image.size == 0:
        shape = getattr(image, "shape", None)
        raise InputError(f"cannot write an array of shape {shape} as an image (need H×W or H×W×C)")
    if image.dtype not in (np.uint8, np.uint16):
        raise InputError(
            f"cannot write {image.dtype} pixels as an image",
            hint="scale to uint8 (0-255) or uint16 first, or write .npy",
        )
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    elif image.ndim == 3 and image.shape[2] == 2:  # gray + alpha: no encoder takes 2 channels
        gray, alpha = image[:, :, :1], image[:, :, 1:]
        image = np.concatenate([gray, gray, gray, alpha], axis=2)
    elif image.ndim == 3 and image.shape[2] not in (3, 4):
        raise InputError(f"cannot write an image with {image.shape[2]} channels (need 1, 3 or 4)")
    if image.dtype == np.uint16 and ext not in _SIXTEEN_BIT_EXTENSIONS:
        image = (image >> 8).astype(np.uint8)
    if rgb:
        image = _swap_red_blue(np.ascontiguousarray(image))
    return np.ascontiguousarray(image)


def _check_writable(ext: str, what: str) -> None:
    if ext == ".gif":
        raise InputError(
            f"cannot write {what}: GIF is read but not written (OpenCV's GIF encoder "
            "reduces colours to a dithered palette and refuses gray images)",
            hint="write .png instead",
        )
    if ext not in WRITABLE_IMAGE_EXTENSIONS:
        raise InputError(
            f"cannot write {what}: unknown image extension '{ext}'",
            hint=f"use one of {_supported(WRITABLE_IMAGE_EXTENSIONS)} (or .npy)",
        )


def encode_image(image: np.ndarray, ext: str = ".png", rgb: bool = True) -> bytes:
    """Encode H×W or H×W×C (RGB/RGBA unless ``rgb=False``) uint8/uint16 as ``ext`` bytes."""
    ext = ext.lower() if ext.startswith(".") else f".{ext.lower()}"
    _check_writable(ext, "an image")
    image = _encodable(image, ext, rgb)
    try:
        ok, encoded = cv2.imencode(ext, image)
    except cv2.error as exc:
        raise CnnkitError(
            f"OpenCV could not encode a {image.shape} image as {ext}: {exc}"
        ) from None
    if not ok:
        raise CnnkitError(f"OpenCV could not encode a {image.shape} image as {ext}")
    return encoded.tobytes()


def encode_png(image: np.ndarray, rgb: bool = True) -> bytes:
    """PNG bytes of H×W or H×W×C uint8/uint16 (e.g. for ``-o -``)."""
    return encode_image(image, ".png", rgb)


def write_image(path: str | Path, image: np.ndarray, rgb: bool = True) -> None:
    """Write ``image`` (RGB/RGBA order unless ``rgb=False``) atomically; format from the extension.

    16-bit pixels are kept in PNG and TIFF and reduced to their high byte in
    formats that store 8 bits.
    """
    path = Path(path)
    _check_writable(path.suffix.lower(), str(path))
    atomic_write_bytes(path, encode_image(image, path.suffix, rgb))
