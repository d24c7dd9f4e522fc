"""Merge result files of any registered benchmark into one table (for sDCI, like the DCI paper's Table 10),
optionally with the benchmark's published rows. A data column (path and SHA-256 prefix) keeps runs on
different data from looking alike."""

from __future__ import annotations

import csv
import io
from typing import Any

from densecaption.evaluation.benchmark import Benchmark
from densecaption.evaluation.results import data_label

BASE_COLUMNS = ("model", "lora", "weights", "split", "mode")
TAIL_COLUMNS = ("data", "data_sha256")


def rows(benchmark: Benchmark, results: list[dict[str, Any]], *, paper: bool = False) -> list[dict[str, Any]]:
    """One row per result, sorted by model, LoRA, split, mode and data; the published rows last."""
    keys = [m.key for m in benchmark.metrics]
    out = []
    for r in results:
        row = {"model": r["model"], "lora": r.get("lora") or "", "weights": r.get("weights", "unknown"),
               "split": r.get("split", ""), "mode": r.get("mode", ""), "data": r.get("data", ""),
               "data_sha256": r.get("data_sha256", "")}
        row.update({k: r.get("metrics", {}).get(k) for k in keys})
        out.append(row)
    out.sort(key=lambda x: (x["model"], x["lora"], x["split"], x["mode"], x["data"], x["data_sha256"]))
    if paper:
        out += [{"model": p.model, "lora": "", "weights": "published", "split": "", "mode": "", "data": p.source,
                 "data_sha256": "", **{k: p.metrics.get(k) for k in keys}} for p in benchmark.published]
    return out


def model_label(row: dict[str, Any]) -> str:
    """The model with its LoRA, and a visible label when the weights are not pretrained (or published)."""
    label = row["model"] + (f" + {row['lora']}" if row["lora"] else "")
    return label if row["weights"] in ("pretrained", "published") else f"{label} (weights: {row['weights']})"


def _data_cell(row: dict[str, Any]) -> str:
    if row["weights"] == "published":
        return f"published ({row['data']})"
    return data_label(row["data"], row["data_sha256"])


def to_markdown(benchmark: Benchmark, table: list[dict[str, Any]]) -> str:
    head = ["model", "data", "split", "mode"] + [m.label for m in benchmark.metrics]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for row in table:
        cells = [model_label(row), _data_cell(row), row["split"], row["mode"]] + \
            [_fmt(row[m.key]) for m in benchmark.metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_csv(benchmark: Benchmark, table: list[dict[str, Any]]) -> str:
    columns = list(BASE_COLUMNS) + [m.key for m in benchmark.metrics] + list(TAIL_COLUMNS)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in table:
        writer.writerow({k: ("" if row[k] is None else row[k]) for k in columns})
    return buf.getvalue()


def _fmt(value: float | None) -> str:
    return "" if value is None or value != value else f"{value:.2f}"
