"""Captions4T2I Table 4 from ``quality precision`` and ``quality recall`` results: one row per captioner and
data (docs/caption-sets-and-quality.md, "Table 4: report captioners").

A row is a captioner measured on one set of captions: the captions file's sha256 and the ``--sample`` N and
seed. Results of one captioner on different data are separate rows, never pooled; a recall result fills the
entities column of the precision row with the same captioner and data (or makes a row of its own).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from densecaption.errors import UserError

CATEGORIES = ("ENTITY", "SHAPE", "COLOR", "TEXTURE", "SPATIAL", "NON-SPATIAL", "OTHER")
PRECISION = "modified FaithScore"
RECALL = "recall"

# Captions4T2I Table 4: entities per caption and the modified FaithScore of each captioner's COCO captions.
PAPER_TABLE4 = (("LLaVA (published)", 4.90, 0.911), ("BLIP (published)", 2.12, 0.931),
                ("uform (published)", 6.52, 0.831))


@dataclass
class Row:
    """One captioner on one set of captions."""

    captioner: str
    data: tuple[str | None, int | None, int | None]
    """(captions file sha256, sample N, sample seed); N and seed are None when every caption was measured."""
    probed: int | None = None
    entities: float | None = None
    instance: float | None = None
    sentence: float | None = None
    per_category: dict[str, float | None] = field(default_factory=dict)
    weights: set[str] = field(default_factory=set)
    files: list[str] = field(default_factory=list)
    published: bool = False

    @property
    def label(self) -> str:
        odd = sorted(w for w in self.weights if w not in ("pretrained", "remote"))
        return f"{self.captioner} (weights: {', '.join(odd)})" if odd else self.captioner

    @property
    def data_note(self) -> str:
        sha, n, seed = self.data
        if self.published:
            return "published (COCO, 1,000 captions)"
        sample = f"sample {n}, seed {seed}" if n is not None else "all captions"
        return f"{(sha or 'unknown')[:12]}, {sample}"


def read_quality_results(paths: list[Path]) -> list[dict[str, Any]]:
    """The ``quality precision``/``quality recall`` result JSONs among ``paths`` (files, or folders searched
    recursively); other JSON files are left alone. A named file that is not one is an error."""
    found: list[dict[str, Any]] = []
    for path in paths:
        if not path.exists():
            raise UserError(f"{path}: no such file or folder")
        files = sorted(path.rglob("*.json")) if path.is_dir() else [path]
        for f in files:
            try:
                data = json.loads(f.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                if path.is_dir():
                    continue
                raise UserError(f"{f}: not a JSON result ({e})") from None
            if isinstance(data, dict) and data.get("measure") in (PRECISION, RECALL):
                found.append({**data, "_file": str(f)})
            elif not path.is_dir():
                raise UserError(f"{f}: not a `quality precision` or `quality recall` result")
    return found


def _data_key(result: dict[str, Any]) -> tuple[str | None, int | None, int | None]:
    sample = result.get("sample") or {}
    taken = sample and not sample.get("all")
    return (result.get("captions_file_sha256"), sample.get("n") if taken else None,
            sample.get("seed") if taken else None)


def rows(results: list[dict[str, Any]], *, paper: bool = False) -> list[Row]:
    """One row per (captioner, data). Two precision results for one row are a conflict (an error naming both
    files), not an average."""
    table: dict[tuple[str, tuple], Row] = {}
    for r in sorted(results, key=lambda r: r["measure"] != PRECISION):  # precision rows first, recall fills in
        key = (str(r.get("captioner")), _data_key(r))
        row = table.setdefault(key, Row(captioner=key[0], data=key[1]))
        weights = r.get("weights") or {}
        row.weights |= set(weights.values()) if isinstance(weights, dict) else {str(weights)}
        if r.get("captioner_weights"):
            row.weights.add(str(r["captioner_weights"]))
        if r["measure"] == PRECISION:
            if row.instance is not None:
                raise UserError(f"two precision results for {row.captioner} on the same data: "
                                f"{row.files[0]} and {r['_file']}; keep one")
            row.probed = r.get("scored")
            row.instance, row.sentence = r.get("instance"), r.get("sentence")
            row.per_category = {c: (r.get("per_category") or {}).get(c, {}).get("precision") for c in CATEGORIES}
            if r.get("entities_per_caption") is not None:
                row.entities = r["entities_per_caption"]
        elif row.entities is None or row.instance is None:
            row.entities = ((r.get("summary") or {}).get("entities") or {}).get("mean")
            row.probed = row.probed if row.probed is not None else (r.get("summary") or {}).get("captions")
        row.files.append(r["_file"])
    out = sorted(table.values(), key=lambda row: (row.captioner, row.data_note))
    if paper:
        out += [Row(captioner=name, data=(None, None, None), entities=e, instance=s, published=True)
                for name, e, s in PAPER_TABLE4]
    return out


COLUMNS = ("captioner", "captions", "entities/caption", "FaithScore", "sentence", *CATEGORIES, "data")


def _cells(row: Row) -> list[str]:
    def num(value, digits):
        return "" if value is None else f"{value:.{digits}f}"

    return [row.label, "" if row.probed is None else str(row.probed), num(row.entities, 2), num(row.instance, 3),
            num(row.sentence, 3), *[num(row.per_category.get(c), 3) for c in CATEGORIES], row.data_note]


def to_markdown(table: list[Row]) -> str:
    lines = ["## Caption quality (Captions4T2I Table 4)", "", "| " + " | ".join(COLUMNS) + " |",
             "|" + " --- |" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in table]
    lines += ["", "FaithScore: the modified FaithScore at instance level (mean over captions of verified facts / "
              "facts); sentence: sentence level; categories: verified share of the facts of each category. "
              "data: sha256 of the captions file (first 12 hex digits) and the --sample it measured.", ""]
    return "\n".join(lines)


def to_csv(table: list[Row]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([*COLUMNS, "captions_sha256", "sample_n", "sample_seed", "weights", "files"])
    for r in table:
        writer.writerow([*_cells(r), r.data[0] or "", "" if r.data[1] is None else r.data[1],
                         "" if r.data[2] is None else r.data[2], ";".join(sorted(r.weights)), ";".join(r.files)])
    return buf.getvalue()


def to_json(table: list[Row]) -> str:
    return json.dumps([{"captioner": r.captioner, "label": r.label, "captions": r.probed, "entities": r.entities,
                        "faithscore": r.instance, "sentence": r.sentence, "per_category": r.per_category,
                        "captions_sha256": r.data[0], "sample_n": r.data[1], "sample_seed": r.data[2],
                        "weights": sorted(r.weights), "published": r.published, "files": r.files}
                       for r in table], indent=1) + "\n"
