"""Image sizes read from file headers, and the decode limits checked against them.

An image file is untrusted: a 2.6 MB PNG can declare 30000×30000 pixels and
take gigabytes to decode. Like Pillow's ``MAX_IMAGE_PIXELS``, cnnkit refuses an
image whose header declares more than a pixel limit, before decoding it. The
headers of PNG, JPEG, GIF, BMP, WebP and TIFF are parsed here (a few bytes
each); for anything else OpenCV's own limit, set to the same number before cv2
is first imported (see :func:`set_opencv_pixel_limit`), is the backstop.

Reads are bounded too: no image is read from a file or a pipe past
``BYTES_PER_PIXEL`` bytes per pixel of the limit. This module imports nothing
heavy (no numpy, no OpenCV).
"""

from __future__ import annotations

import os
import struct
import zlib
from typing import NamedTuple

from cnnkit.errors import InputError, ReadError

PIXELS_VARIABLE = "CNNKIT_MAX_IMAGE_PIXELS"

# 180 megapixels, Pillow's refusal threshold (2 × its MAX_IMAGE_PIXELS of
# 89.5 MP): more than any camera or phone sensor (a 150 MP medium-format back,
# a 16384×10000 panorama) and what a laptop holds comfortably while it
# classifies: decoded it is 540 MB as 8-bit RGB, 1.44 GB as 16-bit RGBA, and
# predict's two decoders may hold two at once beside the model. A fixed number
# rather than one computed from free memory, so that the same file is read, or
# refused, on every machine. Larger images (scans, gigapixel mosaics) need
# the variable.
DEFAULT_MAX_IMAGE_PIXELS = 180_000_000

# The largest read allowed per pixel of the limit: an uncompressed 16-bit RGBA
# image (BMP, TIFF) at the limit is 8 bytes a pixel, and every compressed
# encoding of an image within the limit is smaller. 1.44 GB by default.
BYTES_PER_PIXEL = 8

_OPENCV_VARIABLE = "OPENCV_IO_MAX_IMAGE_PIXELS"


def max_image_pixels() -> int:
    """The decode limit in pixels: ``$CNNKIT_MAX_IMAGE_PIXELS``, else 180 MP (InputError if bad)."""
    raw = os.environ.get(PIXELS_VARIABLE, "")
    if raw == _PIXELS_SEEN[0]:  # read for every image: parsed once per value
        return _PIXELS_SEEN[1]
    value = _parse_pixels(raw)
    _PIXELS_SEEN[:] = [raw, value]
    return value


_PIXELS_SEEN: list = [None, 0]


def _parse_pixels(raw: str) -> int:
    text = raw.strip()
    if not text:
        return DEFAULT_MAX_IMAGE_PIXELS
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        value = 0
    if value <= 0:
        raise InputError(
            f"{PIXELS_VARIABLE}={text!r} is not a positive whole number of pixels",
            hint=f"e.g. {PIXELS_VARIABLE}=400000000, or unset it for {DEFAULT_MAX_IMAGE_PIXELS}",
        )
    return value


def max_image_bytes() -> int:
    """The most bytes read for one image: ``BYTES_PER_PIXEL`` per pixel of the limit."""
    return BYTES_PER_PIXEL * max_image_pixels()


def set_opencv_pixel_limit() -> None:
    """Give OpenCV's decoders the same pixel limit.

    OpenCV reads ``OPENCV_IO_MAX_IMAGE_PIXELS`` once, when cv2 is first imported
    (its default is 2^30), so this must run before that import. It is set,
    not defaulted: child processes inherit it, and one started with another
    ``CNNKIT_MAX_IMAGE_PIXELS`` must not keep its parent's value.
    """
    try:
        limit = max_image_pixels()
    except InputError:  # reported where an image is read, with its hint
        limit = DEFAULT_MAX_IMAGE_PIXELS
    os.environ[_OPENCV_VARIABLE] = str(limit)


