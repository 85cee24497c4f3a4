"""``cnnkit serve`` through a real HTTP client: records, batching, explain, limits, shutdown.

One server (lenet5 at 16×16, an API key, a 1 MB body limit, a 20,000-pixel
decode limit) answers most tests; the records it gives are held against
what ``cnnkit predict --json`` writes for the same files.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import io
import json
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.helpers import cnnkit_in_process, make_checkpoint, make_image
from tests.serve import server

KEY = "k3y-for-tests"
IMAGES = 24
PIXEL_LIMIT = 20_000


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("serve")
    ckpt = make_checkpoint(root / "m.ckpt", "lenet5", ["a", "b", "c"], 1, (16, 16), seed=3)
    pics = root / "pics"
    pics.mkdir()
    for i in range(IMAGES):  # sizes and colours differ: each image its own scores
        make_image(pics / f"{i:02d}.png", 12 + i, 30 - i // 2, channels=3 if i % 2 else 1, seed=i)
    return {"root": root, "ckpt": ckpt, "pics": pics}


def predict_json(where: Path, *args: object) -> list[str]:
    """The lines ``cnnkit predict ARGS --json`` prints, run in ``where`` through its entry point."""
    from cnnkit import cli

    out = io.StringIO()
    before = (sys.argv, os.getcwd())
    sys.argv = ["cnnkit", "predict", *map(str, args), "--json", "-q"]
    os.chdir(where)
    try:
        with contextlib.redirect_stdout(out):
            cli.main()
    except SystemExit as exc:
        assert not exc.code, exc.code
    finally:
        sys.argv = before[0]
        os.chdir(before[1])
    return out.getvalue().splitlines()


@pytest.fixture(scope="module")
def expected(files) -> dict[str, dict]:
    """``cnnkit predict CKPT NAMES --json``, run where the images are: record by file name."""
    names = sorted(p.name for p in files["pics"].iterdir())
    records = [json.loads(line) for line in predict_json(files["pics"], files["ckpt"], *names)]
    by_name = {r["path"]: r for r in records}
    # Every image scores differently: a record given to the wrong request would show.
    assert len({json.dumps(r["topk"]) for r in records}) == IMAGES
    return by_name


@pytest.fixture(scope="module")
def served(files):
    proc = server.start(
        files["ckpt"],
        "--max-wait-ms", "50", "--max-body-mb", "1",
        key=KEY,
        env={"CNNKIT_MAX_IMAGE_PIXELS": str(PIXEL_LIMIT)},
    )  # fmt: skip
    yield proc
    assert proc.stop() == 0, proc.stderr


def _bytes(files, name: str) -> bytes:
    return (files["pics"] / name).read_bytes()


def test_records_are_what_predict_writes(served, files, expected) -> None:
    names = sorted(expected)
    answer = served.post_form("/v1/predict", [(n, _bytes(files, n)) for n in names])
    assert answer.status == 200, answer.body
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == {"records": [expected[n] for n in names]}
    # A raw body is one image, recorded as predict records an image read from stdin: "-".
    for name in names[:3]:
        answer = served.post_image("/v1/predict", _bytes(files, name))
        assert answer.status == 200, answer.body
        assert answer.json() == {**expected[name], "path": "-"}
    answer = served.post_image("/v1/predict?top_k=2", _bytes(files, names[0]))
    assert answer.json()["topk"] == expected[names[0]]["topk"][:2]


def test_concurrent_clients_get_their_own_records_from_shared_batches(
    served, files, expected
) -> None:
    names = sorted(expected)
    clients, rounds = 16, 4
    start = threading.Barrier(clients)
    batches: list[int] = []
    wrong: list[str] = []

    def client(c: int) -> None:
        start.wait()
        for r in range(rounds):
            name = names[(c * rounds + r) % len(names)]
            answer = served.post_form("/v1/predict", [(name, _bytes(files, name))])
            if answer.status != 200 or answer.json() != {"records": [expected[name]]}:
                wrong.append(f"{name}: {answer.status} {answer.body[:200]!r}")
            batches.append(int(answer.headers["x-cnnkit-batch"]))

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == []
    assert len(batches) == clients * rounds
    assert max(batches) > 1, batches  # requests of different clients shared model calls
    stats = served.request("GET", "/v1/stats").json()
    assert stats["largest_batch"] >= max(batches) and stats["model_calls"] < stats["images"]


def test_requests_asking_for_different_top_k_share_a_batch(files, expected) -> None:
    import cnnkit
    from cnnkit.io.image import read_image
    from cnnkit.serve.service import Service

    names = sorted(expected)[:4]
    clf = cnnkit.load(files["ckpt"], device="cpu")
    service = Service(clf, max_batch=8, max_wait_s=0.0)
    try:
        batch = np.stack(
            [clf.predictor.prepare_image(read_image(files["pics"] / n)) for n in names]
        )
        tags = list(zip(names, [1, 3, 2, 1], strict=True))
        records = service._records(batch, tags)
    finally:
        service.close()
    for record, (name, k) in zip(records, tags, strict=True):
        assert record == {**expected[name], "topk": expected[name]["topk"][:k]}


def test_explain_answers_the_record_and_the_overlay_explain_draws(served, files, expected) -> None:
    import cnnkit

    name = sorted(expected)[5]
    answer = served.post_image("/v1/explain", _bytes(files, name))
    assert answer.status == 200, answer.body
    got = answer.json()
    explanation = got.pop("explanation")
    assert got == {**expected[name], "path": "-"}
    clf = cnnkit.load(files["ckpt"], device="cpu")
    ex = cnnkit.explain(clf, files["pics"] / name)
    record = ex.record()
    del record["path"]
    png = base64.b64decode(explanation.pop("overlay_png"))
    assert explanation == record
    drawn = cv2.cvtColor(
        cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB
    )
    assert np.array_equal(drawn, ex.overlay())  # the picture `cnnkit explain` writes
    # Another class, and the plain overlay at the image's own size.
    answer = served.post_image("/v1/explain?class=c&annotate=false", _bytes(files, name))
    assert answer.status == 200, answer.body
    explanation = answer.json()["explanation"]
    assert explanation["label"] == "c"
    plain = cv2.imdecode(np.frombuffer(base64.b64decode(explanation["overlay_png"]), np.uint8), 1)
    assert plain.shape[:2] == cv2.imread(str(files["pics"] / name)).shape[:2]
    answer = served.post_image("/v1/explain?class=zebra", _bytes(files, name))
    assert answer.status == 422
    assert "class 'zebra'" in answer.json()["error"] and "known classes" in answer.json()["hint"]


def test_model_is_what_inspect_says(served, files, monkeypatch, capsys) -> None:
    code, out, err = cnnkit_in_process(monkeypatch, capsys, "inspect", str(files["ckpt"]), "--json")
    assert code == 0, err
    answer = served.request("GET", "/v1/model")
    assert answer.status == 200
    assert answer.json() == json.loads(out)


def _png(h: int, w: int) -> bytes:
    return cv2.imencode(".png", np.full((h, w, 3), 128, np.uint8))[1].tobytes()


def test_bad_requests_get_json_errors_and_the_server_stays_up(served, files, expected) -> None:
    good = _bytes(files, "00.png")
    body, form_type = server.form([("a.png", good)])
    cases = [
        ("POST", "/v1/predict", b"", {}, 400),
        ("POST", "/v1/predict", b"hello, this is not an image", {}, 422),
        ("POST", "/v1/predict", good[:60], {}, 422),  # a PNG cut short
        ("POST", "/v1/predict", b"{}", {"Content-Type": "application/json"}, 415),
        ("POST", "/v1/predict", body[:-30], {"Content-Type": form_type}, 400),  # no end
        ("POST", "/v1/predict", good, {"Content-Type": "multipart/form-data"}, 400),  # no boundary
        ("POST", "/v1/predict?top_k=0", good, {}, 400),
        ("POST", "/v1/predict?topk=3", good, {}, 400),
        ("POST", "/v1/explain?alpha=2", good, {}, 400),
        ("GET", "/v1/predict", None, {}, 405),
        ("GET", "/v1/nothing", None, {}, 404),
        ("GET", "/static/../app.py", None, {}, 404),
    ]
    for method, path, data, headers, status in cases:
        answer = served.request(method, path, data, headers)
        assert answer.status == status, (path, data and data[:20], answer.body)
        assert answer.json()["error"], answer.body
    assert served.request("GET", "/v1/predict").headers["allow"] == "POST"
    text_field, text_type = server.form([("a.png", good)])
    text_field = text_field.replace(b'; filename="a.png"', b"")
    answer = served.request("POST", "/v1/predict", text_field, {"Content-Type": text_type})
    assert answer.status == 400 and "is not a file" in answer.json()["error"]
    too_many = server.form([(f"{i}.png", good) for i in range(65)])
    answer = served.request("POST", "/v1/predict", too_many[0], {"Content-Type": too_many[1]})
    assert answer.status == 413 and "64" in answer.json()["hint"]
    # Over the decode limit: refused from the header, with a hint the client can follow.
    answer = served.post_image("/v1/predict", _png(200, 200))
    assert answer.status == 422
    assert "over the decode limit of 20,000 pixels" in answer.json()["error"]
    assert "send a smaller image" in answer.json()["hint"]
    # In a form, an image that cannot be read gets predict's error record; the rest go on.
    answer = served.post_form(
        "/v1/predict", [("00.png", good), ("bad.png", b"not an image at all")]
    )
    assert answer.status == 200
    first, bad = answer.json()["records"]
    assert first == expected["00.png"]
    assert bad["path"] == "bad.png" and "not a readable image" in bad["error"]
    # Bytes that are not HTTP at all.
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as raw:
        raw.sendall(b"\x16\x03\x01 not http\r\n\r\n")
        assert raw.recv(100).startswith(b"HTTP/1.1 400")
    assert served.request("GET", "/healthz").json() == {"status": "ok"}
    assert served.post_image("/v1/predict", good).json() == {**expected["00.png"], "path": "-"}
    assert served.proc.poll() is None


def test_a_body_over_the_limit_is_refused_before_it_is_read(served, expected, files) -> None:
    # Declared too large: answered at once, though not one byte of the body was sent.
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=10)
    conn.putrequest("POST", "/v1/predict")
    conn.putheader("Authorization", f"Bearer {KEY}")
    conn.putheader("Content-Length", str(50_000_000))
    conn.endheaders()
    answer = conn.getresponse()
    assert answer.status == 413 and "1,000,000 bytes" in json.loads(answer.read())["error"]
    conn.close()
    # No length declared (chunked): refused once the bytes read pass the limit.
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=10)
    conn.putrequest("POST", "/v1/predict")
    conn.putheader("Authorization", f"Bearer {KEY}")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    chunk = b"\x89PNG\r\n\x1a\n" + bytes(65_528)
    try:
        for _ in range(20):  # 1.3 MB
            conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        conn.send(b"0\r\n\r\n")
    except OSError:
        pass  # the server may close the connection once it has answered
    assert conn.getresponse().status == 413
    conn.close()
    assert served.request("GET", "/healthz").status == 200
    assert served.post_image("/v1/predict", _bytes(files, "01.png")).status == 200


def test_the_api_needs_the_key_and_the_page_and_health_do_not(served, files) -> None:
    image = _bytes(files, "00.png")
    for key in (None, "wrong", KEY + "x", KEY[:-1]):
        answer = served.post_image("/v1/predict", image, key=key)
        assert answer.status == 401, key
        assert answer.headers["www-authenticate"] == "Bearer"
        assert "API key" in answer.json()["error"] and "Bearer" in answer.json()["hint"]
    assert served.request("GET", "/v1/model", key=None).status == 401
    headers = {"X-API-Key": KEY, "Content-Type": "image/png"}
    assert served.request("POST", "/v1/predict", image, headers, key=None).status == 200
    for path in ("/healthz", "/", "/docs", "/openapi.json"):
        assert served.request("GET", path, key=None).status == 200, path
    doc = served.request("GET", "/openapi.json", key=None).json()
    assert {"/v1/predict", "/v1/explain", "/v1/model", "/healthz"} <= set(doc["paths"])
    page = served.request("GET", "/docs", key=None)
    assert b"/v1/predict" in page.body and b"<script" not in page.body
    assert "default-src 'self'" in page.headers["content-security-policy"]


def test_an_onnx_model_predicts_explains_by_occlusion_and_stops_on_sigint(files, expected):
    from cnnkit.onnxexport import export_onnx

    onnx = files["root"] / "m.onnx"
    export_onnx(str(files["ckpt"]), onnx)
    served = server.start(onnx)
    try:
        image = _bytes(files, "03.png")
        record = served.post_image("/v1/predict", image).json()
        want = expected["03.png"]
        assert record["label"] == want["label"] and abs(record["score"] - want["score"]) < 1e-4
        answer = served.post_image("/v1/explain", image)
        assert answer.status == 422
        assert "gradients" in answer.json()["error"]
        assert "method=occlusion" in answer.json()["hint"]
        answer = served.post_image("/v1/explain?method=occlusion", image)
        assert answer.status == 200, answer.body
        assert answer.json()["explanation"]["method"] == "occlusion"
        assert served.request("GET", "/v1/model").json()["kind"] == "onnx"
        # The .onnx path never loads torch, serving included.
        assert "libtorch" not in Path(f"/proc/{served.proc.pid}/maps").read_text()
    finally:
        status = served.stop(signal.SIGINT)
    assert status == 0
    assert "stopped on SIGINT after answering 4 requests" in served.stderr
    assert "Traceback" not in served.stderr


def test_a_slow_upload_times_out_and_sigterm_ends_the_server_cleanly(files) -> None:
    served = server.start(files["ckpt"], "--timeout", "1")
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=10)
    conn.putrequest("POST", "/v1/predict")
    conn.putheader("Content-Length", "1000")
    conn.endheaders()
    conn.send(b"\x89PNG")  # and then nothing more
    began = time.monotonic()
    answer = conn.getresponse()
    assert answer.status == 408 and "within 1 s" in json.loads(answer.read())["error"]
    assert time.monotonic() - began < 5
    conn.close()
    assert served.request("GET", "/healthz").status == 200
    assert served.stop(signal.SIGTERM) == 0
    assert "stopped on SIGTERM after answering 2 requests" in served.stderr
    assert "Traceback" not in served.stderr and "error" not in served.stderr.lower()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", served.port), timeout=2)
