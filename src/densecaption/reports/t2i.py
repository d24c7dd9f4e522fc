"""T2I-CompBench results arranged like Captions4T2I's Table 2 and Figure 1.

Each score file carries its lineage (caption set -> LoRA -> images), so the grid position of a score is
the precision and number of submasks its caption set was composed with, read from the set's manifest.
The average is the paper's: the plain mean of colour, shape, texture, spatial and non-spatial.

Results whose LoRA was trained on a set bridged from synthetic captions (``compose from-captions``: the
set's manifest names its captioner) form Table 3 instead: captioner rows x generator columns. Runs on
different data (caption set data and image set, CompBench prompts) never share a cell: every table names
its data, and one cell with runs of several LoRAs becomes several rows, never an average
(docs/training.md, "Tables from report t2i").
"""

from __future__ import annotations

import csv
import io
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from densecaption.errors import UserError

AVERAGED = ("color", "shape", "texture", "spatial", "non_spatial")
CATEGORY_ORDER = AVERAGED + ("complex", "numeracy", "3d_spatial")
CATEGORY_NAMES = {"color": "Color", "shape": "Shape", "texture": "Texture", "spatial": "Spatial",
                  "non_spatial": "Non-Spatial", "complex": "Complex", "numeracy": "Numeracy",
                  "3d_spatial": "3D-Spatial"}

# Captions4T2I Table 2 (PixArt-alpha LoRA): (positive share, submasks) -> colour, shape, texture, spatial,
# non-spatial, average. Two cells are garbled in the paper's text (25%/0 colour, 50%/0 texture); their
# values here are the ones the row's printed average implies, to four places.
PAPER_TABLE2: dict[tuple[float, int], tuple[float, ...]] = {
    (0.0, 0): (0.1842, 0.3079, 0.3125, 0.0884, 0.2954, 0.2377),
    (0.0, 1): (0.2322, 0.3382, 0.3389, 0.1380, 0.3031, 0.2701),
    (0.0, 2): (0.2610, 0.3340, 0.3620, 0.1446, 0.3052, 0.2814),
    (0.0, 3): (0.2870, 0.3496, 0.3840, 0.1727, 0.3066, 0.3000),
    (0.25, 0): (0.2277, 0.3042, 0.3282, 0.1230, 0.2995, 0.2565),
    (0.25, 1): (0.2801, 0.3346, 0.3620, 0.1357, 0.3047, 0.2834),
    (0.25, 2): (0.2881, 0.3356, 0.3819, 0.1529, 0.3051, 0.2927),
    (0.25, 3): (0.3203, 0.3515, 0.4193, 0.1700, 0.3078, 0.3138),
    (0.5, 0): (0.2855, 0.3271, 0.3740, 0.1243, 0.3020, 0.2826),
    (0.5, 1): (0.3250, 0.3583, 0.4180, 0.1611, 0.3062, 0.3137),
    (0.5, 2): (0.3244, 0.3529, 0.4256, 0.1727, 0.3078, 0.3167),
    (0.5, 3): (0.3358, 0.3607, 0.4291, 0.1850, 0.3082, 0.3237),
    (0.75, 0): (0.3186, 0.3402, 0.3939, 0.1350, 0.3057, 0.2987),
    (0.75, 1): (0.3387, 0.3586, 0.4443, 0.1760, 0.3078, 0.3251),
    (0.75, 2): (0.3454, 0.3679, 0.4401, 0.1784, 0.3089, 0.3281),
    (0.75, 3): (0.3581, 0.3710, 0.4503, 0.1917, 0.3095, 0.3361),
    (1.0, 0): (0.3437, 0.3599, 0.4351, 0.1507, 0.3086, 0.3196),
    (1.0, 1): (0.3500, 0.3865, 0.4695, 0.1745, 0.3091, 0.3379),
    (1.0, 2): (0.3567, 0.3872, 0.4676, 0.1832, 0.3094, 0.3408),
    (1.0, 3): (0.3717, 0.3892, 0.4662, 0.1986, 0.3100, 0.3471),
}


@dataclass
class Cell:
    """The scores of one model at one grid point (or of a model without a caption set: point None)."""

    model: str
    point: tuple[float, int] | None
    weights: set[str] = field(default_factory=set)
    scores: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    modes: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    loras: set[str] = field(default_factory=set)
    realised: dict[str, Any] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    data: str = ""
    """What the cell was measured on (``data_of``); cells of different data are never merged."""
    prompts: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))

    def score(self, category: str) -> float | None:
        values = self.scores.get(category)
        return statistics.fmean(values) if values else None

    def average(self) -> float | None:
        """Mean of the five categories, as the paper averages; None unless all five are present."""
        values = [self.score(c) for c in AVERAGED]
        return None if any(v is None for v in values) else statistics.fmean(values)

    @property
    def label_weights(self) -> str:
        for kind in ("random", "unknown"):
            if kind in self.weights:
                return kind
        return "pretrained"


