"""Encode each unique crop and text once: photos decoded once in worker processes, encoding batched and,
under ``accelerate launch``, sharded across processes with the features gathered back in order."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

from densecaption.data.schema import Box
from densecaption.distributed import process_state

ENCODE_CHUNK = 64


@dataclass(frozen=True)
class CropKey:
    """A region of a photo: the unit the image encoder sees once per run."""

    photo: Path
    box: Box


class _CropDataset(torch.utils.data.Dataset):
    """One item per photo: the photo decoded once and all its requested crops cut from it."""

    def __init__(self, groups: list[tuple[Path, list[Box]]]):
        self.groups = groups

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, i: int):
        from PIL import Image

        path, boxes = self.groups[i]
        with Image.open(path) as im:
            photo = im.convert("RGB")
        return [photo.crop((b.x0, b.y0, b.x1, b.y1)) for b in boxes]


@dataclass
class FeatureStore:
    """Features of every unique crop and text of a run, and how many of each this run encoded."""

    model: object
    num_workers: int = 0
    cache_dir: Path | None = None
    encoded_images: int = 0
    encoded_texts: int = 0

    def encode(self, crops: Sequence[CropKey], texts: Sequence[str],
               progress: Callable[[int], None] = lambda n: None) -> tuple[torch.Tensor, torch.Tensor]:
        """(image features, text features) in the order given; each item encoded once across processes."""
        state = process_state()
        rank, world = (state.process_index, state.num_processes) if state else (0, 1)
        mine_crops = [i for i in range(len(crops)) if i % world == rank]
        mine_texts = [i for i in range(len(texts)) if i % world == rank]
        before = (self.encoded_images, self.encoded_texts)
        image_parts = self._encode_crops([crops[i] for i in mine_crops], progress)
        text_parts = self._encode_texts([texts[i] for i in mine_texts], progress)
        if state is None:
            return image_parts, text_parts
        from accelerate.utils import gather_object

        # every process reports the whole run's counts
        counts = gather_object([(self.encoded_images - before[0], self.encoded_texts - before[1])])
        self.encoded_images = before[0] + sum(c[0] for c in counts)
        self.encoded_texts = before[1] + sum(c[1] for c in counts)
        return (_gather(mine_crops, image_parts, len(crops)), _gather(mine_texts, text_parts, len(texts)))

    def _encode_crops(self, crops: Sequence[CropKey], progress) -> torch.Tensor:
        if not getattr(self.model, "uses_images", True):  # an image-blind scorer: no photo is decoded
            return self.model.encode_images([None] * len(crops))
        cache = self._cache("images")
        keys = [_crop_digest(c) for c in crops]
        todo = [i for i, k in enumerate(keys) if k not in cache]
        by_photo: dict[Path, list[int]] = {}
        for i in todo:
            by_photo.setdefault(crops[i].photo, []).append(i)
        groups = [(photo, [crops[i].box for i in idx]) for photo, idx in by_photo.items()]
        order = [i for idx in by_photo.values() for i in idx]
        loader = torch.utils.data.DataLoader(_CropDataset(groups), batch_size=None, shuffle=False,
                                             num_workers=self.num_workers)
        pending, done = [], []
        for photo_crops in loader:
            pending.extend(photo_crops)
            if len(pending) >= ENCODE_CHUNK:
                done.append(self.model.encode_images(pending))
                progress(len(pending))
                pending = []
        if pending:
            done.append(self.model.encode_images(pending))
            progress(len(pending))
        self.encoded_images += len(todo)
        for i, row in zip(order, torch.cat(done) if done else []):
            cache[keys[i]] = row
        self._save("images", cache)
        return _stack([cache[k] for k in keys])

    def _encode_texts(self, texts: Sequence[str], progress) -> torch.Tensor:
        cache = self._cache("texts")
        keys = [hashlib.sha256(t.encode()).hexdigest() for t in texts]
        todo = [i for i, k in enumerate(keys) if k not in cache]
        for start in range(0, len(todo), ENCODE_CHUNK * 4):
            chunk = todo[start:start + ENCODE_CHUNK * 4]
            for i, row in zip(chunk, self.model.encode_texts([texts[i] for i in chunk])):
                cache[keys[i]] = row
            progress(len(chunk))
        self.encoded_texts += len(todo)
        self._save("texts", cache)
        return _stack([cache[k] for k in keys])

    # The on-disk cache: one file per kind, keyed by content; the folder is chosen per model by the caller.
    def _cache(self, kind: str) -> dict[str, torch.Tensor]:
        path = self.cache_dir / f"{kind}.pt" if self.cache_dir else None
        if path is not None and path.exists():
            return torch.load(path, weights_only=True)
        return {}

    def _save(self, kind: str, cache: dict[str, torch.Tensor]) -> None:
        if self.cache_dir is None:
            return
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.cache_dir / f".{kind}.pt.tmp"
        torch.save({k: v.clone() for k, v in cache.items()}, tmp)
        tmp.replace(self.cache_dir / f"{kind}.pt")


def _crop_digest(crop: CropKey) -> str:
    """Content key of a crop: the photo's bytes (size and mtime as a cheap proxy) and the box."""
    stat = crop.photo.stat()
    b = crop.box
    return hashlib.sha256(f"{crop.photo.name}|{stat.st_size}|{stat.st_mtime_ns}|{b.x0},{b.y0},{b.x1},{b.y1}"
                          .encode()).hexdigest()


def _stack(rows: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack(rows) if rows else torch.empty(0, 0)


def _gather(indices: list[int], features: torch.Tensor, total: int) -> torch.Tensor:
    """All processes' (index, row) pairs put back in the original order."""
    from accelerate.utils import gather_object

    pairs = gather_object(list(zip(indices, features)))
    out: list[torch.Tensor | None] = [None] * total
    for i, row in pairs:
        out[i] = row
    return _stack(out)  # type: ignore[arg-type]
