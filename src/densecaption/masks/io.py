"""Files of the mask pipeline: SA-1B-format mask records in, DCI record skeletons out.

Input (one JSON per photo, as SA-1B ships them and SAM's ``coco_rle`` output writes them)::

    {"image": {"file_name", "width", "height"}, "annotations": [{"segmentation": {"size", "counts"},
     "area", "bbox", "predicted_iou", "stability_score", "point_coords", "crop_box"}, ...]}

Output: ``OUT/<photo stem>-mask.json`` (a DCI record with empty captions, labels ``""`` and quality 0) with the
photo in ``OUT/photos/``: a skeleton folder, which the DCI reader opens as source ``skeletons``, so every
command that reads DCI reads it.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from densecaption.data.dci import SKELETON_SUFFIX
from densecaption.data.findings import pointer
from densecaption.errors import DataError
from densecaption.masks import Mode
from densecaption.masks.relations import BitMask



class MaskRecordError(DataError):
    """An input record that cannot be used: names the file, where in it, and what is wrong."""

    def __init__(self, file: str, ptr: str, reason: str):
        super().__init__(f"{file}#{ptr}: {reason}" if ptr else f"{file}: {reason}")


@dataclass(frozen=True)
class SamRecord:
    """One SA-1B-format record: the photo's name and size and its raw annotations."""

    file: str
    file_name: str
    width: int
    height: int
    annotations: list[dict[str, Any]]


def _int(obj: dict, key: str, file: str, *parts: Any) -> int:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise MaskRecordError(file, pointer(*parts, key), f"{key!r} should be an integer, got {value!r}")
    return value


def read_sam_record(path: Path) -> SamRecord:
    """Parse one SA-1B-format JSON file (structure only; masks are decoded by ``sam_record_masks``)."""
    file = str(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise MaskRecordError(file, "", f"not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except UnicodeDecodeError as e:
        raise MaskRecordError(file, "", f"not UTF-8 text: {e}") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("image"), dict):
        raise MaskRecordError(file, "/image", "should be an object with file_name, width and height "
                                              "(an SA-1B-format record)")
    image = obj["image"]
    name = image.get("file_name")
    if not isinstance(name, str) or not name or Path(name).name != name:
        raise MaskRecordError(file, "/image/file_name", f"should be a plain file name, got {name!r}")
    anns = obj.get("annotations")
    if not isinstance(anns, list):
        raise MaskRecordError(file, "/annotations", "should be a list of masks")
    return SamRecord(file, name, _int(image, "width", file, "image"), _int(image, "height", file, "image"), anns)


def sam_record_masks(record: SamRecord, mode: Mode = "default") -> list[BitMask]:
    """The record's masks, scored predicted_iou x stability_score^2. ``dci-reference`` sizes them by their
    stated ``area``, as the release did; ``default`` counts pixels."""
    from densecaption.masks.rle import decode_rle

    out = []
    for i, ann in enumerate(record.annotations):
        where = ("annotations", i)
        if not isinstance(ann, dict):
            raise MaskRecordError(record.file, pointer(*where), "should be an object")
        seg = ann.get("segmentation")
        if not isinstance(seg, dict) or "size" not in seg or "counts" not in seg:
            raise MaskRecordError(record.file, pointer(*where, "segmentation"),
                                  "should be a COCO RLE {\"size\", \"counts\"}")
        scores = [ann.get(k) for k in ("predicted_iou", "stability_score")]
        for key, value in zip(("predicted_iou", "stability_score"), scores):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise MaskRecordError(record.file, pointer(*where, key), f"should be a number, got {value!r}")
        try:
            bits = decode_rle(seg)
        except Exception as e:  # pycocotools raises several types for bad counts
            raise MaskRecordError(record.file, pointer(*where, "segmentation"), f"RLE does not decode: {e}") from None
        if bits.shape != (record.height, record.width):
            raise MaskRecordError(record.file, pointer(*where, "segmentation", "size"),
                                  f"mask is {bits.shape[1]}x{bits.shape[0]}, the image {record.width}x{record.height}")
        area = ann.get("area")
        size = area if mode == "dci-reference" and isinstance(area, int) and not isinstance(area, bool) else None
        out.append(BitMask.from_full(bits, float(scores[0]) * float(scores[1]) ** 2, size))
    return out


# --------------------------------------------------------------------------------------------- skeletons
def skeleton_name(file_name: str) -> str:
    """``<photo stem>-mask.json``."""
    return Path(file_name).stem + SKELETON_SUFFIX


def skeleton(image: str, width: int, height: int, mask_data: dict[str, dict]) -> dict[str, Any]:
    """A DCI record still to be annotated: empty captions, the masks' labels and captions empty."""
    return {"image": image, "short_caption": "", "extra_caption": "", "height": height, "width": width,
            "mask_keys": sorted(mask_data, key=int), "mask_data": mask_data}


def place_photo(src: Path, dst: Path) -> None:
    """Hard-link (else copy) a photo into the output's ``photos/``, atomically; an existing one is kept."""
    if dst.exists():
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")  # as files.atomic_write names them
    try:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------- runs
@dataclass
class RunReport:
    """What a run did: skeletons written, skipped as already there, and failures (name, reason)."""

    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


def run_items(items: Sequence[Any], out: Path, name_of: Callable[[Any], str],
              make: Callable[[Any], tuple[dict[str, Any], Path | None]], *, overwrite: bool = False,
              tick: Callable[[int], None] | None = None) -> RunReport:
    """Write one skeleton per item into ``out``: ``make(item)`` gives the record and the photo to
    place beside it. Finished items are skipped unless ``overwrite``; each file is written atomically, so a
    killed run leaves whole files only; an item that fails (bad record, unreadable photo, an empty kept mask)
    is listed with its reason and the run goes on (as the release skipped an image that raised)."""
    from densecaption.files import atomic_write_text
    from densecaption.masks.tree import EmptyBoxError

    report = RunReport()
    for item in items:
        name = name_of(item)
        target = out / name
        if target.exists() and not overwrite:
            report.skipped.append(name)
        else:
            try:
                doc, photo = make(item)
                if photo is not None:
                    place_photo(photo, out / "photos" / doc["image"])
                atomic_write_text(target, json.dumps(doc) + "\n")
                report.written.append(name)
            except (DataError, EmptyBoxError, ValueError, RuntimeError, MemoryError) as e:
                # RuntimeError: a model's failure on this photo, e.g. out of memory
                report.failed.append((name, " ".join(str(e).split()) or type(e).__name__))
            except OSError as e:
                from densecaption.errors import os_error_line

                report.failed.append((name, os_error_line(e)))
        if tick:
            tick(1)
    return report


def expand_inputs(paths: Iterable[Path], suffixes: tuple[str, ...]) -> list[Path]:
    """Files given, and the files with one of ``suffixes`` inside folders given (sorted), without repeats."""
    from densecaption.errors import UserError

    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out += sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in suffixes
                          and not q.name.endswith(SKELETON_SUFFIX))
        elif p.is_file():
            out.append(p)
        else:
            raise UserError(f"{p}: no such file or folder")
    return list(dict.fromkeys(out))
