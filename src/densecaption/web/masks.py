"""Mask PNGs for the browser, made once per record and kept in a small cache.

The first request for any mask of a record decodes every mask of that record once, scales it to at most
``MAX_SIDE`` pixels on the long side and keeps two PNGs per mask: ``fill`` (the region) and ``outline``
(its edge, a few pixels wide). Both are white with the mask in the alpha channel, so the page colours them
with CSS (``mask-image``) and scales them over the photo. Only PNG bytes are kept, never full-size arrays.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from typing import Callable

import numpy as np

from densecaption.data.schema import DCIImage

MAX_SIDE = 1024
"""Long side, in pixels, of the served mask PNGs (the page scales them to the photo's displayed size)."""
OUTLINE_PX = 3
"""Outline width in pixels of the served PNG."""
KINDS = ("fill", "outline")


def display_size(width: int, height: int, max_side: int = MAX_SIDE) -> tuple[int, int]:
    """(width, height) scaled down so the long side is at most ``max_side`` (never scaled up)."""
    scale = min(1.0, max_side / max(width, height, 1))
    return max(1, round(width * scale)), max(1, round(height * scale))


def erode(mask: np.ndarray, px: int) -> np.ndarray:
    """``mask`` eroded by a (2 px + 1) square, one 3 x 3 step at a time (outside the image is outside)."""
    out = mask.copy()
    for _ in range(px):
        padded = np.pad(out, 1)
        vertical = padded[:-2, 1:-1] & padded[1:-1, 1:-1] & padded[2:, 1:-1]
        padded = np.pad(vertical, ((0, 0), (1, 1)))
        out = padded[:, :-2] & padded[:, 1:-1] & padded[:, 2:]
    return out


def outline(mask: np.ndarray, px: int = OUTLINE_PX) -> np.ndarray:
    """The pixels of ``mask`` within ``px`` of its edge (the image border counts as an edge)."""
    return mask & ~erode(mask, px)


def alpha_png(mask: np.ndarray) -> bytes:
    """A 1-bit palette PNG: white where ``mask`` is set, fully transparent elsewhere (small and quick)."""
    from PIL import Image

    height, width = mask.shape
    im = Image.frombuffer("P", (width, height), np.ascontiguousarray(mask, dtype=np.uint8).tobytes(), "raw", "P", 0, 1)
    im.putpalette([0, 0, 0, 255, 255, 255])
    buf = io.BytesIO()
    im.save(buf, format="PNG", transparency=0, bits=1, compress_level=3)
    return buf.getvalue()


def scaled(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``mask`` resized to ``size`` = (width, height) (nearest pixel: a mask stays a mask)."""
    from PIL import Image

    if mask.shape[::-1] == size:
        return mask
    im = Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.NEAREST)
    return np.asarray(im) > 127


def record_pngs(record: DCIImage, decode: Callable[[int], np.ndarray]) -> dict[int, dict[str, bytes]]:
    """idx -> {"fill": PNG, "outline": PNG} for every mask of ``record``, each decoded once by ``decode``."""
    out = {}
    for idx in record.masks:
        mask = decode(idx)
        small = scaled(mask, display_size(mask.shape[1], mask.shape[0]))
        out[idx] = {"fill": alpha_png(small), "outline": alpha_png(outline(small))}
    return out


class MaskImages:
    """An LRU cache of ``record_pngs`` by record key; one record is built by one thread while others wait,
    so a page that asks for 200 PNGs at once decodes each mask once. ``decoded`` counts mask decodes."""

    def __init__(self, records: int = 8):
        self.records = records
        self.decoded = 0
        self._cache: OrderedDict[str, dict[int, dict[str, bytes]]] = OrderedDict()
        self._lock = threading.Lock()
        self._building: dict[str, threading.Lock] = {}

    def get(self, key: str, load: Callable[[], DCIImage], idx: int, kind: str) -> bytes | None:
        """The ``kind`` PNG of mask ``idx`` of the record ``load`` gives (None when it has no such mask)."""
        pngs = self._record(key, load)
        return pngs.get(idx, {}).get(kind)

    def _record(self, key: str, load: Callable[[], DCIImage]) -> dict[int, dict[str, bytes]]:
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            building = self._building.setdefault(key, threading.Lock())
        with building:
            with self._lock:
                if key in self._cache:
                    return self._cache[key]
            record = load()
            pngs = record_pngs(record, lambda i: self._decode(record, i))
            with self._lock:
                self._cache[key] = pngs
                self._building.pop(key, None)
                while len(self._cache) > self.records:
                    self._cache.popitem(last=False)
            return pngs

    def _decode(self, record: DCIImage, idx: int) -> np.ndarray:
        with self._lock:
            self.decoded += 1
        return record.mask_pixels(idx)

    def forget(self, key: str) -> None:
        with self._lock:
            self._cache.pop(key, None)
