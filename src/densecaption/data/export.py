"""DCI as Hugging Face ``datasets`` tables, for use outside this tool: one row per record, and a flat
table of sDCI entries. See docs/real-data.md for the columns.

Rows are produced one record at a time and written as they come (``Dataset.from_generator`` for the
``datasets`` folder, a pyarrow ``ParquetWriter`` for Parquet), so memory stays flat in the number of records.
Masks are stored as COCO run-length encodings (``masks.rle``): ``{"size": [h, w], "counts": str}``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Literal

from densecaption.data.findings import SkipLog
from densecaption.data.schema import DCIImage
from densecaption.errors import UserError
from densecaption.masks.rle import encode_rle

if TYPE_CHECKING:
    import datasets

    from densecaption.data.dci import DCIDataset

Table = Literal["records", "entries"]
TABLES: tuple[Table, ...] = ("records", "entries")
BATCH = 64
"""Rows held before they are written (a Parquet row group, a ``datasets`` writer batch): few, since a record
row holds its photo (``datasets`` holds 1,000 by default)."""


def features(table: Table) -> "datasets.Features":
    """The column types of a table (fixed, so empty lists and absent fields type the same in every row)."""
    from datasets import Features, Image, List, Value

    texts = List(Value("string"))
    summaries = List({"key": Value("string"), "texts": texts})
    negatives = List({"key": Value("string"), "kind": Value("string"), "texts": texts})
    scores = List({"key": Value("string"), "name": Value("string"), "value": Value("float64")})
    if table == "entries":
        return Features({"file": Value("string"), "image": Value("string"), "key": Value("string"),
                         "mask_idx": Value("int64"), "crop": List(Value("int64")), "summaries": texts,
                         "negatives": List({"kind": Value("string"), "texts": texts}),
                         "clip_scores": List({"name": Value("string"), "value": Value("float64")})})
    mask = {"idx": Value("int64"), "parent": Value("int64"), "requirements": List(Value("int64")),
            "label": Value("string"), "caption": Value("string"), "quality": Value("int64"),
            "area": Value("int64"), "bbox": List(Value("int64")),
            "rle": {"size": List(Value("int64")), "counts": Value("string")}}
    return Features({"file": Value("string"), "image_name": Value("string"), "image": Image(),
                     "width": Value("int64"), "height": Value("int64"), "short_caption": Value("string"),
                     "extra_caption": Value("string"), "masks": List(mask), "summaries": summaries,
                     "negatives": negatives, "clip_scores": scores})


def record_row(record: DCIImage, size: tuple[int, int]) -> dict[str, Any]:
    """One record as a row: the photo's bytes, masks as RLE, the per-entry fields as lists of (key, ...)."""
    masks = [{"idx": m.idx, "parent": m.parent, "requirements": list(m.requirements), "label": m.label,
              "caption": m.caption, "quality": m.quality, "area": m.area,
              "bbox": [m.box.x0, m.box.y0, m.box.x1, m.box.y1], "rle": encode_rle(record.mask_pixels(m.idx))}
             for m in record.masks.values()]
    return {"file": record.file, "image_name": record.image,
            "image": {"bytes": record.photo_path.read_bytes(), "path": record.image},
            "width": size[0], "height": size[1], "short_caption": record.short_caption,
            "extra_caption": record.extra_caption, "masks": masks,
            "summaries": [{"key": k, "texts": list(v)} for k, v in (record.summaries or {}).items()],
            "negatives": [{"key": k, "kind": kind, "texts": list(t)}
                          for k, kinds in (record.negatives or {}).items() for kind, t in kinds.items()],
            "clip_scores": [{"key": k, "name": n, "value": float(v)}
                            for k, named in (record.clip_scores or {}).items() for n, v in named.items()]}


def entry_rows(record: DCIImage, size: tuple[int, int]) -> Iterator[dict[str, Any]]:
    """The record's sDCI entries (the reference filter), one row each."""
    from densecaption.data.sdci import sdci_entries

    for e in sdci_entries(record, size=size):
        yield {"file": e.image_file, "image": record.image, "key": e.key, "mask_idx": e.mask_idx,
               "crop": [e.crop.x0, e.crop.y0, e.crop.x1, e.crop.y1], "summaries": list(e.summaries),
               "negatives": [{"kind": k, "texts": list(t)} for k, t in e.negatives.items()],
               "clip_scores": [{"name": n, "value": float(v)} for n, v in (e.clip_scores or {}).items()]}


