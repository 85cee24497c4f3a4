"""Request bodies of ``cnnkit serve``: forms split as HTTP clients build them, bad ones refused."""

from __future__ import annotations

import asyncio

import pytest

from cnnkit.serve.bodies import (
    MAX_FILES,
    RequestError,
    Upload,
    check_length,
    read_limited,
    split_form,
    uploads,
)

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4  # CR, LF and dashes inside the data


def form(dispositions: list[str], data: list[bytes], boundary: str = "b0uNd") -> bytes:
    """A form body with a part per (Content-Disposition, bytes), written out by hand."""
    parts = [
        f"--{boundary}\r\nContent-Disposition: {d}\r\nContent-Type: image/png\r\n\r\n".encode(
            "utf-8", "surrogateescape"
        )
        + payload
        + b"\r\n"
        for d, payload in zip(dispositions, data, strict=True)
    ]
    return b"".join(parts) + f"--{boundary}--\r\n".encode()


def test_a_form_gives_its_files_in_order_with_their_names_and_exact_bytes() -> None:
    dispositions = [
        'form-data; name="image"; filename="a.png"',
        'form-data; name="image"; filename="b c.png"',
        'form-data; name="image"; filename="quote\\".png"',  # a quoted-pair
        'form-data; name="image"; filename="café.png"',  # UTF-8, as browsers send it
        'form-data; name="image"; filename="semi;colon.png"',
        "form-data; name=image; filename*=UTF-8''%C3%A9t%C3%A9.png",  # RFC 2231
        'form-data; name="image"; filename=""',  # no name given: the field's
    ]
    names = ["a.png", "b c.png", 'quote".png', "café.png", "semi;colon.png", "été.png", "image"]
    # A name whose bytes are not UTF-8 is kept, as cnnkit keeps file names.
    dispositions.append('form-data; name="image"; filename="caf\udce9.png"')
    names.append("caf\udce9.png")
    data = [PNG + bytes([i]) for i in range(len(names))]
    body = form(dispositions, data)
    got = split_form("multipart/form-data; boundary=b0uNd", b"preamble\r\n" + body + b"epilogue")
    assert got == [Upload(n, d) for n, d in zip(names, data, strict=True)]


def test_a_browser_form_with_padding_and_a_text_field_between() -> None:
    boundary = "----WebKitFormBoundary7MA4YWxkTrZu0gW"
    body = (
        (
            f"--{boundary}  \r\n"  # transport padding after the delimiter
            'Content-Disposition: form-data; name="image"; filename="x.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + PNG
        + f"\r\n--{boundary}--\r\n".encode()
    )
    assert split_form(f"multipart/form-data; boundary={boundary}", body) == [Upload("x.png", PNG)]
    with_field = body.replace(
        f"--{boundary}--".encode(),
        f'--{boundary}\r\nContent-Disposition: form-data; name="top_k"\r\n\r\n3\r\n'
        f"--{boundary}--".encode(),
    )
    with pytest.raises(RequestError, match="form field 'top_k' is not a file") as refused:
        split_form(f'multipart/form-data; boundary="{boundary}"', with_field)
    assert refused.value.status == 400


@pytest.mark.parametrize(
    "content_type, body, status, words",
    [
        ("multipart/form-data", b"--x\r\n", 400, "no usable boundary"),
        ("multipart/form-data; boundary=x", b"nothing here", 400, "does not start"),
        ("multipart/form-data; boundary=x", b"--x\r\nContent-Disposition: form-data; "
         b'name="a"; filename="a"\r\n\r\ndata', 400, "ends before its closing boundary"),
        ("multipart/form-data; boundary=x", b"--x\r\nno blank line\r\n--x--", 400, "headers"),
        ("multipart/form-data; boundary=x", b"--xjunk\r\n\r\n\r\n--x--", 400, "boundary line"),
        ("multipart/form-data; boundary=x", b"--x--\r\n", 400, "holds no file"),
        ("multipart/form-data; boundary=x", b'--x\r\nContent-Disposition: form-data; name="a"; '
         b'filename="e.png"\r\n\r\n\r\n--x--', 400, "is empty"),
    ],
)  # fmt: skip
def test_bad_forms_are_refused_with_their_reason(content_type, body, status, words) -> None:
    with pytest.raises(RequestError, match=words) as refused:
        split_form(content_type, body)
    assert refused.value.status == status


def test_more_files_than_a_request_may_carry_is_413() -> None:
    content_type = "multipart/form-data; boundary=b0uNd"
    for n, status in ((MAX_FILES + 1, 413), (MAX_FILES, None)):
        body = form([f'form-data; name="image"; filename="{i}.png"' for i in range(n)], [PNG] * n)
        if status is None:
            assert len(split_form(content_type, body)) == MAX_FILES
            continue
        with pytest.raises(RequestError) as refused:
            split_form(content_type, body)
        assert refused.value.status == status


def test_a_raw_body_is_one_image_named_dash_whatever_its_type_says() -> None:
    for content_type in (None, "image/png", "application/octet-stream",
                         "application/x-www-form-urlencoded"):  # fmt: skip
        assert uploads(content_type, PNG) == ([Upload("-", PNG)], False)
    for content_type in ("application/json", "text/plain; charset=utf-8"):
        with pytest.raises(RequestError) as refused:
            uploads(content_type, PNG)
        assert refused.value.status == 415
    with pytest.raises(RequestError, match="empty"):
        uploads("image/png", b"")


def test_the_size_limit_is_kept_declared_or_counted() -> None:
    check_length("100", 100)
    check_length(None, 100)
    for declared, status in (("101", 413), ("ten", 400), ("-1", 400)):
        with pytest.raises(RequestError) as refused:
            check_length(declared, 100)
        assert refused.value.status == status

    async def chunks(sizes):
        for n in sizes:
            yield bytes(n)

    assert asyncio.run(read_limited(chunks([40, 60]), 100)) == bytes(100)
    taken = []

    async def endless():
        while True:
            taken.append(1)
            yield bytes(64)

    with pytest.raises(RequestError) as refused:
        asyncio.run(read_limited(endless(), 1000))
    assert refused.value.status == 413 and len(taken) == 16  # stopped at the limit
