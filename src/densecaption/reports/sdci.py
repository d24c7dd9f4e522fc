"""Merge sDCI result files into one table like the DCI paper's Table 10."""

from __future__ import annotations

import csv
import io
from typing import Any

from densecaption.evaluation.sdci import METRICS, PAPER_NAMES

COLUMNS = ("model", "lora", "weights", "split", "mode") + METRICS


def rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per result, sorted by model, LoRA, split and mode."""
    out = []
    for r in results:
        row = {"model": r["model"], "lora": r.get("lora") or "", "weights": r.get("weights", "unknown"),
               "split": r.get("split", ""), "mode": r.get("mode", "")}
        row.update({m: r.get("metrics", {}).get(m) for m in METRICS})
        out.append(row)
    return sorted(out, key=lambda x: (x["model"], x["lora"], x["split"], x["mode"]))


def model_label(row: dict[str, Any]) -> str:
    """The model with its LoRA, and a visible label when the weights are not pretrained."""
    label = row["model"] + (f" + {row['lora']}" if row["lora"] else "")
    return label if row["weights"] == "pretrained" else f"{label} (weights: {row['weights']})"


def to_markdown(table: list[dict[str, Any]]) -> str:
    head = ["model", "split", "mode"] + [PAPER_NAMES[m] for m in METRICS]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for row in table:
        cells = [model_label(row), row["split"], row["mode"]] + [_fmt(row[m]) for m in METRICS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_csv(table: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in table:
        writer.writerow({k: ("" if row[k] is None else row[k]) for k in COLUMNS})
    return buf.getvalue()


def _fmt(value: float | None) -> str:
    return "" if value is None or value != value else f"{value:.2f}"
