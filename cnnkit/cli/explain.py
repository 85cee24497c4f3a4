"""``cnnkit explain``: where the network looked, as heat maps over the inputs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from cnnkit import console
from cnnkit.cli.app import BackgroundOpt, CheckpointArg, DeviceOpt, QuietOpt, app
from cnnkit.textout import shown
from cnnkit.training.options import MAX_BATCH_SIZE, MAX_STRIDE, MAX_TOP_K


@app.command(
    epilog="Examples:\n\n"
    "  cnnkit explain runs/train/checkpoints/best.ckpt digit.png  # explain/digit-gradcam.png\n\n"
    "  cnnkit explain best.ckpt photos/ -o maps --method gradcam++ --json\n\n"
    "  cnnkit explain best.ckpt cat.jpg --class dog --layer layer3\n\n"
    "  cnnkit explain best.onnx digit.png --method occlusion",
)
def explain(
    checkpoint: CheckpointArg,
    inputs: Annotated[
        list[str],
        typer.Argument(
            help="Images, videos, folders (recursive), globs, or - for paths (or one image) on "
            "stdin.",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path,
        typer.Option("-o", "--output", file_okay=False, help="Folder for the overlay PNGs."),
    ] = Path("explain"),
    method: Annotated[
        str,
        typer.Option(
            help="gradcam (the last convolution stage's activations weighted by the class "
            "score's gradient), gradcam++, or occlusion (the score's drop under a sliding grey "
            "patch: any model, .onnx included)."
        ),
    ] = "gradcam",
    class_: Annotated[
        str | None,
        typer.Option("--class", help="Class to explain (default: each input's prediction)."),
    ] = None,
    top_k: Annotated[
        int | None,
        typer.Option(
            "--top-k",
            min=1,
            max=MAX_TOP_K,
            help="Explain each input's K most likely classes: K maps per input, ranked "
            "(not with --class).",
        ),
    ] = None,
    layer: Annotated[
        str | None,
        typer.Option(
            help="Layer for gradcam, as `cnnkit inspect` names them (default: the last one "
            "whose output is still a map)."
        ),
    ] = None,
    stride: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=MAX_STRIDE,
            help="A 2D model on a video: explain every Nth frame (default 1), like predict. "
            "A 3D model explains its windows of T frames one after another.",
        ),
    ] = None,
    alpha: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Opacity of the heat map over the image.")
    ] = 0.5,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, max=MAX_BATCH_SIZE, help="Inputs per batch.")
    ] = 16,
    background: BackgroundOpt = None,
    device: DeviceOpt = "auto",
    json_: Annotated[
        bool, typer.Option("--json", help="One JSON line per map on stdout (JSON Lines).")
    ] = False,
    quiet: QuietOpt = False,
) -> None:
    """Draw where the network looked: a heat map over each input, for a class.

    One overlay PNG per image, at the image's own resolution, with the class and
    its score written on it (a map of the same name from an earlier run is
    replaced); a video gives one MP4. With --json, one JSON line per image or
    video window on stdout: path, label, score, method, layer, output, and the
    peak as x and y pixels.
    """
    console.set_quiet(quiet)
    from cnnkit.data.preprocess import parse_colour
    from cnnkit.errors import CnnkitError, InputError
    from cnnkit.explain import check_method
    from cnnkit.inference import open_predictor
    from cnnkit.io.atomic import make_folder
    from cnnkit.io.sources import expand_sources
    from cnnkit.onnxmodel import is_onnx_path

    check_method(method, is_onnx_path(checkpoint))
    colour = parse_colour(background) if background is not None else None
    predictor, _ = open_predictor(checkpoint, device, batch_size)
    if colour is not None:
        predictor.set_background(colour)
    if predictor.is_video_model and method == "occlusion":
        raise InputError(
            "--method occlusion draws maps for image models; this is a video model",
            hint="use --method gradcam (maps over time)",
        )
    if top_k is not None and predictor.is_video_model:
        raise InputError(
            "--top-k is for image models; a video model's windows are explained for one class",
            hint="give --class LABEL, or leave both out for each window's prediction",
        )
    if stride is not None and predictor.is_video_model:
        raise InputError(
            f"--stride is for 2D models on videos; {checkpoint} explains windows of "
            f"{predictor.input.frames} frames one after another",
            hint="drop --stride",
        )
    target = None
    if class_ is not None and top_k is not None:
        raise InputError("--class and --top-k both choose the classes", hint="give one of them")
    if class_ is not None:
        if class_ not in predictor.classes:
            from cnnkit.errors import close_match_hint

            raise InputError(
                f"--class {class_!r} is not one of the model's classes",
                hint=close_match_hint(class_, predictor.classes, "class"),
            )
        target = predictor.classes.index(class_)
    chosen_layer = None
    if method != "occlusion":
        from cnnkit.explain import check_map_layer, default_layer

        shape = predictor.input.shape()
        if layer is not None and not layer.strip():
            raise InputError("--layer '' names no layer", hint="leave --layer out for the default")
        if layer is None:
            chosen_layer = default_layer(predictor.model.cpu(), shape)
        else:
            check_map_layer(predictor.model.cpu(), shape, layer)
            chosen_layer = layer
        predictor.model.to(predictor.device)
    elif layer is not None:
        raise InputError("--layer is for gradcam and gradcam++", hint="drop --layer")
    sources = expand_sources(inputs)
    out_dir = make_folder(output, "-o folder")
    # Maps written by an earlier run into a folder that is also an input are not inputs.
    inside = out_dir.resolve()
    sources = [s for s in sources if not _earlier_map(s.path, inside)]
    failed = 0
    used: set[str] = set()
    records: list[dict[str, Any]] = []
    pending: list[tuple[str, Any, Any]] = []

    def report(record: dict[str, Any]) -> None:
        records.append(record)
        if json_:
            print_json_line(record)
        else:
            where = f" frames {record['start_frame']}-{record['end_frame']}" if (
                "start_frame" in record) else ""  # fmt: skip
            console.info(
                f"{record['path']}{where}: {record['label']} ({record['score']:.3f}) -> "
                f"{record['output']}"
            )

    def flush() -> None:
        for record in _explain_batch(predictor, pending, method, chosen_layer, target, alpha,
                                     out_dir, used, top_k):  # fmt: skip
            report(record)
        pending.clear()

    from cnnkit.io.image import read_image, read_image_bytes

    for source in console.track(sources, total=len(sources), description="explaining"):
        try:
            if source.error:
                raise InputError(source.error)
            if source.kind == "video" and method != "occlusion":
                if top_k is not None:
                    raise InputError("--top-k is for images; a video is explained for one class")
                if pending:
                    flush()  # the images before it first: records in input order
                records_of_video = _explain_video(
                    predictor, source.path, method, chosen_layer, target, alpha, out_dir, used,
                    stride or 1,
                )  # fmt: skip
                for record in records_of_video:
                    report(record)
                continue
            if source.kind != "image" or predictor.is_video_model:
                raise InputError(
                    "a video model explains videos, not images"
                    if predictor.is_video_model
                    else "--method occlusion draws maps for images, not videos"
                )
            if source.data is not None:  # an encoded image on stdin
                image = read_image_bytes(source.data, source.path)
            else:
                image = read_image(source.path)
            pending.append((source.path, image, predictor.prepare_image(image)))
        except CnnkitError as exc:
            failed += 1
            sys.stderr.write(f"error: {shown(source.path)}: {shown(exc.message)}\n")
            if json_:
                print_json_line({"path": source.path, "error": exc.message})
            continue
        if len(pending) >= batch_size:
            flush()
    if pending:
        flush()
    if failed:
        raise CnnkitError(
            f"{failed} of {len(sources)} inputs could not be explained",
            hint="see the error lines above"
            + ("; the other maps are written" if records else "; no map was written"),
        )


def _earlier_map(path: str, out_dir: Path) -> bool:
    """Whether ``path`` is a map this command writes (name and folder), not an input."""
    import re

    if path == "-" or Path(path).resolve().parent != out_dir:
        return False
    return bool(re.search(r"-(gradcam|gradcampp|occlusion)(-top\d+)?(-\d+)?\.(png|mp4)$", path))


def print_json_line(record: dict[str, Any]) -> None:
    from cnnkit.jsontext import dumps

    sys.stdout.write(dumps(record) + "\n")
    sys.stdout.flush()


def _unique_output(out_dir: Path, path: str, method: str, used: set, ext: str) -> Path:
    stem = "stdin" if path == "-" else Path(path).stem
    name = f"{stem}-{method.replace('+', 'p')}"
    stem, n = name, 2
    while stem in used:
        stem, n = f"{name}-{n}", n + 1
    used.add(stem)
    return out_dir / f"{stem}{ext}"


def _explain_video(
    predictor, path, method, layer, target, alpha, out_dir: Path, used: set, stride: int = 1
):
    """Maps over time: an MP4 of the video with its heat maps, one record per window.

    A 3D model is explained window by window, its T frames not overlapping, as
    predict classifies them (a video shorter than one window is padded with its
    last frame; frames after the last whole window get no map), its map having
    a time axis; a 2D model frame by frame, every ``stride``-th
    frame (the MP4 then holds those frames, at the frame rate that keeps their
    timing). Frames are decoded, explained and written a window or batch at a
    time, each on its own thread (cnnkit.io.pipeline), so the three overlap and
    frame memory stays flat; the small records wait until the MP4 is written.
    """
    from cnnkit.inference import decoder_threads
    from cnnkit.io.pipeline import WriteBehind, produce_ahead
    from cnnkit.io.video import VideoWriter, probe_video

    info = probe_video(path, check=False)  # its frame rate and size
    fps = info.fps if info.fps and info.fps > 0 else 25.0
    clips = predictor.is_video_model
    size = predictor.input.frames if clips else predictor.batch_size
    step = 1 if clips else stride
    out = _unique_output(out_dir, path, method, used, ".mp4")
    records: list[dict[str, Any]] = []
    # decode (a thread: the next group of frames) -> maps (here) -> encode (a thread).
    threads = decoder_threads(predictor, info.width, info.height)
    groups = produce_ahead(_frame_groups(path, size, step, threads))
    try:
        with (
            VideoWriter(out, fps / step, info.width, info.height) as video,
            WriteBehind(video.write) as writer,
        ):
            for raw, indices in groups:
                if len(raw) < size and clips and records:
                    # As predict: a 3D model's last frames that fill no whole window are not
                    # classified (a video shorter than one window is padded instead). They
                    # are written without a map, so the MP4 keeps every frame.
                    for frame in raw:
                        writer.put(frame)
                    continue
                records += _explain_frames(predictor, path, raw, indices, clips, layer, target,
                                           method, alpha, writer, out)  # fmt: skip
    finally:
        groups.close()
    # Records only once the MP4 is there under its name: an interrupted run names no file.
    yield from records


def _frame_groups(path, size: int, step: int, threads: int = 0):
    """(frames, their indices) of ``size`` frames, every ``step``-th frame; the last group short.

    Runs on the decode thread of explain's video pipeline.
    """
    from cnnkit.io.video import iter_frames

    raw: list[Any] = []
    indices: list[int] = []
    for n, frame in enumerate(iter_frames(path, every=step, threads=threads)):
        raw.append(frame)
        indices.append(n * step)
        if len(raw) == size:
            yield raw, indices
            raw, indices = [], []
    if raw:
        yield raw, indices


def _explain_frames(predictor, path, raw, indices, clips, layer, target, method, alpha, writer,
                    out):  # fmt: skip
    """One window (3D model) or batch of frames (2D model): maps, overlay frames, records."""
    import numpy as np
    import torch

    from cnnkit.data.preprocess import normalize
    from cnnkit.evaluation.metrics import softmax
    from cnnkit.explain import gradcam, overlay, peak

    prepared = [predictor.prepare_image(f) for f in raw]
    if clips:
        frames = predictor.input.frames
        prepared += [prepared[-1]] * (frames - len(prepared))  # a short last window: padded
        batch = np.stack(prepared, axis=1)[None]  # 1×C×T×H×W
    else:
        batch = np.stack(prepared)  # N×C×H×W
    x = normalize(torch.from_numpy(batch).to(predictor.device), predictor.input.mean,
                  predictor.input.std)  # fmt: skip
    targets = None if target is None else [target] * len(batch)
    maps, logits = gradcam(predictor.model, x, layer, targets, plus=method == "gradcam++")
    probs = softmax(logits)
    h, w = raw[0].shape[:2]
    for i in range(len(batch)):
        k = int(probs[i].argmax()) if target is None else target
        label, score = predictor.classes[k], float(probs[i, k])
        heat = maps[i][: len(raw)] if clips else maps[i][None]  # T×H×W, real frames only
        for t in range(len(heat)):
            frame = raw[t] if clips else raw[i]
            writer.put(overlay(frame, heat[t], alpha, f"{label} {score:.2f}"))
        best = int(np.argmax(heat.reshape(len(heat), -1).max(axis=1)))
        record = {
            "path": str(path),
            "start_frame": indices[0] if clips else indices[i],
            "end_frame": indices[-1] if clips else indices[i],
            "label": label,
            "score": round(score, 6),
            "method": method,
            "layer": layer,
            "output": str(out),
            "peak_frame": indices[best] if clips else indices[i],
            "peak": peak(heat[best], w, h),
        }
        yield record


def _explain_batch(
    predictor, pending, method, layer, target, alpha, out_dir: Path, used: set, top_k=None
):
    """Maps for one batch of (path, image, prepared C×H×W uint8); write overlays, yield records.

    One map per input for its prediction (or ``target``); with ``top_k``, one
    per each of its K most likely classes, ranked (records carry ``rank``).
    """
    import numpy as np

    from cnnkit.evaluation.metrics import softmax

    batch = np.stack([p for _, _, p in pending])
    if top_k is None:
        targets = None if target is None else [target] * len(batch)
        yield from _explain_targets(predictor, pending, batch, method, layer, targets, alpha,
                                    out_dir, used, None)  # fmt: skip
        return
    probs = softmax(predictor.logits(batch))
    order = np.argsort(-probs, axis=1, kind="stable")[:, : min(top_k, probs.shape[1])]
    records = [[] for _ in pending]
    for rank in range(order.shape[1]):
        targets = [int(v) for v in order[:, rank]]
        for i, record in enumerate(
            _explain_targets(
                predictor, pending, batch, method, layer, targets, alpha, out_dir, used, rank + 1
            )
        ):
            records[i].append(record)  # fmt: skip
    for per_input in records:  # input by input, in rank order
        yield from per_input


def _explain_targets(predictor, pending, batch, method, layer, targets, alpha, out_dir, used,
                     rank):  # fmt: skip
    """The maps of ``batch`` for ``targets`` (None: the predictions); overlays and records."""
    from cnnkit.evaluation.metrics import softmax
    from cnnkit.explain import gradcam, occlusion, overlay, peak
    from cnnkit.io.image import write_image

    if method == "occlusion":
        maps, logits = occlusion(predictor.logits, batch, targets, predictor.input.mean)
    else:
        import torch

        from cnnkit.data.preprocess import normalize

        x = normalize(torch.from_numpy(batch).to(predictor.device), predictor.input.mean,
                      predictor.input.std)  # fmt: skip
        maps, logits = gradcam(predictor.model, x, layer, targets, plus=method == "gradcam++")
    probs = softmax(logits)
    for i, (path, image, _) in enumerate(pending):
        k = int(probs[i].argmax()) if targets is None else targets[i]
        label, score = predictor.classes[k], float(probs[i, k])
        tag = method if rank is None else f"{method}-top{rank}"
        out = _unique_output(out_dir, path, tag, used, ".png")
        text = f"{label} {score:.2f}"
        write_image(out, overlay(image, maps[i], alpha, text, predictor.input.background))
        h, w = image.shape[:2]
        record = {
            "path": path,
            "label": label,
            "score": round(score, 6),
            "method": method,
            "layer": layer,
            "output": str(out),
            "peak": peak(maps[i], w, h),
        }
        if rank is not None:
            record["rank"] = rank
        yield record
