"""A picture of one annotation: the photo, mask outlines with their labels, and the caption.

Outlines run a little inside their mask, deeper masks further in, so two masks that share an edge (or a
child on its parent's border) keep two visible lines. Labels never cover one another: each goes near its
mask where there is room, otherwise into a column beside the photo with a leader line to its mask.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from densecaption.data.findings import Finding, RecordError, pointer
from densecaption.data.sdci import misfit_masks
from densecaption.data.schema import DCIImage, Mask
from densecaption.errors import UserError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.text import Text

INSET_PX = 4.0
"""How far (display pixels) each depth level moves an outline inside its mask: more than a line width."""
GAP_PX = 2.0
"""Least space between two labels, in display pixels."""

Rect = tuple[float, float, float, float]
"""A display-pixel rectangle (x0, y0, x1, y1), y upwards."""


def output_path(out: Path | str, record: DCIImage) -> Path:
    """Where ``render_annotation`` writes: ``<out>/<record id>.png`` when ``out`` is an existing folder,
    ``out`` with ``.png`` added when it has no suffix (as matplotlib would), else ``out`` itself."""
    out = Path(out)
    if out.is_dir():
        return out / f"{record.id}.png"
    return out if out.suffix else out.with_name(out.name + ".png")


def render_annotation(record: DCIImage, out: Path | str, *, min_box: int = 0, dpi: int = 100) -> Path:
    """Draw ``record`` (see ``annotation_figure``) to the file ``output_path`` names and return that path.
    A path that cannot be written raises ``UserError`` naming it and the system's reason."""
    path = output_path(out, record)
    fig = annotation_figure(record, min_box=min_box, dpi=dpi)
    kind = path.suffix[1:].lower()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, bbox_inches="tight", pad_inches=0.1,
                    format=kind if kind in fig.canvas.get_supported_filetypes() else "png")
    except OSError as e:
        raise UserError(f"{e.filename or path}: {e.strerror or e}") from None
    return path


def annotation_figure(record: DCIImage, *, min_box: int = 0, dpi: int = 100) -> "Figure":
    """The picture as a figure: the photo fills the axes; title and any label column lie outside it (saved
    with a tight bounding box). Masks whose box is smaller than ``min_box`` are left out. Outline contour
    sets have gid ``mask-<idx>``, labels ``label-<idx>``. A broken mask PNG or photo raises ``RecordError``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    masks = [m for m in record.masks.values() if min(m.box.width, m.box.height) >= min_box]
    pixels = {m.idx: record.mask_pixels(m.idx) for m in masks}  # before drawing: a bad PNG stops here
    photo = _photo(record)
    height, width = photo.shape[:2]
    misfits = misfit_masks(record, (width, height), record.file)
    if misfits:  # masks drawn for another photo (stale width/height): nothing to draw them on
        raise RecordError(misfits)
    fig_w = max(6.0, width / dpi)
    fig = Figure(figsize=(fig_w, fig_w * height / width), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.imshow(photo, aspect="auto")
    ax.set_xlim(-0.5, width - 0.5)
    ax.set_ylim(height - 0.5, -0.5)
    ax.set_autoscale_on(False)
    ax.set_axis_off()
    caption = record.short_caption or "(not annotated yet: a mask skeleton)"
    ax.set_title("\n".join(textwrap.wrap(f"{record.id}: {caption}", int(fig_w * 11))), fontsize=9)
    scale = fig_w * dpi / width  # display pixels per photo pixel
    colours = _colours(len(masks))
    labels = []
    for n, m in enumerate(masks):
        depth = _depth(record, m.idx)
        _draw_outline(ax, m, pixels[m.idx], colours[n], depth, scale)
        labels.append(_make_label(ax, m, pixels[m.idx], colours[n]))
    _place_labels(fig, ax, labels)
    return fig


def _photo(record: DCIImage) -> np.ndarray:
    """The record's photo as an array; a missing or broken photo raises ``RecordError`` at ``/image``."""
    try:
        return np.asarray(record.open_photo())
    except OSError as e:  # PIL's "not an image" is an OSError too
        reason = e.strerror if e.strerror else str(e)
        raise RecordError([Finding(record.file, pointer("image"), f"photo {record.image!r}: {reason}")]) from None


