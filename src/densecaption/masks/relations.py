"""Mask relations of DCI's tree step on bounding-box crops (see ``docs/masks.md``).

A mask is held as its box and the pixels inside it, so a relation between two masks touches only the
pixels where their boxes meet (none at all for the many pairs whose boxes are apart). Sizes carry DCI's
``+ 1`` (``s = pixels + 1``). In ``dci-reference`` mode overlap and xor count only when the release's
box-corner test passes, else 0: its quirks (disjoint similar masks near-equivalent, crossing masks not
overlapping) follow from that.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from densecaption.masks import Mode

NEAR_DUPLICATE = 0.95
"""Tree step a: near-equivalent masks at this threshold are one mask (the higher score is kept)."""
CONTAINED = 0.90
"""Tree step b: a mask with more than this share of its pixels inside a node becomes its child."""
SIBLING_OVERLAP = 0.03
"""Refine: siblings overlapping by more than this share of either are joined."""
SINGLE_CHILD = 0.93
"""Refine: a node near-equivalent to its only child at this threshold takes that child's children."""


@dataclass(eq=False)
class BitMask:
    """A binary mask as its box ``[top, bottom) x [left, right)`` and the pixels inside it (``bits``).

    ``size`` is the pixel count the tree step uses: the real count, except that ``dci-reference`` takes the
    ``area`` SAM stated, as the release did. An empty mask has the box (0, 0, 0, 0)."""

    top: int
    left: int
    bottom: int
    right: int
    bits: np.ndarray
    score: float
    size: int = -1
    pixels: int = field(init=False)

    def __post_init__(self) -> None:
        self.pixels = int(np.count_nonzero(self.bits))
        if self.size < 0:
            self.size = self.pixels

    @classmethod
    def from_full(cls, mask: np.ndarray, score: float, size: int | None = None) -> "BitMask":
        """Crop a full-image boolean mask to its box."""
        mask = np.asarray(mask, dtype=bool)
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        if len(rows) == 0:
            return cls(0, 0, 0, 0, np.zeros((0, 0), dtype=bool), score, 0 if size is None else size)
        t, b, l, r = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        return cls(t, l, b, r, mask[t:b, l:r].copy(), score, -1 if size is None else size)

    @property
    def tlbr(self) -> tuple[int, int, int, int]:
        return self.top, self.left, self.bottom, self.right

    def full(self, height: int, width: int) -> np.ndarray:
        """The mask at full image size."""
        out = np.zeros((height, width), dtype=bool)
        out[self.top:self.bottom, self.left:self.right] = self.bits
        return out

    def window(self, top: int, left: int, bottom: int, right: int) -> np.ndarray:
        """Pixels of the box ``[top, bottom) x [left, right)``, which must lie inside this mask's box."""
        return self.bits[top - self.top:bottom - self.top, left - self.left:right - self.left]


def overlap_pixels(a: BitMask, b: BitMask) -> int:
    """Pixels in both masks, counted only where their boxes meet."""
    t, l = max(a.top, b.top), max(a.left, b.left)
    bm, r = min(a.bottom, b.bottom), min(a.right, b.right)
    if t >= bm or l >= r:
        return 0
    return int(np.count_nonzero(a.window(t, l, bm, r) & b.window(t, l, bm, r)))


def _in_box(y: int, x: int, m: BitMask) -> bool:
    """The release's point-in-box test: inclusive at both ends, so one past the exclusive bottom/right counts."""
    return m.top <= y <= m.bottom and m.left <= x <= m.right


def corners_meet(a: BitMask, b: BitMask) -> bool:
    """The release's box test before counting overlap: ``a``'s top-left or bottom-right inside ``b``'s box,
    or ``b``'s top-right or bottom-left inside ``a``'s. Boxes that cross without a corner inside fail it."""
    return (_in_box(a.top, a.left, b) or _in_box(a.bottom, a.right, b)
            or _in_box(b.top, b.right, a) or _in_box(b.bottom, b.left, a))


def overlap(a: BitMask, b: BitMask, mode: Mode = "default") -> int:
    """Shared pixels; in ``dci-reference`` 0 unless ``corners_meet(a, b)``."""
    if mode == "dci-reference" and not corners_meet(a, b):
        return 0
    return overlap_pixels(a, b)


def xor(a: BitMask, b: BitMask, mode: Mode = "default") -> int:
    """Pixels in exactly one mask; in ``dci-reference`` 0 unless ``corners_meet(a, b)``."""
    if mode == "dci-reference" and not corners_meet(a, b):
        return 0
    return a.pixels + b.pixels - 2 * overlap_pixels(a, b)


def mostly_contained_in(a: BitMask, b: BitMask, t: float, mode: Mode = "default") -> bool:
    """More than ``t`` of ``a`` lies in ``b``: overlap / s(a) > t."""
    return overlap(a, b, mode) / (a.size + 1) > t


def overlaps_threshold(a: BitMask, b: BitMask, t: float, mode: Mode = "default") -> bool:
    """More than ``t`` of either mask lies in the other."""
    shared = overlap(a, b, mode)
    return shared / (a.size + 1) > t or shared / (b.size + 1) > t


def near_equivalent(a: BitMask, b: BitMask, t: float, mode: Mode = "default") -> bool:
    """Sizes within ratio ``t`` of each other and the xor at most ``1 - t`` of each."""
    sa, sb = a.size + 1, b.size + 1
    if sa / sb < t or sb / sa < t:
        return False
    diff = xor(a, b, mode)
    return diff / sa <= 1 - t and diff / sb <= 1 - t


def union(a: BitMask, b: BitMask) -> BitMask:
    """Both masks' pixels, scored by the mean of their scores."""
    if a.pixels == 0 or b.pixels == 0:
        keep = b if a.pixels == 0 else a
        return BitMask(keep.top, keep.left, keep.bottom, keep.right, keep.bits, (a.score + b.score) / 2)
    t, l = min(a.top, b.top), min(a.left, b.left)
    bm, r = max(a.bottom, b.bottom), max(a.right, b.right)
    bits = np.zeros((bm - t, r - l), dtype=bool)
    for m in (a, b):
        bits[m.top - t:m.bottom - t, m.left - l:m.right - l] |= m.bits
    return BitMask(t, l, bm, r, bits, (a.score + b.score) / 2)
