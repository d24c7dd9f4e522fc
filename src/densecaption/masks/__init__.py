"""Mask preparation as DCI did it (section 3.1): SAM masks from a point grid and Canny edge points, arranged
into a tree (near-duplicates merged, contained masks made children, overlapping siblings joined), written as
an unannotated DCI record ("skeleton"). See ``docs/masks.md``.

Pure steps (``relations``, ``tree``, ``edges``) are separate from the model (``sam``) and from files (``io``,
``rle``). Two modes: ``default`` (the correct algorithm) and ``dci-reference`` (the release's quirks).
"""

from __future__ import annotations

from typing import Literal

Mode = Literal["default", "dci-reference"]
MODES: tuple[str, ...] = ("default", "dci-reference")
