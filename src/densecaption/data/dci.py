"""Reading and writing the official DCI layout.

```
<root>/densely_captioned_images/{photos/, annotations/, complete/, splits.json}
```

Records are parsed one file at a time, so iterating a split holds one record in memory. Parsing checks
structure only (keys, types, references between masks and entries, strings that are text); pixel
checks live in ``validate``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Literal

from densecaption.data.findings import Finding, RecordError, SkipLog, pointer
from densecaption.data.schema import BASE_KEY, Box, DCIImage, Mask, parse_mask_key
from densecaption.errors import UserError
from densecaption.files import atomic_write_text  # also importable from here, its old home

INNER = "densely_captioned_images"
SPLIT_NAMES = ("train", "valid", "test")
Source = Literal["complete", "annotations", "skeletons"]
# A folder of mask skeletons (``masks from-sam`` / ``masks extract``): ``<photo stem>-mask.json`` files
# with their photos in ``photos/`` beside them; read as source ``skeletons``.
SKELETON_SUFFIX = "-mask.json"

_IMAGE_KEYS = ("image", "short_caption", "extra_caption", "height", "width", "mask_keys", "mask_data",
               "summaries", "negatives", "clip_scores")
_MASK_KEYS = ("idx", "parent", "requirements", "outer_mask", "area", "bounds", "label", "caption",
              "mask_quality")


# --------------------------------------------------------------------------------------------- parsing
class _Collector:
    """Collects findings for one file while parsing goes on, so one pass reports every problem."""

    def __init__(self, file: str):
        self.file = file
        self.findings: list[Finding] = []

    def error(self, ptr: str, reason: str) -> None:
        self.findings.append(Finding(self.file, ptr, reason, "error"))

    def warn(self, ptr: str, reason: str) -> None:
        self.findings.append(Finding(self.file, ptr, reason, "warning"))

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    def get(self, obj: dict, key: str, kind: type | tuple[type, ...], base: tuple = (), *,
            required: bool = True) -> Any:
        """``obj[key]`` if present and of the right type; otherwise record an error and return None."""
        ptr = pointer(*base, key)
        if key not in obj:
            if required:
                self.error(ptr, f"missing key {key!r}")
            return None
        value = obj[key]
        if not _is(value, kind):
            self.error(ptr, f"{key!r} should be {_kind_name(kind)}, got {_type_name(value)}")
            return None
        return value


def _is(value: Any, kind: type | tuple[type, ...]) -> bool:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        return False  # JSON true/false is not a number here
    if float in kinds and isinstance(value, int):
        return True
    return isinstance(value, kinds)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {int: "an integer", str: "a string", list: "a list", dict: "an object", float: "a number"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _type_name(value: Any) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null",
            int: "integer", float: "number"}.get(type(value), type(value).__name__)


def _parse_mask(c: _Collector, key: str, raw: Any) -> Mask | None:
    base = ("mask_data", key)
    if not isinstance(raw, dict):
        c.error(pointer(*base), f"mask should be an object, got {_type_name(raw)}")
        return None
    n = len(c.errors)
    idx = c.get(raw, "idx", int, base)
    parent = c.get(raw, "parent", int, base)
    reqs = c.get(raw, "requirements", list, base)
    if reqs is not None:
        for i, r in enumerate(reqs):
            if not _is(r, int):
                c.error(pointer(*base, "requirements", i), f"child idx should be an integer, got {_type_name(r)}")
    outer = c.get(raw, "outer_mask", str, base)
    area = c.get(raw, "area", int, base)
    label = c.get(raw, "label", str, base)
    caption = c.get(raw, "caption", str, base)
    quality = c.get(raw, "mask_quality", int, base)
    if quality is not None and quality not in (0, 1, 2):
        c.error(pointer(*base, "mask_quality"), f"mask_quality should be 0, 1 or 2, got {quality}")
    box = None
    bounds = c.get(raw, "bounds", dict, base)
    if bounds is not None:
        ok = True
        for corner in ("topLeft", "bottomRight"):
            pt = c.get(bounds, corner, dict, (*base, "bounds"))
            if pt is None:
                ok = False
                continue
            for axis in ("x", "y"):
                ok &= c.get(pt, axis, int, (*base, "bounds", corner)) is not None
        if ok:
            box = Box.from_bounds(bounds)
            if box.width <= 0 or box.height <= 0:
                c.error(pointer(*base, "bounds"), f"empty box: topLeft ({box.x0}, {box.y0}), "
                                                  f"bottomRight ({box.x1}, {box.y1})")
    if idx is not None and key != str(idx):
        c.error(pointer(*base, "idx"), f"mask_data key {key!r} does not match idx {idx}")
    if len(c.errors) > n:
        return None
    extra = {k: v for k, v in raw.items() if k not in _MASK_KEYS}
    return Mask(idx=idx, parent=parent, requirements=[int(r) for r in reqs], outer_mask=outer, area=area,
                box=box, label=label, caption=caption, quality=quality, extra=extra)


def _entry_key_ok(c: _Collector, field_name: str, key: str, present: set[int]) -> bool:
    if key == BASE_KEY:
        return True
    idx = parse_mask_key(key)
    if idx is None:
        c.error(pointer(field_name, key), f"{field_name} key {key!r} is neither 'base' nor 'm-<idx>-sc'")
        return False
    if idx not in present:
        c.error(pointer(field_name, key), f"{field_name} key {key!r} names mask {idx}, which does not exist")
        return False
    return True


def _parse_str_list(c: _Collector, value: Any, ptr_parts: tuple) -> list[str] | None:
    if not isinstance(value, list):
        c.error(pointer(*ptr_parts), f"should be a list of strings, got {_type_name(value)}")
        return None
    bad = [i for i, s in enumerate(value) if not isinstance(s, str)]
    for i in bad:
        c.error(pointer(*ptr_parts, i), f"should be a string, got {_type_name(value[i])}")
    return None if bad else list(value)


def _entry_map(c: _Collector, obj: dict, field_name: str, present: set[int],
               parse_value: Callable[[str, Any], Any]) -> dict[str, Any] | None:
    """An optional per-entry object (``summaries``, ``negatives``, ``clip_scores``): keys checked against
    the masks present (``present``), values parsed by ``parse_value`` (None for a value with errors). None
    when absent."""
    if field_name not in obj:
        return None
    raw = c.get(obj, field_name, dict)
    if raw is None:
        return None
    out = {}
    for key, value in raw.items():
        if _entry_key_ok(c, field_name, key, present):
            parsed = parse_value(key, value)
            if parsed is not None:
                out[key] = parsed
    return out


@dataclass
class ParsedDocument:
    """What parsing one document gave: the record (None when it has errors), every finding, and the parts
    that parsed cleanly, so ``validate`` can check the pixels of good masks in a file with other errors."""

    record: DCIImage | None
    findings: list[Finding]
    masks: dict[int, Mask]
    image: str | None = None
    width: int | None = None
    height: int | None = None


def parse_image(obj: Any, file: str, photo_dir: Path | None = None) -> tuple[DCIImage | None, list[Finding]]:
    """Parse one annotation document. Returns the record (None when it has errors) and all findings."""
    parsed = parse_document(obj, file, photo_dir)
    return parsed.record, parsed.findings


def _present_masks(raw_masks: dict[str, Any]) -> set[int]:
    """The idx of every ``mask_data`` key, parsed or not: a broken mask still exists for references to it."""
    present = set()
    for key in raw_masks:
        try:
            present.add(int(key))
        except ValueError:
            pass
    return present


_SURROGATE = re.compile("[\ud800-\udfff]")


def lone_surrogates(value: Any, parts: tuple = ()) -> Iterator[str]:
    """JSON Pointers of the strings (and keys) holding a lone UTF-16 surrogate: JSON lets ``"\\ud800"`` be
    written, but it is not text, and writing it as UTF-8 fails (a caption set, a result file)."""
    if isinstance(value, str):
        if _SURROGATE.search(value):
            yield pointer(*parts)
    elif isinstance(value, dict):
        for key, item in value.items():
            if _SURROGATE.search(key):
                yield pointer(*parts, key)
            else:
                yield from lone_surrogates(item, (*parts, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from lone_surrogates(item, (*parts, i))


def parse_document(obj: Any, file: str, photo_dir: Path | None = None) -> ParsedDocument:
    """Parse one annotation document in one pass that finds every problem in it (see ``ParsedDocument``)."""
    c = _Collector(file)
    if not isinstance(obj, dict):
        c.error("", f"the document should be a JSON object, got {_type_name(obj)}")
        return ParsedDocument(None, c.findings, {})
    for ptr in lone_surrogates(obj):
        c.error(ptr, "a string with a lone UTF-16 surrogate (a \\ud800-\\udfff escape without its pair), "
                     "which is not text")
    image = c.get(obj, "image", str)
    short = c.get(obj, "short_caption", str)
    extra_cap = c.get(obj, "extra_caption", str)
    height = c.get(obj, "height", int, required=False)
    width = c.get(obj, "width", int, required=False)
    if "height" not in obj or "width" not in obj:
        c.warn("", "no height/width: the photo's size is used")
    mask_keys = c.get(obj, "mask_keys", list)
    raw_masks = c.get(obj, "mask_data", dict)

    masks: dict[int, Mask] = {}
    for key, raw in (raw_masks or {}).items():
        m = _parse_mask(c, key, raw)
        if m is not None:
            masks[m.idx] = m
    present = _present_masks(raw_masks or {})

    # The tree: parents must exist and list their children; children may name dropped masks. A mask that
    # exists but has errors of its own is not "missing" (its requirements are unknown, so not checked).
    for m in masks.values():
        base = ("mask_data", str(m.idx))
        if m.parent != -1:
            if m.parent not in present:
                c.error(pointer(*base, "parent"), f"parent {m.parent} does not exist")
            elif m.parent in masks and m.idx not in masks[m.parent].requirements:
                c.error(pointer(*base, "parent"),
                        f"parent {m.parent} does not list {m.idx} in its requirements")
        dropped = [r for r in m.requirements if r not in present]
        if dropped:
            c.warn(pointer(*base, "requirements"),
                   f"names mask(s) {', '.join(map(str, dropped))} that do not exist (dropped small masks)")

    bare: set[str] = set()

    def summary_list(key: str, value: Any) -> list[str] | None:
        if isinstance(value, str):
            c.warn(pointer("summaries", key), "a bare string instead of a list: read as a list of one")
            bare.add(key)
            return [value]
        return _parse_str_list(c, value, ("summaries", key))

    def negative_kinds(key: str, kinds: Any) -> dict[str, list[str]] | None:
        if not isinstance(kinds, dict):
            c.error(pointer("negatives", key), f"should be an object of kind -> list, got {_type_name(kinds)}")
            return None
        parsed = {kind: _parse_str_list(c, texts, ("negatives", key, kind)) for kind, texts in kinds.items()}
        return {kind: texts for kind, texts in parsed.items() if texts is not None}

    def score_map(key: str, scores: Any) -> dict[str, float] | None:
        if not isinstance(scores, dict):
            c.error(pointer("clip_scores", key), f"should be an object of name -> number, got {_type_name(scores)}")
            return None
        bad = [k for k, v in scores.items() if not _is(v, float)]
        for k in bad:
            c.error(pointer("clip_scores", key, k), f"should be a number, got {_type_name(scores[k])}")
        return None if bad else dict(scores)

    summaries = _entry_map(c, obj, "summaries", present, summary_list)
    negatives = _entry_map(c, obj, "negatives", present, negative_kinds)
    clip_scores = _entry_map(c, obj, "clip_scores", present, score_map)

    if mask_keys is not None:
        for i, k in enumerate(mask_keys):
            if not isinstance(k, str):
                c.error(pointer("mask_keys", i), f"should be a string, got {_type_name(k)}")

    if c.errors:
        return ParsedDocument(None, c.findings, masks, image, width, height)
    record = DCIImage(
        file=file, image=image, short_caption=short, extra_caption=extra_cap, height=height, width=width,
        mask_keys=list(mask_keys), masks=masks, summaries=summaries, negatives=negatives,
        clip_scores=clip_scores, extra={k: v for k, v in obj.items() if k not in _IMAGE_KEYS},
        photo_path=(photo_dir / image) if photo_dir is not None else None,
        bare_summary_keys=frozenset(bare),
    )
    return ParsedDocument(record, c.findings, masks, image, width, height)


def load_json_file(path: Path, file: str, missing: str = "does not exist") -> tuple[Any, list[Finding]]:
    """Read a JSON file; a missing (``missing`` says why it should be there), unreadable (permission denied,
    a folder, not UTF-8), empty or malformed file is one error finding."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, [Finding(file, "", missing)]
    except OSError as e:
        return None, [Finding(file, "", f"cannot read: {e.strerror or e}")]
    except UnicodeDecodeError as e:
        return None, [Finding(file, "", f"cannot read: {e}")]
    if not text.strip():
        return None, [Finding(file, "", "empty file")]
    try:
        return json.loads(text), []
    except json.JSONDecodeError as e:
        return None, [Finding(file, "", f"not valid JSON: {e.msg} at line {e.lineno} column {e.colno}")]