def _colours(n: int) -> list[tuple[float, float, float, float]]:
    """Distinct colours in mask order: tab10, then (past 10 masks) tab20's light shades after its dark ones."""
    import matplotlib

    if n <= 10:
        return [matplotlib.colormaps["tab10"](i) for i in range(n)]
    order = list(range(0, 20, 2)) + list(range(1, 20, 2))
    return [matplotlib.colormaps["tab20"](order[i % 20]) for i in range(n)]


def _draw_outline(ax: "Axes", m: Mask, mask: np.ndarray, colour, depth: int, scale: float) -> None:
    """The mask's contour, drawn ``depth + 1`` inset steps inside it; solid, dashed or dotted by quality."""
    inset = int(np.ceil((depth + 1) * INSET_PX / scale))
    style = "-" if m.quality == 0 else ("--" if m.quality == 1 else ":")
    cs = ax.contour(shrink(mask, inset).astype(np.float32), levels=[0.5], colors=[colour],
                    linewidths=1.8 - 0.3 * depth, linestyles=style)
    cs.set_gid(f"mask-{m.idx}")


def shrink(mask: np.ndarray, inset: int) -> np.ndarray:
    """``mask`` eroded by ``inset`` pixels (a square window; outside the image counts as outside the mask),
    or by less when that would leave nothing, so a thin mask keeps an outline."""
    while inset > 0:
        out = _window_all(_window_all(mask, inset, 0), inset, 1)
        if out.any():
            return out
        inset //= 2
    return mask


def _window_all(mask: np.ndarray, r: int, axis: int) -> np.ndarray:
    """True where every pixel within ``r`` along ``axis`` is True (a running sum over a padded copy)."""
    pad = [(0, 0), (0, 0)]
    pad[axis] = (r + 1, r)
    sums = np.cumsum(np.pad(mask, pad).astype(np.int32), axis=axis)
    n = mask.shape[axis]
    hi = np.take(sums, np.arange(2 * r + 1, 2 * r + 1 + n), axis=axis)
    lo = np.take(sums, np.arange(0, n), axis=axis)
    return hi - lo == 2 * r + 1


@dataclass
class _Label:
    """A label to place: its text, its mask's box (display pixels) and a point of the mask (data)."""

    text: "Text"
    box: Rect
    anchor: tuple[float, float]
    colour: tuple


def _make_label(ax: "Axes", m: Mask, mask: np.ndarray, colour) -> _Label:
    tag = (f"{m.idx}: {m.label}" if m.label else str(m.idx)) + ("" if m.quality == 0 else f" (q{m.quality})")
    light = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2] > 0.6
    text = ax.text(0, 0, tag, color="black" if light else "white", fontsize=8, ha="left", va="bottom",
                   clip_on=False, gid=f"label-{m.idx}",
                   bbox={"facecolor": colour, "alpha": 0.85, "pad": 1.5, "edgecolor": "none"})
    (x0, y0), (x1, y1) = ax.transData.transform([(m.box.x0 - 0.5, m.box.y1 - 0.5), (m.box.x1 - 0.5, m.box.y0 - 0.5)])
    return _Label(text, (x0, y0, x1, y1), _inner_point(mask, m), colour)


def _inner_point(mask: np.ndarray, m: Mask) -> tuple[float, float]:
    """The mask pixel nearest its centroid (where a leader line ends); the box centre if the mask is empty."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return (m.box.x0 + m.box.x1) / 2, (m.box.y0 + m.box.y1) / 2
    i = int(np.argmin((xs - xs.mean()) ** 2 + (ys - ys.mean()) ** 2))
    return float(xs[i]), float(ys[i])


def _place_labels(fig: "Figure", ax: "Axes", labels: list[_Label]) -> None:
    """Greedy placement, smallest mask first (it has the fewest good spots): the free spot near the mask
    that covers least of the other masks' boxes, else the next slot of a column right of the photo."""
    from matplotlib import patheffects
    from matplotlib.lines import Line2D
    from matplotlib.transforms import Bbox

    renderer = fig.canvas.get_renderer()
    frame = tuple(ax.bbox.extents)
    placed: list[Rect] = []
    column = _Column(frame)
    for label in sorted(labels, key=lambda lb: _area(lb.box)):
        label.text.update_bbox_position_size(renderer)
        ext = Bbox.union([label.text.get_bbox_patch().get_window_extent(renderer),
                          label.text.get_window_extent(renderer)])
        at = ax.transData.transform((0, 0))
        size, offset = (ext.width, ext.height), (ext.x0 - at[0], ext.y0 - at[1])
        others = [lb.box for lb in labels if lb is not label]
        spot = _best_spot(label.box, size, frame, placed, others)
        if spot is None:
            spot = column.next(size)
            x, y = ax.transData.inverted().transform([(spot[0] - GAP_PX, (spot[1] + spot[3]) / 2)])[0]
            halo = [patheffects.withStroke(linewidth=2.4, foreground="white", alpha=0.5)]
            ax.add_artist(Line2D([x, label.anchor[0]], [y, label.anchor[1]], color=label.colour, linewidth=1.0,
                                 clip_on=False, path_effects=halo))
        placed.append(spot)
        label.text.set_position(ax.transData.inverted().transform((spot[0] - offset[0], spot[1] - offset[1])))