def too_many_pixels(name: str, width: int | None = None, height: int | None = None) -> ReadError:
    """The error for an image (or video frame) over the pixel limit; the size if known.

    The message itself names the limit and its variable: predict's error
    records carry the message without the hint.
    """
    size = f" is {width}×{height} ({width * height:,} pixels)," if width and height else " is"
    return ReadError(
        f"{name}{size} over the decode limit of {max_image_pixels():,} pixels ({PIXELS_VARIABLE})",
        hint=f"set {PIXELS_VARIABLE} to a larger number to read it, if this machine "
        "has the memory: 3 to 8 bytes a pixel",
    )


def check_pixels(name: str, width: int, height: int, limit: int | None = None) -> None:
    """Raise ReadError when ``width``×``height`` is over the decode limit.

    ``limit``: ``max_image_pixels()`` as read already (for many images at once).
    """
    if width * height > (limit or max_image_pixels()):
        raise too_many_pixels(name, width, height)


def too_large(name: str) -> ReadError:
    """The error for a file or stream longer than any image within the pixel limit."""
    return ReadError(
        f"{name} holds more than {max_image_bytes():,} bytes, the most read for one image "
        f"({BYTES_PER_PIXEL} bytes a pixel of the {PIXELS_VARIABLE} limit)",
        hint=f"set {PIXELS_VARIABLE} to a larger number to read it",
    )


def image_size(data: bytes | bytearray | memoryview) -> tuple[int, int] | None:
    """(width, height) declared by the header of an encoded image, or None.

    None when the format is none of PNG, JPEG, GIF, BMP, WebP and TIFF, or its
    header is cut short or damaged (OpenCV's own limit and checks then apply).
    Nothing is decoded: only the header bytes are looked at.
    """
    return sniff(data)[1]


def known_format(data: bytes | bytearray | memoryview) -> bool:
    """Whether ``data`` starts like one of the formats cnnkit reads (their headers are checked).

    OpenCV decodes more (Radiance HDR, PNM, JPEG 2000, OpenEXR...) whatever the
    file's name, some at many bytes a pixel; cnnkit reads none of them.
    """
    return sniff(data)[0]


def sniff(data: bytes | bytearray | memoryview) -> tuple[bool, tuple[int, int] | None]:
    """(known_format, image_size) of ``data`` at once: its first bytes looked at once."""
    known, size, _ = sniff_frame(data)
    return known, size


def sniff_frame(
    data: bytes | bytearray | memoryview,
) -> tuple[bool, tuple[int, int] | None, JpegFrame | None]:
    """``sniff``, and a JPEG's frame header (None for other formats, or if not found).

    One walk over a JPEG's segment headers serves both: that walk is Python,
    and a file of millions of empty segments makes it long.
    """
    head = bytes(data[:32])
    if head.startswith(b"\xff\xd8"):
        try:
            frame = jpeg_frame(data)
        except (struct.error, IndexError, ValueError):
            return True, None, None
        size = (frame.width, frame.height) if frame is not None and frame.height else None
        return True, size, frame
    for signatures, parse in _PARSERS:
        if head.startswith(signatures):
            try:
                return True, parse(data), None
            except (struct.error, IndexError, ValueError):
                return True, None, None
    return False, None, None


def _png(data) -> tuple[int, int] | None:
    # The 8-byte signature, then the IHDR chunk: length, "IHDR", width, height.
    if bytes(data[12:16]) != b"IHDR":
        return None
    return struct.unpack_from(">II", data, 16)


# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic...):
# C0-CF except C4 (Huffman tables), C8 (reserved) and CC (arithmetic conditioning).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg(data) -> tuple[int, int] | None:
    frame = jpeg_frame(data)
    return (frame.width, frame.height) if frame is not None and frame.height else None


class JpegFrame(NamedTuple):
    """What a JPEG's frame header (SOF) declares, and where its EXIF block is.

    ``marker``: the SOF marker (0xC0 baseline, 0xC2 progressive, ...).
    ``height`` 0 means it is given later (a DNL marker). ``exif``: the
    (start, end) offsets of the TIFF-structured block of an ``Exif`` APP1
    segment before the frame header, or None.
    """

    marker: int
    precision: int
    width: int
    height: int
    components: int
    exif: tuple[int, int] | None


