"""A picture of one annotation: the photo, mask outlines with their labels, and the caption."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from densecaption.data.schema import DCIImage


def render_annotation(record: DCIImage, out: Path | str, *, min_box: int = 0, dpi: int = 100) -> Path:
    """Draw ``record`` to a PNG at ``out``. Masks with a box smaller than ``min_box`` are left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    photo = np.asarray(record.open_photo())
    height, width = photo.shape[:2]
    masks = [m for m in record.masks.values() if min(m.box.width, m.box.height) >= min_box]
    depth = {m.idx: _depth(record, m.idx) for m in masks}
    fig_w = max(6.0, width / dpi)
    fig, ax = plt.subplots(figsize=(fig_w, fig_w * height / width + 1.2), dpi=dpi)
    ax.imshow(photo)
    colours = plt.get_cmap("tab10")
    for n, m in enumerate(masks):
        colour = colours(n % 10)
        style = "-" if m.quality == 0 else ("--" if m.quality == 1 else ":")
        ax.contour(m.decode().astype(float), levels=[0.5], colors=[colour], linewidths=2.2 - 0.5 * depth[m.idx],
                   linestyles=style)
        tag = f"{m.idx}: {m.label}" + ("" if m.quality == 0 else f" (q{m.quality})")
        ax.text(m.box.x0 + 3, m.box.y0 + 3, tag, color="white", fontsize=8, va="top",
                bbox={"facecolor": colour, "alpha": 0.8, "pad": 1.5, "edgecolor": "none"})
    ax.set_axis_off()
    ax.set_title("\n".join(textwrap.wrap(f"{record.id}: {record.short_caption}", int(fig_w * 11))), fontsize=9)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def _depth(record: DCIImage, idx: int) -> int:
    depth, seen = 0, {idx}
    while (parent := record.masks[idx].parent) in record.masks and parent not in seen:
        seen.add(parent)
        idx, depth = parent, depth + 1
    return min(depth, 3)
