"""ARO (Yuksekgonul et al. 2023) on the benchmark interface: VG-Relation, VG-Attribution, COCO-Order and
Flickr30k-Order with ARO's own protocol (docs/compositional-benchmarks.md):

- VG sets: the RGB crop (x, y, x+w, y+h) against [false caption, true caption]; right when the true one is
  the first highest score (a tie is wrong). VG-Relation is the mean accuracy over relations outside the 157
  symmetric ones ARO's notebook drops; VG-Attribution the mean over attribute pairs with at least 25 items.
- Order sets: the whole photo against [caption, 4 perturbations], all through ``pre_caption``; right when the
  caption is the first highest (a tie is right); Precision@1 over every (photo, caption).

Items whose photo is missing are left out after the perturbations are drawn (so the seeded stream matches
ARO's) and counted in ``missing_images``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from densecaption.data.download import sha256_of
from densecaption.errors import DataError, UserError
from densecaption.evaluation.benchmark import Benchmark, BenchmarkData, BenchmarkOutput, Metric, PublishedRow, \
    RunContext, option
from densecaption.evaluation.compositional import Item, OrderPerturber, argmax_is, box_crop, files_sha256, \
    grouped_accuracy, whole_image

SETS = ("vg_relation", "vg_attribution", "coco_order", "flickr30k_order")
FILES = {"vg_relation": "visual_genome_relation.json", "vg_attribution": "visual_genome_attribution.json",
         "coco_order": "coco_karpathy_test.json", "flickr30k_order": "flickr30k_test.json"}
MIN_PAIR_ITEMS = 25
"""VG-Attribution drops attribute pairs with fewer items than this."""

TABLE3 = "DCI paper, Table 3 (5-seed means, CLIP ViT-B/32 base)"
# DCI Table 3, the four ARO columns (VG-R, VG-A, COCO, Flickr), in %.
PUBLISHED_ARO = (
    ("sDCI P1 (neg loss)", (76.23, 67.56, 88.58, 91.30)),
    ("sDCI P1 NL0", (57.34, 61.98, 39.36, 44.62)),
    ("DAC-LLM 10k", (61.53, 63.89, 46.28, 59.41)),
    ("DAC-LLM 100k", (61.0, 63.6, 48.2, 61.42)),
    ("DAC-LLM 500k", (60.1, 63.8, 50.2, 61.6)),
    ("DAC-LLM 3M", (81.28, 73.91, 94.47, 95.68)),
    ("DAC-SAM 3M", (77.16, 70.5, 91.22, 93.88)),
    ("CLIP baseline", (59.98, 63.18, 47.9, 60.2)),
    ("BLIP2", (41.16, 71.25, 13.57, 13.72)),
    ("NegCLIP", (81, 71, 86, 91)),
    ("SVLC", (80.61, 73.03, 84.73, 91.7)),
)


def excluded_relations() -> frozenset[str]:
    """The 157 symmetric Visual Genome relations that VG-Relation's mean leaves out (package data)."""
    text = resources.files("densecaption.evaluation.benchmarks").joinpath("data/aro-excluded-relations.txt")
    return frozenset(line.strip() for line in text.read_text().splitlines() if line.strip())


@dataclass(frozen=True)
class AroConfig:
    """ARO's settings; defaults are ARO's script."""

    coco_dir: str | None = field(default=None, metadata=option(
        "Folder holding coco_karpathy_test.json and val2014/ (COCO-Order); default: --data."))
    flickr_dir: str | None = field(default=None, metadata=option(
        "Folder holding flickr30k_test.json and flickr30k-images/ (Flickr30k-Order); default: --data, as DCI."))
    sets: tuple[str, ...] = field(default=(), metadata=option(
        "Sets to run (repeatable): vg_relation, vg_attribution, coco_order, flickr30k_order. Default: every set "
        "whose annotation file is found."))
    seed: int = field(default=1, metadata=option("Seed of the Order perturbations (numpy and Python random), "
                                                 "as ARO's --seed."))
    spacy_model: str = field(default="en_core_web_sm", metadata=option(
        "spaCy pipeline that tags the Order captions (ARO: en_core_web_sm).", cli=False))


