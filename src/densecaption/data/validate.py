"""Deep checks of a DCI folder: every file, every mask's pixels, every photo.

Errors mark a record that cannot be used as it is; warnings mark quirks of the real release that the
reader handles (dropped masks in ``requirements``, stale width/height, files in no split, bare strings).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from densecaption.data.dci import SKELETON_SUFFIX, DCIDataset, ParsedDocument, is_skeleton, is_skeleton_folder, \
    json_files, load_json_file, parse_document, resolve_root
from densecaption.data.findings import Finding, pointer
from densecaption.data.schema import Box, MaskDecodeError, decode_mask_png

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
        except OSError as e:
            if e.strerror:  # the file cannot be read (permission denied ...), not a decoding failure
                return f"photo {name!r} cannot be read: {e.strerror}"
            return f"photo {name!r} does not decode: {e}"
        except Exception as e:  # PIL raises many types for corrupt files
            return f"photo {name!r} does not decode: {e}"


def check_pixels(parsed: ParsedDocument, rel: str, photo: tuple[int, int] | str | None,
                 raw_masks: Any = None) -> list[Finding]:
    """Checks that need pixels: the photo, its size against width/height, each mask against its bounds.

    ``photo`` is the photo's size, why it cannot be used, or None when the file names none. ``raw_masks``
    (the document's ``mask_data``) lets masks with other errors still have their PNG checked."""
    out: list[Finding] = []
    size = (parsed.width, parsed.height) if None not in (parsed.width, parsed.height) else None
    if isinstance(photo, str):
        out.append(Finding(rel, pointer("image"), photo))
    elif photo is not None:
        if size is not None and size != photo:
            out.append(Finding(rel, "", f"width/height {size[0]}x{size[1]} differ from the photo's "
                                        f"{photo[0]}x{photo[1]}: the photo's size is used", "warning"))
        size = photo
    for key, (png, box) in _mask_pngs(parsed, raw_masks).items():
        out += _check_mask(rel, ("mask_data", key), png, box, size)
    return out


def _mask_pngs(parsed: ParsedDocument, raw_masks: Any) -> dict[str, tuple[str, Box | None]]:
    """``mask_data`` key -> (base64 PNG, box) in document order: the clean masks with their box, and the
    masks with errors elsewhere that still hold a string ``outer_mask`` with none."""
    clean = {str(m.idx): (m.outer_mask, m.box) for m in parsed.masks.values()}
    if not isinstance(raw_masks, dict):
        return clean
    out: dict[str, tuple[str, Box | None]] = {}
    for key, raw in raw_masks.items():
        if key in clean:
            out[key] = clean[key]
        elif isinstance(raw, dict) and isinstance(raw.get("outer_mask"), str):
            out[key] = (raw["outer_mask"], None)
    return out


def _check_mask(rel: str, base: tuple[str, str], png: str, box: Box | None,
                size: tuple[int, int] | None) -> list[Finding]:
    """One mask's pixels: it decodes, has the image's size and lies within its box. Without a known image
    size only the decoding is checked; without a usable box, not the bounds."""
    out: list[Finding] = []
    b = box
    if b is not None and size is not None and (b.x0 < 0 or b.y0 < 0 or b.x1 > size[0] or b.y1 > size[1]):
        out.append(Finding(rel, pointer(*base, "bounds"),
                           f"box ({b.x0}, {b.y0})-({b.x1}, {b.y1}) lies outside the {size[0]}x{size[1]} image"))
    try:
        mask = decode_mask_png(png)
    except MaskDecodeError as e:
        return out + [Finding(rel, pointer(*base, "outer_mask"), str(e))]
    if size is None:
        return out
    width, height = size
    if mask.shape != (height, width):
        return out + [Finding(rel, pointer(*base, "outer_mask"),
                              f"mask is {mask.shape[1]}x{mask.shape[0]}, the photo {width}x{height}")]
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return out + [Finding(rel, pointer(*base, "outer_mask"), "mask is empty", "warning")]
    x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
    if b is not None and (x0 < b.x0 or y0 < b.y0 or x1 > b.x1 or y1 > b.y1):
        out.append(Finding(rel, pointer(*base, "bounds"),
                           f"box ({b.x0}, {b.y0})-({b.x1}, {b.y1}) does not enclose the mask's pixels "
                           f"({x0}, {y0})-({x1}, {y1})"))
    return out


def skeleton_findings(obj: Any, rel: str) -> list[Finding]:
    """A warning for a mask skeleton (``masks from-sam`` / ``masks extract``): valid, but its captions and
    labels are still empty."""
    if not is_skeleton(obj):
        return []
    return [Finding(rel, "", "not annotated yet: a mask skeleton with empty captions and labels (annotate it, "
                             "e.g. with `densecaption annotate`)", "warning")]


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


def check_file(path: Path, rel: str, photos: _PhotoCache) -> list[Finding]:
    """Every finding of one annotation file: its JSON, its document, its masks' pixels, its photo."""
    obj, found = load_json_file(path, rel)
    if not found:
        parsed = parse_document(obj, rel)
        photo = photos.size(parsed.image) if parsed.image is not None else None
        found = parsed.findings + check_pixels(parsed, rel, photo, obj.get("mask_data")
                                               if isinstance(obj, dict) else None)
        found += skeleton_findings(obj, rel)
    return found


def _check_chunk(chunk: list[tuple[Path, str]], photo_dir: Path) -> list[list[Finding]]:
    """``check_file`` over a chunk of files in a worker process, one photo cache per chunk."""
    photos = _PhotoCache(photo_dir)
    return [check_file(path, rel, photos) for path, rel in chunk]


def _checked(jobs: list[tuple[Path, str]], photo_dir: Path, workers: int | None):
    """Each job's findings, in the jobs' order; with more than one worker, chunks run in worker processes."""
    workers = (os.cpu_count() or 1) if workers is None else workers
    if workers <= 1 or len(jobs) < 2:
        photos = _PhotoCache(photo_dir)
        yield from (check_file(path, rel, photos) for path, rel in jobs)
        return
    from concurrent.futures import ProcessPoolExecutor

    size = max(1, min(64, len(jobs) // (4 * workers)))
    chunks = [jobs[i:i + size] for i in range(0, len(jobs), size)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for findings in pool.map(_check_chunk, chunks, [photo_dir] * len(chunks)):
            yield from findings


def validate_dataset(path: Path | str, progress: Callable[[int], None] | None = None,
                     on_total: Callable[[int], None] | None = None, workers: int | None = 1) -> ValidationReport:
    """Check every annotation file under ``annotations/`` and ``complete/`` and ``splits.json`` (or, for a folder
    of mask skeletons, its ``*-mask.json`` files). ``workers`` processes check files (None: one per core);
    the findings come in the same order whatever the number."""
    root = resolve_root(path)
    report = ValidationReport(root=root)
    files: dict[str, list[Path]] = {}
    for folder in (f for f in FOLDERS if (root / f).is_dir()):
        try:
            files[folder] = [root / folder / name for name in json_files(root / folder)]
        except OSError as e:  # an unreadable folder: its files are errors, not absent
            report.findings.append(Finding(f"{folder}/", "", f"cannot read: {e.strerror or e}"))
    if not files and not report.findings and is_skeleton_folder(root):
        files[""] = [root / name for name in json_files(root, SKELETON_SUFFIX)]
    if not files:
        if not report.findings:
            report.findings.append(Finding(str(root), "", "no annotations/ or complete/ folder"))
        return report
    if on_total:
        on_total(sum(len(v) for v in files.values()))
    jobs = [(p, f"{folder}/{p.name}" if folder else p.name) for folder, paths in files.items() for p in paths]
    for found in _checked(jobs, root / "photos", workers):
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
                    report.findings.append(Finding(f"{folder}/{p.name}" if folder else p.name, "",
                                                   "in no split of splits.json",
                                                   "warning"))
    return report
