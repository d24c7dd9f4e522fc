"""The record list of ``densecaption view``: one small row per annotation file, cached on disk.

The first scan parses every file (8,000 for the release); the rows are then kept in a JSON file keyed by
each file's size and modification time, so the next start only stats the folder and re-reads the files that
changed. Search text (captions and labels, lower-cased) goes to a second file that is read on the first
search only, so opening the index stays small and fast.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from densecaption.data.dci import DCIDataset
from densecaption.data.findings import RecordError
from densecaption.data.schema import DCIImage
from densecaption.files import atomic_write_text
from densecaption.web.records import MaskText, total_words

CACHE_VERSION = 1


@dataclass
class IndexRow:
    """What the index page shows of one record; ``error`` is set when the file does not parse."""

    file: str
    stem: str
    split: str
    image: str = ""
    masks: int = 0
    words: int = 0
    summaries: bool = False
    negatives: bool = False
    clip_scores: bool = False
    error: str | None = None
    size: int = 0
    mtime_ns: int = 0


def row_of(record: DCIImage, split: str) -> IndexRow:
    """The index row of a parsed record (no stat fields)."""
    masks = [MaskText(m.label, m.caption, m.quality) for m in record.masks.values()]
    return IndexRow(file=record.file, stem=record.id, split=split, image=record.image, masks=len(record.masks),
                    words=total_words(record.short_caption, record.extra_caption, masks),
                    summaries=bool(record.summaries), negatives=bool(record.negatives),
                    clip_scores=bool(record.clip_scores))


def search_text(record: DCIImage) -> str:
    """What a search looks through: both captions and every mask's label and caption, lower-cased."""
    parts = [record.short_caption, record.extra_caption]
    for m in record.masks.values():
        parts += [m.label, m.caption]
    return "\n".join(parts).lower()


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "densecaption" / "view"


@dataclass
class RecordIndex:
    """The rows of a dataset in ``splits.json`` order (files in no split last, under split ``none``)."""

    dataset: DCIDataset
    rows: list[IndexRow]
    cache_path: Path | None
    parsed: int = 0
    """How many files this open had to parse (0 when the cache was current)."""
    _by_stem: dict[str, int] = field(default_factory=dict)
    _search: dict[str, str] | None = None

    def __post_init__(self) -> None:
        self._by_stem = {row.stem: i for i, row in enumerate(self.rows)}

    @classmethod
    def open(cls, dataset: DCIDataset, cache_dir: Path | None,
             progress: Callable[[int], None] | None = None) -> "RecordIndex":
        """Rows from the cache where a file's size and mtime still match, parsed anew otherwise."""
        cache_path = _cache_path(dataset, cache_dir) if cache_dir is not None else None
        cached = _load_cache(cache_path)
        split_of = _split_of(dataset)
        stats = {e.name: e.stat() for e in os.scandir(dataset.annotation_dir)
                 if e.name.endswith(".json") and e.is_file()}
        order = [f for f in split_of if f in stats] + sorted(f for f in stats if f not in split_of)
        rows, fresh, texts = [], 0, None
        for file in order:
            st = stats[file]
            row = cached.get(file)
            if row is None or row.size != st.st_size or row.mtime_ns != st.st_mtime_ns:
                if texts is None:
                    texts = _load_search(cache_path)
                row, texts[file] = _parse_row(dataset, file, split_of.get(file, "none"))
                row.size, row.mtime_ns = st.st_size, st.st_mtime_ns
                fresh += 1
                if progress:
                    progress(1)
            row.split = split_of.get(file, "none")
            rows.append(row)
        index = cls(dataset, rows, cache_path, parsed=fresh)
        if texts is not None:  # some files were parsed: the search texts are at hand
            index._search = {f: t for f, t in texts.items() if f in stats}
        if cache_path is not None and (fresh or len(cached) != len(rows)):
            index._search = index._texts()
            index._save()
        return index

    def _save(self) -> None:
        try:
            atomic_write_text(self.cache_path, json.dumps(
                {"version": CACHE_VERSION, "root": str(self.dataset.root), "source": self.dataset.source,
                 "rows": [asdict(r) for r in self.rows]}))
            atomic_write_text(_search_path(self.cache_path), json.dumps(self._search))
        except OSError:
            pass  # a cache that cannot be written only costs the next start a scan

    def get(self, stem: str) -> IndexRow | None:
        i = self._by_stem.get(stem)
        return None if i is None else self.rows[i]

    def neighbours(self, stem: str) -> tuple[str | None, str | None]:
        """The previous and next record's stems in index order (None at the ends)."""
        i = self._by_stem[stem]
        prev = self.rows[i - 1].stem if i > 0 else None
        nxt = self.rows[i + 1].stem if i + 1 < len(self.rows) else None
        return prev, nxt

    def splits(self) -> list[str]:
        return list(dict.fromkeys(r.split for r in self.rows))

    def filter(self, split: str | None = None, query: str | None = None) -> list[IndexRow]:
        """Rows of one split (all when None) whose captions or labels contain every word of ``query``."""
        rows = [r for r in self.rows if not split or r.split == split]
        words = (query or "").lower().split()
        if not words:
            return rows
        texts = self._texts()
        return [r for r in rows if all(w in texts.get(r.file, "") for w in words)]

    def _texts(self) -> dict[str, str]:
        if self._search is None:
            texts = _load_search(self.cache_path)
            missing = [r for r in self.rows if r.file not in texts]
            for row in missing:  # no cache: read the files now, once
                texts[row.file] = _parse_row(self.dataset, row.file, row.split)[1]
            self._search = texts
        return self._search


def _parse_row(dataset: DCIDataset, file: str, split: str) -> tuple[IndexRow, str]:
    try:
        record = dataset.read(file)
    except RecordError as e:
        stem = file[:-5] if file.endswith(".json") else file
        return IndexRow(file=file, stem=stem, split=split, error=str(e)), ""
    return row_of(record, split), search_text(record)


def _split_of(dataset: DCIDataset) -> dict[str, str]:
    """Annotation file name -> split, in ``splits.json`` order; empty when it is absent or broken."""
    if not (dataset.root / "splits.json").exists():
        return {}
    try:
        splits = dataset.splits()
    except RecordError:
        return {}
    return {dataset.file_name(n): split for split, names in splits.items() for n in names}


def _cache_path(dataset: DCIDataset, cache_dir: Path) -> Path:
    key = hashlib.sha1(f"{dataset.root.resolve()}|{dataset.source}".encode()).hexdigest()[:16]
    return Path(cache_dir) / f"index-{key}.json"


def _search_path(cache_path: Path) -> Path:
    return cache_path.with_name(cache_path.stem + ".search.json")


def _load_cache(path: Path | None) -> dict[str, IndexRow]:
    if path is None or not path.is_file():
        return {}
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
        if obj.get("version") != CACHE_VERSION:
            return {}
        return {r["file"]: IndexRow(**r) for r in obj["rows"]}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return {}  # a broken cache is rebuilt


def _load_search(cache_path: Path | None) -> dict[str, str]:
    if cache_path is None:
        return {}
    try:
        obj = json.loads(_search_path(cache_path).read_text(encoding="utf-8"))
        return {k: v for k, v in obj.items() if isinstance(v, str)} if isinstance(obj, dict) else {}
    except (OSError, ValueError):
        return {}
