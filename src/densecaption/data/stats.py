"""The DCI paper's Table 1 statistics, with the row definitions of the project's README."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Iterable

from densecaption.data.schema import BASE_KEY, DCIImage
from densecaption.data.text import image_text, mask_text

ROWS = ("DCI", "DCI_sub", "sDCI", "sDCI_sub")


@dataclass
class StatsRow:
    dataset: str
    imgs: int = 0
    caps: int = 0
    tokens: int = 0

    @property
    def toks_per_cap(self) -> float:
        return self.tokens / self.caps if self.caps else 0.0

    @property
    def toks_per_img(self) -> float:
        return self.tokens / self.imgs if self.imgs else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "toks_per_cap": self.toks_per_cap, "toks_per_img": self.toks_per_img}


def compute_stats(records: Iterable[DCIImage], count: Callable[[str], int]) -> list[StatsRow]:
    """Table 1 rows over ``records``; ``count`` gives a text's token count.

    - DCI: one example and one caption per image, the assembled whole-image text.
    - DCI_sub: every image and every mask of ``mask_data``; one assembled text each.
    - sDCI: images with summaries; every string of ``summaries["base"]``.
    - sDCI_sub: those images plus every ``m-<idx>-sc`` summary key; every summary string.
    """
    rows = {name: StatsRow(name) for name in ROWS}
    for record in records:
        whole = count(image_text(record))
        for name in ("DCI", "DCI_sub"):
            rows[name].imgs += 1
            rows[name].caps += 1
            rows[name].tokens += whole
        for idx in record.masks:
            rows["DCI_sub"].imgs += 1
            rows["DCI_sub"].caps += 1
            rows["DCI_sub"].tokens += count(mask_text(record, idx))
        if not record.summaries:
            continue
        rows["sDCI"].imgs += 1
        rows["sDCI_sub"].imgs += 1 + sum(1 for k in record.summaries if k != BASE_KEY)
        for key, texts in record.summaries.items():
            tokens = [count(t) for t in texts]
            if key == BASE_KEY:
                rows["sDCI"].caps += len(tokens)
                rows["sDCI"].tokens += sum(tokens)
            rows["sDCI_sub"].caps += len(tokens)
            rows["sDCI_sub"].tokens += sum(tokens)
    return [rows[name] for name in ROWS]
