"""Where generation jobs read DCI records from and write them to.

Output goes to a new dataset in the official layout (photos hard-linked, ``splits.json`` copied and cut
to the records written), or back into the input with ``--in-place``; the input is never changed otherwise.
Records are streamed (one in memory at a time): a full DCI release does not fit in memory at once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from densecaption.data.dci import DCIDataset, DCIWriter
from densecaption.data.findings import RecordError, SkipLog
from densecaption.data.schema import DCIImage
from densecaption.errors import UserError
from densecaption.files import atomic_write_text


@dataclass(frozen=True)
class Target:
    """The dataset being written and the folder that holds the job logs."""

    writer: DCIWriter
    log_dir: Path
    in_place: bool


def open_target(dataset: DCIDataset, out: Path | None, *, in_place: bool) -> Target:
    if (out is None) == (not in_place):
        raise UserError("give exactly one of --out DIR and --in-place")
    if in_place:
        if dataset.given == "sample":
            raise UserError("the bundled sample is read-only: use --out, or `densecaption data sample DIR` first")
        return Target(DCIWriter(dataset.root, is_root=True), dataset.root, True)
    writer = DCIWriter(out)
    if writer.root.resolve() == dataset.root.resolve():
        raise UserError(f"--out {out} is the input dataset: use --in-place to rewrite it")
    return Target(writer, writer.root.parent, False)


def select_files(dataset: DCIDataset, split: str | None, limit: int | None) -> list[str]:
    """Annotation files of a split (all splits by default) in ``splits.json`` order, the first ``limit``."""
    files = dataset.files(split)
    if limit is not None:
        if limit < 1:
            raise UserError("--limit should be at least 1")
        files = files[:limit]
    if not files:
        raise UserError(f"{dataset.root}: no records to process")
    return files


def read_records(dataset: DCIDataset, files: Iterable[str], skip: SkipLog) -> Iterator[DCIImage]:
    """Records one at a time; a bad one goes to ``skip`` (which raises when strict)."""
    for file in files:
        try:
            yield dataset.read(file)
        except RecordError as e:
            skip.skip(e)


def write_records(target: Target, dataset: DCIDataset, files: list[str],
                  transform: Callable[[DCIImage], DCIImage]) -> list[str]:
    """Write ``transform(record)`` for each readable record; then, for a new dataset, its ``splits.json``
    (the input's, keeping only the files written). Returns the files written.

    Every record goes to ``complete/`` as well as ``annotations/``, with or without summaries, so that each
    file ``splits.json`` names exists where sDCI readers look; one whose generation failed simply has no
    ``summaries`` there (its failure is in the job log and was listed)."""
    written = []
    for record in read_records(dataset, files, SkipLog(strict=False)):
        target.writer.write(transform(record), folders=("annotations", "complete"))
        written.append(record.file)
    source = dataset.root / "splits.json"
    if not target.in_place and source.exists():
        keep = set(written)
        splits = {name: [f for f in names if DCIDataset.file_name(f) in keep]
                  for name, names in dataset.splits().items()}
        atomic_write_text(target.writer.root / "splits.json", json.dumps(splits, indent=1) + "\n")
    return written