def _best_spot(box: Rect, size: tuple[float, float], frame: Rect, placed: list[Rect],
               others: list[Rect]) -> Rect | None:
    """The free candidate inside ``frame`` that hides least of ``others`` (ties: the earlier candidate)."""
    best, best_cost = None, float("inf")
    for rank, (x, y) in enumerate(_candidates(box, size)):
        spot = (x, y, x + size[0], y + size[1])
        if not _inside(spot, frame) or any(_overlap(spot, p, GAP_PX) > 0 for p in placed):
            continue
        cost = sum(_overlap(spot, o) / max(_area(o), 1.0) for o in others) + 0.01 * rank
        if cost < best_cost:
            best, best_cost = spot, cost
    return best


def _candidates(box: Rect, size: tuple[float, float]) -> list[tuple[float, float]]:
    """Lower-left corners to try, best first: the box's inside corners, just outside its top and bottom,
    its centre, then down its inside left and right edges and along its inside top and bottom, in
    label-sized steps that stay within the box (a label far from its mask would name the wrong one)."""
    x0, y0, x1, y1 = box
    w, h = size
    p = 3.0
    spots = [(x0 + p, y1 - p - h), (x1 - p - w, y1 - p - h), (x0 + p, y0 + p), (x1 - p - w, y0 + p),
             (x0, y1 + p), (x0, y0 - p - h), (x1 - w, y1 + p), (x1 - w, y0 - p - h),
             ((x0 + x1 - w) / 2, (y0 + y1 - h) / 2)]
    step_y, step_x = h + GAP_PX, max(w / 2, 1.0)
    for k in range(1, int((y1 - y0 - 2 * p) / step_y)):
        spots += [(x0 + p, y1 - p - h - k * step_y), (x1 - p - w, y1 - p - h - k * step_y)]
    for k in range(1, int((x1 - x0 - 2 * p - w) / step_x) + 1):
        spots += [(x0 + p + k * step_x, y1 - p - h), (x0 + p + k * step_x, y0 + p)]
    return spots


class _Column:
    """Slots for labels that fit nowhere near their mask: top-down columns right of ``frame``."""

    def __init__(self, frame: Rect):
        self.frame = frame
        self.x = frame[2] + 12.0
        self.y = frame[3]
        self.width = 0.0

    def next(self, size: tuple[float, float]) -> Rect:
        w, h = size
        if self.y - h < self.frame[1] and self.y < self.frame[3]:
            self.x, self.y, self.width = self.x + self.width + 12.0, self.frame[3], 0.0
        self.y -= h
        self.width = max(self.width, w)
        spot = (self.x, self.y, self.x + w, self.y + h)
        self.y -= GAP_PX
        return spot


def _area(r: Rect) -> float:
    return max(r[2] - r[0], 0.0) * max(r[3] - r[1], 0.0)


def _overlap(a: Rect, b: Rect, gap: float = 0.0) -> float:
    """Area shared by ``a`` and ``b`` once ``b`` is grown by ``gap`` on every side."""
    w = min(a[2], b[2] + gap) - max(a[0], b[0] - gap)
    h = min(a[3], b[3] + gap) - max(a[1], b[1] - gap)
    return max(w, 0.0) * max(h, 0.0)


def _inside(a: Rect, frame: Rect) -> bool:
    return a[0] >= frame[0] and a[1] >= frame[1] and a[2] <= frame[2] and a[3] <= frame[3]


def _depth(record: DCIImage, idx: int) -> int:
    """How many ancestors a mask has (at most 3): deeper outlines are thinner and further inside."""
    depth, seen = 0, {idx}
    while (parent := record.masks[idx].parent) in record.masks and parent not in seen:
        seen.add(parent)
        idx, depth = parent, depth + 1
    return min(depth, 3)