def grid_point(result: dict[str, Any]) -> tuple[tuple[float, int] | None, dict[str, Any]]:
    from densecaption.t2i.lineage import caption_set_point

    lineage = result.get("lineage") or {}
    point = caption_set_point(lineage.get("caption_set"))
    if point is None:
        return None, {}
    return (point["precision"], point["submasks"]), point


def _short(sha: Any) -> str:
    return str(sha)[:12] if sha else "?"


def data_of(result: dict[str, Any]) -> str:
    """The data behind a score, as text: the caption set's source data (sha256) and image set (count, sha256).
    Each category has its own prompt file, so the prompts are checked per category (``add_score``)."""
    lineage = result.get("lineage") or {}
    cset = lineage.get("caption_set") or {}
    parts = []
    if cset:
        parts.append(f"captions data {_short((cset.get('data') or {}).get('sha256'))}")
        images = cset.get("image_set") or {}
        if images:
            parts.append(f"images {images.get('count')} ({_short(images.get('sha256'))})")
    if "(constructed prompts)" in str(result.get("data", "")):
        parts.append("constructed prompts")
    return ", ".join(parts)


def add_score(cell: Cell, result: dict[str, Any]) -> bool:
    """Add one result's score to its cell (its category, scorer, weights, LoRA and file); False when the result
    holds no score."""
    score = (result.get("metrics") or {}).get("score")
    if score is None:
        return False
    category = result.get("split", "")
    add_prompts(cell, category, result)
    cell.scores[category].append(float(score))
    cell.modes[category].add(result.get("mode", ""))
    cell.weights.add(result.get("weights", "unknown"))
    if result.get("lora"):
        cell.loras.add(result["lora"])
    cell.files.append(result.get("_file", ""))
    return True


def add_prompts(cell: Cell, category: str, result: dict[str, Any]) -> None:
    """Record the CompBench prompt file (sha256) a category's score used; scores of one category on different
    prompt files are refused rather than averaged into one cell."""
    sha = ((result.get("lineage") or {}).get("prompts") or {}).get("sha256")
    if not sha:
        return
    cell.prompts[category].add(str(sha))
    if len(cell.prompts[category]) > 1:
        files = ", ".join(f for f in cell.files + [result.get("_file", "")] if f)
        raise UserError(f"{category} scores of one cell ({cell.model}, {cell.data or 'no caption set'}) come from "
                        f"different prompt files ({', '.join(sorted(_short(h) for h in cell.prompts[category]))}): "
                        f"report them separately ({files})")


def captioner_of(result: dict[str, Any]) -> str | None:
    """The captioner of the bridged caption set behind a score (``compose from-captions``), else None."""
    who = ((result.get("lineage") or {}).get("caption_set") or {}).get("captioner")
    return str(who.get("model")) if isinstance(who, dict) and who.get("model") else None


def generator_of(result: dict[str, Any]) -> str:
    """The generator's family (sd21, sdxl, pixart-alpha) as its LoRA record names it, else the model."""
    record = (result.get("lineage") or {}).get("lora_record") or {}
    return str(record.get("family") or result.get("model"))


def collect(results: list[dict[str, Any]]) -> list[Cell]:
    """One cell per (generator model, data, caption-set point); repeated runs of a cell are averaged."""
    cells: dict[tuple[str, Any], Cell] = {}
    for r in results:
        point, info = grid_point(r)
        data = data_of(r)
        # Without a caption set, each LoRA (or the base model) is its own row.
        key = (r["model"], data, point, r.get("lora") if point is None else None)
        cell = cells.setdefault(key, Cell(model=r["model"], point=point, data=data))
        if add_score(cell, r) and info:
            cell.realised = info
    return sorted(cells.values(), key=lambda c: (c.model, c.data, c.point is not None, c.point or (0.0, 0),
                                                 sorted(c.loras)))


def categories_present(cells: list[Cell]) -> list[str]:
    seen = {c for cell in cells for c in cell.scores}
    return [c for c in CATEGORY_ORDER if c in seen] + sorted(seen - set(CATEGORY_ORDER))


