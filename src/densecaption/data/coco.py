"""COCO images with their human captions: COCO 2017's layout, optionally restricted to a Karpathy split.

```
<COCO_DIR>/train2017/000000000009.jpg, val2017/..., annotations/captions_train2017.json, captions_val2017.json
```

``captions_<split>.json`` holds ``images`` (``id``, ``file_name``, ``width``, ``height``) and ``annotations``
(``image_id``, ``caption``). Karpathy's split file (``dataset_coco.json``) names 2014 images by ``cocoid``,
``filepath``/``filename`` and ``split`` (train, restval, val, test); COCO 2017 keeps the 2014 ids and names its
files ``<id as 12 digits>.jpg``, so each is looked up in the 2017 folders (or at its 2014 path). See
docs/real-data.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from densecaption.errors import DataError, UserError

KARPATHY_SPLITS = ("train", "restval", "val", "test")


@dataclass(frozen=True)
class CocoImage:
    id: int
    file: str
    """Path relative to the COCO folder (POSIX separators), e.g. ``val2017/000000000139.jpg``."""
    captions: tuple[str, ...]
    width: int | None = None
    height: int | None = None


def _load(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: no such file ({what})") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None


def read_coco(root: Path | str, split: str) -> list[CocoImage]:
    """The images of ``<root>/annotations/captions_<split>.json`` with their captions, sorted by id; every
    listed image must be in ``<root>/<split>/``."""
    root = Path(root).expanduser()
    path = root / "annotations" / f"captions_{split}.json"
    doc = _load(path, f"COCO's captions file of {split}")
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list) or not isinstance(
            doc.get("annotations"), list):
        raise DataError(f"{path}: expected an object with 'images' and 'annotations' lists")
    captions: dict[int, list[str]] = {}
    for i, ann in enumerate(doc["annotations"]):
        if not (isinstance(ann, dict) and isinstance(ann.get("image_id"), int) and isinstance(ann.get("caption"), str)):
            raise DataError(f"{path}#/annotations/{i}: expected image_id (integer) and caption (string)")
        captions.setdefault(ann["image_id"], []).append(ann["caption"].strip())
    images = []
    for i, im in enumerate(doc["images"]):
        if not (isinstance(im, dict) and isinstance(im.get("id"), int) and isinstance(im.get("file_name"), str)):
            raise DataError(f"{path}#/images/{i}: expected id (integer) and file_name (string)")
        images.append(CocoImage(im["id"], f"{split}/{im['file_name']}", tuple(captions.get(im["id"], ())),
                                im.get("width"), im.get("height")))
    missing = [im.file for im in images if not (root / im.file).is_file()]
    if missing:
        raise DataError(f"{root}: {len(missing)} image(s) listed in {path.name} are missing (e.g. {missing[0]})")
    return sorted(images, key=lambda im: im.id)


def read_karpathy(root: Path | str, split_file: Path | str, split: str) -> list[CocoImage]:
    """The images of one Karpathy split (``test``: 5,000), found under ``root`` in the 2017 folders by id
    or at their 2014 path, with the split file's captions (its ``sentences``' ``raw`` text)."""
    root, split_file = Path(root).expanduser(), Path(split_file).expanduser()
    if split not in KARPATHY_SPLITS:
        raise UserError(f"--split {split!r}: a Karpathy split is one of {', '.join(KARPATHY_SPLITS)}")
    doc = _load(split_file, "Karpathy's split file, dataset_coco.json")
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list):
        raise DataError(f"{split_file}: expected an object with an 'images' list (Karpathy's dataset_coco.json)")
    images, missing = [], []
    for i, im in enumerate(doc["images"]):
        if not isinstance(im, dict) or not isinstance(im.get("cocoid"), int):
            raise DataError(f"{split_file}#/images/{i}: expected cocoid (integer)")
        if im.get("split") != split:
            continue
        file = _find(root, im)
        if file is None:
            missing.append(f"{im['cocoid']:012d}.jpg")
            continue
        sentences = im.get("sentences") or []
        captions = tuple(s["raw"].strip() for s in sentences if isinstance(s, dict) and isinstance(s.get("raw"), str))
        images.append(CocoImage(im["cocoid"], file, captions))
    if missing:
        raise DataError(f"{root}: {len(missing)} image(s) of Karpathy's {split} split are in neither train2017/ "
                        f"nor val2017/ (e.g. {missing[0]})")
    if not images:
        raise DataError(f"{split_file}: no image in split {split!r}")
    return sorted(images, key=lambda im: im.id)


def _find(root: Path, item: dict[str, Any]) -> str | None:
    name = f"{item['cocoid']:012d}.jpg"
    candidates = [f"{folder}/{name}" for folder in ("val2017", "train2017")]
    if isinstance(item.get("filepath"), str) and isinstance(item.get("filename"), str):
        candidates.append(f"{item['filepath']}/{item['filename']}")
    return next((c for c in candidates if (root / c).is_file()), None)
