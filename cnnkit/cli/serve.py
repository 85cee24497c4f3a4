"""``cnnkit serve``: one model behind an HTTP API, requests from concurrent clients batched."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from cnnkit import console
from cnnkit.cli.app import CheckpointArg, DeviceOpt, QuietOpt, app
from cnnkit.cli.output import show_messages
from cnnkit.training.options import MAX_BATCH_SIZE, MAX_WORKERS


@app.command(
    epilog="Examples:\n\n"
    "  cnnkit serve runs/pets/checkpoints/best.ckpt  # http://127.0.0.1:8000/docs\n\n"
    "  curl --data-binary @cat.jpg http://127.0.0.1:8000/v1/predict\n\n"
    "  curl -F image=@a.png -F image=@b.png 'http://127.0.0.1:8000/v1/predict?top_k=3'\n\n"
    "  CNNKIT_API_KEY=s3cret cnnkit serve best.onnx --host 0.0.0.0 --port 8080",
)
def serve(
    model: CheckpointArg,
    host: Annotated[
        str,
        typer.Option(
            help="Address to listen on: 127.0.0.1 is this machine only; 0.0.0.0 every "
            "interface (then give --api-key)."
        ),
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="Port to listen on; 0 picks a free one.")
    ] = 8000,
    max_batch: Annotated[
        int,
        typer.Option(
            "--max-batch", min=1, max=MAX_BATCH_SIZE, help="Images per model call at most."
        ),
    ] = 32,
    max_wait_ms: Annotated[
        float,
        typer.Option(
            "--max-wait-ms",
            min=0,
            max=10_000,
            help="How long the first image of a batch waits for other requests' images (it "
            "waits only while other requests are being decoded).",
        ),
    ] = 10.0,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            max=MAX_WORKERS,
            help="Threads decoding request images (default: half the cores of the CPU "
            "budget, 1 to 4). The model runs on one thread of its own.",
            show_default=False,
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            envvar="CNNKIT_API_KEY",
            help="Key that requests to /v1/ must carry (Authorization: Bearer KEY, or "
            "X-API-Key: KEY); from $CNNKIT_API_KEY, which other users cannot read in the "
            "process list.",
            show_default=False,
        ),
    ] = None,
    max_body_mb: Annotated[
        float,
        typer.Option(
            "--max-body-mb", min=0.001, max=4096, help="Largest request body, in MB (413 above)."
        ),
    ] = 20.0,
    timeout: Annotated[
        float,
        typer.Option(
            min=0.1,
            max=3600,
            help="Seconds a request may take, upload included (then 408 if its body had not "
            "arrived, else 504).",
        ),
    ] = 30.0,
    device: DeviceOpt = "auto",
    quiet: QuietOpt = False,
) -> None:
    """Serve a model over HTTP: POST /v1/predict and /v1/explain, GET /v1/model and /healthz.

    Answers are the records predict and explain write, as JSON; images of
    requests that arrive together are classified in one model call. The
    API's description is at /docs and /openapi.json. SIGINT or SIGTERM stop
    it after the requests in progress (exit status 0). Needs the serve
    extra: pip install 'cnnkit\\[serve]'.
    """
    show_messages(quiet)
    from cnnkit.errors import InputError
    from cnnkit.serve import require_stack

    require_stack()
    if api_key is not None and not api_key.strip():
        raise InputError("--api-key is empty", hint="give a key, or leave --api-key out")
    from cnnkit.serve.runner import is_loopback, listen

    sock = listen(host, port)  # before loading: a port in use is said at once
    try:
        if not is_loopback(sock) and api_key is None:
            console.warn(
                f"listening on {host} without --api-key: anyone who can reach this "
                "machine can use the model"
            )
        _serve(sock, str(model), max_batch, max_wait_ms, workers, api_key, max_body_mb,
               timeout, device)  # fmt: skip
    finally:
        sock.close()


def _serve(
    sock: object,
    model: str,
    max_batch: int,
    max_wait_ms: float,
    workers: int | None,
    api_key: str | None,
    max_body_mb: float,
    timeout: float,
    device: str,
) -> None:
    import signal

    import cnnkit
    from cnnkit.io.pipeline import decode_workers
    from cnnkit.serve.app import build_app
    from cnnkit.serve.runner import run, url_of
    from cnnkit.serve.service import Service

    workers = workers or decode_workers()
    clf = cnnkit.load(model, device=device, batch_size=max_batch, workers=workers)
    service = Service(clf, max_batch, max_wait_ms / 1000, workers)
    try:
        service.warm_up()
        application = build_app(
            service, max_body=int(max_body_mb * 1_000_000), timeout_s=timeout, api_key=api_key
        )
        url = url_of(sock)  # type: ignore[arg-type]
        # Said even with --quiet: the address is what a caller of --port 0 needs.
        sys.stderr.write(
            f"serving {clf.model_name} ({len(clf.classes)} classes, {clf.backend} on "
            f"{clf.device}) at {url}/ (API docs at {url}/docs); Ctrl-C stops\n"
        )
        sys.stderr.flush()
        stopped_by = run(application, sock)  # type: ignore[arg-type]
    finally:
        service.close()
    answered = sum(service.statuses.values())
    why = f" on {signal.Signals(stopped_by).name}" if stopped_by else ""
    console.info(f"stopped{why} after answering {answered} requests")
