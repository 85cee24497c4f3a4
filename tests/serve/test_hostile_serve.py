"""Hostile requests to ``cnnkit serve``: query values that only look like numbers.

A refusal is a 400 with a JSON error, never a 500 (which tells the client the
server failed, and logs a warning for every such request).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from tests.helpers import make_checkpoint
from tests.serve import server


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile-serve")
    ckpt = make_checkpoint(root / "m.ckpt", "lenet5", ["a", "b", "c"], 1, (16, 16), seed=3)
    proc = server.start(ckpt)
    yield proc
    proc.stop()


@pytest.mark.parametrize(
    "value",
    [
        "%C2%B2",  # '²': str.isdigit() says yes, int() says no
        "1" * 5000,  # more digits than int() converts
        "%D9%A3",  # '٣', an Arabic-Indic three: not a number a client means
    ],
)
def test_top_k_that_only_looks_like_a_number_is_a_400(served, value):
    png = cv2.imencode(".png", np.full((20, 20, 3), 128, np.uint8))[1].tobytes()
    answer = served.post_image(f"/v1/predict?top_k={value}", png)
    assert answer.status == 400, answer.body[:300]
    assert "top_k" in answer.json()["error"]
    assert "failed" not in served.stderr


@pytest.mark.parametrize("declared, status", [("\u00b2", 400), ("9" * 5000, 413)])
def test_content_length_that_int_cannot_read_is_refused(declared, status):
    # The HTTP layer in front may pass such a header on: the check must refuse it itself.
    from cnnkit.serve.bodies import RequestError, check_length

    with pytest.raises(RequestError) as refused:
        check_length(declared, 1_000_000)
    assert refused.value.status == status
