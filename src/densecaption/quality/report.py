"""Result files and printed tables of the quality commands (the paper's Table 4: captioner | entities per
caption | modified FaithScore)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from rich.table import Table

from densecaption.files import atomic_write_text, writing


def write_result(path: Path, result: dict[str, Any]) -> None:
    """The result JSON, atomically; an OS error is one line naming the file (exit 2), not a traceback."""
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(result, indent=2, ensure_ascii=False) + "\n")


def fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def recall_table(name: str, summary: dict[str, Any]) -> Table:
    table = Table(title="Caption recall (per caption: mean ± std)")
    table.add_column("captioner")
    table.add_column("captions", justify="right")
    columns = [("entities", "entities"), ("nouns", "nouns"), ("words", "words"), ("clip_tokens", "CLIP tokens")]
    for _, title in columns:
        table.add_column(title, justify="right")
    cells = []
    for key, _ in columns:
        s = summary.get(key) or {}
        cells.append("-" if s.get("mean") is None else f"{s['mean']:.2f} ± {s['std']:.2f}")
    table.add_row(name, str(summary["captions"]), *cells)
    return table


def table4(rows: Sequence[dict[str, Any]]) -> Table:
    """Rows of ``captioner``, ``entities`` (mean per caption or None), ``instance``, ``sentence``, ``facts``,
    ``scored`` and ``captions``, as the paper's Table 4 with the sentence level and counts beside."""
    table = Table(title="Caption quality (Captions4T2I Table 4)")
    table.add_column("captioner", overflow="fold")
    for title in ("entities / caption", "FaithScore (modified)", "sentence level", "facts", "scored"):
        table.add_column(title, justify="right")
    for row in rows:
        table.add_row(row["captioner"], fmt(row.get("entities")), fmt(row.get("instance"), 4),
                      fmt(row.get("sentence"), 4), fmt(row.get("facts")),
                      f"{row.get('scored')}/{row.get('captions')}")
    return table


def category_table(per_category: dict[str, dict[str, Any]]) -> Table:
    table = Table(title="Fact precision per category")
    table.add_column("category")
    table.add_column("facts", justify="right")
    table.add_column("verified", justify="right")
    table.add_column("precision", justify="right")
    for cat, s in per_category.items():
        table.add_row(cat, str(s["facts"]), str(s["verified"]), fmt(s["precision"], 4))
    return table


def clipscore_table(name: str, result: dict[str, Any], weights: str) -> Table:
    table = Table(title="CLIPScore" + ("" if weights in ("pretrained", "remote") else f" (weights: {weights})"))
    table.add_column("captioner")
    table.add_column("captions", justify="right")
    table.add_column("CLIP-S", justify="right")
    if "refclip_s" in result:
        table.add_column("RefCLIP-S", justify="right")
        table.add_column("with refs", justify="right")
    cells = [name, str(result["captions"]), fmt(result["clip_s"], 4)]
    if "refclip_s" in result:
        cells += [fmt(result["refclip_s"], 4), str(result["with_references"])]
    table.add_row(*cells)
    return table
