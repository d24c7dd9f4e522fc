"""Training entries for CLIP fine-tuning: sDCI entries (whole photo and kept masks' subcrops) with their
summaries and negatives, caption choice per epoch (First, Pick1, PickN) and batches ready for the model."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch

from densecaption.data.dci import DCIDataset
from densecaption.data.findings import SkipLog
from densecaption.data.schema import Box
from densecaption.data.sdci import EntryFilter, records_with_sizes, sdci_entries
from densecaption.data.subcrop import CropKey
from densecaption.seeding import keyed_rng

if TYPE_CHECKING:
    from densecaption.evaluation.crop_cache import CropCache

Captions = Literal["first", "pick1", "pickN"]
PHOTO_CACHE = 16


@dataclass(frozen=True)
class TrainEntry:
    image: str
    photo: Path
    crop: Box
    summaries: tuple[str, ...]
    negatives: tuple[str, ...]


def load_entries(dataset: DCIDataset, split: str, *, negative_kind: str = "swaps",
                 entry_filter: EntryFilter = EntryFilter(), skip: SkipLog | None = None,
                 ) -> tuple[list[TrainEntry], list[list[int]]]:
    """Entries of a split and their grouping by image (for ImgGroup batching).

    An entry needs summaries and at least one negative of ``negative_kind`` (``any``: every kind).
    """
    skip = skip if skip is not None else SkipLog()
    entries: list[TrainEntry] = []
    groups: list[list[int]] = []
    for record, size in records_with_sizes(dataset, split, skip):
        group = []
        for e in sdci_entries(record, entry_filter, size):
            kinds = e.negatives.values() if negative_kind == "any" else [e.negatives.get(negative_kind, [])]
            negatives = tuple(t for texts in kinds for t in texts)
            if e.summaries and negatives:
                group.append(len(entries))
                entries.append(TrainEntry(record.file, record.photo_path, e.crop, tuple(e.summaries), negatives))
        if group:
            groups.append(group)
    return entries, groups


def parse_split(dataset: DCIDataset, split: str, skip: SkipLog) -> int:
    """Read a split's records once so that those failing to parse reach ``skip`` now (warned, or with a strict
    log the run stops) rather than inside a later pass that ignores them; the number that parse."""
    return sum(1 for _ in records_with_sizes(dataset, split, skip))


def choose_captions(entry: TrainEntry, captions: Captions, n: int, rng: random.Random) -> list[str]:
    """First: summary 0. Pick1: one summary at random. PickN: ``n`` at random (without repeats while the
    entry has enough, cycling through them when it has fewer)."""
    if captions == "first":
        return [entry.summaries[0]]
    if captions == "pick1":
        return [rng.choice(entry.summaries)]
    if captions == "pickN":
        order = rng.sample(entry.summaries, len(entry.summaries))
        return [order[i % len(order)] for i in range(n)]
    raise ValueError(f"captions {captions!r}: choose first, pick1 or pickN")


class EntryDataset(torch.utils.data.Dataset):
    """Items are (pixels, positives, negative) for the current ``epoch``; choices are seeded by
    (seed, epoch, index), so a resumed run sees exactly what an uninterrupted one would."""

    def __init__(self, entries: list[TrainEntry], backend, *, captions: Captions = "first", n: int = 1,
                 seed: int = 0, crop_cache: CropCache | None = None):
        self.entries, self.backend, self.captions, self.n, self.seed = entries, backend, captions, n, seed
        self.crop_cache = crop_cache
        """Read each entry's crop, already resized, from this cache instead of decoding its full photo."""
        self.epoch = 0
        self._photos: dict[Path, object] = {}  # a few decoded photos per worker: crops of one image repeat

    @property
    def positives_per_entry(self) -> int:
        return self.n if self.captions == "pickN" else 1

    def __len__(self) -> int:
        return len(self.entries)

    def photo(self, path: Path):
        from PIL import Image

        if path not in self._photos:
            if len(self._photos) >= PHOTO_CACHE:
                self._photos.pop(next(iter(self._photos)))
            with Image.open(path) as im:
                self._photos[path] = im.convert("RGB")
        return self._photos[path]

    def crop_key(self, i: int) -> CropKey:
        return CropKey(self.entries[i].photo, self.entries[i].crop)

    def __getitem__(self, i: int) -> dict:
        entry = self.entries[i]
        rng = keyed_rng(self.seed, self.epoch, i)
        if self.crop_cache is not None:
            crop = self.crop_cache.image(self.crop_key(i))
        else:
            crop = self.photo(entry.photo).crop((entry.crop.x0, entry.crop.y0, entry.crop.x1, entry.crop.y1))
        return {"pixels": self.backend.pixel_values([crop])[0],
                "positives": choose_captions(entry, self.captions, self.n, rng),
                "negative": rng.choice(entry.negatives)}

    def collate(self, items: list[dict]) -> dict:
        return {"pixels": torch.stack([it["pixels"] for it in items]),
                "positives": self.backend.tokenize([t for it in items for t in it["positives"]]),
                "negatives": self.backend.tokenize([it["negative"] for it in items])}