def mode_note(cells: list[Cell]) -> str:
    """Which scorer produced each category, e.g. ``spatial: spatial-owlv2``."""
    modes: dict[str, set[str]] = defaultdict(set)
    for cell in cells:
        for cat, ms in cell.modes.items():
            modes[cat] |= ms
    return "; ".join(f"{cat}: {', '.join(sorted(modes[cat]))}" for cat in categories_present(cells))


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _pct(p: float) -> str:
    return f"{p * 100:g}%"


def model_heading(model: str, cells: list[Cell]) -> str:
    weights = {w for c in cells for w in c.weights}
    label = "random" if "random" in weights else "unknown" if "unknown" in weights else None
    return f"{model}" + (f" (weights: {label}: not a model's result)" if label else "")


def to_markdown(cells: list[Cell], *, paper: bool = False) -> str:
    """Per generator model: the long table (the paper's Table 2 columns), the average as a precision x
    submasks grid, one grid per category, and runs without a caption set (e.g. the base model)."""
    lines: list[str] = []
    by_model: dict[tuple[str, str], list[Cell]] = defaultdict(list)
    for cell in cells:
        by_model[(cell.model, cell.data)].append(cell)
    for (model, data), group in by_model.items():
        cats = categories_present(group)
        lines += [f"## {model_heading(model, group)}", ""]
        if data:
            lines += [f"Data of every cell: {data}", ""]
        lines += [f"Scorers: {mode_note(group)}", ""]
        head = ["Positive sentences", "Num of submasks"] + [CATEGORY_NAMES.get(c, c) for c in cats] + ["Average"]
        lines += ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
        for cell in group:
            if cell.point is None:
                where = [f"LoRA {', '.join(sorted(cell.loras))} (no caption set)" if cell.loras else "base model", ""]
            else:
                where = [_pct(cell.point[0]), str(cell.point[1])]
            lines.append("| " + " | ".join(where + [_fmt(cell.score(c)) for c in cats] + [_fmt(cell.average())])
                         + " |")
        lines.append("")
        gridded = [c for c in group if c.point is not None]
        if gridded:
            lines += grid_markdown(gridded, "Average of the five categories (Table 2, Figure 1)",
                                   lambda c: c.average())
            for cat in cats:
                lines += grid_markdown(gridded, CATEGORY_NAMES.get(cat, cat), lambda c, cat=cat: c.score(cat))
    if paper:
        lines += ["## Published: Captions4T2I Table 2 (PixArt-alpha + LoRA, T2I-CompBench)", ""]
        head = ["Positive sentences", "Num of submasks"] + [CATEGORY_NAMES[c] for c in AVERAGED] + ["Average"]
        lines += ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
        for (p, k), values in PAPER_TABLE2.items():
            lines.append("| " + " | ".join([_pct(p), str(k)] + [f"{v:.4f}" for v in values]) + " |")
        lines.append("")
    return "\n".join(lines)


def grid_markdown(cells: list[Cell], title: str, value) -> list[str]:
    precisions = sorted({c.point[0] for c in cells})
    submasks = sorted({c.point[1] for c in cells})
    at = {c.point: c for c in cells}
    lines = [f"### {title}", "", "| positive \\ submasks | " + " | ".join(map(str, submasks)) + " |",
             "|" + " --- |" * (len(submasks) + 1)]
    for p in precisions:
        row = [_fmt(value(at[(p, k)])) if (p, k) in at else "" for k in submasks]
        lines.append(f"| {_pct(p)} | " + " | ".join(row) + " |")
    return lines + [""]


CSV_COLUMNS = ("model", "weights", "precision", "submasks", "category", "mode", "score", "runs",
               "realised_precision", "realised_submasks_mean", "lora")


