"""A crop cache: each crop decoded from its full-size photo once, stored resized to what a model's
preprocessing needs (uint8, memory-mapped shards on disk) and read back by training, scoring and benchmarks.

Layout (docs/speed.md): ``ROOT/<preprocessing key>/shard-<n>.npy`` holds an (N, H, W, 3) uint8 array,
``shard-<n>.json`` the crop keys of its rows (``<n>``: crops cached before it, then a random suffix, so
concurrent fills never collide); a shard counts once its JSON exists. A crop's key is its photo's
identity (name, size, mtime) and its box; the folder's key is the preprocessing's geometric part (resize and
centre crop), so models preprocessing alike share the cache. Running the model's own preprocessing on a cached
crop gives exactly the tensor the fresh crop gives: the cached image already has the output size, and PIL
returns a same-size resize unchanged.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from densecaption.data.subcrop import CropKey
from densecaption.errors import UserError
from densecaption.files import atomic_write, atomic_write_text


@dataclass(frozen=True)
class Geometry:
    """The geometric part of a model's preprocessing: PIL image in, fixed-size PIL image out."""

    describe: str
    size: tuple[int, int]
    """(height, width) of every output."""
    apply: Callable


def geometry_of(model) -> Geometry:
    """The resize and centre crop of ``model``'s preprocessing (open_clip transforms or a transformers image
    processor); UserError for a model whose preprocessing has no fixed output size."""
    if hasattr(model, "image_processor"):
        return _hf_geometry(model.image_processor)
    preprocess = getattr(model, "preprocess", None)
    if preprocess is not None and hasattr(preprocess, "transforms"):
        return _torchvision_geometry(preprocess)
    raise UserError(f"model {getattr(model, 'spec', model)!r}: the crop cache knows open_clip and transformers "
                    "preprocessing only")


def _torchvision_geometry(preprocess) -> Geometry:
    from torchvision import transforms as T

    steps = []
    for t in preprocess.transforms:
        if isinstance(t, (T.ToTensor, T.Normalize, T.PILToTensor)):
            break
        if isinstance(t, (T.Resize, T.CenterCrop)):
            steps.append(t)
    crops = [t for t in steps if isinstance(t, T.CenterCrop)]
    if not crops:
        raise UserError("the crop cache needs a preprocessing with a fixed output size (a centre crop)")
    height, width = crops[-1].size
    return Geometry(describe=repr(T.Compose(steps)), size=(int(height), int(width)), apply=T.Compose(steps))


class _ProcessorGeometry:
    """A transformers image processor without rescale and normalisation: the resized, cropped pixels."""

    def __init__(self, processor):
        self.processor = processor

    def __call__(self, image):
        from PIL import Image

        out = self.processor(images=[image], do_rescale=False, do_normalize=False,
                             return_tensors="pt")["pixel_values"][0]
        return Image.fromarray(out.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy())


def _hf_geometry(processor) -> Geometry:
    crop = getattr(processor, "crop_size", None) or {}
    if not getattr(processor, "do_center_crop", False) or "height" not in crop:
        raise UserError("the crop cache needs a preprocessing with a fixed output size (a centre crop)")
    described = {k: v for k, v in processor.to_dict().items()
                 if k not in ("image_mean", "image_std", "rescale_factor", "do_rescale", "do_normalize")}
    described["class"] = type(processor).__name__
    return Geometry(describe=json.dumps(described, sort_keys=True, default=str),
                    size=(int(crop["height"]), int(crop["width"])), apply=_ProcessorGeometry(processor))


def crop_digest(crop: CropKey) -> str:
    """Content key of a crop: the photo's identity (name, size, mtime) and the box."""
    stat = crop.photo.stat()
    b = crop.box
    return hashlib.sha256(f"{crop.photo.name}|{stat.st_size}|{stat.st_mtime_ns}|{b.x0},{b.y0},{b.x1},{b.y1}"
                          .encode()).hexdigest()


