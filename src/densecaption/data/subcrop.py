"""Subcrops of a photo around a mask, exactly as DCI cuts them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from densecaption.data.schema import Box

PAD_FRACTION = 0.15


@dataclass(frozen=True)
class CropKey:
    """A region of a photo: the unit an image encoder sees once per run."""

    photo: Path
    box: Box


def subcrop_box(box: Box, image_width: int, image_height: int, pad: float = PAD_FRACTION) -> Box:
    """The mask box padded by ``int(pad * width)`` left/right and ``int(pad * height)`` top/bottom,
    clamped to the photo's real size. Ends stay exclusive."""
    px, py = int(pad * box.width), int(pad * box.height)
    return Box(max(0, box.x0 - px), max(0, box.y0 - py),
               min(image_width, box.x1 + px), min(image_height, box.y1 + py))


def grey_background(pixels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Pixels outside ``mask`` become ``pixel // 3 + 84`` (DCI's greyed-out background)."""
    out = pixels.copy()
    outside = ~mask.astype(bool)
    out[outside] = pixels[outside] // 3 + 84
    return out


def cut(pixels: np.ndarray, crop: Box, mask: np.ndarray | None = None) -> np.ndarray:
    """Rows ``y0:y1`` and columns ``x0:x1`` of an (H, W[, C]) photo; background greyed if a mask is given."""
    region = pixels[crop.y0:crop.y1, crop.x0:crop.x1]
    if mask is None:
        return region.copy()
    return grey_background(region, mask[crop.y0:crop.y1, crop.x0:crop.x1])