# --------------------------------------------------------------------------------------------- writing
def image_to_json(record: DCIImage, *, with_sdci: bool = True) -> dict[str, Any]:
    """The official JSON document of a record. ``with_sdci=False`` gives the ``annotations/`` form."""
    out: dict[str, Any] = {"image": record.image, "short_caption": record.short_caption,
                           "extra_caption": record.extra_caption}
    if record.height is not None:
        out["height"] = record.height
    if record.width is not None:
        out["width"] = record.width
    out["mask_keys"] = list(record.mask_keys)
    out["mask_data"] = {
        str(m.idx): {"idx": m.idx, "parent": m.parent, "requirements": list(m.requirements),
                     "outer_mask": m.outer_mask, "area": m.area, "bounds": m.box.to_bounds(),
                     "label": m.label, "caption": m.caption, "mask_quality": m.quality, **m.extra}
        for m in record.masks.values()
    }
    if with_sdci:
        if record.summaries is not None:
            out["summaries"] = {k: (v[0] if k in record.bare_summary_keys and len(v) == 1 else list(v))
                                for k, v in record.summaries.items()}
        if record.negatives is not None:
            out["negatives"] = {k: {kind: list(t) for kind, t in kinds.items()}
                                for k, kinds in record.negatives.items()}
        if record.clip_scores is not None:
            out["clip_scores"] = {k: dict(v) for k, v in record.clip_scores.items()}
    out.update(record.extra)
    return out


