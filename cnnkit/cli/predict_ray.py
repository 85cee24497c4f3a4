"""``cnnkit predict --ray``: the same records as ``cnnkit predict``, computed on a Ray cluster."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from cnnkit import console
from cnnkit.cli.output import record_error_line
from cnnkit.errors import CnnkitError


def predict_on_ray(
    checkpoint: Path,
    inputs: list[str],
    address: str | None,
    fmt: str,
    top_k: int,
    batch_size: int,
    window: int | None,
    stride: int | None,
    device: str,
    precision: str,
    colour: Any,
) -> None:
    """Expand ``inputs`` as predict does, classify them on Ray, write records in input order.

    The model is opened here first (on the CPU), so that a wrong reference is
    one error line before any cluster is started; ``fmt``: table, jsonl or csv.
    """
    from cnnkit.ray import predict_on_ray as run
    from cnnkit.ray import require_ray

    require_ray()
    from cnnkit.io.sources import expand_sources
    from cnnkit.predict import PredictInput
    from cnnkit.records import CsvWriter, JsonLinesWriter, TableWriter, csv_columns
    from cnnkit.sources import open_model

    model = str(checkpoint)
    opened = open_model(model, "cpu", threads=1, precision=precision)
    video_model = opened.source.input.frames is not None
    if window is not None and video_model:
        opened.backend.check_window(window)
    del opened  # the actors load their own
    # Every input is known before the cluster starts: stdin's paths (or one image) are read whole.
    sources = expand_sources(inputs)
    items = [PredictInput(s.path, s.kind == "video", s.error, s.data) for s in sources]
    if fmt == "jsonl":
        writer: Any = JsonLinesWriter(sys.stdout)
    elif fmt == "csv":
        has_video = any(s.kind == "video" for s in sources)
        writer = CsvWriter(sys.stdout, csv_columns(has_video, video_model))
    else:
        writer = TableWriter(sys.stdout)
    failed = 0
    options = {"batch_size": batch_size, "window": window, "stride": stride, "device": device,
               "precision": precision, "background": colour, "address": address}  # fmt: skip
    results = run(model, items, top_k, **options)
    try:
        for records in results:
            for r in records:
                if "error" in r:
                    failed += 1
                    sys.stderr.write(record_error_line(r) + "\n")
            writer.write(records)
        writer.close()
    finally:
        results.close()  # shuts down the local Ray it started, whatever happened
    if not items:
        console.info("note: no inputs (stdin was empty)")
    if failed:
        raise CnnkitError(
            f"{failed} of {len(items)} inputs could not be classified",
            hint="see the error lines above; the other results are complete",
        )