def rows(dataset: "DCIDataset", table: Table, split: str | None, skip: SkipLog,
         progress: Callable[[int], None] | None = None) -> Iterator[dict[str, Any]]:
    """The rows of ``table``, one record read at a time; records whose photo is missing or misfit go to
    ``skip``."""
    from densecaption.data.findings import RecordError
    from densecaption.data.sdci import records_with_sizes

    for record, size in records_with_sizes(dataset, split, skip):
        try:
            if table == "records":
                yield record_row(record, size)
            else:
                yield from entry_rows(record, size)
        except RecordError as e:  # a mask PNG that does not decode
            skip.skip(e)
        if progress:
            progress(1)


def to_hf(dataset: "DCIDataset", split: str | None = None, table: Table = "records", *,
          skip: SkipLog | None = None, cache_dir: str | None = None) -> "datasets.Dataset":
    """``table`` as a ``datasets.Dataset``, written to ``datasets``' cache as it is generated."""
    from datasets import Dataset

    skip = skip if skip is not None else SkipLog(strict=True)
    return Dataset.from_generator(_generate, features=features(table), cache_dir=cache_dir,
                                  fingerprint=fingerprint(dataset, table, split), writer_batch_size=BATCH,
                                  gen_kwargs={"dataset": dataset, "table": table, "split": split, "skip": skip})


def fingerprint(dataset: "DCIDataset", table: Table, split: str | None) -> str:
    """What ``datasets`` caches a generated table under: the folder, table and split, and the name, size and
    time of every annotation file and photo, so a changed folder is generated again (and its arguments,
    which hold callbacks, need not be hashed)."""
    import hashlib

    digest = hashlib.sha256(f"{dataset.root.resolve()}|{dataset.source}|{table}|{split}".encode())
    for folder in (dataset.annotation_dir, dataset.photo_dir, dataset.root / "splits.json"):
        entries = sorted(os.scandir(folder), key=lambda e: e.name) if folder.is_dir() else []
        if folder.is_file():
            entries = [folder]
        for entry in entries:
            st = os.stat(entry)
            digest.update(f"{os.fspath(entry)}:{st.st_size}:{st.st_mtime_ns};".encode())
    return digest.hexdigest()[:32]


def _generate(dataset, table, split, skip):  # a module function: datasets fingerprints its generator
    yield from rows(dataset, table, split, skip)


def write_parquet(path: Path, row_iter: Iterator[dict[str, Any]], table: Table) -> int:
    """Write rows to one Parquet file in row groups of ``BATCH``; the rows written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    feats = features(table)
    schema = feats.arrow_schema
    count, batch = 0, []
    with pq.ParquetWriter(str(path), schema) as writer:
        for row in row_iter:
            batch.append(feats.encode_example(row))
            if len(batch) == BATCH:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                count, batch = count + len(batch), []
        if batch or not count:
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
            count += len(batch)
    return count


def export(dataset: "DCIDataset", out: Path, fmt: Literal["hf", "parquet"], *, split: str | None, skip: SkipLog,
           stage: Callable[[str, int | None], Callable[[int], None]], overwrite: bool = False) -> dict[str, int]:
    """Write both tables into ``out`` (``records/`` and ``entries/`` for ``datasets.load_from_disk``, or
    ``records.parquet`` and ``entries.parquet``), built in a temporary folder beside it and renamed into
    place when whole. Returns the rows of each table."""
    out = out.expanduser()
    if out.exists() and not overwrite:
        raise UserError(f"{out} already exists (use --overwrite to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.export")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    counts = {}
    try:
        _quiet_datasets()  # its own bars would run beside ours
        n = len(dataset.files(split))
        for table in TABLES:
            table_skip = skip if table == "records" else SkipLog(strict=skip.strict)  # report each skip once
            if fmt == "parquet":
                counts[table] = write_parquet(tmp / f"{table}.parquet",
                                              rows(dataset, table, split, table_skip, stage(table, n)), table)
            else:
                from datasets import Dataset

                tick = stage(table, n)
                built = Dataset.from_generator(_generate_ticking, features=features(table),
                                               cache_dir=str(tmp / ".cache"), fingerprint=table,
                                               writer_batch_size=BATCH,
                                               gen_kwargs={"dataset": dataset, "table": table, "split": split,
                                                           "skip": table_skip, "progress": tick})
                built.save_to_disk(str(tmp / table))
                counts[table] = len(built)
                del built
        shutil.rmtree(tmp / ".cache", ignore_errors=True)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return counts


def _quiet_datasets() -> None:
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()


def _generate_ticking(dataset, table, split, skip, progress):
    yield from rows(dataset, table, split, skip, progress)