class DCIWriter:
    """Writes records in the official layout under ``<out>/densely_captioned_images``.

    Each record goes to ``annotations/`` (without sDCI fields) and, when it has summaries, to
    ``complete/``; its photo is copied (or hard-linked) into ``photos/`` when a source path is known.
    ``out`` is the folder to hold ``densely_captioned_images/`` (or that folder itself); with ``is_root``,
    the dataset folder to write into as it is (for in-place updates).
    """

    def __init__(self, out: Path | str, *, link_photos: bool = True, is_root: bool = False):
        if Path(out).exists() and not Path(out).is_dir():  # name the path given, not a folder made below it
            raise UserError(f"{out}: not a folder (a file of that name is in the way)")
        self.root = Path(out)
        if not is_root and self.root.name != INNER:
            self.root = self.root / INNER
        self.link_photos = link_photos
        for sub in ("photos", "annotations", "complete"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    def write(self, record: DCIImage, *, folders: Iterable[Source] | None = None) -> None:
        if folders is None:
            folders = ["annotations"] + (["complete"] if record.summaries is not None else [])
        for folder in folders:
            doc = image_to_json(record, with_sdci=folder == "complete")
            atomic_write_text(self.root / folder / record.file, json.dumps(doc, indent=1) + "\n")
        self._copy_photo(record)

    def _copy_photo(self, record: DCIImage) -> None:
        dst = self.root / "photos" / record.image
        src = record.photo_path
        if src is None or dst.exists() or not src.exists():
            return
        if self.link_photos:
            try:
                os.link(src, dst)
                return
            except OSError:
                pass
        shutil.copyfile(src, dst)

    def write_splits(self, splits: dict[str, list[str]]) -> None:
        atomic_write_text(self.root / "splits.json", json.dumps(splits, indent=1) + "\n")


# --------------------------------------------------------------------------------------------- dataset
def json_files(folder: Path, suffix: str = ".json") -> list[str]:
    """The file names ending in ``suffix`` in ``folder``, sorted; ``OSError`` when it cannot be listed."""
    return sorted(name for name in os.listdir(folder) if name.endswith(suffix))


def is_skeleton(obj: Any) -> bool:
    """A record with masks whose captions and labels are all still empty (not annotated yet): a mask
    skeleton of ``masks from-sam`` / ``masks extract``."""
    if not isinstance(obj, dict) or obj.get("short_caption") != "" or obj.get("extra_caption") != "":
        return False
    masks = obj.get("mask_data")
    return isinstance(masks, dict) and all(
        isinstance(m, dict) and m.get("label") == "" and m.get("caption") == "" for m in masks.values())


def blank_texts(doc: dict[str, Any]) -> dict[str, Any]:
    """The skeleton of an annotated record document: both captions, every label and caption emptied and every
    quality reset to 0 (in place; returned), as the mask pipeline writes records still to be annotated."""
    doc["short_caption"] = doc["extra_caption"] = ""
    for mask in doc.get("mask_data", {}).values():
        mask["label"], mask["caption"], mask["mask_quality"] = "", "", 0
    return doc


def is_skeleton_folder(path: Path) -> bool:
    """A folder holding ``*-mask.json`` skeletons and no DCI sub-folders."""
    try:
        return path.is_dir() and any(name.endswith(SKELETON_SUFFIX) for name in os.listdir(path))
    except OSError:
        return False


def resolve_root(path: Path | str) -> Path:
    """The ``densely_captioned_images`` folder for a path that names it or its parent; ``sample`` works."""
    if str(path) == "sample":
        from densecaption.data.sample import sample_root

        return sample_root()
    p = Path(path).expanduser()
    if not p.exists():
        raise UserError(f"{p}: no such folder")
    if (p / INNER).is_dir():
        return p / INNER
    if any((p / s).exists() for s in ("splits.json", "annotations", "complete")) or is_skeleton_folder(p):
        return p
    raise UserError(f"{p}: not a DCI folder (expected {INNER}/ or splits.json, annotations/, complete/ or "
                    f"*{SKELETON_SUFFIX} skeletons in it)")


@dataclass
class DCIDataset:
    """A DCI folder opened for streaming reads. ``source`` picks ``complete/`` (sDCI), ``annotations/`` or, for a
    folder of mask skeletons, the ``*-mask.json`` files in the folder itself (``skeletons``)."""

    root: Path
    source: Source
    given: str = ""

    @classmethod
    def open(cls, path: Path | str, source: Source | Literal["auto"] = "auto") -> "DCIDataset":
        root = resolve_root(path)
        if source == "auto":
            source = "complete" if (root / "complete").is_dir() else "annotations"
            if source == "annotations" and not (root / source).is_dir() and is_skeleton_folder(root):
                source = "skeletons"
        if source == "skeletons":
            if not is_skeleton_folder(root):
                raise UserError(f"{root}: has no *{SKELETON_SUFFIX} skeletons")
        elif not (root / source).is_dir():
            raise UserError(f"{root}: has no {source}/ folder")
        return cls(root=root, source=source, given=str(path))

    @property
    def photo_dir(self) -> Path:
        return self.root / "photos"

    @property
    def annotation_dir(self) -> Path:
        return self.root if self.source == "skeletons" else self.root / self.source

    def rel(self, file: str) -> str:
        """How messages name an annotation file: relative to the dataset root."""
        return file if self.source == "skeletons" else f"{self.source}/{file}"

    def splits(self) -> dict[str, list[str]]:
        """``splits.json`` as lists of annotation file names; every file under one key if it is absent."""
        path = self.root / "splits.json"
        if not path.exists():
            return {"all": self.all_files()}
        obj, findings = load_json_file(path, "splits.json")
        if findings:
            raise RecordError(findings)
        if not isinstance(obj, dict) or not all(
                isinstance(v, list) and all(isinstance(s, str) for s in v) for v in obj.values()):
            raise RecordError([Finding("splits.json", "", "should be an object of split name -> list of "
                                                          "file names")])
        return obj

    def all_files(self) -> list[str]:
        """Every annotation file name, sorted; an unreadable folder raises its ``PermissionError`` (a glob
        would see it as empty)."""
        return json_files(self.annotation_dir, SKELETON_SUFFIX if self.source == "skeletons" else ".json")

    def files(self, split: str | None = None) -> list[str]:
        """Annotation file names of one split in ``splits.json`` order, or of all splits (no repeats)."""
        splits = self.splits()
        if split is not None:
            if split not in splits:
                raise UserError(f"{self.root / 'splits.json'}: no split {split!r} "
                                f"(has: {', '.join(splits) or 'none'})")
            names = splits[split]
        else:
            names = [n for v in splits.values() for n in v]
        return list(dict.fromkeys(self.file_name(n) for n in names))

    @staticmethod
    def file_name(split_entry: str) -> str:
        return split_entry if split_entry.endswith(".json") else f"{split_entry}.json"

    def find(self, name: str) -> str:
        """The annotation file that ``name`` names: a file name, an id (``<id>`` or ``<id>-data``) or a photo."""
        files = self.all_files()
        for candidate in (name, f"{name}.json", f"{name}-data.json", f"{name}{SKELETON_SUFFIX}"):
            if candidate in files:
                return candidate
        for file in files:
            obj, findings = load_json_file(self.annotation_dir / file, file)
            if not findings and isinstance(obj, dict) and obj.get("image") == name:
                return file
        raise UserError(f"{self.root}: no record {name!r} in {self.source}/ (give a file name, an id or a "
                        "photo name)")

    def read(self, file: str) -> DCIImage:
        """Parse one annotation file; raises ``RecordError`` with every error found in it."""
        path = self.annotation_dir / file
        rel = self.rel(file)
        obj, findings = load_json_file(path, rel, missing="file named in splits.json does not exist")
        if findings:
            raise RecordError(findings)
        record, findings = parse_image(obj, file, self.photo_dir)
        if record is None:
            raise RecordError([f for f in findings if f.severity == "error"])
        return record

    def iter_images(self, split: str | None = None, skip: SkipLog | None = None) -> Iterator[DCIImage]:
        """Yield records one at a time; a bad record goes to ``skip`` (or raises with ``strict``)."""
        skip = skip if skip is not None else SkipLog(strict=True)
        for file in self.files(split):
            try:
                yield self.read(file)
            except RecordError as e:
                skip.skip(e)

    def to_hf(self, split: str | None = None, table: Literal["records", "entries"] = "records",
              skip: SkipLog | None = None, cache_dir: str | None = None):
        """A ``datasets.Dataset`` of the records (photo as an ``Image``, masks as RLE) or of the sDCI entries,
        built in ``datasets``' cache (or ``cache_dir``); see ``densecaption.data.export``."""
        from densecaption.data.export import to_hf

        return to_hf(self, split, table, skip=skip, cache_dir=cache_dir)
