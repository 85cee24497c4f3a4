"""Request bodies: read within a size limit, and split into the images they carry.

A body is one image (any content type but a form's or JSON's), or a
``multipart/form-data`` form whose file fields are images. The body is read
whole into memory, which the size limit bounds (a declared Content-Length
over it is refused before a byte is read, and a chunked body as soon as it
passes it); a form is then split in memory, so no part of a request is ever
written to disk.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.message import Message
from email.utils import collapse_rfc2231_value

from cnnkit.errors import CnnkitError

# File fields one request may carry; each becomes a row of a model batch.
MAX_FILES = 64


class RequestError(CnnkitError):
    """A request the server refuses, with the HTTP status that says why."""

    def __init__(self, status: int, message: str, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.status = status


@dataclass(frozen=True, slots=True)
class Upload:
    """One image of a request: its name for the records (a form's file name, or "-")."""

    name: str
    data: bytes


def too_large(limit: int) -> RequestError:
    return RequestError(
        413,
        f"the request body is over the server's limit of {limit:,} bytes",
        hint="send a smaller image, or fewer in one request (the server's --max-body-mb)",
    )


def check_length(declared: str | None, limit: int) -> None:
    """Refuse a declared Content-Length over ``limit`` before reading any of the body."""
    if declared is None:
        return
    text = declared.strip()
    # ASCII digits only (str.isdigit() takes '²', which int() refuses); a length of
    # more digits than int() converts is over any limit.
    if not (text.isascii() and text.isdigit()):
        raise RequestError(400, f"Content-Length {declared!r} is not a number of bytes")
    if len(text) > 18 or int(text) > limit:
        raise too_large(limit)


async def read_limited(chunks: AsyncIterator[bytes], limit: int) -> bytes:
    """The body from ``chunks``, refused (413) as soon as it passes ``limit`` bytes."""
    data = bytearray()
    async for chunk in chunks:
        data += chunk
        if len(data) > limit:
            raise too_large(limit)
    return bytes(data)


_EXAMPLES = "curl --data-binary @a.png URL, or curl -F image=@a.png -F image=@b.png URL"
# Bodies that say they are something else than an image. (Not a URL-encoded form:
# curl --data-binary sends the image's bytes unchanged under that type.)
REFUSED_TYPES = ("application/json", "text/")


def uploads(content_type: str | None, body: bytes) -> tuple[list[Upload], bool]:
    """(the images of a request, whether it was a form).

    A form's file fields in order, each named by its file name; any other
    body is one image named "-", as predict names an image read from stdin
    (its bytes tell its format, whatever its type says).
    """
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    if kind == "multipart/form-data":
        return split_form(content_type or "", body), True
    if kind.startswith(REFUSED_TYPES):
        raise RequestError(
            415,
            f"a body of type {kind} is not an image",
            hint=f"send the image's bytes or a multipart form: {_EXAMPLES}",
        )
    if not body:
        raise RequestError(400, "the request body is empty", hint=f"send an image: {_EXAMPLES}")
    return [Upload("-", body)], False


def split_form(content_type: str, body: bytes) -> list[Upload]:
    """The file fields of a ``multipart/form-data`` body, in order (400 for a bad form).

    The body is in memory already, so it is split where its delimiter lines
    are (``bytes.find``, in C) rather than fed through a streaming parser,
    which took a quarter of the event loop's time for forms of small images.
    RFC 7578 forms: CRLF line ends, a delimiter line may end in spaces
    (RFC 2046's transport padding), a preamble and an epilogue are ignored.
    """
    boundary = _param(_header(f"Content-Type: {content_type}", "content-type"), "boundary")
    if not boundary or len(boundary) > 70:  # RFC 2046: 1 to 70 characters
        raise RequestError(
            400,
            "the multipart form has no usable boundary",
            hint="let the HTTP client build the form (curl -F image=@a.png)",
        )
    delimiter = b"--" + boundary.encode("latin-1", "replace")
    at = body.find(delimiter)
    if at < 0 or (at > 0 and body[at - 2 : at] != b"\r\n"):
        raise RequestError(400, "the multipart form does not start with its boundary")
    uploads: list[Upload] = []
    pos = at + len(delimiter)
    while True:
        if body.startswith(b"--", pos):
            return _checked(uploads)  # the closing delimiter; what follows is ignored
        pos = _line_end(body, pos)
        end = body.find(b"\r\n" + delimiter, pos)
        if end < 0:
            raise RequestError(400, "the multipart form ends before its closing boundary")
        if len(uploads) == MAX_FILES:
            raise RequestError(
                413,
                f"the form has more than {MAX_FILES} fields",
                hint=f"send at most {MAX_FILES} images in one request",
            )
        uploads.append(_part(body[pos:end]))
        pos = end + 2 + len(delimiter)


def _line_end(body: bytes, pos: int) -> int:
    """Where the line after a delimiter starts (past transport padding), or 400."""
    while body[pos : pos + 1] in (b" ", b"\t"):
        pos += 1
    if not body.startswith(b"\r\n", pos):
        raise RequestError(400, "the multipart form has a malformed boundary line")
    return pos + 2


# Bytes of one part's headers at most: a Content-Disposition and a Content-Type are
# a few hundred; more is not a form a browser or an HTTP library makes.
MAX_PART_HEADERS = 16 * 1024


def _part(part: bytes) -> Upload:
    if part.startswith(b"\r\n"):  # a part with no headers
        head, data = b"", part[2:]
    else:
        split = part.find(b"\r\n\r\n")
        if split < 0 or split > MAX_PART_HEADERS:
            raise RequestError(400, "a part of the multipart form has no readable headers")
        head, data = part[:split], part[split + 4 :]
    # Read as Latin-1, one character a byte, so that the quoting is parsed whatever
    # the names' bytes are (_param makes them text).
    disposition = _header(head.decode("latin-1"), "content-disposition")
    field = _param(disposition, "name") or ""
    filename = _param(disposition, "filename")
    in_form = disposition is not None and disposition.get_content_disposition() == "form-data"
    if not in_form or filename is None:
        raise RequestError(
            400,
            f"form field {field!r} is not a file",
            hint="send images as file fields (curl -F image=@a.png); options go in the "
            "query string (?top_k=3)",
        )
    name = filename or field or "-"
    if not data:
        raise RequestError(400, f"the file {name!r} of the form is empty")
    return Upload(name, data)


def _header(head: str, header: str) -> Message | None:
    """``header`` of CRLF-separated header lines, as the standard library's e-mail reads it
    (multipart bodies share their headers' quoting and RFC 2231's ``filename*=``)."""
    for line in head.split("\r\n"):
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() == header:
            message = Message()
            message[header] = value.strip()
            return message
    return None


def _param(message: Message | None, name: str) -> str | None:
    """A parameter of a header read as Latin-1, as text: RFC 2231's ``name*=`` by its
    charset, others as UTF-8 with the bytes that are not kept as surrogate escapes (as
    cnnkit keeps file names; JSON writes them ``\\udcXX``)."""
    if message is None:
        return None
    header = next(iter(message.keys()))
    value = message.get_param(name, header=header)
    if value is None:
        return None
    if isinstance(value, tuple):
        return collapse_rfc2231_value(value)
    return str(value).encode("latin-1", "replace").decode("utf-8", "surrogateescape")


def _checked(uploads: list[Upload]) -> list[Upload]:
    if not uploads:
        raise RequestError(400, "the multipart form holds no file", hint=_EXAMPLES)
    return uploads
