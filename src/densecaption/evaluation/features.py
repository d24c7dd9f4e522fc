"""Encode each unique crop and text once: photos decoded once in worker processes, encoding batched and,
under ``accelerate launch``, sharded across processes with the features gathered back in order."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import torch

from densecaption.data.schema import Box
from densecaption.data.subcrop import CropKey
from densecaption.distributed import process_state
from densecaption.files import atomic_write

if TYPE_CHECKING:
    from densecaption.evaluation.crop_cache import CropCache

ENCODE_CHUNK = 64
TEXT_CHUNK = 4096


class _CropDataset(torch.utils.data.Dataset):
    """One item per photo: the photo decoded once and all its requested crops cut from it (or read from a
    crop cache); with ``preprocess`` the crops leave the worker as one tensor of model inputs."""

    def __init__(self, groups: list[tuple[Path, list[Box]]], preprocess: Callable | None = None,
                 crop_cache: CropCache | None = None):
        self.groups, self.preprocess, self.crop_cache = groups, preprocess, crop_cache

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, i: int):
        path, boxes = self.groups[i]
        if self.crop_cache is not None:
            crops = [self.crop_cache.image(CropKey(path, b)) for b in boxes]
        else:
            from PIL import Image

            with Image.open(path) as im:
                photo = im.convert("RGB")
            crops = [photo.crop((b.x0, b.y0, b.x1, b.y1)) for b in boxes]
        return self.preprocess(crops) if self.preprocess is not None else crops


@dataclass
class FeatureStore:
    """Features of every unique crop and text of a run, and how many of each this run encoded."""

    model: object
    num_workers: int = 0
    cache_dir: Path | None = None
    encoded_images: int = 0
    encoded_texts: int = 0
    crop_cache: CropCache | None = None
    """Read crops from this cache (filled first with what is missing) instead of decoding full photos."""
    decode_seconds: float = 0.0
    """Time the encoding loop waited for decoded crops (the decode share of a run; 0 when fully overlapped)."""

    def encode(self, crops: Sequence[CropKey], texts: Sequence[str],
               progress: Callable[[int], None] = lambda n: None) -> tuple[torch.Tensor, torch.Tensor]:
        """(image features, text features) in the order given; each item not in the cache is encoded once,
        by one of the processes, and every process gets all features back."""
        state = process_state()
        rank, world = (state.process_index, state.num_processes) if state else (0, 1)
        text_keys = [hashlib.sha256(t.encode()).hexdigest() for t in texts]
        text_cache = self._load("texts")
        todo_texts = [i for i, k in enumerate(text_keys) if k not in text_cache][rank::world]
        new_texts = list(zip(todo_texts, self._encode_texts([texts[i] for i in todo_texts], progress)))
        if getattr(self.model, "uses_images", True):
            image_keys = [_crop_digest(c) for c in crops]
            image_cache = self._load("images")
            todo_crops = [i for i, k in enumerate(image_keys) if k not in image_cache][rank::world]
            new_crops = list(zip(todo_crops, self._encode_crops([crops[i] for i in todo_crops], progress)))
        else:  # an image-blind scorer: no photo is decoded
            image_keys, image_cache, new_crops = [], {}, []
        if state is not None:
            from accelerate.utils import gather_object

            new_crops, new_texts = gather_object(new_crops), gather_object(new_texts)
        for cache, keys, new in ((image_cache, image_keys, new_crops), (text_cache, text_keys, new_texts)):
            cache.update((keys[i], row) for i, row in new)
        self.encoded_images += len(new_crops)
        self.encoded_texts += len(new_texts)
        if state is None or state.is_main_process:
            self._save("images", image_cache, bool(new_crops))
            self._save("texts", text_cache, bool(new_texts))
        images = (_stack([image_cache[k] for k in image_keys]) if image_keys
                  else self.model.encode_images([None] * len(crops)))
        return images, _stack([text_cache[k] for k in text_keys])

    def _encode_crops(self, crops: Sequence[CropKey], progress) -> list[torch.Tensor]:
        """Rows for ``crops`` in order; each photo decoded once (in worker processes when asked). Models with
        ``pixel_values`` and ``encode_pixels`` get their preprocessing done in the workers too."""
        import time

        if self.crop_cache is not None:
            self.crop_cache.fill(crops, workers=self.num_workers)
        by_photo: dict[Path, list[int]] = {}
        for i, crop in enumerate(crops):
            by_photo.setdefault(crop.photo, []).append(i)
        groups = [(photo, [crops[i].box for i in idx]) for photo, idx in by_photo.items()]
        order = [i for idx in by_photo.values() for i in idx]
        tensors = hasattr(self.model, "encode_pixels") and hasattr(self.model, "pixel_values")
        encode = self.model.encode_pixels if tensors else self.model.encode_images
        join = torch.cat if tensors else (lambda parts: [c for part in parts for c in part])
        loader = torch.utils.data.DataLoader(
            _CropDataset(groups, self.model.pixel_values if tensors else None, self.crop_cache), batch_size=None,
            shuffle=False, num_workers=self.num_workers,
            pin_memory=tensors and str(getattr(self.model, "device", "cpu")).startswith("cuda"))
        pending, size, done = [], 0, []
        waited = time.perf_counter()
        for photo_crops in loader:
            self.decode_seconds += time.perf_counter() - waited
            pending.append(photo_crops)
            size += len(photo_crops)
            if size >= ENCODE_CHUNK:
                done.append(encode(join(pending)))
                progress(size)
                pending, size = [], 0
            waited = time.perf_counter()
        if pending:
            done.append(encode(join(pending)))
            progress(size)
        rows: list[torch.Tensor | None] = [None] * len(crops)
        for i, row in zip(order, torch.cat(done) if done else []):
            rows[i] = row
        return rows  # type: ignore[return-value]

    def _encode_texts(self, texts: Sequence[str], progress) -> list[torch.Tensor]:
        """Rows for ``texts`` in order, in large chunks: the backend sorts each chunk's texts by length into
        batches (docs/speed.md), so larger chunks leave less padding."""
        rows: list[torch.Tensor] = []
        for start in range(0, len(texts), TEXT_CHUNK):
            chunk = texts[start:start + TEXT_CHUNK]
            rows.extend(self.model.encode_texts(chunk))
            progress(len(chunk))
        return rows

    # The on-disk cache: one file per kind, keyed by content; the folder is chosen per model by the caller.
    def _load(self, kind: str) -> dict[str, torch.Tensor]:
        path = self.cache_dir / f"{kind}.pt" if self.cache_dir else None
        if path is not None and path.exists():
            return torch.load(path, weights_only=True)
        return {}

    def _save(self, kind: str, cache: dict[str, torch.Tensor], changed: bool) -> None:
        if self.cache_dir is None or not changed:
            return
        rows = {k: v.clone() for k, v in cache.items()}
        atomic_write(self.cache_dir / f"{kind}.pt", lambda tmp: torch.save(rows, tmp))


def _crop_digest(crop: CropKey) -> str:
    """Content key of a crop: the photo's bytes (size and mtime as a cheap proxy) and the box."""
    from densecaption.evaluation.crop_cache import crop_digest

    return crop_digest(crop)


def _stack(rows: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack(rows) if rows else torch.empty(0, 0)