@dataclass(frozen=True)
class AroData:
    root: Path


def set_file(root: Path, config: AroConfig, name: str) -> Path:
    base = {"coco_order": config.coco_dir, "flickr30k_order": config.flickr_dir}.get(name)
    return Path(base).expanduser() / FILES[name] if base else root / FILES[name]


def read_json(path: Path) -> list[dict[str, Any]]:
    try:
        rows = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    if not isinstance(rows, list):
        raise DataError(f"{path}: expected a JSON list of items")
    return rows


def vg_items(rows: list[dict[str, Any]], images: Path, path: Path) -> list[Item | None]:
    """The crop and [false, true] of each row (None where the photo is missing)."""
    items: list[Item | None] = []
    exists: dict[str, bool] = {}
    for n, row in enumerate(rows):
        try:
            photo = images / row["image_path"]
            if row["image_path"] not in exists:
                exists[row["image_path"]] = photo.is_file()
            crop = box_crop(photo, row["bbox_x"], row["bbox_y"], row["bbox_w"], row["bbox_h"])
            items.append(Item(crop, (row["false_caption"], row["true_caption"])) if exists[row["image_path"]] else None)
        except (KeyError, TypeError) as e:
            raise DataError(f"{path}: item {n}: missing or bad field {e}") from None
    return items


def vg_labels(rows: list[dict[str, Any]], name: str, path: Path) -> list[str]:
    """Each row's relation (VG-Relation) or attribute pair "a_b" (VG-Attribution)."""
    try:
        return [r["relation_name"] if name == "vg_relation" else f"{r['attributes'][0]}_{r['attributes'][1]}"
                for r in rows]
    except (KeyError, TypeError, IndexError) as e:
        raise DataError(f"{path}: an item lacks its relation_name or attributes [a, b] ({e})") from None


def order_items(rows: list[dict[str, Any]], root: Path, perturber: OrderPerturber, path: Path) -> list[Item | None]:
    """One item per (photo, caption): [caption, 4 perturbations]; every caption is perturbed, in file order,
    also where the photo is missing, so the seeded draws match ARO's."""
    try:
        pairs = [(row["image"], caption) for row in rows for caption in row["caption"]]
    except (KeyError, TypeError) as e:
        raise DataError(f"{path}: missing or bad field {e} (expected image and a caption list)") from None
    tagged = perturber.tag([c for _, c in pairs])
    sizes: dict[str, Any] = {}
    items: list[Item | None] = []
    for (image, caption), tags in zip(pairs, tagged):
        options = perturber.options(caption, tags)
        if image not in sizes:
            photo = root / image
            sizes[image] = whole_image(photo) if photo.is_file() else None
        items.append(Item(sizes[image], options) if sizes[image] is not None else None)
    return items


def vg_metric(labels: list[str], hits: list[bool], *, excluded: frozenset[str] = frozenset(),
              min_items: int = 0) -> tuple[float, int, dict[str, dict[str, float]]]:
    """Macro accuracy in % over labels not ``excluded`` with at least ``min_items`` items, the items those
    labels hold, and every label's accuracy and count."""
    per = grouped_accuracy(labels, hits)
    kept = {k: v for k, v in per.items() if k not in excluded and v[1] >= min_items}
    value = 100.0 * sum(a for a, _ in kept.values()) / len(kept) if kept else float("nan")
    return value, sum(n for _, n in kept.values()), {k: {"accuracy": round(100 * a, 4), "items": n, "kept": k in kept}
                                                     for k, (a, n) in per.items()}


