"""CLIPScore and RefCLIPScore (Hessel et al. 2021) with any model of the benchmark's contract.

CLIP-S(c, v) = 2.5 * max(cos(v, c), 0) per caption, averaged over captions; RefCLIP-S is the harmonic mean
of CLIP-S(c, v) and max(max over references r of cos(c, r), 0). Cosines come from the model's features,
L2-normalised here again (``encode_images`` / ``encode_texts``), never from ``similarity`` (which a model
may scale by its learned temperature or shift by a bias). Each image and each text is encoded once.
Hessel et al.'s reference code puts "A photo depicts " before every caption and reference; that is the
default ``prefix`` here too.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any, Sequence

import torch

from densecaption.errors import DataError, UserError
from densecaption.models.base import ImageTextModel

W = 2.5
DEFAULT_PREFIX = "A photo depicts "


def clip_s(cos: torch.Tensor | float) -> torch.Tensor:
    """2.5 * max(cos, 0), elementwise."""
    return W * torch.clamp(torch.as_tensor(cos, dtype=torch.float64), min=0)


def harmonic(a: float, b: float) -> float:
    return 0.0 if a + b <= 0 else 2 * a * b / (a + b)


def _normalise(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x.double(), dim=-1)


def _encode_unique(encode, items: Sequence[Any], batch: int) -> tuple[torch.Tensor, dict[Any, int]]:
    index: dict[Any, int] = {}
    for item in items:
        index.setdefault(item, len(index))
    unique = list(index)
    rows = [_normalise(encode(unique[s:s + batch])) for s in range(0, len(unique), batch)]
    return (torch.cat(rows) if rows else torch.empty(0, 0, dtype=torch.float64)), index


def clipscore(model: ImageTextModel, image_paths: Sequence[str | Path], captions: Sequence[str], *,
              references: Sequence[Sequence[str]] | None = None, prefix: str = DEFAULT_PREFIX,
              batch_size: int = 64) -> dict[str, Any]:
    """Per-caption and mean CLIP-S (and RefCLIP-S when ``references`` is given, one list per caption;
    captions without references get none). ``image_paths[i]`` is the image of ``captions[i]``."""
    from PIL import Image

    if len(image_paths) != len(captions):
        raise ValueError("one image per caption")
    if not getattr(model, "uses_images", True):
        raise UserError(f"{model.spec}: this scorer ignores images, so it has no image-caption cosine")

    def load(paths: Sequence[str]) -> torch.Tensor:
        images = []
        for p in paths:
            try:
                with Image.open(p) as im:
                    images.append(im.convert("RGB"))
            except (OSError, ValueError) as e:  # damaged or unreadable: name the image, not just the reason
                raise DataError(f"{p}: cannot read the image ({getattr(e, 'strerror', None) or e})") from None
        return model.encode_images(images)

    img, img_index = _encode_unique(load, [str(p) for p in image_paths], batch_size)
    texts = [prefix + c for c in captions]
    ref_texts = [prefix + r for refs in (references or []) for r in refs]
    txt, txt_index = _encode_unique(lambda t: model.encode_texts(list(t)), texts + ref_texts, batch_size)
    per_caption: list[dict[str, Any]] = []
    for i, (path, text) in enumerate(zip(image_paths, texts)):
        c = txt[txt_index[text]]
        cos = float(img[img_index[str(path)]] @ c)
        row: dict[str, Any] = {"cosine": cos, "clip_s": float(clip_s(cos))}
        refs = list(references[i]) if references is not None else []
        if refs:
            ref_cos = max(float(txt[txt_index[prefix + r]] @ c) for r in refs)
            row["ref_cosine"] = ref_cos
            row["refclip_s"] = harmonic(row["clip_s"], max(ref_cos, 0.0))
        per_caption.append(row)
    out: dict[str, Any] = {"captions": len(per_caption),
                           "clip_s": statistics.fmean(r["clip_s"] for r in per_caption) if per_caption else None,
                           "clip_s_std": statistics.pstdev(r["clip_s"] for r in per_caption) if per_caption else None,
                           "prefix": prefix}
    with_refs = [r["refclip_s"] for r in per_caption if "refclip_s" in r]
    if references is not None:
        out["refclip_s"] = statistics.fmean(with_refs) if with_refs else None
        out["with_references"] = len(with_refs)
    out["per_caption"] = per_caption
    return out
