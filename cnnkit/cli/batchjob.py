"""predict's options for batch jobs: ``--shard``, ``-o FILE``, ``--resume``, ``--retry-errors``.

The options are checked as the command starts (before a model loads); the
shard is taken from the expanded inputs, then the file is opened (and read,
to resume) just before the first input is classified.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cnnkit import console
from cnnkit.errors import InputError


class BatchJob:
    """What --shard, -o, --resume and --retry-errors ask of one predict run."""

    def __init__(
        self,
        output: str | None,
        fmt: str | None,
        resume: bool,
        retry_errors: bool,
        shard: str | None,
    ) -> None:
        from cnnkit.predict.records_file import check_records_path, records_format
        from cnnkit.predict.shards import parse_shard

        output = None if output == "-" else output  # '-' is stdout, as without -o
        if resume and output is None:
            raise InputError(
                "--resume goes on with the file of -o, and there is none",
                hint="cnnkit predict CKPT INPUT... -o results.jsonl --resume",
            )
        if retry_errors and not resume:
            raise InputError(
                "--retry-errors tries again the inputs a resumed file has errors for",
                hint="add --resume (and -o FILE)",
            )
        self.resume = resume
        self.retry_errors = retry_errors
        self.shard = parse_shard(shard) if shard is not None else None
        self.output = Path(output) if output is not None else None
        self.format = records_format(output, fmt) if output is not None else None
        if output is not None:
            check_records_path(output, resume)
        self.file: Any = None  # the open RecordsFile
        self.has_header = False

    @property
    def lists_inputs(self) -> bool:
        """Whether every input must be known before the first is classified (paths on stdin too)."""
        return self.shard is not None or self.resume

    def select(self, sources: list[Any]) -> list[Any]:
        """This run's shard of the expanded inputs (all of them without --shard), said on stderr."""
        if self.shard is None:
            return sources
        from cnnkit.predict.shards import take_shard

        if self.shard.origin:
            console.info(f"shard {self.shard} from {self.shard.origin}")
        part = take_shard(sources, self.shard)
        console.info(f"shard {self.shard}: {len(part)} of {len(sources)} inputs")
        return part

    def open(
        self, sources: list[Any], header: Sequence[str] | None, labels: Sequence[str], top_k: int
    ) -> list[Any]:
        """Open -o FILE (reading it with --resume); the inputs still to classify."""
        if self.output is None:
            return sources
        from cnnkit.predict.records_file import line_limit, open_records, record_key

        fmt = self.format or "jsonl"
        wanted = Counter(record_key(s.path, fmt) for s in sources) if self.resume else None
        self.file, resumed = open_records(
            self.output,
            fmt,
            resume=self.resume,
            retry_errors=self.retry_errors,
            header=header,
            wanted=wanted,
            limit=line_limit(labels, top_k),
        )
        self.has_header = self.file.has_header
        if resumed is None:
            return sources
        done = resumed.done
        remaining = []
        for source in sources:
            key = record_key(source.path, fmt)
            if done[key] > 0:
                done[key] -= 1  # an input named twice is done as often as it is recorded
            else:
                remaining.append(source)
        self._say(resumed, len(sources), len(remaining))
        return remaining

    def _say(self, resumed: Any, total: int, remaining: int) -> None:
        name = self.output
        if resumed.torn:
            console.info(
                f"resume: dropped the part of a line a stopped run left at the end of {name}"
            )
        if resumed.unfinished:
            console.info(
                f"resume: removed {resumed.unfinished} records of a video left unfinished, "
                "to classify it again"
            )
        if resumed.retried:
            console.info(
                f"resume: removed {resumed.retried} error records, to try those inputs again"
            )
        console.info(
            f"resume: {name} holds {total - remaining} of {total} inputs; {remaining} to go"
        )
        if resumed.errors:
            console.info(
                f"resume: {resumed.errors} of them are errors (--retry-errors tries them again)"
            )
        if resumed.foreign:
            console.warn(
                f"{name} also holds {resumed.foreign} records of inputs that are not this run's "
                "(another shard's, or inputs named another way); they stay"
            )

    def close(self) -> None:
        """Put the records on the disk and close the file (an error is an InputError)."""
        if self.file is not None:
            self.file.close()

    def abandon(self) -> None:
        """Close the file without a word, after another error: what was written stays."""
        if self.file is not None:
            self.file.abandon()