class ARO(Benchmark):
    """ARO: VG-Relation, VG-Attribution, COCO-Order and Flickr30k-Order (DCI's Table 3 left half)."""

    name = "aro"
    title = "ARO"
    config_class = AroConfig
    metrics = (Metric("vg_relation", "VG-R"), Metric("vg_attribution", "VG-A"), Metric("coco_order", "COCO"),
               Metric("flickr30k_order", "Flickr"))
    published = tuple(PublishedRow(model, dict(zip(SETS, values)), TABLE3) for model, values in PUBLISHED_ARO)
    data_help = ("ARO folder: visual_genome_relation.json, visual_genome_attribution.json and images/ "
                 "(`densecaption data fetch aro DIR`).")
    uses_splits = False

    def open(self, path: Any, split: str) -> BenchmarkData:
        root = Path(path).expanduser()
        if not root.is_dir():
            raise UserError(f"--data {root}: no such folder (fetch it with `densecaption data fetch aro {root}`)")
        found = sorted(p for p in root.iterdir() if p.name in FILES.values())
        return BenchmarkData(path=str(path), sha256=files_sha256(found, root), split=split, handle=AroData(root))

    def run(self, model: Any, config: AroConfig, data: BenchmarkData, context: RunContext) -> BenchmarkOutput:
        root = data.handle.root
        unknown = sorted(set(config.sets) - set(SETS))
        if unknown:
            raise UserError(f"--sets {', '.join(unknown)}: choose from {', '.join(SETS)}")
        paths = {name: set_file(root, config, name) for name in SETS}
        wanted = [s for s in SETS if s in config.sets] if config.sets else [s for s in SETS if paths[s].is_file()]
        for name in wanted:
            if not paths[name].is_file():
                raise UserError(f"{paths[name]}: not found ({name}); `densecaption data fetch aro` gets the public "
                                f"files, or leave {name} out of --sets")
        if not wanted:
            raise UserError(f"{root}: none of {', '.join(FILES.values())} found (`densecaption data fetch aro`)")
        items, labels, extra = self._items(wanted, paths, root, config, context)
        flat = [it for name in wanted for it in items[name] if it is not None]
        from densecaption.evaluation.compositional import score_items

        scored = score_items(model, flat, context)
        metrics = {s: float("nan") for s in SETS}
        counts = {s: 0 for s in SETS}
        start = 0
        excluded = excluded_relations()
        for name in wanted:
            present = [i for i, it in enumerate(items[name]) if it is not None]
            scores = scored.scores[start:start + len(present)]
            start += len(present)
            if name.startswith("vg_"):
                hits = [argmax_is(s, 1) for s in scores]
                names = [labels[name][i] for i in present]
                metrics[name], counts[name], extra[f"{name}_by_label"] = vg_metric(
                    names, hits, excluded=excluded if name == "vg_relation" else frozenset(),
                    min_items=MIN_PAIR_ITEMS if name == "vg_attribution" else 0)
            else:
                hits = [argmax_is(s, 0) for s in scores]
                metrics[name], counts[name] = (100.0 * sum(hits) / len(hits) if hits else float("nan")), len(hits)
        extra.update(encoded_images=scored.encoded_images, encoded_texts=scored.encoded_texts)
        return BenchmarkOutput(metrics, counts, extra)

    def _items(self, wanted, paths, root, config, context):
        """Every wanted set's items (None where the photo is missing), the VG labels, and the extra keys."""
        items: dict[str, list[Item | None]] = {}
        labels: dict[str, list[str]] = {}
        files, missing = {}, {}
        perturber = None
        for name in wanted:
            rows = read_json(paths[name])
            files[name] = {"path": str(paths[name]), "sha256": sha256_of(paths[name])}
            if name.startswith("vg_"):
                items[name] = vg_items(rows, root / "images", paths[name])
                labels[name] = vg_labels(rows, name, paths[name])
            else:
                perturber = perturber or OrderPerturber(config.seed, config.spacy_model)
                perturber.reseed(config.seed)  # ARO runs each set in its own process, seeded afresh
                items[name] = order_items(rows, paths[name].parent, perturber, paths[name])
            missing[name] = sum(it is None for it in items[name])
        extra: dict[str, Any] = {"sets": wanted, "files": files, "missing_images": missing, "seed": config.seed}
        if perturber is not None:
            extra.update(spacy_model=perturber.spacy_model, word_tokenizer=perturber.tokenizer_name)
        return items, labels, extra
