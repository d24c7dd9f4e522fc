"""DCI's Table 3: ARO (VG-Relation, VG-Attribution, COCO-Order, Flickr30k-Order) beside VL-CheckList (Object,
Attribute, Relation), one row per model (with its LoRA and weights), from `bench aro` and `bench vlchecklist`
result files; with ``paper`` the published rows follow (docs/compositional-benchmarks.md)."""

from __future__ import annotations

import csv
import io
from typing import Any

from densecaption.evaluation.benchmarks.aro import PUBLISHED_ARO, TABLE3
from densecaption.evaluation.benchmarks.vlchecklist import PUBLISHED_VLC
from densecaption.evaluation.results import data_label
from densecaption.reports.benchmark import model_label

COLUMNS = (("aro", "vg_relation", "VG-R"), ("aro", "vg_attribution", "VG-A"), ("aro", "coco_order", "COCO"),
           ("aro", "flickr30k_order", "Flickr"), ("vlchecklist", "object", "Object"),
           ("vlchecklist", "attribute", "Attribute"), ("vlchecklist", "relation", "Relation"))


def rows(results: list[dict[str, Any]], *, paper: bool = False) -> list[dict[str, Any]]:
    """One row per (model, LoRA, weights): its ARO and VL-CheckList numbers (the newest result of each task
    when a model has several), the data each came from; the published rows last."""
    merged: dict[tuple[str, str, str], dict[str, Any]] = {}
    for r in sorted(results, key=lambda r: r.get("created", "")):
        key = (r["model"], r.get("lora") or "", r.get("weights", "unknown"))
        row = merged.setdefault(key, {"model": key[0], "lora": key[1], "weights": key[2], "data": {}})
        for task, metric, _ in COLUMNS:
            if r["task"] == task:
                row[f"{task}.{metric}"] = r.get("metrics", {}).get(metric)
        row["data"][r["task"]] = data_label(r.get("data", ""), r.get("data_sha256"))
    out = sorted(merged.values(), key=lambda x: (x["model"], x["lora"], x["weights"]))
    if paper:
        vlc = dict(PUBLISHED_VLC)
        for model, values in PUBLISHED_ARO:
            row = {"model": model, "lora": "", "weights": "published", "data": {"paper": TABLE3}}
            row.update({f"aro.{m}": v for (_, m, _), v in zip(COLUMNS[:4], values)})
            row.update({f"vlchecklist.{m}": v for (_, m, _), v in zip(COLUMNS[4:], vlc[model])})
            out.append(row)
    return out


def _data_cell(row: dict[str, Any]) -> str:
    return "; ".join(f"{task}: {label}" for task, label in row["data"].items())


def to_markdown(table: list[dict[str, Any]]) -> str:
    head = ["model"] + [label for _, _, label in COLUMNS] + ["data"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for row in table:
        cells = [model_label(row)] + [_fmt(row.get(f"{t}.{m}")) for t, m, _ in COLUMNS] + [_data_cell(row)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_csv(table: list[dict[str, Any]]) -> str:
    columns = ["model", "lora", "weights"] + [m for _, m, _ in COLUMNS] + ["data"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in table:
        values = {m: row.get(f"{t}.{m}") for t, m, _ in COLUMNS}
        writer.writerow({"model": row["model"], "lora": row["lora"], "weights": row["weights"],
                         **{k: "" if v is None or v != v else v for k, v in values.items()}, "data": _data_cell(row)})
    return buf.getvalue()


def _fmt(value: float | None) -> str:
    return "" if value is None or value != value else f"{value:.2f}"
