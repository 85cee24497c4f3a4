"""How results look on a terminal: rich tables and plain text for every command.

rich is imported inside each renderer: it costs about 40 ms, which
``--json`` and plain status lines do not need.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cnnkit.cli.app import print_json
from cnnkit.textout import shown


def explain_text(expl: Any, report: Any) -> str:
    """--explain as plain text: kernel matrix, shapes, and the filled-in size formula."""
    from cnnkit.kernels import format_kernel

    kernel = expl.kernel
    names = ("T", "H", "W", "C") if report.is_video else ("H", "W", "C")
    labels = "×".join(names[: len(expl.input_shape)])
    kind = "Conv3d" if kernel.ndim == 3 else "Conv2d"
    lines = [
        f"kernel {kernel.name}: {shape_text(kernel.shape)}, cross-correlation as in {kind}"
        + (" (flipped: true convolution)" if report.flip else ""),
        *("  " + row for row in format_kernel(kernel).splitlines()),
        f"input   {labels} = {shape_text(expl.input_shape)}",
        f"stride {shape_text(report.stride)}, dilation {shape_text(report.dilation)}, "
        f"padding {report.padding}"
        + (f" ({expl.padding_mode})" if any(a.pad_before or a.pad_after for a in expl.axes) else "")
        + ": "
        + ", ".join(f"{a.name} {a.pad_before}+{a.pad_after}" for a in expl.axes),
        "output size per axis: floor((n + pad_before + pad_after - d·(k-1) - 1) / s) + 1",
        *("  " + a.formula() for a in expl.axes),
        f"output  {labels} = {shape_text(expl.output_shape)}",
    ]
    if report.is_video and kernel.ndim == 2:
        lines.append("(a 2D kernel is applied to each frame; the frame count is kept)")
    return "\n".join(lines)


def show_kernel_bank(as_json: bool) -> None:
    """--list-kernels: every named kernel (with default parameters) as a matrix."""
    from cnnkit.kernels import format_kernel, kernel_defs, kernel_usage, named_kernel

    entries = []
    for kdef in kernel_defs():
        k = named_kernel(kdef.name)
        entries.append((kdef, k))
    if as_json:
        print_json(
            [
                {
                    "name": kdef.name,
                    "usage": kernel_usage(kdef),
                    "dims": kdef.dims,
                    "params": list(kdef.params),
                    "defaults": list(kdef.defaults),
                    "shape": list(k.shape),
                    "combine": k.combine,
                    "description": kdef.description,
                    "weights": [c.tolist() for c in k.components],
                }
                for kdef, k in entries
            ]
        )
        return
    from rich.markup import escape
    from rich.table import Table

    from cnnkit.tables import print_table, stdout_console

    table = Table(title="cnnkit kernels (defaults shown; parameters after ':')", show_lines=True)
    # The description sits under the name: a column of its own is squeezed to
    # nothing on an 80-column terminal next to wide weight matrices.
    table.add_column("kernel", ratio=1, min_width=24)
    table.add_column("size", no_wrap=True)
    table.add_column("weights", no_wrap=True)
    for kdef, k in entries:
        usage = f"[bold]{escape(kernel_usage(kdef))}[/bold]"
        if kdef.defaults:
            usage += " (" + ",".join(f"{d:g}" for d in kdef.defaults) + ")"
        usage += f"\n[dim]{escape(kdef.description)}[/dim]"
        table.add_row(usage, shape_text(k.shape), format_kernel(k))
    print_table(stdout_console(markup=True), table)


def print_eval(result: dict[str, Any]) -> None:
    from rich.table import Table
    from rich.text import Text

    from cnnkit.tables import print_table, stdout_console

    out = stdout_console()
    top = result["top_k_accuracy"]
    out.print(f"checkpoint  {shown(result['checkpoint'])}")
    out.print(f"dataset     {shown(result['dataset'])} ({result['split']}, n={result['n']})")
    out.print(f"accuracy    {result['accuracy']:.4f}")
    out.print(f"top-{top['k']}       {top['value']:.4f}")
    out.print(f"loss        {round(result['loss'], 4) + 0.0:.4f}")  # never "-0.0000"
    out.print(f"macro F1    {result['macro_f1']:.4f}")
    if "video_accuracy" in result:
        out.print(
            f"video       {result['video_accuracy']:.4f} "
            f"({result['clips_per_video']} clip(s) per video; clip-level "
            f"{result['clip_accuracy']:.4f})"
        )
    table = Table(title="per class", show_edge=False, header_style="bold")
    for col in ("class", "precision", "recall", "f1", "support"):
        if col == "class":
            table.add_column(col, overflow="fold")
        else:
            table.add_column(col, justify="right", no_wrap=True)
    for name, m in result["per_class"].items():
        table.add_row(
            shown(name), f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}",
            str(m["support"]),
        )  # fmt: skip
    print_table(out, table)
    classes = result["classes"]
    if len(classes) > 20:
        from cnnkit.evaluation.files import MAX_HEATMAP_CLASSES

        out.print(
            f"confusion matrix: {len(classes)} classes; write it with --confusion FILE.csv "
            f"(every class) or FILE.png (the {MAX_HEATMAP_CLASSES} most confused above that)"
        )
        return
    cm = Table(title="confusion (rows: true, columns: predicted)", show_edge=False)
    cm.add_column("true \\ pred", style="bold", overflow="fold")
    for name in classes:
        cm.add_column(shown(name), justify="right", no_wrap=True)
    for i, (name, row) in enumerate(zip(classes, result["confusion_matrix"], strict=True)):
        cells = [Text(str(v), style="bold" if j == i else "") for j, v in enumerate(row)]
        cm.add_row(shown(name), *cells)
    print_table(out, cm)


def shape_text(values: Any) -> str:
    if values is None:
        return "-"
    if isinstance(values, (list, tuple)):
        return "×".join(str(v) for v in values)
    return str(values)


def _rf_unit(s: dict[str, Any]) -> str:
    if s["receptive_field"] is None:  # no convolution: every output sees every input value
        return ""
    return " (frames×px)" if len(s["input_size"]) == 4 else " px"


def _rf_text(rf: Any) -> str:
    # A 2D field is one int when square: show it as the H×W patch it is.
    if rf is None:
        return "whole input"
    return f"{rf}×{rf}" if isinstance(rf, int) else shape_text(rf)


def render_inspect(result: dict[str, Any]) -> None:
    renderers = {
        "model": _render_model,
        "checkpoint": _render_model,
        "image": _render_image,
        "video": _render_facts,
        "dataset": _render_dataset,
        "onnx": _render_onnx,
        "catalog": _render_catalog,
    }
    renderers[result["kind"]](result)


def _render_catalog(s: dict[str, Any]) -> None:
    """The registered models and the built-in datasets, with what to do with them."""
    from cnnkit.tables import print_table, stdout_console

    out = stdout_console()
    models = _listing("models (train --model NAME; cnnkit inspect NAME shows its layers)")
    for column in ("name", "kind", "input", "pretrained"):
        models.add_column(column, no_wrap=True)
    models.add_column("description")  # folds
    for m in s["models"]:
        kind = f"{m['dims']}D " + ("clips" if m["dims"] == 3 else "images")
        models.add_row(
            m["name"], kind, shape_text(m["input_size"]), m["pretrained"] or "-", m["description"]
        )
    print_table(out, models)
    out.print(
        "pretrained: MODEL:DATA (resnet18:imagenet) predicts with torchvision's weights as they "
        "are; train --pretrained starts from them."
    )
    out.print()
    datasets = _listing("datasets (train --dataset NAME, or a folder with one subfolder per class)")
    datasets.add_column("name", no_wrap=True)
    datasets.add_column("kind", no_wrap=True)
    datasets.add_column("description")  # folds
    for d in s["datasets"]:
        datasets.add_row(d["name"], d["kind"], d["description"])
    print_table(out, datasets)


def _render_onnx(s: dict[str, Any]) -> None:
    """An exported model: what it carries, its signature, and its operators."""

    def signature(values: list[dict[str, Any]]) -> str:
        return "; ".join(
            f"{v['name']} {'×'.join(str(d) for d in v['shape'])} {v['dtype']}" for v in values
        )

    operators = s.get("operators")
    _render_facts(
        {
            "onnx model": s["path"],
            "bytes": f"{s['bytes']:,}",
            "model": s["model"],
            "classes": _classes_text(s["classes"]),
            **_start_facts(s.get("start") or {}),
            "trained in": _trained_in(s.get("trained_in")),
            "dataset": s["dataset"],
            **{f"input {k}": v for k, v in s["input"].items()},
            "inputs": signature(s["inputs"]),
            "outputs": signature(s["outputs"]),
            "opset": s.get("opset"),
            "operators": (
                ", ".join(f"{op} {n}" for op, n in operators.items())
                if operators
                else "(install onnx to count them)"
            ),
            **{f"metric {k}": v for k, v in s.get("metrics", {}).items()},
            "source sha256": s.get("source_sha256"),
            "cnnkit version": s.get("cnnkit_version") or None,
        }
    )


# A layer table's columns, each with whether it is right-aligned. Every cell is a
# name or a number, and none is ever cut (cnnkit.tables).
_LAYER_COLUMNS = {
    "#": False,
    "layer": False,
    "type": False,
    "kernel": False,
    "stride": False,
    "padding": False,
    "output": False,
    "params": True,
    "MACs": True,
    "receptive field": True,
}
# Where the whole table is wider than the terminal, it is shown as two: what each
# layer is and makes, then what it costs and sees. Both are keyed by the layer name
# (what explain --layer takes), so the row number is left out to save width.
_SHAPE_COLUMNS = ("layer", "type", "kernel", "stride", "padding", "output")
_COST_COLUMNS = ("layer", "params", "MACs", "receptive field")


def _listing(title: str, show_footer: bool = False) -> Any:
    """A table of many rows and columns (layers, models): rules under the header and
    above a footer only, two spaces between columns. The widest of cnnkit's tables
    read best with the least ink between their columns, and fit more terminals."""
    from rich import box
    from rich.table import Table

    return Table(
        title=title,
        box=box.SIMPLE,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
        header_style="bold",
        show_footer=show_footer,
    )


def _layer_table(s: dict[str, Any], columns: Sequence[str], title: str) -> Any:
    totals = {
        "layer": "total",
        "params": f"{s['params']:,}",
        "MACs": f"{s['macs']:,}",
        "receptive field": _rf_text(s["receptive_field"]),
    }
    table = _listing(title, show_footer="params" in columns)
    for column in columns:
        table.add_column(
            column,
            footer=totals.get(column, ""),
            justify="right" if _LAYER_COLUMNS[column] else "left",
            no_wrap=True,
        )
    for i, layer in enumerate(s["layers"], 1):
        cells = {
            "#": str(i),
            "layer": layer["name"],
            "type": layer["type"],
            "kernel": shape_text(layer["kernel_size"]),
            "stride": shape_text(layer["stride"]),
            "padding": shape_text(layer["padding"]),
            "output": shape_text(layer["output_shape"]),
            "params": f"{layer['params']:,}",
            "MACs": f"{layer['macs']:,}",
            "receptive field": _rf_text(layer["receptive_field"]),
        }
        table.add_row(*(cells[c] for c in columns))
    return table


def _render_model(s: dict[str, Any]) -> None:
    from cnnkit.tables import fits, print_table, stdout_console

    out = stdout_console()
    title = f"{s['name']} on input {shape_text(s['input_size'])} (batch of 1)"
    whole = _layer_table(s, tuple(_LAYER_COLUMNS), title)
    if fits(out, whole):
        print_table(out, whole)
    else:
        print_table(out, _layer_table(s, _SHAPE_COLUMNS, title))
        out.print()
        print_table(out, _layer_table(s, _COST_COLUMNS, "parameters, MACs and receptive fields"))
    out.print(
        f"params {s['params']:,} (trainable {s['trainable_params']:,})  ·  "
        f"MACs {s['macs']:,} ({s['macs'] / 1e6:,.2f} M multiply-accumulates per input)  ·  "
        f"receptive field of the last conv/pool stage: {_rf_text(s['receptive_field'])}"
        + _rf_unit(s)
    )
    if s["kind"] == "checkpoint":
        _render_facts(
            {
                "checkpoint": s["path"],
                "classes": _classes_text(s["classes"]),
                **_start_facts(s.get("start") or {}),
                "trained in": _trained_in(s.get("trained_in")),
                "dataset": s["dataset"],
                **{f"input {k}": v for k, v in s["input"].items()},
                **{f"metric {k}": v for k, v in s["metrics"].items()},
                "cnnkit version": s["cnnkit_version"] or None,
            }
        )
    for item in s.get("feature_maps", []):
        out.print(f"feature maps of {item['layer']} ({shape_text(item['shape'])}): {item['path']}")
    if "kernels" in s:
        k = s["kernels"]
        out.print(f"filters of {k['layer']} ({shape_text(k['weight_shape'])}): {k['path']}")


def _classes_text(classes: list[str], limit: int = 20) -> str:
    if len(classes) <= limit:
        return ", ".join(classes)
    return f"{len(classes):,}: " + ", ".join(classes[:limit]) + ", ... (all with --json)"


def _trained_in(precision: str | None) -> str:
    """The precision a model was trained in ("32", "bf16", "16" or None), as inspect words it."""
    words = {"32": "float32", "bf16": "bf16 autocast", "16": "fp16 autocast"}
    return words.get(precision or "", "not recorded (float32 assumed)")


def _start_facts(start: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint's training started from, and what it froze, as inspect rows."""
    kind = start.get("kind")
    if not kind:
        return {"started from": "not recorded (an older cnnkit)"}
    if kind == "random":
        where = "random weights"
    elif kind == "pretrained":
        where = f"{start.get('weights')} ({start.get('data')})"
    else:
        where = f"{start.get('path')} ({kind})"
    facts: dict[str, Any] = {"started from": where}
    if "tensors_loaded" in start:
        facts["loaded"] = f"{start['tensors_loaded']} tensors, head {start.get('head')}"
    if start.get("resumed_from"):
        facts["resumed from"] = start["resumed_from"]
    if start.get("frozen"):
        facts["frozen"] = ", ".join(start["frozen"])
        facts["trained"] = ", ".join(start.get("trained", []))
    return facts


