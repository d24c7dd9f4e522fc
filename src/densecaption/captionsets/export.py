"""Writing a caption set: a diffusers image folder, a datasets Parquet file, JSONL, and ``manifest.json``.

Layout of one set folder::

    <set>/manifest.json          parameters, realised precision/recall, counts, token report, source data
    <set>/images/                photos (hard-linked, else copied) + metadata.jsonl (diffusers ImageFolder)
    <set>/captions.parquet       datasets Parquet: image, image_id, text, labels, parts...
    <set>/captions.jsonl         one caption per line with its parts

The manifest is written last, so a folder with a manifest is complete. Nothing in it depends on the clock,
so the same data, options and seed give byte-identical folders.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from densecaption.captionsets.compose import CaptionSet
from densecaption.errors import UserError
from densecaption.evaluation.results import versions
from densecaption.files import atomic_write, atomic_write_text, writable_folder, writing

FORMATS = ("folder", "parquet", "jsonl")
MANIFEST = "manifest.json"
IMAGES = "images"
PARQUET = "captions.parquet"
JSONL = "captions.jsonl"
KIND = "densecaption.caption-set"
GRID_KIND = "densecaption.caption-grid"
OUTPUTS = (MANIFEST, IMAGES, PARQUET, JSONL)
PACKAGES = ("densecaption", "datasets", "transformers", "open-clip-torch")


def parse_formats(text: str) -> tuple[str, ...]:
    formats = tuple(dict.fromkeys(f.strip() for f in text.split(",") if f.strip()))
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise UserError(f"--format {text!r}: expected a comma list of {', '.join(FORMATS)}")
    return formats


def set_outputs(path: Path) -> list[str]:
    """The outputs of a caption set already in ``path`` (none when it is not a folder)."""
    return [name for name in OUTPUTS if (path / name).exists()] if path.is_dir() else []


def prepare_out(path: Path, overwrite: bool) -> None:
    """Refuse to write over an existing set unless ``overwrite``; then remove only this module's outputs.
    A file in the folder's place, or a folder that cannot be written, is a ``UserError`` naming it."""
    writable_folder(path)
    existing = set_outputs(path)
    if existing and not overwrite:
        raise UserError(f"{path}: already holds a caption set ({', '.join(existing)}); use --overwrite")
    with writing(path):
        for name in existing:
            target = path / name
            shutil.rmtree(target) if target.is_dir() else target.unlink()


def image_set(names: Iterable[str]) -> dict[str, Any]:
    """How a set names its images: their count and the sha256 of their sorted names, one per line, so two
    sets (or grid cells) hold the same images exactly when the records agree."""
    ordered = sorted(set(names))
    digest = hashlib.sha256("".join(n + "\n" for n in ordered).encode("utf-8")).hexdigest()
    return {"count": len(ordered), "sha256": digest, "sha256_of": "sorted image names, one per line"}


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link ``src`` to ``dst`` (no copy of a photo), copying where links cannot be made."""
    if dst.exists():
        return
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _rows(cset: CaptionSet, image_of: dict[str, str]) -> list[dict[str, Any]]:
    return [{"image": image_of.get(c.image_id, c.photo_path or c.photo), "image_id": c.image_id,
             "file": c.file, "text": c.text, "labels": c.labels, "subcaptions": c.subcaptions, "short": c.short,
             "part_texts": [p.text for p in c.parts], "part_keys": [p.key for p in c.parts],
             "part_sources": [p.source for p in c.parts]} for c in cset.captions]


def write_set(cset: CaptionSet, out: Path | str, formats: Sequence[str], *, data: dict[str, Any],
              tokens: list[dict[str, Any]] | None = None, overwrite: bool = False,
              images: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``cset`` under ``out`` in ``formats`` and its manifest (last); returns the manifest. An OS
    error while writing is a one-line ``UserError`` naming the file. ``images``: what a grid records about the
    image set it chose for every cell (added to the set's own ``image_set``)."""
    out = Path(out)
    prepare_out(out, overwrite)
    with writing(out):
        return _write_set(cset, out, formats, data, tokens, images or {})