def jpeg_frame(data) -> JpegFrame | None:
    """The frame header of the JPEG ``data``, or None when none is found before the scan.

    Only the segment headers are walked, never the compressed data. Raises
    struct.error or IndexError on a header cut short (``sniff`` handles them).
    """
    pos = 2
    size = len(data)
    exif = None
    for _ in range(_JPEG_MAX_MARKERS):
        if pos + 4 > size:
            return None
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            pos += 2
            continue
        if marker in _JPEG_SOF:
            precision, height, width = struct.unpack_from(">BHH", data, pos + 4)
            # The component count is needed only to decode (0: unknown, cut short).
            components = data[pos + 9] if pos + 9 < size else 0
            return JpegFrame(marker, precision, width, height, components, exif)
        if marker == 0xDA:  # start of scan before any frame header: damaged
            return None
        (length,) = struct.unpack_from(">H", data, pos + 2)
        if marker == 0xE1 and exif is None and bytes(data[pos + 4 : pos + 10]) == _EXIF_HEADER:
            exif = (pos + 10, min(size, pos + 2 + length))
        pos += 2 + length
    return None  # more markers than a real JPEG holds: OpenCV's own limit then applies


# Markers and fill bytes walked before the frame header, at most. Real files
# hold tens (APPn, DQT, DHT, COM, ICC chunks); a crafted one of millions of
# empty segments would hold a Python loop for minutes (0.7 s for 4 MB).
_JPEG_MAX_MARKERS = 16384
_EXIF_HEADER = b"Exif\x00\x00"


def _gif(data) -> tuple[int, int] | None:
    return struct.unpack_from("<HH", data, 6)  # the logical screen: the canvas decoded


# The sizes of the bitmap headers in use: OS/2 core, BITMAPINFOHEADER, its V2-V5
# extensions and OS/2 2.x.
_BMP_HEADERS = frozenset({12, 16, 40, 52, 56, 64, 108, 124})


def _bmp(data) -> tuple[int, int] | None:
    (header,) = struct.unpack_from("<I", data, 14)
    if header not in _BMP_HEADERS:  # "BM" followed by anything else: not a bitmap
        return None
    if header == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
        return struct.unpack_from("<HH", data, 18)
    width, height = struct.unpack_from("<ii", data, 18)
    return abs(width), abs(height)  # a negative height is a top-down bitmap


def _webp(data) -> tuple[int, int] | None:
    if bytes(data[8:12]) != b"WEBP":
        return None
    chunk = bytes(data[12:16])
    if chunk == b"VP8X":  # extended: the canvas, 24 bits each, minus one
        width = int.from_bytes(bytes(data[24:27]), "little") + 1
        height = int.from_bytes(bytes(data[27:30]), "little") + 1
        return width, height
    if chunk == b"VP8L":  # lossless: signature 0x2F, then 14 bits each, minus one
        if data[20] != 0x2F:
            return None
        (bits,) = struct.unpack_from("<I", data, 21)
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 ":  # lossy: a 3-byte frame tag, the start code, 14 bits each
        if bytes(data[23:26]) != b"\x9d\x01\x2a":
            return None
        width, height = struct.unpack_from("<HH", data, 26)
        return width & 0x3FFF, height & 0x3FFF
    return None


_TIFF_WIDTH, _TIFF_LENGTH = 256, 257
# A tiled TIFF's tile size: the decoder allocates one whole tile, whatever the
# image's own size says (a 16×16 image of one 16000×16000 tile takes 1 GB).
_TIFF_TILE_WIDTH, _TIFF_TILE_LENGTH = 322, 323
_TIFF_SIZES = (_TIFF_WIDTH, _TIFF_LENGTH, _TIFF_TILE_WIDTH, _TIFF_TILE_LENGTH)
# Field types that hold a size: SHORT, LONG, and BigTIFF's LONG8.
_TIFF_INTEGERS = {3: "H", 4: "I", 16: "Q"}