def _render_facts(facts: dict[str, Any]) -> None:
    from rich.table import Table

    from cnnkit.tables import print_table, stdout_console

    table = Table(show_header=False)
    table.add_column("", style="bold", no_wrap=True)
    table.add_column("")  # paths, class lists: these fold, and never lose a character
    for key, value in facts.items():
        if key in ("kind", "pixels"):
            continue
        if isinstance(value, float):
            value = f"{value:,.4g}"
        elif isinstance(value, list):
            value = ", ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in value)
        table.add_row(key, "-" if value is None else shown(value))
    print_table(stdout_console(), table)


def _render_image(s: dict[str, Any]) -> None:
    from rich.table import Table
    from rich.text import Text

    from cnnkit.tables import print_table, stdout_console

    _render_facts(s)
    block = s["pixels"]
    values = block["values"]
    names = {"gray": ["gray"], "gray+alpha": ["gray", "alpha"], "RGB": list("RGB")}
    names = names.get(s["channel_order"], list("RGBA"))
    for c, channel in enumerate(names[: s["channels"]]):
        # A grid of numbers, like numpy prints one: no rules, so that 8 values of
        # 65535 fit a 60-column terminal.
        # The caption on a line of its own: as a title it would wrap to the grid's width.
        table = Table(show_header=False, box=None, pad_edge=False)
        for _ in values[0]:
            table.add_column(justify="right", no_wrap=True)
        for row in values:
            table.add_row(*(str(v[c] if isinstance(v, list) else v) for v in row))
        console = stdout_console()
        console.print(
            Text(f"{channel} values, rows y={block['y']}.., columns x={block['x']}.."),
            soft_wrap=True,
        )
        print_table(console, table)


def _render_dataset(s: dict[str, Any]) -> None:
    from rich.table import Table

    from cnnkit.tables import print_table, stdout_console

    out = stdout_console()
    splits = list(s.get("splits", {}))
    table = Table(title=f"{len(s['classes'])} classes")
    table.add_column("class")  # folds
    for split in splits:
        table.add_column(split, justify="right", no_wrap=True)
    table.add_column("total", justify="right", no_wrap=True)
    for name in s["classes"]:
        per_split = [f"{s['splits'][split].get(name, 0):,}" for split in splits]
        table.add_row(shown(name), *per_split, f"{s['counts'].get(name, 0):,}")
    table.add_section()
    totals = [f"{sum(s['splits'][split].values()):,}" for split in splits]
    table.add_row("total", *totals, f"{sum(s['counts'].values()):,}")
    print_table(out, table)
    unreadable = s.get("unreadable", [])
    if unreadable:
        out.print(f"{len(unreadable)} unreadable file(s):")
        for path in unreadable:
            out.print(f"  {shown(path)}")
    for warning in s.get("warnings", []):
        out.print(f"warning: {shown(warning)}")
