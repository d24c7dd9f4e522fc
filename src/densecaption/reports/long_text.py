"""sDCI (summaries) beside sdci-full (full texts), one row per sdci-full run: what summarising costs and what
long context buys, with the share of full texts the model's window cut (docs/long-text.md)."""

from __future__ import annotations

import csv
import io
from typing import Any

from densecaption.evaluation.long_text import LENGTH_EDGES, bucket_labels
from densecaption.evaluation.results import data_label
from densecaption.reports.benchmark import model_label

PAIRS = (("scm_b8", "SCM/8"), ("scm", "SCM"), ("i2t_r1", "i2t@1"), ("t2i_r1", "t2i@1"))
"""sdci-full tests shown as summary / full pairs (SCM/8 is sDCI's All SCM batching)."""
DESIGN_LINE = ("sdci-full is this project's own test (docs/long-text.md), not the DCI paper's. Cells are "
               "summary / full text; sDCI All SCM is the sdci run of the same model without #long=.")


def base_spec(model: str) -> str:
    """The spec without its ``#long=`` option (the model sDCI ran)."""
    head, *options = model.split("#")
    return "#".join([head] + [o for o in options if not o.startswith("long=")])


def side_by_side(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per sdci-full result with the matching sDCI run's All SCM (same model without ``#long=``,
    LoRA, data and split; reference mode), sorted by model."""
    sdci = {(r["model"], r.get("lora"), r.get("data_sha256"), r.get("split")): r for r in results
            if r["task"] == "sdci" and r.get("mode") == "reference"}
    rows = []
    for r in (r for r in results if r["task"] == "sdci-full"):
        key = (r.get("lora"), r.get("data_sha256"), r.get("split"))
        match = sdci.get((r["model"], *key)) or sdci.get((base_spec(r["model"]), *key))
        metrics = r.get("metrics", {})
        rows.append({
            "model": r["model"], "lora": r.get("lora") or "", "weights": r.get("weights", "unknown"),
            "data": data_label(r.get("data", ""), r.get("data_sha256")), "split": r.get("split", ""),
            "long_mode": r.get("long_mode", ""), "window": r.get("window"),
            "tokens_mean": (r.get("tokens") or {}).get("mean"), "cut_share": metrics.get("cut_share"),
            "sdci_all_scm": (match or {}).get("metrics", {}).get("all_scm"),
            **{f"{side}_{key}": metrics.get(f"{side}_{key}") for key, _ in PAIRS for side in ("summary", "full")},
            "by_length": r.get("by_length") or {}, "edges": (r.get("config") or {}).get("length_edges")})
    return sorted(rows, key=lambda x: (x["model"], x["lora"], x["data"], x["split"]))


def to_markdown(rows: list[dict[str, Any]]) -> str:
    """Two tables: the side-by-side scores, then SCM accuracy by full-text length."""
    head = ["model", "data", "reads long text", "window", "tokens (mean)", "Cut %", "sDCI All SCM"] + \
        [f"{label} sum / full" for _, label in PAIRS]
    lines = [DESIGN_LINE, "", _md_row(head), "|" + " --- |" * len(head)]
    for row in rows:
        lines.append(_md_row([model_label(row), row["data"], row["long_mode"], str(row["window"] or ""),
                              _fmt(row["tokens_mean"]), _fmt(row["cut_share"]), _fmt(row["sdci_all_scm"])] +
                             [f"{_fmt(row[f'summary_{k}'])} / {_fmt(row[f'full_{k}'])}" for k, _ in PAIRS]))
    labels = bucket_labels(tuple(sorted(set(rows[0]["edges"] or LENGTH_EDGES)))) if rows else []
    lines += ["", "SCM within each image by full-text length (tokens): entries, summary / full", "",
              _md_row(["model", "reads long text"] + labels), "|" + " --- |" * (2 + len(labels))]
    for row in rows:
        cells = []
        for label in labels:
            b = row["by_length"].get(label)
            cells.append(f"{b['entries']}: {_fmt(b['summary_scm'])} / {_fmt(b['full_scm'])}" if b else "")
        lines.append(_md_row([model_label(row), row["long_mode"]] + cells))
    return "\n".join(lines) + "\n"


def to_csv(rows: list[dict[str, Any]]) -> str:
    """The side-by-side table, one column per number (the length breakdown stays in the result files)."""
    columns = ["model", "lora", "weights", "split", "long_mode", "window", "tokens_mean", "cut_share",
               "sdci_all_scm"] + [f"{side}_{k}" for k, _ in PAIRS for side in ("summary", "full")] + ["data"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in columns})
    return buf.getvalue()


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _fmt(value: float | None) -> str:
    return "" if value is None or value != value else f"{value:.2f}"
