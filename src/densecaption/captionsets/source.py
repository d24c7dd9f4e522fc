"""Reading a DCI folder into prepared images (``compose.ImageParts``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from densecaption.captionsets.compose import (
    CaptionSetConfig,
    ImageParts,
    Unusable,
    prepare_image,
)
from densecaption.data.dci import DCIDataset
from densecaption.data.findings import SkipLog
from densecaption.data.sdci import EntryFilter, records_with_sizes, sdci_entries
from densecaption.errors import DataError


@dataclass
class Prepared:
    images: list[ImageParts]
    unusable: dict[str, int] = field(default_factory=dict)
    """Images left out, by reason: ``no summaries``, ``no summary``, ``no negative`` (of the base entry)."""
    records: int = 0


def prepare_dataset(dataset: DCIDataset, split: str | None, config: CaptionSetConfig, skip: SkipLog,
                    progress: Callable[[int], None] | None = None) -> Prepared:
    """Every record of a split (all splits for None) prepared for composing, in split order. The choices
    depend on the seed and the options, not on precision or submasks, so one preparation serves a grid."""
    out = Prepared(images=[])
    filt = EntryFilter()
    for record, size in records_with_sizes(dataset, split, skip):
        out.records += 1
        try:
            out.images.append(prepare_image(record, sdci_entries(record, filt, size), config))
        except Unusable as e:
            out.unusable[str(e)] = out.unusable.get(str(e), 0) + 1
        if progress is not None:
            progress(1)
    if not out.images:
        reasons = ", ".join(f"{n} {why}" for why, n in out.unusable.items()) or "no records"
        raise DataError(f"{dataset.root}: no image can be composed from split {split or 'all'} ({reasons}; "
                        f"the base entry needs a summary and a {config.negative} negative)")
    return out
