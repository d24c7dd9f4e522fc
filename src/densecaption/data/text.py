"""The texts DCI assembled from a record's annotations for the LLM that wrote the summaries."""

from __future__ import annotations

from densecaption.data.schema import DCIImage, Mask

ALSO_SEEN = "\nThe following can also be seen in the image:\n"


def mask_line(mask: Mask) -> str | None:
    """``label: caption`` for a good mask, ``label`` for a low-quality one, nothing for a bad one."""
    if mask.quality == 0:
        return f"{mask.label}: {mask.caption}"
    if mask.quality == 1:
        return mask.label
    return None


def _with_lines(head: str, masks: list[Mask]) -> str:
    lines = [line for line in map(mask_line, masks) if line is not None]
    return head + (ALSO_SEEN + "\n".join(lines) if lines else "")


def image_text(record: DCIImage) -> str:
    """Whole-image text: short and long caption, then one line per mask of ``mask_data`` in file order."""
    return _with_lines(f"{record.short_caption}\n{record.extra_caption}", list(record.masks.values()))


def mask_text(record: DCIImage, idx: int) -> str:
    """One mask's text: its label and caption, then its descendants in a pre-order walk of
    ``requirements`` (missing indices skipped, quality-2 masks not entered)."""
    mask = record.masks[idx]
    below = [record.masks[i] for i in record.descendants(idx, enter_quality_2=False)]
    return _with_lines(f"This is an image of {mask.label}. {mask.caption}", below)
