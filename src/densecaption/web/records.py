"""Pure pieces of the web pages, kept apart from HTTP and files so they can be tested by hand: the word
counter DCI's annotators saw, the order masks are annotated in, the context crop of a mask step, and when a
mask step may move on (docs/web.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from densecaption.data.schema import Box

WORD_TARGET = 750
"""The target shown beside the word counter ("Total Words: N / 750 (target)")."""
CROP_WIDEN_X = 0.6
"""A mask step's crop widens the mask's box by this much of its width on the left and on the right ..."""
CROP_WIDEN_Y = 0.3
"""... and by this much of its height above and below, then is cut to the parent's box."""


@dataclass(frozen=True)
class MaskText:
    """The three fields an annotator writes for one mask."""

    label: str = ""
    caption: str = ""
    quality: int = 0


def _with_period(text: str) -> str:
    return text if text.endswith((".", "!", "?")) else text + "."


def total_words(short_caption: str, extra_caption: str, masks: Iterable[MaskText]) -> int:
    """DCI's word counter: the pieces of a split on single spaces of ``short + " " + extra`` (a period added
    when it does not end in . ! ?), followed, for each mask in key order with quality 0 and a label, by
    ``" label: caption"`` (a period added when missing). Empty pieces from double spaces count, as they did."""
    text = _with_period(short_caption + " " + extra_caption)
    for m in masks:
        if m.quality == 0 and m.label:
            text += _with_period(f" {m.label}: {m.caption}")
    return len(text.split(" "))


def annotation_order(mask_keys: Iterable[str | int]) -> list[int]:
    """The order masks are annotated in: keys in ascending numeric order, reversed (descending idx). With
    DCI's pre-order numbering that puts every mask after all its descendants (leaves first)."""
    return sorted((int(k) for k in mask_keys), reverse=True)


def context_crop(box: Box, parent: Box | None, width: int, height: int) -> Box:
    """The region a mask step shows: the mask's box widened by 0.6 x its width left and right and 0.3 x its
    height above and below, cut to the parent's box (the whole photo for a top-level mask)."""
    outer = parent if parent is not None else Box(0, 0, width, height)
    dx, dy = CROP_WIDEN_X * box.width, CROP_WIDEN_Y * box.height
    x0, y0 = max(outer.x0, int(box.x0 - dx)), max(outer.y0, int(box.y0 - dy))
    x1, y1 = min(outer.x1, int(box.x1 + dx)), min(outer.y1, int(box.y1 + dy))
    if x1 <= x0 or y1 <= y0:  # a child outside its parent's box (a broken tree): show the widened box alone
        return Box(max(0, int(box.x0 - dx)), max(0, int(box.y0 - dy)), min(width, int(box.x1 + dx)),
                   min(height, int(box.y1 + dy)))
    return Box(x0, y0, x1, y1)


def step_done(m: MaskText) -> bool:
    """Whether a mask step may move on: bad (2), or low quality (1) with a label, or label and description."""
    if m.quality == 2:
        return True
    if m.quality == 1:
        return bool(m.label)
    return bool(m.label) and bool(m.caption)


def description_pieces(short_caption: str, extra_caption: str,
                       masks: Mapping[int, MaskText]) -> list[tuple[int | None, str]]:
    """The assembled description as (mask idx or None, text) pieces: the two captions, then each mask in
    ``masks`` order as DCI's review screen lists it (``label: caption``; low quality and bad say so)."""
    pieces: list[tuple[int | None, str]] = [(None, short_caption), (None, extra_caption)]
    for idx, m in masks.items():
        if m.quality == 0:
            pieces.append((idx, f"{m.label}: {m.caption}"))
        elif m.quality == 1:
            pieces.append((idx, f"{m.label}: (low quality)"))
        else:
            pieces.append((idx, "(bad mask, skipped)"))
    return pieces
