"""Typed records for DCI annotations and sDCI benchmark entries.

The records mirror the official JSON (see docs/dci-format.md) closely enough to round-trip it: keys the
schema does not know are kept in ``extra`` and written back. No pixels are decoded until asked for.
"""

from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from densecaption.data.findings import Finding, RecordError, pointer

BASE_KEY = "base"
NEGATIVE_KINDS = ("basic", "layout", "swaps")


def mask_key(idx: int) -> str:
    """The key of a mask's entry in ``summaries``/``negatives``/``clip_scores``: ``m-<idx>-sc``."""
    return f"m-{idx}-sc"


def parse_mask_key(key: str) -> int | None:
    """The mask idx named by an ``m-<idx>-sc`` key, or None for any other key."""
    if key.startswith("m-") and key.endswith("-sc"):
        try:
            return int(key[2:-3])
        except ValueError:
            return None
    return None


@dataclass(frozen=True)
class Box:
    """A pixel box; ``x1``/``y1`` are exclusive, as in DCI's ``bounds.bottomRight``."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    def to_bounds(self) -> dict[str, dict[str, int]]:
        return {"topLeft": {"x": self.x0, "y": self.y0}, "bottomRight": {"x": self.x1, "y": self.y1}}

    @classmethod
    def from_bounds(cls, bounds: dict[str, Any]) -> "Box":
        tl, br = bounds["topLeft"], bounds["bottomRight"]
        return cls(int(tl["x"]), int(tl["y"]), int(br["x"]), int(br["y"]))


class MaskDecodeError(ValueError):
    """An ``outer_mask`` that is not a base64 PNG. The message says why but not where: the caller knows the
    file and the mask, and reports them (``DCIImage.mask_pixels``, ``data validate``)."""


def decode_mask_png(b64: str) -> np.ndarray:
    """Decode DCI's base64 1-bit PNG into a boolean array of shape (height, width).

    Bad input raises ``MaskDecodeError`` with a short reason, never a raw base64 or PIL exception."""
    from PIL import Image, UnidentifiedImageError

    try:
        data = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError) as e:
        raise MaskDecodeError(f"mask PNG does not decode: not base64 ({e})") from None
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return np.asarray(im.convert("L")) > 0
    except UnidentifiedImageError:
        raise MaskDecodeError("mask PNG does not decode: the bytes are not an image") from None
    except Exception as e:  # PIL raises many types for corrupt files
        raise MaskDecodeError(f"mask PNG does not decode: {e}") from None


def encode_mask_png(mask: np.ndarray) -> str:
    """Encode a boolean (height, width) array as DCI's base64 1-bit PNG."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(mask, dtype=bool)).convert("1").save(buf, format="PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode("ascii")


@dataclass
class Mask:
    """One region of an image: a node of the mask tree."""

    idx: int
    parent: int
    requirements: list[int]
    outer_mask: str
    area: int
    box: Box
    label: str
    caption: str
    quality: int
    extra: dict[str, Any] = field(default_factory=dict)

    def decode(self) -> np.ndarray:
        """The mask as a boolean (height, width) array at full image size (decoded now, not cached).
        Raises ``MaskDecodeError`` for a broken PNG (``DCIImage.mask_pixels`` adds the file and pointer)."""
        return decode_mask_png(self.outer_mask)


@dataclass
class DCIImage:
    """One annotation file: a photo, its captions, its mask tree and (for sDCI) its summaries."""

    file: str
    """Annotation file name (``<unit id>-data.json``): the record's identity."""
    image: str
    """Photo file name inside ``photos/``: the only link to the pixels."""
    short_caption: str
    extra_caption: str
    height: int | None
    width: int | None
    mask_keys: list[str]
    masks: dict[int, Mask]
    """Masks in the order of the JSON object ``mask_data`` (the order the benchmark uses)."""
    summaries: dict[str, list[str]] | None = None
    negatives: dict[str, dict[str, list[str]]] | None = None
    clip_scores: dict[str, dict[str, float]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    photo_path: Path | None = field(default=None, compare=False)
    bare_summary_keys: frozenset[str] = field(default=frozenset(), compare=False)
    """Summary keys that were a bare string in the file (a quirk of the release); kept to write them back."""

    @property
    def id(self) -> str:
        """The record id: the annotation file name without ``.json``."""
        return self.file[:-5] if self.file.endswith(".json") else self.file

    def children(self, idx: int) -> list[int]:
        """Existing children of a mask (``-1`` for the whole image), in ``requirements`` order.

        ``requirements`` may name masks dropped from the release; those are skipped. Top-level masks are
        those whose parent is -1, in ``mask_data`` order.
        """
        if idx == -1:
            return [m.idx for m in self.masks.values() if m.parent == -1]
        return [c for c in self.masks[idx].requirements if c in self.masks]

    def descendants(self, idx: int, *, enter_quality_2: bool = True) -> Iterator[int]:
        """Pre-order walk below a mask over existing children; never loops on a malformed cyclic tree."""
        seen = {idx}
        stack = list(reversed(self.children(idx)))
        while stack:
            child = stack.pop()
            if child in seen:
                continue
            seen.add(child)
            yield child
            if enter_quality_2 or self.masks[child].quality != 2:
                stack.extend(reversed(self.children(child)))

    def mask_pixels(self, idx: int) -> np.ndarray:
        """Mask ``idx`` decoded (see ``Mask.decode``); a broken PNG raises ``RecordError`` naming this file
        and the mask's JSON Pointer, as ``data validate`` reports it."""
        try:
            return self.masks[idx].decode()
        except MaskDecodeError as e:
            raise RecordError([Finding(self.file, pointer("mask_data", idx, "outer_mask"), str(e))]) from None

    def open_photo(self):
        """The photo as an RGB PIL image (read from disk now)."""
        from PIL import Image

        if self.photo_path is None:
            raise FileNotFoundError(f"{self.file}: no photo path known for {self.image!r}")
        with Image.open(self.photo_path) as im:
            return im.convert("RGB")


@dataclass(frozen=True)
class Entry:
    """One sDCI benchmark item: the whole photo (``key == "base"``) or one mask's subcrop."""

    image_file: str
    key: str
    mask_idx: int | None
    summaries: list[str]
    negatives: dict[str, list[str]]
    clip_scores: dict[str, float] | None
    crop: Box
    """Region of the photo the entry shows (the full photo for the base entry, the padded box for a mask)."""

    @property
    def is_base(self) -> bool:
        return self.mask_idx is None
