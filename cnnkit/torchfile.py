"""Torch and safetensors files checked as untrusted input, before torch allocates anything.

``torch.load(weights_only=True)`` runs no code from the file, but it trusts
the sizes the file declares:

- a torch file is a zip; torch allocates each record at the uncompressed size
  the zip's directory declares, then reads it: a few megabytes of compressed
  zeros declare gigabytes;
- its pickle may call the few functions weights_only allows, some of which
  allocate from a number (``bytearray(n)``, ``torch.FloatTensor(n)``), or
  grow a string at each call (``_codecs.encode(s, "hex")``);
- torch's legacy (before 1.6) format allocates each storage at its declared
  size before reading it.

So a torch file is read only when it is a zip whose directory is where its
end record says (the reader in torch and Python's zipfile then see the same
records), whose records are stored uncompressed, as torch writes them, and
fit in the file, together; and whose pickle (scanned opcode by opcode, in
bounded time) calls only what a state dict needs: the tensor rebuild
functions and OrderedDict. Everything torch allocates is then bounded by the
file's own size. A safetensors file's header is bounded before the
safetensors reader (which checks each tensor's offsets against the file)
parses it.

Nothing here imports torch.
"""

from __future__ import annotations

import pickletools
import struct
import zipfile
from pathlib import Path

# A state dict of a classification network holds hundreds of tensors; a Lightning
# checkpoint with its optimizer's state a few thousand.
MAX_TENSORS = 20_000
# The pickle of such a checkpoint, with 100,000 class names, is about 300,000
# opcodes; each opcode builds at most one small object (under ~200 bytes).
MAX_PICKLE_OPS = 1_000_000
MAX_SAFETENSORS_HEADER = 16 * 2**20

# What a pickled state dict, checkpoint or optimizer state calls: the tensor and
# parameter rebuild functions, OrderedDict, and the storage types that name a
# tensor's dtype. torch's weights_only also allows functions that allocate from a
# number or a string they are given; no tensor needs them.
_SAFE_CALLS = frozenset(
    {
        "collections OrderedDict",
        "torch._utils _rebuild_tensor",
        "torch._utils _rebuild_tensor_v2",
        "torch._utils _rebuild_tensor_v3",
        "torch._utils _rebuild_parameter",
        "torch Size",
        "torch device",
        "builtins set",
        "__builtin__ set",
        "builtins complex",
        "__builtin__ complex",
    }
)
# Names a pickle uses as values, never called (calling one fails): the storage types
# that give a tensor its dtype, and dtypes.
_VALUES = frozenset(
    [
        f"torch {kind}Storage"
        for kind in (
            "Double Float Half BFloat16 Long Int Short Char Byte Bool ComplexDouble "
            "ComplexFloat QUInt8 QInt8 QInt32 QUInt4x2 QUInt2x4"
        ).split()
    ]
    + [
        f"torch {dtype}"
        for dtype in (
            "float16 float32 float64 bfloat16 int8 int16 int32 int64 uint8 uint16 uint32 "
            "uint64 bool complex32 complex64 complex128 float8_e4m3fn float8_e5m2 "
            "float8_e4m3fnuz float8_e5m2fnuz quint8 qint8 qint32 quint4x2 quint2x4"
        ).split()
    ]
)
# torch.save's first pickle in the legacy format: the magic number 0x1950a86a20f9469cfc6c.
_LEGACY_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19."


class UnsafeFile(ValueError):
    """A file whose declared sizes or calls cannot be trusted; the message says which."""