def _write_set(cset: CaptionSet, out: Path, formats: Sequence[str], data: dict[str, Any],
               tokens: list[dict[str, Any]] | None, images: dict[str, Any]) -> dict[str, Any]:
    files: dict[str, str] = {}
    image_of: dict[str, str] = {}
    if "folder" in formats:
        folder = out / IMAGES
        folder.mkdir(parents=True, exist_ok=True)
        lines = []
        for c in cset.captions:
            if c.photo_path is None or not Path(c.photo_path).exists():
                raise UserError(f"{c.file}: photo {c.photo!r} not found; cannot write the image folder")
            link_or_copy(Path(c.photo_path), folder / c.photo)
            image_of[c.image_id] = f"{IMAGES}/{c.photo}"
            lines.append(json.dumps({"file_name": c.photo, "text": c.text, "labels": c.labels,
                                     "image_id": c.image_id, "subcaptions": c.subcaptions, "short": c.short},
                                    ensure_ascii=False))
        atomic_write_text(folder / "metadata.jsonl", "".join(line + "\n" for line in lines))
        files["folder"] = IMAGES
    if "parquet" in formats:
        import datasets

        datasets.disable_progress_bars()
        rows = _rows(cset, image_of)
        features = datasets.Features({
            "image": datasets.Value("string"), "image_id": datasets.Value("string"),
            "file": datasets.Value("string"), "text": datasets.Value("string"),
            "labels": datasets.Sequence(datasets.Value("int8")), "subcaptions": datasets.Value("int32"),
            "short": datasets.Value("bool"), "part_texts": datasets.Sequence(datasets.Value("string")),
            "part_keys": datasets.Sequence(datasets.Value("string")),
            "part_sources": datasets.Sequence(datasets.Value("string"))})
        table = datasets.Dataset.from_list(rows, features=features)
        atomic_write(out / PARQUET, lambda tmp: table.to_parquet(str(tmp)))
        files["parquet"] = PARQUET
    if "jsonl" in formats:
        lines = [json.dumps({**c.to_dict(), "image": image_of.get(c.image_id, c.photo_path)}, ensure_ascii=False)
                 for c in cset.captions]
        atomic_write_text(out / JSONL, "".join(line + "\n" for line in lines))
        files["jsonl"] = JSONL
    manifest = {
        "kind": KIND, "format_version": 1,
        "config": cset.config.to_dict(),
        "data": data,
        "image_set": {**image_set(c.photo for c in cset.captions), **images},
        "counts": cset.counts(),
        "realised": cset.realised(),
        "tokens": tokens or [],
        "files": files,
        "versions": versions(PACKAGES),
    }
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    return manifest


def write_grid_manifest(out: Path | str, sets: Iterable[tuple[str, dict[str, Any]]], *, config: dict[str, Any],
                        data: dict[str, Any], precisions: Sequence[float], submasks: Sequence[int],
                        images: dict[str, Any] | None = None) -> dict[str, Any]:
    """One manifest over a grid's sets: each set's folder, parameters and realised precision/recall."""
    rows = []
    for name, m in sets:
        r = m["realised"]
        rows.append({"folder": name, "precision": m["config"]["precision"], "submasks": m["config"]["submasks"],
                     "captions": m["counts"]["captions"], "realised_precision": r["precision"]["set"],
                     "realised_precision_caption_mean": r["precision"]["mean"],
                     "realised_submasks_mean": r["recall"]["mean"], "short_kept": m["counts"]["short_kept"],
                     "short_skipped": m["counts"]["short_skipped"],
                     "image_set_sha256": (m.get("image_set") or {}).get("sha256")})
    manifest = {"kind": GRID_KIND, "format_version": 1, "precisions": list(precisions), "submasks": list(submasks),
                "config": config, "data": data, "image_set": images or {}, "sets": rows,
                "versions": versions(PACKAGES)}
    with writing(out):
        atomic_write_text(Path(out) / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    return manifest


def read_manifest(path: Path | str) -> dict[str, Any]:
    """The manifest of a set or grid folder (or of the file itself)."""
    p = Path(path)
    if p.is_dir():
        p = p / MANIFEST
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UserError(f"{p}: not a caption-set manifest ({e})") from None