def to_csv(cells: list[Cell]) -> str:
    """Long form: one row per (model, grid point, category), plus the average as category ``average``."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for cell in cells:
        base = {"model": cell.model, "weights": cell.label_weights,
                "precision": "" if cell.point is None else cell.point[0],
                "submasks": "" if cell.point is None else cell.point[1],
                "realised_precision": cell.realised.get("realised_precision", ""),
                "realised_submasks_mean": cell.realised.get("realised_submasks_mean", ""),
                "lora": ";".join(sorted(cell.loras))}
        for cat in categories_present([cell]):
            writer.writerow({**base, "category": cat, "mode": ";".join(sorted(cell.modes[cat])),
                             "score": cell.score(cat), "runs": len(cell.scores[cat])})
        if cell.average() is not None:
            writer.writerow({**base, "category": "average", "mode": "", "score": cell.average(), "runs": ""})
    return buf.getvalue()


def heatmap(cells: list[Cell], path: Path | str) -> Path:
    """Figure 1 drawn to a PNG (see ``heatmap_figure``)."""
    import matplotlib.pyplot as plt

    fig = heatmap_figure(cells)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def heatmap_figure(cells: list[Cell]):
    """Figure 1: the five-category average over precision (rows) x submasks (columns), one panel per model.
    Titles say when the weights behind the numbers are random; a grid point without an average is hatched
    and says why (no runs, or how many of the five categories it has)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    by_model: dict[tuple[str, str], list[Cell]] = defaultdict(list)
    for cell in cells:
        if cell.point is not None:
            by_model[(cell.model, cell.data)].append(cell)
    if not by_model:
        raise UserError("--heatmap: no result comes from a caption set with a precision and submasks "
                        "(train t2i records it; base-model runs have none)")
    fig, axes = plt.subplots(1, len(by_model), figsize=(4.6 * len(by_model), 4.2), squeeze=False)
    for ax, ((model, _), group) in zip(axes[0], by_model.items()):
        precisions = sorted({c.point[0] for c in group}, reverse=True)
        submasks = submask_axis({c.point[1] for c in group})
        by_point = {c.point: c for c in group}
        at = {point: cell.average() for point, cell in by_point.items()}
        grid = np.array([[at.get((p, k)) if at.get((p, k)) is not None else np.nan for k in submasks]
                         for p in precisions], dtype=float)
        ticks, decimals = colorbar_ticks(grid[~np.isnan(grid)].tolist())
        image = ax.imshow(grid, cmap="viridis", aspect="auto",
                          vmin=ticks[0] if ticks else None, vmax=ticks[-1] if ticks else None)
        for i, p in enumerate(precisions):
            for j, k in enumerate(submasks):
                if not np.isnan(grid[i, j]):
                    light = image.norm(grid[i, j]) > 0.6  # dark text on the light end of viridis
                    ax.text(j, i, f"{grid[i, j]:.{max(4, decimals)}f}", ha="center", va="center", fontsize=8,
                            color="black" if light else "white")
                else:
                    cell = by_point.get((p, k))
                    have = sum(1 for c in AVERAGED if cell is not None and cell.score(c) is not None)
                    ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor="0.9", hatch="//",
                                               edgecolor="0.6", linewidth=0))
                    ax.text(j, i, "no runs" if have == 0 else f"{have}/5 categories", ha="center", va="center",
                            fontsize=7, color="0.25")
        ax.set_xticks(range(len(submasks)), [str(k) for k in submasks])
        ax.set_yticks(range(len(precisions)), [_pct(p) for p in precisions])
        ax.set_xlabel("Number of submasks (recall)")
        ax.set_ylabel("Positive sentences (precision)")
        weights = {w for c in group for w in c.weights}
        note = " - RANDOM WEIGHTS" if "random" in weights else " - weights unknown" if "unknown" in weights else ""
        ax.set_title(f"{Path(model).name or model}{note}\nT2I-CompBench average of 5", fontsize=9)
        bar = fig.colorbar(image, ax=ax, shrink=0.8, ticks=ticks or None)
        if ticks:
            bar.ax.set_yticklabels([f"{t:.{decimals}f}" for t in ticks])
    fig.tight_layout()
    return fig


def submask_axis(present: set[int]) -> list[int]:
    """Every submask count from the smallest to the largest present, so a count without runs keeps its
    column (drawn as missing) instead of vanishing from the axis."""
    return list(range(min(present), max(present) + 1)) if present else []


def colorbar_ticks(values: list[float], most: int = 5) -> tuple[list[float], int]:
    """Colour-bar ticks spanning ``values`` and the fewest decimals (at least 4, at most 10) that print
    every tick differently, so scores that differ only in the fifth decimal get distinct labels."""
    if not values:
        return [], 4
    low, high = min(values), max(values)
    if low == high:
        return [low], 4
    ticks = [low + (high - low) * i / (most - 1) for i in range(most)]
    for decimals in range(4, 11):
        if len({f"{t:.{decimals}f}" for t in ticks}) == len(ticks):
            return ticks, decimals
    return ticks, 10


# ------------------------------------------------------------------------------------------ Table 3
# Captions4T2I Table 3: five-category average of LoRAs trained on each captioner's COCO captions.
PAPER_TABLE3: dict[str, dict[str, float]] = {
    "LLaVA": {"sd21": 0.3838, "sdxl": 0.3652},
    "uform": {"sd21": 0.3710, "sdxl": 0.3277},
    "BLIP": {"sd21": 0.3770, "sdxl": 0.3379},
}


