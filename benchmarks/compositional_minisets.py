"""Mini-sets of ARO, SugarCrepe, VL-CheckList and Winoground in each official file format, on tiny solid-colour
photos (built by ``densecaption.data.minisets``, re-exported here), and ``ColourModel``, a test double whose
scores can be worked out by hand:

- an image's feature is the one-hot of its dominant colour (red, green, blue; a grey photo is all zeros);
- a text's feature counts each colour word, plus 1 when the text's first word is that colour;
- the score is their dot product: e.g. a red crop gives "the red box" 1, "red box" 2, "blue box" 0.

The tests work their expected numbers out from these rules (each builder's docstring gives them);
``python -m benchmarks.compositional_minisets OUT`` writes the four sets under OUT/NAME (``densecaption data
fetch NAME DEST --constructed`` writes one, with its constructed marker).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from densecaption.data.minisets import (  # noqa: F401  re-exported for the tests and benchmarks
    BUILDERS, COLOURS, ORDER_CAPTIONS, SUGARCREPE_TASKS, VLC_CATEGORIES, aro_mini, photo, sugarcrepe_mini, vlc_mini,
    winoground_mini)
from densecaption.models.base import ImageTextModel

NAMES = ("red", "green", "blue")


class ColourModel(ImageTextModel):
    """Scores a text by the colour words it shares with the image's dominant colour (see the module doc)."""

    spec = "test:colour"
    weights = "random"

    def encode_images(self, images) -> torch.Tensor:
        rows = []
        for im in images:
            r, g, b = np.asarray(im.convert("RGB"), dtype=np.float64).reshape(-1, 3).mean(axis=0)
            row = [0.0, 0.0, 0.0]
            if max(r, g, b) - min(r, g, b) > 40:
                row[(r, g, b).index(max(r, g, b))] = 1.0
            rows.append(row)
        return torch.tensor(rows, dtype=torch.float32).reshape(len(rows), 3)

    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        rows = []
        for text in texts:
            words = text.lower().split()
            rows.append([words.count(c) + (1.0 if words[:1] == [c] else 0.0) for c in NAMES])
        return torch.tensor(rows, dtype=torch.float32).reshape(len(rows), 3)

    def similarity(self, image_features, text_features):
        return image_features @ text_features.T


if __name__ == "__main__":  # python -m benchmarks.compositional_minisets OUT: the four mini-sets under OUT/NAME
    out = Path(sys.argv[1])
    for name, build in BUILDERS.items():
        print(f"{name}: {build(out / name)}")
