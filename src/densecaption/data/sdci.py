"""Which parts of a record become sDCI entries: the whole photo, then each kept mask's subcrop."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

from densecaption.data.findings import Finding, RecordError, SkipLog, pointer

from densecaption.data.schema import BASE_KEY, Box, DCIImage, Entry, Mask, mask_key
from densecaption.data.subcrop import PAD_FRACTION, subcrop_box

MIN_BOX = 224


@dataclass(frozen=True)
class EntryFilter:
    """sDCI's mask filter. Defaults are the reference protocol's: an unpadded box of at least 224x224 px
    and summaries present; mask quality is not looked at unless ``drop_quality`` names levels."""

    min_box: int = MIN_BOX
    require_summaries: bool = True
    drop_quality: frozenset[int] = field(default_factory=frozenset)
    pad: float = PAD_FRACTION

    def keeps(self, record: DCIImage, mask: Mask) -> bool:
        if mask.box.width < self.min_box or mask.box.height < self.min_box:
            return False
        if mask.quality in self.drop_quality:
            return False
        return not self.require_summaries or mask_key(mask.idx) in (record.summaries or {})


def photo_size(record: DCIImage) -> tuple[int, int]:
    """(width, height) of the photo, read from the file header (no pixels decoded)."""
    from PIL import Image

    if record.photo_path is None or not record.photo_path.exists():
        raise FileNotFoundError(f"photo {record.image!r} not found")  # the finding names the record
    with Image.open(record.photo_path) as im:
        return im.size


def misfit_masks(record: DCIImage, size: tuple[int, int], file: str) -> list[Finding]:
    """One error when a mask's box lies outside the photo: masks drawn for another size (a replaced photo,
    whose stale width/height still say the old size) cannot be cut into subcrops. It names the photo's size
    and the stored one. Stale width/height alone, with masks that fit the photo, is the release's quirk: fine."""
    width, height = size
    outside = [m for m in record.masks.values()
               if m.box.x0 < 0 or m.box.y0 < 0 or m.box.x1 > width or m.box.y1 > height]
    if not outside:
        return []
    stored = (record.width, record.height)
    says = f", its width/height say {stored[0]}x{stored[1]}" if None not in stored and stored != size else ""
    b = outside[0].box
    more = f" (and {len(outside) - 1} more masks)" if len(outside) > 1 else ""
    return [Finding(file, pointer("mask_data", outside[0].idx, "bounds"),
                    f"photo {record.image!r} is {width}x{height}{says}: mask {outside[0].idx}'s box "
                    f"({b.x0}, {b.y0})-({b.x1}, {b.y1}) lies outside the photo{more}")]


def records_with_sizes(dataset, split: str | None, skip: SkipLog) -> Iterator[tuple[DCIImage, tuple[int, int]]]:
    """A split's records with their photo's (width, height); a record whose photo cannot be read, or whose
    masks do not fit its photo (``misfit_masks``), is reported to ``skip`` instead."""
    for record in dataset.iter_images(split, skip):
        file = f"{dataset.source}/{record.file}"
        try:
            size = photo_size(record)
        except OSError as e:
            skip.skip(RecordError([Finding(file, "/image", photo_error(e))]))
            continue
        misfits = misfit_masks(record, size, file)
        if misfits:
            skip.skip(RecordError(misfits))
            continue
        yield record, size


def photo_error(e: OSError) -> str:
    """Why a photo cannot be read, naming it: ``photo PATH: reason`` for an OS error, else its message."""
    if e.strerror and e.filename is not None:
        return f"photo {e.filename}: {e.strerror}"
    return str(e)


def sdci_entries(record: DCIImage, filt: EntryFilter = EntryFilter(),
                 size: tuple[int, int] | None = None) -> list[Entry]:
    """The base entry, then one entry per kept mask in ``mask_data`` order.

    ``size`` is the photo's (width, height); read from the photo when not given. A record without
    summaries gives no entries when the filter requires them.
    """
    summaries = record.summaries or {}
    if filt.require_summaries and BASE_KEY not in summaries:
        return []
    width, height = size if size is not None else photo_size(record)
    negatives = record.negatives or {}
    scores = record.clip_scores or {}

    def entry(key: str, idx: int | None, crop: Box) -> Entry:
        return Entry(image_file=record.file, key=key, mask_idx=idx, summaries=list(summaries.get(key, [])),
                     negatives={k: list(v) for k, v in negatives.get(key, {}).items()},
                     clip_scores=dict(scores[key]) if key in scores else None, crop=crop)

    entries = [entry(BASE_KEY, None, Box(0, 0, width, height))]
    for mask in record.masks.values():
        if filt.keeps(record, mask):
            entries.append(entry(mask_key(mask.idx), mask.idx, subcrop_box(mask.box, width, height, filt.pad)))
    return entries
