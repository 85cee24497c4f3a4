"""Writers for predict's records: JSON Lines and CSV stream, a rich table collects.

Each writer takes lists of records (dicts, one per image, window, frame or
error) as batches finish. JSON Lines and CSV write and flush every batch at
once, so ``cnnkit predict ... | head -1`` sees its first line before the last
image is decoded; the table is printed when all records are in.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from typing import Any, TextIO

from cnnkit.jsontext import dumps
from cnnkit.textout import csv_cell, shown

Record = dict[str, Any]

IMAGE_COLUMNS = ["path", "label", "score"]
CLIP_COLUMNS = ["window", "start_frame", "end_frame", "start_s", "end_s"]
FRAME_COLUMNS = ["window", "frame", "time_s"]


def csv_columns(has_video: bool, clip_model: bool) -> list[str]:
    """The CSV header: fixed before the first record so rows can stream."""
    columns = list(IMAGE_COLUMNS)
    if has_video:
        columns += CLIP_COLUMNS if clip_model else FRAME_COLUMNS
    return [*columns, "topk", "error"]


def _topk_text(record: Record) -> str:
    # One cell for the whole top-k list: "cat:0.91;dog:0.06" reads well and splits easily.
    return ";".join(f"{t['label']}:{t['score']:.6g}" for t in record.get("topk", []))


class JsonLinesWriter:
    """One JSON object per line, flushed per batch."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, records: Sequence[Record]) -> None:
        self.stream.write("".join(dumps(r) + "\n" for r in records))
        self.stream.flush()

    def close(self) -> None:
        self.stream.flush()


class CsvWriter:
    """A header, then one row per record (path, label, score, ...), flushed per batch.

    Text cells that a spreadsheet would run as a formula are neutralised
    (cnnkit.textout.csv_cell): a file named ``=cmd.png`` is written ``'=cmd.png``.
    """

    def __init__(self, stream: TextIO, columns: Sequence[str], header: bool = True) -> None:
        """``header``: write the header first (not when appending to a file that has it)."""
        self.stream = stream
        self.columns = list(columns)
        self.writer = csv.writer(stream, lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC)
        # On a terminal the rows are read, not parsed: control characters in a name
        # (an escape sequence that retitles the window) are shown escaped there.
        try:
            self.terminal = stream.isatty()
        except (AttributeError, ValueError):
            self.terminal = False
        if header:
            self.writer.writerow(self.columns)
            stream.flush()

    def write(self, records: Sequence[Record]) -> None:
        for record in records:
            row = []
            for column in self.columns:
                value = _topk_text(record) if column == "topk" else record.get(column)
                cell = "" if value is None else csv_cell(value)
                row.append(shown(cell) if self.terminal and isinstance(cell, str) else cell)
            self.writer.writerow(row)
        self.stream.flush()

    def close(self) -> None:
        self.stream.flush()


class TableWriter:
    """A rich table on stdout, printed at the end (for people, not pipes)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.records: list[Record] = []

    def write(self, records: Sequence[Record]) -> None:
        self.records.extend(records)

    def close(self) -> None:
        from rich.table import Table
        from rich.text import Text

        from cnnkit.tables import print_table, stdout_console

        table = Table(show_edge=False, header_style="bold")
        has_time = any("start_frame" in r or "frame" in r for r in self.records)
        # Names fold onto more lines in a narrow terminal; numbers are never cut.
        table.add_column("path", overflow="fold")
        if has_time:
            table.add_column("frames", justify="right", no_wrap=True)
            table.add_column("time (s)", justify="right", no_wrap=True)
        table.add_column("label", overflow="fold")
        table.add_column("score", justify="right", no_wrap=True, min_width=5)
        table.add_column("top-k", overflow="fold")
        for r in self.records:
            row: list[Any] = [shown(r["path"])]
            if has_time:
                row += _time_cells(r)
            if "error" in r:
                row += [Text(f"error: {shown(r['error'])}", style="red"), "", ""]
            else:
                topk = ", ".join(f"{shown(t['label'])} {t['score']:.3f}" for t in r["topk"][1:])
                row += [shown(r["label"]), f"{r['score']:.3f}", topk]
            table.add_row(*row)
        print_table(stdout_console(file=self.stream), table)


def _time_cells(r: Record) -> list[str]:
    def sec(v: Any) -> str:
        return "" if v is None else f"{v:.2f}"

    if "start_frame" in r:
        prefix = "all " if r.get("window") == "video" else ""
        span = f"{sec(r['start_s'])}-{sec(r['end_s'])}"
        return [f"{prefix}{r['start_frame']}-{r['end_frame']}", span]
    if "frame" in r:
        return [str(r["frame"]), sec(r["time_s"])]
    return ["", ""]
