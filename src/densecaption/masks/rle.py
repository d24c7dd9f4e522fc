"""COCO run-length encoding (RLE) of masks, as SA-1B and SAM's ``coco_rle`` output store them, through
pycocotools. Counts run down columns (Fortran order); compressed counts are a string."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np


def encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """``{"size": [height, width], "counts": str}`` of a boolean (height, width) mask."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def decode_rle(rle: dict[str, Any]) -> np.ndarray:
    """The boolean (height, width) mask of a COCO RLE (compressed string counts, or a list of run lengths)."""
    from pycocotools import mask as mask_utils

    size = [int(s) for s in rle["size"]]
    counts = rle["counts"]
    if isinstance(counts, list):
        if sum(counts) != size[0] * size[1]:
            raise ValueError(f"RLE run lengths add up to {sum(counts)}, not {size[0]}x{size[1]}")
        coded = mask_utils.frPyObjects({"size": size, "counts": counts}, size[0], size[1])
    else:
        coded = {"size": size, "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    with warnings.catch_warnings():  # pycocotools' own NumPy 2 copy-keyword deprecation, nothing of ours
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_utils.decode(coded).astype(bool)


def rle_area(rle: dict[str, Any]) -> int:
    """Pixels of an RLE mask, without decoding it."""
    from pycocotools import mask as mask_utils

    counts = rle["counts"]
    if isinstance(counts, list):
        return int(sum(counts[1::2]))
    return int(mask_utils.area({"size": list(rle["size"]), "counts": counts.encode("ascii")
                                if isinstance(counts, str) else counts}))