class _DecodeDataset(torch.utils.data.Dataset):
    """One item per photo: the photo decoded once, its crops cut and resized, as uint8 arrays."""

    def __init__(self, groups: list[tuple[Path, list]], apply: Callable):
        self.groups, self.apply = groups, apply

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, i: int) -> np.ndarray:
        from PIL import Image

        path, boxes = self.groups[i]
        with Image.open(path) as im:
            photo = im.convert("RGB")
        return np.stack([np.asarray(self.apply(photo.crop((b.x0, b.y0, b.x1, b.y1)))) for b in boxes])


@dataclass
class CropCache:
    """The cache folder of one preprocessing under ``root``; ``fill`` adds missing crops, ``image`` reads one."""

    root: Path
    geometry: Geometry
    _index: dict[str, tuple[str, int]] = field(default_factory=dict, repr=False)
    _shards: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @classmethod
    def for_model(cls, root: Path, model) -> CropCache:
        geometry = geometry_of(model)
        key = hashlib.sha256(geometry.describe.encode()).hexdigest()[:16]
        cache = cls(Path(root) / key, geometry)
        cache.reload()
        return cache

    def reload(self) -> None:
        """Read the index of every finished shard (a killed fill leaves none half-written)."""
        self._index.clear()
        self._shards.clear()
        for meta in sorted(self.root.glob("shard-*.json")) if self.root.is_dir() else []:
            for row, key in enumerate(json.loads(meta.read_text(encoding="utf-8"))["keys"]):
                self._index.setdefault(key, (meta.stem, row))

    def __contains__(self, crop: CropKey) -> bool:
        return crop_digest(crop) in self._index

    def __len__(self) -> int:
        return len(self._index)

    def fill(self, crops: Sequence[CropKey], *, workers: int = 0,
             progress: Callable[[int], None] = lambda n: None) -> int:
        """Decode the crops not cached yet (each photo once, in ``workers`` processes) into a new shard; returns
        how many were added. Memory holds one photo per worker, whatever the number of photos."""
        todo: dict[str, CropKey] = {}
        for crop in crops:
            key = crop_digest(crop)
            if key not in self._index:
                todo.setdefault(key, crop)
        if not todo:
            return 0
        by_photo: dict[Path, list[str]] = {}
        for key, crop in todo.items():
            by_photo.setdefault(crop.photo, []).append(key)
        groups = [(photo, [todo[k].box for k in keys]) for photo, keys in by_photo.items()]
        keys = [k for ks in by_photo.values() for k in ks]
        self.root.mkdir(parents=True, exist_ok=True)
        # a unique name: processes filling at once (bench sdci under accelerate) never write the same shard
        stem = f"shard-{len(self._index):09d}-{uuid.uuid4().hex[:12]}"
        loader = torch.utils.data.DataLoader(_DecodeDataset(groups, self.geometry.apply), batch_size=None,
                                             num_workers=workers)

        def write(tmp: Path) -> None:
            # a .npy header, then rows appended as they come: written pages are not held in this process
            header = {"descr": "|u1", "fortran_order": False, "shape": (len(keys), *self.geometry.size, 3)}
            with open(tmp, "wb") as f:
                np.lib.format.write_array_header_1_0(f, header)
                for rows in loader:
                    rows = np.ascontiguousarray(rows, dtype=np.uint8)
                    f.write(rows.tobytes())
                    progress(len(rows))

        atomic_write(self.root / f"{stem}.npy", write)
        atomic_write_text(self.root / f"{stem}.json", json.dumps({"keys": keys}) + "\n")
        self.reload()
        return len(keys)

    def array(self, crop: CropKey) -> np.ndarray:
        """The cached (H, W, 3) uint8 pixels of ``crop`` (KeyError when not cached)."""
        shard, row = self._index[crop_digest(crop)]
        if shard not in self._shards:  # opened lazily, so each loader worker maps its own view
            self._shards[shard] = np.load(self.root / f"{shard}.npy", mmap_mode="r")
        return np.array(self._shards[shard][row])

    def image(self, crop: CropKey):
        """The cached crop as a PIL image, ready for the model's own preprocessing."""
        from PIL import Image

        return Image.fromarray(self.array(crop))
