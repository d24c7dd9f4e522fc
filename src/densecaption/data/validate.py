"""Deep checks of a DCI folder: every file, every mask's pixels, every photo.

Errors mark a record that cannot be used as it is; warnings mark quirks of the real release that the
reader handles (dropped masks in ``requirements``, stale width/height, files in no split, bare strings).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from densecaption.data.dci import DCIDataset, load_json_file, parse_image, resolve_root
from densecaption.data.findings import Finding, pointer
from densecaption.data.schema import DCIImage, decode_mask_png

FOLDERS = ("annotations", "complete")


@dataclass
class ValidationReport:
    root: Path
    findings: list[Finding] = field(default_factory=list)
    files_checked: int = 0

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    def ok(self, strict: bool = False) -> bool:
        return not self.errors and not (strict and self.warnings)

    def to_dict(self) -> dict:
        return {"root": str(self.root), "files_checked": self.files_checked, "errors": len(self.errors),
                "warnings": len(self.warnings), "findings": [f.to_dict() for f in self.findings]}


class _PhotoCache:
    """Decodes each photo once: its (width, height), or why it cannot be used."""

    def __init__(self, photo_dir: Path):
        self.photo_dir = photo_dir
        self._seen: dict[str, tuple[int, int] | str] = {}

    def size(self, name: str) -> tuple[int, int] | str:
        if name not in self._seen:
            self._seen[name] = self._load(name)
        return self._seen[name]

    def _load(self, name: str) -> tuple[int, int] | str:
        from PIL import Image

        path = self.photo_dir / name
        if not path.is_file():
            return f"photo {name!r} not found in photos/"
        try:
            with Image.open(path) as im:
                im.load()
                return im.size
        except Exception as e:  # PIL raises many types for corrupt files
            return f"photo {name!r} does not decode: {e}"


def check_pixels(record: DCIImage, rel: str, photo: tuple[int, int] | str) -> list[Finding]:
    """Checks that need pixels: the photo, its size against width/height, each mask against its bounds."""
    out: list[Finding] = []
    if isinstance(photo, str):
        out.append(Finding(rel, pointer("image"), photo))
        if record.width is None or record.height is None:
            return out
        width, height = record.width, record.height
    else:
        width, height = photo
        if (record.width, record.height) != (width, height) and None not in (record.width, record.height):
            out.append(Finding(rel, "", f"width/height {record.width}x{record.height} differ from the photo's "
                                        f"{width}x{height}: the photo's size is used", "warning"))
    for m in record.masks.values():
        base = ("mask_data", str(m.idx))
        b = m.box
        if b.x0 < 0 or b.y0 < 0 or b.x1 > width or b.y1 > height:
            out.append(Finding(rel, pointer(*base, "bounds"),
                               f"box ({b.x0}, {b.y0})-({b.x1}, {b.y1}) lies outside the {width}x{height} image"))
        try:
            mask = decode_mask_png(m.outer_mask)
        except Exception as e:
            out.append(Finding(rel, pointer(*base, "outer_mask"), f"mask PNG does not decode: {e}"))
            continue
        if mask.shape != (height, width):
            out.append(Finding(rel, pointer(*base, "outer_mask"),
                               f"mask is {mask.shape[1]}x{mask.shape[0]}, the photo {width}x{height}"))
            continue
        ys, xs = np.nonzero(mask)
        if len(xs) == 0:
            out.append(Finding(rel, pointer(*base, "outer_mask"), "mask is empty", "warning"))
            continue
        x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
        if x0 < b.x0 or y0 < b.y0 or x1 > b.x1 or y1 > b.y1:
            out.append(Finding(rel, pointer(*base, "bounds"),
                               f"box ({b.x0}, {b.y0})-({b.x1}, {b.y1}) does not enclose the mask's pixels "
                               f"({x0}, {y0})-({x1}, {y1})"))
    return out


def _check_splits(root: Path, names_by_folder: dict[str, set[str]]) -> tuple[list[Finding], set[str] | None]:
    """Findings about ``splits.json`` and the files it names (None when it cannot be read)."""
    findings: list[Finding] = []
    path = root / "splits.json"
    if not path.exists():
        return [Finding("splits.json", "", "no splits.json: every file is read as one split", "warning")], None
    obj, found = load_json_file(path, "splits.json")
    if found:
        return found, None
    if not isinstance(obj, dict):
        return [Finding("splits.json", "", "should be an object of split name -> list of file names")], None
    named: set[str] = set()
    present = set().union(*names_by_folder.values()) if names_by_folder else set()
    for split, files in obj.items():
        if not isinstance(files, list):
            findings.append(Finding("splits.json", pointer(split), "should be a list of file names"))
            continue
        for i, name in enumerate(files):
            if not isinstance(name, str):
                findings.append(Finding("splits.json", pointer(split, i), "should be a file name (string)"))
                continue
            file = DCIDataset.file_name(name)
            named.add(file)
            if file not in present:
                findings.append(Finding("splits.json", pointer(split, i),
                                        f"names {file}, which is in neither annotations/ nor complete/"))
    return findings, named


def validate_dataset(path: Path | str, progress: Callable[[int], None] | None = None,
                     on_total: Callable[[int], None] | None = None) -> ValidationReport:
    """Check every annotation file under ``annotations/`` and ``complete/`` and ``splits.json``."""
    root = resolve_root(path)
    report = ValidationReport(root=root)
    photos = _PhotoCache(root / "photos")
    files = {folder: sorted((root / folder).glob("*.json")) for folder in FOLDERS if (root / folder).is_dir()}
    if not files:
        report.findings.append(Finding(str(root), "", "no annotations/ or complete/ folder"))
        return report
    if on_total:
        on_total(sum(len(v) for v in files.values()))
    for folder, paths in files.items():
        for p in paths:
            rel = f"{folder}/{p.name}"
            obj, found = load_json_file(p, rel)
            if not found:
                record, found = parse_image(obj, rel)
                if record is not None:
                    found += check_pixels(record, rel, photos.size(record.image))
            report.findings.extend(found)
            report.files_checked += 1
            if progress:
                progress(1)
    split_findings, named = _check_splits(root, {k: {p.name for p in v} for k, v in files.items()})
    report.findings.extend(split_findings)
    if named is not None:
        for folder, paths in files.items():
            for p in paths:
                if p.name not in named:
                    report.findings.append(Finding(f"{folder}/{p.name}", "", "in no split of splits.json",
                                                   "warning"))
    return report
