"""VL-CheckList (Zhao et al. 2022) as DCI runs it, on the benchmark interface (docs/compositional-benchmarks.md).

Each ``corpus/v1/<Type>/.../<dataset>.yaml`` names one annotation file (``ANNO_PATH``) and its photo folder
(``IMG_ROOT``). Per file: entries whose photo exists, the first 1,000 in file order; the photo scores
POS[0] and NEG[0]; right when POS[0] scores strictly higher; the file's accuracy rounded to 4 decimals.
DCI's aggregation: a category is the mean over its datasets (vg_obj and vg_subj are dataset vg, the swig_*
files dataset swig) of the mean over that dataset's files; Object is the mean of its 6 categories,
Attribute of 5, Relation of 2.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from densecaption.errors import DataError, UserError
from densecaption.evaluation.benchmark import Benchmark, BenchmarkData, BenchmarkOutput, Metric, PublishedRow, \
    RunContext, option
from densecaption.evaluation.benchmarks.aro import TABLE3
from densecaption.evaluation.compositional import Item, files_sha256, score_items, strictly_greater, whole_image

# (metric key, corpus folder under corpus/v1, DCI's label), in DCI's print order.
CATEGORIES = (
    ("object_size_large", "Object/Size/large", "O-Large"), ("object_size_medium", "Object/Size/medium", "O-Medium"),
    ("object_size_small", "Object/Size/small", "O-Small"),
    ("object_location_center", "Object/Location/center", "O-Center"),
    ("object_location_mid", "Object/Location/mid", "O-Mid"),
    ("object_location_margin", "Object/Location/margin", "O-Margin"),
    ("attribute_color", "Attribute/color", "A-Color"), ("attribute_material", "Attribute/material", "A-Material"),
    ("attribute_size", "Attribute/size", "A-Size"), ("attribute_state", "Attribute/state", "A-State"),
    ("attribute_action", "Attribute/action", "A-Action"),
    ("relation_action", "Relation/action", "R-Action"), ("relation_spatial", "Relation/spatial", "R-Spatial"),
)
GROUPS = {"object": 6, "attribute": 5, "relation": 2}
MAX_ITEMS = 1000
"""VL-CheckList's ITC task reads MAX_NUM / 2 = 1000 entries per file (DCI's MAX_NUM is 2000)."""
# DCI Table 3, the three VL-CheckList columns, in %.
PUBLISHED_VLC = (
    ("sDCI P1 (neg loss)", (80.71, 68.69, 70.12)), ("sDCI P1 NL0", (88.37, 70.42, 61.28)),
    ("DAC-LLM 10k", (66.90, 57.4, 56.96)), ("DAC-LLM 100k", (66.87, 57.22, 57.18)),
    ("DAC-LLM 500k", (66.54, 57.39, 56.77)), ("DAC-LLM 3M", (87.30, 77.27, 86.41)),
    ("DAC-SAM 3M", (88.50, 75.83, 89.75)), ("CLIP baseline", (81.17, 67.67, 61.95)),
    ("BLIP2", (84.14, 80.12, 70.72)), ("NegCLIP", (81.35, 72.24, 63.53)), ("SVLC", (85, 71.97, 68.95)),
)


@dataclass(frozen=True)
class VlcConfig:
    """VL-CheckList's settings; defaults are DCI's run."""

    images: str | None = field(default=None, metadata=option(
        "IMAGES_ROOT holding vg/, swig/ and hake/ (each yaml's IMG_ROOT is read under it); default: --data."))
    max_items: int = field(default=MAX_ITEMS, metadata=option(
        "Entries per file (the first ones whose photo exists); VL-CheckList's ITC: 1000.", minimum=1))


@dataclass(frozen=True)
class VlcFile:
    """One corpus yaml: its category key, dataset, annotation file and photo folder."""

    category: str
    dataset: str
    yaml: Path
    anno: Path
    img_root: str


def corpus_files(root: Path) -> list[VlcFile]:
    """Every yaml of the known categories under ``root/corpus/v1``, sorted by category then name."""
    import yaml

    out = []
    for key, folder, _ in CATEGORIES:
        for path in sorted((root / "corpus" / "v1" / folder).glob("*.yaml")):
            try:
                spec = yaml.safe_load(path.read_text())
                out.append(VlcFile(key, path.stem.split("_")[0], path, root / spec["ANNO_PATH"], spec["IMG_ROOT"]))
            except (OSError, yaml.YAMLError, KeyError, TypeError) as e:
                raise DataError(f"{path}: not a VL-CheckList corpus yaml with ANNO_PATH and IMG_ROOT ({e})") from None
    return out


def file_items(file: VlcFile, images: Path, max_items: int) -> tuple[list[Item], int]:
    """The first ``max_items`` entries whose photo exists, as (photo, (POS[0], NEG[0])), and how many entries
    before the last one taken had no photo."""
    try:
        entries = json.loads(file.anno.read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"{file.anno}: cannot read ({e}) (named by {file.yaml})") from None
    items, missing = [], 0
    for n, entry in enumerate(entries):
        if len(items) == max_items:
            break
        try:
            rel, texts = entry[0], entry[1]
            options = (texts["POS"][0], texts["NEG"][0])
        except (KeyError, TypeError, IndexError) as e:
            raise DataError(f"{file.anno}: entry {n}: expected [image, {{POS: [...], NEG: [...]}}] ({e})") from None
        photo = images / file.img_root / rel
        if photo.is_file():
            items.append(Item(whole_image(photo), options))
        else:
            missing += 1
    return items, missing


def aggregate(file_acc: list[tuple[VlcFile, float]]) -> dict[str, float]:
    """DCI's ``score_vlc`` over the files' rounded accuracies (fractions): category = mean over datasets of the
    mean over files; group = mean over its categories. Categories without files are left out (NaN)."""
    by_cat: dict[str, dict[str, list[float]]] = {}
    for f, acc in file_acc:
        by_cat.setdefault(f.category, {}).setdefault(f.dataset, []).append(acc)
    out = {key: (sum(sum(v) / len(v) for v in by_cat[key].values()) / len(by_cat[key]) if key in by_cat
                 else float("nan")) for key, _, _ in CATEGORIES}
    for group in GROUPS:
        present = [out[k] for k, _, _ in CATEGORIES if k.startswith(group + "_") and k in by_cat]
        out[group] = sum(present) / len(present) if present else float("nan")
    return out


class VLCheckList(Benchmark):
    """VL-CheckList: Object, Attribute and Relation as DCI's Table 3 (ITC, POS[0] vs NEG[0])."""

    name = "vlchecklist"
    title = "VL-CheckList"
    config_class = VlcConfig
    metrics = (tuple(Metric(g, g.capitalize()) for g in GROUPS)
               + tuple(Metric(key, label) for key, _, label in CATEGORIES))
    published = tuple(PublishedRow(model, dict(zip(GROUPS, values)), TABLE3) for model, values in PUBLISHED_VLC)
    data_help = ("VLC_ROOT as in the official repository: corpus/v1/...yaml and data/...json "
                 "(`densecaption data fetch vlchecklist DIR`).")
    uses_splits = False

    def open(self, path: Any, split: str) -> BenchmarkData:
        root = Path(path).expanduser()
        files = corpus_files(root) if root.is_dir() else []
        if not files:
            raise UserError(f"--data {root}: no corpus/v1/<Type>/.../*.yaml of a known category "
                            f"(`densecaption data fetch vlchecklist {root}`)")
        known = [p for f in files for p in (f.yaml, f.anno) if p.is_file()]
        return BenchmarkData(path=str(path), sha256=files_sha256(known, root), split=split, handle=(root, files))

    def run(self, model: Any, config: VlcConfig, data: BenchmarkData, context: RunContext) -> BenchmarkOutput:
        root, files = data.handle
        images = Path(config.images).expanduser() if config.images else root
        if not images.is_dir():
            raise UserError(f"--images {images}: no such folder (IMAGES_ROOT with vg/, swig/, hake/)")
        per_file: list[tuple[VlcFile, list[Item]]] = []
        missing, empty = {}, []
        advance = context.progress("reading", len(files))
        for f in files:
            items, missing[str(f.yaml.relative_to(root))] = file_items(f, images, config.max_items)
            (per_file.append((f, items)) if items else empty.append(str(f.yaml.relative_to(root))))
            advance(1)
        scored = score_items(model, [it for _, items in per_file for it in items], context)
        file_acc, start, counts = [], 0, {m.key: 0 for m in self.metrics}
        accuracies = {}
        for f, items in per_file:
            hits = [strictly_greater(s[0], s[1]) for s in scored.scores[start:start + len(items)]]
            start += len(items)
            acc = round(sum(hits) / len(hits), 4)
            file_acc.append((f, acc))
            accuracies[str(f.yaml.relative_to(root))] = acc
            counts[f.category] += len(hits)
            counts[f.category.split("_")[0]] += len(hits)
        fractions = aggregate(file_acc)
        metrics = {m.key: 100.0 * fractions[m.key] for m in self.metrics}
        return BenchmarkOutput(metrics, counts, {
            "images": str(images), "file_accuracy": accuracies, "missing_images": missing,
            "files_without_items": empty, "encoded_images": scored.encoded_images,
            "encoded_texts": scored.encoded_texts})
