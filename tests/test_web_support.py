"""Shared pieces of the web tests (no tests here): skeletons built from the bundled sample (texts blanked,
as the mask pipeline writes them), and the app served in a thread on a free local port."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from densecaption.data.dci import blank_texts
from densecaption.data.sample import sample_root
from densecaption.web.common import serve_in_thread as serve  # noqa: F401  (the tests import it from here)


def write_skeletons(folder: Path, stems: list[str]) -> Path:
    """``folder/<stem>-mask.json`` for each sample record with its texts blanked, photos in ``folder/photos``."""
    src = sample_root()
    (folder / "photos").mkdir(parents=True, exist_ok=True)
    for stem in stems:
        doc = blank_texts(json.loads((src / "annotations" / f"{stem}-data.json").read_text(encoding="utf-8")))
        (folder / f"{stem}-mask.json").write_text(json.dumps(doc), encoding="utf-8")
        shutil.copyfile(src / "photos" / doc["image"], folder / "photos" / doc["image"])
    return folder