def check_torch_file(path: Path) -> None:
    """UnsafeFile unless torch.load of ``path`` allocates no more than the file holds.

    Reads the zip's directory and the pickle, nothing else; OSError passes through.
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(len(_LEGACY_MAGIC))
        if head[:4] != b"PK\x03\x04":
            if head.startswith(_LEGACY_MAGIC):
                raise UnsafeFile(
                    "a torch file in the legacy format (before torch 1.6), whose sizes "
                    "cannot be checked before reading; save it again with a current torch"
                )
            raise UnsafeFile("damaged, truncated or not a torch file: not a zip archive")
        _check_zip_end(f, size)
        try:
            archive = zipfile.ZipFile(f)
        except (zipfile.BadZipFile, ValueError, EOFError, struct.error) as exc:
            raise UnsafeFile(f"damaged, truncated or not a torch file: {exc}") from None
        with archive:
            pickle_name = _check_records(archive.infolist(), size)
            try:
                data = archive.read(pickle_name)
            except (zipfile.BadZipFile, ValueError, EOFError, struct.error) as exc:
                raise UnsafeFile(f"damaged, truncated or not a torch file: {exc}") from None
    check_pickle(data)


def _check_zip_end(f: object, size: int) -> None:
    """The end record is the file's last 22 bytes and the directory ends where it says.

    Python's zipfile tolerates bytes before the archive and a comment after it,
    and then reads the directory at another place than torch's reader (miniz)
    would; torch never writes either.
    """
    if size < 22:
        raise UnsafeFile("damaged, truncated or not a torch file: too short for a zip archive")
    f.seek(size - 22)  # type: ignore[attr-defined]
    end = f.read(22)  # type: ignore[attr-defined]
    if end[:4] != b"PK\x05\x06" or end[20:22] != b"\x00\x00":
        raise UnsafeFile("damaged, truncated or not a torch file: no zip end record at its end")
    dir_size, dir_offset = struct.unpack("<II", end[12:20])
    dir_end = size - 22
    if size >= 22 + 20:
        f.seek(size - 42)  # type: ignore[attr-defined]
        locator = f.read(20)  # type: ignore[attr-defined]
        if locator[:4] == b"PK\x06\x07":  # ZIP64 (torch writes it always): its record rules
            (end64_offset,) = struct.unpack("<Q", locator[8:16])
            if end64_offset + 56 > size - 42:
                raise UnsafeFile("damaged, truncated or not a torch file: bad ZIP64 end record")
            f.seek(end64_offset)  # type: ignore[attr-defined]
            end64 = f.read(56)  # type: ignore[attr-defined]
            if end64[:4] != b"PK\x06\x06":
                raise UnsafeFile("damaged, truncated or not a torch file: bad ZIP64 end record")
            dir_size, dir_offset = struct.unpack("<QQ", end64[40:56])
            dir_end = end64_offset
    if dir_offset + dir_size != dir_end:
        raise UnsafeFile(
            "damaged, truncated or not a torch file: its zip directory is not where its end "
            "record says (data before or after the archive)"
        )


def _check_records(infos: list[zipfile.ZipInfo], size: int) -> str:
    """Each record stored, inside the file, all of them together no larger than it.

    Returns the pickle's record name. torch allocates a record at the size the
    directory declares before reading it, and inflates a compressed one: a
    record that is compressed, or declares more than the file holds, is how a
    small file makes torch allocate gigabytes.
    """
    if len(infos) > MAX_TENSORS + 16:
        raise UnsafeFile(f"it holds {len(infos):,} records; cnnkit reads up to {MAX_TENSORS:,}")
    total = 0
    pickles = []
    seen: set[str] = set()
    for info in infos:
        name = info.filename
        # torch's zip reader finds records by name without regard to case, and
        # may take a later "DATA.pkl" for the "data.pkl" checked here: names
        # that are one name to torch are refused, as is any repeated name.
        folded = name.casefold()
        if folded in seen:
            raise UnsafeFile(
                f"its record {_record(name)} appears twice (names that differ only "
                "in case are one name to torch), so the file was altered"
            )
        seen.add(folded)
        last = name.rsplit("/", 1)[-1]
        if last.casefold() == "data.pkl" and last != "data.pkl":
            raise UnsafeFile(f"its record {_record(name)} is the pickle's name in another case")
        if info.flag_bits & 0x1:
            raise UnsafeFile(f"its record {name} is encrypted")
        if info.compress_type != zipfile.ZIP_STORED:
            raise UnsafeFile(
                f"its record {_record(name)} is compressed by {_method(info.compress_type)}: "
                f"{_size(info.compress_size)} that declare {_size(info.file_size)}; torch "
                "stores records uncompressed, so the file was altered"
            )
        if info.file_size != info.compress_size or info.header_offset + info.file_size > size:
            raise UnsafeFile(
                f"its record {_record(name)} declares {_size(info.file_size)}, more than "
                f"the file's {_size(size)} can hold"
            )
        total += info.file_size
        if name.endswith("/data.pkl") and name.count("/") == 1:
            pickles.append(name)
    if total > size:
        raise UnsafeFile(
            f"its records declare {_size(total)} together, more than the file's {_size(size)}"
        )
    if len(pickles) != 1:
        raise UnsafeFile("damaged, truncated or not a torch file: no data.pkl record")
    return pickles[0]


def check_pickle(data: bytes) -> None:
    """UnsafeFile unless the weights-only pickle ``data`` calls only what a state dict needs.

    A scan of its opcodes (bounded in count), with no object built.
    """
    count = 0
    try:
        for opcode, arg, _ in pickletools.genops(data):
            count += 1
            if count > MAX_PICKLE_OPS:
                raise UnsafeFile(
                    f"its pickle has over {MAX_PICKLE_OPS:,} operations; a checkpoint needs "
                    "far fewer"
                )
            if opcode.name == "GLOBAL":
                name = str(arg)
                if name not in _SAFE_CALLS and name not in _VALUES:
                    raise UnsafeFile(f"it would call {name.replace(' ', '.')}")
            elif opcode.name in ("STACK_GLOBAL", "INST", "OBJ", "EXT1", "EXT2", "EXT4"):
                raise UnsafeFile(f"not a weights-only pickle (it uses {opcode.name})")
    except UnsafeFile:
        raise
    except Exception as exc:  # noqa: BLE001 - genops raises ValueError, struct.error, ...
        raise UnsafeFile(f"damaged, truncated or not a torch file: {exc}") from None


def _record(name: str) -> str:
    """'archive/data/0' -> 'data/0': records by the name torch gives them."""
    return name.split("/", 1)[-1]


def _method(kind: int) -> str:
    return {zipfile.ZIP_DEFLATED: "deflate", zipfile.ZIP_BZIP2: "bzip2"}.get(kind, f"method {kind}")


def _size(nbytes: int) -> str:
    from cnnkit.ops.limits import size_text

    return size_text(nbytes)


def check_safetensors(path: Path) -> None:
    """UnsafeFile unless ``path``'s header is of a sane size and names a sane number of tensors.

    The safetensors reader itself checks every tensor's dtype, shape and
    offsets against the file (a tensor that declares more than the file holds
    is refused without allocating); what it does not bound is its header (up
    to 100 MB of JSON) and the count of tensors, each one a Python object.
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise UnsafeFile("too short for a .safetensors header")
        (header_size,) = struct.unpack("<Q", head)
        if header_size > min(size - 8, MAX_SAFETENSORS_HEADER):
            raise UnsafeFile(
                f"its header declares {_size(header_size)}, more than "
                f"{'the file holds' if header_size > size - 8 else 'cnnkit reads'}"
            )
        header = f.read(header_size)
    tensors = header.count(b'"data_offsets"')
    if tensors > MAX_TENSORS:
        raise UnsafeFile(f"it declares {tensors:,} tensors; cnnkit reads up to {MAX_TENSORS:,}")