def _tiff(data) -> tuple[int, int] | None:
    """Width and length in the first image file directory (the page OpenCV decodes).

    A tile larger than the image counts at its own size: the decoder holds one.
    """
    order = "<" if bytes(data[:2]) == b"II" else ">"
    (version,) = struct.unpack_from(order + "H", data, 2)
    if version == 42:
        (ifd,) = struct.unpack_from(order + "I", data, 4)
        (count,) = struct.unpack_from(order + "H", data, ifd)
        first, entry, value_at = ifd + 2, 12, 8
    else:  # 43: BigTIFF, 64-bit offsets and counts
        (ifd,) = struct.unpack_from(order + "Q", data, 8)
        (count,) = struct.unpack_from(order + "Q", data, ifd)
        first, entry, value_at = ifd + 8, 20, 12
    found: dict[int, int] = {}
    for i in range(min(count, (len(data) - first) // entry)):
        at = first + i * entry
        tag, kind = struct.unpack_from(order + "HH", data, at)
        if tag in _TIFF_SIZES and kind in _TIFF_INTEGERS:
            (found[tag],) = struct.unpack_from(order + _TIFF_INTEGERS[kind], data, at + value_at)
    if _TIFF_WIDTH not in found or _TIFF_LENGTH not in found:
        return None
    width = max(found[_TIFF_WIDTH], found.get(_TIFF_TILE_WIDTH, 0))
    length = max(found[_TIFF_LENGTH], found.get(_TIFF_TILE_LENGTH, 0))
    return width, length


# Chunks checked by png_problem before it gives up and leaves the rest to libpng:
# encoders write few, large chunks, and a file of millions of empty ones would
# otherwise cost seconds of Python.
_PNG_MAX_CHUNKS = 100_000
_PNG_CHECKED = frozenset({b"IHDR", b"PLTE", b"IEND"})
_PNG_CHUNK_HEADER = struct.Struct(">I4s")  # length, type
_PNG_CRC = struct.Struct(">I")


def png_problem(data: bytes | bytearray | memoryview) -> str | None:
    """Why a PNG is damaged (cut short, a broken chunk, a bad IHDR/PLTE/IEND CRC), or None.

    libpng prints its own "libpng error: ..." line on stderr for such files
    before OpenCV gives up, and no log level of OpenCV's reaches it; this
    walk over the chunk headers (microseconds) lets cnnkit refuse them
    without calling libpng. The CRCs of IDAT chunks, the bulk of the file,
    are left to libpng: checking them here measured 7-8% of the decode time.
    Ancillary chunks (metadata) are not checked: libpng skips a damaged one.
    """
    view = memoryview(data)
    pos, size = 8, len(view)
    header, crc32 = _PNG_CHUNK_HEADER.unpack_from, zlib.crc32
    for _ in range(_PNG_MAX_CHUNKS):
        if pos + 12 > size:
            return "cut short"
        length, kind = header(view, pos)
        if not kind.isalpha():
            return "damaged chunk structure"
        end = pos + 12 + length
        if end > size:
            return f"cut short in its {kind.decode()} chunk"
        if kind in _PNG_CHECKED:
            (crc,) = _PNG_CRC.unpack_from(view, end - 4)
            if crc32(view[pos + 4 : end - 4]) != crc:
                return f"CRC error in its {kind.decode()} chunk"
            if kind == b"IEND":
                return None
        pos = end
    return None


_PARSERS = (
    ((b"\x89PNG\r\n\x1a\n",), _png),
    ((b"\xff\xd8",), _jpeg),
    ((b"GIF87a", b"GIF89a"), _gif),
    ((b"BM",), _bmp),
    ((b"RIFF",), _webp),
    ((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"), _tiff),
)
# Bytes that known_format() needs to see: the longest signature (PNG's).
SIGNATURE_BYTES = max(len(s) for signatures, _ in _PARSERS for s in signatures)
