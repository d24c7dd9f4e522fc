"""The DCI paper's Table 1 statistics, with the row definitions of the project's README."""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from typing import Callable, Iterable

from densecaption.data.dci import DCIDataset
from densecaption.data.findings import RecordError, SkipLog
from densecaption.data.schema import BASE_KEY, DCIImage
from densecaption.data.text import image_text, mask_text

ROWS = ("DCI", "DCI_sub", "sDCI", "sDCI_sub")


@dataclass
class StatsRow:
    dataset: str
    imgs: int = 0
    caps: int = 0
    tokens: int = 0

    @property
    def toks_per_cap(self) -> float:
        return self.tokens / self.caps if self.caps else 0.0

    @property
    def toks_per_img(self) -> float:
        return self.tokens / self.imgs if self.imgs else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "toks_per_cap": self.toks_per_cap, "toks_per_img": self.toks_per_img}


def compute_stats(records: Iterable[DCIImage], count: Callable[[str], int]) -> list[StatsRow]:
    """Table 1 rows over ``records``; ``count`` gives a text's token count.

    - DCI: one example and one caption per image, the assembled whole-image text.
    - DCI_sub: every image and every mask of ``mask_data``; one assembled text each.
    - sDCI: images with summaries; every string of ``summaries["base"]``.
    - sDCI_sub: those images plus every ``m-<idx>-sc`` summary key; every summary string.
    """
    rows = {name: StatsRow(name) for name in ROWS}
    for record in records:
        whole = count(image_text(record))
        for name in ("DCI", "DCI_sub"):
            rows[name].imgs += 1
            rows[name].caps += 1
            rows[name].tokens += whole
        for idx in record.masks:
            rows["DCI_sub"].imgs += 1
            rows["DCI_sub"].caps += 1
            rows["DCI_sub"].tokens += count(mask_text(record, idx))
        if not record.summaries:
            continue
        rows["sDCI"].imgs += 1
        rows["sDCI_sub"].imgs += 1 + sum(1 for k in record.summaries if k != BASE_KEY)
        for key, texts in record.summaries.items():
            tokens = [count(t) for t in texts]
            if key == BASE_KEY:
                rows["sDCI"].caps += len(tokens)
                rows["sDCI"].tokens += sum(tokens)
            rows["sDCI_sub"].caps += len(tokens)
            rows["sDCI_sub"].tokens += sum(tokens)
    return [rows[name] for name in ROWS]


def add_rows(total: list[StatsRow], part: list[StatsRow]) -> None:
    """Add ``part``'s counts into ``total`` (same row order)."""
    for row, other in zip(total, part):
        row.imgs += other.imgs
        row.caps += other.caps
        row.tokens += other.tokens


@functools.lru_cache(maxsize=1)
def _counter():
    """One CLIP tokenizer per process (loading its vocabulary takes a while)."""
    from densecaption.tokens import ClipTokenCounter

    return ClipTokenCounter()


def _stats_chunk(dataset: DCIDataset, files: list[str]) -> list[list[StatsRow] | tuple]:
    """Each file's rows (or the findings of why it does not parse, as an exception does not survive pickling
    whole), in a worker process with its own tokenizer."""
    counter = _counter()
    out: list[list[StatsRow] | tuple] = []
    for file in files:
        try:
            out.append(compute_stats([dataset.read(file)], counter))
        except RecordError as e:
            out.append(tuple(e.findings))
    return out


def dataset_stats(dataset: DCIDataset, split: str | None, skip: SkipLog, *, workers: int | None = None,
                  progress: Callable[[int], None] = lambda n: None) -> list[StatsRow]:
    """Table 1 rows of a split counted in ``workers`` processes (None: one per core); records that fail to
    parse reach ``skip`` in file order, so the rows and the warnings equal those of one process."""
    import os
    from concurrent.futures import ProcessPoolExecutor

    files = dataset.files(split)
    workers = (os.cpu_count() or 1) if workers is None else workers
    size = max(1, min(64, len(files) // (4 * max(workers, 1))))
    chunks = [files[i:i + size] for i in range(0, len(files), size)]
    total = [StatsRow(name) for name in ROWS]
    if workers <= 1:
        for chunk in chunks:
            _merge(total, _stats_chunk(dataset, chunk), skip, progress)
        return total
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for part in pool.map(_stats_chunk, [dataset] * len(chunks), chunks):
            _merge(total, part, skip, progress)
    return total


def _merge(total: list[StatsRow], part: list, skip: SkipLog, progress: Callable[[int], None]) -> None:
    for rows in part:
        if isinstance(rows, tuple):
            skip.skip(RecordError(list(rows)))
        else:
            add_rows(total, rows)
        progress(1)