@dataclass
class CaptionerRow:
    """One captioner on one data: a cell per generator (each the scores of ONE LoRA)."""

    captioner: str
    data: str
    cells: dict[str, Cell] = field(default_factory=dict)


def collect_captioners(results: list[dict[str, Any]]) -> list[CaptionerRow]:
    """Table 3's rows: results grouped by (captioner, data) and generator. A generator cell holds one LoRA's
    scores (repeated scorings of it are averaged); a second LoRA for the same captioner, data and generator
    opens another row, so two trainings are shown side by side, never averaged."""
    by_lora: dict[tuple[str, str, str, str], Cell] = {}
    for r in results:
        captioner = captioner_of(r)
        if captioner is None:
            continue
        key = (captioner, data_of(r), generator_of(r), str(r.get("lora")))
        cell = by_lora.setdefault(key, Cell(model=key[2], point=None, data=key[1]))
        add_score(cell, r)
    rows: list[CaptionerRow] = []
    for (captioner, data, generator, _), cell in sorted(by_lora.items()):
        row = next((x for x in rows if x.captioner == captioner and x.data == data and generator not in x.cells),
                   None)
        if row is None:
            row = CaptionerRow(captioner, data)
            rows.append(row)
        row.cells[generator] = cell
    return rows


def generators(rows: list[CaptionerRow]) -> list[str]:
    """Columns: the paper's families first (sd21, sdxl, pixart-alpha), then any other pipeline."""
    seen = {g for row in rows for g in row.cells}
    known = [g for g in ("sd21", "sdxl", "pixart-alpha") if g in seen]
    return known + sorted(seen - set(known))


def _with_weights(value: float | None, cell: Cell | None) -> str:
    if cell is None or value is None:
        return ""
    label = cell.label_weights
    return _fmt(value) + ("" if label == "pretrained" else f" ({label})")


def captioners_markdown(rows: list[CaptionerRow], *, paper: bool = False) -> str:
    """Table 3 (average per captioner x generator, data named per row), then the per-category detail."""
    columns = generators(rows)
    lines = ["## Captions4T2I Table 3: captioner x generator (T2I-CompBench, average of five categories)", "",
             "| Captioner | " + " | ".join(columns) + " | Data |", "|" + " --- |" * (len(columns) + 2)]
    for row in rows:
        cells = [_with_weights(row.cells[g].average(), row.cells[g]) if g in row.cells else "" for g in columns]
        lines.append(f"| {row.captioner} | " + " | ".join(cells) + f" | {row.data or 'unknown'} |")
    lines += ["", "A cell is one LoRA's five-category average (empty: not all five categories scored); "
              "(random): a number from random weights, not a model's result.", ""]
    cats = categories_present([c for row in rows for c in row.cells.values()])
    head = ["Captioner", "Generator"] + [CATEGORY_NAMES.get(c, c) for c in cats] + ["Average", "LoRA", "Data"]
    lines += ["### Per category", "", "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for row in rows:
        for g in columns:
            cell = row.cells.get(g)
            if cell is None:
                continue
            lines.append("| " + " | ".join([row.captioner, g] + [_fmt(cell.score(c)) for c in cats]
                                            + [_with_weights(cell.average(), cell), ", ".join(sorted(cell.loras)),
                                               row.data or "unknown"]) + " |")
    lines.append("")
    if paper:
        lines += ["## Published: Captions4T2I Table 3 (T2I-CompBench average, COCO captions)", "",
                  "| Captioner | sd21 | sdxl |", "| --- | --- | --- |"]
        lines += [f"| {name} | {v['sd21']:.4f} | {v['sdxl']:.4f} |" for name, v in PAPER_TABLE3.items()]
        lines.append("")
    return "\n".join(lines)


CAPTIONER_CSV = ("captioner", "generator", "category", "score", "runs", "weights", "lora", "data")


def captioners_csv(rows: list[CaptionerRow]) -> str:
    """Long form of Table 3: one row per (captioner, generator, category), plus ``average``."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(CAPTIONER_CSV), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        for g, cell in row.cells.items():
            base = {"captioner": row.captioner, "generator": g, "weights": cell.label_weights,
                    "lora": ";".join(sorted(cell.loras)), "data": row.data}
            for cat in categories_present([cell]):
                writer.writerow({**base, "category": cat, "score": cell.score(cat), "runs": len(cell.scores[cat])})
            if cell.average() is not None:
                writer.writerow({**base, "category": "average", "score": cell.average(), "runs": ""})
    return buf.getvalue()
